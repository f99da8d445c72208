"""vp2p.workflow's stages and caches: an edit never runs on weights tuned for another clip, cache files are named by
their inputs' key (cache format and version included), and two processes preparing one clip both succeed."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vp2p
from tiny import smooth_video
from vp2p.io import storage
from vp2p.tuning import tuned_metadata
from vp2p.workflow import TUNING_METADATA, Settings, edit_run, invert_stage, prepare, tune_stage

SOURCE = "a red circle on the grass"
TARGET = "a red square on the grass"
SETTINGS = Settings(tune_steps=2, tune_lr=1e-3, method="fast", num_steps=3, blend_start=0.0)
CLIP_A, CLIP_B = smooth_video(2, seed=0), smooth_video(2, seed=1)


@pytest.fixture
def pipe(tiny_model_dir):
    return vp2p.load_pipeline(tiny_model_dir, device="cpu", dtype=torch.float32)


def test_an_edit_refuses_weights_tuned_on_another_clip_until_it_is_prepared_again(pipe, tmp_path):
    run_a = prepare(pipe, CLIP_A, SOURCE, SETTINGS, work_dir=tmp_path / "a", progress=False)
    edited = edit_run(pipe, run_a, [SOURCE, TARGET], SETTINGS, progress=False).edited
    prepare(pipe, CLIP_B, SOURCE, SETTINGS, work_dir=tmp_path / "b", progress=False)  # tunes the UNet on B
    with pytest.raises(ValueError, match=r"tuned since.*another clip.*prepare"):
        edit_run(pipe, run_a, [SOURCE, TARGET], SETTINGS, progress=False)
    with pytest.raises(ValueError, match="another clip"):  # the library call refuses it too
        vp2p.edit(pipe, run_a.inversion, [SOURCE, TARGET], progress=False)
    again = prepare(pipe, CLIP_A, SOURCE, SETTINGS, work_dir=tmp_path / "a", progress=False)  # loads A's tuning
    assert again.weights == run_a.weights and again.inversion.key == run_a.inversion.key
    np.testing.assert_array_equal(edit_run(pipe, run_a, [SOURCE, TARGET], SETTINGS, progress=False).edited, edited)


def test_retuning_on_another_clip_starts_from_the_base_weights(pipe, tmp_path):
    """Tuning on B after A gives B's weights as if A had never been tuned (restore_base_weights)."""
    from vp2p.inflation import trainable_parameters

    tune_stage(pipe, CLIP_A, SOURCE, SETTINGS)
    tune_stage(pipe, CLIP_B, SOURCE, SETTINGS)
    a_then_b = {n: p.clone() for n, p in trainable_parameters(pipe.unet).items()}
    fresh = vp2p.load_pipeline(pipe.name, device="cpu", dtype=torch.float32)
    tune_stage(fresh, CLIP_B, SOURCE, SETTINGS)
    for name, p in trainable_parameters(fresh.unet).items():
        torch.testing.assert_close(a_then_b[name], p, rtol=0, atol=0)


def test_cache_files_are_named_by_their_key_with_the_fingerprint_inside(pipe, tmp_path):
    run = prepare(pipe, CLIP_A, SOURCE, SETTINGS, work_dir=tmp_path, progress=False)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n.split("-")[0] for n in names] == ["inversion", "tuned"], names
    assert names[0] == f"inversion-{run.inversion.key}.safetensors"
    record = json.loads(tuned_metadata(tmp_path / names[1])[TUNING_METADATA])
    assert record["losses"] == run.tuning.losses and record["fingerprint"]["tune_steps"] == 2
    assert names[1] == f"tuned-{storage.cache_key(**record['fingerprint'])}.safetensors"


def test_a_new_cache_format_or_version_finds_no_old_file(pipe, tmp_path, monkeypatch):
    prepare(pipe, CLIP_A, SOURCE, SETTINGS, work_dir=tmp_path, progress=False)
    before = {p.name for p in tmp_path.iterdir()}
    monkeypatch.setattr(storage, "__version__", "9.9.9")
    run = prepare(pipe, CLIP_A, SOURCE, SETTINGS, work_dir=tmp_path, progress=False)
    assert run.tuning.seconds > 0  # tuned again, not loaded
    after = {p.name for p in tmp_path.iterdir()}
    assert len(after) == 4 and before < after
    key = storage.cache_key(a=1)
    monkeypatch.setattr(storage, "CACHE_FORMAT", storage.CACHE_FORMAT + 1)
    assert storage.cache_key(a=1) != key


def test_reconstruct_is_part_of_the_inversion_key(pipe, tmp_path):
    vp2p.inflate_unet(pipe.unet)
    cache = tmp_path / "inv.safetensors"
    bare = vp2p.invert(pipe, CLIP_A, SOURCE, method="fast", num_steps=2, reconstruct=False, cache=cache,
                       progress=False)
    assert bare.reconstruction is None
    with pytest.raises(FileExistsError, match="other inputs"):  # not the bare one, returned to a caller wanting more
        vp2p.invert(pipe, CLIP_A, SOURCE, method="fast", num_steps=2, reconstruct=True, cache=cache, progress=False)
    full = invert_stage(pipe, CLIP_A, SOURCE, SETTINGS.replace(num_steps=2), tmp_path / "work", progress=False)
    assert full.reconstruction is not None and full.key != bare.key


def test_an_inversion_keeps_its_source_embedding_and_weights_through_save_and_load(pipe, tmp_path):
    vp2p.inflate_unet(pipe.unet)
    inv = vp2p.invert(pipe, CLIP_A, SOURCE, method="fast", num_steps=2, reconstruct=False, progress=False)
    torch.testing.assert_close(inv.source_embedding, pipe.encode_text([SOURCE]).float(), rtol=0, atol=1e-6)
    loaded = vp2p.Inversion.load(inv.save(tmp_path / "inv.safetensors"))
    assert loaded.weights == inv.weights != ""
    torch.testing.assert_close(loaded.source_embedding, inv.source_embedding, rtol=0, atol=0)


PREPARE = """
import sys, torch, vp2p
sys.path.insert(0, {tests!r})
from tiny import smooth_video
from vp2p.workflow import Settings, prepare
pipe = vp2p.load_pipeline({model!r}, device="cpu", dtype=torch.float32)
run = prepare(pipe, smooth_video(2, seed=0), {source!r}, Settings(tune_steps=2, tune_lr=1e-3, method="fast",
              num_steps=3), work_dir={work!r}, progress=False)
print(run.inversion.key, run.weights)
"""


def test_two_processes_preparing_the_same_clip_both_succeed(tiny_model_dir, tmp_path):
    work = tmp_path / "shared"
    script = PREPARE.format(tests=str(Path(__file__).parent), model=str(tiny_model_dir), source=SOURCE,
                            work=str(work))
    env = {"PYTHONPATH": str(Path(__file__).parent.parent), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-2000:]
    assert outputs[0][0] == outputs[1][0]  # same inversion key and tuned weights in both
    names = sorted(p.name for p in work.iterdir())
    assert len(names) == 2 and not any(n.startswith(".") for n in names), names  # no temporary file left
    pipe = vp2p.load_pipeline(tiny_model_dir, device="cpu", dtype=torch.float32)
    run = prepare(pipe, CLIP_A, SOURCE, Settings(tune_steps=2, tune_lr=1e-3, method="fast", num_steps=3),
                  work_dir=work, progress=False)
    assert run.tuning.seconds == 0 and f"{run.inversion.key} {run.weights}" == outputs[0][0].strip()


def test_uploads_of_the_same_name_keep_both_files(tmp_path):
    from vp2p.course.clip import save_upload

    first = save_upload("my clip.mp4", b"first", tmp_path)
    second = save_upload("my clip.mp4", b"second", tmp_path)
    assert first != second and first.read_bytes() == b"first" and second.read_bytes() == b"second"
    assert first.suffix == ".mp4" and first.name.startswith("my_clip-")
    assert save_upload("my clip.mp4", b"first", tmp_path) == first  # the same file is kept once
    assert len(list(tmp_path.iterdir())) == 2


def test_settings_are_frozen_so_no_caller_changes_anothers():
    import dataclasses
    from types import SimpleNamespace

    from vp2p.toy.settings import TOY_SETTINGS
    from vp2p.workflow import settings_for

    toy = settings_for(SimpleNamespace(name="toy"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        toy.num_steps = 50  # a student's change would have reached the studio's and the paper's defaults
    changed = toy.replace(num_steps=50)
    assert changed.num_steps == 50 and toy.num_steps == TOY_SETTINGS.num_steps == 25
    assert settings_for(SimpleNamespace(name="toy")).num_steps == 25
    assert settings_for(SimpleNamespace(name="some/model")) == Settings() and Settings().num_steps == 50
    with pytest.raises(ValueError, match=r"unknown settings \['steps'\]"):
        toy.replace(steps=3)
