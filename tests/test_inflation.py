import copy

import pytest
import torch

from tiny import tiny_unet
from vp2p.attention import install_processors
from vp2p.inflation import (VideoGroupNorm, group_norm_of, inflate_unet, inflation_options, restore_base_weights,
                            trainable_parameters)

F = 4


def run(unet, latents, context, **kwargs):
    with torch.no_grad():
        return unet(latents, 500, encoder_hidden_states=context, cross_attention_kwargs=kwargs or None).sample


@pytest.fixture(scope="module")
def pair():
    image = tiny_unet().eval()
    video = inflate_unet(copy.deepcopy(image)).eval()
    torch.manual_seed(1)
    context = torch.randn(1, 77, 32).expand(F, -1, -1)
    return image, video, context


def test_identical_frames_give_the_image_models_output(pair):
    image, video, context = pair
    frame = torch.randn(1, 4, 16, 16)
    expected = run(image, frame, context[:1])
    got = run(video, frame.expand(F, -1, -1, -1).contiguous(), context, num_frames=F)
    assert (got - expected).abs().max().item() <= 1e-5


def test_first_and_previous_frame_keys_also_preserve_identical_frames(pair):
    image, _, context = pair
    video = inflate_unet(copy.deepcopy(image), frame_keys="first+previous").eval()
    frame = torch.randn(1, 4, 16, 16)
    got = run(video, frame.expand(F, -1, -1, -1).contiguous(), context, num_frames=F)
    assert (got - run(image, frame, context[:1])).abs().max().item() <= 1e-5


def test_frame_i_ignores_frames_other_than_0_and_itself(pair):
    # Frame attention alone: with per-frame GroupNorm nothing else connects the frames while the temporal
    # attention's output is zero.
    image, _, context = pair
    video = inflate_unet(copy.deepcopy(image), group_norm="frame").eval()
    torch.manual_seed(2)
    latents = torch.randn(F, 4, 16, 16)
    changed = latents.clone()
    changed[2] = torch.randn(4, 16, 16)  # frame j = 2
    before, after = run(video, latents, context, num_frames=F), run(video, changed, context, num_frames=F)
    assert (after[2] - before[2]).abs().max() > 1e-2  # frame 2 itself changed
    for i in (1, 3):
        assert (after[i] - before[i]).abs().max().item() <= 1e-6
    changed_first = latents.clone()
    changed_first[0] = torch.randn(4, 16, 16)
    assert (run(video, changed_first, context, num_frames=F)[3] - before[3]).abs().max() > 1e-3


def test_temporal_attention_starts_at_zero_and_matters_once_trained(pair):
    _, video, context = pair
    temporal = [m for n, m in video.named_modules() if n.endswith("attn_temp")]
    assert len(temporal) == 7  # one per transformer block: 2 down, 1 mid, 4 up in the tiny UNet
    for module in temporal:
        assert module.to_out[0].weight.abs().max() == 0 and module.to_out[0].bias.abs().max() == 0
    trained = copy.deepcopy(video)
    with torch.no_grad():
        for n, p in trained.named_parameters():
            if "attn_temp.to_out" in n:
                p.normal_(0, 0.1)
    latents = torch.randn(F, 4, 16, 16)
    assert (run(trained, latents, context, num_frames=F) - run(video, latents, context, num_frames=F)).abs().max() > 1e-3


def test_trainable_parameters_are_queries_and_temporal_attention(pair):
    _, video, _ = pair
    names = trainable_parameters(video)
    assert names and all(("attn1.to_q" in n) or ("attn2.to_q" in n) or ("attn_temp" in n) for n in names)
    assert sum("attn1.to_q" in n for n in names) == 7 and sum("attn2.to_q" in n for n in names) == 7
    assert not any("to_k" in n and "attn_temp" not in n for n in names)


def test_missing_frame_count_is_a_clear_error(pair):
    _, video, context = pair
    with pytest.raises(ValueError, match="num_frames"):
        run(video, torch.randn(F, 4, 16, 16), context)


def test_inflating_twice_and_tuning_a_2d_unet_are_errors(pair):
    image, video, _ = pair
    with pytest.raises(ValueError, match="already inflated"):
        inflate_unet(video)
    with pytest.raises(ValueError, match="inflate"):
        trainable_parameters(image)


def test_our_processors_match_diffusers_attention(pair):
    image, _, context = pair
    ours = copy.deepcopy(image)
    install_processors(ours)
    latents = torch.randn(2, 4, 16, 16)
    assert (run(ours, latents, context[:2]) - run(image, latents, context[:2])).abs().max().item() <= 1e-5


# -- video GroupNorm (the official model's third channel between frames) ------------------------------------------

def test_video_group_norm_replaces_the_resnet_and_output_norms_only(pair):
    image, video, _ = pair
    replaced = sorted(n for n, m in video.named_modules() if isinstance(m, VideoGroupNorm))
    resnets = sorted(n for n, _ in image.named_modules() if n.endswith((".norm1", ".norm2")) and "resnets" in n)
    assert replaced == sorted(resnets + ["conv_norm_out"]) and len(resnets) == 2 * 8  # 1 + 1 down, 2 mid, 2 + 2 up
    # the transformer blocks' input GroupNorm stays per frame, as in the official model
    assert all(type(m) is torch.nn.GroupNorm for n, m in video.named_modules() if n.endswith("attentions.0.norm"))
    norm_names = {n for n in image.state_dict() if "norm1" in n and "resnets" in n or "conv_norm_out" in n}
    assert len(norm_names) == 2 * 8 + 2 and norm_names <= set(video.state_dict())  # the weights keep their names
    assert group_norm_of(video) == "video" and inflation_options(video) == {"frame_keys": "first", "group_norm": "video"}


def hand_group_norm(x, groups, weight, bias, eps, frames):
    """GroupNorm over (channels of a group, frames, h, w) per video, written out."""
    v = x.shape[0] // frames
    c = x.shape[1]
    grouped = x.reshape(v, frames, groups, c // groups, *x.shape[2:])
    mean = grouped.mean(dim=(1, 3, 4, 5), keepdim=True)
    var = grouped.var(dim=(1, 3, 4, 5), keepdim=True, unbiased=False)
    normed = ((grouped - mean) / (var + eps).sqrt()).reshape(x.shape)
    return normed * weight[None, :, None, None] + bias[None, :, None, None]


def test_video_group_norm_pools_the_frames_of_each_video_and_never_across_videos():
    from vp2p.inflation import FrameCount

    torch.manual_seed(0)
    plain = torch.nn.GroupNorm(4, 16)
    with torch.no_grad():
        plain.weight.normal_(), plain.bias.normal_()
    frames = FrameCount()
    frames.value = 3
    norm = VideoGroupNorm(plain, frames)
    assert norm.weight is plain.weight
    x = torch.randn(2 * 3, 16, 5, 5) * torch.arange(1, 7)[:, None, None, None]  # frames of different scale
    expected = hand_group_norm(x, 4, plain.weight, plain.bias, plain.eps, 3)
    assert (norm(x) - expected).abs().max() <= 1e-5
    assert (norm(x) - plain(x)).abs().max() > 0.1  # not what per-frame statistics give
    # the second video (rows 3-5) cannot change the first's normalisation
    other = x.clone()
    other[3:] = torch.randn(3, 16, 5, 5) * 10
    assert torch.equal(norm(other)[:3], norm(x)[:3])
    frames.value = 1  # one frame per video: exactly the image model's GroupNorm
    assert (norm(x) - plain(x)).abs().max() <= 1e-6


def test_video_group_norm_is_the_official_5d_group_norm_inside_the_unet(pair):
    # Hooked at the first ResNet's norm1: what the UNet feeds it and what it returns, for a batch of 2 videos.
    _, video, context = pair
    seen = {}
    norm = video.down_blocks[0].resnets[0].norm1
    handle = norm.register_forward_hook(lambda m, inputs, out: seen.update(x=inputs[0], y=out))
    latents = torch.randn(2 * F, 4, 16, 16)
    run(video, latents, context.repeat(2, 1, 1), num_frames=F)
    handle.remove()
    five_d = seen["x"].view(2, F, *seen["x"].shape[1:]).transpose(1, 2)  # (videos, C, F, h, w) as the official
    official = torch.nn.functional.group_norm(five_d, norm.num_groups, norm.weight, norm.bias, norm.eps)
    assert (seen["y"] - official.transpose(1, 2).reshape(seen["y"].shape)).abs().max() <= 1e-5


def test_video_group_norm_lets_frames_agree_and_per_frame_keeps_them_apart(pair):
    image, video, context = pair
    per_frame = inflate_unet(copy.deepcopy(image), group_norm="frame").eval()
    torch.manual_seed(3)
    latents = torch.randn(F, 4, 16, 16)
    changed = latents.clone()
    changed[2] = 3 * torch.randn(4, 16, 16)
    for unet, moves in ((video, True), (per_frame, False)):
        delta = (run(unet, changed, context, num_frames=F)[1] - run(unet, latents, context, num_frames=F)[1])
        assert (delta.abs().max() > 1e-3) == moves, delta.abs().max()  # frame 1 hears of frame 2 only via the norm


def test_inflation_is_seeded_and_restorable(pair):
    image, video, _ = pair
    again = inflate_unet(copy.deepcopy(image))
    for (name, a), b in zip(trainable_parameters(video).items(), trainable_parameters(again).values()):
        assert torch.equal(a, b), name  # the temporal attention's initial weights do not depend on the RNG state
    tuned = copy.deepcopy(video)
    with torch.no_grad():
        for p in trainable_parameters(tuned).values():
            p.add_(1.0)
    restore_base_weights(tuned)
    assert all(torch.equal(a, b) for a, b in zip(trainable_parameters(tuned).values(),
                                                  trainable_parameters(video).values()))
    with pytest.raises(ValueError, match="group_norm='batch'.*video"):
        inflate_unet(copy.deepcopy(image), group_norm="batch")


def test_first_and_previous_frame_keys_read_frame_0_and_the_previous_frame_only():
    # One frame-attention layer: frame i's keys and values come from frames 0 and i - 1, so a change of frame 1
    # reaches frames 1 and 2 and nothing else (in the whole UNet it spreads on, layer after layer).
    from diffusers.models.attention_processor import Attention

    from vp2p.attention import AttentionProcessor, Layer

    torch.manual_seed(4)
    attn = Attention(query_dim=8, heads=2, dim_head=4).eval()
    attn.set_processor(AttentionProcessor(Layer("x.attn1", "frame", "down"), frame_keys="first+previous"))
    hidden = torch.randn(F, 6, 8)
    changed = hidden.clone()
    changed[1] = torch.randn(6, 8)
    with torch.no_grad():
        before, after = attn(hidden, num_frames=F), attn(changed, num_frames=F)
    moved = [(after[i] - before[i]).abs().max().item() > 1e-6 for i in range(F)]
    assert moved == [False, True, True, False]
    changed[0] = torch.randn(6, 8)  # frame 0 is read by every frame
    with torch.no_grad():
        assert all((attn(changed, num_frames=F)[i] - before[i]).abs().max() > 1e-6 for i in range(F))
