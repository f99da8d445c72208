"""One validation wherever a call enters: the API's stages (vp2p.tune, vp2p.invert, vp2p.edit, make_controller) refuse
what the CLI refuses, with the same messages, before any model call — and their defaults follow the model.

Before, ``vp2p.invert(pipe, frames, prompt, guidance_scale=0)`` or a prompt of words the toy never learned ran for
minutes and returned a meaningless result; ``vp2p.edit(pipe, frames, prompts)`` failed deep inside with an
AttributeError; ``treshold=0.5`` was a TypeError from a class the user never called.
"""

import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import vp2p
from tiny import smooth_video
from vp2p import checks
from vp2p.editing import make_controller
from vp2p.inversion import reconstruction_warning
from vp2p.toy import world
from vp2p.workflow import TOY_SETTINGS, Settings

SOURCE, TARGET = "a red circle", "a blue circle"


class Reached(Exception):
    """Raised where a stage would start its model calls: the checks before it let the call through."""


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    pipe = vp2p.load_pipeline(tiny_model_dir, device="cpu", dtype=torch.float32)
    vp2p.inflate_unet(pipe.unet)
    return pipe


@pytest.fixture(scope="module")
def toy():
    pipe = vp2p.load_pipeline("toy", device="cpu")
    vp2p.inflate_unet(pipe.unet)
    return pipe


@pytest.fixture
def no_model_calls(monkeypatch):
    """The first model call of each stage raises ``Reached``."""
    import vp2p.inversion
    import vp2p.tuning

    def reached(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(vp2p.inversion, "ddim_invert", reached)
    monkeypatch.setattr(vp2p.tuning, "master_weights", reached)


def frames(size=32, count=2):
    return smooth_video(count, size)


@pytest.mark.parametrize("kwargs, message", [
    ({"guidance_scale": 0}, "guidance_scale=0 must be 1 or more: 1 is no guidance (official 7.5)"),
    ({"guidance_scale": -3.0}, "guidance_scale=-3.0 must be 1 or more: 1 is no guidance (official 7.5)"),
    ({"num_steps": 0}, "num_steps=0 must be a whole number of DDIM steps >= 1 (official 50, toy 25)"),
    ({"lr": 0}, "lr=0 must be a positive learning rate (official 1e-2, toy 8e-2)"),
    ({"method": "nulltext"}, "method='nulltext' must be one of null-text, null-text-per-frame, negative-prompt, "
                             "fast, ddim"),
])
def test_invert_refuses_bad_settings_before_any_model_call(pipe, no_model_calls, kwargs, message):
    with pytest.raises(ValueError) as info:
        vp2p.invert(pipe, frames(), SOURCE, **kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize("prompt", [None, "", "   "])
def test_invert_needs_a_source_prompt(pipe, no_model_calls, prompt):
    with pytest.raises(ValueError) as info:
        vp2p.invert(pipe, frames(), prompt)
    assert str(info.value) == (f"the source prompt {prompt!r} must be a text describing the video, e.g. 'a rabbit is "
                               "jumping on the grass'")


def test_the_toy_refuses_words_it_never_learned_at_every_stage(toy, no_model_calls):
    clip = world.render(world.Scene("red", "circle", "grass", "bouncing", seed=7), num_frames=2).frames
    for stage in (lambda: vp2p.tune(toy, clip, "a rabbit on the grass"),
                  lambda: vp2p.invert(toy, clip, "a rabbit on the grass"),
                  lambda: make_controller(toy, ["a red circle on the grass", "a red rabbit on the grass"], 5)):
        with pytest.raises(ValueError, match=r"^the toy model does not know 'rabbit' \(in the (source|target) "
                                             r"prompt 'a (red )?rabbit on the grass'\): it only draws"):
            stage()


def test_edit_takes_an_inversion_not_frames(pipe):
    with pytest.raises(TypeError) as info:
        vp2p.edit(pipe, frames(), [SOURCE, TARGET])
    assert str(info.value) == (
        "edit(pipe, inversion, prompts) takes the Inversion that vp2p.invert returns, got ndarray uint8 (2, 32, 32, "
        "3); invert the frames first: inv = vp2p.invert(pipe, frames, source_prompt), then vp2p.edit(pipe, inv, "
        "[source_prompt, target_prompt])")


@pytest.fixture(scope="module")
def inversion(pipe):
    return vp2p.invert(pipe, frames(), SOURCE, method="fast", num_steps=2, progress=False)


def test_a_misspelled_option_names_the_known_ones_wherever_it_enters(pipe, inversion):
    expected = re.escape("unknown controller option treshold=; did you mean threshold=? the known ones are ")
    with pytest.raises(ValueError, match=f"^{expected}"):
        vp2p.edit(pipe, inversion, [SOURCE, TARGET], treshold=0.5, progress=False)
    with pytest.raises(ValueError, match=f"^{expected}"):
        make_controller(pipe, [SOURCE, TARGET], 2, treshold=0.5)
    run = vp2p.workflow.Run(None, inversion)
    with pytest.raises(ValueError, match=f"^{expected}"):
        vp2p.workflow.edit_run(pipe, run, [SOURCE, TARGET], Settings(num_steps=2), progress=False, treshold=0.5)
    with pytest.raises(ValueError) as info:
        make_controller(pipe, [SOURCE, TARGET], 2, blend_wrds=["circle", "circle"])
    assert "did you mean blend_words=?" in str(info.value) and "self_replace_steps" in str(info.value)


def test_edit_refuses_guidance_below_one(pipe, inversion):
    with pytest.raises(ValueError, match=r"^guidance_scale=0 must be 1 or more"):
        vp2p.edit(pipe, inversion, [SOURCE, TARGET], guidance_scale=0, progress=False)


def test_saving_onto_a_folder_names_a_file_inside_it(pipe, inversion, tmp_path):
    with pytest.raises(IsADirectoryError) as info:
        inversion.save(tmp_path)
    assert str(info.value) == (f"{tmp_path} is a folder; give a file path for the inversion, e.g. "
                               f"{tmp_path / 'inversion.safetensors'}")
    with pytest.raises(IsADirectoryError, match="give a file path for the tuned weights, e.g. .*tuned.safetensors"):
        vp2p.save_tuned(pipe.unet, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_api_defaults_follow_the_model(toy, pipe, monkeypatch):
    """On the toy model the API runs the toy's settings (the README's snippet in seconds, not 93 s); on any other
    model the official ones."""
    import vp2p.inversion
    import vp2p.tuning

    seen = {}

    def schedule(scheduler, num_steps):
        seen["num_steps"] = num_steps
        raise Reached

    def tqdm(steps, **kwargs):
        seen["tune_steps"] = len(steps)
        raise Reached

    monkeypatch.setattr(vp2p.inversion.DDIMSchedule, "from_scheduler", schedule)
    monkeypatch.setattr(vp2p.tuning, "tqdm", tqdm)
    clip = world.render(world.Scene("red", "circle", "grass", "bouncing", seed=7), num_frames=2).frames
    for model, video, prompt, expected in ((toy, clip, "a red circle bouncing on the grass", TOY_SETTINGS),
                                           (pipe, frames(), SOURCE, Settings())):
        for stage in (lambda: vp2p.invert(model, video, prompt), lambda: vp2p.tune(model, video, prompt)):
            with pytest.raises(Reached):
                stage()
        assert seen == {"num_steps": expected.num_steps, "tune_steps": expected.tune_steps}
    assert TOY_SETTINGS.num_steps < Settings().num_steps and TOY_SETTINGS.tune_steps < Settings().tune_steps


def test_a_clip_the_toy_cannot_draw_is_warned_about(toy):
    """Noise is nothing the toy's world holds: its reconstruction falls far below the ~29 dB of its own clips, and
    the API says so (a warning and ``Inversion.warning``) instead of returning a silent bad edit."""
    noise = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        inversion = vp2p.invert(toy, noise, "a red circle bouncing on the grass", method="fast", num_steps=3,
                                progress=False)
    psnr = float(np.mean(inversion.frame_psnr))
    assert psnr < checks.LOW_RECONSTRUCTION_DB
    assert inversion.warning == checks.toy_reconstruction_warning(psnr)
    assert inversion.warning.startswith(f"the toy model reconstructs this clip at {psnr:.1f} dB, far below the ~29 dB")
    assert [str(w.message) for w in caught if "reconstructs this clip" in str(w.message)] == [inversion.warning]


def test_the_warning_threshold_and_the_models_it_applies_to(toy, pipe):
    def fake(db):
        return SimpleNamespace(frame_psnr=np.array([db, db]), method="null-text", guidance_scale=7.5)

    assert reconstruction_warning(toy, fake(13.5)).startswith("the toy model reconstructs this clip at 13.5 dB")
    assert reconstruction_warning(toy, fake(checks.LOW_RECONSTRUCTION_DB)) == ""
    assert reconstruction_warning(toy, fake(29.0)) == ""
    assert reconstruction_warning(pipe, fake(13.5)) == ""  # another model: its own world is not the toy's
    guided_ddim = SimpleNamespace(frame_psnr=np.array([13.5]), method="ddim", guidance_scale=7.5)
    assert reconstruction_warning(toy, guided_ddim) == ""  # DDIM under guidance drifts on any clip: no verdict
    guided_ddim.guidance_scale = 1.0
    assert reconstruction_warning(toy, guided_ddim).startswith("the toy model reconstructs this clip at 13.5 dB")


def test_frames_of_another_size_than_the_toys_are_warned_about(toy, monkeypatch):
    import vp2p.workflow

    monkeypatch.setattr(vp2p.workflow, "tune_stage", lambda *a, **k: (_ for _ in ()).throw(Reached()))
    clip = world.render(world.Scene("red", "circle", "grass", "bouncing", seed=7), num_frames=2, size=128).frames
    with pytest.warns(UserWarning) as caught, pytest.raises(Reached):
        vp2p.workflow.prepare(toy, clip, "a red circle bouncing on the grass", TOY_SETTINGS, progress=False)
    assert str(caught[0].message).startswith("the toy model was trained on 64x64 frames; at 128x128 it reconstructs")
    assert checks.toy_size_warning((64, 64)) is None


def test_an_output_folder_that_cannot_be_written_is_refused_before_the_long_stages(tmp_path):
    """/sys refuses new files even to root (a folder with its write bit off would not, for root)."""
    if not Path("/sys").is_dir():
        pytest.skip("no /sys on this system")
    with pytest.raises(PermissionError) as info:
        checks.check_outputs("/sys/vp2p-results", ["edit.gif"])
    message = str(info.value)  # "permission denied", or "read-only file system" where /sys is mounted so
    assert message.startswith("cannot write into /sys (") and message.endswith(
        "); choose an out folder you can write to"), message
    assert checks.check_outputs(tmp_path / "new" / "results", ["edit.gif"]) == tmp_path / "new" / "results"
    assert not (tmp_path / "new").exists()  # probed, not created
