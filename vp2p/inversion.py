"""Invert a video: DDIM inversion to z_T, then unconditional embeddings that make guided sampling return to it.

Methods (``invert(..., method=)``):

* ``"null-text"`` (Video-P2P): at every step, optimise ONE unconditional embedding shared by all frames so that the
  guided (w = 7.5) DDIM step lands on the inversion trajectory (paper eq. 8–9; Adam, lr 1e-2·(1 − i/100), at most
  10 iterations, stop when the loss < 1e-5 + i·2e-5, as the official code).
* ``"null-text-per-frame"``: the ablation, one embedding per frame and step (F times the parameters).
* ``"negative-prompt"``: no optimisation, the source prompt's embedding stands in for the null one (Miyake et al.),
  so the guided source step equals the conditional step.
* ``"fast"``: no optimisation; the source branch is sampled without guidance (the official ``--fast``).
* ``"ddim"``: plain DDIM inversion, sampled back with guidance and the empty prompt — the baseline that drifts.

The ``Inversion`` result holds the DDIM trajectory z_0 … z_T, the per-step embeddings, the reconstruction and its
errors; ``save``/``load`` round-trip it, and ``invert(..., cache=path)`` reuses a saved one made with the same
inputs (the cache key covers the video, prompt, settings — ``reconstruct`` included —, dtype, scheduler, inflation
options, a fingerprint of every weight of the UNet, text encoder and VAE, the cache format and the package version).

It also records what editing must match: ``weights``, the fingerprint of the UNet's tuned weights and inflation
options it was made with (``vp2p.edit`` refuses a UNet tuned since on another clip), and ``source_embedding``, the
source prompt's embedding, which the edit's source branch reuses (encoded again in another batch it can differ in
reduced precision, and the source branch would no longer retrace the reconstruction).

Precision: the embeddings being optimised are float32; with a float16 UNet the loss is scaled before the backward
pass (``vp2p.precision.grad_scaler``), else its gradient underflows and the embedding hardly moves.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tqdm.auto import tqdm

from vp2p import checks, seams
from vp2p.attention import require_vp2p_processors
from vp2p.checks import INVERSION_METHODS
from vp2p.ddim import DDIMSchedule
from vp2p.inflation import inflation_options, is_inflated, weights_fingerprint
from vp2p.inspect.fidelity import psnr
from vp2p.io.storage import array_fingerprint, cache_key, module_fingerprint, refuse_overwrite, save_tensors
from vp2p.precision import grad_scaler, gradient_checkpointing
from vp2p.sampling import sample, unet_output

METHODS = INVERSION_METHODS


@dataclass
class Inversion:
    prompt: str
    method: str
    num_steps: int
    guidance_scale: float
    frames: np.ndarray  # uint8 (F, H, W, 3), the input video
    trajectory: torch.Tensor  # (num_steps + 1, F, C, h, w): z_0 … z_T of the DDIM inversion
    null_embeddings: torch.Tensor  # (num_steps, 1 or F, tokens, dim): the source branch's unconditional embeddings
    reconstruction: np.ndarray | None = None  # uint8 (F, H, W, 3)
    step_errors: np.ndarray | None = None  # (num_steps,) latent MSE of the reconstruction vs the trajectory
    frame_psnr: np.ndarray | None = None  # (F,) PSNR in dB of each reconstructed frame
    losses: list = field(default_factory=list)  # null-text: final loss of each step
    iterations: list = field(default_factory=list)  # null-text: Adam iterations of each step (early stop < inner)
    seconds: float = 0.0
    key: str = ""  # hash of the inputs, for caching
    weights: str = ""  # vp2p.inflation.weights_fingerprint of the UNet it was made with ("": not recorded)
    source_embedding: torch.Tensor | None = None  # (1, tokens, dim) float32: the source prompt's text embedding
    warning: str = ""  # on the toy model: the clip is one it cannot represent (``reconstruction_warning``)

    @property
    def z_T(self) -> torch.Tensor:
        return self.trajectory[-1]

    @property
    def num_frames(self) -> int:
        return self.trajectory.shape[1]

    @property
    def source_guidance(self) -> float:
        """The fast method samples the source branch without guidance."""
        return 1.0 if self.method == "fast" else self.guidance_scale

    def check_weights(self, unet) -> None:
        """Refuse ``unet`` if its tuned weights or inflation options are not those this inversion was made with."""
        if self.weights and self.weights != weights_fingerprint(unet):
            raise ValueError(
                "the UNet's tuned weights are not those this inversion was made with (it was tuned since, most "
                "often on another clip, or inflated with other options): editing would mix two clips. Prepare this "
                "clip again — vp2p.workflow.prepare(pipe, frames, source, settings, work_dir) loads its cached "
                "tuning in seconds — or tune and invert it again")

    def trainable_count(self) -> int:
        """Numbers optimised by the method (the paper's Table 2 compares them)."""
        return 0 if not self.method.startswith("null-text") else self.null_embeddings.numel()

    def save(self, path, overwrite: bool = False) -> Path:
        path = checks.check_file_target(path, "inversion", "inversion.safetensors")
        refuse_overwrite(path, overwrite)
        tensors = {"trajectory": self.trajectory, "null_embeddings": self.null_embeddings,
                   "frames": torch.from_numpy(self.frames)}
        if self.reconstruction is not None:
            tensors["reconstruction"] = torch.from_numpy(self.reconstruction)
        if self.source_embedding is not None:
            tensors["source_embedding"] = self.source_embedding
        for name in ("step_errors", "frame_psnr"):
            if getattr(self, name) is not None:
                tensors[name] = torch.from_numpy(np.asarray(getattr(self, name), dtype=np.float64))
        meta = {"prompt": self.prompt, "method": self.method, "num_steps": self.num_steps,
                "guidance_scale": self.guidance_scale, "losses": self.losses, "iterations": self.iterations,
                "seconds": self.seconds, "key": self.key, "weights": self.weights}
        return save_tensors(path, tensors, metadata={"vp2p_inversion": json.dumps(meta)})

    @classmethod
    def load(cls, path) -> "Inversion":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no inversion saved at {path}; run vp2p.invert(...) and .save() it first")
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = json.loads(f.metadata()["vp2p_inversion"])
        t = load_file(str(path))
        arrays = {k: t[k].numpy() for k in ("reconstruction", "step_errors", "frame_psnr") if k in t}
        return cls(frames=t["frames"].numpy(), trajectory=t["trajectory"], null_embeddings=t["null_embeddings"],
                   source_embedding=t.get("source_embedding"), **arrays, **meta)


def inversion_key(pipe, frames: np.ndarray, prompt: str, **settings) -> str:
    """A fingerprint of everything an inversion depends on: the video, the prompt, the settings, the dtype, the
    scheduler, how the UNet was inflated and (sampled, see ``vp2p.io.storage``) every weight of the UNet — tuned ones
    included —, the text encoder and the VAE; the steps replaced by a student's (``vp2p.seams``); with the cache
    format and the package version (``cache_key``)."""
    return cache_key(
        frames=array_fingerprint(frames), prompt=prompt, model=pipe.name, dtype=str(pipe.dtype),
        scheduler=dict(pipe.scheduler.config), inflation=inflation_options(pipe.unet) if is_inflated(pipe.unet) else None,
        weights=[module_fingerprint(m) for m in (pipe.unet, pipe.text_encoder, pipe.vae)],
        **seams.cache_entries("invert"), **settings)  # a student's step in place (the course): another key


@torch.no_grad()
def ddim_invert(unet, z0: torch.Tensor, cond: torch.Tensor, schedule: DDIMSchedule, num_frames: int,
                progress=True) -> torch.Tensor:
    """The DDIM inversion trajectory (num_steps + 1, F, C, h, w), z_0 first, with the conditional model only."""
    latents = [z0.float()]
    for t in tqdm(schedule.timesteps[::-1], desc="DDIM inversion", disable=not progress, leave=False):
        out = unet_output(unet, latents[-1], t, cond, num_frames)
        latents.append(seams.step("ddim_inverse_step")(out, t, latents[-1], schedule))
    return torch.stack(latents).cpu()


def null_text_loss(unet, latent, t: int, null, cond_out, target, schedule, num_frames: int, guidance_scale: float):
    """Paper eq. 9: the distance between the guided DDIM step from ``latent`` with unconditional embedding ``null``
    and the inversion trajectory's ``target`` (``cond_out``: the conditional prediction, computed once per step)."""
    uncond_out = unet_output(unet, latent, t, null, num_frames)
    guided = seams.step("guide")(uncond_out, cond_out, guidance_scale)
    return F.mse_loss(seams.step("ddim_step")(guided, t, latent, schedule), target)


class NullText(NamedTuple):
    """What null-text optimisation gives: the embeddings (num_steps, 1 or F, tokens, dim), each step's final loss
    and Adam iterations, and ``path``: the latents after each guided step with the optimised embeddings
    (num_steps, F, C, h, w) — the reconstruction's own sampling path, computed on the way."""

    embeddings: torch.Tensor
    losses: list
    iterations: list
    path: torch.Tensor


def stop_threshold(step: int, early_stop: float = 1e-5) -> float:
    """The loss below which null-text optimisation stops at DDIM step ``step`` (official: 1e-5 + step·2e-5)."""
    return early_stop + step * 2e-5


def null_text_optimization(unet, trajectory, cond, uncond, schedule, num_frames, guidance_scale, per_frame=False,
                           inner_steps=10, lr=1e-2, early_stop=1e-5, progress=True) -> NullText:
    """Per step, an unconditional embedding (shared or per frame) for which guided DDIM follows ``trajectory``.

    Official schedule: Adam at lr·(1 − i/100) at DDIM step i, at most ``inner_steps`` iterations, stop once the
    loss is below ``early_stop`` + i·2e-5; each step starts from the previous step's embedding.
    """
    device = cond.device
    n = len(schedule)
    null = (uncond.expand(num_frames, -1, -1) if per_frame else uncond).float().clone()
    latent = trajectory[-1].to(device)
    # float16: scale the loss (vp2p.precision); official: the UNet is kept in float32 for inversion
    scaler = grad_scaler(device, next(unet.parameters()).dtype)
    embeddings, losses, iterations, path = [], [], [], []
    for i, t in enumerate(tqdm(schedule.timesteps, desc="null-text", disable=not progress, leave=False)):
        null = null.detach().requires_grad_(True)
        optimizer = torch.optim.Adam([null], lr=lr * (1.0 - i / 100.0))
        target = trajectory[n - i - 1].to(device)
        with torch.no_grad():
            cond_out = unet_output(unet, latent, t, cond, num_frames)
        for iteration in range(1, inner_steps + 1):
            loss = seams.step("null_text_loss")(unet, latent, t, null, cond_out, target, schedule, num_frames,
                                                 guidance_scale)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if loss.item() < stop_threshold(i, early_stop):
                break
        losses.append(loss.item())
        iterations.append(iteration)
        null = null.detach()
        embeddings.append(null.to("cpu", copy=True))  # a copy: on the CPU .cpu() would alias the next step's null
        with torch.no_grad():
            uncond_out = unet_output(unet, latent, t, null, num_frames)
            guided = seams.step("guide")(uncond_out, cond_out, guidance_scale)
            latent = seams.step("ddim_step")(guided, t, latent, schedule)
        path.append(latent.cpu())
    return NullText(torch.stack(embeddings), losses, iterations, torch.stack(path))


def invert(pipe, frames: np.ndarray, prompt: str, method: str = "null-text", num_steps: int | None = None,
           guidance_scale: float | None = None, inner_steps: int | None = None, lr: float | None = None,
           early_stop: float = 1e-5, reconstruct: bool = True, cache: str | Path | None = None,
           progress: bool = True) -> Inversion:
    """Invert ``frames`` (uint8 (F, H, W, 3)) with the source ``prompt`` on ``pipe``'s (inflated, tuned) UNet.

    ``num_steps``, ``guidance_scale``, ``inner_steps`` and ``lr`` left None follow the model
    (``vp2p.workflow.settings_for``: the official 50 steps × 10 Adam steps of 1e-2 at guidance 7.5 on Stable
    Diffusion, the toy's 25 × 2 of 8e-2 on the toy model). On the toy model, a reconstruction far below what it
    achieves on its own world is warned about (``Inversion.warning``)."""
    from vp2p.workflow import settings_for  # here: vp2p.workflow imports this module

    defaults = settings_for(pipe)
    num_steps = defaults.num_steps if num_steps is None else num_steps
    guidance_scale = defaults.guidance_scale if guidance_scale is None else guidance_scale
    inner_steps = defaults.inner_steps if inner_steps is None else inner_steps
    lr = defaults.null_text_lr if lr is None else lr
    for name, value, label in (("method", method, None), ("num_steps", num_steps, None),
                               ("guidance_scale", guidance_scale, None), ("inner_steps", inner_steps, None),
                               ("null_text_lr", lr, "lr")):
        checks.check_setting(name, value, label)
    checks.check_model_prompts(pipe, {"source prompt": prompt})
    require_vp2p_processors(pipe.unet)
    pipe.check_frames(frames)
    pipe.tokenize([prompt])  # a prompt too long for the text encoder
    settings = dict(method=method, num_steps=num_steps, guidance_scale=guidance_scale, inner_steps=inner_steps,
                    lr=lr, early_stop=early_stop, reconstruct=reconstruct)
    key = inversion_key(pipe, frames, prompt, **settings)
    if cache is not None and Path(cache).exists():
        cached = Inversion.load(cache)
        if cached.key == key:
            cached.warning = reconstruction_warning(pipe, cached)
            return cached
        raise FileExistsError(f"{cache} holds an inversion of other inputs (video, prompt, model or settings); "
                              "delete it or pass another cache path")
    start = time.perf_counter()
    schedule = DDIMSchedule.from_scheduler(pipe.scheduler, num_steps)
    num_frames = frames.shape[0]
    cond, empty = pipe.encode_text([prompt, ""]).chunk(2)
    trajectory = ddim_invert(pipe.unet, pipe.encode_video(frames), cond, schedule, num_frames, progress)
    optimized = None
    if method.startswith("null-text"):
        with gradient_checkpointing(pipe.unet, pipe.device.type == "cuda"):  # memory: backward through the UNet
            optimized = null_text_optimization(pipe.unet, trajectory, cond, empty, schedule, num_frames,
                                               guidance_scale, method.endswith("per-frame"), inner_steps, lr,
                                               early_stop, progress)
        null = optimized.embeddings
    else:
        stand_in = cond if method == "negative-prompt" else empty
        null = stand_in.float().cpu().expand(num_steps, -1, -1, -1).clone()
    result = Inversion(prompt=prompt, method=method, num_steps=num_steps, guidance_scale=guidance_scale,
                       frames=frames, trajectory=trajectory, null_embeddings=null,
                       losses=optimized.losses if optimized else [],
                       iterations=optimized.iterations if optimized else [], key=key,
                       weights=weights_fingerprint(pipe.unet), source_embedding=cond.float().cpu().clone())
    if reconstruct and optimized is not None:  # null-text already sampled the reconstruction's path
        record_reconstruction(pipe, result, optimized.path)
    elif reconstruct:
        add_reconstruction(pipe, result, cond, schedule, progress)
    result.seconds = time.perf_counter() - start
    result.warning = reconstruction_warning(pipe, result)
    if result.warning:
        warnings.warn(result.warning, stacklevel=2)
    if cache is not None:
        # another process may have saved the same inversion meanwhile: same inputs, same file
        result.save(cache, overwrite=True)
    return result


def reconstruction_warning(pipe, inversion: Inversion) -> str:
    """On the toy model, a warning when the reconstruction is far below what it achieves on its own world (the
    clip is not one it can draw); else ""."""
    from vp2p.io.loading import is_toy

    if inversion.frame_psnr is None or not is_toy(pipe):
        return ""
    if inversion.method == "ddim" and inversion.guidance_scale > 1:
        # plain DDIM inversion sampled back under guidance drifts on any clip (the toy's own: ~21 dB, the paper's
        # Table 2), so a low reconstruction says nothing about the clip
        return ""
    return checks.toy_reconstruction_warning(float(np.mean(inversion.frame_psnr))) or ""


def add_reconstruction(pipe, inv: Inversion, cond, schedule, progress=True):
    """Sample the source branch back from z_T; fill in the reconstruction and its per-step and per-frame errors."""
    path: list[torch.Tensor] = []
    nulls = inv.null_embeddings.to(pipe.device)
    sample(pipe.unet, inv.z_T.to(pipe.device), schedule, cond, lambda i: nulls[i],
           torch.tensor([inv.source_guidance]), inv.num_frames, progress=progress and "reconstruction",
           trajectory=path)
    record_reconstruction(pipe, inv, torch.stack(path))


def record_reconstruction(pipe, inv: Inversion, path: torch.Tensor):
    """The reconstruction from the source branch's sampling ``path`` (num_steps, F, C, h, w): its per-step latent
    errors against the inversion trajectory, the decoded frames and their PSNR."""
    reference = inv.trajectory.flip(0)[1:]  # z_{T-Δ} … z_0, the targets of each sampling step
    inv.step_errors = ((path - reference) ** 2).mean(dim=(1, 2, 3, 4)).numpy()
    inv.reconstruction = pipe.decode_latents(path[-1])
    inv.frame_psnr = np.array([psnr(a, b) for a, b in zip(inv.reconstruction, inv.frames)])
