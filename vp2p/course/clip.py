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

import numpy as np

from vp2p.io.storage import atomic_path
from vp2p.toy import world
from vp2p.workflow import Settings, settings_for

# The clip of the course: a red circle bouncing on textured grass (the same scene as `vp2p demo`).
SCENE = world.Scene(color="red", shape="circle", background="grass", motion="bouncing", seed=7)
NUM_FRAMES = 8


OUTPUT_VARIABLE, FIGURES_VARIABLE = "VP2P_COURSE_OUTPUT", "VP2P_COURSE_FIGURES"


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


def settings(pipe) -> Settings:
    """The settings every notebook uses: the model's defaults (``vp2p.toy.settings.TOY_SETTINGS`` on the toy model: 25 DDIM
    steps, 2 null-text steps of 8e-2, 50 tuning steps; the official ones otherwise)."""
    return settings_for(pipe)


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


def clip(pipe, video=None, scene: world.Scene = SCENE, downloads=None) -> np.ndarray:
    """The frames to edit, uint8 (F, H, W, 3): ``video`` (a path or URL, read with ``vp2p.read_video``), or when
    None the toy ``scene`` rendered at the model's frame size (Stable Diffusion can edit it too)."""
    from vp2p.io.video import read_video

    if video is None:
        return world.render(scene, num_frames=NUM_FRAMES, size=frame_size(pipe)).frames
    path = local_file(video, downloads or runs_dir() / "downloads")
    return read_video(path, num_frames=NUM_FRAMES, size=frame_size(pipe), multiple=pipe.frame_multiple)


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
