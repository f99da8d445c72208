"""vp2p.inspect.recorder: the AttentionRecorder keeps the probabilities each selected layer went on with (after the edit),
per step, head and branch — checked against probabilities computed by hand from a layer's q and k, against what
the AttentionStore averages, and inside a real ``vp2p.edit``.
"""

import pytest
import torch

from tiny import smooth_video
from vp2p import edit, invert, make_controller
from vp2p.attention import split_heads
from vp2p.controllers import AttentionStore
from vp2p.inflation import inflate_unet
from vp2p.inspect.recorder import AttentionRecorder, token_alignment
from vp2p.sampling import unet_output

SOURCE = "a red circle bouncing on the grass"
TARGET = "a blue circle bouncing on the grass"
FRAMES, BRANCHES = 3, 2
CROSS = "down_blocks.0.attentions.0.transformer_blocks.0.block.attn2"  # 16×16 on the tiny model
TEMPORAL = "up_blocks.0.attentions.0.transformer_blocks.0.attn_temp"  # 8×8
FRAME = "down_blocks.0.attentions.0.transformer_blocks.0.block.attn1"  # 16×16: frame attention


def capture_inputs(module, store: list):
    """Keep the (hidden states, context) each call of an attention module gets."""
    def hook(_, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        store.append((hidden.detach().clone(), kwargs.get("encoder_hidden_states")))
    return module.register_forward_pre_hook(hook, with_kwargs=True)


def by_hand(attn, hidden, context=None) -> torch.Tensor:
    """softmax(q·kᵀ·scale), (rows, heads, queries, keys), straight from the module's weights."""
    context = hidden if context is None else context
    q, k = split_heads(attn.to_q(hidden), attn.heads), split_heads(attn.to_k(context), attn.heads)
    return (q @ k.transpose(-1, -2) * attn.scale).softmax(-1)


@pytest.fixture(scope="module")
def recorded(tiny_model_dir):
    """Two guided UNet calls (steps 0 and 1) of 2 branches × 3 frames with a recorder around an AttentionStore,
    with the inputs of one cross and one temporal attention captured."""
    from vp2p import load_pipeline

    pipe = load_pipeline(tiny_model_dir, device="cpu", dtype=torch.float32)
    inflate_unet(pipe.unet)
    store = AttentionStore(resolutions=[16, 8])
    recorder = AttentionRecorder(store, num_tokens=9)
    modules = dict(pipe.unet.named_modules())
    inputs = {CROSS: [], TEMPORAL: [], FRAME: []}
    hooks = [capture_inputs(modules[name], inputs[name]) for name in inputs]
    cond = pipe.encode_text([SOURCE, TARGET])
    embeddings = torch.cat([pipe.encode_text(["", ""]), cond])  # [uncond branches, cond branches]
    recorder.start((16, 16), BRANCHES, guided=True, num_steps=2)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for step, t in enumerate([900, 500]):
            recorder.begin_step(step)
            latents = torch.randn(BRANCHES * FRAMES, 4, 16, 16, generator=generator)
            unet_output(pipe.unet, torch.cat([latents, latents]), t, embeddings, FRAMES, recorder)
            recorder.end_step()
    for hook in hooks:
        hook.remove()
    return pipe, recorder, modules, inputs


def test_a_cross_attention_layer_head_step_and_branch_match_the_probabilities_computed_by_hand(recorded):
    pipe, recorder, modules, inputs = recorded
    attn = modules[CROSS]
    for step in (0, 1):
        hidden, context = inputs[CROSS][step]
        probs = by_hand(attn, hidden, context)  # rows = [uncond b0, uncond b1, cond b0, cond b1] × frames
        kept = recorder.probabilities(CROSS, step)
        assert kept.shape == (BRANCHES, FRAMES, attn.heads, 16 * 16, 9)
        for branch in range(BRANCHES):
            for frame in range(FRAMES):
                row = (BRANCHES + branch) * FRAMES + frame  # the conditional half only
                assert torch.allclose(kept[branch, frame], probs[row, :, :, :9], atol=2e-3)
        maps = recorder.cross_maps(step=step, branch=1, layer=CROSS, head=1)
        assert maps.shape == (FRAMES, 16, 16, 9)
        assert torch.allclose(maps, probs[(BRANCHES + 1) * FRAMES:, 1, :, :9].reshape(FRAMES, 16, 16, 9), atol=2e-3)


def test_a_temporal_layer_and_the_pixel_view_match_the_probabilities_computed_by_hand(recorded):
    pipe, recorder, modules, inputs = recorded
    attn = modules[TEMPORAL]
    hidden, _ = inputs[TEMPORAL][1]  # rows = (video, position), queries = frames
    probs = by_hand(attn, hidden)
    kept = recorder.probabilities(TEMPORAL, 1)
    positions = 8 * 8
    assert kept.shape == (BRANCHES, positions, attn.heads, FRAMES, FRAMES)
    cond_target = probs.view(2 * BRANCHES, positions, attn.heads, FRAMES, FRAMES)[BRANCHES + 1]
    assert torch.allclose(kept[1], cond_target, atol=2e-3)
    maps = recorder.temporal_maps(step=1, branch=1, layer=TEMPORAL, head=0)
    assert maps.shape == (8, 8, FRAMES, FRAMES)
    assert torch.allclose(maps.sum(-1), torch.ones(8, 8, FRAMES), atol=1e-2)  # each query frame: a distribution
    row, col = 5, 2
    pixel = recorder.pixel_temporal(((row + 0.5) / 8, (col + 0.5) / 8), step=1, branch=1, layer=TEMPORAL, head=0)
    assert torch.allclose(pixel, cond_target[row * 8 + col, 0], atol=2e-3)


def test_a_frame_layer_keeps_each_frames_attention_over_frame_0_in_cells_as_computed_by_hand(recorded):
    """Frame attention: queries of frame i, keys of frame 0; kept as the mean of the heads, 16×16 queries averaged
    into 8×8 cells (frame_grid=8), frame 0's 16×16 keys kept (frame_key_grid=16)."""
    pipe, recorder, modules, inputs = recorded
    attn = modules[FRAME]
    hidden, _ = inputs[FRAME][1]
    video = hidden.view(2 * BRANCHES, FRAMES, *hidden.shape[1:])
    context = video[:, :1].expand_as(video).reshape_as(hidden)  # every frame's keys from its video's frame 0
    probs = by_hand(attn, hidden, context).mean(1)  # (rows, 256 queries, 256 keys), heads averaged
    target = probs.view(2 * BRANCHES, FRAMES, 16, 16, 256)[BRANCHES + 1]  # conditional half, branch 1
    cells = target.view(FRAMES, 8, 2, 8, 2, 256).mean(dim=(2, 4)).view(FRAMES, 8, 8, 16, 16)
    layer = next(r for r in recorder.layers("frame") if r.name == FRAME)
    assert (layer.height, layer.grid, layer.key_grid, layer.heads) == (16, (8, 8), (16, 16), 1)
    maps = recorder.frame_maps(step=1, branch=1, layer=FRAME)
    assert maps.shape == (FRAMES, 8, 8, 16, 16)
    assert torch.allclose(maps, cells, atol=2e-3)
    assert torch.allclose(maps.sum(dim=(-2, -1)), torch.ones(FRAMES, 8, 8), atol=2e-3)  # still distributions
    pixel = recorder.pixel_frame((0.3, 0.8), step=1, branch=1, layer=FRAME)  # cell (2, 6)
    assert torch.allclose(pixel, cells[:, 2, 6], atol=2e-3)
    small = next(r for r in recorder.layers("frame") if r.height == 8)  # 8×8 layers: queries and keys as they are
    assert (small.grid, small.key_grid) == ((8, 8), (8, 8))


def test_head_and_layer_means_equal_what_the_attention_store_averages(recorded):
    _, recorder, _, _ = recorded
    store = recorder.inner
    for step in (0, 1):
        for resolution in (16, 8):
            for branch in range(BRANCHES):
                mine = recorder.cross_maps(step=step, branch=branch, resolution=resolution, place=("down", "up"))
                single = store.step_maps[resolution][step][branch, ..., :9].float()  # the store's maps of that step
                assert torch.allclose(mine, single, atol=2e-3)
    # step=None: the mean over the recorded steps, as the store's running mean
    for branch in range(BRANCHES):
        mean = recorder.cross_maps(branch=branch, resolution=16, place=("down", "up"))
        assert torch.allclose(mean, store.maps(16)[branch, ..., :9], atol=2e-3)
    assert not torch.allclose(recorder.cross_maps(step=1, resolution=16), store.maps(16)[1, ..., :9], atol=1e-4)
    with_mid = recorder.cross_maps(step=0, resolution=8)  # the store leaves the mid block out; the recorder may not
    assert not torch.allclose(with_mid, store.maps(8, step=0)[1, ..., :9], atol=1e-4)
    assert not torch.allclose(recorder.cross_maps(step=0, resolution=16), recorder.cross_maps(step=1, resolution=16))
    one_place = recorder.cross_maps(step=0, resolution=16, place="down")
    assert torch.allclose(one_place, recorder.cross_maps(step=0, layer=CROSS))


def test_default_selection_bound_and_bookkeeping(recorded):
    _, recorder, _, _ = recorded
    kinds = {(r.layer.kind, r.layer.place, r.height) for r in recorder.layers()}
    assert {("cross", "down", 16), ("cross", "up", 8), ("temporal", "down", 16), ("temporal", "mid", 8)} <= kinds
    assert recorder.resolutions("cross") == [8, 16] and recorder.recorded_steps() == [0, 1]
    tensors = [t for records in (recorder.records, recorder.padding) for steps in records.values()
               for t in steps.values()]
    assert all(t.dtype == torch.float16 and t.device.type == "cpu" for t in tensors)
    assert recorder.nbytes == sum(t.numel() * 2 for t in tensors) <= recorder.max_bytes
    assert recorder.layers("cross")[0].label == "cross · down 16×16 · down_blocks.0.attentions.0"
    # the inner controller's attributes and methods pass through
    assert recorder.steps_done == 2 and recorder.maps(16).shape[:2] == (BRANCHES, FRAMES)
    with pytest.raises(ValueError, match="head 7"):
        recorder.cross_maps(step=0, layer=CROSS, head=7)
    with pytest.raises(ValueError, match="step 5"):
        recorder.cross_maps(step=5, layer=CROSS)
    with pytest.raises(ValueError, match="resolution 32"):
        recorder.cross_maps(step=0, resolution=32)
    with pytest.raises(ValueError, match="branch 2"):
        recorder.cross_maps(step=0, branch=2)


def run_once(pipe, recorder, steps=2):
    embeddings = pipe.encode_text(["", "", SOURCE, TARGET])
    recorder.start((16, 16), BRANCHES, guided=True, num_steps=steps)
    with torch.no_grad():
        for step in range(steps):
            recorder.begin_step(step)
            latents = torch.randn(2 * BRANCHES * FRAMES, 4, 16, 16)
            unet_output(pipe.unet, latents, 500, embeddings, FRAMES, recorder)
            recorder.end_step()


def test_selections_by_resolution_names_and_steps(recorded):
    pipe = recorded[0]
    small = AttentionRecorder(max_resolution=8)
    run_once(pipe, small)
    assert {r.height for r in small.layers()} == {8}
    named = AttentionRecorder(layers=[CROSS], steps=[1], max_resolution=4)  # names override the resolution
    run_once(pipe, named)
    assert [r.name for r in named.layers()] == [CROSS] and named.recorded_steps() == [1]
    only_temporal = AttentionRecorder(kinds=["temporal"])
    run_once(pipe, only_temporal, steps=1)
    assert {r.layer.kind for r in only_temporal.layers()} == {"temporal"}
    with pytest.raises(ValueError, match="self"):  # an image model's self-attention: not a recorded kind
        AttentionRecorder(kinds=["self"])


def test_the_memory_bound_is_kept_and_projected(recorded):
    pipe = recorded[0]
    with pytest.raises(ValueError, match="max_bytes=1,000"):
        run_once(pipe, AttentionRecorder(max_bytes=1000))
    one_step = recorded[1].nbytes // 2
    projected = AttentionRecorder(num_tokens=9, max_bytes=int(one_step * 1.5))
    with pytest.raises(ValueError, match="would need about"):  # raised after the first step, not at the limit
        run_once(pipe, projected)
    assert projected.recorded_steps() == [0]


# -- inside vp2p.edit ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def inverted(tiny_model_dir):
    from vp2p import load_pipeline

    pipe = load_pipeline(tiny_model_dir, device="cpu", dtype=torch.float32)
    inflate_unet(pipe.unet)
    return pipe, invert(pipe, smooth_video(FRAMES), SOURCE, method="fast", num_steps=4, progress=False)


def test_edit_with_a_recorder_is_the_same_edit_and_keeps_the_edited_maps(inverted):
    pipe, inv = inverted
    options = dict(blend_words=["circle", "circle"], blend_start=0.0, cross_replace_steps=1.0)
    plain = edit(pipe, inv, [SOURCE, TARGET], progress=False, **options)
    recorder = AttentionRecorder(make_controller(pipe, [SOURCE, TARGET], 4, **options))
    result = edit(pipe, inv, [SOURCE, TARGET], controller=recorder, progress=False)
    assert result.controller is recorder and recorder.recorded_steps() == [0, 1, 2, 3]
    assert torch.allclose(result.latents, plain.latents, atol=1e-4)  # recording changes nothing
    assert torch.allclose(result.maps(), plain.maps(), atol=1e-4) and result.blend_masks.shape[0] == 4
    # every step injected the source's maps into the target's tokens (Replace, cross_replace_steps=1): the diff
    # view is exactly zero there; the temporal maps were replaced too (self_replace_steps=0.5: steps 0 and 1)
    for step in range(4):
        assert recorder.diff_maps(step=step).abs().max() == 0
    assert torch.equal(recorder.temporal_maps(step=0, branch=1), recorder.temporal_maps(step=0, branch=0))
    assert not torch.equal(recorder.temporal_maps(step=3, branch=1), recorder.temporal_maps(step=3, branch=0))


def test_diff_shows_what_the_edit_changed(inverted):
    pipe, inv = inverted
    free = AttentionRecorder(make_controller(pipe, [SOURCE, TARGET], 4, cross_replace_steps=0.0))
    edit(pipe, inv, [SOURCE, TARGET], controller=free, progress=False)
    assert free.diff_maps(step=3).abs().max() > 1e-3  # no injection: the target attends on its own
    refined = "a red striped circle bouncing on the grass"
    weights = AttentionRecorder(make_controller(pipe, [SOURCE, refined], 4, is_word_swap=False,
                                                cross_replace_steps=1.0, eq_params={"striped": 3.0}))
    edit(pipe, inv, [SOURCE, refined], controller=weights, progress=False)
    diff, target = weights.diff_maps(step=0), weights.cross_maps(step=0)
    assert torch.allclose(diff[..., 3], target[..., 3])  # the added word: all of its attention is new
    assert diff[..., [1, 2, 4, 5]].abs().max() == 0  # aligned words took the source's maps exactly


def test_token_alignment_of_the_rules(inverted):
    pipe, _ = inverted
    swap = make_controller(pipe, [SOURCE, TARGET], 4)
    assert torch.equal(token_alignment(swap.target_maps, 1, 9), torch.eye(9))
    refine = make_controller(pipe, [SOURCE, "a red striped circle bouncing on the grass"], 4, is_word_swap=False,
                             eq_params={"striped": 2.0})
    alignment = token_alignment(refine.target_maps, 1, 10)
    assert alignment[:, 3].sum() == 0 and alignment[2, 2] == 1 and alignment[3, 4] == 1  # 'circle' moved by one
    assert torch.equal(token_alignment(None, 1, 4), torch.eye(4))
