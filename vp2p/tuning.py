"""Model initialisation: fine-tune the inflated UNet on the input video with the source prompt (paper Sec. 4.1).

Only the query projections of frame and cross-attention and the temporal attention are trained (``inflation.
trainable_parameters``), on the usual noise-prediction loss: noise a clip's latents at a random timestep, predict
the noise (or the velocity, for v-prediction models), MSE. The recipe is the official one: 500 steps, AdamW at
lr 3e-5, gradients clipped at norm 1.0, a fresh sample of the VAE posterior every step (``latents="sample"``;
``"mean"`` uses the posterior mean throughout), and on CUDA gradient checkpointing. Precision follows
``vp2p.precision``: the trainable weights are float32 master weights, the forward pass runs in the pipeline's
dtype, float16 gets a gradient scaler.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from tqdm.auto import tqdm

from vp2p import checks, seams
from vp2p.inflation import inflation_options, trainable_parameters
from vp2p.precision import autocast, grad_scaler, gradient_checkpointing, master_weights
from vp2p.sampling import unet_output
from vp2p.io.storage import refuse_overwrite, save_tensors

LATENTS = ("sample", "mean")


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
def training_mode(module):
    module.train()
    try:
        yield
    finally:
        module.eval()


def noisy_latents(scheduler, latents, noise, timesteps):
    """The forward process q(x_t | x_0) at ``timesteps``: √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε (diffusers' ``add_noise``)."""
    return scheduler.add_noise(latents, noise, timesteps)


def training_target(scheduler, latents, noise, timesteps):
    """What the UNet learns to predict: the noise (epsilon models) or the velocity (v_prediction models)."""
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    return noise


def tune(pipe, frames: np.ndarray, prompt: str, steps: int | None = None, lr: float | None = None, seed: int = 0,
         checkpointing: bool | None = None, latents: str = "sample", max_grad_norm: float | None = 1.0,
         progress: bool = True, parameters: dict | None = None) -> TuneResult:
    """Fine-tune ``pipe.unet`` (inflated) in place on ``frames`` (uint8 (F, H, W, 3)) with ``prompt``.

    ``steps`` and ``lr`` left None follow the model (``vp2p.workflow.settings_for``: the official 500 steps of
    3e-5 on Stable Diffusion, the toy's 50 of 3e-4 on the toy model).
    ``latents``: "sample" (official: a fresh draw from the VAE posterior every step) or "mean";
    ``max_grad_norm``: gradient clipping (official 1.0; None turns it off); ``checkpointing``: default on CUDA.
    ``parameters``: what to train (name -> parameter), the paper's ``trainable_parameters(unet)`` when None (the
    course's break-it trains the keys and values too; weights trained so are not saved by ``save_tuned``).
    """
    from vp2p.workflow import settings_for  # here: vp2p.workflow imports this module

    defaults = settings_for(pipe)
    steps = defaults.tune_steps if steps is None else steps
    lr = defaults.tune_lr if lr is None else lr
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps={steps!r}: tuning needs a whole number of steps, at least 1 (the paper uses 500)")
    checks.check_setting("tune_lr", lr, "lr")
    checks.check_setting("tune_latents", latents, "latents")
    checks.check_model_prompts(pipe, {"source prompt": prompt})
    pipe.tokenize([prompt])  # a prompt too long for the text encoder
    start = time.perf_counter()
    unet, device = pipe.unet, pipe.device
    params = trainable_parameters(unet) if parameters is None else parameters
    # Encoded once: the frozen encoder gives the same posterior every step, so drawing from its mean and std is
    # the official per-step `latent_dist.sample()` without re-running the VAE.
    mean, std = (x.float() for x in pipe.encode_posterior(frames))
    cond = pipe.encode_text(prompt)
    num_frames = frames.shape[0]
    checkpointing = device.type == "cuda" if checkpointing is None else checkpointing
    generator = torch.Generator(device="cpu").manual_seed(seed)
    result = TuneResult(trained=sum(p.numel() for p in params.values()))
    with master_weights(params), gradient_checkpointing(unet, checkpointing), training_mode(unet):
        optimizer = torch.optim.AdamW(params.values(), lr=lr)
        scaler = grad_scaler(device, pipe.dtype)
        for _ in tqdm(range(steps), desc="tuning", disable=not progress, leave=False):
            z0 = mean
            if latents == "sample":
                z0 = mean + std * torch.randn(mean.shape, generator=generator).to(device)
            noise = torch.randn(mean.shape, generator=generator).to(device)
            t = torch.randint(0, pipe.scheduler.config.num_train_timesteps, (1,), generator=generator)
            noisy = seams.step("noisy_latents")(pipe.scheduler, z0, noise, t.to(device))
            with autocast(device, pipe.dtype):
                pred = unet_output(unet, noisy, int(t), cond, num_frames)
            target = seams.step("training_target")(pipe.scheduler, z0, noise, t.to(device))
            loss = F.mse_loss(pred.float(), target.float())
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if max_grad_norm is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params.values(), max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            result.losses.append(loss.item())
    result.seconds = time.perf_counter() - start
    return result


def save_tuned(unet, path, overwrite: bool = False, metadata: dict[str, str] | None = None) -> Path:
    """Save only the tuned parameters (a few % of the UNet) as safetensors, with the inflation options and
    ``metadata`` (text; ``vp2p.workflow`` keeps what the weights were tuned on there, in the same file)."""
    path = checks.check_file_target(path, "tuned weights", "tuned.safetensors")
    refuse_overwrite(path, overwrite)
    return save_tensors(path, trainable_parameters(unet), metadata={**(metadata or {}), **inflation_options(unet)})


def tuned_metadata(path) -> dict[str, str]:
    """The text metadata of a file saved by ``save_tuned`` (without reading its tensors)."""
    with safe_open(str(path), "pt") as f:
        return dict(f.metadata() or {})


def load_tuned(unet, path) -> None:
    """Load tuned parameters saved by ``save_tuned`` into an inflated UNet of the same base model."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no tuned weights at {path}; run vp2p.tune(...) and save_tuned(...) first")
    state = load_file(str(path))
    params = trainable_parameters(unet)
    ours = inflation_options(unet)
    # files saved before the option existed were inflated with its then only behaviour
    saved = {"frame_keys": "first", "group_norm": "frame", **tuned_metadata(path)}
    for option, value in ours.items():
        if saved[option] != value:
            raise ValueError(f"{path} was tuned with {option}={saved[option]!r} but this UNet uses {value!r}; "
                             f"inflate it with vp2p.inflate_unet(unet, {option}={saved[option]!r})")
    missing, unexpected = set(params) - set(state), set(state) - set(params)
    reshaped = [n for n, p in params.items() if n in state and state[n].shape != p.shape]
    if missing or unexpected or reshaped:
        raise ValueError(f"{path} does not fit this UNet ({len(missing)} missing, {len(unexpected)} unexpected, "
                         f"{len(reshaped)} differently shaped tensors); load the same base model and inflate it with "
                         "the same options")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state[name].to(p.device, p.dtype))
