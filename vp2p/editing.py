"""Edit an inverted video with prompt-to-prompt attention control and decoupled guidance (paper Algorithm 1).

Branch 0 denoises the source prompt from z_T with the inversion's per-step null embeddings; branches 1… denoise
the target prompt(s) from the same z_T with the *initial* empty-prompt embedding (decoupled guidance: the
optimised null embeddings fit the source prompt and would pull the target back to the source video). The
controller injects the source branch's attention into the targets and blends their latents locally.

``make_controller`` builds the controller from the parameters of the official configs: ``is_word_swap``
(Replace vs. Refine), ``cross_replace_steps``, ``self_replace_steps``, ``blend_words``, ``eq_params``.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vp2p import checks, layout, seams
from vp2p.alignment import word_token_indices
from vp2p.attention import blend_resolution, cross_attention_heights, require_vp2p_processors
from vp2p.checks import parse_weights  # noqa: F401  (the word weights of the panels and CLI)
from vp2p.controllers import (AttentionEdit, AttentionStore, LocalBlend, cross_replace_alpha, Refinement,
                              Replacement, Reweighting)
from vp2p.ddim import DDIMSchedule
from vp2p.inversion import Inversion
from vp2p.sampling import sample


def check_prompts(prompts) -> list[str]:
    if isinstance(prompts, str) or len(prompts) < 2 or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"prompts must be a list [source, target, ...] of at least two strings, got {prompts!r}")
    return list(prompts)


def per_prompt_words(words, prompts: list[str], role: str) -> list[list[str]]:
    """``words`` as one list of words per prompt; a single word or a flat list is an error naming the fix."""
    if isinstance(words, str) or len(words) != len(prompts):
        raise ValueError(f"{role} needs one word (or list of words) per prompt: got {words!r} for "
                         f"{len(prompts)} prompts, e.g. {role}=['rabbit', 'rabbit'] for [source, target]")
    return [[w] if isinstance(w, str) else list(w) for w in words]


def equalizer(prompt: str, weights: dict[str, float], tokenizer, max_len: int) -> torch.Tensor:
    """(max_len,) ones, with ``weights[word]`` at the tokens of each word of ``prompt``."""
    eq = torch.ones(max_len)
    for word, value in weights.items():
        eq[word_token_indices(prompt, word, tokenizer, role="reweight word")] = float(value)
    return eq


def parse_eq_params(eq_params) -> dict[str, float]:
    """Official ``{"words": [...], "values": [...]}`` or a plain ``{word: weight}``."""
    if "words" in eq_params and "values" in eq_params:
        words, values = eq_params["words"], eq_params["values"]
        words = [words] if isinstance(words, str) else list(words)
        values = [values] if isinstance(values, (int, float)) else list(values)
        if len(words) != len(values):
            raise ValueError(f"eq_params has {len(words)} words but {len(values)} values; give one value per word")
        return dict(zip(words, values))
    return dict(eq_params)


def controller_option_names() -> set[str]:
    """The options ``make_controller`` takes by name: its own and the ``AttentionStore``'s it passes on."""
    return ({*inspect.signature(make_controller).parameters, *inspect.signature(AttentionStore).parameters}
            - {"pipe", "prompts", "num_steps", "store_options"})


def check_controller_options(pipe, prompts: list[str], options: dict) -> None:
    """What ``make_controller`` is given, checked where it is entered (the API, the workflow, the panels): option
    names (a misspelling named, with the known ones), the windows and the threshold, the prompts (on the toy
    model, only words it knows)."""
    checks.check_option_names(options, controller_option_names(), "controller option")
    for name in ("cross_replace_steps", "self_replace_steps", "threshold", "blend_start", "self_attention"):
        if name in options:
            checks.check_setting(name, options[name])
    checks.check_model_prompts(pipe, prompt_roles(prompts))


def prompt_roles(prompts: list[str]) -> dict[str, str]:
    """{"source prompt": ..., "target prompt": ...} for messages (targets numbered when there are several)."""
    targets = prompts[1:]
    numbered = {f"target prompt {i}" if len(targets) > 1 else "target prompt": p for i, p in enumerate(targets, 1)}
    return {"source prompt": prompts[0], **numbered}


def make_controller(pipe, prompts, num_steps: int = 50, is_word_swap: bool = True, cross_replace_steps=0.2,
                    self_replace_steps=0.5, blend_words=None, eq_params=None, threshold: float = 0.3,
                    blend_start: float = 0.2, self_attention: str = "temporal", **store_options) -> AttentionEdit:
    """The official configs' controller: Replace (word swap) or Refine, optionally wrapped in Reweight, with an
    optional LocalBlend over ``blend_words`` (one word or list of words per prompt)."""
    prompts = check_prompts(prompts)
    check_controller_options(pipe, prompts, dict(
        cross_replace_steps=cross_replace_steps, self_replace_steps=self_replace_steps, threshold=threshold,
        blend_start=blend_start, self_attention=self_attention, **store_options))
    tok, max_len = pipe.tokenizer, pipe.max_tokens
    pipe.tokenize(prompts)  # raises if a prompt is too long
    alpha = cross_replace_alpha(prompts, num_steps, cross_replace_steps, tok, max_len)
    blend = None
    if blend_words is not None:
        words = per_prompt_words(blend_words, prompts, "blend_words")
        indices = [[i for w in ws for i in word_token_indices(p, w, tok, role="blend word")]
                   for p, ws in zip(prompts, words)]
        blend = LocalBlend(indices, max_len, threshold=threshold, start=blend_start)
    store_options.setdefault("num_tokens", max(len(tok(p).input_ids) for p in prompts))  # keep only used tokens
    if is_word_swap:
        mapper = seams.step("replacement_mapper")  # vp2p's, or a student's in the course
        rule = Replacement(torch.stack([mapper(prompts[0], p, tok, max_len) for p in prompts[1:]]))
    else:
        pairs = [seams.step("refinement_mapper")(prompts[0], p, tok, max_len) for p in prompts[1:]]
        rule = Refinement(torch.stack([m for m, _ in pairs]), torch.stack([a for _, a in pairs]))
    if eq_params:
        weights = parse_eq_params(eq_params)
        # one equalizer per target prompt (official: prompts[1]'s token positions serve every target)
        equalize = seams.step("equalizer")
        rule = Reweighting(torch.stack([equalize(p, weights, tok, max_len) for p in prompts[1:]]), base=rule)
    return AttentionEdit(rule, alpha, self_replace_steps=self_replace_steps, self_attention=self_attention,
                         local_blend=blend, **store_options)


@dataclass
class EditResult:
    """The result of ``edit``: one video per branch (0: source under editing; 1…: targets) and what steered them."""

    prompts: list[str]
    videos: np.ndarray  # uint8 (branches, F, H, W, 3)
    latents: torch.Tensor  # (branches·F, C, h, w)
    controller: AttentionStore
    decoupled: bool
    seconds: float
    branches: tuple[int, ...] | None = None  # the controller's branches that are this edit's (None: all)

    @property
    def source(self) -> np.ndarray:
        return self.videos[0]

    @property
    def edited(self) -> np.ndarray:
        return self.videos[1]

    def maps(self, resolution=None, step=None) -> torch.Tensor:
        """Per-frame cross-attention maps (branches, F, h, w, tokens), see ``AttentionStore.maps``."""
        maps = self.controller.maps(resolution, step)
        return maps if self.branches is None else maps[list(self.branches)]

    @property
    def blend_masks(self) -> torch.Tensor | None:
        """bool (blend steps, branches, F, h_latent, w_latent), or None without LocalBlend."""
        blend = getattr(self.controller, "local_blend", None)
        if blend is None or not blend.masks:
            return None
        masks = torch.stack(blend.masks)
        return masks if self.branches is None else masks[:, list(self.branches)]

    def target(self, index: int) -> "EditResult":
        """The source branch and target ``index`` (1, 2, …) as an edit of their own: what an edit of [source,
        that target] alone gives (``vp2p.workflow.edit_sweep`` splits its batch so). The controller stays the
        batch's; ``maps`` and ``blend_masks`` read its two branches."""
        if not 1 <= index < len(self.prompts):
            raise ValueError(f"target {index}: this edit has targets 1 to {len(self.prompts) - 1}")
        frames = self.videos.shape[1]
        rows = torch.cat([self.latents[:frames], self.latents[index * frames:(index + 1) * frames]])
        inner = self.branches or tuple(range(len(self.prompts)))
        return EditResult([self.prompts[0], self.prompts[index]], self.videos[[0, index]], rows, self.controller,
                          self.decoupled, self.seconds, (inner[0], inner[index]))

    def save(self, folder, fps: float = 8.0, overwrite: bool = False) -> dict:
        from vp2p.io.video import write_videos

        names = ["source"] + [f"edit{i}" if len(self.prompts) > 2 else "edit" for i in range(1, len(self.prompts))]
        return write_videos(Path(folder), dict(zip(names, self.videos)), fps=fps, overwrite=overwrite)


def edit(pipe, inversion, prompts, controller: AttentionStore | None = None, guidance_scale: float | None = None,
         decoupled: bool = True, progress: bool = True, **controller_options) -> EditResult:
    """Algorithm 1: edit ``inversion``'s video from ``prompts[0]`` (its source prompt) to ``prompts[1:]``.

    ``controller``: an ``AttentionStore``/``AttentionEdit``, or None to build one with ``make_controller`` from
    ``controller_options`` (is_word_swap, cross_replace_steps, self_replace_steps, blend_words, eq_params, …).
    ``decoupled=False`` gives the target branches the source's null embeddings too (the paper's ablation).
    """
    prompts = check_prompts(prompts)
    if not isinstance(inversion, Inversion):
        got = f"{type(inversion).__name__} {getattr(inversion, 'dtype', '')} {getattr(inversion, 'shape', '')}"
        raise TypeError(f"edit(pipe, inversion, prompts) takes the Inversion that vp2p.invert returns, got "
                        f"{' '.join(got.split())}; invert the frames first: inv = vp2p.invert(pipe, frames, "
                        "source_prompt), then vp2p.edit(pipe, inv, [source_prompt, target_prompt])")
    if guidance_scale is not None:
        checks.check_setting("guidance_scale", guidance_scale)
    if controller is not None:  # make_controller checks the prompts of one it builds
        checks.check_model_prompts(pipe, prompt_roles(prompts))
    require_vp2p_processors(pipe.unet)
    inversion.check_weights(pipe.unet)
    if prompts[0] != inversion.prompt:
        raise ValueError(f"prompts[0] must be the prompt the video was inverted with, {inversion.prompt!r}, "
                         f"not {prompts[0]!r}; invert again or fix the source prompt")
    start = time.perf_counter()
    num_steps, frames = inversion.num_steps, inversion.num_frames
    guidance_scale = inversion.guidance_scale if guidance_scale is None else guidance_scale
    if controller is None:
        controller = make_controller(pipe, prompts, num_steps, **controller_options)
    elif controller_options:
        raise ValueError(f"pass either a controller or controller options, not both: {sorted(controller_options)}")
    schedule = DDIMSchedule.from_scheduler(pipe.scheduler, num_steps)
    branches = len(prompts)
    latent_size = tuple(inversion.z_T.shape[-2:])
    default_height = blend_resolution(latent_size[0], cross_attention_heights(pipe.unet, latent_size[0]))
    controller.start(latent_size, branches, guided=True, num_steps=num_steps, default_resolution=default_height)

    # the source prompt's embedding as the inversion used it (encoded again, in another batch, it can differ in
    # reduced precision); inversions saved without it encode it with the targets
    stored = inversion.source_embedding
    embeddings = pipe.encode_text((prompts if stored is None else prompts[1:]) + [""]).float()
    cond, empty = embeddings[:-1], embeddings[-1:]
    if stored is not None:
        cond = torch.cat([stored.to(cond.device), cond])
    nulls = inversion.null_embeddings.to(pipe.device)

    def uncond_at(step):
        source = nulls[step].expand(frames, -1, -1)  # shared (1 row) or per frame (F rows)
        target = empty.expand(frames, -1, -1) if decoupled else source
        return torch.cat([source] + [target] * (branches - 1))

    guidance = torch.tensor([inversion.source_guidance] + [guidance_scale] * (branches - 1))
    z_T = inversion.z_T.to(pipe.device).repeat(branches, 1, 1, 1)
    latents = sample(pipe.unet, z_T, schedule, cond, uncond_at, guidance, frames, controller,
                     progress=progress and "editing")
    videos = np.stack([pipe.decode_latents(v) for v in layout.frames_view(latents, frames)])
    return EditResult(prompts, videos, latents.cpu(), controller, decoupled, time.perf_counter() - start)
