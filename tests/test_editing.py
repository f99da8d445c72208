"""Editing (vp2p.edit, Algorithm 1) on the tiny inflated pipeline: identities the edits must keep, and the errors.

One module-wide inversion (null-text, 6 steps, 2 inner iterations, 4 frames) is edited many ways; each edit is
a batch of 2 branches x 4 frames, guided, 6 steps.
"""

import numpy as np
import pytest
import torch

import vp2p
from tiny import inflated_pipeline, smooth_video
from vp2p.controllers import AttentionStore
from vp2p.ddim import DDIMSchedule
from vp2p.sampling import sample

F = 4
STEPS = 6
SOURCE = "a red circle on the grass"
TARGET = "a blue circle on the grass"


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    return inflated_pipeline(tiny_model_dir)


@pytest.fixture(scope="module")
def inversion(pipe):
    torch.manual_seed(0)
    return vp2p.invert(pipe, smooth_video(F), SOURCE, method="null-text", num_steps=STEPS, inner_steps=2,
                       reconstruct=False, progress=False)


def edit(pipe, inversion, prompts, **options):
    return vp2p.edit(pipe, inversion, prompts, progress=False, **options)


def branch(latents, b):
    return latents[b * F : (b + 1) * F]


def test_identical_prompts_with_full_injection_reproduce_the_source(pipe, inversion):
    result = edit(pipe, inversion, [SOURCE, SOURCE], cross_replace_steps=1.0, self_replace_steps=1.0,
                  decoupled=False)
    assert result.videos.shape == (2, F, 32, 32, 3) and result.videos.dtype == np.uint8
    assert np.abs(result.source.astype(int) - result.edited.astype(int)).max() <= 1
    assert torch.allclose(branch(result.latents, 0), branch(result.latents, 1), atol=1e-4, rtol=0)


def test_without_injection_the_target_branch_is_plain_guided_sampling(pipe, inversion):
    # Algorithm 1 with nothing injected: the target branch is the target prompt sampled from z_T with the initial
    # empty-prompt embedding at w = 7.5, independently of the source branch sharing its batch.
    result = edit(pipe, inversion, [SOURCE, TARGET], cross_replace_steps=0.0, self_replace_steps=0.0)
    schedule = DDIMSchedule.from_scheduler(pipe.scheduler, STEPS)
    cond, empty = pipe.encode_text([TARGET, ""]).chunk(2)
    alone = sample(pipe.unet, inversion.z_T.clone(), schedule, cond, lambda i: empty, torch.tensor([7.5]), F,
                   progress=False)
    assert torch.allclose(branch(result.latents, 1), alone, atol=1e-4, rtol=0)
    # …and injecting the source's attention changes it
    injected = edit(pipe, inversion, [SOURCE, TARGET], cross_replace_steps=1.0, self_replace_steps=1.0)
    assert (branch(injected.latents, 1) - alone).abs().max() > 1e-2


def test_local_blend_with_an_empty_mask_returns_the_source(pipe, inversion):
    # the API refuses a threshold of 1 or more (its mask is empty: the edit would equal the reconstruction)…
    with pytest.raises(ValueError, match=r"^threshold=1.1 must be between 0 and 1, both excluded"):
        edit(pipe, inversion, [SOURCE, TARGET], blend_words=[["circle"], ["circle"]], threshold=1.1)
    # …which is what the blend does with one set behind the checks' back
    controller = vp2p.make_controller(pipe, [SOURCE, TARGET], STEPS, blend_words=[["circle"], ["circle"]],
                                      blend_start=0.0)
    controller.local_blend.threshold = 1.1
    result = edit(pipe, inversion, [SOURCE, TARGET], controller=controller)
    masks = result.blend_masks
    assert masks.shape == (STEPS, 2, F, 16, 16) and not masks.any()
    assert torch.equal(branch(result.latents, 1), branch(result.latents, 0))
    # A threshold that keeps a partial mask (the tiny model's maps are nearly flat: 0.3 keeps everything, 0.95
    # about half): after the last blend, the target equals the source exactly outside the mask, not inside it.
    partial = edit(pipe, inversion, [SOURCE, TARGET], blend_words=[["circle"], ["circle"]], threshold=0.95,
                   blend_start=0.0)
    mask = partial.blend_masks[-1][1][:, None].expand(-1, 4, -1, -1)  # target's (F, C, 16, 16)
    coverage = mask.float().mean().item()
    assert 0.1 < coverage < 0.9, coverage  # measured 0.57
    source, target = branch(partial.latents, 0), branch(partial.latents, 1)
    assert torch.equal(target[~mask], source[~mask])
    assert (target[mask] - source[mask]).abs().max() > 1e-2


def test_reweight_by_one_changes_nothing(pipe, inversion):
    plain = edit(pipe, inversion, [SOURCE, TARGET])
    ones = edit(pipe, inversion, [SOURCE, TARGET], eq_params={"words": ["blue"], "values": [1.0]})
    assert torch.allclose(ones.latents, plain.latents, atol=1e-6, rtol=0)
    four = edit(pipe, inversion, [SOURCE, TARGET], eq_params={"blue": 4.0})
    assert (branch(four.latents, 1) - branch(plain.latents, 1)).abs().max() > 1e-3  # the weight is applied
    assert torch.allclose(branch(four.latents, 0), branch(plain.latents, 0), atol=1e-6, rtol=0)


def test_stored_maps_are_per_frame_distributions(pipe, inversion):
    full = edit(pipe, inversion, [SOURCE, TARGET], resolutions=[16, 8], num_tokens=None)  # keep all 77 tokens
    for h in (16, 8):
        maps = full.maps(h)
        assert maps.shape == (2, F, h, h, 77)
        assert torch.isfinite(maps).all() and maps.min() >= 0
        # softmax rows, averaged over heads, layers and steps: still distributions over the 77 tokens (the
        # target's maps too: its injected maps are the source's through a permutation mapper)
        assert (maps.sum(-1) - 1).abs().max() < 1e-4
    assert full.maps(8, step=STEPS - 1).shape == (2, F, 8, 8, 77)
    # frames attend differently: the maps are really per frame
    assert (full.maps(8)[0, 0] - full.maps(8)[0, F - 1]).abs().max() > 1e-4

    # by default only the prompts' own tokens are kept: BOS + 6 words + EOS = 8
    default = edit(pipe, inversion, [SOURCE, TARGET], resolutions=[16, 8])
    for h in (16, 8):
        maps = default.maps(h)
        assert maps.shape == (2, F, h, h, 8)
        # after truncation a row holds part of a distribution (padding takes the rest): at most 1, and exactly
        # the leading tokens of the full maps
        assert maps.sum(-1).max() <= 1 + 1e-5
        assert torch.allclose(maps, full.maps(h)[..., :8], atol=1e-5)
    assert default.maps(8, step=0).shape == (2, F, 8, 8, 8)


def test_decoupled_guidance_changes_only_the_target(pipe, inversion):
    # the optimised null embeddings differ from the empty prompt's, so decoupling must matter
    empty = pipe.encode_text("").float()
    assert (inversion.null_embeddings - empty).abs().max() > 1e-3
    decoupled = edit(pipe, inversion, [SOURCE, TARGET], decoupled=True)
    coupled = edit(pipe, inversion, [SOURCE, TARGET], decoupled=False)
    assert torch.allclose(branch(decoupled.latents, 0), branch(coupled.latents, 0), atol=1e-5, rtol=0)
    assert (branch(decoupled.latents, 1) - branch(coupled.latents, 1)).abs().max() > 0.05  # measured 0.68
    assert decoupled.decoupled and not coupled.decoupled


def test_refine_adds_a_word(pipe, inversion):
    # the suggested fix for Replace's word-count error works: Refine with an inserted word
    result = edit(pipe, inversion, [SOURCE, "a red striped circle on the grass"], is_word_swap=False,
                  num_tokens=None)
    assert result.videos.shape == (2, F, 32, 32, 3)
    maps = result.maps()
    assert maps.shape[-1] == 77
    assert (maps[0].sum(-1) - 1).abs().max() < 1e-5  # the source's maps are untouched distributions
    # the target's aligned tokens take the source's maps and "striped" keeps its own, as in prompt-to-prompt
    # (no renormalisation): its rows sum to 1 only up to that new token's share (measured 7e-4)
    assert (maps[1].sum(-1) - 1).abs().max() < 1e-2


# -- errors -------------------------------------------------------------------------------------------------------

def test_blend_word_missing_from_its_prompt(pipe, inversion):
    with pytest.raises(ValueError, match="blend word 'square'") as info:
        edit(pipe, inversion, [SOURCE, TARGET], blend_words=[["circle"], ["square"]])
    assert repr(TARGET) in str(info.value) and "Pick a word" in str(info.value)


def test_reweight_word_absent_from_the_target(pipe, inversion):
    with pytest.raises(ValueError, match="reweight word 'red'") as info:  # "red" is only in the source
        edit(pipe, inversion, [SOURCE, TARGET], eq_params={"red": 2.0})
    assert repr(TARGET) in str(info.value)


def test_prompt_lists_of_the_wrong_length(pipe, inversion):
    for prompts in ([SOURCE], SOURCE):
        with pytest.raises(ValueError, match="at least two strings"):
            edit(pipe, inversion, prompts)
    for words in (["circle"], "circle", [["circle"]] * 3):
        with pytest.raises(ValueError, match="one word .* per prompt") as info:
            edit(pipe, inversion, [SOURCE, TARGET], blend_words=words)
        assert "2 prompts" in str(info.value) and "blend_words=['rabbit', 'rabbit']" in str(info.value)


def test_replace_for_prompts_with_different_word_counts(pipe, inversion):
    with pytest.raises(ValueError, match=r"Use Refine \(is_word_swap=False\)") as info:
        edit(pipe, inversion, [SOURCE, "a red striped circle on the grass"])
    assert "6 words" in str(info.value) and "7" in str(info.value)


def test_source_prompt_must_be_the_inverted_prompt(pipe, inversion):
    with pytest.raises(ValueError, match="invert again") as info:
        edit(pipe, inversion, ["a green circle on the grass", TARGET])
    assert repr(SOURCE) in str(info.value) and "'a green circle on the grass'" in str(info.value)


def test_prompt_too_long_for_the_tokenizer(pipe, inversion):
    long_target = " ".join(["circle"] * 80)  # 80 tokens + BOS + EOS = 82 > 77
    with pytest.raises(ValueError, match="shorten the prompt") as info:
        edit(pipe, inversion, [SOURCE, long_target])
    assert "82" in str(info.value) and "77" in str(info.value)


def test_controller_and_controller_options_together(pipe, inversion):
    with pytest.raises(ValueError, match="either a controller or controller options"):
        edit(pipe, inversion, [SOURCE, TARGET], controller=AttentionStore(), blend_words=["circle", "circle"])


# -- with a temporal attention that is not zero (as after tuning) -------------------------------------------------

@pytest.fixture(scope="module")
def temporal_pipe(tiny_model_dir):
    """The tiny pipeline with every temporal attention's output projection drawn at random (seeded): tuning makes
    them non-zero, and only then does replacing temporal maps (self_replace_steps) change anything."""
    pipe = inflated_pipeline(tiny_model_dir)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in pipe.unet.named_parameters():
            if "attn_temp.to_out" in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return pipe


@pytest.fixture(scope="module")
def temporal_inversion(temporal_pipe):
    torch.manual_seed(0)
    return vp2p.invert(temporal_pipe, smooth_video(F), SOURCE, num_steps=STEPS, inner_steps=2, progress=False)


def test_self_replace_steps_change_the_target_through_the_temporal_attention(temporal_pipe, temporal_inversion):
    runs = {steps: edit(temporal_pipe, temporal_inversion, [SOURCE, TARGET], self_replace_steps=steps)
            for steps in (0.0, 0.5, 1.0)}
    for steps in (0.5, 1.0):
        # the source is untouched (up to the float noise of explicit vs fused attention kernels)
        assert torch.allclose(branch(runs[steps].latents, 0), branch(runs[0.0].latents, 0), atol=1e-4, rtol=0)
        moved = (branch(runs[steps].latents, 1) - branch(runs[0.0].latents, 1)).abs().max()
        assert moved > 2e-3, (steps, moved)  # measured 0.007 at 0.5; 1.0 replaces for every step, a superset
    assert (branch(runs[1.0].latents, 1) - branch(runs[0.5].latents, 1)).abs().max() > 1e-3
    # frame attention (the non-default choice) is another edit again
    frame = edit(temporal_pipe, temporal_inversion, [SOURCE, TARGET], self_replace_steps=0.5, self_attention="frame")
    assert (branch(frame.latents, 1) - branch(runs[0.5].latents, 1)).abs().max() > 1e-3


def test_refine_reweight_and_local_blend_together(temporal_pipe, temporal_inversion):
    # The official rabbit config's shape: Refine (added word) + Reweight (eq_params) + LocalBlend on the object.
    prompts = [SOURCE, "a red striped circle on the grass"]
    options = dict(is_word_swap=False, blend_words=[["circle"], ["circle"]], threshold=0.95, blend_start=0.0)
    plain = edit(temporal_pipe, temporal_inversion, prompts, **options)
    ones = edit(temporal_pipe, temporal_inversion, prompts, eq_params={"words": ["striped"], "values": [1.0]},
                **options)
    two = edit(temporal_pipe, temporal_inversion, prompts, eq_params={"words": ["striped"], "values": [2.0]},
               **options)
    assert torch.allclose(ones.latents, plain.latents, atol=1e-6, rtol=0)  # weight 1: Refine alone
    assert (branch(two.latents, 1) - branch(plain.latents, 1)).abs().max() > 1e-3
    # LocalBlend still holds: outside the last mask the edit is the source branch, exactly
    mask = two.blend_masks[-1][1][:, None].expand(-1, 4, -1, -1)
    assert 0.05 < mask.float().mean() < 0.95
    source, target = branch(two.latents, 0), branch(two.latents, 1)
    assert torch.equal(target[~mask], source[~mask])


def test_three_branches_edit_each_target_as_if_alone(temporal_pipe, temporal_inversion):
    # Every branch is its own video: frame attention, video GroupNorm and LocalBlend never mix branches, so the
    # first target comes out the same with or without a second one beside it.
    other = "a green circle on the grass"
    options = dict(blend_words=[["circle"]] * 3, threshold=0.95, blend_start=0.0)
    three = edit(temporal_pipe, temporal_inversion, [SOURCE, TARGET, other], **options)
    two = edit(temporal_pipe, temporal_inversion, [SOURCE, TARGET], **{**options, "blend_words": [["circle"]] * 2})
    assert three.videos.shape == (3, F, 32, 32, 3) and three.blend_masks.shape[1] == 3
    assert torch.allclose(branch(three.latents, 1), branch(two.latents, 1), atol=1e-4, rtol=0)
    assert (branch(three.latents, 2) - branch(three.latents, 1)).abs().max() > 1e-2


@pytest.mark.parametrize("method", ["fast", "null-text-per-frame"])
def test_editing_from_fast_and_per_frame_inversions(temporal_pipe, method):
    torch.manual_seed(0)
    inv = vp2p.invert(temporal_pipe, smooth_video(F), SOURCE, method=method, num_steps=STEPS, inner_steps=2,
                      progress=False)
    assert inv.null_embeddings.shape[1] == (F if method == "null-text-per-frame" else 1)
    result = edit(temporal_pipe, inv, [SOURCE, TARGET], blend_words=[["circle"], ["circle"]])
    # the source branch of an edit is the inversion's reconstruction: same z_T, embeddings and guidance
    assert np.abs(result.source.astype(int) - inv.reconstruction.astype(int)).max() <= 1
    assert np.abs(result.edited.astype(int) - result.source.astype(int)).max() > 0
