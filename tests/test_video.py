"""Tests for vp2p.io.video: reading frame folders / gifs / mp4s, writing, errors.

Frames encode their index in the pixel values (``10 * index + 5``) so that
order and selection can be checked exactly, not just shapes.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vp2p.io.video import (
    center_crop_resize,
    natural_key,
    read_video,
    write_video,
    write_videos,
)


def _value(index: int) -> int:
    return 10 * index + 5


def _solid(index: int, h: int = 16, w: int = 16) -> np.ndarray:
    return np.full((h, w, 3), _value(index), dtype=np.uint8)


def _save(path, index, h=16, w=16, fmt="PNG"):
    Image.fromarray(_solid(index, h, w)).save(path, format=fmt)


def _indices(video: np.ndarray) -> list[int]:
    """Recover the encoded index of each (solid) frame."""
    return [int(round((f.mean() - 5) / 10)) for f in video]


def _smooth(num=8, h=64, w=64) -> np.ndarray:
    """Gradients that move over time: easy for a lossy codec to keep."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = []
    for t in range(num):
        r = 128 + 100 * np.sin((x + 3 * t) / 12)
        g = 128 + 100 * np.cos((y - 2 * t) / 15)
        b = np.full_like(x, 40 + 20 * t)
        frames.append(np.stack([r, g, b], -1))
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


@pytest.fixture
def folder(tmp_path):
    """12 frames named 0.png .. 11.png (no zero padding)."""
    d = tmp_path / "frames"
    d.mkdir()
    for i in range(12):
        _save(d / f"{i}.png", i)
    return d


# --------------------------------------------------------------------------- folders


def test_natural_sort_order(tmp_path):
    for i in (1, 2, 10, 9):
        _save(tmp_path / f"{i}.png", i)
    video = read_video(tmp_path, num_frames=4, size=None)
    assert _indices(video) == [1, 2, 9, 10]
    names = ["frame_10.png", "frame_2.png", "Frame_1.png", "frame_9.png"]
    assert sorted(names, key=natural_key) == [
        "Frame_1.png", "frame_2.png", "frame_9.png", "frame_10.png"
    ]


def test_detects_images_by_content_and_skips_other_files(tmp_path):
    _save(tmp_path / "a_0.png", 0)
    _save(tmp_path / "a_1.jpg", 1)  # a PNG lying about its extension
    _save(tmp_path / "a_2", 2)  # no extension at all
    (tmp_path / "notes.txt").write_text("shot on a rainy day\n")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(100))
    _save(tmp_path / ".hidden.png", 7)
    video = read_video(tmp_path, num_frames=3, size=None)
    assert video.shape == (3, 16, 16, 3)
    assert _indices(video) == [0, 1, 2]
    with pytest.raises(ValueError, match="has 3 frames"):
        read_video(tmp_path, num_frames=4, size=None)


def test_modes_become_rgb_uint8(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = (200, 100, 50), 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "0.png")
    Image.fromarray(np.full((16, 16), 77, np.uint8), "L").save(tmp_path / "1.png")
    Image.fromarray(_solid(3)).convert("P", palette=Image.Palette.ADAPTIVE).save(
        tmp_path / "2.png"
    )
    Image.fromarray(np.full((16, 16), 40000, np.uint16)).save(tmp_path / "3.png")
    assert Image.open(tmp_path / "3.png").mode.startswith("I")  # really 16-bit
    video = read_video(tmp_path, num_frames=4, size=None)
    assert video.dtype == np.uint8 and video.shape == (4, 16, 16, 3)
    assert video[0, 0, 0].tolist() == [200, 100, 50]
    assert video[1, 0, 0].tolist() == [77, 77, 77]
    assert video[2, 0, 0].tolist() == [_value(3)] * 3
    assert video[3, 0, 0].tolist() == [round(40000 / 257)] * 3  # scaled, not clipped


def test_start_stride_num_frames(folder):
    assert _indices(read_video(folder, num_frames=4, start=2, stride=3, size=None)) == [
        2, 5, 8, 11
    ]
    assert _indices(read_video(folder, num_frames=3, start=5, size=None)) == [5, 6, 7]
    assert _indices(read_video(folder, num_frames=1, start=11, size=None)) == [11]


def test_center_crop_removes_sides_and_resizes(tmp_path):
    frame = np.zeros((64, 96, 3), np.uint8)
    frame[:] = (30, 160, 90)  # center colour
    frame[:, :16] = frame[:, -16:] = (250, 0, 250)  # side bands
    for i in range(2):
        Image.fromarray(frame).save(tmp_path / f"{i}.png")
    video = read_video(tmp_path, num_frames=2, size=64)
    assert video.shape == (2, 64, 64, 3)
    diff = np.abs(video.astype(int) - np.array([30, 160, 90])).max()
    assert diff <= 2
    rect = read_video(tmp_path, num_frames=2, size=(48, 64))
    assert rect.shape == (2, 48, 64, 3) and rect.dtype == np.uint8
    # direct helper: tall frame, square target -> top/bottom trimmed, then shrunk
    tall = np.zeros((120, 40, 3), np.uint8)
    tall[40:80] = 200
    out = center_crop_resize(tall, 16)
    assert out.shape == (16, 16, 3) and out.min() >= 195


def test_mixed_sizes_in_a_folder_are_refused_naming_sizes_and_files(tmp_path):
    # before: cropped and resized into one size without a word (frames of two exports, squashed)
    for i in range(3):
        _save(tmp_path / f"{i}.png", i, h=40, w=72)
    _save(tmp_path / "3.png", 3, h=100, w=60)
    for size in (32, None):
        with pytest.raises(ValueError) as info:
            read_video(tmp_path, num_frames=4, size=size)
        assert str(info.value) == (
            f"the frames in {tmp_path} have different sizes — 40x72 (H x W): 0.png, 1.png, 2.png; 100x60 (H x W): "
            "3.png; a clip's frames must all have one size: export them again at one size, or keep only the "
            "frames of one clip")
    assert read_video(tmp_path, num_frames=3, size=32).shape == (3, 32, 32, 3)  # the frames of one size


@pytest.mark.parametrize("damage", ["header", "truncated"])
def test_a_damaged_frame_is_named_not_skipped(tmp_path, damage):
    # before: a frame whose header was damaged was skipped, and the motion jumped over it in silence
    for i in range(4):
        _save(tmp_path / f"{i}.png", i, h=64, w=64)
    bad = tmp_path / "2.png"
    data = bad.read_bytes()
    bad.write_bytes(b"\x00" * 64 + data[64:] if damage == "header" else data[: len(data) // 3])
    with pytest.raises(ValueError) as info:
        read_video(tmp_path, num_frames=4, size=None)
    assert str(info.value).startswith(f"frame {bad} cannot be ")
    assert str(info.value).endswith("replace it, or remove it and renumber the frames, so that the motion does "
                                    "not jump")


def test_animations_and_videos_in_a_frames_folder_are_not_frames(tmp_path):
    for i in range(3):
        _save(tmp_path / f"frame_{i}.png", i)
    write_video(tmp_path / "edit.gif", np.stack([_solid(9)] * 4))  # an earlier result: it sorts first
    Image.fromarray(_solid(8)).save(tmp_path / "a_still.gif")  # a one-frame GIF is still a GIF, not a frame
    (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    video = read_video(tmp_path, num_frames=3, size=None)
    assert _indices(video) == [0, 1, 2]
    with pytest.raises(ValueError, match="has 3 frames"):
        read_video(tmp_path, num_frames=4, size=None)


def test_write_video_with_its_arguments_swapped_says_so(tmp_path):
    frames = np.stack([_solid(i) for i in range(2)])
    target = tmp_path / "out.gif"
    with pytest.raises(TypeError) as info:
        write_video(frames, target)
    assert str(info.value) == (f"write_video(path, frames) takes the path first, got a ndarray of shape (2, 16, 16, "
                               f"3) there and the path {str(target)!r} second: swap them")
    with pytest.raises(TypeError, match=r"write_videos\(folder, videos\) takes the path first, got a dict"):
        write_videos({"edit": frames}, tmp_path)
    with pytest.raises(TypeError, match=r"takes a dict \{name: frames\}, got a ndarray"):
        write_videos(tmp_path, frames)
    assert not target.exists()


# --------------------------------------------------------------------------- files


def test_gif_round_trip(tmp_path):
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (40, 40, 40)]
    frames = np.stack([np.full((32, 32, 3), c, np.uint8) for c in colors])
    out = write_video(tmp_path / "clip.gif", frames, fps=10)
    assert out == tmp_path / "clip.gif" and out.exists()
    with Image.open(out) as im:
        assert im.n_frames == 6 and im.info["duration"] == 100 and im.info["loop"] == 0
    back = read_video(out, num_frames=6, size=None)
    assert back.shape == (6, 32, 32, 3)
    assert np.abs(back.astype(int) - frames.astype(int)).max() <= 8
    assert _rgb_means(read_video(out, num_frames=2, start=1, stride=2, size=None)) == [
        colors[1], colors[3]
    ]
    with pytest.raises(ValueError, match="has 6 frames"):
        read_video(out, num_frames=7, size=None)


def _rgb_means(video):
    return [tuple(int(round(v)) for v in f.reshape(-1, 3).mean(0)) for f in video]


def test_mp4_round_trip(tmp_path):
    frames = _smooth()
    out = write_video(tmp_path / "sub" / "clip.mp4", frames)  # creates sub/
    assert out.exists() and out.stat().st_size > 0
    back = read_video(out, num_frames=8, size=None)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert np.abs(back.astype(float) - frames.astype(float)).mean() < 10
    sel = read_video(out, num_frames=3, start=1, stride=3, size=32)
    assert sel.shape == (3, 32, 32, 3)
    with pytest.raises(ValueError, match="has 8 frames"):
        read_video(out, num_frames=4, start=2, stride=3, size=None)


def test_write_accepts_float_and_gray(tmp_path):
    gray = np.linspace(0, 1, 2 * 8 * 8).reshape(2, 8, 8)
    out = write_video(tmp_path / "g.gif", gray)
    back = read_video(out, num_frames=2, size=None)
    assert back.shape == (2, 8, 8, 3)
    expected = np.rint(gray * 255)[..., None]
    assert np.abs(back.astype(int) - expected).max() <= 8


def test_write_videos(tmp_path):
    vids = {"source": _smooth(2, 16, 16), "edited": _smooth(2, 16, 16)[..., ::-1]}
    paths = write_videos(tmp_path / "out", vids, formats=("gif", "mp4"))
    assert {k: [p.name for p in v] for k, v in paths.items()} == {
        "source": ["source.gif", "source.mp4"],
        "edited": ["edited.gif", "edited.mp4"],
    }
    before = (tmp_path / "out" / "edited.mp4").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_videos(tmp_path / "out", {"edited": vids["source"]}, formats=("mp4",))
    assert (tmp_path / "out" / "edited.mp4").read_bytes() == before


# --------------------------------------------------------------------------- errors


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist; pass a folder of frames"):
        read_video(tmp_path / "nope")


@pytest.mark.parametrize("name, data", [("holiday.mp4", b"these bytes are not a video"), ("empty.mov", b"")])
def test_a_file_that_is_not_a_video_says_so(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ValueError) as err:
        read_video(path)
    assert str(err.value) == (f"{path} ({len(data)} bytes) is not a video ffmpeg can read; pass a video file (.mp4, "
                              ".mov, .webm, .avi, .mkv, .m4v, .gif) or a folder of frames")
    assert path.read_bytes() == data


def test_folder_without_images_and_single_still(tmp_path):
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(ValueError, match="no image files"):
        read_video(tmp_path)
    _save(tmp_path / "still.png", 0)
    with pytest.raises(ValueError, match="single still image.*folder"):
        read_video(tmp_path / "still.png")


def test_too_few_frames_message(folder):
    with pytest.raises(ValueError) as err:
        read_video(folder, num_frames=8, start=0, stride=2, size=None)
    msg = str(err.value)
    assert "has 12 frames" in msg and "need 15" in msg and "num_frames to 6" in msg


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"num_frames": 0}, "num_frames=0"),
        ({"stride": 0}, "stride=0"),
        ({"start": -1}, "start=-1"),
        ({"size": 500}, "size=500 is not divisible by 8; use 496 or 504"),
        ({"size": (512, 100)}, "width 100 is not divisible by 8; use 96 or 104"),
        # what SD-1.5's UNet needs (pipe.frame_multiple): a 520-px clip is refused before it is decoded
        ({"size": 520, "multiple": 64}, "size=520 is not divisible by 64; use 512 or 576"),
        ({"size": 512, "multiple": 0}, "multiple=0 must be a positive whole number"),
    ],
)
def test_argument_errors(folder, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern.replace("(", r"\(")):
        read_video(folder, **kwargs)


def test_size_none_requires_multiple_of_8(tmp_path):
    _save(tmp_path / "0.png", 0, h=20, w=36)
    with pytest.raises(ValueError, match=r"20x36.*size=\(16, 32\)"):
        read_video(tmp_path, num_frames=1, size=None)
    _save(tmp_path / "0.png", 0, h=72, w=64)
    assert read_video(tmp_path, num_frames=1, size=None, multiple=8).shape == (1, 72, 64, 3)
    with pytest.raises(ValueError, match=r"72x64.*not divisible by 16.*size=\(64, 64\)"):
        read_video(tmp_path, num_frames=1, size=None, multiple=16)


def test_bad_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"'\.avi'.*\.gif, \.mp4"):
        write_video(tmp_path / "clip.avi", _smooth(2, 8, 8))
    assert not (tmp_path / "clip.avi").exists()


def test_refuses_overwrite(tmp_path):
    target = tmp_path / "clip.gif"
    target.write_bytes(b"precious user data")
    with pytest.raises(FileExistsError, match=r"clip\.gif.*overwrite=True"):
        write_video(target, _smooth(2, 8, 8))
    assert target.read_bytes() == b"precious user data"
    write_video(target, _smooth(2, 8, 8), overwrite=True)
    assert Image.open(target).n_frames == 2
    assert [p.name for p in tmp_path.iterdir()] == ["clip.gif"]  # no temp files left


@pytest.mark.parametrize(
    "frames",
    [np.zeros((2, 8, 8, 4), np.uint8), np.zeros((8, 8), np.uint8), np.zeros((0, 8, 8, 3))],
)
def test_bad_frames_shape(tmp_path, frames):
    with pytest.raises(ValueError, match=rf"got shape \({frames.shape[0]}, 8"):
        write_video(tmp_path / "x.gif", frames)
    assert not (tmp_path / "x.gif").exists()
