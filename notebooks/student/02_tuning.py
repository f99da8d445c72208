# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vp2p-kit/vp2p/blob/main/notebooks/student/02_tuning.ipynb)
#
# # 2 · Tuning: teach the inflated model this one video
#
# The inflated model of notebook 01 is a video model that has never seen a video. Video-P2P's *model
# initialisation* fine-tunes it on the clip you want to edit, with the clip's description (the **source prompt**),
# on the ordinary diffusion loss: noise the clip's latents at a random timestep, predict the noise, mean squared
# error. Only a few percent of the UNet is trained:
#
# * `attn1.to_q` — the **queries of frame attention**: how frame *i* looks up frame 0;
# * `attn2.to_q` — the **queries of cross-attention**: how image positions look up the prompt's words;
# * `attn_temp` — the new **temporal attention**, which starts at zero and must learn how the clip moves.
#
# Keys and values stay as they are, so the model keeps what it knows about words and pictures; the queries learn
# to find this clip's content. You will see which parameters are trained, the loss curve, and what the model
# samples from the source prompt before and after tuning.

# %%
try:
    import vp2p
except ImportError:  # e.g. on Colab: install the kit (a minute)
    # %pip install -q "vp2p @ git+https://github.com/vp2p-kit/vp2p"
    import vp2p

# %% [markdown]
# ## Setup
#
# **`MODEL`**: Stable Diffusion 1.5 with a GPU, the bundled toy model without one. **`VIDEO`** (Stable Diffusion
# only): the path or URL of your clip, with **`SOURCE`** describing it; `None` renders the course's toy scene.
# Tuning is cached in a work folder (`runs/notebooks/…`): notebooks 03–06 reuse it.

# %%
import numpy as np
import torch

from vp2p import course, workflow

from vp2p.inspect import probes, viz
from vp2p.inversion import psnr
from vp2p.toy import evaluator
from IPython.display import Markdown, display

MODEL = course.model()  # ← the model: SD 1.5 with a GPU, the toy without ($VP2P_MODEL: "toy", a hub id, a folder)
SETTINGS = course.settings_choice()  # ← "official", or on SD "course": fewer frames and tuning steps (README)
VIDEO = None  # ← Stable Diffusion only: your clip (a path or URL); None renders the toy scene
SOURCE = course.SCENE.caption if VIDEO is None else "a rabbit is jumping on the grass"  # ← describe your clip
SEED = 0

FIGURES = course.figures_dir()  # the user cache; `vp2p course --build` writes the repository's figures/
pipe = vp2p.load_pipeline(MODEL)
settings = course.settings(pipe, SETTINGS)
course.estimates.announce(pipe, "02_tuning", SETTINGS)  # Stable Diffusion: the time on a T4
frames = course.clip(pipe, VIDEO, choice=SETTINGS)
work = course.work_dir(pipe, VIDEO)
print(f"{MODEL} on {pipe.device}; {len(frames)} frames of {frames.shape[1]}x{frames.shape[2]}; work folder {work}")
print(f"tuning: {settings.tune_steps} steps, learning rate {settings.tune_lr:g}")

# %% [markdown]
# ## 1. Which parameters are trained
#
# `vp2p.trainable_parameters(unet)` picks the parameters whose names contain one of the patterns above.

# %%
vp2p.inflate_unet(pipe.unet)
groups = probes.parameter_groups(pipe.unet)
total = sum(groups.values())
for name, count in groups.items():
    print(f"{name:12s} {count:>12,}  {count / total:7.2%}")
trained = total - groups["frozen"]
print(f"trained: {trained:,} of {total:,} parameters ({trained / total:.1%} of the UNet)")
print("e.g.", *list(vp2p.trainable_parameters(pipe.unet))[:3], sep="\n  ")
fig = viz.bars(groups, ylabel="parameters", log=True, title="UNet parameters: trained groups vs frozen")
viz.save(fig, FIGURES / "02_trained_parameters.png", overwrite=True);

# %% [markdown]
# ## 2. Before tuning: what does the source prompt give?
#
# We sample the source prompt from noise with the inflated, untuned model (fixed seed). It draws *a* video that
# fits the words — not this video.

# %%
before = probes.generate(pipe, SOURCE, seed=SEED, num_steps=settings.num_steps)

# %% [markdown]
# ## 3. Tune
#
# `workflow.tune_stage` tunes `pipe.unet` in place and saves the tuned parameters (only those, a few MB) with the
# loss curve in the work folder; run again with the same clip, prompt and settings, it loads them instead. A single
# diffusion loss depends a lot on the random timestep, so we also plot a moving average
# (`TuneResult.smoothed()`). Read the curve with that in mind: a short tuning at random timesteps can end on a
# moving average *above* where it started simply because its last steps drew small timesteps, whose noise is the
# hardest to predict — the sentence under the printout says which way this run went.

# %%
tuning = workflow.tune_stage(pipe, frames, SOURCE, settings, work_dir=work)
smooth = tuning.smoothed()
window = len(tuning.losses) - len(smooth) + 1
fig = viz.curves({"loss per step": np.asarray(tuning.losses),
                  f"moving average ({window})": (np.arange(len(smooth)) + window - 1, smooth)},
                 xlabel="tuning step", ylabel="noise-prediction MSE", title="tuning on the clip")
viz.save(fig, FIGURES / "02_tuning_loss.png", overwrite=True)
first_loss, last_loss = float(np.mean(tuning.losses[:window])), float(smooth[-1])
print(f"{len(tuning.losses)} steps; loss {first_loss:.4f} → {last_loss:.4f} "
      f"(mean of the first / last {window})" + (f" in {tuning.seconds:.0f} s" if tuning.seconds else " (loaded)"))
display(Markdown(f"On this run the moving average went from {first_loss:.4f} to {last_loss:.4f}: it "
                 + ("fell." if last_loss < first_loss else "**rose** — over so few steps, which timesteps were "
                    "drawn last moves it more than what was learned; the samples below are the better test.")))

# %% [markdown]
# ## 4. After tuning: the same prompt, the same noise
#
# Sampled again from the same seed, the tuned model should now draw something closer to the input clip: the
# source prompt should have come to mean *this* video. That is what makes the next stage, inversion, work well — and
# why the edit later keeps the clip's look and motion. How much closer is measured under the strips: PSNR to the
# input, and (toy world) in how many frames the evaluator reads the clip's object (its colour and shape).

# %%
after = probes.generate(pipe, SOURCE, seed=SEED, num_steps=settings.num_steps)
fig = viz.video_strip({"input clip": frames, "before tuning": before, "after tuning": after},
                      title=f"'{SOURCE}', sampled from the same noise")
viz.save(fig, FIGURES / "02_before_after.png", overwrite=True)
closeness = {}
for name, sample in [("before", before), ("after", after)]:
    closeness[name] = float(np.mean([psnr(a, b) for a, b in zip(sample, frames)]))
    print(f"{name} tuning: PSNR to the input {closeness[name]:.1f} dB, "
          f"frame spread {probes.frame_spread(sample):.1f} (input {probes.frame_spread(frames):.1f})")
    if course.is_toy(pipe) and VIDEO is None:  # per frame: does it read as the clip's object (colour and shape)?
        hits = [all(evaluator.score(f, course.SCENE)[k] for k in ("color", "shape"))
                for f in evaluator.read_video(sample).frames]
        print(f"  the {course.SCENE.color} {course.SCENE.shape} read back in {sum(hits)} of {len(hits)} frames; "
              f"missed in frames {[i for i, ok in enumerate(hits) if not ok]}")
display(Markdown(f"Tuning moved the sample {closeness['after'] - closeness['before']:+.1f} dB towards the input "
                 f"({closeness['before']:.1f} → {closeness['after']:.1f} dB)."))

# %% [markdown]
# > **What the toy can't show.** On Stable Diffusion, tuning is what turns "a rabbit is jumping on the grass" from
# > *a* rabbit into *this* rabbit, and the before/after samples differ at a glance. The toy model was trained on its
# > own world only, and its captions say almost everything there is to say about a clip (colour, shape, pattern,
# > background), so the untuned model already draws the right kind of scene and tuning has less to teach it than on
# > SD; and a sample from fresh noise is still not the clip (the noise decides where the object is). What makes the edit keep *this* clip is the inversion of notebook 03, which starts from the clip's own noise.

# %% [markdown]
# ## Exercises
#
# Now write the heart of this stage yourself. Each exercise is a function whose signature and docstring are given:
# write its body in the solution cell, run it, then run the check below it. The check calls your function and
# vp2p's own on small inputs and, when they disagree, says what is wrong. The exercises need nothing computed
# above — only the imports of the next cell.
#
# (Each exercise cell below stops at `raise NotImplementedError(...)` with a hint: replace that line
# with your code, then run the cell after it, which checks your function against vp2p's own and says
# what is wrong.)

# %% nbgrader={"grade": false, "grade_id": "02_exercises_setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import torch

from vp2p.course import exercises


# %% [markdown]
# ### Exercise 1 · The forward process: the clip noised to step t
#
# A tuning step shows the UNet the clip at a random noise level and asks it what noise was added. The clip's
# latents x₀ are mixed with Gaussian noise ε at timestep t:
#
# **x_t = √ᾱ_t · x₀ + √(1 − ᾱ_t) · ε**, with ᾱ_t = `scheduler.alphas_cumprod[t]`,
#
# the product of (1 − β) over the first t steps of the noise schedule: near 1 at `t = 0` (x_t is almost the clip),
# near 0 at `t = 999` (almost pure noise). The two factors are square roots because variances add: a unit-variance
# x₀ and ε give a unit-variance x_t at every t. `timesteps` holds one timestep for the whole clip (tuning draws one
# per step) or one per frame; shape ᾱ as (rows, 1, 1, 1) so it broadcasts over channels and pixels. Compared with
# `vp2p.tuning.noisy_latents` (diffusers' `scheduler.add_noise`).

# %% nbgrader={"grade": false, "grade_id": "noisy_latents", "locked": false, "schema_version": 3, "solution": true, "task": false}
def noisy_latents(scheduler, latents, noise, timesteps):
    """x_t for ``latents`` x₀ (frames, C, h, w) and ``noise`` ε of the same shape at ``timesteps`` ((1,) or
    (frames,)): √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε."""
    raise NotImplementedError('x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε with ᾱ_t = scheduler.alphas_cumprod[timesteps], one per frame.')


# %% nbgrader={"grade": true, "grade_id": "check_noisy_latents", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
exercises.check("noisy_latents", noisy_latents)


# %% [markdown]
# ### Exercise 2 · What the tuning loss compares the UNet with
#
# One tuning step noises the clip's latents x₀ at a random timestep t — x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε — runs the
# UNet on x_t with the source prompt, and takes `F.mse_loss(unet_output, target)`. Write the target. It depends
# on what the model was trained to predict (`scheduler.config.prediction_type`): the noise ε for "epsilon" models
# (Stable Diffusion 1.x, the toy model), the *velocity* v = √ᾱ_t·ε − √(1 − ᾱ_t)·x₀ for "v_prediction" models
# (Stable Diffusion 2.x at `768` px). Tune a model on the wrong target and it unlearns what it knew. ᾱ_t is
# `scheduler.alphas_cumprod[t]`; `timesteps` holds one timestep for the whole clip, or one per frame. Compared with
# `vp2p.tuning.training_target`.

# %% nbgrader={"grade": false, "grade_id": "training_target", "locked": false, "schema_version": 3, "solution": true, "task": false}
def training_target(scheduler, latents, noise, timesteps):
    """The tuning loss's target for ``latents`` x₀ (frames, C, h, w) noised with ``noise`` ε at ``timesteps``
    ((1,) or (frames,)): ε, or the velocity for a v_prediction scheduler."""
    raise NotImplementedError('Epsilon models predict the noise; v_prediction models the velocity √ᾱ·ε − √(1 − ᾱ)·x₀.')


# %% nbgrader={"grade": true, "grade_id": "check_training_target", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
exercises.check("training_target", training_target)

# %% [markdown]
# ### Your functions tune the model
#
# Both checks passed: now your two functions *are* the tuning step. `exercises.use(noisy_latents=...,
# training_target=...)` puts them in place of vp2p's for the duration of a `with` block — every tuning step inside
# noises the clip with your forward process and compares the UNet with your target — and `exercises.run_both`
# tunes, inverts and edits a short version of the course clip (4 frames, 25 DDIM steps, red → blue) once with vp2p's
# functions and once inside `use(...)`. Your run never reads vp2p's cached tuning: the cache key names the replaced
# steps. Equal functions give equal edits, to float rounding.

# %%
yours = exercises.run_both(noisy_latents=noisy_latents, training_target=training_target)
yours.show();

# %% [markdown]
# ### Break it: tune the keys and values too
#
# Video-P2P tunes only the *queries* of frame and cross-attention (and the new temporal attention); the keys and
# values stay the image model's. **Predict first:** if tuning also trained `to_k` and `to_v` of `attn1` and
# `attn2`, how many more numbers would it tune? Would the tuning loss end lower? Would the inversion still
# reconstruct the clip — and would the edit still turn the circle blue, when the word "blue" reaches the model
# through cross-attention's keys and values, which tuning on "a red circle …" has now moved?
#
# Then run it: `breaking.tune_keys_and_values()` tunes the short clip both ways (same steps, same seed), inverts,
# and makes the same edit.

# %%
broken = exercises.breaking.tune_keys_and_values()
broken.show();

# %% [markdown]
# **Measure.** The cell below reads the table: how many times more numbers were tuned, and what moved.

# %%
right, wrong = (broken.numbers[name] for name in broken.names)
print(f"tuned numbers: {wrong['tuned numbers'] / right['tuned numbers']:.1f}× as many with keys and values")
for key in ("final tuning loss", "reconstruction PSNR", "target hit", "background PSNR"):
    print(f"{key:20s} {right[key]:8.3g} → {wrong[key]:8.3g}")

# %% [markdown]
# **Next:** [03 · Inversion](03_inversion.ipynb) — find the noise (and the null-text embeddings) from which the
# tuned model redraws the clip exactly.
