"""Interactive panels (ipywidgets) for the editing notebooks: change the prompt or a knob, re-run, redraw.

Every panel has ``controls`` (name → widget), ``update()`` (run with the controls' values and redraw; returns what
it computed), ``figure`` (the last figure drawn) and ``show()`` (the controls and the figure in a notebook). Tests
and scripts drive them from Python::

    w = EditWidget(pipe, run, settings, target="a blue circle bouncing on the grass")
    w.controls["target"].value = "a green circle bouncing on the grass"
    w.update()          # -> w.last_edit (a vp2p.EditResult), w.figure (redrawn)

``show()`` displays the figure through a display handle: in a live notebook each update replaces it in place;
executed without a front end (CI, nbconvert) the cell keeps the figure of the defaults as a static output.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import matplotlib.pyplot as plt

from vp2p import viz
from vp2p.editing import parse_weights  # noqa: F401  (part of the panels' API)
from vp2p.workflow import Run, Settings, edit_run


def _wide() -> dict:
    """Layout and style of a full-width control with a readable description."""
    return {"layout": widgets.Layout(width="95%"), "style": {"description_width": "160px"}}


def _fraction() -> dict:
    return {"min": 0.0, "max": 1.0, "step": 0.05, "continuous_update": False, **_wide()}


def parse_words(text: str) -> list[str]:
    """'circle' or 'red, circle' → ['circle'] / ['red', 'circle'] (a word may be a phrase: 'red circle')."""
    return [w.strip() for w in text.split(",") if w.strip()]


class FigurePanel:
    """Base of the panels: controls, a status line, and a figure redrawn by ``update``."""

    def __init__(self):
        self.controls: dict[str, widgets.Widget] = {}
        self.status = widgets.HTML()
        self.figure = None
        self._handle = None

    def update(self):
        raise NotImplementedError

    def _redraw(self, fig):
        plt.close(fig)  # shown through the display handle only, not again by the inline backend
        self.figure = fig
        if self._handle is not None:
            self._handle.update(fig)
        return fig

    def _safe_update(self, *_):
        """Callback of buttons and sliders: errors (a word missing from a prompt…) go to the status line."""
        self.status.value = "<i>running…</i>"
        try:
            self.update()
            self.status.value = ""
        except ValueError as error:
            self.status.value = f"<b style='color:#b00020'>{html.escape(str(error))}</b>"

    def box(self) -> widgets.VBox:
        return widgets.VBox(list(self.controls.values()) + [self.status])

    def show(self):
        """Display the controls and the figure (computed with the current controls if not drawn yet)."""
        from IPython.display import display

        if self.figure is None:
            self.update()
        display(self.box())
        self._handle = display(self.figure, display_id=True)


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
        blend = blend_words or ["", ""]
        weights = _weights_text(eq_params)
        cross = settings.cross_replace_steps if cross_replace_steps is None else cross_replace_steps
        if not isinstance(cross, (int, float)):
            raise ValueError(f"the panel's slider takes one fraction for cross_replace_steps, got {cross!r}")
        c = self.controls
        c["source"] = widgets.Text(value=run.inversion.prompt, description="source (inverted)", disabled=True,
                                   **_wide())
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
        c["weights"] = widgets.Text(value=weights, description="word weights", placeholder="e.g. striped=2",
                                    **_wide())
        c["decoupled"] = widgets.Checkbox(value=decoupled, description="decoupled guidance", **_wide())
        c["run"] = widgets.Button(description="Edit", button_style="primary", icon="play")
        c["run"].on_click(self._safe_update)

    def options(self) -> dict:
        """The keyword arguments of ``edit_run`` the controls stand for."""
        c = self.controls
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

    def update(self):
        prompts = [self.run.inversion.prompt, self.controls["target"].value.strip()]
        self.last_edit = edit_run(self.pipe, self.run, prompts, self.settings, progress=False, **self.options())
        self._redraw(viz.video_strip({"input": self.run.inversion.frames, "source branch": self.last_edit.source,
                                      "edit": self.last_edit.edited}, title=f"→ '{prompts[1]}'"))
        return self.last_edit


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
        """The edits at several weights (computed once each)."""
        return {float(w): self.edit_at(w) for w in weights}

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
