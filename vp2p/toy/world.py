"""The toy world: seeded scene descriptions rendered as short videos with exact object masks and captions.

A scene is one object (a color, a shape, optionally a surface pattern) moving over a textured background,
optionally seen at night. ``render(scene)`` gives frames ``uint8 (F, H, W, 3)``, masks ``bool (F, H, W)`` and a
caption such as "a red striped circle bouncing on the grass". Everything is a pure function of the scene, so a seed
always gives the same video. Textures are smooth on purpose (no detail finer than about 8 pixels) so that the toy
VAE, which downsamples by 4, can reconstruct them well.

**Appearance the caption leaves open** (``Appearance``): the stripes' orientation and phase, the dot grid's offset,
a shade within the object's color, the star's and the triangle's rotation — and the background's texture, which
was always drawn from the seed. They are sampled per scene from its seed and are the same in every frame of its
video, as an object's look is in a real clip. A caption names "a blue striped star", not which blue, which way the
stripes run or how the star is turned, so a model that edits frame by frame can pick a different look per frame
(flicker) while one that matches frames keeps one; the evaluator reads these back. ``CANONICAL`` is the fixed look
of the first toy world (diagonal stripes, no rotation, the palette's own color).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

# The object colors are saturated and bright, the backgrounds mid-toned: every color is at least ~80 RGB units
# away from every background's base color, so an object can be segmented by color alone.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (240, 130, 25),
    "yellow": (240, 215, 35),
    "green": (60, 205, 75),
    "blue": (40, 75, 225),
    "purple": (135, 45, 195),
    "pink": (245, 125, 185),
    "white": (245, 245, 245),
}
SHAPES = ("circle", "square", "triangle", "star")
ATTRIBUTES = ("striped", "dotted")
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "grass": (55, 110, 45),
    "sand": (190, 160, 112),
    "water": (35, 95, 140),
    "sky": (125, 170, 215),
}
# The preposition each background takes in a caption.
BACKGROUND_PHRASE = {"grass": "on the grass", "sand": "on the sand", "water": "on the water", "sky": "in the sky"}
MOTIONS = ("bouncing", "sliding", "floating", "circling")
STYLES = ("night",)
STYLE_PHRASE = {"night": "at night"}
# Night multiplies every pixel by these channel gains (darker, bluer).
NIGHT_GAIN = np.array([0.42, 0.45, 0.62])
RADIUS_RANGE = (12.0, 15.0)  # an object's radius in pixels of a 64-px frame (``object_path``)
# Stripes and dots are drawn in the object's color times this factor.
PATTERN_SHADE = 0.4

# Every word a caption can contain, in a fixed order: the toy tokenizer gives each one a single token.
VOCABULARY = tuple(
    dict.fromkeys(
        ["a", "an", "the", "on", "in", "at", "of", "with", "and", "is"]
        + list(COLORS) + list(SHAPES) + list(ATTRIBUTES) + list(BACKGROUNDS) + list(MOTIONS) + list(STYLES)
    )
)


# Brightness gain of the object's color: small enough that every shade is still nearest its own palette color
# (and ~60 RGB units or more from every background), large enough to read back from pixels.
SHADE_RANGE = (0.86, 1.06)
# Rotations sampled per shape (degrees, uniform in ±value): the star's full symmetry (72°) and a tilt of the
# triangle that keeps it point-up (at 30° an equilateral triangle points sideways), so "triangle" keeps naming
# one outline family.
ROTATION_RANGE = {"star": 36.0, "triangle": 15.0}
STRIPE_PERIOD = 8.0  # px at 64 px, across the bands
DOT_CELL = 7.0  # px at 64 px, the dot grid's spacing
DOT_RADIUS = 2.6  # px at 64 px, where a dot's edge fades out


@dataclass(frozen=True)
class Appearance:
    """What a scene's caption leaves open; constant over the frames of its video. Angles in degrees.

    stripe_angle: direction the stripes run across, the normal of the bands (0: vertical bands, 45: the first
    world's diagonals), in [0, 180); stripe_phase: offset of the bands along that normal, in periods [0, 1);
    dot_offset: (x, y) offset of the dot grid, in grid cells [0, 1)²; shade: the object's brightness gain within
    its color (SHADE_RANGE); rotation: the star's or the triangle's turn from upright (0 for the other shapes).
    """

    stripe_angle: float = 45.0
    stripe_phase: float = 0.0
    dot_offset: tuple[float, float] = (0.0, 0.0)
    shade: float = 1.0
    rotation: float = 0.0

    def __post_init__(self):
        checks = [("stripe_angle", self.stripe_angle, 0, 180), ("stripe_phase", self.stripe_phase, 0, 1),
                  ("dot_offset[0]", self.dot_offset[0], 0, 1), ("dot_offset[1]", self.dot_offset[1], 0, 1),
                  ("shade", self.shade, *SHADE_RANGE), ("rotation", self.rotation, -90, 90)]
        for name, value, lo, hi in checks:
            if not lo <= value <= hi:
                raise ValueError(f"Appearance {name}={value!r} is outside [{lo}, {hi}]; give a value in that range.")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# The canonical look of the first toy world: diagonal stripes, dots on the object-centred grid, palette color.
CANONICAL = Appearance()


def sample_appearance(seed: int, shape: str) -> Appearance:
    """The look of scene ``seed``: every value is drawn whatever the scene's words, so changing a word (a swap, a
    pattern added or dropped) keeps the rest of the look."""
    rng = np.random.default_rng([seed, 4])
    angle, phase, ox, oy, shade, turn = rng.uniform(0, 1, 6)
    spread = ROTATION_RANGE.get(shape, 0.0)
    return Appearance(
        stripe_angle=float(180 * angle),
        stripe_phase=float(phase),
        dot_offset=(float(ox), float(oy)),
        shade=float(SHADE_RANGE[0] + (SHADE_RANGE[1] - SHADE_RANGE[0]) * shade),
        rotation=float(spread * (2 * turn - 1)),
    )


@dataclass(frozen=True)
class Scene:
    """A full description of one toy video. ``seed`` fixes texture, size, position, motion phase and, unless
    ``appearance`` is given (e.g. ``CANONICAL``), the look the caption leaves open (``sample_appearance``)."""

    color: str
    shape: str
    background: str
    motion: str = "bouncing"
    attribute: str | None = None
    style: str | None = None
    seed: int = 0
    appearance: Appearance | None = None

    def __post_init__(self):
        for field, value, allowed in [
            ("color", self.color, tuple(COLORS)),
            ("shape", self.shape, SHAPES),
            ("background", self.background, tuple(BACKGROUNDS)),
            ("motion", self.motion, MOTIONS),
            ("attribute", self.attribute, ATTRIBUTES + (None,)),
            ("style", self.style, STYLES + (None,)),
        ]:
            if value not in allowed:
                raise ValueError(f"Scene {field}={value!r} is not in the toy world; choose one of {allowed}.")
        if self.appearance is not None and not isinstance(self.appearance, Appearance):
            raise ValueError(f"Scene appearance={self.appearance!r} is not a world.Appearance; pass one or None.")

    @property
    def look(self) -> Appearance:
        """The appearance this scene renders with: the given one, or the one its seed samples."""
        return self.appearance or sample_appearance(self.seed, self.shape)

    @property
    def caption(self) -> str:
        words = ["an" if self.color[0] in "aeiou" else "a", self.color] + ([self.attribute] if self.attribute else []) + [self.shape, self.motion]
        words.append(BACKGROUND_PHRASE[self.background])
        if self.style:
            words.append(STYLE_PHRASE[self.style])
        return " ".join(words)

    def replace(self, **changes) -> "Scene":
        """The same scene (same seed: same texture, size, path and look) with some words changed."""
        return dataclasses.replace(self, **changes)


@dataclass
class ToyVideo:
    frames: np.ndarray  # uint8 (F, H, W, 3)
    masks: np.ndarray  # bool (F, H, W): where the object is
    caption: str
    scene: Scene
    appearance: Appearance | None = None  # the look rendered (ground truth for the evaluator)


def random_scene(seed: int, attribute_rate: float = 0.35, style_rate: float = 0.15) -> Scene:
    """A scene drawn uniformly from the vocabulary; ``seed`` also becomes the scene's rendering seed."""
    rng = np.random.default_rng([seed, 1])
    return Scene(
        color=str(rng.choice(list(COLORS))),
        shape=str(rng.choice(SHAPES)),
        background=str(rng.choice(list(BACKGROUNDS))),
        motion=str(rng.choice(MOTIONS)),
        attribute=str(rng.choice(ATTRIBUTES)) if rng.random() < attribute_rate else None,
        style=str(rng.choice(STYLES)) if rng.random() < style_rate else None,
        seed=seed,
    )


# ---------------------------------------------------------------- backgrounds


def _smooth_noise(rng: np.random.Generator, size: int, cells: tuple[int, int]) -> np.ndarray:
    """Random values on a coarse (rows, cols) grid, bicubic-like upsampled to (size, size), in [-1, 1]."""
    grid = rng.uniform(-1, 1, size=(cells[0] + 3, cells[1] + 3))
    ys = np.linspace(1, cells[0] + 1, size)
    xs = np.linspace(1, cells[1] + 1, size)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    ty, tx = ys - y0, xs - x0
    ty, tx = ty * ty * (3 - 2 * ty), tx * tx * (3 - 2 * tx)  # smoothstep: no creases at cell borders
    top = grid[y0][:, x0] * (1 - tx) + grid[y0][:, x0 + 1] * tx
    bottom = grid[y0 + 1][:, x0] * (1 - tx) + grid[y0 + 1][:, x0 + 1] * tx
    return top * (1 - ty)[:, None] + bottom * ty[:, None]


def render_background(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A float (size, size, 3) background in 0..255, textured but with no detail finer than ~8 px at 64 px."""
    base = np.array(BACKGROUNDS[name], dtype=np.float64)
    s = size / 64.0
    y, x = np.mgrid[0:size, 0:size] / s
    if name == "grass":  # tufts stretched vertically, plus a darker band near the bottom
        tone = 22 * _smooth_noise(rng, size, (3, 10)) + 10 * _smooth_noise(rng, size, (6, 6)) - 0.15 * (y - 32)
        shift = np.stack([0.6 * tone, tone, 0.4 * tone], -1)
    elif name == "sand":  # wind ripples with a wavy crest line
        phase = rng.uniform(0, 2 * np.pi)
        wobble = 3 * np.sin(x / 9.0 + phase)
        tone = 13 * np.sin(2 * np.pi * (y + wobble) / 11.0 + phase) + 8 * _smooth_noise(rng, size, (4, 4))
        shift = np.stack([tone, 0.85 * tone, 0.6 * tone], -1)
    elif name == "water":  # two crossing wave trains
        a1, a2 = rng.uniform(0, np.pi, 2)
        p1, p2 = rng.uniform(0, 2 * np.pi, 2)
        tone = 14 * np.sin(2 * np.pi * (x * np.cos(a1) + y * np.sin(a1)) / 14.0 + p1)
        tone = tone + 9 * np.sin(2 * np.pi * (x * np.cos(a2) + y * np.sin(a2)) / 10.0 + p2)
        shift = np.stack([0.5 * tone, 0.8 * tone, tone], -1)
    elif name == "sky":  # lighter towards the horizon, soft clouds
        clouds = np.clip(_smooth_noise(rng, size, (3, 4)), 0, 1) ** 1.5
        tone = 0.35 * (y - 32) + 40 * clouds
        shift = np.stack([tone, 0.8 * tone, 0.5 * tone], -1)
    else:
        raise ValueError(f"unknown background {name!r}; choose one of {tuple(BACKGROUNDS)}")
    return np.clip(base + shift, 0, 255)


# ---------------------------------------------------------------- shapes


def _regular_polygon(n: int, radius: float, inner: float | None = None, turn: float = -np.pi / 2) -> np.ndarray:
    """Vertices (k, 2) as (x, y) of an n-gon, or of an n-pointed star when ``inner`` is the inner radius."""
    if inner is None:
        angles = turn + 2 * np.pi * np.arange(n) / n
        radii = np.full(n, radius)
    else:
        angles = turn + np.pi * np.arange(2 * n) / n
        radii = np.where(np.arange(2 * n) % 2 == 0, radius, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], -1)


def _inside_polygon(x: np.ndarray, y: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd rule point-in-polygon test, vectorized over points."""
    inside = np.zeros(x.shape, dtype=bool)
    xv, yv = vertices[:, 0], vertices[:, 1]
    for i in range(len(vertices)):
        j = i - 1
        crosses = (yv[i] > y) != (yv[j] > y)
        x_cross = (xv[j] - xv[i]) * (y - yv[i]) / (yv[j] - yv[i] + 1e-12) + xv[i]
        inside ^= crosses & (x < x_cross)
    return inside


def shape_coverage(shape: str, size: int, center: tuple[float, float], radius: float, supersample: int = 4,
                   rotation: float = 0.0):
    """Anti-aliased coverage in [0, 1], float (size, size), of a shape of the given radius centred at (x, y),
    turned by ``rotation`` degrees (clockwise on screen) about its centre."""
    n = size * supersample
    coords = (np.arange(n) + 0.5) / supersample
    x = coords[None, :] - center[0]
    y = coords[:, None] - center[1]
    x, y = np.broadcast_arrays(x, y)
    if rotation:  # turn the sample points the other way: the shape turns by ``rotation``
        c, s = np.cos(np.radians(rotation)), np.sin(np.radians(rotation))
        x, y = c * x + s * y, -s * x + c * y
    if shape == "circle":
        inside = x**2 + y**2 <= radius**2
    elif shape == "square":
        half = 0.86 * radius
        inside = (np.abs(x) <= half) & (np.abs(y) <= half)
    elif shape == "triangle":
        inside = _inside_polygon(x, y + 0.2 * radius, _regular_polygon(3, 1.22 * radius))
    elif shape == "star":
        inside = _inside_polygon(x, y, _regular_polygon(5, 1.3 * radius, inner=0.58 * radius))
    else:
        raise ValueError(f"unknown shape {shape!r}; choose one of {SHAPES}")
    return inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3))


def pattern_mask(attribute: str | None, size: int, center: tuple[float, float],
                 appearance: Appearance = CANONICAL) -> np.ndarray:
    """Where the object shows its darker pattern (float 0..1), in the object's own frame so it moves with it."""
    if attribute is None:
        return np.zeros((size, size))
    s = size / 64.0
    y, x = np.mgrid[0:size, 0:size] + 0.5
    u, v = (x - center[0]) / s, (y - center[1]) / s
    if attribute == "striped":  # bands of period 8 px across ``stripe_angle``, half dark
        a = np.radians(appearance.stripe_angle)
        across = (u * np.cos(a) + v * np.sin(a)) / STRIPE_PERIOD + appearance.stripe_phase
        return (np.sin(2 * np.pi * across) > 0).astype(float)
    if attribute == "dotted":  # dots of radius 2 px on a 7 px grid, shifted by ``dot_offset``
        half = DOT_CELL / 2
        du = (u - DOT_CELL * appearance.dot_offset[0] + half) % DOT_CELL - half
        dv = (v - DOT_CELL * appearance.dot_offset[1] + half) % DOT_CELL - half
        return np.clip(DOT_RADIUS - np.sqrt(du**2 + dv**2), 0, 1)
    raise ValueError(f"unknown attribute {attribute!r}; choose one of {ATTRIBUTES}")


# ---------------------------------------------------------------- motion and rendering


def object_path(scene: Scene, num_frames: int, size: int) -> tuple[np.ndarray, float]:
    """Centres (F, 2) as (x, y) in pixels and the radius; the object always stays fully inside the frame."""
    rng = np.random.default_rng([scene.seed, 2])
    s = size / 64.0
    radius = rng.uniform(*RADIUS_RANGE) * s
    margin = radius * 1.35 + 1
    t = np.arange(num_frames) / 8.0  # a motion plays out over 8 frames whatever the frame count
    phase = rng.uniform(0, 2 * np.pi)
    cx, cy = rng.uniform(margin + 2 * s, size - margin - 2 * s, 2)
    if scene.motion == "bouncing":
        ground = size - margin
        height = rng.uniform(10, 16) * s
        xs = cx + rng.choice([-1, 1]) * 4 * s * t
        ys = ground - height * np.abs(np.sin(np.pi * t + phase))
    elif scene.motion == "sliding":
        direction = rng.choice([-1, 1])
        xs = cx + direction * (16 * s * t - 8 * s)
        ys = np.full_like(t, cy)
    elif scene.motion == "floating":
        xs = cx + 8 * s * t * rng.choice([-1, 1])
        ys = cy + 4 * s * np.sin(2 * np.pi * t + phase)
    else:  # circling
        orbit = rng.uniform(5, 8) * s
        xs = cx + orbit * np.cos(2 * np.pi * t + phase)
        ys = cy + orbit * np.sin(2 * np.pi * t + phase)
    centers = np.stack([np.clip(xs, margin, size - margin), np.clip(ys, margin, size - margin)], -1)
    return centers, radius


def render(scene: Scene, num_frames: int = 8, size: int = 64, indices=None) -> ToyVideo:
    """Render ``scene`` as ``num_frames`` frames of ``size``×``size`` pixels, with object masks and caption.

    ``indices`` picks some of those frames only (the training set draws single frames this way).
    """
    if num_frames < 1 or size < 16:
        raise ValueError(f"render needs num_frames >= 1 and size >= 16, got {num_frames} and {size}.")
    background = render_background(scene.background, size, np.random.default_rng([scene.seed, 3]))
    look = scene.look
    color = np.minimum(np.array(COLORS[scene.color], dtype=np.float64) * look.shade, 255)
    centers, radius = object_path(scene, num_frames, size)
    rotation = look.rotation if scene.shape in ROTATION_RANGE else 0.0
    frames, masks = [], []
    for center in centers if indices is None else centers[list(indices)]:
        coverage = shape_coverage(scene.shape, size, tuple(center), radius, rotation=rotation)
        pattern = pattern_mask(scene.attribute, size, tuple(center), look)
        paint = color * (1 - (1 - PATTERN_SHADE) * pattern[..., None])
        frame = background * (1 - coverage[..., None]) + paint * coverage[..., None]
        if scene.style == "night":
            frame = frame * NIGHT_GAIN
        frames.append(np.clip(np.round(frame), 0, 255).astype(np.uint8))
        masks.append(coverage >= 0.5)
    return ToyVideo(np.stack(frames), np.stack(masks), scene.caption, scene, look)
