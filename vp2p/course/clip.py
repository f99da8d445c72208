"""What the numbered notebooks share: where they write, the clip they edit, and the settings they run with.

Notebooks 02–06 tune and invert the same clip with the same settings, so a notebook run after another finds the
tuned weights and the inversion in the work folder (``runs_dir()/notebooks/<model>-<clip>``) and goes straight to
its own topic; run alone, it computes what is missing (``vp2p.workflow`` does the caching).

Where they write: never into the repository unless asked. ``figures_dir()`` and ``runs_dir()`` lie in the user's
cache folder (``~/.cache/vp2p/course``), or below ``$VP2P_COURSE_OUTPUT`` when set (the tests point it at a
temporary folder); ``$VP2P_COURSE_FIGURES`` moves the figures alone — ``vp2p course --build`` sets it to the
repository's ``figures/`` (``vp2p.course.build``).
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from vp2p.io.storage import atomic_path
from vp2p.checks import SD15
from vp2p.io.loading import is_toy
from vp2p.toy import world
from vp2p.workflow import Settings, settings_for

# The clip of the course: a red circle bouncing on textured grass (the same scene as `vp2p demo`).
SCENE = world.Scene(color="red", shape="circle", background="grass", motion="bouncing", seed=7)
NUM_FRAMES = 8


OUTPUT_VARIABLE, FIGURES_VARIABLE = "VP2P_COURSE_OUTPUT", "VP2P_COURSE_FIGURES"
MODEL_VARIABLE, SETTINGS_VARIABLE = "VP2P_MODEL", "VP2P_SETTINGS"

# The notebooks' settings choices: what each changes from the model's defaults (``settings_for``: the toy's own,
# or the official ones) and how many frames the clip has. "course" is for Stable Diffusion on a free Colab T4, where
# the official settings take 20-80 minutes per notebook (``vp2p.course.estimates``): about a quarter of the
# official time, for a shorter clip (4 frames), a model tuned 150 steps instead of 500 (it redraws the clip less
# faithfully), 25 DDIM steps instead of 50 (as the toy model) and at most 5 null-text iterations per step instead of
# 10; what that costs in edit quality on Stable Diffusion has not been measured. The toy's own settings are
# already course-sized, so on the toy "course" is "official". "tiny" is for the tests: a few steps of everything on
# 2 frames, to check that a notebook runs.
SETTING_CHOICES = {
    "official": ({}, NUM_FRAMES),
    "course": ({"tune_steps": 150, "num_steps": 25, "inner_steps": 5}, 4),
    "tiny": ({"tune_steps": 2, "num_steps": 4, "inner_steps": 1}, 2),
}


def model() -> str:
    """The model the notebooks load: ``$VP2P_MODEL`` when set ('toy', a hub id or a local folder), else Stable
    Diffusion 1.5 with a CUDA GPU and the bundled toy model without one."""
    import torch

    chosen = os.environ.get(MODEL_VARIABLE, "").strip()
    return chosen or (SD15 if torch.cuda.is_available() else "toy")


def settings_choice(choice: str | None = None) -> str:
    """``choice``, else ``$VP2P_SETTINGS``, else "official"; an unknown name is an error listing the known ones."""
    chosen = choice or os.environ.get(SETTINGS_VARIABLE, "").strip() or "official"
    if chosen not in SETTING_CHOICES:
        where = f"${SETTINGS_VARIABLE}={chosen!r}" if choice is None else f"settings choice {chosen!r}"
        raise ValueError(f"{where} is not one of {list(SETTING_CHOICES)}")
    return chosen


def output_dir() -> Path:
    """``$VP2P_COURSE_OUTPUT``, else ``$XDG_CACHE_HOME/vp2p/course`` (``~/.cache/vp2p/course``)."""
    if os.environ.get(OUTPUT_VARIABLE):
        return Path(os.environ[OUTPUT_VARIABLE]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "vp2p" / "course"


def figures_dir() -> Path:
    """Where the notebooks save their figures: ``$VP2P_COURSE_FIGURES``, else ``output_dir()/figures``."""
    if os.environ.get(FIGURES_VARIABLE):
        return Path(os.environ[FIGURES_VARIABLE]).expanduser()
    return output_dir() / "figures"


def runs_dir() -> Path:
    """Where the notebooks cache tuned weights, inversions and downloaded clips: ``output_dir()/runs``."""
    return output_dir() / "runs"


def project_dir(cwd=None) -> Path:
    """The repository root when run from its notebooks/ folder (Jupyter starts kernels there), else the current
    folder (Colab: /content). The notebooks write into ``figures_dir()`` and ``runs_dir()``, not here."""
    here = Path.cwd() if cwd is None else Path(cwd)
    if here.name == "notebooks" and (here.parent / "vp2p").is_dir():
        return here.parent
    return here


def settings(pipe, choice: str | None = None) -> Settings:
    """The settings every notebook uses: the model's defaults (``vp2p.toy.settings.TOY_SETTINGS`` on the toy model: 25 DDIM
    steps, 2 null-text steps of 8e-2, 50 tuning steps; the official ones otherwise), changed as ``choice`` says
    (``SETTING_CHOICES``; default ``$VP2P_SETTINGS``, else "official"). ``pipe`` may also be a model's name."""
    changes = SETTING_CHOICES[effective_choice(pipe, choice)][0]
    return settings_for(named(pipe)).replace(**changes)


def named(pipe):
    """``pipe``, or for a model's name (notebook 07 loads no pipeline) something ``is_toy`` can read."""
    return SimpleNamespace(name=str(pipe)) if isinstance(pipe, (str, Path)) else pipe


def effective_choice(pipe, choice: str | None = None) -> str:
    """``settings_choice(choice)``, except that "course" is "official" on the toy model (already course-sized)."""
    chosen = settings_choice(choice)
    return "official" if chosen == "course" and is_toy(named(pipe)) else chosen


def num_frames(pipe, choice: str | None = None) -> int:
    """How many frames the course's clip has under the settings ``choice`` (8 unless "course" on SD or "tiny")."""
    return SETTING_CHOICES[effective_choice(pipe, choice)][1]


def frame_size(pipe) -> int:
    """The frame size the model was trained at (toy: 64, Stable Diffusion 1.x: 512)."""
    return pipe.unet.config.sample_size * pipe.vae_scale_factor


def local_file(path_or_url: str, folder) -> Path:
    """``path_or_url`` itself, or for an http(s)/file URL a copy downloaded once into ``folder``."""
    text = str(path_or_url)
    if not re.match(r"^(https?|file)://", text):
        return Path(text).expanduser()
    name = re.sub(r"[^A-Za-z0-9._-]", "_", text.split("?")[0].rstrip("/").rsplit("/", 1)[-1]) or "video"
    target = Path(folder) / name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{name}.part")
        urllib.request.urlretrieve(text, partial)
        partial.replace(target)
    return target


def save_upload(name: str, content: bytes, folder) -> Path:
    """An uploaded file kept in ``folder`` as ``<name>-<hash of its content><suffix>``, written atomically: two
    uploads of the same name (two kernels share the folder) never overwrite each other, and the same file uploaded
    twice is kept once (and finds its prepared work folder again)."""
    safe = Path(re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name))
    path = Path(folder) / f"{safe.stem or 'clip'}-{hashlib.sha256(content).hexdigest()[:12]}{safe.suffix}"
    if not path.exists():
        with atomic_path(path) as tmp:
            tmp.write_bytes(content)
    return path


def clip(pipe, video=None, scene: world.Scene = SCENE, downloads=None, choice: str | None = None) -> np.ndarray:
    """The frames to edit, uint8 (F, H, W, 3): ``video`` (a path or URL, read with ``vp2p.read_video``), or when
    None the toy ``scene`` rendered at the model's frame size (Stable Diffusion can edit it too); as many frames as
    the settings ``choice`` says (``num_frames``)."""
    from vp2p.io.video import read_video

    count = num_frames(pipe, choice)
    if video is None:
        return world.render(scene, num_frames=count, size=frame_size(pipe)).frames
    path = local_file(video, downloads or runs_dir() / "downloads")
    return read_video(path, num_frames=count, size=frame_size(pipe), multiple=pipe.frame_multiple)


def work_dir(pipe, video=None, scene: world.Scene = SCENE, root=None) -> Path:
    """``runs_dir()/notebooks/<model>-<clip>`` (``root/runs/notebooks/…`` when ``root`` is given): where the notebooks
    cache tuned weights and inversions of a clip."""
    model = re.sub(r"[^A-Za-z0-9._-]", "_", Path(pipe.name).name or "model")
    if video is None:
        name = f"{scene.color}-{scene.shape}-{scene.background}-{scene.seed}"
    else:
        name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(str(video).split("?")[0]).stem)
    runs = Path(root) / "runs" if root is not None else runs_dir()
    return runs / "notebooks" / f"{model}-{name}"


def toy_only(what: str, pipe, video=None) -> str:
    """The one-line note a toy-only cell prints instead of ``what`` when the model or the clip is not the toy's."""
    reason = "your own clip" if video is not None else f"{Path(str(pipe.name)).name}, not the toy model"
    return (f"({what} is skipped here: the toy evaluator reads only toy scenes drawn by the toy model, and this is "
            f"{reason}; look at the frames above instead)")
