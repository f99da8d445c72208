"""The toy model's policy: its settings and the words it knows (checked before a run's long stages).

The toy model is small and trained with a large learning rate: it needs fewer, larger steps everywhere (the SD-1.5
settings stay official, ``vp2p.workflow.Settings()``): 50 tuning steps of 3e-4 edit as well as 150 of 1e-4 in a third
of the time, and null-text losses fall slowly and steadily (never near the early stop), so 2 Adam steps of 8e-2
reconstruct nearly as well as 4 of 4e-2 for half the inversion's time — measured on 4 held-out clips, the numbers
in the README (Differences from the official code).

Torch-free at import (the CLI checks words before loading anything): ``TOY_SETTINGS`` is built on first use.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from vp2p.checks import SD15
from vp2p.toy.world import VOCABULARY

# What the toy model's settings change from the official ones.
TOY_CHANGES = dict(tune_steps=50, tune_lr=3e-4, num_steps=25, inner_steps=2, null_text_lr=8e-2)


def __getattr__(name: str):
    if name == "TOY_SETTINGS":  # a frozen Settings: no caller can change another's
        from vp2p.workflow import Settings

        globals()[name] = Settings(**TOY_CHANGES)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def unknown_toy_words(prompt: str) -> list[str]:
    """The words of ``prompt`` (lower case, punctuation dropped, as CLIP's tokenizer reads them) the toy model was
    never trained on."""
    known = set(VOCABULARY)
    return [word for word in dict.fromkeys(re.findall(r"[a-z0-9']+", prompt.lower())) if word not in known]


def check_toy_words(prompts: dict[str, str]) -> None:
    """Refuse prompts with words the toy model does not know (``prompts``: role -> prompt).

    An error, not a warning: the toy model was trained on captions of its synthetic world only, so an unknown word
    reaches it as a string of single characters it never saw, and the edit is noise — found out only after minutes
    of tuning and inversion, and most often because a real clip was given to the default model.
    """
    for role, prompt in prompts.items():
        unknown = unknown_toy_words(prompt)
        if unknown:
            raise ValueError(
                f"the toy model does not know {', '.join(map(repr, unknown))} (in the {role} {prompt!r}): it only "
                f"draws its synthetic world of coloured shapes, with the words {' '.join(VOCABULARY)}. "
                f"Describe a toy scene with those words, or for real footage use Stable Diffusion: model={SD15} "
                "(a GPU and internet) or a local Stable Diffusion folder")


def world_frame_size(model) -> int | None:
    """The frame size a model folder makes (its UNet's sample size × its VAE's factor), read from its configs
    without loading it; ``"toy"`` is the bundled model; None for what is not a local folder (a hub id)."""
    folder = Path(__file__).parent / "model" if str(model) == "toy" else Path(model).expanduser()
    try:
        unet = json.loads((folder / "unet" / "config.json").read_text())
        vae = json.loads((folder / "vae" / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return unet["sample_size"] * 2 ** (len(vae["block_out_channels"]) - 1)


def check_toy_world_model(model, command: str) -> None:
    """``command`` (the demo, the toy bench) renders toy-world clips at 64×64 and judges them with the toy
    evaluator: refuse, before loading anything, a model that is not of that world (Stable Diffusion, a hub id)."""
    size = world_frame_size(model)
    if size != 64:
        made = f"makes {size}x{size} frames" if size else "is not a local model folder"
        raise ValueError(f"{command} runs models of the toy world (64x64 clips of coloured shapes, judged by the toy "
                         f"evaluator); model={str(model)!r} {made}. Use the default model='toy' (or a retrained toy "
                         f"model's folder); to edit with Stable Diffusion, run `vp2p edit VIDEO --model {model}`")
