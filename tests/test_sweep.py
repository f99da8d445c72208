"""A sweep edits several values of a knob in one batch (``vp2p.workflow.edit_sweep``, ``controllers.stack_edits``):
each value's edit must equal the edit ``edit_run`` makes of it alone, up to float rounding."""

import numpy as np
import pytest
import torch

import vp2p
from tiny import smooth_video
from vp2p.controllers import stack_edits
from vp2p.editing import make_controller
from vp2p.workflow import Settings, edit_run, edit_sweep, prepare

SOURCE = "a red circle on the grass"
SWAP = "a blue circle on the grass"
REFINED = "a red striped circle on the grass"
SETTINGS = Settings(tune_steps=2, tune_lr=1e-3, method="fast", num_steps=4, blend_start=0.0)
BLEND = ["circle", "circle"]


@pytest.fixture(scope="module")
def prepared(tiny_model_dir, tmp_path_factory):
    pipe = vp2p.load_pipeline(tiny_model_dir, device="cpu", dtype=torch.float32)
    run = prepare(pipe, smooth_video(3, seed=0), SOURCE, SETTINGS, work_dir=tmp_path_factory.mktemp("sweep"),
                  progress=False)
    return pipe, run


def assert_same_edit(swept, alone):
    torch.testing.assert_close(swept.latents, alone.latents, rtol=0, atol=2e-4)  # measured ≤ 5e-5; the values differ by ~0.05
    assert np.abs(swept.videos.astype(int) - alone.videos.astype(int)).max() <= 1
    assert swept.prompts == alone.prompts


def test_a_cross_window_sweep_in_one_batch_equals_one_edit_per_window(prepared):
    pipe, run = prepared
    windows = [0.0, 0.5, 1.0]
    swept = edit_sweep(pipe, run, [SOURCE, SWAP], SETTINGS, "cross_replace_steps", windows, progress=False,
                       blend_words=BLEND)
    assert len(swept) == 3 and all(s.controller is swept[0].controller for s in swept)  # one batch
    alone = [edit_run(pipe, run, [SOURCE, SWAP], SETTINGS, progress=False, blend_words=BLEND,
                      cross_replace_steps=w) for w in windows]
    for s, a in zip(swept, alone):
        assert_same_edit(s, a)
        torch.testing.assert_close(s.maps(), a.maps(), rtol=0, atol=1e-5)  # its own two branches
        assert torch.equal(s.blend_masks, a.blend_masks)
    # the windows differ, so the edits must: the test could fail
    assert np.abs(swept[0].edited.astype(int) - swept[2].edited.astype(int)).max() > 5


def test_a_weight_sweep_of_refine_equals_one_edit_per_weight(prepared):
    pipe, run = prepared
    weights = [{"striped": w} for w in (0.0, 1.0, 4.0)]
    swept = edit_sweep(pipe, run, [SOURCE, REFINED], SETTINGS, "eq_params", weights, progress=False,
                       is_word_swap=False, blend_words=BLEND)
    for s, w in zip(swept, weights):
        assert_same_edit(s, edit_run(pipe, run, [SOURCE, REFINED], SETTINGS, progress=False, is_word_swap=False,
                                     blend_words=BLEND, eq_params=w))


def test_values_with_another_self_window_get_batches_of_their_own(prepared):
    pipe, run = prepared
    swept = edit_sweep(pipe, run, [SOURCE, SWAP], SETTINGS, "self_replace_steps", [0.0, 0.5, 1.0], progress=False)
    assert len({id(s.controller) for s in swept}) == 3
    assert_same_edit(swept[1], edit_run(pipe, run, [SOURCE, SWAP], SETTINGS, progress=False, self_replace_steps=0.5))


def test_a_word_swap_and_a_refinement_stack_into_one_batch(prepared):
    pipe, run = prepared
    steps = run.inversion.num_steps
    controllers = [make_controller(pipe, [SOURCE, SWAP], steps, blend_words=BLEND),
                   make_controller(pipe, [SOURCE, REFINED], steps, is_word_swap=False, blend_words=BLEND)]
    batch = vp2p.edit(pipe, run.inversion, [SOURCE, SWAP, REFINED], controller=stack_edits(controllers),
                      guidance_scale=SETTINGS.guidance_scale, progress=False)
    for k, target in enumerate([SWAP, REFINED], 1):
        extra = {} if target == SWAP else {"is_word_swap": False}
        alone = vp2p.edit(pipe, run.inversion, [SOURCE, target], guidance_scale=SETTINGS.guidance_scale,
                          progress=False, blend_words=BLEND, **extra)
        assert_same_edit(batch.target(k), alone)


def test_edits_that_cannot_share_a_batch_are_refused_by_name(prepared):
    pipe, run = prepared
    steps = run.inversion.num_steps
    a = make_controller(pipe, [SOURCE, SWAP], steps, self_replace_steps=0.2)
    b = make_controller(pipe, [SOURCE, SWAP], steps, self_replace_steps=0.8)
    with pytest.raises(ValueError, match="self-attention window"):
        stack_edits([a, b])
    with pytest.raises(ValueError, match=r"\[source, target\]"):
        edit_sweep(pipe, run, [SOURCE, SWAP, REFINED], SETTINGS, "cross_replace_steps", [0.2], progress=False)
