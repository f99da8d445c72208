"""DDIM: the deterministic sampling step, its inverse, and classifier-free guidance.

The only place these formulas live. With ᾱ_t the cumulative product of the noise schedule (``alphas_cumprod``):

    x_t = √ᾱ_t · x_0 + √(1-ᾱ_t) · ε                          (the forward process)
    DDIM step  t → s (s = t - Δ):  x_s = √ᾱ_s · x̂_0 + √(1-ᾱ_s) · ε̂      (paper eq. 2)
    DDIM inversion s → t:          x_t = √ᾱ_t · x̂_0 + √(1-ᾱ_t) · ε̂      (paper eq. 3; ε̂ evaluated at x_s)

where (x̂_0, ε̂) come from the model output: ε directly ("epsilon" models: SD 1.x) or the velocity
v = √ᾱ·ε - √(1-ᾱ)·x_0 ("v_prediction" models: SD 2.x at 768 px).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DDIMSchedule:
    """The timesteps of an N-step DDIM run and the ᾱ values it needs, read off a diffusers scheduler."""

    timesteps: list[int]  # descending, as sampling visits them
    alphas_cumprod: torch.Tensor  # (num_train_timesteps,) float64
    final_alpha_cumprod: float  # ᾱ used "before" the first training step
    step_size: int
    prediction_type: str

    @classmethod
    def from_scheduler(cls, scheduler, num_steps: int) -> "DDIMSchedule":
        if num_steps < 1:
            raise ValueError(f"num_steps={num_steps}: DDIM needs at least one step (Video-P2P uses 50).")
        scheduler.set_timesteps(num_steps)
        prediction_type = scheduler.config.prediction_type
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction_type {prediction_type!r} is not supported; use epsilon or v_prediction")
        return cls(
            timesteps=[int(t) for t in scheduler.timesteps],
            # on the CPU: scheduler.add_noise (tuning) moves alphas_cumprod to the GPU, and reading one value a step
            # from there would synchronise the device every step
            alphas_cumprod=scheduler.alphas_cumprod.double().cpu(),
            final_alpha_cumprod=float(scheduler.final_alpha_cumprod),
            step_size=scheduler.config.num_train_timesteps // num_steps,
            prediction_type=prediction_type,
        )

    def __len__(self) -> int:
        return len(self.timesteps)

    def alpha(self, t: int) -> float:
        return float(self.alphas_cumprod[t]) if t >= 0 else self.final_alpha_cumprod


def split_prediction(model_output, sample, alpha: float, prediction_type: str):
    """(x̂_0, ε̂) from a model output at a sample whose noise level is ᾱ = ``alpha``."""
    a, b = alpha**0.5, (1 - alpha) ** 0.5
    if prediction_type == "epsilon":
        eps = model_output
        x0 = (sample - b * eps) / a
    else:  # v_prediction
        x0 = a * sample - b * model_output
        eps = a * model_output + b * sample
    return x0, eps


def predicted_x0(model_output, t: int, sample, schedule: DDIMSchedule):
    """x̂_0, the clean latents the model predicts at step ``t`` (``split_prediction``): what a debugger decodes to
    show where each step is heading."""
    return split_prediction(model_output, sample, schedule.alpha(t), schedule.prediction_type)[0]


def ddim_step(model_output, t: int, sample, schedule: DDIMSchedule):
    """One DDIM sampling step from timestep ``t`` to ``t - Δ``."""
    x0, eps = split_prediction(model_output, sample, schedule.alpha(t), schedule.prediction_type)
    alpha_prev = schedule.alpha(t - schedule.step_size)
    return alpha_prev**0.5 * x0 + (1 - alpha_prev) ** 0.5 * eps


def ddim_inverse_step(model_output, t: int, sample, schedule: DDIMSchedule):
    """One DDIM inversion step from ``t - Δ`` up to ``t``; ``model_output`` is the model at (sample, t)."""
    x0, eps = split_prediction(model_output, sample, schedule.alpha(t - schedule.step_size), schedule.prediction_type)
    alpha = schedule.alpha(t)
    return alpha**0.5 * x0 + (1 - alpha) ** 0.5 * eps


def guide(uncond: torch.Tensor, cond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance: uncond + w·(cond - uncond)."""
    return uncond + guidance_scale * (cond - uncond)
