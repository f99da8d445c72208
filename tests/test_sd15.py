"""The Stable Diffusion 1.5 path at every push: SD-1.5-shaped components (random weights, the published configs:
4-level UNet, 77-token CLIP with SD's own tokenizer, the VAE that downsamples by 8), at a size a CPU affords —
2 frames of 128² (16×16 latents) — through inflate → tune → null-text → Replace + LocalBlend edit."""

import numpy as np
import pytest
import torch

import vp2p
from vp2p.controllers import AttentionEdit

F, SIZE, STEPS = 2, 128, 3
SOURCE, TARGET = "a man is walking on the grass", "a Spider-Man is walking on the grass"


@pytest.fixture(scope="module")
def pipe():
    from vp2p.toy.tokenizer import clip_bpe_path

    if clip_bpe_path() is None:
        pytest.skip("CLIP's BPE table is missing: `pip install --no-deps open_clip_torch` (the README's test command)")
    from vp2p.io.sd15 import random_pipeline

    return random_pipeline("cpu", torch.float32)


class LayerSpy(AttentionEdit):
    """The edit controller, also noting which cross-attention layers feed the stored (blend) maps."""

    def __call__(self, probs, layer, num_frames):
        if self.records(layer, probs.shape[2]):
            self.recorded.add(layer.name)
        return super().__call__(probs, layer, num_frames)


def test_sd15_shapes_inflate_tune_invert_and_edit(pipe):
    assert pipe.vae_scale_factor == 8 and pipe.max_tokens == 77
    assert pipe.tokenizer(SOURCE).input_ids[:3] == [49406, 320, 786]  # SD's ids: <start> a man
    frames = np.random.default_rng(0).integers(0, 256, (F, SIZE, SIZE, 3), dtype=np.uint8)
    vp2p.inflate_unet(pipe.unet)
    assert sum("attn_temp" in n for n, _ in pipe.unet.named_modules() if n.endswith("attn_temp")) == 16

    tuning = vp2p.tune(pipe, frames, SOURCE, steps=2, lr=3e-5, progress=False)
    assert len(tuning.losses) == 2 and np.isfinite(tuning.losses).all()
    assert tuning.trained == sum(p.numel() for p in vp2p.trainable_parameters(pipe.unet).values())

    torch.manual_seed(0)
    inversion = vp2p.invert(pipe, frames, SOURCE, num_steps=STEPS, inner_steps=2, progress=False)
    assert inversion.trajectory.shape == (STEPS + 1, F, 4, SIZE // 8, SIZE // 8)
    assert inversion.null_embeddings.shape == (STEPS, 1, 77, 768)
    assert torch.isfinite(inversion.trajectory).all() and torch.isfinite(inversion.null_embeddings).all()
    assert inversion.reconstruction.shape == (F, SIZE, SIZE, 3)

    # Replace ("man" → "Spider-Man", 1 → 3 tokens) + LocalBlend, as an official config would
    base = vp2p.make_controller(pipe, [SOURCE, TARGET], STEPS, blend_words=[["man"], ["Spider-Man"]])
    spy = LayerSpy(base.target_maps, base.cross_alpha, local_blend=base.local_blend, num_tokens=base.num_tokens)
    spy.recorded = set()
    result = vp2p.edit(pipe, inversion, [SOURCE, TARGET], controller=spy, progress=False)
    assert result.videos.shape == (2, F, SIZE, SIZE, 3) and result.videos.dtype == np.uint8
    assert torch.isfinite(result.latents).all()
    # The blend maps: latent/4 (here 4×4; 16×16 at 512²) from the official five layers, down block 2 and up block 1
    assert spy.blend_height == SIZE // 8 // 4
    assert sorted(spy.recorded) == sorted(
        [f"down_blocks.2.attentions.{i}.transformer_blocks.0.block.attn2" for i in range(2)]
        + [f"up_blocks.1.attentions.{i}.transformer_blocks.0.block.attn2" for i in range(3)])
    masks = result.blend_masks
    assert masks.shape == (STEPS - int(0.2 * STEPS), 2, F, SIZE // 8, SIZE // 8)
    # What the edit must do, beyond shapes: the source branch is not edited, so it retraces the inversion's own
    # reconstruction (explicit vs fused attention kernels: float rounding only) ...
    assert np.abs(result.source.astype(int) - inversion.reconstruction.astype(int)).max() <= 1
    # ... and the target branch is edited. (That LocalBlend keeps the source outside its mask is checked on the toy
    # model, tests/test_editing.py: here the blend maps are 4×4, and the official 3×3 max-pool spreads every map's
    # maximum over the whole of them, so the mask is every pixel.)
    latents = result.latents.view(2, F, *result.latents.shape[1:])
    assert (latents[1] - latents[0]).abs().max() > 1e-3
