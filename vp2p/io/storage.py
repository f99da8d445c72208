"""Files the kit writes and the fingerprints that tell whether a saved result still fits its inputs.

One place for three things every cached stage needs:

* ``atomic_path``: write to a hidden temporary file beside the target, then rename — a reader (another notebook
  running at the same time) never sees half a file, and a failed write never destroys the previous one;
* ``refuse_overwrite``: the one check (and message) before writing where something already is;
* fingerprints: a short hash of an array, or of a module's weights. Weights are fingerprinted from a strided sample
  of every tensor (names, shapes, dtypes and up to ``SAMPLE`` values each): cheap at Stable Diffusion scale (a few
  milliseconds, no float64 copy of 860 M weights), and any training or retraining moves the sampled values.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

SAMPLE = 256  # values sampled per tensor by ``module_fingerprint``


def refuse_overwrite(path: Path, overwrite: bool, flag: str = "overwrite=True") -> None:
    """Raise if ``path`` exists and overwriting was not asked for; the message names ``flag``, the way to ask."""
    if Path(path).exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass {flag} or choose another path")


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename, on failure it goes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
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


def module_fingerprint(module: torch.nn.Module) -> str:
    """sha256 (16 hex digits) of every parameter's name, shape, dtype and a strided sample of its values."""
    h = hashlib.sha256()
    for name, p in module.named_parameters():
        h.update(f"{name}{tuple(p.shape)}{p.dtype}".encode())
        h.update(tensor_sample(p))
    return h.hexdigest()[:16]


def settings_fingerprint(**values) -> str:
    """sha256 (16 hex digits) of JSON-serialisable settings (keys sorted)."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]
