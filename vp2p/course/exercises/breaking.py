"""Break it: the short edit of the course clip (``plug.Lab``) with one piece of Video-P2P broken, measured against
the correct run. Each returns a ``plug.Comparison`` (videos and numbers of both runs); a notebook asks the student
to predict first, then runs it and reads the numbers.

* ``frame_keys_from_frame_i`` (notebook 01): frame attention reads each frame's own keys and values — the image
  model's self-attention — instead of frame 0's. Tuned, inverted and edited so.
* ``tune_keys_and_values`` (notebook 02): tuning trains ``to_k``/``to_v`` of frame and cross-attention too.
* ``per_frame_null``: one null-text embedding per frame and step instead of one shared by all frames (notebook 03b
  makes the same comparison from its own inversions of the whole clip, with ``compared``).
* ``coupled_guidance``: the target branch gets the source's optimised null embeddings (notebook 04 breaks it on
  the whole clip).

The correct run's tuning and inversion are cached (``plug.Lab.prepare``), and so are the broken ones that go
through ``vp2p.workflow``; tuning the keys and values is redone each time (its weights are not the paper's set,
which the cache saves).
"""

from __future__ import annotations

import torch

from vp2p.course.exercises.plug import Comparison, lab, measure, use


def compared(title: str, clip, runs: dict, about: str = "", optimised: bool = False) -> Comparison:
    """A Comparison of two edits of the toy ``clip`` (``world.ToyVideo``) made elsewhere — e.g. from a notebook's
    own inversions, which spares it a second run on the short clip: ``runs`` name -> (EditResult, target scene,
    Inversion), the correct one first. ``optimised``: add each inversion's "optimised numbers"."""
    names = tuple(runs)
    comparison = Comparison(title, names, about=about)
    comparison.videos = {"input": clip.frames, **{name: runs[name][0].edited for name in names}}
    comparison.numbers = {name: measure(clip, target, result.edited, inversion)
                          for name, (result, target, inversion) in runs.items()}
    if optimised:
        for name, (_, _, inversion) in runs.items():
            comparison.numbers[name]["optimised numbers"] = inversion.trainable_count()
    return comparison


def own_frame(hidden: torch.Tensor, num_frames: int) -> torch.Tensor:
    """The broken frame context: every frame's keys and values from itself (what the image model does)."""
    return hidden


def frame_keys_from_frame_i() -> Comparison:
    """Tune, invert and edit with frame attention's keys and values taken from frame i instead of frame 0."""
    setup = lab()
    correct = setup.prepare()
    runs = {"frame 0 (correct)": (*setup.edit(correct), correct.inversion)}
    with use(frame_context=own_frame):
        broken = setup.prepare()
        runs["frame i (broken)"] = (*setup.edit(broken), broken.inversion)
    return compared("keys and values of frame attention from frame 0, and from frame i", setup.clip, runs,
                    about=setup.describe())


def coupled_guidance() -> Comparison:
    """The same edit with the target branch guided by the source's optimised null embeddings (not decoupled)."""
    setup = lab()
    run = setup.prepare()
    runs = {"decoupled (correct)": (*setup.edit(run), run.inversion),
            "coupled (broken)": (*setup.edit(run, decoupled=False), run.inversion)}
    return compared("decoupled guidance, and the target guided with the source's null embeddings", setup.clip, runs,
                    about=setup.describe())


def per_frame_null() -> Comparison:
    """Null-text inversion with one embedding per frame and step instead of one shared by the frames; the edit
    from each. ``Comparison.numbers`` adds "optimised numbers" (the paper's Table 2 compares them)."""
    setup = lab()
    runs = {}
    for name, method in (("shared (correct)", "null-text"), ("per frame (broken)", "null-text-per-frame")):
        settings = setup.settings.replace(method=method)
        run = setup.prepare(settings)
        runs[name] = (*setup.edit(run, settings=settings), run.inversion)
    return compared("one null embedding shared by the frames, and one per frame", setup.clip, runs,
                    about=setup.describe(), optimised=True)


KEYS_AND_VALUES = ("attn1.to_k", "attn1.to_v", "attn2.to_k", "attn2.to_v")


def tune_keys_and_values() -> Comparison:
    """Tune the keys and values of frame and cross-attention too, then invert and edit. ``Comparison.numbers`` adds
    "tuned numbers" and "final tuning loss" (the mean of the last 5 steps). The keys and values are put back
    afterwards (``restore_base_weights`` knows only the paper's tuned set)."""
    from vp2p import invert
    from vp2p.inflation import restore_base_weights, trainable_parameters
    from vp2p.tuning import tune
    from vp2p.workflow import Run, inversion_options

    setup = lab()
    pipe, settings = setup.pipe, setup.settings
    correct = setup.prepare()
    runs = {"queries (correct)": (*setup.edit(correct), correct.inversion)}
    tuned = {"queries (correct)": correct.tuning}
    extra = {n: p for n, p in pipe.unet.named_parameters() if any(k in n for k in KEYS_AND_VALUES)}
    kept = {n: p.detach().clone() for n, p in extra.items()}
    try:
        restore_base_weights(pipe.unet)
        tuning = tune(pipe, setup.frames, setup.scene.caption, steps=settings.tune_steps, lr=settings.tune_lr,
                      seed=settings.seed, latents=settings.tune_latents, progress=False,
                      parameters={**trainable_parameters(pipe.unet), **extra})
        inversion = invert(pipe, setup.frames, setup.scene.caption, progress=False, **inversion_options(settings))
        broken = Run(tuning, inversion)
        runs["+ keys, values (broken)"] = (*setup.edit(broken), inversion)
        tuned["+ keys, values (broken)"] = tuning
    finally:
        with torch.no_grad():
            for name, p in extra.items():
                p.copy_(kept[name])
        restore_base_weights(pipe.unet)
    comparison = compared("tuning the queries (the paper), and the keys and values too", setup.clip, runs,
                          about=setup.describe())
    for name, tuning in tuned.items():
        comparison.numbers[name]["tuned numbers"] = tuning.trained
        comparison.numbers[name]["final tuning loss"] = float(sum(tuning.losses[-5:]) / 5)
    return comparison
