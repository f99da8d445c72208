"""Tiny seeded Stable-Diffusion-shaped components built in code, saved as a diffusers folder (no network)."""

from __future__ import annotations

from pathlib import Path

import torch

TINY_SIZE = 32  # pixels; the tiny VAE downsamples by 2 -> 16x16 latents, the UNet has cross-attention at 16 and 8


def tiny_unet(seed: int = 0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
        attention_head_dim=2, norm_num_groups=8,
    )
    # Random init leaves some output projections at zero (diffusers zero-inits conv_out): perturb everything a
    # little so that every path, the attention ones included, influences the output in tests.
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return unet


def smooth_latents(n: int, size: int = 16, generator=None) -> torch.Tensor:
    """Random latents that vary smoothly in space: the tiny denoiser's training data."""
    coarse = torch.randn(n, 4, 4, 4, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


def train_denoiser(unet, scheduler, steps: int, seed: int = 0):
    """A few steps of noise-prediction training on smooth latents: enough for the tiny UNet to behave like a
    denoiser (DDIM inversion is ill-conditioned for a purely random network, whose prediction ignores x_t)."""
    generator = torch.Generator().manual_seed(seed)
    context = torch.randn(1, 77, 32, generator=generator)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=2e-3)
    for _ in range(steps):
        x = smooth_latents(8, generator=generator)
        noise = torch.randn(x.shape, generator=generator)
        t = torch.randint(0, 1000, (8,), generator=generator)
        target = scheduler.get_velocity(x, noise, t) if scheduler.config.prediction_type == "v_prediction" else noise
        pred = unet(scheduler.add_noise(x, noise, t), t, encoder_hidden_states=context.expand(8, -1, -1)).sample
        loss = (pred - target).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return unet.eval()


def write_tiny_model(folder: Path, prediction_type: str = "epsilon", seed: int = 0, denoiser_steps: int = 100) -> Path:
    """A complete tiny SD folder: vae/, text_encoder/, tokenizer/, unet/, scheduler/ and model_index.json."""
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from vp2p.toy.tokenizer import write_tokenizer
    from vp2p.toy.world import VOCABULARY

    folder = Path(folder)
    write_tokenizer(list(VOCABULARY) + ["cat", "dog", "man", "spider"], folder / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                        norm_num_groups=4, sample_size=TINY_SIZE)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type)
    text_encoder.save_pretrained(folder / "text_encoder")
    vae.save_pretrained(folder / "vae")
    train_denoiser(tiny_unet(seed), scheduler, denoiser_steps, seed).save_pretrained(folder / "unet")
    scheduler.save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(
        '{"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0", '
        '"vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"], '
        '"tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"], '
        '"scheduler": ["diffusers", "DDIMScheduler"], "safety_checker": [null, null], '
        '"feature_extractor": [null, null], "requires_safety_checker": false}'
    )
    return folder


def smooth_video(num_frames: int = 4, size: int = TINY_SIZE, seed: int = 0):
    """A smooth moving-blob video, uint8 (F, size, size, 3)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([0.5 + 0.3 * np.sin(6 * x + c) * np.cos(4 * y - c) for c in rng.uniform(0, 3, 3)], -1)
    frames = []
    for f in range(num_frames):
        cx, cy = 0.3 + 0.1 * f / max(num_frames - 1, 1), 0.5
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.02)[..., None] * np.array([0.5, -0.3, -0.3])
        frames.append(np.clip(255 * (base + blob), 0, 255).astype(np.uint8))
    return np.stack(frames)


def inflated_pipeline(model_dir):
    """The tiny pipeline on the CPU in fp32 with its UNet inflated (frame + temporal attention)."""
    import vp2p

    pipe = vp2p.load_pipeline(model_dir, device="cpu", dtype=torch.float32)
    vp2p.inflate_unet(pipe.unet)
    return pipe
