"""The paper's rows and columns as data: which model, inversion and edit each row of Tables 1 and 2 uses, the
held-out toy clips and the edits made on them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from vp2p.paper import metrics
from vp2p.inversion import METHODS
from vp2p.toy import world


# ---------------------------------------------------------------- the paper's numbers

# Table 1 (45 DAVIS clips). Higher is better for CLIP score, masked PSNR and Temp; lower for LPIPS and OSV.
PAPER_TABLE1 = {
    "TAV+DDIM": {"clip_score": 0.3343, "masked_psnr": 17.37, "lpips": 0.4651, "osv": 55.67, "temp": 0.9697},
    "Image-P2P": {"clip_score": 0.3272, "masked_psnr": 22.92, "lpips": 0.3082, "osv": 76.92, "temp": 0.9021},
    "w/o MI": {"clip_score": 0.3213, "masked_psnr": 20.62, "lpips": 0.3255, "osv": 50.27, "temp": 0.9460},
    "w/o DG": {"clip_score": 0.3226, "masked_psnr": 18.97, "lpips": 0.3866, "osv": 68.75, "temp": 0.9451},
    "w/o SU": {"clip_score": 0.3351, "masked_psnr": 20.64, "lpips": 0.3221, "osv": 48.78, "temp": 0.9665},
    "Video-P2P": dict(metrics.PAPER_TABLE1),
}
# Table 2: reconstruction PSNR (dB) and optimised parameters, keyed by our row names. The paper lists three
# parameter counts for its last three rows (0.13 M beside TAV+DDIM although DDIM inversion optimises nothing;
# kept as printed).
PAPER_TABLE2 = {
    "VAE round trip": {"psnr": 24.73, "parameters": None},
    "DDIM": {"psnr": 15.43, "parameters": 0.13e6},
    "null-text, per frame": {"psnr": 22.97, "parameters": 22.68e6},
    "null-text, shared (Video-P2P)": {"psnr": 22.75, "parameters": 2.94e6},
}

# ---------------------------------------------------------------- rows as data

KINDS = ("video", "image")


@dataclass(frozen=True)
class Model:
    """The UNet a row edits with: the inflated video model (with its inflation options), tuned on the clip or not;
    or the image model (not inflated, vp2p's processors installed: every frame on its own)."""

    kind: str = "video"
    frame_keys: str = "first"
    group_norm: str = "video"
    tuned: bool = True

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Model kind={self.kind!r}; choose one of {KINDS}")
        if self.kind == "image" and self.tuned:
            raise ValueError("the image model is not tuned on the clip (tuning needs the inflated model); "
                             "use Model('image', tuned=False)")

    @property
    def slug(self) -> str:
        """A folder name: what the tuned weights of this model depend on besides the clip."""
        if self.kind == "image":
            return "image"
        tuned = "tuned" if self.tuned else "untuned"
        return f"video-{self.frame_keys.replace('+', '-')}-{self.group_norm}-groupnorm-{tuned}"


VIDEO_P2P_MODEL = Model()
IMAGE_MODEL = Model(kind="image", tuned=False)


@dataclass(frozen=True)
class Row:
    """One method: which model, which inversion, and how the edit runs.

    ``decoupled``: the target branch gets the initial empty-prompt embedding (Video-P2P) instead of the source's
    optimised ones; ``attention_control``: inject the source's attention maps (False: the target prompt alone,
    plain guided sampling from z_T); ``local_blend``: blend the latents outside the edited object.
    """

    name: str
    model: Model = VIDEO_P2P_MODEL
    inversion: str = "null-text"
    decoupled: bool = True
    attention_control: bool = True
    local_blend: bool = True
    about: str = ""

    def __post_init__(self):
        if self.inversion not in METHODS:
            raise ValueError(f"Row {self.name!r}: inversion={self.inversion!r}; choose one of {METHODS}")

    @property
    def in_paper(self) -> bool:
        return self.name in PAPER_TABLE1

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


ROWS = (
    Row("TAV+DDIM", inversion="ddim", attention_control=False, local_blend=False,
        about="tuned video model, DDIM inversion, the target prompt alone (no attention control, no blend)"),
    # Prompt-to-prompt's null-text code gives every branch the optimised embeddings: decoupled guidance is
    # Video-P2P's, so the image baseline runs without it.
    Row("Image-P2P", model=IMAGE_MODEL, inversion="null-text-per-frame", decoupled=False,
        about="the image model frame by frame: null-text inversion and prompt-to-prompt per frame"),
    Row("w/o MI", model=replace(VIDEO_P2P_MODEL, tuned=False), about="inflated but not tuned on the clip"),
    Row("w/o DG", decoupled=False, about="the target branch uses the source's optimised null embeddings"),
    Row("w/o SU", inversion="null-text-per-frame", about="one null embedding per frame instead of one shared"),
    Row("Video-P2P", about="tuned, shared null-text, decoupled guidance, attention control and local blend"),
    Row("no local blend", local_blend=False, about="Video-P2P without LocalBlend"),
    Row("fast inversion", inversion="fast", about="no null-text: the source branch is sampled without guidance"),
    Row("negative-prompt inversion", inversion="negative-prompt",
        about="no null-text: the source prompt's embedding stands in for the null one"),
    Row("first+previous frame keys", model=replace(VIDEO_P2P_MODEL, frame_keys="first+previous"),
        about="frame attention reads frame 0 and the previous frame (Tune-A-Video)"),
    Row("per-frame GroupNorm", model=replace(VIDEO_P2P_MODEL, group_norm="frame"),
        about="every GroupNorm normalises each frame on its own"),
)

# What `vp2p paper` runs by default: Table 1's six rows. The five after them tune two more models and optimise two
# more null-text inversions per clip, which would take a 20-clip run past 45 minutes on a 2-core CPU: run them by
# name, or all rows with `rows_named(["all"])` (`vp2p paper --rows all`).
TABLE1_ROWS = tuple(row for row in ROWS if row.in_paper)

# Table 2: the reconstruction of each inversion of the tuned Video-P2P model (shared with the rows above): the
# paper's three, then any other inversion a row of the run uses (TABLE2_NAMES names them all).
TABLE2_NAMES = {"ddim": "DDIM", "null-text-per-frame": "null-text, per frame",
                "null-text": "null-text, shared (Video-P2P)", "negative-prompt": "negative prompt", "fast": "fast"}
PAPER_TABLE2_METHODS = ("ddim", "null-text-per-frame", "null-text")


def table2_methods(rows) -> dict[str, str]:
    """Table 2's rows for a run of ``rows``: name → inversion method, the paper's three first."""
    used = [row.inversion for row in rows if row.model == VIDEO_P2P_MODEL]
    methods = list(dict.fromkeys(PAPER_TABLE2_METHODS + tuple(used)))
    return {TABLE2_NAMES[m]: m for m in methods}


def rows_named(names) -> tuple[Row, ...]:
    """The rows of ``ROWS`` with these names (in ``ROWS``' order), or every row for ``["all"]``; an unknown name is
    an error listing them all."""
    if list(names) == ["all"]:
        return ROWS
    known = {row.name: row for row in ROWS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown rows {unknown}; choose among {list(known)} or 'all'")
    return tuple(row for row in ROWS if row.name in set(names))


# ---------------------------------------------------------------- the columns

@dataclass(frozen=True)
class Column:
    key: str  # in each row's results
    label: str
    higher_is_better: bool
    paper: str | None = None  # the Table 1 metric it stands for
    fmt: str = "{:.3f}"


# The toy counterparts of Table 1's metrics (vp2p.paper.metrics), and the evaluator's geometry.
TOY_COLUMNS = (
    Column("target_hit", "target hit", True, "clip_score", "{:.2f}"),
    Column("background_psnr", "background PSNR (dB)", True, "masked_psnr", "{:.2f}"),
    Column("attribute_agreement", "attribute agreement", True, "osv"),
    Column("object_temporal", "object temporal", True, "temp"),
    # how much the caption-free look (shade, stripe angle, dot layout, rotation) changes across frames
    Column("appearance_flicker", "appearance flicker", False, "osv"),
    Column("drift_px", "drift (px)", False, None, "{:.2f}"),
    Column("size_error", "size error", False, None),  # mean |edited area / target area - 1|
)
# Table 1's own metrics: need CLIP weights (and LPIPS weights), computed only when given.
CLIP_COLUMNS = (
    Column("clip_score", "CLIP score", True, "clip_score", "{:.4f}"),
    Column("lpips", "LPIPS", False, "lpips", "{:.4f}"),
    Column("osv", "OSV", False, "osv", "{:.2f}"),
    Column("temp", "Temp", True, "temp", "{:.4f}"),
)
PAPER_COLUMNS = (
    Column("clip_score", "CLIP score", True, fmt="{:.4f}"), Column("masked_psnr", "masked PSNR", True, fmt="{:.2f}"),
    Column("lpips", "LPIPS", False, fmt="{:.4f}"), Column("osv", "OSV", False, fmt="{:.2f}"),
    Column("temp", "Temp", True, fmt="{:.4f}"),
)

def work_per_clip(rows, edits_per_video: int = 1) -> dict:
    """What a run computes for each clip once shared: tunings (one per tuned model), inversions (one per model and
    method, Table 2's included), how many of those optimise null-text, and edits."""
    tuned = {row.model for row in rows if row.model.tuned} | {VIDEO_P2P_MODEL}  # Table 2 tunes Video-P2P's model
    inversions = {(row.model, row.inversion) for row in rows} | {(VIDEO_P2P_MODEL, m)
                                                                 for m in table2_methods(rows).values()}
    return {"tunings": len(tuned), "inversions": len(inversions),
            "null_text": sum(method.startswith("null-text") for _, method in inversions),
            "edits": len(rows) * edits_per_video}


# ---------------------------------------------------------------- held-out videos and their edits

EDIT_KINDS = ("color", "shape", "refine")
EDITED_FIELD = {"color": "color", "shape": "shape", "refine": "attribute"}


@dataclass(frozen=True)
class EditCase:
    """One edit of a clip: its kind, the target scene, and the controller options it needs."""

    kind: str
    target: world.Scene
    options: dict = field(hash=False, compare=False)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "target": self.target.caption, "options": self.options}


def held_out_video(index: int, num_frames: int = 8, size: int = 64, seed: int = 0) -> world.ToyVideo:
    """Held-out clip ``index`` (seeds never used in training), plain objects in daylight: the toy bench's."""
    from vp2p.toy.bench import held_out_clip

    return held_out_clip(index, seed, num_frames, size)


def edit_cases(scene: world.Scene, index: int, per_video: int = 1, seed: int = 0) -> list[EditCase]:
    """The edits of clip ``index``: ``per_video`` of color swap, shape swap and refinement, rotating through
    the kinds from clip to clip (so 1 per video still covers all three). Targets are drawn as the toy bench's."""
    if not 1 <= per_video <= len(EDIT_KINDS):
        raise ValueError(f"edits per video = {per_video}; choose 1 to {len(EDIT_KINDS)} ({EDIT_KINDS})")
    from vp2p.toy.bench import edit_targets

    targets = edit_targets(scene, index, seed)
    refined = targets["refine"]
    cases = {
        "color": EditCase("color", targets["color"], {"blend_words": [scene.shape, scene.shape]}),
        "shape": EditCase("shape", targets["shape"], {"blend_words": [scene.shape, targets["shape"].shape]}),
        # As the toy bench's refinement: the source maps for 80% of the steps, the added word's window all of them.
        "refine": EditCase("refine", refined, {"is_word_swap": False, "blend_words": [scene.shape, scene.shape],
                                               "cross_replace_steps": {"default_": 0.8, refined.attribute: 1.0}}),
    }
    return [cases[EDIT_KINDS[(index + k) % len(EDIT_KINDS)]] for k in range(per_video)]


def controller_options(row: Row, case: EditCase) -> dict:
    """The case's controller options as the row runs them (no blend words without blend, no injection without
    attention control)."""
    options = dict(case.options)
    if row.model.kind == "image":  # prompt-to-prompt on images injects the self-attention maps
        options["self_attention"] = "frame"
    if not row.local_blend:
        options.pop("blend_words", None)
    if not row.attention_control:
        options.update(cross_replace_steps=0.0, self_replace_steps=0.0)
    return options


