"""Figures: videos side by side, per-frame cross-attention maps per token, blend masks, curves.

Every function returns a matplotlib ``Figure`` (shown inline in notebooks) and never calls ``plt.show``;
``save(fig, path)`` writes it (PNG) and refuses to replace an existing file unless ``overwrite=True``.
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


SCALINGS = ("shared", "per map")
UNDERLAYS = ("grey", "colour")
OVERLAY_OPACITY = 0.85  # opacity of a map at its scale's maximum; zero attention is fully transparent


def greyscale(frame: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) as its luminance (ITU-R BT.601), three equal channels: the frame under a map, so that a
    map on a blue object is not lost in the colour map's blue end."""
    grey = (np.asarray(frame, dtype=np.float32)[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32))
    return np.repeat(grey.round().clip(0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def _overlay(ax, frame: np.ndarray, m: np.ndarray, vmax: float, cmap: str = "turbo", underlay: str = "grey"):
    """The frame (greyscale by default, ``underlay="colour"`` as it is), the map over it with opacity proportional
    to its value (a uniform semi-transparent layer would tint and darken every pixel, attended or not)."""
    if underlay not in UNDERLAYS:
        raise ValueError(f"underlay={underlay!r}; choose one of {UNDERLAYS}")
    ax.imshow(greyscale(frame) if underlay == "grey" else frame, extent=(0, 1, 1, 0))
    opacity = np.clip(m / max(vmax, 1e-12), 0.0, 1.0) * OVERLAY_OPACITY
    ax.imshow(m, cmap=cmap, vmin=0, vmax=vmax, alpha=opacity, extent=(0, 1, 1, 0))


def scaled_maps(maps: np.ndarray, scaling: str) -> tuple[np.ndarray, float, str]:
    """Maps (..., h, w) as shown: ``"shared"`` (one colour scale, 0 to the largest value of all maps: maps compare)
    or ``"per map"`` (each divided by its own maximum: shapes compare, strengths do not). Returns (maps, top of the
    scale, colour-bar label)."""
    if scaling not in SCALINGS:
        raise ValueError(f"scaling={scaling!r}; choose one of {SCALINGS}")
    if scaling == "per map":
        tops = np.maximum(maps.max(axis=(-2, -1), keepdims=True), 1e-12)
        return maps / tops, 1.0, "attention ÷ each map's own maximum (per-map scale)"
    return maps, max(float(maps.max()), 1e-12), "attention probability (one scale for all maps)"


def _colorbar(fig, axes, vmin: float, vmax: float, cmap: str, label: str):
    mappable = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(vmin, vmax), cmap=cmap)
    bar = fig.colorbar(mappable, ax=axes, shrink=0.8, aspect=30, pad=0.02)
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)
    return bar


def _blank(ax):
    ax.set_xticks([]), ax.set_yticks([])


def attention_grid(maps, labels: list[str], tokens: list[int] | None = None, frames: list[int] | None = None,
                   video: np.ndarray | None = None, masks=None, title: str = "", scale: float = 1.1,
                   scaling: str = "shared", cmap: str = "turbo", underlay: str = "grey"):
    """Rows = frames, columns = tokens: each frame's cross-attention map of each token (maps: (F, h, w, T)).

    ``scaling``: ``"shared"`` (default: one colour scale for every map of the grid, so a weak token looks weak)
    or ``"per map"`` (each map scaled to its own maximum); the colour bar and the title say which. With ``video``
    the map is laid over the frame with opacity proportional to the attention (the frame is not darkened), in
    greyscale (``underlay="colour"``: as it is).
    ``masks`` (F, H, W) adds a last column with each frame's blend mask.
    """
    maps = _numpy(maps)
    tokens = list(range(1, len(labels) - 1)) if tokens is None else tokens  # words, not start/end tokens
    frames = list(range(maps.shape[0])) if frames is None else frames
    shown = np.moveaxis(maps[frames][..., tokens], -1, 1)  # (rows, columns, h, w)
    shown, vmax, label = scaled_maps(shown, scaling)
    columns = len(tokens) + (masks is not None)
    fig, axes = plt.subplots(len(frames), columns, figsize=(scale * columns + 1.0, scale * len(frames) + 0.5),
                             squeeze=False, layout="constrained")
    for r, f in enumerate(frames):
        for c, t in enumerate(tokens):
            ax = axes[r, c]
            if video is not None:
                _overlay(ax, video[f], shown[r, c], vmax, cmap, underlay)
            else:
                ax.imshow(shown[r, c], cmap=cmap, vmin=0, vmax=vmax)
            _blank(ax)
            if r == 0:
                ax.set_title(labels[t] if t < len(labels) else f"#{t}", fontsize=9)
            if c == 0:
                ax.set_ylabel(f"frame {f}", fontsize=8)
        if masks is not None:
            ax = axes[r, -1]
            ax.imshow(_numpy(masks[f]).astype(np.float32), cmap="gray", vmin=0, vmax=1)
            _blank(ax)
            if r == 0:
                ax.set_title("blend mask", fontsize=9)
    _colorbar(fig, axes, 0.0, vmax, cmap, label)
    fig.suptitle(f"{title} — {scaling} scale" if title else f"{scaling} scale", fontsize=10)
    return fig


def attention_diff(diff, labels: list[str], tokens: list[int] | None = None, frames: list[int] | None = None,
                   video: np.ndarray | None = None, title: str = "", scale: float = 1.1):
    """Rows = frames, columns = tokens: target minus source cross-attention (diff: (F, h, w, T), e.g.
    ``AttentionRecorder.diff_maps``). Red: the target attends more there, blue: less, white: the same (where the
    source's maps were injected). One symmetric colour scale for the whole grid; ``video`` adds the frames as a
    first column (beside the maps, not under them)."""
    diff = _numpy(diff)
    tokens = list(range(1, len(labels) - 1)) if tokens is None else tokens
    frames = list(range(diff.shape[0])) if frames is None else frames
    shown = np.moveaxis(diff[frames][..., tokens], -1, 1)
    top = max(float(np.abs(shown).max()), 1e-12)
    first = int(video is not None)
    fig, axes = plt.subplots(len(frames), len(tokens) + first, squeeze=False, layout="constrained",
                             figsize=(scale * (len(tokens) + first) + 1.0, scale * len(frames) + 0.5))
    for r, f in enumerate(frames):
        if video is not None:
            axes[r, 0].imshow(video[f])
            _blank(axes[r, 0])
            if r == 0:
                axes[r, 0].set_title("frame", fontsize=9)
        for c, t in enumerate(tokens):
            ax = axes[r, c + first]
            ax.imshow(shown[r, c], cmap="RdBu_r", vmin=-top, vmax=top)
            _blank(ax)
            if r == 0:
                ax.set_title(labels[t] if t < len(labels) else f"#{t}", fontsize=9)
        axes[r, 0].set_ylabel(f"frame {f}", fontsize=8)
    _colorbar(fig, axes[:, first:], -top, top, "RdBu_r", "target − source attention (one symmetric scale)")
    fig.suptitle(title or "target − source cross-attention", fontsize=10)
    return fig


def temporal_attention(matrix, video: np.ndarray, pixel: tuple[float, float], title: str = "",
                       scale: float = 1.1):
    """The temporal attention of one pixel: top, the frames with the pixel marked; below, the (F query, F key)
    matrix — row i: how frame i's pixel spreads its attention over the same pixel in every frame."""
    matrix = _numpy(matrix)
    count = matrix.shape[0]
    fig = plt.figure(figsize=(scale * count + 0.5, scale * count * 0.5 + scale + 0.8), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 0.5 * count])  # two layouts: the bar moves no frame
    height, width = video.shape[1:3]
    for f, ax in enumerate(top.subplots(1, count, squeeze=False)[0]):
        ax.imshow(video[f])
        ax.plot([pixel[1] * width - 0.5], [pixel[0] * height - 0.5], marker="+", color="yellow", markersize=10,
                mew=2)
        ax.set_title(f"frame {f}", fontsize=8)
        _blank(ax)
    ax = bottom.subplots()
    image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=max(float(matrix.max()), 1e-12))
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6,
                color="white" if value < 0.6 * matrix.max() else "black")
    ax.set_xticks(range(count)), ax.set_yticks(range(count))
    ax.set_xlabel("key frame (looked at)", fontsize=8), ax.set_ylabel("query frame", fontsize=8)
    ax.tick_params(labelsize=7)
    bar = bottom.colorbar(image, ax=ax, shrink=0.9)
    bar.set_label("attention probability (one scale)", fontsize=8)
    fig.suptitle(title or f"temporal attention at pixel (row {pixel[0]:.2f}, column {pixel[1]:.2f})", fontsize=10)
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


def frame_attention(maps, video: np.ndarray, points=None, title: str = "", scale: float = 1.2,
                    underlay: str = "grey"):
    """Where frame i looks in frame 0. Top row: frame i (with its query point); bottom row: frame 0 (greyscale by
    default) with frame i's attention map over it (maps: (F, h, w), each normalised by its maximum)."""
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
        _overlay(bottom, video[0], maps[f] / max(float(maps[f].max()), 1e-12), 1.0, cmap="jet", underlay=underlay)
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


def token_shares(shares: dict[str, float], title: str = ""):
    """One horizontal bar per token (``readings.token_shares``: start token, words, end token, padding), its share
    of the cross-attention written beside it; the start token and the padding in grey, the words in blue."""
    names, values = list(shares), [float(v) for v in shares.values()]
    fig, ax = plt.subplots(figsize=(5.2, 0.3 * len(names) + 0.9))
    colours = ["tab:gray" if n in ("start token", "padding") else "tab:orange" if n == "end token" else "tab:blue"
               for n in names]
    positions = np.arange(len(names))[::-1]  # the prompt's order, top to bottom
    ax.barh(positions, values, color=colours)
    ax.set_yticks(positions, names, fontsize=8)
    for y, v in zip(positions, values):
        ax.annotate(f"{v:.1%}", (v, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
    ax.set_xlim(0, max(max(values) * 1.2, 1e-6))
    ax.set_xlabel("share of cross-attention (all positions, all frames)", fontsize=8)
    ax.set_title(title or "where the cross-attention goes", fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def blend_view(scores, branch: int, threshold: float, video: np.ndarray | None = None, applied=None,
               title: str = "", scale: float = 1.2):
    """LocalBlend before and after its threshold, for one branch (scores: (branches, F, H, W) in [0, 1],
    ``readings.blend_score``). Top row: the branch's score (one scale, 0…1) with the threshold's contour in red;
    bottom row: its mask at ``threshold`` (``controllers.threshold_blend``: united with the source's) over the frame
    in greyscale; with ``applied`` (F, H, W bool, the mask the edit used) pixels where the two differ in yellow."""
    from vp2p.controllers import threshold_blend

    scores = torch.as_tensor(scores).float()
    mask = _numpy(threshold_blend(scores, threshold)[branch]).astype(bool)
    score = _numpy(scores[branch])
    count, h, w = score.shape
    fig, axes = plt.subplots(2, count, figsize=(scale * count + 1.0, 2 * scale + 0.6), squeeze=False,
                             layout="constrained")
    for f in range(count):
        top, bottom = axes[0, f], axes[1, f]
        top.imshow(score[f], cmap="viridis", vmin=0, vmax=1, extent=(0, 1, 1, 0))
        if score[f].min() < threshold < score[f].max():
            top.contour((np.arange(w) + 0.5) / w, (np.arange(h) + 0.5) / h, score[f], levels=[threshold],
                        colors="red", linewidths=1)
        if video is not None:
            bottom.imshow(greyscale(video[f]), extent=(0, 1, 1, 0))
        bottom.imshow(mask[f].astype(np.float32), cmap="Reds", alpha=0.55 * mask[f].astype(np.float32), vmin=0,
                      vmax=1, extent=(0, 1, 1, 0))
        if applied is not None:
            changed = mask[f] != _numpy(applied[f]).astype(bool)
            bottom.imshow(np.where(changed, 1.0, np.nan), cmap="autumn_r", vmin=0, vmax=1, extent=(0, 1, 1, 0))
        top.set_title(f"frame {f}", fontsize=8)
        _blank(top), _blank(bottom)
    axes[0, 0].set_ylabel("score", fontsize=8)
    axes[1, 0].set_ylabel(f"mask > {threshold:.2f}", fontsize=8)
    _colorbar(fig, axes[0, :], 0.0, 1.0, "viridis", "blend score (÷ frame max)")
    fig.suptitle(title or f"LocalBlend: score and its mask at threshold {threshold:.2f} (red line)", fontsize=10)
    return fig


def ab_comparison(a: np.ndarray, b: np.ndarray, labels: tuple[str, str] = ("A", "B"), title: str = "",
                  scale: float = 1.2):
    """Two edits side by side, frame by frame: A, B and |A − B| (grey levels, one scale; each frame's mean
    difference in its title)."""
    from vp2p.inspect.readings import ab_difference

    per_frame = ab_difference(a, b)
    diff = np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).mean(-1)
    count = len(a)
    fig, axes = plt.subplots(3, count, figsize=(scale * count + 1.0, 3 * scale + 0.6), squeeze=False,
                             layout="constrained")
    top = max(float(diff.max()), 1.0)
    for f in range(count):
        axes[0, f].imshow(a[f]), axes[1, f].imshow(b[f])
        axes[2, f].imshow(diff[f], cmap="magma", vmin=0, vmax=top)
        axes[0, f].set_title(f"frame {f}", fontsize=8)
        axes[2, f].set_xlabel(f"Δ {per_frame[f]:.1f}", fontsize=8)
        for r in range(3):
            _blank(axes[r, f])
    for r, name in enumerate([*labels, "|A − B|"]):
        axes[r, 0].set_ylabel(textwrap.fill(name, 16), fontsize=8)
    _colorbar(fig, axes[2, :], 0.0, top, "magma", "|A − B| (grey levels)")
    fig.suptitle(title or f"A/B: mean difference {per_frame.mean():.2f} grey levels", fontsize=10)
    return fig


def gif_bytes(frames: np.ndarray, fps: float = 8.0, size: int = 128) -> bytes:
    """An animated, looping GIF of uint8 frames (F, H, W, 3), enlarged by a whole factor (nearest neighbour) to at
    least ``size`` pixels high: a playable clip in an ``ipywidgets.Image`` or an HTML page."""
    import io

    from PIL import Image

    frames = np.asarray(frames)
    factor = max(1, -(-size // frames.shape[1]))
    if factor > 1:
        frames = frames.repeat(factor, axis=1).repeat(factor, axis=2)
    buffer = io.BytesIO()
    images = [Image.fromarray(f) for f in frames]
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps),
                   loop=0, disposal=2)
    return buffer.getvalue()


def png_bytes(fig, dpi: int = 80) -> bytes:
    """The figure as PNG bytes (for an ``ipywidgets.Image`` in an app)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def save(fig, path, overwrite: bool = False, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG at ``path`` (folders made as needed) and return the path.

    An existing file is never replaced unless ``overwrite=True``: a figure the user kept under that name is
    theirs. The kit's own regenerated figures (the notebooks' ``FIGURES``, ``vp2p paper``) pass it.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; viz.save does not replace files: pass overwrite=True to replace "
                              "it, or choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
