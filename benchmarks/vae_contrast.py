"""Does every color's object stand out from the background along one latent direction? The VAE's color contrasts.

    python benchmarks/vae_contrast.py                          # the shipped toy VAE → vae_contrast.json
    python benchmarks/vae_contrast.py --vae runs/vae3/vae --out /tmp/vae3.json

For ``--scenes`` random scenes (no pattern, daylight), each rendered in all 8 colors with everything else the same
(background, path, shade), the object-minus-background latent (``latent_layout.object_contrast``) and the cosine of
every pair of colors' contrasts on the same scene. A negative cosine means the latent that says "color A here" says
"not color B here": ``latent_layout.py`` found that such color swaps move the edited object (7.2 px against 2.0 px
for the others). Also the share of each contrast's energy in channel 0 (the channel ``train.object_channel_loss``
asks to carry "an object here"); how far apart two colors' objects lie in the UNet's (scaled) latents; and the
VAE's round-trip PSNR on 256 held-out training frames, and how far its scaled latents of those frames are from
the shipped VAE's, channel by channel (what a UNet that follows it must learn again).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

from latent_layout import object_contrast

HERE = Path(__file__).parent


def color_contrasts(vae, scenes: int, first_seed: int) -> dict[str, np.ndarray]:
    """color → (scenes, 4) object-minus-background latents, each scene rendered in every color."""
    import torch

    from vp2p.toy import train, world

    @torch.no_grad()
    def encode(frames: np.ndarray) -> torch.Tensor:
        return vae.encode(train.to_tensor(frames)).latent_dist.mean

    plain = [world.random_scene(first_seed + i).replace(attribute=None, style=None) for i in range(scenes)]
    return {color: np.stack([object_contrast(encode, s.replace(color=color)) for s in plain])
            for color in world.COLORS}


def summary(contrasts: dict[str, np.ndarray], scaling_factor: float) -> dict:
    """Cosines of every two colors' contrasts; and how far apart two colors' objects lie in the latents the UNet
    sees (times the VAE's ``scaling_factor``, which makes the latents unit-variance): the diffusion noise must
    leave that distance readable for a caption's color to steer the sample."""
    def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))

    pairs = {f"{a}-{b}": cosines(contrasts[a], contrasts[b]) for a, b in itertools.combinations(contrasts, 2)}
    every = np.concatenate(list(pairs.values()))
    worst = min(pairs, key=lambda k: pairs[k].mean())
    stacked = np.concatenate(list(contrasts.values()))
    apart = {f"{a}-{b}": scaling_factor * np.linalg.norm(contrasts[a] - contrasts[b], axis=1)
             for a, b in itertools.combinations(contrasts, 2)}
    closest = min(apart, key=lambda k: apart[k].mean())
    return {"mean_cosine": round(float(every.mean()), 3),
            "negative_share": round(float((every < 0).mean()), 3),
            "worst_pair": {"colors": worst, "mean_cosine": round(float(pairs[worst].mean()), 3)},
            "channel0_energy_share": round(float((stacked[:, 0] ** 2 / (stacked ** 2).sum(1)).mean()), 3),
            "scaling_factor": round(scaling_factor, 4),
            "object_contrast_scaled": round(scaling_factor * float(np.linalg.norm(stacked, axis=1).mean()), 3),
            "color_distance_scaled": round(float(np.concatenate(list(apart.values())).mean()), 3),
            "closest_colors": {"colors": closest, "distance_scaled": round(float(apart[closest].mean()), 3)},
            "pairs": {k: round(float(v.mean()), 3) for k, v in pairs.items()}}


def latent_change(vae, shipped, frames) -> list[float]:
    """Per channel, the root-mean-square difference between this VAE's scaled latents of ``frames`` and the
    shipped VAE's (0: the UNet sees what it was trained on; about 1.4: as unrelated as two independent latents):
    how much a model following this VAE has to learn again."""
    import torch

    with torch.no_grad():
        ours = vae.encode(frames).latent_dist.mean * vae.config.scaling_factor
        theirs = shipped.encode(frames).latent_dist.mean * shipped.config.scaling_factor
    return [round(float(v), 3) for v in ((ours - theirs) ** 2).mean((0, 2, 3)).sqrt()]


def main(argv=None) -> None:
    import torch
    from diffusers import AutoencoderKL

    from vp2p.io.loading import toy_model_path
    from vp2p.toy import train
    from vp2p.toy.bench import machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", type=Path, default=None, help="a VAE folder (default: the shipped toy model's)")
    parser.add_argument("--scenes", type=int, default=24, help="random scenes, each rendered in all 8 colors")
    parser.add_argument("--seed", type=int, default=20_000_000, help="first scene seed (held out from training)")
    parser.add_argument("--out", type=Path, default=HERE / "vae_contrast.json")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    folder = args.vae or toy_model_path() / "vae"
    vae = AutoencoderKL.from_pretrained(folder).eval()
    held_out = train.to_tensor(train.render_frames(10_000_000, 256)[0])
    result = {"vae": str(args.vae or "the shipped toy model's"), "machine": machine(),
              "psnr_db": round(train.vae_psnr(vae, held_out), 2),
              "latent_change_per_channel": latent_change(
                  vae, AutoencoderKL.from_pretrained(toy_model_path() / "vae").eval(), held_out),
              **summary(color_contrasts(vae, args.scenes, args.seed), vae.config.scaling_factor),
              "minutes": round((time.time() - start) / 60, 1)}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "pairs"}, indent=1))


if __name__ == "__main__":
    main()
