"""Why does a color swap move the object? Plain DDIM from the inverted x_T, and the VAE's latent contrast.

    python benchmarks/latent_layout.py          # writes benchmarks/latent_layout.json (~4 min on 2 cores)

``swap_layout.py`` showed that no attention-control setting keeps a swapped object in place. This asks what the
x_T itself holds, with no Prompt-to-Prompt at all:

* ``plain_ddim``: each frame of the bench's first ``--clips`` held-out clips is DDIM-inverted under its caption
  (the conditional model, as the inversion does) and sampled back from that x_T with the same caption, the color
  swap's and the shape swap's (guidance 1 and 7.5, the empty-prompt null): drift and |size error| against the
  target scene as the world renders it (``toy.bench.judge_edit``). If x_T held *where the object is*, the
  swapped captions would land where the same caption does.
* ``latent_contrast``: for each of the bench's clips, the object-minus-background latent (the 4 channels averaged
  inside the object and outside it, on that clip's own frames) with the source color and with the color swap's
  target; their cosine, beside the bench's color-swap drift (``toy_bench.json``, which must be of the same
  model). A cosine below 0 means the latent that says "source color here" says "not the target color here".
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

GUIDANCE = (1.0, 7.5)
HERE = Path(__file__).parent


def plain_ddim_rows(pipe, index: int, steps: int) -> dict:
    """Drift and |size error| of plain DDIM from clip ``index``'s inverted x_T under each caption and guidance."""
    import torch

    from vp2p.ddim import DDIMSchedule
    from vp2p.inversion import ddim_invert
    from vp2p.sampling import sample
    from vp2p.toy.bench import edit_targets, held_out_clip, judge_edit

    video = held_out_clip(index)
    targets = {"same": video.scene, **{k: v for k, v in edit_targets(video.scene, index).items() if k != "refine"}}
    schedule = DDIMSchedule.from_scheduler(pipe.scheduler, steps)
    null = pipe.encode_text("")
    x_t = ddim_invert(pipe.unet, pipe.encode_video(video.frames), pipe.encode_text(video.caption), schedule, 1,
                      progress=False)[-1]
    row = {"caption": video.caption}
    for name, target in targets.items():
        cond = pipe.encode_text(target.caption)
        for w in GUIDANCE:
            z0 = sample(pipe.unet, x_t.clone(), schedule, cond, lambda step: null, torch.full((len(x_t),), w), 1,
                        progress=False)
            geometry = judge_edit(video, target, pipe.decode_latents(z0))["geometry"]
            row[f"{name}@{w:g}"] = {"target": target.caption, "drift_px": geometry["mean_drift_px"],
                                    "abs_size_error": geometry["mean_abs_size_error"],
                                    "frames_without_object": geometry["frames_without_object"]}
    return row


def object_contrast(encode, scene) -> np.ndarray:
    """The mean latent inside the object minus the mean latent of the background (4,), over ``scene``'s frames.

    ``encode``: uint8 frames (F, H, W, 3) → latents (F, C, h, w), e.g. a pipeline's ``encode_video``."""
    import torch
    import torch.nn.functional as F

    from vp2p.toy import world

    video = world.render(scene)
    latents = encode(video.frames).transpose(0, 1)  # (C, F, h, w)
    factor = video.frames.shape[1] // latents.shape[-1]
    cover = F.avg_pool2d(torch.from_numpy(video.masks).float()[:, None], factor)[:, 0]
    inside, outside = cover > 0.75, cover < 0.05  # latent cells firmly on the object / on the background
    return (latents[:, inside].mean(1) - latents[:, outside].mean(1)).numpy()


def contrast_rows(pipe, bench: dict) -> list[dict]:
    from vp2p.toy.bench import edit_targets, held_out_clip

    rows = []
    for index, video in enumerate(bench["videos"]):
        scene = held_out_clip(index).scene
        target = edit_targets(scene, index)["color"]
        a, b = object_contrast(pipe.encode_video, scene), object_contrast(pipe.encode_video, target)
        rows.append({"source": scene.color, "target": target.color, "background": scene.background,
                     "cosine": float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))),
                     "swap_color_drift_px": video["swap_color_geometry"]["mean_drift_px"]})
    return rows


def summary(plain: list[dict], contrast: list[dict]) -> dict:
    from scipy.stats import spearmanr

    keys = [k for k in plain[0] if "@" in k]
    out = {"plain_ddim": {k: {m: round(float(np.mean([r[k][m] for r in plain if r[k][m] is not None])), 3)
                              for m in ("drift_px", "abs_size_error")} for k in keys}}
    cosine = np.array([r["cosine"] for r in contrast])
    drift = np.array([r["swap_color_drift_px"] for r in contrast])
    rho = spearmanr(cosine, drift)
    out["latent_contrast"] = {
        "spearman_cosine_vs_drift": round(float(rho.statistic), 3), "p_value": round(float(rho.pvalue), 4),
        "opposed": group(drift[cosine < 0]), "aligned": group(drift[cosine >= 0])}
    return out


def group(drift: np.ndarray) -> dict:
    """How many clips, and their mean drift (None for no clips: a VAE may have no opposed color pair)."""
    return {"clips": len(drift), "mean_drift_px": round(float(drift.mean()), 2) if len(drift) else None}


def main(argv=None) -> None:
    import torch
    from diffusers.utils import logging as hub_logging

    from vp2p.io.loading import load_pipeline
    from vp2p.toy.bench import machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toy", help="the toy model (default: the shipped one)")
    parser.add_argument("--bench", type=Path, default=HERE / "toy_bench.json",
                        help="that model's toy_bench.json (for the color swaps' drift)")
    parser.add_argument("--clips", type=int, default=6, help="clips for plain DDIM (the bench's first N)")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps (the toy settings' 25)")
    parser.add_argument("--out", type=Path, default=HERE / "latent_layout.json")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    args = parser.parse_args(argv)
    bench = json.loads(args.bench.read_text())
    if bench["model"] != args.model:
        raise SystemExit(f"error: {args.bench} is a bench of model {bench['model']!r}, not {args.model!r}; "
                         "give that model's toy_bench.json with --bench")
    torch.set_num_threads(args.threads)
    hub_logging.set_verbosity_error()  # the plain UNet ignores sample()'s num_frames: not a warning per step
    start = time.time()
    pipe = load_pipeline(args.model, device="cpu")
    plain = [plain_ddim_rows(pipe, i, args.steps) for i in range(args.clips)]
    contrast = contrast_rows(pipe, bench)
    result = {"model": args.model, "machine": machine(), "minutes": round((time.time() - start) / 60, 1),
              "summary": summary(plain, contrast), "plain_ddim": plain, "latent_contrast": contrast}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
