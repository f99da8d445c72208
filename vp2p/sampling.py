"""Calling the (inflated) UNet on videos, and the guided DDIM sampling loop every stage shares.

Frames are folded into the batch (``vp2p.layout``): ``latents`` are (rows, C, h, w) with rows = branches·F.
Embeddings are given per branch (B, tokens, dim) or per row (B·F, tokens, dim); ``layout.rows_for`` expands the
former.
"""

from __future__ import annotations

from typing import Callable

import torch
from tqdm.auto import tqdm

from vp2p.ddim import DDIMSchedule, predicted_x0
from vp2p import layout, seams
from vp2p.layout import rows_for


def unet_output(unet, latents, t: int, embeddings, num_frames: int, controller=None) -> torch.Tensor:
    """The UNet's prediction (float32) for ``latents`` at timestep ``t``, frames in the batch."""
    dtype = next(unet.parameters()).dtype
    out = unet(
        latents.to(dtype),
        t,
        encoder_hidden_states=rows_for(embeddings, latents.shape[0]).to(dtype),
        cross_attention_kwargs={"num_frames": num_frames, "controller": controller},
    ).sample
    return out.float()


@torch.no_grad()
def sample(
    unet,
    latents: torch.Tensor,
    schedule: DDIMSchedule,
    cond: torch.Tensor,
    uncond_at: Callable[[int], torch.Tensor],
    guidance: torch.Tensor,
    num_frames: int,
    controller=None,
    progress: bool | str = True,
    trajectory: list | None = None,
) -> torch.Tensor:
    """Guided DDIM from ``latents`` (= z_T) to z_0.

    ``cond`` per branch or row; ``uncond_at(step)`` the unconditional embeddings of that step (per branch or row);
    ``guidance`` (branches,) one guidance scale per branch. With a ``controller`` the UNet runs as one batch of
    [unconditional; conditional] rows and the controller is stepped (begin_step, end_step, step_callback); a
    controller with ``keeps_clean`` true also gets each step's predicted clean latents x̂_0 (``keep_clean``).
    ``trajectory``, if a list, receives z_t after every step (on the CPU).
    """
    rows = latents.shape[0]
    if guidance.shape[0] * num_frames != rows:
        raise ValueError(f"{guidance.shape[0]} guidance scales for {rows} rows of {num_frames} frames: give one "
                         "scale per branch")
    w = rows_for(guidance.float().view(-1, 1, 1, 1), rows).to(latents.device)
    cond_rows = rows_for(cond, rows)
    latents = latents.float()
    desc = progress if isinstance(progress, str) else "sampling"
    for step, t in enumerate(tqdm(schedule.timesteps, desc=desc, disable=not progress, leave=False)):
        if controller is not None:
            controller.begin_step(step)
        embeddings = torch.cat([rows_for(uncond_at(step), rows), cond_rows])
        out = unet_output(unet, layout.guided(latents), t, embeddings, num_frames, controller)
        uncond_out, cond_out = layout.halves(out)
        noise = seams.step("guide")(uncond_out, cond_out, w)
        if controller is not None and getattr(controller, "keeps_clean", False):  # a debugger's x̂_0 view
            controller.keep_clean(predicted_x0(noise, t, latents, schedule))
        latents = seams.step("ddim_step")(noise, t, latents, schedule)
        if controller is not None:
            controller.end_step()
            latents = controller.step_callback(latents)
        if trajectory is not None:
            trajectory.append(latents.cpu())
    return latents
