"""How long each notebook takes on a free Colab T4 with Stable Diffusion 1.5, estimated without a GPU.

``benchmarks/gpu_memory.py`` counts the floating-point operations of every stage (tuning, inversions, edits,
sampling) on SD-1.5 at 512² with ``torch.utils.flop_counter``, adds them up for what each notebook runs, and divides
by what a T4 sustains: 65 TFLOP/s of fp16 tensor-core peak at the utilisation written in the data (``T4_DATA``,
shipped with the package). The notebooks print the result before their long cells (``announce``). An estimate, not
a measurement: no GPU has run these notebooks yet.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

T4_DATA = Path(__file__).with_name("t4_minutes.json")


@lru_cache(maxsize=1)
def t4_data() -> dict:
    """The shipped estimates: {"utilisation", "peak_tflops", "notebooks": {name: {choice: {"alone", "in_order"}}}}."""
    return json.loads(T4_DATA.read_text())


def t4_minutes(notebook: str, choice: str = "official") -> dict:
    """{"alone": minutes from an empty cache, "in_order": minutes after the notebooks before it} for ``notebook``
    (e.g. "04_word_swap") with the settings ``choice`` ("official" or "course")."""
    notebooks = t4_data()["notebooks"]
    if notebook not in notebooks:
        raise ValueError(f"no T4 estimate for notebook {notebook!r}; known: {sorted(notebooks)}")
    choices = notebooks[notebook]
    if choice not in choices:
        raise ValueError(f"no T4 estimate for settings {choice!r}; known: {sorted(choices)}")
    return choices[choice]


def t4_note(notebook: str, choice: str = "official") -> str:
    """One line for a notebook's Stable Diffusion branch: about how many minutes on a T4, and how it was estimated."""
    data, time = t4_data(), t4_minutes(notebook, choice)
    frames = data["frames"][choice]
    line = (f"Stable Diffusion 1.5, {frames} frames of 512², {choice} settings: about {time['alone']:.0f} minutes on "
            f"a T4 from an empty cache")
    if time["in_order"] < time["alone"]:
        line += f", {time['in_order']:.0f} after the notebooks before it (their cache)"
    line += (f" (estimated from FLOP counts at {data['utilisation']:.0%} of the T4's {data['peak_tflops']:g} "
             "TFLOP/s; not measured)")
    if choice == "official" and "course" in data["notebooks"][notebook]:
        line += f"; SETTINGS = \"course\": about {t4_minutes(notebook, 'course')['alone']:.0f} minutes"
    return line


def announce(pipe, notebook: str, choice: str | None = None) -> None:
    """Print ``t4_note`` unless ``pipe`` (or a model's name) is the toy model, which runs on a CPU in seconds."""
    from vp2p.course.clip import effective_choice, named
    from vp2p.io.loading import is_toy

    if is_toy(named(pipe)):
        return
    chosen = effective_choice(pipe, choice)
    print(t4_note(notebook, chosen if chosen in ("official", "course") else "official"))
