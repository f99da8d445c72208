"""The paper's metrics (vp2p.paper.metrics) against values computed by hand, on a tiny seeded CLIP and tiny networks.

The CLIP used here is random (no weights can be downloaded in tests): the numbers mean nothing about images, but
every formula — preprocessing, embedding, cosine, averaging, variance — is checked against a direct computation.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vp2p.paper import metrics
from vp2p.toy import evaluator as ev
from vp2p.toy import world
from vp2p.toy.bench import judge_edit

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])  # OpenAI CLIP's normalisation, the processor's default
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])
DEMO = world.Scene("red", "circle", "grass", "bouncing", seed=7)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A tiny seeded CLIP (hidden size 32, 2 layers, 32×32 images in 8×8 patches) saved with its processor."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTokenizer, CLIPVisionConfig

    from vp2p.toy.tokenizer import write_tokenizer

    folder = tmp_path_factory.mktemp("tiny_clip")
    write_tokenizer(list(world.VOCABULARY), folder)
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    text = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8)
    torch.manual_seed(0)
    config = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16)
    CLIPModel(config).save_pretrained(folder)
    metrics._image_processor_class()(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        folder)
    return folder


@pytest.fixture(scope="module")
def clip(clip_dir):
    return metrics.load_clip(clip_dir, device="cpu")


def _random_video(frames: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(frames, size, size, 3), dtype=np.uint8)


def _image_embeddings_by_hand(clip, video: np.ndarray) -> np.ndarray:
    """Unit CLIP embeddings of 32×32 frames, preprocessing done here: at the model's size resize and crop are
    no-ops, what is left is (x / 255 - mean) / std, channels first."""
    pixels = (video / 255.0 - CLIP_MEAN) / CLIP_STD
    with torch.no_grad():
        out = clip.model.get_image_features(pixel_values=torch.tensor(pixels, dtype=torch.float32).permute(0, 3, 1, 2))
    e = metrics._projected(out).double().numpy()
    return e / np.linalg.norm(e, axis=-1, keepdims=True)


def _text_embedding_by_hand(clip, text: str) -> np.ndarray:
    ids = clip.tokenizer([text], return_tensors="pt").input_ids
    with torch.no_grad():
        e = metrics._projected(clip.model.get_text_features(input_ids=ids))[0].double().numpy()
    return e / np.linalg.norm(e)


# ---------------------------------------------------------------- loading


def test_load_clip_errors_name_the_value_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-clip-folder.*does not exist.*hub id"):
        metrics.load_clip(tmp_path / "no-such-clip-folder")
    with pytest.raises(FileNotFoundError, match="not a CLIP folder.*config.json"):
        metrics.load_clip(tmp_path)
    # A hub id with no internet (the tests run with HF_HUB_OFFLINE=1): the message says how to get a folder.
    with pytest.raises(OSError, match="could not load CLIP 'nobody-here/no-such-clip'.*huggingface-cli download"):
        metrics.load_clip("nobody-here/no-such-clip")


def test_load_clip_from_a_folder(clip):
    assert clip.device == torch.device("cpu") and not clip.model.training
    assert clip.model.config.vision_config.image_size == 32


# ---------------------------------------------------------------- CLIP score, Temp, OSV


def test_clip_score_is_the_mean_frame_text_cosine(clip):
    video = _random_video(3)
    text = "a red circle bouncing on the grass"
    by_hand = _image_embeddings_by_hand(clip, video) @ _text_embedding_by_hand(clip, text)
    assert metrics.clip_score(clip, video, text) == pytest.approx(by_hand.mean(), abs=1e-5)
    # Every frame counts: the score of one frame is that frame's cosine.
    assert metrics.clip_score(clip, video[1:2], text) == pytest.approx(by_hand[1], abs=1e-5)
    assert not np.allclose(by_hand, by_hand[0], atol=1e-3)  # the frames do give different cosines


def test_clip_score_resizes_other_frame_sizes(clip):
    from PIL import Image

    video = world.render(DEMO, num_frames=2).frames  # 64×64: resized to CLIP's 32 (bicubic, the processor's)
    score = metrics.clip_score(clip, video, DEMO.caption)
    small = np.stack([np.asarray(Image.fromarray(f).resize((32, 32), Image.Resampling.BICUBIC)) for f in video])
    by_hand = _image_embeddings_by_hand(clip, small) @ _text_embedding_by_hand(clip, DEMO.caption)
    assert score == pytest.approx(by_hand.mean(), abs=2e-3)
    other = metrics.clip_score(clip, world.render(DEMO.replace(color="blue"), num_frames=2).frames, DEMO.caption)
    assert abs(other - score) > 1e-3  # the frames' content, not only their size, reaches the score
    with pytest.raises(ValueError, match="uint8 array"):
        metrics.clip_score(clip, video.astype(np.float32), DEMO.caption)


def test_temporal_consistency_is_the_mean_consecutive_cosine(clip):
    frame, other = _random_video(2, seed=1)
    assert metrics.temporal_consistency(clip, np.stack([frame] * 4)) == pytest.approx(1.0, abs=1e-6)
    # Frames a a b b: consecutive cosines 1, cos(a, b), 1.
    e = _image_embeddings_by_hand(clip, np.stack([frame, other]))
    cosine = float(e[0] @ e[1])
    assert cosine < 0.999
    video = np.stack([frame, frame, other, other])
    assert metrics.temporal_consistency(clip, video) == pytest.approx((2 + cosine) / 3, abs=1e-5)
    with pytest.raises(ValueError, match="at least 2 frames"):
        metrics.temporal_consistency(clip, video[:1])


def test_osv_is_zero_for_identical_frames_and_grows_when_one_changes(clip):
    frame, other = _random_video(2, seed=2)
    assert metrics.object_semantic_variance(clip, np.stack([frame] * 4)) == pytest.approx(0.0, abs=1e-9)
    # Three frames with embedding e, one with e': the total variance is 3/16 |e - e'|² = 3/16 (2 - 2 cos).
    e = _image_embeddings_by_hand(clip, np.stack([frame, other]))
    expected = metrics.OSV_SCALE * 3 / 16 * (2 - 2 * float(e[0] @ e[1]))
    osv = metrics.object_semantic_variance(clip, np.stack([frame, frame, other, frame]))
    assert osv == pytest.approx(expected, rel=1e-4)
    assert osv > 1.0
    # Two changed frames of four vary more than one (total variance 1/4 |e - e'|² > 3/16 |e - e'|²).
    assert metrics.object_semantic_variance(clip, np.stack([frame, other, other, frame])) > osv


def test_object_crop_squares_the_box_and_paints_the_rest():
    frame = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    mask = np.zeros((5, 6), dtype=bool)
    mask[1, 2:5] = True
    mask[2, 3] = True  # box: rows 1-2, columns 2-4 -> 2×3, padded to 3×3
    crop = metrics._object_crop(frame, mask, fill=(9, 9, 9))
    assert crop.shape == (3, 3, 3)
    # (3 - 2) // 2 = 0 padding rows above, one below; row 2 of the box keeps only its masked pixel.
    assert np.array_equal(crop[0], frame[1, 2:5])
    assert np.array_equal(crop[1], [[9, 9, 9], frame[2, 3], [9, 9, 9]])
    assert (crop[2] == 9).all()


def test_osv_with_masks_looks_at_the_object_only(clip):
    """The same object pasted at different places on changing backgrounds: its crops are identical, OSV 0."""
    rng = np.random.default_rng(3)
    video = rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    patch = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    masks = np.zeros((4, 32, 32), dtype=bool)
    for f, (y, x) in enumerate([(2, 3), (10, 12), (20, 5), (4, 22)]):
        video[f, y : y + 8, x : x + 8] = patch
        masks[f, y : y + 8, x : x + 8] = True
    assert metrics.object_semantic_variance(clip, video, masks) == pytest.approx(0.0, abs=1e-9)
    assert metrics.object_semantic_variance(clip, video) > 1.0  # the whole frames do differ
    changed = video.copy()
    changed[2, 20:28, 5:13] = 255 - patch
    assert metrics.object_semantic_variance(clip, changed, masks) > 1.0
    # Frames without the object are left out; fewer than two left is an error.
    masks[1:] = False
    with pytest.raises(ValueError, match="at least 2 frames, found it in 1"):
        metrics.object_semantic_variance(clip, video, masks)
    with pytest.raises(ValueError, match="do not match"):
        metrics.object_semantic_variance(clip, video, masks[:, :16])


# ---------------------------------------------------------------- masked PSNR


def test_masked_psnr_is_the_psnr_of_the_outside_pixels():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, size=(2, 10, 12, 3), dtype=np.uint8)
    b = rng.integers(0, 256, size=(2, 10, 12, 3), dtype=np.uint8)
    masks = np.zeros((2, 10, 12), dtype=bool)
    masks[0, 2:5, 3:9] = True
    masks[1, 6:9, 1:4] = True
    outside = ~masks
    mse = np.mean((a[outside].astype(np.float64) - b[outside]) ** 2)
    assert metrics.masked_psnr(a, b, masks) == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-9)
    # dilate=1 grows each mask by the full 3×3 square (computed here by hand with slices).
    grown = masks.copy()
    for f, (y0, y1, x0, x1) in enumerate([(2, 5, 3, 9), (6, 9, 1, 4)]):
        grown[f, y0 - 1 : y1 + 1, x0 - 1 : x1 + 1] = True
    mse1 = np.mean((a[~grown].astype(np.float64) - b[~grown]) ** 2)
    assert metrics.masked_psnr(a, b, masks, dilate=1) == pytest.approx(10 * np.log10(255**2 / mse1), abs=1e-9)
    # dilate=2: the digital disk of radius 2 (the 5×5 square without its four corners), so a box grows into the
    # 5×5-grown box less its four corner pixels; clipped at the frame's edge (10 rows, 12 columns)
    grown2 = masks.copy()
    for f, (y0, y1, x0, x1) in enumerate([(2, 5, 3, 9), (6, 9, 1, 4)]):
        grown2[f, max(y0 - 2, 0) : y1 + 2, max(x0 - 2, 0) : x1 + 2] = True
        for y, x in [(y0 - 2, x0 - 2), (y0 - 2, x1 + 1), (y1 + 1, x0 - 2), (y1 + 1, x1 + 1)]:
            if 0 <= y < 10 and 0 <= x < 12:
                grown2[f, y, x] = False
    mse2 = np.mean((a[~grown2].astype(np.float64) - b[~grown2]) ** 2)
    assert metrics.masked_psnr(a, b, masks, dilate=2) == pytest.approx(10 * np.log10(255**2 / mse2), abs=1e-9)
    assert mse2 != mse1 != mse  # each dilation leaves other pixels
    # Changes inside the masks do not count.
    c = a.copy()
    c[masks] = 255 - c[masks]
    assert metrics.masked_psnr(a, c, masks) == ev.PSNR_CAP


# ---------------------------------------------------------------- LPIPS


def test_lpips_formula_by_hand():
    # Layer 1, 2 channels at 2 pixels. Pixel 1: (3, 4) vs (4, 3) -> unit (.6, .8) vs (.8, .6), squares (.04, .04);
    # pixel 2: (1, 0) vs (0, 1), squares (1, 1). Weights (0.5, 2): 0.1 and 2.5, spatial mean 1.3.
    a1 = torch.tensor([[3.0, 1.0], [4.0, 0.0]]).reshape(1, 2, 1, 2)
    b1 = torch.tensor([[4.0, 0.0], [3.0, 1.0]]).reshape(1, 2, 1, 2)
    # Layer 2, 1 channel at 1 pixel: 2 vs -3 normalise to 1 vs -1, square 4, weight 0.25: 1.0.
    a2, b2 = torch.tensor([2.0]).reshape(1, 1, 1, 1), torch.tensor([-3.0]).reshape(1, 1, 1, 1)
    weights = [torch.tensor([0.5, 2.0]), torch.tensor([0.25])]
    d = metrics.lpips_from_features([a1, a2], [b1, b2], weights)
    assert d.shape == (1,) and float(d[0]) == pytest.approx(2.3, abs=1e-6)


class _TinyFeatures(torch.nn.Module):
    """A random two-layer feature network (what AlexNet is to LPIPS, in miniature)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.conv1 = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.conv2 = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1)

    def forward(self, x):
        h1 = torch.relu(self.conv1(x))
        return [h1, torch.relu(self.conv2(h1))]


def test_lpips_distance_on_a_tiny_network_matches_numpy():
    net = _TinyFeatures()
    weights = [torch.rand(4, generator=torch.Generator().manual_seed(6)), torch.rand(6)]
    model = metrics.LPIPS(net, weights)
    a, b = _random_video(3, size=16, seed=7), _random_video(3, size=16, seed=8)
    shift, scale = np.array(metrics.LPIPS_SHIFT), np.array(metrics.LPIPS_SCALE)

    def features(video):
        x = ((video / 127.5 - 1) - shift) / scale
        with torch.no_grad():
            return [f.double().numpy() for f in net(torch.tensor(x, dtype=torch.float32).permute(0, 3, 1, 2))]

    per_frame = 0.0
    for fa, fb, w in zip(features(a), features(b), weights):
        ua = fa / (np.sqrt((fa**2).sum(1, keepdims=True)) + 1e-10)
        ub = fb / (np.sqrt((fb**2).sum(1, keepdims=True)) + 1e-10)
        per_frame = per_frame + ((ua - ub) ** 2 * w.double().numpy()[None, :, None, None]).sum(1).mean((1, 2))
    assert metrics.lpips_distance(a, b, model=model) == pytest.approx(per_frame.mean(), rel=1e-5)
    assert metrics.lpips_distance(a, a, model=model) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        metrics.lpips_distance(a, b[:2], model=model)


def _alexnet_lpips_files(folder):
    """Random weights in the two real files' layouts: torchvision's AlexNet checkpoint and lpips' alex.pth."""
    torch.manual_seed(9)
    backbone = {f"features.{k}": v for k, v in metrics.AlexNetFeatures().features.state_dict().items()}
    backbone["classifier.1.weight"] = torch.zeros(4, 4)  # torchvision's file has the classifier too: ignored
    linear = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(metrics.AlexNetFeatures.CHANNELS)}
    torch.save(backbone, folder / "alexnet-owt-7be5be79.pth")
    torch.save(linear, folder / "alex.pth")
    torch.save({**backbone, **linear}, folder / "merged.pth")
    return folder / "alex.pth", folder / "alexnet-owt-7be5be79.pth", backbone, linear


def test_lpips_over_alexnet_loads_the_official_file_layouts(tmp_path):
    lin_path, alex_path, backbone, linear = _alexnet_lpips_files(tmp_path)
    model = metrics.load_lpips(lin_path, alex_path)
    assert torch.equal(model.net.features[10].weight, backbone["features.10.weight"])
    assert torch.equal(model.linear[4], linear["lin4.model.1.weight"].flatten())
    taps = model.net(torch.zeros(1, 3, 64, 64))
    assert [t.shape[1] for t in taps] == list(metrics.AlexNetFeatures.CHANNELS)
    a = world.render(DEMO, num_frames=2).frames
    b = world.render(DEMO.replace(color="blue"), num_frames=2).frames
    d = metrics.lpips_distance(a, b, weights=lin_path, backbone=alex_path)
    assert d > 0 and metrics.lpips_distance(a, a, weights=lin_path, backbone=alex_path) == 0.0
    # Both in one file gives the same model.
    assert metrics.lpips_distance(a, b, weights=tmp_path / "merged.pth") == pytest.approx(d, rel=1e-6)
    # The formula in numpy on the taps of the loaded AlexNet, with alex.pth's own weights, layer i to lin{i}: unit
    # channels, squared difference, weighted, mean over pixels, summed over layers, mean over frames.
    shift, scale = np.array(metrics.LPIPS_SHIFT), np.array(metrics.LPIPS_SCALE)

    def taps_of(video):
        pixels = torch.tensor(((video / 127.5 - 1) - shift) / scale, dtype=torch.float32).permute(0, 3, 1, 2)
        with torch.no_grad():
            return [t.double().numpy() for t in model.net(pixels)]

    per_frame = 0.0
    for i, (ta, tb) in enumerate(zip(taps_of(a), taps_of(b))):
        ua = ta / (np.sqrt((ta**2).sum(1, keepdims=True)) + 1e-10)
        ub = tb / (np.sqrt((tb**2).sum(1, keepdims=True)) + 1e-10)
        w = linear[f"lin{i}.model.1.weight"].flatten().double().numpy()
        per_frame = per_frame + ((ua - ub) ** 2 * w[None, :, None, None]).sum(1).mean((1, 2))
    assert d == pytest.approx(float(per_frame.mean()), rel=1e-5)


def test_lpips_without_weights_says_which_files_and_where(tmp_path):
    a = _random_video(1, size=16)
    with pytest.raises(FileNotFoundError, match=r"alex\.pth.*lpips.*alexnet-owt-7be5be79\.pth.*download\.pytorch"):
        metrics.lpips_distance(a, a)
    with pytest.raises(FileNotFoundError, match="missing.pth does not exist"):
        metrics.lpips_distance(a, a, weights=tmp_path / "missing.pth")
    lin_path, _, _, _ = _alexnet_lpips_files(tmp_path)
    with pytest.raises(FileNotFoundError, match="no AlexNet 'features"):
        metrics.load_lpips(lin_path)  # the linear layers alone


# ---------------------------------------------------------------- toy-world counterparts


@pytest.fixture(scope="module")
def demo():
    return world.render(DEMO)


def test_toy_target_hit(demo):
    blue = DEMO.replace(color="blue")
    assert metrics.toy_target_hit(demo.frames, DEMO) == 1.0
    assert metrics.toy_target_hit(demo.frames, blue) == 0.0
    reading = ev.read_video(demo.frames)
    assert metrics.toy_target_hit([reading, reading], [DEMO, blue]) == 0.5
    assert metrics.toy_target_hit(reading, blue, fields=("shape", "background")) == 1.0
    with pytest.raises(ValueError, match="one target scene per edited video"):
        metrics.toy_target_hit([reading], [DEMO, blue])
    with pytest.raises(ValueError, match="unknown fields"):
        metrics.toy_target_hit(reading, DEMO, fields=("colour",))


def test_toy_background_psnr(demo):
    # The same scene in blue: only the object's pixels differ, the background is untouched -> the cap.
    blue = world.render(DEMO.replace(color="blue")).frames
    assert metrics.toy_background_psnr(demo, blue) == ev.PSNR_CAP
    assert metrics.toy_background_psnr(demo, blue) == judge_edit(demo, DEMO.replace(color="blue"), blue)[
        "background_psnr"]
    # Everything 10 brighter (no grass pixel is near 255): MSE 100 outside whatever mask, 10 log10(255² / 100) dB.
    assert demo.frames.max() <= 245  # so + 10 does not wrap around
    brighter = demo.frames + np.uint8(10)
    assert metrics.toy_background_psnr(demo, brighter) == pytest.approx(10 * np.log10(255**2 / 100), abs=1e-9)


def test_toy_attribute_agreement(demo):
    assert metrics.toy_attribute_agreement(demo.frames) == 1.0
    # Frames 0-2 from the blue render of the same scene (same path): color agrees in 5 of 8 frames, shape in all.
    mixed = demo.frames.copy()
    mixed[:3] = world.render(DEMO.replace(color="blue")).frames[:3]
    assert metrics.toy_attribute_agreement(mixed) == pytest.approx((5 / 8 + 1) / 2)
    assert metrics.toy_attribute_agreement(mixed, fields=("color",)) == pytest.approx(5 / 8)
    with pytest.raises(ValueError, match="not readings"):
        metrics.toy_attribute_agreement(mixed, fields=("size",))


def test_aligned_iou_by_hand():
    a = np.zeros((12, 12), dtype=bool)
    a[2:6, 2:6] = True
    moved = np.roll(a, (3, 5), axis=(0, 1))
    assert metrics.aligned_iou(a, moved) == 1.0  # a translation costs nothing
    inner = np.zeros_like(a)
    inner[3:5, 3:5] = True  # same centroid, a quarter of the area
    assert metrics.aligned_iou(a, inner) == pytest.approx(4 / 16)
    assert metrics.aligned_iou(a, np.zeros_like(a)) == 0.0


def test_toy_object_temporal(demo):
    clean = metrics.toy_object_temporal(demo.frames)
    # Measured 0.944: the rendered circle's anti-aliased rim changes by a pixel here and there as it moves.
    assert 0.93 < clean <= 1.0
    # Frame 4 drawn 30% smaller: the two pairs around it overlap only ~0.7² ≈ 0.5 -> mean drops by about 2×0.5/7.
    scene_path, radius = world.object_path(DEMO, 8, 64)
    background = world.render_background(DEMO.background, 64, np.random.default_rng([DEMO.seed, 3]))
    cover = world.shape_coverage("circle", 64, tuple(scene_path[4]), 0.7 * radius)[..., None]
    shrunk = demo.frames.copy()
    color = np.array(world.COLORS["red"]) * DEMO.look.shade
    shrunk[4] = np.round(background * (1 - cover) + color * cover).astype(np.uint8)
    assert metrics.toy_object_temporal(shrunk) == pytest.approx(clean - 2 * (clean - 0.49) / 7, abs=0.01)  # 0.813
    with pytest.raises(ValueError, match="at least 2 frames"):
        metrics.toy_object_temporal(demo.frames[:1])


def _per_frame_looks(scene: world.Scene, frames: int = 8) -> np.ndarray:
    """What editing frame by frame can give: frame k of the video, drawn with a look sampled anew for it."""
    return np.stack([
        world.render(scene.replace(appearance=world.sample_appearance(scene.seed + 1000 * (k + 1), scene.shape)),
                     num_frames=frames, indices=[k]).frames[0]
        for k in range(frames)])


@pytest.mark.parametrize("scene", [world.Scene("red", "star", "grass", "sliding", attribute="striped", seed=21),
                                   world.Scene("blue", "circle", "sand", "floating", attribute="dotted", seed=8)])
def test_appearance_flicker_ranks_a_new_look_per_frame_above_one_look(scene):
    consistent = world.render(scene).frames
    flickering = _per_frame_looks(scene)
    steady, changing = metrics.appearance_flicker_parts(consistent), metrics.appearance_flicker_parts(flickering)
    expected = {"shade", "stripe_angle" if scene.attribute == "striped" else "dot_offset"}
    expected |= {"rotation"} if scene.shape == "star" else set()
    assert set(steady) == set(changing) == expected
    for part in expected:
        assert changing[part] > steady[part] + 0.2, (part, steady, changing)
    assert metrics.toy_appearance_flicker(consistent) < 0.15 < 0.4 < metrics.toy_appearance_flicker(flickering)


def test_appearance_flicker_is_none_without_an_object():
    background = world.render_background("sky", 64, np.random.default_rng([1, 3]))
    video = np.repeat(np.round(background)[None].astype(np.uint8), 3, axis=0)
    assert metrics.toy_appearance_flicker(video) is None and metrics.appearance_flicker_parts(video) == {}


def test_judge_edit_reports_geometry_as_json(demo):
    verdict = judge_edit(demo, DEMO, demo.frames)
    geometry = verdict["geometry"]
    assert geometry["frames_without_object"] == 0 and geometry["max_drift_px"] < 0.2
    assert len(geometry["per_frame"]["drift_px"]) == 8 and len(geometry["per_frame"]["jump_px"]) == 7
    assert json.loads(json.dumps(verdict))["geometry"] == geometry
