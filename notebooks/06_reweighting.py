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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vp2p-kit/vp2p/blob/main/notebooks/06_reweighting.ipynb)
#
# # 6 · Reweighting: turn a word up or down
#
# A prompt says *what*, not *how much*. Prompt-to-prompt's **Reweight** multiplies the cross-attention maps of chosen
# tokens of the target prompt by a factor during the injection steps: 0 is meant to remove the word's effect,
# 1 is the plain edit, 2 or 4 exaggerate it (section 3 reads back what each weight does on the toy). It wraps a
# Replace or a Refine; in `vp2p` (and in the official configs) it is
# `eq_params={"words": ["striped"], "values": [2.0]}` — or simply `{"striped": 2.0}`.
#
# You will sweep the weight of the word added in notebook 05 and see — and, on the toy world, measure — how strong
# the attribute comes out.

# %%
try:
    import vp2p
except ImportError:  # e.g. on Colab: install the kit (a minute)
    # %pip install -q "vp2p @ git+https://github.com/vp2p-kit/vp2p"
    import vp2p

# %% [markdown]
# ## Setup
#
# **`MODEL`**, and with Stable Diffusion your **`VIDEO`** with its prompts. As in notebook 05: Refine with a blend on
# the object, the source maps injected for 80% of the steps. The reweighted word gets a window of its own:
# `cross_replace_steps={"default_": 0.8, WORD: 1.0}`. That per-word window is vp2p's: the official script wraps
# whatever value it is given in `{"default_": v}`, so its configs cannot give one word a window of its own (README,
# "Differences from the official code"). A reweight acts only inside its word's window, and the last steps are where
# a small model draws fine detail such as stripes — with the plain `0.8` window those steps would draw the pattern at
# full weight, whatever the weight was.

# %%
import numpy as np
import torch

from vp2p import course, workflow

from vp2p.inspect import viz

from vp2p.course import widgets
from vp2p.toy import evaluator, world
from vp2p.toy.bench import judge_edit
import json
from IPython.display import Markdown, display

MODEL = course.model()  # ← the model: SD 1.5 with a GPU, the toy without ($VP2P_MODEL: "toy", a hub id, a folder)
SETTINGS = course.settings_choice()  # ← "official", or on SD "course": fewer frames and tuning steps (README)
VIDEO = None  # ← Stable Diffusion only: your clip (a path or URL); None renders the toy scene
if VIDEO is None:
    SOURCE, TARGET = course.SCENE.caption, course.SCENE.replace(attribute="striped").caption
    WORD, BLEND = "striped", ["circle", "circle"]
    SWAP, SWAP_WORD, SWAP_BLEND = course.SCENE.replace(color="blue").caption, "blue", BLEND  # for section 4
else:  # ← your clip: describe it, add a word, name the object in both prompts
    SOURCE, TARGET = "a rabbit is jumping on the grass", "a origami rabbit is jumping on the grass"
    WORD, BLEND = "origami", ["rabbit", "rabbit"]
    SWAP, SWAP_WORD, SWAP_BLEND = "a cat is jumping on the grass", "cat", ["rabbit", "cat"]
WEIGHTS = [0.0, 0.5, 1.0, 2.0, 4.0]
WINDOWS = {"default_": 0.8, WORD: 1.0}  # the reweighted word keeps its window (and its weight) to the last step

FIGURES = course.figures_dir()  # the user cache; `vp2p course --build` writes the repository's figures/
pipe = vp2p.load_pipeline(MODEL)
settings = course.settings(pipe, SETTINGS)
course.estimates.announce(pipe, "06_reweighting", SETTINGS)  # Stable Diffusion: the time on a T4
frames = course.clip(pipe, VIDEO, choice=SETTINGS)
run = workflow.prepare(pipe, frames, SOURCE, settings, work_dir=course.work_dir(pipe, VIDEO))
print(f"'{SOURCE}' → '{TARGET}', weights of '{WORD}': {WEIGHTS}")
print(f"cross_replace_steps: {WINDOWS} (the source maps for {WINDOWS['default_']:.0%} of the steps)")

# %% [markdown]
# ## 1. A sweep of weights, side by side
#
# The panel keeps every edit it computed, so the sweep below and the slider share them: `panel.sweep(WEIGHTS)` edits
# the weights it has not computed yet in one batch (`workflow.edit_sweep`: the source branch denoised once, a target
# branch per weight — each weight's edit is what an edit of it alone gives, `tests/test_sweep.py`).

# %%
panel = widgets.WeightWidget(pipe, run, settings, TARGET, WORD, weight=1.0, is_word_swap=False, blend_words=BLEND,
                             cross_replace_steps=WINDOWS)
edits = panel.sweep(WEIGHTS)
fig = viz.video_strip({"input": frames, **{f"'{WORD}' × {w:g}": e.edited for w, e in edits.items()}},
                      title=f"'{TARGET}', reweighting '{WORD}'")
viz.save(fig, FIGURES / "06_reweight_sweep.png", overwrite=True);

# %% [markdown]
# ## 2. The weight slider
#
# Move the slider (in steps of `0.25`); a weight not computed yet runs one edit (a few seconds on the toy model). It
# starts at the plain refinement, weight `1`.

# %%
panel.show()

# %% [markdown]
# ## 3. How strong is the attribute? (toy world)
#
# The evaluator segments the object in every frame and measures how strongly a pattern shows inside it
# (`attribute_strength`: 0 for a plain object, about 1 for a pattern as the toy world renders it). If reweighting
# works, it rises with the weight.

# %%
if course.is_toy(pipe) and VIDEO is None:
    clip = world.render(course.SCENE)
    strength = [evaluator.read_video(e.edited).attribute_strength for e in edits.values()]
    fig = viz.curves({f"'{WORD}'": np.array(strength)}, x=np.array(WEIGHTS), xlabel=f"weight of '{WORD}'",
                     ylabel="attribute strength (evaluator)", marker="o", title="reweighting, measured")
    viz.save(fig, FIGURES / "06_attribute_strength.png", overwrite=True)
    print("attribute strength:", {w: round(float(v), 3) for w, v in zip(WEIGHTS, strength)})
    intact = []  # the weights whose edit reads as the target prompt in every field
    for w, e in edits.items():
        verdict = judge_edit(clip, course.SCENE.replace(attribute=WORD), e.edited)
        print(f"weight {w:g}: reads as {evaluator.reading_text(e.edited)}; background PSNR "
              f"{verdict['background_psnr']:.1f} dB; frames without object {verdict['geometry']['frames_without_object']}")
        if all(verdict["hits"].values()):
            intact.append(w)
    peak = WEIGHTS[int(np.argmax(strength))]
    rising = [b > a for a, b in zip(strength, strength[1:])]
    BENCH = course.project_dir() / "benchmarks" / "toy_bench.json"
    bench = json.loads(BENCH.read_text()) if BENCH.exists() else None
    display(Markdown(
        f"On this clip the strength rises from one weight to the next in {sum(rising)} of {len(rising)} steps of the "
        f"sweep and is highest at weight {peak:g} ({max(strength):.2f}); the edit reads as the target prompt "
        f"(every field) at weights {', '.join(f'{w:g}' for w in intact) or 'none'}"
        + (f" — at {', '.join(f'{w:g}' for w in WEIGHTS if w not in intact)} it does not, whatever the strength says."
           if len(intact) < len(WEIGHTS) else ".")
        + (f" Over {len(bench['videos'])} held-out videos `vp2p toy-bench` measures "
           + ", ".join(f"{s:.2f}" for s in bench["reweight_strengths"]) + " at weights "
           + ", ".join(f"{w:g}" for w in bench["reweight_weights"])
           + f", and {bench['reweight_overdrive']['strength']:.2f} at {bench['reweight_overdrive']['weight']:g}"
           + (f"; in {len(bench['reweight_broken_videos'])} of them some weight's edit is broken (no object found, or "
              f"the background collapsed) and the sweep is not scored, and the strength rises at every weight in "
              f"{bench['reweight_monotonic_share']:.0%} of the {bench['reweight_scored_videos']} scored."
              if "reweight_broken_videos" in bench else ".")
           if bench else "")))
else:
    print(course.toy_only("the measured attribute strength", pipe, VIDEO))

# %% [markdown]
# **What the toy model shows.** The printout above reads every weight's edit back: the pattern's strength, the
# background PSNR, and frames where the object is lost. Where the largest weights break the edit — the strength
# stops rising, the background PSNR falls although LocalBlend keeps the source's latents there — this is why:
# reweighting does not renormalise; the toy model's object words hold most of the attention inside the object, so a
# large weight multiplies the cross-attention output there, those latents leave the range the model was trained on,
# and the VAE decoder — whose GroupNorm layers see the whole frame — carries the damage everywhere. Stable Diffusion
# spreads attention over more tokens and tolerates larger weights, but it has a breaking point too.
#
# Two things make reweighting work at all, and both are worth knowing when it "does nothing" on another model:
# - **The word's own token must carry its meaning.** A causal text encoder (CLIP's is one) can pass an adjective on
#   to every token after it; then scaling the word's attention changes little. The toy model was fine-tuned with
#   *word mixing* so that the pattern is decided by "striped" itself (README, "Toy world").
# - **The weight must last through the steps that draw the detail.** A reweight acts only inside its word's
#   `cross_replace_steps` window. Try `cross_replace_steps=0.8` in the panel above: the last steps, where
#   the toy model draws the stripes, then bring them back at every weight.

# %% [markdown]
# ## 4. Reweighting on top of a word swap — and everything else
#
# The general panel of notebooks 04–05 has a **word weights** field (`word=value, …`): here a Replace edit with the
# swapped word turned up. Change the mode, the prompt, the blend words or the weights and press **Edit**.

# %%
general = widgets.EditWidget(pipe, run, settings, SWAP, blend_words=SWAP_BLEND, eq_params={SWAP_WORD: 2.0})
general.update()
general.show()

# %% [markdown]
# ## Exercises
#
# Now write the heart of this stage yourself. Each exercise is a function whose signature and docstring are given:
# write its body in the solution cell, run it, then run the check below it. The check calls your function and
# vp2p's own on small inputs — random attention maps of several shapes, real prompts through the toy model's
# tokenizer — and, when they disagree, says what is wrong. The exercises need nothing computed above — only the
# imports of the next cell.
#
# (The notebook in the repository holds solutions between `### BEGIN SOLUTION` and `### END SOLUTION`;
# `vp2p course --student DIR` writes the student version, where they are replaced by `raise NotImplementedError`.)

# %% nbgrader={"grade": false, "grade_id": "06_exercises_setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import torch

from vp2p.course import exercises
from vp2p.alignment import token_spans


# %% [markdown]
# ### Exercise 1 · Reweight: scale chosen tokens' columns
#
# Reweight takes the target maps its base rule gives (Replace or Refine) and multiplies the **column** of every
# chosen token — its attention at every query position, in every head and frame — by the token's weight. An
# *equalizer* row per target prompt holds the weights: 1 for most tokens, e.g. 2 at "striped". Nothing is
# renormalised afterwards: a weight of 2 really doubles how much the image attends to the word, which is why the
# sweep above works — and why 4 overdrives the toy model. Maps are (targets, frames, heads, queries, tokens), the
# equalizer (targets, tokens). Compared with `vp2p.controllers.reweight_maps`.

# %% nbgrader={"grade": false, "grade_id": "reweight_maps", "locked": false, "schema_version": 3, "solution": true, "task": false}
def reweight_maps(maps, equalizer):
    """``maps`` (targets, frames, heads, queries, tokens) with token column j of target b multiplied by
    ``equalizer[b, j]`` (targets, tokens)."""
    ### BEGIN SOLUTION
    weights = equalizer.to(maps)[:, None, None, None, :]  # the same weight in every frame, head and query
    return maps * weights
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_reweight_maps", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
exercises.check("reweight_maps", reweight_maps)


# %% [markdown]
# ### Exercise 2 · Reweight: the equalizer of a prompt
#
# `eq_params={"striped": 2.0}` names words; the controller needs token positions. Build one equalizer row: ones
# (`max_len` of them), with each named word's weight at **every token** of the word — a word outside the toy
# vocabulary splits into characters, "crimson" into 6 tokens — and at **every occurrence** of it in the prompt.
# `token_spans(prompt, tokenizer)` gives, for each space-separated word, its token positions (position 0 is the
# start token). Compared with `vp2p.editing.equalizer`.

# %% nbgrader={"grade": false, "grade_id": "equalizer", "locked": false, "schema_version": 3, "solution": true, "task": false}
def equalizer(prompt, weights, tokenizer, max_len):
    """(max_len,): ones, with ``weights[word]`` at the token positions of every occurrence of each word."""
    ### BEGIN SOLUTION
    eq = torch.ones(max_len)
    for word, span in zip(prompt.split(), token_spans(prompt, tokenizer)):
        if word in weights:
            eq[span] = float(weights[word])
    return eq
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_equalizer", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
exercises.check("equalizer", equalizer)

# %% [markdown]
# ### Your functions make the edit
#
# Inside `with exercises.use(reweight_maps=..., equalizer=...)` Reweight builds its equalizer with your function and
# scales the maps with yours. `exercises.run_both` adds "striped" at weight 2 to the short course clip (4 frames,
# 25 DDIM steps) with vp2p's functions and with yours, side by side, and measures both.

# %%
yours = exercises.run_both(reweight_maps=reweight_maps, equalizer=equalizer)
yours.show();
