"""Record attention probabilities per layer, head, step and branch: what an edit did, one level below the averages.

``AttentionStore`` keeps per-frame maps averaged over heads and over the layers of a resolution (that is all
LocalBlend needs). To debug an edit you want more: one layer, one head, one step, one branch; the temporal attention
of one pixel across frames; and where the target's maps differ from the source's. ``AttentionRecorder(inner)``
wraps any controller (an ``AttentionStore``, the ``AttentionEdit`` of ``vp2p.make_controller``), delegates the whole
controller protocol to it, and keeps a copy of the probabilities the layers go on with — *after* the edit::

    recorder = AttentionRecorder(vp2p.make_controller(pipe, prompts, num_steps, blend_words=["circle", "circle"]))
    result = vp2p.edit(pipe, inversion, prompts, controller=recorder)    # works unchanged
    recorder.cross_maps(step=3, branch=1, resolution=16, head=0)         # (F, h, w, tokens)
    recorder.temporal_maps(step=3, branch=1, resolution=16)              # (h, w, F query, F key)
    recorder.diff_maps(step=3)                                           # target − source, token-aligned
    recorder.pixel_frame((0.5, 0.5), step=3)                             # (F, h, w): where each frame looks in frame 0
    recorder.clean[3]                                                    # x̂_0 of step 3: (branches·F, C, h, w)

What is kept: the conditional half only (as the controllers read it), in float16 on the CPU. Per recorded step
and layer:

* cross-attention: ``branches·F·heads·(h·w)·(tokens + 1)`` numbers — the prompt's tokens, plus one column with
  the attention on all the tokens past them (the padding: a row sums to 1 over all 77 tokens, so the start
  token's, the words' and the padding's shares can be told apart);
* temporal attention: ``branches·(h·w)·heads·F²``;
* frame attention (a query's attention over frame 0's keys), mean of the heads, queries averaged down to at most
  ``frame_grid``² cells and frame 0's keys summed into at most ``frame_key_grid``² cells (a row still sums to 1
  with ``frame_keys="first"``), only at resolutions up to ``frame_max_resolution`` (16): ``branches·F·cells·key
  cells``. Recording a frame layer makes it compute its probabilities explicitly (h·w × h·w per head and row,
  freed at once): at 16×16 on SD-1.5 that is 67 MB while the layer runs, at 32×32 it would be 1 GiB;
* with ``keep_clean`` (default), the step's predicted clean latents x̂_0 (``vp2p.ddim.predicted_x0``) in float32:
  ``branches·F·C·h·w`` numbers — not counted in ``max_bytes``.

Two bytes each (x̂_0: four). Defaults: every cross-attention and every temporal attention at resolutions up to
32×32, frame attention up to 16×16. On SD-1.5 at 512², 8 frames, 2 branches, a 10-token prompt, a step keeps
18.2 MB cross + 13.2 MB temporal + 2.8 MB frame attention and 2.1 MB of x̂_0: 1.7 GB of attention for 50 steps.
On the toy model (8 frames of 64²) 1.2 + 1.0 + 1.9 MB and 0.06 MB of x̂_0, 100 MB for its 25 steps (measured by
``tests/test_debugger.py``). A hard bound ``max_bytes`` (default 2 GiB): after the first recorded step the
recorder projects the total and refuses (ValueError, naming the fix) to go on past it, and it never stores past
it. The 64×64 temporal layers of SD are left out by default: they alone would take 42 MB a step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vp2p import layout
from vp2p.attention import Layer, map_size_where

KINDS = ("cross", "temporal", "frame")
MAX_BYTES = 2 * 2**30
FRAME_MAX_RESOLUTION = 16  # frame attention is h·w × h·w: kept small, see the module docstring
FRAME_GRID, FRAME_KEY_GRID = 8, 16  # query cells and frame-0 key cells per side, at most


@dataclass(frozen=True)
class RecordedLayer:
    """A layer the recorder kept: its identity, map size (h, w) and head count."""

    layer: Layer
    height: int
    width: int
    heads: int
    grid: tuple[int, int] | None = None  # frame attention: (rows, columns) of the query cells kept
    key_grid: tuple[int, int] | None = None  # frame attention: (rows, columns) of frame 0's key cells kept

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def label(self) -> str:
        """Short and readable: 'cross · down 16×16 · down_blocks.0.attentions.0'."""
        block = self.name.split(".transformer_blocks")[0]
        return f"{self.layer.kind} · {self.layer.place} {self.height}×{self.width} · {block}"


class AttentionRecorder:
    """A controller wrapper: ``inner`` edits (or just stores) as before, the recorder keeps the probabilities.

    Selection: ``kinds`` ("cross", "temporal", "frame"), ``max_resolution`` (map height and width at most this;
    frame attention also at most ``frame_max_resolution``), ``places`` (down/mid/up), ``layers`` (exact layer
    names; overrides the rest), ``steps`` (step indices; None: all). ``num_tokens``: token columns kept (None: the
    inner controller's ``num_tokens``, which ``make_controller`` sets to the longest prompt's; the rest is kept
    summed, as the padding's share). ``frame_grid``/``frame_key_grid``: the query and key cells of frame
    attention, per side at most. ``keep_clean``: keep each step's predicted clean latents (``clean``).
    ``max_bytes``: the memory bound, see the module docstring. Attributes the recorder does not have (``maps``,
    ``local_blend``, ``steps_done``, ``target_maps``…) are the inner controller's.
    """

    def __init__(self, inner=None, kinds=KINDS, max_resolution: int | None = 32, places=("down", "mid", "up"),
                 layers=None, steps=None, num_tokens: int | None = None, max_bytes: int = MAX_BYTES,
                 frame_max_resolution: int = FRAME_MAX_RESOLUTION, frame_grid: int = FRAME_GRID,
                 frame_key_grid: int = FRAME_KEY_GRID, keep_clean: bool = True):
        from vp2p.controllers import AttentionStore

        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"the recorder keeps {KINDS} attention, not {sorted(unknown)}")
        self.inner = AttentionStore() if inner is None else inner
        self.kinds, self.max_resolution, self.places = tuple(kinds), max_resolution, tuple(places)
        self.layer_names = None if layers is None else set(layers)
        self.step_selection = None if steps is None else {int(s) for s in steps}
        self.token_limit, self.max_bytes = num_tokens, int(max_bytes)
        self.frame_max_resolution, self.frame_grid, self.frame_key_grid = frame_max_resolution, frame_grid, \
            frame_key_grid
        self.keeps_clean = keep_clean  # read by vp2p.sampling.sample

    def __getattr__(self, name):
        if name == "inner":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    # -- the controller protocol, delegated, plus recording
    def start(self, latent_size, num_branches, guided, num_steps, default_resolution=None):
        self.inner.start(latent_size, num_branches, guided, num_steps, default_resolution)
        self.latent_size, self.num_branches, self.guided = tuple(latent_size), num_branches, guided
        self.num_steps = num_steps
        self.records: dict[str, dict[int, torch.Tensor]] = {}
        self.padding: dict[str, dict[int, torch.Tensor]] = {}  # cross layers: attention past the kept tokens
        self.recorded: dict[str, RecordedLayer] = {}
        self.clean: dict[int, torch.Tensor] = {}  # step -> x̂_0 (branches·F, C, h, w), float32 on the CPU
        self.nbytes = 0
        self.current = 0

    def begin_step(self, step: int):
        self.current = step
        self.inner.begin_step(step)

    def selects(self, layer: Layer) -> bool:
        """Whether ``layer`` is recorded at this step (resolution is checked on the probabilities: a temporal
        layer's query length is the frame count, not its size)."""
        if self.step_selection is not None and self.current not in self.step_selection:
            return False
        if self.layer_names is not None:
            return layer.name in self.layer_names
        return layer.kind in self.kinds and layer.place in self.places

    def wants(self, layer: Layer, query_length: int) -> bool:
        if self.inner.wants(layer, query_length):
            return True
        return self.selects(layer) and (layer.kind == "temporal" or self._small_enough(query_length, layer.kind))

    def __call__(self, probs: torch.Tensor, layer: Layer, num_frames: int) -> torch.Tensor:
        if self.inner.wants(layer, probs.shape[2]):
            probs = self.inner(probs, layer, num_frames)
        if self.selects(layer):
            self.record(probs, layer, num_frames)
        return probs

    def end_step(self):
        self.inner.end_step()
        steps = self.num_steps if self.step_selection is None else len(self.step_selection)
        if len(self.recorded_steps()) == 1 and self.current in self.recorded_steps():
            self._check_projection(self.nbytes * steps, steps)

    def step_callback(self, latents: torch.Tensor) -> torch.Tensor:
        return self.inner.step_callback(latents)

    def keep_clean(self, clean: torch.Tensor):
        """The step's predicted clean latents x̂_0 (all branches, before LocalBlend), from ``sampling.sample``."""
        if self.step_selection is None or self.current in self.step_selection:
            self.clean[self.current] = clean.detach().to("cpu", torch.float32, copy=True)

    # -- recording
    def _small_enough(self, positions: int, kind: str = "cross") -> bool:
        if self.layer_names is not None:  # named layers: whatever their size
            return True
        h, w = self._map_size(positions)
        limit = min(self.max_resolution or h, self.frame_max_resolution) if kind == "frame" else self.max_resolution
        return limit is None or (h <= limit and w <= limit)

    def _map_size(self, positions: int) -> tuple[int, int]:
        """(h, w) of a layer with ``positions`` = h·w (``vp2p.attention.map_size_where``)."""
        return map_size_where(self.latent_size, positions=positions)

    def _tokens(self) -> int | None:
        return self.token_limit or getattr(self.inner, "num_tokens", None)

    def record(self, probs: torch.Tensor, layer: Layer, num_frames: int):
        rows = layout.conditional(probs, self.num_branches, self.guided)
        positions = rows.shape[1] if layer.kind == "temporal" else rows.shape[3]
        if not self._small_enough(positions, layer.kind):
            return
        h, w = self._map_size(positions)
        padding, grids = None, (None, None)
        if layer.kind == "cross":  # (B, F, heads, h·w, tokens)
            tokens = self._tokens() or rows.shape[-1]
            kept, padding = rows[..., :tokens], rows[..., tokens:].sum(-1)
        elif layer.kind == "frame":  # (B, F, 1, query cells, frame-0 key cells)
            kept, grids = self._frame_cells(rows, h, w)
        else:  # temporal: (B, h·w, heads, F, F)
            kept = rows
        # copies: never a view keeping `probs` alive
        kept = kept.detach().to("cpu", torch.float16, copy=True)
        padding = None if padding is None else padding.detach().to("cpu", torch.float16, copy=True)
        size = sum(t.numel() * t.element_size() for t in (kept, padding) if t is not None)
        if self.nbytes + size > self.max_bytes:
            raise ValueError(f"recording {layer.name} at step {self.current} would take the attention recorder past "
                             f"max_bytes={self.max_bytes:,} (it holds {self.nbytes:,} bytes); record fewer layers "
                             "(kinds=, max_resolution=, places=, layers=) or steps (steps=[...]), or raise max_bytes")
        self.recorded.setdefault(layer.name, RecordedLayer(layer, h, w, kept.shape[2], *grids))
        self.records.setdefault(layer.name, {})[self.current] = kept
        if padding is not None:
            self.padding.setdefault(layer.name, {})[self.current] = padding
        self.nbytes += size

    def _frame_cells(self, rows: torch.Tensor, h: int, w: int):
        """Frame attention (B, F, heads, h·w, keys) as (B, F, 1, query cells, key cells): the mean of the heads,
        frame 0's keys only (the first h·w: ``frame_keys="first+previous"`` appends the previous frame's),
        queries averaged and keys summed over square cells — so each kept row is still a distribution."""
        branches, frames = rows.shape[:2]
        maps = rows[..., : h * w].float().mean(2).reshape(branches * frames, h, w, h * w)
        qf, kf = cell_factor(h, w, self.frame_grid), cell_factor(h, w, self.frame_key_grid)
        maps = F.avg_pool2d(maps.permute(0, 3, 1, 2), qf)  # queries: (B·F, keys, qh, qw)
        qh, qw = maps.shape[-2:]
        maps = maps.reshape(branches * frames, h, w, qh * qw).permute(0, 3, 1, 2)
        maps = F.avg_pool2d(maps, kf) * kf * kf  # keys summed: (B·F, query cells, kh, kw)
        kh, kw = maps.shape[-2:]
        return maps.reshape(branches, frames, 1, qh * qw, kh * kw), ((qh, qw), (kh, kw))

    def _check_projection(self, projected: int, steps: int):
        if projected > self.max_bytes:
            raise ValueError(f"the attention recorder would need about {projected:,} bytes for {steps} steps "
                             f"({self.nbytes:,} a step), over max_bytes={self.max_bytes:,}; record fewer layers "
                             "(kinds=, max_resolution=, places=, layers=) or steps (steps=[...]), or raise max_bytes")

    # -- reading
    def layers(self, kind: str | None = None) -> list[RecordedLayer]:
        """The recorded layers (of one kind), in the order the UNet ran them."""
        return [r for r in self.recorded.values() if kind is None or r.layer.kind == kind]

    def resolutions(self, kind: str = "cross") -> list[int]:
        return sorted({r.height for r in self.layers(kind)})

    def recorded_steps(self) -> list[int]:
        return sorted({s for steps in self.records.values() for s in steps}) if hasattr(self, "records") else []

    def probabilities(self, layer: str, step: int, padding: bool = False) -> torch.Tensor:
        """The kept probabilities (float32) of one layer at one step: cross (B, F, heads, h·w, tokens), temporal
        (B, h·w, heads, F, F), frame (B, F, 1, query cells, key cells). ``padding``: a cross layer's attention on
        the tokens past the kept ones instead, (B, F, heads, h·w)."""
        records = self.padding if padding else self.records
        if layer not in records:
            raise ValueError(f"layer {layer!r} was not recorded; recorded: {list(self.records)}")
        if step not in records[layer]:
            raise ValueError(f"step {step} of {layer!r} was not recorded; recorded steps: {sorted(records[layer])}")
        return records[layer][step].float()

    def select(self, kind: str, layer: str | None = None, place=None,
               resolution: int | None = None) -> list[RecordedLayer]:
        """The recorded layers a choice names: one ``layer`` (a name), or all of ``kind`` at ``resolution`` (None:
        the highest recorded) in ``place`` ("down", "mid", "up", a tuple of them, or None: everywhere)."""
        if layer is not None:
            chosen = [r for r in self.layers(kind) if r.name == layer]
            if not chosen:
                raise ValueError(f"no recorded {kind} layer named {layer!r}; recorded: "
                                 f"{[r.name for r in self.layers(kind)]}")
            return chosen
        available = self.resolutions(kind)
        if not available:
            raise ValueError(f"no {kind} attention was recorded: run an edit with this recorder (kinds={self.kinds})")
        height = available[-1] if resolution is None else resolution
        places = (place,) if isinstance(place, str) else place
        chosen = [r for r in self.layers(kind) if r.height == height and (places is None or r.layer.place in places)]
        if not chosen:
            raise ValueError(f"no {kind} layer recorded at resolution {height}"
                             f"{'' if place is None else f' in the {place} blocks'}; recorded (place, height): "
                             f"{sorted({(r.layer.place, r.height) for r in self.layers(kind)})}")
        return chosen

    def _mean(self, chosen: list[RecordedLayer], step: int | None, head: int | None, branch: int,
              head_axis: int, padding: bool = False) -> torch.Tensor:
        """Mean over the chosen layers and steps (all recorded steps when ``step`` is None) of one branch, over
        heads or at one ``head``."""
        if not 0 <= branch < self.num_branches:
            raise ValueError(f"branch {branch} does not exist: 0 is the source, 1…{self.num_branches - 1} targets")
        steps = self.recorded_steps() if step is None else [step]
        total = 0
        for r in chosen:
            if head is not None and not 0 <= head < r.heads:
                raise ValueError(f"head {head} does not exist in {r.name}, which has {r.heads} heads (0…{r.heads - 1})")
            for s in steps:
                p = self.probabilities(r.name, s, padding)[branch]
                total = total + (p.mean(head_axis) if head is None else p.select(head_axis, head))
        return total / (len(chosen) * len(steps))

    def cross_maps(self, step: int | None = None, branch: int = 1, layer: str | None = None,
                   place=None, resolution: int | None = None, head: int | None = None) -> torch.Tensor:
        """Per-frame cross-attention maps (F, h, w, tokens) of a branch at a step (None: mean over the recorded
        steps), of one layer or the mean of the layers at a resolution, of one head or the mean of the heads."""
        chosen = self.select("cross", layer, place, resolution)
        maps = self._mean(chosen, step, head, branch, head_axis=1)  # (F, h·w, tokens)
        return maps.reshape(maps.shape[0], chosen[0].height, chosen[0].width, maps.shape[-1])

    def padding_maps(self, step: int | None = None, branch: int = 1, layer: str | None = None,
                     place=None, resolution: int | None = None, head: int | None = None) -> torch.Tensor:
        """(F, h, w): the attention on the tokens past the kept ones (padding), selected as ``cross_maps``."""
        chosen = self.select("cross", layer, place, resolution)
        maps = self._mean(chosen, step, head, branch, head_axis=1, padding=True)  # (F, h·w)
        return maps.reshape(maps.shape[0], chosen[0].height, chosen[0].width)

    def frame_maps(self, step: int | None = None, branch: int = 1, layer: str | None = None,
                   place=None, resolution: int | None = None) -> torch.Tensor:
        """Frame attention (F, query rows, query columns, key rows, key columns): in each frame, where each query
        cell looks in frame 0 (cells: ``frame_grid``, ``frame_key_grid``), the mean of the heads."""
        chosen = self.select("frame", layer, place, resolution)
        grids = {(r.grid, r.key_grid) for r in chosen}
        if len(grids) > 1:
            raise ValueError(f"the chosen frame layers keep different cells {sorted(grids)}; choose one layer")
        maps = self._mean(chosen, step, None, branch, head_axis=1)  # (F, query cells, key cells)
        (qh, qw), (kh, kw) = grids.pop()
        return maps.reshape(maps.shape[0], qh, qw, kh, kw)

    def pixel_frame(self, pixel: tuple[float, float], **selection) -> torch.Tensor:
        """(F, key rows, key columns): where the query at ``pixel`` = (row, column) fractions (0…1) of each frame
        looks in frame 0."""
        maps = self.frame_maps(**selection)
        qh, qw = maps.shape[1:3]
        return maps[:, min(int(pixel[0] * qh), qh - 1), min(int(pixel[1] * qw), qw - 1)]

    def temporal_maps(self, step: int | None = None, branch: int = 1, layer: str | None = None,
                      place=None, resolution: int | None = None, head: int | None = None) -> torch.Tensor:
        """Temporal attention (h, w, F query, F key): at each position, how much each frame looks at each frame."""
        chosen = self.select("temporal", layer, place, resolution)
        maps = self._mean(chosen, step, head, branch, head_axis=1)  # (h·w, F, F)
        return maps.reshape(chosen[0].height, chosen[0].width, *maps.shape[-2:])

    def pixel_temporal(self, pixel: tuple[float, float], **selection) -> torch.Tensor:
        """(F query, F key) temporal attention at ``pixel`` = (row, column) as fractions of the frame (0…1)."""
        maps = self.temporal_maps(**selection)
        h, w = maps.shape[:2]
        return maps[min(int(pixel[0] * h), h - 1), min(int(pixel[1] * w), w - 1)]

    def diff_maps(self, step: int | None = None, branch: int = 1, **selection) -> torch.Tensor:
        """Target minus source cross-attention (F, h, w, tokens), the source's maps moved to the target's token
        positions as the edit maps them (Replace/Refine; reweighting is not undone, so it shows): zero where the
        edit injected the source's maps, the target's own attention for added words."""
        target = self.cross_maps(step, branch, **selection)
        source = self.cross_maps(step, 0, **selection)
        alignment = token_alignment(getattr(self.inner, "target_maps", None), branch, target.shape[-1])
        return target - source @ alignment


def cell_factor(h: int, w: int, limit: int) -> int:
    """The largest power of two that divides h and w, at most what brings both down to ``limit`` cells or fewer."""
    factor = 1
    while max(h, w) // factor > limit and h % (2 * factor) == 0 and w % (2 * factor) == 0:
        factor *= 2
    return factor


def token_alignment(rule, branch: int, num_tokens: int) -> torch.Tensor:
    """(source tokens, target tokens) matrix A with aligned source maps = source @ A, from an edit's rule:
    Replace's mappers, Refine's mapper and alphas (added words: a zero column); the identity without a rule."""
    from vp2p.controllers import Refinement, Replacement, Reweighting

    rule = rule.base if isinstance(rule, Reweighting) else rule
    if isinstance(rule, Replacement):
        return rule.mappers[branch - 1, :num_tokens, :num_tokens].float().cpu()
    if isinstance(rule, Refinement):
        mapper, alphas = rule.mappers[branch - 1, :num_tokens].cpu(), rule.alphas[branch - 1, :num_tokens].float().cpu()
        alignment = torch.zeros(num_tokens, num_tokens)
        alignment[mapper, torch.arange(num_tokens)] = alphas
        return alignment
    return torch.eye(num_tokens)


def recorded_edit(pipe, run, prompts, settings, record: bool | dict = True, decoupled: bool = True,
                  progress: bool = False, **options):
    """Edit a prepared ``run`` (``workflow.prepare``) as ``workflow.edit_run`` does — the same option checks, the
    settings as defaults — with an ``AttentionRecorder`` around the controller: ``record`` True (the default
    selection), a dict (its selection, e.g. ``{"steps": [0, 10, 20]}``) or False (no recorder). ``decoupled``:
    decoupled guidance (False: the paper's ablation). The result is not appended to ``run.edits`` (a recorder can
    hold hundreds of MB: keep the edits you look at)."""
    from vp2p.editing import edit, make_controller
    from vp2p.workflow import checked_options

    controller = make_controller(pipe, prompts, run.inversion.num_steps,
                                 **checked_options(pipe, prompts, settings, options))
    if record is not False:
        controller = AttentionRecorder(controller, **(record if isinstance(record, dict) else {}))
    return edit(pipe, run.inversion, prompts, controller=controller, guidance_scale=settings.guidance_scale,
                decoupled=decoupled, progress=progress)
