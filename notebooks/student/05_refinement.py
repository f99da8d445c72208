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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vp2p-kit/vp2p/blob/main/notebooks/student/05_refinement.ipynb)
#
# # 5 · Refinement: add words
#
# A word swap needs prompts of the same length. To **add** words — "a red circle …" → "a red **striped** circle …" —
# prompt-to-prompt's **Refine** aligns the two token sequences: every token found in both prompts takes the
# source's cross-attention map (so the layout stays), and the inserted tokens keep their own maps (so they can act
# where they belong). In `vp2p` it is `is_word_swap=False`.
#
# Two kinds of refinement:
# * a **local** edit changes one object: add an attribute, and keep the rest exactly with a local blend on the
#   object's word;
# * a **global** (style) edit changes the whole picture — "… at night" — so there is no blend: every pixel may
#   change, while the shared attention maps keep the layout and the motion.

# %%
try:
    import vp2p
except ImportError:  # e.g. on Colab: install the kit (a minute)
    # %pip install -q "vp2p @ git+https://github.com/vp2p-kit/vp2p"
    import vp2p

# %% [markdown]
# ## Setup
#
# **`MODEL`**, and with Stable Diffusion your **`VIDEO`** with its prompts. Tuning and inversion come from the work
# folder when notebooks 02–04 ran before. Refinement keeps the source maps for longer than a swap: prompt-to-prompt
# uses `cross_replace_steps=0.8` for refinements (the new words still get their own maps throughout).

# %%
import numpy as np
import torch

from vp2p import course, workflow

from vp2p.inspect import viz

from vp2p.course import widgets
from vp2p.alignment import word_token_indices
from vp2p.toy import world
from vp2p.toy.bench import judge_edit
from IPython.display import Markdown, display

MODEL = course.model()  # ← the model: SD 1.5 with a GPU, the toy without ($VP2P_MODEL: "toy", a hub id, a folder)
SETTINGS = course.settings_choice()  # ← "official", or on SD "course": fewer frames and tuning steps (README)
VIDEO = None  # ← Stable Diffusion only: your clip (a path or URL); None renders the toy scene
if VIDEO is None:
    SOURCE = course.SCENE.caption
    LOCAL = course.SCENE.replace(attribute="striped").caption  # "a red striped circle bouncing on the grass"
    GLOBAL = course.SCENE.replace(style="night").caption       # "… on the grass at night"
    BLEND, NEW_WORD, SHOWN = ["circle", "circle"], "striped", ["red", "striped", "circle"]
else:  # ← your clip: describe it, add words to the object, add a style
    SOURCE = "a rabbit is jumping on the grass"
    LOCAL, GLOBAL = "a origami rabbit is jumping on the grass", "a rabbit is jumping on the grass at night"
    BLEND, NEW_WORD, SHOWN = ["rabbit", "rabbit"], "origami", ["origami", "rabbit"]
CROSS = 0.8  # cross_replace_steps for refinements (SHOWN: the words whose maps section 1 shows)

FIGURES = course.figures_dir()  # the user cache; `vp2p course --build` writes the repository's figures/
pipe = vp2p.load_pipeline(MODEL)
settings = course.settings(pipe, SETTINGS)
course.estimates.announce(pipe, "05_refinement", SETTINGS)  # Stable Diffusion: the time on a T4
frames = course.clip(pipe, VIDEO, choice=SETTINGS)
run = workflow.prepare(pipe, frames, SOURCE, settings, work_dir=course.work_dir(pipe, VIDEO))
print(f"'{SOURCE}' → '{LOCAL}' (local) and '{GLOBAL}' (global)")

# %% [markdown]
# ## 1. A local edit: add an attribute to the object
#
# The panel starts in **Refine** mode with a blend on the object. Try other attributes, switch to Replace to see
# why a swap cannot insert a word, or clear the blend words to let the background change too.

# %%
panel = widgets.EditWidget(pipe, run, settings, LOCAL, blend_words=BLEND, is_word_swap=False,
                           cross_replace_steps=CROSS)
local = panel.update()
panel.show()
viz.save(panel.figure, FIGURES / "05_local_refine.png", overwrite=True);

# %% [markdown]
# Where does the new word look? Its map is its own (not the source's); the aligned words' maps are copied from the
# source branch, so they sit where the object was.

# %%
labels = viz.token_labels(pipe.tokenizer, LOCAL)
tokens = [i for word in SHOWN for i in word_token_indices(LOCAL, word, pipe.tokenizer)]
fig = viz.attention_grid(local.maps()[1], labels, tokens=tokens, video=local.edited,
                         title=f"'{LOCAL}': the new word '{NEW_WORD}' and its neighbours")
viz.save(fig, FIGURES / "05_refine_attention.png", overwrite=True);

# %% [markdown]
# ## 2. A global edit: a style for the whole clip
#
# No blend words: the target branch may change every pixel. The refinement mapping still hands every shared word
# the source's maps for the first `CROSS` of the steps, which should keep the object where it was, frame after frame.
# Whether it does is measured below the strips: what the evaluator reads in each edit, how far the edited object's
# centre is from the source's (drift) and in how many frames it finds no object at all.

# %%
night = workflow.edit_run(pipe, run, [SOURCE, GLOBAL], settings, is_word_swap=False, cross_replace_steps=CROSS)
fig = viz.video_strip({"input": frames, f"local: + {NEW_WORD}": local.edited, "global: + at night": night.edited},
                      title="refinement: local (with blend) and global (without)")
viz.save(fig, FIGURES / "05_refinement.png", overwrite=True)
if course.is_toy(pipe) and VIDEO is None:
    clip = world.render(course.SCENE)
    verdicts = {}
    for name, scene, edited in [("local", course.SCENE.replace(attribute="striped"), local.edited),
                                ("global", course.SCENE.replace(style="night"), night.edited)]:
        verdict = verdicts[name] = judge_edit(clip, scene, edited)
        read, geometry = verdict["read"], verdict["geometry"]
        drift = "—" if geometry["mean_drift_px"] is None else f"{geometry['mean_drift_px']:.1f} px"
        print(f"{name:6s} read: {read['color']} {read['attribute'] or 'plain'} {read['shape']}, "
              f"{'night' if read['night'] else 'day'}; hits {verdict['hits']}; background PSNR "
              f"{verdict['background_psnr']:.1f} dB; drift {drift}; frames without object "
              f"{geometry['frames_without_object']}")
    target_read = all(verdicts["global"]["hits"].values())
    display(Markdown(
        "On this run the global edit " + ("reads as the target prompt in every field."
                                         if target_read else "**misses** the target in: "
                                         + ", ".join(k for k, v in verdicts["global"]["hits"].items() if not v)
                                         + " — see the box below.")))
else:
    print(course.toy_only("the evaluator's reading of both edits", pipe, VIDEO))

# %% [markdown]
# For a global edit the background PSNR is *supposed* to drop: the whole clip changes. For a local one it should
# stay high — that is the local blend at work. The printout above gives both.
#
# > **What the toy can't show.** On Stable Diffusion "… at night" relights the scene and keeps every object
# > recognisable. The toy model learned "at night" as one global darkening of its small frames, and a darkened object
# > is hard to tell from its darkened background — for the model that draws it (the object may come out as a dim
# > blob or pick up a pattern) and for the evaluator that reads it back. So on the toy a global edit is the stage where
# > the layout is kept least well; the readings above say how it went on this run.

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

# %% nbgrader={"grade": false, "grade_id": "05_exercises_setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import torch

from vp2p.course import exercises
from vp2p.alignment import align_sequences


# %% [markdown]
# ### Exercise 1 · Refine: which target tokens have a source partner
#
# Refinement aligns the two **token sequences** — start and end tokens included — with a global alignment
# (Needleman–Wunsch; `align_sequences(source_ids, target_ids)` is given: for each target token, the source
# position it matches, or `None` for an inserted token). Turn the alignment into two vectors of length `max_len`:
# `mapper[j]`, the source position target token j takes its map from, and `alphas[j]`, 1 where it takes it and 0
# where it keeps its own (an inserted word; its mapper entry is then never read — vp2p puts 0). Past the end of the
# target prompt (the padding), position j takes position j. With "a red circle …" → "a red **striped** circle …",
# "circle" and every later token point one position back; "striped" keeps its own map, which is what lets it draw
# stripes where it belongs. Compared with `vp2p.alignment.refinement_mapper`.

# %% nbgrader={"grade": false, "grade_id": "refinement_mapper", "locked": false, "schema_version": 3, "solution": true, "task": false}
def refinement_mapper(source, target, tokenizer, max_len):
    """(mapper, alphas), both (max_len,): target token j takes source token mapper[j]'s map where alphas[j] is 1,
    and keeps its own where alphas[j] is 0."""
    raise NotImplementedError('Align the token ids; aligned j → (its source position, alpha 1), inserted → (0, alpha 0).')


# %% nbgrader={"grade": true, "grade_id": "check_refinement_mapper", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
exercises.check("refinement_mapper", refinement_mapper)


# %% [markdown]
# ### Exercise 2 · Refine: aligned tokens take the source's maps
#
# During the injection steps each target branch's cross-attention maps become: for token j with alpha 1, the
# source's map of token `mapper[j]`; for token j with alpha 0, its own. Maps are (frames, heads, queries, tokens)
# for the source and (targets, frames, heads, queries, tokens) for the targets — every target prompt has its own
# mapper and alphas row. This is what keeps the layout and the motion of a refined clip: every word the prompts
# share looks where it looked in the source, frame by frame. Compared with `vp2p.controllers.refine_maps`.

# %% nbgrader={"grade": false, "grade_id": "refine_maps", "locked": false, "schema_version": 3, "solution": true, "task": false}
def refine_maps(source, targets, mappers, alphas):
    """The targets' new maps (targets, frames, heads, queries, tokens) from the source's maps ``source`` (frames,
    heads, queries, tokens), their own ``targets``, and ``mappers``, ``alphas`` (targets, tokens)."""
    raise NotImplementedError('Gather source[..., mappers[b]] per target b, then mix with the target maps by alphas.')


# %% nbgrader={"grade": true, "grade_id": "check_refine_maps", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
exercises.check("refine_maps", refine_maps)

# %% [markdown]
# ### Your functions make the edit
#
# Inside `with exercises.use(refinement_mapper=..., refine_maps=...)` Refine aligns the prompts with your mapper
# and mixes the maps with your function. `exercises.run_both` adds "striped" to the short course clip (4 frames,
# 25 DDIM steps) with vp2p's functions and with yours, side by side, and measures both.

# %%
yours = exercises.run_both(refinement_mapper=refinement_mapper, refine_maps=refine_maps)
yours.show();

# %% [markdown]
# **Next:** [06 · Reweighting](06_reweighting.ipynb) — turn a word up or down.
