"""The whole method in one call — inflate, tune, invert, edit — with each long stage cached in a folder.

``video_p2p(pipe, frames, source, targets, work_dir=...)`` saves the tuned weights and the inversion in
``work_dir`` and reuses them when called again with the same inputs (a second edit of the same video skips
straight to editing; an interrupted run resumes after the last finished stage).

Everything a run is given is checked before its first long stage (``check``): settings, prompts, the words the
edit names, and on the toy model the words it knows.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vp2p import checks, seams
from vp2p.editing import (EditResult, check_prompts, controller_option_names, edit, make_controller,
                          parse_eq_params, prompt_roles)
from vp2p.inflation import inflate_unet, inflation_options, is_inflated, restore_base_weights, trainable_parameters
from vp2p.inversion import Inversion, invert, inversion_key
from vp2p.io.loading import is_toy
from vp2p.io.storage import array_fingerprint, cache_key, cache_path, module_fingerprint
from vp2p.tuning import TuneResult, load_tuned, save_tuned, tune, tuned_metadata

TUNING_METADATA = "vp2p_tuning"  # the tuned weights file's record of its inputs and losses


@dataclass(frozen=True)
class Settings:
    """Every knob of a run, with the official Video-P2P defaults (SD-1.5, 8 frames at 512²). Frozen: a changed copy
    is ``settings.replace(num_steps=50)``, so no caller changes the settings another one holds."""

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
        return dataclasses.replace(self, **changes)


def settings_for(pipe) -> Settings:
    """The model's settings: the official ones, or the toy model's (``vp2p.toy.settings.TOY_SETTINGS``)."""
    if is_toy(pipe):
        from vp2p.toy.settings import TOY_SETTINGS

        return TOY_SETTINGS
    return Settings()


def __getattr__(name: str):
    if name == "TOY_SETTINGS":  # its old home: vp2p.workflow.TOY_SETTINGS still works
        from vp2p.toy import settings

        return settings.TOY_SETTINGS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def checked_options(pipe, prompts, settings: Settings, options: dict) -> dict:
    """``check`` without building the controller: settings, prompts, toy words, option names and values."""
    checks.check_settings(settings)
    checks.check_model_prompts(pipe, prompt_roles(check_prompts(prompts)))
    options = controller_options(settings, options)
    for name in CONTROLLER_SETTINGS:
        checks.check_setting(name, options[name])
    if options.get("eq_params"):
        for word, value in parse_eq_params(options["eq_params"]).items():
            checks.weight_value(word, value)
    return options


@dataclass
class Run:
    """A prepared clip: its tuning and inversion, then its edits."""

    tuning: TuneResult | None
    inversion: Inversion
    edits: list[EditResult] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)

    @property
    def weights(self) -> str:
        """The fingerprint of the tuned weights the run was prepared with (``vp2p.inflation.weights_fingerprint``):
        ``edit_run`` refuses a pipeline whose UNet holds other weights since (tuned on another clip)."""
        return self.inversion.weights


def prepare(pipe, frames: np.ndarray, source: str, settings: Settings, work_dir=None, progress=True,
            on_stage=None) -> Run:
    """Inflate, tune and invert (each cached under ``work_dir`` when given); returns a Run without edits.
    ``on_stage(name)`` is told "tune", then "invert", as each stage starts (an app's progress line)."""
    checks.check_settings(settings)
    checks.check_model_prompts(pipe, {"source prompt": source})
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
    first. The weights file is named by the key of its inputs (``tuned-<key>.safetensors``) and holds them and the
    losses in its metadata: one atomic write, so no crash can leave a description of other weights. Returns the
    TuneResult (from the cache: its losses, ``seconds`` 0), or None when ``tune_steps`` is 0.
    """
    if not is_inflated(pipe.unet):
        inflate_unet(pipe.unet)
    restore_base_weights(pipe.unet)
    # of the base weights: taken before tuning moves them (taken after, it never matched the next run's)
    fingerprint = tuning_fingerprint(pipe, frames, source, settings)
    path = cache_path(work_dir, "tuned", cache_key(**fingerprint)) if work_dir is not None else None
    cached = load_tuning(pipe, path, fingerprint) if path is not None else None
    if cached is not None or settings.tune_steps <= 0:
        return cached
    tuning = tune(pipe, frames, source, steps=settings.tune_steps, lr=settings.tune_lr, seed=settings.seed,
                  latents=settings.tune_latents, progress=progress)
    if path is not None:
        record = json.dumps({"fingerprint": fingerprint, "losses": tuning.losses})
        save_tuned(pipe.unet, path, overwrite=True, metadata={TUNING_METADATA: record})
    return tuning


def load_tuning(pipe, path: Path, fingerprint: dict) -> TuneResult | None:
    """The tuning saved at ``path`` loaded into ``pipe.unet`` if its recorded inputs are ``fingerprint``, else
    None (no file, or one of an older format)."""
    if not path.exists():
        return None
    record = json.loads(tuned_metadata(path).get(TUNING_METADATA, "{}"))
    if record.get("fingerprint") != json.loads(json.dumps(fingerprint)):  # compared as stored: JSON
        return None
    load_tuned(pipe.unet, path)
    return TuneResult(losses=record["losses"], trained=sum(p.numel() for p in trainable_parameters(pipe.unet).values()))


def inversion_options(settings: Settings, reconstruct: bool = True) -> dict:
    """``vp2p.invert``'s options from the settings (the stages always reconstruct: the studio shows it). Every
    option that enters the inversion's key is named, so that ``inversion_cache`` finds the file ``invert`` writes."""
    return dict(method=settings.method, num_steps=settings.num_steps, guidance_scale=settings.guidance_scale,
                inner_steps=settings.inner_steps, lr=settings.null_text_lr, early_stop=1e-5, reconstruct=reconstruct)


def inversion_cache(pipe, frames: np.ndarray, source: str, settings: Settings, work_dir) -> Path:
    """Where ``invert_stage`` keeps this inversion in ``work_dir``: ``inversion-<key>.safetensors``, the key of
    every input (``vp2p.inversion.inversion_key``: the UNet's current weights included)."""
    return cache_path(work_dir, "inversion", inversion_key(pipe, frames, source, **inversion_options(settings)))


def invert_stage(pipe, frames: np.ndarray, source: str, settings: Settings, work_dir=None,
                 progress=True) -> Inversion:
    """Invert with the settings, cached in ``work_dir`` under the key of its inputs (so another model, video,
    prompt or setting finds no file, and two processes inverting the same clip both write a complete one)."""
    cache = inversion_cache(pipe, frames, source, settings, work_dir) if work_dir is not None else None
    return invert(pipe, frames, source, cache=cache, progress=progress, **inversion_options(settings))


def edit_run(pipe, run: Run, prompts, settings: Settings, progress=True, decoupled: bool = True,
             **controller_options) -> EditResult:
    """One more edit of a prepared run (appended to ``run.edits``); options override the settings (``check``).
    ``decoupled=False``: the paper's ablation without decoupled guidance (see ``vp2p.edit``)."""
    options = checked_options(pipe, prompts, settings, controller_options)
    controller = make_controller(pipe, prompts, run.inversion.num_steps, **options)
    result = timed_edit(pipe, run, prompts, controller, settings, progress, decoupled)
    run.edits.append(result)
    return result


def timed_edit(pipe, run: Run, prompts, controller, settings: Settings, progress=True,
               decoupled: bool = True) -> EditResult:
    """``vp2p.edit`` of the run's inversion with ``controller``, its time added to ``run.seconds["edit"]``."""
    start = time.perf_counter()
    result = edit(pipe, run.inversion, prompts, controller=controller, guidance_scale=settings.guidance_scale,
                  decoupled=decoupled, progress=progress)
    run.seconds["edit"] = run.seconds.get("edit", 0.0) + time.perf_counter() - start
    return result


def edit_sweep(pipe, run: Run, prompts, settings: Settings, knob: str, values, progress=True,
               **controller_options) -> list[EditResult]:
    """The edit of ``prompts`` ([source, target]) once per value of the controller option ``knob`` (e.g.
    ``cross_replace_steps``, ``eq_params``), in as few batches as the values allow: values whose controllers
    differ only per target (the cross-attention window, the rule, the weights) share one batch and its source
    branch (``vp2p.controllers.stack_edits``); values with another self-attention window or blend setting get
    batches of their own. Each value's edit is the one ``edit_run`` makes, up to float rounding
    (tests/test_sweep.py). Returns one EditResult per value, in order (each also appended to ``run.edits``)."""
    from vp2p.controllers import shared_settings, stack_edits

    prompts = check_prompts(prompts)
    if len(prompts) != 2:
        raise ValueError(f"edit_sweep edits one target per value: give [source, target], not {len(prompts)} prompts")
    values = list(values)
    controllers = [make_controller(pipe, prompts, run.inversion.num_steps,
                                   **checked_options(pipe, prompts, settings, {**controller_options, knob: value}))
                   for value in values]
    batches: dict[tuple, list[int]] = {}  # what a batch shares -> the values (their indices) it edits
    for i, controller in enumerate(controllers):
        batches.setdefault(shared_settings(controller), []).append(i)
    results: list[EditResult | None] = [None] * len(values)
    for members in batches.values():
        batch = timed_edit(pipe, run, prompts[:1] + prompts[1:] * len(members),
                           stack_edits([controllers[i] for i in members]), settings, progress)
        for k, i in enumerate(members, 1):
            results[i] = batch.target(k)
    run.edits.extend(results)
    return results


def video_p2p(pipe, frames, source: str, targets, settings: Settings | None = None, work_dir=None, progress=True,
              **controller_options) -> Run:
    """Tune on ``frames``, invert with ``source`` and edit towards ``targets`` (a prompt or a list)."""
    settings = settings or settings_for(pipe)
    targets = [targets] if isinstance(targets, str) else list(targets)
    check(pipe, [source] + targets, settings, **controller_options)  # before the minutes of tuning and inversion
    run = prepare(pipe, frames, source, settings, work_dir, progress)
    edit_run(pipe, run, [source] + targets, settings, progress, **controller_options)
    return run


def tuning_fingerprint(pipe, frames, source, settings) -> dict:
    """What tuned weights depend on: the clip, the prompt, the base model (its weights, read right after
    ``restore_base_weights``), how it was inflated, the tuning settings, and the steps replaced by a student's
    (``vp2p.seams``)."""
    return {"frames": array_fingerprint(frames), "source": source, "model": pipe.name, "dtype": str(pipe.dtype),
            "base_weights": module_fingerprint(pipe.unet), "text_encoder": module_fingerprint(pipe.text_encoder),
            "vae": module_fingerprint(pipe.vae),
            **inflation_options(pipe.unet), "tune_steps": settings.tune_steps, "tune_lr": settings.tune_lr,
            "tune_latents": settings.tune_latents, "seed": settings.seed,
            **seams.cache_entries("tune")}  # a student's step in place (the course): never vp2p's cache
