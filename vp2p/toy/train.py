"""Train the toy text-to-image model from scratch, seeded, and write it as a Stable-Diffusion-format folder.

    python -m vp2p.toy.train --work runs/toy --out vp2p/toy/model

Stages (each checkpointed in ``--work`` and resumed when run again):
1. ``vae``: an AutoencoderKL that downsamples by 4 (64×64 frames → 4×16×16 latents), trained on rendered frames.
   Optionally it starts from a trained VAE (``--vae-init``) and is asked to mark every object, whatever its color,
   along latent channel 0 (``--vae-object-weight``, ``object_channel_loss``) while channels 1-3 keep two colors
   apart (``--vae-color-weight``, ``color_separation_loss``) or stay the starting VAE's (``--vae-anchor-weight``,
   ``latent_anchor_loss``); ``--stage video --vae`` then teaches a model that VAE's latents.
2. ``data``: a fixed set of rendered frames encoded once to latents, with masks and captions.
3. ``unet``: the UNet and the CLIP text encoder, trained together on noise prediction. An extra loss asks each
   object word's cross-attention to fall inside the object's mask: Stable Diffusion learned localized attention
   from billions of images; our tiny model gets it from the masks the toy world knows (see README, "Toy world").
   ``finetune``: a second, shorter run from the first one's weights that splices some captions with an attribute
   with their attribute-free twin, so that the attribute's own token decides the pattern (what prompt-to-prompt
   reweighting needs; see "word mixing" below).
4. ``decoder`` (optional, off by default: ``--decoder-steps``): the VAE's decoder alone, its encoder frozen, so
   that fine patterns survive decoding (the latents, and so the UNet, are unchanged).
5. ``export``: the folder ``StableDiffusionPipeline.from_pretrained`` and ``vp2p.load_pipeline`` read.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from vp2p.inspect.fidelity import psnr_from_mse
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


DATA_SEED = 2_000_000  # first seed of the cached training frames (the VAE's frames start at 1M)
DECODER_SEED = 3_000_000  # first seed of the decoder stage's frames


def training_scene(seed: int) -> world.Scene:
    """The scene behind training frame ``seed``: a third with a pattern, some at night."""
    return world.random_scene(seed, attribute_rate=0.35, style_rate=0.15)


def render_frame(scene: world.Scene) -> world.ToyVideo:
    """The one frame of ``scene`` that training uses (the frame index varies with the seed)."""
    return world.render(scene, indices=[scene.seed % 8])


def render_frames(first_seed: int, count: int):
    """``count`` single frames of random scenes (seeds first_seed…): uint8 frames, bool masks, captions."""
    frames = np.empty((count, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    masks = np.empty((count, IMAGE_SIZE, IMAGE_SIZE), bool)
    captions = []
    for i in range(count):
        video = render_frame(training_scene(first_seed + i))
        frames[i], masks[i] = video.frames[0], video.masks[0]
        captions.append(video.caption)
    return frames, masks, captions


def frame_colors(first_seed: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For ``render_frames(first_seed, count)``: each object's color index (count,) and whether it is plain (no
    pattern, daylight: one color on the object)."""
    scenes = [training_scene(first_seed + i) for i in range(count)]
    return (torch.tensor([list(world.COLORS).index(s.color) for s in scenes]),
            torch.tensor([s.attribute is None and s.style is None for s in scenes]))


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB between two batches in [-1, 1] (``vp2p.inspect.fidelity``'s formula, on a peak of 1)."""
    return psnr_from_mse(((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).pow(2).mean().item(), peak=1.0)


# ---------------------------------------------------------------- stage 1: VAE


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def object_means(latents: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each frame's mean latent on its object and on its background (each (B, C)), weighting every latent cell by
    the share of its pixels the object covers. ``latents``: (B, C, h, w); ``masks``: object masks (B, H, W)."""
    cover = F.adaptive_avg_pool2d(masks.float()[:, None], latents.shape[-2:])  # (B, 1, h, w)
    inside = (latents * cover).sum((2, 3)) / cover.sum((2, 3)).clamp(min=1e-3)
    outside = (latents * (1 - cover)).sum((2, 3)) / (1 - cover).sum((2, 3)).clamp(min=1e-3)
    return inside, outside


def object_channel_loss(mean: torch.Tensor, masks: torch.Tensor, margin: float = 2.0) -> torch.Tensor:
    """A hinge asking latent channel 0 to be higher on the object than on the background by ``margin`` latent
    standard deviations, whatever the object's color: one direction that every hue shares for "an object here".

    Why: the first VAE's object-minus-background latents of two colors can point in opposite directions (red
    against green: cosine -0.92), so an inverted x_T that says "red here" argues against "green here", and a color
    swap moves the object (``benchmarks/latent_layout.py``). ``mean``: the posterior means (B, 4, h, w);
    ``masks``: the frames' object masks (B, H, W)."""
    inside, outside = object_means(mean[:, :1] / mean.std().detach(), masks)
    return F.relu(margin - (inside - outside)[:, 0]).mean()


def color_separation_loss(mean: torch.Tensor, masks: torch.Tensor, colors: torch.Tensor, plain: torch.Tensor,
                          margin: float = 2.0) -> torch.Tensor:
    """A hinge asking every two plain objects of different colors to lie ``margin`` latent standard deviations
    apart in channels 1-3 (their mean latent on the object): channel 0 says "an object here", the others which
    color.

    Why it was tried: ``object_channel_loss`` alone made every color's object look alike to the UNet — two colors
    lie 1.5 scaled latent units apart instead of the first VAE's 3.9 (``benchmarks/vae_contrast.py``) — and the
    model trained on it learns colors slowly. Measured since: with colors 5.1 apart the model learns them no faster
    (text-to-image color 0.62 against 0.66 after 2500 video steps) and the opposed contrasts come back
    (``benchmarks/toy_world_2.md``). ``latent_anchor_loss`` was tried next.
    ``colors``: (B,) color indices; ``plain``: (B,) bool, frames whose object has no pattern (one color) in daylight."""
    inside, _ = object_means(mean[:, 1:] / mean.std().detach(), masks)
    pairs = (colors[:, None] != colors[None]) & plain[:, None] & plain[None]
    if not pairs.any():
        return mean.new_zeros(())
    squared = ((inside[:, None] - inside[None]) ** 2).sum(-1)[pairs]
    return F.relu(margin - (squared + 1e-8).sqrt()).mean()  # the epsilon keeps the root's gradient finite


def latent_anchor_loss(mean: torch.Tensor, reference: torch.Tensor, reference_scale: float) -> torch.Tensor:
    """Mean squared difference of channels 1-3 between ``mean`` and ``reference`` (the starting VAE's posterior
    means of the same frames, ``reference_scale`` its ``scaling_factor``), both in scaled latent units (what the
    UNet sees).

    Why: a VAE whose latents change must be followed by a UNet that learns them again, and on this CPU that is
    slow (text-to-image color 0.62-0.66 after 2500 video steps on either new VAE, against 0.925 for the shipped
    model). Held to the shipped VAE's channels 1-3, a VAE that marks the object along channel 0 leaves the UNet
    only that channel to relearn: colors came back far sooner (0.86 at step 2500), but most of the color swaps'
    geometry gain went with the channels held (``benchmarks/toy_world_2.md``)."""
    return F.mse_loss(mean[:, 1:] / mean.std().detach(), reference[:, 1:] * reference_scale)


def train_vae(work: Path, steps: int, batch: int = 32, lr: float = 1e-3, seed: int = 0, log_every: int = 100,
              device=None, init: Path | None = None, object_weight: float = 0.0, color_weight: float = 0.0,
              anchor_weight: float = 0.0):
    """Train (or resume, from ``work/vae.pt``) the VAE; writes ``work/vae`` and ``work/vae_report.json``.

    ``init``: a VAE folder to start from instead of random weights (e.g. the shipped model's ``vae``);
    ``object_weight``: weight of ``object_channel_loss`` (0, the shipped recipe: none);
    ``color_weight``: weight of ``color_separation_loss`` (0: none);
    ``anchor_weight``: weight of ``latent_anchor_loss`` against ``init`` (0: none; needs ``init``).
    """
    from diffusers import AutoencoderKL

    if anchor_weight and not init:
        raise ValueError(f"anchor_weight={anchor_weight} holds the latents to a starting VAE; give one with "
                         "--vae-init (e.g. vp2p/toy/model/vae) or set the weight to 0.")
    torch.manual_seed(seed)
    work.mkdir(parents=True, exist_ok=True)
    device = torch.device(device or default_device())
    vae = (AutoencoderKL.from_pretrained(init) if init else AutoencoderKL(**vae_config())).to(device).train()
    # the starting VAE as it was (read from its folder: on a resume ``vae`` holds the checkpoint's weights)
    reference = AutoencoderKL.from_pretrained(init).to(device).eval().requires_grad_(False) if anchor_weight else None
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    ckpt = work / "vae.pt"
    start = 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False, map_location=device)
        vae.load_state_dict(state["model"]), opt.load_state_dict(state["opt"])
        start = state["step"]
        for _ in range(start):  # the learning-rate schedule of *this* run's length (it may have changed)
            sched.step()
    held_out = to_tensor(render_frames(10_000_000, 256)[0]).to(device)
    data_seed = 1_000_000 + start * batch
    bar = tqdm(range(start, steps), desc="vae", initial=start, total=steps, mininterval=10)
    for step in bar:
        frames, masks, _ = render_frames(data_seed, batch)
        colors, plain = (t.to(device) for t in frame_colors(data_seed, batch))
        x, masks = to_tensor(frames).to(device), torch.from_numpy(masks).to(device)
        data_seed += batch
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        loss = F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x) + 1e-6 * posterior.kl().mean()
        if object_weight:
            loss = loss + object_weight * object_channel_loss(posterior.mean, masks)
        if color_weight:
            loss = loss + color_weight * color_separation_loss(posterior.mean, masks, colors, plain)
        if anchor_weight:
            with torch.no_grad():
                held = reference.encode(x).latent_dist.mean
            loss = loss + anchor_weight * latent_anchor_loss(posterior.mean, held, reference.config.scaling_factor)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            bar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{vae_psnr(vae, held_out[:64]):.2f}")
            torch.save({"model": vae.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "step": step + 1}, ckpt)
    vae.eval()
    with torch.no_grad():
        latents = torch.cat([vae.encode(held_out[i:i + 64]).latent_dist.mean for i in range(0, 256, 64)])
        rec = torch.cat([vae.decode(latents[i:i + 64]).sample for i in range(0, 256, 64)])
    vae.register_to_config(scaling_factor=float(1 / latents.std()))
    report = {"vae_psnr_db": psnr(rec, held_out), "scaling_factor": vae.config.scaling_factor}
    vae.cpu().save_pretrained(work / "vae")
    (work / "vae_report.json").write_text(json.dumps(report, indent=2))
    return vae, report


def train_decoder(work: Path, vae, steps: int, batch: int = 32, lr: float = 3e-4, seed: int = 0,
                  log_every: int = 100, device=None):
    """Sharpen the VAE's decoder with its encoder frozen; returns the VAE with the tuned decoder.

    The encoder, hence every latent the UNet was trained on, stays as it is, so this stage can come last. The
    first stage's decoder smears fine patterns (a round trip turned most ground-truth dots into stripes); a longer
    run of the decoder alone, on the posterior means the UNet learns to produce, keeps more of them.
    """
    from diffusers import AutoencoderKL

    out = work / "vae_decoder"
    if (out / "config.json").exists():
        return AutoencoderKL.from_pretrained(out).eval().requires_grad_(False)
    device = torch.device(device or default_device())
    vae = copy.deepcopy(vae).to(device).train()
    vae.requires_grad_(False)
    decoder = [vae.decoder, vae.post_quant_conv]
    params = [p for m in decoder for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    # a warm-up of at least two steps: OneCycleLR divides by the warm-up's length
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=max(0.05, 2 / steps))
    ckpt, start = work / "decoder.pt", 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False, map_location=device)
        vae.load_state_dict(state["model"]), opt.load_state_dict(state["opt"])
        start = state["step"]
        for _ in range(start):
            sched.step()
    held_out = to_tensor(render_frames(10_000_000, 256)[0]).to(device)
    data_seed = DECODER_SEED + start * batch
    bar = tqdm(range(start, steps), desc="decoder", initial=start, total=steps, mininterval=10)
    for step in bar:
        x = to_tensor(render_frames(data_seed, batch)[0]).to(device)
        data_seed += batch
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mean
        recon = vae.decode(z).sample
        loss = F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            bar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{vae_psnr(vae, held_out[:64]):.2f}")
            torch.save({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step + 1}, ckpt)
    vae.eval().requires_grad_(False)
    report = {"vae_psnr_db": vae_psnr(vae, held_out), "decoder_steps": steps}
    vae.cpu().save_pretrained(out)
    (work / "vae_decoder_report.json").write_text(json.dumps(report, indent=2))
    return vae


def vae_psnr(vae, frames: torch.Tensor, chunk: int = 64) -> float:
    """PSNR (dB) of a round trip through ``vae`` (posterior mean), frames in [-1, 1]."""
    with torch.no_grad():
        rec = torch.cat([vae.decode(vae.encode(frames[i:i + chunk]).latent_dist.mean).sample
                         for i in range(0, len(frames), chunk)])
    return psnr(rec, frames)


# ---------------------------------------------------------------- stage 2: the cached data set


OBJECT_WORDS = set(world.COLORS) | set(world.ATTRIBUTES) | set(world.SHAPES)
BACKGROUND_WORDS = set(world.BACKGROUNDS)


def word_roles(caption: str) -> tuple[list[int], list[int]]:
    """Token positions of the object words and of the background word (every toy word is one token)."""
    words = caption.split()
    return ([i + 1 for i, w in enumerate(words) if w in OBJECT_WORDS],
            [i + 1 for i, w in enumerate(words) if w in BACKGROUND_WORDS])


def build_dataset(work: Path, vae, tokenizer, count: int, first_seed: int = DATA_SEED, chunk: int = 512):
    """Render ``count`` frames, encode them once, and keep latents, masks at 16 and 8 px, tokens and roles."""
    path = work / f"data_{count}.pt"
    if path.exists():
        return torch.load(path, weights_only=False)
    latents, masks16, masks8, tokens, roles = [], [], [], [], []
    for start in tqdm(range(0, count, chunk), desc="data", mininterval=10):
        n = min(chunk, count - start)
        frames, masks, captions = render_frames(first_seed + start, n)
        with torch.no_grad():
            latents.append(vae.encode(to_tensor(frames).to(vae.device)).latent_dist.mean.half().cpu())
        m = torch.from_numpy(masks).float()[:, None]
        masks16.append(F.avg_pool2d(m, 4).half())
        masks8.append(F.avg_pool2d(m, 8).half())
        tokens.append(tokenizer(captions, padding="max_length", max_length=77, return_tensors="pt").input_ids)
        roles += [word_roles(c) for c in captions]
    data = {"latents": torch.cat(latents), "masks": {16: torch.cat(masks16), 8: torch.cat(masks8)},
            "tokens": torch.cat(tokens), "roles": roles}
    torch.save(data, path)
    return data


# ---------------------------------------------------------------- stage 3: UNet + text encoder


class AttentionCapture:
    """A controller that hands attention probabilities (with their gradients) to the training losses: the
    cross-attention's at ``query_lengths`` in ``probs``, the frame attention's at ``frame_lengths`` (none unless
    set; the video stage sets it) in ``frame_probs``."""

    def __init__(self, query_lengths: set[int], frame_lengths: set[int] = frozenset()):
        self.query_lengths, self.frame_lengths = query_lengths, frame_lengths
        self.probs: list[torch.Tensor] = []
        self.frame_probs: list[torch.Tensor] = []

    def wants(self, layer, query_length):
        if layer.kind == "cross":
            return query_length in self.query_lengths
        return layer.kind == "frame" and query_length in self.frame_lengths

    def __call__(self, probs, layer, num_frames):
        (self.probs if layer.kind == "cross" else self.frame_probs).append(probs)
        return probs


def role_weights(roles, keep: torch.Tensor, tokens: int = 77) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, tokens) weights averaging over each caption's object words, and over its background word."""
    objects, backgrounds = torch.zeros(len(roles), tokens), torch.zeros(len(roles), tokens)
    for i, (obj, bg) in enumerate(roles):
        if keep[i] and obj:
            objects[i, obj] = 1 / len(obj)
        if keep[i] and bg:
            backgrounds[i, bg] = 1 / len(bg)
    return objects, backgrounds


def attention_loss(captured: list[torch.Tensor], masks: dict[int, torch.Tensor], roles, keep: torch.Tensor):
    """−log of the share of each object word's attention inside the object mask (background word: outside)."""
    device = captured[0].device if captured else None
    objects, backgrounds = (w.to(device) for w in role_weights(roles, keep))
    count = (objects.sum() + backgrounds.sum()).clamp_min(1)
    total = torch.zeros((), device=device)
    for probs in captured:
        side = int(math.isqrt(probs.shape[2]))
        mask = masks[side].flatten(1).float()  # (N, Q) coverage in [0, 1]
        spatial = probs.mean(1)  # (N, Q, T), heads averaged
        spatial = spatial / spatial.sum(1, keepdim=True).clamp_min(1e-8)  # each token's map sums to 1 over space
        inside = torch.einsum("nqt,nq->nt", spatial, mask).clamp(1e-4, 1 - 1e-4)
        total = total - (objects * inside.log()).sum() - (backgrounds * (1 - inside).log()).sum()
    return total / (count * max(len(captured), 1))


# Prompt-to-prompt reweighting scales ONE word's attention, so it only acts if that word's own token carries the
# word's meaning. A causal text encoder trained from scratch passes an adjective on to the tokens after it (measured
# on the 7000-step model: the pattern lived there, not in "striped"). The fine-tuning stage therefore splices some
# captions that have an attribute with the same caption without it, at the attribute's position:
#   keep: the attribute's token, then the plain caption's later tokens          -> the patterned frame;
#   drop: the plain caption up to the attribute, then the patterned caption's later tokens -> the plain frame;
# so whether the pattern is drawn is decided by the attribute's own token.


def attribute_positions(ids: torch.Tensor, tokenizer) -> torch.Tensor:
    """(N,) position of each caption's attribute token, −1 where it has none (toy captions have at most one)."""
    attribute_ids = torch.tensor([tokenizer.convert_tokens_to_ids(w + "</w>") for w in world.ATTRIBUTES])
    found = torch.isin(ids, attribute_ids)
    return torch.where(found.any(1), found.int().argmax(1), torch.full_like(ids[:, 0], -1))


def without_token(ids: torch.Tensor, position: int) -> torch.Tensor:
    """The token row with one token removed (the last token repeats to keep the length)."""
    return torch.cat([ids[:position], ids[position + 1:], ids[-1:]])


def splice(first: torch.Tensor, until: int, second: torch.Tensor, since: int) -> torch.Tensor:
    """Hidden states first[:until] then second[since:], padded with second's last state to first's length."""
    length = first.shape[0]
    tail = second[since:since + length - until]
    pad = length - until - tail.shape[0]
    return torch.cat([first[:until], tail, second[-1:].expand(pad, -1)])


def plan_word_mix(positions: torch.Tensor, eligible: torch.Tensor, rate: float, gen) -> torch.Tensor:
    """(N,) 0: caption as is, 1: keep-splice, 2: drop-splice; a share ``rate`` of the captions with an attribute."""
    if rate <= 0:  # draw nothing: the first stage's random stream stays that of the shipped run
        return torch.zeros_like(positions)
    mixed = eligible & (positions >= 0) & (torch.rand(positions.shape, generator=gen) < rate)
    kind = 1 + (torch.rand(positions.shape, generator=gen) < 0.5).long()
    return torch.where(mixed, kind, torch.zeros_like(kind))


def mixed_conditioning(text_encoder, ids: torch.Tensor, positions: torch.Tensor, plan: torch.Tensor) -> torch.Tensor:
    """Encode the captions and splice the planned ones with their attribute-free twins (see above)."""
    rows = plan.nonzero().flatten().tolist()
    plain = [without_token(ids[i], int(positions[i])) for i in rows]
    emb = text_encoder(torch.cat([ids, torch.stack(plain)]) if rows else ids)[0]
    out, twins = list(emb[:len(ids)]), emb[len(ids):]
    for twin, i in zip(twins, rows):
        k = int(positions[i])
        out[i] = splice(out[i], k + 1, twin, k) if plan[i] == 1 else splice(twin, k, out[i], k + 1)
    return torch.stack(out)


def plain_latents(indices: list[int], vae, first_seed: int = DATA_SEED) -> torch.Tensor:
    """Latents of training frames re-rendered without their attribute (same seed: same place, size, texture)."""
    scenes = [training_scene(first_seed + i) for i in indices]
    frames = np.stack([render_frame(s.replace(attribute=None)).frames[0] for s in scenes])
    with torch.no_grad():
        return vae.encode(to_tensor(frames).to(vae.device)).latent_dist.mean * vae.config.scaling_factor


def sample_images(unet, text_encoder, tokenizer, vae, captions, steps=25, guidance=7.5, seed=0):
    """Text-to-image with the toy model (DDIM, classifier-free guidance): uint8 (N, 64, 64, 3)."""
    with torch.no_grad():
        device = next(unet.parameters()).device
        ids = tokenizer(list(captions) + [""], padding="max_length", max_length=77, return_tensors="pt").input_ids
        emb = text_encoder(ids.to(device))[0]
    return sample_from_embeddings(unet, vae, emb[:-1], emb[-1:], steps, guidance, seed)


def sample_from_embeddings(unet, vae, conditioning, unconditional, steps=25, guidance=7.5, seed=0):
    """Text-to-image from text-encoder states (N, 77, C) and the empty prompt's (1, 77, C): uint8 (N, 64, 64, 3)."""
    from diffusers import DDIMScheduler

    from vp2p.ddim import DDIMSchedule
    from vp2p.inspect.probes import use_vp2p_processors
    from vp2p.sampling import sample

    use_vp2p_processors(unet)  # the sampling loop passes num_frames, which diffusers' own processors reject
    schedule = DDIMSchedule.from_scheduler(DDIMScheduler(**scheduler_config()), steps)
    n = len(conditioning)
    with torch.no_grad():
        device = next(unet.parameters()).device
        z = torch.randn(n, 4, 16, 16, generator=torch.Generator().manual_seed(seed)).to(device)
        z = sample(unet, z, schedule, conditioning, lambda i: unconditional.expand(n, -1, -1),
                   torch.full((n,), guidance), 1, progress=False)
        x = vae.decode(z.to(vae.device) / vae.config.scaling_factor).sample.cpu()
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def t2i_accuracy(unet, text_encoder, tokenizer, vae, count=32, seed=0, steps=25) -> dict:
    """Share of generated images whose color, shape and background the evaluator reads as the caption says."""
    from vp2p.toy.evaluator import read_frame

    scenes = [world.random_scene(90_000_000 + seed + i) for i in range(count)]
    images = sample_images(unet, text_encoder, tokenizer, vae, [s.caption for s in scenes], steps, seed=seed)
    readings = [read_frame(img) for img in images]
    return {f"t2i_{k}_acc": float(np.mean([getattr(r, k) == getattr(s, k) for r, s in zip(readings, scenes)]))
            for k in ("color", "shape", "background")}


def write_toy_tokenizer(folder: Path) -> Path:
    """The toy vocabulary's tokenizer files (vocab.json, merges.txt, config) in ``folder``; the same every time."""
    return write_tokenizer(list(world.VOCABULARY), folder)


def optimizer_step(loss, params, opt, sched, ema_pairs, ema_decay: float) -> None:
    """One update: gradients clipped to norm 1, the learning-rate schedule stepped, each (EMA, model) pair's EMA
    moved towards the model."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    with torch.no_grad():
        for ema, model in ema_pairs:
            torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - ema_decay)


def train_unet(work: Path, vae, steps: int, data_count: int, batch: int = 32, lr: float = 5e-4,
               attn_weight: float = 0.05, ema_decay: float = 0.999, seed: int = 0, eval_every: int = 2000,
               log_every: int = 100, device=None, name: str = "unet", init: Path | None = None,
               word_mix: float = 0.0):
    """Train (or resume, from ``work/<name>.pt``) the UNet and text encoder; returns the EMA models and tokenizer.

    ``init``: a checkpoint whose weights this stage starts from (the fine-tuning stage starts from ``unet.pt``).
    ``word_mix``: share of the captions with an attribute that are spliced with their plain twin (see above).
    """
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from vp2p.attention import install_processors

    tokenizer = CLIPTokenizer.from_pretrained(write_toy_tokenizer(work / "tokenizer"))
    data = build_dataset(work, vae, tokenizer, data_count)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_encoder_config(
        len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)))
    unet = UNet2DConditionModel(**unet_config())
    device = torch.device(device or default_device())
    unet.to(device), text_encoder.to(device)
    install_processors(unet)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.03)
    ema = {"unet": copy.deepcopy(unet).requires_grad_(False), "text": copy.deepcopy(text_encoder).requires_grad_(False)}
    noise_sched = DDIMScheduler(**scheduler_config())
    ckpt, start = work / f"{name}.pt", 0
    if ckpt.exists() or init is not None:
        state = torch.load(ckpt if ckpt.exists() else init, weights_only=False, map_location=device)
        unet.load_state_dict(state["unet"]), text_encoder.load_state_dict(state["text"])
        ema["unet"].load_state_dict(state["ema_unet"]), ema["text"].load_state_dict(state["ema_text"])
    if ckpt.exists():
        opt.load_state_dict(state["opt"])
        start = state["step"]
        for _ in range(start):  # the learning-rate schedule of *this* run's length (it may have changed)
            sched.step()
    empty = tokenizer([""], padding="max_length", max_length=77, return_tensors="pt").input_ids[0]
    capture = AttentionCapture({256, 64})
    gen = torch.Generator().manual_seed(seed + start)
    n = data["latents"].shape[0]
    log = open(work / f"{name}_log.jsonl", "a")
    bar = tqdm(range(start, steps), desc=name, initial=start, total=steps, mininterval=30)
    for step in bar:
        idx = torch.randint(0, n, (batch,), generator=gen)
        x = (data["latents"][idx].float() * vae.config.scaling_factor).to(device)
        keep = torch.rand(batch, generator=gen) > 0.1  # caption dropout: classifier-free guidance
        ids = torch.where(keep[:, None], data["tokens"][idx], empty)
        positions = attribute_positions(ids, tokenizer)
        plan = plan_word_mix(positions, keep, word_mix, gen)
        dropped = (plan == 2).nonzero().flatten()
        if len(dropped):  # drop-splices must show the frame without its pattern
            x[dropped] = plain_latents(idx[dropped].tolist(), vae).to(device)
        noise = torch.randn(x.shape, generator=gen).to(device)
        t = torch.randint(0, 1000, (batch,), generator=gen).to(device)
        capture.probs = []
        emb = mixed_conditioning(text_encoder, ids.to(device), positions, plan)
        pred = unet(noise_sched.add_noise(x, noise, t), t, encoder_hidden_states=emb,
                    cross_attention_kwargs={"controller": capture}).sample
        diffusion = F.mse_loss(pred, noise)
        masks = {k: v[idx].to(device) for k, v in data["masks"].items()}
        # spliced captions' token positions no longer match their words: no attention target for them
        attn = attention_loss(capture.probs, masks, [data["roles"][i] for i in idx.tolist()], keep & (plan == 0))
        optimizer_step(diffusion + attn_weight * attn, params, opt, sched,
                       [(ema["unet"], unet), (ema["text"], text_encoder)], ema_decay)
        if (step + 1) % log_every == 0:
            bar.set_postfix(diff=f"{diffusion.item():.4f}", attn=f"{attn.item():.3f}")
            log.write(json.dumps({"step": step + 1, "diffusion": diffusion.item(), "attention": attn.item()}) + "\n")
            log.flush()
        if (step + 1) % 500 == 0 or step + 1 == steps:
            torch.save({"unet": unet.state_dict(), "text": text_encoder.state_dict(),
                        "ema_unet": ema["unet"].state_dict(), "ema_text": ema["text"].state_dict(),
                        "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step + 1}, ckpt)
        if (step + 1) % eval_every == 0:
            ema["unet"].eval(), ema["text"].eval()
            acc = t2i_accuracy(ema["unet"], ema["text"], tokenizer, vae)
            log.write(json.dumps({"step": step + 1, **acc}) + "\n")
            log.flush()
    return ema["unet"], ema["text"], tokenizer


# ---------------------------------------------------------------- stage 4: export


def export(out: Path, vae, text_encoder, tokenizer, unet, overwrite: bool = False):
    """Write the Stable-Diffusion-layout folder (fp32 safetensors) that load_pipeline('toy') reads."""
    from diffusers import DDIMScheduler

    out = Path(out)
    if (out / "unet").exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a model; pass --overwrite to replace it")
    vae.save_pretrained(out / "vae")
    text_encoder.save_pretrained(out / "text_encoder")
    # The generated vocab.json/merges.txt first (what every transformers version reads), then tokenizer.json.
    write_toy_tokenizer(out / "tokenizer")
    tokenizer.save_pretrained(out / "tokenizer")
    unet.save_pretrained(out / "unet")
    DDIMScheduler(**scheduler_config()).save_pretrained(out / "scheduler")
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0",
             "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
             "scheduler": ["diffusers", "DDIMScheduler"], "safety_checker": [None, None],
             "feature_extractor": [None, None], "requires_safety_checker": False}
    (out / "model_index.json").write_text(json.dumps(index, indent=2))


def load_checkpoint(work: Path, name: str | None = None):
    """The EMA UNet, text encoder and tokenizer of a checkpoint in ``work`` (to export a model mid-training).

    ``name``: "unet", "finetune" or "video"; by default the latest stage that has one.
    """
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    name = name or next((n for n in ("video", "finetune") if (work / f"{n}.pt").exists()), "unet")
    tokenizer = CLIPTokenizer.from_pretrained(work / ("init_model/tokenizer" if name == "video" else "tokenizer"))
    state = torch.load(work / f"{name}.pt", weights_only=False, map_location="cpu")
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_encoder_config(
        len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)))
    unet = UNet2DConditionModel(**unet_config())
    text_encoder.load_state_dict(state["ema_text"]), unet.load_state_dict(state["ema_unet"])
    return unet.eval(), text_encoder.eval(), tokenizer, state["step"]


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The training script's options (``vp2p train-toy`` passes its arguments on to it, ``prog`` naming it)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="runs/toy", help="folder for checkpoints and the cached data set")
    parser.add_argument("--out", default=None, help="where to export the model folder (e.g. vp2p/toy/model)")
    parser.add_argument("--overwrite", action="store_true", help="replace a model already in --out")
    parser.add_argument("--vae-steps", type=int, default=1200)
    parser.add_argument("--vae-init", default=None,
                        help="a VAE folder the VAE stage starts from (default: random weights, as shipped)")
    parser.add_argument("--vae-lr", type=float, default=1e-3)
    parser.add_argument("--vae-object-weight", type=float, default=0.0,
                        help="weight of the loss giving every color one shared 'object here' latent channel "
                             "(train.object_channel_loss; default 0: none, as shipped)")
    parser.add_argument("--vae-color-weight", type=float, default=0.0,
                        help="weight of the loss keeping two colors' objects apart in latent channels 1-3 "
                             "(train.color_separation_loss; default 0: none, as shipped)")
    parser.add_argument("--vae-anchor-weight", type=float, default=0.0,
                        help="weight of the loss holding latent channels 1-3 to --vae-init's, so that a model "
                             "that follows the new VAE relearns only channel 0 (train.latent_anchor_loss; "
                             "default 0: none)")
    parser.add_argument("--unet-steps", type=int, default=7000)
    parser.add_argument("--finetune-steps", type=int, default=4000,
                        help="second UNet stage, with word mixing (0: skip it)")
    parser.add_argument("--finetune-lr", type=float, default=2e-4)
    parser.add_argument("--word-mix", type=float, default=0.5,
                        help="fine-tuning: share of captions with an attribute spliced with their plain twin")
    # Off by default: the shipped model was made without this stage, and the script's defaults remake it.
    parser.add_argument("--decoder-steps", type=int, default=0,
                        help="optional last stage: the VAE decoder alone, encoder frozen, e.g. 1500 (default: 0, "
                             "skipped, as for the shipped model)")
    parser.add_argument("--data", type=int, default=40000, help="number of rendered training frames")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--attn-weight", type=float, default=0.05)
    parser.add_argument("--stage", default="all", choices=["vae", "all", "video", "export"],
                        help="video: fine-tune --init on the new world with video batches (vp2p.toy.train_video); "
                             "export: write --out from the last checkpoint in --work (e.g. mid-training)")
    video = parser.add_argument_group("--stage video (see vp2p/toy/train_video.py)")
    video.add_argument("--init", default=None, help="model folder to start from (default: the shipped toy model)")
    video.add_argument("--vae", default=None,
                       help="a VAE folder that replaces --init's (e.g. --work of a --stage vae run + /vae)")
    video.add_argument("--video-steps", type=int, default=6000)
    video.add_argument("--video-scenes", type=int, default=12000, help="scenes in the data set (4 frames each)")
    video.add_argument("--video-share", type=float, default=0.5, help="share of batches that are videos")
    video.add_argument("--video-lr", type=float, default=2e-4)
    video.add_argument("--frame-attn-weight", type=float, default=0.05)
    video.add_argument("--ckpt-every", type=int, default=250)
    video.add_argument("--seed", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    return parser


def main(argv=None, prog: str | None = None):
    args = build_parser(prog).parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from diffusers import AutoencoderKL

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if args.stage == "video":
        return run_video_stage(args, work)
    if not (work / "vae" / "config.json").exists():
        _, report = train_vae(work, args.vae_steps, lr=args.vae_lr, device=args.device, init=args.vae_init,
                              object_weight=args.vae_object_weight, color_weight=args.vae_color_weight,
                              anchor_weight=args.vae_anchor_weight)
        print("vae:", report, f"{time.time() - t0:.0f}s")
    if args.stage == "vae":
        return
    vae = AutoencoderKL.from_pretrained(work / "vae").eval().requires_grad_(False)
    if args.stage == "export":
        unet, text_encoder, tokenizer, step = load_checkpoint(work)
        if (work / "init_model" / "vae").exists():  # a video stage's work folder: its VAE is the init's
            vae = AutoencoderKL.from_pretrained(work / "init_model" / "vae").eval()
        if (work / "vae_decoder" / "config.json").exists():
            vae = AutoencoderKL.from_pretrained(work / "vae_decoder").eval()
        export(Path(args.out), vae, text_encoder, tokenizer, unet, args.overwrite)
        print(f"exported the step-{step} checkpoint to {args.out}")
        return
    device = torch.device(args.device or default_device())
    unet, text_encoder, tokenizer = train_unet(work, vae.to(device), args.unet_steps, args.data, args.batch,
                                               attn_weight=args.attn_weight, device=device)
    if args.finetune_steps:
        unet, text_encoder, tokenizer = train_unet(
            work, vae, args.finetune_steps, args.data, args.batch, lr=args.finetune_lr, attn_weight=args.attn_weight,
            seed=1, device=device, name="finetune", init=work / "unet.pt", word_mix=args.word_mix)
    if args.decoder_steps:
        vae = train_decoder(work, vae.cpu(), args.decoder_steps, device=device)
    print(f"trained in {time.time() - t0:.0f}s")
    if args.out:
        export(Path(args.out), vae.cpu(), text_encoder.cpu(), tokenizer, unet.cpu(), args.overwrite)


def run_video_stage(args, work: Path) -> None:
    """``--stage video``: fine-tune, optionally touch up the decoder, export (see vp2p.toy.train_video)."""
    from vp2p.io.loading import toy_model_path
    from vp2p.toy.train_video import train_video

    if args.out and (Path(args.out) / "unet").exists() and not args.overwrite:
        raise SystemExit(f"error: {args.out} already holds a model; pass --overwrite to replace it")
    t0 = time.time()
    device = torch.device(args.device or default_device())
    unet, text_encoder, tokenizer, vae = train_video(
        work, Path(args.init or toy_model_path()), args.video_steps, args.video_scenes, args.batch, lr=args.video_lr,
        video_share=args.video_share, attn_weight=args.attn_weight, frame_attn_weight=args.frame_attn_weight,
        word_mix=args.word_mix, seed=args.seed, ckpt_every=args.ckpt_every, device=device, vae=args.vae)
    if args.decoder_steps:
        vae = train_decoder(work, vae.cpu(), args.decoder_steps, device=device)
    print(f"video stage done in {time.time() - t0:.0f}s")
    if args.out:
        export(Path(args.out), vae.cpu(), text_encoder.cpu(), tokenizer, unet.cpu(), args.overwrite)
        print(f"exported to {args.out}")


if __name__ == "__main__":
    main()
