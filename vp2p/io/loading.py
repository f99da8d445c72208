"""Load the model components (VAE, text encoder, tokenizer, UNet, DDIM scheduler) and move frames in and out.

``load_pipeline("toy")`` loads the tiny model shipped inside the package (CPU-friendly, offline);
``load_pipeline("stable-diffusion-v1-5/stable-diffusion-v1-5")`` a hub id (needs internet, e.g. Colab);
``load_pipeline("path/to/folder")`` any local folder in the diffusers Stable Diffusion layout.
SD 1.x (epsilon) and SD 2.x (v-prediction) folders both work: the scheduler config says which.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vp2p.checks import SD15, is_hub_id
from vp2p.precision import check_dtype

TOY = "toy"
# The parts of a diffusers Stable Diffusion folder that vp2p loads, and the files without which a part loads
# wrongly rather than failing (a tokenizer/ without its vocabulary gives a 2-token tokenizer: every word -> 2).
PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
REQUIRED_FILES = {"tokenizer": ("vocab.json", "merges.txt")}


def toy_model_path() -> Path:
    return Path(__file__).parent.parent / "toy" / "model"


def is_toy(pipe) -> bool:
    """Whether ``pipe`` is a toy-world model: the bundled one (loaded as 'toy' or from its folder) or one that
    ``vp2p train-toy`` made (a folder with the toy's own tokenizer: every stage writes the same vocabulary). Such
    a model gets the toy's settings and word check, not Stable Diffusion's."""
    name = str(getattr(pipe, "name", ""))
    if name == TOY:
        return True
    vocabulary, toy_vocabulary = (Path(folder) / "tokenizer" / "vocab.json" for folder in (name, toy_model_path()))
    return vocabulary.is_file() and vocabulary.read_bytes() == toy_vocabulary.read_bytes()  # the bundled folder too


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_model(model: str | os.PathLike) -> str:
    """The folder or hub id to load; explains what is wrong with a path that does not exist."""
    if str(model) == TOY:
        path = toy_model_path()
        if not (path / "unet" / "config.json").exists():
            raise FileNotFoundError(
                f"the bundled toy model is missing at {path}; reinstall vp2p, or train it with "
                "`python -m vp2p.toy.train --out vp2p/toy/model`"
            )
        return str(path)
    path = Path(model).expanduser()
    if path.exists():
        check_parts(path)
        return str(path)
    text = str(model)
    if not is_hub_id(text):
        raise FileNotFoundError(f"model folder {model} does not exist; pass 'toy', a local folder or a hub id "
                                f"such as {SD15}")
    check_hub_reachable(text)
    return str(model)  # a hub id: from_pretrained downloads it


def hub_cached(model_id: str) -> bool:
    """Whether the local Hugging Face cache holds ``model_id``'s pipeline description (a quick file lookup)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(model_id, "model_index.json"), str)


def hub_online(seconds: float = 3.0) -> bool:
    """Whether the hub's host answers a TCP connection within ``seconds`` (name lookup included, in a thread: a
    lookup without a network can hang far longer than any socket timeout)."""
    import socket
    import threading
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    answer = []

    def connect():
        try:
            socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                     timeout=seconds).close()
            answer.append(True)
        except OSError:
            pass

    probe = threading.Thread(target=connect, daemon=True)
    probe.start()
    probe.join(seconds)
    return bool(answer)


def check_hub_reachable(model_id: str) -> None:
    """A hub id not in the local cache needs the hub: when offline (HF_HUB_OFFLINE=1, or no answer within a few
    seconds), say so at once instead of after the hub client's half-minute of retries."""
    from huggingface_hub import constants

    if hub_cached(model_id):
        return
    offline = constants.HF_HUB_OFFLINE
    if offline or not hub_online():
        why = "HF_HUB_OFFLINE is set" if offline else f"{constants.ENDPOINT} does not answer"
        raise OSError(offline_message(model_id, why))


def offline_message(model_id: str, why: str) -> str:
    return (f"could not reach the Hugging Face hub to download {model_id} ({why}), and it is not in the local "
            "cache; pass 'toy' or a local folder saved with save_pretrained, or connect to the internet (and unset "
            "HF_HUB_OFFLINE) and run again")


def weight_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*") if p.suffix in (".safetensors", ".bin"))


@contextmanager
def local_errors(path: Path, part: str):
    """A part of a local folder that does not load (a damaged or cut-off weights file): one sentence naming the
    file and the fix, instead of the loader's raw error."""
    try:
        yield
    except (OSError, ValueError, RuntimeError) as error:
        files = weight_files(path / part)
        named = ", ".join(str(path / part / f) for f in files) or str(path / part)
        raise OSError(f"the {part} of {path} cannot be loaded from {named}: the file is damaged or "
                      f"incomplete (an interrupted download or copy?); copy {part}/ again from the model it came "
                      "from, or save the model again with save_pretrained") from error


def check_parts(path: Path) -> None:
    """A local model folder must hold every part vp2p loads, each with the files it cannot do without."""
    if not (path / "unet").is_dir():
        raise FileNotFoundError(
            f"{path} is not a diffusers Stable Diffusion folder (no unet/ inside); pass a folder saved with "
            "save_pretrained, 'toy', or a hub id such as " + SD15
        )
    for part in PARTS:
        missing = [name for name in REQUIRED_FILES.get(part, ()) if not (path / part / name).is_file()]
        if not (path / part).is_dir() or missing:
            what = f"no {part}/" if not (path / part).is_dir() else f"a {part}/ without {' or '.join(missing)}"
            raise FileNotFoundError(
                f"the model folder {path} has {what}: a diffusers Stable Diffusion folder holds "
                f"{', '.join(p + '/' for p in PARTS)}; copy {part}/ from the model it came from, or save the whole "
                "pipeline with save_pretrained"
            )


@contextmanager
def hub_errors(model: str):
    """Turn the hub's failures into one sentence naming the model and the fix (a local folder, or internet)."""
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        yield
    except OSError as error:
        causes = _causes(error)
        if any(isinstance(c, GatedRepoError) for c in causes):
            raise OSError(f"{model} is gated on the Hugging Face hub: accept its licence on its page and log in "
                          "(`hf auth login`), or pass a local folder") from error
        if any(isinstance(c, RepositoryNotFoundError) for c in causes):
            raise OSError(f"there is no model {model!r} on the Hugging Face hub; check the id (e.g. {SD15}), or "
                          "pass 'toy' or a local folder") from error
        if any(isinstance(c, LocalEntryNotFoundError) for c in causes):
            raise OSError(offline_message(model, "offline, or HF_HUB_OFFLINE=1")) from error
        raise


def _causes(error: BaseException) -> list[BaseException]:
    """``error`` and the exceptions it was raised from or during."""
    chain = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


@dataclass
class Pipeline:
    """The Stable Diffusion components Video-P2P uses, on one device and dtype, with frame-sliced VAE helpers."""

    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    unet: torch.nn.Module
    scheduler: object
    device: torch.device
    dtype: torch.dtype
    name: str = ""
    vae_batch: int = 4  # frames per VAE call: the VAE at full resolution is the memory peak, so slice it

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def frame_multiple(self) -> int:
        """What frame sides must be multiples of: the VAE's factor × 2^(UNet levels − 1), one halving per down
        block but the last (SD 1.x: 8 × 8 = 64; the toy model: 4 × 4 = 16). Other sizes give feature maps of odd
        sides, which the strided convolutions round up and the attention maps' geometry no longer matches."""
        return self.vae_scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)

    @property
    def max_tokens(self) -> int:
        return self.tokenizer.model_max_length

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        """Token ids (n, max_tokens); a prompt too long to fit is an error, since edits index tokens by position."""
        prompts = list(prompts)
        # Count first: a too-long prompt among shorter ones cannot be padded into one tensor (the tokenizer would
        # raise its own, misleading, error).
        lengths = [len(ids) for ids in self.tokenizer(prompts).input_ids]
        if max(lengths) > self.max_tokens:
            raise ValueError(f"prompt token counts {lengths} exceed the model's {self.max_tokens}; shorten the prompt")
        return self.tokenizer(prompts, padding="max_length", max_length=self.max_tokens, truncation=False,
                              return_tensors="pt").input_ids

    @torch.no_grad()
    def encode_text(self, prompts: str | list[str]) -> torch.Tensor:
        """Text embeddings (n, max_tokens, dim) for a prompt or a list of prompts."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        ids = self.tokenize(prompts).to(self.device)
        return self.text_encoder(ids)[0].to(self.dtype)

    def check_frames(self, frames: np.ndarray) -> None:
        if not (isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4
                and frames.shape[-1] == 3):
            got = f"{type(frames).__name__} {getattr(frames, 'dtype', '')} {getattr(frames, 'shape', '')}"
            raise ValueError(f"frames must be a uint8 array (frames, H, W, 3), got {got}; use vp2p.read_video")
        multiple = self.frame_multiple
        h, w = frames.shape[1:3]
        if h % multiple or w % multiple:
            fit = tuple(max(multiple, n - n % multiple) for n in (h, w))
            raise ValueError(f"frame size {h}x{w} (H x W) is not a multiple of {multiple} (this model's VAE factor "
                             f"{self.vae_scale_factor} × 2 per UNet level); read the video with size={fit[0]} or "
                             f"size={fit}")

    @torch.no_grad()
    def encode_posterior(self, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (F, H, W, 3) -> the VAE posterior's mean and standard deviation (F, C, H/s, W/s), both scaled as
        latents are (``scaling_factor``)."""
        self.check_frames(frames)
        pixels = torch.from_numpy(frames).permute(0, 3, 1, 2)
        means, stds = [], []
        for chunk in pixels.split(self.vae_batch):
            posterior = self.vae.encode(chunk.to(self.device, self.dtype) / 127.5 - 1).latent_dist
            means.append(posterior.mean * self.vae.config.scaling_factor)
            stds.append(posterior.std * self.vae.config.scaling_factor)
        return torch.cat(means), torch.cat(stds)

    def encode_video(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (F, H, W, 3) -> latents (F, C, H/s, W/s), the posterior mean (as the official inversion)."""
        return self.encode_posterior(frames)[0]

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """latents (F, C, h, w) -> uint8 (F, h·s, w·s, 3)."""
        frames = []
        for chunk in latents.split(self.vae_batch):
            x = self.vae.decode(chunk.to(self.device, self.dtype) / self.vae.config.scaling_factor).sample
            frames.append(((x.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu())
        return torch.cat(frames).numpy()


@contextmanager
def quiet_local_loading(local: bool):
    """Hide transformers' "Loading weights" bar for a local folder (it flashes by); keep download bars for hub ids."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if local:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if local and was_enabled:
            hf_logging.enable_progress_bar()


def load_pipeline(model: str | os.PathLike = TOY, device=None, dtype=None) -> Pipeline:
    """Load 'toy', a local diffusers Stable Diffusion folder or a hub id, on ``device`` in ``dtype``.

    Defaults: the best device present (CUDA, MPS, CPU) and the dtype of the precision policy
    (``vp2p.precision``: fp16 on CUDA, fp32 elsewhere; bf16 on request anywhere).
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    source = resolve_model(model)
    device = torch.device(device) if device is not None else default_device()
    dtype = check_dtype(device, dtype)
    local = Path(source).exists()

    def load(cls, sub, **kw):
        if not local:
            return cls.from_pretrained(source, subfolder=sub, **kw)
        with local_errors(Path(source), sub):
            return cls.from_pretrained(source, subfolder=sub, **kw)

    # As the official Video-P2P pipeline, whatever the folder says: deterministic DDIM, no clipping, ᾱ_final = ᾱ_0,
    # and timesteps 981, 961, …, 1 for 50 steps (it forces steps_offset = 1 on diffusers 0.11's "leading" spacing).
    with hub_errors(source), quiet_local_loading(local):
        scheduler = load(DDIMScheduler, "scheduler", clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                         timestep_spacing="leading")
        pipe = Pipeline(
            vae=load(AutoencoderKL, "vae", torch_dtype=dtype).to(device).eval(),
            text_encoder=load(CLIPTextModel, "text_encoder", torch_dtype=dtype).to(device).eval(),
            tokenizer=load(CLIPTokenizer, "tokenizer"),
            unet=load(UNet2DConditionModel, "unet", torch_dtype=dtype).to(device).eval(),
            scheduler=scheduler,
            device=device,
            dtype=dtype,
            name=str(model),
        )
    for module in (pipe.vae, pipe.text_encoder, pipe.unet):
        module.requires_grad_(False)
    return pipe
