"""Tuning (vp2p.tune): what it changes, that its loss falls on the video, and saving / loading the tuned weights."""

import pytest
import torch

import vp2p
from tiny import inflated_pipeline, smooth_video
from vp2p.inflation import trainable_parameters
from vp2p.sampling import unet_output

PROMPT = "a red circle on the grass"
F = 2




@pytest.fixture
def pipe(tiny_pipe):
    vp2p.inflate_unet(tiny_pipe.unet)
    return tiny_pipe


def snapshot(module):
    return {n: t.detach().clone() for n, t in module.state_dict().items()}


def test_tuning_changes_exactly_the_trainable_parameters(pipe):
    unet_before, text_before = snapshot(pipe.unet), snapshot(pipe.text_encoder)
    trainable = set(trainable_parameters(pipe.unet))
    result = vp2p.tune(pipe, smooth_video(F), PROMPT, steps=5, lr=1e-3, progress=False)
    after = snapshot(pipe.unet)
    changed = {n for n in after if not torch.equal(after[n], unet_before[n])}
    assert changed == trainable  # every changed tensor is trainable, every trainable tensor changed
    # per block (7): attn1.to_q, attn2.to_q; temporal to_q, to_k, to_v (no bias), to_out weight and bias
    assert len(trainable) == 7 * (2 + 5)
    assert all(torch.equal(t, text_before[n]) for n, t in snapshot(pipe.text_encoder).items())
    assert len(result.losses) == 5 and result.trained == sum(p.numel() for p in trainable_parameters(pipe.unet).values())
    # afterwards everything is frozen again, in the pipeline's dtype
    assert not any(p.requires_grad for p in pipe.unet.parameters())
    assert {p.dtype for p in pipe.unet.parameters()} == {torch.float32}


def noise_prediction_error(pipe, frames, pairs=8):
    """Mean noise-prediction MSE over fixed (timestep, noise) pairs: timesteps 50…950, seeded noise."""
    latents = pipe.encode_video(frames).float()
    cond = pipe.encode_text(PROMPT)
    generator = torch.Generator().manual_seed(123)
    errors = []
    with torch.no_grad():
        for t in torch.linspace(50, 950, pairs).long():
            noise = torch.randn(latents.shape, generator=generator)
            noisy = pipe.scheduler.add_noise(latents, noise, t[None])
            errors.append(((unet_output(pipe.unet, noisy, int(t), cond, F) - noise) ** 2).mean().item())
    return torch.tensor(errors)


def test_tuning_lowers_the_loss_on_the_video(pipe):
    frames = smooth_video(F)
    before = noise_prediction_error(pipe, frames)
    vp2p.tune(pipe, frames, PROMPT, steps=40, lr=1e-3, seed=0, progress=False)
    after = noise_prediction_error(pipe, frames)
    # measured: mean 0.126 -> 0.099 (1.28x), every pair 1.20x-1.37x lower. Only the queries and the temporal
    # attention train, so the error plateaus (200 steps reach 1.44x).
    assert after.mean() < before.mean() / 1.15, (before.mean(), after.mean())
    assert (after < before / 1.1).all(), before / after


def test_tune_rejects_zero_steps_and_a_2d_unet(tiny_pipe):
    with pytest.raises(ValueError, match="steps=0: .*at least 1"):
        vp2p.tune(tiny_pipe, smooth_video(F), PROMPT, steps=0, progress=False)
    with pytest.raises(ValueError, match="inflate_unet"):
        vp2p.tune(tiny_pipe, smooth_video(F), PROMPT, steps=1, progress=False)


# -- save_tuned / load_tuned --------------------------------------------------------------------------------------

def probe_output(unet):
    g = torch.Generator().manual_seed(7)
    latents = torch.randn(F, 4, 16, 16, generator=g)
    context = torch.randn(1, 77, 32, generator=g)
    return unet_output(unet, latents, 500, context, F)


def other_unet(**changes):
    """An inflated UNet like the tiny one but with another architecture."""
    from diffusers import UNet2DConditionModel

    config = dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
                  down_block_types=("CrossAttnDownBlock2D",) * 2, up_block_types=("CrossAttnUpBlock2D",) * 2,
                  cross_attention_dim=32, attention_head_dim=2, norm_num_groups=8)
    torch.manual_seed(0)
    return vp2p.inflate_unet(UNet2DConditionModel(**{**config, **changes}))


def test_save_and_load_tuned_round_trip(pipe, tiny_model_dir, tmp_path):
    vp2p.tune(pipe, smooth_video(F), PROMPT, steps=5, lr=1e-3, progress=False)
    path = vp2p.save_tuned(pipe.unet, tmp_path / "tuned" / "unet.safetensors")
    fresh = inflated_pipeline(tiny_model_dir)
    expected = probe_output(pipe.unet)
    assert (probe_output(fresh.unet) - expected).abs().max() > 1e-4  # tuning made a difference to load
    vp2p.load_tuned(fresh.unet, path)
    assert (probe_output(fresh.unet) - expected).abs().max() <= 1e-6
    # only the tuned tensors are saved: a few % of the UNet
    saved = path.stat().st_size
    total = sum(p.numel() * 4 for p in pipe.unet.parameters())
    assert saved < 0.2 * total, (saved, total)

    with pytest.raises(FileExistsError, match="overwrite=True"):
        vp2p.save_tuned(pipe.unet, path)
    assert path.stat().st_size == saved
    with pytest.raises(FileNotFoundError, match="save_tuned"):
        vp2p.load_tuned(fresh.unet, tmp_path / "missing.safetensors")


def test_load_tuned_refuses_unets_it_does_not_fit(pipe, tmp_path):
    path = vp2p.save_tuned(pipe.unet, tmp_path / "unet.safetensors")
    # another architecture: more transformer blocks (names differ) or other widths (same names, other shapes)
    for unet in (other_unet(layers_per_block=2), other_unet(block_out_channels=(16, 32))):
        before = snapshot(unet)
        with pytest.raises(ValueError, match="does not fit this UNet"):
            vp2p.load_tuned(unet, path)
        assert all(torch.equal(t, before[n]) for n, t in snapshot(unet).items())  # nothing half-loaded
    # not inflated
    plain = vp2p.load_pipeline(pipe.name, device="cpu", dtype=torch.float32)
    with pytest.raises(ValueError, match="inflate_unet"):
        vp2p.load_tuned(plain.unet, path)


def test_load_tuned_refuses_a_unet_inflated_with_other_frame_keys(pipe, tmp_path):
    path = vp2p.save_tuned(pipe.unet, tmp_path / "unet.safetensors")  # pipe: frame_keys="first"
    other = vp2p.load_pipeline(pipe.name, device="cpu", dtype=torch.float32)
    vp2p.inflate_unet(other.unet, frame_keys="first+previous")
    with pytest.raises(ValueError, match="frame_keys='first'"):
        vp2p.load_tuned(other.unet, path)


def test_max_grad_norm_clips_every_step_and_none_turns_it_off(pipe, monkeypatch):
    """Gradients are clipped to ``max_grad_norm`` before each AdamW step (official 1.0): the norm the step sees is at
    most that; ``None`` leaves them as they are."""
    real = torch.nn.utils.clip_grad_norm_
    seen = []

    def spy(params, max_norm, *args, **kwargs):
        params = list(params)
        before = real(params, max_norm, *args, **kwargs)  # returns the norm before clipping
        after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
        seen.append((max_norm, float(before), float(after)))
        return before

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    vp2p.tune(pipe, smooth_video(F), PROMPT, steps=3, lr=1e-4, max_grad_norm=1e-3, progress=False)
    assert [m for m, _, _ in seen] == [1e-3] * 3
    assert all(before > 1e-3 and after <= 1e-3 * 1.0001 for _, before, after in seen), seen
    seen.clear()
    vp2p.tune(pipe, smooth_video(F), PROMPT, steps=2, lr=1e-4, max_grad_norm=None, progress=False)
    assert seen == []


@pytest.mark.parametrize("latents", ["sample", "mean"])
def test_latents_sample_draws_from_the_posterior_and_mean_uses_its_mean(pipe, monkeypatch, latents):
    """``"sample"`` (official): a fresh draw from the VAE posterior every step, mean + std·N(0, 1); ``"mean"``: the
    posterior mean every step."""
    mean, std = pipe.encode_posterior(smooth_video(F))
    clean = []
    real = pipe.scheduler.add_noise
    monkeypatch.setattr(pipe.scheduler, "add_noise", lambda z0, noise, t: clean.append(z0.clone()) or real(z0, noise, t))
    vp2p.tune(pipe, smooth_video(F), PROMPT, steps=4, lr=1e-4, latents=latents, progress=False)
    assert len(clean) == 4
    if latents == "mean":
        assert all(torch.equal(z, mean) for z in clean)
        return
    draws = torch.stack([(z - mean) / std for z in clean])  # standard normal if drawn from the posterior
    assert abs(float(draws.mean())) < 0.05 and abs(float(draws.std()) - 1) < 0.05, (draws.mean(), draws.std())
    assert not torch.equal(clean[0], clean[1])  # a fresh draw every step
