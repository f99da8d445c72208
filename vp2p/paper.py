"""The paper's two tables, reproduced on the toy world, where the ground truth is known.

Video-P2P (CVPR 2024) makes its claims in two tables:

* **Table 1** (45 DAVIS clips): CLIP score, masked PSNR, LPIPS, Object Semantic Variance (OSV) and Temp for two
  baselines (TAV+DDIM: a tuned video model, DDIM inversion, the target prompt alone; Image-P2P: prompt-to-prompt
  with the image model, frame by frame), three ablations (w/o MI: no tuning; w/o DG: no decoupled guidance; w/o
  SU: one null embedding per frame instead of one shared) and Video-P2P itself.
* **Table 2**: reconstruction PSNR of DDIM, per-frame and shared null-text inversion, with the VAE's own round
  trip as the upper bound, and how many numbers each inversion optimises.

Here every row is data — a ``Row`` says which model (the inflated video model with its options, tuned or not, or
the image model), which inversion and which edit options — and ``run_paper`` runs them (Table 1's six by default,
``ROWS`` for all eleven) on held-out toy videos (color swaps, shape swaps and refinements, as ``vp2p toy-bench``).
The evaluator reads every edit back from pixels, so each paper metric has a toy counterpart that needs no weights
(``vp2p.metrics``); the CLIP-based ones and LPIPS are computed too when their weights are given, and said to be
skipped otherwise.

What is shared: rows with the same ``Model`` share the tuned weights of a video (one folder per model and video,
``vp2p.workflow.tune_stage``), rows with the same model and inversion method share the inversion (one file in
that folder, ``vp2p.workflow.invert_stage``), and every row's scores are kept beside them, so an interrupted run
resumes where it stopped. ``check_bars`` turns a finished ``tables.json`` into verdicts on the paper's claims.

``tables.json`` holds: ``table1`` (row name → the mean of each metric over the row's edits, None where not
measured; ``edits``, ``by_kind``, the paper's numbers as ``paper``, the row's ``spec``), ``table2`` (inversion →
``psnr``, ``parameters``, ``paper``), ``bars`` (the verdicts), ``clips`` (each clip's caption, edits, Table 2
scores and every row's scores, edit by edit), ``metrics`` (whether the CLIP and LPIPS metrics were computed, and
why not), the run's ``settings``, ``videos``, ``frames``, ``size``, ``machine``, ``work`` (what was computed, not
loaded, and how long it took) and ``seconds``. ``tables.md`` is the same as markdown (``markdown(tables)``).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from vp2p import metrics
from vp2p.inversion import METHODS
from vp2p.toy import evaluator, world

# ---------------------------------------------------------------- the paper's numbers

# Table 1 (45 DAVIS clips). Higher is better for CLIP score, masked PSNR and Temp; lower for LPIPS and OSV.
PAPER_TABLE1 = {
    "TAV+DDIM": {"clip_score": 0.3343, "masked_psnr": 17.37, "lpips": 0.4651, "osv": 55.67, "temp": 0.9697},
    "Image-P2P": {"clip_score": 0.3272, "masked_psnr": 22.92, "lpips": 0.3082, "osv": 76.92, "temp": 0.9021},
    "w/o MI": {"clip_score": 0.3213, "masked_psnr": 20.62, "lpips": 0.3255, "osv": 50.27, "temp": 0.9460},
    "w/o DG": {"clip_score": 0.3226, "masked_psnr": 18.97, "lpips": 0.3866, "osv": 68.75, "temp": 0.9451},
    "w/o SU": {"clip_score": 0.3351, "masked_psnr": 20.64, "lpips": 0.3221, "osv": 48.78, "temp": 0.9665},
    "Video-P2P": dict(metrics.PAPER_TABLE1),
}
# Table 2: reconstruction PSNR (dB) and optimised parameters, keyed by our row names. The paper lists three
# parameter counts for its last three rows (0.13 M beside TAV+DDIM although DDIM inversion optimises nothing;
# kept as printed).
PAPER_TABLE2 = {
    "VAE round trip": {"psnr": 24.73, "parameters": None},
    "DDIM": {"psnr": 15.43, "parameters": 0.13e6},
    "null-text, per frame": {"psnr": 22.97, "parameters": 22.68e6},
    "null-text, shared (Video-P2P)": {"psnr": 22.75, "parameters": 2.94e6},
}

# ---------------------------------------------------------------- rows as data

KINDS = ("video", "image")


@dataclass(frozen=True)
class Model:
    """The UNet a row edits with: the inflated video model (with its inflation options), tuned on the clip or not;
    or the image model (not inflated, vp2p's processors installed: every frame on its own)."""

    kind: str = "video"
    frame_keys: str = "first"
    group_norm: str = "video"
    tuned: bool = True

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Model kind={self.kind!r}; choose one of {KINDS}")
        if self.kind == "image" and self.tuned:
            raise ValueError("the image model is not tuned on the clip (tuning needs the inflated model); "
                             "use Model('image', tuned=False)")

    @property
    def slug(self) -> str:
        """A folder name: what the tuned weights of this model depend on besides the clip."""
        if self.kind == "image":
            return "image"
        tuned = "tuned" if self.tuned else "untuned"
        return f"video-{self.frame_keys.replace('+', '-')}-{self.group_norm}-groupnorm-{tuned}"


VIDEO_P2P_MODEL = Model()
IMAGE_MODEL = Model(kind="image", tuned=False)


@dataclass(frozen=True)
class Row:
    """One method: which model, which inversion, and how the edit runs.

    ``decoupled``: the target branch gets the initial empty-prompt embedding (Video-P2P) instead of the source's
    optimised ones; ``attention_control``: inject the source's attention maps (False: the target prompt alone,
    plain guided sampling from z_T); ``local_blend``: blend the latents outside the edited object.
    """

    name: str
    model: Model = VIDEO_P2P_MODEL
    inversion: str = "null-text"
    decoupled: bool = True
    attention_control: bool = True
    local_blend: bool = True
    about: str = ""

    def __post_init__(self):
        if self.inversion not in METHODS:
            raise ValueError(f"Row {self.name!r}: inversion={self.inversion!r}; choose one of {METHODS}")

    @property
    def in_paper(self) -> bool:
        return self.name in PAPER_TABLE1

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


ROWS = (
    Row("TAV+DDIM", inversion="ddim", attention_control=False, local_blend=False,
        about="tuned video model, DDIM inversion, the target prompt alone (no attention control, no blend)"),
    # Prompt-to-prompt's null-text code gives every branch the optimised embeddings: decoupled guidance is
    # Video-P2P's, so the image baseline runs without it.
    Row("Image-P2P", model=IMAGE_MODEL, inversion="null-text-per-frame", decoupled=False,
        about="the image model frame by frame: null-text inversion and prompt-to-prompt per frame"),
    Row("w/o MI", model=replace(VIDEO_P2P_MODEL, tuned=False), about="inflated but not tuned on the clip"),
    Row("w/o DG", decoupled=False, about="the target branch uses the source's optimised null embeddings"),
    Row("w/o SU", inversion="null-text-per-frame", about="one null embedding per frame instead of one shared"),
    Row("Video-P2P", about="tuned, shared null-text, decoupled guidance, attention control and local blend"),
    Row("no local blend", local_blend=False, about="Video-P2P without LocalBlend"),
    Row("fast inversion", inversion="fast", about="no null-text: the source branch is sampled without guidance"),
    Row("negative-prompt inversion", inversion="negative-prompt",
        about="no null-text: the source prompt's embedding stands in for the null one"),
    Row("first+previous frame keys", model=replace(VIDEO_P2P_MODEL, frame_keys="first+previous"),
        about="frame attention reads frame 0 and the previous frame (Tune-A-Video)"),
    Row("per-frame GroupNorm", model=replace(VIDEO_P2P_MODEL, group_norm="frame"),
        about="every GroupNorm normalises each frame on its own"),
)

# What `vp2p paper` runs by default: Table 1's six rows. The five after them tune two more models and optimise two
# more null-text inversions per clip, which would take a 20-clip run past 45 minutes on a 2-core CPU: run them by
# name, or all rows with `rows_named(["all"])` (`vp2p paper --rows all`).
TABLE1_ROWS = tuple(row for row in ROWS if row.in_paper)

# Table 2: the reconstruction of each inversion of the tuned Video-P2P model (shared with the rows above): the
# paper's three, then any other inversion a row of the run uses (TABLE2_NAMES names them all).
TABLE2_NAMES = {"ddim": "DDIM", "null-text-per-frame": "null-text, per frame",
                "null-text": "null-text, shared (Video-P2P)", "negative-prompt": "negative prompt", "fast": "fast"}
PAPER_TABLE2_METHODS = ("ddim", "null-text-per-frame", "null-text")


def table2_methods(rows) -> dict[str, str]:
    """Table 2's rows for a run of ``rows``: name → inversion method, the paper's three first."""
    used = [row.inversion for row in rows if row.model == VIDEO_P2P_MODEL]
    methods = list(dict.fromkeys(PAPER_TABLE2_METHODS + tuple(used)))
    return {TABLE2_NAMES[m]: m for m in methods}


def rows_named(names) -> tuple[Row, ...]:
    """The rows of ``ROWS`` with these names (in ``ROWS``' order), or every row for ``["all"]``; an unknown name is
    an error listing them all."""
    if list(names) == ["all"]:
        return ROWS
    known = {row.name: row for row in ROWS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown rows {unknown}; choose among {list(known)} or 'all'")
    return tuple(row for row in ROWS if row.name in set(names))


# ---------------------------------------------------------------- the columns

@dataclass(frozen=True)
class Column:
    key: str  # in each row's results
    label: str
    higher_is_better: bool
    paper: str | None = None  # the Table 1 metric it stands for
    fmt: str = "{:.3f}"


# The toy counterparts of Table 1's metrics (vp2p.metrics), and the evaluator's geometry.
TOY_COLUMNS = (
    Column("target_hit", "target hit", True, "clip_score", "{:.2f}"),
    Column("background_psnr", "background PSNR (dB)", True, "masked_psnr", "{:.2f}"),
    Column("attribute_agreement", "attribute agreement", True, "osv"),
    Column("object_temporal", "object temporal", True, "temp"),
    Column("drift_px", "drift (px)", False, None, "{:.2f}"),
    Column("size_error", "size error", False, None),  # mean |edited area / source area - 1|
)
# Table 1's own metrics: need CLIP weights (and LPIPS weights), computed only when given.
CLIP_COLUMNS = (
    Column("clip_score", "CLIP score", True, "clip_score", "{:.4f}"),
    Column("lpips", "LPIPS", False, "lpips", "{:.4f}"),
    Column("osv", "OSV", False, "osv", "{:.2f}"),
    Column("temp", "Temp", True, "temp", "{:.4f}"),
)
PAPER_COLUMNS = (
    Column("clip_score", "CLIP score", True, fmt="{:.4f}"), Column("masked_psnr", "masked PSNR", True, fmt="{:.2f}"),
    Column("lpips", "LPIPS", False, fmt="{:.4f}"), Column("osv", "OSV", False, fmt="{:.2f}"),
    Column("temp", "Temp", True, fmt="{:.4f}"),
)

def work_per_clip(rows, edits_per_video: int = 1) -> dict:
    """What a run computes for each clip once shared: tunings (one per tuned model), inversions (one per model and
    method, Table 2's included), how many of those optimise null-text, and edits."""
    tuned = {row.model for row in rows if row.model.tuned} | {VIDEO_P2P_MODEL}  # Table 2 tunes Video-P2P's model
    inversions = {(row.model, row.inversion) for row in rows} | {(VIDEO_P2P_MODEL, m)
                                                                 for m in table2_methods(rows).values()}
    return {"tunings": len(tuned), "inversions": len(inversions),
            "null_text": sum(method.startswith("null-text") for _, method in inversions),
            "edits": len(rows) * edits_per_video}


# ---------------------------------------------------------------- held-out videos and their edits

HELD_OUT_OFFSET = 20_000  # after vp2p.toy.bench.HELD_OUT: the same held-out clips as `vp2p toy-bench`
EDIT_KINDS = ("color", "shape", "refine")
EDITED_FIELD = {"color": "color", "shape": "shape", "refine": "attribute"}


@dataclass(frozen=True)
class EditCase:
    """One edit of a clip: its kind, the target scene, and the controller options it needs."""

    kind: str
    target: world.Scene
    options: dict = field(hash=False, compare=False)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "target": self.target.caption, "options": self.options}


def held_out_video(index: int, num_frames: int = 8, size: int = 64, seed: int = 0) -> world.ToyVideo:
    """Held-out clip ``index`` (seeds never used in training), plain objects in daylight, as the toy bench."""
    from vp2p.toy.bench import HELD_OUT

    scene = world.random_scene(HELD_OUT + HELD_OUT_OFFSET + seed * 1000 + index, attribute_rate=0.0,
                               style_rate=0.0)
    return world.render(scene, num_frames=num_frames, size=size)


def edit_cases(scene: world.Scene, index: int, per_video: int = 1, seed: int = 0) -> list[EditCase]:
    """The edits of clip ``index``: ``per_video`` of color swap, shape swap and refinement, rotating through
    the kinds from clip to clip (so 1 per video still covers all three). Targets are drawn as the toy bench's."""
    if not 1 <= per_video <= len(EDIT_KINDS):
        raise ValueError(f"edits per video = {per_video}; choose 1 to {len(EDIT_KINDS)} ({EDIT_KINDS})")
    from vp2p.toy.bench import other

    rng = np.random.default_rng([seed, index])
    color = scene.replace(color=other(world.COLORS, scene.color, rng))
    shape = scene.replace(shape=other(world.SHAPES, scene.shape, rng))
    refined = scene.replace(attribute=str(rng.choice(world.ATTRIBUTES)))
    cases = {
        "color": EditCase("color", color, {"blend_words": [scene.shape, scene.shape]}),
        "shape": EditCase("shape", shape, {"blend_words": [scene.shape, shape.shape]}),
        # As the toy bench's refinement: the source maps for 80% of the steps, the added word's window all of them.
        "refine": EditCase("refine", refined, {"is_word_swap": False, "blend_words": [scene.shape, scene.shape],
                                               "cross_replace_steps": {"default_": 0.8, refined.attribute: 1.0}}),
    }
    return [cases[EDIT_KINDS[(index + k) % len(EDIT_KINDS)]] for k in range(per_video)]


def controller_options(row: Row, case: EditCase) -> dict:
    """The case's controller options as the row runs them (no blend words without blend, no injection without
    attention control)."""
    options = dict(case.options)
    if row.model.kind == "image":  # prompt-to-prompt on images injects the self-attention maps
        options["self_attention"] = "frame"
    if not row.local_blend:
        options.pop("blend_words", None)
    if not row.attention_control:
        options.update(cross_replace_steps=0.0, self_replace_steps=0.0)
    return options


# ---------------------------------------------------------------- scoring an edit


@dataclass
class Scorers:
    """The weights the paper's own metrics need (None: skipped, and said so), and what they were loaded from."""

    clip: metrics.Clip | None = None
    lpips: metrics.LPIPS | None = None
    clip_source: str | None = None
    lpips_source: list[str] | None = None

    @classmethod
    def load(cls, clip=None, lpips=None, device=None) -> "Scorers":
        """``clip``: a CLIP folder or hub id; ``lpips``: the LPIPS weight file(s) (see ``metrics.load_lpips``)."""
        files = [lpips] if isinstance(lpips, (str, Path)) else list(lpips or [])
        return cls(clip=metrics.load_clip(clip, device) if clip else None,
                   lpips=metrics.load_lpips(*files) if files else None,
                   clip_source=str(clip) if clip else None, lpips_source=[str(f) for f in files] or None)

    def status(self) -> dict:
        """What tables.json says about the paper's metrics: computed with which weights, or skipped and why."""
        clip = ({"computed": True, "weights": self.clip_source} if self.clip is not None else
                {"computed": False, "reason": "no CLIP weights given (--clip PATH_OR_HUB_ID): CLIP score, OSV "
                                              "and Temp skipped"})
        lpips = ({"computed": True, "weights": self.lpips_source} if self.lpips is not None else
                 {"computed": False, "reason": "no LPIPS weights given (--lpips alex.pth [alexnet.pth]): "
                                               "LPIPS skipped"})
        return {"clip": clip, "lpips": lpips}

    def score(self, video: world.ToyVideo, case: EditCase, edited: np.ndarray, masks: np.ndarray) -> dict:
        out = {}
        if self.clip is not None:
            out["clip_score"] = metrics.clip_score(self.clip, edited, case.target.caption)
            out["temp"] = metrics.temporal_consistency(self.clip, edited)
            try:
                out["osv"] = metrics.object_semantic_variance(self.clip, edited, masks)
            except ValueError:  # the object is in fewer than 2 frames: no object semantics to compare
                out["osv"] = None
        if self.lpips is not None:
            out["lpips"] = metrics.lpips_distance(video.frames, edited, model=self.lpips)
        return out


def score_edit(video: world.ToyVideo, case: EditCase, edited: np.ndarray, scorers: Scorers | None = None) -> dict:
    """The toy counterparts of Table 1 (``vp2p.metrics``), the evaluator's verdict and geometry (``judge_edit``),
    and the paper's metrics where ``scorers`` has their weights. None where a number does not exist (no object)."""
    from vp2p.toy.bench import judge_edit

    reading = evaluator.read_video(edited)
    verdict = judge_edit(video, case.target, edited, reading)
    scores = {
        "target_hit": metrics.toy_target_hit(reading, case.target),
        "edited_word_hit": float(verdict["hits"][EDITED_FIELD[case.kind]]),
        "background_psnr": verdict["background_psnr"],
        "attribute_agreement": metrics.toy_attribute_agreement(reading),
        "object_temporal": metrics.toy_object_temporal(reading),
        "drift_px": verdict["geometry"]["mean_drift_px"],
        "size_error": verdict["geometry"]["mean_abs_size_error"],
        "frames_without_object": verdict["geometry"]["frames_without_object"],
        "read": verdict["read"],
    }
    scores.update((scorers or Scorers()).score(video, case, edited, reading.masks))
    return scores


# ---------------------------------------------------------------- tuned models and inversions, shared


class Stages:
    """Tuned weights and inversions of a run, each computed once and shared by every row that can use it.

    One pipeline is alive at a time (rows run grouped by model). For each model and clip a folder
    ``cache/video-NNN/<model.slug>/`` holds the tuned weights and one inversion file per method
    (``vp2p.workflow``'s caches, keyed by fingerprints of their inputs), so rows with the same model share the
    tuning, rows with the same model and method share the inversion, and a second run reuses both.
    ``computed`` counts what was actually computed (not loaded), ``seconds`` how long it took.
    """

    def __init__(self, model: str, settings, cache, device=None, progress=True):
        self.model_name, self.settings, self.cache = model, settings, Path(cache)
        self.device, self.progress = device, progress
        self.computed: Counter = Counter()
        self.seconds: Counter = Counter()
        self._pipe, self._model, self._prepared_for = None, None, None

    def pipe(self, model: Model):
        """The pipeline of ``model``, loaded (and inflated, or given vp2p's processors) when the model changes."""
        if self._model != model:
            from vp2p.attention import install_processors
            from vp2p.inflation import inflate_unet
            from vp2p.loading import load_pipeline

            self._pipe = None  # free the previous model first
            pipe = load_pipeline(self.model_name, device=self.device)
            if model.kind == "video":
                inflate_unet(pipe.unet, frame_keys=model.frame_keys, group_norm=model.group_norm)
            else:
                install_processors(pipe.unet)
            self._pipe, self._model, self._prepared_for = pipe, model, None
        return self._pipe

    def folder(self, model: Model, index: int) -> Path:
        return self.cache / f"video-{index:03d}" / model.slug

    def prepare(self, model: Model, index: int, video: world.ToyVideo):
        """The pipeline of ``model`` with its weights for clip ``index``: tuned on it (or loaded), or the base."""
        from vp2p.workflow import tune_stage

        pipe = self.pipe(model)
        if model.kind == "video" and self._prepared_for != index:
            steps = self.settings.tune_steps if model.tuned else 0  # 0: tune_stage restores the base weights
            start = time.perf_counter()
            tuning = tune_stage(pipe, video.frames, video.caption, self.settings.replace(tune_steps=steps),
                                self.folder(model, index), self.progress)
            if tuning is not None and tuning.seconds > 0:
                self.computed["tune"] += 1
                self.seconds["tune"] += time.perf_counter() - start
        self._prepared_for = index
        return pipe

    def inversion(self, model: Model, method: str, index: int, video: world.ToyVideo):
        """(pipeline, Inversion) of clip ``index`` with ``method`` on ``model``, computed or loaded."""
        from vp2p.workflow import inversion_cache, invert_stage

        pipe = self.prepare(model, index, video)
        settings = self.settings.replace(method=method)
        folder = self.folder(model, index)
        fresh = not inversion_cache(folder, settings).exists()
        start = time.perf_counter()
        inversion = invert_stage(pipe, video.frames, video.caption, settings, folder, self.progress)
        if fresh:
            self.computed[f"invert {method}"] += 1
            self.seconds["invert"] += time.perf_counter() - start
        return pipe, inversion


# ---------------------------------------------------------------- Table 2: reconstruction


def vae_round_trip_psnr(pipe, frames: np.ndarray) -> float:
    """Mean PSNR over frames of encode → decode: no inversion can reconstruct better than the VAE itself."""
    from vp2p.inversion import psnr

    decoded = pipe.decode_latents(pipe.encode_video(frames))
    return float(np.mean([psnr(a, b) for a, b in zip(decoded, frames)]))


def reconstruction_scores(stages: Stages, index: int, video: world.ToyVideo, methods: dict[str, str]) -> dict:
    """Table 2 for one clip: each inversion's (``table2_methods``) mean reconstruction PSNR and its optimised
    numbers."""
    pipe = stages.prepare(VIDEO_P2P_MODEL, index, video)
    scores = {"VAE round trip": {"psnr": vae_round_trip_psnr(pipe, video.frames), "parameters": None}}
    for name, method in methods.items():
        _, inversion = stages.inversion(VIDEO_P2P_MODEL, method, index, video)
        scores[name] = {"psnr": float(np.mean(inversion.frame_psnr)), "parameters": inversion.trainable_count()}
    return scores


# ---------------------------------------------------------------- Table 1: one row on one clip


def edit_as(row: Row, stages: Stages, pipe, inversion, prompts: list[str], case: EditCase) -> np.ndarray:
    """The edited video of ``case`` as ``row`` edits: its controller options and guidance."""
    from vp2p.workflow import Run, edit_run

    return edit_run(pipe, Run(None, inversion), prompts, stages.settings, progress=False, decoupled=row.decoupled,
                    **controller_options(row, case)).edited


def row_scores(stages: Stages, row: Row, index: int, video: world.ToyVideo, cases: list[EditCase],
               scorers: Scorers) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Edit clip ``index`` as ``row`` does, every case; returns the scores of each edit and the edited videos.

    Cached beside the clip's inversions (``rows/<row>.json`` + ``.npz``), keyed by the inversion's own key (which
    covers the model's weights, the clip, the prompt and the inversion settings), the row, the cases, the editing
    settings and the metrics' weights.
    """
    from vp2p.storage import atomic_path, settings_fingerprint, write_json

    pipe, inversion = stages.inversion(row.model, row.inversion, index, video)
    key = settings_fingerprint(inversion=inversion.key, row=asdict(row), cases=[c.as_dict() for c in cases],
                               settings=asdict(stages.settings), scorers=scorers.status())
    path = stages.cache / f"video-{index:03d}" / "rows" / f"{row.slug}.json"
    cached = json.loads(path.read_text()) if path.exists() else None
    if cached and cached["key"] == key and path.with_suffix(".npz").exists():
        return cached["edits"], dict(np.load(path.with_suffix(".npz")))
    edits, videos = [], {}
    for case in cases:
        start = time.perf_counter()
        edited = edit_as(row, stages, pipe, inversion, [video.caption, case.target.caption], case)
        stages.computed["edit"] += 1
        stages.seconds["edit"] += time.perf_counter() - start
        edits.append({**case.as_dict(), **score_edit(video, case, edited, scorers)})
        videos[case.kind] = edited
    with atomic_path(path.with_suffix(".npz")) as tmp:  # videos first, scores last: the key vouches for both
        np.savez_compressed(tmp, **videos)
    write_json(path, {"key": key, "edits": edits})
    return edits, videos


# ---------------------------------------------------------------- tables


def mean_scores(edits: list[dict], columns=TOY_COLUMNS + CLIP_COLUMNS) -> dict:
    """Per column, the mean over the edits that have a number (None if none has: e.g. no object, no weights)."""
    out = {}
    for key in [c.key for c in columns] + ["edited_word_hit"]:
        values = [e[key] for e in edits if e.get(key) is not None]
        out[key] = float(np.mean(values)) if values else None
    return out


def table1_entry(row: Row, edits: list[dict], seconds: float) -> dict:
    kinds = sorted({e["kind"] for e in edits}, key=EDIT_KINDS.index)
    return {**mean_scores(edits), "edits": len(edits),
            "by_kind": {k: mean_scores([e for e in edits if e["kind"] == k]) for k in kinds},
            "paper": PAPER_TABLE1.get(row.name), "about": row.about, "spec": asdict(row), "seconds": seconds}


def table2_entries(per_clip: list[dict]) -> dict:
    """Mean PSNR over clips; the parameter count (the same for every clip of the same length)."""
    return {name: {"psnr": float(np.mean([clip[name]["psnr"] for clip in per_clip])),
                   "parameters": per_clip[0][name]["parameters"], "paper": PAPER_TABLE2.get(name)}
            for name in per_clip[0]}


def default_settings(model: str):
    """The toy model's settings (``workflow.TOY_SETTINGS``: 25 DDIM steps, 2 null-text steps of 8e-2, 50 tuning
    steps) or the official ones for any other model. Per clip the default run (Table 1's rows) tunes 1 model and
    optimises 4 null-text inversions, all eleven rows 3 and 6 (``work_per_clip``)."""
    from types import SimpleNamespace

    from vp2p.loading import is_toy
    from vp2p.workflow import TOY_SETTINGS, Settings

    toy = is_toy(SimpleNamespace(name=str(model)))  # 'toy' or the toy model's folder
    return TOY_SETTINGS if toy else Settings()


# ---------------------------------------------------------------- the paper's claims, checked

SAME_DB = 1.0  # "shared ≈ per frame": reconstructions within this many dB
FAR_BELOW_DB = 3.0  # "DDIM far below": at least this many dB under both null-text inversions (paper: 7.3)


def _bar(claim: str, holds: bool | None, detail: str) -> dict:
    return {"claim": claim, "holds": holds, "detail": detail}


def _missing(claim: str, table: dict, names, key: str | None = None) -> dict | None:
    """A 'not measured' verdict when a row (or its ``key``) is absent from the table, else None."""
    absent = [n for n in names if n not in table or (key and table[n].get(key) is None)]
    if not absent:
        return None
    if key and len(absent) == len(names):
        return _bar(claim, None, f"no {key} numbers in this run")
    return _bar(claim, None, f"no {key or 'row'} for {', '.join(absent)} in this run")


def bar_background(table1: dict) -> dict:
    claim = "Video-P2P preserves the background better than w/o DG and TAV+DDIM"
    names = ("Video-P2P", "w/o DG", "TAV+DDIM")
    missing = _missing(claim, table1, names, "background_psnr")
    if missing:
        return missing
    ours, *others = (table1[n]["background_psnr"] for n in names)
    detail = ", ".join(f"{n} {table1[n]['background_psnr']:.2f} dB" for n in names) + " (background PSNR)"
    return _bar(claim, all(ours > o for o in others), detail)


def bar_shared_vs_per_frame(table2: dict, frames: int) -> dict:
    claim = (f"shared ≈ per-frame null-text in reconstruction (within {SAME_DB:g} dB), with {frames}× fewer "
             "parameters")
    shared, per_frame = "null-text, shared (Video-P2P)", "null-text, per frame"
    missing = _missing(claim, table2, (shared, per_frame), "psnr")
    if missing:
        return missing
    gap = table2[shared]["psnr"] - table2[per_frame]["psnr"]
    counts = table2[shared]["parameters"], table2[per_frame]["parameters"]
    detail = (f"shared {table2[shared]['psnr']:.2f} dB, per frame {table2[per_frame]['psnr']:.2f} dB "
              f"({abs(gap):.2f} dB apart); {counts[0]:,} vs {counts[1]:,} numbers ({counts[1] / counts[0]:.1f}×)")
    return _bar(claim, abs(gap) <= SAME_DB and counts[1] == frames * counts[0], detail)


def bar_ddim_far_below(table2: dict) -> dict:
    claim = f"DDIM alone reconstructs far below both null-text inversions (≥ {FAR_BELOW_DB:g} dB)"
    names = ("DDIM", "null-text, shared (Video-P2P)", "null-text, per frame")
    missing = _missing(claim, table2, names, "psnr")
    if missing:
        return missing
    ddim, *others = (table2[n]["psnr"] for n in names)
    detail = f"DDIM {ddim:.2f} dB, {min(others) - ddim:.2f} dB under the worse null-text inversion"
    return _bar(claim, min(others) - ddim >= FAR_BELOW_DB, detail)


def bar_image_p2p_worst(table1: dict, column: Column) -> dict:
    """Image-P2P strictly worst of the paper's rows on ``column`` (a tie is not 'worst')."""
    claim = f"Image-P2P is the worst Table 1 method on {column.label}"
    missing = _missing(claim, table1, list(PAPER_TABLE1), column.key)
    if missing:
        return missing
    sign = 1 if column.higher_is_better else -1  # sign · value: higher is better
    value = table1["Image-P2P"][column.key]
    others = {n: table1[n][column.key] for n in PAPER_TABLE1 if n != "Image-P2P"}
    next_worst = min(others, key=lambda n: sign * others[n])
    detail = (f"Image-P2P {column.fmt.format(value)}; the worst of the others: {next_worst} "
              f"{column.fmt.format(others[next_worst])}")
    return _bar(claim, sign * value < sign * others[next_worst], detail)


def check_bars(tables: dict) -> list[dict]:
    """Verdicts on the paper's claims from a ``tables.json`` dict: each {"claim", "holds" (True, False, or None
    when not measured), "detail" (the numbers behind it)}."""
    table1, table2 = tables["table1"], tables["table2"]
    temporal = [c for c in TOY_COLUMNS + CLIP_COLUMNS if c.paper in ("temp", "osv")]
    return ([bar_background(table1), bar_shared_vs_per_frame(table2, tables["frames"]), bar_ddim_far_below(table2)]
            + [bar_image_p2p_worst(table1, c) for c in temporal])


def ordering(tables: dict, column: Column) -> dict | None:
    """How the run orders the paper's six methods on ``column`` compared with the paper's own metric: the pairs of
    methods ordered the same way, the pairs tied here, and the best method of each. None if not measured."""
    from itertools import combinations

    paper_sign = 1 if next(c for c in PAPER_COLUMNS if c.key == column.paper).higher_is_better else -1
    sign = 1 if column.higher_is_better else -1
    ours = {n: tables["table1"][n][column.key] for n in PAPER_TABLE1 if n in tables["table1"]}
    if len(ours) < len(PAPER_TABLE1) or None in ours.values():
        return None
    theirs = {n: PAPER_TABLE1[n][column.paper] for n in ours}
    agree = ties = 0
    for a, b in combinations(ours, 2):
        if ours[a] == ours[b]:
            ties += 1
        else:
            agree += (paper_sign * (theirs[a] - theirs[b]) > 0) == (sign * (ours[a] - ours[b]) > 0)
    return {"column": column.label, "paper_metric": column.paper, "agree": agree,
            "pairs": len(ours) * (len(ours) - 1) // 2, "ties": ties,
            "best_in_paper": max(theirs, key=lambda n: paper_sign * theirs[n]),
            "best_here": max(ours, key=lambda n: sign * ours[n])}


def orderings(tables: dict) -> list[dict]:
    """``ordering`` for every measured column that stands for one of the paper's metrics."""
    found = [ordering(tables, c) for c in TOY_COLUMNS + CLIP_COLUMNS if c.paper]
    return [o for o in found if o is not None]


# ---------------------------------------------------------------- markdown


def _cell(value, fmt: str) -> str:
    return "—" if value is None else fmt.format(value)


def _millions(count) -> str:
    return "—" if count is None else "0" if count == 0 else f"{count / 1e6:.2f} M" if count >= 1e5 else f"{count:,}"


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"


def verdict_word(holds: bool | None) -> str:
    return {True: "holds", False: "does not hold", None: "not measured"}[holds]


def table1_markdown(tables: dict) -> str:
    """Table 1: the paper's metrics, ours beside them ("—" where their weights were not given, and why); then
    each paper metric beside its toy counterpart."""
    paper_label = {c.key: c for c in PAPER_COLUMNS}
    toy_header, cells = ["method"], []
    for column in TOY_COLUMNS:
        if column.paper:
            toy_header.append(f"paper {paper_label[column.paper].label}")
        toy_header.append(f"{column.label} {'↑' if column.higher_is_better else '↓'}")
    for name, entry in tables["table1"].items():
        row = [name]
        for column in TOY_COLUMNS:
            if column.paper:
                row.append(_cell((entry["paper"] or {}).get(column.paper), paper_label[column.paper].fmt))
            row.append(_cell(entry[column.key], column.fmt))
        cells.append(row)
    header = ["method"] + [f"{side} {c.label} {'↑' if c.higher_is_better else '↓'}" for c in CLIP_COLUMNS
                           for side in ("paper", "ours")]
    paper_cells = [[name] + [v for c in CLIP_COLUMNS
                             for v in (_cell((e["paper"] or {}).get(c.paper), c.fmt), _cell(e[c.key], c.fmt))]
                   for name, e in tables["table1"].items()]
    lines = [_markdown_table(header, paper_cells), "", "Their toy counterparts, beside the paper's numbers:", "",
             _markdown_table(toy_header, cells)]
    status = tables["metrics"]
    skipped = [f"*{status[name]['reason']}.*" for name in ("clip", "lpips") if not status[name]["computed"]]
    return "\n".join(lines[:1] + [line for note in skipped for line in ("", note)] + lines[1:])


def table2_markdown(tables: dict) -> str:
    header = ["inversion", "paper PSNR (dB)", "PSNR (dB)", "paper parameters", "parameters optimised"]
    cells = [[name, _cell((e["paper"] or {}).get("psnr"), "{:.2f}"), _cell(e["psnr"], "{:.2f}"),
              _millions((e["paper"] or {}).get("parameters")), _millions(e["parameters"])]
             for name, e in tables["table2"].items()]
    return _markdown_table(header, cells)


def bars_markdown(bars: list[dict]) -> str:
    return "\n".join(f"- **{verdict_word(b['holds'])}** — {b['claim']}: {b['detail']}." for b in bars)


def orderings_markdown(found: list[dict]) -> str:
    paper_label = {c.key: c.label for c in PAPER_COLUMNS}
    lines = []
    for o in found:
        tied = f", {o['ties']} tied" if o["ties"] else ""
        lines.append(f"- {o['column']} (for the paper's {paper_label[o['paper_metric']]}): {o['agree']} of "
                     f"{o['pairs']} pairs of methods ordered as in the paper{tied}; best in the paper "
                     f"{o['best_in_paper']}, here {o['best_here']}.")
    return "\n".join(lines)


def _markdown_table(header: list[str], cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def markdown(tables: dict) -> str:
    """``tables.md``: how the run was made, both tables with the paper's numbers beside ours, and the verdicts."""
    s = tables["settings"]
    kinds = Counter(e["kind"] for clip in tables["clips"] for e in clip["edits"])
    return "\n\n".join([
        "# Video-P2P's tables on the toy world",
        f"{_count(tables['videos'], 'held-out toy clip')} ({tables['frames']} frames, {tables['size']}×"
        f"{tables['size']}), {_count(sum(kinds.values()), 'edit')} ({', '.join(f'{n} {k}' for k, n in kinds.items())})"
        f"; model `{tables['model']}`, {s['num_steps']} DDIM steps, {_count(s['tune_steps'], 'tuning step')}, "
        f"guidance {s['guidance_scale']:g}; "
        f"{tables['machine']}; {tables['seconds'] / 60:.1f} min. The paper: 45 DAVIS clips, its numbers as printed.",
        "## Table 1 — editing", table1_markdown(tables),
        "Counterparts (`vp2p.metrics`): target hit (every field the evaluator reads matches the target scene) for "
        "CLIP score; background PSNR outside the source and edited objects for masked PSNR; attribute agreement "
        "(share of frames whose color and shape agree with the clip's majority; higher is better, unlike OSV) for "
        "OSV; object temporal (IoU of the object's shape from frame to frame) for Temp. Drift and size error: how "
        "far the edited object moved from the source's and how its area changed (`evaluator.object_geometry`).",
        "## Table 2 — reconstruction", table2_markdown(tables),
        "## The paper's claims", bars_markdown(tables["bars"]),
        "## Orderings: the paper's six methods, pair by pair", orderings_markdown(orderings(tables)),
    ]) + "\n"


# ---------------------------------------------------------------- figures


def edits_figure(video: world.ToyVideo, case: EditCase, edited: dict[str, np.ndarray]):
    """One edit of one clip across all rows (``edited``: row name → video), the input on top."""
    from vp2p import viz

    return viz.video_strip({"input": video.frames, **edited},
                           title=f"{video.caption} → {case.target.caption}")


def metrics_figure(tables: dict):
    """One bar chart per measured column, a bar per row: the paper's rows in blue, the extra rows in grey."""
    import matplotlib.pyplot as plt

    columns = [c for c in TOY_COLUMNS + CLIP_COLUMNS
               if any(e[c.key] is not None for e in tables["table1"].values())]
    names = list(tables["table1"])
    fig, axes = plt.subplots(1, len(columns), figsize=(2.6 * len(columns), 0.28 * len(names) + 1.2),
                             squeeze=False, sharey=True)
    positions = np.arange(len(names))
    colors = ["tab:blue" if n in PAPER_TABLE1 else "tab:gray" for n in names]
    for ax, column in zip(axes[0], columns):
        values = [tables["table1"][n][column.key] for n in names]
        ax.barh(positions, [np.nan if v is None else v for v in values], color=colors)
        ax.set_title(f"{column.label} {'↑' if column.higher_is_better else '↓'}", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(alpha=0.3, axis="x")
    axes[0, 0].set_yticks(positions, names, fontsize=8)
    axes[0, 0].invert_yaxis()
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- the run

OUTPUTS = ("tables.json", "tables.md", "edits.png", "metrics.png")


def refuse_existing(out: Path, overwrite: bool) -> None:
    """Checked before any work: a finished run is not replaced unless asked."""
    existing = [name for name in OUTPUTS if (out / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{out} already holds {', '.join(existing)}; pass overwrite=True to replace them "
                              "(the cache is reused), or another out=DIR")


def keep_out_of_git(cache: Path) -> None:
    """The cache holds tuned weights and inversions (tens of MB): a .gitignore inside keeps it out of commits."""
    cache.mkdir(parents=True, exist_ok=True)
    (cache / ".gitignore").write_text("*\n")


def check_run(out: Path, videos: int, settings, overwrite: bool) -> None:
    """Before any work: the outputs, the clip count and the settings."""
    from vp2p import checks

    refuse_existing(out, overwrite)
    if not isinstance(videos, int) or videos < 1:
        raise ValueError(f"videos={videos!r} (--videos): run at least 1 held-out clip (the paper: 45; default 20)")
    checks.check_settings(settings)
    if settings.tune_steps < 1:
        raise ValueError(f"tune_steps={settings.tune_steps}: the tuned rows need at least 1 tuning step (toy 50); "
                         "the untuned model is its own row, w/o MI")


def model_groups(rows) -> dict[Model, list[Row]]:
    """The rows grouped by model, Video-P2P's model first (Table 2 runs on it): one pipeline at a time."""
    groups = {VIDEO_P2P_MODEL: []}
    for row in rows:
        groups.setdefault(row.model, []).append(row)
    return groups


@dataclass
class Results:
    """What a run gathers, clip by clip: Table 2's reconstructions, each row's edits, the figure's videos."""

    reconstructions: dict = field(default_factory=dict)  # clip index -> reconstruction_scores
    edits: dict = field(default_factory=dict)  # row name -> per clip, the list of its edits' scores
    first_edits: dict = field(default_factory=dict)  # row name -> the first clip's first edited video
    seconds: Counter = field(default_factory=Counter)  # row name -> seconds spent on it in this run


def run_group(stages: Stages, model: Model, rows: list[Row], clips, cases, scorers: Scorers, results: Results,
              progress: bool = True) -> None:
    """Every clip through one model, clip by clip: the model is prepared once per clip (tuned or loaded), then
    Table 2 (on Video-P2P's model) and each of its rows reuse it. A progress bar per row."""
    names = (["Table 2: inversions"] if model == VIDEO_P2P_MODEL else []) + [row.name for row in rows]
    bars = {name: tqdm(total=len(clips), desc=name, disable=not progress) for name in names}
    methods = table2_methods(rows)
    for i, video in enumerate(clips):
        if model == VIDEO_P2P_MODEL:
            results.reconstructions[i] = reconstruction_scores(stages, i, video, methods)
            bars["Table 2: inversions"].update()
        for row in rows:
            start = time.perf_counter()
            edits, edited = row_scores(stages, row, i, video, cases[i], scorers)
            results.edits.setdefault(row.name, []).append(edits)
            results.seconds[row.name] += time.perf_counter() - start
            if i == 0:  # the figure shows the first clip's first edit
                results.first_edits[row.name] = edited[cases[0][0].kind]
            bars[row.name].update()
    for bar in bars.values():
        bar.close()


def run_paper(out, model: str = "toy", videos: int = 20, rows=TABLE1_ROWS, settings=None, frames: int = 8,
              edits_per_video: int = 1, clip=None, lpips=None, cache=None, device=None, seed: int = 0,
              overwrite: bool = False, progress: bool = True) -> dict:
    """Run ``rows`` (default Table 1's six; ``ROWS`` for all) on ``videos`` held-out toy clips and Table 2's
    inversions; write ``OUTPUTS`` into ``out``.

    ``settings``: a ``vp2p.workflow.Settings`` (default ``default_settings(model)``); ``clip``: a CLIP folder or
    hub id and ``lpips``: LPIPS weight file(s), for the paper's own metrics (skipped, and said so, without);
    ``cache``: where tuned weights, inversions and per-row scores are kept (default ``out/cache``).
    Returns the tables (as written to ``tables.json``).
    """
    from vp2p import course, viz
    from vp2p.storage import write_json, write_text
    from vp2p.toy.bench import machine

    out = Path(out)
    settings = settings or default_settings(model)
    check_run(out, videos, settings, overwrite)
    start = time.perf_counter()
    scorers = Scorers.load(clip, lpips, device)
    cache = Path(cache) if cache is not None else out / "cache"
    keep_out_of_git(cache)
    stages = Stages(model, settings, cache, device, progress)
    size = course.frame_size(stages.pipe(VIDEO_P2P_MODEL))
    clips = [held_out_video(i, frames, size, seed) for i in range(videos)]
    cases = [edit_cases(v.scene, i, edits_per_video, seed) for i, v in enumerate(clips)]
    results = Results()
    for group, group_rows in model_groups(rows).items():
        run_group(stages, group, group_rows, clips, cases, scorers, results, progress)
    table1 = {row.name: table1_entry(row, [e for clip in results.edits[row.name] for e in clip],
                                     results.seconds[row.name]) for row in rows}
    tables = {
        "format": "vp2p-paper/1", "model": model, "machine": machine(), "videos": videos, "frames": frames,
        "size": size, "edits_per_video": edits_per_video, "seed": seed, "settings": asdict(settings),
        "metrics": scorers.status(), "table1": table1,
        "table2": table2_entries([results.reconstructions[i] for i in range(videos)]),
        "clips": [{"index": i, "caption": v.caption, "edits": [c.as_dict() for c in cases[i]],
                   "reconstruction": results.reconstructions[i],
                   "rows": {name: results.edits[name][i] for name in table1}} for i, v in enumerate(clips)],
        "work": {"computed": dict(stages.computed), "seconds": dict(stages.seconds)},
        "seconds": time.perf_counter() - start,
    }
    tables["seconds_per_video"] = tables["seconds"] / videos
    tables["bars"] = check_bars(tables)
    out.mkdir(parents=True, exist_ok=True)
    viz.save(edits_figure(clips[0], cases[0][0], {n: results.first_edits[n] for n in table1}), out / "edits.png")
    viz.save(metrics_figure(tables), out / "metrics.png")
    write_text(out / "tables.md", markdown(tables))
    write_json(out / "tables.json", tables)  # last: its presence means the run finished
    return tables


def load_tables(path) -> dict:
    """A ``tables.json`` written by ``run_paper`` (a folder holding one, or the file)."""
    path = Path(path)
    path = path / "tables.json" if path.is_dir() else path
    if not path.exists():
        raise FileNotFoundError(f"no tables at {path}; run `vp2p paper --out {path.parent}` first")
    return json.loads(path.read_text())
