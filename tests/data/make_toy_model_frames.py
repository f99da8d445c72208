"""Regenerate ``toy_model_frames.npz``: frames the shipped toy model made, for ``tests/test_toy_evaluator_on_model.py``.

    cd <repo> && PYTHONPATH=$PWD python tests/data/make_toy_model_frames.py [--preview DIR] [--work DIR]

17 frames in this order (the ``index`` of toy_model_frames.json), all seeded (CPU, float32, about 3 minutes on 2
cores, mostly the two edits' tuning):

* 0-7 text-to-image: ``vp2p.inspect.probes.generate(pipe, prompt, num_frames=1, seed=s, num_steps=25)`` with
  the image (not inflated) UNet, for the prompts and seeds in ``T2I``;
* 8 the same with 2 DDIM steps (``BLURRY``: a blurry, half-formed object), 9 with an empty prompt (``EMPTY``);
* 10-13 word-swap edits of toy clips: ``vp2p.workflow.prepare`` + ``edit_run`` with the toy settings, the frames
  in ``EDIT_FRAMES`` of each edit in ``EDITS`` (source scene -> target words, LocalBlend on the shape words);
* 14-15 frames of a video sampled by the inflated untuned model (``INFLATED``);
* 16 one DDIM step (``BROKEN``): no object, only smears.

The labels in ``toy_model_frames.json`` are NOT produced here: they were written by hand from enlarged PNGs of
each frame (``--preview DIR`` writes them, 8x, with a grid every 8 px), and only the frames are regenerated.
If the model or the sampler changes, regenerate, look at every frame again and relabel.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
T2I = [  # (prompt, seed), 25 DDIM steps, guidance 7.5
    ("a red circle bouncing on the grass", 0),
    ("a blue square sliding on the sand", 1),
    ("a yellow star floating on the water", 2),
    ("a green triangle circling in the sky", 3),
    ("a white striped circle bouncing on the sand", 4),
    ("a purple dotted square sliding on the grass", 5),
    ("an orange circle floating on the water at night", 6),
    ("a pink star bouncing on the grass", 7),
]
BLURRY = [("a red square sliding on the sand", 8, 2)]  # (prompt, seed, DDIM steps)
BROKEN = [("a red circle bouncing on the grass", 15, 1)]  # one DDIM step: no object at all (generated last)
EMPTY = [("", 9)]
INFLATED = ("a blue triangle bouncing on the grass", 10, (0, 7))  # prompt, seed, frames kept
EDITS = [  # (source scene arguments, target changes)
    (dict(color="red", shape="circle", background="grass", motion="bouncing", seed=7), dict(color="blue")),
    (dict(color="yellow", shape="square", background="sand", motion="sliding", seed=11), dict(shape="circle")),
]
EDIT_FRAMES = (0, 5)


def generate_frames(work_dir=None) -> tuple[np.ndarray, list[dict]]:
    """The frames and how each was made; ``work_dir`` caches the edits' tuning and inversion."""
    from vp2p.inflation import inflate_unet
    from vp2p.inspect.probes import generate
    from vp2p.io.loading import load_pipeline
    from vp2p.toy import world
    from vp2p.workflow import edit_run, prepare, settings_for

    torch.manual_seed(0)
    pipe = load_pipeline("toy", device="cpu", dtype=torch.float32)
    frames, sources = [], []
    for prompt, seed in T2I:
        frames.append(generate(pipe, prompt, num_frames=1, seed=seed, num_steps=25)[0])
        sources.append({"kind": "t2i", "prompt": prompt, "seed": seed, "steps": 25})
    for prompt, seed, steps in BLURRY:
        frames.append(generate(pipe, prompt, num_frames=1, seed=seed, num_steps=steps)[0])
        sources.append({"kind": "t2i", "prompt": prompt, "seed": seed, "steps": steps})
    for prompt, seed in EMPTY:
        frames.append(generate(pipe, prompt, num_frames=1, seed=seed, num_steps=25)[0])
        sources.append({"kind": "t2i", "prompt": prompt, "seed": seed, "steps": 25})
    for source, change in EDITS:
        scene = world.Scene(**source)
        target = scene.replace(**change)
        video = world.render(scene)
        pipe = load_pipeline("toy", device="cpu", dtype=torch.float32)
        settings = settings_for(pipe)
        run = prepare(pipe, video.frames, video.caption, settings, work_dir=work_dir, progress=False)
        result = edit_run(pipe, run, [video.caption, target.caption], settings, progress=False,
                          blend_words=[scene.shape, target.shape])
        for f in EDIT_FRAMES:
            frames.append(result.edited[f])
            sources.append({"kind": "edit", "source": video.caption, "target": target.caption, "frame": f})
    prompt, seed, keep = INFLATED
    pipe = load_pipeline("toy", device="cpu", dtype=torch.float32)
    inflate_unet(pipe.unet)
    video = generate(pipe, prompt, num_frames=8, seed=seed, num_steps=25)
    for f in keep:
        frames.append(video[f])
        sources.append({"kind": "inflated", "prompt": prompt, "seed": seed, "steps": 25, "frame": f})
    pipe = load_pipeline("toy", device="cpu", dtype=torch.float32)
    for prompt, seed, steps in BROKEN:
        frames.append(generate(pipe, prompt, num_frames=1, seed=seed, num_steps=steps)[0])
        sources.append({"kind": "t2i", "prompt": prompt, "seed": seed, "steps": steps})
    return np.stack(frames), sources


def preview(frames: np.ndarray, folder: Path, scale: int = 8) -> None:
    """Each frame enlarged ``scale``×, nearest neighbour, with a grid line every 8 px (pixel index 8, 16, ...)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        big = np.repeat(np.repeat(frame, scale, 0), scale, 1).copy()
        big[::8 * scale, :] = (0, 0, 0)
        big[:, ::8 * scale] = (0, 0, 0)
        Image.fromarray(big).save(folder / f"frame_{i:02d}.png")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preview", type=Path, help="also write each frame enlarged 8x (to label by eye)")
    parser.add_argument("--work", type=Path, help="cache the edits' tuning and inversion here")
    args = parser.parse_args()
    frames, sources = generate_frames(args.work)
    np.savez_compressed(HERE / "toy_model_frames.npz", frames=frames)
    print(json.dumps(sources, indent=1))  # the "made_by" of each frame in toy_model_frames.json
    if args.preview:
        preview(frames, args.preview)
    print(f"{len(frames)} frames {frames.shape[1:]} written to {HERE}")


if __name__ == "__main__":
    main()
