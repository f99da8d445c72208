"""Inflate a text-to-image UNet into a text-to-set (video) UNet, as Video-P2P does.

Three changes, all around diffusers' own modules, none of them copied:

* **Frame attention.** Every self-attention (``attn1``) takes its queries from frame i but its keys and values from
  frame 0 (Q = W_Q v_i, K = W_K v_0, V = W_V v_0): all frames look at the same reference, so they agree on what
  the object is. Option ``frame_keys="first+previous"`` adds the previous frame's keys, as Tune-A-Video does.
* **Temporal attention.** Each ``BasicTransformerBlock`` is wrapped in a ``TemporalBlock`` that, after the block
  (self-, cross-attention and feed-forward, as in the official code), attends across frames at every spatial
  position, with its own LayerNorm and a zero-initialised output projection.
* **Video GroupNorm.** The ResNet blocks' GroupNorms (``norm1``, ``norm2``) and the UNet's final ``conv_norm_out``
  pool their statistics over all frames of a video (the official model applies GroupNorm to the 5-D video
  tensor): a third channel through which the frames agree. The transformer blocks' input GroupNorm stays per
  frame, as in the official model. ``group_norm="frame"`` keeps every GroupNorm per frame instead.

The inflated model computes what the image model computes only for a video of identical frames: frame 0 is then
every frame's own self-attention, the video statistics are each frame's, and the temporal attention adds zero.
On a real clip frame attention changes every frame but the first, and the video GroupNorm every frame — that is
why the paper tunes the model on the clip.

Frames are folded into the batch (see ``vp2p.attention``); the frame count reaches every attention processor
through ``cross_attention_kwargs={"num_frames": F}``, and the GroupNorms read it from the same argument (a
forward pre-hook on the UNet), so nothing global is needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import Attention
from torch import nn

from vp2p.attention import install_processors
from vp2p.io.storage import module_fingerprint, settings_fingerprint, tensors_fingerprint

# Parameters tuned on the input video (paper Sec. 4.1; official ``trainable_modules``).
TRAINABLE_PATTERNS = ("attn1.to_q", "attn2.to_q", "attn_temp")
GROUP_NORMS = ("video", "frame")
INIT_SEED = 0  # of the temporal attentions' initial weights


class FrameCount:
    """The frame count of the UNet call in progress, shared by its video GroupNorms (set by ``_read_frame_count``).

    It stays set after the call: gradient checkpointing recomputes the forward pass during backward."""

    value: int | None = None


def _read_frame_count(unet, args, kwargs):
    """Forward pre-hook of an inflated UNet: pass ``cross_attention_kwargs["num_frames"]`` to its GroupNorms."""
    unet.vp2p_frame_count.value = (kwargs.get("cross_attention_kwargs") or {}).get("num_frames")


class VideoGroupNorm(nn.GroupNorm):
    """A GroupNorm whose statistics pool every frame of a video: over (channels of a group, frames, h, w).

    Frames are folded into the batch, video-major: rows v·F … v·F + F - 1 are video v. Each video (a branch, or a
    half of a guided batch) is normalised on its own; frames of different videos never share statistics.
    """

    def __init__(self, norm: nn.GroupNorm, frames: FrameCount):
        super().__init__(norm.num_groups, norm.num_channels, eps=norm.eps, affine=norm.affine)
        if norm.affine:  # the same Parameter objects: loading, tuning and .to() see one set of weights
            self.weight, self.bias = norm.weight, norm.bias
        self.frames = frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = self.frames.value
        if frames is None:
            raise ValueError("an inflated UNet needs cross_attention_kwargs={'num_frames': F} (frames in the batch)")
        if x.shape[0] % frames:
            raise ValueError(f"a batch of {x.shape[0]} rows does not hold whole videos of {frames} frames")
        video = rearrange(x, "(v f) c h w -> v c f h w", f=frames)
        out = F.group_norm(video, self.num_groups, self.weight, self.bias, self.eps)
        return rearrange(out, "v c f h w -> (v f) c h w")


def video_group_norms(unet: nn.Module) -> None:
    """Replace the ResNet blocks' ``norm1``/``norm2`` and the UNet's ``conv_norm_out`` by ``VideoGroupNorm``s."""
    from diffusers.models.resnet import ResnetBlock2D

    frames = FrameCount()
    unet.vp2p_frame_count = frames
    for module in list(unet.modules()):
        if isinstance(module, ResnetBlock2D):
            for name in ("norm1", "norm2"):
                norm = getattr(module, name)
                if type(norm) is nn.GroupNorm:
                    setattr(module, name, VideoGroupNorm(norm, frames))
    if type(getattr(unet, "conv_norm_out", None)) is nn.GroupNorm:
        unet.conv_norm_out = VideoGroupNorm(unet.conv_norm_out, frames)
    unet.register_forward_pre_hook(_read_frame_count, with_kwargs=True)


class TemporalBlock(nn.Module):
    """A diffusers ``BasicTransformerBlock`` followed by attention across frames at each position."""

    def __init__(self, block: BasicTransformerBlock):
        super().__init__()
        self.block = block
        dim, heads, head_dim = block.dim, block.num_attention_heads, block.attention_head_dim
        self.norm_temp = nn.LayerNorm(dim)
        self.attn_temp = Attention(query_dim=dim, heads=heads, dim_head=head_dim, bias=block.attention_bias)
        nn.init.zeros_(self.attn_temp.to_out[0].weight)
        nn.init.zeros_(self.attn_temp.to_out[0].bias)  # official: weight only, so the bias leaks in at first
        reference = next(block.parameters())
        self.to(device=reference.device, dtype=reference.dtype)
        # Frozen like the block it wraps (load_pipeline freezes the UNet): otherwise every backward pass through
        # the UNet (null-text optimisation) would also compute and keep gradients for the temporal attention.
        self.norm_temp.requires_grad_(reference.requires_grad)
        self.attn_temp.requires_grad_(reference.requires_grad)

    # Same positional order as BasicTransformerBlock.forward: Transformer2DModel's gradient checkpointing passes
    # the arguments by position.
    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        timestep: torch.LongTensor | None = None,
        cross_attention_kwargs: dict | None = None,
        class_labels: torch.LongTensor | None = None,
        added_cond_kwargs: dict | None = None,
    ) -> torch.Tensor:
        hidden_states = self.block(
            hidden_states,
            attention_mask=attention_mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            timestep=timestep,
            cross_attention_kwargs=cross_attention_kwargs,
            class_labels=class_labels,
            added_cond_kwargs=added_cond_kwargs,
        )
        kwargs = cross_attention_kwargs or {}
        frames = kwargs.get("num_frames")
        if frames is None:
            raise ValueError("an inflated UNet needs cross_attention_kwargs={'num_frames': F} (frames in the batch)")
        positions = hidden_states.shape[1]
        # videos·frames rows of positions -> videos·positions rows of frames: a sequence over time at every position
        seq = rearrange(hidden_states, "(v f) p c -> (v p) f c", f=frames)
        seq = self.attn_temp(self.norm_temp(seq), **kwargs) + seq
        return rearrange(seq, "(v p) f c -> (v f) p c", p=positions)


def is_inflated(unet: nn.Module) -> bool:
    return any(isinstance(m, TemporalBlock) for m in unet.modules())


def inflate_unet(unet: nn.Module, frame_keys: str = "first", group_norm: str = "video") -> nn.Module:
    """Inflate ``unet`` in place (frame attention, zero temporal attention, video GroupNorm) and return it.

    ``frame_keys``: "first" (Video-P2P) or "first+previous"; ``group_norm``: "video" (the official model) or
    "frame" (every frame normalised on its own). The trainable weights as inflated are kept (on the CPU) so that
    ``restore_base_weights`` can undo a tuning.
    """
    if is_inflated(unet):
        raise ValueError("this UNet is already inflated; load a fresh one to inflate again")
    if group_norm not in GROUP_NORMS:
        raise ValueError(f"group_norm={group_norm!r} is not supported; choose one of {GROUP_NORMS}")
    # Seeded, without touching the caller's random state: the same model inflates to the same weights in every
    # process (the official code draws the temporal attention's initial q/k/v weights unseeded).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        for module in list(unet.modules()):
            blocks = getattr(module, "transformer_blocks", None)
            if isinstance(blocks, nn.ModuleList):
                for i, block in enumerate(blocks):
                    if not isinstance(block, BasicTransformerBlock):
                        raise TypeError(f"expected diffusers BasicTransformerBlocks, found {type(block).__name__}")
                    blocks[i] = TemporalBlock(block)
    install_processors(unet, inflated=True, frame_keys=frame_keys)
    if group_norm == "video":
        video_group_norms(unet)
    unet.vp2p_base_weights = {n: p.detach().to("cpu", copy=True) for n, p in trainable_parameters(unet).items()}
    return unet


def restore_base_weights(unet: nn.Module) -> None:
    """Put the trainable weights back to what they were right after inflation (before any tuning)."""
    base = getattr(unet, "vp2p_base_weights", None)
    if base is None:
        raise ValueError("this UNet is not inflated; call vp2p.inflate_unet(unet) first")
    with torch.no_grad():
        for name, p in trainable_parameters(unet).items():
            p.copy_(base[name])


def group_norm_of(unet: nn.Module) -> str:
    """The ``group_norm`` option the UNet was inflated with."""
    if not is_inflated(unet):
        raise ValueError("this UNet is not inflated; call vp2p.inflate_unet(unet) first")
    return "video" if any(isinstance(m, VideoGroupNorm) for m in unet.modules()) else "frame"


def inflation_options(unet: nn.Module) -> dict[str, str]:
    """What a tuned or inverted result depends on besides the weights: how the UNet was inflated."""
    return {"frame_keys": frame_keys_of(unet), "group_norm": group_norm_of(unet)}


def frame_keys_of(unet: nn.Module) -> str:
    """The ``frame_keys`` option the UNet was inflated with."""
    for module in unet.modules():
        processor = getattr(module, "processor", None)
        if getattr(getattr(processor, "layer", None), "kind", None) == "frame":
            return processor.frame_keys
    raise ValueError("this UNet is not inflated; call vp2p.inflate_unet(unet) first")


def trainable_parameters(unet: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters Video-P2P tunes on the input video: attn1/attn2 query projections and temporal attention."""
    if not is_inflated(unet):
        raise ValueError("tune an inflated UNet: call vp2p.inflate_unet(unet) first")
    return {n: p for n, p in unet.named_parameters() if any(pattern in n for pattern in TRAINABLE_PATTERNS)}


def weights_fingerprint(unet: nn.Module) -> str:
    """A cheap fingerprint (milliseconds) of what tuning and inflation decide: the trainable weights (a strided
    sample, ``vp2p.io.storage``) and the inflation options; of a 2-D UNet given vp2p's processors, all its weights.
    An inversion records it, and an edit refuses a UNet whose fingerprint has changed since (tuned on another clip)."""
    if not is_inflated(unet):
        return module_fingerprint(unet)
    return settings_fingerprint(weights=tensors_fingerprint(trainable_parameters(unet).items()),
                                **inflation_options(unet))
