"""Vocabulary files for the toy model's ``CLIPTokenizer``.

CLIP's tokenizer is byte-pair encoding over words that end in ``</w>``. We build the two files it reads
(``vocab.json`` and ``merges.txt``) so that every toy-world word is ONE token, and every other string still
tokenizes, falling back to single characters (all 256 byte symbols are in the vocabulary, as in CLIP).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _printable_bytes() -> list[int]:
    return list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))


@lru_cache(maxsize=1)
def byte_symbols() -> list[str]:
    """The 256 printable stand-ins CLIP (like GPT-2) uses for raw bytes, indexed by byte value."""
    printable = set(_printable_bytes())
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def vocabulary_symbols() -> list[str]:
    """The byte symbols in CLIP's vocabulary order: printable bytes first, then the others (ids 0…255)."""
    order = _printable_bytes() + [b for b in range(256) if b not in set(_printable_bytes())]
    return [byte_symbols()[b] for b in order]


def word_symbols(word: str) -> list[str]:
    """A word as CLIP's BPE sees it before merging: one symbol per byte, the last one marked with ``</w>``."""
    table = byte_symbols()
    symbols = [table[b] for b in word.encode("utf-8")]
    symbols[-1] += "</w>"
    return symbols


def apply_merges(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding: repeatedly merge the adjacent pair of lowest rank."""
    symbols = list(symbols)
    while len(symbols) > 1:
        pairs = [(ranks.get(pair, float("inf")), i) for i, pair in enumerate(zip(symbols, symbols[1:]))]
        rank, i = min(pairs)
        if rank == float("inf"):
            break
        symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]
    return symbols


def build_merges(words: list[str]) -> list[tuple[str, str]]:
    """Merges under which each word becomes a single token.

    Each word first gets its left-to-right merges. A word whose pieces get merged in another order by an earlier
    word's merges is repaired by appending the merge of the pieces it ended up with; appended merges rank last,
    so they never disturb words that already work.
    """
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}

    def add(pair):
        if pair not in ranks:
            ranks[pair] = len(merges)
            merges.append(pair)

    for word in words:
        pieces = word_symbols(word)
        prefix = pieces[0]
        for piece in pieces[1:]:
            add((prefix, piece))
            prefix += piece
    for word in words:
        while len(pieces := apply_merges(word_symbols(word), ranks)) > 1:
            add((pieces[0], pieces[1]))
    return merges


def write_tokenizer(words: list[str], folder: str | Path, max_length: int = 77) -> Path:
    """Write vocab.json, merges.txt and the tokenizer config into ``folder`` for ``CLIPTokenizer.from_pretrained``."""
    return write_tokenizer_files(build_merges([w.lower() for w in words]), folder, max_length)


def clip_bpe_path() -> Path | None:
    """CLIP's own BPE table as shipped in the ``open_clip_torch`` wheel (MIT), found without importing open_clip."""
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "bpe_simple_vocab_16e6.txt.gz"
    return path if path.exists() else None


def write_clip_tokenizer(folder: str | Path, bpe_path: str | Path | None = None) -> Path:
    """Stable Diffusion's tokenizer (49,408 tokens), rebuilt offline from CLIP's BPE table."""
    import gzip

    bpe_path = bpe_path or clip_bpe_path()
    if bpe_path is None:
        raise FileNotFoundError("CLIP's BPE table was not found; `pip install --no-deps open_clip_torch` ships it")
    lines = gzip.open(bpe_path, "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]  # CLIP keeps the first 48,894
    return write_tokenizer_files(merges, folder)


def write_tokenizer_files(merges: list[tuple[str, str]], folder: str | Path, max_length: int = 77) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    symbols = vocabulary_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(pair) for pair in merges]
    tokens = list(dict.fromkeys(tokens)) + [BOS, EOS]
    vocab = {token: i for i, token in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=0), encoding="utf-8")
    lines = ["#version: 0.2 (vp2p toy vocabulary)"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": max_length,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
        "do_lower_case": True,
        "clean_up_tokenization_spaces": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    specials = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2), encoding="utf-8")
    return folder
