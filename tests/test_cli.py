"""The ``vp2p`` command, run in-process on the tiny model."""

import json

import numpy as np
import pytest
from PIL import Image

from tiny import smooth_video
from vp2p.cli import build_parser, main
from vp2p.editing import parse_weights


def write_frames(folder, frames):
    folder.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i}.png")
    return folder


def test_edit_runs_end_to_end_and_caches_the_long_stages(tiny_model_dir, tmp_path, capsys):
    video = write_frames(tmp_path / "clip", smooth_video(3))
    out = tmp_path / "out"
    args = ["edit", str(video), "--source", "a red circle on the grass", "--target", "a blue circle on the grass",
            "--out", str(out), "--model", str(tiny_model_dir), "--frames", "3", "--size", "32",
            "--tune-steps", "2", "--steps", "4", "--blend", "circle", "circle"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    for name in ("source", "reconstruction", "edit"):
        for suffix in ("gif", "mp4"):
            assert (out / f"{name}.{suffix}").stat().st_size > 0
    assert (out / "cache" / "tuned.safetensors").exists()
    assert report["seconds"]["tune"] > 0
    # a second run with the same inputs reuses the cached tuning and inversion
    assert main(args + ["--overwrite"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["seconds"]["tune"] < 0.5 * report["seconds"]["tune"] + 0.5


def test_edit_refuses_to_overwrite_results(tiny_model_dir, tmp_path):
    video = write_frames(tmp_path / "clip", smooth_video(2))
    args = ["edit", str(video), "--source", "a red circle", "--target", "a blue circle", "--out", str(tmp_path / "o"),
            "--model", str(tiny_model_dir), "--frames", "2", "--size", "32", "--tune-steps", "1", "--steps", "2"]
    main(args)
    before = (tmp_path / "o" / "edit.gif").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        main(args)
    assert (tmp_path / "o" / "edit.gif").read_bytes() == before


def test_reweight_arguments_are_parsed_and_checked():
    assert parse_weights(["striped=2", "red=0.5"]) == {"striped": 2.0, "red": 0.5}
    with pytest.raises(ValueError, match="WORD=WEIGHT"):
        parse_weights(["striped"])


def test_parser_defaults():
    args = build_parser().parse_args(["demo"])
    assert (args.out, args.model) == ("demo", "toy")
    args = build_parser().parse_args(["toy-bench", "--out", "b"])
    assert (args.t2i, args.videos) == (200, 20)
    assert np.isclose(build_parser().parse_args(["edit", "v", "--source", "s", "--target", "t", "--out", "o",
                                                 "--guidance", "5"]).guidance, 5.0)
