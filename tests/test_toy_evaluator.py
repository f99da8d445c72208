"""The toy evaluator reads rendered frames back into the words that made them, and measures background changes.

Accuracy is measured on held-out scenes (seeds 5000..5299, one frame per video) both as rendered and after a
blur + noise degradation that imitates the toy diffusion model's output.
"""

from __future__ import annotations

import numpy as np
import pytest

from vp2p.toy import evaluator as ev
from vp2p.toy import world

SEEDS = range(5000, 5300)


def _degrade(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 3×3 box blur applied twice (close to a Gaussian of sigma ~1.2 px), then Gaussian noise of std 6."""
    f = frame.astype(np.float64)
    h, w = f.shape[:2]
    for _ in range(2):
        p = np.pad(f, ((1, 1), (1, 1), (0, 0)), mode="edge")
        f = sum(p[y : y + h, x : x + w] for y in range(3) for x in range(3)) / 9.0
    return np.clip(np.round(f + rng.normal(0, 6, f.shape)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def rendered():
    """(scene, frame, true mask) for one frame of each held-out video (the frame index varies with the seed)."""
    out = []
    for seed in SEEDS:
        scene = world.random_scene(seed)
        video = world.render(scene, num_frames=8, indices=[seed % 8])
        out.append((scene, video.frames[0], video.masks[0]))
    return out


@pytest.fixture(scope="module")
def clean_readings(rendered):
    return [ev.read_frame(frame) for _, frame, _ in rendered]


@pytest.fixture(scope="module")
def degraded_readings(rendered):
    rng = np.random.default_rng(0)
    return [ev.read_frame(_degrade(frame, rng)) for _, frame, _ in rendered]


def _accuracy(rendered, readings) -> dict[str, float]:
    scores = [ev.score(reading, scene) for (scene, _, _), reading in zip(rendered, readings)]
    return {name: float(np.mean([s[name] for s in scores])) for name in ev.FIELDS}


def test_held_out_scenes_cover_the_vocabulary(rendered):
    scenes = [scene for scene, _, _ in rendered]
    assert len(scenes) >= 300
    assert {s.color for s in scenes} == set(world.COLORS)
    assert {s.shape for s in scenes} == set(world.SHAPES)
    assert {s.attribute for s in scenes} == {None, *world.ATTRIBUTES}
    assert {s.background for s in scenes} == set(world.BACKGROUNDS)
    assert sum(s.style == "night" for s in scenes) >= 20


def test_clean_frames_are_read_correctly(rendered, clean_readings):
    accuracy = _accuracy(rendered, clean_readings)
    # Measured: 1.0 on every field.
    for name in ev.FIELDS:
        assert accuracy[name] >= 0.99, (name, accuracy)


def test_blurred_noisy_frames_are_still_read(rendered, degraded_readings):
    accuracy = _accuracy(rendered, degraded_readings)
    # Measured: 1.0 on every field (a green striped object on grass is the usual first failure).
    assert accuracy["color"] >= 0.9 and accuracy["background"] >= 0.9 and accuracy["night"] >= 0.9, accuracy
    assert accuracy["shape"] >= 0.85 and accuracy["attribute"] >= 0.85, accuracy


def test_segmentation_matches_the_true_masks(rendered, clean_readings):
    ious = [(r.mask & m).sum() / (r.mask | m).sum() for (_, _, m), r in zip(rendered, clean_readings)]
    # Measured: mean 0.982, worst 0.80 (dark stripes on an object of the background's own hue).
    assert np.mean(ious) >= 0.9
    assert np.min(ious) >= 0.5


def test_segment_object_agrees_with_read_frame(rendered, clean_readings):
    for (scene, frame, _), reading in list(zip(rendered, clean_readings))[:10]:
        assert np.array_equal(ev.segment_object(frame), reading.mask)
        assert np.array_equal(ev.segment_object(frame, scene.background, scene.style == "night"), reading.mask)
        assert ev.classify_background(frame) == (scene.background, scene.style == "night")


def test_background_alone_has_no_object():
    for name in world.BACKGROUNDS:
        background = world.render_background(name, 64, np.random.default_rng([7, 3]))
        for night in (False, True):
            frame = np.round(background * (world.NIGHT_GAIN if night else 1.0)).astype(np.uint8)
            reading = ev.read_frame(frame)
            assert (reading.background, reading.night) == (name, night)
            assert reading.color is None and reading.shape is None and reading.attribute is None
            assert not reading.mask.any() and reading.attribute_strength == 0.0


@pytest.mark.parametrize("attribute", world.ATTRIBUTES)
def test_attribute_strength_grows_with_pattern_contrast(attribute):
    scene = world.Scene("orange", "circle", "grass", attribute=attribute, seed=11)
    full = world.render(scene, num_frames=1).frames[0].astype(np.float64)
    plain = world.render(scene.replace(attribute=None), num_frames=1).frames[0].astype(np.float64)
    # Blending the plain and the patterned render draws the pattern at a fraction of its contrast.
    strengths = [
        ev.read_frame(np.round(plain + contrast * (full - plain)).astype(np.uint8)).attribute_strength
        for contrast in (0.0, 0.25, 0.5, 0.75, 1.0)
    ]
    assert strengths[0] < 0.05  # plain
    assert np.all(np.diff(strengths) > 0.15), strengths  # monotonic, in clear steps
    assert 0.3 < strengths[2] < 0.7 and strengths[4] > 0.9, strengths  # measured: 0.50 and 1.00
    assert ev.read_frame(full.astype(np.uint8)).attribute == attribute


def test_read_video_votes_per_field():
    scene = world.Scene("pink", "star", "sky", motion="circling", attribute="dotted", style="night", seed=3)
    video = world.render(scene, num_frames=6)
    reading = ev.read_video(video.frames)
    assert ev.score(reading, scene) == dict.fromkeys(ev.FIELDS, True)
    assert reading.masks.shape == video.masks.shape and len(reading.frames) == 6
    assert reading.agreement == dict.fromkeys(ev.FIELDS, 1.0)
    assert reading.attribute_strength == pytest.approx(np.mean([r.attribute_strength for r in reading.frames]))
    # A wrong scene fails exactly on the changed fields.
    assert ev.score(reading, scene.replace(color="red", style=None)) == {
        "color": False, "shape": True, "attribute": True, "background": True, "night": False,
    }


def test_vote_prefers_found_objects_for_color_and_shape():
    assert ev._vote([None, None, "red"], skip_none=True) == "red"
    assert ev._vote([None, None, "striped"]) is None
    assert ev._vote(["a", "b", "b", "a"]) == "a"  # ties: the first seen


def test_dilate_exact():
    mask = np.zeros((7, 7), dtype=bool)
    mask[3, 3] = True
    assert np.array_equal(ev.dilate(mask, 0), mask)
    assert ev.dilate(mask, 1).sum() == 9 and ev.dilate(mask, 1)[2:5, 2:5].all()
    disk = ev.dilate(mask, 2)
    assert disk.sum() == 21 and not disk[1, 1] and disk[1, 2] and disk[3, 1]  # 5×5 without its 4 corners
    assert ev.dilate(mask, 2, disk=False).sum() == 25
    corner = np.zeros((4, 4), dtype=bool)
    corner[0, 0] = True
    assert ev.dilate(corner, 1).sum() == 4  # clipped at the border, no wrap-around
    video = np.stack([mask, np.zeros_like(mask)])
    assert ev.dilate(video, 1).sum(axis=(1, 2)).tolist() == [9, 0]  # frames are dilated independently


def test_union_masks_exact():
    a = np.array([[True, False], [False, False]])
    b = np.array([[False, False], [False, True]])
    assert ev.union_masks(a, b).tolist() == [[True, False], [False, True]]
    assert ev.union_masks(a).tolist() == a.tolist()
    with pytest.raises(ValueError):
        ev.union_masks(a, np.zeros((3, 3), dtype=bool))


def test_psnr_values():
    a = np.zeros((4, 4, 3), dtype=np.uint8)
    assert ev.psnr(a, a) == 100.0
    # A difference of 1 everywhere: MSE 1, PSNR = 20 log10(255).
    assert ev.psnr(a, a + 1) == pytest.approx(20 * np.log10(255), abs=1e-9)
    assert ev.psnr(a, np.full_like(a, 255)) == pytest.approx(0.0)


def test_background_psnr():
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, size=(2, 16, 16, 3), dtype=np.uint8)
    masks = np.zeros((2, 16, 16), dtype=bool)
    masks[:, 6:10, 6:10] = True
    assert ev.background_psnr(video, video, masks) == 100.0
    # Changing the object region alone leaves the background untouched.
    edited = video.copy()
    edited[:, 6:10, 6:10] = 255 - edited[:, 6:10, 6:10]
    assert ev.background_psnr(video, edited, masks) == 100.0
    # ...but a 1-px dilation is too small for a change that reaches 2 px beyond the mask.
    edited[:, 4, 7] = 255 - edited[:, 4, 7]
    assert ev.background_psnr(video, edited, masks, dilate=2) == 100.0
    assert ev.background_psnr(video, edited, masks, dilate=1) < 60
    # One pixel outside: the 4×4 square dilated by a radius-2 disk covers 8×8 - 4 corners = 60 pixels, leaving
    # 2 frames × (256 - 60) pixels × 3 channels = 1176 values. Adding 51 to one pixel's 3 channels gives
    # MSE = 3 × 51² / 1176 = 6.6352 and PSNR = 10 log10(255² / 6.6352) = 10 log10(9800) = 39.912 dB.
    video[0, 0, 0] = 100
    outside = video.copy()
    outside[0, 0, 0] = 151
    assert ev.background_psnr(video, outside, masks, dilate=2) == pytest.approx(39.912, abs=0.1)
    # (H, W) masks broadcast over frames.
    assert ev.background_psnr(video, outside, masks[0], dilate=2) == pytest.approx(39.912, abs=0.1)
    with pytest.raises(ValueError, match="no pixel is left"):
        ev.background_psnr(video, outside, np.ones_like(masks))
    with pytest.raises(ValueError):
        ev.background_psnr(video, outside[:1], masks)


def test_other_frame_sizes():
    scene = world.Scene("blue", "triangle", "sand", attribute="striped", seed=5)
    video = world.render(scene, num_frames=1, size=128)
    reading = ev.read_frame(video.frames[0])
    assert ev.score(reading, scene) == dict.fromkeys(ev.FIELDS, True)
    assert (reading.mask & video.masks[0]).sum() / (reading.mask | video.masks[0]).sum() > 0.9


def test_bad_input_raises():
    with pytest.raises(ValueError):
        ev.read_frame(np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(ValueError):
        ev.read_video(np.zeros((8, 8, 3), dtype=np.uint8))
