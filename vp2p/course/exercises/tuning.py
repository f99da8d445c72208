"""Notebook 02's exercises: the forward process a tuning step noises the clip with, and the target of its loss.
(Which parameters are tuned is taught by a break-it, ``breaking.tune_keys_and_values``, which measures what tuning
the keys and values too would change.)"""

from __future__ import annotations

import torch

from vp2p.course.exercises.common import Case, compare, first_match, generator, sd_scheduler

# -- 02 · tuning: the forward process, and what the UNet learns to predict ---------------------------------------------


def check_noisy_latents(student) -> int:
    from vp2p.tuning import noisy_latents

    g = generator(9)
    cases = []
    for timesteps in ([0], [500], [999], [10, 400, 990]):
        rows = len(timesteps) if len(timesteps) > 1 else 2
        latents, noise = torch.randn(rows, 4, 4, 4, generator=g), torch.randn(rows, 4, 4, 4, generator=g)
        cases.append(Case(f"timesteps {timesteps} for {rows} frames", (sd_scheduler(), latents, noise,
                                                                       torch.tensor(timesteps))))
    return compare(student, noisy_latents, cases, diagnose_noisy_latents)


def diagnose_noisy_latents(got, expected, case):
    scheduler, latents, noise, timesteps = case.args

    def mix(alpha, signal, rest):  # signal·x₀ + rest·ε with per-row factors from ᾱ
        a = alpha.double().view(-1, 1, 1, 1)
        return (signal(a) * latents.double() + rest(a) * noise.double()).float()

    alpha = scheduler.alphas_cumprod[timesteps]
    return first_match(got, [
        ("the weights are swapped: the clean latents get √ᾱ_t and the noise √(1 − ᾱ_t) — at t = 0 (ᾱ ≈ 1) x_t is "
         "almost x₀", lambda: mix(alpha, lambda a: (1 - a).sqrt(), lambda a: a.sqrt())),
        ("ᾱ_t and 1 − ᾱ_t without the square roots: the variances add up to 1 (ᾱ + (1 − ᾱ) = 1), so the factors "
         "of x₀ and ε are their square roots", lambda: mix(alpha, lambda a: a, lambda a: 1 - a)),
        ("scheduler.alphas (one step's 1 − β) instead of alphas_cumprod (their product up to t, ᾱ_t): x_t is "
         "reached from x₀ in t steps", lambda: mix(scheduler.alphas[timesteps], lambda a: a.sqrt(),
                                                   lambda a: (1 - a).sqrt())),
        ("every frame got the first timestep's ᾱ; each row (frame) has its own timestep: index alphas_cumprod with "
         "the whole tensor and shape it (rows, 1, 1, 1)", lambda: mix(alpha[:1].expand_as(alpha),
                                                                    lambda a: a.sqrt(), lambda a: (1 - a).sqrt())),
        ("the clean latents came back: add the noise, √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε", lambda: latents),
        ("the noise alone: x_t mixes the clean latents in too, √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε", lambda: noise),
    ])


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
