"""The ``vp2p`` command, run in-process on the tiny model: results, one-line errors raised before the long stages,
nothing of the user's written over, help texts, and the install commands the README promises."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tiny import smooth_video
from vp2p.cli import build_parser, main
from vp2p.editing import parse_weights

ROOT = Path(__file__).resolve().parent.parent
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"


def write_frames(folder, frames):
    folder.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i}.png")
    return folder


def snapshot(folder) -> dict:
    """Every file below ``folder`` with its bytes: what a refused command must leave as it was."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def error_of(args, capsys) -> str:
    """Run the command, which must fail with exit status 2 and one line on stderr; return that line."""
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.err.endswith("\n") and captured.err.count("\n") == 1, captured.err
    return captured.err.rstrip("\n")


@pytest.fixture
def no_long_stages(monkeypatch):
    """Refused commands must stop before loading a model (or, for errors that need the model, before tuning)."""
    import vp2p.io.loading
    import vp2p.workflow

    def loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the error")

    def tuning(*args, **kwargs):
        raise AssertionError("tuning started before the error")

    monkeypatch.setattr(vp2p.io.loading, "load_pipeline", loading)
    monkeypatch.setattr(vp2p.workflow, "prepare", tuning)


@pytest.fixture
def no_tuning(monkeypatch):
    import vp2p.workflow

    def tuning(*args, **kwargs):
        raise AssertionError("tuning started before the error")

    monkeypatch.setattr(vp2p.workflow, "prepare", tuning)


def edit_args(video, out, model, *more):
    return ["edit", str(video), "--source", "a red circle", "--target", "a blue circle", "--out", str(out),
            "--model", str(model), "--frames", "2", "--size", "32", "--tune-steps", "1", "--steps", "2", *more]


# -- results ---------------------------------------------------------------------------------------------------------

def test_edit_runs_end_to_end_and_caches_the_long_stages(tiny_model_dir, tmp_path, capsys, monkeypatch):
    video = write_frames(tmp_path / "clip", smooth_video(3))
    out = tmp_path / "out"
    args = ["edit", str(video), "--source", "a red circle on the grass", "--target", "a blue circle on the grass",
            "--out", str(out), "--model", str(tiny_model_dir), "--frames", "3", "--size", "32",
            "--tune-steps", "2", "--steps", "4", "--blend", "circle", "circle"]
    assert main(args) == 0
    printed = capsys.readouterr()
    report = json.loads(printed.out)
    for name in ("source", "reconstruction", "edit"):
        for suffix in ("gif", "mp4"):
            assert (out / f"{name}.{suffix}").stat().st_size > 0
    from vp2p.inversion import psnr
    from vp2p.io.video import read_video

    # the reconstruction's PSNR, as measured on the frames the run inverted (the written gif holds them exactly)
    frames = read_video(out / "source.gif", num_frames=3, size=None)
    recon = read_video(out / "reconstruction.gif", num_frames=3, size=None)
    assert abs(report["reconstruction_psnr"] - np.mean([psnr(a, b) for a, b in zip(recon, frames)])) < 1.0
    assert "toy_evaluator_reads" not in report  # not the toy model: no evaluator for its world
    assert printed.err.splitlines()[-1] == (  # after the progress bars
        f"vp2p: wrote source.gif, source.mp4, reconstruction.gif, reconstruction.mp4, edit.gif, edit.mp4 to {out}/ "
        f"(and the tuned weights and inversion to {out}/cache/)")
    assert report["seconds"]["tune"] > 0
    cached = {p.name: p.stat().st_mtime_ns for p in (out / "cache").iterdir()}
    assert [re.sub(r"-[0-9a-f]{16}\.", "-KEY.", name) for name in sorted(cached)] == [
        "inversion-KEY.safetensors", "tuned-KEY.safetensors"]  # named by the key of their inputs
    # a second run with the same inputs reuses the cached tuning and inversion: the long stages would fail if
    # called, and not one cache file is rewritten
    def long_stage(*args, **kwargs):
        raise AssertionError("a cached stage ran again")

    import vp2p.inversion
    import vp2p.workflow

    monkeypatch.setattr(vp2p.workflow, "tune", long_stage)
    monkeypatch.setattr(vp2p.inversion, "ddim_invert", long_stage)
    monkeypatch.setattr(vp2p.inversion, "null_text_optimization", long_stage)
    assert main(args + ["--overwrite"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cache").iterdir()} == cached


def test_edit_on_the_toy_says_what_it_reads_and_warns_off_its_world(tmp_path, capsys):
    """On the toy model: what its evaluator reads in the source and the edit; frames of 128² (it was trained at
    64²) and a reconstruction far below its own world's are said, each as one warning line."""
    from vp2p.toy import world

    scene = world.Scene("red", "circle", "grass", "bouncing", seed=7)
    clip = write_frames(tmp_path / "clip", world.render(scene, num_frames=2, size=128).frames)
    noise = write_frames(tmp_path / "noise", np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), np.uint8))
    common = ["--source", scene.caption, "--target", scene.replace(color="blue").caption, "--frames", "2",
              "--tune-steps", "1", "--steps", "2", "--method", "fast"]
    assert main(["edit", str(clip), "--out", str(tmp_path / "big"), "--size", "128", *common]) == 0
    printed = capsys.readouterr()
    report = json.loads(printed.out)
    assert set(report["toy_evaluator_reads"]) == {"source", "edit"}
    assert report["toy_evaluator_reads"]["source"].endswith("on the grass")
    assert "vp2p: warning: the toy model was trained on 64x64 frames; at 128x128 it reconstructs and edits " \
           "poorly" in printed.err
    assert main(["edit", str(noise), "--out", str(tmp_path / "noise-out"), *common]) == 0
    printed = capsys.readouterr()
    report = json.loads(printed.out)
    assert report["reconstruction_psnr"] < 20 and report["warning"].startswith("the toy model reconstructs this clip")
    warnings = [line for line in printed.err.splitlines() if line.startswith("vp2p: warning:")]
    assert warnings == [f"vp2p: warning: {report['warning']}"]


def test_edit_refuses_to_overwrite_results_before_the_long_stages(tiny_model_dir, tmp_path, capsys, monkeypatch):
    video = write_frames(tmp_path / "clip", smooth_video(2))
    out = tmp_path / "o"
    assert main(edit_args(video, out, tiny_model_dir)) == 0
    capsys.readouterr()
    before = snapshot(tmp_path)
    import vp2p.workflow

    monkeypatch.setattr(vp2p.workflow, "prepare", lambda *a, **k: pytest.fail("tuning started before the refusal"))
    assert error_of(edit_args(video, out, tiny_model_dir), capsys) == (
        f"vp2p: error: {out} already holds source.gif, source.mp4, reconstruction.gif, reconstruction.mp4, "
        "edit.gif, edit.mp4; pass --overwrite to replace them, or choose another out folder")
    assert snapshot(tmp_path) == before


# -- bad inputs: one per kind, each a one-line error before the long stages, the user's files untouched ------------

BAD_NUMBERS = [
    (["--steps", "0"], "--steps 0 must be a whole number of DDIM steps >= 1 (official 50, toy 25)"),
    (["--tune-steps", "-1"], "--tune-steps -1 must be a whole number >= 0: 0 skips tuning (official 500, toy 50)"),
    (["--threshold", "5"], "--threshold 5.0 must be between 0 and 1, both excluded (official 0.3): the blend mask "
                           "keeps what is above this share of each frame's maximum, so at 1 or more it is empty and "
                           "the edit equals the reconstruction"),
    (["--guidance", "0.5"], "--guidance 0.5 must be 1 or more: 1 is no guidance (official 7.5)"),
    (["--cross-replace", "1.5"], "--cross-replace 1.5 must be a fraction of the steps in [0, 1] or a pair "
                                 "0 <= start <= end <= 1, or a dict of those per word with 'default_' (official 0.2)"),
    (["--self-replace", "-0.1"], "--self-replace -0.1 must be a fraction of the steps in [0, 1] or a pair "
                                 "0 <= start <= end <= 1 (official 0.5)"),
    (["--frames", "0"], "--frames 0 must be at least 1; use e.g. --frames 8"),
    (["--stride", "0"], "--stride 0 must be at least 1; use --stride 1 for consecutive frames"),
    (["--start", "-1"], "--start -1 must be 0 or more; use --start 0 for the first frame"),
    (["--size", "30"], "--size 30 is not divisible by 8; use 24 or 32 (Stable Diffusion's VAE works on 8x8 pixel "
                       "blocks)"),
]


@pytest.mark.parametrize("flags, message", BAD_NUMBERS, ids=[flags[0] for flags, _ in BAD_NUMBERS])
def test_bad_numbers_are_refused_before_loading_the_model(flags, message, tmp_path, capsys, no_long_stages):
    video = write_frames(tmp_path / "clip", smooth_video(2))
    before = snapshot(tmp_path)
    args = ["edit", str(video), "--source", "a red circle", "--target", "a blue circle", "--out",
            str(tmp_path / "out"), *flags]
    assert error_of(args, capsys) == f"vp2p: error: {message}"
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()


BAD_WORDS = [
    ("a big blue circle", [], "Replace (word swap) needs prompts that differ only in swapped words, but 'a red circle' "
                              "has 3 words and 'a big blue circle' has 4. Use Refine (--refine) to add or remove "
                              "words."),
    ("a blue circle", ["--blend", "square", "circle"],
     "blend word 'square' is not in the prompt 'a red circle'; its words are ['a', 'red', 'circle']. Pick a word of "
     "that prompt (or fix the spelling)."),
    ("a blue circle", ["--reweight", "striped=2"],
     "reweight word 'striped' is not in the prompt 'a blue circle'; its words are ['a', 'blue', 'circle']. Pick a "
     "word of that prompt (or fix the spelling)."),
]


@pytest.mark.parametrize("target, flags, message", BAD_WORDS, ids=["word-count", "blend-word", "reweight-word"])
def test_words_of_the_edit_are_checked_before_tuning(target, flags, message, tiny_model_dir, tmp_path, capsys,
                                                     no_tuning):
    video = write_frames(tmp_path / "clip", smooth_video(2))
    before = snapshot(tmp_path)
    args = ["edit", str(video), "--source", "a red circle", "--target", target, "--out", str(tmp_path / "out"),
            "--model", str(tiny_model_dir), "--frames", "2", "--size", "32", *flags]
    assert error_of(args, capsys) == f"vp2p: error: {message}"
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()


def test_reweight_value_must_be_a_number(tmp_path, capsys, no_long_stages):
    args = ["edit", str(tmp_path), "--source", "a red circle", "--target", "a red striped circle", "--refine",
            "--out", str(tmp_path / "out"), "--reweight", "striped=two"]
    assert error_of(args, capsys) == (
        "vp2p: error: argument --reweight: reweight value 'two' for 'striped' is not a number; write WORD=NUMBER, "
        "e.g. striped=2 (0 removes the word, 1 leaves it, 2 doubles its attention) (see vp2p edit -h)")
    assert build_parser().parse_args(["edit", "v", "--source", "s", "--target", "t", "--out", "o",
                                      "--reweight", "striped=2", "red=0.5"]).reweight == [("striped", 2.0),
                                                                                         ("red", 0.5)]


def test_reweight_arguments_are_parsed_and_checked():
    assert parse_weights(["striped=2", "red=0.5"]) == {"striped": 2.0, "red": 0.5}
    with pytest.raises(ValueError, match="WORD=NUMBER"):
        parse_weights(["striped"])


def test_toy_model_refuses_words_it_does_not_know(tmp_path, capsys, no_long_stages):
    clip = write_frames(tmp_path / "rabbit", smooth_video(2))
    before = snapshot(tmp_path)
    args = ["edit", str(clip), "--source", "a rabbit is jumping on the grass", "--target",
            "a cat is jumping on the grass", "--out", str(tmp_path / "out")]
    line = error_of(args, capsys)
    assert line.startswith("vp2p: error: the toy model does not know 'rabbit', 'jumping' (in the source prompt "
                           "'a rabbit is jumping on the grass'): it only draws its synthetic world of coloured "
                           "shapes, with the words a an the on in at of with and is red ")
    assert line.endswith("Describe a toy scene with those words, or for real footage use Stable Diffusion: "
                         f"--model {SD15} (a GPU and internet) or a local Stable Diffusion folder")
    assert snapshot(tmp_path) == before


def test_a_file_that_is_not_a_video_says_so(tmp_path, capsys, no_long_stages):
    clip = tmp_path / "holiday.mp4"
    clip.write_bytes(b"these bytes are not a video")
    args = ["edit", str(clip), "--source", "a red circle", "--target", "a blue circle", "--out", str(tmp_path / "o")]
    assert error_of(args, capsys) == (
        f"vp2p: error: {clip} (27 bytes) is not a video ffmpeg can read; pass a video file (.mp4, .mov, .webm, "
        ".avi, .mkv, .m4v, .gif) or a folder of frames")
    assert clip.read_bytes() == b"these bytes are not a video" and not (tmp_path / "o").exists()


def test_too_few_frames_names_the_flags(tmp_path, capsys, no_long_stages):
    clip = write_frames(tmp_path / "clip", smooth_video(3))
    args = ["edit", str(clip), "--source", "a red circle", "--target", "a blue circle", "--out", str(tmp_path / "o"),
            "--stride", "2"]
    assert error_of(args, capsys) == (
        f"vp2p: error: folder {clip} has 3 frames, but --frames 8, --start 0, --stride 2 need 15 (frame indices "
        "0..14); lower --frames to 2 (or lower --start 0 or --stride 2)")


def test_an_offline_hub_id_is_one_line_naming_the_id_and_the_fix(tmp_path, capsys):
    from huggingface_hub import try_to_load_from_cache

    if try_to_load_from_cache(SD15, "model_index.json") is not None:
        pytest.skip("Stable Diffusion 1.5 is in this machine's hub cache: it would load, not fail")
    clip = write_frames(tmp_path / "clip", smooth_video(2))
    args = ["edit", str(clip), "--source", "a rabbit", "--target", "a cat", "--out", str(tmp_path / "o"),
            "--model", SD15, "--frames", "2"]  # conftest sets HF_HUB_OFFLINE=1
    start = time.perf_counter()
    assert error_of(args, capsys) == (
        f"vp2p: error: could not reach the Hugging Face hub to download {SD15} (HF_HUB_OFFLINE is set), and it is "
        "not in the local cache; pass 'toy' or a local folder saved with save_pretrained, or connect to the internet "
        "(and unset HF_HUB_OFFLINE) and run again")
    assert time.perf_counter() - start < 20  # no half-minute of retries (the 20 s: importing diffusers, loaded CI)
    assert not (tmp_path / "o").exists()


def test_debug_shows_the_traceback(tmp_path):
    clip = tmp_path / "notes.mp4"
    clip.write_text("not a video")
    args = ["edit", str(clip), "--source", "a red circle", "--target", "a blue circle", "--out", str(tmp_path / "o")]
    for debug in (args + ["--debug"], ["--debug"] + args):
        with pytest.raises(ValueError, match="is not a video ffmpeg can read"):
            main(debug)


def test_an_unexpected_error_names_its_type(monkeypatch, capsys):
    import vp2p.toy.demo

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory\nTried to allocate 2 GiB")

    monkeypatch.setattr(vp2p.toy.demo, "run_demo", broken)
    assert error_of(["demo"], capsys) == ("vp2p: error: RuntimeError: CUDA out of memory Tried to allocate 2 GiB "
                                          "(run again with --debug for the traceback)")


# -- nothing of the user's is written over --------------------------------------------------------------------------

def test_edit_never_writes_over_its_input_even_with_overwrite(tiny_model_dir, tmp_path, capsys, no_tuning):
    from vp2p.io.video import write_video

    clip = write_video(tmp_path / "source.mp4", smooth_video(8))
    before = snapshot(tmp_path)
    line = error_of(edit_args(clip, tmp_path, tiny_model_dir, "--overwrite"), capsys)
    assert line == (f"vp2p: error: writing {clip} would change the input {clip}; choose an out folder outside the "
                    "input (vp2p never writes over what it was given, even with --overwrite)")
    assert snapshot(tmp_path) == before


def test_edit_never_writes_into_the_folder_of_its_frames(tiny_model_dir, tmp_path, capsys, no_tuning):
    frames = write_frames(tmp_path / "frames", smooth_video(2))
    before = snapshot(tmp_path)
    line = error_of(edit_args(frames, frames / "results", tiny_model_dir, "--overwrite"), capsys)
    assert line == (f"vp2p: error: writing {frames}/results/source.gif would change the input {frames}; choose an "
                    "out folder outside the input (vp2p never writes over what it was given, even with --overwrite)")
    assert snapshot(tmp_path) == before


def test_edit_refuses_a_cache_folder_it_did_not_write(tiny_model_dir, tmp_path, capsys, no_tuning):
    clip = write_frames(tmp_path / "clip", smooth_video(2))
    (tmp_path / "out" / "cache").mkdir(parents=True)
    (tmp_path / "out" / "cache" / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    line = error_of(edit_args(clip, tmp_path / "out", tiny_model_dir, "--overwrite"), capsys)
    assert line == (f"vp2p: error: {tmp_path}/out/cache holds files vp2p did not write (notes.txt); vp2p would keep "
                    "its tuned weights and inversions there: choose another out folder")
    assert snapshot(tmp_path) == before


def test_demo_refuses_a_folder_holding_files_of_its_names(tmp_path, capsys, no_long_stages):
    (tmp_path / "source.gif").write_bytes(b"my holiday")
    (tmp_path / "attention.png").write_bytes(b"my chart")
    before = snapshot(tmp_path)
    assert error_of(["demo", "--out", str(tmp_path)], capsys) == (
        f"vp2p: error: {tmp_path} already holds source.gif, attention.png; pass --overwrite to replace them, or "
        "choose another out folder")
    assert snapshot(tmp_path) == before


def test_the_demo_replaces_its_own_earlier_results_and_nothing_else(tmp_path, capsys, no_long_stages):
    """The README's one-liner, run twice: the second run replaces the first's files (its metrics.json says they
    are the demo's); a file of the user's in the folder is left alone."""
    from vp2p.toy import demo

    for name in demo.output_files():
        (tmp_path / name).write_bytes(b"an earlier demo's")
    (tmp_path / "metrics.json").write_text(json.dumps({**demo.MARK, "reconstruction_psnr": 30.0}))
    (tmp_path / "notes.txt").write_text("mine")
    # past the output checks: it goes on to load the model (here refused by the fixture, as a sign it got there)
    assert error_of(["demo", "--out", str(tmp_path)], capsys) == (
        "vp2p: error: AssertionError: the model was loaded before the error (run again with --debug for the "
        "traceback)")
    assert (tmp_path / "notes.txt").read_text() == "mine"
    (tmp_path / "metrics.json").write_text(json.dumps({"my": "numbers"}))  # not a demo's: refused as before
    assert error_of(["demo", "--out", str(tmp_path)], capsys).startswith(f"vp2p: error: {tmp_path} already holds")


def test_demo_refuses_a_cache_folder_it_did_not_write_even_with_overwrite(tmp_path, capsys, no_long_stages):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "thesis.pdf").write_bytes(b"%PDF")
    before = snapshot(tmp_path)
    assert error_of(["demo", "--out", str(tmp_path), "--overwrite"], capsys) == (
        f"vp2p: error: {tmp_path}/cache holds files vp2p did not write (thesis.pdf); vp2p would keep its tuned "
        "weights and inversions there: choose another out folder")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["demo", "toy-bench"])
def test_demo_and_toy_bench_refuse_a_model_outside_the_toy_world(command, tiny_model_dir, tmp_path, capsys,
                                                                  no_long_stages):
    """Both render 64x64 toy clips and judge them with the toy evaluator: a Stable Diffusion model (here the tiny
    32-px one, or a hub id) is refused before it is loaded, instead of being run on the toy's clips."""
    for model, made in ((tiny_model_dir, "makes 32x32 frames"), (SD15, "is not a local model folder")):
        line = error_of([command, "--out", str(tmp_path / "out"), "--model", str(model)], capsys)
        assert line.startswith(f"vp2p: error: vp2p {command} runs models of the toy world") and made in line, line
        assert f"--model '{model}'" in line and f"vp2p edit VIDEO --model {model}" in line
    assert not (tmp_path / "out").exists()


def test_out_must_be_a_folder(tmp_path, capsys, no_long_stages):
    (tmp_path / "results").write_text("a file")
    assert error_of(["demo", "--out", str(tmp_path / "results")], capsys) == (
        f"vp2p: error: --out '{tmp_path}/results' is a file, not a folder; choose a folder for the results")
    assert (tmp_path / "results").read_text() == "a file"


# -- help --------------------------------------------------------------------------------------------------------------

def subcommands() -> dict:
    action = next(a for a in build_parser()._actions if a.dest == "command")
    return action.choices


def test_every_option_has_a_help_text_with_its_default():
    for name, parser in {"vp2p": build_parser(), **subcommands()}.items():
        for action in parser._actions:
            if action.dest in ("help", "command"):
                continue
            assert action.help, f"{name} {action.option_strings or action.dest} has no help text"
            if action.option_strings:
                assert "(default:" in action.help or "(required)" in action.help, (name, action.option_strings)


def test_edit_help_gives_the_defaults_of_the_settings():
    from vp2p.inversion import METHODS
    from vp2p.workflow import TOY_SETTINGS, Settings

    official = Settings()
    helps = {a.dest: a.help for a in subcommands()["edit"]._actions}
    tune_default = f"(default: {TOY_SETTINGS.tune_steps} on the toy model, {official.tune_steps} otherwise"
    assert tune_default in helps["tune_steps"]
    assert f"(default: {TOY_SETTINGS.num_steps} on the toy model, {official.num_steps} otherwise" in helps["steps"]
    assert f"(default: {official.guidance_scale})" in helps["guidance"]
    assert f"(default: {official.cross_replace_steps})" in helps["cross_replace"]
    assert f"(default: {official.self_replace_steps})" in helps["self_replace"]
    assert f"(default: {official.threshold})" in helps["threshold"]
    assert f"(default: {official.method})" in helps["method"]
    method = next(a for a in subcommands()["edit"]._actions if a.dest == "method")
    assert tuple(method.choices) == METHODS


def test_help_answers_without_importing_torch():
    code = ("import contextlib, io, sys\nfrom vp2p.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    codes = [main(['--help']), main(['edit', '-h']), main(['demo', '-h'])]\n"
            "print(codes, sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[0, 0, 0] []"


def test_parser_defaults():
    args = build_parser().parse_args(["demo"])
    assert (args.out, args.model, args.debug) == ("demo", "toy", False)
    args = build_parser().parse_args(["toy-bench", "--out", "b"])
    assert (args.t2i, args.videos) == (200, 20)
    edit = build_parser().parse_args(["edit", "v", "--source", "s", "--target", "t", "--out", "o", "--guidance", "5"])
    assert np.isclose(edit.guidance, 5.0) and (edit.frames, edit.start, edit.stride, edit.size) == (8, 0, 1, None)
    assert build_parser().parse_args(["course", "--build"]).dpi == 60


def test_train_toy_passes_its_options_on(monkeypatch):
    import vp2p.toy.train

    received = []
    monkeypatch.setattr(vp2p.toy.train, "main", lambda argv, prog: received.append((argv, prog)))
    assert main(["train-toy", "--work", "runs/toy", "--overwrite"]) == 0
    assert received == [(["--work", "runs/toy", "--overwrite"], "vp2p train-toy")]


def test_train_toy_help_is_the_training_scripts_own_under_the_subcommands_name(capsys):
    from vp2p.toy.train import build_parser as train_parser

    with pytest.raises(SystemExit) as stop:  # argparse's -h: exit 0 after the help
        main(["train-toy", "-h"])
    assert stop.value.code == 0
    # derived from the parser, not pinned: whatever options the script has, -h shows exactly its help
    printed = capsys.readouterr().out
    parser = train_parser("vp2p train-toy")
    assert printed == parser.format_help()
    assert printed.startswith("usage: vp2p train-toy ")  # named as the user typed it, not "train.py"
    options = [o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"]
    assert len(options) >= 10 and all(o in printed for o in options), options


def test_version(capsys):
    from vp2p import __version__

    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out == f"vp2p {__version__}\n"


@pytest.mark.parametrize("flags, message", [
    (["--videos", "0"], "argument --videos: 0 is not a count to measure; give at least 1"),
    (["--videos", "-1"], "argument --videos: -1 is not a count to measure; give at least 1"),
    (["--t2i", "-5"], "argument --t2i: -5 is not a count to measure; give at least 1"),
    (["--attention", "many"], "argument --attention: 'many' is not a whole number; give a count of at least 1"),
])
def test_toy_bench_counts_are_refused_when_parsed(flags, message, tmp_path, capsys, no_long_stages):
    # before: a traceback after a minute of loading the model and measuring text-to-image accuracy
    assert error_of(["toy-bench", "--out", str(tmp_path), *flags], capsys) == (
        f"vp2p: error: {message} (see vp2p toy-bench -h)")
    assert list(tmp_path.iterdir()) == []


def test_course_needs_an_action(capsys):
    assert error_of(["course"], capsys) == ("vp2p: error: say what to do with the course: --build (run the notebooks "
                                            "in place) or --student DIR (write the student notebooks); see vp2p "
                                            "course -h")


# -- install: the README's two commands and CI ------------------------------------------------------------------------

def readme_commands() -> list[str]:
    """The commands of the README's first code block (its install-and-run promise), comments left out."""
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_promises_two_commands_and_ci_runs_the_test_one_verbatim():
    demo, tests = readme_commands()
    cpu_torch = "python -m pip install torch --index-url https://download.pytorch.org/whl/cpu"
    assert demo.startswith(cpu_torch + " && ") and demo.endswith("vp2p demo --out demo")
    assert tests.startswith(cpu_torch + " && ") and tests.endswith("python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci
    assert ci.index("python -m pip install -q torch==2.13.0") < ci.index(tests)  # the CPU build on disk, first


def test_environment_yml_takes_the_cpu_build_of_torch_and_the_kit_with_its_extras():
    lines = [line.strip() for line in (ROOT / "environment.yml").read_text().splitlines()]
    assert "- --extra-index-url https://download.pytorch.org/whl/cpu" in lines
    assert '- -e ".[dev,course]"' in lines
