"""Notebook 05's exercises: the refinement mapper and the refined maps."""

from __future__ import annotations

import torch

from vp2p.course.exercises.common import (
    Case,
    ExerciseFailed,
    compare,
    describe_mismatch,
    first_match,
    generator,
    same,
    student_output,
    toy_tokenizer,
)

# -- 05 · refinement: aligned tokens ----------------------------------------------------------------------------------


def check_refinement_mapper(student) -> int:
    from vp2p.alignment import refinement_mapper

    tokenizer = toy_tokenizer()
    pairs = [
        ("a red circle bouncing on the grass", "a red striped circle bouncing on the grass", 77),
        ("a red circle bouncing on the grass", "a red circle bouncing on the grass at night", 77),
        ("a circle on the grass", "a red striped circle on the grass", 77),
        ("a red circle on the grass", "a red dotted circle on the grass", 12),
        ("a red circle on the grass", "a red circle on the grass", 16),
    ]
    count = 0
    for source, target, max_len in pairs:
        label = f"{source!r} → {target!r} (max_len {max_len})"
        mapper, alphas = refinement_mapper(source, target, tokenizer, max_len)
        got = student_output(student, Case(label, (source, target, tokenizer, max_len)))
        if not (isinstance(got, tuple) and len(got) == 2):
            raise ExerciseFailed(f"{label}: return a pair (mapper, alphas), got {type(got).__name__}")
        got_mapper, got_alphas = got
        if not same(got_alphas, alphas):
            raise ExerciseFailed(f"{label}: alphas: {diagnose_alphas(got_alphas, alphas, target, tokenizer)}")
        aligned = alphas.bool()  # an inserted token's mapper entry is never read (its alpha is 0)
        if not (isinstance(got_mapper, torch.Tensor) and got_mapper.shape == mapper.shape
                and torch.equal(got_mapper[aligned].long(), mapper[aligned].long())):
            hint = diagnose_refinement_mapper(got_mapper, mapper, aligned, target, tokenizer)
            raise ExerciseFailed(f"{label}: mapper: {hint}")
        count += 1
    return count


def diagnose_alphas(got, expected, target, tokenizer) -> str:
    if isinstance(got, torch.Tensor) and got.shape == expected.shape:
        inserted, wanted = set(torch.nonzero(got == 0).flatten().tolist()), set(
            torch.nonzero(expected == 0).flatten().tolist())
        if inserted and inserted in ({j - 1 for j in wanted}, {j + 1 for j in wanted}):
            return ("off by one token: positions count the whole tokenized prompt, start token included — align "
                    "tokenizer(prompt).input_ids (start and end tokens too)")
    hint = first_match(got, [
        ("inverted: 1 for tokens found in both prompts (they take the source's map), 0 for inserted ones (they keep "
         "their own)", lambda: 1 - expected),
        ("every alpha is 1: inserted tokens (None in the alignment) get alpha 0, they keep their own maps",
         lambda: torch.ones_like(expected)),
    ])
    return hint or describe_mismatch(got, expected) + token_words(got, expected, target, tokenizer)


def diagnose_refinement_mapper(got, expected, aligned, target, tokenizer) -> str:
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return describe_mismatch(got, expected)
    got, expected = got.long(), expected.long()
    end = len(tokenizer(target).input_ids)
    inside = aligned & (torch.arange(len(expected)) < end)
    if torch.equal(got[inside], expected[inside] - 1) or torch.equal(got[inside], expected[inside] + 1):
        return ("off by one: positions count the whole tokenized prompt, start token included — align "
                "tokenizer(prompt).input_ids (start and end tokens too)")
    if torch.equal(got[inside], expected[inside]):
        return f"past the end of the target prompt (position {end} on), target position j takes source position j"
    return describe_mismatch(got.where(aligned, 0), expected.where(aligned, 0)) + token_words(
        got.where(aligned, 0), expected.where(aligned, 0), target, tokenizer)


def token_words(got, expected, prompt, tokenizer) -> str:
    """' (at the tokens of "striped")': the words of ``prompt`` whose token positions differ."""
    from vp2p.alignment import prompt_words, token_spans

    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return ""
    wrong = set(torch.nonzero(~torch.isclose(got.double(), expected.double())).flatten().tolist())
    words = [w for w, span in zip(prompt_words(prompt), token_spans(prompt, tokenizer)) if wrong & set(span)]
    return f" (at the tokens of {', '.join(map(repr, words))})" if words else ""


def check_refine_maps(student) -> int:
    from vp2p.controllers import refine_maps

    g = generator(7)
    cases = []
    for targets, frames, heads, queries, tokens in ((1, 1, 1, 4, 6), (2, 3, 2, 4, 7), (3, 2, 2, 9, 5)):
        source = torch.rand(frames, heads, queries, tokens, generator=g)
        target_maps = torch.rand(targets, frames, heads, queries, tokens, generator=g)
        mappers = torch.stack([torch.randperm(tokens, generator=g) for _ in range(targets)])
        alphas = (torch.rand(targets, tokens, generator=g) < 0.7).float()
        alphas[:, 0] = 0  # at least one kept and one taken token per target
        alphas[:, -1] = 1
        cases.append(Case(f"{targets} target(s), {frames} frame(s), {heads} head(s), {queries} queries, {tokens} "
                          "tokens", (source, target_maps, mappers, alphas)))
    return compare(student, refine_maps, cases, diagnose_refine_maps)


def diagnose_refine_maps(got, expected, case):
    from vp2p.controllers import refine_maps

    source, targets, mappers, alphas = case.args
    identity = torch.arange(mappers.shape[1]).expand_as(mappers)
    return first_match(got, [
        ("alphas the wrong way round: where alpha is 1 the target token takes the source's map, where it is 0 it "
         "keeps its own", lambda: refine_maps(source, targets, mappers, 1 - alphas)),
        ("every token took a source map: tokens with alpha 0 (inserted words) keep their own maps",
         lambda: refine_maps(source, targets, mappers, torch.ones_like(alphas))),
        ("the target maps came back unchanged: tokens with alpha 1 take source token mappers[b, j]",
         lambda: targets),
        ("target token j took source token j; it takes source token mappers[b, j] (gather the last axis: "
         "source[..., mappers[b]])", lambda: refine_maps(source, targets, identity, alphas)),
        ("the inverse mapping: target token j takes source token mappers[b, j] — you sent source token j to target "
         "token mappers[b, j]", lambda: refine_maps(source, targets, torch.argsort(mappers, dim=1), alphas)),
        ("every target used the first target's mapper and alphas; target b has its own",
         lambda: refine_maps(source, targets, mappers[:1].expand_as(mappers), alphas[:1].expand_as(alphas))),
    ])
