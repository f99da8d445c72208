"""Attention controllers: record cross-attention maps, and edit the target branch with the source branch's maps.

The editing batch holds B branches (branch 0: the source prompt, 1…B-1: target prompts), each a video of F frames,
twice when guided: [unconditional branches…, conditional branches…] (see ``vp2p.attention`` for the row layout).
As in prompt-to-prompt, only the conditional half is read and edited.

* ``AttentionStore`` keeps per-frame cross-attention maps averaged over heads and layers at a few resolutions —
  per step (small: only the prompt's tokens) and as a running mean over the steps so far.
* ``AttentionEdit`` adds the edits of Algorithm 1: cross-attention injection for the first steps (``Replace``,
  ``Refine``, ``Reweight``), self-attention injection (temporal attention by default, as the official code; or
  frame attention), and ``LocalBlend`` after each step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vp2p.attention import Layer


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
        self.shapes = {self._query_length(h): self._map_shape(h) for h in heights}
        self.sums: dict[int, torch.Tensor] = {}
        self.step_maps: dict[int, list[torch.Tensor]] = {h: [] for h, _ in self.shapes.values()}
        self.steps_done = 0

    def _map_shape(self, height: int) -> tuple[int, int]:
        factor = self.latent_size[0] / height
        if factor < 1 or factor != int(factor) or self.latent_size[1] % int(factor):
            raise ValueError(f"map resolution {height} does not divide the latent size {self.latent_size}")
        return height, self.latent_size[1] // int(factor)

    def _query_length(self, height: int) -> int:
        h, w = self._map_shape(height)
        return h * w

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
        halves = 2 if self.guided else 1
        rows = probs.shape[0]
        if rows % (halves * self.num_branches):
            raise ValueError(f"attention batch of {rows} rows does not split into {halves}x{self.num_branches} "
                             "branches; reset the controller for this run")
        view = probs.view(halves, self.num_branches, rows // (halves * self.num_branches), *probs.shape[1:])
        return view[-1]

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


def step_window(value, num_steps: int) -> tuple[int, int]:
    """A fraction f (→ steps [0, f·N)) or a pair (a, b) (→ [a·N, b·N)) as step indices."""
    start, end = (0.0, value) if isinstance(value, (int, float)) else value
    if not 0 <= start <= end <= 1:
        raise ValueError(f"step window {value!r} must be a fraction in [0, 1] or a pair 0 <= start <= end <= 1")
    return int(start * num_steps), int(end * num_steps)


def cross_replace_alpha(prompts, num_steps, cross_replace_steps, tokenizer, max_len) -> torch.Tensor:
    """(num_steps, targets, max_len): 1 where target token j takes the source maps at a step.

    ``cross_replace_steps``: a fraction, a (start, end) pair, or a dict with a ``"default_"`` entry and per-word
    entries (words of the target prompts), as in the official configs.
    """
    from vp2p.alignment import word_token_indices

    spec = cross_replace_steps if isinstance(cross_replace_steps, dict) else {"default_": cross_replace_steps}
    alpha = torch.zeros(num_steps, len(prompts) - 1, max_len)
    start, end = step_window(spec.get("default_", 1.0), num_steps)
    alpha[start:end] = 1
    for word, window in spec.items():
        if word == "default_":
            continue
        start, end = step_window(window, num_steps)
        found = False
        for b, prompt in enumerate(prompts[1:]):
            try:
                indices = word_token_indices(prompt, word, tokenizer)
            except ValueError:
                continue
            found = True
            alpha[:, b, indices] = 0
            alpha[start:end, b, indices] = 1
        if not found:
            raise ValueError(f"cross_replace_steps names {word!r}, which is in none of the target prompts "
                             f"{prompts[1:]}; use a word of a target prompt or 'default_'.")
    return alpha


class LocalBlend:
    """Keep everything outside the edited object from the source branch (paper Sec. 4.3, per frame).

    The blend words' maps (mean over the steps so far) are summed over their tokens, max-pooled 3×3, upsampled to
    the latent size, divided by each frame's maximum and thresholded; a target's mask is the union with the
    source's; then z_target ← z_source + mask·(z_target − z_source), from ``start`` (fraction of steps) on.
    """

    def __init__(self, token_indices: list[list[int]], max_len: int, threshold: float = 0.3, start: float = 0.2,
                 resolution: int | None = None):
        if not 0 <= start <= 1:
            raise ValueError(f"blend start {start} must be a fraction of the steps in [0, 1]")
        self.weights = torch.zeros(len(token_indices), max_len)
        for branch, indices in enumerate(token_indices):
            self.weights[branch, indices] = 1
        self.threshold, self.start, self.resolution = threshold, start, resolution
        self.masks: list[torch.Tensor] = []  # per applied step: bool (B, F, H, W), on the CPU

    def mask(self, maps: torch.Tensor, latent_size: tuple[int, int]) -> torch.Tensor:
        """bool (B, F, H, W) from maps (B, F, h, w, tokens)."""
        weights = self.weights[:, : maps.shape[-1]].to(maps)
        score = (maps * weights[:, None, None, None, :]).sum(-1)  # (B, F, h, w)
        score = F.max_pool2d(score, kernel_size=3, stride=1, padding=1)
        score = F.interpolate(score, size=latent_size, mode="nearest")
        score = score / score.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
        mask = score > self.threshold
        return mask | mask[:1]

    def __call__(self, latents: torch.Tensor, store: AttentionStore, resolution: int) -> torch.Tensor:
        if store.step < int(self.start * store.num_steps):
            return latents
        mask = self.mask(store.maps(resolution), store.latent_size)
        self.masks.append(mask.cpu())
        b, f = mask.shape[:2]
        video = latents.view(b, f, *latents.shape[1:])
        blended = video[:1] + mask[:, :, None].to(latents.dtype) * (video - video[:1])
        return blended.view_as(latents)


class AttentionEdit(AttentionStore):
    """Algorithm 1's attention edits on the target branches; subclasses say how source maps become target maps.

    ``cross_alpha`` (num_steps, targets, tokens) from ``cross_replace_alpha``; ``self_replace_steps`` a fraction or
    window; ``self_attention``: "temporal" (official behaviour) or "frame" (maps of the frame attention, only at
    resolutions up to latent/2 as for SD's ≤ 32×32); ``local_blend``: a ``LocalBlend`` or None.
    """

    def __init__(self, cross_alpha: torch.Tensor, self_replace_steps=0.5, self_attention: str = "temporal",
                 local_blend: LocalBlend | None = None, **store_options):
        super().__init__(**store_options)
        if self_attention not in ("temporal", "frame"):
            raise ValueError(f"self_attention={self_attention!r}; choose 'temporal' (official) or 'frame'")
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
        if layer.kind == self.self_attention and self.self_active:
            limit = self.latent_size[0] * self.latent_size[1] // 4
            return layer.kind == "temporal" or query_length <= limit
        return False

    def wants(self, layer: Layer, query_length: int) -> bool:
        return self.records(layer, query_length) or self.edits(layer, query_length)

    def __call__(self, probs: torch.Tensor, layer: Layer, num_frames: int) -> torch.Tensor:
        if self.edits(layer, probs.shape[2]):
            cond = self.conditional(probs)
            source, targets = cond[0], cond[1:]
            if layer.kind == "cross":
                alpha = self.alpha_now.to(probs)[:, None, None, None, :]
                targets.copy_(self.replace_cross(source, targets) * alpha + targets * (1 - alpha))
            else:
                targets.copy_(source.expand_as(targets))
        return super().__call__(probs, layer, num_frames)

    def replace_cross(self, source: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Target maps (targets, F, heads, queries, tokens) built from the source maps (F, heads, queries, tokens)."""
        raise NotImplementedError

    def step_callback(self, latents: torch.Tensor) -> torch.Tensor:
        return latents if self.local_blend is None else self.local_blend(latents, self, self.blend_height)


class Replace(AttentionEdit):
    """Word swap: target token j gets Σ_i source map i · mapper[i, j] (``vp2p.alignment.replacement_mapper``)."""

    def __init__(self, mappers: torch.Tensor, cross_alpha, **options):
        super().__init__(cross_alpha, **options)
        self.mappers = mappers  # (targets, tokens, tokens)

    def replace_cross(self, source, targets):
        return torch.einsum("fhqi,bij->bfhqj", source, self.mappers.to(source))


class Refine(AttentionEdit):
    """Adding words: aligned tokens take the source maps, new tokens keep their own."""

    def __init__(self, mappers: torch.Tensor, alphas: torch.Tensor, cross_alpha, **options):
        super().__init__(cross_alpha, **options)
        self.mappers, self.alphas = mappers, alphas  # (targets, tokens) each

    def replace_cross(self, source, targets):
        taken = source[..., self.mappers.to(source.device)].permute(3, 0, 1, 2, 4)  # (targets, F, h, q, tokens)
        alphas = self.alphas.to(source)[:, None, None, None, :]
        return taken * alphas + targets * (1 - alphas)


class Reweight(AttentionEdit):
    """Scale the maps of chosen target tokens by ``equalizer`` (targets, tokens), on top of Replace or Refine."""

    def __init__(self, equalizer: torch.Tensor, cross_alpha, base: AttentionEdit | None = None, **options):
        super().__init__(cross_alpha, **options)
        self.equalizer, self.base = equalizer, base

    def replace_cross(self, source, targets):
        mapped = self.base.replace_cross(source, targets) if self.base is not None else source.expand_as(targets)
        return mapped * self.equalizer.to(source)[:, None, None, None, :]


def blend_resolution(latent_height: int, available: list[int]) -> int:
    """The map height LocalBlend uses: the available cross-attention resolution nearest to latent/4 (SD: 16)."""
    target = latent_height / 4
    return min(sorted(available, reverse=True), key=lambda h: abs(math.log2(h / target)))
