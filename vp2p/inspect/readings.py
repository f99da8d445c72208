"""Readings of a recorded edit: numbers a debugger shows beside the maps, computed from what an ``AttentionRecorder``
kept — pure functions of tensors, each formula taken from where it lives (the blend from ``LocalBlend``, x̂_0
from ``vp2p.ddim``, the rows of the batch from ``vp2p.layout``).

* ``token_shares``: how a branch's cross-attention divides between the start token, each word, the end token and
  the padding (CLIP's start token takes most of it in Stable Diffusion; the words share what is left);
* ``blend_score`` / ``threshold_blend``: LocalBlend's score before thresholding, from the recorded maps, and the mask at
  any threshold — the threshold can be moved after the edit, on what was recorded;
* ``clean_frames``: the clean video x̂_0 the model predicted at a step, decoded;
* ``ab_difference``: two edits (A/B) compared frame by frame.
"""

from __future__ import annotations

import numpy as np
import torch

from vp2p import layout
from vp2p.controllers import threshold_blend  # noqa: F401  (the mask at a threshold, LocalBlend's own formula)

START, END, PADDING = "start token", "end token", "padding"


def shares(maps: torch.Tensor, padding: torch.Tensor, num_prompt_tokens: int) -> torch.Tensor:
    """(tokens of the prompt + 1,) shares of attention: each of the prompt's tokens (start and end included), then
    the padding (the kept columns past the prompt's end plus ``padding``, the attention past the kept columns),
    averaged over every position of every frame. maps (F, h, w, kept tokens), padding (F, h, w). They sum to 1:
    a row of attention is a distribution over all the text encoder's tokens."""
    per_token = maps.mean(dim=(0, 1, 2))
    rest = per_token[num_prompt_tokens:].sum() + padding.mean()
    return torch.cat([per_token[:num_prompt_tokens], rest[None]])


def token_shares(recorder, tokenizer, prompt: str, step: int | None = None, branch: int = 1,
                 **selection) -> dict[str, float]:
    """{label: share} of a branch's cross-attention at a step (None: the mean over the recorded steps), in the
    prompt's order: the start token, each word token, the end token, the padding. ``selection``: layer, place,
    resolution, head as ``AttentionRecorder.cross_maps``."""
    from vp2p.inspect.viz import token_labels

    labels = token_labels(tokenizer, prompt)
    maps = recorder.cross_maps(step, branch, **selection)
    padding = recorder.padding_maps(step, branch, **selection)
    values = shares(maps, padding, len(labels)).tolist()
    names = [START] + [f"{i}: {w}" for i, w in enumerate(labels[1:-1], 1)] + [END, PADDING]
    return dict(zip(names, values))


def blend_maps(recorder, step: int) -> torch.Tensor:
    """(branches, F, h, w, tokens): the maps LocalBlend reads at ``step`` — the mean over steps 0…step of the
    cross-attention at its resolution in the store's places (heads and layers averaged) — from the recorder."""
    blend, store = getattr(recorder.inner, "local_blend", None), recorder.inner
    if blend is None:
        raise ValueError("this edit ran without LocalBlend: give blend words (blend_words=['circle', 'circle'])")
    missing = sorted(set(range(step + 1)) - set(recorder.recorded_steps()))
    if missing:
        raise ValueError(f"the blend at step {step} averages steps 0…{step}, and steps {missing} were not recorded; "
                         "record every step (steps=None)")
    resolution = store.blend_height
    per_step = [torch.stack([recorder.cross_maps(s, b, place=store.places, resolution=resolution)
                             for b in range(recorder.num_branches)]) for s in range(step + 1)]
    return torch.stack(per_step).mean(0)


def blend_score(recorder, step: int) -> torch.Tensor:
    """(branches, F, H, W): LocalBlend's score before thresholding at ``step`` (``LocalBlend.score``), from the
    recorded maps; ``threshold_blend(score, threshold)`` is its mask at any threshold."""
    return recorder.local_blend.score(blend_maps(recorder, step), recorder.latent_size)


def blend_steps(recorder) -> list[int]:
    """The steps at which LocalBlend ran (from its start fraction to the end)."""
    blend = getattr(recorder.inner, "local_blend", None)
    return [] if blend is None else list(range(int(blend.start * recorder.num_steps), recorder.num_steps))


def clean_latents(recorder, step: int, branch: int) -> torch.Tensor:
    """(F, C, h, w): the clean latents x̂_0 the model predicted for ``branch`` at ``step`` (before LocalBlend)."""
    if step not in recorder.clean:
        raise ValueError(f"x̂_0 of step {step} was not kept; kept steps: {sorted(recorder.clean)} (record with "
                         "AttentionRecorder(keep_clean=True), the default)")
    video = layout.frames_view(recorder.clean[step], recorder.clean[step].shape[0] // recorder.num_branches)
    return video[branch]


def clean_frames(pipe, recorder, step: int, branch: int = 1) -> np.ndarray:
    """uint8 (F, H, W, 3): the clean video the model predicted at ``step``, decoded by the pipeline's VAE."""
    return pipe.decode_latents(clean_latents(recorder, step, branch).to(pipe.device))


def ab_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per frame, the mean absolute difference of two videos uint8 (F, H, W, 3), in grey levels (0…255)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"A and B must be videos of one shape to compare, got {a.shape} and {b.shape}; edit the "
                         "same prepared clip twice")
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=(1, 2, 3))
