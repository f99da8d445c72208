"""The precision policy (vp2p.precision) on the CPU: half-precision null-text inversion that learns, tuning in
bfloat16 and float16, gradients for every trainable tensor under checkpointing."""

import warnings

import numpy as np
import pytest
import torch

import vp2p
from tiny import smooth_video
from vp2p.ddim import DDIMSchedule
from vp2p.inflation import trainable_parameters
from vp2p.inversion import ddim_invert, null_text_loss
from vp2p.precision import grad_scaler, gradient_checkpointing, master_weights
from vp2p.sampling import unet_output

PROMPT = "a red circle on the grass"


def inflated(model_dir, dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # float16 on the CPU: slow, and said so
        pipe = vp2p.load_pipeline(model_dir, device="cpu", dtype=dtype)
    vp2p.inflate_unet(pipe.unet)
    return pipe


def first_null_text_step(pipe, frames):
    """What null-text's first step (of 10 DDIM steps) works with, all computed in ``pipe``'s dtype."""
    schedule = DDIMSchedule.from_scheduler(pipe.scheduler, 10)
    cond = pipe.encode_text(PROMPT)
    trajectory = ddim_invert(pipe.unet, pipe.encode_video(frames), cond, schedule, len(frames), progress=False)
    t, latent = schedule.timesteps[0], trajectory[-1]
    with torch.no_grad():
        cond_out = unet_output(pipe.unet, latent, t, cond, len(frames))
    return dict(latent=latent, t=t, cond_out=cond_out, target=trajectory[-2], schedule=schedule,
                num_frames=len(frames), guidance_scale=7.5)


def null_gradient(pipe, step: dict, scaled: bool) -> torch.Tensor:
    """∂(null-text loss)/∂(null embedding) at the empty prompt, optionally loss-scaled (as ``vp2p.invert`` does)."""
    null = pipe.encode_text("").float().clone().requires_grad_(True)
    loss = null_text_loss(pipe.unet, null=null, **step)
    scaler = grad_scaler("cpu", pipe.dtype)
    (scaler.scale(loss) if scaled else loss).backward()
    return null.grad / (scaler.get_scale() if scaled and scaler.is_enabled() else 1.0)


def test_float16_null_text_gradient_is_right_only_with_loss_scaling(tiny_model_dir):
    # 4 frames of 64² → 4·4·32·32 latent values: the loss is a mean over 16k numbers, so its gradient is small and
    # float16's subnormal range eats part of it. (At SD's 131k values and |grad| ~1e-7 it eats most of it.)
    frames = smooth_video(4, size=64)
    full, half = inflated(tiny_model_dir, torch.float32), inflated(tiny_model_dir, torch.float16)
    reference = null_gradient(full, first_null_text_step(full, frames), scaled=False)
    step = first_null_text_step(half, frames)

    def relative_error(g):
        return float((g - reference).norm() / reference.norm())

    unscaled = relative_error(null_gradient(half, step, scaled=False))
    scaled = relative_error(null_gradient(half, step, scaled=True))
    assert grad_scaler("cpu", torch.float16).is_enabled() and not grad_scaler("cpu", torch.bfloat16).is_enabled()
    assert scaled < 0.01, scaled  # measured 0.0017
    assert unscaled > 5 * scaled, (unscaled, scaled)  # measured 0.027: 16x worse


def test_float16_shared_null_text_inversion_learns_and_reconstructs_like_float32(tiny_model_dir):
    frames = smooth_video(2)
    results = {}
    for dtype in (torch.float32, torch.float16):
        pipe = inflated(tiny_model_dir, dtype)
        torch.manual_seed(0)
        results[dtype] = vp2p.invert(pipe, frames, PROMPT, num_steps=8, inner_steps=5, early_stop=0.0,
                                     progress=False)
    full, half = results[torch.float32], results[torch.float16]
    start = inflated(tiny_model_dir, torch.float32).encode_text("").float()
    moved_full = (full.null_embeddings[0, 0] - start[0]).abs().max()
    moved_half = (half.null_embeddings[0, 0] - start[0]).abs().max()
    # it learns: Adam moves the embedding as far as in float32 (measured 0.052 vs 0.050)
    assert moved_half > 0.8 * moved_full > 0, (moved_half, moved_full)
    assert half.null_embeddings.dtype == torch.float32  # optimised in float32
    # reconstruction: the latent error after the last step within 5% of float32's, PSNR within 0.5 dB
    # (measured: 0.012101 vs 0.012092, 0.007 dB; the tiny random VAE itself reconstructs at only 13.7 dB)
    assert abs(half.step_errors[-1] / full.step_errors[-1] - 1) < 0.05, (half.step_errors[-1], full.step_errors[-1])
    assert abs(np.mean(half.frame_psnr) - np.mean(full.frame_psnr)) < 0.5


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_tuning_a_half_precision_pipe_on_the_cpu(tiny_model_dir, dtype):
    pipe = inflated(tiny_model_dir, dtype)
    before = {n: p.detach().clone() for n, p in trainable_parameters(pipe.unet).items()}
    result = vp2p.tune(pipe, smooth_video(2), PROMPT, steps=3, lr=1e-3, progress=False)
    assert len(result.losses) == 3 and all(np.isfinite(result.losses))
    after = trainable_parameters(pipe.unet)
    assert all(not torch.equal(after[n], before[n]) for n in before)
    assert {p.dtype for p in pipe.unet.parameters()} == {dtype}  # back in the pipeline's dtype, frozen
    assert not any(p.requires_grad for p in pipe.unet.parameters())


def test_every_trainable_tensor_gets_a_gradient_with_checkpointing(tiny_model_dir):
    # The official code's reentrant checkpointing leaves 28 of its 77 trainable tensors (the first two down blocks)
    # without a gradient; vp2p tunes them all. Temporal attention's output starts at zero, so first make it
    # non-zero: else nothing upstream of it in the temporal branch can have a gradient yet.
    pipe = inflated(tiny_model_dir, torch.float32)
    params = trainable_parameters(pipe.unet)
    with torch.no_grad():
        for name, p in params.items():
            if "attn_temp.to_out" in name:
                p.normal_(0, 0.02)
    latents = pipe.encode_video(smooth_video(2))
    with master_weights(params), gradient_checkpointing(pipe.unet, True):
        pipe.unet.train()
        loss = unet_output(pipe.unet, latents, 500, pipe.encode_text(PROMPT), 2).pow(2).mean()
        loss.backward()
        pipe.unet.eval()
        assert pipe.unet.is_gradient_checkpointing
        without = [n for n, p in params.items() if p.grad is None or not p.grad.abs().max() > 0]
    assert len(params) == 7 * 7 and without == []
