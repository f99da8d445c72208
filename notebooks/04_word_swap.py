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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vp2p-kit/vp2p/blob/main/notebooks/04_word_swap.ipynb)
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

from vp2p.course import widgets
from vp2p.toy.bench import judge_edit
from vp2p.toy import world

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

# %% [markdown]
# ## 1. The edit
#
# The panel runs `workflow.edit_run(pipe, run, [SOURCE, TARGET], settings, blend_words=BLEND)` with the values of
# its controls. In a live notebook, change the target prompt, the blend words or the step fractions and press
# **Edit**; the figure below the controls is redrawn. (Without a live kernel you see the edit with the defaults.)

# %%
panel = widgets.EditWidget(pipe, run, settings, TARGET, blend_words=BLEND)
result = panel.update()
panel.show()
viz.save(panel.figure, FIGURES / "04_word_swap.png");

# %% [markdown]
# ## 2. Cross-attention of every token, in every frame
#
# Rows are frames, columns the target prompt's words; each map is the target branch's cross-attention averaged over
# heads, layers (at the blend resolution) and steps, laid over the edited frame (the more attention, the more
# opaque the colour; where there is none, the frame shows as it is). The last column is the blend mask.
# The swapped word took the source word's maps for the first steps, so it lights up where the object is — in every
# frame, following its motion. All maps share one colour scale (the colour bar), so a word that draws little
# attention looks faint; `viz.attention_grid(..., scaling="per map")` scales each map to its own maximum instead —
# shapes compare, strengths no longer do.

# %%
labels = viz.token_labels(pipe.tokenizer, TARGET)
masks = result.blend_masks
fig = viz.attention_grid(result.maps()[1], labels, video=result.edited,
                         masks=None if masks is None else masks[-1, 1],
                         title=f"'{TARGET}': cross-attention per frame and token (mean over all steps)")
viz.save(fig, FIGURES / "04_attention_grid.png");

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
# single layer did at a single step, run the same edit with an `AttentionRecorder` around its controller
# (`recorder.recorded_edit` is `workflow.edit_run` with one). The recorder passes everything through to the edit's
# controller and keeps, for every cross-attention and temporal-attention layer up to 32×32, the probabilities the
# layer went on with — *after* the edit — per step, head and branch (float16, on the CPU).
#
# First the heads of one layer, for the object's word, halfway through the steps: heads divide the work.

# %%
from vp2p.inspect import probes
from vp2p.alignment import word_token_indices
from vp2p.inspect.recorder import recorded_edit

recorded = recorded_edit(pipe, run, [SOURCE, TARGET], settings, blend_words=BLEND)
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
viz.save(fig, FIGURES / "04_attention_heads.png");

# %% [markdown]
# **Where did the edit inject attention?** `recorder.diff_maps(step)` is the target's cross-attention minus the
# source's (the source's maps moved to the target's token positions, as Replace maps them). During the first
# `cross_replace_steps` (20%: steps 0–4 of 25 on the toy model) it is exactly zero: the target's maps *are* the
# source's, injected. Afterwards the target attends on its own, and the differences gather on the object.

# %%
print("largest |target − source| at each step:",
      " ".join(f"{float(recorder.diff_maps(step=s).abs().max()):.3f}" for s in recorder.recorded_steps()))
fig = viz.attention_diff(recorder.diff_maps(step=STEP), labels, video=recorded.edited,
                         title=f"target − source cross-attention at step {STEP}")
viz.save(fig, FIGURES / "04_attention_diff.png");

# %% [markdown]
# **Temporal attention of one pixel.** At every position, the temporal attention lets each frame look at every
# frame. For the pixel at the object's centre in frame 0 (the centre of the image with your own clip), row *i* is how
# frame *i* spreads its attention over the 8 frames. On the toy model it is nearly uniform (about 1/8 each): its
# tuned temporal attention barely departs from averaging the frames.

# %%
pixel = (0.5, 0.5) if VIDEO is not None else probes.mask_centers(world.render(course.SCENE).masks)[0]
fig = viz.temporal_attention(recorder.pixel_temporal(pixel, step=STEP), recorded.edited, pixel,
                             title=f"temporal attention at the marked pixel, step {STEP} (target branch)")
viz.save(fig, FIGURES / "04_temporal_pixel.png");

# %% [markdown]
# **The rest of the attention.** A row of cross-attention is a distribution over *all* the text encoder's tokens,
# not only the prompt's words: the start token and the padding after the end token take their share too. The
# recorder keeps the attention past the prompt's tokens summed into one column, so `readings.token_shares` can say
# how the attention divides (printed and drawn below). Frame attention is recorded too — where the pixel of each
# frame looks in frame 0, in cells. And LocalBlend's score before its threshold can be read back from the recorded
# maps: at the edit's threshold it gives the very mask the edit used, and the threshold can be moved after the edit.

# %%
from vp2p.controllers import blend_mask
from vp2p.inspect import readings

shares = readings.token_shares(recorder, pipe.tokenizer, TARGET, step=STEP)
print(f"step {STEP}, target branch:", ", ".join(f"{name} {share:.1%}" for name, share in shares.items()))
viz.token_shares(shares, title=f"where the target's cross-attention goes at step {STEP}")
viz.frame_attention(recorder.pixel_frame(pixel, step=STEP), recorded.edited, points=[pixel],
                    title=f"frame attention: where the marked pixel of each frame looks in frame 0, step {STEP}")
last = readings.blend_steps(recorder)[-1]
score = readings.blend_score(recorder, last)
same = torch.equal(blend_mask(score, settings.threshold), recorded.blend_masks[-1])
print(f"mask from the recorded maps at threshold {settings.threshold} = the edit's mask at step {last}: {same}")
print("target's mask area at other thresholds:", ", ".join(
    f"{t}: {float(blend_mask(score, t)[1].float().mean()):.0%}" for t in (0.1, 0.3, 0.5, 0.7)))

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
    viz.save(fig, FIGURES / "04_blend_masks.png")
    first = settings.num_steps - len(masks)
    shown = sorted({0, len(masks) // 3, 2 * len(masks) // 3, len(masks) - 1})
    fig = viz.masks_over_steps(masks[:, 1], steps=shown, labels=[f"step {first + s}" for s in shown],
                               title="blend masks over the steps")
    viz.save(fig, FIGURES / "04_blend_masks_steps.png")

# %% [markdown]
# ## 4. With and without decoupled guidance
#
# `decoupled=False` gives the target branch the source's optimised null embeddings as well. They were fitted so
# that guidance reproduces the *source* prompt, and only together with it; paired with another prompt they can pull
# the target branch anywhere. The paper shows distorted edits without decoupling; on the toy model the target branch
# drifts so far that the edit fails outright (look at the third row). On the toy world the evaluator reads the
# colour of the edited object and the PSNR of the background (outside the objects) against the input.

# %%
coupled = workflow.edit_run(pipe, run, [SOURCE, TARGET], settings, blend_words=BLEND, decoupled=False)
fig = viz.video_strip({"input": frames, "decoupled (Video-P2P)": result.edited, "not decoupled": coupled.edited},
                      title=f"'{TARGET}'")
viz.save(fig, FIGURES / "04_decoupled.png")
if course.is_toy(pipe) and VIDEO is None:
    clip, target_scene = world.render(course.SCENE), course.SCENE.replace(color="blue")
    for name, edited in [("decoupled", result.edited), ("not decoupled", coupled.edited)]:
        verdict = judge_edit(clip, target_scene, edited)
        print(f"{name:14s} colour read: {verdict['read']['color']}, background PSNR {verdict['background_psnr']:.1f} dB")
else:
    print(course.toy_only("the evaluator's reading of both edits", pipe, VIDEO))

# %% [markdown]
# ## Exercises
#
# Now write the heart of this stage yourself. Each exercise is a function whose signature and docstring are given:
# write its body in the solution cell, run it, then run the check below it. The check calls your function and
# vp2p's own on small inputs — real prompts through the toy model's tokenizer, random attention maps of several
# shapes — and, when they disagree, says what is wrong. The exercises need nothing computed above — only the
# imports of the next cell.
#
# (The notebook in the repository holds solutions between `### BEGIN SOLUTION` and `### END SOLUTION`;
# `vp2p course --student DIR` writes the student version, where they are replaced by `raise NotImplementedError`.)

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
    ### BEGIN SOLUTION
    mapper = torch.zeros(max_len, max_len)
    mapper[0, 0] = 1  # the start token
    for src, tgt in zip(token_spans(source, tokenizer), token_spans(target, tokenizer)):
        if len(src) == len(tgt):
            for i, j in zip(src, tgt):  # token k of the word to token k
                mapper[i, j] = 1
        else:
            for j in tgt:  # the source word shared out over the new tokens
                mapper[src, j] = 1 / len(tgt)
    src_end, tgt_end = prompt_length(source, tokenizer) - 1, prompt_length(target, tokenizer) - 1
    for k in range(max_len - tgt_end):  # the end token and the padding, shifted by the change in length
        mapper[min(src_end + k, max_len - 1), tgt_end + k] = 1
    return mapper
    ### END SOLUTION


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
    ### BEGIN SOLUTION
    score = torch.stack([maps[b, ..., indices].sum(-1) for b, indices in enumerate(token_indices)])  # (B, F, h, w)
    score = F.max_pool2d(score, kernel_size=3, stride=1, padding=1)
    score = F.interpolate(score, size=latent_size, mode="nearest")
    score = score / score.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)  # each frame by its own maximum
    mask = score > threshold
    return mask | mask[:1]  # every target's mask includes the source's
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_blend_mask", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
exercises.check("blend_mask", blend_mask)

# %% [markdown]
# **Next:** [05 · Refinement](05_refinement.ipynb) — add words instead of swapping them.
