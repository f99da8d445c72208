"""The shipped toy model: it loads both ways, paints what it is told, and the demo and a reduced bench run."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vp2p import load_pipeline
from vp2p.io.loading import toy_model_path
from vp2p.toy import world
from vp2p.toy.evaluator import read_frame


def test_the_shipped_model_is_small_and_in_stable_diffusion_layout():
    folder = toy_model_path()
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert size <= 30 * 2**20, f"{size / 2**20:.1f} MB"
    for part in ("vae", "text_encoder", "tokenizer", "unet", "scheduler"):
        assert (folder / part).is_dir(), part
    pipe = load_pipeline("toy", device="cpu")
    assert type(pipe.unet).__name__ == "UNet2DConditionModel" and type(pipe.vae).__name__ == "AutoencoderKL"
    assert type(pipe.text_encoder).__name__ == "CLIPTextModel" and type(pipe.tokenizer).__name__ == "CLIPTokenizer"
    assert pipe.vae_scale_factor == 4 and pipe.scheduler.config.prediction_type == "epsilon"


def test_the_shipped_tokenizer_files_alone_give_the_same_tokens(tmp_path):
    # vocab.json + merges.txt are what a transformers without tokenizer.json support (e.g. an older Colab) reads.
    import shutil

    from transformers import CLIPTokenizer

    shipped = toy_model_path() / "tokenizer"
    for name in ("vocab.json", "merges.txt", "special_tokens_map.json"):
        shutil.copy(shipped / name, tmp_path / name)
    files_only = CLIPTokenizer.from_pretrained(tmp_path)
    full = CLIPTokenizer.from_pretrained(shipped)
    for prompt in ("a red striped circle bouncing on the grass at night", "Spider-Man on a zebra, 2026!"):
        assert files_only(prompt).input_ids == full(prompt).input_ids, prompt
    assert len(full("a red striped circle bouncing on the grass").input_ids) == 2 + 8  # one token per toy word


def test_stable_diffusion_pipeline_paints_the_color_it_is_asked_for():
    from diffusers import StableDiffusionPipeline

    sd = StableDiffusionPipeline.from_pretrained(toy_model_path(), safety_checker=None, requires_safety_checker=False)
    sd.set_progress_bar_config(disable=True)
    scenes = [world.Scene(color, "circle", "sand", seed=i) for i, color in enumerate(["red", "blue", "yellow"])]
    images = sd([s.caption for s in scenes], height=64, width=64, num_inference_steps=25, output_type="np",
                generator=torch.Generator().manual_seed(0)).images
    colors = [read_frame((img * 255).round().astype(np.uint8)).color for img in images]
    assert colors == ["red", "blue", "yellow"]


@torch.no_grad()
def test_the_pattern_is_decided_by_its_own_word_token():
    """What reweighting needs: splice "striped" into a plain caption and the stripes come; cut it out, they go."""
    from vp2p.toy import train

    pipe = load_pipeline("toy", device="cpu")
    tokenizer = pipe.tokenizer
    scenes = [world.Scene(c, s, b, attribute="striped", seed=i) for i, (c, s, b) in
              enumerate([("red", "circle", "grass"), ("blue", "square", "sand"), ("yellow", "star", "water"),
                         ("green", "triangle", "sky"), ("white", "circle", "sand"), ("purple", "square", "grass")])]
    ids = tokenizer([s.caption for s in scenes], padding="max_length", max_length=77, return_tensors="pt").input_ids
    positions = train.attribute_positions(ids, tokenizer)
    empty = pipe.encode_text("")
    striped = {}
    for name, kind in (("as is", 0), ("keep", 1), ("drop", 2)):
        states = train.mixed_conditioning(pipe.text_encoder, ids, positions, torch.full((len(scenes),), kind))
        images = train.sample_from_embeddings(pipe.unet, pipe.vae, states, empty, steps=20)
        striped[name] = sum(read_frame(img).attribute == "striped" for img in images)
    assert striped["as is"] >= 5 and striped["keep"] >= 5 and striped["drop"] <= 1, striped


def test_a_reduced_toy_bench(tmp_path):
    from vp2p.toy.bench import run_bench

    result = run_bench(tmp_path, t2i_count=24, attention_count=6, videos=1, progress=False, inflated_videos=2)
    saved = json.loads(Path(tmp_path / "toy_bench.json").read_text())
    assert saved["machine"] and saved["seconds"] > 0
    assert result["t2i_color_acc"] >= 0.75 and result["t2i_background_acc"] >= 0.75
    assert result["attention_in_mask"] >= 0.5
    assert result["reconstruction_psnr"] >= 26
    # Reweighting the added pattern word (0, 0.5, 1, 2) makes the pattern stronger up to weight 1, and weight 0
    # removes most of it (measured on this video: strengths 0.17, 0.27, 0.48, 0.44 — it dips a little at 2, one of
    # the two videos of the 20-video bench that do; their mean rises at every weight, benchmarks/toy_bench.json).
    strengths = result["reweight_strengths"]
    assert len(strengths) == len(result["reweight_weights"]) == 4
    assert strengths[0] < strengths[1] < strengths[2] and strengths[0] < 0.5 * max(strengths), strengths
    # weight 2 does not undo the pattern: stronger than at 0.5, and at least 3/4 of weight 1's (0.917 measured)
    assert strengths[3] > strengths[1] and strengths[3] >= 0.75 * strengths[2], strengths
    # Issue 17's measures: the swaps' geometry in % of the 64-px width, the inflated untuned model's objects and
    # frame attention, reweighting per video with broken sweeps flagged.
    assert result["swap_mean_drift_pct"] == pytest.approx(100 * result["swap_mean_drift_px"] / 64)
    assert 0 <= result["frame_attention_in_mask"] <= 1 and 0 <= result["inflated_frames_with_object"] <= 1
    scored = result["reweight_scored_videos"] + len(result["reweight_broken_videos"])
    assert scored == 1 and (result["reweight_monotonic_share"] is None) == (result["reweight_scored_videos"] == 0)
    assert {"swap_hit_acc", "swap_mean_max_jump_pct", "swap_frames_without_object"} <= set(result["bars"])


def test_the_demo_edits_the_video_and_writes_everything(tmp_path):
    from vp2p.toy.demo import run_demo

    metrics = run_demo(tmp_path, progress=False)
    for name in ("source", "reconstruction", "edit"):
        assert (tmp_path / f"{name}.gif").exists() and (tmp_path / f"{name}.mp4").exists()
    assert (tmp_path / "attention.png").stat().st_size > 10_000
    assert metrics["edit_hit"] and metrics["read_from_edit"]["color"] == "blue"
    assert metrics["reconstruction_psnr"] >= 26 and metrics["background_psnr"] >= 26
    # The blue circle is in every frame, near where the red one was (measured: 3.3 px mean drift on 64 px frames).
    geometry = metrics["object_geometry"]
    assert geometry["frames_without_object"] == 0 and geometry["mean_drift_px"] <= 6, geometry
    assert set(metrics["seconds"]) >= {"tune", "invert", "edit", "total"}
    # Its own results are marked as its own: a second run replaces them (tests/test_cli.py runs that path).
    from vp2p.toy.demo import earlier_demo

    assert earlier_demo(tmp_path) and not earlier_demo(tmp_path / "elsewhere")


def test_the_bench_edits_a_retrained_toy_folder_with_the_toy_settings(tmp_path, monkeypatch):
    """A retrained toy model is a folder, not 'toy': the bench must still tune and invert it with the toy settings
    (50 tuning steps, 25 DDIM steps), not Stable Diffusion's 500 and 50 (six minutes a clip instead of one)."""
    import shutil

    import vp2p.workflow
    from vp2p.toy.bench import pipeline_metrics

    shutil.copytree(toy_model_path(), tmp_path / "model")
    seen = []

    class Seen(Exception):
        pass

    def prepare(pipe, frames, caption, settings, progress=False):
        seen.append(settings)
        raise Seen

    monkeypatch.setattr(vp2p.workflow, "prepare", prepare)
    with pytest.raises(Seen):
        pipeline_metrics(str(tmp_path / "model"), count=1, progress=False)
    assert (seen[0].tune_steps, seen[0].num_steps) == (50, 25)
