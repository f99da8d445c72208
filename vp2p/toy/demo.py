"""``vp2p demo``: the whole Video-P2P pipeline on a toy video, on the CPU, in a few minutes.

A red circle bounces on textured grass; we tune the inflated toy model on the clip, invert it with a shared
null-text embedding and swap "red" for "blue" with a LocalBlend on "circle". Written to ``--out``: the source,
the reconstruction and the edit (gif + mp4), the per-frame cross-attention maps with the blend masks
(``attention.png``) and ``metrics.json``, with the tuning and the inversion cached in ``--out``/cache. Every one of
these paths is checked before the first stage: an existing file is replaced only with ``overwrite`` or when it
is an earlier demo's (its ``metrics.json`` says so: the README's one-liner can be run twice), and a ``cache/``
holding anything vp2p did not write is refused.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from vp2p.checks import check_outputs
from vp2p.toy import world
from vp2p.toy.settings import check_toy_world_model

SCENE = world.Scene(color="red", shape="circle", background="grass", motion="bouncing", seed=7)
TARGET = SCENE.replace(color="blue")
VIDEOS = ("source", "reconstruction", "edit")
FILES = ("attention.png", "metrics.json")


def output_files() -> list[str]:
    from vp2p.io.video import video_targets

    return [path.name for paths in video_targets(".", VIDEOS).values() for path in paths] + list(FILES)


MARK = {"written_by": "vp2p demo"}  # in metrics.json: the folder holds an earlier demo's results


def earlier_demo(out) -> bool:
    """Whether ``out`` holds the results of an earlier demo (its metrics.json says so): running the demo again
    replaces them — its own files only; whatever else is in the folder stays as it is."""
    try:
        return json.loads((Path(out).expanduser() / "metrics.json").read_text()).get("written_by") == MARK["written_by"]
    except (OSError, ValueError, AttributeError):
        return False


def run_demo(out, model: str = "toy", scene: world.Scene = SCENE, target: world.Scene = TARGET,
             progress: bool = True, overwrite: bool = False, device="cpu") -> dict:
    """The demo with ``model`` (a model of the toy world: the bundled one or a retrained one) on ``device``."""
    from vp2p.inspect import viz
    from vp2p.io.loading import load_pipeline
    from vp2p.toy.bench import judge_edit
    from vp2p.io.storage import write_json
    from vp2p.io.video import write_videos
    from vp2p.workflow import edit_run, prepare, settings_for

    check_toy_world_model(model, "vp2p demo")
    overwrite = overwrite or earlier_demo(out)
    out = check_outputs(out, output_files(), overwrite=overwrite)
    start = time.perf_counter()
    pipe = load_pipeline(model, device=device)
    video = world.render(scene)
    settings = settings_for(pipe)
    run = prepare(pipe, video.frames, video.caption, settings, work_dir=out / "cache", progress=progress)
    result = edit_run(pipe, run, [video.caption, target.caption], settings, progress=progress,
                      blend_words=[scene.shape, target.shape])
    write_videos(out, dict(zip(VIDEOS, (video.frames, run.inversion.reconstruction, result.edited))),
                 overwrite=overwrite)
    labels = viz.token_labels(pipe.tokenizer, target.caption)
    masks = result.blend_masks[-1, 1] if result.blend_masks is not None else None
    fig = viz.attention_grid(result.maps()[1], labels, video=result.edited, masks=masks,
                             title=f"'{target.caption}': cross-attention per frame and token, and the blend mask")
    viz.save(fig, out / "attention.png", overwrite=overwrite)
    verdict = judge_edit(video, target, result.edited)
    metrics = {
        **MARK,
        "source_prompt": video.caption,
        "target_prompt": target.caption,
        "reconstruction_psnr": float(np.mean(run.inversion.frame_psnr)),
        "background_psnr": verdict["background_psnr"],
        "edit_hit": bool(all(verdict["hits"][k] for k in ("color", "shape", "background"))),
        "read_from_edit": verdict["read"],
        # where the edited circle is against the source's: a right color in the wrong place is not a clean edit
        "object_geometry": {k: v for k, v in verdict["geometry"].items() if k != "per_frame"},
        "seconds": {**{k: round(v, 2) for k, v in run.seconds.items()},
                    "total": round(time.perf_counter() - start, 2)},
    }
    write_json(out / "metrics.json", metrics)
    return metrics
