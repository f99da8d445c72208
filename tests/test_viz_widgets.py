"""Figures (vp2p.inspect.viz), the notebooks' panels (vp2p.course.widgets), probes and course helpers, on the tiny test model.

The panels are driven from Python as a notebook front end would: set a control's value, call ``update()`` (or
let the slider's observer fire), look at ``last_edit`` / ``maps`` / ``figure``.
"""

import html
import json

import numpy as np
import pytest
import torch
from transformers import CLIPTokenizer

from tiny import smooth_video
from vp2p import course
from vp2p.inspect import probes, viz
from vp2p.course import widgets
from vp2p.inflation import inflate_unet, trainable_parameters
from vp2p.tuning import tuned_metadata
from vp2p.workflow import TUNING_METADATA, Settings, inversion_cache, prepare

SOURCE = "a red circle bouncing on the grass"
TARGET = "a blue circle bouncing on the grass"
FRAMES = 3
STEPS = 4
SETTINGS = Settings(tune_steps=2, tune_lr=1e-4, method="fast", num_steps=STEPS, blend_start=0.0)


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return CLIPTokenizer.from_pretrained(tiny_model_dir / "tokenizer")


@pytest.fixture(scope="module")
def prepared(tiny_model_dir, tmp_path_factory):
    """A tiny pipeline, tuned and inverted on a 3-frame video (cached in a work folder)."""
    from vp2p import load_pipeline

    pipe = load_pipeline(tiny_model_dir, device="cpu", dtype=torch.float32)
    work = tmp_path_factory.mktemp("work")
    run = prepare(pipe, smooth_video(FRAMES), SOURCE, SETTINGS, work_dir=work, progress=False)
    return pipe, run, work


def image_arrays(fig):
    return [np.asarray(im.get_array(), dtype=np.float64) for ax in fig.axes for im in ax.get_images()]


def assert_finite_images(fig):
    arrays = image_arrays(fig)
    assert arrays and all(np.isfinite(a).all() for a in arrays)


# -- viz ----------------------------------------------------------------------------------------------------------

def test_token_labels_are_the_tokenizer_tokens(tok):
    assert viz.token_labels(tok, SOURCE) == ["<|startoftext|>", "a", "red", "circle", "bouncing", "on", "the",
                                             "grass", "<|endoftext|>"]


def test_video_strip_rows_columns_and_labels():
    videos = {"input": smooth_video(4), "edit": smooth_video(4, seed=1)}
    fig = viz.video_strip(videos, title="t")
    assert len(fig.axes) == 8
    assert [fig.axes[i].get_ylabel() for i in (0, 4)] == ["input", "edit"]
    assert [ax.get_title() for ax in fig.axes[:4]] == [f"frame {f}" for f in range(4)]
    assert_finite_images(fig)


def test_attention_grid_columns_are_the_prompt_words_and_zero_maps_stay_finite(tok):
    labels = viz.token_labels(tok, SOURCE)
    maps = torch.rand(2, 8, 8, 77)
    maps[1] = 0  # an all-zero map must not become NaN
    fig = viz.attention_grid(maps, labels, video=smooth_video(2), masks=torch.ones(2, 16, 16, dtype=torch.bool))
    words = len(labels) - 2
    assert len(fig.axes) == 2 * (words + 1) + 1  # + the colour bar
    assert [ax.get_title() for ax in fig.axes[: words + 1]] == labels[1:-1] + ["blend mask"]
    assert_finite_images(fig)
    for scaling in viz.SCALINGS:
        assert_finite_images(viz.attention_grid(maps, labels, scaling=scaling))


def map_images(fig):
    """The attention maps a grid drew (2-D images; frames are RGB, and the blend masks are left out)."""
    return [im for ax in fig.axes for im in ax.get_images() if im.get_array().ndim == 2 and ax.get_title() != "blend mask"
            and im.get_cmap().name != "gray"]


def test_attention_grid_states_and_applies_its_colour_scale():
    labels = ["<s>", "red", "circle", "</s>"]
    maps = np.zeros((2, 4, 4, 4))
    maps[0, 1, 1, 1], maps[1, 2, 2, 1] = 0.5, 0.25  # 'red': strong in frame 0, weaker in frame 1
    maps[0, 0, 0, 2], maps[1, 3, 3, 2] = 0.1, 0.05  # 'circle': weak everywhere
    shared = viz.attention_grid(maps, labels)
    images = map_images(shared)  # row by row: (frame 0: red, circle), (frame 1: red, circle)
    assert len(images) == 4
    assert all(im.norm.vmin == 0 and im.norm.vmax == pytest.approx(0.5) for im in images)  # one scale for all
    assert np.allclose(images[1].get_array(), maps[0, ..., 2]) and np.allclose(images[2].get_array(), maps[1, ..., 1])
    bar = shared.axes[-1]
    assert "one scale for all maps" in bar.get_ylabel() and bar.get_ylim()[1] == pytest.approx(0.5)
    assert shared.get_suptitle().endswith("shared scale")
    per_map = viz.attention_grid(maps, labels, scaling="per map", title="t")
    images = map_images(per_map)
    assert [float(im.get_array().max()) for im in images] == [1.0, 1.0, 1.0, 1.0]  # each map to its own maximum
    assert all(im.norm.vmax == 1 for im in images)
    assert np.allclose(images[3].get_array(), maps[1, ..., 2] / 0.05)
    assert "own maximum" in per_map.axes[-1].get_ylabel() and per_map.get_suptitle() == "t — per map scale"
    with pytest.raises(ValueError, match="scaling"):
        viz.attention_grid(maps, labels, scaling="log")


def test_overlay_leaves_unattended_pixels_of_the_frame_untouched():
    maps = np.zeros((1, 4, 4, 3))
    maps[0, 1:3, 1:3, 1] = [[0.2, 0.4], [0.4, 0.8]]
    video = np.full((1, 16, 16, 3), 200, dtype=np.uint8)
    fig = viz.attention_grid(maps, ["<s>", "circle", "</s>"], video=video)
    frame, overlay = fig.axes[0].get_images()
    assert frame.get_array().shape == (16, 16, 3)
    alpha = np.asarray(overlay.get_alpha())
    assert alpha.shape == (4, 4) and alpha[0, 0] == 0  # no attention: fully transparent, the frame as it is
    assert np.allclose(alpha, maps[0, ..., 1] / 0.8 * viz.OVERLAY_OPACITY)  # opacity proportional to attention
    # drawn: a pixel outside the map's support keeps the frame's colour exactly
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())
    box = fig.axes[0].get_window_extent()
    corner = pixels[int(fig.bbox.height - box.y1) + 4, int(box.x0) + 4, :3]
    assert list(corner) == [200, 200, 200]


def test_attention_diff_and_temporal_views():
    labels = ["<s>", "blue", "circle", "</s>"]
    diff = np.zeros((2, 4, 4, 4))
    diff[0, 0, 0, 1], diff[1, 1, 1, 2] = 0.3, -0.6
    fig = viz.attention_diff(diff, labels, video=smooth_video(2))
    maps = [im for ax in fig.axes[:-1] for im in ax.get_images() if im.get_array().ndim == 2]
    assert len(maps) == 4 and all(im.norm.vmin == -0.6 and im.norm.vmax == 0.6 for im in maps)  # symmetric
    assert [ax.get_title() for ax in fig.axes[:3]] == ["frame", "blue", "circle"]
    assert "target − source" in fig.axes[-1].get_ylabel()
    matrix = np.full((3, 3), 1 / 3)
    fig = viz.temporal_attention(matrix, smooth_video(3), (0.25, 0.75))
    heat = fig.axes[3].get_images()[0]
    assert np.allclose(heat.get_array(), matrix) and fig.axes[3].get_ylabel() == "query frame"
    marker = fig.axes[0].lines[0]
    assert marker.get_xdata()[0] == pytest.approx(0.75 * 32 - 0.5) and marker.get_ydata()[0] == pytest.approx(7.5)
    assert "attention probability" in fig.axes[-1].get_ylabel()


def test_frame_attention_masks_over_steps_and_small_plots():
    video = smooth_video(3)
    fig = viz.frame_attention(torch.zeros(3, 4, 4), video, points=[(0.5, 0.5)] * 3)
    assert len(fig.axes) == 6 and fig.axes[3].get_ylabel() == "looks at frame 0"
    assert_finite_images(fig)
    masks = torch.rand(7, 3, 8, 8) > 0.5
    fig = viz.masks_over_steps(masks, video=video)
    assert len(fig.axes) == 5 * 3
    assert_finite_images(fig)
    fig = viz.masks_over_steps(masks, steps=[0, 6], labels=["first", "last"])
    assert [fig.axes[i].get_ylabel() for i in (0, 3)] == ["first", "last"]
    fig = viz.per_frame({"a": np.arange(3.0), "b": np.ones(3)})
    assert fig.axes[0].get_xlabel() == "frame" and len(fig.axes[0].lines) == 2
    fig = viz.curves({"s": [1.0, 4.0], "own x": ([1.0, 3.0], [2.0, 2.0])}, x=[0.5, 2.0], xlabel="weight")
    assert [list(line.get_xdata()) for line in fig.axes[0].lines] == [[0.5, 2.0], [1.0, 3.0]]
    fig = viz.bars({"attn1.to_q": 10, "frozen": 1000}, log=True)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["attn1.to_q", "frozen"]
    fig = viz.table([{"method": "ddim", "PSNR (dB)": 20.123, "numbers": 0}])
    texts = [cell.get_text().get_text() for cell in fig.axes[0].tables[0].get_celld().values()]
    assert {"method", "PSNR (dB)", "ddim", "20.1", "0"} <= set(texts)


def test_save_writes_a_png_and_replaces_a_file_only_when_told(tmp_path):
    path = viz.save(viz.curves({"x": [1, 2]}), tmp_path / "figures" / "c.png")
    first = path.read_bytes()
    assert first[:4] == b"\x89PNG"
    # by default an existing file is the user's: refused, with the path and the fix in the message, and left as it was
    with pytest.raises(FileExistsError, match=r"c\.png exists.*pass overwrite=True"):
        viz.save(viz.curves({"x": [1, 2, 3, 4, 5]}), path)
    assert path.read_bytes() == first
    viz.save(viz.curves({"x": [1, 2, 3, 4, 5]}), path, overwrite=True)
    assert path.read_bytes()[:4] == b"\x89PNG" and path.read_bytes() != first


# -- probes ---------------------------------------------------------------------------------------------------------

def test_generate_inflation_gap_and_parameter_groups(tiny_pipe):
    import copy

    image_unet = copy.deepcopy(tiny_pipe.unet)
    flat = probes.generate(tiny_pipe, SOURCE, num_frames=2, num_steps=2, unet=image_unet)
    inflate_unet(tiny_pipe.unet)
    video = probes.generate(tiny_pipe, SOURCE, num_frames=2, num_steps=2)
    assert flat.shape == video.shape == (2, 32, 32, 3) and flat.dtype == np.uint8
    assert probes.inflation_gap(image_unet, tiny_pipe.unet, tiny_pipe, SOURCE, num_frames=3) < 1e-4
    groups = probes.parameter_groups(tiny_pipe.unet)
    assert sum(groups.values()) == sum(p.numel() for p in tiny_pipe.unet.parameters())
    assert sum(v for k, v in groups.items() if k != "frozen") == sum(
        p.numel() for p in trainable_parameters(tiny_pipe.unet).values())
    assert probes.frame_spread(np.repeat(flat[:1], 3, 0)) == 0.0


def test_frame_attention_probe_gives_one_distribution_over_frame_0_per_frame(tiny_pipe):
    inflate_unet(tiny_pipe.unet)
    video = smooth_video(3)
    points = probes.mask_centers(np.ones((3, 32, 32), dtype=bool))
    assert points[0] == pytest.approx((0.5, 0.5))
    maps = probes.frame_attention(tiny_pipe, video, SOURCE, points, height=8)
    assert maps.shape == (3, 8, 8) and (maps >= 0).all()
    assert torch.allclose(maps.sum(dim=(1, 2)), torch.ones(3), atol=1e-4)
    inside = probes.attention_inside(maps, np.ones((32, 32), dtype=bool))
    assert inside.shape == (3,) and np.allclose(inside, 1.0, atol=1e-4)
    assert np.allclose(probes.attention_inside(maps, np.zeros((32, 32), dtype=bool)), 0.0)
    with pytest.raises(ValueError, match="one per frame"):
        probes.frame_attention(tiny_pipe, video, SOURCE, [(0.1, 0.1), (0.2, 0.2)], height=8)


# -- course helpers and the workflow cache ------------------------------------------------------------------------------

def test_course_paths_clip_and_download(tmp_path, tiny_pipe):
    (tmp_path / "vp2p").mkdir()
    (tmp_path / "notebooks").mkdir()
    assert course.project_dir(tmp_path / "notebooks") == tmp_path
    assert course.project_dir(tmp_path) == tmp_path
    assert course.frame_size(tiny_pipe) == 32
    assert course.clip(tiny_pipe).shape == (course.NUM_FRAMES, 32, 32, 3)
    source = tmp_path / "clip.gif"
    from vp2p.io.video import write_video

    write_video(source, smooth_video(course.NUM_FRAMES), fps=4)
    copy = course.local_file(source.as_uri(), tmp_path / "downloads")
    assert copy == tmp_path / "downloads" / "clip.gif" and copy.read_bytes() == source.read_bytes()
    assert course.clip(tiny_pipe, source.as_uri(), downloads=tmp_path / "dl").shape == (course.NUM_FRAMES, 32, 32, 3)
    work = course.work_dir(tiny_pipe, root=tmp_path)
    assert work.parent == tmp_path / "runs" / "notebooks" and work.name.endswith("red-circle-grass-7")


def test_prepare_again_loads_the_tuning_with_its_losses(prepared):
    from vp2p import load_pipeline

    pipe, run, work = prepared
    assert inversion_cache(pipe, run.inversion.frames, SOURCE, SETTINGS, work).exists()
    tuned = next(work.glob("tuned-*.safetensors"))
    assert json.loads(tuned_metadata(tuned)[TUNING_METADATA])["fingerprint"]["model"] == pipe.name
    again = prepare(load_pipeline(pipe.name, device="cpu", dtype=torch.float32), run.inversion.frames, SOURCE,
                    SETTINGS, work_dir=work, progress=False)
    assert again.tuning.losses == run.tuning.losses and again.inversion.key == run.inversion.key


# -- widgets --------------------------------------------------------------------------------------------------------

def test_parse_words_and_weights():
    assert widgets.parse_words(" circle, red circle ,") == ["circle", "red circle"]
    assert widgets.parse_weights("striped=2, red = 0.5") == {"striped": 2.0, "red": 0.5}
    with pytest.raises(ValueError, match="WORD=NUMBER"):
        widgets.parse_weights("striped")


def test_edit_widget_runs_the_edit_set_in_its_controls(prepared):
    pipe, run, _ = prepared
    w = widgets.EditWidget(pipe, run, SETTINGS, TARGET)
    first = w.update()
    assert first.prompts == [SOURCE, TARGET] and w.last_edit is first and first.blend_masks is None
    figure = w.figure
    assert len(figure.axes) == 3 * FRAMES and figure.axes[2 * FRAMES].get_ylabel() == "edit"
    w.controls["target"].value = "a red striped circle bouncing on the grass"
    w.controls["mode"].value = "Refine"
    w.controls["blend_source"].value = "circle"
    w.controls["blend_target"].value = "circle"
    w.controls["weights"].value = "striped=2"
    w.controls["decoupled"].value = False
    second = w.update()
    assert second.prompts[1] == "a red striped circle bouncing on the grass"
    assert second.blend_masks is not None and not second.decoupled
    assert float(second.controller.target_maps.equalizer[0, 3]) == 2.0  # the token of 'striped'
    assert w.figure is not figure
    assert_finite_images(w.figure)
    # A mistake goes to the status line when the button is pressed (and raises from update()).
    w.controls["blend_target"].value = "square"
    w.controls["run"].click()
    assert "square" in w.status.value and w.last_edit is second
    with pytest.raises(ValueError, match="square"):
        w.update()


def test_attention_widget_step_slider_changes_the_maps(prepared, tok):
    pipe, run, _ = prepared
    result = widgets.EditWidget(pipe, run, SETTINGS, TARGET, blend_words=["circle", "circle"]).update()
    w = widgets.AttentionWidget(result, tok)
    last = w.update()
    assert w.controls["step"].value == STEPS - 1 and torch.allclose(last, result.maps()[1], atol=1e-3)
    figure = w.figure
    w.controls["step"].value = 0  # the slider's observer redraws
    assert torch.allclose(w.maps, result.maps(step=0)[1]) and not torch.allclose(w.maps, last)
    assert w.figure is not figure
    words = len(viz.token_labels(tok, TARGET)) - 2
    assert [ax.get_title() for ax in w.figure.axes[:words]] == viz.token_labels(tok, TARGET)[1:-1]
    w.controls["branch"].value = 0
    assert torch.allclose(w.maps, result.maps(step=0)[0])


def test_weight_widget_caches_each_weight(prepared):
    pipe, run, _ = prepared
    target = "a red striped circle bouncing on the grass"
    w = widgets.WeightWidget(pipe, run, SETTINGS, target, "striped", weight=1.0, is_word_swap=False)
    w.update()
    edits = w.sweep([0.0, 1.0])
    assert set(w.edits) == {0.0, 1.0} and edits[1.0] is w.last_edit
    w.controls["weight"].value = 2.0
    assert set(w.edits) == {0.0, 1.0, 2.0} and float(w.last_edit.controller.target_maps.equalizer[0, 3]) == 2.0
    assert w.figure.axes[FRAMES].get_ylabel() == "'striped' × 2"


def test_attention_debug_widget_layer_head_step_branch_and_views(prepared, tok):
    from vp2p.inspect.recorder import recorded_edit

    pipe, run, _ = prepared
    result = recorded_edit(pipe, run, [SOURCE, TARGET], SETTINGS, blend_words=["circle", "circle"])
    recorder = result.controller
    w = widgets.AttentionDebugWidget(result, tok)
    c = w.controls
    assert c["step"].options == tuple(range(STEPS)) and c["step"].value == STEPS - 1
    assert c["layer"].value == ("resolution", 16)  # the mean of the finest recorded layers first
    maps = w.update()
    assert torch.allclose(maps, recorder.cross_maps(step=STEPS - 1, branch=1, resolution=16))
    words = len(viz.token_labels(tok, TARGET)) - 2
    assert [ax.get_title() for ax in w.figure.axes[: words + 1]] == viz.token_labels(tok, TARGET)[1:-1] + [
        "blend mask"]  # blending ran at every step (blend_start=0): the mask of that step is shown
    name = "down_blocks.0.attentions.0.transformer_blocks.0.block.attn2"
    c["layer"].value = ("layer", name)  # each change redraws through the observers
    c["head"].value = 1
    c["step"].value = 1
    c["branch"].value = 0
    assert torch.allclose(w.data, recorder.cross_maps(step=1, branch=0, layer=name, head=1))
    assert "head 1" in w.figure.get_suptitle() and "step 1" in w.figure.get_suptitle()
    c["view"].value = "diff"  # on the source branch: said in the status line
    assert "choose a target branch" in w.status.value
    c["branch"].value = 1
    assert w.status.value == "" and torch.allclose(w.data, recorder.diff_maps(step=1, layer=name, head=1))
    c["view"].value = "temporal"
    assert c["layer"].value == ("resolution", 16) and c["row"].layout.display == ""
    c["row"].value, c["column"].value = 0.9, 0.1
    assert torch.allclose(w.data, recorder.pixel_temporal((0.9, 0.1), step=1, branch=1, resolution=16))
    assert w.data.shape == (FRAMES, FRAMES)
    app = w.app()
    assert w.image.value[:4] == b"\x89PNG" and app.children[-1] is w.image
    before = w.image.value
    c["column"].value = 0.6
    assert w.image.value != before  # the app's image follows the controls
    with pytest.raises(ValueError, match="AttentionRecorder"):
        widgets.AttentionDebugWidget(widgets.EditWidget(pipe, run, SETTINGS, TARGET).update(), tok)


@pytest.mark.parametrize("error, shown", [
    (ValueError("blend word 'square' is not in the prompt"), "blend word 'square' is not in the prompt"),
    (RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB"), "RuntimeError: CUDA out of memory. Tried to "
                                                                   "allocate 2 GiB"),
    (KeyError("layer"), "KeyError: 'layer'"),
])
def test_a_panel_callback_ends_running_with_one_line_whatever_the_error(error, shown):
    """Before, only ValueError was caught: any other error left "running…" on screen and went to a log nobody
    sees (a callback's exception does not reach the notebook)."""
    from vp2p.course.widgets import FigurePanel

    class Failing(FigurePanel):
        def update(self):
            raise error

    panel = Failing()
    panel._safe_update()
    assert panel.status.value == f"<b style='color:#b00020'>{html.escape(shown)}</b>"
