"""The evaluator on frames the shipped toy model drew, read against labels written by eye.

Every bench number (t2i accuracy, edit hits, drift, background PSNR) rests on ``vp2p.toy.evaluator`` reading
model outputs, which are blurrier and off-colour compared with the renders its own tests use. The 17 frames in
``tests/data/toy_model_frames.npz`` are text-to-image samples, word-swap edits of toy clips, frames of the
inflated untuned model and three hard cases (2 DDIM steps: blurry; an empty prompt; 1 DDIM step: no object);
``tests/data/make_toy_model_frames.py`` regenerates them (prompts and seeds are there). The labels in
``toy_model_frames.json`` were read off 8× enlargements: colour, shape, pattern, background, night and the object's
bounding box (to about ±1 px). Measured agreement is given at each assertion.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from vp2p.toy import evaluator

DATA = Path(__file__).parent / "data"
FRAMES = np.load(DATA / "toy_model_frames.npz")["frames"]
LABELS = json.loads((DATA / "toy_model_frames.json").read_text())["frames"]
WITH_OBJECT = [label for label in LABELS if label["object"]]


@pytest.fixture(scope="module")
def readings():
    return {label["index"]: evaluator.read_frame(FRAMES[label["index"]]) for label in LABELS}


def bbox(mask: np.ndarray) -> np.ndarray:
    """[x0, y0, x1, y1] in pixel edges, as the labels are written."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=float)


def test_the_set_is_model_output_with_hard_cases():
    assert FRAMES.dtype == np.uint8 and FRAMES.shape == (17, 64, 64, 3)
    assert [label["index"] for label in LABELS] == list(range(len(FRAMES)))
    kinds = [label["made_by"]["kind"] for label in LABELS]
    assert kinds.count("t2i") == 11 and kinds.count("edit") == 4 and kinds.count("inflated") == 2
    assert len(WITH_OBJECT) == 16 and sum(label["made_by"].get("steps", 25) < 25 for label in LABELS) == 2


def test_colour_and_shape_are_what_the_eye_sees_on_every_frame_with_an_object(readings):
    # measured: 16 of 16 colours (frame 6, a night disc between orange and yellow, reads yellow: both accepted),
    # 16 of 16 shapes, the blurry 2-step frame and the empty prompt's blob included
    wrong = [(label["index"], readings[label["index"]].color, readings[label["index"]].shape) for label in WITH_OBJECT
             if readings[label["index"]].color not in label.get("color_accepted", [label["color"]])
             or readings[label["index"]].shape != label["shape"]]
    assert wrong == []


def test_the_object_is_found_where_the_eye_puts_it_and_as_large(readings):
    offsets, size_errors = [], []
    for label in WITH_OBJECT:
        found, seen = bbox(readings[label["index"]].mask), np.array(label["bbox"])
        offsets.append(np.hypot(*((found[:2] + found[2:]) / 2 - (seen[:2] + seen[2:]) / 2)))
        size_errors.append(np.abs((found[2:] - found[:2]) - (seen[2:] - seen[:2])).max())
    # measured: centres 0.12-0.88 px apart (mean 0.47); widths and heights within 2.5 px (the eye counts a little
    # more of the blurred rim than the evaluator's half-way rule)
    assert max(offsets) <= 2.0 and np.mean(offsets) <= 1.0, np.round(offsets, 2)
    assert max(size_errors) <= 3.5, np.round(size_errors, 1)


def test_a_frame_without_an_object_reads_no_object(readings):
    # frame 16: one DDIM step leaves purple smears on a blue-grey ground; the largest (39 px) once read "blue triangle"
    empty = [label["index"] for label in LABELS if not label["object"]]
    assert empty == [16]
    assert readings[16].color is None and readings[16].shape is None and not readings[16].mask.any()


def test_background_and_night_agree_where_labelled(readings):
    labelled = [label for label in LABELS if label["background"] is not None]
    assert len(labelled) == 15  # measured: 15 of 15 backgrounds, 17 of 17 night flags
    assert all(readings[label["index"]].background == label["background"] for label in labelled)
    assert all(readings[label["index"]].night == label["night"] for label in LABELS)


def test_the_pattern_reading_on_model_frames(readings):
    labelled = [label for label in LABELS if label["object"] and label["attribute"] is not None]
    agree = [(readings[label["index"]].attribute or "plain") == label["attribute"] for label in labelled]
    # the striped white circle reads striped; plain objects the model shades unevenly can read patterned:
    # measured 12 of 15 agree — frame 0 (a red disc with a darker centre) reads dotted, frame 8 (the blurry
    # 2-step frame, one dark diagonal streak) striped, frame 9 (a mottled blob) dotted
    assert readings[4].attribute == "striped"
    assert len(labelled) == 15 and sum(agree) >= 12, [label["index"] for label, ok in zip(labelled, agree) if not ok]
