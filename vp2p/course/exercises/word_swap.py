"""Notebook 04's exercises: the replacement mapper, the LocalBlend mask."""

from __future__ import annotations

import torch

from vp2p.course.exercises.common import (
    Case,
    compare,
    first_match,
    generator,
    toy_tokenizer,
)

# -- 04 · word swap: the replacement mapper, the LocalBlend mask ----------------------------------------------------


def check_replacement_mapper(student) -> int:
    from vp2p.alignment import replacement_mapper

    swaps = [  # equal token counts first (the mapper is then the identity), then words of 1 and 6 tokens
        ("a red circle bouncing on the grass", "a blue circle bouncing on the grass", 77),
        ("a red circle bouncing on the grass", "a green square bouncing on the sand", 77),
        ("a red circle on the grass", "a blue circle on the grass", 12),
        ("a red circle on the grass", "a crimson circle on the grass", 77),
        ("a crimson circle on the grass", "a red circle on the grass", 20),
    ]
    tokenizer = toy_tokenizer()
    cases = [Case(f"{s!r} → {t!r} (max_len {n})", (s, t, tokenizer, n)) for s, t, n in swaps]
    return compare(student, replacement_mapper, cases, diagnose_replacement_mapper)


def diagnose_replacement_mapper(got, expected, case):
    from vp2p.alignment import prompt_length, prompt_words, token_spans

    source, target, tokenizer, max_len = case.args
    hint = first_match(got, [
        ("transposed: M[i, j] sends source token i to target token j (target map j = Σ_i source map i · M[i, j]) — "
         "rows are source tokens, columns target tokens", lambda: expected.T),
        ("a source word spread over n target tokens gives each of them 1/n of its map, so the word's attention mass "
         "stays the same", lambda: (expected > 0).float()),
    ])
    if hint or not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return hint
    columns = [j for j in range(max_len) if not torch.allclose(got[:, j].double(), expected[:, j].double(), atol=1e-6)]
    if 0 in columns:
        return "the start token (position 0) keeps its own map: M[0, 0] = 1"
    end = prompt_length(target, tokenizer) - 1
    if columns and min(columns) >= end:
        return (f"the end token and the padding: target position {end} (the end token) and every later one take the "
                f"source's end token and padding, shifted by the difference in length (source end: "
                f"{prompt_length(source, tokenizer) - 1}), up to max_len")
    words = [w for w, span in zip(prompt_words(target), token_spans(target, tokenizer)) if set(span) & set(columns)]
    return f"the columns of the target word(s) {words} differ (target tokens {columns[:8]})" if words else None


def check_blend_mask(student) -> int:
    from vp2p.controllers import LocalBlend

    g = generator(6)

    def maps(b, f, h, w, tokens, frame_scale=None):
        m = torch.softmax(2 * torch.randn(b, f, h, w, tokens, generator=g), dim=-1)
        return m if frame_scale is None else m * torch.tensor(frame_scale)[None, :, None, None, None]

    cases = [  # frames of unequal strength first: one maximum for the whole video shows there at once
        Case("2 branches, 2 frames whose attention differs 20× in strength, 4×4 maps → 8×8 latents",
             (maps(2, 2, 4, 4, 6, frame_scale=[1.0, 0.05]), [[2], [2]], (8, 8), 0.3)),
        Case("2 branches, 1 frame, 4×4 maps → 8×8 latents, blend token 2 in both prompts",
             (maps(2, 1, 4, 4, 6), [[2], [2]], (8, 8), 0.3)),
        Case("2 branches, 3 frames, 8×8 maps → 16×16 latents, tokens [2, 3] and [4]",
             (maps(2, 3, 8, 8, 7), [[2, 3], [4]], (16, 16), 0.3)),
        Case("3 branches, 2 frames, 4×8 maps → 8×16 latents, threshold 0.5",
             (maps(3, 2, 4, 8, 6), [[1], [2], [3]], (8, 16), 0.5)),
        Case("2 branches, 2 frames, 8×8 maps at the latent size (no upsampling)",
             (maps(2, 2, 8, 8, 5), [[3], [1]], (8, 8), 0.3)),
    ]

    def reference(m, token_indices, latent_size, threshold):
        return LocalBlend(token_indices, m.shape[-1], threshold=threshold).mask(m, latent_size)

    return compare(student, reference, cases, diagnose_blend_mask)


def diagnose_blend_mask(got, expected, case):
    from vp2p.controllers import LocalBlend

    maps, token_indices, latent_size, threshold = case.args

    def union(masks):
        return masks | masks[:1]

    def without_union():  # vp2p's mask of each branch alone: no union with the source
        return torch.cat([LocalBlend([token_indices[b]], maps.shape[-1], threshold=threshold)
                          .mask(maps[b : b + 1], latent_size) for b in range(len(token_indices))])

    hint = first_match(got, [
        ("each target's mask must include the source's (the union with branch 0: mask | mask[:1]), so that where "
         "the old object was is regenerated too", without_union),
        ("inverted: keep the positions whose normalised score is *above* the threshold", lambda: ~expected),
        ("inverted: keep the positions whose normalised score is *above* the threshold",
         lambda: union(~without_union())),
    ])
    if hint or not isinstance(got, torch.Tensor) or got.shape != expected.shape or got.dtype != torch.bool:
        return hint
    empty_frames = [(b, f) for b in range(got.shape[0]) for f in range(got.shape[1])
                    if not got[b, f].any() and expected[b, f].any()]
    if empty_frames:
        return (f"branch {empty_frames[0][0]}, frame {empty_frames[0][1]} has an empty mask: divide each frame's "
                "score by that frame's own maximum (amax over h and w), not by one maximum for the whole video")
    if bool((got <= expected).all()):
        return (f"smaller than vp2p's mask ({int(got.sum())} positions instead of {int(expected.sum())}): max-pool "
                "the summed map 3×3 (stride 1, padding 1) at the maps' resolution, before upsampling — it widens "
                "the mask by one cell — and divide each frame by its own maximum")
    if bool((got >= expected).all()):
        return (f"larger than vp2p's mask ({int(got.sum())} positions instead of {int(expected.sum())}): upsample "
                "with mode='nearest' and keep the scores strictly above the threshold")
    return None
