"""The paper's metrics as functions of uint8 videos (F, H, W, 3), and their toy-world counterparts.

Table 1 of Video-P2P (CVPR 2024) compares editing methods on 45 DAVIS clips with five numbers ("Ours" in
``PAPER_TABLE1``): CLIP score (text-video), masked PSNR, LPIPS, Object Semantic Variance (OSV) and Temp.
They need weights this kit cannot ship (CLIP, AlexNet + LPIPS), so each is a function you call with a model
loaded from a local folder (or a hub id on Colab):

* ``clip_score`` — does the edit show the target prompt? Mean frame-text cosine, the paper's 0-1 scale.
* ``masked_psnr`` — was the rest of the video left alone? PSNR outside the edited object's masks.
* ``lpips_distance`` — how far the edit is from the source perceptually (the LPIPS formula over AlexNet).
* ``object_semantic_variance`` — does the edited object stay the same thing across frames? (Our definition.)
* ``temporal_consistency`` — "Temp": CLIP similarity of consecutive frames.

In the toy world the evaluator reads the answers from pixels, so each has a counterpart that needs no weights:
``toy_target_hit`` (CLIP score), ``toy_background_psnr`` (masked PSNR), ``toy_attribute_agreement`` (OSV, but
higher is better), ``toy_object_temporal`` (Temp); ``evaluator.object_geometry`` adds drift and size errors.
``toy_appearance_flicker`` measures what neither Temp nor OSV can see in the toy world: how much the object's
look that the caption leaves open (shade, stripe orientation, dot layout, rotation) changes from frame to frame —
an edit made frame by frame can pick a new look per frame, one that matches frames keeps one.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vp2p.checks import is_hub_id
from vp2p.toy import evaluator, world

# Table 1, row "Ours" (45 DAVIS clips): higher is better for CLIP score, masked PSNR and Temp; lower for LPIPS and OSV.
PAPER_TABLE1 = {"clip_score": 0.3367, "masked_psnr": 20.65, "lpips": 0.3213, "osv": 47.38, "temp": 0.9725}
# The paper does not name its CLIP; ViT-L/14 is what text-driven video editing papers usually report with.
CLIP_HUB_ID = "openai/clip-vit-large-patch14"
OSV_SCALE = 1000.0  # OSV = OSV_SCALE × the total variance of unit embeddings; our choice, see object_semantic_variance
OSV_FILL = (123, 117, 104)  # CLIP's mean pixel: what the object's surroundings are painted before embedding


def _check_video(video: np.ndarray, name: str = "video") -> np.ndarray:
    video = np.asarray(video)
    if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"{name} must be a uint8 array (frames, H, W, 3), got {video.dtype} {video.shape}; "
                         "use vp2p.read_video or world.render(scene).frames")
    return video


# ---------------------------------------------------------------- CLIP


@dataclass
class Clip:
    """A CLIP model with its tokenizer and image processor, on one device: what the CLIP metrics embed with."""

    model: torch.nn.Module
    tokenizer: object
    image_processor: object
    device: torch.device
    batch: int = 16  # frames per forward pass

    @torch.no_grad()
    def image_embeddings(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Unit-length CLIP embeddings (n, d) of uint8 (H, W, 3) images (sizes may differ: each is resized)."""
        chunks = []
        for i in range(0, len(images), self.batch):
            pixels = self.image_processor(images=list(images[i : i + self.batch]), return_tensors="pt",
                                          input_data_format="channels_last")["pixel_values"]
            out = self.model.get_image_features(pixel_values=pixels.to(self.device))
            chunks.append(_unit(_projected(out)).float().cpu())
        return torch.cat(chunks)

    @torch.no_grad()
    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-length CLIP embeddings (n, d) of prompts (truncated to the tokenizer's length, 77 for CLIP)."""
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt").to(self.device)
        out = self.model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        return _unit(_projected(out)).float().cpu()


def _projected(out) -> torch.Tensor:
    """get_*_features returns the projected embedding (transformers 4) or an output holding it (transformers 5)."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _unit(x: torch.Tensor, dim: int = -1, eps: float = 0.0) -> torch.Tensor:
    return x / (x.norm(dim=dim, keepdim=True) + eps)


def _image_processor_class():
    """CLIPImageProcessor; on transformers >= 5 without torchvision its PIL twin (same resize, crop, normalise),
    which the plain class falls back to anyway, with a warning."""
    import transformers

    if importlib.util.find_spec("torchvision") is None and hasattr(transformers, "CLIPImageProcessorPil"):
        return transformers.CLIPImageProcessorPil
    return transformers.CLIPImageProcessor


def _resolve_clip(name_or_path: str | os.PathLike) -> str:
    """The folder or hub id to load; explains a path that does not exist or is not a CLIP folder."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"{path} is not a CLIP folder (no config.json inside); save one with CLIPModel.save_pretrained and "
                f"the processor's save_pretrained, or pass a hub id such as {CLIP_HUB_ID}")
        return str(path)
    text = str(name_or_path)
    if not is_hub_id(text):
        raise FileNotFoundError(f"CLIP folder {text} does not exist; pass a local CLIP folder or a hub id such as "
                                f"{CLIP_HUB_ID}")
    return text


def load_clip(name_or_path: str | os.PathLike, device=None) -> Clip:
    """A CLIP model and its processor from a local folder, or a hub id (needs internet, e.g. Colab)."""
    from transformers import CLIPModel, CLIPTokenizer

    from vp2p.io.loading import default_device

    source = _resolve_clip(name_or_path)
    try:
        model = CLIPModel.from_pretrained(source)
        tokenizer = CLIPTokenizer.from_pretrained(source)
        image_processor = _image_processor_class().from_pretrained(source)
    except OSError as err:
        raise OSError(
            f"could not load CLIP {str(name_or_path)!r} ({str(err).splitlines()[0]}); without internet, download it "
            f"elsewhere (`huggingface-cli download {CLIP_HUB_ID} --local-dir clip`) and pass the folder") from err
    device = torch.device(device) if device is not None else default_device()
    return Clip(model.to(device).eval(), tokenizer, image_processor, device)


def clip_score(clip: Clip, video: np.ndarray, text: str) -> float:
    """Mean over frames of the cosine between the frame's and the text's CLIP embeddings (0-1 scale, as Table 1;
    not torchmetrics' 100 × max(cos, 0))."""
    frames = _check_video(video)
    return float((clip.image_embeddings(frames) @ clip.text_embeddings([text])[0]).mean())


def temporal_consistency(clip: Clip, video: np.ndarray) -> float:
    """"Temp": mean cosine of the CLIP embeddings of consecutive frames (1.0 for a still video)."""
    frames = _check_video(video)
    if len(frames) < 2:
        raise ValueError(f"temporal_consistency needs at least 2 frames, got {len(frames)}")
    e = clip.image_embeddings(frames)
    return float((e[1:] * e[:-1]).sum(-1).mean())


def _object_crop(frame: np.ndarray, mask: np.ndarray, fill=OSV_FILL) -> np.ndarray:
    """The object alone: its bounding box, padded to a square, everything outside the mask painted ``fill``.

    Square, so that CLIP's centre crop keeps the whole object; painted, so that the background (preserved or not)
    does not count as the object's semantics.
    """
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = np.where(mask[y0:y1, x0:x1, None], frame[y0:y1, x0:x1], np.array(fill, dtype=np.uint8))
    side = max(crop.shape[:2])
    square = np.empty((side, side, 3), dtype=np.uint8)
    square[...] = np.array(fill, dtype=np.uint8)
    top, left = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    square[top : top + crop.shape[0], left : left + crop.shape[1]] = crop
    return square


def object_semantic_variance(clip: Clip, video: np.ndarray, masks: np.ndarray | None = None) -> float:
    """OSV: how much the edited object's meaning varies across frames (0 = the same in every frame; lower is better).

    The paper defines OSV only in words (its appendix: the semantic consistency of the edited object across frames).
    Our definition: crop the object in every frame (``masks``, bool (F, H, W): its bounding box, squared, the
    surroundings painted CLIP's mean colour; ``masks=None`` uses whole frames), embed each crop with CLIP, scale
    each embedding to unit length, and report ``OSV_SCALE`` (1000) × the mean squared distance of the embeddings
    from their mean (the total variance: the trace of their covariance). The absolute scale is ours, as are the
    crop and the CLIP model: it cannot be compared with the paper's 47.38, only orderings of methods can.
    Frames whose mask is empty (the object is gone) are left out; at least 2 frames must remain.
    """
    frames = _check_video(video)
    if masks is None:
        crops = list(frames)
    else:
        masks = np.asarray(masks, dtype=bool)
        if masks.shape != frames.shape[:3]:
            raise ValueError(f"masks of shape {masks.shape} do not match the video's frames {frames.shape[:3]}; "
                             "pass one bool (H, W) mask per frame")
        crops = [_object_crop(f, m) for f, m in zip(frames, masks) if m.any()]
    if len(crops) < 2:
        raise ValueError(f"object_semantic_variance needs the object in at least 2 frames, found it in {len(crops)}; "
                         "check the masks")
    e = clip.image_embeddings(crops).double()
    return float(OSV_SCALE * ((e - e.mean(0)) ** 2).sum(-1).mean())


# ---------------------------------------------------------------- masked PSNR


def masked_psnr(video_a: np.ndarray, video_b: np.ndarray, masks: np.ndarray, dilate: int = 0) -> float:
    """PSNR (dB, uint8 range) between two videos over the pixels OUTSIDE ``masks`` (bool (F, H, W)) grown by
    ``dilate`` px: background preservation. Identical backgrounds give ``evaluator.PSNR_CAP`` (100 dB).

    The formula lives in ``evaluator.background_psnr`` (one place); this is its paper-facing name, undilated by default.
    """
    return evaluator.background_psnr(video_a, video_b, masks, dilate=dilate)


# ---------------------------------------------------------------- LPIPS
#
# LPIPS (Zhang et al. 2018): per layer l, unit-normalise the features along channels, take the squared difference,
# weight the channels with learned non-negative w_l (a 1×1 conv), average over space; sum over layers.

LPIPS_LINEAR_URL = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth"
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
# LPIPS v0.1 maps images from [-1, 1] to the statistics its backbones were trained on.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)


class AlexNetFeatures(torch.nn.Module):
    """torchvision's AlexNet ``features`` in plain torch, returning the five ReLU outputs LPIPS compares.

    The layer indices are torchvision's, so its checkpoint (``features.*`` entries) loads as is.
    """

    CHANNELS = (64, 192, 384, 256, 256)
    TAPS = (1, 4, 7, 9, 11)  # indices of the ReLUs after conv1..conv5

    def __init__(self):
        super().__init__()
        conv, relu, pool = torch.nn.Conv2d, torch.nn.ReLU, torch.nn.MaxPool2d
        self.features = torch.nn.Sequential(
            conv(3, 64, 11, stride=4, padding=2), relu(), pool(3, 2),
            conv(64, 192, 5, padding=2), relu(), pool(3, 2),
            conv(192, 384, 3, padding=1), relu(),
            conv(384, 256, 3, padding=1), relu(),
            conv(256, 256, 3, padding=1), relu(), pool(3, 2),
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for i, layer in enumerate(self.features[: self.TAPS[-1] + 1]):
            x = layer(x)
            if i in self.TAPS:
                taps.append(x)
        return taps


def lpips_from_features(features_a: list[torch.Tensor], features_b: list[torch.Tensor],
                        linear_weights: list[torch.Tensor]) -> torch.Tensor:
    """The LPIPS formula, per image (N,), from per-layer features (N, C_l, H_l, W_l) and channel weights (C_l,)."""
    total = 0.0
    for fa, fb, w in zip(features_a, features_b, linear_weights, strict=True):
        squared = (_unit(fa, dim=1, eps=1e-10) - _unit(fb, dim=1, eps=1e-10)) ** 2  # lpips' normalize_tensor eps
        total = total + (squared * w.reshape(1, -1, 1, 1)).sum(1).mean((-2, -1))
    return total


class LPIPS(torch.nn.Module):
    """A feature network (images → list of feature maps) plus one weight per channel of each map."""

    def __init__(self, net: torch.nn.Module, linear_weights: list[torch.Tensor]):
        super().__init__()
        self.net = net
        self.linear = torch.nn.ParameterList([torch.nn.Parameter(w.flatten().float(), requires_grad=False)
                                              for w in linear_weights])
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).reshape(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).reshape(1, 3, 1, 1))

    @torch.no_grad()
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Distance per image (N,) of images (N, 3, H, W) in [-1, 1]."""
        fa, fb = self.net((a - self.shift) / self.scale), self.net((b - self.shift) / self.scale)
        return lpips_from_features(fa, fb, list(self.linear))


def _missing_lpips_weights(what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"LPIPS needs trained weights, not shipped with vp2p and not downloadable offline ({what}): the LPIPS "
        f"linear layers alex.pth ({LPIPS_LINEAR_URL}, from the `lpips` package) and torchvision's AlexNet "
        f"alexnet-owt-7be5be79.pth ({ALEXNET_URL}); pass lpips_distance(..., weights='alex.pth', "
        "backbone='alexnet-owt-7be5be79.pth'), or one file holding both")


def _read_state(path) -> dict[str, torch.Tensor]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise _missing_lpips_weights(f"{path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def _linear_weights(state: dict[str, torch.Tensor], count: int, source) -> list[torch.Tensor]:
    """lin0..lin4 as the lpips package saves them (``lin{i}.model.1.weight``, behind a dropout) or without it."""
    out = []
    for i in range(count):
        key = next((k for k in (f"lin{i}.model.1.weight", f"lin{i}.model.0.weight", f"lin{i}.weight") if k in state),
                   None)
        if key is None:
            raise _missing_lpips_weights(f"{source} has no lin{i} weights")
        out.append(state[key].flatten())
    return out


def load_lpips(weights, backbone=None) -> LPIPS:
    """LPIPS over AlexNet from the lpips package's ``alex.pth`` and torchvision's AlexNet checkpoint (``backbone``;
    None if ``weights`` holds both, i.e. ``features.*`` and ``lin*`` entries)."""
    state = _read_state(weights)
    backbone_state = _read_state(backbone) if backbone is not None else state
    net = AlexNetFeatures()
    features = {k: v for k, v in backbone_state.items() if k.startswith("features.")}
    if not features:
        raise _missing_lpips_weights(f"{backbone or weights} has no AlexNet 'features.*' weights")
    net.load_state_dict(features)
    return LPIPS(net.eval(), _linear_weights(state, len(AlexNetFeatures.CHANNELS), weights)).eval()


def _to_unit_range(video: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(video).permute(0, 3, 1, 2).float() / 127.5 - 1


def lpips_distance(video_a: np.ndarray, video_b: np.ndarray, weights=None, backbone=None,
                   model: LPIPS | None = None) -> float:
    """Mean LPIPS over frames between two uint8 videos (lower = perceptually closer; 0 for identical videos).

    Give the weight files (see ``load_lpips``) or an already built ``model`` (e.g. to score many videos).
    """
    a, b = _check_video(video_a, "video_a"), _check_video(video_b, "video_b")
    if a.shape != b.shape:
        raise ValueError(f"lpips_distance needs two videos of the same shape, got {a.shape} and {b.shape}")
    if model is None:
        if weights is None:
            raise _missing_lpips_weights("no weights= given")
        model = load_lpips(weights, backbone)
    device = model.shift.device
    distances = [model(_to_unit_range(a[i : i + 8]).to(device), _to_unit_range(b[i : i + 8]).to(device)).cpu()
                 for i in range(0, len(a), 8)]  # 8 frames per pass
    return float(torch.cat(distances).mean())


# ---------------------------------------------------------------- toy-world counterparts
#
# Each takes uint8 videos or, to avoid reading a video twice, an ``evaluator.VideoReading``.


def _read(video_or_reading) -> evaluator.VideoReading:
    if isinstance(video_or_reading, evaluator.VideoReading):
        return video_or_reading
    return evaluator.read_video(_check_video(video_or_reading))


def toy_target_hit(edited, targets, fields: Sequence[str] = evaluator.FIELDS) -> float:
    """Share of the edited videos whose read ``fields`` all match their target scene (counterpart of CLIP score).

    ``edited``: one video (or reading) or a list; ``targets``: one ``world.Scene`` or a list of the same length.
    """
    single = isinstance(targets, world.Scene)
    edited, targets = ([edited], [targets]) if single else (list(edited), list(targets))
    if len(edited) != len(targets) or not targets:
        raise ValueError(f"toy_target_hit needs one target scene per edited video, got {len(edited)} videos and "
                         f"{len(targets)} targets")
    unknown = set(fields) - set(evaluator.FIELDS)
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}; choose among {evaluator.FIELDS}")
    hits = [all(evaluator.score(_read(v), t)[f] for f in fields) for v, t in zip(edited, targets)]
    return float(np.mean(hits))


def toy_background_psnr(source: world.ToyVideo, edited, dilate: int = 2, reading=None) -> float:
    """Masked PSNR of an edit outside the source's true object masks united with the edit's segmented ones (the
    union: an edit may change where the object is), dilated by ``dilate`` px (the edges' mixed pixels)."""
    edited = _check_video(edited, "edited")
    reading = reading if reading is not None else _read(edited)
    masks = evaluator.union_masks(source.masks, reading.masks)
    return evaluator.background_psnr(source.frames, edited, masks, dilate=dilate)


def toy_attribute_agreement(video, fields: Sequence[str] = ("color", "shape")) -> float:
    """Share of frames whose reading of ``fields`` equals the video's majority, averaged over the fields.

    The counterpart of OSV, in the opposite sense: 1.0 = the object reads the same in every frame; HIGHER is more
    consistent. A frame with no object found disagrees.
    """
    reading = _read(video)
    unknown = set(fields) - set(reading.agreement)
    if unknown or not fields:
        raise ValueError(f"fields {list(fields)} are not readings; choose among {tuple(reading.agreement)}")
    return float(np.mean([reading.agreement[f] for f in fields]))


def aligned_iou(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """IoU of two bool (H, W) masks with ``mask_b`` moved onto ``mask_a``: how alike the shapes and sizes are,
    wherever they are. 0 if either is empty.

    The move is the centroid difference rounded to whole pixels, then the best of ±1 px around it (a sub-pixel
    offset would otherwise cost a moving object a few % of IoU at its rim).
    """
    if not (mask_a.any() and mask_b.any()):
        return 0.0
    (ax, ay), (bx, by) = evaluator.mask_centroids(np.stack([mask_a, mask_b]))
    yb, xb = np.nonzero(mask_b)
    area_a, area_b = int(mask_a.sum()), len(yb)
    height, width = mask_a.shape
    best = 0.0
    for dy in int(round(ay - by)) + np.arange(-1, 2):
        for dx in int(round(ax - bx)) + np.arange(-1, 2):
            ys, xs = yb + dy, xb + dx  # mask_b's pixels moved; those moved out of the frame meet nothing of a
            inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
            overlap = int(mask_a[ys[inside], xs[inside]].sum())
            best = max(best, overlap / (area_a + area_b - overlap))
    return best


def toy_object_temporal(video) -> float:
    """Mean ``aligned_iou`` of the segmented object in consecutive frames (counterpart of Temp; 1.0 = the object
    keeps its shape and size from frame to frame; a frame without object counts 0).

    Centroids are aligned so that the object's motion is not counted as inconsistency; jumps in position are
    measured against the target scene's render by ``evaluator.object_geometry``
    (``toy.bench.judge_edit``).
    """
    masks = _read(video).masks
    if len(masks) < 2:
        raise ValueError(f"toy_object_temporal needs at least 2 frames, got {len(masks)}")
    return float(np.mean([aligned_iou(a, b) for a, b in zip(masks[:-1], masks[1:])]))


def _circular_spread(phases: np.ndarray) -> float:
    """1 − |mean of exp(2πi·phase)| for phases in periods: 0 when all equal, ~1 when spread all round."""
    return float(1 - np.abs(np.exp(2j * np.pi * np.asarray(phases)).mean()))


# The rotation's period per shape, as the evaluator reads it (its symmetry).
_ROTATION_PERIOD = {"star": 72.0, "triangle": 120.0}
# Per-frame uniform draws of the shade over its range have this standard deviation: flicker 1 means "as if drawn
# anew in every frame".
_SHADE_SPREAD = (world.SHADE_RANGE[1] - world.SHADE_RANGE[0]) / np.sqrt(12)


def appearance_flicker_parts(video) -> dict[str, float]:
    """The parts of ``toy_appearance_flicker`` that the video's object has: "shade" (std over frames ÷ that of a
    uniform draw over ``world.SHADE_RANGE``), "stripe_angle", "dot_offset", "rotation" (circular spread over
    frames, 0 to 1). Only frames where the object and the part were read count; a part read in < 2 frames is left out.
    """
    reading = _read(video)
    looks = [(f.shape, f.look) for f in reading.frames if f.look is not None]
    parts = {}
    if len(looks) >= 2:
        parts["shade"] = float(np.std([look.shade for _, look in looks]) / _SHADE_SPREAD)
    angles = [look.stripe_angle / 180.0 for _, look in looks if look.stripe_angle is not None]
    if len(angles) >= 2:  # an orientation repeats every 180°
        parts["stripe_angle"] = _circular_spread(angles)
    offsets = np.array([look.dot_offset for _, look in looks if look.dot_offset is not None])
    if len(offsets) >= 2:
        parts["dot_offset"] = float(np.mean([_circular_spread(offsets[:, 0]), _circular_spread(offsets[:, 1])]))
    rotations = [look.rotation / _ROTATION_PERIOD[shape] for shape, look in looks
                 if look.rotation is not None and shape == reading.shape]
    if len(rotations) >= 2:
        parts["rotation"] = _circular_spread(rotations)
    return parts


def toy_appearance_flicker(video) -> float | None:
    """How much the object's caption-free look changes across frames: the mean of ``appearance_flicker_parts``
    (LOWER is more consistent; 0 = one look throughout, ~1 = a new look drawn every frame). None when the object
    is found in fewer than 2 frames."""
    parts = appearance_flicker_parts(video)
    return float(np.mean(list(parts.values()))) if parts else None
