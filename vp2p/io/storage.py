"""Files the kit writes and the fingerprints that tell whether a saved result still fits its inputs.

One place for four things every cached stage needs:

* ``atomic_path``: write to a hidden temporary file (named by process and a random part) beside the target, then
  rename — a reader (another notebook running at the same time) never sees half a file, two writers of the same
  file both succeed (the last rename wins, with a complete file), and a failed write never destroys the previous one;
* ``refuse_overwrite``: the one check (and message) before writing where something already is;
* fingerprints: a short hash of an array, or of a module's weights. Weights are fingerprinted from a strided sample
  of every tensor (names, shapes, dtypes and up to ``SAMPLE`` values each): cheap at Stable Diffusion scale (a few
  milliseconds, no float64 copy of 860 M weights), and any training or retraining moves the sampled values;
* cache names: a cached stage's file is named by its key (``cache_path``: ``inversion-<key>.safetensors``), and
  every key (``cache_key``) holds ``CACHE_FORMAT`` and the package version — a file can only be found by the inputs
  it was made from, and an algorithm change (a new version) never finds an old file.

No torch import here (tensors are only handled through their methods): ``vp2p.checks`` reads the cache names.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from vp2p import __version__

if TYPE_CHECKING:
    import torch

SAMPLE = 256  # values sampled per tensor by ``module_fingerprint``
# Raised whenever what a cache file holds or how its key is computed changes (2: keyed file names, the tuning
# fingerprint inside the weights file, `reconstruct` in the inversion key).
CACHE_FORMAT = 2
# The files vp2p's stages write into a work folder: keyed caches, the names of format 1 (tuned.safetensors and its
# two json files, inversion-<method>-<N>steps), and the hidden temporary files of ``atomic_path``.
CACHE_FILE = re.compile(r"(tuned|inversion)-[\w.-]+\.safetensors|tuned\.safetensors|tuning(_losses)?\.json"
                        r"|\..+\.tmp.*")


def refuse_overwrite(path: Path, overwrite: bool, flag: str = "overwrite=True") -> None:
    """Raise if ``path`` exists and overwriting was not asked for; the message names ``flag``, the way to ask."""
    if Path(path).exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass {flag} or choose another path")


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename, on failure it goes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: Path, value) -> Path:
    return write_text(path, json.dumps(value, indent=2))


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """safetensors, written atomically (contiguous CPU copies of the tensors)."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    return Path(path)


def array_fingerprint(array: np.ndarray) -> str:
    """sha256 (16 hex digits) of an array's shape, dtype and bytes."""
    h = hashlib.sha256(f"{array.shape}{array.dtype}".encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:16]


def tensor_sample(tensor: torch.Tensor, count: int = SAMPLE) -> bytes:
    """Up to ``count`` evenly strided values of ``tensor`` as float32 bytes."""
    flat = tensor.detach().reshape(-1)
    step = max(1, flat.numel() // count)
    return flat[::step][:count].float().cpu().numpy().tobytes()


def tensors_fingerprint(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    """sha256 (16 hex digits) of every tensor's name, shape, dtype and a strided sample of its values."""
    h = hashlib.sha256()
    for name, p in named:
        h.update(f"{name}{tuple(p.shape)}{p.dtype}".encode())
        h.update(tensor_sample(p))
    return h.hexdigest()[:16]


def module_fingerprint(module: torch.nn.Module) -> str:
    """``tensors_fingerprint`` of every parameter of ``module``."""
    return tensors_fingerprint(module.named_parameters())


def settings_fingerprint(**values) -> str:
    """sha256 (16 hex digits) of JSON-serialisable settings (keys sorted)."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cache_key(**values) -> str:
    """``settings_fingerprint`` of ``values`` with the cache format and the package version."""
    return settings_fingerprint(cache_format=CACHE_FORMAT, vp2p=__version__, **values)


def cache_path(folder, kind: str, key: str) -> Path:
    """The file of a cached stage: ``folder/<kind>-<key>.safetensors``."""
    return Path(folder) / f"{kind}-{key}.safetensors"


def is_cache_file(name: str) -> bool:
    """Whether a file name is one vp2p's cached stages write (``CACHE_FILE``)."""
    return CACHE_FILE.fullmatch(name) is not None
