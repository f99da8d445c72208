"""The notebooks' exercises (``vp2p.course.exercises``): the teacher solutions pass their checks, the student versions
fail every check until filled in, a reference body passes, and each kind of mistake gets its own hint.

Only the exercise cells run — the section's import cell, the solution cells and the check cells, exec'd in one
namespace per notebook, in-process — so the whole file takes seconds, not the notebooks' minutes.
"""

import hashlib
import json
import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

from vp2p.course import exercises
from vp2p.course.build import COURSE_GLOB
from vp2p.course.exercises import BEGIN_SOLUTION, END_SOLUTION, EXERCISES, ExerciseFailed, export_student

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
COURSE = sorted(NOTEBOOKS.glob(COURSE_GLOB))
WITHOUT_EXERCISES = {"00_overview", "03_inversion", "04b_knobs"}  # the on-ramp, and the first part of 03 and the second of 04 (their exercises are in 03b and 04)
TEACHER = [path for path in COURSE if path.stem not in WITHOUT_EXERCISES]  # the notebooks with exercises
STUDENT = NOTEBOOKS / "student"


def grading(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def exercise_cells(path) -> list[dict]:
    """The code cells of a notebook's exercise section (those with nbgrader metadata), in order."""
    notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    return [cell for cell in notebook["cells"] if cell["cell_type"] == "code" and grading(cell)]


def run_cells(cells, sources=None) -> dict:
    """Exec ``cells`` in one fresh namespace (``sources``: replacement sources by grade_id). Returns each check
    cell's outcome by grade_id: None when it passed, its ExerciseFailed otherwise."""
    namespace, outcomes = {"__name__": "__exercises__"}, {}
    for cell in cells:
        grade_id = grading(cell)["grade_id"]
        code = compile((sources or {}).get(grade_id, exercises.cell_source(cell)), f"<{grade_id}>", "exec")
        if not grading(cell).get("grade"):
            exec(code, namespace)  # the import and solution cells must run as they are
            continue
        try:
            exec(code, namespace)
            outcomes[grade_id] = None
        except ExerciseFailed as failure:
            outcomes[grade_id] = failure
    return outcomes


def fill(student_source: str, body: str) -> str:
    """A student solution cell with its ``raise NotImplementedError(...)`` replaced by ``body``."""
    lines = student_source.splitlines()
    (index,) = [i for i, line in enumerate(lines) if line.strip().startswith("raise NotImplementedError(")]
    indent = lines[index][: len(lines[index]) - len(lines[index].lstrip())]
    return "\n".join(lines[:index] + [indent + line for line in body.strip("\n").splitlines()] + lines[index + 1 :])


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("student")
    export_student(folder)
    return folder


def student_cells(student_dir, name: str) -> list[dict]:
    """The import cell, the solution cell and the check cell of exercise ``name`` in its student notebook."""
    cells = exercise_cells(student_dir / f"{EXERCISES[name].notebook}.ipynb")
    keep = {f"{EXERCISES[name].notebook.split('_')[0]}_exercises_setup", name, f"check_{name}"}
    return [cell for cell in cells if grading(cell)["grade_id"] in keep]


# -- the teacher versions --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", TEACHER, ids=lambda p: p.stem)
def test_teacher_exercises_pass_their_checks(path, capsys):
    cells = exercise_cells(path)
    solutions = [grading(c)["grade_id"] for c in cells if grading(c).get("solution")]
    checks = [grading(c)["grade_id"] for c in cells if grading(c).get("grade")]
    assert 1 <= len(solutions) <= 3 and checks == [f"check_{name}" for name in solutions]
    assert all(EXERCISES[name].notebook == path.stem for name in solutions)
    assert run_cells(cells) == {check: None for check in checks}
    assert capsys.readouterr().out.count("✓") == len(checks)


def test_every_exercise_has_a_written_out_solution_in_its_notebook():
    solutions = {grading(c)["grade_id"]: exercises.cell_source(c) for path in TEACHER for c in exercise_cells(path)
                 if grading(c).get("solution")}
    assert set(solutions) == set(EXERCISES)
    for name, source in solutions.items():
        region = source.split(BEGIN_SOLUTION)[1].split(END_SOLUTION)[0]
        reference = EXERCISES[name].reference.rsplit(".", 1)[-1]
        # the solution is written out: no call of the function it is compared with, nothing from vp2p by name
        assert f"{reference}(" not in region and "vp2p" not in region and "TRAINABLE_PATTERNS" not in region, name


def test_py_twins_hold_the_same_exercise_cells():
    import jupytext

    for path in TEACHER:
        twin = jupytext.read(path.with_suffix(".py"))
        in_twin = [(grading(c), c.source) for c in twin.cells if c.cell_type == "code" and grading(c)]
        in_ipynb = [(grading(c), exercises.cell_source(c)) for c in exercise_cells(path)]
        assert in_twin == in_ipynb, f"{path.name}: run jupytext --to ipynb --update {path.with_suffix('.py').name}"


# -- the student versions --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", TEACHER, ids=lambda p: p.stem)
def test_student_checks_fail_until_the_solutions_are_written(path, student_dir):
    teacher = json.loads(path.read_text(encoding="utf-8"))
    student = json.loads((student_dir / path.name).read_text(encoding="utf-8"))
    assert len(student["cells"]) == len(teacher["cells"])
    for mine, theirs in zip(teacher["cells"], student["cells"]):
        source, student_source = exercises.cell_source(mine), exercises.cell_source(theirs)
        if theirs["cell_type"] == "code":
            assert theirs["outputs"] == [] and theirs["execution_count"] is None
        if theirs["cell_type"] == "markdown":  # the note on solutions and the Colab badge, for students
            assert student_source == exercises.student_markdown(source)
            continue
        if not grading(mine).get("solution"):
            assert student_source == source
            continue
        kept = source.split(BEGIN_SOLUTION)[0]  # the signature and the docstring
        hint = EXERCISES[grading(mine)["grade_id"]].hint
        assert student_source.startswith(kept.rstrip(" "))
        assert f"raise NotImplementedError({hint!r})" in student_source and BEGIN_SOLUTION not in student_source
    outcomes = run_cells(exercise_cells(student_dir / path.name))
    assert outcomes and all(isinstance(o, ExerciseFailed) and "not written yet" in str(o) for o in outcomes.values())
    assert (student_dir / path.with_suffix(".py").name).exists()


REPLACEMENT_MAPPER = """
mapper = torch.zeros(max_len, max_len)
mapper[0, 0] = 1
for src, tgt in zip(token_spans(source, tokenizer), token_spans(target, tokenizer)):
    if len(src) == len(tgt):
        for i, j in zip(src, tgt):
            mapper[i, j] = 1
    else:
        for j in tgt:
            mapper[src, j] = 1 / len(tgt)
src_end, tgt_end = prompt_length(source, tokenizer) - 1, prompt_length(target, tokenizer) - 1
for k in range(max_len - tgt_end):
    mapper[min(src_end + k, max_len - 1), tgt_end + k] = 1
return mapper
"""

BLEND_MASK = """
score = torch.stack([maps[b, ..., indices].sum(-1) for b, indices in enumerate(token_indices)])
score = F.max_pool2d(score, kernel_size=3, stride=1, padding=1)
score = F.interpolate(score, size=latent_size, mode="nearest")
score = score / score.amax(dim=(-2, -1), keepdim=True)
mask = score > threshold
return mask | mask[:1]
"""

NOISY = """
alpha = scheduler.alphas_cumprod.to(latents)[timesteps].view(-1, 1, 1, 1)
return alpha.sqrt() * latents + (1 - alpha).sqrt() * noise
"""

ADAM_UPDATE = """
null = null.detach().clone().requires_grad_(True)
optimizer = torch.optim.Adam([null], lr=lr * (1 - i / 100))
loss = loss_of(null)
optimizer.zero_grad()
loss.backward()
optimizer.step()
return null.detach()
"""

INVERSE_STEP = """
here, there = schedule.alpha(t - schedule.step_size), schedule.alpha(t)
x0 = (sample - (1 - here) ** 0.5 * model_output) / here ** 0.5
return there ** 0.5 * x0 + (1 - there) ** 0.5 * model_output
"""

GUIDED_STEP = """
uncond_out = unet_output(unet, latent, t, null, num_frames)
step = ddim_step(guide(uncond_out, cond_out, guidance_scale), t, latent, schedule)
"""

MASKED_PSNR = """
keep = ~dilate(masks, dilation)
if not keep.any():
    raise ValueError("no pixel left")
diff = video_a[keep].astype(np.float64) - video_b[keep].astype(np.float64)
mse = float(np.mean(diff**2))
if mse == 0:
    return PSNR_CAP
return float(min(PSNR_CAP, 10 * np.log10(255.0**2 / mse)))
"""

PER_FRAME_MSES = """
keep = ~dilate(masks, dilation)
if not keep.any():
    raise ValueError("no pixel left")
mses = [np.mean((a[k].astype(np.float64) - b[k].astype(np.float64)) ** 2)
        for a, b, k in zip(video_a, video_b, keep) if k.any()]
"""

# Bodies that call vp2p (or, for the Adam update, which vp2p has no function for, write it out): every check passes.
REFERENCE_BODIES = {
    "frame_context": "from vp2p.attention import frame_context as reference\n"
                     "return reference(hidden, num_frames, 'first')",
    "noisy_latents": "from vp2p.tuning import noisy_latents as reference\n"
                     "return reference(scheduler, latents, noise, timesteps)",
    "training_target": "from vp2p.tuning import training_target as reference\n"
                       "return reference(scheduler, latents, noise, timesteps)",
    "ddim_inverse_step": "from vp2p.ddim import ddim_inverse_step as reference\n"
                         "return reference(model_output, t, sample, schedule)",
    "null_text_loss": "from vp2p.inversion import null_text_loss as reference\n"
                      "return reference(unet, latent, t, null, cond_out, target, schedule, num_frames, guidance_scale)",
    "null_text_update": ADAM_UPDATE,
    "replacement_mapper": "from vp2p.alignment import replacement_mapper as reference\n"
                          "return reference(source, target, tokenizer, max_len)",
    "blend_mask": "from vp2p.controllers import LocalBlend\n"
                  "return LocalBlend(token_indices, maps.shape[-1], threshold=threshold).mask(maps, latent_size)",
    "refinement_mapper": "from vp2p.alignment import refinement_mapper as reference\n"
                         "return reference(source, target, tokenizer, max_len)",
    "refine_maps": "from vp2p.controllers import refine_maps as reference\n"
                   "return reference(source, targets, mappers, alphas)",
    "reweight_maps": "from vp2p.controllers import reweight_maps as reference\nreturn reference(maps, equalizer)",
    "equalizer": "from vp2p.editing import equalizer as reference\n"
                 "return reference(prompt, weights, tokenizer, max_len)",
    "masked_psnr": "from vp2p.paper.metrics import masked_psnr as reference\n"
                   "return reference(video_a, video_b, masks, dilate=dilation)",
}


@pytest.mark.parametrize("path", TEACHER, ids=lambda p: p.stem)
def test_student_checks_pass_once_filled_with_a_reference(path, student_dir):
    cells = exercise_cells(student_dir / path.name)
    filled = {grading(c)["grade_id"]: fill(exercises.cell_source(c), REFERENCE_BODIES[grading(c)["grade_id"]])
              for c in cells if grading(c).get("solution")}
    assert run_cells(cells, filled) == {f"check_{name}": None for name in filled}


# (exercise, a wrong body, words its hint must contain)
MISTAKES = [
    ("frame_context", "return hidden", "self-attention"),
    ("frame_context", "return hidden[:1].expand_as(hidden)", "each video reads its own frame 0"),
    ("frame_context", "videos = hidden.view(-1, num_frames, *hidden.shape[1:])\n"
                      "return videos[:, [max(i - 1, 0) for i in range(num_frames)]].reshape(hidden.shape)",
     "previous frame"),
    ("noisy_latents", NOISY.replace("alpha.sqrt() * latents + (1 - alpha).sqrt() * noise",
                                    "(1 - alpha).sqrt() * latents + alpha.sqrt() * noise"), "swapped"),
    ("noisy_latents", NOISY.replace("alpha.sqrt() * latents + (1 - alpha).sqrt() * noise",
                                    "alpha * latents + (1 - alpha) * noise"), "square roots"),
    ("noisy_latents", NOISY.replace("scheduler.alphas_cumprod", "scheduler.alphas"), "alphas_cumprod"),
    ("noisy_latents", NOISY.replace("[timesteps]", "[timesteps[0]]"), "its own timestep"),
    ("noisy_latents", "return noise", "the noise alone"),
    ("training_target", "return latents", "clean latents"),
    ("training_target", "return noise", "'v_prediction'"),
    ("training_target", "if scheduler.config.prediction_type == 'epsilon':\n    return noise\n"
                        "alpha = scheduler.alphas_cumprod[timesteps].view(-1, 1, 1, 1)\n"
                        "return alpha.sqrt() * latents - (1 - alpha).sqrt() * noise", "ε and x₀ swapped"),
    ("ddim_inverse_step", "from vp2p.ddim import ddim_step\nreturn ddim_step(model_output, t, sample, schedule)",
     "sampling step"),
    ("ddim_inverse_step", INVERSE_STEP.replace("schedule.alpha(t - schedule.step_size)", "schedule.alpha(t)"),
     "came back unchanged"),
    ("ddim_inverse_step", INVERSE_STEP.replace("schedule.alpha(t - schedule.step_size), schedule.alpha(t)",
                                               "schedule.alpha(t), schedule.alpha(t + schedule.step_size)"),
     "one step too far"),
    ("ddim_inverse_step", INVERSE_STEP.replace("schedule.alpha(t - schedule.step_size)",
                                               "float(schedule.alphas_cumprod[t - schedule.step_size])"),
     "wraps around"),
    ("null_text_loss", "return F.mse_loss(ddim_step(cond_out, t, latent, schedule), target)",
     "ignores the null embedding"),
    ("null_text_loss", GUIDED_STEP + "return ((step - target) ** 2).sum()", "sum of squares"),
    ("null_text_loss", GUIDED_STEP + "return F.mse_loss(step, latent)", "current latent"),
    ("null_text_loss", "with torch.no_grad():\n" + GUIDED_STEP.replace("\n", "\n    ").rstrip() +
     "\nreturn F.mse_loss(step, target)", "no gradient to null"),
    ("null_text_update", ADAM_UPDATE.replace("lr=lr * (1 - i / 100)", "lr=lr"), "constant learning rate"),
    ("null_text_update", ADAM_UPDATE.replace("torch.optim.Adam", "torch.optim.SGD"), "plain gradient descent"),
    ("null_text_update", ADAM_UPDATE.replace("(1 - i / 100))", "(1 - i / 100), maximize=True)"), "uphill"),
    ("null_text_update", ADAM_UPDATE.replace("optimizer.step()\n", ""), "did not move"),
    ("replacement_mapper", REPLACEMENT_MAPPER.replace("mapper[i, j]", "mapper[j, i]")
     .replace("mapper[src, j]", "mapper[j, src]")
     .replace("mapper[min(src_end + k, max_len - 1), tgt_end + k]",
              "mapper[tgt_end + k, min(src_end + k, max_len - 1)]"),
     "transposed"),
    ("replacement_mapper", REPLACEMENT_MAPPER.replace("= 1 / len(tgt)", "= 1"), "1/n"),
    ("replacement_mapper", REPLACEMENT_MAPPER.replace("mapper[min(src_end + k, max_len - 1), tgt_end + k] = 1",
                                                      "mapper[tgt_end + k, tgt_end + k] = 1"), "the end token"),
    ("replacement_mapper", REPLACEMENT_MAPPER.replace("mapper[0, 0] = 1\n", ""), "the start token"),
    ("blend_mask", BLEND_MASK.replace("return mask | mask[:1]", "return mask"), "union"),
    ("blend_mask", BLEND_MASK.replace("score.amax(dim=(-2, -1), keepdim=True)", "score.amax()"),
     "own maximum"),
    ("blend_mask", BLEND_MASK.replace("score = F.max_pool2d(score, kernel_size=3, stride=1, padding=1)\n", ""),
     "max-pool"),
    ("blend_mask", BLEND_MASK.replace("score > threshold", "score < threshold"), "inverted"),
    ("refinement_mapper", "from vp2p.alignment import refinement_mapper as reference\n"
                          "mapper, alphas = reference(source, target, tokenizer, max_len)\nreturn mapper, 1 - alphas",
     "inverted"),
    ("refinement_mapper", "aligned = align_sequences(tokenizer(source).input_ids[1:-1], "
                          "tokenizer(target).input_ids[1:-1])\n"
                          "mapper, alphas = torch.arange(max_len), torch.ones(max_len)\n"
                          "for j, i in enumerate(aligned):\n"
                          "    mapper[j], alphas[j] = (0, 0.0) if i is None else (i, 1.0)\n"
                          "return mapper, alphas", "start token included"),
    ("refine_maps", "return torch.stack([source[..., mappers[b]] * (1 - alphas[b]) + targets[b] * alphas[b] "
                    "for b in range(len(targets))])", "wrong way round"),
    ("refine_maps", "out = []\nfor b in range(len(targets)):\n    taken = torch.empty_like(source)\n"
                    "    taken[..., mappers[b]] = source\n"
                    "    out.append(taken * alphas[b] + targets[b] * (1 - alphas[b]))\nreturn torch.stack(out)",
     "inverse mapping"),
    ("refine_maps", "return source * alphas[:, None, None, None, :] + targets * (1 - alphas[:, None, None, None, :])",
     "took source token j"),
    ("reweight_maps", "scaled = maps * equalizer[:, None, None, None, :]\n"
                      "return scaled / scaled.sum(-1, keepdim=True)", "renormalised"),
    ("reweight_maps", "return maps * equalizer[0]", "first target's equalizer"),
    ("equalizer", "eq = torch.ones(max_len)\nfor word, span in zip(prompt.split(), token_spans(prompt, tokenizer)):\n"
                  "    if word in weights:\n        eq[[p - 1 for p in span]] = weights[word]\nreturn eq",
     "off by one token"),
    ("equalizer", "eq = torch.ones(max_len)\nfor word, span in zip(prompt.split(), token_spans(prompt, tokenizer)):\n"
                  "    if word in weights:\n        eq[span[0]] = weights[word]\nreturn eq", "every token of the word"),
    ("equalizer", "eq = torch.ones(max_len)\nwords, spans = prompt.split(), token_spans(prompt, tokenizer)\n"
                  "for word, weight in weights.items():\n    eq[spans[words.index(word)]] = weight\nreturn eq",
     "every occurrence"),
    ("masked_psnr", MASKED_PSNR.replace("keep = ~dilate(masks, dilation)", "keep = dilate(masks, dilation)"),
     "inside the masks"),
    ("masked_psnr", PER_FRAME_MSES + "return float(np.mean([min(PSNR_CAP, 10 * np.log10(255.0**2 / mse)) "
                                     "for mse in mses]))", "per-frame PSNRs"),
    ("masked_psnr", PER_FRAME_MSES + "return float(min(PSNR_CAP, 10 * np.log10(255.0**2 / np.mean(mses))))",
     "per-frame MSEs"),
    ("masked_psnr", PER_FRAME_MSES.replace(" if k.any()]", "]") +  # pooled, but a frame without background is nan
     "counts = keep.sum(axis=(1, 2))\nmse = np.sum(counts * np.array(mses)) / counts.sum()\n"
     "return float(min(PSNR_CAP, 10 * np.log10(255.0**2 / mse)))", "no PSNR of its own"),
    ("masked_psnr", MASKED_PSNR.replace("255.0**2", "1.0"), "peak value is 255"),
    ("masked_psnr", MASKED_PSNR.replace(".astype(np.float64)", ""), "wrap around"),
    ("masked_psnr", MASKED_PSNR.replace("~dilate(masks, dilation)", "~masks"), "not grown"),
    ("masked_psnr", MASKED_PSNR.replace("~dilate(masks, dilation)", "~dilate(masks, 2)"), "although dilation is 0"),
    ("masked_psnr", MASKED_PSNR.replace("dilate(masks, dilation)", "dilate(masks, dilation, disk=False)"),
     "by a square"),
    ("masked_psnr", MASKED_PSNR.replace("diff = video_a[keep]", "diff = video_a").replace("video_b[keep]", "video_b")
     .replace("np.mean(diff**2)", "np.mean(diff**2 * keep[..., None])"), "zero errors"),
    ("masked_psnr", MASKED_PSNR.replace("if mse == 0:\n    return PSNR_CAP\n", "")
     .replace("min(PSNR_CAP, 10 * np.log10(255.0**2 / mse))", "10 * np.log10(255.0**2 / mse)"), "PSNR_CAP"),
    ("masked_psnr", MASKED_PSNR.replace('if not keep.any():\n    raise ValueError("no pixel left")\n', ""),
     "raise ValueError"),
]


@pytest.mark.parametrize("name, body, hint", MISTAKES, ids=[f"{n}-{h.split()[0]}" for n, _, h in MISTAKES])
def test_a_wrong_solution_fails_with_the_hint_that_names_the_mistake(name, body, hint, student_dir):
    cells = student_cells(student_dir, name)
    outcome = run_cells(cells, {name: fill(exercises.cell_source(cells[1]), body)})[f"check_{name}"]
    assert isinstance(outcome, ExerciseFailed), f"{name}: a wrong body passed the check"
    assert hint in str(outcome)


def test_every_exercise_has_its_mistakes_tested():
    assert {name for name, _, _ in MISTAKES} == set(EXERCISES)


# -- the export ------------------------------------------------------------------------------------------------------


def teacher_fingerprint() -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(NOTEBOOKS.iterdir()) if p.is_file())).hexdigest()


def test_export_refuses_a_non_empty_folder_and_the_teacher_folder(tmp_path):
    before = teacher_fingerprint()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_student(tmp_path)
    written = export_student(tmp_path, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert {p.name for p in COURSE} <= {p.name for p in written}
    for folder in (NOTEBOOKS, NOTEBOOKS / "drafts"):
        with pytest.raises(ValueError, match="teacher notebooks"):
            export_student(folder, overwrite=True)
    assert not (NOTEBOOKS / "drafts").exists()
    assert teacher_fingerprint() == before


def without_tool_version(text: str) -> str:
    """A .py twin without jupytext's version line (another jupytext writes the same cells with its own number)."""
    return re.sub(r"(?m)^#\s+jupytext_version: .*$", "", text)


def test_the_repository_student_notebooks_are_the_export_of_the_teacher_ones(tmp_path):
    """notebooks/student/ is what `vp2p course --student notebooks/student --overwrite` writes: after a change to a
    teacher notebook, run it again (this test fails until then)."""
    written = export_student(tmp_path / "student")
    committed = sorted(p.name for p in STUDENT.iterdir())
    assert committed == sorted(p.name for p in written), "run: vp2p course --student notebooks/student --overwrite"
    for path in written:
        mine, theirs = path.read_text(encoding="utf-8"), (STUDENT / path.name).read_text(encoding="utf-8")
        if path.suffix == ".py":
            mine, theirs = without_tool_version(mine), without_tool_version(theirs)
        assert mine == theirs, f"{STUDENT / path.name} is stale: run vp2p course --student notebooks/student --overwrite"


@pytest.mark.parametrize("path", TEACHER, ids=lambda p: p.stem)
def test_student_notebooks_carry_no_widget_state_and_no_teacher_traces(path):
    student = json.loads((STUDENT / path.name).read_text(encoding="utf-8"))
    text = (STUDENT / path.name).read_text(encoding="utf-8")
    assert "widgets" not in student["metadata"]  # a run's saved progress bars and panels (hundreds of KB)
    assert all(not c.get("outputs") for c in student["cells"] if c["cell_type"] == "code")
    assert len(text.encode()) < 0.5 * len(path.read_bytes())  # the teacher's outputs and widget state are gone
    assert "holds solutions" not in text and "holds a solution" not in text and BEGIN_SOLUTION not in text
    assert "raise NotImplementedError" in text and "stops at `raise NotImplementedError(...)` with a hint" in text
    badges = re.findall(r"colab\.research\.google\.com/github/\S+?/notebooks/(\S+?\.ipynb)", text)
    assert badges == [f"student/{path.name}"], badges  # Colab opens the student version, not the solutions


def test_pytest_does_not_run_the_student_notebooks():
    """Their exercises are unsolved: run by nbmake, every one would fail with NotImplementedError."""
    options = tomllib.loads((NOTEBOOKS.parent / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "notebooks" in options["testpaths"] and "--ignore=notebooks/student" in options["addopts"].split()


def test_solution_markers_must_pair():
    assert exercises.replace_solutions("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n",
                                       "raise NotImplementedError('x')") == \
        "def f():\n    raise NotImplementedError('x')"
    with pytest.raises(ValueError, match="never closed"):
        exercises.replace_solutions("    ### BEGIN SOLUTION\n    return 1\n", "pass")
    with pytest.raises(ValueError, match="without"):
        exercises.replace_solutions("    return 1\n    ### END SOLUTION\n", "pass")


def test_cli_course_student_writes_the_student_notebooks_and_refuses_to_overwrite(tmp_path, capsys):
    from vp2p.cli import main

    folder = tmp_path / "class"
    assert main(["course", "--student", str(folder)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(Path(p).name for p in report["student"] if p.endswith(".ipynb")) == [p.name for p in COURSE]
    assert main(["course", "--student", str(folder)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["course", "--student", str(folder), "--overwrite"]) == 0
