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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vp2p-kit/vp2p/blob/main/notebooks/03b_null_text.ipynb)
#
# # 3b · Null-text, by hand: is it worth its cost?
#
# Notebook 03 inverted the clip five ways and compared the reconstructions. A reconstruction is not the goal,
# though; the edit is. Here the same word swap is made from each inversion and judged, one null embedding per frame
# is tried in place of the shared one (a "break it": predict first), and you write the inversion's heart yourself —
# the DDIM inversion step, the shared null-text loss and its Adam update — and watch your functions invert the clip.

# %%
try:
    import vp2p
except ImportError:  # e.g. on Colab: install the kit (a minute)
    # %pip install -q "vp2p @ git+https://github.com/vp2p-kit/vp2p"
    import vp2p

# %% [markdown]
# ## Setup
#
# As in notebook 03: **`MODEL`**, and with Stable Diffusion your **`VIDEO`** and its **`SOURCE`** prompt. The tuned
# weights and the inversions come from the work folder when notebook 03 ran before (else they are computed here).

# %%
import numpy as np
import torch

from vp2p import course, workflow
from IPython.display import Markdown, display


from vp2p.inspect import viz
MODEL = course.model()  # ← the model: SD 1.5 with a GPU, the toy without ($VP2P_MODEL: "toy", a hub id, a folder)
SETTINGS = course.settings_choice()  # ← "official", or on SD "course": fewer frames and tuning steps (README)
VIDEO = None  # ← Stable Diffusion only: your clip (a path or URL); None renders the toy scene
SOURCE = course.SCENE.caption if VIDEO is None else "a rabbit is jumping on the grass"  # ← describe your clip

FIGURES = course.figures_dir()  # the user cache; `vp2p course --build` writes the repository's figures/
pipe = vp2p.load_pipeline(MODEL)
settings = course.settings(pipe, SETTINGS)
course.estimates.announce(pipe, "03b_null_text", SETTINGS)  # Stable Diffusion: the time on a T4
frames = course.clip(pipe, VIDEO, choice=SETTINGS)
work = course.work_dir(pipe, VIDEO)
tuning = workflow.tune_stage(pipe, frames, SOURCE, settings, work_dir=work)  # notebook 02, or its cache
print(f"{MODEL}: {settings.num_steps} DDIM steps, guidance {settings.guidance_scale}, "
      f"null-text: at most {settings.inner_steps} Adam steps of lr {settings.null_text_lr:g} per DDIM step")
METHODS = {"DDIM": "ddim", "null-text, shared (Video-P2P)": "null-text",
           "null-text, per frame": "null-text-per-frame", "negative prompt": "negative-prompt"}
inversions = {name: workflow.invert_stage(pipe, frames, SOURCE, settings.replace(method=method), work_dir=work)
              for name, method in METHODS.items()}
print("inversions (notebook 03's, or computed now):", ", ".join(inversions))

# %% [markdown]
# ## 1. Edit from each inversion
#
# A reconstruction is not the goal; the edit is. Null-text inversion exists so that an edit *with guidance* starts
# from a faithful source branch. Below, the same word swap (red → blue, LocalBlend on "circle") from the DDIM, shared
# null-text and negative-prompt inversions (fast inversion edits exactly as negative-prompt does under decoupled
# guidance: both leave the source branch the conditional prediction), judged by the toy evaluator: does it read
# blue, and how well is the background (outside the circle) kept?

# %%
if VIDEO is None and course.is_toy(pipe):
    from vp2p.toy import world
    from vp2p.toy.bench import judge_edit

    clip_video = world.render(course.SCENE, num_frames=len(frames), size=frames.shape[1])
    target = course.SCENE.replace(color="blue")
    judged, edits = {}, {}
    for name in ("DDIM", "null-text, shared (Video-P2P)", "negative prompt"):
        edit = edits[name] = vp2p.edit(pipe, inversions[name], [SOURCE, target.caption],
                                       blend_words=["circle", "circle"], progress=False)
        verdict = judge_edit(clip_video, target, edit.edited)
        judged[name] = {"reads blue": "yes" if verdict["read"]["color"] == "blue" else "no",
                        "background PSNR (dB)": round(verdict["background_psnr"], 1),
                        "reconstruction PSNR (dB)": round(float(np.mean(inversions[name].frame_psnr)), 1),
                        "seconds to invert": round(float(inversions[name].seconds), 1)}
    fig = viz.table([{"inversion": name, **row} for name, row in judged.items()],
                    title="the same edit from three inversions, judged by the evaluator")
    viz.save(fig, FIGURES / "03b_edit_from_inversions.png", overwrite=True)
    for name, row in judged.items():
        print(f"{name:30s} {row}")
    blue = [name for name, row in judged.items() if row["reads blue"] == "yes"]
    best = max(judged, key=lambda name: judged[name]["background PSNR (dB)"])
    recon = max(judged, key=lambda name: judged[name]["reconstruction PSNR (dB)"])
    display(Markdown(
        f"{len(blue)} of {len(judged)} edits read blue. The background is kept best from **{best}** "
        f"({judged[best]['background PSNR (dB)']} dB); the best reconstruction is **{recon}**'s "
        f"({judged[recon]['reconstruction PSNR (dB)']} dB). "
        + ("Null-text, with the toy's few Adam steps, does not beat the cheap inversions here."
           if best != "null-text, shared (Video-P2P)" else "Null-text's optimisation pays off here.")))
else:
    print(course.toy_only("the evaluator's verdict on the same edit from three inversions", pipe, VIDEO))

# %% [markdown]
# > **What the toy can't show.** The paper's reason for null-text is a guided source branch that stays on the clip
# > when the prompt describes the clip only roughly. The toy's captions describe its clips completely, so the guided
# > source branch hardly leaves the clip even without optimised embeddings, and the cheap inversions do about as well
# > (compare the rows above). On a real clip is where null-text has room to matter: set `MODEL` to Stable Diffusion
# > and your `VIDEO`, and compare the same three rows.

# %% [markdown]
# ## Exercises
#
# Now write the heart of this stage yourself. Each exercise is a function whose signature and docstring are given:
# write its body in the solution cell, run it, then run the check below it. The check calls your function and
# vp2p's own on small inputs — random latents, schedules of 1 to `50` steps, and a tiny stand-in UNet
# (`exercises.TinyDenoiser`) in place of the real one, so that it runs in a second — and, when they disagree, says
# what is wrong. The exercises need nothing computed above — only the imports of the next cell.
#
# (The notebook in the repository holds solutions between `### BEGIN SOLUTION` and `### END SOLUTION`;
# `vp2p course --student DIR` writes the student version, where they are replaced by `raise NotImplementedError`.)

# %% nbgrader={"grade": false, "grade_id": "03b_exercises_setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import torch
import torch.nn.functional as F

from vp2p.course import exercises
from vp2p.ddim import ddim_step, guide
from vp2p.sampling import unet_output


# %% [markdown]
# ### Exercise 1 · The DDIM inversion step (paper eq. 3)
#
# A DDIM sampling step from t down to t − Δ predicts the clean latents x̂₀ and the noise ε̂ at the current level
# and re-noises x̂₀ to the level below. Inversion runs it the other way: from a sample at **t − Δ** up to **t**,
# with the model evaluated at (sample, t) — the sample at t is not known yet, that is the approximation DDIM
# inversion makes. Write it for epsilon models (x̂₀ = (x − √(1 − ᾱ)·ε̂)/√ᾱ, at the sample's own level). Which ᾱ
# goes where is the whole exercise: swap them and you have the sampling step; shift them by Δ and every step lands
# one level off. `schedule.alpha(s)` is ᾱ at timestep s — also at s < 0, which the very first inversion step
# meets (`t − Δ = −19` for `50` steps: timesteps `981 … 1`). Compared with `vp2p.ddim.ddim_inverse_step`.

# %% nbgrader={"grade": false, "grade_id": "ddim_inverse_step", "locked": false, "schema_version": 3, "solution": true, "task": false}
def ddim_inverse_step(model_output, t, sample, schedule):
    """One DDIM inversion step from ``sample`` at timestep t − Δ up to t (epsilon models).

    model_output: the UNet's noise prediction ε̂ at (sample, t); schedule: a ``vp2p.ddim.DDIMSchedule``, with
    ``schedule.alpha(s)`` the ᾱ of timestep s and ``schedule.step_size`` the Δ between two DDIM steps.
    """
    ### BEGIN SOLUTION
    alpha_here = schedule.alpha(t - schedule.step_size)  # the noise level the sample is at
    alpha_next = schedule.alpha(t)  # the level the step lands on
    x0 = (sample - (1 - alpha_here) ** 0.5 * model_output) / alpha_here**0.5
    return alpha_next**0.5 * x0 + (1 - alpha_next) ** 0.5 * model_output
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_ddim_inverse_step", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
exercises.check("ddim_inverse_step", ddim_inverse_step)


# %% [markdown]
# ### Exercise 2 · The shared null-text loss (paper eq. 9)
#
# Sampling back from z_T *with guidance* drifts off the inversion trajectory. At step t, null-text inversion asks:
# with the unconditional embedding `null`, where does the **guided** DDIM step from the current latent land — and
# how far is that from the trajectory's point one step below (`target`)? The conditional prediction `cond_out`
# does not depend on `null` and is computed once per step. Video-P2P's `null` is ONE embedding (1, tokens, dim)
# for all frames: `unet_output` repeats it for every frame, so every frame's guidance is the same. Build the loss
# from `unet_output(unet, latent, t, embeddings, num_frames)`, `guide(uncond, cond, w)` and `ddim_step`; it must
# stay differentiable in `null` — the next exercise follows its gradient. The check compares the loss and its
# gradient with `vp2p.inversion.null_text_loss`.

# %% nbgrader={"grade": false, "grade_id": "null_text_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def null_text_loss(unet, latent, t, null, cond_out, target, schedule, num_frames, guidance_scale):
    """The mean squared distance between the guided DDIM step from ``latent`` at ``t`` — unconditional prediction
    made with ``null`` (1, tokens, dim), conditional prediction ``cond_out`` — and the trajectory's ``target``."""
    ### BEGIN SOLUTION
    uncond_out = unet_output(unet, latent, t, null, num_frames)  # one embedding, repeated for every frame
    guided = guide(uncond_out, cond_out, guidance_scale)  # uncond + w·(cond − uncond)
    return F.mse_loss(ddim_step(guided, t, latent, schedule), target)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_null_text_loss", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
exercises.check("null_text_loss", null_text_loss)


# %% [markdown]
# ### Exercise 3 · One Adam update with the official schedule
#
# At DDIM step i (0 for the first, noisiest step) the official code creates a **fresh** Adam optimiser over the
# null embedding with the learning rate `lr·(1 − i/100)` — large steps early, where the trajectory is noisy, smaller
# ones later — and runs at most `inner_steps` (official: 10) iterations, stopping once the loss is below
# `1e-5 + i·2e-5` (`vp2p.inversion.stop_threshold`); each step starts from
# the previous step's embedding. Write one iteration: from `null`, one backward pass of `loss_of(null)` and one
# Adam step. (Adam's first step moves every entry by about the learning rate, whatever the gradient's size: the
# schedule *is* the step size.) The check replays vp2p's `null_text_optimization` with one iteration per step on
# the tiny model and compares your update at steps `0, 1, 7` and `19` with the embeddings it found.

# %% nbgrader={"grade": false, "grade_id": "null_text_update", "locked": false, "schema_version": 3, "solution": true, "task": false}
def null_text_update(null, loss_of, i, lr):
    """One Adam update of the shared null embedding at DDIM step ``i``: from ``null`` (not requiring grad), a
    step on ``loss_of(embedding)`` (the loss of exercise 2 with this step's inputs) at the official learning rate
    for step i (``lr``: the base rate, 1e-2). Returns the updated embedding, detached."""
    ### BEGIN SOLUTION
    null = null.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([null], lr=lr * (1.0 - i / 100.0))  # a fresh Adam every DDIM step
    loss = loss_of(null)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return null.detach()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_null_text_update", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
exercises.check("null_text_update", null_text_update)

# %% [markdown]
# ### Your functions invert the clip
#
# Inside `with exercises.use(ddim_inverse_step=..., null_text_loss=...)` the inversion climbs to z_T with your
# inverse step and optimises the null embeddings on your loss. `exercises.run_both` inverts and edits a short
# version of the course clip (4 frames, 25 DDIM steps, red → blue) with vp2p's functions and with yours, and
# measures both (the reconstruction's PSNR among them). Your update of exercise 3 is one iteration of the loop in
# `vp2p.inversion.null_text_optimization`, which keeps one Adam for all iterations of a step: the loop stays
# vp2p's. Your run never reads vp2p's cached inversion: the cache key names the replaced steps.

# %%
yours = exercises.run_both(ddim_inverse_step=ddim_inverse_step, null_text_loss=null_text_loss)
yours.show();

# %% [markdown]
# ### Break it: one null embedding per frame
#
# Video-P2P optimises **one** unconditional embedding per DDIM step, shared by all frames. What if each frame had
# its own? **Predict first:** how many more numbers are optimised? Will the reconstruction be closer to the clip
# (each frame can be fitted on its own)? And the edit — the target branch does not use these embeddings at all
# (decoupled guidance), so does it change?
#
# Then run it. Both inversions of the whole clip are above (method `"null-text"` and `"null-text-per-frame"`), and
# so is the edit from the shared one: the cell makes the same edit from the per-frame one, and
# `breaking.compared` measures both. (`breaking.per_frame_null()` runs the same experiment on the course's short
# clip, from scratch, like the other break-its.)

# %%
if VIDEO is None and course.is_toy(pipe):
    SHARED, PER_FRAME = "null-text, shared (Video-P2P)", "null-text, per frame"
    edits[PER_FRAME] = vp2p.edit(pipe, inversions[PER_FRAME], [SOURCE, target.caption],
                                 blend_words=["circle", "circle"], progress=False)
    broken = exercises.breaking.compared(
        "one null embedding shared by the frames, and one per frame", clip_video,
        {label: (edits[name], target, inversions[name])
         for label, name in (("shared (correct)", SHARED), ("per frame (broken)", PER_FRAME))},
        about=f"the course clip, {len(frames)} frames, the inversions above", optimised=True)
    broken.show();
else:
    broken = exercises.breaking.per_frame_null()  # the toy's short clip: the evaluator knows its truth
    broken.show();

# %% [markdown]
# **Measure.**

# %%
right, wrong = (broken.numbers[name] for name in broken.names)
for key in ("optimised numbers", "reconstruction PSNR", "target hit", "background PSNR", "flicker"):
    a, b = right[key], wrong[key]
    print(f"{key:20s} {a if a is not None else float('nan'):10.4g} → {b if b is not None else float('nan'):10.4g}")

# %% [markdown]
# **Next:** [04 · Word swap](04_word_swap.ipynb) — edit the clip from the shared null-text inversion.
