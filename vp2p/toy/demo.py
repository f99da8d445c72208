"""``vp2p demo``: the whole Video-P2P pipeline on a toy video, on the CPU, in a few minutes.

A red circle bounces on textured grass; we tune the inflated toy model on the clip, invert it with a shared
null-text embedding and swap "red" for "blue" with a LocalBlend on "circle". Written to ``--out``: the source,
the reconstruction and the edit (gif + mp4), the per-frame cross-attention maps with the blend masks
(``attention.png``) and ``metrics.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from vp2p.toy import world

SCENE = world.Scene(color="red", shape="circle", background="grass", motion="bouncing", seed=7)
TARGET = SCENE.replace(color="blue")


def run_demo(out, model: str = "toy", scene: world.Scene = SCENE, target: world.Scene = TARGET,
             progress: bool = True, overwrite: bool = False) -> dict:
    from vp2p import viz
    from vp2p.loading import load_pipeline
    from vp2p.toy.bench import judge_edit
    from vp2p.video import write_videos
    from vp2p.workflow import edit_run, prepare, settings_for

    out = Path(out)
    if (out / "metrics.json").exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a demo; pass --overwrite or another --out")
    start = time.perf_counter()
    pipe = load_pipeline(model, device="cpu")
    video = world.render(scene)
    settings = settings_for(pipe)
    run = prepare(pipe, video.frames, video.caption, settings, work_dir=out / "cache", progress=progress)
    result = edit_run(pipe, run, [video.caption, target.caption], settings, progress=progress,
                      blend_words=[scene.shape, target.shape])
    write_videos(out, {"source": video.frames, "reconstruction": run.inversion.reconstruction,
                       "edit": result.edited}, overwrite=True)
    labels = viz.token_labels(pipe.tokenizer, target.caption)
    masks = result.blend_masks[-1, 1] if result.blend_masks is not None else None
    fig = viz.attention_grid(result.maps()[1], labels, video=result.edited, masks=masks,
                             title=f"'{target.caption}': cross-attention per frame and token, and the blend mask")
    viz.save(fig, out / "attention.png")
    verdict = judge_edit(video, target, result.edited)
    metrics = {
        "source_prompt": video.caption,
        "target_prompt": target.caption,
        "reconstruction_psnr": float(np.mean(run.inversion.frame_psnr)),
        "background_psnr": verdict["background_psnr"],
        "edit_hit": bool(all(verdict["hits"][k] for k in ("color", "shape", "background"))),
        "read_from_edit": verdict["read"],
        "seconds": {**{k: round(v, 2) for k, v in run.seconds.items()},
                    "total": round(time.perf_counter() - start, 2)},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
