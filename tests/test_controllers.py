"""Attention controllers (vp2p.controllers) on hand-made probability tensors, plus a few runs of the tiny UNet.

Row layout of a guided batch (vp2p.attention / vp2p.controllers): [uncond branch 0 … B-1; cond branch 0 … B-1],
each branch F consecutive rows (cross / frame attention) or ``positions`` consecutive rows (temporal attention).
With B = 2 branches and F = 2 frames: rows 0-1 uncond source, 2-3 uncond target, 4-5 cond source, 6-7 cond target.
"""

import types

import pytest
import torch
from transformers import CLIPTokenizer

from vp2p.attention import Layer
from vp2p.controllers import (AttentionEdit, AttentionStore, LocalBlend, cross_replace_alpha, Refinement, Replacement,
                              Reweighting, step_window)

CROSS_DOWN = Layer("down_blocks.0.attentions.0.transformer_blocks.0.block.attn2", "cross", "down")
CROSS_UP = Layer("up_blocks.1.attentions.0.transformer_blocks.0.block.attn2", "cross", "up")
CROSS_MID = Layer("mid_block.attentions.0.transformer_blocks.0.block.attn2", "cross", "mid")
FRAME = Layer("down_blocks.0.attentions.0.transformer_blocks.0.block.attn1", "frame", "down")
TEMPORAL = Layer("down_blocks.0.attentions.0.transformer_blocks.0.attn_temp", "temporal", "down")

B, F, HEADS, TOKENS = 2, 2, 2, 6


def random_probs(rows, queries, keys, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, HEADS, queries, keys, generator=g).softmax(-1)


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return CLIPTokenizer.from_pretrained(tiny_model_dir / "tokenizer")


# -- AttentionStore -----------------------------------------------------------------------------------------------

def patterned_probs(scale, h, w, tokens=5):
    """probs[r, head, q, k] = scale·(r+1)·(head+1) + 0.01·q + 0.001·k: every entry says where it came from."""
    r = torch.arange(2 * B * F).view(-1, 1, 1, 1).float()
    head = torch.arange(HEADS).view(1, -1, 1, 1).float()
    q = torch.arange(h * w).view(1, 1, -1, 1).float()
    k = torch.arange(tokens).view(1, 1, 1, -1).float()
    return scale * (r + 1) * (head + 1) + 0.01 * q + 0.001 * k


def expected_pattern(scale, h, w, tokens=5):
    """(B, F, h, w, tokens) by hand: conditional rows are 4 + 2b + f, heads (1 and 2) average to 1.5."""
    out = torch.zeros(B, F, h, w, tokens)
    for b in range(B):
        for f in range(F):
            for y in range(h):
                for x in range(w):
                    for k in range(tokens):
                        out[b, f, y, x, k] = scale * (4 + 2 * b + f + 1) * 1.5 + 0.01 * (y * w + x) + 0.001 * k
    return out


def run_store_step(store, step, scale):
    store.begin_step(step)
    for layer, s in ((CROSS_DOWN, scale), (CROSS_UP, 2 * scale)):  # two layers per resolution: their mean counts
        for h, w in ((4, 6), (2, 3)):
            probs = patterned_probs(s, h, w)
            assert store.wants(layer, h * w)
            assert store(probs, layer, F) is probs  # a store only reads
    # ignored: the mid block (not in places), frame attention, and a resolution that was not asked for
    mid = patterned_probs(100.0, 4, 6)
    assert not store.wants(CROSS_MID, 24) and not store.wants(FRAME, 24) and not store.wants(CROSS_DOWN, 8 * 12)
    store(mid, CROSS_MID, F)
    store(mid, FRAME, F)
    store.end_step()


def test_store_keeps_the_conditional_half_averaged_over_heads_and_layers():
    store = AttentionStore(resolutions=[4, 2], keep_steps=True)
    store.start(latent_size=(4, 6), num_branches=B, guided=True, num_steps=3)
    assert store.resolutions() == [2, 4]
    run_store_step(store, 0, scale=1.0)
    for h, w in ((4, 6), (2, 3)):
        maps = store.maps(h)
        assert maps.shape == (B, F, h, w, 5)
        # layers at scale 1 and 2 average to 1.5
        assert torch.allclose(maps, expected_pattern(1.5, h, w), atol=1e-5)


def test_store_running_mean_and_per_step_maps():
    store = AttentionStore(resolutions=[4, 2], keep_steps=True)
    store.start(latent_size=(4, 6), num_branches=B, guided=True, num_steps=3)
    for step, scale in enumerate((1.0, 3.0, 8.0)):
        run_store_step(store, step, scale)
    # step maps have layer-mean scale 1.5·scale; the running mean over 3 steps has 1.5·(1+3+8)/3 = 6
    assert torch.allclose(store.maps(4), expected_pattern(6.0, 4, 6), atol=1e-4)
    # per-step maps are kept in fp16: compare with a relative tolerance
    assert torch.allclose(store.maps(4, step=0), expected_pattern(1.5, 4, 6), rtol=2e-3)
    assert torch.allclose(store.maps(2, step=1), expected_pattern(1.5 * 2, 2, 3), rtol=2e-3)  # mean of steps 0, 1
    assert torch.allclose(store.maps(2, step=2), store.maps(2), rtol=2e-3)
    with pytest.raises(ValueError, match="resolution 8"):
        store.maps(8)


def test_store_truncates_tokens_and_unguided_layout():
    # num_tokens keeps the leading tokens; unguided (one half): rows 0-1 source, 2-3 target are the maps
    store = AttentionStore(resolutions=[2], num_tokens=3, keep_steps=False)
    store.start(latent_size=(4, 6), num_branches=B, guided=False, num_steps=1)
    store.begin_step(0)
    probs = patterned_probs(1.0, 2, 3)[: B * F]  # rows 0…3
    store(probs, CROSS_DOWN, F)
    store.end_step()
    maps = store.maps(2)
    assert maps.shape == (B, F, 2, 3, 3)
    # unguided rows are 2b + f (not 4 + 2b + f): the guided pattern at row offset -4
    expected = expected_pattern(1.0, 2, 3)[..., :3] - 4 * 1.5
    assert torch.allclose(maps, expected, atol=1e-5)
    with pytest.raises(ValueError, match="keep_steps"):
        store.maps(2, step=0)


def test_store_rejects_a_batch_that_does_not_split_into_branches():
    store = AttentionStore(resolutions=[2])
    store.start(latent_size=(4, 6), num_branches=3, guided=True, num_steps=1)
    store.begin_step(0)
    with pytest.raises(ValueError, match="3 branches"):
        store(torch.rand(8, HEADS, 6, 5), CROSS_DOWN, F)  # 8 rows are not 2 x 3 x F


# -- cross_replace_alpha ------------------------------------------------------------------------------------------

PROMPTS = ["a red circle on the grass", "a blue circle on the grass"]  # blue at position 2


def test_cross_alpha_fraction(tok):
    alpha = cross_replace_alpha(PROMPTS, 10, 0.3, tok, 77)
    assert alpha.shape == (10, 1, 77)
    assert torch.equal(alpha.sum(dim=(1, 2)), torch.tensor([77.0] * 3 + [0.0] * 7))  # steps 0, 1, 2, every token


def test_cross_alpha_window(tok):
    alpha = cross_replace_alpha(PROMPTS, 10, (0.2, 0.5), tok, 77)
    assert torch.equal(alpha[:, 0, 0], torch.tensor([0.0, 0, 1, 1, 1, 0, 0, 0, 0, 0]))  # steps 2, 3, 4
    assert torch.equal(alpha[:, 0, :], alpha[:, 0, :1].expand(-1, 77))  # same for every token
    with pytest.raises(ValueError, match="step window"):
        step_window((0.5, 0.2), 10)
    assert step_window(1.0, 10) == (0, 10)


def test_window_edges_follow_the_official_code(tok):
    # Official: cross-attention windows on N + 1 rows (edge int(f·(N + 1))), self-attention windows on N.
    # With N = 25 and f = 0.5 these differ: cross-attention is injected for 13 steps, temporal attention for 12.
    alpha = cross_replace_alpha(PROMPTS, 25, 0.5, tok, 77)
    assert alpha.shape == (25, 1, 77) and alpha[:, 0, 0].tolist() == [1.0] * 13 + [0.0] * 12
    assert cross_replace_alpha(PROMPTS, 50, 0.2, tok, 77)[:, 0, 5].sum() == 10  # the defaults: 10 of 50 steps
    ctrl = AttentionEdit(Replacement(torch.eye(77)[None]), alpha, self_replace_steps=0.5)
    assert ctrl.self_window == (0, 12)


def test_cross_alpha_per_word(tok):
    alpha = cross_replace_alpha(PROMPTS, 10, {"default_": 0.2, "blue": 0.6}, tok, 77)
    assert torch.equal(alpha[:, 0, 2], torch.tensor([1.0] * 6 + [0.0] * 4))  # blue: its own window
    for j in (0, 1, 3, 6, 7, 40):  # everything else: the default
        assert torch.equal(alpha[:, 0, j], torch.tensor([1.0] * 2 + [0.0] * 8))
    # without default_, the other tokens are replaced at every step
    alpha = cross_replace_alpha(PROMPTS, 10, {"blue": (0.5, 1.0)}, tok, 77)
    assert torch.equal(alpha[:, 0, 2], torch.tensor([0.0] * 5 + [1.0] * 5))
    assert alpha[:, 0, 3].sum() == 10


def test_cross_alpha_word_missing_from_the_targets_raises(tok):
    with pytest.raises(ValueError, match="'red'"):  # "red" is only in the source prompt
        cross_replace_alpha(PROMPTS, 10, {"default_": 0.2, "red": 0.5}, tok, 77)


# -- Replace / Refine / Reweight on synthetic probabilities -------------------------------------------------------

# A 6-token mapper written by hand: tokens 0, 1 map to themselves, source token 2 is shared by targets 2 and 3
# (1/2 each), source 3 → target 4, source 4 → target 5; source 5 is dropped.
MAPPER = torch.tensor([
    [1, 0, 0, 0, 0, 0],
    [0, 1, 0, 0, 0, 0],
    [0, 0, 0.5, 0.5, 0, 0],
    [0, 0, 0, 0, 1, 0],
    [0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 0],
])


def started(controller, num_steps, latent=(4, 4)):
    controller.start(latent, num_branches=B, guided=True, num_steps=num_steps)
    return controller


def rows(probs, half, branch):
    """The F rows of one (half, branch) of a guided batch."""
    start = (half * B + branch) * F
    return probs[start : start + F]


def test_replace_injects_mapped_source_maps_into_the_conditional_target_only():
    ctrl = started(AttentionEdit(Replacement(MAPPER[None]), torch.ones(2, 1, TOKENS), self_replace_steps=0.0), 2)
    ctrl.begin_step(0)
    probs = random_probs(2 * B * F, 16, TOKENS, seed=0)
    out = ctrl(probs.clone(), CROSS_DOWN, F)
    expected = rows(probs, 1, 0) @ MAPPER  # (F, heads, q, 6) @ (6, 6)
    assert torch.allclose(rows(out, 1, 1), expected, atol=1e-6)
    # by hand for one entry: target token 3 = half of source token 2
    assert torch.allclose(rows(out, 1, 1)[..., 3], 0.5 * rows(probs, 1, 0)[..., 2], atol=1e-7)
    for half, branch in ((0, 0), (0, 1), (1, 0)):  # the unconditional half and the source: untouched
        assert torch.equal(rows(out, half, branch), rows(probs, half, branch))


def test_replace_with_token_alpha_and_outside_the_window():
    alpha = torch.zeros(3, 1, TOKENS)
    alpha[0, 0, [2, 3]] = 1  # step 0: only tokens 2 and 3 injected; steps 1, 2: nothing
    ctrl = started(AttentionEdit(Replacement(MAPPER[None]), alpha, self_replace_steps=0.0), 3)
    probs = random_probs(2 * B * F, 16, TOKENS, seed=1)
    ctrl.begin_step(0)
    out = ctrl(probs.clone(), CROSS_DOWN, F)
    mapped = rows(probs, 1, 0) @ MAPPER
    target = rows(probs, 1, 1)
    assert torch.allclose(rows(out, 1, 1)[..., 2:4], mapped[..., 2:4], atol=1e-6)
    assert torch.equal(rows(out, 1, 1)[..., [0, 1, 4, 5]], target[..., [0, 1, 4, 5]])
    ctrl.begin_step(1)
    assert not ctrl.wants(CROSS_DOWN, 8 * 8)  # not recorded (default resolution 4) and not edited: fused kernel
    out = ctrl(probs.clone(), CROSS_DOWN, F)
    assert torch.equal(out, probs)


def test_refine_takes_aligned_tokens_and_keeps_new_ones():
    mapper = torch.tensor([[0, 1, 2, 0, 3, 4]])  # target token 3 is new ("striped"): alpha 0
    alphas = torch.tensor([[1.0, 1, 1, 0, 1, 1]])
    ctrl = started(AttentionEdit(Refinement(mapper, alphas), torch.ones(1, 1, TOKENS), self_replace_steps=0.0), 1)
    ctrl.begin_step(0)
    probs = random_probs(2 * B * F, 16, TOKENS, seed=2)
    out = ctrl(probs.clone(), CROSS_DOWN, F)
    source, target = rows(probs, 1, 0), rows(probs, 1, 1)
    for j, i in enumerate([0, 1, 2, None, 3, 4]):
        expected = target[..., j] if i is None else source[..., i]
        assert torch.allclose(rows(out, 1, 1)[..., j], expected, atol=1e-7), j
    assert torch.equal(rows(out, 1, 0), source)


def test_reweight_one_is_the_base_and_two_doubles_one_column_in_the_window():
    alpha = torch.zeros(2, 1, TOKENS)
    alpha[0] = 1  # injection window: step 0 only
    probs = random_probs(2 * B * F, 16, TOKENS, seed=3)

    def run(controller, step):
        started(controller, 2)
        controller.begin_step(step)
        return controller(probs.clone(), CROSS_DOWN, F)

    base = Replacement(MAPPER[None])
    plain = run(AttentionEdit(Replacement(MAPPER[None]), alpha, self_replace_steps=0.0), 0)
    ones = run(AttentionEdit(Reweighting(torch.ones(1, TOKENS), base=base), alpha, self_replace_steps=0.0), 0)
    assert torch.equal(ones, plain)

    eq = torch.ones(1, TOKENS)
    eq[0, 4] = 2.0
    doubled = run(AttentionEdit(Reweighting(eq, base=base), alpha, self_replace_steps=0.0), 0)
    assert torch.allclose(rows(doubled, 1, 1)[..., 4], 2 * rows(plain, 1, 1)[..., 4], rtol=1e-6, atol=0)
    keep = [0, 1, 2, 3, 5]
    assert torch.equal(rows(doubled, 1, 1)[..., keep], rows(plain, 1, 1)[..., keep])
    assert torch.equal(rows(doubled, 1, 0), rows(probs, 1, 0))
    # outside the window nothing is reweighted
    assert torch.equal(run(AttentionEdit(Reweighting(eq, base=base), alpha, self_replace_steps=0.0), 1), probs)


def test_controller_made_for_other_prompts_or_steps_refuses_to_start():
    ctrl = AttentionEdit(Replacement(MAPPER[None]), torch.ones(4, 1, TOKENS))
    with pytest.raises(ValueError, match="remake"):
        ctrl.start((4, 4), num_branches=3, guided=True, num_steps=4)
    with pytest.raises(ValueError, match="remake"):
        ctrl.start((4, 4), num_branches=2, guided=True, num_steps=5)


# -- temporal (and frame) self-attention replacement --------------------------------------------------------------

def test_temporal_maps_are_replaced_only_inside_self_replace_steps():
    positions, frames = 16, 3
    # 5 steps, window (0.2, 0.6) -> steps 1 and 2; no cross-attention injection at all
    ctrl = AttentionEdit(Replacement(MAPPER[None]), torch.zeros(5, 1, TOKENS), self_replace_steps=(0.2, 0.6))
    started(ctrl, 5)
    probs = random_probs(2 * B * positions, frames, frames, seed=4)  # (videos·positions, heads, F, F)
    half = B * positions
    for step in range(5):
        ctrl.begin_step(step)
        inside = step in (1, 2)
        assert ctrl.wants(TEMPORAL, frames) == inside
        out = ctrl(probs.clone(), TEMPORAL, frames)
        source, target = out[half : half + positions], out[half + positions :]
        if inside:
            assert torch.equal(target, probs[half : half + positions])
        else:
            assert torch.equal(target, probs[half + positions :])
            assert (target - source).abs().max() > 0.05
        assert torch.equal(out[:half], probs[:half])  # unconditional half untouched
        assert torch.equal(source, probs[half : half + positions])
        # the default (official) behaviour never edits frame attention
        assert not ctrl.wants(FRAME, 4)


def test_frame_attention_replacement_only_at_low_resolution():
    ctrl = started(AttentionEdit(Replacement(MAPPER[None]), torch.zeros(2, 1, TOKENS), self_replace_steps=1.0,
                           self_attention="frame"), 2, latent=(4, 4))
    ctrl.begin_step(0)
    assert not ctrl.wants(TEMPORAL, 3)
    assert not ctrl.wants(FRAME, 16)  # full latent resolution: left alone (SD: 64x64)
    assert ctrl.wants(FRAME, 4)  # latent/2 (SD: 32x32 and below): replaced
    probs = random_probs(2 * B * F, 4, 4, seed=5)
    out = ctrl(probs.clone(), FRAME, F)
    assert torch.equal(rows(out, 1, 1), rows(probs, 1, 0))
    assert torch.equal(rows(out, 0, 1), rows(probs, 0, 1))


# -- LocalBlend ---------------------------------------------------------------------------------------------------

def hand_maps():
    """(B=2, F=2, 4, 4, 3 tokens). Blend words: token 1 in the source, token 2 in the target."""
    maps = torch.zeros(B, F, 4, 4, 3)
    maps[0, :, :, :, 2] = 1.0  # source, token 2: not a source blend word, must be ignored
    maps[0, 0, 0, 0, 1] = 1.0  # source frame 0: a peak at (0, 0)
    maps[0, 0, 3, 3, 1] = 0.2  # … and a weak one: 0.2 of the frame max, below the threshold 0.3
    maps[0, 1, 3, 3, 1] = 0.25  # source frame 1: weak overall, but the frame's own max, so it counts
    maps[0, 1, 0, 0, 1] = 0.05  # 0.05 / 0.25 = 0.2 < 0.3
    maps[1, 0, 0, 3, 2] = 1.0  # target frame 0: a peak at (0, 3); target frame 1: nothing
    return maps


def test_local_blend_mask_by_hand():
    blend = LocalBlend([[1], [2]], max_len=77, threshold=0.3)
    mask = blend.mask(hand_maps(), latent_size=(8, 8))
    # A map pixel dilates to its 3x3 neighbourhood (clipped at the border), then becomes 2x2 latent pixels.
    expected = torch.zeros(B, F, 8, 8, dtype=torch.bool)
    expected[0, 0, 0:4, 0:4] = True  # (0, 0) -> map rows/cols 0-1 -> latent 0-3
    expected[0, 1, 4:8, 4:8] = True  # (3, 3) -> map rows/cols 2-3 -> latent 4-7
    expected[1, 0, 0:4, 4:8] = True  # target's own (0, 3) -> rows 0-1, cols 2-3
    expected[1, 0] |= expected[0, 0]  # union with the source mask
    expected[1, 1] = expected[0, 1]  # no target attention in frame 1: the source mask alone
    assert mask.dtype == torch.bool and mask.shape == (B, F, 8, 8)
    assert torch.equal(mask, expected)
    assert int(mask.sum()) == 16 + 16 + 32 + 16


def blend_store(step, num_steps, maps):
    return types.SimpleNamespace(step=step, num_steps=num_steps, latent_size=(8, 8), maps=lambda resolution: maps)


def test_local_blend_combines_latents_inside_the_mask_and_starts_late():
    g = torch.Generator().manual_seed(6)
    latents = torch.randn(B * F, 4, 8, 8, generator=g)
    blend = LocalBlend([[1], [2]], max_len=77, threshold=0.3, start=0.5)
    assert blend(latents, blend_store(4, 10, hand_maps()), 4) is latents  # step 4 < 0.5·10: not yet
    out = blend(latents, blend_store(5, 10, hand_maps()), 4)
    mask = blend.mask(hand_maps(), (8, 8))[1][:, None]  # target (F, 1, 8, 8)
    assert torch.equal(out[:F], latents[:F])  # source unchanged
    # inside the mask source + 1·(target - source): the target up to rounding; outside exactly the source
    assert torch.allclose(out[F:], torch.where(mask, latents[F:], latents[:F]), atol=1e-6, rtol=0)
    assert torch.equal(out[F:][~mask.expand_as(out[F:])], latents[:F][~mask.expand_as(out[F:])])
    assert 0 < mask.float().mean() < 1
    assert len(blend.masks) == 1 and blend.masks[0].shape == (B, F, 8, 8)


def test_local_blend_with_an_empty_mask_returns_the_source_for_every_branch():
    g = torch.Generator().manual_seed(7)
    latents = torch.randn(3 * F, 4, 8, 8, generator=g)  # three branches
    maps = torch.rand(3, F, 4, 4, 77, generator=g)
    blend = LocalBlend([[1], [2], [3]], max_len=77, threshold=1.1, start=0.0)
    out = blend(latents, blend_store(0, 10, maps), 4)
    assert not blend.masks[0].any()
    for branch in range(3):
        assert torch.equal(out[branch * F : (branch + 1) * F], latents[:F])


# -- on the tiny UNet ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def video_pipe(tiny_model_dir):
    from vp2p import inflate_unet, load_pipeline

    pipe = load_pipeline(tiny_model_dir, device="cpu", dtype=torch.float32)
    inflate_unet(pipe.unet)
    return pipe


def run_two_branches(pipe, controller, num_steps=4, seed=0):
    from vp2p.ddim import DDIMSchedule
    from vp2p.sampling import sample

    schedule = DDIMSchedule.from_scheduler(pipe.scheduler, num_steps)
    cond = pipe.encode_text(["a red circle on the grass", "a blue square on the grass"])
    empty = pipe.encode_text("")
    z = torch.randn(F, 4, 16, 16, generator=torch.Generator().manual_seed(seed)).repeat(B, 1, 1, 1)  # frames differ
    controller.start((16, 16), num_branches=B, guided=True, num_steps=num_steps, default_resolution=8)
    return sample(pipe.unet, z, schedule, cond, lambda i: empty, torch.tensor([7.5, 7.5]), F,
                  controller, progress=False)


def test_store_on_the_tiny_unet(video_pipe):
    store = AttentionStore(resolutions=[16, 8], keep_steps=True)
    run_two_branches(video_pipe, store, num_steps=3)
    for h in (16, 8):
        maps = store.maps(h)
        assert maps.shape == (B, F, h, h, 77)
        # softmax rows averaged over heads and layers still sum to 1 over the tokens
        assert (maps.sum(-1) - 1).abs().max() < 1e-4
        per_step = torch.stack([store.maps(h, step=s) * (s + 1) for s in range(3)])  # cumulative sums
        steps = torch.cat([per_step[:1], per_step[1:] - per_step[:-1]])  # back to each step's maps
        assert torch.allclose(steps.mean(0), maps, atol=2e-3)  # fp16 per-step copies vs the fp32 running mean
    # different prompts: the branches' maps differ
    assert (store.maps(8)[0] - store.maps(8)[1]).abs().max() > 5e-4  # measured 2e-3


class TemporalSpy(AttentionEdit):
    """An edit that also looks at every temporal attention, edited or not, after its edit."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []  # (step, max |target - source|) for the conditional half

    def wants(self, layer, query_length):
        return layer.kind == "temporal" or super().wants(layer, query_length)

    def __call__(self, probs, layer, num_frames):
        probs = super().__call__(probs, layer, num_frames)
        if layer.kind == "temporal":
            cond = self.conditional(probs)
            self.seen.append((self.step, (cond[1] - cond[0]).abs().max().item()))
        return probs


def test_temporal_injection_on_the_tiny_unet(video_pipe):
    spy = TemporalSpy(Replacement(torch.eye(77)[None]), torch.zeros(4, 1, 77), self_replace_steps=0.5)  # steps 0, 1
    run_two_branches(video_pipe, spy, num_steps=4)
    by_step = {s: [d for step, d in spy.seen if step == s] for s in range(4)}
    assert all(len(v) == 7 for v in by_step.values())  # 7 transformer blocks, each with a temporal attention
    assert max(by_step[0] + by_step[1]) == 0.0  # replaced: target maps are the source maps
    assert min(max(by_step[2]), max(by_step[3])) > 5e-3  # afterwards each branch has its own (measured 0.06)


def test_sd15_geometry_blend_maps_come_from_the_five_official_layers():
    # SD-1.5's block layout at 64×64 latents (widths reduced: the geometry depends on the blocks, not on their width)
    from diffusers import UNet2DConditionModel

    from vp2p import inflate_unet
    from vp2p.attention import blend_resolution, cross_attention_heights

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64, layers_per_block=2, block_out_channels=(32, 32, 64, 64), cross_attention_dim=32,
        attention_head_dim=8, norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3).eval()
    assert cross_attention_heights(unet, 64) == [16, 32, 64]
    assert cross_attention_heights(unet, 64, places=("mid",)) == [8]
    assert blend_resolution(64, cross_attention_heights(unet, 64)) == 16  # the official LocalBlend's 16×16
    inflate_unet(unet)

    class Spy(AttentionStore):
        def __call__(self, probs, layer, num_frames):
            if self.records(layer, probs.shape[2]):
                recorded.append(layer.name)
            return super().__call__(probs, layer, num_frames)

    recorded = []
    store = Spy()
    store.start((64, 64), num_branches=1, guided=False, num_steps=1, default_resolution=16)
    store.begin_step(0)
    with torch.no_grad():
        unet(torch.randn(1, 4, 64, 64), 500, encoder_hidden_states=torch.randn(1, 77, 32),
             cross_attention_kwargs={"num_frames": 1, "controller": store})
    store.end_step()
    # the official LocalBlend's layers: down_cross[2:4] (down block 2) and up_cross[:3] (up block 1)
    assert recorded == ["down_blocks.2.attentions.0.transformer_blocks.0.block.attn2",
                        "down_blocks.2.attentions.1.transformer_blocks.0.block.attn2",
                        "up_blocks.1.attentions.0.transformer_blocks.0.block.attn2",
                        "up_blocks.1.attentions.1.transformer_blocks.0.block.attn2",
                        "up_blocks.1.attentions.2.transformer_blocks.0.block.attn2"]
    assert store.maps(16).shape == (1, 1, 16, 16, 77)
