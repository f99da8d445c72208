"""Notebook 07's exercise: the masked PSNR."""

from __future__ import annotations

import numpy as np
import torch

from vp2p.course.exercises.common import (
    Case,
    ExerciseFailed,
    first_match,
    same,
    student_output,
)

# -- 07 · the paper's metrics: masked PSNR ---------------------------------------------------------------------------


def edited_video(rng, frames: int, size: tuple[int, int], boxes, noise) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random uint8 video (frames, H, W, 3), an "edit" of it, and the object masks (frames, H, W).

    ``boxes``: per frame (y0, y1, x0, x1), None (no object) or "all" (the object fills the frame). Inside the mask
    the edit paints new pixels; outside it adds noise of the frame's level (``noise``; 0 leaves the background
    exactly as it was), in both directions, so that some edited pixels are darker and some brighter."""
    h, w = size
    source = rng.integers(0, 256, (frames, h, w, 3)).astype(np.uint8)
    masks = np.zeros((frames, h, w), dtype=bool)
    for f, box in enumerate(boxes):
        if box == "all":
            masks[f] = True
        elif box is not None:
            y0, y1, x0, x1 = box
            masks[f, y0:y1, x0:x1] = True
    levels = np.asarray(noise, dtype=np.float64)[:, None, None, None]
    edited = np.clip(np.rint(source + levels * rng.standard_normal(source.shape)), 0, 255).astype(np.uint8)
    painted = rng.integers(0, 256, source.shape).astype(np.uint8)
    return source, np.where(masks[..., None], painted, edited), masks


def as_number(value) -> torch.Tensor | None:
    """A student's answer as a 0-d float64 tensor when it is one number (a float, a numpy scalar, a one-number
    array or tensor); None otherwise."""
    if isinstance(value, torch.Tensor):
        value = value.detach().double().cpu().numpy()
    if isinstance(value, (np.ndarray, np.generic)) and value.size == 1 and value.dtype.kind in "fiu":
        value = value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=torch.float64)
    return None


def check_masked_psnr(student) -> int:
    from vp2p.paper.metrics import masked_psnr
    from vp2p.toy.evaluator import PSNR_CAP

    rng = np.random.default_rng(9)
    cases = [  # one frame first (the formula), then several (pooling, dilation), then the edge cases
        Case("1 frame of 6×7 pixels, a 2×2 object, dilation 0",
             (*edited_video(rng, 1, (6, 7), [(2, 4, 2, 4)], [8]), 0)),
        Case("3 frames of 8×10 pixels, objects of 3 sizes, backgrounds edited with noise 3, 12 and 30, dilation 1",
             (*edited_video(rng, 3, (8, 10), [(3, 5, 4, 6), (1, 6, 2, 8), (4, 5, 7, 8)], [3, 12, 30]), 1)),
        Case("2 frames of 6×6 pixels, empty masks (no object: every pixel counts), dilation 0",
             (*edited_video(rng, 2, (6, 6), [None, None], [5, 20]), 0)),
        Case("3 frames of 9×11 pixels, frame 1 entirely masked (the object fills it), dilation 2",
             (*edited_video(rng, 3, (9, 11), [(3, 5, 4, 6), "all", (2, 4, 6, 9)], [4, 50, 16]), 2)),
        Case("2 frames of 6×8 pixels, only the objects edited (identical backgrounds), dilation 1",
             (*edited_video(rng, 2, (6, 8), [(2, 4, 2, 4), (3, 5, 4, 7)], [0, 0]), 1)),
    ]
    for case in cases:
        video_a, video_b, masks, dilation = case.args
        expected = torch.tensor(masked_psnr(video_a, video_b, masks, dilate=dilation), dtype=torch.float64)
        try:
            answer = student_output(student, case)
        except ExerciseFailed as failure:
            if isinstance(failure.__cause__, ZeroDivisionError) and float(expected) == PSNR_CAP:
                raise ExerciseFailed(f"{case.label}: your function divided by zero — the backgrounds are identical "
                                     f"(MSE 0): return PSNR_CAP ({PSNR_CAP:g} dB) then") from failure.__cause__
            raise
        got = as_number(answer)
        if got is None:
            raise ExerciseFailed(f"{case.label}: returned {type(answer).__name__} {answer!r:.60}; return the PSNR in "
                                 "dB as one number (a float)")
        if not same(got, expected, atol=1e-4, rtol=1e-6):
            hint = diagnose_masked_psnr(got, expected, case) or (
                f"{float(got):.4f} dB, expected {float(expected):.4f} dB")
            raise ExerciseFailed(f"{case.label}: {hint}")
    label = "2 frames of 5×5 pixels, masks covering every pixel (no background left to compare)"
    try:
        answer = student(*edited_video(rng, 2, (5, 5), ["all", "all"], [5, 5]), 0)
    except ValueError:
        return len(cases) + 1
    except Exception as error:
        raise ExerciseFailed(f"{label}: your function raised {type(error).__name__}: {error} — raise ValueError "
                             "when no pixel is left outside the masks (vp2p.paper.metrics.masked_psnr does)") from error
    raise ExerciseFailed(f"{label}: returned {answer!r:.60}; with no pixel left outside the masks there is no "
                         "background to measure: raise ValueError (the mean of no squared errors is nan, not a PSNR)")


def diagnose_masked_psnr(got, expected, case):
    from vp2p.toy.evaluator import PSNR_CAP, dilate

    video_a, video_b, masks, dilation = case.args
    a, b = video_a.astype(np.float64), video_b.astype(np.float64)
    keep = ~dilate(masks, dilation)
    pool = ("pool the squared errors of every kept pixel of every frame into ONE mean, then take one PSNR "
            "(vp2p.paper.metrics.masked_psnr does): a frame with little background then weighs as little as it holds, "
            "and a frame the object fills adds nothing")
    frame_without_background = not keep.reshape(len(keep), -1).any(1).all()
    if not torch.isfinite(got):
        if float(got) == float("inf") and float(expected) == PSNR_CAP:
            return (f"infinite: the backgrounds are identical (MSE 0); return PSNR_CAP ({PSNR_CAP:g} dB) instead, "
                    "and never more than it")
        if frame_without_background:
            return f"nan: a frame has no pixel outside its (grown) mask, so it has no PSNR of its own — {pool}"
        return "the result is nan or infinite (a mean over no pixels? a division by zero?)"
    if float(got) == PSNR_CAP and float(expected) < PSNR_CAP and frame_without_background:
        return (f"{PSNR_CAP:g} dB, as if nothing had changed: a frame has no pixel outside its (grown) mask, so it "
                f"has no PSNR of its own — its MSE is nan, and min(PSNR_CAP, nan) is PSNR_CAP — {pool}")
    if float(got) > PSNR_CAP + 1e-4:
        return f"{float(got):.4g} dB: cap the PSNR at PSNR_CAP ({PSNR_CAP:g} dB), the value of identical backgrounds"

    def db(mse, peak_squared=255.0**2):  # vp2p's PSNR of an MSE: capped, PSNR_CAP for MSE 0
        mse = float(mse)
        if not np.isfinite(mse):
            raise ValueError("no pixel to average")
        return torch.tensor(PSNR_CAP if mse <= 0 else min(PSNR_CAP, 10 * np.log10(peak_squared / mse)),
                            dtype=torch.float64)

    def mse(kept, diff=a - b):
        if not kept.any():
            raise ValueError("no pixel kept")
        return float(np.mean(diff[kept] ** 2))

    def only(condition, value):
        if not condition:
            raise ValueError("a mistake this case cannot show")
        return value()

    frames = [f for f in range(len(keep)) if keep[f].any()]
    inside = ("PSNR inside the masks: masked PSNR asks whether the edit left the REST of the video alone — keep the "
              "pixels outside the grown masks (~dilate(masks, dilation))")
    return first_match(got, [
        (inside, lambda: db(mse(dilate(masks, dilation)))),
        (inside, lambda: db(mse(masks))),
        ("the masks were ignored: the whole frames were compared; keep only the pixels outside the grown masks",
         lambda: db(mse(np.ones_like(masks)))),
        ("the masks were not grown: dilate(masks, dilation) first, so that the mixed pixels at the object's edge "
         "(which an edit redraws with the object) are left out too",
         lambda: only(dilation > 0, lambda: db(mse(~masks)))),
        ("the masks were grown although dilation is 0: grow them by exactly `dilation` px (dilate(masks, 0) is the "
         "masks themselves)", lambda: only(dilation == 0, lambda: db(mse(~dilate(masks, 1))))),
        ("the masks were grown although dilation is 0: grow them by exactly `dilation` px (dilate(masks, 0) is the "
         "masks themselves)", lambda: only(dilation == 0, lambda: db(mse(~dilate(masks, 2))))),
        ("the masks were grown by a square (a max-pool?); grow them by a disk, as dilate(masks, dilation) does",
         lambda: only(dilation > 1, lambda: db(mse(~dilate(masks, dilation, disk=False))))),
        (f"the mean of per-frame PSNRs: {pool}",
         lambda: torch.stack([db(mse(keep[f], (a - b)[f])) for f in frames]).mean()),
        (f"the mean of per-frame MSEs: {pool}",
         lambda: db(np.mean([mse(keep[f], (a - b)[f]) for f in frames]))),
        ("uint8 differences wrap around (3 − 5 = 254): convert the videos to float (.astype(np.float64)) before "
         "subtracting", lambda: db(mse(keep, (video_a - video_b).astype(np.float64)))),
        ("uint8 differences wrap around (3 − 5 = 254): convert the videos to float (.astype(np.float64)) before "
         "subtracting", lambda: db(np.mean(((video_a - video_b) ** 2)[keep]))),
        ("the masked pixels counted as zero errors: divide the kept pixels' squared errors by how many values were "
         "kept, not by the size of the whole video", lambda: db(np.sum(((a - b) ** 2)[keep]) / a.size)),
        ("a peak of 1: the videos are uint8, their peak value is 255 — PSNR = 10·log10(255² / MSE)",
         lambda: db(mse(keep), 1.0)),
        ("255 not squared: PSNR = 10·log10(255² / MSE), or 20·log10(255 / √MSE)", lambda: db(mse(keep), 255.0)),
        ("the MSE of videos scaled to [0, 1] with the peak of uint8 (255): use one scale for both — uint8 values "
         "and 255, or [0, 1] and 1", lambda: db(mse(keep) / 255.0**2)),
    ])
