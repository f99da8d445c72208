"""The edit studio: one screen to pick a clip, type the prompts, press Edit, and look inside the edit.

    app = Studio(pipe)     # course settings; clips cached in $VP2P_STUDIO_WORK or course.runs_dir()/notebooks
    app.show()             # in a notebook — or served as an app: voila notebooks/studio.ipynb

The long stages — tuning and inversion — run once per clip, with progress bars, and are cached in the clip's work
folder (``workflow.prepare(..., work_dir=...)``, the same folders notebooks 02–06 use); an edit of a prepared clip
takes seconds on the toy model. Every edit runs with an ``AttentionRecorder`` so that the attention panel can show
any layer, head, step and branch, the temporal and frame attention of a pixel, target − source, the shares of the
start token and the padding, LocalBlend's score with a live threshold and the clean frames x̂_0 of each step. The
A/B tab compares two edits: "pin as A" keeps the last edit, and every later edit is B beside it. Errors (a blend
word missing from its prompt, a clip that cannot be read…) land in the status line, never as a traceback.

Tests and scripts drive it as the browser does: set a control's value, then ``select(...)``, ``prepare()`` or
``edit()``. In the page, the videos are ``<img class="vp2p-video" data-role="input|reconstruction|edit">`` strips
of lossless PNG frames side by side (``data-frames`` of them), so a browser test can read the pixels back, each
beside a looping GIF of the clip (``img.vp2p-gif``) enlarged by nearest neighbour.

Made to be projected (1366×768): the controls on the left, the videos and the attention (tabs) on the right, text
of at least 14 px, the prose of the notebook folded away; the first clip's preparation shows its stages in the
status line (under Voilà it runs in a background thread: Voilà shows nothing of a page while its cells run).
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from vp2p import course
from vp2p.inspect import readings, viz
from vp2p.inspect.recorder import recorded_edit
from vp2p.toy import evaluator, world
from vp2p.course.widgets import AttentionDebugWidget, clips, edit_controls, edit_options, error_html
from vp2p.workflow import prepare

WORK_ENV = "VP2P_STUDIO_WORK"  # a folder holding one work folder per clip (tests point it at a prepared cache)
UPLOAD = "your own clip (upload it below)"
VOILA_VARIABLE = "VOILA_KERNEL_ID"  # set by Voilà in the kernels it starts
SHOWN_SIZE = 192  # frames larger than this are shown downscaled (an SD clip: 8 frames of 512² in one strip)

# The toy clips on offer: the course's clip first (notebooks 02–06 may have prepared it already).
TOY_SCENES = {scene.caption: scene for scene in (
    course.SCENE,
    world.Scene(color="yellow", shape="star", background="sand", motion="sliding", seed=3),
    world.Scene(color="green", shape="square", background="water", motion="floating", seed=5),
    world.Scene(color="white", shape="triangle", background="sky", motion="circling", seed=11),
)}


@dataclass
class Clip:
    """A clip the studio can prepare: its frames, a suggested source prompt, and its work folder."""

    name: str
    frames: np.ndarray  # uint8 (F, H, W, 3)
    source: str  # "" for an upload: the user describes it
    work_dir: Path
    scene: world.Scene | None = None  # toy scenes: what the evaluator can check an edit against


def work_root(root=None) -> Path:
    """Where clips are cached: ``root``, else $VP2P_STUDIO_WORK, else the notebooks' ``course.runs_dir()/notebooks``
    (shared with them: a clip prepared in notebook 03 is ready in the studio)."""
    if root is not None:
        return Path(root)
    if os.environ.get(WORK_ENV):
        return Path(os.environ[WORK_ENV])
    return course.runs_dir() / "notebooks"


def toy_clip(pipe, scene: world.Scene, root) -> Clip:
    """A toy scene rendered at the model's frame size, in the course's work-folder naming."""
    folder = Path(root) / course.work_dir(pipe, scene=scene, root=".").name
    return Clip(scene.caption, course.clip(pipe, scene=scene), scene.caption, folder, scene)


def uploaded_clip(pipe, name: str, content: bytes, root) -> Clip:
    """An uploaded video (mp4, gif, …) saved under ``root/uploads`` and read as the course reads clips."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name) or "clip"
    path = course.save_upload(name, bytes(content), Path(root) / "uploads")  # our copy; the user's file is untouched
    frames = course.clip(pipe, str(path))
    return Clip(f"upload: {safe}", frames, "", Path(root) / course.work_dir(pipe, video=str(path), root=".").name)


def png_data_url(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")  # lossless: a test can read the exact pixels back
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def shown_frames(frames: np.ndarray, size: int = SHOWN_SIZE) -> np.ndarray:
    """The frames as shown: as they are up to ``size`` pixels, else downscaled (page weight)."""
    height, width = frames.shape[1:3]
    if max(height, width) <= size:
        return frames
    shape = (round(width * size / max(height, width)), round(height * size / max(height, width)))
    return np.stack([np.asarray(Image.fromarray(f).resize(shape, Image.LANCZOS)) for f in frames])


ENLARGED = 128  # a toy clip's 64-px frames play at least this large, by nearest neighbour (crisp pixels)


def enlarged(frames: np.ndarray, size: int = ENLARGED) -> np.ndarray:
    """The frames repeated by a whole factor (nearest neighbour) until they are at least ``size`` pixels high."""
    factor = max(1, -(-size // frames.shape[1]))
    return frames.repeat(factor, axis=1).repeat(factor, axis=2) if factor > 1 else frames


def gif_data_url(frames: np.ndarray, fps: float = 8.0) -> str:
    """An animated, looping GIF of the frames (playable anywhere an image shows; ``viz.gif_bytes``)."""
    return "data:image/gif;base64," + base64.b64encode(viz.gif_bytes(frames, fps, size=0)).decode()


def video_html(frames: np.ndarray, role: str, caption: str, prompt: str = "") -> str:
    """One labelled row: the clip playing (a looping GIF, enlarged by nearest neighbour) beside its frames side
    by side in one lossless PNG ``<img class="vp2p-video">`` (``data-role``, ``data-frames``, ``data-prompt`` say
    what it shows); both drawn with crisp pixels when the page enlarges them."""
    shown = shown_frames(frames)
    strip = np.concatenate(list(shown), axis=1)
    crisp = "image-rendering:pixelated;image-rendering:crisp-edges"
    return (f"<div class='vp2p-row'><div class='vp2p-caption'>{html.escape(caption)}</div>"
            "<div style='display:flex;gap:8px;align-items:flex-start'>"
            f"<img class='vp2p-gif' data-role='{role}' src='{gif_data_url(enlarged(shown))}' "
            f"style='{crisp}'>"
            f"<img class='vp2p-video' data-role='{role}' data-frames='{len(frames)}' "
            f"data-prompt='{html.escape(prompt, quote=True)}' src='{png_data_url(strip)}' "
            f"style='flex:1;min-width:0;width:100%;{crisp}'></div></div>")


# Projector-sized text (at least 14 px) for the whole app; ipywidgets' own default is 13 px.
STYLE = """<style>
.vp2p-studio {font-size: 15px; --jp-widgets-font-size: 15px; --jp-ui-font-size1: 15px;
              --jp-content-font-size1: 15px; --jp-widgets-inline-height: 30px}
.vp2p-studio .widget-label, .vp2p-studio input, .vp2p-studio button, .vp2p-studio select,
.vp2p-studio .widget-html-content, .vp2p-studio .lm-TabBar-tabLabel, .vp2p-studio .jupyter-button,
.vp2p-studio .widget-readout {font-size: 15px}
.vp2p-caption {font-size: 14px; color: #333; margin: 2px 0}
.vp2p-row {margin: 0 0 4px}
.vp2p-studio .widget-tab-contents, .vp2p-studio .lm-TabPanel-stackedPanel {padding: 6px 8px}
</style>"""
PROJECTOR_RC = {"font.size": 15, "axes.titlesize": 15, "axes.labelsize": 15, "xtick.labelsize": 14,
                "ytick.labelsize": 14, "legend.fontsize": 14, "figure.titlesize": 16}
TYPED = ("target", "blend_source", "blend_target", "weights")  # the text fields of an edit
NO_AB = "<i>edit, press <b>pin this edit as A</b>, change a knob and edit again: A and B appear here</i>"
STAGES = {"tune": "1/2 tuning the model on the clip", "invert": "2/2 inverting the clip"}


class StudioAttention(AttentionDebugWidget):
    """The attention panel with projector-sized text in its figure."""

    def update(self):
        with plt.rc_context(PROJECTOR_RC):
            return super().update()


class Studio:
    """The app: clip picker and upload, prompts and edit knobs on the left; input / reconstruction / edit and the
    attention panel (two tabs) on the right — one screen at 1366×768.

    ``settings`` default to the course's (``course.settings(pipe)``: 25 DDIM steps on the toy model); ``root``
    is the cache of prepared clips (``work_root``); ``scenes`` the toy clips on offer (caption → scene).

    Every action runs through ``_guarded``: its error, whatever it is, becomes the status line. The work itself
    runs in ``_logged``, which raises the error *outside* the ``Output`` widget that shows the progress bars —
    inside IPython, ``Output.__exit__`` prints an exception as a traceback and swallows it.
    """

    def __init__(self, pipe, settings=None, root=None, scenes=None, progress: bool = True):
        self.pipe, self.progress = pipe, progress
        self.settings = settings or course.settings(pipe)
        self.root = work_root(root)
        self.scenes = dict(TOY_SCENES if scenes is None else scenes)
        self.clip: Clip | None = None
        self.run = None
        self.last_edit = None
        self.attention: AttentionDebugWidget | None = None
        self.status = widgets.HTML().add_class("vp2p-status")
        self.log = widgets.Output()  # progress bars of tuning, inversion and editing
        self.videos = widgets.HTML("<i>pick a clip</i>")
        self.attention_box = widgets.VBox([widgets.HTML("<i>the attention of the last edit appears here</i>")])
        self.pinned = None  # the edit pinned as A
        self.pin = widgets.Button(description="pin this edit as A", icon="thumb-tack", disabled=True,
                                  tooltip="keep the last edit as A; the next edits show as B beside it")
        self.pin.add_class("vp2p-pin")
        self.pin.on_click(lambda _: self._guarded(self.pin_edit))
        self.ab_view = widgets.VBox([widgets.HTML(NO_AB)])
        self.ab_box = widgets.VBox([self.pin, self.ab_view])
        self.controls = self._controls()
        self._app = None
        self._first: threading.Thread | None = None

    # -- widgets
    def _controls(self) -> dict[str, widgets.Widget]:
        c = {"clip": widgets.Dropdown(options=list(self.scenes) + [UPLOAD], value=None, description="clip",
                                      layout=widgets.Layout(width="70%"), style={"description_width": "110px"})}
        c["upload"] = widgets.FileUpload(accept=".mp4,.gif,.webm,.mov,.avi,.mkv", multiple=False,
                                         description="upload a clip")
        c["prepare"] = widgets.Button(description="Prepare clip", icon="cogs",
                                      tooltip="tune and invert the clip (once; cached)")
        c.update(edit_controls(self.settings, "", ""))
        for control in c.values():  # a narrower label column: the controls share the screen with the videos
            if "description_width" in getattr(control.style, "keys", []):
                control.style.description_width = "110px"
        c["source"].disabled = False
        c["source"].description = "source prompt"
        c["source"].placeholder = "describe the clip, e.g. a rabbit is jumping on the grass"
        c["blend_source"].description, c["blend_target"].description = "blend (source)", "blend (target)"
        c["target"].add_class("vp2p-target")
        c["blend_target"].add_class("vp2p-blend-target")
        c["run"].add_class("vp2p-edit")
        c["run"].disabled = True
        for name in TYPED:
            # one update when the field is left (Tab, Enter, a click elsewhere), not one per key: a click on Edit
            # right after typing then meets the whole word in the kernel, not its first letters
            c[name].continuous_update = False
            c[name].observe(self._on_typed, names="value")
        c["clip"].observe(self._on_clip, names="value")
        c["upload"].observe(self._on_upload, names="value")
        c["prepare"].on_click(lambda _: self._guarded(self.prepare))
        c["run"].on_click(lambda _: self._guarded(self.edit))
        return c

    def app(self) -> widgets.Widget:
        """The whole screen as one widget: the controls and status on the left, the videos and the attention of
        the last edit (tabs) on the right."""
        if self._app is None:
            c = self.controls
            more = widgets.Accordion([widgets.VBox([c["cross_replace_steps"], c["self_replace_steps"],
                                                    c["threshold"], c["decoupled"]])], titles=("more knobs",))
            more.selected_index = None
            left = widgets.VBox([
                widgets.HBox([c["clip"], c["prepare"]]), c["upload"], c["source"], c["target"], c["mode"],
                c["blend_source"], c["blend_target"], c["weights"], more, c["run"], self.status, self.log,
            ], layout=widgets.Layout(width="38%", padding="0 12px 0 0"))
            self.tabs = widgets.Tab([self.videos, self.attention_box, self.ab_box],
                                    titles=("videos", "attention", "A/B"), layout=widgets.Layout(width="62%"))
            self._app = widgets.VBox([widgets.HTML(STYLE), widgets.HBox([left, self.tabs])],
                                     layout=widgets.Layout(width="100%")).add_class("vp2p-studio")
        return self._app

    def show(self, wait: bool | None = None):
        """Display the app and prepare the first clip (instant when cached). ``wait=False``: in a background
        thread, the default when Voilà serves the app — Voilà shows nothing of a page until its cells have run, so
        a first preparation inside the cell was a blank spinner for half a minute; now the app is there at once
        and its status line follows the preparation. ``wait=True`` (the default elsewhere: Jupyter and Colab show
        the progress bars as the cell runs): before returning."""
        from IPython.display import display

        display(self.app())
        if self.clip is None:
            first = next(iter(self.scenes))
            if wait if wait is not None else not os.environ.get(VOILA_VARIABLE):
                self.controls["clip"].value = first  # its observer prepares it
            else:
                self._first = threading.Thread(target=setattr, args=(self.controls["clip"], "value", first),
                                               daemon=True)
                self._first.start()

    def wait(self, timeout: float | None = None):
        """Wait for the first clip's preparation that ``show()`` started."""
        if self._first is not None:
            self._first.join(timeout)

    # -- actions (each also a button or a control's callback)
    def _guarded(self, action, *args):
        """Run ``action`` from a callback: buttons off while it runs, any error to the status line as one line."""
        buttons = [self.controls["prepare"], self.controls["run"]]
        for button in buttons:
            button.disabled = True
        self.status.value = "<i>working…</i>"
        try:
            action(*args)
        except Exception as error:  # an app shows every error in its status line, never a traceback
            self.status.value = error_html(error)
        finally:
            buttons[0].disabled = False
            buttons[1].disabled = self.run is None  # Edit needs a prepared clip

    def _logged(self, work, **kwargs):
        """``work(**kwargs)`` with its progress bars in ``self.log`` (cleared afterwards: they were for the wait).
        Its error is raised here, after the ``with`` block: inside it, IPython would swallow it."""
        failure, result = None, None
        with self.log:
            try:
                result = work(**kwargs)
            except Exception as error:
                failure = error
        self.log.clear_output()
        if failure is not None:
            raise failure
        return result

    def _bars(self) -> bool:
        """Progress bars only from the kernel's main thread (a background thread's bars land in no cell)."""
        return self.progress and threading.current_thread() is threading.main_thread()

    def _forget_run(self):
        """No prepared run: Edit off, the input alone on screen, no attention of an old edit."""
        self.run, self.last_edit, self.attention, self.pinned = None, None, None, None
        self.controls["run"].disabled = True
        self.pin.disabled = True
        self.ab_view.children = [widgets.HTML(NO_AB)]
        self.videos.value = (video_html(self.clip.frames, "input", "input") if self.clip is not None
                             else "<i>pick a clip</i>")
        self.attention_box.children = [widgets.HTML("<i>the attention of the last edit appears here</i>")]

    def _on_clip(self, change):
        name = change["new"]
        if name is None:
            return
        if name == UPLOAD:  # the previous clip is no longer the one on screen: nothing to edit until prepared
            self.clip = None
            self._forget_run()
            self.videos.value = "<i>upload a clip (mp4, gif, webm, mov…) with the button on the left</i>"
            self.status.value = "upload a clip, describe it in the source prompt, then press <b>Prepare clip</b>"
            return
        if name in self.scenes:
            self._guarded(self.select, name)

    def _on_typed(self, change):
        """A field's new value, said in the status line once the kernel has it (and an old error cleared)."""
        if self.run is not None:
            self.status.value = (f"<i>{html.escape(change['owner'].description)}: "
                                 f"'{html.escape(str(change['new']))}' — press Edit</i>")

    def _on_upload(self, change):
        files = change["new"]
        if files:
            item = files[0]
            self._guarded(lambda: self.use_clip(uploaded_clip(self.pipe, item["name"], item["content"], self.root)))

    def select(self, name: str) -> Clip:
        """Choose a toy scene by caption and prepare it."""
        if name not in self.scenes:
            raise ValueError(f"no toy clip {name!r}; choose one of {list(self.scenes)}")
        clip = toy_clip(self.pipe, self.scenes[name], self.root)
        self.use_clip(clip)
        self.controls["blend_source"].value = self.controls["blend_target"].value = clip.scene.shape
        self.prepare()
        return clip

    def use_clip(self, clip: Clip):
        """Make ``clip`` the current one (prompts filled in where known); ``prepare()`` tunes and inverts it."""
        self.clip = clip
        self._forget_run()
        c = self.controls
        c["source"].value = c["target"].value = clip.source
        if not clip.source:
            c["blend_source"].value = c["blend_target"].value = ""
        self.status.value = ("" if clip.source else
                             "describe your clip in the source prompt, then press <b>Prepare clip</b>")

    def _stage(self, name: str, source: str):
        steps = {"tune": f"{self.settings.tune_steps} steps", "invert": f"{self.settings.method}, "
                 f"{self.settings.num_steps} DDIM steps"}[name]
        self.status.value = (f"<i>preparing '{html.escape(source)}': {STAGES[name]} ({steps})… "
                             "(once per clip: cached)</i>")

    def prepare(self):
        """Tune and invert the current clip with the source prompt (cached in its work folder), then show the
        input and the reconstruction. Whatever happens, the previous run is gone first: a failed prepare leaves
        nothing to edit."""
        if self.clip is None:
            raise ValueError("pick a clip (or upload one) first")
        self._forget_run()
        source = self.controls["source"].value.strip()
        if not source:
            raise ValueError("describe the clip in the source prompt first (e.g. 'a rabbit is jumping on the grass')")
        run = self._logged(prepare, pipe=self.pipe, frames=self.clip.frames, source=source, settings=self.settings,
                           work_dir=self.clip.work_dir, progress=self._bars(),
                           on_stage=lambda name: self._stage(name, source))
        self.run = run
        self.controls["run"].disabled = False
        psnr = np.mean(run.inversion.frame_psnr)
        self.videos.value = (video_html(self.clip.frames, "input", "input")
                             + video_html(run.inversion.reconstruction, "reconstruction",
                                          f"reconstruction (inverted with '{source}', {psnr:.1f} dB)")
                             + "<div class='vp2p-caption'><i>edit: type a target prompt and press Edit</i></div>")
        warning = run.inversion.warning
        self.status.value = (f"ready: '{html.escape(source)}' — tuned and inverted ({psnr:.1f} dB)"
                             + (f"<br><b style='color:#a15c00'>{html.escape(warning)}</b>" if warning else ""))

    def edit(self):
        """Edit the prepared clip with the controls' values; show the edit and its attention."""
        if self.run is None:
            raise ValueError("prepare the clip first (Prepare clip)")
        source, target = self.run.inversion.prompt, self.controls["target"].value.strip()
        if self.controls["source"].value.strip() != source:
            raise ValueError(f"the source prompt changed since the clip was inverted with '{source}': press "
                             "Prepare clip to invert it again, or restore the source prompt")
        if not target:
            raise ValueError("type a target prompt (e.g. the source prompt with one word changed)")
        options = edit_options(self.controls)
        result = self._logged(recorded_edit, pipe=self.pipe, run=self.run, prompts=[source, target],
                              settings=self.settings, progress=self._bars(), **options)
        self.last_edit = result
        self._show_edit(result)
        return result

    def _show_edit(self, result):
        caption = f"edit → '{result.prompts[1]}' ({result.seconds:.1f} s)"
        if self.clip is not None and self.clip.scene is not None:
            caption += f" — the toy evaluator reads: {evaluator.reading_text(result.edited)}"
        self.videos.value = (video_html(self.clip.frames, "input", "input")
                             + video_html(self.run.inversion.reconstruction, "reconstruction", "reconstruction")
                             + video_html(result.edited, "edit", caption, prompt=result.prompts[1]))
        self.attention = StudioAttention(result, self.pipe.tokenizer, pipe=self.pipe)
        self.attention_box.children = [self.attention.app()]
        self.pin.disabled = False
        self._show_ab()
        self.status.value = f"edited in {result.seconds:.1f} s"

    def pin_edit(self):
        """Keep the last edit as A: the edits after it show beside it (B) in the A/B tab."""
        if self.last_edit is None:
            raise ValueError("edit first, then pin the edit as A")
        self.pinned = self.last_edit
        self._show_ab()

    def _show_ab(self):
        """A (pinned) and B (the last edit): both playing, and frame by frame with |A − B|."""
        a, b = self.pinned, self.last_edit
        if a is None:
            self.ab_view.children = [widgets.HTML(NO_AB)]
            return
        names = (f"A: '{a.prompts[1]}'", f"B: '{b.prompts[1]}'" + (" (= A: edit again to compare)" if a is b
                                                                    else ""))
        with plt.rc_context(PROJECTOR_RC):
            fig = viz.ab_comparison(a.edited, b.edited, names)
        plt.close(fig)
        self.ab_difference = readings.ab_difference(a.edited, b.edited)
        image = widgets.Image(value=viz.png_bytes(fig), format="png", layout=widgets.Layout(max_width="100%"))
        self.ab_view.children = [clips(dict(zip(names, (a.edited, b.edited)))), image]

    def edited_frames(self) -> np.ndarray | None:
        """The frames of the last edit, uint8 (F, H, W, 3)."""
        return None if self.last_edit is None else self.last_edit.edited
