"""The notebooks' model and settings choice (``$VP2P_MODEL``, ``$VP2P_SETTINGS``) and the T4 estimates they print."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from vp2p import course
from vp2p.course import estimates
from vp2p.workflow import TOY_SETTINGS, Settings

ROOT = Path(__file__).resolve().parent.parent
SD = SimpleNamespace(name="some/sd-model")


def test_model_comes_from_the_environment_else_the_device(monkeypatch):
    monkeypatch.setenv("VP2P_MODEL", "/models/sd15")
    assert course.model() == "/models/sd15"
    monkeypatch.delenv("VP2P_MODEL")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert course.model() == "toy"
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert course.model() == course.SD15


def test_settings_choices_change_the_models_defaults(monkeypatch):
    monkeypatch.delenv("VP2P_SETTINGS", raising=False)
    assert course.settings(SD) == Settings() and course.num_frames(SD) == 8
    course_sd = course.settings(SD, "course")
    assert (course_sd.tune_steps, course_sd.num_steps, course_sd.inner_steps) == (150, 25, 5)
    assert course.num_frames(SD, "course") == 4
    # the toy's own settings are already course-sized
    assert course.settings("toy", "course") == TOY_SETTINGS and course.num_frames("toy", "course") == 8
    monkeypatch.setenv("VP2P_SETTINGS", "tiny")
    assert course.settings("toy").tune_steps == 2 and course.num_frames(SD) == 2
    monkeypatch.setenv("VP2P_SETTINGS", "fast")
    with pytest.raises(ValueError, match=r"VP2P_SETTINGS='fast' is not one of \['official', 'course', 'tiny'\]"):
        course.settings(SD)


def test_the_shipped_estimates_are_the_benchmarks():
    report = json.loads((ROOT / "benchmarks" / "gpu_memory.json").read_text())
    assert estimates.t4_data()["notebooks"] == report["notebooks"]
    assert estimates.t4_data()["utilisation"] == report["utilisation"]


def test_course_settings_cost_less_than_official_and_caches_help():
    for notebook, choices in estimates.t4_data()["notebooks"].items():
        official, cheap = choices["official"], choices["course"]
        assert cheap["alone"] <= official["alone"], notebook
        assert official["in_order"] <= official["alone"], notebook
    assert estimates.t4_minutes("04_word_swap")["alone"] > 10 >= estimates.t4_minutes("04_word_swap", "course")["alone"]
    with pytest.raises(ValueError, match="no T4 estimate for notebook '08_video'"):
        estimates.t4_minutes("08_video")


def test_announce_prints_on_stable_diffusion_only(capsys):
    estimates.announce("toy", "04_word_swap", "official")
    assert capsys.readouterr().out == ""
    estimates.announce(SD, "04_word_swap", "official")
    line = capsys.readouterr().out
    minutes = estimates.t4_minutes("04_word_swap")
    assert f"about {minutes['alone']:.0f} minutes on a T4" in line and 'SETTINGS = "course"' in line
