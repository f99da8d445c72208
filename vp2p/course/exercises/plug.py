"""The student's function in the real pipeline: ``use`` swaps it in for vp2p's step, ``run_both`` shows the edit it
makes beside vp2p's.

``use(blend_mask=my_blend_mask)`` is a context manager around ``vp2p.seams``: inside it, every tuning, inversion
and edit calls the student's function where vp2p calls its own; on leaving, vp2p's are back (also after an error).
Cached tuned weights and inversions are keyed by the replaced steps (``vp2p.seams.cache_entries``), so a
student's run never reuses vp2p's cache, nor the other way round.

``run_both(**steps)`` runs a short edit of the course clip (``Lab``: the toy model with its settings, 4 frames; its
tuning, inversion and vp2p's edits cached) once with vp2p's steps and once inside ``use(**steps)`` — tuning and
inverting again when a replaced step belongs to those stages — and measures both.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field

import numpy as np

from vp2p import seams
from vp2p.io.storage import atomic_path, cache_key

# The short run every comparison and break-it shares: the course clip with half its frames, the toy settings (fewer
# steps than 25 DDIM / 50 tuning make edits whose object flickers even when nothing is broken), null-text inversion
# (negative-prompt inversion would spare a third of a re-run, but its edit of this clip flickers: 0.87 against
# null-text's 0.24 — and a break-it must start from an edit that does not).
LAB_FRAMES = 4
LAB_CHANGES: dict = {}
# Which edit shows each step: Replace (a colour swap) unless the step belongs to Refine or Reweight.
REFINE_STEPS = ("refinement_mapper", "refine_maps")
REWEIGHT_STEPS = ("reweight_maps", "equalizer")


@contextlib.contextmanager
def use(**steps):
    """Run the pipeline with the given functions in place of vp2p's steps (names: ``vp2p.seams.SEAMS``), e.g.
    ``with use(blend_mask=blend_mask): vp2p.edit(...)``; vp2p's own are back when the block ends."""
    before = seams.replace(steps)
    try:
        yield
    finally:
        seams.restore(before)


@dataclass
class Lab:
    """The toy model and the course clip, small: what ``run_both`` and the break-its edit."""

    pipe: object
    scene: object  # vp2p.toy.world.Scene
    clip: object  # vp2p.toy.world.ToyVideo (frames and true masks)
    settings: object  # vp2p.workflow.Settings
    work_dir: object  # pathlib.Path (None: nothing cached)
    edits: dict = field(default_factory=dict)  # vp2p's own edits, by inversion and edit: made once per process

    @property
    def frames(self) -> np.ndarray:
        return self.clip.frames

    def describe(self) -> str:
        s = self.settings
        return (f"the course clip, {len(self.frames)} frames, {s.tune_steps} tuning steps, {s.num_steps} DDIM steps, "
                f"{s.inner_steps} null-text iterations a step")

    def prepare(self, settings=None):
        """Tune and invert (cached in ``work_dir`` under the key of every input, replaced steps included)."""
        from vp2p import workflow

        return workflow.prepare(self.pipe, self.frames, self.scene.caption, settings or self.settings,
                                work_dir=self.work_dir, progress=False)

    def edit(self, run, kind: str = "replace", settings=None, **options):
        """One edit of a prepared ``run``: "replace" (red → blue, blended on the circle), "refine" (+ striped) or
        "reweight" (+ striped, weight 2); returns (edit, target scene): an ``EditResult``, or a ``SavedEdit``
        (its videos alone) when vp2p's own edit was made before, in this process or saved in ``work_dir``."""
        from vp2p import workflow

        prompts, target, options = self.edit_spec(kind, options)
        settings = settings or self.settings
        if seams.replaced():  # a student's step in place: never from (or into) the memo
            return workflow.edit_run(self.pipe, run, prompts, settings, progress=False, **options), target
        key = cache_key(inversion=run.inversion.key, kind=kind, options=repr(sorted(options.items())),
                        settings=repr(settings))
        if key not in self.edits:
            saved = None if self.work_dir is None else self.work_dir / f"edit-{key}.npz"
            if saved is not None and saved.exists():
                self.edits[key] = SavedEdit.load(saved)
            else:
                self.edits[key] = workflow.edit_run(self.pipe, run, prompts, settings, progress=False, **options)
                if saved is not None:
                    SavedEdit.save(saved, self.edits[key].videos)
        return self.edits[key], target

    def edit_spec(self, kind: str, options: dict):
        if kind == "replace":
            target = self.scene.replace(color="blue")
            return [self.scene.caption, target.caption], target, {"blend_words": ["circle", "circle"], **options}
        target = self.scene.replace(attribute="striped")
        extra = {"is_word_swap": False, **({"eq_params": {"striped": 2.0}} if kind == "reweight" else {}), **options}
        if kind not in ("refine", "reweight"):
            raise ValueError(f"edit kind {kind!r}: choose 'replace', 'refine' or 'reweight'")
        return [self.scene.caption, target.caption], target, extra


@dataclass
class SavedEdit:
    """vp2p's own edit of the lab, as saved: the videos of its branches (what the comparisons read). Every
    notebook compares against the same few edits; saving them spares each notebook that runs after the first a
    few seconds per edit. The file is named by the key of every input (``Lab.edit``)."""

    videos: np.ndarray  # uint8 (branches, F, H, W, 3)

    @property
    def edited(self) -> np.ndarray:
        return self.videos[1]

    @staticmethod
    def save(path, videos: np.ndarray) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to the temporary name
                np.savez(f, videos=videos)

    @classmethod
    def load(cls, path) -> "SavedEdit":
        with np.load(path) as data:
            return cls(data["videos"])


@functools.lru_cache(maxsize=1)
def lab() -> Lab:
    """The shared small run: the toy model (loaded once per process) and the course clip, 4 frames."""
    import vp2p
    from vp2p.course.clip import SCENE, frame_size, runs_dir
    from vp2p.toy import world
    from vp2p.workflow import settings_for

    pipe = vp2p.load_pipeline("toy")
    video = world.render(SCENE, num_frames=LAB_FRAMES, size=frame_size(pipe))
    return Lab(pipe, SCENE, video, settings_for(pipe).replace(**LAB_CHANGES), runs_dir() / "exercises")


def measure(clip, target, edited: np.ndarray, inversion=None) -> dict:
    """What the course reads off an edit of the toy clip: the target hit (did the evaluator read the target
    scene? 1 or 0), the background PSNR against the input (dB), the object's look flickering from frame to frame
    (0 = one look, 1 = a new look each frame), and with ``inversion`` its reconstruction PSNR (dB)."""
    from vp2p.paper import metrics

    numbers = {"target hit": metrics.toy_target_hit(edited, target),
               "background PSNR": metrics.toy_background_psnr(clip, edited),
               "flicker": metrics.toy_appearance_flicker(edited)}
    if inversion is not None:
        numbers["reconstruction PSNR"] = float(np.mean(inversion.frame_psnr))
    return numbers


@dataclass
class Comparison:
    """Two runs of the same short edit — vp2p's (or the correct one) and another — their videos and numbers."""

    title: str
    names: tuple[str, str]  # e.g. ("vp2p", "yours") or ("correct", "broken")
    videos: dict = field(default_factory=dict)  # name -> uint8 (F, H, W, 3); "input" first
    numbers: dict = field(default_factory=dict)  # name -> {measure: value}
    about: str = ""  # the run: clip and settings

    @property
    def max_pixel_difference(self) -> int:
        a, b = (self.videos[n].astype(np.int16) for n in self.names)
        return int(np.abs(a - b).max())

    def table(self) -> str:
        first, second = self.names
        width = max(12, *(len(name) + 2 for name in self.names))  # a long run name keeps its columns apart
        rows = [f"{'':22s}{first:>{width}s}{second:>{width}s}"]
        for key in self.numbers[first]:
            a, b = self.numbers[first][key], self.numbers[second].get(key)
            rows.append(f"{key:22s}{fmt(a):>{width}s}{fmt(b):>{width}s}")
        rows.append(f"largest pixel difference between the two edits: {self.max_pixel_difference} of 255")
        return "\n".join(rows)

    def show(self, save=None):
        """Print the table and draw the videos (rows: input, then the two runs)."""
        from vp2p.inspect import viz

        print(f"{self.title}\n({self.about})\n{self.table()}")
        fig = viz.video_strip(self.videos, title=self.title)
        if save is not None:
            viz.save(fig, save)
        return fig


def fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def rerun_stages(stages: set[str]) -> str:
    """What ``run_both`` ran again under the student's steps, in words: a replaced tuning step changes the weights,
    so the inversion reruns too (with vp2p's inversion steps); a replaced inversion step reruns the inversion on
    the cached tuning."""
    if "tune" in stages and "invert" in stages:
        return "tuned and inverted"
    return "tuned (and inverted again on its weights)" if "tune" in stages else "inverted (on the cached tuning)"


def run_both(rerun: bool = True, **steps) -> Comparison:
    """The short edit with vp2p's steps and with ``steps`` in their place (``use``), side by side, measured.

    The edit is a colour swap (Replace with LocalBlend) unless a step belongs to Refine or Reweight; tuning and
    inversion are run again under ``use`` when a replaced step belongs to them (``vp2p.seams``) — unless ``rerun``
    is False: then only the edit runs with ``steps`` (seconds instead of a minute)."""
    kind = ("reweight" if set(steps) & set(REWEIGHT_STEPS) else "refine" if set(steps) & set(REFINE_STEPS)
            else "replace")
    setup = lab()
    run = setup.prepare()
    ours, target = setup.edit(run, kind)
    with use(**steps):
        stages = {stage for name in steps for stage in seams.SEAMS[name].stages}
        theirs_run = setup.prepare() if stages and rerun else run
        theirs, _ = setup.edit(theirs_run, kind)
    names = ", ".join(steps)
    how = "" if theirs_run is run else f" ({rerun_stages(stages)} with yours too)"
    comparison = Comparison(f"the {kind} edit with vp2p's {names} and with yours{how}", ("vp2p", "yours"))
    comparison.about = setup.describe()
    comparison.videos = {"input": setup.frames, "vp2p": ours.edited, "yours": theirs.edited}
    comparison.numbers = {"vp2p": measure(setup.clip, target, ours.edited, run.inversion),
                          "yours": measure(setup.clip, target, theirs.edited, theirs_run.inversion)}
    return comparison
