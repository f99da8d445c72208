"""Stable Diffusion 1.5's shapes with random weights: the real cost of the SD path without downloading anything.

The component configs below are the parts of the published SD-1.5 configs that set shapes and kernels (4-level
UNet with cross-attention at 64, 32 and 16 for 64×64 latents, 8 heads, 768-wide CLIP text encoder, 77 tokens,
the 4-level VAE that downsamples by 8, DDIM with the scaled-linear schedule). Random weights draw meaningless
pictures but cost exactly what the real model costs (same shapes, same kernels, same memory), which is what the
stage benchmark (``benchmarks/stages.py --config sd15``) and the SD-path test measure. The tokenizer is SD's own,
rebuilt offline from CLIP's BPE table (``pip install --no-deps open_clip_torch`` ships it).
"""

from __future__ import annotations

from pathlib import Path

import torch

UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=[320, 640, 1280, 1280], cross_attention_dim=768, attention_head_dim=8,
            down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                              "DownBlock2D"],
            up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"])
VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
           block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
           up_block_types=["UpDecoderBlock2D"] * 4, scaling_factor=0.18215)
TEXT_ENCODER = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                    num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
                    bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                 set_alpha_to_one=False, steps_offset=1, num_train_timesteps=1000)


def write_random(folder: Path, seed: int = 0) -> Path:
    """A diffusers SD-1.5 folder with random weights (4.3 GB in float32), loadable by ``vp2p.load_pipeline``."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from vp2p.toy.tokenizer import write_clip_tokenizer

    folder = Path(folder)
    torch.manual_seed(seed)
    write_clip_tokenizer(folder / "tokenizer")
    CLIPTextModel(CLIPTextConfig(**TEXT_ENCODER)).save_pretrained(folder / "text_encoder")
    AutoencoderKL(**VAE).save_pretrained(folder / "vae")
    UNet2DConditionModel(**UNET).save_pretrained(folder / "unet")
    DDIMScheduler(**SCHEDULER).save_pretrained(folder / "scheduler")
    return folder


def random_pipeline(device="cpu", dtype=torch.float32, seed: int = 0):
    """A ``vp2p.Pipeline`` of SD-1.5-shaped components with random weights, built in memory (nothing written but
    the tokenizer's two small files, in a temporary folder). The scheduler is already the official one (no clipping,
    ᾱ_final = ᾱ_0, steps_offset 1)."""
    import tempfile

    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from vp2p.io.loading import Pipeline
    from vp2p.toy.tokenizer import write_clip_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(Path(tmp) / "tokenizer"))
    torch.manual_seed(seed)
    modules = {"vae": AutoencoderKL(**VAE), "text_encoder": CLIPTextModel(CLIPTextConfig(**TEXT_ENCODER)),
               "unet": UNet2DConditionModel(**UNET)}
    for module in modules.values():
        module.to(device, dtype).eval().requires_grad_(False)
    return Pipeline(**modules, tokenizer=tokenizer, scheduler=DDIMScheduler(**SCHEDULER), device=torch.device(device),
                    dtype=dtype, name="sd15-random")
