"""Time and peak memory of each Video-P2P stage (tune, invert, edit) for a model config and frame count.

    python benchmarks/stages.py --config toy                     # the bundled toy model, CPU
    python benchmarks/stages.py --config sd15 --frames 8 --size 512   # SD-1.5-shaped random weights (GPU)

``sd15`` builds random weights from the published Stable Diffusion 1.5 component configs (no download; the
tokenizer is rebuilt from CLIP's BPE table, `pip install --no-deps open_clip_torch`). Random weights give
meaningless pictures but the real cost: same shapes, same kernels, same memory. Results are appended as JSON lines
to ``--log`` with the machine they ran on.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

# Stable Diffusion 1.5 component configs, as published with the model (the parts that set shapes and kernels).
SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=[320, 640, 1280, 1280], cross_attention_dim=768, attention_head_dim=8,
                 down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                   "DownBlock2D"],
                 up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"])
SD15_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
                block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
                up_block_types=["UpDecoderBlock2D"] * 4, scaling_factor=0.18215)
SD15_TEXT = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                 num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
                 bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
SD15_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                      set_alpha_to_one=False, steps_offset=1, num_train_timesteps=1000)


def write_sd15_random(folder: Path) -> Path:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from vp2p.toy.tokenizer import write_clip_tokenizer

    torch.manual_seed(0)
    write_clip_tokenizer(folder / "tokenizer")
    CLIPTextModel(CLIPTextConfig(**SD15_TEXT)).save_pretrained(folder / "text_encoder")
    AutoencoderKL(**SD15_VAE).save_pretrained(folder / "vae")
    UNet2DConditionModel(**SD15_UNET).save_pretrained(folder / "unet")
    DDIMScheduler(**SD15_SCHEDULER).save_pretrained(folder / "scheduler")
    return folder


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=["toy", "sd15"], default="toy")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=None, help="pixels (toy: 64, sd15: 512)")
    parser.add_argument("--tune-steps", type=int, default=None)
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--inner-steps", type=int, default=10)
    parser.add_argument("--device", default=None)
    parser.add_argument("--log", default="benchmarks/results.jsonl")
    args = parser.parse_args(argv)

    import vp2p
    from vp2p.workflow import settings_for

    device = torch.device(args.device) if args.device else vp2p.loading.default_device()
    with tempfile.TemporaryDirectory() as tmp:
        model = "toy" if args.config == "toy" else write_sd15_random(Path(tmp))
        pipe = vp2p.load_pipeline(model, device=device)
        size = args.size or (64 if args.config == "toy" else 512)
        settings = settings_for(pipe)
        tune_steps = args.tune_steps if args.tune_steps is not None else settings.tune_steps
        rng = np.random.default_rng(0)
        frames = rng.integers(0, 256, (args.frames, size, size, 3), dtype=np.uint8)
        source, target = "a red circle bouncing on the grass", "a blue circle bouncing on the grass"
        vp2p.inflate_unet(pipe.unet)
        row = {"config": args.config, "frames": args.frames, "size": size, "dtype": str(pipe.dtype),
               "tune_steps": tune_steps, "ddim_steps": args.steps, "inner_steps": args.inner_steps,
               "machine": machine(device)}
        stages = {
            "tune": lambda: vp2p.tune(pipe, frames, source, steps=tune_steps, lr=settings.tune_lr, progress=False),
            "invert": lambda: vp2p.invert(pipe, frames, source, num_steps=args.steps, inner_steps=args.inner_steps,
                                          progress=False),
        }
        for name, stage in stages.items():
            with PeakMemory(device) as mem:
                start = time.perf_counter()
                value = stage()
                row[f"{name}_s"] = round(time.perf_counter() - start, 2)
            row[f"{name}_peak_gb"] = round(mem.peak / 2**30, 3)
            if name == "invert":
                inversion = value
        with PeakMemory(device) as mem:
            start = time.perf_counter()
            vp2p.edit(pipe, inversion, [source, target], blend_words=["circle", "circle"], progress=False)
            row["edit_s"] = round(time.perf_counter() - start, 2)
        row["edit_peak_gb"] = round(mem.peak / 2**30, 3)
        row["total_s"] = round(row["tune_s"] + row["invert_s"] + row["edit_s"], 2)
    print(json.dumps(row))
    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    with open(args.log, "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


if __name__ == "__main__":
    sys.exit(main() and 0)
