"""The course's exercises: checks that compare a student's function with vp2p's own, and the student export.

Every numbered notebook ends with an *Exercises* section written in nbgrader's conventions:

* a read-only setup cell (imports only: the section needs nothing the notebook computed above it);
* per exercise, a **solution cell** (cell metadata ``nbgrader.solution``, ``grade_id`` = the exercise's name) where
  the function's body sits between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` — the repository keeps the
  teacher version, with a solution written out;
* a **check cell** (``nbgrader.grade``, ``grade_id`` = ``check_<name>``): ``exercises.check("<name>", function)``
  runs the function and vp2p's counterpart on small synthetic inputs (random tensors of several shapes, the toy
  tokenizer, a tiny stand-in UNet), and when they disagree raises ``ExerciseFailed`` with a hint that names what is
  wrong — the shape, a scale, which frame, a step off by one, a transposed mapper…

``export_student(folder)`` (the command ``vp2p course --student DIR``) writes the student versions of the notebooks:
every solution region becomes ``raise NotImplementedError("<one-line hint>")`` (signature and docstring stay), and
the outputs are cleared.

How a hint is found: most checks try the known mistakes of an exercise — computed, where possible, by vp2p's own
function on altered inputs (the inverse mapper, alphas flipped, a schedule one step off) — and name the one the
student's answer matches; otherwise a generic comparison says what differs (shape, sign, a constant factor, how
many values).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"


class ExerciseFailed(AssertionError):
    """A check found the student's function disagreeing with vp2p's; the message is the hint."""


@dataclass
class Case:
    """One input of a check: a label a student can read ("2 videos of 3 frames") and the call's arguments."""

    label: str
    args: tuple


# -- comparing ------------------------------------------------------------------------------------------------------


def same(got, expected, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Whether ``got`` is a tensor with ``expected``'s shape and (up to float rounding) its values."""
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return False
    if expected.dtype == torch.bool:
        return got.dtype == torch.bool and bool((got == expected).all())
    return torch.allclose(got.detach().double(), expected.detach().double(), atol=atol, rtol=rtol)


def first_match(got, candidates) -> str | None:
    """The hint of the first known mistake ``got`` equals; ``candidates`` are (hint, thunk computing the mistake)."""
    for hint, mistake in candidates:
        try:
            wrong = mistake()
        except Exception:  # a mistake that cannot be formed for this case (e.g. a shape that does not split)
            continue
        if same(got, wrong):
            return hint
    return None


def describe_mismatch(got, expected, atol: float = 1e-5, rtol: float = 1e-4) -> str:
    """What differs, when no known mistake explains it: type, shape, dtype, sign, a constant factor, or where."""
    if not isinstance(got, torch.Tensor):
        return f"returned a {type(got).__name__}; expected a torch.Tensor of shape {tuple(expected.shape)}"
    if got.shape != expected.shape:
        hint = f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
        if sorted(got.shape) == sorted(expected.shape):
            hint += " (the same sizes in another order: are two axes swapped?)"
        return hint
    if expected.dtype == torch.bool and got.dtype != torch.bool:
        return f"a {got.dtype} tensor where a bool mask is expected (compare with the threshold: score > threshold)"
    g, e = got.detach().double(), expected.detach().double()
    if not torch.isfinite(g).all():
        return "the result holds NaN or inf values (a division by zero?)"
    if expected.dim() == 2 and expected.shape[0] == expected.shape[1] and same(g.T, e, atol, rtol):
        return "transposed: rows and columns are swapped"
    if same(-g, e, atol, rtol):
        return "the sign is flipped"
    norm = float((e * e).sum())
    if norm > 0:
        factor = float((g * e).sum()) / norm
        if abs(factor - 1) > 1e-3 and same(g, factor * e, atol, rtol):
            return f"off by a constant factor: {factor:.4g} × the expected values"
    wrong = ~torch.isclose(g, e, atol=atol, rtol=rtol)
    return (f"{int(wrong.sum())} of {wrong.numel()} values differ (largest difference "
            f"{float((g - e).abs().max()):.3g})")


def student_output(student: Callable, case: Case):
    """Call the student's function on copies of the case's inputs, turning its errors into hints."""
    try:
        return student(*clone(case.args))
    except NotImplementedError:
        raise ExerciseFailed("not written yet: replace `raise NotImplementedError(...)` in the solution cell above "
                             "with your code, run that cell, then this one") from None
    except ExerciseFailed:
        raise
    except Exception as error:
        raise ExerciseFailed(f"{case.label}: your function raised {type(error).__name__}: {error}") from error


def clone(args):
    """Copies of tensors (so that an in-place change cannot leak into the next case); other values as they are."""
    return tuple(a.clone() if isinstance(a, torch.Tensor) else copy.copy(a) for a in args)


def compare(student: Callable, reference: Callable, cases: list[Case], diagnose: Callable | None = None,
            atol: float = 1e-5, rtol: float = 1e-4) -> int:
    """Run ``student`` and ``reference`` on every case; raise ``ExerciseFailed`` with a hint at the first that
    differs. ``diagnose(got, expected, case)`` may name the mistake. Returns the number of cases."""
    for case in cases:
        expected = reference(*clone(case.args))
        got = student_output(student, case)
        if not same(got, expected, atol, rtol):
            hint = (diagnose(got, expected, case) if diagnose else None) or describe_mismatch(got, expected, atol, rtol)
            raise ExerciseFailed(f"{case.label}: {hint}")
    return len(cases)


# -- small inputs the checks share -----------------------------------------------------------------------------------


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@functools.lru_cache(maxsize=1)
def toy_tokenizer():
    """The bundled toy model's CLIP tokenizer: one token per toy-world word, characters for any other word."""
    from transformers import CLIPTokenizer

    from vp2p.io.loading import toy_model_path

    return CLIPTokenizer.from_pretrained(toy_model_path() / "tokenizer")


def sd_scheduler(prediction_type: str = "epsilon"):
    """A DDIM scheduler with Stable Diffusion 1.x's noise schedule (the toy model uses the same)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type)


def ddim_schedule(num_steps: int, prediction_type: str = "epsilon"):
    from vp2p.ddim import DDIMSchedule

    return DDIMSchedule.from_scheduler(sd_scheduler(prediction_type), num_steps)


@functools.lru_cache(maxsize=1)
def inflated_parameter_names() -> tuple[tuple[str, ...], frozenset]:
    """Every parameter name of a tiny inflated UNet, and the names ``vp2p.trainable_parameters`` picks."""
    from diffusers import UNet2DConditionModel

    from vp2p.inflation import inflate_unet, trainable_parameters

    with torch.random.fork_rng(devices=[]):  # its random weights must not move the notebook's random state
        unet = UNet2DConditionModel(
            sample_size=8, layers_per_block=1, block_out_channels=(8, 16), cross_attention_dim=8,
            attention_head_dim=2, norm_num_groups=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    inflate_unet(unet)
    return tuple(name for name, _ in unet.named_parameters()), frozenset(trainable_parameters(unet))


class TinyDenoiser(torch.nn.Module):
    """A stand-in for the UNet in the null-text checks, called like diffusers' UNet (``.sample`` out).

    A 1×1 mix of the latents' channels plus a per-channel term from the text embeddings (a tanh, so the gradient
    differs from entry to entry of the embedding), scaled with the timestep. Frozen, like the real UNet during
    inversion: gradients reach only the embedding being optimised."""

    def __init__(self, channels: int = 4, dim: int = 8, seed: int = 0):
        super().__init__()
        g = generator(seed)
        self.mix = torch.nn.Parameter(torch.eye(channels) + 0.2 * torch.randn(channels, channels, generator=g))
        self.text = torch.nn.Parameter(0.5 * torch.randn(dim, channels, generator=g))
        self.requires_grad_(False)

    def forward(self, sample, timestep, encoder_hidden_states, cross_attention_kwargs=None):
        words = (torch.tanh(encoder_hidden_states) @ self.text).mean(1)  # (rows, channels)
        latents = torch.einsum("bchw,cd->bdhw", sample, self.mix)
        return SimpleNamespace(sample=0.1 * latents + (1 + float(timestep) / 1000) * words[..., None, None])


# -- 01 · frame attention: which frame keys and values come from --------------------------------------------------


def check_frame_context(student) -> int:
    from vp2p.attention import frame_context

    g = generator(1)
    shapes = [(1, 1), (1, 4), (2, 3), (3, 5), (2, 8)]  # (videos, frames): one video first, then several
    cases = [Case(f"{v} video(s) of {f} frame(s) (hidden: {v * f} rows × 6 positions × 4 channels)",
                  (torch.randn(v * f, 6, 4, generator=g), f)) for v, f in shapes]
    return compare(student, lambda hidden, f: frame_context(hidden, f, "first"), cases, diagnose_frame_context)


def diagnose_frame_context(got, expected, case):
    hidden, f = case.args
    videos = hidden.view(-1, f, *hidden.shape[1:])

    def frames(index):  # per video, the frames given by ``index`` (one per frame), folded back into rows
        return videos[:, index].reshape(hidden.shape)

    return first_match(got, [
        ("keys and values from frame i itself — that is the image model's self-attention; frame attention reads "
         "frame 0 of the same video for every frame", lambda: hidden),
        ("keys and values from the previous frame; Video-P2P reads frame 0 for every frame",
         lambda: frames([max(i - 1, 0) for i in range(f)])),
        ("keys and values from the last frame; Video-P2P reads frame 0 (the reference every frame agrees with)",
         lambda: frames([f - 1] * f)),
        ("every row got frame 0 of the *first* video; with several videos in the batch (rows = video·F + frame) "
         "each video reads its own frame 0", lambda: hidden[:1].expand_as(hidden)),
        ("rows grouped frame-major; the batch is video-major: row = video·F + frame, so video v's frame 0 is row "
         "v·F", lambda: hidden[: len(videos)].repeat(f, 1, 1)),
        ("one row per video; return one row per frame (frame 0's hidden states repeated for each of its F frames) "
         "so that every query row has its keys and values", lambda: videos[:, 0]),
        ("frame 0 *and* the previous frame (Tune-A-Video's frame_keys='first+previous'); Video-P2P uses frame 0 "
         "only", lambda: torch.cat([frames([0] * f), frames([max(i - 1, 0) for i in range(f)])], dim=1)),
    ])


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


# -- 04 · word swap: the replacement mapper, the LocalBlend mask ----------------------------------------------------


def check_replacement_mapper(student) -> int:
    from vp2p.alignment import replacement_mapper

    swaps = [  # equal token counts first (the mapper is then the identity), then words of 1 and 6 tokens
        ("a red circle bouncing on the grass", "a blue circle bouncing on the grass", 77),
        ("a red circle bouncing on the grass", "a green square bouncing on the sand", 77),
        ("a red circle on the grass", "a blue circle on the grass", 12),
        ("a red circle on the grass", "a crimson circle on the grass", 77),
        ("a crimson circle on the grass", "a red circle on the grass", 20),
    ]
    tokenizer = toy_tokenizer()
    cases = [Case(f"{s!r} → {t!r} (max_len {n})", (s, t, tokenizer, n)) for s, t, n in swaps]
    return compare(student, replacement_mapper, cases, diagnose_replacement_mapper)


def diagnose_replacement_mapper(got, expected, case):
    from vp2p.alignment import prompt_length, prompt_words, token_spans

    source, target, tokenizer, max_len = case.args
    hint = first_match(got, [
        ("transposed: M[i, j] sends source token i to target token j (target map j = Σ_i source map i · M[i, j]) — "
         "rows are source tokens, columns target tokens", lambda: expected.T),
        ("a source word spread over n target tokens gives each of them 1/n of its map, so the word's attention mass "
         "stays the same", lambda: (expected > 0).float()),
    ])
    if hint or not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return hint
    columns = [j for j in range(max_len) if not torch.allclose(got[:, j].double(), expected[:, j].double(), atol=1e-6)]
    if 0 in columns:
        return "the start token (position 0) keeps its own map: M[0, 0] = 1"
    end = prompt_length(target, tokenizer) - 1
    if columns and min(columns) >= end:
        return (f"the end token and the padding: target position {end} (the end token) and every later one take the "
                f"source's end token and padding, shifted by the difference in length (source end: "
                f"{prompt_length(source, tokenizer) - 1}), up to max_len")
    words = [w for w, span in zip(prompt_words(target), token_spans(target, tokenizer)) if set(span) & set(columns)]
    return f"the columns of the target word(s) {words} differ (target tokens {columns[:8]})" if words else None


def check_blend_mask(student) -> int:
    from vp2p.controllers import LocalBlend

    g = generator(6)

    def maps(b, f, h, w, tokens, frame_scale=None):
        m = torch.softmax(2 * torch.randn(b, f, h, w, tokens, generator=g), dim=-1)
        return m if frame_scale is None else m * torch.tensor(frame_scale)[None, :, None, None, None]

    cases = [  # frames of unequal strength first: one maximum for the whole video shows there at once
        Case("2 branches, 2 frames whose attention differs 20× in strength, 4×4 maps → 8×8 latents",
             (maps(2, 2, 4, 4, 6, frame_scale=[1.0, 0.05]), [[2], [2]], (8, 8), 0.3)),
        Case("2 branches, 1 frame, 4×4 maps → 8×8 latents, blend token 2 in both prompts",
             (maps(2, 1, 4, 4, 6), [[2], [2]], (8, 8), 0.3)),
        Case("2 branches, 3 frames, 8×8 maps → 16×16 latents, tokens [2, 3] and [4]",
             (maps(2, 3, 8, 8, 7), [[2, 3], [4]], (16, 16), 0.3)),
        Case("3 branches, 2 frames, 4×8 maps → 8×16 latents, threshold 0.5",
             (maps(3, 2, 4, 8, 6), [[1], [2], [3]], (8, 16), 0.5)),
        Case("2 branches, 2 frames, 8×8 maps at the latent size (no upsampling)",
             (maps(2, 2, 8, 8, 5), [[3], [1]], (8, 8), 0.3)),
    ]

    def reference(m, token_indices, latent_size, threshold):
        return LocalBlend(token_indices, m.shape[-1], threshold=threshold).mask(m, latent_size)

    return compare(student, reference, cases, diagnose_blend_mask)


def diagnose_blend_mask(got, expected, case):
    from vp2p.controllers import LocalBlend

    maps, token_indices, latent_size, threshold = case.args

    def union(masks):
        return masks | masks[:1]

    def without_union():  # vp2p's mask of each branch alone: no union with the source
        return torch.cat([LocalBlend([token_indices[b]], maps.shape[-1], threshold=threshold)
                          .mask(maps[b : b + 1], latent_size) for b in range(len(token_indices))])

    hint = first_match(got, [
        ("each target's mask must include the source's (the union with branch 0: mask | mask[:1]), so that where "
         "the old object was is regenerated too", without_union),
        ("inverted: keep the positions whose normalised score is *above* the threshold", lambda: ~expected),
        ("inverted: keep the positions whose normalised score is *above* the threshold",
         lambda: union(~without_union())),
    ])
    if hint or not isinstance(got, torch.Tensor) or got.shape != expected.shape or got.dtype != torch.bool:
        return hint
    empty_frames = [(b, f) for b in range(got.shape[0]) for f in range(got.shape[1])
                    if not got[b, f].any() and expected[b, f].any()]
    if empty_frames:
        return (f"branch {empty_frames[0][0]}, frame {empty_frames[0][1]} has an empty mask: divide each frame's "
                "score by that frame's own maximum (amax over h and w), not by one maximum for the whole video")
    if bool((got <= expected).all()):
        return (f"smaller than vp2p's mask ({int(got.sum())} positions instead of {int(expected.sum())}): max-pool "
                "the summed map 3×3 (stride 1, padding 1) at the maps' resolution, before upsampling — it widens "
                "the mask by one cell — and divide each frame by its own maximum")
    if bool((got >= expected).all()):
        return (f"larger than vp2p's mask ({int(got.sum())} positions instead of {int(expected.sum())}): upsample "
                "with mode='nearest' and keep the scores strictly above the threshold")
    return None


# -- 05 · refinement: aligned tokens ----------------------------------------------------------------------------------


def check_refinement_mapper(student) -> int:
    from vp2p.alignment import refinement_mapper

    tokenizer = toy_tokenizer()
    pairs = [
        ("a red circle bouncing on the grass", "a red striped circle bouncing on the grass", 77),
        ("a red circle bouncing on the grass", "a red circle bouncing on the grass at night", 77),
        ("a circle on the grass", "a red striped circle on the grass", 77),
        ("a red circle on the grass", "a red dotted circle on the grass", 12),
        ("a red circle on the grass", "a red circle on the grass", 16),
    ]
    count = 0
    for source, target, max_len in pairs:
        label = f"{source!r} → {target!r} (max_len {max_len})"
        mapper, alphas = refinement_mapper(source, target, tokenizer, max_len)
        got = student_output(student, Case(label, (source, target, tokenizer, max_len)))
        if not (isinstance(got, tuple) and len(got) == 2):
            raise ExerciseFailed(f"{label}: return a pair (mapper, alphas), got {type(got).__name__}")
        got_mapper, got_alphas = got
        if not same(got_alphas, alphas):
            raise ExerciseFailed(f"{label}: alphas: {diagnose_alphas(got_alphas, alphas, target, tokenizer)}")
        aligned = alphas.bool()  # an inserted token's mapper entry is never read (its alpha is 0)
        if not (isinstance(got_mapper, torch.Tensor) and got_mapper.shape == mapper.shape
                and torch.equal(got_mapper[aligned].long(), mapper[aligned].long())):
            hint = diagnose_refinement_mapper(got_mapper, mapper, aligned, target, tokenizer)
            raise ExerciseFailed(f"{label}: mapper: {hint}")
        count += 1
    return count


def diagnose_alphas(got, expected, target, tokenizer) -> str:
    if isinstance(got, torch.Tensor) and got.shape == expected.shape:
        inserted, wanted = set(torch.nonzero(got == 0).flatten().tolist()), set(
            torch.nonzero(expected == 0).flatten().tolist())
        if inserted and inserted in ({j - 1 for j in wanted}, {j + 1 for j in wanted}):
            return ("off by one token: positions count the whole tokenized prompt, start token included — align "
                    "tokenizer(prompt).input_ids (start and end tokens too)")
    hint = first_match(got, [
        ("inverted: 1 for tokens found in both prompts (they take the source's map), 0 for inserted ones (they keep "
         "their own)", lambda: 1 - expected),
        ("every alpha is 1: inserted tokens (None in the alignment) get alpha 0, they keep their own maps",
         lambda: torch.ones_like(expected)),
    ])
    return hint or describe_mismatch(got, expected) + token_words(got, expected, target, tokenizer)


def diagnose_refinement_mapper(got, expected, aligned, target, tokenizer) -> str:
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return describe_mismatch(got, expected)
    got, expected = got.long(), expected.long()
    end = len(tokenizer(target).input_ids)
    inside = aligned & (torch.arange(len(expected)) < end)
    if torch.equal(got[inside], expected[inside] - 1) or torch.equal(got[inside], expected[inside] + 1):
        return ("off by one: positions count the whole tokenized prompt, start token included — align "
                "tokenizer(prompt).input_ids (start and end tokens too)")
    if torch.equal(got[inside], expected[inside]):
        return f"past the end of the target prompt (position {end} on), target position j takes source position j"
    return describe_mismatch(got.where(aligned, 0), expected.where(aligned, 0)) + token_words(
        got.where(aligned, 0), expected.where(aligned, 0), target, tokenizer)


def token_words(got, expected, prompt, tokenizer) -> str:
    """' (at the tokens of "striped")': the words of ``prompt`` whose token positions differ."""
    from vp2p.alignment import prompt_words, token_spans

    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return ""
    wrong = set(torch.nonzero(~torch.isclose(got.double(), expected.double())).flatten().tolist())
    words = [w for w, span in zip(prompt_words(prompt), token_spans(prompt, tokenizer)) if wrong & set(span)]
    return f" (at the tokens of {', '.join(map(repr, words))})" if words else ""


def check_refine_maps(student) -> int:
    from vp2p.controllers import refine_maps

    g = generator(7)
    cases = []
    for targets, frames, heads, queries, tokens in ((1, 1, 1, 4, 6), (2, 3, 2, 4, 7), (3, 2, 2, 9, 5)):
        source = torch.rand(frames, heads, queries, tokens, generator=g)
        target_maps = torch.rand(targets, frames, heads, queries, tokens, generator=g)
        mappers = torch.stack([torch.randperm(tokens, generator=g) for _ in range(targets)])
        alphas = (torch.rand(targets, tokens, generator=g) < 0.7).float()
        alphas[:, 0] = 0  # at least one kept and one taken token per target
        alphas[:, -1] = 1
        cases.append(Case(f"{targets} target(s), {frames} frame(s), {heads} head(s), {queries} queries, {tokens} "
                          "tokens", (source, target_maps, mappers, alphas)))
    return compare(student, refine_maps, cases, diagnose_refine_maps)


def diagnose_refine_maps(got, expected, case):
    from vp2p.controllers import refine_maps

    source, targets, mappers, alphas = case.args
    identity = torch.arange(mappers.shape[1]).expand_as(mappers)
    return first_match(got, [
        ("alphas the wrong way round: where alpha is 1 the target token takes the source's map, where it is 0 it "
         "keeps its own", lambda: refine_maps(source, targets, mappers, 1 - alphas)),
        ("every token took a source map: tokens with alpha 0 (inserted words) keep their own maps",
         lambda: refine_maps(source, targets, mappers, torch.ones_like(alphas))),
        ("the target maps came back unchanged: tokens with alpha 1 take source token mappers[b, j]",
         lambda: targets),
        ("target token j took source token j; it takes source token mappers[b, j] (gather the last axis: "
         "source[..., mappers[b]])", lambda: refine_maps(source, targets, identity, alphas)),
        ("the inverse mapping: target token j takes source token mappers[b, j] — you sent source token j to target "
         "token mappers[b, j]", lambda: refine_maps(source, targets, torch.argsort(mappers, dim=1), alphas)),
        ("every target used the first target's mapper and alphas; target b has its own",
         lambda: refine_maps(source, targets, mappers[:1].expand_as(mappers), alphas[:1].expand_as(alphas))),
    ])


# -- 06 · reweighting --------------------------------------------------------------------------------------------------


def check_reweight_maps(student) -> int:
    from vp2p.controllers import reweight_maps

    g = generator(8)
    cases = []
    for targets, frames, heads, queries, tokens in ((1, 1, 1, 4, 6), (2, 3, 2, 4, 7), (3, 2, 2, 9, 5)):
        maps = torch.softmax(torch.randn(targets, frames, heads, queries, tokens, generator=g), dim=-1)
        weights = torch.tensor([0.0, 0.5, 2.0, 4.0])
        equalizer = torch.ones(targets, tokens)
        for b in range(targets):
            equalizer[b, 1 + b] = weights[b % 4]
            equalizer[b, -1] = weights[(b + 2) % 4]
        cases.append(Case(f"{targets} target(s), {frames} frame(s), {heads} head(s), {queries} queries, {tokens} "
                          f"tokens, equalizer {equalizer.tolist()}", (maps, equalizer)))
    return compare(student, reweight_maps, cases, diagnose_reweight_maps)


def diagnose_reweight_maps(got, expected, case):
    from vp2p.controllers import reweight_maps

    maps, equalizer = case.args

    def renormalised():
        scaled = reweight_maps(maps, equalizer)
        return scaled / scaled.sum(-1, keepdim=True)

    return first_match(got, [
        ("renormalised rows: Reweight multiplies and stops there, so a weight of 2 really doubles the word's "
         "attention (and 4 overdrives it, as notebook 06 shows)", renormalised),
        ("every target used the first target's equalizer; target b has its own row",
         lambda: reweight_maps(maps, equalizer[:1].expand_as(equalizer))),
        ("divided by the weights; multiply the token columns by them", lambda: reweight_maps(maps, 1 / equalizer)),
    ])


def check_equalizer(student) -> int:
    from vp2p.editing import equalizer

    tokenizer = toy_tokenizer()
    cases = [Case(f"{prompt!r}, weights {weights} (max_len {max_len})", (prompt, weights, tokenizer, max_len))
             for prompt, weights, max_len in [
                 ("a red striped circle bouncing on the grass", {"striped": 2.0}, 77),
                 ("a red striped circle bouncing on the grass", {"red": 0.0, "circle": 3.0}, 20),
                 ("a crimson circle on the grass", {"crimson": 0.5}, 77),
                 ("a red circle and a red square", {"red": 4.0}, 77),
             ]]
    return compare(student, equalizer, cases, diagnose_equalizer)


def diagnose_equalizer(got, expected, case):
    prompt, weights, tokenizer, max_len = case.args
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return None
    scaled_got, scaled_expected = set(torch.nonzero(got != 1).flatten().tolist()), set(
        torch.nonzero(expected != 1).flatten().tolist())
    if scaled_got and scaled_got in ({j - 1 for j in scaled_expected}, {j + 1 for j in scaled_expected}):
        return ("off by one token: positions count the start token (position 0), so the first word's tokens start "
                "at 1 — token_spans(prompt, tokenizer) gives them")
    if scaled_got < scaled_expected:
        return ("some of the word's tokens kept weight 1: scale every token of the word (a word outside the "
                "vocabulary splits into several, 'crimson' into 6) and every occurrence of it")
    return token_words(got, expected, prompt, tokenizer).strip(" ()") or None


# -- 07 · the paper's metrics: masked PSNR ---------------------------------------------------------------------------


def edited_video(rng, frames: int, size: tuple[int, int], boxes, noise) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random uint8 video (frames, H, W, 3), an "edit" of it, and the object masks (frames, H, W).

    ``boxes``: per frame (y0, y1, x0, x1), None (no object) or "all" (the object fills the frame). Inside the mask
    the edit paints new pixels; outside it adds noise of the frame's level (``noise``; 0 leaves the background
    exactly as it was), in both directions, so that some edited pixels are darker and some brighter."""
    h, w = size
    source = rng.integers(0, 256, (frames, h, w, 3)).astype(np.uint8)
    masks = np.zeros((frames, h, w), dtype=bool)
    for f, box in enumerate(boxes):
        if box == "all":
            masks[f] = True
        elif box is not None:
            y0, y1, x0, x1 = box
            masks[f, y0:y1, x0:x1] = True
    levels = np.asarray(noise, dtype=np.float64)[:, None, None, None]
    edited = np.clip(np.rint(source + levels * rng.standard_normal(source.shape)), 0, 255).astype(np.uint8)
    painted = rng.integers(0, 256, source.shape).astype(np.uint8)
    return source, np.where(masks[..., None], painted, edited), masks


def as_number(value) -> torch.Tensor | None:
    """A student's answer as a 0-d float64 tensor when it is one number (a float, a numpy scalar, a one-number
    array or tensor); None otherwise."""
    if isinstance(value, torch.Tensor):
        value = value.detach().double().cpu().numpy()
    if isinstance(value, (np.ndarray, np.generic)) and value.size == 1 and value.dtype.kind in "fiu":
        value = value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=torch.float64)
    return None


def check_masked_psnr(student) -> int:
    from vp2p.paper.metrics import masked_psnr
    from vp2p.toy.evaluator import PSNR_CAP

    rng = np.random.default_rng(9)
    cases = [  # one frame first (the formula), then several (pooling, dilation), then the edge cases
        Case("1 frame of 6×7 pixels, a 2×2 object, dilation 0",
             (*edited_video(rng, 1, (6, 7), [(2, 4, 2, 4)], [8]), 0)),
        Case("3 frames of 8×10 pixels, objects of 3 sizes, backgrounds edited with noise 3, 12 and 30, dilation 1",
             (*edited_video(rng, 3, (8, 10), [(3, 5, 4, 6), (1, 6, 2, 8), (4, 5, 7, 8)], [3, 12, 30]), 1)),
        Case("2 frames of 6×6 pixels, empty masks (no object: every pixel counts), dilation 0",
             (*edited_video(rng, 2, (6, 6), [None, None], [5, 20]), 0)),
        Case("3 frames of 9×11 pixels, frame 1 entirely masked (the object fills it), dilation 2",
             (*edited_video(rng, 3, (9, 11), [(3, 5, 4, 6), "all", (2, 4, 6, 9)], [4, 50, 16]), 2)),
        Case("2 frames of 6×8 pixels, only the objects edited (identical backgrounds), dilation 1",
             (*edited_video(rng, 2, (6, 8), [(2, 4, 2, 4), (3, 5, 4, 7)], [0, 0]), 1)),
    ]
    for case in cases:
        video_a, video_b, masks, dilation = case.args
        expected = torch.tensor(masked_psnr(video_a, video_b, masks, dilate=dilation), dtype=torch.float64)
        try:
            answer = student_output(student, case)
        except ExerciseFailed as failure:
            if isinstance(failure.__cause__, ZeroDivisionError) and float(expected) == PSNR_CAP:
                raise ExerciseFailed(f"{case.label}: your function divided by zero — the backgrounds are identical "
                                     f"(MSE 0): return PSNR_CAP ({PSNR_CAP:g} dB) then") from failure.__cause__
            raise
        got = as_number(answer)
        if got is None:
            raise ExerciseFailed(f"{case.label}: returned {type(answer).__name__} {answer!r:.60}; return the PSNR in "
                                 "dB as one number (a float)")
        if not same(got, expected, atol=1e-4, rtol=1e-6):
            hint = diagnose_masked_psnr(got, expected, case) or (
                f"{float(got):.4f} dB, expected {float(expected):.4f} dB")
            raise ExerciseFailed(f"{case.label}: {hint}")
    label = "2 frames of 5×5 pixels, masks covering every pixel (no background left to compare)"
    try:
        answer = student(*edited_video(rng, 2, (5, 5), ["all", "all"], [5, 5]), 0)
    except ValueError:
        return len(cases) + 1
    except Exception as error:
        raise ExerciseFailed(f"{label}: your function raised {type(error).__name__}: {error} — raise ValueError "
                             "when no pixel is left outside the masks (vp2p.paper.metrics.masked_psnr does)") from error
    raise ExerciseFailed(f"{label}: returned {answer!r:.60}; with no pixel left outside the masks there is no "
                         "background to measure: raise ValueError (the mean of no squared errors is nan, not a PSNR)")


def diagnose_masked_psnr(got, expected, case):
    from vp2p.toy.evaluator import PSNR_CAP, dilate

    video_a, video_b, masks, dilation = case.args
    a, b = video_a.astype(np.float64), video_b.astype(np.float64)
    keep = ~dilate(masks, dilation)
    pool = ("pool the squared errors of every kept pixel of every frame into ONE mean, then take one PSNR "
            "(vp2p.paper.metrics.masked_psnr does): a frame with little background then weighs as little as it holds, "
            "and a frame the object fills adds nothing")
    frame_without_background = not keep.reshape(len(keep), -1).any(1).all()
    if not torch.isfinite(got):
        if float(got) == float("inf") and float(expected) == PSNR_CAP:
            return (f"infinite: the backgrounds are identical (MSE 0); return PSNR_CAP ({PSNR_CAP:g} dB) instead, "
                    "and never more than it")
        if frame_without_background:
            return f"nan: a frame has no pixel outside its (grown) mask, so it has no PSNR of its own — {pool}"
        return "the result is nan or infinite (a mean over no pixels? a division by zero?)"
    if float(got) == PSNR_CAP and float(expected) < PSNR_CAP and frame_without_background:
        return (f"{PSNR_CAP:g} dB, as if nothing had changed: a frame has no pixel outside its (grown) mask, so it "
                f"has no PSNR of its own — its MSE is nan, and min(PSNR_CAP, nan) is PSNR_CAP — {pool}")
    if float(got) > PSNR_CAP + 1e-4:
        return f"{float(got):.4g} dB: cap the PSNR at PSNR_CAP ({PSNR_CAP:g} dB), the value of identical backgrounds"

    def db(mse, peak_squared=255.0**2):  # vp2p's PSNR of an MSE: capped, PSNR_CAP for MSE 0
        mse = float(mse)
        if not np.isfinite(mse):
            raise ValueError("no pixel to average")
        return torch.tensor(PSNR_CAP if mse <= 0 else min(PSNR_CAP, 10 * np.log10(peak_squared / mse)),
                            dtype=torch.float64)

    def mse(kept, diff=a - b):
        if not kept.any():
            raise ValueError("no pixel kept")
        return float(np.mean(diff[kept] ** 2))

    def only(condition, value):
        if not condition:
            raise ValueError("a mistake this case cannot show")
        return value()

    frames = [f for f in range(len(keep)) if keep[f].any()]
    inside = ("PSNR inside the masks: masked PSNR asks whether the edit left the REST of the video alone — keep the "
              "pixels outside the grown masks (~dilate(masks, dilation))")
    return first_match(got, [
        (inside, lambda: db(mse(dilate(masks, dilation)))),
        (inside, lambda: db(mse(masks))),
        ("the masks were ignored: the whole frames were compared; keep only the pixels outside the grown masks",
         lambda: db(mse(np.ones_like(masks)))),
        ("the masks were not grown: dilate(masks, dilation) first, so that the mixed pixels at the object's edge "
         "(which an edit redraws with the object) are left out too",
         lambda: only(dilation > 0, lambda: db(mse(~masks)))),
        ("the masks were grown although dilation is 0: grow them by exactly `dilation` px (dilate(masks, 0) is the "
         "masks themselves)", lambda: only(dilation == 0, lambda: db(mse(~dilate(masks, 1))))),
        ("the masks were grown although dilation is 0: grow them by exactly `dilation` px (dilate(masks, 0) is the "
         "masks themselves)", lambda: only(dilation == 0, lambda: db(mse(~dilate(masks, 2))))),
        ("the masks were grown by a square (a max-pool?); grow them by a disk, as dilate(masks, dilation) does",
         lambda: only(dilation > 1, lambda: db(mse(~dilate(masks, dilation, disk=False))))),
        (f"the mean of per-frame PSNRs: {pool}",
         lambda: torch.stack([db(mse(keep[f], (a - b)[f])) for f in frames]).mean()),
        (f"the mean of per-frame MSEs: {pool}",
         lambda: db(np.mean([mse(keep[f], (a - b)[f]) for f in frames]))),
        ("uint8 differences wrap around (3 − 5 = 254): convert the videos to float (.astype(np.float64)) before "
         "subtracting", lambda: db(mse(keep, (video_a - video_b).astype(np.float64)))),
        ("uint8 differences wrap around (3 − 5 = 254): convert the videos to float (.astype(np.float64)) before "
         "subtracting", lambda: db(np.mean(((video_a - video_b) ** 2)[keep]))),
        ("the masked pixels counted as zero errors: divide the kept pixels' squared errors by how many values were "
         "kept, not by the size of the whole video", lambda: db(np.sum(((a - b) ** 2)[keep]) / a.size)),
        ("a peak of 1: the videos are uint8, their peak value is 255 — PSNR = 10·log10(255² / MSE)",
         lambda: db(mse(keep), 1.0)),
        ("255 not squared: PSNR = 10·log10(255² / MSE), or 20·log10(255 / √MSE)", lambda: db(mse(keep), 255.0)),
        ("the MSE of videos scaled to [0, 1] with the peak of uint8 (255): use one scale for both — uint8 values "
         "and 255, or [0, 1] and 1", lambda: db(mse(keep) / 255.0**2)),
    ])


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
    Exercise("is_trained", "02_tuning", "Which parameters tuning trains", "vp2p.inflation.trainable_parameters",
             check_is_trained,
             hint="Only the queries of frame and cross-attention, and the new temporal attention, are tuned."),
    Exercise("training_target", "02_tuning", "What the tuning loss compares the UNet with",
             "vp2p.tuning.training_target", check_training_target,
             hint="Epsilon models predict the noise; v_prediction models the velocity √ᾱ·ε − √(1 − ᾱ)·x₀."),
    Exercise("ddim_inverse_step", "03_inversion", "The DDIM inversion step (paper eq. 3)",
             "vp2p.ddim.ddim_inverse_step", check_ddim_inverse_step,
             hint="Predict x̂₀ from the sample at ᾱ(t − Δ), then re-noise x̂₀ and ε̂ to ᾱ(t)."),
    Exercise("null_text_loss", "03_inversion", "The shared null-text loss (paper eq. 9)",
             "vp2p.inversion.null_text_loss", check_null_text_loss,
             hint="MSE between the guided DDIM step (unconditional prediction from `null`) and `target`."),
    Exercise("null_text_update", "03_inversion", "One Adam update with the official schedule",
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


# -- the student versions ------------------------------------------------------------------------------------------


def replace_solutions(source: str, replacement: str) -> str:
    """``source`` with every region from ``### BEGIN SOLUTION`` to ``### END SOLUTION`` (markers included)
    replaced by ``replacement``, indented like the BEGIN marker."""
    lines, inside, start = [], False, 0
    for number, line in enumerate(source.splitlines(), 1):
        marker = line.strip()
        if marker == BEGIN_SOLUTION:
            if inside:
                raise ValueError(f"line {number}: {BEGIN_SOLUTION} inside the region opened on line {start}")
            inside, start = True, number
            indent = line[: len(line) - len(line.lstrip())]
            lines += [indent + text for text in replacement.splitlines()]
        elif marker == END_SOLUTION:
            if not inside:
                raise ValueError(f"line {number}: {END_SOLUTION} without a {BEGIN_SOLUTION}")
            inside = False
        elif not inside:
            lines.append(line)
    if inside:
        raise ValueError(f"the {BEGIN_SOLUTION} of line {start} is never closed by {END_SOLUTION}")
    return "\n".join(lines)


def cell_source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


STUDENT_FOLDER = "student"  # notebooks/student/: the student versions in the repository, kept in sync by a test
# The teacher notebooks' note on their solutions, and what the student versions say instead.
TEACHER_NOTE = re.compile(r"\(The notebook in the repository holds (?:a solution|solutions) between "
                          r"`### BEGIN SOLUTION` and `### END SOLUTION`;.*?`raise NotImplementedError`\.\)", re.S)
STUDENT_NOTE = ("(Each exercise cell below stops at `raise NotImplementedError(...)` with a hint: replace that line\n"
                "with your code, then run the cell after it, which checks your function against vp2p's own and "
                "says\nwhat is wrong.)")
BADGE = re.compile(r"(colab\.research\.google\.com/github/[^)\s]+/notebooks/)(\d\d_[\w-]+\.ipynb)")


def student_markdown(source: str) -> str:
    """A markdown cell for students: the note on solutions rewritten, the Colab badge opening the student version."""
    return BADGE.sub(rf"\g<1>{STUDENT_FOLDER}/\g<2>", TEACHER_NOTE.sub(STUDENT_NOTE, source))


def student_notebook(notebook: dict) -> dict:
    """The student version of a notebook (ipynb JSON): solutions replaced by hints, outputs and the saved widget
    state cleared (a run's progress bars and panels, hundreds of KB a notebook), the note on solutions and the
    Colab badge rewritten for the student version."""
    notebook = copy.deepcopy(notebook)
    notebook.get("metadata", {}).pop("widgets", None)
    for cell in notebook["cells"]:
        source = cell_source(cell)
        if cell["cell_type"] == "markdown":
            source = student_markdown(source)
        grading = cell.get("metadata", {}).get("nbgrader", {})
        if grading.get("solution") and cell["cell_type"] == "code":
            exercise = EXERCISES.get(grading.get("grade_id"))
            if exercise is None:
                raise ValueError(f"solution cell {grading.get('grade_id')!r} is not an exercise of vp2p.course.exercises; "
                                 f"add it to EXERCISES (known: {sorted(EXERCISES)})")
            source = replace_solutions(source, f"raise NotImplementedError({exercise.hint!r})")
        elif cell["cell_type"] == "code" and BEGIN_SOLUTION in source:
            raise ValueError(f"a {BEGIN_SOLUTION} region outside a solution cell: mark the cell with nbgrader "
                             f"metadata (solution: true, grade_id) — it begins {source[:60]!r}")
        cell["source"] = source.splitlines(keepends=True)
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        cell.get("metadata", {}).pop("execution", None)  # run timings left by nbclient
    return notebook


def teacher_notebooks_dir() -> Path:
    """The repository's notebooks/ (the teacher versions), next to the vp2p package in a clone."""
    return Path(__file__).resolve().parents[2] / "notebooks"


def export_student(folder, notebooks=None, overwrite: bool = False) -> list[Path]:
    """Write the student versions of the numbered notebooks into ``folder``: .ipynb, and the jupytext .py twin
    when jupytext is installed. Refuses a non-empty ``folder`` unless ``overwrite``, and never writes into the
    teacher notebooks' folder."""
    source = Path(notebooks) if notebooks is not None else teacher_notebooks_dir()
    paths = sorted(source.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no course notebooks (NN_name.ipynb) in {source}; run from a clone of the vp2p "
                                "repository or pass the notebooks folder")
    folder = Path(folder)
    inside = folder.resolve() == source.resolve() or source.resolve() in folder.resolve().parents
    if inside and folder.resolve() != (source / STUDENT_FOLDER).resolve():
        raise ValueError(f"{folder} is in the teacher notebooks' folder {source}: the student versions would replace "
                         f"or sit among them (and run in CI). Choose a folder outside it, or its {STUDENT_FOLDER}/ "
                         "(the repository's student versions, which CI does not run).")
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} is a file; choose a folder for the student notebooks")
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise FileExistsError(f"{folder} is not empty; choose an empty folder or pass --overwrite "
                              "to replace the student notebooks in it")
    texts = {}  # every file's text first: a notebook that does not convert leaves nothing half-written
    for path in paths:
        text = json.dumps(student_notebook(json.loads(path.read_text(encoding="utf-8"))), indent=1,
                          ensure_ascii=False) + "\n"
        texts[path.name] = text
        twin = py_twin(text)
        if twin is not None:
            texts[path.with_suffix(".py").name] = twin
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")
    return [folder / name for name in texts]


def py_twin(ipynb_text: str) -> str | None:
    """The jupytext percent-format twin of a notebook (None when jupytext is not installed)."""
    try:
        import jupytext
    except ImportError:
        return None
    return jupytext.writes(jupytext.reads(ipynb_text, fmt="ipynb"), fmt="py:percent")
