import copy

import pytest
import torch

from tiny import tiny_unet
from vp2p.attention import install_processors
from vp2p.inflation import inflate_unet, trainable_parameters

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
    _, video, context = pair
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
