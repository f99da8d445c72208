"""Where the course writes (vp2p.course), and ``vp2p course --build`` (vp2p.course.build) run on throwaway notebooks."""

import base64
import io
import os
import re
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from PIL import Image

from test_cli import ROOT, snapshot
from vp2p.course.build import COURSE_GLOB
from vp2p import course
from vp2p.cli import main


def write_notebook(path: Path, *sources: str) -> Path:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    notebook.cells = [nbformat.v4.new_markdown_cell("# a throwaway notebook")]
    notebook.cells += [nbformat.v4.new_code_cell(source) for source in sources]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


# -- where the notebooks write ---------------------------------------------------------------------------------------

def test_course_output_goes_to_the_user_cache_unless_a_variable_says_otherwise(tmp_path, monkeypatch):
    monkeypatch.delenv("VP2P_COURSE_OUTPUT", raising=False)
    monkeypatch.delenv("VP2P_COURSE_FIGURES", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(ROOT / "notebooks")  # where Jupyter starts the kernel of a notebook of the checkout
    assert course.figures_dir() == tmp_path / "cache" / "vp2p" / "course" / "figures"
    assert course.runs_dir() == tmp_path / "cache" / "vp2p" / "course" / "runs"
    monkeypatch.setenv("VP2P_COURSE_OUTPUT", str(tmp_path / "out"))
    assert (course.figures_dir(), course.runs_dir()) == (tmp_path / "out" / "figures", tmp_path / "out" / "runs")
    toy = SimpleNamespace(name="toy")
    assert course.work_dir(toy) == tmp_path / "out" / "runs" / "notebooks" / "toy-red-circle-grass-7"
    monkeypatch.setenv("VP2P_COURSE_FIGURES", str(tmp_path / "figures"))
    assert (course.figures_dir(), course.runs_dir()) == (tmp_path / "figures", tmp_path / "out" / "runs")


def test_the_test_run_keeps_course_output_out_of_the_repository():
    output = Path(os.environ["VP2P_COURSE_OUTPUT"]).resolve()  # set by conftest for the notebooks nbmake runs
    assert output.is_dir() and ROOT not in output.parents and "VP2P_COURSE_FIGURES" not in os.environ
    assert course.figures_dir().resolve().parent == output


def test_the_notebooks_save_figures_only_into_figures_dir():
    for path in sorted((ROOT / "notebooks").glob(COURSE_GLOB.replace(".ipynb", ".py"))):
        lines = path.read_text().splitlines()
        saves = [line for line in lines if "viz.save(" in line or ".savefig(" in line]
        assert all("FIGURES" in line or "course.figures_dir()" in line for line in saves), (path.name, saves)
        # each run regenerates its own figures: viz.save refuses to replace a file unless told (a second run failed)
        assert all("overwrite=True" in line for line in saves if "viz.save(" in line), (path.name, saves)
        if any("FIGURES" in line for line in saves):
            assert "FIGURES = course.figures_dir()" in "\n".join(lines), path.name


# -- vp2p course --build -----------------------------------------------------------------------------------------------

FIGURE_CELL = """\
import matplotlib.pyplot as plt
from vp2p import course

figures = course.figures_dir()
figures.mkdir(parents=True, exist_ok=True)
fig, ax = plt.subplots(figsize=(2, 1))
ax.plot([0, 1])
fig.savefig(figures / "tiny.png")
print("figures in", figures)"""


def test_build_runs_a_notebook_in_place_and_changes_nothing_else(tmp_path, capsys):
    notebook = write_notebook(tmp_path / "repo" / "notebooks" / "01_tiny.ipynb", FIGURE_CELL)
    write_notebook(tmp_path / "repo" / "notebooks" / "02_other.ipynb", "print('not built')")
    (tmp_path / "repo" / "notes.txt").write_text("mine")
    figures = tmp_path / "repo" / "figures"
    before, repository_figures = snapshot(tmp_path), snapshot(ROOT / "figures")

    assert main(["course", "--build", "--notebooks", str(notebook), "--figures", str(figures)]) == 0
    assert re.fullmatch(rf"built {re.escape(str(notebook))} in \d+ s\n", capsys.readouterr().out)
    built = nbformat.read(notebook, as_version=4)
    cell = built.cells[1]
    assert cell.execution_count == 1 and built.metadata.kernelspec.name == "python3"
    assert [o.text for o in cell.outputs if o.output_type == "stream"] == [f"figures in {figures.resolve()}\n"]
    [png] = [o.data["image/png"] for o in cell.outputs if "image/png" in o.get("data", {})]
    width, height = Image.open(io.BytesIO(base64.b64decode(png))).size
    assert 0.9 * 2 * 60 <= width <= 2 * 60  # a 2-inch figure at the build's 60 dpi (the tight box trims a little)
    after = snapshot(tmp_path)
    changed = {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}
    assert changed == {Path("repo/notebooks/01_tiny.ipynb"), Path("repo/figures/tiny.png")}
    assert snapshot(ROOT / "figures") == repository_figures


def test_build_leaves_a_failing_notebook_as_it_was(tmp_path, capsys):
    notebook = write_notebook(tmp_path / "01_broken.ipynb", "x = 1", "raise ValueError('boom')")
    before = snapshot(tmp_path)
    assert main(["course", "--build", "--notebooks", str(notebook), "--figures", str(tmp_path / "figures")]) == 2
    assert capsys.readouterr().err == (f"vp2p: error: {notebook} stopped at a cell that raised ValueError: boom; "
                                       "the notebook was left as it was\n")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("args, message", [
    (["--notebooks", "notebooks/01_inflation.py"], "notebooks/01_inflation.py is not a notebook file (.ipynb); pass "
                                                   "the .ipynb, not its .py twin"),
    (["--dpi", "5"], "--dpi 5 must be a whole number of at least 10, e.g. 60"),
])
def test_build_checks_its_arguments_before_running_anything(args, message, capsys):
    assert main(["course", "--build", *args]) == 2
    assert capsys.readouterr().err == f"vp2p: error: {message}\n"
