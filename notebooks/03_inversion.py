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
# with guidance every step drifts a little from the inversion trajectory; over the paper's 50 steps the reconstruction goes
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
# how many numbers each one optimises. Notebook 03b edits from them and has you write the inversion yourself.

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
# On the toy model the course uses fewer DDIM steps than the paper's 50, and a few larger Adam steps per DDIM step
# (official: 10 Adam steps of lr 1e-2) — `workflow.TOY_SETTINGS`, printed below: the toy's null-text loss falls
# slowly and steadily, so a few larger steps land near the same place (the README's "Differences from the official
# code" has the measurement on held-out clips). With Stable Diffusion the settings are the paper's.

# %%
import numpy as np
import torch

from vp2p import course, workflow
from vp2p.inversion import stop_threshold
from IPython.display import Markdown, display


from vp2p.inspect import viz
MODEL = course.model()  # ← the model: SD 1.5 with a GPU, the toy without ($VP2P_MODEL: "toy", a hub id, a folder)
SETTINGS = course.settings_choice()  # ← "official", or on SD "course": fewer frames and tuning steps (README)
VIDEO = None  # ← Stable Diffusion only: your clip (a path or URL); None renders the toy scene
SOURCE = course.SCENE.caption if VIDEO is None else "a rabbit is jumping on the grass"  # ← describe your clip

FIGURES = course.figures_dir()  # the user cache; `vp2p course --build` writes the repository's figures/
pipe = vp2p.load_pipeline(MODEL)
settings = course.settings(pipe, SETTINGS)
course.estimates.announce(pipe, "03_inversion", SETTINGS)  # Stable Diffusion: the time on a T4
frames = course.clip(pipe, VIDEO, choice=SETTINGS)
work = course.work_dir(pipe, VIDEO)
tuning = workflow.tune_stage(pipe, frames, SOURCE, settings, work_dir=work)  # notebook 02, or its cache
print(f"{MODEL}: {settings.num_steps} DDIM steps, guidance {settings.guidance_scale}, "
      f"null-text: at most {settings.inner_steps} Adam steps of lr {settings.null_text_lr:g} per DDIM step")

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
# How far each reconstruction is from the input is measured in the next sections (PSNR per frame, error per step).
# Note what the cheap inversions change: with decoupled guidance (notebook 04) the *target* branch always gets the
# plain empty-prompt embedding, whatever the inversion, so negative-prompt and fast inversion change only the
# *source* branch — their whole price is how faithfully that branch redraws the clip, which is what these
# reconstructions show.

# %%
fig = viz.video_strip({"input": frames, **{name: inv.reconstruction for name, inv in inversions.items()}},
                      title="reconstructions from z_T, sampled with guidance")
viz.save(fig, FIGURES / "03_reconstructions.png", overwrite=True);

# %% [markdown]
# ## Where the error comes from: every step
#
# `step_errors[i]` is the mean squared distance, after sampling step *i*, between the reconstruction's latents and
# the inversion trajectory. The null-text optimiser stops a step early once its loss falls below a threshold
# (`vp2p.inversion.stop_threshold`, the official schedule); the printout compares each method's error with it and
# says how often the optimiser got there.

# %%
fig = viz.curves({name: inv.step_errors for name, inv in inversions.items()}, xlabel="sampling step",
                 ylabel="latent MSE to the trajectory", log=True, title="error after every step")
viz.save(fig, FIGURES / "03_inversion_errors.png", overwrite=True)
fig = viz.per_frame({name: inv.frame_psnr for name, inv in inversions.items()}, ylabel="PSNR (dB)",
                    title="reconstruction PSNR per frame")
viz.save(fig, FIGURES / "03_frame_psnr.png", overwrite=True)
for name, inv in inversions.items():
    ratio = np.median([error / stop_threshold(i) for i, error in enumerate(inv.step_errors)])
    print(f"{name:30s} latent MSE after the last step {inv.step_errors[-1]:.2g}; median ratio to the stopping "
          f"threshold {ratio:.0f}×")
shared = inversions["null-text, shared (Video-P2P)"]
stopped = sum(i < settings.inner_steps for i in shared.iterations)
print(f"shared null-text: stopped early at {stopped} of {len(shared.iterations)} steps; its final loss per step is "
      f"{np.median([loss / stop_threshold(i) for i, loss in enumerate(shared.losses)]):.0f}× the threshold (median)")

# %% [markdown]
# ## Table 2, on our model
#
# The paper's Table 2 compares a shared null embedding with one per frame: per-frame optimises F times more numbers
# for (at best) a slightly better reconstruction — and the frames' guidance is no longer the same, which the paper
# reports hurts temporal consistency once the video is edited (its "w/o SU" row; notebook 07 runs it on the toy). `Inversion.trainable_count()` counts the optimised numbers.

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
viz.save(fig, FIGURES / "03_inversion_table.png", overwrite=True);

# %% [markdown]
# **Next:** [03b · Null-text, by hand](03b_null_text.ipynb) — is null-text worth its cost? The same edit from each
# inversion, one null embedding per frame broken, and the inversion step and null-text loss written by you.
