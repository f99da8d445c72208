"""The video fine-tuning stage (toy world 2): batches, losses, and exact resumption."""

import json

import numpy as np
import pytest
import torch

from vp2p.io.loading import toy_model_path
from vp2p.toy import train, train_video


def test_video_batches_hold_whole_videos_of_one_scene_and_image_batches_single_frames():
    data = {"latents": torch.zeros(50, train_video.FRAMES_PER_SCENE, 4, 16, 16)}
    gen = torch.Generator().manual_seed(0)
    kinds = set()
    for _ in range(60):
        scenes, slots, frames = train_video.draw_batch(data, 12, 0.5, gen)
        kinds.add(frames)
        videos = scenes.view(-1, frames)
        assert (videos == videos[:, :1]).all()  # every video is one scene
        if frames > 1:  # distinct frames of the scene within a video
            assert all(len(set(v.tolist())) == frames for v in slots.view(-1, frames))
        assert len(scenes) == (12 if frames == 1 else 12 // frames * frames)
    assert kinds == {1, 2, 3, 4}


def test_frame_attention_loss_is_low_when_object_queries_look_at_frame_0s_object():
    side, frames = 8, 2
    masks = torch.zeros(frames, 1, side, side)
    masks[0, 0, :3, :3] = 1  # frame 0's object: top left
    masks[1, 0, 5:, 5:] = 1  # frame 1's: bottom right
    on_object = torch.zeros(frames, 1, side * side, side * side)
    on_object[..., masks[0].flatten().bool()] = 1 / 9  # every query looks at frame 0's object
    on_place = torch.zeros_like(on_object)
    on_place[..., masks[1].flatten().bool()] = 1 / 9  # ... or at the place its own object is
    good = train_video.frame_attention_loss([on_object], {side: masks}, frames)
    bad = train_video.frame_attention_loss([on_place], {side: masks}, frames)
    assert good.item() == pytest.approx(0.0, abs=1e-6) and bad.item() > 9  # −log(1e-4)


def test_scene_frames_are_four_distinct_frames_and_attribute_free_twins_keep_the_look():
    picks = train_video.scene_frames(train_video.VIDEO_SEED)
    assert picks == sorted(set(picks)) and len(picks) == 4 and 0 <= min(picks) and max(picks) < 8
    seed = next(s for s in range(train_video.VIDEO_SEED, train_video.VIDEO_SEED + 60) if train.training_scene(s).attribute)
    video, plain = train_video.render_scene(seed), train_video.render_scene(seed, attribute_free=True)
    assert np.array_equal(video.masks, plain.masks) and video.appearance == plain.appearance
    assert (video.frames != plain.frames).any()


def _run(work, steps, **kwargs):
    return train_video.train_video(work, toy_model_path(), steps=steps, scenes=6, batch=4, video_share=0.5,
                                   ckpt_every=2, eval_every=10**9, log_every=1, device="cpu", **kwargs)


def test_an_interrupted_run_resumes_to_exactly_the_uninterrupted_parameters(tmp_path, monkeypatch):
    torch.set_num_threads(1)  # identical float reductions in both runs
    full = _run(tmp_path / "full", 5)

    calls = {"n": 0}
    real = train.attention_loss

    def dies_at_step_4(*args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(train, "attention_loss", dies_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "cut", 5)
    assert torch.load(tmp_path / "cut" / "video.pt", weights_only=False)["step"] == 2  # the last checkpoint
    monkeypatch.setattr(train, "attention_loss", real)
    resumed = _run(tmp_path / "cut", 5)

    for a, b in zip(full[:2], resumed[:2]):  # EMA UNet and text encoder
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(p, q), name
    full_ckpt = torch.load(tmp_path / "full" / "video.pt", weights_only=False)
    cut_ckpt = torch.load(tmp_path / "cut" / "video.pt", weights_only=False)
    assert full_ckpt["step"] == cut_ckpt["step"] == 5
    assert all(torch.equal(full_ckpt["unet"][k], cut_ckpt["unet"][k]) for k in full_ckpt["unet"])
    # The log is rewritten from the checkpoint on: one row per step, the same losses as the uninterrupted run.
    rows = {name: [json.loads(r) for r in open(tmp_path / name / "video_log.jsonl")] for name in ("full", "cut")}
    assert [r["step"] for r in rows["cut"]] == [1, 2, 3, 4, 5]
    assert [r["diffusion"] for r in rows["cut"]] == [r["diffusion"] for r in rows["full"]]
    assert {r["frames"] for r in rows["full"]} - {1}, "the seed should draw at least one video batch"
    # The model moved off the shipped weights (and the init was copied, not trained in place).
    shipped = train_video.load_init(toy_model_path(), "cpu")[0].state_dict()
    assert any(not torch.equal(shipped[k], v) for k, v in full[0].state_dict().items())


def test_a_replacement_vae_goes_into_the_init_copy_and_a_resume_must_name_the_same_one(tmp_path):
    from diffusers import AutoencoderKL

    other = tmp_path / "other_vae"
    vae = AutoencoderKL.from_pretrained(toy_model_path() / "vae")
    with torch.no_grad():
        vae.decoder.conv_out.bias.add_(0.5)
    vae.save_pretrained(other)

    init = train_video.prepare_init(tmp_path / "work", toy_model_path(), vae=other)
    copied = AutoencoderKL.from_pretrained(init / "vae")
    assert torch.equal(copied.decoder.conv_out.bias, vae.decoder.conv_out.bias)  # the given VAE, not the init's
    assert train_video.same_weights(init / "unet", toy_model_path() / "unet")  # the rest is the init's
    assert train_video.prepare_init(tmp_path / "work", toy_model_path(), vae=other) == init  # resuming: fine
    with pytest.raises(ValueError, match="another VAE"):
        train_video.prepare_init(tmp_path / "work", toy_model_path(), vae=toy_model_path() / "vae")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        train_video.prepare_init(tmp_path / "fresh", toy_model_path(), vae=tmp_path / "missing")
