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
# <details><summary><b>vp2p studio</b> · edit a video live, and look inside the edit · <u>how to use it</u></summary>
#
# Pick a clip (or upload your own), press **Prepare clip** (tuning and inversion: once per clip, cached), type the
# target prompt, choose **Replace** (swap words) or **Refine** (add words), name the blend words and the word
# weights, press **Edit**. Left: the controls. Right: the input, its reconstruction and the edit — and, in the
# *attention* tab, the attention of the edit: every token in every frame, for any layer, head, step and branch; the
# temporal attention of a pixel across frames; and *target − source*, where the edit injected or changed attention.
#
# **`MODEL`**: Stable Diffusion 1.5 with a GPU (upload your own clip), the toy model without (its scenes, on a CPU:
# preparing a clip takes a minute or two, an edit a few seconds). Clips are cached where notebooks 02–06 cache
# theirs (`~/.cache/vp2p/course/runs/notebooks/`), or in the folder named by the environment variable
# `VP2P_STUDIO_WORK`.
#
# Served as an app: `voila notebooks/studio.ipynb`. In Colab or Jupyter: run all cells
# ([open in Colab](https://colab.research.google.com/github/vp2p-kit/vp2p/blob/main/notebooks/studio.ipynb)).
# </details>

# %%
try:
    import vp2p
except ImportError:  # e.g. on Colab: install the kit (a minute)
    # %pip install -q "vp2p @ git+https://github.com/vp2p-kit/vp2p"
    import vp2p

# %%
import torch

from vp2p import course


from vp2p.course import studio
MODEL = course.model()  # ← the model: SD 1.5 with a GPU, the toy without ($VP2P_MODEL: "toy", a hub id, a folder)
SETTINGS = course.settings_choice()  # ← "official", or on SD "course": fewer frames and tuning steps (README)
pipe = vp2p.load_pipeline(MODEL)
app = studio.Studio(pipe, course.settings(pipe, SETTINGS))  # the app's logic lives in vp2p.course.studio
app.show()

# %% [markdown]
# <details><summary>What to try on the toy clip "a red circle bouncing on the grass"</summary>
#
# * *Replace* "red" → "blue" with blend words `circle` / `circle`: only the circle changes colour (the caption of
#   the edit says what the toy evaluator reads in it).
# * *target − source*, step by step: for the first 20% of the steps (`cross replace steps` 0.2: steps 0–4 of 25)
#   every map is white — the target's cross-attention *is* the source's, injected; from step 5 on the target
#   attends on its own, and the changes gather on the circle.
# * *layer* and *head*: in the first 16×16 layer the heads divide the work — one looks at "circle", another at
#   "grass", the others mostly at the padding tokens after the prompt (not shown: the maps keep the prompt's
#   tokens), so their maps stay dark on the shared colour scale. Switch to *per map* to see their shapes anyway.
# * *Refine*: "a red striped circle bouncing on the grass", weight `striped=2`; in *target − source* the added word
#   is all new attention.
# * *temporal attention of a pixel*: on the toy model every frame spreads its attention almost evenly over the 8
#   frames (about 1/8 each): its tuned temporal attention barely departs from uniform.
# * A blend word that is not in its prompt: the status line says what to fix.
# </details>
