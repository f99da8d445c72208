"""Model initialisation: fine-tune the inflated UNet on the input video with the source prompt (paper Sec. 4.1).

Only the query projections of frame and cross-attention and the temporal attention are trained (``inflation.
trainable_parameters``), on the usual noise-prediction loss: noise a clip's latents at a random timestep, predict
the noise (or the velocity, for v-prediction models), MSE. Defaults follow the official code: 500 steps, AdamW,
lr 3e-5; on CUDA fp16 autocast (bf16 where supported) and gradient checkpointing.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from vp2p.inflation import frame_keys_of, trainable_parameters
from vp2p.sampling import unet_output


@dataclass
class TuneResult:
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    trained: int = 0  # number of trained values

    def smoothed(self, window: int = 20) -> np.ndarray:
        """The loss curve, moving-averaged (single-step diffusion losses are very noisy)."""
        x = np.asarray(self.losses, dtype=np.float64)
        window = max(1, min(window, len(x)))
        return np.convolve(x, np.ones(window) / window, mode="valid")


@contextlib.contextmanager
def gradient_checkpointing(unet, enabled: bool):
    """Recompute activations in the backward pass (less memory, ~30% more time) for the duration of a block."""
    was = getattr(unet, "is_gradient_checkpointing", False)
    if enabled and not was:
        unet.enable_gradient_checkpointing()
    try:
        yield
    finally:
        if enabled and not was:
            unet.disable_gradient_checkpointing()


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def training_target(scheduler, latents, noise, timesteps):
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    return noise


def tune(pipe, frames: np.ndarray, prompt: str, steps: int = 500, lr: float = 3e-5, seed: int = 0,
         checkpointing: bool | None = None, progress: bool = True) -> TuneResult:
    """Fine-tune ``pipe.unet`` (inflated) in place on ``frames`` (uint8 (F, H, W, 3)) with ``prompt``."""
    if steps < 1:
        raise ValueError(f"steps={steps}: tuning needs at least one step (the paper uses 500)")
    start = time.perf_counter()
    unet, device = pipe.unet, pipe.device
    params = trainable_parameters(unet)
    latents = pipe.encode_video(frames).float()
    cond = pipe.encode_text(prompt)
    num_frames = frames.shape[0]
    amp = autocast_dtype(device)
    checkpointing = device.type == "cuda" if checkpointing is None else checkpointing
    # Trainable weights live in fp32 during training (fp16 weights cannot take small AdamW updates).
    originals = {n: p.dtype for n, p in params.items()}
    for p in params.values():
        p.data = p.data.float()
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params.values(), lr=lr)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    result = TuneResult(trained=sum(p.numel() for p in params.values()))
    unet.train()
    try:
        with gradient_checkpointing(unet, checkpointing):
            for _ in tqdm(range(steps), desc="tuning", disable=not progress, leave=False):
                noise = torch.randn(latents.shape, generator=generator).to(device)
                t = torch.randint(0, pipe.scheduler.config.num_train_timesteps, (1,), generator=generator)
                noisy = pipe.scheduler.add_noise(latents, noise, t.to(device))
                target = training_target(pipe.scheduler, latents, noise, t.to(device))
                with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                    pred = unet_output(unet, noisy if amp else noisy.to(pipe.dtype), int(t), cond, num_frames)
                loss = F.mse_loss(pred.float(), target.float())
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                result.losses.append(loss.item())
    finally:
        unet.eval()
        for name, p in params.items():
            p.requires_grad_(False)
            p.data = p.data.to(originals[name])
    result.seconds = time.perf_counter() - start
    return result


def save_tuned(unet, path, overwrite: bool = False) -> Path:
    """Save only the tuned parameters (a few % of the UNet) as safetensors."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True or choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # then rename: readers never see half a file
    save_file({n: p.detach().contiguous().cpu() for n, p in trainable_parameters(unet).items()}, str(tmp),
              metadata={"frame_keys": frame_keys_of(unet)})
    os.replace(tmp, path)
    return path


def load_tuned(unet, path) -> None:
    """Load tuned parameters saved by ``save_tuned`` into an inflated UNet of the same base model."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no tuned weights at {path}; run vp2p.tune(...) and save_tuned(...) first")
    state = load_file(str(path))
    params = trainable_parameters(unet)
    with safe_open(str(path), "pt") as f:
        saved_keys = (f.metadata() or {}).get("frame_keys", frame_keys_of(unet))
    if saved_keys != frame_keys_of(unet):
        raise ValueError(f"{path} was tuned with frame_keys={saved_keys!r} but this UNet uses "
                         f"{frame_keys_of(unet)!r}; inflate it with vp2p.inflate_unet(unet, frame_keys={saved_keys!r})")
    missing, unexpected = set(params) - set(state), set(state) - set(params)
    reshaped = [n for n, p in params.items() if n in state and state[n].shape != p.shape]
    if missing or unexpected or reshaped:
        raise ValueError(f"{path} does not fit this UNet ({len(missing)} missing, {len(unexpected)} unexpected, "
                         f"{len(reshaped)} differently shaped tensors); load the same base model and inflate it with "
                         "the same options")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state[name].to(p.device, p.dtype))
