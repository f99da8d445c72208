"""Up-front checks (vp2p.checks, vp2p.workflow.check): a bad setting, prompt, word or option is refused before
tuning, with a message that names the value and the fix; output folders that hold the user's files are refused."""

import shutil
from types import SimpleNamespace

import pytest

from tiny import smooth_video
from vp2p import checks, workflow
from vp2p.io.loading import is_toy, toy_model_path
from vp2p.toy.world import VOCABULARY
from vp2p.toy.settings import TOY_SETTINGS, unknown_toy_words
from vp2p.workflow import Settings

SOURCE, TARGET = "a red circle", "a blue circle"
THRESHOLD = ("must be between 0 and 1, both excluded (official 0.3): the blend mask keeps what is above this share "
             "of each frame's maximum, so at 1 or more it is empty and the edit equals the reconstruction")
WINDOW = "must be a fraction of the steps in [0, 1] or a pair 0 <= start <= end <= 1"


@pytest.fixture
def no_tuning(monkeypatch):
    def tuning(*args, **kwargs):
        raise AssertionError("tuning started before the error")

    monkeypatch.setattr(workflow, "prepare", tuning)
    monkeypatch.setattr(workflow, "tune", tuning)


BAD_SETTINGS = [
    ({"tune_steps": -1}, "tune_steps=-1 must be a whole number >= 0: 0 skips tuning (official 500, toy 50)"),
    ({"tune_steps": 2.5}, "tune_steps=2.5 must be a whole number >= 0: 0 skips tuning (official 500, toy 50)"),
    ({"tune_lr": 0}, "tune_lr=0 must be a positive learning rate (official 3e-5, toy 3e-4)"),
    ({"method": "null text"}, "method='null text' must be one of null-text, null-text-per-frame, negative-prompt, "
                              "fast, ddim"),
    ({"num_steps": 0}, "num_steps=0 must be a whole number of DDIM steps >= 1 (official 50, toy 25)"),
    ({"guidance_scale": 0.5}, "guidance_scale=0.5 must be 1 or more: 1 is no guidance (official 7.5)"),
    ({"inner_steps": 0}, "inner_steps=0 must be a whole number of null-text steps >= 1 per DDIM step (official 10, "
                         "toy 2)"),
    ({"null_text_lr": -1e-2}, "null_text_lr=-0.01 must be a positive learning rate (official 1e-2, toy 8e-2)"),
    ({"cross_replace_steps": {"default_": 0.2, "blue": 2}},
     f"cross_replace_steps={{'default_': 0.2, 'blue': 2}} {WINDOW}, or a dict of those per word with 'default_' "
     "(official 0.2)"),
    ({"self_replace_steps": (0.6, 0.2)}, f"self_replace_steps=(0.6, 0.2) {WINDOW} (official 0.5)"),
    ({"threshold": 5}, f"threshold=5 {THRESHOLD}"),
    ({"threshold": 0}, f"threshold=0 {THRESHOLD}"),
    ({"blend_start": 1.5}, "blend_start=1.5 must be a fraction of the steps in [0, 1] (official 0.2)"),
    ({"self_attention": "spatial"}, "self_attention='spatial' must be 'temporal' (official) or 'frame'"),
]


@pytest.mark.parametrize("change, message", BAD_SETTINGS, ids=[next(iter(c)) + str(i) for i, (c, _) in
                                                                enumerate(BAD_SETTINGS)])
def test_video_p2p_refuses_bad_settings_before_tuning(change, message, tiny_pipe, tmp_path, no_tuning):
    with pytest.raises(ValueError) as error:
        workflow.video_p2p(tiny_pipe, smooth_video(2), SOURCE, TARGET, Settings().replace(**change),
                           work_dir=tmp_path / "work")
    assert str(error.value) == message
    assert not (tmp_path / "work").exists()


def test_prepare_checks_its_settings_before_tuning(tiny_pipe, tmp_path, monkeypatch):
    monkeypatch.setattr(workflow, "tune_stage", lambda *a, **k: pytest.fail("tuning started before the error"))
    with pytest.raises(ValueError, match=r"^tune_steps=-3 must be a whole number >= 0"):
        workflow.prepare(tiny_pipe, smooth_video(2), SOURCE, Settings(tune_steps=-3), work_dir=tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_the_defaults_and_the_edges_of_the_ranges_pass():
    for settings in (Settings(), TOY_SETTINGS, Settings(tune_steps=0, guidance_scale=1, threshold=0.999,
                                                        cross_replace_steps={"default_": (0.1, 0.9), "blue": 1.0},
                                                        self_replace_steps=(0, 1), blend_start=0)):
        checks.check_settings(settings)


BAD_OPTIONS = [
    ("a big blue circle", {}, "Replace (word swap) needs prompts that differ only in swapped words, but 'a red "
                              "circle' has 3 words and 'a big blue circle' has 4. Use Refine (is_word_swap=False) to "
                              "add or remove words."),
    (TARGET, {"blend_word": ["square", "circle"]},  # the official configs' name is accepted
     "blend word 'square' is not in the prompt 'a red circle'; its words are ['a', 'red', 'circle']. Pick a word of "
     "that prompt (or fix the spelling)."),
    (TARGET, {"eq_params": {"words": ["blue"], "values": ["two"]}},
     "reweight value 'two' for 'blue' is not a number; write WORD=NUMBER, e.g. blue=2 (0 removes the word, 1 leaves "
     "it, 2 doubles its attention)"),
    (TARGET, {"blend_word": ["circle"] * 2, "blend_words": ["circle"] * 2},
     "pass blend_words or blend_word (its name in the official configs), not both"),
    (TARGET, {"threshold": 5}, f"threshold=5 {THRESHOLD}"),
    ("", {}, "the target prompt '' must be a text describing the video, e.g. 'a rabbit is jumping on the grass'"),
]


@pytest.mark.parametrize("target, options, message", BAD_OPTIONS,
                         ids=["word-count", "blend-word", "reweight-value", "both-names", "threshold", "empty"])
def test_video_p2p_refuses_bad_edit_options_before_tuning(target, options, message, tiny_pipe, tmp_path, no_tuning):
    with pytest.raises(ValueError) as error:
        workflow.video_p2p(tiny_pipe, smooth_video(2), SOURCE, target, work_dir=tmp_path / "work", **options)
    assert str(error.value) == message


def test_an_unknown_option_names_the_known_ones(tiny_pipe, no_tuning):
    with pytest.raises(ValueError) as error:
        workflow.video_p2p(tiny_pipe, smooth_video(2), SOURCE, TARGET, blend_wrods=["circle", "circle"])
    assert str(error.value) == (
        "unknown controller option blend_wrods=; did you mean blend_words=? the known ones are blend_start, "
        "blend_words, cross_replace_steps, eq_params, is_word_swap, keep_steps, num_tokens, places, resolutions, "
        "self_attention, self_replace_steps, threshold")


def test_blend_word_is_the_official_name_of_blend_words(tiny_pipe):
    options = workflow.check(tiny_pipe, [SOURCE, TARGET], Settings(), blend_word=["circle", "circle"])
    assert options["blend_words"] == ["circle", "circle"] and "blend_word" not in options
    assert options["threshold"] == 0.3 and options["cross_replace_steps"] == 0.2  # the settings' values


def test_unknown_toy_words():
    assert unknown_toy_words("A red striped circle, bouncing on the grass at night.") == []
    assert unknown_toy_words("a rabbit is jumping on the grass; a Rabbit!") == ["rabbit", "jumping"]


def test_a_toy_pipeline_refuses_words_it_does_not_know_before_tuning(monkeypatch):
    monkeypatch.setattr(workflow, "tune_stage", lambda *a, **k: pytest.fail("tuning started before the error"))
    toy = SimpleNamespace(name="toy")  # the check needs nothing of the model but that it is the toy one
    message = ("the toy model does not know 'rabbit', 'jumping' (in the source prompt 'a rabbit is jumping on the "
               f"grass'): it only draws its synthetic world of coloured shapes, with the words {' '.join(VOCABULARY)}."
               " Describe a toy scene with those words, or for real footage use Stable Diffusion: "
               "model=stable-diffusion-v1-5/stable-diffusion-v1-5 (a GPU and internet) or a local Stable Diffusion "
               "folder")
    with pytest.raises(ValueError) as error:
        workflow.video_p2p(toy, smooth_video(2), "a rabbit is jumping on the grass", "a cat is jumping on the grass",
                           TOY_SETTINGS)
    assert str(error.value) == message
    with pytest.raises(ValueError) as error:
        workflow.prepare(toy, smooth_video(2), "a rabbit is jumping on the grass", TOY_SETTINGS)
    assert str(error.value) == message
    with pytest.raises(ValueError, match=r"^the toy model does not know 'cat' \(in the target prompt "):
        workflow.check(toy, ["a red circle", "a red cat"], TOY_SETTINGS)


def test_the_toy_model_is_recognised_by_name_and_by_folder(tiny_model_dir, tmp_path):
    assert is_toy(SimpleNamespace(name="toy")) and is_toy(SimpleNamespace(name=str(toy_model_path())))
    assert not is_toy(SimpleNamespace(name=str(tiny_model_dir)))  # the toy's words and four more: not the toy's
    # A retrained toy-world model (its own folder, the toy's tokenizer) gets the toy's settings, not SD's.
    retrained = tmp_path / "retrained"
    shutil.copytree(toy_model_path(), retrained)
    assert is_toy(SimpleNamespace(name=str(retrained)))
    assert workflow.settings_for(SimpleNamespace(name=str(retrained))).num_steps == 25
    assert workflow.settings_for(SimpleNamespace(name=str(tiny_model_dir))).num_steps == 50
    assert not is_toy(SimpleNamespace(name="stable-diffusion-v1-5/stable-diffusion-v1-5"))


def test_weights_are_numbers():
    assert checks.parse_weight(" striped = 2 ") == ("striped", 2.0)
    for item, message in [("striped=two", "reweight value 'two' for 'striped' is not a number"),
                          ("striped=nan", "reweight value 'nan' for 'striped' is not a number"),
                          ("striped", "reweight 'striped': write WORD=NUMBER, e.g. striped=2"),
                          ("=2", "reweight '=2': write WORD=NUMBER, e.g. striped=2")]:
        with pytest.raises(ValueError) as error:
            checks.parse_weight(item)
        assert str(error.value).startswith(message)


def test_a_work_folder_of_vp2p_files_is_reused_without_overwrite(tmp_path):
    work = tmp_path / "out" / "cache"
    work.mkdir(parents=True)
    for name in ("tuned.safetensors", "tuning.json", "tuning_losses.json",
                 "inversion-null-text-per-frame-25steps.safetensors", ".tuned.1234.tmp.safetensors"):
        (work / name).write_bytes(b"vp2p")
    assert checks.check_outputs(tmp_path / "out", ["edit.gif"]) == tmp_path / "out"  # resuming is allowed
    (tmp_path / "out" / "edit.gif").write_bytes(b"an earlier result")
    with pytest.raises(FileExistsError) as error:
        checks.check_outputs(tmp_path / "out", ["edit.gif", "edit.mp4"])
    assert str(error.value) == (f"{tmp_path}/out already holds edit.gif; pass overwrite=True to replace them, or "
                                "choose another out folder")
    assert checks.check_outputs(tmp_path / "out", ["edit.gif"], overwrite=True) == tmp_path / "out"
