"""The pipeline diagram (vp2p.inspect.diagram): the paper's stages are in it, readable, and connected as in Fig. 4."""

import dataclasses

import numpy as np
import pytest
from matplotlib.path import Path

from vp2p.inspect import diagram

# What the picture must show: the paper's stages and the two ideas of its editing stage (Fig. 4, Algorithm 1).
REQUIRED = ["Inflate", "T2I → T2S", "Tune", "DDIM inversion", "shared null-text", "Source branch", "Target branch",
            "decoupled guidance", "Attention control", "Local blend", "Edited clip"]
# The flow, as the paper draws it: each stage feeds the next; both branches start from the inversion's z_T.
FLOW = [("input", "inflate"), ("inflate", "tune"), ("tune", "invert"), ("invert", "source"), ("invert", "target"),
        ("source", "control"), ("control", "target"), ("target", "blend"), ("blend", "output")]


@pytest.fixture(scope="module")
def drawn():
    fig = diagram.pipeline_figure()
    fig.canvas.draw()
    return fig, fig.axes[0]


def box_of(key):
    return next(b for b in diagram.PIPELINE if b.key == key)


def distance_to_box(point, box) -> float:
    """Euclidean distance from a point to a box (0 inside)."""
    dx = max(box.x - point[0], 0, point[0] - box.x - box.width)
    dy = max(box.y - point[1], 0, point[1] - box.y - box.height)
    return float(np.hypot(dx, dy))


def depth_inside(point, box) -> float:
    """How far inside a box a point lies (<= 0 outside)."""
    return min(point[0] - box.x, box.x + box.width - point[0], point[1] - box.y, box.y + box.height - point[1])


def test_the_diagram_names_every_stage_of_the_paper_and_draws_one_box_each(drawn):
    fig, ax = drawn
    text = " ".join(t.get_text() for t in ax.texts)
    missing = [term for term in REQUIRED if term not in text]
    assert not missing, missing
    boxes = {p.get_gid(): p for p in ax.patches if p.get_gid() and "->" not in p.get_gid()}
    assert set(boxes) == {b.key for b in diagram.PIPELINE}
    for box in diagram.PIPELINE:
        assert boxes[box.key].get_x() == box.x and boxes[box.key].get_width() == box.width


def test_every_text_fits_inside_its_box(drawn):
    fig, ax = drawn
    renderer = fig.canvas.get_renderer()
    boxes = {p.get_gid(): p.get_window_extent(renderer) for p in ax.patches if "->" not in (p.get_gid() or "")}
    texts = [t for t in ax.texts if ":" in (t.get_gid() or "") and "->" not in t.get_gid()]
    assert len(texts) == 2 * len(diagram.PIPELINE)  # a title and its lines per box
    for t in texts:
        inner, outer = t.get_window_extent(renderer), boxes[t.get_gid().split(":")[0]]
        assert (outer.x0 <= inner.x0 and inner.x1 <= outer.x1 and outer.y0 <= inner.y0 and inner.y1 <= outer.y1), (
            t.get_gid(), t.get_text(), inner, outer)


def test_arrows_follow_the_papers_flow_from_edge_to_edge_and_cross_no_box(drawn):
    fig, ax = drawn
    arrows = {p.get_gid(): p for p in ax.patches if "->" in (p.get_gid() or "")}
    assert {f"{a}->{b}" for a, b in FLOW} <= set(arrows)
    for gid, patch in arrows.items():
        start, end = map(box_of, gid.split("->"))
        path = patch.get_path()
        points = path.vertices[path.codes != Path.CLOSEPOLY]
        assert distance_to_box(points[0], start) < 0.1, (gid, points[0])  # leaves its start box at the edge
        assert min(distance_to_box(p, end) for p in points) < 0.1, gid  # its head touches the end box
        samples = np.concatenate([np.linspace(a, b, 50) for a, b in zip(points[:-1], points[1:])])
        for box in diagram.PIPELINE:
            deepest = max(depth_inside(p, box) for p in samples)
            assert deepest < 0.05, (gid, box.key, deepest)  # never through a box, its own included


def test_check_layout_refuses_overlaps_unknown_arrows_and_boxes_off_the_canvas():
    first, second = diagram.PIPELINE[:2]
    overlapping = (first, dataclasses.replace(second, x=first.x + 0.5, y=first.y))
    with pytest.raises(ValueError, match="boxes 'input' and 'inflate' overlap; move one of them"):
        diagram.check_layout(overlapping, ())
    with pytest.raises(ValueError, match=r"arrow 'input' → 'nowhere' names a box that is not in \['input', 'inflate'\]"):
        diagram.check_layout((first, second), (diagram.Arrow("input", "nowhere"),))
    with pytest.raises(ValueError, match="box 'input' leaves the 14.5×7.0 canvas"):
        diagram.check_layout((dataclasses.replace(first, x=diagram.WIDTH - 1),), ())
    with pytest.raises(ValueError, match="box keys must be unique"):
        diagram.check_layout((first, first), ())
    diagram.check_layout()  # the shipped diagram passes
