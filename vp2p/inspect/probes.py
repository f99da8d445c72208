"""Looking inside the (inflated) model: sample a video from noise, watch where frame attention looks, count what
tuning trains, and measure how much the frames of a video agree.

These are the measuring instruments of notebooks 01 and 02; none of them is needed to edit a video.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from vp2p import layout
from vp2p.attention import (Layer, attention_layers, blend_resolution, cross_attention_heights, install_processors,
                            map_size_where)
from vp2p.ddim import DDIMSchedule
from vp2p.inflation import TRAINABLE_PATTERNS, is_inflated
from vp2p.sampling import sample, unet_output


def use_vp2p_processors(unet) -> None:
    """Give a UNet just loaded (diffusers' processors) vp2p's processors, which take ``num_frames``/``controller``."""
    if not attention_layers(unet):
        install_processors(unet, inflated=is_inflated(unet))


@torch.no_grad()
def generate(pipe, prompt: str, num_frames: int = 8, seed: int = 0, num_steps: int = 25,
             guidance_scale: float = 7.5, unet=None, controller=None, progress: bool = False) -> np.ndarray:
    """A video sampled from noise (uint8 (F, H, W, 3)) with ``unet`` (default ``pipe.unet``), guided DDIM.

    The noise depends only on ``seed`` and the shapes, so two models given the same seed start from the same z_T:
    an image (2-D) UNet then draws every frame independently, an inflated one draws them together.
    """
    return generate_branches(pipe, [prompt], num_frames, seed, num_steps, guidance_scale, unet, controller,
                             progress)[0]


@torch.no_grad()
def generate_branches(pipe, prompts: Sequence[str], num_frames: int = 1, seed: int = 0, num_steps: int = 25,
                      guidance_scale: float = 7.5, unet=None, controller=None, progress: bool = False) -> np.ndarray:
    """One video per prompt (uint8 (branches, F, H, W, 3)), all sampled together from the same noise z_T.

    This is prompt-to-prompt on generated images (no input video, so no inversion): with a ``controller`` from
    ``vp2p.make_controller(pipe, prompts, num_steps, ...)`` the later branches take branch 0's attention maps.
    The controller is started here; every branch's unconditional embedding is the empty prompt's.
    """
    if isinstance(prompts, str) or not prompts:
        raise ValueError(f"prompts={prompts!r}: give a list of prompts, one per branch, e.g. [source, target]")
    unet = pipe.unet if unet is None else unet
    use_vp2p_processors(unet)
    size, branches = unet.config.sample_size, len(prompts)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(num_frames, unet.config.in_channels, size, size, generator=generator)
    embeddings = pipe.encode_text(list(prompts) + [""])
    cond, empty = embeddings[:branches], embeddings[branches:]
    schedule = DDIMSchedule.from_scheduler(pipe.scheduler, num_steps)
    if controller is not None:  # stores and edits need the run's geometry
        controller.start((size, size), branches, guided=True, num_steps=num_steps,
                         default_resolution=blend_resolution(size, cross_attention_heights(unet, size)))
    latents = sample(unet, noise.repeat(branches, 1, 1, 1).to(pipe.device), schedule, cond,
                     lambda step: empty, torch.full((branches,), guidance_scale),
                     num_frames, controller, progress=progress and "generating")
    return np.stack([pipe.decode_latents(v) for v in latents.view(branches, num_frames, *latents.shape[1:])])


def frame_spread(video: np.ndarray) -> float:
    """How much the frames disagree: the std across frames of every pixel value, averaged (0 = all frames equal)."""
    return float(np.asarray(video, dtype=np.float64).std(axis=0).mean())


def mask_centers(masks: np.ndarray) -> list[tuple[float, float]]:
    """Per frame, the (row, column) centre of a bool mask (F, H, W) as fractions of the frame size."""
    masks = np.asarray(masks, dtype=bool)
    centers = []
    for mask in masks:
        rows, cols = np.nonzero(mask) if mask.any() else np.nonzero(np.ones_like(mask))
        centers.append(((rows.mean() + 0.5) / mask.shape[0], (cols.mean() + 0.5) / mask.shape[1]))
    return centers


def attention_inside(maps, mask: np.ndarray) -> np.ndarray:
    """Per map (F, h, w), the share of its attention that falls inside ``mask`` (H, W; e.g. the object in frame
    0), the mask averaged down to the map's size."""
    maps = torch.as_tensor(maps).float()
    area = torch.nn.functional.adaptive_avg_pool2d(torch.as_tensor(mask).float()[None, None], maps.shape[-2:])[0, 0]
    return ((maps * area).sum(dim=(1, 2)) / maps.sum(dim=(1, 2)).clamp_min(1e-12)).numpy()


class FrameAttentionProbe:
    """A controller that records where frame *i*'s query at a chosen position looks in frame 0.

    Frame attention takes its keys from frame 0, so for every frame the probabilities of one query row form a map
    over frame 0. ``points``: one (row, column) fraction for all frames or one per frame; ``height``: which
    resolution of the UNet to watch (maps are averaged over its frame-attention layers and heads).
    """

    def __init__(self, points, height: int, width: int | None = None):
        self.points = [points] if isinstance(points[0], (int, float)) else list(points)
        self.height, self.width = height, width or height
        self.sum: torch.Tensor | None = None  # (F, height, width): summed maps
        self.count = 0

    def wants(self, layer: Layer, query_length: int) -> bool:
        return layer.kind == "frame" and query_length == self.height * self.width

    def __call__(self, probs: torch.Tensor, layer: Layer, num_frames: int) -> torch.Tensor:
        h, w = self.height, self.width
        points = self.points * num_frames if len(self.points) == 1 else self.points
        if len(points) != num_frames:
            raise ValueError(f"{len(self.points)} query points for {num_frames} frames: give one, or one per frame")
        index = [min(int(r * h), h - 1) * w + min(int(c * w), w - 1) for r, c in points]
        # the batch's last video: the conditional one of a guided call (vp2p.layout), the last target's in an edit
        video = layout.frames_view(probs, num_frames)[-1]
        picked = video[torch.arange(num_frames), :, index, : h * w]  # (F, heads, keys); frame 0's keys come first
        maps = picked.float().mean(1).reshape(num_frames, h, w).cpu()
        self.sum = maps if self.sum is None else self.sum + maps
        self.count += 1
        return probs

    def maps(self) -> torch.Tensor:
        """(F, height, width): where each frame's query looks in frame 0 (each map sums to 1)."""
        if self.sum is None:
            raise ValueError(f"nothing recorded: the UNet has no frame attention at height {self.height} (is it "
                             "inflated?) or the probe was not passed as the controller")
        return self.sum / self.count


def frame_attention_heights(unet, latent_height: int) -> list[int]:
    """Heights of the maps of the frame attentions of an inflated UNet, largest first."""
    return sorted(cross_attention_heights(unet, latent_height, places=("down", "mid", "up")), reverse=True)


@torch.no_grad()
def frame_attention(pipe, frames: np.ndarray, prompt: str, points, height: int | None = None,
                    timestep: int = 400, seed: int = 0) -> torch.Tensor:
    """Run the inflated UNet once on ``frames`` noised to ``timestep`` and return ``FrameAttentionProbe.maps()``.

    ``height`` defaults to the largest frame-attention resolution with at most 32×32 positions (16 on the toy
    model, 32 on Stable Diffusion).
    """
    if not is_inflated(pipe.unet):
        raise ValueError("frame attention exists only in an inflated UNet: call vp2p.inflate_unet(pipe.unet) first")
    latents = pipe.encode_video(frames)
    if height is None:
        height = next(h for h in frame_attention_heights(pipe.unet, latents.shape[-2]) if h <= 32)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(latents.shape, generator=generator).to(latents)
    noisy = pipe.scheduler.add_noise(latents, noise, torch.tensor([timestep]))
    probe = FrameAttentionProbe(points, *map_size_where(tuple(latents.shape[-2:]), height=height))
    unet_output(pipe.unet, noisy, timestep, pipe.encode_text(prompt), frames.shape[0], controller=probe)
    return probe.maps()


@torch.no_grad()
def inflation_gap(image_unet, video_unet, pipe, prompt: str, num_frames: int = 8, timestep: int = 500,
                  seed: int = 0) -> float:
    """Max |difference| between the image UNet on one noisy frame and the inflated UNet on a video of
    ``num_frames`` copies of it. Zero-initialised temporal attention (and frame attention to an identical frame 0)
    make this zero up to float rounding."""
    use_vp2p_processors(image_unet)
    size = image_unet.config.sample_size
    generator = torch.Generator().manual_seed(seed)
    frame = torch.randn(1, image_unet.config.in_channels, size, size, generator=generator).to(pipe.device)
    cond = pipe.encode_text(prompt)
    image = unet_output(image_unet, frame, timestep, cond, 1)
    video = unet_output(video_unet, frame.expand(num_frames, -1, -1, -1), timestep, cond, num_frames)
    return float((video - image).abs().max())


def parameter_groups(unet, patterns: Sequence[str] = TRAINABLE_PATTERNS) -> dict[str, int]:
    """Parameter counts of the UNet by group: each trained pattern (module names containing it), then 'frozen'."""
    counts = {pattern: 0 for pattern in patterns}
    counts["frozen"] = 0
    for name, p in unet.named_parameters():
        group = next((pattern for pattern in patterns if pattern in name), "frozen")
        counts[group] += p.numel()
    return counts
