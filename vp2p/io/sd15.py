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


# The same architecture scaled down until a CPU runs whole notebooks on it in seconds (the tests'
# ``VP2P_MODEL`` folder): every block type, level, layer count, head count, token count and downsampling factor of
# SD-1.5, with narrow channels and a 2-layer text encoder; 16×16 latents, i.e. 128² frames.
TINY_CHANNELS = dict(unet=[32, 64, 64, 64], vae=[32, 32, 64, 64], text_width=64, text_layers=2)


def configs(tiny: bool = False) -> dict:
    """The component configs: SD-1.5's published ones, or (``tiny``) the same architecture scaled down."""
    if not tiny:
        return {"unet": UNET, "vae": VAE, "text_encoder": TEXT_ENCODER}
    width = TINY_CHANNELS["text_width"]
    return {"unet": {**UNET, "sample_size": 16, "block_out_channels": TINY_CHANNELS["unet"],
                     "cross_attention_dim": width},
            "vae": {**VAE, "sample_size": 128, "block_out_channels": TINY_CHANNELS["vae"]},
            "text_encoder": {**TEXT_ENCODER, "hidden_size": width, "intermediate_size": 4 * width,
                             "num_hidden_layers": TINY_CHANNELS["text_layers"], "num_attention_heads": 4,
                             "projection_dim": width}}


def components(tiny: bool = False, seed: int = 0) -> dict:
    """Random-weight VAE, text encoder and UNet (float32, CPU), from ``configs(tiny)``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    config = configs(tiny)
    torch.manual_seed(seed)
    return {"vae": AutoencoderKL(**config["vae"]),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**config["text_encoder"])),
            "unet": UNet2DConditionModel(**config["unet"])}


def write_random(folder: Path, seed: int = 0, tiny: bool = False) -> Path:
    """A diffusers SD-1.5 folder with random weights, loadable by ``vp2p.load_pipeline`` (4.3 GB in float32; the
    ``tiny`` architecture: 16 MB)."""
    from diffusers import DDIMScheduler

    from vp2p.toy.tokenizer import write_clip_tokenizer

    folder = Path(folder)
    write_clip_tokenizer(folder / "tokenizer")
    for name, module in components(tiny, seed).items():
        module.save_pretrained(folder / name)
    DDIMScheduler(**SCHEDULER).save_pretrained(folder / "scheduler")
    return folder


def random_pipeline(device="cpu", dtype=torch.float32, seed: int = 0, tiny: bool = False):
    """A ``vp2p.Pipeline`` of SD-1.5-shaped components with random weights, built in memory (nothing written but
    the tokenizer's two small files, in a temporary folder). The scheduler is already the official one (no clipping,
    ᾱ_final = ᾱ_0, steps_offset 1)."""
    modules = components(tiny, seed)
    for module in modules.values():
        module.to(device, dtype)
    return assemble(modules, device, dtype, "sd15-tiny-random" if tiny else "sd15-random")


def assemble(modules: dict, device, dtype, name: str):
    """A frozen ``vp2p.Pipeline`` of ``modules`` (already on ``device`` in ``dtype``), SD's tokenizer and the
    official DDIM scheduler."""
    import tempfile

    from diffusers import DDIMScheduler
    from transformers import CLIPTokenizer

    from vp2p.io.loading import Pipeline
    from vp2p.toy.tokenizer import write_clip_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(Path(tmp) / "tokenizer"))
    for module in modules.values():
        module.eval().requires_grad_(False)
    return Pipeline(**modules, tokenizer=tokenizer, scheduler=DDIMScheduler(**SCHEDULER), device=torch.device(device),
                    dtype=dtype, name=name)
