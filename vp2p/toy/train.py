"""Train the toy text-to-image model from scratch, seeded, and write it as a Stable-Diffusion-format folder.

    python -m vp2p.toy.train --work runs/toy --out vp2p/toy/model

Stages (each checkpointed in ``--work`` and resumed when run again):
1. ``vae``: an AutoencoderKL that downsamples by 4 (64×64 frames → 4×16×16 latents), trained on rendered frames.
2. ``data``: a fixed set of rendered frames encoded once to latents, with masks and captions.
3. ``unet``: the UNet and the CLIP text encoder, trained together on noise prediction. An extra loss asks each
   object word's cross-attention to fall inside the object's mask: Stable Diffusion learned localized attention
   from billions of images; our tiny model gets it from the masks the toy world knows (see README, "Toy world").
4. ``export``: the folder ``StableDiffusionPipeline.from_pretrained`` and ``vp2p.load_pipeline`` read.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from vp2p.toy import world
from vp2p.toy.tokenizer import write_tokenizer

IMAGE_SIZE = 64


def vae_config() -> dict:
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 3,
        up_block_types=["UpDecoderBlock2D"] * 3,
        block_out_channels=[32, 64, 64],
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=IMAGE_SIZE,
    )


def text_encoder_config(vocab_size: int, bos: int, eos: int) -> dict:
    return dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=eos,
        projection_dim=64,
    )


def unet_config() -> dict:
    return dict(
        sample_size=IMAGE_SIZE // 4,
        in_channels=4,
        out_channels=4,
        down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        block_out_channels=[64, 96, 128],
        layers_per_block=1,
        cross_attention_dim=64,
        attention_head_dim=4,  # diffusers' name for the number of heads in UNet2DConditionModel
        norm_num_groups=32,
    )


def scheduler_config() -> dict:
    # Stable Diffusion's noise schedule, so the same DDIM code serves both models.
    return dict(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )


# ---------------------------------------------------------------- data


def render_frames(first_seed: int, count: int, attribute_rate=0.35, style_rate=0.15):
    """``count`` single frames of random scenes (seeds first_seed…): uint8 frames, bool masks, captions."""
    frames = np.empty((count, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    masks = np.empty((count, IMAGE_SIZE, IMAGE_SIZE), bool)
    captions = []
    for i in range(count):
        seed = first_seed + i
        scene = world.random_scene(seed, attribute_rate, style_rate)
        video = world.render(scene, indices=[seed % 8])
        frames[i], masks[i] = video.frames[0], video.masks[0]
        captions.append(video.caption)
    return frames, masks, captions


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB between two batches in [-1, 1]."""
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).pow(2).mean().item()
    return 10 * math.log10(1 / max(mse, 1e-12))


# ---------------------------------------------------------------- stage 1: VAE


def train_vae(work: Path, steps: int, batch: int = 32, lr: float = 1e-3, seed: int = 0, log_every: int = 100):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(**vae_config())
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    ckpt = work / "vae.pt"
    start = 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        vae.load_state_dict(state["model"]), opt.load_state_dict(state["opt"]), sched.load_state_dict(state["sched"])
        start = state["step"]
    held_out = to_tensor(render_frames(10_000_000, 256)[0])
    data_seed = 1_000_000 + start * batch
    bar = tqdm(range(start, steps), desc="vae", initial=start, total=steps, mininterval=10)
    for step in bar:
        x = to_tensor(render_frames(data_seed, batch)[0])
        data_seed += batch
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        loss = F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x) + 1e-6 * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            with torch.no_grad():
                rec = vae.decode(vae.encode(held_out[:64]).latent_dist.mean).sample
            bar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{psnr(rec, held_out[:64]):.2f}")
            torch.save({"model": vae.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "step": step + 1}, ckpt)
    vae.eval()
    with torch.no_grad():
        latents = torch.cat([vae.encode(held_out[i:i + 64]).latent_dist.mean for i in range(0, 256, 64)])
        rec = torch.cat([vae.decode(latents[i:i + 64]).sample for i in range(0, 256, 64)])
    vae.register_to_config(scaling_factor=float(1 / latents.std()))
    report = {"vae_psnr_db": psnr(rec, held_out), "scaling_factor": vae.config.scaling_factor}
    vae.save_pretrained(work / "vae")
    (work / "vae_report.json").write_text(json.dumps(report, indent=2))
    return vae, report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="runs/toy", help="folder for checkpoints and the cached data set")
    parser.add_argument("--stage", default="all", choices=["vae", "all"])
    parser.add_argument("--vae-steps", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if not (work / "vae" / "config.json").exists():
        _, report = train_vae(work, args.vae_steps)
        print("vae:", report, f"{time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
