"""Where does a swapped object go, and is it the settings? Word swaps on held-out toy clips, measured against the
target scene as the world renders it (``toy.bench.judge_edit``'s geometry), across the cross-attention window,
beside two floors.

    python benchmarks/swap_layout.py            # writes benchmarks/swap_layout.json (6 clips, ~7 min on 2 cores)

Per clip (the bench's held-out seeds and swap targets, ``vp2p.toy.bench``), with the toy settings:

* ``reconstruction``: the inversion's own drift (the source branch; null-text);
* ``same_prompt``: the edit path with the source caption as the target — decoupled guidance's target branch
  alone (the initial null embedding), every control on: what the edit adds before any word changes;
* ``color`` / ``shape`` swaps with LocalBlend at each ``cross_replace_steps`` value (one batch per swap,
  ``workflow.edit_sweep``): hit, drift (px), |size error|, frames without an object, background PSNR.

If a longer window kept the object in place, the drift would be the settings' doing; issue 17's question.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

WINDOWS = (0.2, 0.6, 1.0)
GEOMETRY = ("mean_drift_px", "mean_abs_size_error", "frames_without_object")


def swap_scores(video, target, kind: str, result) -> dict:
    from vp2p.toy.bench import judge_edit

    verdict = judge_edit(video, target, result.edited)
    return {"hit": bool(verdict["hits"][kind]), "background_psnr": verdict["background_psnr"],
            **{k: verdict["geometry"][k] for k in GEOMETRY}}


def clip_rows(index: int) -> dict:
    from vp2p.io.loading import load_pipeline
    from vp2p.toy.bench import edit_targets, held_out_clip, judge_edit
    from vp2p.workflow import edit_run, edit_sweep, prepare, settings_for

    video = held_out_clip(index)
    scene, targets = video.scene, edit_targets(video.scene, index)
    pipe = load_pipeline("toy", device="cpu")
    settings = settings_for(pipe)
    run = prepare(pipe, video.frames, video.caption, settings, progress=False)
    recon = judge_edit(video, scene, run.inversion.reconstruction)["geometry"]
    same = edit_run(pipe, run, [video.caption, video.caption], settings, progress=False,
                    blend_words=[scene.shape, scene.shape])
    row = {"caption": video.caption,
           "reconstruction": {k: recon[k] for k in GEOMETRY},
           "same_prompt": {k: judge_edit(video, scene, same.edited)["geometry"][k] for k in GEOMETRY}}
    for kind in ("color", "shape"):
        target = targets[kind]
        sweep = edit_sweep(pipe, run, [video.caption, target.caption], settings, "cross_replace_steps", WINDOWS,
                           progress=False, blend_words=[scene.shape, target.shape])
        row[kind] = {str(w): swap_scores(video, target, kind, r) for w, r in zip(WINDOWS, sweep)}
    return row


def summary(rows: list[dict]) -> dict:
    def mean(values):
        values = [v for v in values if v is not None]
        return round(float(np.mean(values)), 3) if values else None

    out = {floor: {k: mean([r[floor][k] for r in rows]) for k in ("mean_drift_px", "mean_abs_size_error")}
           for floor in ("reconstruction", "same_prompt")}
    for kind in ("color", "shape"):
        out[kind] = {str(w): {"hit": mean([r[kind][str(w)]["hit"] for r in rows]),
                              "drift_px": mean([r[kind][str(w)]["mean_drift_px"] for r in rows]),
                              "abs_size_error": mean([r[kind][str(w)]["mean_abs_size_error"] for r in rows]),
                              "frames_without_object": int(sum(r[kind][str(w)]["frames_without_object"]
                                                               for r in rows)),
                              "background_psnr": mean([r[kind][str(w)]["background_psnr"] for r in rows])}
                     for w in WINDOWS}
    return out


def main(argv=None) -> None:
    import torch

    from vp2p.toy.bench import machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=6, help="held-out clips (the bench's first N)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "swap_layout.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    start = time.time()
    rows = [clip_rows(i) for i in range(args.clips)]
    result = {"machine": machine(), "minutes": round((time.time() - start) / 60, 1), "windows": list(WINDOWS),
              "summary": summary(rows), "clips": rows}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
