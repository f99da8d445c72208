"""Token alignment (vp2p.alignment), checked against index lists and matrices written out by hand.

The toy tokenizer (tests/tiny.py) gives every toy-world word one token; anything else falls back to characters.
Token ids are not needed below, only positions: position 0 is the start token (BOS), then the words' tokens, then
the end token (EOS); ``padding="max_length"`` pads with EOS up to 77.
"""

import pytest
import torch
from transformers import CLIPTokenizer

from vp2p.alignment import (align_sequences, prompt_length, refinement_mapper, replacement_mapper, token_spans,
                            word_token_indices)

MAX_LEN = 77


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return CLIPTokenizer.from_pretrained(tiny_model_dir / "tokenizer")


@pytest.fixture(scope="module")
def sd_tok(tmp_path_factory):
    """Stable Diffusion's own tokenizer, rebuilt offline from CLIP's BPE table (shipped in open_clip_torch)."""
    from vp2p.toy.tokenizer import clip_bpe_path, write_clip_tokenizer

    if clip_bpe_path() is None:
        pytest.skip("CLIP's BPE table is missing: `pip install --no-deps open_clip_torch` to run the SD tokenizer tests")
    return CLIPTokenizer.from_pretrained(write_clip_tokenizer(tmp_path_factory.mktemp("sd_tokenizer")))


# -- word_token_indices, toy tokenizer ----------------------------------------------------------------------------

def test_origami_is_split_into_six_character_tokens(tok):
    # The premise of the unequal-count tests below: "origami" is not a toy word, so BPE falls back to pieces
    # (or, i, g, a, m, i</w>), while every toy word is one token.
    assert len(tok("origami").input_ids) - 2 == 6
    assert len(tok("a red circle").input_ids) == 5  # BOS a red circle EOS


def test_single_words(tok):
    prompt = "a red circle bouncing on the grass"
    # positions: BOS=0, a=1, red=2, circle=3, bouncing=4, on=5, the=6, grass=7, EOS=8
    assert word_token_indices(prompt, "red", tok) == [2]
    assert word_token_indices(prompt, "circle", tok) == [3]
    assert word_token_indices(prompt, "grass", tok) == [7]
    assert word_token_indices(prompt, "a", tok) == [1]


def test_repeated_word_gives_every_occurrence(tok):
    prompt = "a red circle and a blue circle"
    # BOS=0, a=1, red=2, circle=3, and=4, a=5, blue=6, circle=7
    assert word_token_indices(prompt, "circle", tok) == [3, 7]
    assert word_token_indices(prompt, "a", tok) == [1, 5]


def test_multi_word_string_gives_the_tokens_of_the_phrase(tok):
    prompt = "a red circle on the grass"
    # BOS=0, a=1, red=2, circle=3, on=4, the=5, grass=6
    assert word_token_indices(prompt, "red circle", tok) == [2, 3]
    assert word_token_indices(prompt, "on the grass", tok) == [4, 5, 6]
    # a phrase whose words all occur but not next to each other is not in the prompt
    with pytest.raises(ValueError, match="red grass"):
        word_token_indices(prompt, "red grass", tok)


def test_multi_token_word_gives_its_whole_span(tok):
    prompt = "a origami circle is bouncing"
    # BOS=0, a=1, origami=2..7 (six pieces), circle=8, is=9, bouncing=10
    assert word_token_indices(prompt, "origami", tok) == [2, 3, 4, 5, 6, 7]
    assert word_token_indices(prompt, "circle", tok) == [8]
    assert word_token_indices(prompt, 2, tok) == [8]  # word 2 is "circle"
    assert token_spans(prompt, tok) == [[1], [2, 3, 4, 5, 6, 7], [8], [9], [10]]
    assert prompt_length(prompt, tok) == 12  # BOS + 10 tokens + EOS


def test_int_positions_are_word_indices(tok):
    prompt = "a red circle on the grass"
    assert word_token_indices(prompt, 0, tok) == [1]
    assert word_token_indices(prompt, 1, tok) == [2]
    assert word_token_indices(prompt, 5, tok) == [6]
    with pytest.raises(ValueError, match="index 6"):
        word_token_indices(prompt, 6, tok)
    with pytest.raises(ValueError, match="index -1"):
        word_token_indices(prompt, -1, tok)


def test_matching_ignores_case(tok):
    assert word_token_indices("A Red Circle", "red", tok) == [2]
    assert word_token_indices("a red circle", "CIRCLE", tok) == [3]
    assert word_token_indices("a Red circle", "RED circle", tok) == [2, 3]


def test_missing_word_names_the_word_and_the_prompt(tok):
    with pytest.raises(ValueError) as info:
        word_token_indices("a red circle on the grass", "square", tok)
    message = str(info.value)
    assert "'square'" in message and "'a red circle on the grass'" in message


# -- replacement_mapper -------------------------------------------------------------------------------------------

def test_swap_with_equal_token_counts_is_the_identity(tok):
    # "a red circle" / "a blue circle": BOS, a, red→blue, circle, EOS all sit at the same positions and the padding
    # follows EOS position by position, so target token j takes exactly source token j: the 77x77 identity.
    mapper = replacement_mapper("a red circle", "a blue circle", tok, MAX_LEN)
    assert mapper.shape == (MAX_LEN, MAX_LEN)
    assert torch.equal(mapper, torch.eye(MAX_LEN))


def test_swap_to_a_word_of_more_tokens_shares_the_map_and_shifts_the_rest(tok):
    source = "a red circle is bouncing"  # BOS=0 a=1 red=2 circle=3 is=4 bouncing=5 EOS=6 pad=7…76
    target = "a origami circle is bouncing"  # BOS=0 a=1 origami=2..7 circle=8 is=9 bouncing=10 EOS=11 pad=12…76
    expected = torch.zeros(MAX_LEN, MAX_LEN)
    expected[0, 0] = 1  # BOS
    expected[1, 1] = 1  # a
    expected[2, 2:8] = 1 / 6  # red's map shared by origami's six tokens (total mass kept)
    expected[3, 8] = 1  # circle, shifted by 5
    expected[4, 9] = 1  # is: from source "is", not from the source EOS at 6
    expected[5, 10] = 1  # bouncing
    for k in range(MAX_LEN - 11):  # target EOS (11) and its padding from source EOS (6) and its padding
        expected[6 + k, 11 + k] = 1
    mapper = replacement_mapper(source, target, tok, MAX_LEN)
    assert torch.allclose(mapper, expected, atol=1e-7)
    assert mapper[4, 9] == 1 and mapper[6, 9] == 0
    assert abs(mapper[2].sum().item() - 1) < 1e-6  # red's attention mass is kept, spread over six tokens


def test_swap_to_a_word_of_fewer_tokens_sums_its_pieces(tok):
    # The reverse edit: target "red" (position 2) takes all six origami maps, each with weight 1/len(target span) = 1.
    mapper = replacement_mapper("a origami circle", "a red circle", tok, MAX_LEN)
    assert torch.equal(mapper[:, 2], torch.tensor([0.0, 0] + [1] * 6 + [0] * (MAX_LEN - 8)))
    assert mapper[8, 3] == 1  # circle
    assert mapper[9, 4] == 1  # target EOS (4) from source EOS (9)


def test_replace_rejects_different_word_counts_and_suggests_refine(tok):
    with pytest.raises(ValueError, match="Refine") as info:
        replacement_mapper("a red circle", "a red striped circle", tok, MAX_LEN)
    assert "3 words" in str(info.value) and "4" in str(info.value)


# -- refinement_mapper --------------------------------------------------------------------------------------------

def test_refinement_with_an_inserted_word(tok):
    source = "a red circle on the grass"  # BOS=0 a=1 red=2 circle=3 on=4 the=5 grass=6 EOS=7 pad=8…
    target = "a red striped circle on the grass"  # BOS=0 a=1 red=2 striped=3 circle=4 … grass=7 EOS=8 pad=9…
    mapper, alphas = refinement_mapper(source, target, tok, MAX_LEN)
    # target j: 0 1 2 3(new) 4 5 6 7, EOS 8 ← source EOS 7; past the prompt, as the official code, j ← j
    expected = torch.tensor([0, 1, 2, 0, 3, 4, 5, 6, 7] + list(range(9, MAX_LEN)))
    expected_alphas = torch.ones(MAX_LEN)
    expected_alphas[3] = 0  # "striped" keeps its own map
    assert torch.equal(mapper, expected)
    assert torch.equal(alphas, expected_alphas)


def test_refinement_with_a_removed_word(tok):
    source = "a red striped circle on the grass"  # striped at 3, EOS at 8
    target = "a red circle on the grass"  # EOS at 7
    mapper, alphas = refinement_mapper(source, target, tok, MAX_LEN)
    # target: BOS a red take 0 1 2, circle on the grass take 4 5 6 7, EOS 7 ← 8; past the prompt j ← j (official)
    expected = torch.tensor([0, 1, 2, 4, 5, 6, 7, 8] + list(range(8, MAX_LEN)))
    assert torch.equal(mapper, expected)
    assert torch.equal(alphas, torch.ones(MAX_LEN))


# -- Stable Diffusion's tokenizer ---------------------------------------------------------------------------------

def test_sd_tokenizer_splits_spider_man_like_stable_diffusion(sd_tok):
    assert sd_tok("a Spider-Man is").input_ids == [49406, 320, 7622, 268, 786, 533, 49407]
    assert sd_tok.model_max_length == 77
    # BOS=0 a=1 spider=2 -=3 man=4 is=5
    assert word_token_indices("a Spider-Man is", "spider-man", sd_tok) == [2, 3, 4]


def test_sd_man_to_spider_man_mapper(sd_tok):
    source = "a man is walking"  # BOS=0 a=1 man=2 is=3 walking=4 EOS=5
    target = "a Spider-Man is walking"  # BOS=0 a=1 spider=2 -=3 man=4 is=5 walking=6 EOS=7
    mapper = replacement_mapper(source, target, sd_tok, MAX_LEN)
    expected = torch.zeros(MAX_LEN, MAX_LEN)
    expected[0, 0] = expected[1, 1] = 1
    expected[2, 2:5] = 1 / 3  # each Spider-Man token gets a third of "man"
    expected[3, 5] = 1  # is
    expected[4, 6] = 1  # walking
    for k in range(MAX_LEN - 7):
        expected[5 + k, 7 + k] = 1  # EOS and padding
    assert torch.allclose(mapper, expected, atol=1e-7)
    # as maps: a source whose token i has the value i gives these target values
    values = torch.arange(MAX_LEN, dtype=torch.float32) @ mapper
    assert torch.allclose(values[:8], torch.tensor([0, 1, 2 / 3, 2 / 3, 2 / 3, 3, 4, 5]), atol=1e-6)


# -- align_sequences ----------------------------------------------------------------------------------------------

def test_align_insertion():
    # target 9 is new; the others are aligned to their source positions
    assert align_sequences([0, 1, 2, 3], [0, 1, 9, 2, 3]) == [0, 1, None, 2, 3]
    assert align_sequences([5, 6], [7, 5, 6, 8]) == [None, 0, 1, None]


def test_align_deletion():
    # source token 1 (at position 1) disappears; target tokens point past it
    assert align_sequences([0, 1, 2, 3], [0, 2, 3]) == [0, 2, 3]
    assert align_sequences([0, 1, 2, 3], []) == []


def test_align_ties_prefer_a_gap_as_the_official_aligner():
    # two optimal alignments of [1, 2] in [1, 2, 1, 2]: the official trace (insertion first) keeps the first pair
    assert align_sequences([1, 2], [1, 2, 1, 2]) == [0, 1, None, None]
    assert align_sequences([3, 3], [3]) == [0]


def test_align_substitution():
    # a substituted token is not aligned with the one it replaced (gap 0 beats mismatch -1): it counts as new
    assert align_sequences([0, 1, 2], [0, 5, 2]) == [0, None, 2]
    assert align_sequences([0, 1, 2, 3], [0, 7, 8, 3]) == [0, None, None, 3]
