"""Figures: videos side by side, per-frame cross-attention maps per token, blend masks, curves.

Every function returns a matplotlib ``Figure`` (shown inline in notebooks) and never calls ``plt.show``;
``save(fig, path)`` writes it (PNG) and refuses to overwrite unless asked.
"""

from __future__ import annotations

import textwrap
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


def video_strip(videos: dict[str, np.ndarray], frames: list[int] | None = None, scale: float = 1.2,
                title: str = ""):
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
                ax.set_ylabel(textwrap.fill(name, 16), fontsize=9)  # long names would overlap rows
            if r == 0:
                ax.set_title(f"frame {f}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
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
           title: str = "", x=None, marker: str | None = None):
    """Several named curves on one axis, against ``x`` when given, else the index; a value may also be a pair
    (x values, y values) of its own."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, values in series.items():
        xs, values = (values if isinstance(values, tuple) else (x, values))
        values = _numpy(values)
        ax.plot(np.arange(len(values)) if xs is None else _numpy(xs), values, label=name, marker=marker)
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


def per_frame(series: dict[str, np.ndarray], ylabel: str = "PSNR (dB)", title: str = ""):
    """One value per frame for several named videos or methods (e.g. the PSNR of each reconstructed frame)."""
    count = max(len(_numpy(v)) for v in series.values())
    fig = curves(series, xlabel="frame", ylabel=ylabel, title=title, marker="o")
    fig.axes[0].set_xticks(range(count))
    return fig


def bars(values: dict[str, float], ylabel: str = "", log: bool = False, title: str = "", fmt: str = "{:,.0f}"):
    """One labelled bar per entry, its value written on top."""
    fig, ax = plt.subplots(figsize=(1.1 * len(values) + 1.5, 3.2))
    names, heights = list(values), [float(v) for v in values.values()]
    positions = np.arange(len(names))
    ax.bar(positions, heights, color="tab:blue")
    ax.set_xticks(positions, names, rotation=20, ha="right", fontsize=8)
    for x, h in zip(positions, heights):
        ax.annotate(fmt.format(h), (x, h), ha="center", va="bottom", fontsize=7)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def table(rows: list[dict], title: str = "", fmt: str = "{:.3g}"):
    """A table figure: one row per dict, the keys of the first dict as the column headers."""
    columns = list(rows[0])
    cells = [[fmt.format(v) if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)
              for v in (row[c] for c in columns)] for row in rows]
    fig, ax = plt.subplots(figsize=(1.6 * len(columns), 0.35 * (len(rows) + 1) + 0.5))
    ax.axis("off")
    grid = ax.table(cellText=cells, colLabels=columns, loc="center", cellLoc="center")
    grid.auto_set_font_size(False)
    grid.set_fontsize(8)
    grid.auto_set_column_width(list(range(len(columns))))  # each column as wide as its longest entry
    grid.scale(1, 1.3)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def frame_attention(maps, video: np.ndarray, points=None, title: str = "", scale: float = 1.2):
    """Where frame i looks in frame 0. Top row: frame i (with its query point); bottom row: frame 0 with frame i's
    attention map over it (maps: (F, h, w), each normalised by its maximum)."""
    maps = _numpy(maps)
    count = maps.shape[0]
    fig, axes = plt.subplots(2, count, figsize=(scale * count, 2 * scale + 0.5), squeeze=False)
    height, width = video.shape[1:3]
    for f in range(count):
        top, bottom = axes[0, f], axes[1, f]
        top.imshow(video[f])
        if points is not None:
            r, c = points[f] if len(points) == count else points[0]
            top.plot([c * width - 0.5], [r * height - 0.5], marker="+", color="yellow", markersize=10, mew=2)
        top.set_title(f"frame {f}", fontsize=8)
        bottom.imshow(video[0], extent=(0, 1, 1, 0))
        m = maps[f] / max(float(maps[f].max()), 1e-12)
        bottom.imshow(m, cmap="jet", alpha=0.55, extent=(0, 1, 1, 0), vmin=0, vmax=1)
        for ax in (top, bottom):
            ax.set_xticks([]), ax.set_yticks([])
    axes[0, 0].set_ylabel("query in frame i", fontsize=8)
    axes[1, 0].set_ylabel("looks at frame 0", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def masks_over_steps(masks, steps: list[int] | None = None, labels: list[str] | None = None,
                     video: np.ndarray | None = None, title: str = "", scale: float = 1.0):
    """Rows = steps, columns = frames: masks (steps, F, h, w); ``steps`` picks rows (default: up to 5, evenly)."""
    masks = _numpy(masks).astype(np.float32)
    total, count = masks.shape[:2]
    steps = sorted(set(np.linspace(0, total - 1, min(total, 5)).round().astype(int).tolist())) if steps is None else steps
    fig, axes = plt.subplots(len(steps), count, figsize=(scale * count, scale * len(steps) + 0.4), squeeze=False)
    for r, s in enumerate(steps):
        for f in range(count):
            ax = axes[r, f]
            if video is not None:
                ax.imshow(video[f], extent=(0, 1, 1, 0))
                ax.imshow(masks[s, f], cmap="Reds", alpha=0.5, extent=(0, 1, 1, 0), vmin=0, vmax=1)
            else:
                ax.imshow(masks[s, f], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {f}", fontsize=8)
            if f == 0:
                ax.set_ylabel(labels[r] if labels else f"mask {s}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
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
