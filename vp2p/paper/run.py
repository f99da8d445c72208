"""Running the paper's rows on held-out toy clips: the stages shared between rows, each edit scored, the tables
filled, cached and resumable (``run_paper``)."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from vp2p.paper import metrics
from vp2p.toy import evaluator, world
from vp2p.paper.report import check_bars, edits_figure, markdown, metrics_figure
from vp2p.paper.rows import (CLIP_COLUMNS, EDITED_FIELD, EDIT_KINDS, PAPER_TABLE1, PAPER_TABLE2, TABLE1_ROWS, TOY_COLUMNS,
                             VIDEO_P2P_MODEL, EditCase, Model, Row, controller_options, edit_cases, held_out_video,
                             table2_methods)


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
    """The toy counterparts of Table 1 (``vp2p.paper.metrics``), the evaluator's verdict and geometry (``judge_edit``),
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
        "appearance_flicker": metrics.toy_appearance_flicker(reading),
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
            from vp2p.io.loading import load_pipeline

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
        fresh = not inversion_cache(pipe, video.frames, video.caption, settings, folder).exists()
        start = time.perf_counter()
        inversion = invert_stage(pipe, video.frames, video.caption, settings, folder, self.progress)
        if fresh:
            self.computed[f"invert {method}"] += 1
            self.seconds["invert"] += time.perf_counter() - start
        return pipe, inversion


# ---------------------------------------------------------------- Table 2: reconstruction


def vae_round_trip_psnr(pipe, frames: np.ndarray) -> float:
    """Mean PSNR over frames of encode → decode: no inversion can reconstruct better than the VAE itself."""
    from vp2p.inspect.fidelity import psnr

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


def edit_as(row: Row, stages: Stages, pipe, inversion, prompts: list[str], case: EditCase):
    """The edit (``vp2p.EditResult``) of ``case`` as ``row`` edits: its controller options and guidance."""
    from vp2p.workflow import Run, edit_run

    return edit_run(pipe, Run(None, inversion), prompts, stages.settings, progress=False, decoupled=row.decoupled,
                    **controller_options(row, case))


def row_scores(stages: Stages, row: Row, index: int, video: world.ToyVideo, cases: list[EditCase],
               scorers: Scorers) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Edit clip ``index`` as ``row`` does, every case; returns the scores of each edit and the edited videos.

    Cached beside the clip's inversions (``rows/<row>-<key>.json`` + ``.npz``), named by a key of the inversion's
    own key (which covers the model's weights, the clip, the prompt and the inversion settings), the row, the cases,
    the editing settings, the metrics' weights, the cache format and the package version (``cache_key``).
    """
    from vp2p.io.storage import atomic_path, cache_key, write_json

    pipe, inversion = stages.inversion(row.model, row.inversion, index, video)
    key = cache_key(inversion=inversion.key, row=asdict(row), cases=[c.as_dict() for c in cases],
                    settings=asdict(stages.settings), scorers=scorers.status())
    path = stages.cache / f"video-{index:03d}" / "rows" / f"{row.slug}-{key}.json"
    if path.exists() and path.with_suffix(".npz").exists():
        return json.loads(path.read_text())["edits"], dict(np.load(path.with_suffix(".npz")))
    edits, videos = [], {}
    for case in cases:
        start = time.perf_counter()
        edited = edit_as(row, stages, pipe, inversion, [video.caption, case.target.caption], case).edited
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
    """The model's settings (``workflow.settings_for``; the toy model: 25 DDIM steps, 2 null-text steps of 8e-2,
    50 tuning steps). Per clip the default run (Table 1's rows) tunes 1 model and optimises 4 null-text inversions,
    all eleven rows 3 and 6 (``work_per_clip``)."""
    from types import SimpleNamespace

    from vp2p.workflow import settings_for

    return settings_for(SimpleNamespace(name=str(model)))  # 'toy' or a toy-world folder: the toy's


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
    from vp2p import course
    from vp2p.inspect import viz
    from vp2p.io.storage import write_json, write_text
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
    # check_run refused existing results unless overwrite was given: the figures may replace their own
    edits = edits_figure(clips[0], cases[0][0], {n: results.first_edits[n] for n in table1})
    viz.save(edits, out / "edits.png", overwrite=True)
    viz.save(metrics_figure(tables), out / "metrics.png", overwrite=True)
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
