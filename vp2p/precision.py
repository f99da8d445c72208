"""The precision and memory policy: which dtype the weights have, what is computed in it, what always stays
float32, and when activations are recomputed (gradient checkpointing, on CUDA, for tuning and null-text).

One place decides, every stage follows:

* **Weights** are loaded in the pipeline's dtype: float16 on CUDA (a free Colab T4 has no fast bfloat16), float32
  elsewhere; bfloat16 (or float16, slowly) on request anywhere (``load_pipeline(dtype=...)``).
* **Forward passes** run in that same dtype — one dtype, never bfloat16 autocast over float16 weights. When tuning,
  ``autocast`` runs the UNet in the weights' dtype while the trainable weights themselves are float32.
* **Float32 always**: the trainable weights while tuning and their AdamW state (``master_weights``: a float16
  weight cannot take a 3e-5 update), the null-text embeddings and their Adam state, the latents and every DDIM
  formula (``vp2p.ddim``), attention softmax (``vp2p.attention``), and every loss.
* **Gradient scaling** (``grad_scaler``) whenever the weights are float16: both tuning and null-text
  optimisation backpropagate through a float16 UNet, and a loss that is a mean over F·4·64·64 latent values has
  gradients (~1e-7 at Stable Diffusion scale) in float16's subnormal range: unscaled, the null-text embedding
  hardly moves. The scaler multiplies the loss by 2^16 before the backward pass, divides the float32 gradients
  by it afterwards, and skips a step (halving the scale) if anything overflowed. bfloat16 has float32's exponent
  range and needs none.

The official code instead keeps the UNet in float32 for inversion and editing (its ``mixed_precision`` casts only
the text encoder and VAE) and tunes with accelerate's float16 autocast over float32 weights.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch

REDUCED = (torch.float16, torch.bfloat16)


def default_dtype(device) -> torch.dtype:
    """float16 on CUDA, float32 elsewhere."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32


def check_dtype(device, dtype) -> torch.dtype:
    """The dtype to load weights in on ``device`` (the default when None); refuses dtypes the kit does not run."""
    device = torch.device(device)
    dtype = dtype or default_dtype(device)
    if dtype not in (torch.float32,) + REDUCED:
        raise ValueError(f"dtype={dtype} is not supported; use torch.float32, torch.float16 or torch.bfloat16")
    if dtype == torch.float16 and device.type == "cpu":
        warnings.warn("float16 on the CPU runs, but slowly (no fast float16 kernels); float32 or bfloat16 are "
                      "faster there", stacklevel=3)
    return dtype


def autocast(device, dtype):
    """Run the forward pass in ``dtype`` (the weights' dtype) while trainable weights are float32."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype in REDUCED)


def grad_scaler(device, dtype) -> torch.amp.GradScaler:
    """A gradient scaler, active for float16 weights only (see the module docstring)."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=dtype == torch.float16)


@contextmanager
def master_weights(params: dict[str, torch.nn.Parameter]):
    """Make ``params`` trainable float32 master weights for the block; afterwards frozen in their old dtype."""
    originals = {name: p.dtype for name, p in params.items()}
    for p in params.values():
        p.data = p.data.float()
        p.requires_grad_(True)
    try:
        yield
    finally:
        for name, p in params.items():
            p.requires_grad_(False)
            p.grad = None
            p.data = p.data.to(originals[name])


@contextmanager
def gradient_checkpointing(unet, enabled: bool):
    """Recompute activations in the backward pass (less memory, ~30% more time) for the duration of a block.

    diffusers checkpoints non-reentrantly, so every trainable tensor gets its gradient (the official code's
    reentrant checkpointing leaves the first two down blocks' tensors without one)."""
    was = getattr(unet, "is_gradient_checkpointing", False)
    if enabled and not was:
        unet.enable_gradient_checkpointing()
    try:
        yield
    finally:
        if enabled and not was:
            unet.disable_gradient_checkpointing()
