# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vp2p-kit/vp2p/blob/main/notebooks/03_inversion.ipynb)
#
# # 3 · Inversion: find the noise that redraws the clip
#
# To edit a video we first need the starting point from which the tuned model redraws it: **DDIM inversion** runs
# the deterministic sampler backwards, from the clip's latents z₀ to noise z_T (paper eq. 3). Sampling forward
# again *without* guidance would return (almost) to z₀ — but editing needs classifier-free guidance (w = 7.5), and
# with guidance every step drifts a little from the inversion trajectory; over 50 steps the reconstruction goes
# visibly wrong.
#
# **Null-text inversion** fixes the drift by optimising, at every step, the *unconditional* embedding (the
# "null text") so that the guided step lands back on the trajectory. Video-P2P's change: **one** embedding
# shared by all frames — the frames are one scene, and the edit's guidance must treat them alike. The paper's
# Table 2 compares this with one embedding per frame. Two shortcuts need no optimisation at all:
# **negative-prompt** inversion uses the source prompt's own embedding as the null one (the guided step then equals
# the conditional one), and **fast** samples the source branch without guidance.
#
# Here you will compare the five on the tuned model: reconstructions, the error at every step, per-frame PSNR, and
# how many numbers each one optimises.

# %%
try:
    import vp2p
except ImportError:  # e.g. on Colab: install the kit (a minute)
    # %pip install -q "vp2p @ git+https://github.com/vp2p-kit/vp2p"
    import vp2p

# %% [markdown]
# ## Setup
#
# As in notebook 02: **`MODEL`**, and with Stable Diffusion your **`VIDEO`** and its **`SOURCE`** prompt. The tuned
# weights and every inversion are cached in the work folder, so notebooks 04–06 start from here.
#
# On the toy model the course uses **25 DDIM steps** instead of the paper's 50 (`course.settings`): two null-text
# optimisations (shared and per frame) of 8 frames then fit in about three minutes on one CPU core. With Stable
# Diffusion the settings are the paper's.

# %%
import numpy as np
import torch

from vp2p import course, viz, workflow

MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5" if torch.cuda.is_available() else "toy"  # ← the model
VIDEO = None  # ← Stable Diffusion only: your clip (a path or URL); None renders the toy scene
SOURCE = course.SCENE.caption if VIDEO is None else "a rabbit is jumping on the grass"  # ← describe your clip

FIGURES = course.project_dir() / "figures"
pipe = vp2p.load_pipeline(MODEL)
settings = course.settings(pipe)
frames = course.clip(pipe, VIDEO)
work = course.work_dir(pipe, VIDEO)
tuning = workflow.tune_stage(pipe, frames, SOURCE, settings, work_dir=work)  # notebook 02, or its cache
print(f"{MODEL}: {settings.num_steps} DDIM steps, guidance {settings.guidance_scale}, "
      f"null-text: at most {settings.inner_steps} Adam steps per DDIM step")

# %% [markdown]
# ## Invert five ways
#
# `workflow.invert_stage` runs `vp2p.invert(pipe, frames, SOURCE, method=…)` — or loads the cached result. Each
# `Inversion` holds z_T, the per-step null embeddings, the reconstruction (sampled back **with** guidance, as an
# edit's source branch is), the latent error after every step (`step_errors`) and the PSNR of every frame
# (`frame_psnr`).

# %%
METHODS = {"DDIM": "ddim", "null-text, shared (Video-P2P)": "null-text",
           "null-text, per frame": "null-text-per-frame", "negative prompt": "negative-prompt", "fast": "fast"}
inversions = {}
for name, method in METHODS.items():
    inversions[name] = workflow.invert_stage(pipe, frames, SOURCE, settings.replace(method=method), work_dir=work)
    print(f"{name:30s} {inversions[name].seconds:6.1f} s (when computed)")

# %% [markdown]
# ## Reconstructions
#
# DDIM drifts; the null-text variants come back to the clip. Negative-prompt and fast inversion come back too on a
# well-tuned model — their price is paid at editing time (the target branch then gets less or no guidance context).

# %%
fig = viz.video_strip({"input": frames, **{name: inv.reconstruction for name, inv in inversions.items()}},
                      title="reconstructions from z_T, sampled with guidance")
viz.save(fig, FIGURES / "03_reconstructions.png");

# %% [markdown]
# ## Where the error comes from: every step
#
# `step_errors[i]` is the mean squared distance, after sampling step *i*, between the reconstruction's latents and
# the inversion trajectory. Plain DDIM's error grows step after step; the null-text embeddings keep it near the
# optimiser's stopping threshold.

# %%
fig = viz.curves({name: inv.step_errors for name, inv in inversions.items()}, xlabel="sampling step",
                 ylabel="latent MSE to the trajectory", log=True, title="error after every step")
viz.save(fig, FIGURES / "03_inversion_errors.png")
fig = viz.per_frame({name: inv.frame_psnr for name, inv in inversions.items()}, ylabel="PSNR (dB)",
                    title="reconstruction PSNR per frame")
viz.save(fig, FIGURES / "03_frame_psnr.png");

# %% [markdown]
# ## Table 2, on our model
#
# The paper's Table 2 compares a shared null embedding with one per frame: per-frame optimises F times more numbers
# for (at best) a slightly better reconstruction — and the frames' guidance is no longer the same, which hurts
# temporal consistency once the video is edited. `Inversion.trainable_count()` counts the optimised numbers.

# %%
rows = [{"method": name, "numbers optimised": inv.trainable_count(),
         "mean PSNR (dB)": float(np.mean(inv.frame_psnr)), "worst frame (dB)": float(np.min(inv.frame_psnr)),
         "final latent MSE": float(inv.step_errors[-1]), "seconds": float(inv.seconds)}
        for name, inv in inversions.items()]
print(" | ".join(rows[0]))
for row in rows:
    print(" | ".join(f"{v:,}" if isinstance(v, int) else f"{v:.3g}" if isinstance(v, float) else f"{v:30s}"
                     for v in row.values()))
fig = viz.table(rows, title=f"inversion of {len(frames)} frames, {settings.num_steps} DDIM steps")
viz.save(fig, FIGURES / "03_inversion_table.png");

# %% [markdown]
# **Next:** [04 · Word swap](04_word_swap.ipynb) — edit the clip from the shared null-text inversion.
