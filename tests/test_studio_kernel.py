"""The studio's error paths in a real IPython kernel (nbclient), where they used to go wrong.

Driven from plain Python the studio always showed the right message; in a kernel, the work ran inside
``with self.log:`` (an ipywidgets ``Output``), whose ``__exit__`` swallows the exception in IPython, so the status
line said ``UnboundLocalError: cannot access local variable 'result'`` (edit) or ``AttributeError: 'NoneType' object
has no attribute 'inversion'`` (a failed prepare), and a failed prepare kept the old run. Here a small generated
notebook builds the studio on the toy model (a 1-step tuning, 2 DDIM steps: seconds), tries each mistake a class
makes, and prints what the status line says; the test reads it back.
"""

import json
import textwrap

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

CELLS = [
    """
    import html, json, re, time
    import numpy as np
    from vp2p import load_pipeline
    from vp2p import course
    from vp2p.course import studio
    from vp2p.io.video import write_video
    from vp2p.workflow import Settings

    SETTINGS = Settings(tune_steps=1, method="fast", num_steps=2)
    SCENE = course.SCENE
    pipe = load_pipeline("toy", device="cpu")
    app = studio.Studio(pipe, SETTINGS, root=ROOT / "work", scenes={SCENE.caption: SCENE})
    seen = []  # every status line, as the page would show them one after another
    app.status.observe(lambda change: seen.append(change["new"]), names="value")
    started = time.perf_counter()
    app.show(wait=False)  # as under Voilà: prepared in a background thread, its progress in the status line
    returned = time.perf_counter() - started
    app.wait()
    prepared = time.perf_counter() - started

    def text(markup):  # the status line as the page shows it
        return html.unescape(re.sub(r"<[^>]+>", "", markup))

    def attempt(target, blend=("circle", "circle"), weights="", mode="Replace"):
        c = app.controls
        c["target"].value, c["weights"].value, c["mode"].value = target, weights, mode
        c["blend_source"].value, c["blend_target"].value = blend
        c["run"].click()
        return text(app.status.value)
    """,
    """
    BLUE = SCENE.replace(color="blue").caption
    report = {
        "first": {"returned": returned, "prepared": prepared, "ready": text(app.status.value),
                  "psnr": float(np.mean(app.run.inversion.frame_psnr)),
                  "progress": [text(s) for s in seen if "preparing" in s]},
        "blend word missing": attempt(BLUE, blend=("circle", "square")),
        "unknown word": attempt("a blue dog bouncing on the grass"),
        "Replace with an added word": attempt("a red striped circle bouncing on the grass"),
        "reweight word absent": attempt(BLUE, weights="origami=2"),
        "prompt over 77 tokens": attempt(" ".join(["red"] * 80), blend=("", "")),
        "a good edit": attempt(BLUE),
    }
    edited = app.last_edit
    # a prepare that fails leaves nothing to edit: not the old run, not "ready"
    app.controls["source"].value = "a red dog bouncing on the grass"
    app.controls["prepare"].click()
    report["failed prepare"] = {"status": text(app.status.value), "run": app.run is not None,
                                "edit enabled": not app.controls["run"].disabled}
    # choosing "your own clip": the previous clip can no longer be edited
    app.controls["clip"].value = studio.UPLOAD
    report["own clip chosen"] = {"edit enabled": not app.controls["run"].disabled, "run": app.run is not None}
    clip = ROOT / "my clip.gif"
    write_video(clip, course.clip(pipe), fps=4)
    app._on_upload({"new": ({"name": clip.name, "content": memoryview(clip.read_bytes())},)})
    app.controls["source"].value = "a rabbit is jumping on the grass"  # natural language: not the toy's words
    app.controls["prepare"].click()
    report["upload, natural-language prompt"] = {"status": text(app.status.value), "run": app.run is not None,
                                                 "edit enabled": not app.controls["run"].disabled}
    noise = ROOT / "noise.gif"  # nothing the toy's world holds
    write_video(noise, np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8), fps=4)
    app._on_upload({"new": ({"name": noise.name, "content": memoryview(noise.read_bytes())},)})
    app.controls["source"].value = SCENE.caption
    app.controls["prepare"].click()
    report["upload of noise"] = {"status": text(app.status.value), "psnr": float(np.mean(app.run.inversion.frame_psnr))}
    print(json.dumps(report))
    """,
]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio_kernel")
    cells = [nbformat.v4.new_code_cell(f"from pathlib import Path\nROOT = Path({str(root)!r})")]
    cells += [nbformat.v4.new_code_cell(textwrap.dedent(source).strip()) for source in CELLS]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": root}}
                            ).execute()
    printed = "".join(o.get("text", "") for o in notebook.cells[-1].outputs if o.get("name") == "stdout")
    return json.loads(printed.strip().splitlines()[-1])


def test_the_first_clip_shows_its_progress_while_it_is_prepared(report):
    first = report["first"]
    assert first["returned"] < first["prepared"] / 2, first  # show() returned; the preparation went on
    assert any("1/2 tuning the model on the clip (1 steps)" in line for line in first["progress"]), first
    assert any("2/2 inverting the clip (fast, 2 DDIM steps)" in line for line in first["progress"]), first
    assert first["ready"].startswith("ready: 'a red circle bouncing on the grass' — tuned and inverted")
    assert ("reconstructs this clip at" in first["ready"]) == (first["psnr"] < 20), first


@pytest.mark.parametrize("case, message", [
    ("blend word missing", "blend word 'square' is not in the prompt 'a blue circle bouncing on the grass'"),
    ("unknown word", "the toy model does not know 'dog' (in the target prompt 'a blue dog bouncing on the grass')"),
    ("Replace with an added word", "Replace"),
    ("reweight word absent", "reweight word 'origami' is not in the prompt"),
    ("prompt over 77 tokens", "exceed the model's 77; shorten the prompt"),
])
def test_each_mistake_shows_its_own_message_in_the_status_line(report, case, message):
    status = report[case]
    assert message in status, status
    assert "UnboundLocalError" not in status and "AttributeError" not in status and "\n" not in status


def test_a_good_edit_still_works_after_the_mistakes(report):
    assert report["a good edit"].startswith("edited in"), report["a good edit"]


def test_a_failed_prepare_leaves_nothing_to_edit(report):
    failed = report["failed prepare"]
    assert "the toy model does not know 'dog'" in failed["status"] and not failed["status"].startswith("ready")
    assert failed["run"] is False and failed["edit enabled"] is False


def test_choosing_your_own_clip_disables_edit_until_it_is_prepared(report):
    assert report["own clip chosen"] == {"edit enabled": False, "run": False}


def test_an_uploaded_clip_with_a_natural_language_prompt_says_what_the_toy_knows(report):
    upload = report["upload, natural-language prompt"]
    assert upload["status"].startswith("the toy model does not know 'rabbit', 'jumping' (in the source prompt"), upload
    assert "Stable Diffusion" in upload["status"] and "NoneType" not in upload["status"]
    assert upload["run"] is False and upload["edit enabled"] is False


def test_a_clip_the_toy_cannot_draw_is_said_in_the_status_line(report):
    noise = report["upload of noise"]
    assert noise["psnr"] < 20 and noise["status"].startswith("ready: 'a red circle bouncing on the grass'"), noise
    assert f"the toy model reconstructs this clip at {noise['psnr']:.1f} dB, far below the ~29 dB" in noise["status"]
