"""The edit studio: one screen to pick a clip, type the prompts, press Edit, and look inside the edit.

    app = Studio(pipe)     # course settings; clips cached in $VP2P_STUDIO_WORK or course.runs_dir()/notebooks
    app.show()             # in a notebook — or served as an app: voila notebooks/studio.ipynb

The long stages — tuning and inversion — run once per clip, with progress bars, and are cached in the clip's work
folder (``workflow.prepare(..., work_dir=...)``, the same folders notebooks 02–06 use); an edit of a prepared clip
takes seconds on the toy model. Every edit runs with an ``AttentionRecorder`` so that the attention panel can show
any layer, head, step and branch, the temporal attention of a pixel, and target − source. Errors (a blend word
missing from its prompt, a clip that cannot be read…) land in the status line, never as a traceback.

Tests and scripts drive it as the browser does: set a control's value, then ``select(...)``, ``prepare()`` or
``edit()``. In the page, the videos are ``<img class="vp2p-video" data-role="input|reconstruction|edit">`` strips
of lossless PNG frames side by side (``data-frames`` of them), so a browser test can read the pixels back.
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as widgets
import numpy as np
from PIL import Image

from vp2p import course
from vp2p.inspect.recorder import recorded_edit
from vp2p.toy import world
from vp2p.course.widgets import AttentionDebugWidget, edit_controls, edit_options, error_html
from vp2p.workflow import prepare

WORK_ENV = "VP2P_STUDIO_WORK"  # a folder holding one work folder per clip (tests point it at a prepared cache)
UPLOAD = "your own clip (upload it below)"
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


def video_html(frames: np.ndarray, role: str, caption: str, prompt: str = "") -> str:
    """One labelled row: the frames side by side in one PNG ``<img>`` (``data-role``, ``data-frames``,
    ``data-prompt`` say what it shows)."""
    shown = shown_frames(frames)
    strip = np.concatenate(list(shown), axis=1)
    return (f"<div style='margin:6px 0'><div style='font-size:12px;color:#444'>{html.escape(caption)}</div>"
            f"<img class='vp2p-video' data-role='{role}' data-frames='{len(frames)}' "
            f"data-prompt='{html.escape(prompt, quote=True)}' src='{png_data_url(strip)}' "
            "style='width:100%;image-rendering:pixelated'></div>")


def reading_text(frames: np.ndarray) -> str:
    """What the toy evaluator reads in a video, e.g. 'blue circle on the grass'."""
    from vp2p.toy import evaluator

    reading = evaluator.read_video(frames)
    thing = " ".join(w for w in (reading.color, reading.attribute, reading.shape) if w) or "no object"
    return f"{thing} on the {reading.background}{' at night' if reading.night else ''}"


class Studio:
    """The app: clip picker and upload, prompts and edit knobs, input / reconstruction / edit, attention panel.

    ``settings`` default to the course's (``course.settings(pipe)``: 25 DDIM steps on the toy model); ``root``
    is the cache of prepared clips (``work_root``); ``scenes`` the toy clips on offer (caption → scene).
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
        self.controls = self._controls()
        self._app = None

    # -- widgets
    def _controls(self) -> dict[str, widgets.Widget]:
        c = {"clip": widgets.Dropdown(options=list(self.scenes) + [UPLOAD], value=None, description="clip",
                                      layout=widgets.Layout(width="60%"))}
        c["upload"] = widgets.FileUpload(accept=".mp4,.gif,.webm,.mov,.avi,.mkv", multiple=False,
                                         description="upload a clip")
        c["prepare"] = widgets.Button(description="Prepare clip", icon="cogs",
                                      tooltip="tune and invert the clip (once; cached)")
        c.update(edit_controls(self.settings, "", ""))
        c["source"].disabled = False
        c["source"].description = "source prompt"
        c["source"].placeholder = "describe the clip, e.g. a rabbit is jumping on the grass"
        c["target"].add_class("vp2p-target")
        c["run"].add_class("vp2p-edit")
        c["run"].disabled = True
        c["clip"].observe(self._on_clip, names="value")
        c["upload"].observe(self._on_upload, names="value")
        c["prepare"].on_click(lambda _: self._guarded(self.prepare))
        c["run"].on_click(lambda _: self._guarded(self.edit))
        return c

    def app(self) -> widgets.Widget:
        """The whole screen as one widget: settings and videos on the left, attention on the right."""
        if self._app is None:
            c = self.controls
            more = widgets.Accordion([widgets.VBox([c["cross_replace_steps"], c["self_replace_steps"],
                                                    c["threshold"], c["decoupled"]])], titles=("more knobs",))
            more.selected_index = None
            left = widgets.VBox([
                widgets.HBox([c["clip"], c["prepare"]]), c["upload"], c["source"], c["target"], c["mode"],
                c["blend_source"], c["blend_target"], c["weights"], more, c["run"], self.status, self.log,
                self.videos,
            ], layout=widgets.Layout(width="50%", padding="0 12px 0 0"))
            right = widgets.VBox([widgets.HTML("<b>attention of the last edit</b>"), self.attention_box],
                                 layout=widgets.Layout(width="50%"))
            self._app = widgets.HBox([left, right], layout=widgets.Layout(width="100%")).add_class("vp2p-studio")
        return self._app

    def show(self):
        """Display the app and prepare the first clip (progress bars in the app; instant when cached)."""
        from IPython.display import display

        display(self.app())
        if self.clip is None:
            self.controls["clip"].value = next(iter(self.scenes))  # its observer prepares it

    # -- actions (each also a button or a control's callback)
    def _guarded(self, action, *args):
        """Run ``action`` from a callback: buttons off while it runs, any error to the status line."""
        buttons = [self.controls["prepare"], self.controls["run"]]
        for button in buttons:
            button.disabled = True
        self.status.value = "<i>working…</i>"
        try:
            action(*args)
        except Exception as error:  # an app shows every error in its status line, never a traceback
            self.status.value = error_html(error if isinstance(error, ValueError) else
                                           RuntimeError(f"{type(error).__name__}: {error}"))
        finally:
            buttons[0].disabled = False
            buttons[1].disabled = self.run is None  # Edit needs a prepared clip

    def _on_clip(self, change):
        name = change["new"]
        if name is None:
            return
        if name == UPLOAD:
            self.status.value = "upload a clip, describe it in the source prompt, then press <b>Prepare clip</b>"
            return
        if name in self.scenes:
            self._guarded(self.select, name)

    def _on_upload(self, change):
        files = change["new"]
        if files:
            item = files[0]
            self._guarded(self.use_clip, uploaded_clip(self.pipe, item["name"], item["content"], self.root))

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
        self.clip, self.run, self.last_edit = clip, None, None
        c = self.controls
        c["run"].disabled = True  # until the clip is prepared
        c["source"].value = c["target"].value = clip.source
        if not clip.source:
            c["blend_source"].value = c["blend_target"].value = ""
        self.videos.value = video_html(clip.frames, "input", "input")
        self.status.value = ("" if clip.source else
                             "describe your clip in the source prompt, then press <b>Prepare clip</b>")

    def prepare(self):
        """Tune and invert the current clip with the source prompt (cached in its work folder), then show the
        input and the reconstruction."""
        if self.clip is None:
            raise ValueError("pick a clip (or upload one) first")
        source = self.controls["source"].value.strip()
        if not source:
            raise ValueError("describe the clip in the source prompt first (e.g. 'a rabbit is jumping on the grass')")
        try:
            with self.log:
                self.run = prepare(self.pipe, self.clip.frames, source, self.settings, work_dir=self.clip.work_dir,
                                   progress=self.progress)
        finally:
            self.log.clear_output()  # the bars were for the wait; finished, they would only take room
        self.last_edit = None
        self.controls["run"].disabled = False
        psnr = np.mean(self.run.inversion.frame_psnr)
        self.videos.value = (video_html(self.clip.frames, "input", "input")
                             + video_html(self.run.inversion.reconstruction, "reconstruction",
                                          f"reconstruction (inverted with '{source}', {psnr:.1f} dB)")
                             + "<div style='font-size:12px;color:#444'><i>edit: type a target prompt and press "
                               "Edit</i></div>")
        self.status.value = f"ready: '{source}' — tuned and inverted (cached in {self.clip.work_dir})"

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
        try:
            with self.log:
                result = recorded_edit(self.pipe, self.run, [source, target], self.settings,
                                       progress=self.progress, **options)
        finally:
            self.log.clear_output()
        self.last_edit = result
        self._show_edit(result)
        return result

    def _show_edit(self, result):
        caption = f"edit → '{result.prompts[1]}' ({result.seconds:.1f} s)"
        if self.clip is not None and self.clip.scene is not None:
            caption += f" — the toy evaluator reads: {reading_text(result.edited)}"
        self.videos.value = (video_html(self.clip.frames, "input", "input")
                             + video_html(self.run.inversion.reconstruction, "reconstruction", "reconstruction")
                             + video_html(result.edited, "edit", caption, prompt=result.prompts[1]))
        self.attention = AttentionDebugWidget(result, self.pipe.tokenizer)
        self.attention_box.children = [self.attention.app()]
        self.status.value = f"edited in {result.seconds:.1f} s"

    def edited_frames(self) -> np.ndarray | None:
        """The frames of the last edit, uint8 (F, H, W, 3)."""
        return None if self.last_edit is None else self.last_edit.edited
