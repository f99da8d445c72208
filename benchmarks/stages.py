"""Time and peak memory of each Video-P2P stage (tune, invert, edit) for a model config and frame count.

    python benchmarks/stages.py --config toy                     # the bundled toy model, CPU
    python benchmarks/stages.py --config sd15 --frames 8 --size 512   # SD-1.5-shaped random weights (GPU)

``sd15`` builds random weights from the published Stable Diffusion 1.5 component configs (``vp2p.io.sd15``; no
download; the tokenizer is rebuilt from CLIP's BPE table, `pip install --no-deps open_clip_torch`). Random weights
give meaningless pictures but the real cost: same shapes, same kernels, same memory. Results are appended as JSON lines
to ``--log`` with the machine they ran on.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

class PeakMemory:
    """Peak GPU memory (CUDA) or peak resident memory of this process (CPU, sampled every 10 ms) in a block."""

    def __init__(self, device: torch.device):
        self.device, self.peak = device, 0

    @staticmethod
    def rss() -> int:
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.01)

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    return f"CPU {platform.machine()}, {torch.get_num_threads()} threads (torch {torch.__version__})"


def stage_pipeline(config: str, device: torch.device):
    import vp2p
    from vp2p.io.sd15 import random_pipeline

    if config == "toy":
        return vp2p.load_pipeline("toy", device=device)
    return random_pipeline(device, vp2p.precision.default_dtype(device))


def timed(device, row: dict, name: str, stage):
    """Run ``stage()``, record its seconds and peak memory in ``row``; return its value."""
    with PeakMemory(device) as mem:
        start = time.perf_counter()
        value = stage()
        row[f"{name}_s"] = round(time.perf_counter() - start, 2)
    row[f"{name}_peak_gb"] = round(mem.peak / 2**30, 3)
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=["toy", "sd15"], default="toy")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=None, help="pixels (toy: 64, sd15: 512)")
    parser.add_argument("--tune-steps", type=int, default=None, help="default: the model's settings")
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the model's settings)")
    parser.add_argument("--inner-steps", type=int, default=None, help="null-text iterations per step (default: the "
                        "model's settings)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--log", default="benchmarks/results.jsonl")
    args = parser.parse_args(argv)

    import vp2p
    from vp2p.workflow import settings_for

    device = torch.device(args.device) if args.device else vp2p.io.loading.default_device()
    pipe = stage_pipeline(args.config, device)
    settings = settings_for(pipe)
    settings = settings.replace(**{k: v for k, v in dict(tune_steps=args.tune_steps, num_steps=args.steps,
                                                         inner_steps=args.inner_steps).items() if v is not None})
    size = args.size or (64 if args.config == "toy" else 512)
    frames = np.random.default_rng(0).integers(0, 256, (args.frames, size, size, 3), dtype=np.uint8)
    source, target = "a red circle bouncing on the grass", "a blue circle bouncing on the grass"
    vp2p.inflate_unet(pipe.unet)
    row = {"config": args.config, "frames": args.frames, "size": size, "dtype": str(pipe.dtype),
           "tune_steps": settings.tune_steps, "ddim_steps": settings.num_steps, "inner_steps": settings.inner_steps,
           "null_text_lr": settings.null_text_lr,
           "machine": machine(device)}
    timed(device, row, "tune", lambda: vp2p.tune(pipe, frames, source, steps=settings.tune_steps, lr=settings.tune_lr,
                                                 latents=settings.tune_latents, progress=False))
    inversion = timed(device, row, "invert", lambda: vp2p.invert(
        pipe, frames, source, num_steps=settings.num_steps, inner_steps=settings.inner_steps,
        lr=settings.null_text_lr, progress=False))
    timed(device, row, "edit", lambda: vp2p.edit(pipe, inversion, [source, target], blend_words=["circle", "circle"],
                                                 progress=False))
    row["total_s"] = round(row["tune_s"] + row["invert_s"] + row["edit_s"], 2)
    print(json.dumps(row))
    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    with open(args.log, "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


if __name__ == "__main__":
    sys.exit(main() and 0)
