"""Loading (vp2p.load_pipeline, resolve_model) and moving frames in and out of the latent space (no network)."""

import json
import shutil
import time

import numpy as np
import pytest
import torch

import vp2p
from tiny import smooth_video
from vp2p.io import loading
from vp2p.io.loading import resolve_model


def test_local_folder_gives_the_sd_components_on_the_cpu_in_fp32(tiny_model_dir):
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    pipe = vp2p.load_pipeline(tiny_model_dir, device="cpu")
    assert isinstance(pipe.vae, AutoencoderKL) and isinstance(pipe.unet, UNet2DConditionModel)
    assert isinstance(pipe.text_encoder, CLIPTextModel) and isinstance(pipe.tokenizer, CLIPTokenizer)
    assert isinstance(pipe.scheduler, DDIMScheduler)
    assert pipe.device == torch.device("cpu") and pipe.dtype == torch.float32  # fp32 is the CPU default
    for module in (pipe.vae, pipe.text_encoder, pipe.unet):
        params = list(module.parameters())
        assert {p.device.type for p in params} == {"cpu"} and {p.dtype for p in params} == {torch.float32}
        assert not any(p.requires_grad for p in params) and not module.training
    assert pipe.scheduler.config.prediction_type == "epsilon"
    assert not pipe.scheduler.config.clip_sample and not pipe.scheduler.config.set_alpha_to_one
    assert pipe.vae_scale_factor == 2 and pipe.max_tokens == 77
    assert pipe.encode_text(["a red circle", ""]).shape == (2, 77, 32)


def test_bfloat16_when_asked_and_fp16_on_the_cpu_with_a_warning(tiny_model_dir):
    pipe = vp2p.load_pipeline(tiny_model_dir, device="cpu", dtype=torch.bfloat16)
    assert pipe.dtype == torch.bfloat16
    for module in (pipe.vae, pipe.text_encoder, pipe.unet):
        assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
    assert pipe.encode_text("a red circle").dtype == torch.bfloat16
    latents = pipe.encode_video(smooth_video(2))
    assert latents.shape == (2, 4, 16, 16) and latents.dtype == torch.bfloat16
    assert pipe.decode_latents(latents).shape == (2, 32, 32, 3)
    with pytest.warns(UserWarning, match="slowly"):
        half = vp2p.load_pipeline(tiny_model_dir, device="cpu", dtype=torch.float16)
    assert {p.dtype for p in half.unet.parameters()} == {torch.float16}
    with pytest.raises(ValueError, match="torch.int8 is not supported"):
        vp2p.load_pipeline(tiny_model_dir, device="cpu", dtype=torch.int8)


def linked_copy(source, target, scheduler_changes):
    """A model folder sharing ``source``'s weights (symlinks) with an edited scheduler config."""
    target.mkdir()
    for sub in ("vae", "text_encoder", "tokenizer", "unet"):
        (target / sub).symlink_to(source / sub, target_is_directory=True)
    shutil.copy(source / "model_index.json", target / "model_index.json")
    shutil.copytree(source / "scheduler", target / "scheduler")
    config_path = target / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config.update(scheduler_changes)
    config_path.write_text(json.dumps(config))
    return target


def test_scheduler_is_deterministic_ddim_without_clipping(tiny_model_dir, tmp_path):
    # a folder whose scheduler asks for clipping and ᾱ_final = 1 (as many SD folders do)
    folder = linked_copy(tiny_model_dir, tmp_path / "model", {"clip_sample": True, "set_alpha_to_one": True})
    config = vp2p.load_pipeline(folder, device="cpu").scheduler.config
    assert config.clip_sample is False and config.set_alpha_to_one is False  # as the official Video-P2P
    assert config.beta_schedule == "scaled_linear" and config.steps_offset == 1  # the rest comes from the folder


def test_timesteps_are_the_official_981_to_1_whatever_the_folder_says(tiny_model_dir, tmp_path):
    # The official pipeline forces steps_offset = 1 on "leading" spacing: 981, 961, ..., 1 for 50 steps.
    folder = linked_copy(tiny_model_dir, tmp_path / "model", {"steps_offset": 0, "timestep_spacing": "trailing"})
    from vp2p.ddim import DDIMSchedule

    schedule = DDIMSchedule.from_scheduler(vp2p.load_pipeline(folder, device="cpu").scheduler, 50)
    assert schedule.timesteps == list(range(981, 0, -20)) and schedule.step_size == 20


def test_prediction_type_comes_from_the_folder(tiny_v_model_dir):
    from vp2p.ddim import DDIMSchedule

    pipe = vp2p.load_pipeline(tiny_v_model_dir, device="cpu")
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert DDIMSchedule.from_scheduler(pipe.scheduler, 10).prediction_type == "v_prediction"


# -- frames in and out --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    return vp2p.load_pipeline(tiny_model_dir, device="cpu", dtype=torch.float32)


def test_encode_and_decode_shapes_and_frame_slicing(pipe):
    frames = smooth_video(3)
    latents = pipe.encode_video(frames)
    assert latents.shape == (3, 4, 16, 16) and latents.dtype == torch.float32
    video = pipe.decode_latents(latents)
    assert video.shape == (3, 32, 32, 3) and video.dtype == np.uint8
    # the VAE runs vae_batch frames at a time; slicing does not change the result
    pipe.vae_batch = 2
    try:
        assert torch.allclose(pipe.encode_video(frames), latents, atol=1e-5)
        assert np.abs(pipe.decode_latents(latents).astype(int) - video.astype(int)).max() <= 1
    finally:
        pipe.vae_batch = 4


def test_check_frames_errors(pipe):
    frames = smooth_video(2)
    with pytest.raises(ValueError, match="uint8 array .*float32"):
        pipe.check_frames(frames.astype(np.float32))
    with pytest.raises(ValueError, match="uint8 array"):
        pipe.check_frames(frames[0])  # one frame, not a video
    with pytest.raises(ValueError, match="uint8 array"):
        pipe.check_frames(torch.from_numpy(frames))
    with pytest.raises(ValueError) as info:
        pipe.encode_video(frames[:, :30, :30])
    message = str(info.value)
    # the tiny model: VAE factor 2, two UNet levels -> multiples of 4
    assert "30x30" in message and "not a multiple of 4" in message and "size=28" in message
    with pytest.raises(ValueError, match=r"32x34 \(H x W\) is not a multiple of 4"):
        pipe.check_frames(np.zeros((2, 32, 34, 3), np.uint8))
    pipe.check_frames(np.zeros((2, 36, 24, 3), np.uint8))  # multiples of 4 pass


def test_frame_sizes_must_fit_the_unet_levels_of_sd15():
    """SD-1.5: VAE factor 8, four UNet levels: 8 x 2^3 = 64. A 520-px clip (a multiple of 8, so the VAE takes it)
    is refused before any stage, with the sizes that fit."""
    from types import SimpleNamespace

    from vp2p.io import sd15
    from vp2p.io.loading import Pipeline

    config = {part: SimpleNamespace(config=SimpleNamespace(**values)) for part, values in
              (("vae", sd15.VAE), ("unet", sd15.UNET))}
    pipe = Pipeline(text_encoder=None, tokenizer=None, scheduler=None, device="cpu", dtype=torch.float32, **config)
    assert pipe.vae_scale_factor == 8 and pipe.frame_multiple == 64
    with pytest.raises(ValueError, match=r"520x520 \(H x W\) is not a multiple of 64.*size=512"):
        pipe.check_frames(np.zeros((2, 520, 520, 3), np.uint8))
    pipe.check_frames(np.zeros((2, 512, 576, 3), np.uint8))


# -- paths and hub ids --------------------------------------------------------------------------------------------

def test_missing_path_is_a_helpful_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for missing in (tmp_path / "no_such_model", "./no_such_model", "no_such_model", "a/b/c"):
        with pytest.raises(FileNotFoundError) as info:
            vp2p.load_pipeline(missing, device="cpu")
        message = str(info.value)
        assert str(missing) in message and "'toy'" in message and "hub id" in message


def test_folder_without_unet_is_an_error(tiny_model_dir, tmp_path):
    folder = tmp_path / "half_a_model"
    folder.mkdir()
    (folder / "vae").symlink_to(tiny_model_dir / "vae", target_is_directory=True)
    with pytest.raises(FileNotFoundError, match="no unet/ inside") as info:
        vp2p.load_pipeline(folder, device="cpu")
    assert str(folder) in str(info.value) and "save_pretrained" in str(info.value)


def test_diffusers_loads_the_tiny_folder_too(tiny_model_dir, pipe):
    from diffusers import StableDiffusionPipeline

    sd = StableDiffusionPipeline.from_pretrained(tiny_model_dir)
    assert sd.safety_checker is None and sd.feature_extractor is None
    ours = pipe.unet.state_dict()
    assert all(torch.equal(t, ours[n]) for n, t in sd.unet.state_dict().items())
    assert sd.tokenizer("a red circle").input_ids == pipe.tokenizer("a red circle").input_ids


def test_hub_ids_pass_through_unchanged(tmp_path, monkeypatch, tiny_model_dir):
    from huggingface_hub import constants

    monkeypatch.chdir(tmp_path)  # no local folder of that name
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(loading, "hub_online", lambda: True)  # as if online: the id is left to from_pretrained
    assert resolve_model("stable-diffusion-v1-5/stable-diffusion-v1-5") == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert resolve_model("someone/some-model") == "someone/some-model"
    assert resolve_model(tiny_model_dir) == str(tiny_model_dir)  # local folders (Path or str) stay local


def folder_without(source, target, part):
    """A model folder linking every part of ``source`` but ``part``."""
    target.mkdir()
    for sub in ("vae", "text_encoder", "tokenizer", "unet", "scheduler"):
        if sub != part:
            (target / sub).symlink_to(source / sub, target_is_directory=True)
    shutil.copy(source / "model_index.json", target / "model_index.json")
    return target


@pytest.mark.parametrize("part", ["text_encoder", "vae", "scheduler", "tokenizer"])
def test_a_folder_missing_a_part_names_the_part(part, tiny_model_dir, tmp_path):
    folder = folder_without(tiny_model_dir, tmp_path / "model", part)
    with pytest.raises(FileNotFoundError) as info:
        vp2p.load_pipeline(folder, device="cpu")
    assert str(info.value) == (
        f"the model folder {folder} has no {part}/: a diffusers Stable Diffusion folder holds unet/, vae/, "
        f"text_encoder/, tokenizer/, scheduler/; copy {part}/ from the model it came from, or save the whole "
        "pipeline with save_pretrained")


def test_a_tokenizer_without_its_vocabulary_is_refused(tiny_model_dir, tmp_path):
    # transformers would load it as a 2-token tokenizer: "a red circle" -> [0, 2, 2, ...], a silent wrong result
    folder = folder_without(tiny_model_dir, tmp_path / "model", "tokenizer")
    shutil.copytree(tiny_model_dir / "tokenizer", folder / "tokenizer")
    (folder / "tokenizer" / "merges.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"has a tokenizer/ without merges\.txt: a diffusers Stable"):
        vp2p.load_pipeline(folder, device="cpu")


@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE", "no network"])
def test_an_unknown_hub_id_offline_fails_at_once_naming_the_fix(offline, monkeypatch):
    """Before: 28-30 s of the hub client's retries. Now the local cache is looked up and, when HF_HUB_OFFLINE is
    set or the hub's host does not answer (here: a closed local port), the id is refused at once."""
    from huggingface_hub import constants, try_to_load_from_cache

    model = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    if try_to_load_from_cache(model, "model_index.json") is not None:
        model = "vp2p-kit/a-model-no-cache-holds"  # SD 1.5 is cached here: it would load, not fail
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    start = time.perf_counter()
    with pytest.raises(OSError) as info:
        resolve_model(model)
    assert time.perf_counter() - start < 4
    why = "HF_HUB_OFFLINE is set" if offline else "http://127.0.0.1:9 does not answer"
    assert str(info.value) == (
        f"could not reach the Hugging Face hub to download {model} ({why}), and it is not in the local cache; pass "
        "'toy' or a local folder saved with save_pretrained, or connect to the internet (and unset HF_HUB_OFFLINE) "
        "and run again")


def test_a_damaged_weights_file_is_named_with_the_fix(tiny_model_dir, tmp_path):
    folder = folder_without(tiny_model_dir, tmp_path / "model", "unet")
    shutil.copytree(tiny_model_dir / "unet", folder / "unet")
    weights = next((folder / "unet").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])  # a cut-off copy
    with pytest.raises(OSError) as info:
        vp2p.load_pipeline(folder, device="cpu")
    assert str(info.value) == (
        f"the unet of {folder} cannot be loaded from {weights}: the file is damaged or incomplete (an interrupted "
        "download or copy?); copy unet/ again from the model it came from, or save the model again with "
        "save_pretrained")
