"""How a local edit reaches the background: LocalBlend keeps the source's *latents* outside its mask, yet the
decoded background can change, because the VAE decoder mixes the whole frame — its GroupNorms normalise with the
statistics of every pixel, and its middle block's self-attention lets every pixel see every other.

``decoder_leak`` measures it on an edit made with LocalBlend, against the edit's own source branch (so the
inversion's error is left out): is every latent outside the mask the source's; is the decoded background changed
as much far from the mask as near it (a local convolution would fade with distance, a frame-wide statistic does
not); and does clamping the target's latents inside the mask to the source's range give the background back.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from vp2p import layout
from vp2p.inspect.fidelity import psnr_from_mse


def decoder_leak(pipe, edit, branch: int = 1, near_px: int = 4, far_px: int = 12) -> dict:
    """Numbers on how target ``branch`` of ``edit`` (a ``vp2p.editing.EditResult`` with LocalBlend) differs from
    the source branch outside the final blend mask, in pixels 0–255:

    * ``latent_outside``: the largest |target − source| latent outside the mask (0: LocalBlend kept them all);
    * ``latent_range``: the target's largest |latent| inside the mask over the source's largest anywhere;
    * ``near`` / ``far``: the mean absolute pixel difference within ``near_px`` of the mask / beyond ``far_px``;
    * ``psnr`` / ``psnr_clamped``: the background's PSNR (dB) against the source branch, as decoded and after the
      target's latents inside the mask are clamped, per frame and channel, to the source's range.
    """
    masks = edit.blend_masks
    if masks is None:
        raise ValueError("the edit has no blend masks: decoder_leak needs an edit made with blend_words (LocalBlend)")
    num_frames = edit.videos.shape[1]
    latents = layout.frames_view(edit.latents.float(), num_frames)  # (branches, F, C, h, w)
    source, target = latents[0], latents[branch]
    inside = masks[-1, branch].bool().cpu()  # (F, h, w) at latent resolution
    if inside.all():
        raise ValueError("the final blend mask covers every frame entirely: there is no background to measure")
    gap = (target - source).abs().amax(dim=1)  # (F, h, w)
    scale = edit.videos.shape[2] // inside.shape[-1]
    inside_px = inside.repeat_interleave(scale, 1).repeat_interleave(scale, 2).numpy()
    distance = np.stack([ndimage.distance_transform_edt(~frame) for frame in inside_px])  # pixels to the mask
    background = distance > 0
    source_video = edit.videos[0].astype(np.float64)
    difference = np.abs(edit.videos[branch].astype(np.float64) - source_video).mean(axis=-1)  # (F, H, W)
    low = source.amin(dim=(-2, -1), keepdim=True)
    high = source.amax(dim=(-2, -1), keepdim=True)
    clamped = torch.where(inside[:, None], torch.minimum(torch.maximum(target, low), high), target)

    def background_psnr(video: np.ndarray) -> float:
        return psnr_from_mse(float(((video.astype(np.float64) - source_video) ** 2)[background].mean()))

    return {"latent_outside": float(gap[~inside].max()),
            "latent_range": float(target.abs().amax(dim=1)[inside].max() / source.abs().max())
            if inside.any() else 0.0,
            "near": float(difference[background & (distance <= near_px)].mean()),
            "far": float(difference[distance > far_px].mean()) if (distance > far_px).any() else float("nan"),
            "psnr": background_psnr(edit.videos[branch]),
            "psnr_clamped": background_psnr(pipe.decode_latents(clamped))}
