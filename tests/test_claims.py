"""Every number in a notebook's prose backed by its own output (vp2p.course.claims), on small synthetic notebooks."""

import re

import nbformat
import pytest

from test_cli import ROOT
from vp2p.course import claims
from vp2p.course.build import COURSE_GLOB


def notebook(*cells):
    """cells: ("md", text) or ("out", text printed by a code cell) or ("html", an HTML result)."""
    nb = nbformat.v4.new_notebook()
    for kind, text in cells:
        if kind == "md":
            nb.cells.append(nbformat.v4.new_markdown_cell(text))
            continue
        cell = nbformat.v4.new_code_cell("...")
        if kind == "out":
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
        else:
            cell.outputs = [nbformat.v4.new_output("display_data", data={"text/html": text, "text/plain": "<HTML>"})]
        nb.cells.append(cell)
    return nb


def test_a_printed_number_backs_the_prose_and_an_unprinted_one_is_reported():
    nb = notebook(("md", "The reconstruction reaches 17.3 dB and the loss falls to 0.026."),
                  ("out", "reconstruction PSNR 17.3 dB\n"))
    assert claims.unbacked_numbers(nb) == ["0.026"]
    [found] = claims.unbacked(nb)
    assert found.cell == 0 and "loss falls to [0.026]" in found.context


def test_the_prose_may_round_what_the_output_prints_but_not_change_it():
    nb = notebook(("out", "psnr 17.26, loss 0.00048, strength [0.3246 0.771]\n"),
                  ("md", "PSNR 17.3 dB (17 dB), loss 5e-4, strengths 0.32 and 0.77."),
                  ("md", "PSNR 17.4 dB, loss 6e-4, strength 0.33; 18 dB."))
    assert claims.unbacked_numbers(nb) == ["17.4", "6e-4", "0.33", "18"]
    assert [u.cell for u in claims.unbacked(nb)] == [2, 2, 2, 2]


def test_numbers_count_from_html_results_and_percentages_from_fractions():
    nb = notebook(("html", "<table><tr><td>target hit</td><td>0.85</td></tr></table>"), ("out", "blend_start 0.2\n"),
                  ("md", "It hits 0.85 of its targets; blending starts after 20% of the steps, not 30%."))
    assert claims.unbacked_numbers(nb) == ["30%"]


def test_signs_and_thousands_separators_do_not_matter():
    nb = notebook(("out", "size error -0.31, 49408 entries, [100,200]\n"),
                  ("md", "It shrank (−0.31) and the table has 49,408 entries; 100 and 200 are printed as a list."))
    assert claims.unbacked_numbers(nb) == []


@pytest.mark.parametrize("prose", [
    "Cross-attention is replaced for a fraction of the steps (paper: 0.4, official code: 0.2).",
    "The paper's 50 steps become 25 here.",  # 25 is printed below
    'Paper timings: <span class="paper">5 min tuning, 6 min inversion, 1 min editing</span>.',
    "As in the paper's Fig. 4 and Tables 1 and 2, see eq. 9 and notebooks 03–06, Algorithm 1, §3.2.",
    "## 12. A section\n\n10. a list item of 64 words\n\n# 11 · Title",  # 64 is printed below
    "Use `cross_replace_steps=0.35` and $x_{t-1} = \\sqrt{\\bar\\alpha_{t-1}}\\,\\hat x_0 + 0.5$.",
    "```\nsteps = 37\n```\n[![badge](https://example.org/x/17.9.svg)](https://example.org/run/123)",
    "Stable Diffusion 1.5, SD 2.1 and T2I, P2P, attn12, fp16, SD-1.5, the 2nd try, CVPR 2024, notebook 07 (07_paper).",
    "Two branches of 8 frames, frame 0 and 3 cores.",  # single digits: counts and indices
])
def test_what_is_not_a_claim_about_the_run_needs_no_output(prose):
    assert claims.unbacked_numbers(notebook(("md", prose), ("out", "25 steps, 64×64\n"))) == []


def test_the_code_of_a_cell_does_not_back_its_prose():
    nb = notebook(("md", "We run 25 steps."))
    nb.cells.append(nbformat.v4.new_code_cell("num_steps = 25  # 25 steps"))
    assert claims.unbacked_numbers(nb) == ["25"]


def test_notebooks_are_read_from_files_and_bad_inputs_named(tmp_path):
    path = tmp_path / "n.ipynb"
    nbformat.write(notebook(("md", "the loss is 0.45"), ("out", "loss 0.447\n")), path)
    assert claims.unbacked_numbers(path) == [] and claims.unbacked_numbers(str(path)) == []
    with pytest.raises(FileNotFoundError, match=re.escape("n.py is not a notebook file (.ipynb); the .py twin has no outputs")):
        claims.unbacked_numbers(tmp_path / "n.py")
    with pytest.raises(TypeError, match="expected a path to an .ipynb or a notebook dict with 'cells', got int"):
        claims.unbacked_numbers(3)


def test_the_command_lists_each_notebooks_unbacked_numbers(tmp_path, capsys):
    good, bad = tmp_path / "good.ipynb", tmp_path / "bad.ipynb"
    nbformat.write(notebook(("md", "loss 0.45"), ("out", "0.45")), good)
    nbformat.write(notebook(("md", "loss 0.45")), bad)
    assert claims.main([str(good), str(bad)]) == 1
    assert capsys.readouterr().out == (f"{good}: 0 unbacked\n{bad}: 1 unbacked\n"
                                       "  cell [0] 0.45: …loss [0.45] …\n")
    assert claims.main([str(good)]) == 0


COURSE = sorted((ROOT / "notebooks").glob(COURSE_GLOB))


def test_the_course_has_notebooks_to_check():
    assert len(COURSE) >= 10, f"expected the ten course notebooks (00-07, 03b and 04b) in notebooks/, found {[p.name for p in COURSE]}"


@pytest.mark.parametrize("path", COURSE, ids=[p.stem for p in COURSE])
def test_every_course_notebook_backs_every_number_of_its_prose(path):
    """Every number of a built notebook's prose is printed by its cells (issue 18 §1); the paper's numbers, quoted
    as such, are exempt (see vp2p.course.claims). Rebuild with `vp2p course --build` after changing a notebook."""
    code = [c for c in claims.load(path)["cells"] if c["cell_type"] == "code"]
    assert code and all(c["execution_count"] for c in code), f"{path.name} is not built: run `vp2p course --build`"
    found = claims.unbacked(path)
    assert found == [], f"{path.name}: {len(found)} numbers of the prose no output shows:\n" + "\n".join(
        f"  cell [{u.cell}] {u.number}: {u.context}" for u in found)
