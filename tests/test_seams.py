"""The replaceable steps (``vp2p.seams``) and ``exercises.use``: with nothing replaced the method is what it was, bit
for bit; a replacement runs where vp2p's step ran, is undone on leaving, and keeps its results out of vp2p's caches."""

import numpy as np
import pytest
import torch

import vp2p
from vp2p import seams, workflow
from vp2p.course.exercises import use
from vp2p.course.clip import SCENE
from vp2p.toy import world


def test_every_step_names_a_vp2p_function_and_is_it_when_nothing_is_replaced():
    assert seams.replaced() == []
    for name in seams.SEAMS:
        assert callable(seams.default(name)) and seams.step(name) is seams.default(name), name


def test_use_swaps_a_step_in_and_puts_vp2p_back_even_after_an_error():
    def mine(*args):
        return "mine"

    with pytest.raises(RuntimeError):
        with use(guide=mine):
            assert seams.step("guide") is mine and seams.replaced() == ["guide"]
            raise RuntimeError("the student's cell failed")
    assert seams.step("guide") is seams.default("guide") and seams.replaced() == []
    with use(guide=mine), use(guide=len):  # nested: the inner one wins, the outer one comes back
        assert seams.step("guide") is len
    assert seams.replaced() == []


def test_use_names_the_steps_when_a_name_or_a_function_is_wrong():
    with pytest.raises(ValueError, match="blend_mask"):
        with use(blend_masks=lambda *a: None):
            pass
    with pytest.raises(TypeError, match="not a function"):
        with use(blend_mask="blend_mask"):
            pass
    assert seams.replaced() == []


def test_cache_keys_name_the_replaced_steps_of_their_stage_only():
    def frame0(hidden, num_frames):
        return hidden

    def other(hidden, num_frames):
        return hidden * 1

    assert seams.cache_entries("tune") == {} and seams.cache_entries("invert") == {}
    with use(frame_context=frame0, blend_mask=len):
        tune, invert = seams.cache_entries("tune"), seams.cache_entries("invert")
        assert list(tune["replaced_steps"]) == ["frame_context"] == list(invert["replaced_steps"])
    with use(frame_context=other):
        assert seams.cache_entries("tune") != tune  # another body, another key
    with use(frame_context=frame0):
        assert seams.cache_entries("tune") == tune  # the same body again: the same key (reused)
    with use(null_text_loss=frame0):
        assert seams.cache_entries("tune") == {} and "null_text_loss" in seams.cache_entries("invert")["replaced_steps"]


def forward(name, calls):
    """A stand-in student step: counts its calls and returns what vp2p's own returns."""
    own = seams.default(name)

    def step(*args, **kwargs):
        calls[name] = calls.get(name, 0) + 1
        return own(*args, **kwargs)

    return step


def small_run(pipe, frames, settings, work_dir=None):
    """Tune, invert and make three edits (Replace with LocalBlend, Refine, Reweight on Refine): every output."""
    run = workflow.prepare(pipe, frames, SCENE.caption, settings, work_dir=work_dir, progress=False)
    blue, striped = SCENE.replace(color="blue").caption, SCENE.replace(attribute="striped").caption
    out = {"losses": torch.tensor(run.tuning.losses), "z_T": run.inversion.z_T,
           "nulls": run.inversion.null_embeddings, "reconstruction": torch.from_numpy(run.inversion.reconstruction)}
    out["replace"] = workflow.edit_run(pipe, run, [SCENE.caption, blue], settings, progress=False,
                                       blend_words=["circle", "circle"]).latents
    out["refine"] = workflow.edit_run(pipe, run, [SCENE.caption, striped], settings, progress=False,
                                      is_word_swap=False).latents
    out["reweight"] = workflow.edit_run(pipe, run, [SCENE.caption, striped], settings, progress=False,
                                        is_word_swap=False, eq_params={"striped": 2.0},
                                        blend_words=["circle", "circle"]).latents
    return out


def test_the_method_through_every_seam_is_bit_identical_to_the_method(tmp_path):
    """The certified method must not move: a toy tune + invert + Replace/Refine/Reweight edit run with every step
    replaced by a function that forwards to vp2p's own gives exactly (max difference 0.0) the outputs of the plain
    run — and every step was called. (The same comparison against the code before the seams existed gave 0.0 too.)"""
    pipe = vp2p.load_pipeline("toy")
    settings = workflow.settings_for(pipe).replace(tune_steps=4, num_steps=5, inner_steps=2)
    frames = world.render(SCENE, num_frames=3, size=64).frames
    plain = small_run(pipe, frames, settings, tmp_path)
    calls = {}
    with use(**{name: forward(name, calls) for name in seams.SEAMS}):
        through = small_run(pipe, frames, settings, tmp_path)  # the same work folder: the cache must not serve it
    assert set(calls) == set(seams.SEAMS)
    assert {k: float((plain[k].float() - through[k].float()).abs().max()) for k in plain} == dict.fromkeys(plain, 0.0)
    assert len(list(tmp_path.glob("tuned-*"))) == 2 and len(list(tmp_path.glob("inversion-*"))) == 2
    again = small_run(pipe, frames, settings, tmp_path)  # vp2p's own again: its cache, the same numbers
    assert all(torch.equal(plain[k], again[k]) for k in plain)


def test_a_different_step_changes_the_edit():
    """A replaced step really runs: a blend mask that keeps everything of the target (no blend) gives another edit."""
    from vp2p.course.exercises.plug import lab

    setup = lab.__wrapped__()  # not the course's shared one: this test's own work folder is set below
    setup.settings = setup.settings.replace(tune_steps=2, num_steps=4, inner_steps=1)
    setup.work_dir = None
    run = setup.prepare()
    ours, _ = setup.edit(run)

    def everywhere(maps, token_indices, latent_size, threshold=0.3):
        return torch.ones(maps.shape[0], maps.shape[1], *latent_size, dtype=torch.bool)

    with use(blend_mask=everywhere):
        theirs, _ = setup.edit(run)
    assert not np.array_equal(ours.edited, theirs.edited)
    assert np.array_equal(ours.source, theirs.source)  # the source branch is never blended


def test_vp2p_own_lab_edits_are_saved_and_never_serve_a_students_step(tmp_path):
    """The lab's own edits are saved under the key of their inputs: a new process (an empty memo) reads the same
    videos back; a student's step in place neither reads nor writes that file."""
    from vp2p.course.exercises.plug import SavedEdit, lab

    setup = lab.__wrapped__()
    setup.settings = setup.settings.replace(tune_steps=2, num_steps=4, inner_steps=1)
    setup.work_dir = tmp_path
    run = setup.prepare()
    made, _ = setup.edit(run)
    saved = list(tmp_path.glob("edit-*.npz"))
    assert len(saved) == 1 and not isinstance(made, SavedEdit)
    setup.edits.clear()  # what a new notebook's process starts with
    read, _ = setup.edit(run)
    assert isinstance(read, SavedEdit) and np.array_equal(read.videos, made.videos)
    refined, _ = setup.edit(run, "refine")  # another edit: another file
    assert len(list(tmp_path.glob("edit-*.npz"))) == 2 and not np.array_equal(refined.edited, made.edited)

    def everywhere(maps, token_indices, latent_size, threshold=0.3):
        return torch.ones(maps.shape[0], maps.shape[1], *latent_size, dtype=torch.bool)

    with use(blend_mask=everywhere):
        theirs, _ = setup.edit(run)
    assert not isinstance(theirs, SavedEdit) and not np.array_equal(theirs.edited, made.edited)
    assert len(list(tmp_path.glob("edit-*.npz"))) == 2
