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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vp2p-kit/vp2p/blob/main/notebooks/student/00_overview.ipynb)
#
# # 0 · Overview: Video-P2P in one picture
#
# Video-P2P edits a video with words: "a red circle bouncing on the grass" becomes "a *blue* circle bouncing on the
# grass" — the same circle, the same bounce, the same grass, only blue. It needs no video model and no training
# data: it turns an image diffusion model into a video model, fits it to the one clip, finds the noise the clip
# comes from, and redraws the clip from that noise with the edited prompt while the *attention* of the original
# steers where things go.
#
# This notebook is the map for the rest of the course. You will see
# 1. the whole pipeline as one picture (the paper's Fig. 4), and three words the later notebooks use: **branch**,
#    **controller**, **video-major**;
# 2. the toy world the course runs on without a GPU;
# 3. classifier-free guidance and DDIM, each in a formula and a tiny computed example;
# 4. what a cross-attention map is, on an image the model draws;
# 5. why handing one prompt's maps to another prompt edits an image while keeping its layout.
#
# Every number in the text below is printed by the cell beside it.

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
# with `vp2p`, trained on a synthetic world of coloured shapes, which runs on a laptop CPU. This notebook only
# draws from noise, so it needs no clip of yours.

# %%
import time

import numpy as np
import torch

from vp2p import course
from vp2p.controllers import AttentionStore
from vp2p.ddim import DDIMSchedule, ddim_inverse_step, ddim_step, guide
from vp2p.inspect import diagram, probes, viz
from vp2p.inspect.recorder import AttentionRecorder
from vp2p.io.loading import is_toy
from vp2p.sampling import rows_for
from vp2p.toy import evaluator, world

STARTED = time.perf_counter()
MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5" if torch.cuda.is_available() else "toy"  # ← the model
SEED = 0

FIGURES = course.figures_dir()  # the user cache; `vp2p course --build` writes the repository's figures/
pipe = vp2p.load_pipeline(MODEL)
settings = course.settings(pipe)
SIZE = course.frame_size(pipe)
PROMPT = course.SCENE.caption  # "a red circle bouncing on the grass"
print(f"{MODEL} on {pipe.device}: frames of {SIZE}×{SIZE} pixels, {settings.num_steps} DDIM steps, "
      f"guidance scale {settings.guidance_scale}")

# %% [markdown]
# ## 1. The pipeline in one picture
#
# Read the picture as a snake: preparation along the top, editing along the bottom.
#
# * **Inflate (T2I → T2S).** The image model's UNet runs all frames of the clip as one batch. Each self-attention
#   becomes a *frame attention* — every frame's pixels take their keys and values from the first frame, so all
#   frames look up the same reference — and each transformer block gets a *temporal attention* across frames whose
#   output starts at zero, so at first the inflated model computes what the image model computes (notebook 01).
# * **Tune.** A few hundred steps of the usual noise-prediction loss on the one clip with its source prompt, training
#   only the attention queries and the temporal attention (notebook 02).
# * **Invert.** DDIM run backwards turns the clip into the noise z_T it would be drawn from; then, step by step, one
#   "null-text" embedding shared by all frames is optimised so that guided sampling from z_T redraws the clip
#   (notebook 03).
# * **Edit.** Two branches denoise together from z_T. The source branch, with the source prompt and the optimised
#   null-text, redraws the clip; the target branch, with the target prompt and the plain empty prompt as its null
#   (*decoupled guidance*), draws the edit. The attention control hands the source branch's attention maps to the
#   target branch, and the local blend keeps the target's change only where the edited words' maps are
#   (notebooks 04–06).

# %%
fig = diagram.pipeline_figure()
viz.save(fig, FIGURES / "00_pipeline.png", overwrite=True);

# %% [markdown]
# ### Three words for the rest of the course
#
# * A **branch** is one video denoised in the batch: branch 0 the source prompt, branch 1 (and any further one) a
#   target prompt. All branches start from the same noise z_T and take the same steps; only their prompts, null
#   embeddings and attention differ.
# * A **controller** is the object every attention layer hands its attention probabilities to before using them
#   (`vp2p.controllers`). An `AttentionStore` only records them — the maps you will look at below; an
#   `AttentionEdit` (built by `vp2p.make_controller`) also *changes* them, writing the source branch's maps into the
#   target branch, and after every step may blend the branches' latents. `AttentionRecorder` wraps either one and keeps
#   a copy of every layer, head and step for inspection.
# * **Video-major** is how the frames sit in the batch. The UNet sees images, so the frames of every branch are
#   stacked one branch after the other: row = branch · F + frame, for F frames. Guided sampling doubles the
#   batch, the unconditional rows of all branches first, then the conditional ones. `vp2p.sampling.rows_for` expands
#   one value per branch (a prompt's embedding) to one per row:

# %%
branches, frames = 2, 3
branch_of_row = rows_for(torch.arange(branches).view(branches, 1, 1), branches * frames).flatten().tolist()
for row, branch in enumerate(branch_of_row):
    print(f"row {row}: branch {branch}, frame {row - branch * frames}")
assert branch_of_row == [row // frames for row in range(branches * frames)]  # row = branch·F + frame

# %% [markdown]
# ## 2. The toy world
#
# Stable Diffusion needs a GPU and a download. The course's default is a world small enough to learn on a CPU: one
# coloured shape moving over a textured background, sometimes striped or dotted, sometimes at night. A seed fixes
# everything — texture, size, path — so a scene is rendered the same every time, with the object's exact mask and a
# caption that names it. The toy model was trained on such frames and their captions, so its prompts use only the
# world's words, one token each; and the **evaluator** (`vp2p.toy.evaluator`) reads any frame back into words — colour,
# shape, pattern, background — and segments the object. That is what lets the course *measure* an edit instead of
# eyeballing it.

# %%
vocabulary = {"colours": world.COLORS, "shapes": world.SHAPES, "patterns": world.ATTRIBUTES,
              "backgrounds": world.BACKGROUNDS, "motions": world.MOTIONS, "styles": world.STYLES}
for name, words in vocabulary.items():
    print(f"{len(words):>2} {name}: {', '.join(words)}")
print(f"{len(world.VOCABULARY)} words in all")

clip = world.render(course.SCENE, num_frames=course.NUM_FRAMES, size=SIZE)
reading = evaluator.read_video(clip.frames)
print(f"\nthe course's clip: {clip.caption!r}, {len(clip.frames)} frames; the object covers "
      f"{clip.masks.mean():.1%} of the pixels; the evaluator reads a {reading.color} {reading.shape} on the "
      f"{reading.background}")
fig = viz.mask_strip(clip.masks, clip.frames, title=f"'{clip.caption}': frames and the object's masks")

# %%
others = [world.random_scene(seed) for seed in (1, 2, 3)]
fig = viz.video_strip({scene.caption: world.render(scene, num_frames=course.NUM_FRAMES, size=SIZE).frames
                       for scene in others}, frames=[0, 3, 6], title="three more scenes, by seed")

# %% [markdown]
# ## 3. Classifier-free guidance, in a few lines
#
# The UNet predicts the noise ε in a noisy image twice: with the prompt (ε_c) and with the empty prompt (ε_∅, the
# "null-text"). Guidance moves from the unconditional prediction towards the conditional one, and past it:
#
# $$\hat\varepsilon = \varepsilon_\varnothing + w\,(\varepsilon_c - \varepsilon_\varnothing)$$
#
# With w = 1 this is just the conditional prediction; a larger w exaggerates what the prompt adds. Null-text
# inversion (notebook 03) optimises the ε_∅ side; decoupled guidance gives the target branch the plain one.

# %%
uncond = torch.tensor([0.10, -0.20, 0.05])  # ε_∅ at three pixels
cond = torch.tensor([0.30, -0.10, 0.05])  # ε_c: the prompt changes the first two, not the third
for w in (0.0, 1.0, settings.guidance_scale):
    print(f"w = {w:>3}: ε̂ = {[round(v, 3) for v in guide(uncond, cond, w).tolist()]}")
assert torch.equal(guide(uncond, cond, 1.0), cond) and torch.equal(guide(uncond, cond, 0.0), uncond)

# %% [markdown]
# On the model: the same noise, drawn without guidance (w = 1) and with the course's scale.

# %%
unguided, guided = (probes.generate(pipe, PROMPT, num_frames=1, seed=SEED, num_steps=settings.num_steps,
                                    guidance_scale=w) for w in (1.0, settings.guidance_scale))
fig = viz.video_strip({"w = 1": unguided, f"w = {settings.guidance_scale}": guided},
                      title=f"'{PROMPT}', same noise")
if is_toy(pipe):
    for name, image in (("w = 1", unguided), (f"w = {settings.guidance_scale}", guided)):
        read = evaluator.read_frame(image[0])
        print(f"{name}: the evaluator reads a {read.color} {read.shape} on the {read.background}")

# %% [markdown]
# ## 4. DDIM, in a few lines
#
# Noise is added in closed form: with ᾱ_t the noise schedule's cumulative product, a clean latent x_0 and noise ε,
#
# $$x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon .$$
#
# A DDIM step takes the model's noise estimate ε̂ at x_t, solves that equation for the clean latent
# x̂_0 = (x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t, and puts them back together at the earlier, less noisy step s:
#
# $$x_s = \sqrt{\bar\alpha_s}\,\hat x_0 + \sqrt{1-\bar\alpha_s}\,\hat\varepsilon \qquad\text{(paper eq. 2)}$$
#
# No randomness enters, so the step can be run backwards — **DDIM inversion** (paper eq. 3) — which is how
# notebook 03 finds the z_T a clip comes from. Below, one latent number and one noise number: when the model's
# estimate is the true noise, a step lands exactly on the forward formula at s, and the inverse step climbs back.

# %%
schedule = DDIMSchedule.from_scheduler(pipe.scheduler, settings.num_steps)
t = schedule.timesteps[len(schedule) // 2]
s = t - schedule.step_size
x0, eps = torch.tensor([0.8], dtype=torch.float64), torch.tensor([-0.3], dtype=torch.float64)
assert schedule.prediction_type == "epsilon"  # the model output below is the noise itself
x_t = schedule.alpha(t) ** 0.5 * x0 + (1 - schedule.alpha(t)) ** 0.5 * eps
x_s = ddim_step(eps, t, x_t, schedule)
x_back = ddim_inverse_step(eps, t, x_s, schedule)
expected = schedule.alpha(s) ** 0.5 * x0 + (1 - schedule.alpha(s)) ** 0.5 * eps
print(f"{len(schedule)} steps over timesteps {schedule.timesteps[0]} … {schedule.timesteps[-1]}; "
      f"step {t} → {s}: ᾱ = {schedule.alpha(t):.4f} → {schedule.alpha(s):.4f}")
print(f"x_t = {x_t.item():.4f}; DDIM step: x_s = {x_s.item():.4f} (forward formula at s: {expected.item():.4f}); "
      f"inverse step back: {x_back.item():.4f}")
assert torch.allclose(x_s, expected) and torch.allclose(x_back, x_t)

# %% [markdown]
# In a real run the model's estimate is not the true noise, so each inverse step is a little off and the errors add
# up over the steps — the reason for null-text optimisation (notebook 03).
#
# ## 5. What a cross-attention map is
#
# Cross-attention is how the prompt reaches the picture. At every layer, each pixel (of the layer's grid) forms a
# query q, each token of the prompt a key k and a value v; the pixel's attention over the tokens is
#
# $$A_{p,j} = \operatorname{softmax}_j\!\left(q_p \cdot k_j / \sqrt{d}\right), \qquad \text{output}_p = \textstyle\sum_j A_{p,j}\, v_j .$$
#
# Each pixel's row sums to one; a token's *column*, laid out on the grid, is that token's **map**: where the image
# takes that word's content. We draw one image (a single frame) with an `AttentionRecorder` around an
# `AttentionStore` and look at the maps of its words, averaged over heads, layers and steps.

# %%
recorder = AttentionRecorder(AttentionStore(), kinds=("cross",))
image = probes.generate_branches(pipe, [PROMPT], num_frames=1, seed=SEED, num_steps=settings.num_steps,
                                 guidance_scale=settings.guidance_scale, controller=recorder)[0]
maps = recorder.cross_maps(branch=0)  # (frames, h, w, tokens): the highest recorded resolution, mean over steps
labels = viz.token_labels(pipe.tokenizer, PROMPT)
print(f"maps of {maps.shape[1]}×{maps.shape[2]} positions over {maps.shape[-1]} token slots; each position's "
      f"attention sums to {maps.sum(-1).mean():.3f} over them, {maps[..., 0].mean():.1%} of it on the start token")
fig = viz.attention_grid(maps, labels, video=image, title=f"'{PROMPT}': each word's cross-attention")
viz.save(fig, FIGURES / "00_attention_maps.png", overwrite=True);

# %% [markdown]
# A word that names the object should put its attention on the object. On the toy world the evaluator segments the
# object in the drawn image, so that can be measured: the share of each word's map that falls on the object, next
# to the share of the image the object covers (what a map spread evenly would give).

# %%
if is_toy(pipe):
    mask = evaluator.read_frame(image[0]).mask
    inside = {labels[j]: float(probes.attention_inside(maps[..., j], mask)[0]) for j in range(1, len(labels) - 1)}
    print(f"the object covers {mask.mean():.1%} of the image; share of each word's attention on it:")
    for word, share in inside.items():
        print(f"  {word:>9}: {share:.1%}")
    focused = [w for w in (course.SCENE.color, course.SCENE.shape) if inside[w] > mask.mean()]
    print(f"the object's words attend to it more than an even spread would: {', '.join(focused) or 'none'}")

# %% [markdown]
# **What the toy can't show.** Each toy word is a single token and the maps are coarse; in Stable Diffusion a word
# can span several tokens ("Spider-Man"), the maps are sharper, and much of every pixel's attention goes to the start
# token (the share printed above), which is why maps are compared word by word and not as raw probabilities.
#
# ## 6. Why swapping maps edits an image
#
# The output of cross-attention at a pixel is the values of the tokens its map points to. Now draw two images from
# the *same* noise: the source prompt and a target prompt with one word swapped, "red" → "blue".
#
# * Drawn independently, the target is a fresh picture: the new word changes the whole denoising path, so the
#   object can land elsewhere or change size.
# * With a controller that gives the target branch the **source's maps** for the first steps (`cross_replace_steps`,
#   prompt-to-prompt's *Replace*), every target word looks where the corresponding source word looked. The
#   pixels take "blue" where they took "red": same layout, new content. That is the whole trick of Video-P2P,
#   applied to every frame of a video at once.
#
# Below, three rows — the source, the target drawn alone, the target with the source's maps — and, measured by the
# evaluator over a few seeds, how far the target's object moved from the source's.

# %%
TARGET = course.SCENE.replace(color="blue").caption
SWAP_STEPS = 0.4  # ← the fraction of steps with the source's maps (Replace); try 0.0 and 0.8
SEEDS = (0, 1, 2)


def draw_pair(seed, swap):
    controller = vp2p.make_controller(pipe, [PROMPT, TARGET], settings.num_steps, cross_replace_steps=SWAP_STEPS)
    return probes.generate_branches(pipe, [PROMPT, TARGET], num_frames=1, seed=seed, num_steps=settings.num_steps,
                                    guidance_scale=settings.guidance_scale, controller=controller if swap else None)


pairs = {seed: (draw_pair(seed, swap=False), draw_pair(seed, swap=True)) for seed in SEEDS}
alone, swapped = pairs[SEEDS[0]]
fig = viz.video_strip({"source": alone[0], "target, drawn alone": alone[1],
                       "target with the source's maps": swapped[1]},
                      title=f"'{PROMPT}' → '{TARGET}', same noise")
viz.save(fig, FIGURES / "00_swap_maps.png", overwrite=True);

# %%
print(f"Replace for the first {SWAP_STEPS:.0%} of {settings.num_steps} steps")
if is_toy(pipe):
    drift = {"alone": [], "swapped": []}  # per seed: how far the target's object lies from the source's, in px
    for seed, (free, swap) in pairs.items():
        for name, pair in zip(drift, (free, swap)):
            source, target = (evaluator.read_video(video) for video in pair)
            px = evaluator.object_geometry(source.masks, target.masks).summary()["mean_drift_px"]
            drift[name].append(np.nan if px is None else px)  # None: no object found in one of the two
            print(f"seed {seed}, target {'with the source maps' if name == 'swapped' else 'drawn alone':>20}: "
                  f"reads as {target.color} {target.shape}; its object lies {drift[name][-1]:.1f} px from the "
                  "source's")
    alone_px, swapped_px = np.nanmean(drift["alone"]), np.nanmean(drift["swapped"])
    print(f"mean distance: {alone_px:.1f} px drawn alone, {swapped_px:.1f} px with the source's maps — the "
          f"source's maps {'kept' if swapped_px < alone_px else 'did NOT keep'} the layout better")
else:
    print("Stable Diffusion: compare the rows by eye — the toy evaluator reads toy frames only")

# %% [markdown]
# Notebooks 04–06 make this edit on a real clip: there is no source *image* to draw from noise but a video to
# keep, so the source branch starts from the clip's inverted noise, and a local blend protects everything but the
# edited object.
#
# ## Where to go next
#
# * **01 · Inflation** — from image model to video model: frame attention, the video-wide GroupNorm, temporal
#   attention.
# * **02 · Tuning** — which part of the UNet learns the clip, and the samples before and after.
# * **03 · Inversion** — DDIM inversion and null-text, and their alternatives, measured.
# * **04 · Word swap** — Replace with local blend and decoupled guidance; every map, in every frame.
# * **05 · Refinement** — adding words: a local edit and a global style.
# * **06 · Reweighting** — turning a word up or down.
# * **07 · The paper's tables** — every row of the paper's tables on the toy, and its claims checked.

# %%
print(f"this notebook ran in {time.perf_counter() - STARTED:.0f} s on {pipe.device}")
