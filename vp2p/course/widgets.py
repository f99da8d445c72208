"""Interactive panels (ipywidgets) for the editing notebooks: change the prompt or a knob, re-run, redraw.

Every panel has ``controls`` (name → widget), ``update()`` (run with the controls' values and redraw; returns what
it computed), ``figure`` (the last figure drawn) and ``show()`` (the controls and the figure in a notebook). Tests
and scripts drive them from Python::

    w = EditWidget(pipe, run, settings, target="a blue circle bouncing on the grass")
    w.controls["target"].value = "a green circle bouncing on the grass"
    w.update()          # -> w.last_edit (a vp2p.EditResult), w.figure (redrawn)

``show()`` displays the figure through a display handle: in a live notebook each update replaces it in place;
executed without a front end (CI, nbconvert) the cell keeps the figure of the defaults as a static output.
``app()`` gives the same panel as one widget whose figure is a PNG image (for apps: the studio, Voilà).

Panels: ``EditWidget`` (edit a prepared run), ``AttentionWidget`` (per-token maps, mean over heads, layers and
steps so far), ``AttentionDebugWidget`` (what an ``AttentionRecorder`` kept: one layer, head, step and branch;
the temporal and the frame attention of a pixel; target − source; the shares of the start token, the words and
the padding; LocalBlend's score with a live threshold; the clean frames x̂_0 predicted at each step),
``ABWidget`` (two edits side by side), ``WeightWidget`` (reweight one word). ``clips(...)`` plays videos as
looping GIFs.

Picking a pixel: the row and column sliders always work; with ``ipyevents`` installed (``pip install
ipyevents``, optional) a click on the debug panel's picker image (the frame, enlarged) sets them too —
ipywidgets alone cannot receive a click on an image.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

from vp2p.inspect import readings, viz
from vp2p.editing import parse_weights  # noqa: F401  (part of the panels' API)
from vp2p.inspect.recorder import AttentionRecorder, recorded_edit
from vp2p.workflow import Run, Settings, edit_run, edit_sweep


def _wide() -> dict:
    """Layout and style of a full-width control with a readable description."""
    return {"layout": widgets.Layout(width="95%"), "style": {"description_width": "160px"}}


def _fraction() -> dict:
    return {"min": 0.0, "max": 1.0, "step": 0.05, "continuous_update": False, **_wide()}


def parse_words(text: str) -> list[str]:
    """'circle' or 'red, circle' → ['circle'] / ['red', 'circle'] (a word may be a phrase: 'red circle')."""
    return [w.strip() for w in text.split(",") if w.strip()]


class FigurePanel:
    """Base of the panels: controls, a status line, and a figure redrawn by ``update``.

    Two ways to show it: ``show()`` (notebooks: the figure through a display handle) or ``app()`` (a widget tree
    whose figure is a PNG in an ``Image`` widget — for apps served with Voilà and panels inside other panels).
    """

    def __init__(self):
        self.controls: dict[str, widgets.Widget] = {}
        self.status = widgets.HTML()
        self.figure = None
        self.image: widgets.Image | None = None
        self._handle = None

    def update(self):
        raise NotImplementedError

    def _redraw(self, fig):
        plt.close(fig)  # shown through the display handle or the image only, not again by the inline backend
        self.figure = fig
        if self._handle is not None:
            self._handle.update(fig)
        if self.image is not None:
            self.image.value = viz.png_bytes(fig)
        return fig

    def _safe_update(self, *_):
        """Callback of buttons and sliders: every error (a word missing from a prompt, and any other) ends the
        "running…" line as one line of its own — a callback's exception would otherwise be lost in a log."""
        self.status.value = "<i>running…</i>"
        try:
            self.update()
            self.status.value = ""
        except Exception as error:  # noqa: BLE001 — shown, not raised: nobody would see it raised
            self.status.value = error_html(error)

    def box(self) -> widgets.VBox:
        return widgets.VBox(list(self.controls.values()) + [self.status])

    def show(self):
        """Display the controls and the figure (computed with the current controls if not drawn yet)."""
        from IPython.display import display

        if self.figure is None:
            self.update()
        display(self.box())
        self._handle = display(self.figure, display_id=True)

    def app(self) -> widgets.VBox:
        """The controls, the status line and the figure as one widget (the figure redrawn into it)."""
        if self.image is None:
            self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
            if self.figure is None:
                self.update()
            else:
                self.image.value = viz.png_bytes(self.figure)
        return widgets.VBox([self.box(), self.image])


def error_text(error: Exception) -> str:
    """An error as one line: vp2p's messages about what it was given (ValueError and its kin) as they are, they say
    what to do; any other error with its type, which says where it came from."""
    text = " ".join(str(error).split()) or "(no message)"
    told = isinstance(error, (ValueError, TypeError, FileNotFoundError, FileExistsError, PermissionError))
    return text if told else f"{type(error).__name__}: {text}"


def error_html(error: Exception) -> str:
    """An error as the red status line of a panel (one line, the message says what to do; no traceback)."""
    return f"<b style='color:#b00020'>{html.escape(error_text(error))}</b>"


def edit_controls(settings: Settings, source: str, target: str, blend_words=None, is_word_swap=True,
                  eq_params=None, cross_replace_steps=None, self_replace_steps=None, threshold=None,
                  decoupled: bool = True) -> dict[str, widgets.Widget]:
    """The controls of an edit (name → widget): source (read-only) and target prompts, Replace/Refine, blend words
    of each prompt, cross- and self-attention replacement steps, blend threshold, word weights, decoupled
    guidance, and an Edit button (``run``). Defaults from ``settings``."""
    blend = blend_words or ["", ""]
    cross = settings.cross_replace_steps if cross_replace_steps is None else cross_replace_steps
    if not isinstance(cross, (int, float)):
        raise ValueError(f"the panel's slider takes one fraction for cross_replace_steps, got {cross!r}")
    c = {}
    c["source"] = widgets.Text(value=source, description="source (inverted)", disabled=True, **_wide())
    c["target"] = widgets.Text(value=target, description="target prompt", **_wide())
    c["mode"] = widgets.ToggleButtons(options=["Replace", "Refine"], value="Replace" if is_word_swap else "Refine",
                                      description="edit type", style=_wide()["style"])
    c["blend_source"] = widgets.Text(value=", ".join(_as_list(blend[0])), description="blend words (source)",
                                     placeholder="e.g. circle — empty: no local blend", **_wide())
    c["blend_target"] = widgets.Text(value=", ".join(_as_list(blend[1])), description="blend words (target)",
                                     **_wide())
    c["cross_replace_steps"] = widgets.FloatSlider(value=float(cross), description="cross replace steps",
                                                   **_fraction())
    c["self_replace_steps"] = widgets.FloatSlider(
        value=float(settings.self_replace_steps if self_replace_steps is None else self_replace_steps),
        description="self replace steps", **_fraction())
    c["threshold"] = widgets.FloatSlider(value=float(settings.threshold if threshold is None else threshold),
                                         description="blend threshold", **_fraction())
    c["weights"] = widgets.Text(value=_weights_text(eq_params), description="word weights",
                                placeholder="e.g. striped=2", **_wide())
    c["decoupled"] = widgets.Checkbox(value=decoupled, description="decoupled guidance", **_wide())
    c["run"] = widgets.Button(description="Edit", button_style="primary", icon="play")
    return c


def edit_options(controls: dict[str, widgets.Widget]) -> dict:
    """The keyword arguments of ``recorder.recorded_edit`` (``workflow.edit_run``'s options and ``decoupled``)
    that ``edit_controls`` stand for; a half-given blend is an error that says what to do."""
    c = controls
    source_words, target_words = parse_words(c["blend_source"].value), parse_words(c["blend_target"].value)
    if bool(source_words) != bool(target_words):
        raise ValueError("give blend words for both prompts (e.g. 'circle' and 'circle') or for neither")
    options = dict(is_word_swap=c["mode"].value == "Replace", cross_replace_steps=c["cross_replace_steps"].value,
                   self_replace_steps=c["self_replace_steps"].value, threshold=c["threshold"].value,
                   decoupled=c["decoupled"].value)
    if source_words:
        options["blend_words"] = [source_words, target_words]
    weights = parse_weights(c["weights"].value)
    if weights:
        options["eq_params"] = weights
    return options


class EditWidget(FigurePanel):
    """Edit a prepared ``run`` (``vp2p.workflow.prepare``) towards a target prompt; the figure shows the input,
    the source branch and the edit. Controls: target prompt, Replace/Refine, blend words of each prompt, cross- and
    self-attention replacement steps, blend threshold, word weights, decoupled guidance, and an Edit button."""

    def __init__(self, pipe, run: Run, settings: Settings, target: str, blend_words=None, is_word_swap=True,
                 eq_params=None, cross_replace_steps=None, self_replace_steps=None, threshold=None,
                 decoupled: bool = True):
        super().__init__()
        self.pipe, self.run, self.settings = pipe, run, settings
        self.last_edit = None
        self.controls.update(edit_controls(settings, run.inversion.prompt, target, blend_words, is_word_swap,
                                           eq_params, cross_replace_steps, self_replace_steps, threshold, decoupled))
        self.controls["run"].on_click(self._safe_update)

    def options(self) -> dict:
        """The keyword arguments of ``recorder.recorded_edit`` the controls stand for."""
        return edit_options(self.controls)

    def update(self):
        prompts = [self.run.inversion.prompt, self.controls["target"].value.strip()]
        return self.draw(recorded_edit(self.pipe, self.run, prompts, self.settings, record=False, **self.options()))

    def draw(self, edit):
        """Show ``edit`` (an ``EditResult`` of this run made with the controls' values, e.g. a recorded edit that
        the notebook reads further) as the panel's edit, without editing again; returns it."""
        self.last_edit = edit
        self._redraw(viz.video_strip({"input": self.run.inversion.frames, "source branch": edit.source,
                                      "edit": edit.edited}, title=f"→ '{edit.prompts[1]}'"))
        return edit


class AttentionWidget(FigurePanel):
    """Per-frame cross-attention maps of every token of an ``EditResult``, averaged over the steps up to the slider's
    step (``EditResult.maps(step=…)``), for the source or a target branch."""

    def __init__(self, edit, tokenizer, branch: int = 1, step: int | None = None, resolution: int | None = None,
                 overlay: bool = True):
        super().__init__()
        self.edit, self.tokenizer, self.resolution, self.overlay = edit, tokenizer, resolution, overlay
        self.maps = None
        steps = edit.controller.steps_done
        names = [("source", 0)] + [(f"target {i}" if len(edit.prompts) > 2 else "target", i)
                                   for i in range(1, len(edit.prompts))]
        self.controls["step"] = widgets.IntSlider(value=steps - 1 if step is None else step, min=0, max=steps - 1,
                                                  description="maps up to step", continuous_update=False, **_wide())
        self.controls["branch"] = widgets.Dropdown(options=names, value=branch, description="branch",
                                                   style=_wide()["style"])
        for control in self.controls.values():
            control.observe(self._safe_update, names="value")

    def update(self):
        step, branch = self.controls["step"].value, self.controls["branch"].value
        self.maps = self.edit.maps(self.resolution, step=step)[branch]
        prompt = self.edit.prompts[branch]
        self._redraw(viz.attention_grid(self.maps, viz.token_labels(self.tokenizer, prompt),
                                        video=self.edit.videos[branch] if self.overlay else None,
                                        title=f"'{prompt}': cross-attention, mean over steps 0–{step}"))
        return self.maps


MEAN = "mean"  # the head control's "mean of the heads" (a Dropdown shows a None value as no selection)


class AttentionDebugWidget(FigurePanel):
    """One level below ``AttentionWidget``: what an ``AttentionRecorder`` kept during an edit (``vp2p.edit(...,
    controller=AttentionRecorder(make_controller(...)))``), per layer, head, step and branch — not averaged away.

    Views: ``"tokens"`` (each frame's cross-attention of each token, with that step's blend mask; colour scale
    shared or per map, one click; the frame under the map in greyscale or colour), ``"temporal"`` (the temporal
    attention of one pixel across frames), ``"frame"`` (where one pixel of each frame looks in frame 0),
    ``"diff"`` (target − source cross-attention: where the edit injected the source's maps it is zero, where it
    changed attention it is not), ``"shares"`` (the start token's, each word's, the end token's and the
    padding's share of the cross-attention), ``"blend"`` (LocalBlend's score from the recorded maps and its mask
    at the threshold slider's value — the mask the edit used is the one at the edit's threshold), ``"clean"``
    (the clean frames x̂_0 the model predicted at the step, decoded; needs ``pipe``). The layer control offers
    the mean of all layers at a resolution, or one layer (place, resolution, block); the head control the mean
    of the heads or one head; the step slider one step; the pixel (temporal, frame): the row and column sliders,
    or a click on the picker image with ``ipyevents``.
    """

    VIEWS = (("cross-attention per token", "tokens"), ("temporal attention of a pixel", "temporal"),
             ("frame attention of a pixel (over frame 0)", "frame"), ("target − source (cross-attention)", "diff"),
             ("token shares (start token, words, padding)", "shares"), ("blend score, live threshold", "blend"),
             ("predicted clean frames x̂₀", "clean"))
    USES = {  # the controls each view reads (the others are hidden)
        "tokens": {"layer", "head", "scaling", "underlay"}, "temporal": {"layer", "head", "row", "column"},
        "frame": {"layer", "row", "column", "underlay"}, "diff": {"layer", "head"}, "shares": {"layer", "head"},
        "blend": {"threshold"}, "clean": set()}
    OPTIONAL = ("layer", "head", "scaling", "underlay", "row", "column", "threshold")

    def __init__(self, edit, tokenizer, view: str = "tokens", step: int | None = None, branch: int = 1,
                 scaling: str = "shared", pixel: tuple[float, float] = (0.5, 0.5), pipe=None,
                 underlay: str = "grey", threshold: float | None = None):
        super().__init__()
        recorder = edit.controller
        if not isinstance(recorder, AttentionRecorder) or not recorder.recorded_steps():
            raise ValueError("this edit kept no per-layer attention: edit with controller=vp2p.inspect.recorder."
                             "AttentionRecorder(vp2p.make_controller(...))")
        self.edit, self.tokenizer, self.recorder, self.pipe = edit, tokenizer, recorder, pipe
        self.data = None
        self._quiet = False
        self.picker: widgets.Image | None = None
        steps = recorder.recorded_steps()
        branches = [("source", 0)] + [(f"target {i}" if len(edit.prompts) > 2 else "target", i)
                                      for i in range(1, len(edit.prompts))]
        blend = getattr(recorder.inner, "local_blend", None)
        style = _wide()["style"]
        c = self.controls
        c["view"] = widgets.Dropdown(options=self.VIEWS, value=view, description="view", **_wide())
        c["layer"] = widgets.Dropdown(description="layer", **_wide())
        c["head"] = widgets.Dropdown(description="head", style=style)
        c["step"] = widgets.SelectionSlider(options=steps, value=steps[-1] if step is None else step,
                                            description="step", continuous_update=False, **_wide())
        c["branch"] = widgets.Dropdown(options=branches, value=branch, description="branch", style=style)
        c["scaling"] = widgets.ToggleButtons(options=viz.SCALINGS, value=scaling, description="colour scale",
                                             style=style)
        c["underlay"] = widgets.ToggleButtons(options=viz.UNDERLAYS, value=underlay, description="frame under map",
                                              style=style)
        c["row"] = widgets.FloatSlider(value=pixel[0], description="pixel row", **_fraction())
        c["column"] = widgets.FloatSlider(value=pixel[1], description="pixel column", **_fraction())
        default = blend.threshold if blend is not None else 0.3
        c["threshold"] = widgets.FloatSlider(value=default if threshold is None else threshold, min=0.0, max=1.0,
                                             step=0.01, description="blend threshold", continuous_update=False,
                                             **_wide())
        self._layer_choices()
        c["view"].observe(self._view_changed, names="value")
        for name, control in c.items():
            if name != "view":
                control.observe(self._changed, names="value")

    def kind(self) -> str:
        view = self.controls["view"].value
        return view if view in ("temporal", "frame") else "cross"

    def _layer_choices(self):
        """Layer and head options of the view's kind (cross, temporal or frame); shows only the controls the view
        uses."""
        kind, c, view = self.kind(), self.controls, self.controls["view"].value
        for name in self.OPTIONAL:
            c[name].layout.display = "" if name in self.USES[view] else "none"
        if self.picker is not None:
            self.picker.layout.display = "" if {"row", "column"} <= self.USES[view] else "none"
        if kind == getattr(self, "_kind", None):  # tokens ↔ diff ↔ shares: the same layers, keep the choice
            return
        layers = self.recorder.layers(kind)
        if not layers:
            raise ValueError(f"no {kind} attention was recorded in this edit; record it with "
                             f"AttentionRecorder(kinds=[..., {kind!r}])")
        means = [(f"mean of the {kind} layers at {r}×{r}", ("resolution", r)) for r in self.recorder.resolutions(kind)]
        self._quiet = True  # one redraw after all the options changed, not one per option
        c["layer"].options = means[::-1] + [(r.label, ("layer", r.name)) for r in layers]
        c["layer"].value = means[-1][1]  # the finest resolution, all its layers
        c["head"].options = [("mean of the heads", MEAN)] + [(f"head {h}", h)
                                                              for h in range(min(r.heads for r in layers))]
        c["head"].value = MEAN
        self._quiet = False
        self._kind = kind

    def _view_changed(self, *_):
        try:
            self._layer_choices()
        except ValueError as error:
            self.status.value = error_html(error)
            return
        self._safe_update()

    def _changed(self, *_):
        if not self._quiet:
            self._safe_update()

    def selection(self) -> dict:
        """The chosen step, branch, head and layer(s) as keyword arguments of the recorder's readers."""
        c = self.controls
        how, value = c["layer"].value
        head = None if c["head"].value == MEAN else c["head"].value
        return {"step": c["step"].value, "branch": c["branch"].value, "head": head, how: value}

    def mask_at(self, step: int, branch: int):
        """The blend mask (F, H, W) LocalBlend applied at ``step`` to ``branch``, or None (no blend at that step)."""
        masks = self.edit.blend_masks
        if masks is None:
            return None
        index = step - (self.recorder.num_steps - len(masks))  # blending runs from its start step to the end
        return masks[index, branch] if 0 <= index < len(masks) else None

    def pixel(self) -> tuple[float, float]:
        return self.controls["row"].value, self.controls["column"].value

    def pick(self, row: float, column: float):
        """Choose the pixel at (row, column) fractions of the frame (a click on the picker does this): one redraw."""
        c = self.controls
        self._quiet = True
        c["row"].value, c["column"].value = (round(min(max(v, 0.0), 1.0), 2) for v in (row, column))
        self._quiet = False
        self._safe_update()

    def _on_click(self, event: dict):
        """An ipyevents click on the picker image: its position within the image as the pixel."""
        self.pick(event["relativeY"] / max(event["boundingRectHeight"], 1),
                  event["relativeX"] / max(event["boundingRectWidth"], 1))

    def update(self):
        c, sel = self.controls, self.selection()
        view, branch, step = c["view"].value, sel["branch"], sel["step"]
        prompt, video = self.edit.prompts[branch], self.edit.videos[branch]
        what = f"{c['layer'].label} · {c['head'].label} · step {step}"
        labels = viz.token_labels(self.tokenizer, prompt)
        if view == "temporal":
            self.data = self.recorder.pixel_temporal(self.pixel(), **sel)
            fig = viz.temporal_attention(self.data, video, self.pixel(), title=f"temporal attention · {what}")
        elif view == "frame":
            sel.pop("head")
            self.data = self.recorder.pixel_frame(self.pixel(), **sel)
            fig = viz.frame_attention(self.data, video, points=[self.pixel()], underlay=c["underlay"].value,
                                      title=f"frame attention: where pixel {self.pixel()} of each frame looks in "
                                            f"frame 0 · {c['layer'].label} · step {step}")
        elif view == "diff":
            if branch == 0:
                raise ValueError("the diff compares a target branch with the source: choose a target branch")
            self.data = self.recorder.diff_maps(**sel)
            fig = viz.attention_diff(self.data, labels, video=video, title=f"'{prompt}' − source · {what}")
        elif view == "shares":
            self.data = readings.token_shares(self.recorder, self.tokenizer, prompt, **sel)
            fig = viz.token_shares(self.data, title=f"'{prompt}' · {what}")
        elif view == "blend":
            threshold = c["threshold"].value
            self.data = readings.blend_score(self.recorder, step)
            fig = viz.blend_view(self.data, branch, threshold, video, applied=self.mask_at(step, branch),
                                 title=f"LocalBlend at step {step}: score and mask at threshold {threshold:.2f} "
                                       "(yellow: differs from the edit's mask)")
        elif view == "clean":
            if self.pipe is None:
                raise ValueError("the clean-frame view decodes latents: give the panel the pipeline (pipe=pipe)")
            self.data = readings.clean_frames(self.pipe, self.recorder, step, branch)
            fig = viz.video_strip({f"x̂₀ at step {step}": self.data, "final": video},
                                  title=f"'{prompt}': the clean frames predicted at step {step}")
        else:
            self.data = self.recorder.cross_maps(**sel)
            fig = viz.attention_grid(self.data, labels, video=video, masks=self.mask_at(step, branch),
                                     scaling=c["scaling"].value, underlay=c["underlay"].value,
                                     title=f"'{prompt}' · {what}")
        self._redraw(fig)
        return self.data

    def picker_image(self) -> widgets.Image:
        """The branch's first frame, enlarged, to click a pixel on (with ``ipyevents``; else it only shows where
        the pixel is)."""
        if self.picker is None:
            frame = viz.greyscale(self.edit.videos[self.controls["branch"].value][0])
            self.picker = widgets.Image(value=viz.gif_bytes(frame[None], size=128), format="gif",
                                        layout=widgets.Layout(width="128px", height="128px"))
            self.picker.add_class("vp2p-picker")
            try:
                from ipyevents import Event
            except ImportError:  # optional: the sliders pick the pixel
                self.clicks = None
            else:
                self.clicks = Event(source=self.picker, watched_events=["click"])
                self.clicks.on_dom_event(self._on_click)
            self._layer_choices()
        return self.picker

    def box(self) -> widgets.VBox:
        return widgets.VBox(list(self.controls.values()) + ([self.picker] if self.picker else []) + [self.status])

    def app(self) -> widgets.VBox:
        self.picker_image()
        return super().app()


def clips(videos: dict[str, np.ndarray], fps: float = 8.0, size: int = 128) -> widgets.HBox:
    """Videos (name → uint8 (F, H, W, 3)) playing side by side, each a looping GIF with its name above it."""
    return widgets.HBox([widgets.VBox([widgets.HTML(f"<b>{html.escape(name)}</b>"),
                                       widgets.Image(value=viz.gif_bytes(video, fps, size), format="gif")])
                         for name, video in videos.items()])


class ABWidget(FigurePanel):
    """Two edits of one prepared ``run`` side by side (A/B): each side has the edit controls of ``EditWidget``
    (defaults: ``a`` and ``b``, dicts of ``EditWidget``'s arguments), one Edit button runs both; the figure
    shows A, B and |A − B| frame by frame, ``clip`` plays both. An edit is computed once per set of options."""

    def __init__(self, pipe, run: Run, settings: Settings, a: dict, b: dict):
        super().__init__()
        self.pipe, self.run, self.settings = pipe, run, settings
        self.sides = {name: edit_controls(settings, run.inversion.prompt, **options)
                      for name, options in (("A", a), ("B", b))}
        for name, side in self.sides.items():
            side.pop("run")
            for key, control in side.items():  # controls["A target"], controls["B threshold"], …
                control.description = f"{name}: {control.description}"
                self.controls[f"{name} {key}"] = control
        self.controls["run"] = widgets.Button(description="Edit A and B", button_style="primary", icon="play")
        self.controls["run"].on_click(self._safe_update)
        self.edits: dict[tuple, object] = {}
        self.clip = widgets.HBox()
        self.last = None

    def edit_of(self, name: str):
        side = self.sides[name]
        prompts = [self.run.inversion.prompt, side["target"].value.strip()]
        options = edit_options(side)
        key = (prompts[1], repr(sorted(options.items())))
        if key not in self.edits:
            self.edits[key] = recorded_edit(self.pipe, self.run, prompts, self.settings, record=False, **options)
        return self.edits[key]

    def update(self):
        a, b = self.edit_of("A"), self.edit_of("B")
        self.last = (a, b)
        self.clip.children = clips({f"A: '{a.prompts[1]}'": a.edited, f"B: '{b.prompts[1]}'": b.edited}).children
        self._redraw(viz.ab_comparison(a.edited, b.edited, (f"A: {a.prompts[1]}", f"B: {b.prompts[1]}")))
        return readings.ab_difference(a.edited, b.edited)

    def box(self) -> widgets.VBox:
        columns = [widgets.VBox(list(side.values())) for side in self.sides.values()]
        return widgets.VBox([widgets.HBox(columns), self.controls["run"], self.status, self.clip])


class WeightWidget(FigurePanel):
    """Reweight one word of the target prompt with a slider; each weight's edit is computed once and kept in
    ``edits`` (so a sweep and the slider share them). Other ``edit_run`` options are passed through."""

    def __init__(self, pipe, run: Run, settings: Settings, target: str, word: str, weight: float = 2.0,
                 max_weight: float = 4.0, **options):
        super().__init__()
        self.pipe, self.run, self.settings, self.target, self.word = pipe, run, settings, target, word
        self.options = options
        self.edits: dict[float, object] = {}
        self.controls["weight"] = widgets.FloatSlider(value=weight, min=0.0, max=max_weight, step=0.25,
                                                      description=f"weight of '{word}'", continuous_update=False,
                                                      **_wide())
        self.controls["weight"].observe(self._safe_update, names="value")

    def edit_at(self, weight: float):
        weight = float(weight)
        if weight not in self.edits:
            self.edits[weight] = edit_run(self.pipe, self.run, [self.run.inversion.prompt, self.target],
                                          self.settings, progress=False, eq_params={self.word: weight},
                                          **self.options)
        return self.edits[weight]

    def sweep(self, weights) -> dict[float, object]:
        """The edits at several weights: those not computed yet in one batch (``workflow.edit_sweep``)."""
        missing = sorted({float(w) for w in weights} - set(self.edits))
        if missing:
            swept = edit_sweep(self.pipe, self.run, [self.run.inversion.prompt, self.target], self.settings,
                               "eq_params", [{self.word: w} for w in missing], progress=False, **self.options)
            self.edits.update(zip(missing, swept))
        return {float(w): self.edits[float(w)] for w in weights}

    @property
    def last_edit(self):
        return self.edit_at(self.controls["weight"].value)

    def update(self):
        weight = self.controls["weight"].value
        result = self.edit_at(weight)
        self._redraw(viz.video_strip({"input": self.run.inversion.frames, f"'{self.word}' × {weight:g}":
                                      result.edited}, title=f"'{self.target}'"))
        return result


def _as_list(words) -> list[str]:
    return [words] if isinstance(words, str) else list(words)


def _weights_text(eq_params) -> str:
    if not eq_params:
        return ""
    from vp2p.editing import parse_eq_params

    return ", ".join(f"{w}={v:g}" for w, v in parse_eq_params(eq_params).items())
