"""What the numbered notebooks share: where they write, the clip they edit, and the settings they run with.

Notebooks 02–06 tune and invert the same clip with the same settings, so a notebook run after another finds the
tuned weights and the inversion in the work folder (``runs/notebooks/<model>-<clip>``) and goes straight to its
own topic; run alone, it computes what is missing (``vp2p.workflow`` does the caching).
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import numpy as np

from vp2p.toy import world
from vp2p.workflow import Settings, settings_for

# The clip of the course: a red circle bouncing on textured grass (the same scene as `vp2p demo`).
SCENE = world.Scene(color="red", shape="circle", background="grass", motion="bouncing", seed=7)
NUM_FRAMES = 8
# DDIM steps on the toy model. The paper (and `settings_for`) use 50; with 25 the null-text inversion of 8 frames
# takes about a minute on one CPU core, which keeps every notebook under three minutes on a laptop.
TOY_STEPS = 25


def project_dir(cwd=None) -> Path:
    """The folder figures/ and runs/ go in: the repository root when run from its notebooks/ folder (Jupyter starts
    kernels there), else the current folder (Colab: /content)."""
    here = Path.cwd() if cwd is None else Path(cwd)
    if here.name == "notebooks" and (here.parent / "vp2p").is_dir():
        return here.parent
    return here


def settings(pipe) -> Settings:
    """The settings every notebook uses: the model's defaults, with fewer DDIM steps on the toy model."""
    base = settings_for(pipe)
    return base.replace(num_steps=TOY_STEPS) if pipe.name == "toy" else base


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


def clip(pipe, video=None, scene: world.Scene = SCENE, downloads=None) -> np.ndarray:
    """The frames to edit, uint8 (F, H, W, 3): ``video`` (a path or URL, read with ``vp2p.read_video``), or when
    None the toy ``scene`` rendered at the model's frame size (Stable Diffusion can edit it too)."""
    from vp2p.video import read_video

    if video is None:
        return world.render(scene, num_frames=NUM_FRAMES, size=frame_size(pipe)).frames
    path = local_file(video, downloads or project_dir() / "runs" / "downloads")
    return read_video(path, num_frames=NUM_FRAMES, size=frame_size(pipe))


def work_dir(pipe, video=None, scene: world.Scene = SCENE, root=None) -> Path:
    """``runs/notebooks/<model>-<clip>``: where the notebooks cache tuned weights and inversions of a clip."""
    model = re.sub(r"[^A-Za-z0-9._-]", "_", Path(pipe.name).name or "model")
    if video is None:
        name = f"{scene.color}-{scene.shape}-{scene.background}-{scene.seed}"
    else:
        name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(str(video).split("?")[0]).stem)
    return Path(root or project_dir()) / "runs" / "notebooks" / f"{model}-{name}"
