"""Notebook 02's exercises: which parameters tuning trains, and the target of its loss."""

from __future__ import annotations

import torch

from vp2p.course.exercises.common import (
    Case,
    ExerciseFailed,
    compare,
    first_match,
    generator,
    inflated_parameter_names,
    sd_scheduler,
    student_output,
)

# -- 02 · tuning: which parameters learn, and what they learn to predict ---------------------------------------------


def check_is_trained(student) -> int:
    names, trained = inflated_parameter_names()
    said = {}
    for name in names:
        answer = student_output(student, Case(f"the parameter {name!r}", (name,)))
        if not isinstance(answer, (bool, int)) and not (isinstance(answer, torch.Tensor) and answer.numel() == 1):
            raise ExerciseFailed(f"is_trained({name!r}) returned {answer!r}; return True or False")
        said[name] = bool(answer)
    wrongly_trained = [n for n in names if said[n] and n not in trained]
    wrongly_frozen = [n for n in names if not said[n] and n in trained]
    if wrongly_trained or wrongly_frozen:
        raise ExerciseFailed(f"{len(names)} parameter names of a tiny inflated UNet: "
                             f"{trained_hint(wrongly_trained, wrongly_frozen)}")
    return len(names)


def trained_hint(wrongly_trained: list[str], wrongly_frozen: list[str]) -> str:
    """Name the group of parameters a wrong answer got wrong, most telling first."""
    def some(names, part):
        return [n for n in names if part in n]

    rules = [
        (some(wrongly_frozen, "attn_temp"), "the temporal attention (attn_temp) is new — it starts at zero and must "
         "learn how the clip moves: all of its parameters are tuned"),
        (some(wrongly_frozen, "attn1.to_q"), "frame attention's queries (attn1.to_q) are tuned: they learn how frame i "
         "looks up this clip's frame 0"),
        (some(wrongly_frozen, "attn2.to_q"), "cross-attention's queries (attn2.to_q) are tuned: they learn where this "
         "clip's content answers the prompt's words"),
        ([n for n in wrongly_trained if ".to_k" in n or ".to_v" in n],
         "keys and values of attn1/attn2 stay frozen: they carry what the image model knows about words and "
         "appearance; only the queries learn"),
        ([n for n in wrongly_trained if ".to_out" in n], "the output projections of attn1/attn2 stay frozen"),
        (some(wrongly_trained, "norm_temp"), "the temporal attention's LayerNorm (norm_temp) is not tuned in the "
         "official recipe (trainable_modules: attn1.to_q, attn2.to_q, attn_temp)"),
    ]
    for names, hint in rules:
        if names:
            return f"{hint} (e.g. {names[0]!r})"
    if wrongly_trained:
        return f"{len(wrongly_trained)} frozen parameters marked as trained, e.g. {wrongly_trained[0]!r}"
    return f"{len(wrongly_frozen)} tuned parameters marked as frozen, e.g. {wrongly_frozen[0]!r}"


def check_training_target(student) -> int:
    from vp2p.tuning import training_target

    g = generator(2)
    cases = []
    for prediction_type in ("epsilon", "v_prediction"):
        scheduler = sd_scheduler(prediction_type)
        for timesteps in ([0], [500], [999], [10, 400, 990]):
            rows = 3
            latents, noise = torch.randn(rows, 4, 4, 4, generator=g), torch.randn(rows, 4, 4, 4, generator=g)
            cases.append(Case(f"prediction_type {prediction_type!r}, timesteps {timesteps} for {rows} frames",
                              (scheduler, latents, noise, torch.tensor(timesteps))))
    return compare(student, training_target, cases, diagnose_training_target)


def diagnose_training_target(got, expected, case):
    scheduler, latents, noise, timesteps = case.args
    velocity = "v = √ᾱ_t·ε − √(1 − ᾱ_t)·x₀, with ᾱ_t = scheduler.alphas_cumprod[timesteps]"
    return first_match(got, [
        ("the clean latents x₀: the UNet learns to predict the noise that was added (epsilon models) or the "
         "velocity (v_prediction models), not the picture", lambda: latents),
        (f"the noise, but this scheduler's prediction_type is 'v_prediction': the target is the velocity {velocity}",
         lambda: noise),
        ("the velocity, but this scheduler's prediction_type is 'epsilon': the target is the noise itself",
         lambda: scheduler.get_velocity(latents, noise, timesteps)),
        (f"ε and x₀ swapped in the velocity: {velocity}", lambda: scheduler.get_velocity(noise, latents, timesteps)),
        ("the noisy latents x_t (the UNet's input), not its target", lambda: scheduler.add_noise(latents, noise,
                                                                                               timesteps)),
    ])
