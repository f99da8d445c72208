"""Read a toy-world frame back into words: color, shape, pattern, background, night, and the object's mask.

Text-driven editing is judged by asking "did the edit happen, and did nothing else change?". In the toy world
both questions can be answered from pixels alone:

* ``read_frame`` / ``read_video`` segment the object and name its color, shape, pattern (attribute), the
  background and whether it is night; ``score`` compares a reading with the scene that was asked for.
* ``background_psnr`` measures how much the pixels *outside* the object(s) changed between two videos.
* ``object_geometry`` measures how far the edited object drifted from the source's, and how its size changed.

The frames may come from the renderer (exact) or from the toy diffusion model (blurry, noisy, slightly off
colors), so every step uses robust statistics and nothing relies on exact pixel values. The object mask is never
needed: it is segmented from the pixels against a model of the background learned by rendering backgrounds.

How it works, in short:

1. Background and night. Every background texture in ``world`` varies along ONE direction in RGB (e.g. grass gets
   lighter and darker green), so a background is a line segment in RGB space. We fit that segment for each of the
   4 backgrounds, by day and at night (8 candidates), from rendered backgrounds, and pick the candidate the
   frame's pixels lie closest to (a trimmed mean, so the object, at most ~20% of the frame, is ignored), plus
   how far those pixels spread off the candidate's texture direction.
2. Segmentation, in daylight colors (night frames are divided by ``NIGHT_GAIN`` first; noisy frames get a
   3×3 median). The segment is refitted to the frame's own background pixels (this absorbs a color cast); pixels
   far from it, grouped by a closing (dark stripes can cut an object into bands), form the object's core, whose
   bright interior gives the object color ``C``. At the edge, each pixel is a mix of ``C`` and the local
   background (the mean of nearby background pixels): it belongs to the object when it is at least half-way to
   ``C`` — the renderer's own ``coverage >= 0.5`` rule. Pattern pixels (``0.4 C``) are kept where they stand out
   from the background; holes are filled and a closing bridges the rest. A segment under a quarter of the
   smallest object the world draws is a smear, and the frame reads as having no object.
3. Color: median of the brighter interior pixels (stripes and dots are darker), nearest palette color allowing
   for a moderate brightness gain.
4. Shape: best intersection-over-union with each shape's template (``world.shape_coverage``) scaled to the same
   area and placed at the same centroid, turned (stars and triangles: coarse to fine, to 2°), with a small search
   over scale and offset. The best turn is the shape's rotation.
5. Attribute: inside the eroded object, each pixel's brightness relative to ``C``. The spread between bright and
   dark pixels, (q90 - q10) / q90 / (1 - PATTERN_SHADE), is ``attribute_strength``: 1 for a rendered
   pattern, 0 for a plain object, proportional to the pattern's contrast in between. Whether the dark
   pixels form bands (stripes: every brightness gradient points along the bands' normal) or blobs (dots: no
   preferred direction) is told by the coherence of that map's structure tensor, whichever way the bands run.
6. Look (``FrameReading.look``, what the caption leaves open, ``world.Appearance``): the shade is ``C``'s gain
   against its palette color; the stripes' angle is the structure tensor's main direction; the dot grid's offset
   is the phase of the dark pixels' first Fourier coefficient at the grid's period, about the object's centre
   (the centroid less the template's own offset); the rotation is step 4's.

The morphology (dilation, erosion, connected components, hole filling, median) is ``scipy.ndimage``'s.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import ndimage

from vp2p.inspect.fidelity import PSNR_CAP, psnr, psnr_from_mse  # noqa: F401  (psnr, PSNR_CAP: part of the API)
from vp2p.toy import world


# ---------------------------------------------------------------- readings


@dataclass
class FrameReading:
    color: str | None  # nearest of world.COLORS, None if no object found
    shape: str | None  # one of world.SHAPES
    attribute: str | None  # "striped", "dotted" or None (plain)
    attribute_strength: float  # how strongly a pattern shows inside the object (0 plain, ~1 rendered pattern)
    background: str  # one of world.BACKGROUNDS
    night: bool
    mask: np.ndarray  # bool (H, W): the segmented object
    confidence: dict[str, float] | None = None  # margins: how far the winner is ahead of the runner-up
    look: Look | None = None  # the appearance the caption leaves open, as read (None when no object is found)


@dataclass(frozen=True)
class Look:
    """What a frame shows that its caption leaves open (``world.Appearance``), read from pixels.

    shade: the object color's brightness gain against its palette color (``world.SHADE_RANGE`` when rendered);
    stripe_angle: the bands' normal in degrees [0, 180) (striped objects, else None); dot_offset: the dot grid's
    (x, y) offset from the object's centre in grid cells [0, 1)² (dotted objects, else None); rotation: the star's
    or triangle's turn in degrees (else None). On blurred + noisy frames (the test suite's imitation of generated
    ones) striped objects read darker (shade error up to 0.16: blur mixes the bands), but alike in every frame.
    """

    shade: float
    stripe_angle: float | None = None
    dot_offset: tuple[float, float] | None = None
    rotation: float | None = None


@dataclass
class VideoReading:
    frames: list[FrameReading]
    color: str | None
    shape: str | None
    attribute: str | None
    attribute_strength: float  # mean over frames
    background: str
    night: bool
    masks: np.ndarray  # bool (F, H, W)
    agreement: dict[str, float] = field(default_factory=dict)  # fraction of frames that agree with each vote


FIELDS = ("color", "shape", "attribute", "background", "night")


# ---------------------------------------------------------------- small image tools


def _element(pixels: int, disk: bool, ndim: int) -> np.ndarray:
    """The structuring element over the last two axes (a leading singleton axis per extra one). The digital disk
    keeps dy² + dx² <= r² + r, so radius 1 is the full 3×3 square and radius 2 the 5×5 square without its corners."""
    r = int(pixels)
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    element = (dy * dy + dx * dx <= r * r + r) if disk else np.ones_like(dy, dtype=bool)
    return element.reshape((1,) * (ndim - 2) + element.shape)


def dilate(mask: np.ndarray, pixels: int, disk: bool = True) -> np.ndarray:
    """Binary dilation of a bool mask over its last two axes ((H, W) or (F, H, W)).

    Every pixel within ``pixels`` of the mask joins it: a disk structuring element, or with ``disk=False`` the
    (2p+1)×(2p+1) square. ``pixels=0`` returns a copy.
    """
    mask = np.asarray(mask, dtype=bool)
    if pixels < 0:
        raise ValueError(f"dilate needs pixels >= 0, got {pixels}")
    if pixels == 0:
        return mask.copy()
    return ndimage.binary_dilation(mask, _element(pixels, disk, mask.ndim))


_dilate = dilate  # background_psnr has an argument called ``dilate``


def _erode(mask: np.ndarray, pixels: int, disk: bool = True) -> np.ndarray:
    """Binary erosion; outside the image counts as background, so objects touching the border shrink there too."""
    mask = np.asarray(mask, dtype=bool)
    if pixels == 0:
        return mask.copy()
    return ndimage.binary_erosion(mask, _element(pixels, disk, mask.ndim), border_value=0)


def _close(mask: np.ndarray, pixels: int) -> np.ndarray:
    # Pad first so that closing does not glue the object to the image border.
    p = int(pixels) + 1
    padded = np.pad(mask, p)
    return _erode(dilate(padded, pixels), pixels)[p:-p, p:-p]


_FOUR = ndimage.generate_binary_structure(2, 1)  # 4-connectivity


def _grow(seed: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """The pixels of ``allowed`` 4-connected to ``seed``."""
    return ndimage.binary_propagation(seed & allowed, structure=_FOUR, mask=allowed)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component (ties: the one whose last pixel, in reading order, comes first)."""
    if not mask.any():
        return mask.copy()
    labels, count = ndimage.label(mask, structure=_FOUR)
    ids = np.arange(1, count + 1)
    sizes = ndimage.sum_labels(mask, labels, ids)
    last = ndimage.maximum(np.arange(mask.size).reshape(mask.shape), labels, ids)
    tied = ids[sizes == sizes.max()]
    return labels == tied[np.argmin(np.asarray(last)[tied - 1])]


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Background pixels not 4-connected to the image border become object (dots and stripes leave such holes)."""
    return ndimage.binary_fill_holes(mask, structure=_FOUR)


def _box3(a: np.ndarray) -> np.ndarray:
    """3×3 mean over the first two axes, edges replicated."""
    p = np.pad(a, [(1, 1), (1, 1)] + [(0, 0)] * (a.ndim - 2), mode="edge")
    h, w = a.shape[:2]
    return sum(p[y : y + h, x : x + w] for y in range(3) for x in range(3)) / 9.0


def _median3(a: np.ndarray) -> np.ndarray:
    """3×3 median over the first two axes (edges replicated): removes pixel noise, keeps edges."""
    return ndimage.median_filter(a, size=(3, 3) + (1,) * (a.ndim - 2), mode="nearest")


def _noise_level(img: np.ndarray) -> float:
    """Per-pixel noise std: toy textures have no detail finer than ~8 px, so what a 3×3 mean removes is noise."""
    residual = img - _box3(img)
    # For white noise, x - mean3x3(x) has std sigma * sqrt(8/9); MAD/0.6745 is the robust std.
    return float(np.median(np.abs(residual)) / 0.6745 / np.sqrt(8 / 9))


# ---------------------------------------------------------------- background models


@dataclass(frozen=True)
class _Segment:
    """A line segment in RGB: mean + t * direction, t in [lo, hi]. Toy backgrounds vary along one direction."""

    mean: np.ndarray
    direction: np.ndarray
    lo: float
    hi: float

    def distance(self, pixels: np.ndarray) -> np.ndarray:
        t = np.clip((pixels - self.mean) @ self.direction, self.lo, self.hi)
        return np.linalg.norm(pixels - self.mean - t[..., None] * self.direction, axis=-1)


def _fit_segment(
    pixels: np.ndarray, quantile: float = 0.002, slack: float = 0.0, direction: np.ndarray | None = None
) -> _Segment:
    """Mean, principal direction (unless given) and the central range of the pixels along it."""
    mean = pixels.mean(0)
    centered = pixels - mean
    if direction is None:
        _, _, vt = np.linalg.svd(centered[:: max(1, len(centered) // 4000)], full_matrices=False)
        direction = vt[0] if vt[0].sum() >= 0 else -vt[0]
    t = centered @ direction
    lo, hi = np.quantile(t, [quantile, 1 - quantile])
    return _Segment(mean, direction, float(lo - slack), float(hi + slack))


@lru_cache(maxsize=1)
def _background_models() -> dict[tuple[str, bool], _Segment]:
    """(background, night) -> RGB segment, fitted on rendered backgrounds (a few milliseconds, cached)."""
    models = {}
    for name in world.BACKGROUNDS:
        day = np.concatenate(
            [world.render_background(name, 64, np.random.default_rng([seed, 3])).reshape(-1, 3) for seed in range(16)]
        )
        for night in (False, True):
            pixels = np.round(day * world.NIGHT_GAIN) if night else np.round(day)
            models[name, night] = _fit_segment(pixels, slack=3.0)
    return models


def _as_float_image(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(f"expected one RGB frame of shape (H, W, 3), got shape {frame.shape}")
    return frame.astype(np.float64)


def _trimmed_mean_distance(distance: np.ndarray, keep: float = 0.6) -> float:
    # The object covers at most ~20% of a toy frame: the nearest 60% of pixels are background.
    flat = np.sort(distance.ravel())
    return float(flat[: max(1, int(keep * flat.size))].mean())


def _background_score(img: np.ndarray, model: _Segment) -> float:
    """How badly a candidate background explains the frame (lower is better).

    Two terms: the distance of the nearest 60% of pixels to the candidate's color segment, and how far those
    pixels, centred on their own mean, spread off the candidate's texture direction. The second ignores a
    color cast and separates backgrounds whose colors are close but whose textures vary along different colors
    (day water and night sky).
    """
    distance = model.distance(img)
    pixels = img[distance <= np.quantile(distance, 0.6)]
    centered = pixels - pixels.mean(0)
    off_direction = np.linalg.norm(centered - np.outer(centered @ model.direction, model.direction), axis=-1)
    return _trimmed_mean_distance(distance) + float(off_direction.mean())


def _background_scores(img: np.ndarray) -> dict[tuple[str, bool], float]:
    return {key: _background_score(img, model) for key, model in _background_models().items()}


def classify_background(frame: np.ndarray) -> tuple[str, bool]:
    """(background name, night) of a frame: the candidate whose color segment the frame's pixels fit best."""
    scores = _background_scores(_as_float_image(frame))
    return min(scores, key=scores.get)


def _day(img: np.ndarray, night: bool) -> np.ndarray:
    """Undo the night gain so that colors can be judged in daylight units."""
    return img / world.NIGHT_GAIN if night else img


def _adapted_model(day_img: np.ndarray, background: str) -> tuple[_Segment, np.ndarray, float]:
    """The background segment refitted on this frame's own background pixels (generated frames drift a little).

    Returns the segment, the per-pixel distance to it and a robust scale of that distance on the background.
    """
    calibrated = _background_models()[background, False]
    d0 = calibrated.distance(day_img)
    near = d0 <= max(20.0, 2.0 * np.quantile(d0, 0.5))
    model = calibrated
    if near.sum() >= 0.3 * near.size:
        model = _fit_segment(day_img[near], quantile=0.005, slack=6.0)
        # Keep the calibrated direction if the frame's own is unreliable (e.g. a flat background under noise);
        # the mean and range still come from the frame, which absorbs a color cast.
        if abs(model.direction @ calibrated.direction) < 0.8:
            model = _fit_segment(day_img[near], quantile=0.005, slack=6.0, direction=calibrated.direction)
    d = model.distance(day_img)
    scale = float(np.quantile(d, 0.5))
    return model, d, scale


# ---------------------------------------------------------------- segmentation and color


def _denoise(day_img: np.ndarray) -> np.ndarray:
    """A 3×3 median when the frame is noisy (generated frames, degraded tests); clean renders are left alone."""
    return _median3(day_img) if _noise_level(day_img) > 2.0 else day_img


def _interior(mask: np.ndarray, min_fraction: float = 0.2) -> np.ndarray:
    """The deepest erosion (3, 2 or 1 px at 64²) that keeps enough of the mask: away from blended edge pixels."""
    s = min(mask.shape) / 64.0
    for radius in (3, 2, 1):
        inner = _erode(mask, max(1, round(radius * s)))
        if inner.sum() >= max(12, min_fraction * mask.sum()):
            return inner
    return mask


def _object_color(day_img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Median color of the bright interior pixels: edge pixels are mixed, and pattern pixels are darker (0.4×).

    "Bright" is relative to the interior's near-maximum brightness, not a fixed share of pixels: striped
    interiors can be more than half dark.
    """
    pixels = day_img[_interior(mask)]
    brightness = pixels.sum(-1)
    return np.median(pixels[brightness >= 0.75 * np.quantile(brightness, 0.95)], axis=0)


def _box_sum(a: np.ndarray, radius: int) -> np.ndarray:
    """Sum over a (2r+1)² window (zero outside the image) over the first two axes, by an integral image."""
    k, (h, w) = 2 * radius + 1, a.shape[:2]
    c = np.pad(a, [(radius + 1, radius), (radius + 1, radius)] + [(0, 0)] * (a.ndim - 2)).cumsum(0).cumsum(1)
    return c[k : k + h, k : k + w] - c[:h, k : k + w] - c[k : k + h, :w] + c[:h, :w]


def _local_background(day_img: np.ndarray, known: np.ndarray, radius: int) -> np.ndarray:
    """Per-pixel background color: the mean of the known background pixels nearby (textures are smooth)."""
    out = np.broadcast_to(np.median(day_img[known], axis=0), day_img.shape).copy()
    for r in (3 * radius, radius):  # the small window where it has data, the large one elsewhere
        weight = _box_sum(known.astype(np.float64), r)
        total = _box_sum(day_img * known[..., None], r)
        ok = weight >= 1
        out[ok] = total[ok] / weight[ok, None]
    return out


def _mix_fraction(day_img: np.ndarray, background: np.ndarray, color: np.ndarray) -> np.ndarray:
    """How far each pixel sits on the way from its background color to ``color`` (0 = background, 1 = color).

    An edge pixel covered by a fraction c of the object is the mix c * color + (1 - c) * background, so
    thresholding this at 0.5 reproduces the renderer's own ``coverage >= 0.5`` masks.
    """
    towards = color - background
    return ((day_img - background) * towards).sum(-1) / np.maximum((towards**2).sum(-1), 1e-6)


def _is_shade_of(day_img: np.ndarray, color: np.ndarray, lo: float = 0.2, hi: float = 0.7) -> np.ndarray:
    """Pixels that are ``color`` darkened by a factor in [lo, hi] (where stripes and dots are: 0.4)."""
    rel = _relative_brightness(day_img, color)
    residual = np.linalg.norm(day_img - rel[..., None] * color, axis=-1)
    return (rel >= lo) & (rel <= hi) & (residual < 15.0 + 0.15 * rel * np.linalg.norm(color))


def _looks_patterned(day_img: np.ndarray, region: np.ndarray, color: np.ndarray) -> bool:
    """Does the inside of ``region`` have enough pixels clearly darker than the object color (stripes, dots)?"""
    inner = _interior(region)
    return bool((_relative_brightness(day_img[inner], color) < 0.75).mean() > 0.08)


def _segment_day(day_img: np.ndarray, background: str) -> np.ndarray:
    """Object mask from a daylight-units (and denoised) image; see the module docstring, step 2."""
    h, w = day_img.shape[:2]
    s = min(h, w) / 64.0
    _, d_bg, scale = _adapted_model(day_img, background)
    candidate = d_bg > max(30.0, 3.5 * scale)  # scale ~ the noise: rare for a background pixel to pass
    # Dark stripes can look like background and cut the object into bands: group nearby pieces first.
    grouped = _fill_holes(_largest_component(_close(candidate, max(1, round(3 * s)))))
    core = candidate & grouped
    if core.sum() < 12 * s * s:
        return np.zeros((h, w), dtype=bool)
    color = _object_color(day_img, core)
    local = _local_background(day_img, ~dilate(grouped, max(1, round(3 * s))), max(2, round(5 * s)))
    # The core's outer ring holds faint edge blends (far from the background, yet mostly background): the mix
    # fraction decides there. Pattern pixels have a low mix fraction too; they are kept if they are in the core
    # and look like a darker shade of the object color (a blend with the background does not).
    mixed = _mix_fraction(day_img, local, color) >= 0.5
    kept = _erode(core, max(1, round(2 * s))) | (core & _is_shade_of(day_img, color))
    mask = (mixed | kept) & dilate(grouped, max(1, round(2 * s)))
    # A pattern's dark pixels may match the background; a wider closing bridges them where they reach the edge.
    radius = 3 if _looks_patterned(day_img, grouped, color) else 1
    mask = _fill_holes(_largest_component(_close(_fill_holes(mask), max(1, round(radius * s)))))
    if mask.sum() < _MIN_OBJECT_SHARE * _smallest_object_area() * s * s:
        return np.zeros((h, w), dtype=bool)  # a smear, not an object (see _MIN_OBJECT_SHARE)
    return mask


# A blob under a quarter of the smallest object the world draws (a triangle of radius 12: 280 px at 64²) is a smear,
# not an object: a 1-step sample of the toy model shows a 39-px purple streak the segmentation took for a "blue
# triangle" (tests/data/toy_model_frames.json, frame 16), while objects the model draws cover 390-725 px there and an
# edited object that shrank by a third (the demo's worst was 31 %) stays above 180 px.
_MIN_OBJECT_SHARE = 0.25


@lru_cache(maxsize=1)
def _smallest_object_area() -> float:
    """Pixels (at 64²) covered by the smallest object the world renders: each shape at the smallest radius."""
    radius = world.RADIUS_RANGE[0]
    return min(float(world.shape_coverage(shape, 64, (32.0, 32.0), radius).sum()) for shape in world.SHAPES)


def segment_object(frame: np.ndarray, background: str | None = None, night: bool | None = None) -> np.ndarray:
    """Bool (H, W) mask of the object, found from pixels alone; all False when no object stands out."""
    img = _as_float_image(frame)
    if background is None or night is None:
        found_background, found_night = classify_background(frame)
        background = found_background if background is None else background
        night = found_night if night is None else night
    return _segment_day(_denoise(_day(img, night)), background)


def _palette_distances(color: np.ndarray) -> dict[str, float]:
    """Distance to each palette color, forgiving a brightness gain of 0.75..1.35 (generated colors drift)."""
    out = {}
    for name, ref in world.COLORS.items():
        ref = np.array(ref, dtype=np.float64)
        gain = np.clip(color @ ref / max(color @ color, 1e-9), 0.75, 1.35)
        out[name] = float(np.linalg.norm(gain * color - ref))
    return out


# ---------------------------------------------------------------- shape


# Rotations a shape's outline can take, up to its symmetry (degrees): a star repeats every 72°, a triangle every
# 120°. The toy world turns stars by up to ±36° and triangles by ±15°; generated frames may turn them further.
_SYMMETRY = {"star": 72.0, "triangle": 120.0}
_COARSE_STEP = 8.0  # degrees between the rotations tried first; then refined to ±4 and ±2 around the best


def _wrap_rotation(shape: str, rotation: float) -> float:
    """``rotation`` in [-symmetry/2, symmetry/2): the same outline, one name for it."""
    period = _SYMMETRY.get(shape)
    return 0.0 if period is None else float((rotation + period / 2) % period - period / 2)


@lru_cache(maxsize=256)
def _template(shape: str, rotation: float = 0.0) -> tuple[np.ndarray, float, np.ndarray]:
    """(coverage ≥ 0.5 on a 128² grid with radius 40 at (64, 64), area per radius², centroid offset / radius)."""
    size, radius = 128, 40.0
    cover = world.shape_coverage(shape, size, (size / 2, size / 2), radius, supersample=2, rotation=rotation)
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    area = cover.sum()
    centroid = np.array([(cover * xs).sum(), (cover * ys).sum()]) / area - size / 2
    return cover >= 0.5, float(area / radius**2), centroid / radius


def _template_iou(mask: np.ndarray, shape: str, center: np.ndarray, radius: float, rotation: float = 0.0) -> float:
    """IoU of ``mask`` with ``shape`` drawn at ``center`` (x, y) with ``radius`` (nearest-neighbour sampled)."""
    template, _, _ = _template(shape, rotation)
    h, w = mask.shape
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    scale = 40.0 / radius
    tx = np.floor((xs - center[0]) * scale + 64).astype(int)
    ty = np.floor((ys - center[1]) * scale + 64).astype(int)
    valid = (tx >= 0) & (tx < 128) & (ty >= 0) & (ty < 128)
    drawn = np.zeros_like(mask)
    drawn[valid] = template[ty[valid], tx[valid]]
    union = (drawn | mask).sum()
    return float((drawn & mask).sum() / union) if union else 0.0


def _placed_iou(crop: np.ndarray, shape: str, centroid: np.ndarray, area: float, rotation: float,
                scale: float = 1.0, nudge=(0.0, 0.0)) -> float:
    """IoU with the template matched to the mask's area and centroid, then scaled and nudged."""
    _, unit_area, offset = _template(shape, rotation)
    r = np.sqrt(area / unit_area) * scale
    return _template_iou(crop, shape, centroid - offset * r + nudge, r, rotation)


def _shape_fits(mask: np.ndarray) -> dict[str, tuple[float, float]]:
    """shape -> (best template IoU, rotation in degrees): templates matched in area and centroid, the rotation
    searched coarse to fine (stars and triangles), then a small scale/offset search."""
    # Work on a crop around the object: the search below samples the template many times.
    ys, xs = np.nonzero(mask)
    pad = 6
    y0, x0 = max(ys.min() - pad, 0), max(xs.min() - pad, 0)
    crop = mask[y0 : ys.max() + pad + 1, x0 : xs.max() + pad + 1]
    centroid, area = np.array([xs.mean() - x0 + 0.5, ys.mean() - y0 + 0.5]), float(mask.sum())
    fits = {}
    for shape in world.SHAPES:
        rotation = 0.0
        if shape in _SYMMETRY:
            period = _SYMMETRY[shape]
            tried = {_wrap_rotation(shape, a): None for a in np.arange(-period / 2, period / 2, _COARSE_STEP)}
            for step in (None, _COARSE_STEP / 2, _COARSE_STEP / 4):
                if step is not None:
                    tried = {_wrap_rotation(shape, rotation + d): None for d in (-step, step)}
                for a in tried:
                    tried[a] = _placed_iou(crop, shape, centroid, area, a)
                best = max(tried, key=tried.get)
                if step is None or tried[best] > _placed_iou(crop, shape, centroid, area, rotation):
                    rotation = best
        best = max(_placed_iou(crop, shape, centroid, area, rotation, scale, (dx, dy))
                   for scale in (0.94, 1.0, 1.06) for dx in (-0.75, 0.0, 0.75) for dy in (-0.75, 0.0, 0.75))
        fits[shape] = (best, rotation)
    return fits


# ---------------------------------------------------------------- attribute


def _relative_brightness(day_img: np.ndarray, color: np.ndarray) -> np.ndarray:
    """Each pixel's projection on the object color: 1 = the full color, 0.4 = the pattern shade."""
    return day_img @ color / max(color @ color, 1e-9)


def _pattern_features(day_img: np.ndarray, mask: np.ndarray, color: np.ndarray) -> tuple[float, float, float, float]:
    """(strength, anisotropy, dark fraction, band angle) of the pattern inside the object.

    strength: (q90 - q10) / q90 of the relative brightness (of the denoised image), divided by what a
    rendered pattern gives (1 - PATTERN_SHADE): ~1 for a rendered pattern, 0 for a plain object.
    anisotropy: the coherence of the brightness gradients (structure tensor) inside the object, whatever way
    they point: ~1 for stripes (every gradient along the bands' normal), low for dots and noise.
    band angle: that normal's direction in degrees [0, 180), x right and y down (``world.Appearance.stripe_angle``).
    """
    inner = _interior(mask, min_fraction=0.3)
    if inner.sum() < 8:
        return 0.0, 0.0, 0.0, 0.0
    rel = _relative_brightness(day_img, color)
    values = rel[inner]
    lo, hi = np.quantile(values, [0.1, 0.9])
    strength = max(0.0, (hi - lo) / max(hi, 1e-6)) / (1 - world.PATTERN_SHADE)
    dark_fraction = float((values < (lo + hi) / 2).mean()) if hi - lo > 0.05 else 0.0
    # Gradients only where both neighbours are inside too: the object's own outline is not its pattern.
    gy, gx = np.gradient(np.where(inner, rel, values.mean()))
    inside = _erode(inner, 1)
    gx, gy = gx[inside], gy[inside]
    jxx, jyy, jxy = (gx * gx).sum(), (gy * gy).sum(), (gx * gy).sum()
    energy = jxx + jyy
    if energy < 1e-9:
        return float(strength), 0.0, dark_fraction, 0.0
    anisotropy = float(np.hypot(jxx - jyy, 2 * jxy) / energy)
    angle = float(np.degrees(0.5 * np.arctan2(2 * jxy, jxx - jyy)) % 180.0)
    return float(strength), anisotropy, dark_fraction, angle


def _grid_phase(weights: np.ndarray, coords: np.ndarray, period: float) -> float:
    """Phase in [0, 1) periods of a pattern repeating every ``period`` along ``coords``, from where ``weights``
    (darkness) sit: the argument of the weights' first Fourier coefficient at that period."""
    coefficient = (weights * np.exp(2j * np.pi * coords / period)).sum()
    return float((np.angle(coefficient) / (2 * np.pi)) % 1.0)


# Decision thresholds, set from rendered frames and their blurred + noisy versions (see tests).
_PATTERN_MIN_STRENGTH = 0.22
_STRIPE_MIN_ANISOTROPY = 0.45  # measured: stripes 0.71-1.0, dots 0.01-0.21 (clean and degraded, 160 frames)


def _classify_pattern(strength: float, anisotropy: float) -> tuple[str | None, float]:
    """(attribute, margin): the margin is the distance to the nearest decision threshold that mattered."""
    if strength < _PATTERN_MIN_STRENGTH:
        return None, _PATTERN_MIN_STRENGTH - strength
    margin = min(strength - _PATTERN_MIN_STRENGTH, abs(anisotropy - _STRIPE_MIN_ANISOTROPY))
    return ("striped" if anisotropy >= _STRIPE_MIN_ANISOTROPY else "dotted"), margin


# ---------------------------------------------------------------- reading frames and videos


def _ranked(scores: dict, best_is_low: bool) -> tuple[object, float]:
    """The best key and its margin over the runner-up."""
    order = sorted(scores, key=scores.get, reverse=not best_is_low)
    return order[0], abs(scores[order[1]] - scores[order[0]])


def read_frame(frame: np.ndarray) -> FrameReading:
    """Everything the evaluator can tell about one uint8 (H, W, 3) frame.

    ``confidence`` holds margins (winner minus runner-up, or distance to a threshold): "background" (score
    units), "color" (RGB distance), "shape" (IoU), "attribute"; plus the raw "shape_iou", "anisotropy" and
    "dark_fraction" for inspection.
    """
    img = _as_float_image(frame)
    (background, night), background_margin = _ranked(_background_scores(img), best_is_low=True)
    confidence = {"background": background_margin}
    day_img = _denoise(_day(img, night))
    mask = _segment_day(day_img, background)
    if not mask.any():
        return FrameReading(None, None, None, 0.0, background, night, mask, confidence)
    rgb = _object_color(day_img, mask)
    color, confidence["color"] = _ranked(_palette_distances(rgb), best_is_low=True)
    fits = _shape_fits(mask)
    ious = {name: iou for name, (iou, _) in fits.items()}
    shape, confidence["shape"] = _ranked(ious, best_is_low=False)
    strength, anisotropy, dark_fraction, angle = _pattern_features(day_img, mask, rgb)
    attribute, confidence["attribute"] = _classify_pattern(strength, anisotropy)
    confidence.update(shape_iou=ious[shape], anisotropy=anisotropy, dark_fraction=dark_fraction)
    look = _read_look(day_img, mask, rgb, color, shape, fits[shape][1], attribute, angle)
    return FrameReading(color, shape, attribute, strength, background, night, mask, confidence, look)


def _object_center(mask: np.ndarray, shape: str, rotation: float) -> np.ndarray:
    """The (x, y) point the renderer draws the shape around: the mask's centroid less the template's offset."""
    _, unit_area, offset = _template(shape, rotation)
    return mask_centroids(mask)[0] - offset * np.sqrt(mask.sum() / unit_area)


def _read_look(day_img, mask, rgb, color, shape, rotation, attribute, angle) -> Look:
    """Shade, stripe angle, dot offset and rotation of a segmented object (see ``Look``)."""
    reference = np.array(world.COLORS[color], dtype=np.float64)
    dot_offset = None
    if attribute == "dotted":
        inner = _interior(mask, min_fraction=0.3)
        ys, xs = np.nonzero(inner)
        center = _object_center(mask, shape, rotation)
        darkness = np.clip(0.75 - _relative_brightness(day_img[inner], rgb), 0, None)
        cell = world.DOT_CELL * min(mask.shape) / 64.0
        dot_offset = (_grid_phase(darkness, xs + 0.5 - center[0], cell),
                      _grid_phase(darkness, ys + 0.5 - center[1], cell))
    return Look(
        shade=float(rgb @ reference / (reference @ reference)),
        stripe_angle=angle if attribute == "striped" else None,
        dot_offset=dot_offset,
        rotation=rotation if shape in _SYMMETRY else None,
    )


def _vote(values: list, skip_none: bool = False):
    """Most common value (ties: the one seen first); with ``skip_none``, None wins only if nothing else is there."""
    candidates = [v for v in values if v is not None] if skip_none else list(values)
    if not candidates:
        return None
    counts = Counter(candidates)
    top = max(counts.values())
    return next(v for v in candidates if counts[v] == top)


def read_video(frames: np.ndarray) -> VideoReading:
    """Read every frame of a uint8 (F, H, W, 3) video and take a majority vote per field."""
    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise ValueError(f"expected a video of shape (F, H, W, 3), got shape {frames.shape}")
    readings = [read_frame(f) for f in frames]
    votes = {}
    for name in FIELDS:
        values = [getattr(r, name) for r in readings]
        votes[name] = _vote(values, skip_none=name in ("color", "shape"))
    agreement = {name: float(np.mean([getattr(r, name) == votes[name] for r in readings])) for name in FIELDS}
    return VideoReading(
        frames=readings,
        attribute_strength=float(np.mean([r.attribute_strength for r in readings])),
        masks=np.stack([r.mask for r in readings]),
        agreement=agreement,
        **votes,
    )


def score(reading: FrameReading | VideoReading, scene: world.Scene) -> dict[str, bool]:
    """Which fields of a reading match the scene: color, shape, attribute, background and night."""
    return {
        "color": reading.color == scene.color,
        "shape": reading.shape == scene.shape,
        "attribute": reading.attribute == scene.attribute,
        "background": reading.background == scene.background,
        "night": bool(reading.night) == (scene.style == "night"),
    }


# ---------------------------------------------------------------- fidelity


def union_masks(*masks: np.ndarray) -> np.ndarray:
    """Pixelwise OR of bool masks of the same shape (e.g. the source and the edited object's masks)."""
    if not masks:
        raise ValueError("union_masks needs at least one mask")
    out = np.zeros(np.shape(masks[0]), dtype=bool)
    for m in masks:
        m = np.asarray(m, dtype=bool)
        if m.shape != out.shape:
            raise ValueError(f"union_masks needs masks of the same shape, got {out.shape} and {m.shape}")
        out |= m
    return out


def background_psnr(video_a: np.ndarray, video_b: np.ndarray, masks: np.ndarray, dilate: int = 2) -> float:
    """PSNR (dB) between two uint8 videos (F, H, W, 3) over the pixels OUTSIDE ``masks`` grown by ``dilate`` px.

    ``masks`` is bool (F, H, W) (or (H, W) for all frames), typically the union of the source and the target
    object masks: an edit should change the object and leave the rest alone. The dilation forgives the soft,
    mixed pixels at the object's edge. Single frames (H, W, 3) with an (H, W) mask work too.
    """
    a, b = np.asarray(video_a), np.asarray(video_b)
    if a.shape != b.shape or a.shape[-1] != 3:
        raise ValueError(f"background_psnr needs two RGB videos of the same shape, got {a.shape} and {b.shape}")
    masks = np.asarray(masks, dtype=bool)
    if masks.shape[-2:] != a.shape[-3:-1]:
        raise ValueError(f"masks of shape {masks.shape} do not match frames of shape {a.shape}")
    keep = ~np.broadcast_to(_dilate(masks, dilate), a.shape[:-1])
    if not keep.any():
        raise ValueError(
            f"background_psnr: no pixel is left outside the masks dilated by {dilate} px; "
            "use smaller masks or a smaller dilation"
        )
    diff = a.astype(np.float64)[keep] - b.astype(np.float64)[keep]
    return psnr_from_mse(float(np.mean(diff**2)))


# ---------------------------------------------------------------- object geometry
#
# An edit can get the words right and still move the object: the demo's blue circle sat up to 9 px from where the
# red one was and shrank by up to 31%. Colour and shape readings cannot see that; these numbers can.


def mask_centroids(masks: np.ndarray) -> np.ndarray:
    """Centroids (F, 2) as (x, y) pixels of bool masks (F, H, W) or (H, W); NaN where a mask is empty.

    Pixel centres sit at +0.5, as in ``world.object_path``, so a rendered circle's centroid is its centre.
    """
    masks = np.asarray(masks, dtype=bool)
    masks = masks[None] if masks.ndim == 2 else masks
    if masks.ndim != 3:
        raise ValueError(f"mask_centroids needs bool masks (F, H, W) or (H, W), got shape {masks.shape}")
    h, w = masks.shape[-2:]
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    area = masks.sum(axis=(1, 2)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([(masks * xs).sum(axis=(1, 2)) / area, (masks * ys).sum(axis=(1, 2)) / area], -1)


def _plain(value: float) -> float | None:
    """A float json.dumps writes as a number: NaN (no object) becomes None (JSON null)."""
    return None if not np.isfinite(value) else float(value)


def _nan_reduce(reduce, values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(reduce(finite)) if finite.size else float("nan")


@dataclass
class ObjectGeometry:
    """Where and how big the edited object is, compared with the source's, frame by frame.

    Frames where the edit (or the source) has no segmented object are NaN in the per-frame arrays, excluded from
    the means and maxima, and counted in ``summary()["frames_without_object"]``: a missing object is a failure
    the colour/shape readings already report, and a made-up distance would blur the drift numbers.
    """

    drift_px: np.ndarray  # (F,) distance between the source's and the edit's object centroids, in pixels
    size_error: np.ndarray  # (F,) (edit's area - source's area) / source's area: -0.31 = shrunk by 31%
    jump_px: np.ndarray  # (F-1,) |edit's centroid step - source's centroid step| from frame f to f+1, in pixels
    missing: np.ndarray  # (F,) bool: no object in the edit or in the source

    def summary(self) -> dict[str, float | int | None]:
        """Mean and max drift (px), mean and max |size error|, max jump (px): plain floats, None if undefined."""
        size = np.abs(self.size_error)
        return {
            "mean_drift_px": _plain(_nan_reduce(np.mean, self.drift_px)),
            "max_drift_px": _plain(_nan_reduce(np.max, self.drift_px)),
            "mean_abs_size_error": _plain(_nan_reduce(np.mean, size)),
            "max_abs_size_error": _plain(_nan_reduce(np.max, size)),
            "max_jump_px": _plain(_nan_reduce(np.max, self.jump_px)),
            "frames_without_object": int(self.missing.sum()),
        }

    def as_dict(self) -> dict:
        """The summary plus the per-frame lists, ready for json.dumps (None where a frame has no object)."""
        per_frame = {name: [_plain(v) for v in getattr(self, name)] for name in ("drift_px", "size_error", "jump_px")}
        return {**self.summary(), "per_frame": per_frame}


def object_geometry(source_masks: np.ndarray, edited_masks: np.ndarray) -> ObjectGeometry:
    """Position and size error of the edited object against where it should be, from bool masks (F, H, W).

    ``source_masks`` are the ground truth the edit is measured against — the source video's masks
    (``world.render(scene).masks``) or, for an edit, the target scene's (``toy.bench.target_masks``: a shape swap
    changes the outline) — and ``edited_masks`` what the evaluator segments in the edit
    (``read_video(edited).masks``). Jumps compare the edit's frame-to-frame motion with the reference's, so an
    object that moves as the reference's did has jumps of 0 however far it drifted.
    """
    source_masks, edited_masks = np.asarray(source_masks, dtype=bool), np.asarray(edited_masks, dtype=bool)
    if source_masks.shape != edited_masks.shape or source_masks.ndim != 3:
        raise ValueError(
            f"object_geometry needs two bool mask videos (F, H, W) of the same shape, got {source_masks.shape} and "
            f"{edited_masks.shape}; pass world.render(scene).masks and evaluator.read_video(edited).masks"
        )
    source_xy, edited_xy = mask_centroids(source_masks), mask_centroids(edited_masks)
    source_area = source_masks.sum(axis=(1, 2)).astype(np.float64)
    edited_area = edited_masks.sum(axis=(1, 2)).astype(np.float64)
    missing = (source_area == 0) | (edited_area == 0)
    offset = np.where(missing[:, None], np.nan, edited_xy - source_xy)
    with np.errstate(invalid="ignore", divide="ignore"):
        size_error = np.where(missing, np.nan, edited_area / source_area - 1)
    return ObjectGeometry(
        drift_px=np.linalg.norm(offset, axis=-1),
        size_error=size_error,
        jump_px=np.linalg.norm(np.diff(offset, axis=0), axis=-1),  # the change of offset = edit's step - source's
        missing=missing,
    )


def reading_text(frames: np.ndarray) -> str:
    """What the evaluator reads in a video, in words, e.g. 'blue circle on the grass'."""
    reading = read_video(frames)
    thing = " ".join(w for w in (reading.color, reading.attribute, reading.shape) if w) or "no object"
    return f"{thing} on the {reading.background}{' at night' if reading.night else ''}"
