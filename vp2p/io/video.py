"""Read and write videos as ``uint8`` arrays of shape ``(frames, H, W, 3)``.

Video-P2P edits short clips (8 frames of 512x512 in the paper).  Users bring
their clips in many shapes: a folder of JPEGs exported from an editor, an
``.mp4`` from a phone, a ``.gif`` from the web.  This module turns all of them
into one display convention -- a ``numpy`` ``uint8`` array ``(F, H, W, 3)`` --
and writes results back as ``.gif`` (shows inline everywhere) or ``.mp4``
(small, plays in browsers).

Decoding paths:

* folder of frames  -> Pillow, one file per frame, natural sort order;
* ``.gif`` (and other animated images Pillow knows) -> Pillow ``ImageSequence``;
* ``.mp4 .mov .webm .avi .mkv .m4v`` -> ffmpeg through ``imageio_ffmpeg.read_frames``.

Writing ``.mp4`` goes through ``mediapy.write_video`` (H.264, yuv420p), with
``_ensure_ffmpeg`` pointing mediapy at the ffmpeg bundled with
``imageio-ffmpeg`` when none is on ``PATH``.

Source files are only ever opened for reading.  Writers refuse to replace an
existing file unless ``overwrite=True``, and write to a temporary file first so
a failed encode never leaves a half-written (or destroyed) result behind.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, ImageSequence

__all__ = [
    "read_video",
    "write_video",
    "write_videos",
    "video_targets",
    "center_crop_resize",
    "natural_key",
    "VIDEO_SUFFIXES",
    "WRITE_SUFFIXES",
]

VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".avi", ".mkv", ".m4v")
WRITE_SUFFIXES = (".gif", ".mp4")
# The smallest size step any model takes: the VAE downsamples by 8. A model asks more (``Pipeline.frame_multiple``:
# 64 for SD 1.x, whose UNet halves the latents three times): pass it as ``read_video(..., multiple=)``.
MULTIPLE = 8
_SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


# --------------------------------------------------------------------------- helpers


@functools.lru_cache(maxsize=1)
def _ensure_ffmpeg() -> str:
    """Return an ffmpeg binary path and point mediapy at it.

    mediapy shells out to ``ffmpeg`` but does not ship one; most laptops and
    Colab have it, many containers do not.  ``imageio-ffmpeg`` bundles a static
    build (with libx264), so fall back to it.  Cached: the lookup runs once.
    """
    import mediapy

    path = shutil.which("ffmpeg")
    if path is None:
        import imageio_ffmpeg

        path = imageio_ffmpeg.get_ffmpeg_exe()
    mediapy.set_ffmpeg(path)
    return path


def natural_key(name: str) -> list:
    """Sort key that orders digit runs as numbers: ``frame_2`` < ``frame_10``.

    Plain string sorting puts ``10.png`` before ``9.png``, which silently
    shuffles any frame folder exported without zero padding.  Text parts are
    compared case-insensitively; each part is tagged so text and numbers never
    get compared with each other.
    """
    parts = re.split(r"(\d+)", str(name))
    return [(0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts]


def _nearest_multiples(n: int, multiple: int = MULTIPLE) -> str:
    """Name the valid sizes around ``n`` for error messages ("448 or 512")."""
    lower = (n // multiple) * multiple
    upper = lower + multiple
    return f"{lower} or {upper}" if lower > 0 else f"{upper}"


def _check_multiple(multiple) -> int:
    if not isinstance(multiple, (int, np.integer)) or isinstance(multiple, bool) or multiple < 1:
        raise ValueError(f"multiple={multiple!r} must be a positive whole number: the model's "
                         "pipe.frame_multiple (64 for Stable Diffusion 1.x)")
    return int(multiple)


def _check_size(size, multiple: int = MULTIPLE) -> tuple[int, int] | None:
    """Validate ``size`` up front so a bad value fails before any decoding."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        hw, label = (int(size), int(size)), f"size={int(size)}"
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        hw, label = (int(size[0]), int(size[1])), f"size={tuple(size)}"
    else:
        raise ValueError(
            f"size={size!r} is not understood; pass an int N (square N x N), "
            "a tuple (H, W), or None to keep the frames as they are"
        )
    for name, n in zip(("height", "width"), hw):
        if n < 1:
            raise ValueError(f"{label}: {name} {n} must be positive; use e.g. 512")
        if n % multiple:
            what = label if hw[0] == hw[1] else f"{label}: {name} {n}"
            raise ValueError(
                f"{what} is not divisible by {multiple}; use {_nearest_multiples(n, multiple)} "
                + ("(Stable Diffusion's VAE works on 8x8 pixel blocks)" if multiple == MULTIPLE else
                   f"(the model works on {multiple}x{multiple} pixel blocks: its VAE's factor × 2 per UNet level)")
            )
    return hw


def _check_selection(num_frames: int, start: int, stride: int) -> None:
    """Reject selections that can never succeed, whatever the source."""
    if num_frames < 1:
        raise ValueError(f"num_frames={num_frames} must be at least 1; use e.g. num_frames=8")
    if stride < 1:
        raise ValueError(f"stride={stride} must be at least 1; use stride=1 for consecutive frames")
    if start < 0:
        raise ValueError(f"start={start} must be 0 or more; use start=0 for the first frame")


def _too_few(source, available: int, num_frames: int, start: int, stride: int) -> ValueError:
    """Build the "not enough frames" error, saying what to lower and to what."""
    needed = start + (num_frames - 1) * stride + 1
    fit = max(0, (available - 1 - start) // stride + 1) if available > start else 0
    if fit:
        hint = f"lower num_frames to {fit} (or lower start={start} or stride={stride})"
    else:
        hint = f"lower start={start} below {available}"
    return ValueError(
        f"{source} has {available} frames, but num_frames={num_frames}, start={start}, "
        f"stride={stride} need {needed} (frame indices {start}..{needed - 1}); {hint}"
    )


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Convert any Pillow image (RGBA, palette, gray, 16-bit) to uint8 RGB.

    Pillow's ``convert("RGB")`` clips 16-bit grayscale at 255 instead of
    scaling it, which turns most 16-bit frames pure white; scale those by hand.
    Alpha is dropped (the colour channels are kept as stored).
    """
    if img.mode in _SIXTEEN_BIT_MODES:
        arr = np.asarray(img, dtype=np.float64)
        peak = arr.max(initial=0)
        if peak > 255:  # 16-bit range
            arr = arr / 257.0
        elif img.mode == "F" and peak <= 1:  # float in [0, 1]
            arr = arr * 255.0
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")  # applies palette transparency cleanly
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def center_crop_resize(frame: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Center-crop ``frame`` to the aspect ratio of ``size``, then resize to it.

    Cropping before resizing keeps objects' proportions (a squashed person is a
    worse edit target than a cropped one).  ``size`` is N (square) or (H, W).
    Input and output are ``uint8 (H, W, 3)``; resizing uses Lanczos.
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) frame, got {frame.dtype} {frame.shape}")
    th, tw = (size, size) if np.isscalar(size) else (int(size[0]), int(size[1]))
    h, w = frame.shape[:2]
    if w * th > h * tw:  # too wide: trim the sides
        cw = max(1, round(h * tw / th))
        x0 = (w - cw) // 2
        frame = frame[:, x0 : x0 + cw]
    elif w * th < h * tw:  # too tall: trim top and bottom
        ch = max(1, round(w * th / tw))
        y0 = (h - ch) // 2
        frame = frame[y0 : y0 + ch]
    if frame.shape[:2] == (th, tw):
        return np.ascontiguousarray(frame)
    resized = Image.fromarray(frame).resize((tw, th), Image.Resampling.LANCZOS)
    return np.asarray(resized, dtype=np.uint8).copy()


# --------------------------------------------------------------------------- reading


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _frame_files(folder: Path) -> list[Path]:
    """List the still images in ``folder``, naturally sorted: the frames.

    Detection reads each file's header, so extension lies (a PNG named
    ``.jpg``, or no extension) don't matter, and ``notes.txt`` is skipped.
    Hidden files (``.DS_Store``, ``._frame.jpg`` from macOS) are skipped, and
    so are animations (a ``.gif`` of an earlier edit saved among the frames)
    and videos: they are not frames. A file named like an image that Pillow
    cannot open is a damaged frame: an error naming it, never a silent gap.
    """
    found = []
    for p in folder.iterdir():
        if p.name.startswith(".") or not p.is_file() or p.suffix.lower() in VIDEO_SUFFIXES:
            continue
        try:
            with Image.open(p) as im:
                if im.format == "GIF" or getattr(im, "n_frames", 1) > 1:
                    continue
                if im.size[0] > 0 and im.size[1] > 0:
                    found.append(p)
        except (OSError, ValueError):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                raise ValueError(f"frame {p} cannot be read as an image (damaged or incomplete); replace it, or "
                                 "remove it and renumber the frames, so that the motion does not jump") from None
            continue
    return sorted(found, key=lambda p: (natural_key(p.name), p.name))


def _decode_frame(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return _to_rgb(ImageOps.exif_transpose(im))  # phone photos
    except (OSError, ValueError, SyntaxError) as error:
        raise ValueError(f"frame {path} cannot be decoded ({error}); replace it, or remove it and renumber the "
                         "frames, so that the motion does not jump") from None


def _check_same_size(files: list[Path], frames: list[np.ndarray]) -> None:
    """The frames of a folder are one clip: one size. Mixed sizes (frames from different exports) are refused,
    naming each size and a file of it, rather than squashed into one size."""
    by_size: dict[tuple[int, int], list[str]] = {}
    for path, frame in zip(files, frames):
        by_size.setdefault(frame.shape[:2], []).append(path.name)
    if len(by_size) > 1:
        sizes = "; ".join(f"{h}x{w} (H x W): {', '.join(names[:3])}{', …' if len(names) > 3 else ''}"
                          for (h, w), names in by_size.items())
        raise ValueError(f"the frames in {files[0].parent} have different sizes — {sizes}; a clip's frames must "
                         "all have one size: export them again at one size, or keep only the frames of one clip")


def _read_folder(folder: Path, indices: list[int], num_frames, start, stride) -> list[np.ndarray]:
    """Decode only the selected frames of a frame folder."""
    files = _frame_files(folder)
    if not files:
        raise ValueError(
            f"folder {folder} has no image files Pillow can read; "
            "put the frames (.png, .jpg, ...) in it or pass a video file (.mp4, .gif)"
        )
    if indices[-1] >= len(files):
        raise _too_few(f"folder {folder}", len(files), num_frames, start, stride)
    chosen = [files[i] for i in indices]
    frames = [_decode_frame(path) for path in chosen]
    _check_same_size(chosen, frames)
    return frames


def _read_animation(path: Path, indices: list[int], num_frames, start, stride) -> list[np.ndarray]:
    """Decode selected frames of a gif (or other animated image) with Pillow.

    Pillow composes each gif frame onto the previous one according to its
    disposal method, so ``frame.convert("RGB")`` gives the frame as shown.
    """
    wanted, frames = set(indices), []
    with Image.open(path) as im:
        available = getattr(im, "n_frames", 1)
        if indices[-1] >= available:
            raise _too_few(path, available, num_frames, start, stride)
        for i, frame in enumerate(ImageSequence.Iterator(im)):
            if i in wanted:
                frames.append(_to_rgb(frame))
            if i >= indices[-1]:
                break
    return frames


def _read_ffmpeg(path: Path, indices: list[int], num_frames, start, stride) -> list[np.ndarray]:
    """Stream frames through imageio-ffmpeg, stopping once the last needed one arrives.

    Not ``mediapy.read_video``: mediapy 1.2.x passes ``-vsync``, an option that
    ffmpeg 9 (the one bundled with imageio-ffmpeg) no longer accepts.  Closing
    the generator early terminates ffmpeg, so long clips are not fully decoded.
    """
    import imageio_ffmpeg

    wanted, frames, count = set(indices), [], 0
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        w, h = _video_size(gen, path)
        for i, data in enumerate(gen):
            count = i + 1
            if i in wanted:
                frames.append(np.frombuffer(data, np.uint8).reshape(h, w, 3).copy())
            if i >= indices[-1]:
                break
    finally:
        gen.close()
    if len(frames) < len(indices):
        raise _too_few(path, count, num_frames, start, stride)
    return frames


def _video_size(frames_generator, path: Path) -> tuple[int, int]:
    """The (width, height) imageio-ffmpeg reports first; a file ffmpeg cannot read as a video is an error saying so
    (ffmpeg's own is "Could not load meta information" and its whole banner)."""
    try:
        meta = next(frames_generator)
    except (OSError, RuntimeError, StopIteration):
        meta = {}
    if not meta.get("size") or 0 in meta["size"]:
        size = path.stat().st_size
        raise ValueError(
            f"{path} ({size} bytes) is not a video ffmpeg can read; pass a video file "
            f"({', '.join(VIDEO_SUFFIXES)}, .gif) or a folder of frames"
        )
    return meta["size"]


def _read_file(path: Path, indices, num_frames, start, stride) -> list[np.ndarray]:
    """Dispatch a single file: ffmpeg by suffix, else Pillow if it is animated."""
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return _read_ffmpeg(path, indices, num_frames, start, stride)
    allowed = ", ".join(VIDEO_SUFFIXES + (".gif",))
    try:
        with Image.open(path) as im:
            animated = im.format == "GIF" or getattr(im, "n_frames", 1) > 1
    except (OSError, ValueError):
        raise ValueError(
            f"{path} is neither a folder of frames nor a video file ({allowed}); "
            "pass a folder of frames or a video file"
        ) from None
    if not animated:
        raise ValueError(
            f"{path} is a single still image, not a video; put the frames in a folder "
            f"and pass the folder (e.g. read_video('{path.parent}'))"
        )
    return _read_animation(path, indices, num_frames, start, stride)


def _fit(frames: list[np.ndarray], hw: tuple[int, int] | None, multiple: int = MULTIPLE) -> np.ndarray:
    """Crop/resize every frame to ``hw``, or check frames can be used as-is."""
    if hw is not None:
        return np.stack([center_crop_resize(f, hw) for f in frames])
    shapes = sorted({f.shape[:2] for f in frames})
    if len(shapes) > 1:
        raise ValueError(
            f"frames have different sizes {shapes} and size=None keeps them as they are; "
            "pass size=512 (or size=(H, W)) to crop and resize them all to one size"
        )
    h, w = shapes[0]
    if h % multiple or w % multiple:
        fh = max(multiple, h // multiple * multiple)
        fw = max(multiple, w // multiple * multiple)
        raise ValueError(
            f"frames are {h}x{w} (H x W), not divisible by {multiple}, and size=None keeps "
            f"them as they are; pass size=({fh}, {fw}) or size=512 to crop and resize"
        )
    return np.stack(frames)


def read_video(
    source: str | os.PathLike,
    num_frames: int = 8,
    start: int = 0,
    stride: int = 1,
    size: int | tuple[int, int] | None = 512,
    multiple: int = MULTIPLE,
) -> np.ndarray:
    """Read ``num_frames`` frames ``start, start+stride, ...`` as uint8 (F, H, W, 3).

    ``source`` is a folder of frames (any files Pillow can open, natural
    order), a ``.gif``, or a video file ffmpeg reads (``.mp4``, ``.mov``, ...).
    ``size``: N -> center-crop square and resize to N x N; (H, W) -> crop to
    that aspect and resize; None -> keep as is.  Sizes must be divisible by
    ``multiple``: 8 at least (the VAE's latents are 8x smaller than the image); pass the model's
    ``pipe.frame_multiple`` (64 for Stable Diffusion 1.x) to check what its UNet needs too.
    """
    multiple = _check_multiple(multiple)
    hw = _check_size(size, multiple)
    _check_selection(num_frames, start, stride)
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"{str(source)!r} does not exist; pass a folder of frames or a video file (.mp4, .gif)"
        )
    indices = [start + k * stride for k in range(num_frames)]
    reader = _read_folder if path.is_dir() else _read_file
    return _fit(reader(path, indices, num_frames, start, stride), hw, multiple)


# --------------------------------------------------------------------------- writing


def _as_uint8_video(frames) -> np.ndarray:
    """Coerce to uint8 (F, H, W, 3); accept float in [0, 1] and (F, H, W) gray.

    Diffusion code naturally produces float frames in [0, 1]; converting here
    saves every caller a ``(x * 255).round().astype(uint8)`` line.
    """
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 4 or arr.shape[-1] != 3 or min(arr.shape[:3], default=0) < 1:
        raise ValueError(
            f"frames must be an array (F, H, W, 3) (or (F, H, W) gray), got shape "
            f"{np.shape(frames)} dtype {np.asarray(frames).dtype}"
        )
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or arr.min() < -1e-3 or arr.max() > 1 + 1e-3:
            raise ValueError(
                f"float frames must lie in [0, 1], got range [{np.nanmin(arr):.3g}, "
                f"{np.nanmax(arr):.3g}] (dtype {arr.dtype}); rescale, e.g. (x + 1) / 2 for [-1, 1]"
            )
        return np.rint(np.clip(arr, 0, 1) * 255).astype(np.uint8)
    raise ValueError(
        f"frames dtype {arr.dtype} is not supported (shape {arr.shape}); "
        "pass uint8 in [0, 255] or float in [0, 1]"
    )


def _check_order(path, content, call: str, what: str) -> None:
    """``path`` is a path: an array or dict there means the arguments were given the other way round."""
    if not isinstance(path, (str, os.PathLike)):
        got = type(path).__name__ + (f" of shape {path.shape}" if hasattr(path, "shape") else "")
        swapped = isinstance(content, (str, os.PathLike))
        raise TypeError(
            f"{call} takes the path first, got a {got}"
            + (f" there and the path {str(content)!r} second: swap them" if swapped else
               f"; pass a file path, then the {what}")
        )


def _check_target(path: Path, overwrite: bool) -> str:
    """Validate suffix and the overwrite rule; return the lower-case suffix."""
    suffix = path.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise ValueError(
            f"cannot write {path}: suffix {path.suffix or '(none)'!r} is not supported; "
            f"use one of {', '.join(WRITE_SUFFIXES)}"
        )
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists and is left untouched; pass overwrite=True to replace it"
        )
    return suffix


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    """Pillow gif: loop forever; disposal=2 so moving content does not smear."""
    images = [Image.fromarray(f) for f in frames]
    images[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=max(10, round(1000 / fps)),
        loop=0,
        disposal=2,
    )


def _write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    """H.264 yuv420p via ffmpeg, which browsers play; pad odd sizes by one pixel.

    yuv420p subsamples colour 2x2, so it needs even H and W; mediapy would
    otherwise silently pick yuv444p, which most browsers refuse to play.
    """
    _ensure_ffmpeg()
    import mediapy

    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    mediapy.write_video(
        path, frames, fps=fps, codec="h264", encoded_format="yuv420p", qp=20,
        ffmpeg_args=["-movflags", "+faststart"],  # index first: starts playing at once
    )


def write_video(
    path: str | os.PathLike, frames: np.ndarray, fps: float = 8.0, overwrite: bool = False
) -> Path:
    """Write ``frames`` to ``path`` as ``.gif`` or ``.mp4`` (by suffix); return the path.

    Never replaces an existing file unless ``overwrite=True``.  Writes to a
    hidden temporary file next to the target and renames it into place, so an
    encoding error leaves neither a broken file nor a clobbered old one.
    """
    _check_order(path, frames, "write_video(path, frames)", "frames")
    path = Path(path).expanduser()
    suffix = _check_target(path, overwrite)
    frames = _as_uint8_video(frames)
    if not fps > 0:
        raise ValueError(f"fps={fps} must be positive; use e.g. fps=8")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{suffix}")
    try:
        (_write_gif if suffix == ".gif" else _write_mp4)(tmp, frames, fps)
        if path.exists() and not overwrite:  # appeared while we were encoding
            raise FileExistsError(
                f"{path} already exists and is left untouched; pass overwrite=True to replace it"
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def video_targets(folder, names, formats=("gif", "mp4")) -> dict[str, list[Path]]:
    """The files ``write_videos`` writes: ``folder/name.<fmt>`` for every name and format."""
    folder = Path(folder).expanduser()
    suffixes = ["." + str(f).lower().lstrip(".") for f in formats]
    for name in names:
        if not name or Path(name).name != name or name.startswith("."):
            raise ValueError(f"video name {name!r} must be a plain file name like 'edited'")
    return {name: [folder / f"{name}{s}" for s in suffixes] for name in names}


def write_videos(
    folder: str | os.PathLike,
    videos: dict[str, np.ndarray],
    fps: float = 8.0,
    formats=("gif", "mp4"),
    overwrite: bool = False,
) -> dict[str, list[Path]]:
    """Write each named video as ``folder/name.<fmt>`` for every format.

    All targets are checked before anything is written, so a refused overwrite
    does not leave a half-updated folder (some results new, some old).
    """
    _check_order(folder, videos, "write_videos(folder, videos)", "videos {name: frames}")
    if not isinstance(videos, dict):
        raise TypeError(f"write_videos(folder, videos) takes a dict {{name: frames}}, got a {type(videos).__name__}; "
                        "e.g. write_videos('out', {'edit': frames}), or write_video('out/edit.gif', frames)")
    targets = video_targets(folder, videos, formats)
    for paths in targets.values():
        for p in paths:
            _check_target(p, overwrite)
    return {
        name: [write_video(p, videos[name], fps=fps, overwrite=overwrite) for p in paths]
        for name, paths in targets.items()
    }
