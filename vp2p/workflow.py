"""The whole method in one call — inflate, tune, invert, edit — with each long stage cached in a folder.

``video_p2p(pipe, frames, source, targets, work_dir=...)`` saves the tuned weights and the inversion in
``work_dir`` and reuses them when called again with the same inputs (a second edit of the same video skips
straight to editing; an interrupted run resumes after the last finished stage).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vp2p.editing import EditResult, edit
from vp2p.inflation import inflate_unet, inflation_options, is_inflated, restore_base_weights, trainable_parameters
from vp2p.inversion import Inversion, invert
from vp2p.storage import array_fingerprint, module_fingerprint, write_json
from vp2p.tuning import TuneResult, load_tuned, save_tuned, tune


@dataclass
class Settings:
    """Every knob of a run, with the official Video-P2P defaults (SD-1.5, 8 frames at 512²)."""

    tune_steps: int = 500
    tune_lr: float = 3e-5
    tune_latents: str = "sample"
    method: str = "null-text"
    num_steps: int = 50
    guidance_scale: float = 7.5
    inner_steps: int = 10
    cross_replace_steps: float | tuple | dict = 0.2
    self_replace_steps: float | tuple = 0.5
    threshold: float = 0.3
    blend_start: float = 0.2
    self_attention: str = "temporal"
    seed: int = 0

    def replace(self, **changes) -> "Settings":
        unknown = set(changes) - set(self.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(self.__dataclass_fields__)}")
        return Settings(**{**self.__dict__, **changes})


# The toy model is small and trained with a large learning rate: it needs fewer, larger tuning steps.
TOY_SETTINGS = Settings(tune_steps=150, tune_lr=1e-4)


def settings_for(pipe) -> Settings:
    return TOY_SETTINGS if pipe.name == "toy" else Settings()


@dataclass
class Run:
    tuning: TuneResult | None
    inversion: Inversion
    edits: list[EditResult] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)


def prepare(pipe, frames: np.ndarray, source: str, settings: Settings, work_dir=None, progress=True) -> Run:
    """Inflate, tune and invert (each cached under ``work_dir`` when given); returns a Run without edits."""
    start = time.perf_counter()
    tuning = tune_stage(pipe, frames, source, settings, work_dir, progress)
    seconds = {"tune": time.perf_counter() - start}
    start = time.perf_counter()
    inversion = invert_stage(pipe, frames, source, settings, work_dir, progress)
    seconds["invert"] = time.perf_counter() - start
    return Run(tuning, inversion, seconds=seconds)


def tune_stage(pipe, frames: np.ndarray, source: str, settings: Settings, work_dir=None,
               progress=True) -> TuneResult | None:
    """Inflate ``pipe.unet`` if needed and tune it, or load the weights tuned on the same inputs in ``work_dir``.

    Tuning always starts from the base model: weights tuned on another clip before (on the same pipe) are undone
    first. Returns the TuneResult (from the cache: its losses, ``seconds`` 0), or None when ``tune_steps`` is 0.
    """
    work = Path(work_dir) if work_dir is not None else None
    if not is_inflated(pipe.unet):
        inflate_unet(pipe.unet)
    restore_base_weights(pipe.unet)
    tuned_path = work / "tuned.safetensors" if work else None
    if tuned_path is not None and tuned_path.exists() and _same_inputs(work, pipe, frames, source, settings):
        load_tuned(pipe.unet, tuned_path)
        losses_path = work / "tuning_losses.json"
        losses = json.loads(losses_path.read_text()) if losses_path.exists() else []
        return TuneResult(losses=losses, trained=sum(p.numel() for p in trainable_parameters(pipe.unet).values()))
    if settings.tune_steps <= 0:
        return None
    tuning = tune(pipe, frames, source, steps=settings.tune_steps, lr=settings.tune_lr, seed=settings.seed,
                  latents=settings.tune_latents, progress=progress)
    if work is not None:  # weights first, fingerprint last: a fingerprint always describes complete weights
        save_tuned(pipe.unet, tuned_path, overwrite=True)
        write_json(work / "tuning_losses.json", tuning.losses)
        write_json(work / "tuning.json", _fingerprint(pipe, frames, source, settings))
    return tuning


def inversion_cache(work_dir, settings: Settings) -> Path:
    """Where ``invert_stage`` keeps the inversion of a method and step count inside ``work_dir``."""
    return Path(work_dir) / f"inversion-{settings.method}-{settings.num_steps}steps.safetensors"


def invert_stage(pipe, frames: np.ndarray, source: str, settings: Settings, work_dir=None,
                 progress=True) -> Inversion:
    """Invert with ``settings.method`` and ``settings.num_steps``, cached in ``work_dir`` (redone when the model,
    video, prompt or settings changed)."""
    cache = inversion_cache(work_dir, settings) if work_dir is not None else None
    options = dict(method=settings.method, num_steps=settings.num_steps, guidance_scale=settings.guidance_scale,
                   inner_steps=settings.inner_steps, progress=progress)
    try:
        return invert(pipe, frames, source, cache=cache, **options)
    except FileExistsError:  # our own cache, made from other inputs: replace it
        cache.unlink(missing_ok=True)
        return invert(pipe, frames, source, cache=cache, **options)


def edit_run(pipe, run: Run, prompts, settings: Settings, progress=True, **controller_options) -> EditResult:
    """One more edit of a prepared run (appended to ``run.edits``); options override the settings."""
    options = dict(cross_replace_steps=settings.cross_replace_steps, self_replace_steps=settings.self_replace_steps,
                   threshold=settings.threshold, blend_start=settings.blend_start,
                   self_attention=settings.self_attention)
    options.update(controller_options)
    start = time.perf_counter()
    result = edit(pipe, run.inversion, prompts, guidance_scale=settings.guidance_scale, progress=progress,
                  **options)
    run.seconds["edit"] = run.seconds.get("edit", 0.0) + time.perf_counter() - start
    run.edits.append(result)
    return result


def video_p2p(pipe, frames, source: str, targets, settings: Settings | None = None, work_dir=None, progress=True,
              **controller_options) -> Run:
    """Tune on ``frames``, invert with ``source`` and edit towards ``targets`` (a prompt or a list)."""
    settings = settings or settings_for(pipe)
    targets = [targets] if isinstance(targets, str) else list(targets)
    run = prepare(pipe, frames, source, settings, work_dir, progress)
    edit_run(pipe, run, [source] + targets, settings, progress, **controller_options)
    return run


def _fingerprint(pipe, frames, source, settings) -> dict:
    """What tuned weights depend on: the clip, the prompt, the base model (its weights, read right after
    ``restore_base_weights``), how it was inflated, and the tuning settings."""
    return {"frames": array_fingerprint(frames), "source": source, "model": pipe.name, "dtype": str(pipe.dtype),
            "base_weights": module_fingerprint(pipe.unet), "text_encoder": module_fingerprint(pipe.text_encoder),
            "vae": module_fingerprint(pipe.vae),
            **inflation_options(pipe.unet), "tune_steps": settings.tune_steps, "tune_lr": settings.tune_lr,
            "tune_latents": settings.tune_latents, "seed": settings.seed}


def _same_inputs(work: Path, pipe, frames, source, settings) -> bool:
    path = work / "tuning.json"
    return path.exists() and json.loads(path.read_text()) == _fingerprint(pipe, frames, source, settings)
