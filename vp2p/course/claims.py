"""Every number in a notebook's prose backed by its own output: list the numbers that are not.

A notebook's markdown should state only numbers its code cells print (or display): then a rerun on another model,
another seed or a retrained toy cannot leave a stale number beside a figure that says otherwise.
``unbacked_numbers(notebook)`` lists, in reading order, the numbers of the markdown cells that appear in none of the
notebook's outputs; ``unbacked(notebook)`` gives each with its cell index and the words around it.

**What counts as backed.** The outputs are the code cells' ``stream`` text and their ``text/plain``,
``text/markdown`` and ``text/html`` results (tags dropped); error tracebacks and the code itself do not count — a
number in the source is a setting, not a result. A prose number backs onto an output number it rounds from: "17.3"
is backed by an output 17.26 (0.05 either side), "5e-4" by 0.00048, "20" by 19.7; a percentage "20%" also by
an output 0.2. Signs are ignored (prose writes "−0.31" with a minus sign, outputs "-0.31").

**What is not a claim about the run** (left out before matching, so it never needs an output):

* quoted from outside — a parenthesis that starts with the source, ``(paper: 0.4)``, ``(paper eq. 3: ...)``,
  ``(official code: 0.2)``; the one number right after "paper", "paper's" or "official" ("the paper's 50 steps",
  "paper 0.4, official 0.2"); any text inside ``<span class="paper">...</span>``;
* references — a number after Fig./Figure, Table, Eq./Equation, Algorithm, Section/§, notebook or issue
  (with lists and ranges: "Tables 1 and 2", "notebooks 03–06");
* numbering — the ordinal that starts a heading ("## 3. DDIM", "# 1 · Inflation") or a numbered list item, and
  two-digit numbers with a leading zero ("01", the course's notebook numbers);
* code and formulas — inline code, fenced code blocks and ``$...$`` math (settings, formulas' constants), link
  targets, image sources and bare URLs (the Colab badge's address), HTML tags;
* versions — "Stable Diffusion 1.5", "SD 2", "torch 2.1", "v0.11";
* parts of names — digits stuck to letters or underscores ("T2I", "P2P", "attn1", "x0", "fp16") or after a
  hyphen that follows a letter ("SD-1.5"), and ordinals ("2nd");
* years (1900–2099 without decimals: "CVPR 2024");
* single-digit whole numbers (0–9): in prose they are counts, indices and ordinals ("two branches", "frame 0",
  "2 cores") far more often than results, and a result worth stating ("PSNR 7 dB") is rarely a bare single digit.
  Every decimal, every number of two or more digits, every percentage and every power of ten is checked.

Run ``python -m vp2p.course.claims notebooks/*.ipynb`` to list what each notebook's prose does not back.
"""

from __future__ import annotations

import html
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

# A number in prose: not glued to a word (T2I, attn1, x0) nor after "letter-" (SD-1.5); thousands with commas,
# decimals, a power of ten, an optional percent sign.
PROSE_NUMBER = re.compile(
    r"(?<![\w.])(?<![A-Za-z][-‑])(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?P<frac>\.\d+)?(?:[eE](?P<exp>[-+−]?\d+))?"
    r"(?P<percent>\s?%)?(?![\w])")
# A number in outputs: anywhere (frame_07, 1.5e-05, 0.32,0.77), as loosely as possible — more backing, not less.
OUTPUT_NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?")

REFERENCE = re.compile(
    r"(?:\b(?:fig(?:ure)?s?\.?|tables?|tab\.|eqs?\.|equations?|algorithms?|alg\.|sections?|sec\.|notebooks?|"
    r"issues?)|§)\s*\d+(?:\s*(?:[–\-,/&]|and|or|to)\s*\d+)*", re.IGNORECASE)
QUOTED = re.compile(r"<span\s+class=[\"']paper[\"']\s*>.*?</span>|\((?:paper|official)\b[^()]*\)"
                    r"|\b(?:paper|official)(?:'s|’s)?:?\s+\d[\d,.]*(?:[eE][-+−]?\d+)?", re.IGNORECASE | re.DOTALL)
VERSION = re.compile(r"\b(?:Stable Diffusion|SD|CLIP|diffusers|torch|Python|version|v)[ -]?\d+(?:\.\d+)*")
CODE = re.compile(r"```.*?```|~~~.*?~~~|`[^`\n]*`|\$\$.*?\$\$|\$[^$\n]+\$", re.DOTALL)
LINK_TARGET = re.compile(r"!\[[^\]]*\]\([^)]*\)|\]\([^)]*\)|https?://\S+|<[^>]*>")
ORDINAL = re.compile(r"^(?:[ \t]*#+[ \t]*|[ \t]*)\d+(?:\.\d+)*[ \t]*[.·:)](?=\s)", re.MULTILINE)


@dataclass(frozen=True)
class Unbacked:
    """A number of a markdown cell that no output of the notebook shows."""

    cell: int  # index of the markdown cell in the notebook, counting from 0
    number: str  # as written in the prose
    context: str  # the words around it


@dataclass(frozen=True)
class ProseNumber:
    text: str
    value: float
    tolerance: float  # half a unit of its last written digit
    percent: bool
    start: int
    end: int


def load(notebook) -> dict:
    """A notebook as a dict: from a path (.ipynb) or an already-read notebook (``nbformat`` node or dict)."""
    if isinstance(notebook, (str, Path)):
        path = Path(notebook)
        if path.suffix != ".ipynb" or not path.is_file():
            raise FileNotFoundError(f"{path} is not a notebook file (.ipynb); the .py twin has no outputs to check")
        return json.loads(path.read_text())
    if isinstance(notebook, dict) and "cells" in notebook:
        return notebook
    raise TypeError(f"expected a path to an .ipynb or a notebook dict with 'cells', got {type(notebook).__name__}")


def source_text(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _blank(pattern: re.Pattern, text: str) -> str:
    """``text`` with every match of ``pattern`` replaced by spaces: offsets stay, so context reads the original."""
    return pattern.sub(lambda m: " " * len(m.group(0)), text)


def claim_text(markdown: str) -> str:
    """The markdown with everything that is not a claim about the run blanked out (see the module docstring)."""
    text = markdown
    for pattern in (CODE, QUOTED, LINK_TARGET, REFERENCE, ORDINAL, VERSION):
        text = _blank(pattern, text)
    return text


def prose_numbers(markdown: str) -> list[ProseNumber]:
    """The numbers of a markdown text that must be backed by an output."""
    numbers = []
    for match in PROSE_NUMBER.finditer(claim_text(markdown)):
        whole, fraction, exponent = match["int"].replace(",", ""), match["frac"] or "", match["exp"] or "0"
        exponent = int(exponent.replace("−", "-"))
        value = float(f"{whole}{fraction}") * 10.0**exponent
        decimals = len(fraction) - 1 if fraction else 0
        if not fraction and match["exp"] is None and not match["percent"] and _unchecked_integer(match["int"]):
            continue
        numbers.append(ProseNumber(match.group(0).strip(), value, 0.5 * 10.0 ** (exponent - decimals),
                                   bool(match["percent"]), match.start(), match.end()))
    return numbers


def _unchecked_integer(digits: str) -> bool:
    """Single digits (counts, indices), zero-padded numbers (notebook numbers) and years."""
    return len(digits) == 1 or (len(digits) == 2 and digits[0] == "0") or (len(digits) == 4 and 1900 <= int(digits) <= 2099)


def output_texts(notebook: dict) -> list[str]:
    """The text of every output of every code cell: streams, and plain, markdown and HTML results (tags dropped)."""
    texts = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if output.get("output_type") == "stream":
                texts.append(source_text({"source": output.get("text", "")}))
            data = output.get("data", {})
            for kind in ("text/plain", "text/markdown", "text/html"):
                if kind in data:
                    text = source_text({"source": data[kind]})
                    texts.append(html.unescape(re.sub(r"<[^>]*>", " ", text)) if kind == "text/html" else text)
    return texts


def output_values(notebook: dict) -> list[float]:
    """Every number the outputs show; a comma-grouped one ("100,200") counts whole and part by part."""
    values = []
    for text in output_texts(notebook):
        for token in OUTPUT_NUMBER.findall(text):
            values.append(float(token.replace(",", "")))
            if "," in token:
                values.extend(float(part) for part in token.split(","))
    return values


def is_backed(number: ProseNumber, values: list[float]) -> bool:
    """Whether some output value rounds to the prose number (for a percentage: or to a hundredth of it)."""
    readings = [(number.value, number.tolerance)]
    if number.percent:
        readings.append((number.value / 100, number.tolerance / 100))
    for target, tolerance in readings:
        tolerance += 1e-9 * max(1.0, target)  # float rounding of the values themselves
        if any(abs(v - target) <= tolerance for v in values):
            return True
    return False


def unbacked(notebook) -> list[Unbacked]:
    """The numbers of the notebook's markdown cells that none of its outputs shows, in reading order."""
    notebook = load(notebook)
    values = output_values(notebook)
    found = []
    for index, cell in enumerate(notebook["cells"]):
        if cell.get("cell_type") != "markdown":
            continue
        text = source_text(cell)
        for number in prose_numbers(text):
            if not is_backed(number, values):
                found.append(Unbacked(index, number.text, _context(text, number.start, number.end)))
    return found


def unbacked_numbers(notebook) -> list[str]:
    """The numbers (as written) of a notebook's prose that appear in none of its outputs; empty when all are
    backed. ``notebook``: a path to an .ipynb or a notebook dict."""
    return [u.number for u in unbacked(notebook)]


def _context(text: str, start: int, end: int, width: int = 45) -> str:
    before = " ".join(text[max(0, start - width):start].split())
    after = " ".join(text[end:end + width].split())
    return f"…{before} [{text[start:end].strip()}] {after}…"


def main(argv=None) -> int:
    """``python -m vp2p.course.claims NOTEBOOK...``: print each notebook's unbacked numbers; exit 1 if any."""
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m vp2p.course.claims NOTEBOOK.ipynb ...", file=sys.stderr)
        return 2
    total = 0
    for path in paths:
        found = unbacked(path)
        total += len(found)
        print(f"{path}: {len(found)} unbacked")
        for u in found:
            print(f"  cell [{u.cell}] {u.number}: {u.context}")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
