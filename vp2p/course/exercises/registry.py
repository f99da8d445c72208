"""The exercises, one entry per function a student writes, and ``check``, which a notebook's check cell calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from vp2p.course.exercises.common import ExerciseFailed
from vp2p.course.exercises.inflation import check_frame_context
from vp2p.course.exercises.inversion import (
    check_ddim_inverse_step,
    check_null_text_loss,
    check_null_text_update,
)
from vp2p.course.exercises.paper import check_masked_psnr
from vp2p.course.exercises.refinement import check_refine_maps, check_refinement_mapper
from vp2p.course.exercises.reweighting import check_equalizer, check_reweight_maps
from vp2p.course.exercises.tuning import check_noisy_latents, check_training_target
from vp2p.course.exercises.word_swap import check_blend_mask, check_replacement_mapper

# -- the registry --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exercise:
    name: str  # the function the student writes; the solution cell's grade_id (its check cell: check_<name>)
    notebook: str  # the notebook it belongs to, e.g. "01_inflation"
    title: str
    reference: str  # the vp2p function the check compares with
    run: Callable  # run(student_function) -> number of cases that agree; raises ExerciseFailed
    hint: str  # one line: the student version's NotImplementedError message


EXERCISES = {e.name: e for e in [
    Exercise("frame_context", "01_inflation", "Frame attention: where keys and values come from",
             "vp2p.attention.frame_context", check_frame_context,
             hint="For every row (video v, frame i), return the hidden states of frame 0 of the same video v."),
    Exercise("noisy_latents", "02_tuning", "The forward process: the clip noised to step t",
             "vp2p.tuning.noisy_latents", check_noisy_latents,
             hint="x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε with ᾱ_t = scheduler.alphas_cumprod[timesteps], one per frame."),
    Exercise("training_target", "02_tuning", "What the tuning loss compares the UNet with",
             "vp2p.tuning.training_target", check_training_target,
             hint="Epsilon models predict the noise; v_prediction models the velocity √ᾱ·ε − √(1 − ᾱ)·x₀."),
    Exercise("ddim_inverse_step", "03b_null_text", "The DDIM inversion step (paper eq. 3)",
             "vp2p.ddim.ddim_inverse_step", check_ddim_inverse_step,
             hint="Predict x̂₀ from the sample at ᾱ(t − Δ), then re-noise x̂₀ and ε̂ to ᾱ(t)."),
    Exercise("null_text_loss", "03b_null_text", "The shared null-text loss (paper eq. 9)",
             "vp2p.inversion.null_text_loss", check_null_text_loss,
             hint="MSE between the guided DDIM step (unconditional prediction from `null`) and `target`."),
    Exercise("null_text_update", "03b_null_text", "One Adam update with the official schedule",
             "vp2p.inversion.null_text_optimization", check_null_text_update,
             hint="A fresh Adam at lr·(1 − i/100) over a copy of null; one backward of loss_of and one step."),
    Exercise("replacement_mapper", "04_word_swap", "Replace: the token mapper of a word swap",
             "vp2p.alignment.replacement_mapper", check_replacement_mapper,
             hint="M[i, j] = share of source token i in target token j: start token, words (1/n), end and padding."),
    Exercise("blend_mask", "04_word_swap", "LocalBlend: the mask from the blend words' maps",
             "vp2p.controllers.LocalBlend.mask", check_blend_mask,
             hint="Sum the blend tokens, max-pool 3×3, upsample, divide by each frame's max, threshold, union."),
    Exercise("refinement_mapper", "05_refinement", "Refine: which target tokens have a source partner",
             "vp2p.alignment.refinement_mapper", check_refinement_mapper,
             hint="Align the token ids; aligned j → (its source position, alpha 1), inserted → (0, alpha 0)."),
    Exercise("refine_maps", "05_refinement", "Refine: aligned tokens take the source's maps",
             "vp2p.controllers.refine_maps", check_refine_maps,
             hint="Gather source[..., mappers[b]] per target b, then mix with the target maps by alphas."),
    Exercise("reweight_maps", "06_reweighting", "Reweight: scale chosen tokens' columns",
             "vp2p.controllers.reweight_maps", check_reweight_maps,
             hint="Multiply each target's token columns (the last axis) by that target's equalizer row."),
    Exercise("equalizer", "06_reweighting", "Reweight: the equalizer of a prompt", "vp2p.editing.equalizer",
             check_equalizer,
             hint="Ones, with each word's weight at every token of every occurrence of it (token_spans)."),
    Exercise("masked_psnr", "07_paper", "Masked PSNR: was the rest of the video left alone?",
             "vp2p.paper.metrics.masked_psnr", check_masked_psnr,
             hint="Keep the pixels outside dilate(masks, dilation); one MSE over all of them, in float; "
                  "10·log10(255²/MSE), at most PSNR_CAP."),
]}


def check(name: str, student: Callable) -> None:
    """Compare ``student`` with vp2p's counterpart of exercise ``name``; print ✓ or raise ``ExerciseFailed``."""
    exercise = EXERCISES[name]
    try:
        count = exercise.run(student)
    except ExerciseFailed as failure:
        print(f"✗ {exercise.title} — {failure}")
        # the hint without the checker's own traceback — but with the student's, when their function raised
        raise ExerciseFailed(f"{name}: {failure}") from failure.__cause__
    print(f"✓ {exercise.title}: {name} agrees with {exercise.reference} on {count} cases")
