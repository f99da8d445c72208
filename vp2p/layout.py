"""Frames in the batch: how videos, branches and the guidance halves share the rows of one UNet batch.

The one place every module that splits or merges those rows reads it from (attention processors, controllers, the
recorder, the probes, the sampling loop):

* a video of F frames is F consecutive rows: row = video·F + frame (``frames_view``);
* an edit runs B branches (0: the source prompt, 1…: targets), branch-major: B·F rows;
* a guided call stacks two halves, [unconditional branches…; conditional branches…]: 2·B·F rows
  (``split_rows``; prompt-to-prompt reads and edits the conditional half only, ``conditional``).

Every helper returns a view: an edit written into it changes the batch.
"""

from __future__ import annotations

import torch


def frames_view(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(videos·F, …) rows as (videos, F, …)."""
    if x.shape[0] % num_frames:
        raise ValueError(f"a batch of {x.shape[0]} rows does not hold whole videos of {num_frames} frames")
    return x.view(x.shape[0] // num_frames, num_frames, *x.shape[1:])


def merge_frames(x: torch.Tensor) -> torch.Tensor:
    """(videos, F, …) back to rows (videos·F, …) (a copy when ``x`` is an expanded view)."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def split_rows(x: torch.Tensor, num_branches: int, guided: bool) -> torch.Tensor:
    """(rows, …) as (halves, branches, rows per branch, …): halves is 2 for a guided call ([unconditional;
    conditional]), else 1; rows per branch are the frames (or, for temporal attention, the spatial positions)."""
    halves = 2 if guided else 1
    rows = x.shape[0]
    if rows % (halves * num_branches):
        raise ValueError(f"attention batch of {rows} rows does not split into {halves}x{num_branches} branches; "
                         "reset the controller for this run")
    return x.view(halves, num_branches, rows // (halves * num_branches), *x.shape[1:])


def guided(x: torch.Tensor) -> torch.Tensor:
    """The rows of a guided call: ``x`` twice, as [unconditional; conditional]."""
    return torch.cat([x, x])


def halves(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A guided call's output split into its (unconditional, conditional) halves."""
    uncond, cond = x.chunk(2)
    return uncond, cond


def conditional(x: torch.Tensor, num_branches: int, guided: bool) -> torch.Tensor:
    """The conditional half as (branches, rows per branch, …) (the only half of an unguided call)."""
    return split_rows(x, num_branches, guided)[-1]


def rows_for(values: torch.Tensor, rows: int) -> torch.Tensor:
    """Per-branch values (B, …) as per-row values (rows, …), each repeated for its branch's rows; per-row values
    (rows, …) are returned as they are."""
    if values.shape[0] == rows:
        return values
    if rows % values.shape[0]:
        raise ValueError(f"{values.shape[0]} embeddings do not divide a batch of {rows} frames")
    return values.repeat_interleave(rows // values.shape[0], dim=0)
