"""Inflate a text-to-image UNet into a text-to-set (video) UNet, as Video-P2P does.

Two changes, both around diffusers' own modules, none of them copied:

* **Frame attention.** Every self-attention (``attn1``) takes its queries from frame i but its keys and values from
  frame 0 (Q = W_Q v_i, K = W_K v_0, V = W_V v_0): all frames look at the same reference, so they agree on what
  the object is. Option ``frame_keys="first+previous"`` adds the previous frame's keys, as Tune-A-Video does.
* **Temporal attention.** Each ``BasicTransformerBlock`` is wrapped in a ``TemporalBlock`` that, after the block
  (self-, cross-attention and feed-forward, as in the official code), attends across frames at every spatial
  position, with its own LayerNorm and a zero-initialised output projection: at start the inflated model computes
  exactly what the image model computes, frame by frame.

Frames are folded into the batch (see ``vp2p.attention``); the frame count reaches every processor through
``cross_attention_kwargs={"num_frames": F}``, so nothing global is needed.
"""

from __future__ import annotations

import torch
from einops import rearrange
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import Attention
from torch import nn

from vp2p.attention import install_processors

# Parameters tuned on the input video (paper Sec. 4.1; official ``trainable_modules``).
TRAINABLE_PATTERNS = ("attn1.to_q", "attn2.to_q", "attn_temp")


class TemporalBlock(nn.Module):
    """A diffusers ``BasicTransformerBlock`` followed by attention across frames at each position."""

    def __init__(self, block: BasicTransformerBlock):
        super().__init__()
        self.block = block
        dim, heads, head_dim = block.dim, block.num_attention_heads, block.attention_head_dim
        self.norm_temp = nn.LayerNorm(dim)
        self.attn_temp = Attention(query_dim=dim, heads=heads, dim_head=head_dim, bias=block.attention_bias)
        nn.init.zeros_(self.attn_temp.to_out[0].weight)
        nn.init.zeros_(self.attn_temp.to_out[0].bias)
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


def inflate_unet(unet: nn.Module, frame_keys: str = "first") -> nn.Module:
    """Inflate ``unet`` in place (frame attention + zero temporal attention) and return it."""
    if is_inflated(unet):
        raise ValueError("this UNet is already inflated; load a fresh one to inflate again")
    for module in list(unet.modules()):
        blocks = getattr(module, "transformer_blocks", None)
        if isinstance(blocks, nn.ModuleList):
            for i, block in enumerate(blocks):
                if not isinstance(block, BasicTransformerBlock):
                    raise TypeError(f"expected diffusers BasicTransformerBlocks, found {type(block).__name__}")
                blocks[i] = TemporalBlock(block)
    install_processors(unet, inflated=True, frame_keys=frame_keys)
    return unet


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
