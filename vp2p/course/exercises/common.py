"""What every check shares: the comparison, the hints of a generic mismatch, small inputs (seeded tensors, the toy
tokenizer, a DDIM schedule, a tiny stand-in UNet)."""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

import torch

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"


class ExerciseFailed(AssertionError):
    """A check found the student's function disagreeing with vp2p's; the message is the hint."""


@dataclass
class Case:
    """One input of a check: a label a student can read ("2 videos of 3 frames") and the call's arguments."""

    label: str
    args: tuple


# -- comparing ------------------------------------------------------------------------------------------------------


def same(got, expected, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Whether ``got`` is a tensor with ``expected``'s shape and (up to float rounding) its values."""
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return False
    if expected.dtype == torch.bool:
        return got.dtype == torch.bool and bool((got == expected).all())
    return torch.allclose(got.detach().double(), expected.detach().double(), atol=atol, rtol=rtol)


def first_match(got, candidates) -> str | None:
    """The hint of the first known mistake ``got`` equals; ``candidates`` are (hint, thunk computing the mistake)."""
    for hint, mistake in candidates:
        try:
            wrong = mistake()
        except Exception:  # a mistake that cannot be formed for this case (e.g. a shape that does not split)
            continue
        if same(got, wrong):
            return hint
    return None


def describe_mismatch(got, expected, atol: float = 1e-5, rtol: float = 1e-4) -> str:
    """What differs, when no known mistake explains it: type, shape, dtype, sign, a constant factor, or where."""
    if not isinstance(got, torch.Tensor):
        return f"returned a {type(got).__name__}; expected a torch.Tensor of shape {tuple(expected.shape)}"
    if got.shape != expected.shape:
        hint = f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
        if sorted(got.shape) == sorted(expected.shape):
            hint += " (the same sizes in another order: are two axes swapped?)"
        return hint
    if expected.dtype == torch.bool and got.dtype != torch.bool:
        return f"a {got.dtype} tensor where a bool mask is expected (compare with the threshold: score > threshold)"
    g, e = got.detach().double(), expected.detach().double()
    if not torch.isfinite(g).all():
        return "the result holds NaN or inf values (a division by zero?)"
    if expected.dim() == 2 and expected.shape[0] == expected.shape[1] and same(g.T, e, atol, rtol):
        return "transposed: rows and columns are swapped"
    if same(-g, e, atol, rtol):
        return "the sign is flipped"
    norm = float((e * e).sum())
    if norm > 0:
        factor = float((g * e).sum()) / norm
        if abs(factor - 1) > 1e-3 and same(g, factor * e, atol, rtol):
            return f"off by a constant factor: {factor:.4g} × the expected values"
    wrong = ~torch.isclose(g, e, atol=atol, rtol=rtol)
    return (f"{int(wrong.sum())} of {wrong.numel()} values differ (largest difference "
            f"{float((g - e).abs().max()):.3g})")


def student_output(student: Callable, case: Case):
    """Call the student's function on copies of the case's inputs, turning its errors into hints."""
    try:
        return student(*clone(case.args))
    except NotImplementedError:
        raise ExerciseFailed("not written yet: replace `raise NotImplementedError(...)` in the solution cell above "
                             "with your code, run that cell, then this one") from None
    except ExerciseFailed:
        raise
    except Exception as error:
        raise ExerciseFailed(f"{case.label}: your function raised {type(error).__name__}: {error}") from error


def clone(args):
    """Copies of tensors (so that an in-place change cannot leak into the next case); other values as they are."""
    return tuple(a.clone() if isinstance(a, torch.Tensor) else copy.copy(a) for a in args)


def compare(student: Callable, reference: Callable, cases: list[Case], diagnose: Callable | None = None,
            atol: float = 1e-5, rtol: float = 1e-4) -> int:
    """Run ``student`` and ``reference`` on every case; raise ``ExerciseFailed`` with a hint at the first that
    differs. ``diagnose(got, expected, case)`` may name the mistake. Returns the number of cases."""
    for case in cases:
        expected = reference(*clone(case.args))
        got = student_output(student, case)
        if not same(got, expected, atol, rtol):
            hint = (diagnose(got, expected, case) if diagnose else None) or describe_mismatch(got, expected, atol, rtol)
            raise ExerciseFailed(f"{case.label}: {hint}")
    return len(cases)


# -- small inputs the checks share -----------------------------------------------------------------------------------


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@functools.lru_cache(maxsize=1)
def toy_tokenizer():
    """The bundled toy model's CLIP tokenizer: one token per toy-world word, characters for any other word."""
    from transformers import CLIPTokenizer

    from vp2p.io.loading import toy_model_path

    return CLIPTokenizer.from_pretrained(toy_model_path() / "tokenizer")


def sd_scheduler(prediction_type: str = "epsilon"):
    """A DDIM scheduler with Stable Diffusion 1.x's noise schedule (the toy model uses the same)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type)


def ddim_schedule(num_steps: int, prediction_type: str = "epsilon"):
    from vp2p.ddim import DDIMSchedule

    return DDIMSchedule.from_scheduler(sd_scheduler(prediction_type), num_steps)


class TinyDenoiser(torch.nn.Module):
    """A stand-in for the UNet in the null-text checks, called like diffusers' UNet (``.sample`` out).

    A 1×1 mix of the latents' channels plus a per-channel term from the text embeddings (a tanh, so the gradient
    differs from entry to entry of the embedding), scaled with the timestep. Frozen, like the real UNet during
    inversion: gradients reach only the embedding being optimised."""

    def __init__(self, channels: int = 4, dim: int = 8, seed: int = 0):
        super().__init__()
        g = generator(seed)
        self.mix = torch.nn.Parameter(torch.eye(channels) + 0.2 * torch.randn(channels, channels, generator=g))
        self.text = torch.nn.Parameter(0.5 * torch.randn(dim, channels, generator=g))
        self.requires_grad_(False)

    def forward(self, sample, timestep, encoder_hidden_states, cross_attention_kwargs=None):
        words = (torch.tanh(encoder_hidden_states) @ self.text).mean(1)  # (rows, channels)
        latents = torch.einsum("bchw,cd->bdhw", sample, self.mix)
        return SimpleNamespace(sample=0.1 * latents + (1 + float(timestep) / 1000) * words[..., None, None])
