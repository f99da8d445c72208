"""Attention controllers: record cross-attention maps, and edit the target branch with the source branch's maps.

The editing batch holds B branches (branch 0: the source prompt, 1…B-1: target prompts), each a video of F frames,
twice when guided: [unconditional branches…, conditional branches…] (the row layout: ``vp2p.layout``).
As in prompt-to-prompt, only the conditional half is read and edited.

* ``AttentionStore`` keeps per-frame cross-attention maps averaged over heads and layers at a few resolutions —
  per step (small: only the prompt's tokens) and as a running mean over the steps so far.
* ``AttentionEdit`` adds the edits of Algorithm 1: cross-attention injection for the first steps, self-attention
  injection (temporal attention by default, as the official code; or frame attention), and ``LocalBlend`` after
  each step. How the source maps become the target maps is a *rule*, a pure function composed by
  ``vp2p.make_controller``: ``Replacement`` (word swap), ``Refinement`` (added words), ``Reweighting`` (scale
  chosen tokens, on top of either) — small callables around one formula each (``replace_maps``,
  ``refine_maps``, ``reweight_maps``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from vp2p import layout, seams
from vp2p.attention import Layer, map_size, map_size_where


class AttentionStore:
    """Per-frame cross-attention maps of every branch, averaged over heads and over the layers of a resolution.

    ``resolutions``: map heights to keep (None: chosen by ``start`` — the blend resolution). ``places``: which
    UNet parts contribute (the official LocalBlend uses the down and up blocks). ``num_tokens``: leading tokens kept
    (None: all); ``keep_steps``: keep every step's maps too (for step sliders), on the CPU in fp16.
    """

    def __init__(self, resolutions=None, places=("down", "up"), num_tokens=None, keep_steps=True):
        self.requested = [resolutions] if isinstance(resolutions, int) else resolutions
        self.places = tuple(places)
        self.num_tokens = num_tokens
        self.keep_steps = keep_steps
        self.step = 0

    # -- run protocol: start, then per step begin_step / (UNet call) / end_step
    def start(self, latent_size: tuple[int, int], num_branches: int, guided: bool, num_steps: int,
              default_resolution: int | None = None):
        self.latent_size = tuple(latent_size)
        self.num_branches, self.guided, self.num_steps = num_branches, guided, num_steps
        heights = self.requested or [default_resolution or latent_size[0]]
        sizes = [map_size_where(self.latent_size, height=h) for h in heights]
        self.shapes = {h * w: (h, w) for h, w in sizes}  # query length -> map size
        self.sums: dict[int, torch.Tensor] = {}
        self.step_maps: dict[int, list[torch.Tensor]] = {h: [] for h, _ in self.shapes.values()}
        self.steps_done = 0

    def begin_step(self, step: int):
        self.step = step
        self._layer_sums: dict[int, torch.Tensor] = {}
        self._layer_counts: dict[int, int] = {}

    def records(self, layer: Layer, query_length: int) -> bool:
        return layer.kind == "cross" and layer.place in self.places and query_length in self.shapes

    def wants(self, layer: Layer, query_length: int) -> bool:
        return self.records(layer, query_length)

    def __call__(self, probs: torch.Tensor, layer: Layer, num_frames: int) -> torch.Tensor:
        if self.records(layer, probs.shape[2]):
            self.record(probs)
        return probs

    def conditional(self, probs: torch.Tensor) -> torch.Tensor:
        """The conditional half as (branches, F or positions, heads, queries, keys) — a view, edits write through."""
        return layout.conditional(probs, self.num_branches, self.guided)

    def record(self, probs: torch.Tensor):
        maps = self.conditional(probs).mean(dim=2)  # (B, F, queries, tokens), heads averaged
        if self.num_tokens:
            maps = maps[..., : self.num_tokens]
        q = probs.shape[2]
        self._layer_sums[q] = self._layer_sums.get(q, 0) + maps.float()
        self._layer_counts[q] = self._layer_counts.get(q, 0) + 1

    def end_step(self):
        for q, total in self._layer_sums.items():
            h, w = self.shapes[q]
            maps = (total / self._layer_counts[q]).reshape(*total.shape[:2], h, w, total.shape[-1])
            self.sums[h] = self.sums[h] + maps if h in self.sums else maps
            if self.keep_steps:
                self.step_maps[h].append(maps.half().cpu())
        self.steps_done += 1

    # -- reading the maps
    def resolutions(self) -> list[int]:
        return sorted(h for h, _ in self.shapes.values())

    def maps(self, resolution: int | None = None, step: int | None = None) -> torch.Tensor:
        """(branches, F, h, w, tokens): the mean over the steps so far, or over steps 0..``step``."""
        h = resolution or self.resolutions()[0]
        if h not in self.step_maps:
            raise ValueError(f"no maps at resolution {h}; this store keeps {self.resolutions()}")
        if step is None:
            if h not in self.sums:
                raise ValueError("no attention recorded yet: run a denoising step with this controller first")
            return self.sums[h] / self.steps_done
        if not self.step_maps[h]:
            raise ValueError("per-step maps were not kept (keep_steps=False)")
        return torch.stack(self.step_maps[h][: step + 1]).float().mean(0)

    def step_callback(self, latents: torch.Tensor) -> torch.Tensor:
        return latents


def step_window(value, rows: int) -> tuple[int, int]:
    """A fraction f (→ rows [0, int(f·rows))) or a pair (a, b) (→ [int(a·rows), int(b·rows))) as step indices."""
    start, end = (0.0, value) if isinstance(value, (int, float)) else value
    if not 0 <= start <= end <= 1:
        raise ValueError(f"step window {value!r} must be a fraction in [0, 1] or a pair 0 <= start <= end <= 1")
    return int(start * rows), int(end * rows)


def cross_replace_alpha(prompts, num_steps, cross_replace_steps, tokenizer, max_len) -> torch.Tensor:
    """(num_steps, targets, max_len): 1 where target token j takes the source maps at a step.

    ``cross_replace_steps``: a fraction, a (start, end) pair, or a dict with a ``"default_"`` entry and per-word
    entries (words of the target prompts), as prompt-to-prompt's configs. (The official Video-P2P script wraps
    its config value in ``{"default_": value}``, so it cannot give per-word windows; vp2p can.)
    """
    from vp2p.alignment import word_token_indices

    spec = cross_replace_steps if isinstance(cross_replace_steps, dict) else {"default_": cross_replace_steps}
    rows = num_steps + 1  # official: N + 1 rows, a window's edge at int(f·(N + 1)); step i reads row i
    alpha = torch.zeros(rows, len(prompts) - 1, max_len)
    start, end = step_window(spec.get("default_", 1.0), rows)
    alpha[start:end] = 1
    for word, window in spec.items():
        if word == "default_":
            continue
        start, end = step_window(window, rows)
        found = False
        for b, prompt in enumerate(prompts[1:]):
            try:
                indices = word_token_indices(prompt, word, tokenizer)
            except ValueError:
                continue
            found = True
            alpha[:, b, indices] = 0
            alpha[start:end, b, indices] = 1
        if not found:  # official: silently ignored
            raise ValueError(f"cross_replace_steps names {word!r}, which is in none of the target prompts "
                             f"{prompts[1:]}; use a word of a target prompt or 'default_'.")
    return alpha[:num_steps]


# -- how the source maps become the target maps: one formula each, and the rules make_controller composes

def replace_maps(source: torch.Tensor, mappers: torch.Tensor) -> torch.Tensor:
    """Word swap: target token j gets Σ_i source map i · mapper[i, j].

    source (F, heads, queries, tokens), mappers (targets, tokens, tokens) → (targets, F, heads, queries, tokens).
    """
    return torch.einsum("fhqi,bij->bfhqj", source, mappers.to(source))


def refine_maps(source: torch.Tensor, targets: torch.Tensor, mappers: torch.Tensor,
                alphas: torch.Tensor) -> torch.Tensor:
    """Added words: target token j takes source token mappers[b, j] where alphas[b, j] = 1, keeps its own where 0.

    source (F, heads, queries, tokens), targets (targets, F, heads, queries, tokens), mappers/alphas (targets,
    tokens).
    """
    taken = source[..., mappers.to(source.device)].permute(3, 0, 1, 2, 4)  # (targets, F, heads, queries, tokens)
    alphas = alphas.to(source)[:, None, None, None, :]
    return taken * alphas + targets * (1 - alphas)


def reweight_maps(maps: torch.Tensor, equalizer: torch.Tensor) -> torch.Tensor:
    """Scale each target's token columns: maps (targets, F, heads, queries, tokens) · equalizer (targets, tokens)."""
    return maps * equalizer.to(maps)[:, None, None, None, :]


TargetMaps = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (source, targets) -> new target maps


@dataclass(eq=False)
class Replacement:
    """Word swap as a rule: ``replace_maps`` with these mappers (targets, tokens, tokens)."""

    mappers: torch.Tensor

    def __call__(self, source, targets):
        return replace_maps(source, self.mappers)  # (not an exercise: the mapper is; see vp2p.seams)


@dataclass(eq=False)
class Refinement:
    """Added words as a rule: ``refine_maps`` with these mappers and alphas (targets, tokens)."""

    mappers: torch.Tensor
    alphas: torch.Tensor

    def __call__(self, source, targets):
        return seams.step("refine_maps")(source, targets, self.mappers, self.alphas)


@dataclass(eq=False)
class Reweighting:
    """Reweight the maps ``base`` gives (a Replacement or Refinement), or the source's own maps without a base."""

    equalizer: torch.Tensor  # (targets, tokens)
    base: TargetMaps | None = None

    def __call__(self, source, targets):
        maps = source.expand_as(targets) if self.base is None else self.base(source, targets)
        return seams.step("reweight_maps")(maps, self.equalizer)


def blend_score(maps: torch.Tensor, token_indices: list[list[int]], latent_size: tuple[int, int]) -> torch.Tensor:
    """LocalBlend's score before thresholding, (B, F, H, W) in [0, 1], from maps (B, F, h, w, tokens): per branch
    the blend tokens' maps summed, max-pooled 3×3, upsampled to the latent size, divided by each frame's maximum."""
    weights = torch.zeros(len(token_indices), max([maps.shape[-1]] + [i + 1 for ids in token_indices for i in ids]))
    for branch, indices in enumerate(token_indices):
        weights[branch, indices] = 1
    weights = weights[:, : maps.shape[-1]].to(maps)
    score = (maps * weights[:, None, None, None, :]).sum(-1)  # (B, F, h, w)
    score = F.max_pool2d(score, kernel_size=3, stride=1, padding=1)
    score = F.interpolate(score, size=latent_size, mode="nearest")
    return score / score.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)


def threshold_blend(score: torch.Tensor, threshold: float) -> torch.Tensor:
    """bool (B, F, H, W): where a blend score exceeds the threshold, each target's mask united with the source's
    (branch 0)."""
    mask = score > threshold
    return mask | mask[:1]


def blend_mask(maps: torch.Tensor, token_indices: list[list[int]], latent_size: tuple[int, int],
               threshold: float = 0.3) -> torch.Tensor:
    """LocalBlend's mask, bool (B, F, H, W), from maps (B, F, h, w, tokens): the score thresholded, each target's
    mask united with the source's."""
    return threshold_blend(blend_score(maps, token_indices, latent_size), threshold)


class LocalBlend:
    """Keep everything outside the edited object from the source branch (paper Sec. 3.3 and Algorithm 1, per
    frame).

    The blend words' maps (mean over the steps so far) are summed over their tokens, max-pooled 3×3, upsampled to
    the latent size, divided by each frame's maximum and thresholded; a target's mask is the union with the
    source's; then z_target ← z_source + mask·(z_target − z_source), from ``start`` (fraction of steps) on.
    """

    def __init__(self, token_indices: list[list[int]], max_len: int, threshold: float = 0.3, start: float = 0.2,
                 resolution: int | None = None):
        if not 0 <= start <= 1:
            raise ValueError(f"blend start {start} must be a fraction of the steps in [0, 1]")
        self.token_indices = [list(indices) for indices in token_indices]
        self.max_len = max_len
        self.threshold, self.start, self.resolution = threshold, start, resolution
        self.masks: list[torch.Tensor] = []  # per applied step: bool (B, F, H, W), on the CPU

    def score(self, maps: torch.Tensor, latent_size: tuple[int, int]) -> torch.Tensor:
        """The blend score before thresholding, (B, F, H, W) in [0, 1], from maps (B, F, h, w, tokens)."""
        return blend_score(maps, self.token_indices, latent_size)

    def mask(self, maps: torch.Tensor, latent_size: tuple[int, int]) -> torch.Tensor:
        """bool (B, F, H, W) from maps (B, F, h, w, tokens): ``blend_mask`` (the replaceable step)."""
        return seams.step("blend_mask")(maps, self.token_indices, latent_size, self.threshold)

    def __call__(self, latents: torch.Tensor, store: AttentionStore, resolution: int) -> torch.Tensor:
        if store.step < int(self.start * store.num_steps):
            return latents
        mask = self.mask(store.maps(resolution), store.latent_size)
        self.masks.append(mask.cpu())
        video = layout.frames_view(latents, mask.shape[1])  # (branches, F, C, h, w)
        blended = video[:1] + mask[:, :, None].to(latents.dtype) * (video - video[:1])
        return blended.view_as(latents)


class AttentionEdit(AttentionStore):
    """Algorithm 1's attention edits on the target branches.

    ``target_maps`` a rule (source, targets) → target maps (``Replacement``, ``Refinement``, ``Reweighting``);
    ``cross_alpha`` (num_steps, targets, tokens) from ``cross_replace_alpha``; ``self_replace_steps`` a fraction or
    window of the steps; ``self_attention``: "temporal" (official behaviour) or "frame" (maps of the frame
    attention — or of an image model's self-attention, as prompt-to-prompt — only at resolutions up to latent/2 as
    for SD's ≤ 32×32); ``local_blend``: a ``LocalBlend`` or None.
    """

    def __init__(self, target_maps: TargetMaps, cross_alpha: torch.Tensor, self_replace_steps=0.5,
                 self_attention: str = "temporal", local_blend: LocalBlend | None = None, **store_options):
        super().__init__(**store_options)
        if self_attention not in ("temporal", "frame"):
            raise ValueError(f"self_attention={self_attention!r}; choose 'temporal' (official) or 'frame'")
        self.target_maps = target_maps
        self.cross_alpha = cross_alpha
        self.self_window = step_window(self_replace_steps, cross_alpha.shape[0])
        self.self_attention = self_attention
        self.local_blend = local_blend

    def start(self, latent_size, num_branches, guided, num_steps, default_resolution=None):
        if num_steps != self.cross_alpha.shape[0] or num_branches != self.cross_alpha.shape[1] + 1:
            raise ValueError(f"this controller was made for {self.cross_alpha.shape[1] + 1} prompts and "
                             f"{self.cross_alpha.shape[0]} steps, not {num_branches} and {num_steps}; remake it")
        if self.local_blend is not None:
            self.blend_height = self.local_blend.resolution or default_resolution or latent_size[0]
            self.local_blend.masks = []
            self.requested = sorted(set(self.requested or []) | {self.blend_height})
        super().start(latent_size, num_branches, guided, num_steps, default_resolution)

    def begin_step(self, step: int):
        super().begin_step(step)
        self.alpha_now = self.cross_alpha[step]
        self.cross_active = bool(self.alpha_now.any())
        self.self_active = self.self_window[0] <= step < self.self_window[1]

    def edits(self, layer: Layer, query_length: int) -> bool:
        if layer.kind == "cross":
            return self.cross_active
        # "frame" also names an image model's own self-attention: prompt-to-prompt's self-attention injection
        kind = "frame" if layer.kind == "self" else layer.kind
        if kind == self.self_attention and self.self_active:
            h, w = map_size(self.latent_size, 1)  # maps up to latent/2 (SD's ≤ 32×32)
            return layer.kind == "temporal" or query_length <= h * w
        return False

    def wants(self, layer: Layer, query_length: int) -> bool:
        return self.records(layer, query_length) or self.edits(layer, query_length)

    def __call__(self, probs: torch.Tensor, layer: Layer, num_frames: int) -> torch.Tensor:
        if self.edits(layer, probs.shape[2]):
            cond = self.conditional(probs)
            source, targets = cond[0], cond[1:]
            if layer.kind == "cross":
                alpha = self.alpha_now.to(probs)[:, None, None, None, :]
                targets.copy_(self.target_maps(source, targets) * alpha + targets * (1 - alpha))
            else:
                targets.copy_(source.expand_as(targets))
        return super().__call__(probs, layer, num_frames)

    def step_callback(self, latents: torch.Tensor) -> torch.Tensor:
        return latents if self.local_blend is None else self.local_blend(latents, self, self.blend_height)


# -- several edits of one source in one batch (a sweep of a knob): each target keeps its own controller's edit

@dataclass(eq=False)
class Stacked:
    """Several rules side by side: rule k makes the maps of its own ``sizes[k]`` targets, in order."""

    rules: list
    sizes: list[int]

    def __call__(self, source, targets):
        parts = torch.split(targets, self.sizes)
        return torch.cat([rule(source, part) for rule, part in zip(self.rules, parts)])


def shared_settings(edit: AttentionEdit) -> tuple:
    """What every target of a batch shares, so what edits must agree on to be stacked (``stack_edits``): the
    self-attention window and kind, the blend's threshold, start and resolution, and the recorded maps' options.
    (The rule, the cross-attention window and the blend words are per target.)"""
    blend = edit.local_blend
    blend_settings = None if blend is None else (blend.threshold, blend.start, blend.resolution)
    requested = None if edit.requested is None else tuple(edit.requested)
    return (edit.self_window, edit.self_attention, blend_settings, requested, edit.places, edit.keep_steps)


def stack_edits(edits: list[AttentionEdit]) -> AttentionEdit:
    """One controller that makes every edit of ``edits`` (controllers of the same source prompt and steps) in one
    batch: its targets are theirs, in order, each edited as its own controller would edit it. The source branch
    is denoised once instead of once per edit. They must share ``shared_settings``."""
    first = edits[0]
    for other in edits[1:]:
        if shared_settings(other) != shared_settings(first):
            raise ValueError(f"these edits cannot share a batch: they differ in what a batch shares "
                             f"(self-attention window and kind, blend threshold/start/resolution, recorded maps): "
                             f"{shared_settings(first)} vs {shared_settings(other)}; edit them separately")
    if len({e.cross_alpha.shape[0] for e in edits}) > 1:
        raise ValueError("these edits were made for different numbers of steps; make them with the same num_steps")
    blend = None
    if first.local_blend is not None:
        source_words = first.local_blend.token_indices[0]
        target_words = [words for e in edits for words in e.local_blend.token_indices[1:]]
        blend = LocalBlend([source_words] + target_words, first.local_blend.max_len, first.local_blend.threshold,
                           first.local_blend.start, first.local_blend.resolution)
    num_tokens = None if any(e.num_tokens is None for e in edits) else max(e.num_tokens for e in edits)
    stacked = AttentionEdit(Stacked([e.target_maps for e in edits], [e.cross_alpha.shape[1] for e in edits]),
                            torch.cat([e.cross_alpha for e in edits], dim=1), self_attention=first.self_attention,
                            local_blend=blend, resolutions=first.requested, places=first.places,
                            num_tokens=num_tokens, keep_steps=first.keep_steps)
    stacked.self_window = first.self_window  # already in steps (a fraction would be rounded again)
    return stacked
