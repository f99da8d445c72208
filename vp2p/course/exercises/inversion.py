"""Notebook 03's exercises: the inverse DDIM step, the null-text loss, one Adam update."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from vp2p.course.exercises.common import (
    Case,
    ExerciseFailed,
    TinyDenoiser,
    compare,
    ddim_schedule,
    describe_mismatch,
    first_match,
    generator,
    same,
    student_output,
)

# -- 03 · inversion: the inverse DDIM step, the null-text loss, one Adam update ------------------------------------


class WrappingIndexSchedule:
    """A DDIM schedule whose ᾱ lookup indexes ``alphas_cumprod`` directly: a negative timestep wraps around to the
    noisiest step (the mistake ``schedule.alpha`` exists to avoid)."""

    def __init__(self, schedule):
        self.__dict__.update(vars(schedule))

    def alpha(self, t: int) -> float:
        return float(self.alphas_cumprod[t])


def check_ddim_inverse_step(student) -> int:
    from vp2p.ddim import ddim_inverse_step

    g = generator(3)
    cases = []
    for num_steps in (50, 10, 1):
        schedule = ddim_schedule(num_steps)
        visits = sorted({schedule.timesteps[-1], schedule.timesteps[len(schedule) // 2], schedule.timesteps[0]})
        for t in visits:  # the first inversion step (from below t = 0), a middle one and the last (to z_T)
            label = f"{num_steps} DDIM steps, from t − Δ = {t - schedule.step_size} up to t = {t}"
            cases.append(Case(label, (torch.randn(2, 4, 4, 4, generator=g), t,
                                      torch.randn(2, 4, 4, 4, generator=g), schedule)))
    return compare(student, ddim_inverse_step, cases, diagnose_ddim_inverse_step)


def diagnose_ddim_inverse_step(got, expected, case):
    from vp2p.ddim import ddim_inverse_step, ddim_step

    out, t, sample, schedule = case.args
    step = schedule.step_size
    return first_match(got, [
        ("the sample came back unchanged: x̂₀ and ε̂ were computed at the level you re-noise to. The sample is at "
         "t − Δ: compute x̂₀ with schedule.alpha(t - schedule.step_size), then re-noise it with ᾱ_t", lambda: sample),
        ("that is the sampling step, which goes down from t to t − Δ; inversion goes up, from the sample at t − Δ "
         "to t (swap the two ᾱ)", lambda: ddim_step(out, t, sample, schedule)),
        ("one step too far: from t − Δ the inverse step lands at t, not t + Δ",
         lambda: ddim_inverse_step(out, t + step, sample, schedule)),
        ("one step short: the inverse step goes from t − Δ to t (you went from t − 2Δ to t − Δ)",
         lambda: ddim_inverse_step(out, t - step, sample, schedule)),
        ("at the first inversion step t − Δ is negative, and alphas_cumprod[t - Δ] wraps around to the noisiest "
         "step; use schedule.alpha(t - Δ), which gives the schedule's final ᾱ there",
         lambda: ddim_inverse_step(out, t, sample, WrappingIndexSchedule(schedule))),
    ])


@functools.lru_cache(maxsize=1)
def null_text_problem():
    """A small null-text inversion on ``TinyDenoiser``: 20 DDIM steps of 2 frames, the trajectory, the prompts'
    embeddings, and vp2p's null-text optimisation with ONE Adam iteration per step (so step i's embedding is one
    update of step i − 1's), with the latents the source branch then visits."""
    from vp2p.inversion import ddim_invert, null_text_optimization
    from vp2p.sampling import sample

    g = generator(4)
    unet, schedule, frames = TinyDenoiser(), ddim_schedule(20), 2
    cond, empty = torch.randn(1, 5, 8, generator=g), torch.randn(1, 5, 8, generator=g)
    trajectory = ddim_invert(unet, torch.randn(frames, 4, 4, 4, generator=g), cond, schedule, frames, progress=False)
    nulls = null_text_optimization(unet, trajectory, cond, empty, schedule, frames, 7.5, inner_steps=1,
                                   lr=1e-2, progress=False).embeddings
    visited: list[torch.Tensor] = []
    sample(unet, trajectory[-1], schedule, cond, lambda i: nulls[i], torch.tensor([7.5]), frames, progress=False,
           trajectory=visited)
    latents = [trajectory[-1]] + visited[:-1]  # the latent each step starts from
    return SimpleNamespace(unet=unet, schedule=schedule, frames=frames, cond=cond, empty=empty,
                           trajectory=trajectory, nulls=nulls, latents=latents, guidance=7.5, lr=1e-2)


def null_text_inputs(problem, i: int) -> dict:
    """The arguments of ``vp2p.inversion.null_text_loss`` at DDIM step ``i`` of ``problem`` (null excepted)."""
    from vp2p.sampling import unet_output

    t, latent = problem.schedule.timesteps[i], problem.latents[i]
    with torch.no_grad():
        cond_out = unet_output(problem.unet, latent, t, problem.cond, problem.frames)
    return dict(unet=problem.unet, latent=latent, t=t, cond_out=cond_out,
                target=problem.trajectory[len(problem.schedule) - i - 1], schedule=problem.schedule,
                num_frames=problem.frames, guidance_scale=problem.guidance)


def check_null_text_loss(student) -> int:
    from vp2p.inversion import null_text_loss

    problem = null_text_problem()
    g = generator(5)
    count = 0
    for i, guidance in ((0, 7.5), (7, 7.5), (19, 3.0)):
        inputs = {**null_text_inputs(problem, i), "guidance_scale": guidance}
        null = problem.empty + 0.3 * torch.randn(problem.empty.shape, generator=g)
        label = f"DDIM step {i} (t = {inputs['t']}), {problem.frames} frames, guidance {guidance}"
        expected_null = null.clone().requires_grad_(True)
        expected = null_text_loss(null=expected_null, **inputs)
        expected.backward()
        got_null = null.clone().requires_grad_(True)
        got = student_output(lambda: student(null=got_null, **inputs), Case(label, ()))
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            raise ExerciseFailed(f"{label}: return the loss as a one-number tensor (F.mse_loss(...)), got "
                                 f"{type(got).__name__}{'' if not isinstance(got, torch.Tensor) else tuple(got.shape)}")
        value, wanted = got.detach().reshape(()), expected.detach()
        if not same(value, wanted, atol=1e-7, rtol=1e-4):
            hint = diagnose_null_text_loss(value, wanted, dict(null=null, **inputs))
            raise ExerciseFailed(f"{label}: loss {float(value):.6g}, expected {float(wanted):.6g}: {hint}")
        if not got.requires_grad:
            raise ExerciseFailed(f"{label}: the loss is right but carries no gradient to null: compute the "
                                 "unconditional prediction from `null` inside the graph (no torch.no_grad, no "
                                 ".detach())")
        got.backward()
        if got_null.grad is None or not same(got_null.grad, expected_null.grad, atol=1e-8, rtol=1e-3):
            raise ExerciseFailed(f"{label}: the loss is right but its gradient with respect to null is not: "
                                 f"{describe_mismatch(got_null.grad, expected_null.grad, 1e-8, 1e-3)}")
        count += 1
    return count


def diagnose_null_text_loss(got, expected, inputs) -> str:
    from vp2p.ddim import ddim_inverse_step, ddim_step, guide
    from vp2p.inversion import null_text_loss
    from vp2p.sampling import unet_output

    def loss_with(**changes):
        with torch.no_grad():
            return null_text_loss(**{**inputs, **changes})

    def loss_of(step, guided):
        with torch.no_grad():
            uncond = unet_output(inputs["unet"], inputs["latent"], inputs["t"], inputs["null"], inputs["num_frames"])
            return F.mse_loss(step(guided(uncond), inputs["t"], inputs["latent"], inputs["schedule"]), inputs["target"])

    w, cond = inputs["guidance_scale"], inputs["cond_out"]
    hint = first_match(got, [
        ("the loss ignores the null embedding (the conditional step alone): it must measure the *guided* step, "
         "guide(uncond, cond_out, w), with the unconditional prediction made from `null`",
         lambda: loss_with(guidance_scale=1.0)),
        ("the unconditional prediction alone: guide it with the conditional one, uncond + w·(cond_out − uncond)",
         lambda: loss_with(guidance_scale=0.0)),
        ("guidance the wrong way round: uncond + w·(cond_out − uncond), not cond_out + w·(uncond − cond_out)",
         lambda: loss_of(ddim_step, lambda uncond: guide(cond, uncond, w))),
        ("compared with the current latent; the target is the inversion trajectory's point one step below "
         "(`target`)", lambda: loss_with(target=inputs["latent"])),
        ("the guided step must go down, t → t − Δ (ddim_step), as the edit will sample — not up",
         lambda: loss_of(ddim_inverse_step, lambda uncond: guide(uncond, cond, w))),
    ])
    if hint:
        return hint
    ratio = float(got) / max(float(expected), 1e-30)
    numel = inputs["target"].numel()
    if abs(ratio - numel) / numel < 1e-3:
        return f"it is {numel}× too large: the sum of squares; use the mean (F.mse_loss)"
    return f"off by a factor {ratio:.4g}" if 0 < ratio else "a negative loss? a squared distance cannot be negative"


def check_null_text_update(student) -> int:
    from vp2p.inversion import null_text_loss

    problem = null_text_problem()
    for i in (0, 1, 7, 19):  # step 0 first: the update itself; later steps: the learning-rate schedule
        start = problem.empty if i == 0 else problem.nulls[i - 1]
        expected = problem.nulls[i]
        inputs = null_text_inputs(problem, i)
        label = f"DDIM step i = {i} of {len(problem.schedule)} (lr {problem.lr:g})"

        def loss_of(null, inputs=inputs):
            return null_text_loss(null=null, **inputs)

        got = student_output(student, Case(label, (start, loss_of, i, problem.lr)))
        if not same(got, expected, atol=1e-7, rtol=1e-4):
            hint = (diagnose_null_text_update(got.detach(), expected, start, i, problem.lr)
                    if isinstance(got, torch.Tensor) and got.shape == expected.shape
                    else describe_mismatch(got, expected) + " (one embedding shared by all frames: keep null's shape)")
            raise ExerciseFailed(f"{label}: {hint}")
    return 4


def diagnose_null_text_update(got, expected, start, i: int, lr: float) -> str:
    moved, wanted = got - start, expected - start
    if float(moved.abs().max()) == 0:
        return ("the embedding did not move: make it require grad, compute loss_of(null), call loss.backward() and "
                "optimizer.step(), and return the updated tensor")
    if same(moved, -wanted, atol=1e-7):
        return "it moved uphill: minimise the loss (Adam minimises by default; do not negate the gradient)"
    agree = float((torch.sign(moved) == torch.sign(wanted)).double().mean())
    if agree < 0.99:
        return (f"it moved the wrong way in {1 - agree:.0%} of the entries: one step of Adam on loss_of(null) from "
                "the given null")
    ratios = moved / wanted
    factor = float(ratios.median())
    if float(ratios.std()) / abs(factor) > 0.05:
        return ("the step is proportional to the gradient — plain gradient descent; use torch.optim.Adam, whose "
                "first step moves every entry by about the learning rate")
    if i > 0 and abs(factor * (1 - i / 100) - 1) < 1e-3:
        return ("a constant learning rate; the official schedule decays it with the DDIM step: lr·(1 − i/100) "
                "(a fresh Adam every step)")
    return (f"the step is {factor:.4g}× the expected one: the learning rate at DDIM step i is lr·(1 − i/100) "
            f"= {lr * (1 - i / 100):.4g} here, for one Adam step")
