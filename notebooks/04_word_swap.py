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

from vp2p import course, viz, widgets, workflow
from vp2p.toy.bench import judge_edit
from vp2p.toy import world

MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5" if torch.cuda.is_available() else "toy"  # ← the model
VIDEO = None  # ← Stable Diffusion only: your clip (a path or URL); None renders the toy scene
if VIDEO is None:
    SOURCE, TARGET = course.SCENE.caption, course.SCENE.replace(color="blue").caption
    BLEND = ["circle", "circle"]  # the object's word in the source and in the target prompt
else:  # ← your clip: describe it, swap a word, name the object in both prompts
    SOURCE, TARGET = "a rabbit is jumping on the grass", "a cat is jumping on the grass"
    BLEND = ["rabbit", "cat"]

FIGURES = course.project_dir() / "figures"
pipe = vp2p.load_pipeline(MODEL)
settings = course.settings(pipe)
frames = course.clip(pipe, VIDEO)
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
# heads, layers (at the blend resolution) and steps, laid over the edited frame. The last column is the blend mask.
# The swapped word took the source word's maps for the first steps, so it lights up where the object is — in every
# frame, following its motion.

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
if MODEL == "toy" and VIDEO is None:
    clip, target_scene = world.render(course.SCENE), course.SCENE.replace(color="blue")
    for name, edited in [("decoupled", result.edited), ("not decoupled", coupled.edited)]:
        verdict = judge_edit(clip, target_scene, edited)
        print(f"{name:14s} colour read: {verdict['read']['color']}, background PSNR {verdict['background_psnr']:.1f} dB")

# %% [markdown]
# **Next:** [05 · Refinement](05_refinement.ipynb) — add words instead of swapping them.
