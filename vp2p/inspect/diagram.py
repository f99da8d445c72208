"""The whole Video-P2P pipeline as one picture (after the paper's Fig. 4), drawn from a declarative list of boxes.

Stages, left to right and top to bottom: the input clip and its source prompt; inflate the text-to-image model into
a text-to-set (video) model; tune it on the clip; DDIM-invert the clip and optimise one null-text embedding per step
shared by all frames; then two branches denoise together from the inverted noise z_T — the source branch with the
optimised null-text, the target branch with the plain empty prompt (decoupled guidance) — while the attention
control hands the source branch's maps to the target branch and the local blend keeps the target's change where
the edited word's maps are. ``PIPELINE`` and ``ARROWS`` are the picture as data (the tests read them);
``pipeline_figure()`` draws it.
"""

from __future__ import annotations

from dataclasses import dataclass

from vp2p.inspect.viz import plt

# One colour per kind of work: preparing the model, inverting the clip, the two branches, steering the target.
COLORS = {"input": "#eeeeee", "model": "#cfe2f3", "invert": "#d9ead3", "branch": "#fff2cc", "control": "#f4cccc"}


@dataclass(frozen=True)
class Box:
    """A stage: a bold ``title``, a few ``lines`` of detail, a place (x, y of the lower-left corner, width, height in
    the diagram's units) and a ``kind`` (its colour, from ``COLORS``)."""

    key: str
    title: str
    lines: tuple[str, ...]
    x: float
    y: float
    width: float
    height: float
    kind: str

    def overlaps(self, other: "Box") -> bool:
        return (self.x < other.x + other.width and other.x < self.x + self.width
                and self.y < other.y + other.height and other.y < self.y + self.height)


@dataclass(frozen=True)
class Arrow:
    start: str  # a Box key
    end: str
    label: str = ""
    around: bool = False  # route along the right of the boxes between (a bracket) instead of straight across them


WIDTH, HEIGHT = 14.5, 7.0  # the diagram's units; the figure keeps their aspect
# A snake: preparation left to right along the top, editing right to left along the bottom; the two branches and
# the attention control between them form one column under the inversion they start from.
PIPELINE = (
    Box("input", "Input", ("a short clip", "and its source prompt"), 0.2, 5.0, 2.6, 1.7, "input"),
    Box("inflate", "1 · Inflate: T2I → T2S", ("frame attention: keys and", "values from frame 0;",
                                              "temporal attention with", "a zero-initialised output"),
        3.3, 5.0, 3.2, 1.7, "model"),
    Box("tune", "2 · Tune on the clip", ("noise-prediction loss with", "the source prompt; trains",
                                         "to_q and temporal attention"), 7.0, 5.0, 3.1, 1.7, "model"),
    Box("invert", "3 · Invert", ("DDIM inversion $z_0 \\to z_T$;", "shared null-text: one", "embedding per step,",
                                 "the same for all frames"), 10.6, 5.0, 3.1, 1.7, "invert"),
    Box("source", "Source branch", ("source prompt,", "optimised null-text $\\varnothing_t$"), 10.6, 3.35, 3.1, 1.15, "branch"),
    Box("control", "Attention control", ("the source's maps replace", "the target's (swap, refine)"),
        10.6, 1.8, 3.1, 1.15, "control"),
    Box("target", "Target branch", ("target prompt, empty-prompt", "null: decoupled guidance"), 10.6, 0.2, 3.1, 1.15,
        "branch"),
    Box("blend", "Local blend", ("$z^* \\leftarrow (1-\\alpha)\\,z + \\alpha\\, z^*$", "$\\alpha$: where the edited", "words' maps are"), 6.6, 1.3, 3.0,
        1.7, "control"),
    Box("output", "Edited clip", ("the target branch,", "decoded"), 3.3, 1.55, 2.6, 1.2, "input"),
)
ARROWS = (
    Arrow("input", "inflate"),
    Arrow("inflate", "tune"),
    Arrow("tune", "invert"),
    Arrow("invert", "source", "$z_T$, $\\varnothing_t$"),
    Arrow("invert", "target", "$z_T$", around=True),
    Arrow("source", "control", "maps"),
    Arrow("control", "target", "edited maps"),
    Arrow("source", "blend"),
    Arrow("target", "blend"),
    Arrow("blend", "output"),
)
AROUND = 0.35  # how far right of the boxes a routed-around arrow runs


def check_layout(boxes=PIPELINE, arrows=ARROWS) -> None:
    """Refuse a diagram whose boxes overlap, leave the canvas, share a key, or whose arrows name unknown boxes."""
    keys = [b.key for b in boxes]
    if len(set(keys)) != len(keys):
        raise ValueError(f"box keys must be unique, got {keys}")
    for i, box in enumerate(boxes):
        if box.x < 0 or box.y < 0 or box.x + box.width > WIDTH or box.y + box.height > HEIGHT:
            raise ValueError(f"box {box.key!r} leaves the {WIDTH}×{HEIGHT} canvas; move or shrink it")
        if box.kind not in COLORS:
            raise ValueError(f"box {box.key!r} has kind {box.kind!r}; choose one of {sorted(COLORS)}")
        for other in boxes[i + 1:]:
            if box.overlaps(other):
                raise ValueError(f"boxes {box.key!r} and {other.key!r} overlap; move one of them")
    for arrow in arrows:
        if arrow.start not in keys or arrow.end not in keys:
            raise ValueError(f"arrow {arrow.start!r} → {arrow.end!r} names a box that is not in {keys}")


def pipeline_figure(boxes=PIPELINE, arrows=ARROWS, scale: float = 0.9, title: str = "Video-P2P, end to end"):
    """The pipeline diagram as a matplotlib Figure: one rounded box per stage (its patch's gid is the box's key),
    one arrow per ``Arrow`` (gid ``"start->end"``), drawn from box edge to box edge."""
    from matplotlib.patches import FancyBboxPatch

    check_layout(boxes, arrows)
    fig, ax = plt.subplots(figsize=(scale * WIDTH, scale * HEIGHT))
    ax.set_xlim(0, WIDTH), ax.set_ylim(0, HEIGHT)
    ax.set_aspect("equal"), ax.axis("off")
    patches = {}
    for box in boxes:
        patch = FancyBboxPatch((box.x, box.y), box.width, box.height, boxstyle="round,pad=0,rounding_size=0.15",
                               facecolor=COLORS[box.kind], edgecolor="#444444", linewidth=1.2, gid=box.key)
        ax.add_patch(patch)
        patches[box.key] = patch
        middle = box.x + box.width / 2
        ax.text(middle, box.y + box.height - 0.12, box.title, ha="center", va="top", fontsize=10.5,
                fontweight="bold", gid=f"{box.key}:title")
        ax.text(middle, box.y + box.height - 0.5, "\n".join(box.lines), ha="center", va="top", fontsize=8.5,
                linespacing=1.25, gid=f"{box.key}:lines")
    for arrow in arrows:
        ax.add_patch(_link(arrow, patches[arrow.start], patches[arrow.end]))
        if arrow.label:
            x, y = _label_place(arrow, patches[arrow.start], patches[arrow.end])
            ax.text(x + 0.12, y, arrow.label, ha="left", va="center", fontsize=8, style="italic", color="#333333",
                    gid=f"{arrow.start}->{arrow.end}:label", bbox={"facecolor": "white", "edgecolor": "none",
                                                                      "pad": 1.0})
    if title:
        ax.set_title(title, fontsize=12)
    fig.tight_layout()
    return fig


def _center(patch) -> tuple[float, float]:
    return patch.get_x() + patch.get_width() / 2, patch.get_y() + patch.get_height() / 2


def _right_middle(patch) -> tuple[float, float]:
    return patch.get_x() + patch.get_width(), patch.get_y() + patch.get_height() / 2


def _link(arrow: Arrow, a, b):
    """The arrow from patch ``a`` to patch ``b``: straight between their centres, clipped at their edges; or, when
    routed around, from the right edge of ``a`` out by ``AROUND``, down or up, and back into the right edge of
    ``b``."""
    from matplotlib.patches import FancyArrowPatch

    style = {"arrowstyle": "-|>", "mutation_scale": 14, "linewidth": 1.3, "color": "#333333",
             "gid": f"{arrow.start}->{arrow.end}"}
    if not arrow.around:
        return FancyArrowPatch(_center(a), _center(b), patchA=a, patchB=b, shrinkA=2, shrinkB=2, **style)
    from matplotlib.path import Path

    (x0, y0), (x1, y1) = _right_middle(a), _right_middle(b)
    right = max(x0, x1) + AROUND
    return FancyArrowPatch(path=Path([(x0, y0), (right, y0), (right, y1), (x1, y1)]), shrinkA=0, shrinkB=0, **style)


def _label_place(arrow: Arrow, a, b) -> tuple[float, float]:
    """Where an arrow's label starts (to the right of this point): the middle of a straight arrow, or of the far
    segment of a routed-around one."""
    if arrow.around:
        (x0, y0), (x1, y1) = _right_middle(a), _right_middle(b)
        return max(x0, x1) + AROUND, (y0 + y1) / 2
    (x0, y0), (x1, y1) = _center(a), _center(b)
    return (x0 + x1) / 2, (y0 + y1) / 2
