"""Figures: videos side by side, per-frame cross-attention maps per token, blend masks, curves.

Every function returns a matplotlib ``Figure`` (shown inline in notebooks) and never calls ``plt.show``;
``save(fig, path)`` writes it (PNG) and refuses to overwrite unless asked.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

if matplotlib.get_backend().lower() not in ("module://matplotlib_inline.backend_inline", "nbagg", "widget", "ipympl"):
    matplotlib.use("Agg")  # headless by default; notebooks keep their inline backend
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def token_labels(tokenizer, prompt: str) -> list[str]:
    """Readable labels of a prompt's tokens, start and end tokens included."""
    ids = tokenizer(prompt).input_ids
    return [tokenizer.convert_ids_to_tokens(i).replace("</w>", "") for i in ids]


def _numpy(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def video_strip(videos: dict[str, np.ndarray], frames: list[int] | None = None, scale: float = 1.2):
    """Rows = videos (name → uint8 (F, H, W, 3)), columns = frames."""
    names = list(videos)
    count = len(next(iter(videos.values())))
    frames = list(range(count)) if frames is None else frames
    fig, axes = plt.subplots(len(names), len(frames), figsize=(scale * len(frames), scale * len(names) + 0.3),
                             squeeze=False)
    for r, name in enumerate(names):
        for c, f in enumerate(frames):
            ax = axes[r, c]
            ax.imshow(videos[name][f])
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
            if r == 0:
                ax.set_title(f"frame {f}", fontsize=8)
    fig.tight_layout()
    return fig


def attention_grid(maps, labels: list[str], tokens: list[int] | None = None, frames: list[int] | None = None,
                   video: np.ndarray | None = None, masks=None, title: str = "", scale: float = 1.1):
    """Rows = frames, columns = tokens: each frame's cross-attention map of each token (maps: (F, h, w, T)).

    Every map is normalised by its own maximum; with ``video`` the map is laid over the frame. ``masks``
    (F, H, W) adds a last column with each frame's blend mask.
    """
    maps = _numpy(maps)
    tokens = list(range(1, len(labels) - 1)) if tokens is None else tokens  # words, not start/end tokens
    frames = list(range(maps.shape[0])) if frames is None else frames
    columns = len(tokens) + (masks is not None)
    fig, axes = plt.subplots(len(frames), columns, figsize=(scale * columns, scale * len(frames) + 0.4),
                             squeeze=False)
    for r, f in enumerate(frames):
        for c, t in enumerate(tokens):
            ax = axes[r, c]
            m = maps[f, :, :, t]
            m = m / max(m.max(), 1e-12)
            if video is not None:
                ax.imshow(video[f], extent=(0, 1, 1, 0))
                ax.imshow(m, cmap="jet", alpha=0.55, extent=(0, 1, 1, 0), vmin=0, vmax=1)
            else:
                ax.imshow(m, cmap="viridis", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(labels[t] if t < len(labels) else f"#{t}", fontsize=9)
            if c == 0:
                ax.set_ylabel(f"frame {f}", fontsize=8)
        if masks is not None:
            ax = axes[r, -1]
            ax.imshow(_numpy(masks[f]).astype(np.float32), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title("blend mask", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def mask_strip(masks, video: np.ndarray | None = None, title: str = "", scale: float = 1.2):
    """One blend mask per frame (masks: (F, h, w) bool/float), over the frame when ``video`` is given."""
    masks = _numpy(masks).astype(np.float32)
    count = masks.shape[0]
    fig, axes = plt.subplots(1, count, figsize=(scale * count, scale + 0.4), squeeze=False)
    for f in range(count):
        ax = axes[0, f]
        if video is not None:
            ax.imshow(video[f], extent=(0, 1, 1, 0))
            ax.imshow(masks[f], cmap="Reds", alpha=0.5, extent=(0, 1, 1, 0), vmin=0, vmax=1)
        else:
            ax.imshow(masks[f], cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"frame {f}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def curves(series: dict[str, np.ndarray], xlabel: str = "step", ylabel: str = "", log: bool = False,
           title: str = ""):
    """Several named curves on one axis."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, values in series.items():
        ax.plot(_numpy(values), label=name)
    ax.set_xlabel(xlabel), ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def save(fig, path, overwrite: bool = True, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG (figures are outputs the kit regenerates; pass overwrite=False to protect one)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True or choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
