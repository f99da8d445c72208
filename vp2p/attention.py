"""How every attention in the UNet is computed, and the one place where an editor may look at or change it.

Each ``diffusers`` ``Attention`` module gets an ``AttentionProcessor`` that knows its ``Layer``: its name, its kind
(``"self"`` in the image model; ``"frame"``, ``"cross"`` or ``"temporal"`` in the inflated one) and where it sits in
the UNet. Per call, through ``cross_attention_kwargs``, the UNet passes ``num_frames`` (frames are folded into the
batch, see below) and an optional ``controller``. When the controller wants a layer, the processor computes the
attention probabilities explicitly and lets the controller read or replace them; everywhere else it uses PyTorch's
fused ``scaled_dot_product_attention``, which never materialises the probabilities (that is where the memory goes)
— but for cross and temporal attention in reduced precision, computed explicitly whether watched or not, so that
inversion and editing round alike (``explicit_in_reduced_precision``).

Batch layout ("frames in the batch", ``vp2p.layout``): a video of F frames is F consecutive batch rows. A batch of
V videos has V·F rows, video-major: row = video·F + frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

from vp2p import layout, seams
from vp2p.precision import REDUCED

KINDS = ("self", "frame", "cross", "temporal")
FRAME_KEYS = ("first", "first+previous")


@dataclass(frozen=True)
class Layer:
    """Identity of one attention module: ``name`` (module path), ``kind`` (see KINDS), ``place`` (down/mid/up)."""

    name: str
    kind: str
    place: str


class AttentionController(Protocol):
    """What a processor asks of a controller (the store and the editors in ``vp2p.controllers`` implement it)."""

    def wants(self, layer: Layer, query_length: int) -> bool:
        """Whether this call needs explicit probabilities (a fused kernel is used otherwise)."""

    def __call__(self, probs: torch.Tensor, layer: Layer, num_frames: int) -> torch.Tensor:
        """Read and optionally replace ``probs`` (batch, heads, queries, keys); return what the layer should use."""


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    batch, length, dim = x.shape
    return x.view(batch, length, heads, dim // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    batch, heads, length, dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * dim)


def attention_probs(query: torch.Tensor, key: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q·kᵀ·scale) per row, computed in float32: a per-row softmax cannot underflow in fp16."""
    scores = torch.matmul(query.float(), key.float().transpose(-1, -2)) * scale
    return scores.softmax(dim=-1).to(query.dtype)  # official: one global max subtracted, underflows in fp16


def frame_context(hidden: torch.Tensor, num_frames: int, frame_keys: str) -> torch.Tensor:
    """Per frame, the hidden states keys and values come from: frame 0 (optionally with the previous frame too)."""
    video = layout.frames_view(hidden, num_frames)
    first = video[:, :1].expand(-1, num_frames, -1, -1)
    if frame_keys == "first":
        return layout.merge_frames(first)
    previous = video[:, [max(i - 1, 0) for i in range(num_frames)]]
    return layout.merge_frames(torch.cat([first, previous], dim=2))


def first_frame_context(hidden: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Video-P2P's frame attention context (``frame_keys="first"``): the replaceable step ``frame_context``."""
    return frame_context(hidden, num_frames, "first")


def explicit_in_reduced_precision(kind: str, dtype: torch.dtype) -> bool:
    """Whether a layer computes its probabilities explicitly even when no controller watches it.

    In float16/bfloat16 the fused kernel and the explicit one round differently. An edit computes explicitly the
    layers its controller reads (cross-attention, and temporal attention while self-attention is replaced), while
    the inversion it starts from ran without a controller: with the fused kernel there, the edit's source branch
    would no longer retrace the reconstruction. So in reduced precision cross and temporal attention always take
    the explicit kernel — cheap, their keys are the 77 tokens or the F frames. Frame attention (4096 keys at SD's
    64×64) keeps the fused kernel unless a controller edits it (``self_attention="frame"``, not the default). In
    float32 both kernels agree to rounding and the fused one is used."""
    return dtype in REDUCED and kind in ("cross", "temporal")


class AttentionProcessor:
    """Processor for one attention module of the (inflated) UNet; see the module docstring."""

    def __init__(self, layer: Layer, frame_keys: str = "first"):
        if layer.kind not in KINDS:
            raise ValueError(f"unknown attention kind {layer.kind!r}; choose one of {KINDS}")
        if frame_keys not in FRAME_KEYS:
            raise ValueError(f"frame_keys={frame_keys!r} is not supported; choose one of {FRAME_KEYS}")
        self.layer = layer
        self.frame_keys = frame_keys

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        num_frames: int | None = None,
        controller: AttentionController | None = None,
    ) -> torch.Tensor:
        if attention_mask is not None:
            raise ValueError("vp2p's attention processors take no attention_mask (Stable Diffusion UNets use none).")
        kind = self.layer.kind
        if kind in ("frame", "temporal") and num_frames is None:
            raise ValueError(
                f"{self.layer.name} is a {kind} attention of an inflated UNet and needs the frame count: call the "
                "UNet with cross_attention_kwargs={'num_frames': F} (frames folded into the batch)."
            )
        residual = hidden_states
        if kind == "cross":
            context = encoder_hidden_states
            if attn.norm_cross:
                context = attn.norm_encoder_hidden_states(context)
        elif kind == "frame" and self.frame_keys == "first":
            context = seams.step("frame_context")(hidden_states, num_frames)  # a student's, in the course
        elif kind == "frame":
            context = frame_context(hidden_states, num_frames, self.frame_keys)
        else:
            context = hidden_states
        query = split_heads(attn.to_q(hidden_states), attn.heads)
        key = split_heads(attn.to_k(context), attn.heads)
        value = split_heads(attn.to_v(context), attn.heads)
        watched = controller is not None and controller.wants(self.layer, query.shape[2])
        if watched or explicit_in_reduced_precision(kind, query.dtype):
            probs = attention_probs(query, key, attn.scale)
            if watched:
                probs = controller(probs, self.layer, num_frames or 1)
            out = torch.matmul(probs, value)
        else:
            out = F.scaled_dot_product_attention(query, key, value, scale=attn.scale)
        out = attn.to_out[1](attn.to_out[0](merge_heads(out).to(query.dtype)))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def layer_kind(name: str, inflated: bool) -> str:
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "attn2":
        return "cross"
    if leaf == "attn_temp":
        return "temporal"
    if leaf == "attn1":
        return "frame" if inflated else "self"
    raise ValueError(f"{name} is not an attention of a Stable Diffusion transformer block")


def layer_place(name: str) -> str:
    for prefix, place in (("down_blocks", "down"), ("mid_block", "mid"), ("up_blocks", "up")):
        if name.startswith(prefix):
            return place
    raise ValueError(f"{name} is outside the UNet's down, mid and up blocks")


def install_processors(unet: torch.nn.Module, inflated: bool = False, frame_keys: str = "first") -> list[Layer]:
    """Give every attention module of ``unet`` an ``AttentionProcessor``; returns the layers in forward order."""
    layers = []
    for name, module in unet.named_modules():
        if isinstance(module, Attention):
            layer = Layer(name=name, kind=layer_kind(name, inflated), place=layer_place(name))
            module.set_processor(AttentionProcessor(layer, frame_keys))
            layers.append(layer)
    return layers


def attention_layers(unet: torch.nn.Module) -> list[Layer]:
    """The layers whose processors are ours, in module order."""
    return [m.processor.layer for m in unet.modules() if isinstance(getattr(m, "processor", None), AttentionProcessor)]


def require_vp2p_processors(unet: torch.nn.Module) -> None:
    """Refuse a UNet still running diffusers' processors: they would ignore the frame count and the controller."""
    if not attention_layers(unet):
        raise ValueError("this UNet is not inflated: call vp2p.inflate_unet(pipe.unet) first (or, to run the image "
                         "model frame by frame, vp2p.attention.install_processors(pipe.unet))")


# -- UNet geometry: which attention resolutions exist, and which one LocalBlend reads

MAX_LEVELS = 8  # halvings searched when a map size is looked up (SD has 3)


def map_size(latent_size: tuple[int, int], level: int) -> tuple[int, int]:
    """(h, w) of the UNet's feature maps ``level`` halvings below the latents: each stride-2 convolution (kernel 3,
    padding 1) gives ceil(n / 2), and ceil(ceil(n / 2) / 2) = ceil(n / 4)."""
    step = 2**level
    return -(-latent_size[0] // step), -(-latent_size[1] // step)


def map_size_where(latent_size: tuple[int, int], height: int | None = None,
                   positions: int | None = None) -> tuple[int, int]:
    """The (h, w) of the UNet's maps of this ``height`` (or this number of ``positions``, h·w)."""
    for level in range(MAX_LEVELS + 1):
        h, w = map_size(latent_size, level)
        if h == height or h * w == positions:
            return h, w
    what = f"height {height}" if height is not None else f"{positions} positions"
    sizes = ", ".join(f"{h}x{w}" for h, w in dict.fromkeys(map_size(latent_size, lv) for lv in range(4)))
    raise ValueError(f"no attention map of {what} for latents of {latent_size[0]}x{latent_size[1]}: the UNet's maps "
                     f"are {sizes}, …")


def cross_attention_heights(unet: torch.nn.Module, latent_height: int, places=("down", "up")) -> list[int]:
    """Heights of the cross-attention maps of the UNet's ``places`` for a given latent height (SD-1.5 at 64:
    down and up blocks 64, 32, 16; the mid block 8)."""
    downs = [i for i, b in enumerate(unet.down_blocks) if getattr(b, "has_cross_attention", False)]
    n = len(unet.down_blocks)
    ups = [n - 1 - i for i, b in enumerate(unet.up_blocks) if getattr(b, "has_cross_attention", False)]
    levels = (downs if "down" in places else []) + (ups if "up" in places else [])
    if "mid" in places:
        levels.append(n - 1)
    return sorted({map_size((latent_height, latent_height), level)[0] for level in levels})


def blend_resolution(latent_height: int, available: list[int]) -> int:
    """The map height LocalBlend uses: the available cross-attention resolution nearest to latent/4 (the official
    code reads SD's 16×16 maps of 64×64 latents; the toy model's 16×16 latents give 4, so it takes 8)."""
    target = latent_height / 4
    return min(sorted(available, reverse=True), key=lambda h: abs(math.log2(h / target)))
