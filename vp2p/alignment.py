"""Which token of the target prompt takes its attention from which token of the source prompt.

Prompt-to-prompt edits address cross-attention maps by token position. Words are split on spaces; each word
tokenizes on its own (CLIP's tokenizer never merges across spaces), so a word's tokens are a contiguous run after
the start token. Three tools:

* ``word_token_indices``: token positions of a word ("man" → [2], "Spider-Man" → [2, 3, 4]).
* ``replacement_mapper`` (word swap): prompts with the same number of words; a swapped word's maps are shared out
  over its new tokens (1 → 3 tokens: each gets 1/3, so attention mass is kept).
* ``refinement_mapper`` (adding words): a global alignment of the two token sequences; tokens present in both
  take the source maps, inserted tokens keep their own (alpha 0).
"""

from __future__ import annotations

import torch


def prompt_words(prompt: str) -> list[str]:
    return prompt.split()


def word_tokens(word: str, tokenizer) -> list[int]:
    """The token ids of a word, without start and end tokens."""
    return tokenizer(word).input_ids[1:-1]


def token_spans(prompt: str, tokenizer) -> list[list[int]]:
    """For each space-separated word of ``prompt``, its token positions in the tokenized prompt (BOS is 0)."""
    spans, position = [], 1
    for word in prompt_words(prompt):
        count = len(word_tokens(word, tokenizer))
        spans.append(list(range(position, position + count)))
        position += count
    return spans


def prompt_length(prompt: str, tokenizer) -> int:
    """Tokens of the prompt including start and end tokens."""
    return len(tokenizer(prompt).input_ids)


def word_token_indices(prompt: str, word: str | int, tokenizer, role: str = "word") -> list[int]:
    """Token positions of ``word`` in ``prompt``: a word (every occurrence, several words allowed) or its index."""
    spans = token_spans(prompt, tokenizer)
    words = prompt_words(prompt)
    if isinstance(word, int):
        if not 0 <= word < len(words):
            raise ValueError(f"{role} index {word} is outside the prompt {prompt!r}, which has {len(words)} words")
        return spans[word]
    wanted = prompt_words(word)
    lowered = [w.lower() for w in words]
    hits = []
    for start in range(len(words) - len(wanted) + 1):
        if lowered[start : start + len(wanted)] == [w.lower() for w in wanted]:
            hits += [i for span in spans[start : start + len(wanted)] for i in span]
    if not hits:
        raise ValueError(f"{role} {word!r} is not in the prompt {prompt!r}; its words are {words}. "
                         f"Pick a word of that prompt (or fix the spelling).")
    return hits


def replacement_mapper(source: str, target: str, tokenizer, max_len: int) -> torch.Tensor:
    """(max_len, max_len) M with target_map[j] = Σ_i source_map[i]·M[i, j], for a word swap."""
    src_words, tgt_words = prompt_words(source), prompt_words(target)
    if len(src_words) != len(tgt_words):
        raise ValueError(
            f"Replace (word swap) needs prompts that differ only in swapped words, but {source!r} has "
            f"{len(src_words)} words and {target!r} has {len(tgt_words)}. Use Refine (is_word_swap=False) to add "
            "or remove words."
        )
    mapper = torch.zeros(max_len, max_len)
    mapper[0, 0] = 1  # start token
    for src_span, tgt_span in zip(token_spans(source, tokenizer), token_spans(target, tokenizer)):
        if len(src_span) == len(tgt_span):
            mapper[src_span, tgt_span] = 1  # one to one (an unchanged word, or a swap with equal token counts)
        else:
            for j in tgt_span:
                mapper[src_span, j] = 1 / len(tgt_span)
    # The end token and the padding follow the prompt, shifted by the difference in length (official: position j
    # takes position j once the last swapped word is passed, which misaligns every later token after a swap of
    # unequal token counts, "man" -> "Spider-Man").
    src_end, tgt_end = prompt_length(source, tokenizer) - 1, prompt_length(target, tokenizer) - 1
    for k in range(max_len - tgt_end):
        mapper[min(src_end + k, max_len - 1), tgt_end + k] = 1
    return mapper


def align_sequences(source: list[int], target: list[int]) -> list[int | None]:
    """Needleman–Wunsch global alignment (match +1, mismatch -1, gap 0): for each target token, the source
    position it is aligned with, or None for an inserted token.

    Ties are broken as prompt-to-prompt's aligner (which Video-P2P uses) breaks them: an insertion (a gap in the
    source) before a deletion, both before the diagonal. The trace runs from the end, so with repeated tokens the
    *first* occurrence is the one aligned and the later ones count as inserted.
    """
    n, m = len(source), len(target)
    score = [[0] * (m + 1) for _ in range(n + 1)]
    move = [["insert"] * (m + 1)] + [["delete"] + [""] * m for _ in range(n)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            insert, delete = score[i][j - 1], score[i - 1][j]
            diagonal = score[i - 1][j - 1] + (1 if source[i - 1] == target[j - 1] else -1)
            score[i][j] = max(insert, delete, diagonal)
            move[i][j] = "insert" if score[i][j] == insert else "delete" if score[i][j] == delete else "diagonal"
    aligned: list[int | None] = [None] * m
    i, j = n, m
    while i > 0 or j > 0:
        if move[i][j] == "diagonal":  # (with gap 0 a mismatch never wins, so every diagonal is a match)
            aligned[j - 1] = i - 1
            i, j = i - 1, j - 1
        elif move[i][j] == "insert":
            j -= 1
        else:
            i -= 1
    return aligned


def refinement_mapper(source: str, target: str, tokenizer, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mapper, alphas), both (max_len,): target token j takes source token mapper[j] where alphas[j] == 1.

    As the official code: the whole token sequences (start and end tokens included) are aligned; past the end of
    the target prompt, target position j takes source position j.
    """
    src_ids, tgt_ids = tokenizer(source).input_ids, tokenizer(target).input_ids
    mapper = torch.arange(max_len)
    alphas = torch.ones(max_len)
    for j, i in enumerate(align_sequences(src_ids, tgt_ids)):
        mapper[j], alphas[j] = (0, 0.0) if i is None else (i, 1.0)
    return mapper, alphas
