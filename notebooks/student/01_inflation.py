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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vp2p-kit/vp2p/blob/main/notebooks/student/01_inflation.ipynb)
#
# # 1 · Inflation: from an image model to a video model
#
# Video-P2P starts from a text-to-**image** diffusion model and makes it a text-to-**video** ("text-to-set") model
# without training anything new at first:
#
# * all frames of a clip go through the UNet as one batch;
# * every self-attention becomes a **frame attention**: the queries come from frame *i*, the keys and values from
#   **frame 0** — every frame looks at the same reference, so the frames agree on what they show;
# * every transformer block gets a **temporal attention** (attention across frames at each position) whose output
#   projection starts at **zero**, so at first it adds nothing;
# * the ResNet blocks' **GroupNorm** takes its mean and variance over **all frames of the clip** at once, as the
#   official model does, instead of over each frame alone.
#
# In this notebook you will
# 1. sample 8 frames from the same noise with the image model (each frame on its own) and with the inflated model,
#    and measure how much the frames agree;
# 2. compare the GroupNorm over the video with a GroupNorm per frame, the third channel through which frames agree;
# 3. look *inside* frame attention: for a point of frame *i*, where does it look in frame 0?
# 4. check that zero-initialised temporal attention leaves the image model's output unchanged.

# %%
try:
    import vp2p
except ImportError:  # e.g. on Colab: install the kit (a minute)
    # %pip install -q "vp2p @ git+https://github.com/vp2p-kit/vp2p"
    import vp2p

# %% [markdown]
# ## Setup
#
# **`MODEL`** is the one thing to choose. With a GPU (Colab: *Runtime → Change runtime type → GPU*) the default is
# Stable Diffusion 1.5, downloaded from the Hugging Face hub; without one it is the tiny **toy** model that ships
# with `vp2p` (small frames of a synthetic world of coloured shapes — see the README), which runs on a laptop CPU.
#
# **`VIDEO`** is used with Stable Diffusion only: the path or URL of your own clip (8 frames are read and cropped
# to the model's square frame size). Left at `None`, the course's toy scene — a red circle bouncing on the grass —
# is rendered at the model's resolution, which Stable Diffusion can work with too.

# %%
import copy
import inspect

import numpy as np
import torch

from vp2p import course

from vp2p.inspect import probes, viz
from vp2p.toy import evaluator, world

MODEL = course.model()  # ← the model: SD 1.5 with a GPU, the toy without ($VP2P_MODEL: "toy", a hub id, a folder)
VIDEO = None  # ← Stable Diffusion only: your clip (a path or URL); None renders the toy scene
SEED = 0

FIGURES = course.figures_dir()  # the user cache; `vp2p course --build` writes the repository's figures/
pipe = vp2p.load_pipeline(MODEL)
course.estimates.announce(pipe, "01_inflation")  # Stable Diffusion: the time on a T4
PROMPT = course.SCENE.caption if VIDEO is None else "a rabbit is jumping on the grass"  # ← describe your clip
print(f"{MODEL} on {pipe.device}: prompt {PROMPT!r}")

# %% [markdown]
# ## 1. The image model draws every frame on its own
#
# We keep a copy of the image UNet, then inflate `pipe.unet` in place (`vp2p.inflate_unet`). Both sample 8 frames
# from the **same** noise, with the same prompt. The image model turns each frame's noise into its own picture; the
# inflated model's frames all read keys and values from frame 0, so they describe one scene.
#
# The number under the strips is the *frame spread*: the standard deviation across frames of every pixel, averaged
# (0 means all frames are identical). On a video it should be small but not zero — things move.
#
# How much frame attention alone pulls the frames together depends on the model. On Stable Diffusion, whose
# self-attention carries much of the layout, the untuned inflated model already draws one scene. The toy model draws
# its 16×16 latents mostly with convolutions: both rows put the circle wherever each frame's noise puts it, and the
# printout compares their spreads. Inflating an untrained model also *costs* something — the paper says so itself
# (inflation compromises generation, its Fig. 3b and Fig. 8): each frame's queries now meet frame 0's keys, which
# were not drawn for them. Below the strips, the evaluator reads every frame of both rows and counts the frames in
# which it reads the prompt's object (its colour and shape). Frame attention is the *channel* through which frames can agree; tuning on the
# clip (notebook 02) and inverting it (notebook 03) are what make them agree on *this* video.

# %%
image_unet = copy.deepcopy(pipe.unet)  # the image (2-D) model, kept for comparison
vp2p.inflate_unet(pipe.unet)           # pipe.unet is now the video model

flat = probes.generate(pipe, PROMPT, seed=SEED, unet=image_unet)
video = probes.generate(pipe, PROMPT, seed=SEED)
fig = viz.video_strip({"image model": flat, "inflated model": video},
                      title=f"'{PROMPT}' from the same noise")
viz.save(fig, FIGURES / "01_image_vs_inflated.png", overwrite=True)
print(f"frame spread: image model {probes.frame_spread(flat):.1f}, inflated {probes.frame_spread(video):.1f} "
      "(pixel std across frames, 0-255)")
if course.is_toy(pipe) and VIDEO is None:  # per frame: does it read as the prompt's object (colour and shape)?
    for name, sample in [("image model", flat), ("inflated model", video)]:
        hits = [all(evaluator.score(f, course.SCENE)[k] for k in ("color", "shape"))
                for f in evaluator.read_video(sample).frames]
        print(f"{name:15s} the {course.SCENE.color} {course.SCENE.shape} read back in {sum(hits)} of {len(hits)} "
              f"frames; missed in frames {[i for i, ok in enumerate(hits) if not ok]}")

# %% [markdown]
# ## 2. GroupNorm over the whole video
#
# Attention is not the only place where frames meet. Every ResNet block of the UNet normalises its features with a
# GroupNorm: per group of channels, subtract the mean and divide by the standard deviation. The image model takes
# those statistics over one picture. The official Video-P2P model applies the same GroupNorm to the 5-D video tensor,
# so mean and variance are taken over the group's channels **and all 8 frames**: every frame is shifted and scaled
# by the same numbers, which ties the frames' brightness and contrast to the clip's (`inflate_unet(group_norm=...)`:
# `"video"`, the default and the official model, or `"frame"`, each frame alone; the transformer blocks' own input
# norm stays per frame in both, as in the official code). With one frame the two are the same thing.
#
# Below, the same noise once more through a third model, inflated with the per-frame GroupNorm; the bars compare the
# three spreads (on the untuned toy model, whether the video GroupNorm lowers the spread by itself is what the
# printout says — it is a channel, like frame attention, and what flows through it is learned when the model is
# tuned on the clip, notebook 02). The choice matters for fidelity: the two norms give different outputs from the
# same input (the test suite checks it on a tiny SD-shaped model), so a model is tuned, inverted and edited with one
# and the same choice (vp2p's caches record it).

# %%
per_frame_unet = vp2p.inflate_unet(copy.deepcopy(image_unet), group_norm="frame")
per_frame = probes.generate(pipe, PROMPT, seed=SEED, unet=per_frame_unet)
del per_frame_unet  # a third UNet is a lot of memory on a GPU
spreads = {"image model": probes.frame_spread(flat), "per-frame GroupNorm": probes.frame_spread(per_frame),
           "video GroupNorm (official)": probes.frame_spread(video)}
fig = viz.bars(spreads, ylabel="frame spread (0-255)", fmt="{:.1f}",
               title="how much the frames disagree, from the same noise")
viz.save(fig, FIGURES / "01_group_norm.png", overwrite=True)
print({name: round(value, 1) for name, value in spreads.items()})
lowest = min(spreads, key=spreads.get)
print(f"lowest spread on this seed: {lowest}")

# %% [markdown]
# ## 3. Where does each frame look in frame 0?
#
# A **controller** is how vp2p lets you look at (or change) attention: an object with two methods that every
# attention layer calls — `wants(layer, query_length)` (do you need this layer's probabilities?) and
# `__call__(probs, layer, num_frames)` (here they are; return the ones to use). The probe below asks for the frame
# attention at one resolution and keeps, for every frame, the probabilities of one query position: a map over the
# positions of frame 0.

# %%
print(inspect.getsource(probes.FrameAttentionProbe))

# %% [markdown]
# We noise the clip a little (`TIMESTEP`, printed below), run the inflated UNet once
# with the probe, and put the query of frame *i* on the object (the toy world knows where it is; on your own clip
# the query is the frame's centre — change `points` to follow something). If frame attention does its job, every
# frame's object looks at the object **as it is in frame 0**, wherever it has moved since: its share of attention on
# frame 0's object is then above the object's share of the frame (what attention spread evenly would give). The
# printout gives both, frame by frame.

# %%
if VIDEO is None:
    clip = world.render(course.SCENE, num_frames=course.NUM_FRAMES, size=course.frame_size(pipe))
    frames, points = clip.frames, probes.mask_centers(clip.masks)
else:
    frames, points = course.clip(pipe, VIDEO), [(0.5, 0.5)]
TIMESTEP = 400  # of the model's 1000 training timesteps: a little noise
maps = probes.frame_attention(pipe, frames, PROMPT, points, timestep=TIMESTEP)
print(f"frame attention at timestep {TIMESTEP}")
fig = viz.frame_attention(maps, frames, points, title="frame attention: the query (+) in frame i, its map over frame 0")
viz.save(fig, FIGURES / "01_frame_attention.png", overwrite=True)
if VIDEO is None:
    inside = probes.attention_inside(maps, clip.masks[0])
    print("share of each frame's attention on the object in frame 0:", np.round(inside, 2),
          f"(the object covers {clip.masks[0].mean():.0%} of the frame)")
    above = [i for i, share in enumerate(inside) if share > clip.masks[0].mean()]
    print(f"frames whose query finds frame 0's object (share above the object's area): {above} of {len(inside)}")

# %% [markdown]
# ## 4. Zero-initialised temporal attention changes nothing — yet
#
# Feed the inflated model a "video" whose 8 frames are all the same noisy frame. Frame attention then attends to an
# identical frame 0 (= ordinary self-attention), and temporal attention adds its zero output: the result must equal
# the image model's on that one frame, up to float rounding. This is why tuning can start from the image model's
# knowledge instead of from scratch (notebook 02).

# %%
gap = probes.inflation_gap(image_unet, pipe.unet, pipe, PROMPT, num_frames=course.NUM_FRAMES)
zero = all(float(m.attn_temp.to_out[0].weight.abs().max()) == 0 for m in pipe.unet.modules() if hasattr(m, "attn_temp"))
print(f"temporal attention output projections all zero: {zero}")
print(f"max |inflated(8 identical frames) - image model(1 frame)| = {gap:.2e}")
assert zero and gap < 1e-3, "zero-initialised temporal attention should leave the image model's output unchanged"

# %% [markdown]
# ## Exercises
#
# Now write the heart of this stage yourself. The exercise is a function whose signature and docstring are given:
# write its body in the solution cell, run it, then run the check below it. The check calls your function and
# vp2p's own on small random inputs (several shapes, one video and several) and, when they disagree, says what is
# wrong. The exercises need nothing computed above — only the imports of the next cell.
#
# (Each exercise cell below stops at `raise NotImplementedError(...)` with a hint: replace that line
# with your code, then run the cell after it, which checks your function against vp2p's own and says
# what is wrong.)

# %% nbgrader={"grade": false, "grade_id": "01_exercises_setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import torch

from vp2p.course import exercises


# %% [markdown]
# ### Exercise 1 · Frame attention: where keys and values come from
#
# In the inflated UNet every `attn1` computes Q = W_Q v_i from frame *i*'s hidden states, but K = W_K v_0 and
# V = W_V v_0 from **frame 0**'s. The attention processor first builds, for every row of the batch, the hidden
# states its keys and values are computed from — its *context* — and then applies `to_k` and `to_v` to it. Write
# that context.
#
# Frames are folded into the batch, video-major: a batch of V videos of F frames has V·F rows, row = video·F +
# frame (during editing the videos are the branches, twice with guidance). So row (v, i) must get **frame 0 of
# video v** — not frame 0 of the batch. This one choice is what makes the frames of a clip agree: they all look
# things up in the same reference frame. Compared with `vp2p.attention.frame_context(hidden, F, "first")`.

# %% nbgrader={"grade": false, "grade_id": "frame_context", "locked": false, "schema_version": 3, "solution": true, "task": false}
def frame_context(hidden, num_frames):
    """The hidden states every row's keys and values come from in frame attention.

    hidden: (videos·num_frames, positions, channels), frames folded into the batch video-major. Returns a tensor of
    the same shape whose row (video v, frame i) holds the hidden states of frame 0 of video v.
    """
    raise NotImplementedError('For every row (video v, frame i), return the hidden states of frame 0 of the same video v.')


# %% nbgrader={"grade": true, "grade_id": "check_frame_context", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
exercises.check("frame_context", frame_context)

# %% [markdown]
# ### Your function in the pipeline
#
# The check passed: now your `frame_context` *is* frame attention. Inside `with exercises.use(frame_context=...)`
# every frame attention of the UNet builds its keys and values from what your function returns. `exercises.run_both`
# edits a short version of the course clip (4 frames, the toy's 25 DDIM steps, red → blue) once with vp2p's
# function and once inside `use(...)`, and measures both edits: the evaluator's reading of the target (1: it reads
# a blue circle), the background's PSNR against the input, and how much the object's look (its shade) flickers from
# frame to frame (0: one look throughout). Here the clip is tuned and inverted with vp2p's function and edited with
# yours (`rerun=False`); `rerun=True` tunes and inverts with yours too — a minute more, and never from vp2p's
# cache: the cache keys name the replaced step.

# %%
yours = exercises.run_both(frame_context=frame_context, rerun=False)
yours.show();

# %% [markdown]
# ### Break it: keys and values from frame i
#
# What if every frame looked things up in **itself** — keys and values from frame i, the image model's own
# self-attention — instead of in frame 0? **Predict first:** will the edited circle still be blue in every frame?
# Will its look (its shade) agree from frame to frame, or flicker? Will the inversion still redraw the clip?
#
# Then run it: `breaking.frame_keys_from_frame_i()` tunes, inverts and edits the short clip with
# `use(frame_context=own_frame)`, where `own_frame` returns `hidden` unchanged. (The temporal attention and the
# video GroupNorm still let frames agree: frame attention is one of three channels.)

# %%
broken = exercises.breaking.frame_keys_from_frame_i()
broken.show();

# %% [markdown]
# **Measure.** What changed, read off the table:

# %%
right, wrong = (broken.numbers[name] for name in broken.names)
for key in ("target hit", "background PSNR", "flicker", "reconstruction PSNR"):
    print(f"{key:20s} {right[key] if right[key] is not None else float('nan'):8.3g} → "
          f"{wrong[key] if wrong[key] is not None else float('nan'):8.3g}")

# %% [markdown]
# **Next:** [02 · Tuning](02_tuning.ipynb) — the inflated model is fine-tuned on the clip, so that it knows this
# particular video.
