"""The course's break-its and ``run_both`` on the short toy run (``vp2p.course.exercises.plug.Lab``: the course clip,
4 frames, the toy settings): each broken piece moves the numbers the notebooks say it moves, with margins around
what was measured (numbers in the comments: CPU, torch 2.13, toy model as shipped)."""

import numpy as np
import pytest

from vp2p import seams
from vp2p.course.exercises import breaking, plug


@pytest.fixture(scope="module")
def lab(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("VP2P_COURSE_OUTPUT", str(tmp_path_factory.mktemp("course")))
    plug.lab.cache_clear()
    yield plug.lab()
    plug.lab.cache_clear()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def numbers(comparison):
    return (comparison.numbers[name] for name in comparison.names)


def test_run_both_with_vp2p_own_functions_gives_the_same_edit(lab):
    """A student's function equal to vp2p's edits the clip exactly as vp2p does — also when it is tuned and
    inverted with (a fresh tuning under the student's cache key, same seed, same weights)."""
    edit = plug.run_both(blend_mask=seams.default("blend_mask"))
    assert edit.max_pixel_difference == 0 and edit.numbers["vp2p"] == edit.numbers["yours"]
    tuned = plug.run_both(training_target=seams.default("training_target"))
    assert "tuned (and inverted again on its weights) with yours" in tuned.title and tuned.max_pixel_difference == 0
    assert len(list(lab.work_dir.glob("tuned-*"))) == 2  # vp2p's and the student's, never shared


def test_coupled_guidance_misses_the_target_and_spoils_the_background(lab):
    right, wrong = numbers(breaking.coupled_guidance())
    assert right["target hit"] == 1 and wrong["target hit"] == 0  # measured 1 → 0
    assert wrong["background PSNR"] < right["background PSNR"] - 10  # measured 31.1 → 13.4 dB
    assert right["reconstruction PSNR"] == wrong["reconstruction PSNR"]  # the same inversion


def test_frame_keys_from_frame_i_flicker_more(lab):
    right, wrong = numbers(breaking.frame_keys_from_frame_i())
    assert right["target hit"] == 1
    assert wrong["flicker"] > right["flicker"] + 0.05  # measured 0.241 → 0.344
    assert wrong["background PSNR"] < right["background PSNR"] - 1  # measured 31.1 → 28.3 dB
    assert seams.replaced() == []


def test_a_null_embedding_per_frame_optimises_f_times_the_numbers(lab):
    right, wrong = numbers(breaking.per_frame_null())
    assert wrong["optimised numbers"] == plug.LAB_FRAMES * right["optimised numbers"]
    # measured 123,200 → 492,800 numbers for a reconstruction 29.6 → 30.0 dB: four times the numbers, barely closer
    assert abs(wrong["reconstruction PSNR"] - right["reconstruction PSNR"]) < 2
    assert right["target hit"] == 1 and wrong["flicker"] > right["flicker"]  # measured flicker 0.241 → 0.345


def test_tuning_keys_and_values_tunes_more_and_is_undone(lab):
    lab.prepare()  # the UNet inflated and tuned, as the notebook has it
    before = {n: p.detach().clone() for n, p in lab.pipe.unet.named_parameters()
              if any(k in n for k in breaking.KEYS_AND_VALUES)}  # attn1/attn2's (attn_temp's are tuned anyway)
    right, wrong = numbers(breaking.tune_keys_and_values())
    assert wrong["tuned numbers"] > 1.5 * right["tuned numbers"]  # measured 338,528 → 528,992
    assert wrong["final tuning loss"] < right["final tuning loss"]  # measured 0.403 → 0.356: it fits the clip better
    assert wrong["background PSNR"] < right["background PSNR"] - 4  # measured 31.1 → 22.9 dB: and edits it worse
    after = dict(lab.pipe.unet.named_parameters())
    assert before and all((after[n] == p).all() for n, p in before.items())  # the model's keys and values again


def test_the_title_names_the_stages_run_again_and_the_table_keeps_long_names_apart():
    assert plug.rerun_stages({"invert"}) == "inverted (on the cached tuning)"
    assert plug.rerun_stages({"tune", "invert"}) == "tuned and inverted"
    names = ("a null embedding shared", "one per frame (broken)")
    comparison = plug.Comparison("t", names, numbers={n: {"flicker": 0.25} for n in names},
                                 videos={n: np.zeros((1, 2, 2, 3), np.uint8) for n in names})
    header, row = comparison.table().splitlines()[:2]
    assert all(f" {name}" in header for name in names)  # at least one space before each name
    assert row.split() == ["flicker", "0.25", "0.25"]
