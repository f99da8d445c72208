"""The whole method in one call — inflate, tune, invert, edit — with each long stage cached in a folder.

``video_p2p(pipe, frames, source, targets, work_dir=...)`` saves the tuned weights and the inversion in
``work_dir`` and reuses them when called again with the same inputs (a second edit of the same video skips
straight to editing; an interrupted run resumes after the last finished stage).

Everything a run is given is checked before its first long stage (``check``): settings, prompts, the words the
edit names, and on the toy model the words it knows.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vp2p import checks
from vp2p.editing import (EditResult, check_prompts, controller_option_names, edit, make_controller,
                          parse_eq_params, prompt_roles)
from vp2p.inflation import inflate_unet, inflation_options, is_inflated, restore_base_weights, trainable_parameters
from vp2p.inversion import Inversion, invert
from vp2p.io.loading import is_toy
from vp2p.io.storage import array_fingerprint, module_fingerprint, write_json
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
    null_text_lr: float = 1e-2
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


# The toy model is small and trained with a large learning rate: it needs fewer, larger steps everywhere (the SD-1.5
# settings stay official). On 4 held-out clips (color and shape swaps), against 150 tuning steps of 1e-4 and 4
# null-text steps of 4e-2: 50 tuning steps of 3e-4 edit as well (background 31.7 / 36.8 dB vs 30.8 / 37.8, every
# edit a hit) in a third of the time; null-text losses fall slowly and steadily (never near the early stop), so
# 2 Adam steps of 8e-2 reconstruct within 0.35 dB (31.0 vs 31.3 dB) for half the inversion's time.
TOY_SETTINGS = Settings(tune_steps=50, tune_lr=3e-4, num_steps=25, inner_steps=2, null_text_lr=8e-2)


def settings_for(pipe) -> Settings:
    return TOY_SETTINGS if is_toy(pipe) else Settings()


# The official configs' names of make_controller's options (an alias, so that a config can be passed as is).
OFFICIAL_NAMES = {"blend_word": "blend_words"}
# Settings that are also controller options: an option given to edit_run overrides the setting.
CONTROLLER_SETTINGS = ("cross_replace_steps", "self_replace_steps", "threshold", "blend_start", "self_attention")


def controller_options(settings: Settings, options: dict) -> dict:
    """make_controller's options: the settings' values, overridden by ``options`` (official names accepted);
    an unknown option is an error naming the known ones."""
    options = dict(options)
    for official, ours in OFFICIAL_NAMES.items():
        if official in options:
            if ours in options:
                raise ValueError(f"pass {ours} or {official} (its name in the official configs), not both")
            options[ours] = options.pop(official)
    checks.check_option_names(options, controller_option_names(), "controller option")
    return {**{name: getattr(settings, name) for name in CONTROLLER_SETTINGS}, **options}


def check(pipe, prompts, settings: Settings, **options) -> dict:
    """Check a whole run before its long stages: the settings, the prompts (on the toy model: only words it knows),
    and the edit's options, by building its controller (cheap: it only tokenizes), which raises on a blend or
    reweight word missing from its prompt, a word swap between prompts of different lengths, a bad window.
    Returns make_controller's options."""
    options = checked_options(pipe, prompts, settings, options)
    make_controller(pipe, prompts, settings.num_steps, **options)
    return options


check_prompt_words = checks.check_model_prompts  # each prompt a text; on the toy model, of words it knows


def checked_options(pipe, prompts, settings: Settings, options: dict) -> dict:
    """``check`` without building the controller: settings, prompts, toy words, option names and values."""
    checks.check_settings(settings)
    check_prompt_words(pipe, prompt_roles(check_prompts(prompts)))
    options = controller_options(settings, options)
    for name in CONTROLLER_SETTINGS:
        checks.check_setting(name, options[name])
    if options.get("eq_params"):
        for word, value in parse_eq_params(options["eq_params"]).items():
            checks.weight_value(word, value)
    return options


@dataclass
class Run:
    tuning: TuneResult | None
    inversion: Inversion
    edits: list[EditResult] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)


def prepare(pipe, frames: np.ndarray, source: str, settings: Settings, work_dir=None, progress=True,
            on_stage=None) -> Run:
    """Inflate, tune and invert (each cached under ``work_dir`` when given); returns a Run without edits.
    ``on_stage(name)`` is told "tune", then "invert", as each stage starts (an app's progress line)."""
    checks.check_settings(settings)
    check_prompt_words(pipe, {"source prompt": source})
    pipe.check_frames(frames)
    pipe.tokenize([source])  # a prompt too long for the text encoder
    toy_size = checks.toy_size_warning(frames.shape[1:3]) if is_toy(pipe) else None
    if toy_size:
        warnings.warn(toy_size, stacklevel=2)
    on_stage = on_stage or (lambda name: None)
    start = time.perf_counter()
    on_stage("tune")
    tuning = tune_stage(pipe, frames, source, settings, work_dir, progress)
    seconds = {"tune": time.perf_counter() - start}
    start = time.perf_counter()
    on_stage("invert")
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
    tuned_path = work / checks.TUNED if work else None
    # of the base weights: taken before tuning moves them (taken after, it never matched the next run's)
    fingerprint = _fingerprint(pipe, frames, source, settings) if work else None
    if tuned_path is not None and tuned_path.exists() and _saved_fingerprint(work) == fingerprint:
        load_tuned(pipe.unet, tuned_path)
        losses_path = work / checks.TUNING_LOSSES
        losses = json.loads(losses_path.read_text()) if losses_path.exists() else []
        return TuneResult(losses=losses, trained=sum(p.numel() for p in trainable_parameters(pipe.unet).values()))
    if settings.tune_steps <= 0:
        return None
    tuning = tune(pipe, frames, source, steps=settings.tune_steps, lr=settings.tune_lr, seed=settings.seed,
                  latents=settings.tune_latents, progress=progress)
    if work is not None:  # weights first, fingerprint last: a fingerprint always describes complete weights
        save_tuned(pipe.unet, tuned_path, overwrite=True)
        write_json(work / checks.TUNING_LOSSES, tuning.losses)
        write_json(work / checks.TUNING_FINGERPRINT, fingerprint)
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
                   inner_steps=settings.inner_steps, lr=settings.null_text_lr, progress=progress)
    try:
        return invert(pipe, frames, source, cache=cache, **options)
    except FileExistsError:  # our own cache, made from other inputs: replace it
        cache.unlink(missing_ok=True)
        return invert(pipe, frames, source, cache=cache, **options)


def edit_run(pipe, run: Run, prompts, settings: Settings, progress=True, decoupled: bool = True,
             **controller_options) -> EditResult:
    """One more edit of a prepared run (appended to ``run.edits``); options override the settings (``check``).
    ``decoupled=False``: the paper's ablation without decoupled guidance (see ``vp2p.edit``)."""
    options = checked_options(pipe, prompts, settings, controller_options)
    controller = make_controller(pipe, prompts, run.inversion.num_steps, **options)
    start = time.perf_counter()
    result = edit(pipe, run.inversion, prompts, controller=controller, guidance_scale=settings.guidance_scale,
                  decoupled=decoupled, progress=progress)
    run.seconds["edit"] = run.seconds.get("edit", 0.0) + time.perf_counter() - start
    run.edits.append(result)
    return result


def video_p2p(pipe, frames, source: str, targets, settings: Settings | None = None, work_dir=None, progress=True,
              **controller_options) -> Run:
    """Tune on ``frames``, invert with ``source`` and edit towards ``targets`` (a prompt or a list)."""
    settings = settings or settings_for(pipe)
    targets = [targets] if isinstance(targets, str) else list(targets)
    check(pipe, [source] + targets, settings, **controller_options)  # before the minutes of tuning and inversion
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


def _saved_fingerprint(work: Path) -> dict | None:
    path = work / checks.TUNING_FINGERPRINT
    return json.loads(path.read_text()) if path.exists() else None
