"""Notebook 06's exercises: reweighted maps and the equalizer."""

from __future__ import annotations

import torch

from vp2p.course.exercises.common import (
    Case,
    compare,
    first_match,
    generator,
    toy_tokenizer,
)
from vp2p.course.exercises.refinement import token_words

# -- 06 · reweighting --------------------------------------------------------------------------------------------------


def check_reweight_maps(student) -> int:
    from vp2p.controllers import reweight_maps

    g = generator(8)
    cases = []
    for targets, frames, heads, queries, tokens in ((1, 1, 1, 4, 6), (2, 3, 2, 4, 7), (3, 2, 2, 9, 5)):
        maps = torch.softmax(torch.randn(targets, frames, heads, queries, tokens, generator=g), dim=-1)
        weights = torch.tensor([0.0, 0.5, 2.0, 4.0])
        equalizer = torch.ones(targets, tokens)
        for b in range(targets):
            equalizer[b, 1 + b] = weights[b % 4]
            equalizer[b, -1] = weights[(b + 2) % 4]
        cases.append(Case(f"{targets} target(s), {frames} frame(s), {heads} head(s), {queries} queries, {tokens} "
                          f"tokens, equalizer {equalizer.tolist()}", (maps, equalizer)))
    return compare(student, reweight_maps, cases, diagnose_reweight_maps)


def diagnose_reweight_maps(got, expected, case):
    from vp2p.controllers import reweight_maps

    maps, equalizer = case.args

    def renormalised():
        scaled = reweight_maps(maps, equalizer)
        return scaled / scaled.sum(-1, keepdim=True)

    return first_match(got, [
        ("renormalised rows: Reweight multiplies and stops there, so a weight of 2 really doubles the word's "
         "attention (and 4 overdrives it, as notebook 06 shows)", renormalised),
        ("every target used the first target's equalizer; target b has its own row",
         lambda: reweight_maps(maps, equalizer[:1].expand_as(equalizer))),
        ("divided by the weights; multiply the token columns by them", lambda: reweight_maps(maps, 1 / equalizer)),
    ])


def check_equalizer(student) -> int:
    from vp2p.editing import equalizer

    tokenizer = toy_tokenizer()
    cases = [Case(f"{prompt!r}, weights {weights} (max_len {max_len})", (prompt, weights, tokenizer, max_len))
             for prompt, weights, max_len in [
                 ("a red striped circle bouncing on the grass", {"striped": 2.0}, 77),
                 ("a red striped circle bouncing on the grass", {"red": 0.0, "circle": 3.0}, 20),
                 ("a crimson circle on the grass", {"crimson": 0.5}, 77),
                 ("a red circle and a red square", {"red": 4.0}, 77),
             ]]
    return compare(student, equalizer, cases, diagnose_equalizer)


def diagnose_equalizer(got, expected, case):
    prompt, weights, tokenizer, max_len = case.args
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return None
    scaled_got, scaled_expected = set(torch.nonzero(got != 1).flatten().tolist()), set(
        torch.nonzero(expected != 1).flatten().tolist())
    if scaled_got and scaled_got in ({j - 1 for j in scaled_expected}, {j + 1 for j in scaled_expected}):
        return ("off by one token: positions count the start token (position 0), so the first word's tokens start "
                "at 1 — token_spans(prompt, tokenizer) gives them")
    if scaled_got < scaled_expected:
        return ("some of the word's tokens kept weight 1: scale every token of the word (a word outside the "
                "vocabulary splits into several, 'crimson' into 6) and every occurrence of it")
    return token_words(got, expected, prompt, tokenizer).strip(" ()") or None
