"""Notebook 01's exercises: frame attention's keys and values."""

from __future__ import annotations

import torch

from vp2p.course.exercises.common import Case, compare, first_match, generator

# -- 01 · frame attention: which frame keys and values come from --------------------------------------------------


def check_frame_context(student) -> int:
    from vp2p.attention import frame_context

    g = generator(1)
    shapes = [(1, 1), (1, 4), (2, 3), (3, 5), (2, 8)]  # (videos, frames): one video first, then several
    cases = [Case(f"{v} video(s) of {f} frame(s) (hidden: {v * f} rows × 6 positions × 4 channels)",
                  (torch.randn(v * f, 6, 4, generator=g), f)) for v, f in shapes]
    return compare(student, lambda hidden, f: frame_context(hidden, f, "first"), cases, diagnose_frame_context)


def diagnose_frame_context(got, expected, case):
    hidden, f = case.args
    videos = hidden.view(-1, f, *hidden.shape[1:])

    def frames(index):  # per video, the frames given by ``index`` (one per frame), folded back into rows
        return videos[:, index].reshape(hidden.shape)

    return first_match(got, [
        ("keys and values from frame i itself — that is the image model's self-attention; frame attention reads "
         "frame 0 of the same video for every frame", lambda: hidden),
        ("keys and values from the previous frame; Video-P2P reads frame 0 for every frame",
         lambda: frames([max(i - 1, 0) for i in range(f)])),
        ("keys and values from the last frame; Video-P2P reads frame 0 (the reference every frame agrees with)",
         lambda: frames([f - 1] * f)),
        ("every row got frame 0 of the *first* video; with several videos in the batch (rows = video·F + frame) "
         "each video reads its own frame 0", lambda: hidden[:1].expand_as(hidden)),
        ("rows grouped frame-major; the batch is video-major: row = video·F + frame, so video v's frame 0 is row "
         "v·F", lambda: hidden[: len(videos)].repeat(f, 1, 1)),
        ("one row per video; return one row per frame (frame 0's hidden states repeated for each of its F frames) "
         "so that every query row has its keys and values", lambda: videos[:, 0]),
        ("frame 0 *and* the previous frame (Tune-A-Video's frame_keys='first+previous'); Video-P2P uses frame 0 "
         "only", lambda: torch.cat([frames([0] * f), frames([max(i - 1, 0) for i in range(f)])], dim=1)),
    ])
