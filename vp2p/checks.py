"""Up-front checks: what a run was given, validated before its long stages.

Tuning and inversion take minutes on a CPU; a bad setting, a word missing from its prompt or a result folder that
holds the user's files, found after them, wastes those minutes. The checks here are cheap (no model call, no torch
import) and raise an error that names the value and the fix. Messages use the API's names (``num_steps=0``); the
CLI rewrites them to its flags (``--steps 0``).

``vp2p.workflow.check`` runs the checks that need a pipeline (words of the prompts, the controller options).
"""

from __future__ import annotations

import difflib
import math
import os
import tempfile
from numbers import Real
from pathlib import Path

from vp2p.io.storage import is_cache_file

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"  # the hub id the messages suggest (also vp2p.io.loading.SD15)


def is_hub_id(text: str) -> bool:
    """Whether a model name that is no existing path can be a Hugging Face hub id: exactly "owner/name", and not
    written as a path (./, /, ~)."""
    return not str(text).startswith((".", "/", "~")) and str(text).count("/") == 1


# vp2p.invert's methods (described there), named here, without torch, for the settings' rule and the CLI's choices
INVERSION_METHODS = ("null-text", "null-text-per-frame", "negative-prompt", "fast", "ddim")


# -- settings: one rule per field of vp2p.workflow.Settings

def _whole(value, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _real(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _fraction(value) -> bool:
    return _real(value) and 0 <= value <= 1


def _window(value) -> bool:
    """A fraction of the steps, or a pair 0 <= start <= end <= 1."""
    if _fraction(value):
        return True
    return (isinstance(value, (tuple, list)) and len(value) == 2 and all(_fraction(v) for v in value)
            and value[0] <= value[1])


def _cross_window(value) -> bool:
    # per-word windows: whether each word is in a target prompt is checked by make_controller, with the prompts
    return all(_window(v) for v in value.values()) if isinstance(value, dict) else _window(value)


WINDOW = "a fraction of the steps in [0, 1] or a pair 0 <= start <= end <= 1"
# field -> (is the value valid, what a valid value is: the fix the message gives)
SETTING_RULES = {
    "tune_steps": (lambda v: _whole(v, 0), "a whole number >= 0: 0 skips tuning (official 500, toy 50)"),
    "tune_lr": (lambda v: _real(v) and v > 0, "a positive learning rate (official 3e-5, toy 3e-4)"),
    "tune_latents": (lambda v: v in ("sample", "mean"), "'sample' (official) or 'mean'"),
    "method": (lambda v: v in INVERSION_METHODS, f"one of {', '.join(INVERSION_METHODS)}"),
    "num_steps": (lambda v: _whole(v, 1), "a whole number of DDIM steps >= 1 (official 50, toy 25)"),
    "guidance_scale": (lambda v: _real(v) and v >= 1, "1 or more: 1 is no guidance (official 7.5)"),
    "inner_steps": (lambda v: _whole(v, 1), "a whole number of null-text steps >= 1 per DDIM step (official 10, toy 2)"),
    "null_text_lr": (lambda v: _real(v) and v > 0, "a positive learning rate (official 1e-2, toy 8e-2)"),
    "cross_replace_steps": (_cross_window, f"{WINDOW}, or a dict of those per word with 'default_' (official 0.2)"),
    "self_replace_steps": (_window, f"{WINDOW} (official 0.5)"),
    "threshold": (lambda v: _real(v) and 0 < v < 1,
                  "between 0 and 1, both excluded (official 0.3): the blend mask keeps what is above this share of "
                  "each frame's maximum, so at 1 or more it is empty and the edit equals the reconstruction"),
    "blend_start": (_fraction, "a fraction of the steps in [0, 1] (official 0.2)"),
    "self_attention": (lambda v: v in ("temporal", "frame"), "'temporal' (official) or 'frame'"),
    "seed": (lambda v: _whole(v, 0), "a whole number >= 0"),
}


def check_setting(name: str, value, label: str | None = None) -> None:
    """``value`` of the setting ``name``, as the rule of ``SETTING_RULES`` wants; the message names it ``label``
    (the caller's argument name, e.g. ``lr`` for ``null_text_lr``) or ``name``."""
    valid, expected = SETTING_RULES[name]
    if not valid(value):
        raise ValueError(f"{label or name}={value!r} must be {expected}")


def check_settings(settings) -> None:
    """Every field of a ``vp2p.workflow.Settings``."""
    for name in SETTING_RULES:
        check_setting(name, getattr(settings, name))


# -- prompts and words

def check_prompt(prompt, role: str = "prompt") -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"the {role} {prompt!r} must be a text describing the video, e.g. "
                         "'a rabbit is jumping on the grass'")
    return prompt


def weight_value(word: str, value) -> float:
    """A reweight value as a float; anything else (text, nan, inf) is an error naming the value."""
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"reweight value {value!r} for {word!r} is not a number; write WORD=NUMBER, "
                         f"e.g. {word}=2 (0 removes the word, 1 leaves it, 2 doubles its attention)")
    return number


def parse_weight(item: str) -> tuple[str, float]:
    """'striped=2' -> ('striped', 2.0)."""
    word, sep, value = str(item).partition("=")
    if not sep or not word.strip():
        raise ValueError(f"reweight {item!r}: write WORD=NUMBER, e.g. striped=2")
    return word.strip(), weight_value(word.strip(), value.strip())


def parse_weights(pairs: str | list[str]) -> dict[str, float]:
    """'striped=2, red=0.5' (or ['striped=2', 'red=0.5']) -> {'striped': 2.0, 'red': 0.5}; empty -> {}."""
    items = pairs.split(",") if isinstance(pairs, str) else list(pairs)
    return dict(parse_weight(item) for item in items if str(item).strip())


def check_model_prompts(pipe, roles: dict[str, str]) -> None:
    """Each prompt (role -> prompt) is a text; on the toy model, of words it knows. The API's stages (tune, invert,
    edit) and the workflow run it where they are entered."""
    for role, prompt in roles.items():
        check_prompt(prompt, role)
    from vp2p.io.loading import is_toy  # here: vp2p.io.loading imports torch
    from vp2p.toy.settings import check_toy_words  # the toy's vocabulary is the toy world's

    if is_toy(pipe):
        check_toy_words(roles)


# -- option names: a misspelled keyword is named, with the known ones

def check_option_names(given, known, what: str = "option") -> None:
    """Every name in ``given`` is in ``known``; else an error naming it, the closest known name and all of them."""
    known = sorted(known)
    for name in given:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]}=? " if close else ""
            raise ValueError(f"unknown {what} {name}=; {hint}the known ones are {', '.join(known)}")


# -- the toy model outside its world: said, not silent

TOY_SIZE = 64  # the toy model was trained on 64x64 frames
TOY_RECONSTRUCTION_DB = 29  # its null-text reconstructions of its own world (toy bench, held-out clips): 29-31 dB
LOW_RECONSTRUCTION_DB = 20  # far below that: the clip is outside what the model can draw


def toy_size_warning(height_width) -> str | None:
    """A warning when frames are not the toy model's 64x64, else None."""
    height, width = (int(n) for n in height_width)
    if (height, width) == (TOY_SIZE, TOY_SIZE):
        return None
    return (f"the toy model was trained on {TOY_SIZE}x{TOY_SIZE} frames; at {height}x{width} it reconstructs and "
            f"edits poorly (blur, invented textures): read the clip at size={TOY_SIZE}, or use Stable Diffusion "
            "for larger frames")


def toy_reconstruction_warning(psnr_db: float) -> str | None:
    """A warning when the toy model's reconstruction of a clip is far below what it achieves on its own world."""
    if psnr_db >= LOW_RECONSTRUCTION_DB:
        return None
    return (f"the toy model reconstructs this clip at {psnr_db:.1f} dB, far below the ~{TOY_RECONSTRUCTION_DB} dB "
            "it reaches on its own world of coloured shapes: it cannot represent this clip, and its edits will "
            "invent textures. Use a toy scene (vp2p.toy.world), or for real footage Stable Diffusion: "
            f"model={SD15} (a GPU) or a local Stable Diffusion folder")


# -- outputs: nothing the user gave or owns is written over

def check_file_target(path, what: str, example: str) -> Path:
    """The ``what`` is to be written as a file at ``path``: not onto a folder (the message gives a file inside it,
    named ``example``)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"the path for the {what} must be a str or Path, got {type(path).__name__}; e.g. "
                        f"{example!r}")
    path = Path(path).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file path for the {what}, e.g. {path / example}")
    return path


def check_writable(folder) -> None:
    """``folder`` (or, where it does not exist yet, its nearest existing parent) accepts new files: probed by
    creating and removing a temporary file — before the long stages, not after them."""
    folder = Path(folder).expanduser().absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise NotADirectoryError(f"{existing} is a file, so {folder} cannot be made a folder; choose another out "
                                 "folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise PermissionError(f"cannot write into {existing} ({reason.lower()}); choose an out folder you can "
                              "write to") from None




def check_work_folder(work: Path) -> None:
    """A work folder to reuse must hold only vp2p's cache files."""
    if not work.is_dir():
        raise FileExistsError(f"{work} is a file, where vp2p keeps its cache folder; choose another out folder")
    foreign = sorted(p.name for p in work.iterdir() if not is_cache_file(p.name))
    if foreign:
        shown = ", ".join(foreign[:5]) + (", …" if len(foreign) > 5 else "")
        raise FileExistsError(f"{work} holds files vp2p did not write ({shown}); vp2p would keep its tuned weights "
                              "and inversions there: choose another out folder")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_inputs_untouched(inputs, outputs: list[Path]) -> None:
    """No output is an input file, or lies inside an input folder — whatever the overwrite flag says."""
    for source in (Path(p).expanduser().resolve() for p in inputs):
        for output in (p.resolve() for p in outputs):
            if output == source or (source.is_dir() and _inside(output, source)):
                raise FileExistsError(
                    f"writing {output} would change the input {source}; choose an out folder outside the input "
                    "(vp2p never writes over what it was given, even with overwrite=True)")


def check_outputs(folder, names, inputs=(), overwrite: bool = False, work: str | None = "cache") -> Path:
    """Before a run writes the files ``names`` and its ``work`` folder into ``folder``: refuse to write over an
    input (always), over an existing result (unless ``overwrite``), or into a work folder holding files vp2p did
    not write (always). Returns the folder."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"out={str(folder)!r} is a file, not a folder; choose a folder for the results")
    targets = [folder / name for name in names] + ([folder / work] if work else [])
    check_inputs_untouched(inputs, targets)
    existing = [name for name in names if (folder / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{folder} already holds {', '.join(existing)}; pass overwrite=True to replace "
                              "them, or choose another out folder")
    if work and (folder / work).exists():
        check_work_folder(folder / work)
    check_writable(folder)
    return folder
