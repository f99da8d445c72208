"""The attention debugger beyond cross-attention (issue 18, part 4), on the shipped toy model: frame attention over
frame 0, the shares of the start token, the words and the padding, LocalBlend's score with a live threshold, the
clean frames x̂_0 of each step, A/B of two edits, playable clips and picking a pixel — in the recorder
(``vp2p.inspect.recorder``), the readings (``vp2p.inspect.readings``), the figures and the panels.
"""

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import vp2p
from vp2p import course
from vp2p.controllers import threshold_blend
from vp2p.course import widgets
from vp2p.inspect import readings, viz
from vp2p.inspect.recorder import AttentionRecorder
from vp2p.toy import world

STEPS = 10
SOURCE = course.SCENE.caption  # "a red circle bouncing on the grass"
TARGET = SOURCE.replace("red", "blue")


@pytest.fixture(scope="module")
def toy():
    pipe = vp2p.load_pipeline("toy", device="cpu", dtype=torch.float32)
    vp2p.inflate_unet(pipe.unet)
    inversion = vp2p.invert(pipe, course.clip(pipe), SOURCE, method="fast", num_steps=STEPS, progress=False)
    return pipe, inversion


@pytest.fixture(scope="module")
def recorded(toy):
    """A toy word swap (8 frames of 64², 10 steps, LocalBlend on 'circle') with the default recorder."""
    pipe, inversion = toy
    recorder = AttentionRecorder(vp2p.make_controller(pipe, [SOURCE, TARGET], STEPS, blend_words=["circle", "circle"]))
    return vp2p.edit(pipe, inversion, [SOURCE, TARGET], controller=recorder, progress=False)


def test_frame_attention_rows_are_distributions_over_frame_0_and_the_object_looks_at_the_object(recorded):
    recorder = recorded.controller
    assert recorder.resolutions("frame") == [4, 8, 16]
    for step in (0, STEPS - 1):
        maps = recorder.frame_maps(step=step, branch=1, resolution=16)  # (F, 8, 8, 16, 16)
        assert maps.shape == (8, 8, 8, 16, 16)
        assert torch.allclose(maps.sum(dim=(-2, -1)), torch.ones(8, 8, 8), atol=1e-3)
    # where the circle is in each frame (the toy world's ground truth), its queries look at the circle in frame 0:
    # measured 0.44–0.49 of their attention at the last step, on 13 % of frame 0; the grass's queries 0.09
    masks = torch.as_tensor(np.asarray(world.render(course.SCENE).masks)).float()[:, None]  # (F, 1, 64, 64)
    object_keys = F.adaptive_avg_pool2d(masks[:1], 16)[0, 0]  # frame 0's object, per key cell
    object_queries = F.adaptive_avg_pool2d(masks, 8)[:, 0] > 0.5  # (F, 8, 8)
    on_object = (recorder.frame_maps(step=STEPS - 1, branch=0, resolution=16) * object_keys).sum((-2, -1))
    area = float(object_keys.mean())
    for f in range(8):
        assert float(on_object[f][object_queries[f]].mean()) > 3 * area, f
        assert float(on_object[f][~object_queries[f]].mean()) < area, f


def test_token_shares_sum_to_one_over_all_tokens_and_match_the_maps(recorded, toy):
    pipe, _ = toy
    recorder = recorded.controller
    for step in (0, 5, STEPS - 1):
        for branch, prompt in enumerate(recorded.prompts):
            shares = readings.token_shares(recorder, pipe.tokenizer, prompt, step=step, branch=branch)
            names = list(shares)
            assert names[0] == readings.START and names[-2:] == [readings.END, readings.PADDING]
            assert len(names) == len(viz.token_labels(pipe.tokenizer, prompt)) + 1
            assert abs(sum(shares.values()) - 1) < 2e-3, sum(shares.values())
            maps = recorder.cross_maps(step, branch)
            assert shares["3: circle"] == pytest.approx(float(maps[..., 3].mean()), abs=1e-6)
            assert all(v >= 0 for v in shares.values())
    # the padding is the attention past the prompt's tokens: its share is what the kept columns miss
    shares = readings.token_shares(recorder, pipe.tokenizer, TARGET, step=STEPS - 1)
    kept = float(recorder.cross_maps(STEPS - 1, 1).sum(-1).mean())
    assert shares[readings.PADDING] == pytest.approx(1 - kept, abs=2e-3)


def test_the_blend_mask_from_recorded_maps_is_the_mask_the_edit_used(recorded):
    recorder = recorded.controller
    steps = readings.blend_steps(recorder)
    assert steps == list(range(2, STEPS)) and len(steps) == len(recorded.blend_masks)
    for index, step in enumerate(steps):
        score = readings.blend_score(recorder, step)
        assert score.shape == recorded.blend_masks.shape[1:] and float(score.max()) == pytest.approx(1.0)
        assert torch.equal(threshold_blend(score, 0.3), recorded.blend_masks[index])  # exact, at the edit's threshold
    # a live threshold: the mask shrinks as the threshold rises
    score = readings.blend_score(recorder, STEPS - 1)
    areas = [int(threshold_blend(score, t).sum()) for t in (0.1, 0.3, 0.6, 0.9)]
    assert areas == sorted(areas, reverse=True) and areas[0] > areas[-1]


def test_clean_frames_at_the_last_step_decode_to_the_edit(recorded, toy):
    pipe, _ = toy
    recorder = recorded.controller
    assert sorted(recorder.clean) == list(range(STEPS))
    assert recorder.clean[0].shape == recorded.latents.shape and recorder.clean[0].dtype == torch.float32
    for branch in (0, 1):
        last = readings.clean_frames(pipe, recorder, STEPS - 1, branch)
        first = readings.clean_frames(pipe, recorder, 0, branch)
        video = recorded.videos[branch].astype(np.float64)
        error_last, error_first = np.abs(last - video).mean(), np.abs(first - video).mean()
        # measured: source 0.0 / target 1.0 grey levels at the last step (the target's x̂_0 is before LocalBlend),
        # 40 at the first step
        assert error_last < 2.0 and error_first > 10 * error_last, (branch, error_last, error_first)


def test_a_b_of_an_edit_with_itself_differs_by_zero(recorded):
    assert np.array_equal(readings.ab_difference(recorded.edited, recorded.edited), np.zeros(8))
    apart = readings.ab_difference(recorded.edited, recorded.source)  # blue vs. red circle
    assert apart.shape == (8,) and apart.mean() > 1
    fig = viz.ab_comparison(recorded.edited, recorded.edited)
    assert "0.00" in fig.get_suptitle()
    with pytest.raises(ValueError, match="one shape"):
        readings.ab_difference(recorded.edited, recorded.edited[:4])


def test_the_recorders_memory_per_step_is_what_its_docstring_says(recorded):
    """The default recorder on the toy model (8 frames of 64², 2 branches, 9 tokens): per step 1.2 MB of
    cross-attention (with the padding column), 1.0 MB temporal, 1.9 MB frame attention, 0.06 MB of x̂_0."""
    recorder = recorded.controller
    per_kind = {kind: sum(recorder.records[r.name][0].numel() * 2 for r in recorder.layers(kind))
                for kind in ("cross", "temporal", "frame")}
    per_kind["cross"] += sum(t[0].numel() * 2 for t in recorder.padding.values())
    assert sum(per_kind.values()) * STEPS == recorder.nbytes
    megabytes = {k: v / 2**20 for k, v in per_kind.items()}
    assert megabytes == pytest.approx({"cross": 1.2, "temporal": 1.0, "frame": 1.9}, abs=0.06), megabytes
    assert recorder.clean[0].numel() * 4 / 2**20 == pytest.approx(0.06, abs=0.01)
    # a frame layer at 16×16 keeps 8×8 query cells × 16×16 key cells, not 256 × 256 (heads averaged too: 64× less)
    layer = recorder.layers("frame")[0]
    assert recorder.records[layer.name][0].shape == (2, 8, 1, 64, 256)


def test_the_debug_widget_views_and_their_controls_change_what_is_drawn(recorded, toy):
    pipe, _ = toy
    recorder = recorded.controller
    w = widgets.AttentionDebugWidget(recorded, pipe.tokenizer, pipe=pipe)
    w.app()
    c = w.controls

    def images():
        return [np.asarray(im.get_array(), dtype=np.float64) for ax in w.figure.axes for im in ax.get_images()]

    # tokens: the greyscale underlay (three equal channels) and per-map scaling, one click each
    w.update()
    under = images()[0]
    assert under.ndim == 3 and np.array_equal(under[..., 0], under[..., 1])
    shared = w.figure.get_suptitle()
    c["scaling"].value = "per map"
    assert "per map" in w.figure.get_suptitle() and shared != w.figure.get_suptitle()
    c["underlay"].value = "colour"
    under = images()[0]
    assert not np.array_equal(under[..., 0], under[..., 2])
    # frame attention of a picked pixel: the sliders and a click (ipyevents' event) pick the same way
    c["view"].value = "frame"
    assert c["row"].layout.display == "" and c["head"].layout.display == "none"
    w._on_click({"relativeX": 96, "relativeY": 32, "boundingRectWidth": 128, "boundingRectHeight": 128})
    assert w.pixel() == (0.25, 0.75) and w.status.value == ""
    assert torch.equal(w.data, recorder.pixel_frame((0.25, 0.75), step=STEPS - 1, branch=1, resolution=16))
    before = w.data.clone()
    w.pick(0.8, 0.1)
    assert not torch.equal(before, w.data)
    # token shares
    c["view"].value = "shares"
    assert abs(sum(w.data.values()) - 1) < 2e-3
    assert [t.get_text() for t in w.figure.axes[0].get_yticklabels()][-1] == readings.PADDING
    # the blend: the threshold slider changes the mask drawn, not the score
    c["view"].value = "blend"
    assert c["threshold"].layout.display == "" and c["threshold"].value == 0.3
    score, masks = w.data.clone(), images()
    c["threshold"].value = 0.8
    assert torch.equal(score, w.data) and "0.80" in w.figure.get_suptitle()
    assert any(not np.array_equal(a, b, equal_nan=True) for a, b in zip(masks, images()))
    # the clean frames x̂_0: the step slider
    c["view"].value = "clean"
    last = w.data
    c["step"].value = 0
    assert not np.array_equal(last, w.data) and w.data.shape == recorded.edited.shape
    assert w.image.value[:4] == b"\x89PNG"
    no_pipe = widgets.AttentionDebugWidget(recorded, pipe.tokenizer, view="clean")
    no_pipe._safe_update()
    assert "pipe=pipe" in no_pipe.status.value


def test_clips_play_and_the_ab_widget_compares_two_edits(toy):
    pipe, inversion = toy
    frames = np.stack([np.full((8, 8, 3), 40 * i, np.uint8) for i in range(4)])
    gif = Image.open(io.BytesIO(viz.gif_bytes(frames, size=32)))
    assert gif.n_frames == 4 and gif.size == (32, 32)
    box = widgets.clips({"a": frames, "b": frames})
    assert len(box.children) == 2 and box.children[0].children[1].format == "gif"

    from vp2p.workflow import Run, Settings

    settings = Settings(method="fast", num_steps=STEPS)
    run = Run(tuning=None, inversion=inversion)  # the toy model as it ships, not tuned: enough to compare edits
    same = dict(target=TARGET, blend_words=["circle", "circle"])
    ab = widgets.ABWidget(pipe, run, settings, a=same, b=same)
    assert np.array_equal(ab.update(), np.zeros(8))  # A and B the same edit: computed once, no difference
    assert len(ab.edits) == 1 and len(ab.clip.children) == 2
    ab.controls["B target"].value = SOURCE.replace("red", "green")
    difference = ab.update()
    assert len(ab.edits) == 2 and difference.mean() > 1
    assert ab.figure.axes[0].get_ylabel().startswith("A:")


def test_decoder_leak_on_a_blended_edit_and_on_an_unchanged_one(toy, recorded):
    """LocalBlend keeps every latent outside its mask (exactly 0); a target equal to its source leaks nothing."""
    import copy

    from vp2p.inspect.fidelity import PSNR_CAP
    from vp2p.inspect.leak import decoder_leak

    pipe, edit = toy[0], recorded
    leaked = decoder_leak(pipe, edit)
    assert leaked["latent_outside"] == 0.0 and leaked["near"] >= 0 and leaked["psnr"] <= PSNR_CAP
    same = copy.copy(edit)
    frames = edit.videos.shape[1]
    same.latents = edit.latents.clone()
    same.latents[frames:2 * frames] = edit.latents[:frames]
    same.videos = edit.videos.copy()
    same.videos[1] = edit.videos[0]
    unchanged = decoder_leak(pipe, same)
    assert unchanged["near"] == 0 and unchanged["far"] == 0 and unchanged["psnr"] == PSNR_CAP
    assert unchanged["psnr_clamped"] == PSNR_CAP  # the source's latents are inside their own range
