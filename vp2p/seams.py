"""The method's replaceable steps: the functions the course's exercises ask a student to write, looked up by name.

The method modules call each of these steps through ``step(name)`` instead of by its Python name, so that
``vp2p.course.exercises.use(blend_mask=my_blend_mask)`` can run the real pipeline with a student's function in
place of vp2p's — and put vp2p's back afterwards. Nothing else changes: with no step replaced, ``step(name)`` is
vp2p's own function, called with the same arguments, so every result stays bit for bit what it was.

A step's *stages* say which cached results it shapes (``vp2p.workflow`` keeps tuned weights and inversions under
the key of their inputs): the key of a stage names every replaced step of that stage, with a fingerprint of the
replacement's code, so a student's run never loads vp2p's cached result, nor vp2p's run a student's.

Signatures are the exercises' (the course's notebooks 01–06 state them); ``SEAMS`` lists each step's home.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Seam:
    module: str  # where vp2p's own function lives
    attr: str
    stages: tuple[str, ...]  # the cached stages whose results it shapes: "tune", "invert" (edits are not cached)
    does: str  # one line, for messages


SEAMS = {
    "frame_context": Seam("vp2p.attention", "first_frame_context", ("tune", "invert"),
                          "frame attention's keys and values: (hidden, num_frames) -> frame 0's hidden states"),
    "noisy_latents": Seam("vp2p.tuning", "noisy_latents", ("tune",),
                          "the forward process of a tuning step: (scheduler, latents, noise, timesteps) -> x_t"),
    "training_target": Seam("vp2p.tuning", "training_target", ("tune",),
                            "what the tuning loss compares the UNet with: (scheduler, latents, noise, timesteps)"),
    "ddim_inverse_step": Seam("vp2p.ddim", "ddim_inverse_step", ("invert",),
                              "one DDIM inversion step: (model_output, t, sample, schedule) -> sample at t"),
    "ddim_step": Seam("vp2p.ddim", "ddim_step", ("invert",),
                      "one DDIM sampling step: (model_output, t, sample, schedule) -> sample at t - Δ"),
    "guide": Seam("vp2p.ddim", "guide", ("invert",),
                  "classifier-free guidance: (uncond, cond, guidance_scale) -> guided prediction"),
    "null_text_loss": Seam("vp2p.inversion", "null_text_loss", ("invert",),
                           "the null-text loss of one DDIM step (paper eq. 9)"),
    "replacement_mapper": Seam("vp2p.alignment", "replacement_mapper", (),
                               "Replace's token mapper: (source, target, tokenizer, max_len) -> M"),
    "refinement_mapper": Seam("vp2p.alignment", "refinement_mapper", (),
                              "Refine's aligned tokens: (source, target, tokenizer, max_len) -> (mapper, alphas)"),
    "blend_mask": Seam("vp2p.controllers", "blend_mask", (),
                       "LocalBlend's mask: (maps, token_indices, latent_size, threshold) -> bool mask"),
    "refine_maps": Seam("vp2p.controllers", "refine_maps", (),
                        "Refine's maps: (source, targets, mappers, alphas) -> target maps"),
    "reweight_maps": Seam("vp2p.controllers", "reweight_maps", (),
                          "Reweight's maps: (maps, equalizer) -> scaled maps"),
    "equalizer": Seam("vp2p.editing", "equalizer", (),
                      "Reweight's equalizer: (prompt, weights, tokenizer, max_len) -> weights per token"),
}

_replaced: dict[str, Callable] = {}


def default(name: str) -> Callable:
    """vp2p's own function for step ``name``."""
    seam = SEAMS[name]
    return getattr(importlib.import_module(seam.module), seam.attr)


def step(name: str) -> Callable:
    """The function that runs step ``name`` now: a replacement if one is in place, vp2p's own otherwise."""
    replacement = _replaced.get(name)
    return replacement if replacement is not None else default(name)


def replace(steps: dict[str, Callable]) -> dict[str, Callable | None]:
    """Put ``steps`` (name -> function) in place; returns what was in place before (for ``restore``)."""
    unknown = sorted(set(steps) - set(SEAMS))
    if unknown:
        raise ValueError(f"no replaceable step named {', '.join(map(repr, unknown))}; the steps are "
                         f"{', '.join(SEAMS)}")
    for name, function in steps.items():
        if not callable(function):
            raise TypeError(f"{name}={function!r} is not a function; pass the function itself, e.g. "
                            f"use({name}={name})")
    before = {name: _replaced.get(name) for name in steps}
    _replaced.update(steps)
    return before


def restore(before: dict[str, Callable | None]) -> None:
    """Undo a ``replace``: each step back to what ``before`` says (None: vp2p's own)."""
    for name, function in before.items():
        if function is None:
            _replaced.pop(name, None)
        else:
            _replaced[name] = function


def replaced(stage: str | None = None) -> list[str]:
    """The names of the steps replaced now (of ``stage`` only, when given)."""
    return sorted(n for n in _replaced if stage is None or stage in SEAMS[n].stages)


def code_fingerprint(function: Callable, depth: int = 3) -> str:
    """A fingerprint of a function's code (bytecode, constants, names): another body gives another fingerprint,
    the same cell run again the same one — in any process."""
    code = getattr(function, "__code__", None)
    if code is None:  # a callable object or a partial: its type and repr are what we can see
        return hashlib.sha256(f"{type(function).__qualname__}:{function!r}".encode()).hexdigest()[:16]
    parts = [code.co_code, repr(code.co_consts).encode(), repr(code.co_names).encode()]
    for cell in getattr(function, "__closure__", None) or ():  # a wrapper: what it wraps tells two apart
        value = cell.cell_contents
        inner = code_fingerprint(value, depth - 1) if callable(value) and depth > 0 else repr(value)[:200]
        parts.append(inner.encode())
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


def cache_entries(stage: str) -> dict:
    """What the cache key of ``stage`` adds for replaced steps: {} with none (keys stay what they were), else
    {"replaced_steps": {name: code fingerprint}}."""
    names = replaced(stage)
    return {"replaced_steps": {n: code_fingerprint(_replaced[n]) for n in names}} if names else {}
