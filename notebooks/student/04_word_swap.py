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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vp2p-kit/vp2p/blob/main/notebooks/student/04_word_swap.ipynb)
#
# # 4 · Word swap: Replace, local blend and decoupled guidance
#
# Now we edit. Two branches denoise together from the inverted noise z_T (paper Algorithm 1):
#
# * the **source branch** with the source prompt and the optimised null embeddings of notebook 03 — it redraws the
#   clip;
# * the **target branch** with the edited prompt, e.g. "red" → "blue".
#
# **Replace** (prompt-to-prompt's word swap): for the first steps (`cross_replace_steps`) the target's
# cross-attention maps are *the source's* — each word of the target looks where the corresponding source word looks,
# so the layout stays and only *what* is drawn there changes. Temporal-attention maps are shared too
# (`self_replace_steps`). **Local blend** keeps everything outside the edited object exactly from the source: per
# frame, the blend words' attention is averaged, thresholded into a mask, and z_target ← z_source + mask·(z_target −
# z_source) after every step. **Decoupled guidance**: the target branch uses the plain empty-prompt embedding, not
# the source's optimised null embeddings (those were fitted to the *source* prompt and pull the target back).
#
# You will see the edit, the cross-attention of every token in every frame (with a step slider), the blend masks,
# and what decoupled guidance changes.

# %%
try:
    import vp2p
except ImportError:  # e.g. on Colab: install the kit (a minute)
    # %pip install -q "vp2p @ git+https://github.com/vp2p-kit/vp2p"
    import vp2p

# %% [markdown]
# ## Setup
#
# **`MODEL`**: Stable Diffusion 1.5 with a GPU, the toy model without. With Stable Diffusion, **`VIDEO`** is your
# clip; then set the prompts below it too: a word swap needs prompts with the same number of words, and the blend
# words name the object in each prompt. `workflow.prepare` tunes and inverts, or loads both from the work folder
# when notebooks 02–03 ran before (toy: 25 DDIM steps, see notebook 03).

# %%
import numpy as np
import torch

from vp2p import course, workflow

from vp2p.inspect import viz

from IPython.display import Markdown, display

from vp2p.course import widgets
from vp2p.inspect import probes
from vp2p.paper import metrics
from vp2p.toy.bench import judge_edit
from vp2p.toy import evaluator, world

MODEL = course.model()  # ← the model: SD 1.5 with a GPU, the toy without ($VP2P_MODEL: "toy", a hub id, a folder)
SETTINGS = course.settings_choice()  # ← "official", or on SD "course": fewer frames and tuning steps (README)
VIDEO = None  # ← Stable Diffusion only: your clip (a path or URL); None renders the toy scene
if VIDEO is None:
    SOURCE, TARGET = course.SCENE.caption, course.SCENE.replace(color="blue").caption
    BLEND = ["circle", "circle"]  # the object's word in the source and in the target prompt
else:  # ← your clip: describe it, swap a word, name the object in both prompts
    SOURCE, TARGET = "a rabbit is jumping on the grass", "a cat is jumping on the grass"
    BLEND = ["rabbit", "cat"]

FIGURES = course.figures_dir()  # the user cache; `vp2p course --build` writes the repository's figures/
pipe = vp2p.load_pipeline(MODEL)
settings = course.settings(pipe, SETTINGS)
course.estimates.announce(pipe, "04_word_swap", SETTINGS)  # Stable Diffusion: the time on a T4
frames = course.clip(pipe, VIDEO, choice=SETTINGS)
run = workflow.prepare(pipe, frames, SOURCE, settings, work_dir=course.work_dir(pipe, VIDEO))
print(f"'{SOURCE}' → '{TARGET}'; reconstruction PSNR {np.mean(run.inversion.frame_psnr):.1f} dB")
print(f"settings: {settings.num_steps} DDIM steps, cross_replace_steps {settings.cross_replace_steps}, "
      f"self_replace_steps {settings.self_replace_steps} ({settings.self_attention} attention), "
      f"blend threshold {settings.threshold}, blend_start {settings.blend_start}")

# %% [markdown]
# ## 1. The edit
#
# `recorder.recorded_edit(pipe, run, [SOURCE, TARGET], settings, blend_words=BLEND)` is
# `workflow.edit_run` with an `AttentionRecorder` around the edit's controller: the same edit, and every attention
# map it used kept for section 2 (one edit, read twice). The panel shows it; its **Edit** button runs
# `workflow.edit_run` with the values of its controls — in a live notebook, change the target prompt, the blend
# words or the step fractions and press it; the figure below the controls is redrawn. (Without a live kernel you
# see the edit with the defaults.)

# %%
from vp2p.inspect.recorder import recorded_edit

recorded = recorded_edit(pipe, run, [SOURCE, TARGET], settings, blend_words=BLEND)
panel = widgets.EditWidget(pipe, run, settings, TARGET, blend_words=BLEND)
result = panel.draw(recorded)
panel.show()
viz.save(panel.figure, FIGURES / "04_word_swap.png", overwrite=True)
TOY_CLIP = course.is_toy(pipe) and VIDEO is None  # the evaluator knows the truth of the toy scene only
if TOY_CLIP:
    clip, target_scene = world.render(course.SCENE), course.SCENE.replace(color="blue")
    print(f"the evaluator reads the edit as: {evaluator.reading_text(result.edited)} (target: '{TARGET}')")
    assert metrics.toy_target_hit(result.edited, target_scene) == 1, "the default edit missed its target prompt"
else:
    print(course.toy_only("the evaluator's reading of the edit", pipe, VIDEO))

# %% [markdown]
# ## 2. Cross-attention of every token, in every frame
#
# Rows are frames, columns the target prompt's words; each map is the target branch's cross-attention averaged over
# heads, layers (at the blend resolution) and steps, laid over the edited frame (the more attention, the more
# opaque the colour; where there is none, the frame shows as it is). The last column is the blend mask.
# The swapped word took the source word's maps for the first steps. Whether a word's attention actually sits on the
# object is measured below the grid: the share of each word's attention that falls inside the object (the toy world
# knows where it is), against the share of the frame the object covers. All maps share one colour scale (the colour
# bar), so a word that draws little attention looks faint — and the colormap's blue end is hard to see on a blue
# object; `viz.attention_grid(..., scaling="per map")` scales each map to its own maximum instead — shapes compare,
# strengths no longer do.

# %%
labels = viz.token_labels(pipe.tokenizer, TARGET)
masks = result.blend_masks
fig = viz.attention_grid(result.maps()[1], labels, video=result.edited,
                         masks=None if masks is None else masks[-1, 1],
                         title=f"'{TARGET}': cross-attention per frame and token (mean over all steps)")
viz.save(fig, FIGURES / "04_attention_grid.png", overwrite=True)
if TOY_CLIP:  # per word: the share of its attention (mean over frames) inside the object
    target_maps = result.maps()[1]  # (F, h, w, tokens)
    words = {t: label for t, label in enumerate(labels) if label.strip() and not label.startswith("<")}
    mass = {label: float(target_maps[..., t].mean()) for t, label in words.items()}  # its mean probability
    shares = {label: float(np.mean([probes.attention_inside(target_maps[f:f + 1, ..., t], clip.masks[f])[0]
                                    for f in range(len(clip.masks))])) for t, label in words.items()}
    print(f"the object covers {clip.masks.mean():.1%} of the frame")
    print("how much attention each word takes (mean probability per pixel):", {k: round(v, 3) for k, v in mass.items()})
    print("share of each word's attention that falls on the object:", {k: round(v, 3) for k, v in shares.items()})
    swapped = next(w for w in TARGET.split() if w not in SOURCE.split())
    loudest = max(mass, key=mass.get)
    display(Markdown(
        f"The swapped word **'{swapped}'** takes {mass[swapped]:.1%} of the attention (the most: '{loudest}', "
        f"{mass[loudest]:.1%}) — which is why its column looks faint — but {shares[swapped]:.0%} of what it takes "
        f"falls on the object, which covers {clip.masks.mean():.0%} of the frame: faint, yet in the right place."
        if shares[swapped] > clip.masks.mean() else
        f"The swapped word **'{swapped}'** takes {mass[swapped]:.1%} of the attention and only {shares[swapped]:.0%} "
        f"of it falls on the object (which covers {clip.masks.mean():.0%} of the frame): on this run it does not "
        "follow the object."))

# %% [markdown]
# **Step by step.** The slider shows the maps averaged over the steps *up to* the chosen one — what local blend
# sees at that step. It starts where blending starts (`blend_start`, 20% of the steps): early maps are blurry,
# they sharpen as the picture forms. The dropdown switches to the source branch.

# %%
steps = widgets.AttentionWidget(result, pipe.tokenizer, step=int(settings.blend_start * settings.num_steps))
steps.show()

# %% [markdown]
# ### One level deeper: one layer, one head, one step, one branch
#
# Those maps are averages — over heads, over the layers of a resolution, over steps. To see what a single head of a
# single layer did at a single step, read the `AttentionRecorder` that section 1's edit ran with. The recorder
# passes everything through to the edit's controller and keeps, for every cross-attention and temporal-attention
# layer up to `32×32`, the probabilities the layer went on with — *after* the edit — per step, head and branch
# (float16, on the CPU).
#
# First the heads of one layer, for the object's word, halfway through the steps: heads divide the work.

# %%
from vp2p.inspect import probes
from vp2p.alignment import word_token_indices

recorder = recorded.controller
print(f"kept {len(recorder.layers())} layers × {len(recorder.recorded_steps())} steps: "
      f"{recorder.nbytes / 2**20:.0f} MB")
layer = recorder.layers("cross")[0]  # the first cross-attention layer at the finest recorded resolution
STEP = settings.num_steps // 2
word = word_token_indices(TARGET, BLEND[1], pipe.tokenizer)[0]
heads = torch.stack([recorder.cross_maps(step=STEP, layer=layer.name, head=h)[..., word]
                     for h in range(layer.heads)], dim=-1)
fig = viz.attention_grid(heads, [f"head {h}" for h in range(layer.heads)], tokens=list(range(layer.heads)),
                         video=recorded.edited, title=f"'{BLEND[1]}' in each head of {layer.label}, step {STEP}")
viz.save(fig, FIGURES / "04_attention_heads.png", overwrite=True);

# %% [markdown]
# **Where did the edit inject attention?** `recorder.diff_maps(step)` is the target's cross-attention minus the
# source's (the source's maps moved to the target's token positions, as Replace maps them). During the first
# `cross_replace_steps` of the steps (the injected steps are printed below) it is exactly zero: the target's maps
# *are* the source's, injected. Afterwards the target attends on its own; the figure shows where the differences are.

# %%
largest = {s: float(recorder.diff_maps(step=s).abs().max()) for s in recorder.recorded_steps()}
print("largest |target − source| at each step:", " ".join(f"{v:.3f}" for v in largest.values()))
injected = [s for s, v in largest.items() if v == 0]
print(f"exactly zero at steps {injected} of {settings.num_steps} (cross_replace_steps {settings.cross_replace_steps})")
assert injected == list(range(len(injected))) and injected, "the injected steps should be the first ones"
fig = viz.attention_diff(recorder.diff_maps(step=STEP), labels, video=recorded.edited,
                         title=f"target − source cross-attention at step {STEP}")
viz.save(fig, FIGURES / "04_attention_diff.png", overwrite=True);

# %% [markdown]
# **Temporal attention of one pixel.** At every position, the temporal attention lets each frame look at every
# frame. For the pixel at the object's centre in frame 0 (the centre of the image with your own clip), row *i* is how
# frame *i* spreads its attention over the frames; uniform would be 1/F each (printed below with the measured range).
# How far it departs from uniform says how much the tuned temporal attention does more than average the frames.

# %%
pixel = (0.5, 0.5) if VIDEO is not None else probes.mask_centers(world.render(course.SCENE).masks)[0]
temporal = recorder.pixel_temporal(pixel, step=STEP).float()
fig = viz.temporal_attention(temporal, recorded.edited, pixel,
                             title=f"temporal attention at the marked pixel, step {STEP} (target branch)")
viz.save(fig, FIGURES / "04_temporal_pixel.png", overwrite=True)
print(f"uniform: {1 / len(temporal):.3f} each; measured: {float(temporal.min()):.3f} to {float(temporal.max()):.3f}")

# %% [markdown]
# **The rest of the attention.** A row of cross-attention is a distribution over *all* the text encoder's tokens,
# not only the prompt's words: the start token and the padding after the end token take their share too. The
# recorder keeps the attention past the prompt's tokens summed into one column, so `readings.token_shares` can say
# how the attention divides (printed and drawn below). Frame attention is recorded too — where the pixel of each
# frame looks in frame 0, in cells. And LocalBlend's score before its threshold can be read back from the recorded
# maps: at the edit's threshold it gives the very mask the edit used, and the threshold can be moved after the edit.

# %%
from vp2p.controllers import threshold_blend
from vp2p.inspect import readings

shares = readings.token_shares(recorder, pipe.tokenizer, TARGET, step=STEP)
print(f"step {STEP}, target branch:", ", ".join(f"{name} {share:.1%}" for name, share in shares.items()))
viz.token_shares(shares, title=f"where the target's cross-attention goes at step {STEP}")
viz.frame_attention(recorder.pixel_frame(pixel, step=STEP), recorded.edited, points=[pixel],
                    title=f"frame attention: where the marked pixel of each frame looks in frame 0, step {STEP}")
last = readings.blend_steps(recorder)[-1]
score = readings.blend_score(recorder, last)
same = torch.equal(threshold_blend(score, settings.threshold), recorded.blend_masks[-1])
print(f"mask from the recorded maps at threshold {settings.threshold} = the edit's mask at step {last}: {same}")
assert same, "the blend score read back from the recorded maps should give the edit's own mask"

# %% [markdown]
# The panel offers all of it: the view (per token / temporal or frame attention of a pixel / target − source /
# token shares / the blend score with a live threshold / the clean frames x̂₀ the model predicts at each step), the
# layer (the mean of a resolution's layers, or one layer), the head, the step, the branch, the colour scale (shared
# or per map) and the frame under the maps (greyscale, so that a map on a blue object stays visible, or colour).
# The same panel is the right half of the [studio](studio.ipynb), whose A/B tab puts two edits side by side.

# %%
debug = widgets.AttentionDebugWidget(recorded, pipe.tokenizer, step=STEP, pipe=pipe)
debug.show()

# %% [markdown]
# ## 3. Blend masks: per frame, and over the steps
#
# `EditResult.blend_masks` holds the mask of every branch and frame at every step where blending happened
# (steps × branches × frames × h × w, at latent resolution). The target's mask is the union of the source's and its
# own: the region where either the old or the new object is.

# %%
if masks is not None:
    fig = viz.mask_strip(masks[-1, 1], video=result.edited, title="final blend mask of each frame")
    viz.save(fig, FIGURES / "04_blend_masks.png", overwrite=True)
    first = settings.num_steps - len(masks)
    shown = sorted({0, len(masks) // 3, 2 * len(masks) // 3, len(masks) - 1})
    fig = viz.masks_over_steps(masks[:, 1], steps=shown, labels=[f"step {first + s}" for s in shown],
                               title="blend masks over the steps")
    viz.save(fig, FIGURES / "04_blend_masks_steps.png", overwrite=True)

# %% [markdown]
# ## 4. Break it: couple the guidance
#
# **Predict first.** Decoupled guidance gives the target branch the plain empty-prompt embedding. If instead the
# target is guided with the source's optimised null embeddings, will the evaluator still read a blue circle? Will
# the background — outside the blend mask, copied from the source branch — change? Write it down, then run the cell.
#
# `decoupled=False` gives the target branch the source's optimised null embeddings as well. They were fitted so
# that guidance reproduces the *source* prompt, and only together with it; paired with another prompt they can pull
# the target branch anywhere. The paper shows distorted edits without decoupling. On the toy world the evaluator
# reads the colour of the edited object and the PSNR of the background (outside the objects) against the input, and
# the printout says what happened on this clip — one clip is an anecdote, so the committed 20-clip run of
# notebook 07 (`benchmarks/paper`) is read back beside it. The blend mask's coverage is printed too: LocalBlend keeps
# the source only *outside* the mask, so a mask that spreads over the frame lets a drifting target branch through.

# %%
from vp2p.inspect.leak import decoder_leak

coupled = workflow.edit_run(pipe, run, [SOURCE, TARGET], settings, blend_words=BLEND, decoupled=False)
fig = viz.video_strip({"input": frames, "decoupled (Video-P2P)": result.edited, "not decoupled": coupled.edited},
                      title=f"'{TARGET}'")
viz.save(fig, FIGURES / "04_decoupled.png", overwrite=True)
if course.is_toy(pipe) and VIDEO is None:
    clip, target_scene = world.render(course.SCENE), course.SCENE.replace(color="blue")
    backgrounds, covers = {}, {}
    for name, edit_result in [("decoupled", result), ("not decoupled", coupled)]:
        verdict = judge_edit(clip, target_scene, edit_result.edited)
        backgrounds[name] = verdict["background_psnr"]
        covers[name] = float(edit_result.blend_masks[-1, 1].float().mean())
        print(f"{name:14s} reads as: {evaluator.reading_text(edit_result.edited)}; background PSNR "
              f"{backgrounds[name]:.1f} dB; final blend mask covers {covers[name]:.0%} of the frame")
    leaked = decoder_leak(pipe, coupled)  # against the edit's own source branch: the inversion's error left out
    print("not decoupled, outside its blend mask:", {k: round(v, 3) for k, v in leaked.items()})
    if backgrounds["not decoupled"] < backgrounds["decoupled"] - 3 and leaked["latent_outside"] == 0:
        display(Markdown(
            f"Without decoupling the background falls to {backgrounds['not decoupled']:.1f} dB (the blend mask covers "
            f"{covers['not decoupled']:.0%} of the frame, against {covers['decoupled']:.0%}), although LocalBlend kept "
            f"every latent outside the mask: the largest difference there is {leaked['latent_outside']:g}. The decoder "
            f"moved the background pixels by {leaked['near']:.1f} levels next to the mask and by {leaked['far']:.1f} "
            "farther than 12 pixels from it"
            + (" — as much far as near, the mark of the decoder's frame-wide operations (its GroupNorms take "
               "statistics of every pixel, its middle block's self-attention lets every pixel see every other) rather "
               "than of its convolutions, whose reach fades with distance."
               if leaked["far"] > 0.5 * leaked["near"] else " — mostly near the mask: the decoder's convolutions carry "
               "the change over the mask's edge.")
            + f" Inside the mask the target's latents reach {leaked['latent_range']:.1f}× the source's largest; clamped "
            f"to the source's range they give the background back from {leaked['psnr']:.1f} to "
            f"{leaked['psnr_clamped']:.1f} dB against the source branch (notebook 06 meets the same effect at large "
            "weights)."))
    FULL = course.project_dir() / "benchmarks" / "paper" / "tables.json"
    if FULL.exists():
        from vp2p import paper

        committed = paper.load_tables(FULL)
        for name in ("Video-P2P", "w/o DG"):
            row = committed["table1"][name]
            print(f"committed run, {name:9s}: target hit {row['target_hit']:.2f} over {row['edits']} edits, "
                  f"background PSNR {row['background_psnr']:.1f} dB")
else:
    print(course.toy_only("the evaluator's reading of both edits", pipe, VIDEO))

# %% [markdown]
# ## 5. The blend threshold: predict, then measure
#
# The **blend threshold** is how much of a frame's maximum blend score a latent pixel needs to be redrawn.
# **Predict first:** how much of the frame will the mask cover when the threshold is very low — and very high?
#
# The mask needs no new edit: LocalBlend's mask is a function of the blend words' maps, which the recorded edit of
# section 1 kept. Below, the blend score of its last step (section 2's
# `score`) thresholded at several values — the share of the frame each would redraw — and a check that the
# setting's own threshold gives back the mask the edit used. (A live edit per threshold costs an edit each;
# notebook 04b's `knob_sweep("threshold", [0.05, 0.3])` runs them, with the evaluator's rows.)

# %%
coverage = {t: threshold_blend(score, t)[1] for t in [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9]}  # target's mask (F, h, w)
print("share of the frame the target's mask redraws, by threshold:",
      {t: round(float(m.float().mean()), 3) for t, m in coverage.items()})
same = float((coverage[settings.threshold] == recorded.blend_masks[-1][1]).float().mean())
print(f"at the setting's threshold {settings.threshold} the recomputed mask agrees with the edit's last mask on "
      f"{same:.1%} of the latent pixels")
assert same == 1, "the mask recomputed from the recorded maps should be the one the edit used"
fig = viz.mask_strip(torch.stack([m[0] for m in coverage.values()]),
                     video=np.repeat(recorded.edited[:1], len(coverage), 0),
                     title="frame 0's mask at thresholds " + ", ".join(f"{t:g}" for t in coverage))
viz.save(fig, FIGURES / "04_threshold_masks.png", overwrite=True)

# %% [markdown]
# ## Exercises
#
# Now write the heart of this stage yourself. Each exercise is a function whose signature and docstring are given:
# write its body in the solution cell, run it, then run the check below it. The check calls your function and
# vp2p's own on small inputs — real prompts through the toy model's tokenizer, random attention maps of several
# shapes — and, when they disagree, says what is wrong. The exercises need nothing computed above — only the
# imports of the next cell.
#
# (Each exercise cell below stops at `raise NotImplementedError(...)` with a hint: replace that line
# with your code, then run the cell after it, which checks your function against vp2p's own and says
# what is wrong.)

# %% nbgrader={"grade": false, "grade_id": "04_exercises_setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import torch
import torch.nn.functional as F

from vp2p.course import exercises
from vp2p.alignment import prompt_length, token_spans


# %% [markdown]
# ### Exercise 1 · Replace: the token mapper of a word swap
#
# Replace hands the target branch the source's cross-attention maps, token by token, through a matrix M:
# **target map j = Σ_i source map i · M[i, j]** — rows are source tokens, columns target tokens. When every word
# tokenizes to as many tokens in both prompts ("red" → "blue" in the toy vocabulary), M is the identity. When a
# word's count changes — "red" (1 token) → "crimson" (6 character tokens in the toy vocabulary; "man" →
# "Spider-Man" in Stable Diffusion's) — the source word's map is shared out over the new tokens, 1/n each, so the
# word's attention mass stays what it was; and everything after it shifts: the target's end token (at
# `prompt_length(target) − 1`) and the padding after it take the source's end token and padding, position for
# position, clipped at `max_len − 1`. (The official code maps them by position instead, which misaligns every later
# token after such a swap: vp2p's deviation, see the README.) The start token (position 0) maps to itself.
# `token_spans(prompt, tokenizer)` gives each word's token positions. Compared with
# `vp2p.alignment.replacement_mapper`.

# %% nbgrader={"grade": false, "grade_id": "replacement_mapper", "locked": false, "schema_version": 3, "solution": true, "task": false}
def replacement_mapper(source, target, tokenizer, max_len):
    """(max_len, max_len) M for a word swap between prompts with the same number of words: M[i, j] is the share
    of source token i's map in target token j's."""
    raise NotImplementedError('M[i, j] = share of source token i in target token j: start token, words (1/n), end and padding.')


# %% nbgrader={"grade": true, "grade_id": "check_replacement_mapper", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
exercises.check("replacement_mapper", replacement_mapper)


# %% [markdown]
# ### Exercise 2 · LocalBlend: the mask from the blend words' maps
#
# Section 3 showed the blend masks; now compute one. Given the stored cross-attention maps, averaged over the
# steps so far — (branches, frames, h, w, tokens), branch 0 the source — and, per branch, the token positions of
# its blend words: per branch and frame, sum the blend tokens' maps, **max-pool 3×3** (stride 1, padding 1: it
# widens the region by one cell), upsample to the latent size with `mode="nearest"`, divide by **that frame's**
# maximum (an object that is faint in one frame must not vanish from its mask), keep what is above the threshold,
# and take each target's mask **together with the source's** — the old object's place must be redrawn too, or a
# circle turned into a small square leaves a ghost of the circle. Compared with `vp2p.controllers.LocalBlend.mask`.

# %% nbgrader={"grade": false, "grade_id": "blend_mask", "locked": false, "schema_version": 3, "solution": true, "task": false}
def blend_mask(maps, token_indices, latent_size, threshold=0.3):
    """LocalBlend's mask, bool (branches, frames, H, W), from ``maps`` (branches, frames, h, w, tokens);
    ``token_indices[b]``: the blend words' token positions in branch b's prompt; ``latent_size``: (H, W)."""
    raise NotImplementedError("Sum the blend tokens, max-pool 3×3, upsample, divide by each frame's max, threshold, union.")


# %% nbgrader={"grade": true, "grade_id": "check_blend_mask", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
exercises.check("blend_mask", blend_mask)

# %% [markdown]
# ### Your functions make the edit
#
# Inside `with exercises.use(replacement_mapper=..., blend_mask=...)` the controller hands the target branch the
# source's maps through *your* mapper, and LocalBlend blends with *your* mask. `exercises.run_both` makes a short
# version of this notebook's edit (the course clip, 4 frames, 25 DDIM steps, red → blue) with vp2p's functions and
# with yours, side by side, and measures both.

# %%
yours = exercises.run_both(replacement_mapper=replacement_mapper, blend_mask=blend_mask)
yours.show();

# %% [markdown]
# (The same break-it on the course's short clip, next to the other break-its: `exercises.breaking.coupled_guidance()`.)
#
# **Next:** [04b · Knobs](04b_knobs.ipynb) — the image model beside the video model, and the two attention windows
# swept; then [05 · Refinement](05_refinement.ipynb) — add words instead of swapping them.
