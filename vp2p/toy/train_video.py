"""Toy world 2: fine-tune the shipped toy model so that its self-attention matches appearance across frames.

    python -m vp2p.toy.train --stage video --work runs/toy2 --out vp2p/toy/model --overwrite --threads 2

Why (issue 17): Video-P2P's frame attention gives frame i the keys and values of frame 0. Stable Diffusion's
self-attention matches *what* it sees, so frame 0's keys carry the object's look to wherever it is in frame i; the
first toy model's encoded *where*, and pulled every frame's object toward frame 0's place. This stage teaches the
toy model what SD learned from billions of images, on the new world whose scenes have a look the caption leaves
open (``world.Appearance``: stripe orientation and phase, dot offset, shade, rotation), starting from the shipped
weights (``--init``, copied once into ``--work``):

* a share ``--video-share`` of the batches are short videos of one scene (2–4 of its 8 frames: the object moved,
  its look the same), run as the inflated model runs them — every self-attention takes its keys and values from
  the video's frame 0 (``vp2p.attention``'s frame processors) and the ResNet GroupNorms pool over the video's frames
  (``vp2p.inflation.video_group_norms``) — one timestep per video, fresh noise per frame, as in tuning;
* the other batches are single frames (``num_frames=1``: frame attention is then self-attention and the video
  GroupNorm is per frame, i.e. the image model), so the model stays a text-to-image model;
* the cross-attention localisation loss and the word mixing of the first fine-tune are kept; a small frame-attention
  loss (``--frame-attn-weight``) asks object queries of frames ≥ 1 to look inside frame 0's object, the counterpart
  of the cross-attention loss for the new layers (the toy's masks stand in for what SD learned).

The VAE stays frozen (latents unchanged). Measured on 256 held-out frames, the shipped VAE reconstructs the new
world at 27.6 dB against 28.6 dB for the first world's look (striped objects 25.2 vs 27.6 dB: it saw only diagonal
stripes), so ``--decoder-steps`` re-trains the decoder alone on the new world after the UNet (encoder frozen).

Resumable and seeded: every ``--ckpt-every`` steps the models, EMA, optimizer, random stream and step go to
``work/video.pt`` (atomically); killing the command and running it again continues exactly where the last
checkpoint was (``tests/test_toy_world.py`` checks that an interrupted run ends bit for bit where an uninterrupted
one does). Loss and seconds per step go to ``work/video_log.jsonl``.

Cost, measured on the 2-core CPU (``--threads 2``, batch 32, nothing else running): 0.9–1.3 s a step (single-frame
and video batches alike), and the data set renders and encodes 512 scenes × 4 frames in about 19 s (chunked,
resumable); the defaults (12 000 scenes, 6000 steps) took 8 min + 2 h 15 min in the first full run, plus ~25 s per
1000 steps for the text-to-image check. A smoke test (57 s in all):

    python -m vp2p.toy.train --stage video --work /tmp/smoke --video-steps 40 --video-scenes 512 --threads 2 \
        --ckpt-every 20 --out /tmp/smoke/model
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from tqdm.auto import tqdm

from vp2p.io.storage import atomic_path
from vp2p.toy import world
from vp2p.toy import train as base

VIDEO_SEED = 4_000_000  # first scene seed of the video data set (the other stages' seeds start at 1M, 2M, 3M)
FRAMES_PER_SCENE = 4  # frames of each scene's 8-frame video kept in the data set
MIN_FRAMES = 2  # a video batch has between MIN_FRAMES and FRAMES_PER_SCENE frames per video
CHUNK = 512  # scenes per cached data chunk


def scene_frames(seed: int) -> list[int]:
    """The FRAMES_PER_SCENE frame indices (sorted, distinct, of 8) that the data set keeps of scene ``seed``."""
    return sorted(np.random.default_rng([seed, 5]).choice(8, FRAMES_PER_SCENE, replace=False).tolist())


def render_scene(seed: int, attribute_free: bool = False) -> world.ToyVideo:
    """The kept frames of training scene ``seed`` (without its pattern, same look otherwise, if asked)."""
    scene = base.training_scene(seed)
    if attribute_free:
        scene = scene.replace(attribute=None)
    return world.render(scene, indices=scene_frames(seed))


# ---------------------------------------------------------------- data


def _build_chunk(vae, tokenizer, first_seed: int, count: int) -> dict:
    frames, masks, captions = [], [], []
    for seed in range(first_seed, first_seed + count):
        video = render_scene(seed)
        frames.append(video.frames), masks.append(video.masks), captions.append(video.caption)
    x = base.to_tensor(np.concatenate(frames)).to(vae.device)
    with torch.no_grad():
        latents = torch.cat([vae.encode(x[i:i + 256]).latent_dist.mean for i in range(0, len(x), 256)])
    m = torch.from_numpy(np.concatenate(masks)).float()[:, None]
    per_scene = "(s f) c h w -> s f c h w"
    return {
        "latents": rearrange(latents.half().cpu(), per_scene, f=FRAMES_PER_SCENE),
        "masks": {side: rearrange(F.avg_pool2d(m, 64 // side).half(), per_scene, f=FRAMES_PER_SCENE)
                  for side in (16, 8)},
        "tokens": tokenizer(captions, padding="max_length", max_length=77, return_tensors="pt").input_ids,
        "roles": [base.word_roles(c) for c in captions],
    }


def build_video_dataset(work: Path, vae, tokenizer, scenes: int, first_seed: int = VIDEO_SEED) -> dict:
    """``scenes`` scenes × FRAMES_PER_SCENE frames: latents (S, F, 4, 16, 16), masks at 16 and 8 px, tokens, roles.

    Built in chunks of CHUNK scenes, each saved as it is done, so an interrupted build resumes."""
    folder = work / "video_data"
    folder.mkdir(parents=True, exist_ok=True)
    chunks = []
    for start in tqdm(range(0, scenes, CHUNK), desc="video data", mininterval=10):
        count = min(CHUNK, scenes - start)
        path = folder / f"{first_seed + start}_{count}.pt"
        if not path.exists():
            with atomic_path(path) as tmp:
                torch.save(_build_chunk(vae, tokenizer, first_seed + start, count), tmp)
        chunks.append(torch.load(path, weights_only=False))
    return {
        "latents": torch.cat([c["latents"] for c in chunks]),
        "masks": {side: torch.cat([c["masks"][side] for c in chunks]) for side in (16, 8)},
        "tokens": torch.cat([c["tokens"] for c in chunks]),
        "roles": [r for c in chunks for r in c["roles"]],
        "first_seed": first_seed,
    }


# ---------------------------------------------------------------- batches


def draw_batch(data: dict, batch: int, video_share: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(scene indices (R,), frame slots (R,), frames per video): R rows, video-major when frames per video > 1.

    Video batches keep ``batch // F`` whole videos of F frames (F drawn in MIN_FRAMES..FRAMES_PER_SCENE), the
    frames a random order of the scene's kept frames (the first is the reference all others attend to); image
    batches are ``batch`` single frames of random scenes."""
    n = data["latents"].shape[0]
    if torch.rand((), generator=gen) < video_share:
        frames = int(torch.randint(MIN_FRAMES, FRAMES_PER_SCENE + 1, (), generator=gen))
        videos = max(1, batch // frames)
        scenes = torch.randint(0, n, (videos,), generator=gen)
        slots = torch.stack([torch.randperm(FRAMES_PER_SCENE, generator=gen)[:frames] for _ in range(videos)])
        return scenes.repeat_interleave(frames), slots.flatten(), frames
    return torch.randint(0, n, (batch,), generator=gen), torch.randint(0, FRAMES_PER_SCENE, (batch,), generator=gen), 1


def attribute_free_latents(data: dict, scenes: torch.Tensor, slots: torch.Tensor, vae) -> torch.Tensor:
    """Latents of the given frames re-rendered without their pattern (same scene seed: same place and look)."""
    frames = [render_scene(data["first_seed"] + int(s), attribute_free=True).frames[int(k)]
              for s, k in zip(scenes, slots)]
    with torch.no_grad():
        x = base.to_tensor(np.stack(frames)).to(vae.device)
        return vae.encode(x).latent_dist.mean * vae.config.scaling_factor


def frame_attention_inside(probs: torch.Tensor, cover: torch.Tensor, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where object queries of frames ≥ 1 look in frame 0: (share of each query's attention inside frame 0's
    object (rows, heads, queries), weight of each query (rows, queries): 1 on the object of frames ≥ 1, else 0).

    ``probs``: frame-attention probabilities (rows, heads, queries, keys), keys = frame 0's positions; ``cover``:
    object coverage per row at that map size, (rows, queries). Queries count when firmly on the object
    (coverage ≥ 0.75); frame 0 attends to itself, so it has nothing to show."""
    video = rearrange(cover.float(), "(v f) q -> v f q", f=frames)
    reference = video[:, :1].expand(-1, frames, -1).flatten(0, 1)  # (rows, keys): frame 0's object
    queries = (video >= 0.75).float()
    queries[:, 0] = 0
    inside = torch.einsum("nhqk,nk->nhq", probs.float(), reference)
    return inside, queries.flatten(0, 1)


def frame_attention_loss(captured: list[torch.Tensor], masks: dict[int, torch.Tensor], frames: int) -> torch.Tensor:
    """−log of the share of each object query's frame attention (frames ≥ 1) inside frame 0's object mask,
    averaged over the captured layers (``masks``: coverage per row at each map side, (rows, 1, side, side))."""
    terms = []
    for probs in captured:
        inside, queries = frame_attention_inside(probs, masks[math.isqrt(probs.shape[2])].flatten(1), frames)
        if queries.sum() > 0:
            log = inside.clamp(1e-4, 1.0).log()
            terms.append(-(queries[:, None] * log).sum() / (queries.sum() * probs.shape[1]))
    return torch.stack(terms).mean() if terms else torch.zeros(())


# ---------------------------------------------------------------- models and checkpoints


def prepare_init(work: Path, init: Path, vae: Path | None = None) -> Path:
    """Copy the model to start from into ``work/init_model`` once: later runs (and an export over ``init``
    itself) then read the copy, so resuming never starts from a model this stage wrote.

    ``vae``: a VAE folder that replaces the init's (e.g. one from ``--stage vae``): the stage then teaches the
    UNet that VAE's latents. A resumed run must name the same VAE."""
    target = work / "init_model"
    if not (target / "model_index.json").exists():
        init = Path(init)
        for part in ("unet", "text_encoder", "tokenizer", "vae"):
            if not (init / part).is_dir():
                raise FileNotFoundError(f"--init {init} has no {part}/ folder; give a toy model folder "
                                        "(e.g. vp2p/toy/model)")
        if vae is not None and not (Path(vae) / "config.json").exists():
            raise FileNotFoundError(f"--vae {vae} has no config.json; give a VAE folder (e.g. runs/vae/vae)")
        tmp = work / ".init_model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(init, tmp)
        if vae is not None:
            shutil.rmtree(tmp / "vae")
            shutil.copytree(vae, tmp / "vae")
        tmp.rename(target)
    elif vae is not None and not same_weights(Path(vae), target / "vae"):
        raise ValueError(f"{work} was started with another VAE than --vae {vae}; resume with the VAE it began "
                         "with, or use a new --work folder")
    return target


def same_weights(a: Path, b: Path) -> bool:
    """Whether two model folders hold byte-identical weight files."""
    names = sorted(p.name for p in a.glob("*.safetensors"))
    return names == sorted(p.name for p in b.glob("*.safetensors")) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names)


def load_init(folder: Path, device):
    """The UNet, text encoder, tokenizer and (frozen) VAE of a toy model folder."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    unet = UNet2DConditionModel.from_pretrained(folder / "unet").to(device).train()
    text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder").to(device).train()
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    vae = AutoencoderKL.from_pretrained(folder / "vae").to(device).eval().requires_grad_(False)
    return unet, text_encoder, tokenizer, vae


def as_video_model(unet) -> None:
    """Run ``unet`` as the inflated model runs (frame attention, video GroupNorm), its weights and their names
    unchanged: no temporal blocks (they start at zero in an inflated model, so they add nothing untuned)."""
    from vp2p.attention import install_processors
    from vp2p.inflation import video_group_norms

    install_processors(unet, inflated=True)
    video_group_norms(unet)


def save_checkpoint(path: Path, step: int, models: dict, ema: dict, opt, gen: torch.Generator) -> None:
    state = {"step": step, "opt": opt.state_dict(), "gen": gen.get_state(),
             **{k: m.state_dict() for k, m in models.items()}, **{f"ema_{k}": m.state_dict() for k, m in ema.items()}}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def trim_log(path: Path, step: int) -> None:
    """Keep only the log rows up to ``step`` (a resumed run rewrites what came after its checkpoint)."""
    if path.exists():
        rows = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
        path.write_text("".join(row + "\n" for row in rows))


# ---------------------------------------------------------------- the stage


def train_video(work: Path, init: Path, steps: int, scenes: int, batch: int = 32, lr: float = 2e-4,
                video_share: float = 0.5, attn_weight: float = 0.05, frame_attn_weight: float = 0.05,
                word_mix: float = 0.5, ema_decay: float = 0.999, seed: int = 2, ckpt_every: int = 250,
                eval_every: int = 1000, log_every: int = 25, device=None, vae: Path | None = None):
    """Fine-tune (or resume, from ``work/video.pt``) the model in ``init`` (its VAE replaced by ``vae`` if
    given); returns the EMA UNet, text encoder, tokenizer and VAE."""
    from diffusers import DDIMScheduler

    for name, value, lo, hi in (("video_share", video_share, 0, 1), ("word_mix", word_mix, 0, 1)):
        if not lo <= value <= hi:
            raise ValueError(f"{name}={value} is outside [{lo}, {hi}]; give a share between 0 and 1.")
    if batch < FRAMES_PER_SCENE:
        raise ValueError(f"batch={batch} cannot hold a video of {FRAMES_PER_SCENE} frames; use a batch ≥ 4.")
    device = torch.device(device or base.default_device())
    unet, text_encoder, tokenizer, vae = load_init(prepare_init(work, init, vae), device)
    data = build_video_dataset(work, vae, tokenizer, scenes)
    ema = {"unet": copy.deepcopy(unet).requires_grad_(False), "text": copy.deepcopy(text_encoder).requires_grad_(False)}
    models = {"unet": unet, "text": text_encoder}
    as_video_model(unet)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(seed)
    ckpt, log_path, start = work / "video.pt", work / "video_log.jsonl", 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False, map_location=device)
        for k, m in models.items():
            m.load_state_dict(state[k]), ema[k].load_state_dict(state[f"ema_{k}"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        start = state["step"]
        with warnings.catch_warnings():  # replaying the schedule without optimizer steps is what we mean here
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(start):  # the learning-rate schedule of this run's length
                sched.step()
    trim_log(log_path, start)
    empty = tokenizer([""], padding="max_length", max_length=77, return_tensors="pt").input_ids[0]
    noise_sched = DDIMScheduler(**base.scheduler_config())
    capture = base.AttentionCapture({256, 64})
    scale = vae.config.scaling_factor
    log = open(log_path, "a")
    bar = tqdm(range(start, steps), desc="video", initial=start, total=steps, mininterval=30)
    clock, logged = time.time(), start
    for step in bar:
        scenes_idx, slots, frames = draw_batch(data, batch, video_share, gen)
        rows = len(scenes_idx)
        x = (data["latents"][scenes_idx, slots].float() * scale).to(device)
        videos = rows // frames
        keep = (torch.rand(videos, generator=gen) > 0.1).repeat_interleave(frames)  # caption dropout per video
        ids = torch.where(keep[:, None], data["tokens"][scenes_idx], empty)
        positions = base.attribute_positions(ids, tokenizer)
        # Word mixing on single frames only: a spliced caption must describe every frame of its video.
        plan = base.plan_word_mix(positions, keep, word_mix if frames == 1 else 0.0, gen)
        dropped = (plan == 2).nonzero().flatten()
        if len(dropped):
            x[dropped] = attribute_free_latents(data, scenes_idx[dropped], slots[dropped], vae).to(device)
        noise = torch.randn(x.shape, generator=gen).to(device)
        t = torch.randint(0, 1000, (videos,), generator=gen).repeat_interleave(frames).to(device)
        capture.probs, capture.frame_probs = [], []
        capture.frame_lengths = {256, 64} if frames > 1 and frame_attn_weight > 0 else set()
        emb = base.mixed_conditioning(text_encoder, ids.to(device), positions, plan)
        pred = unet(noise_sched.add_noise(x, noise, t), t, encoder_hidden_states=emb,
                    cross_attention_kwargs={"controller": capture, "num_frames": frames}).sample
        diffusion = F.mse_loss(pred, noise)
        masks = {side: m[scenes_idx, slots].to(device) for side, m in data["masks"].items()}
        attn = base.attention_loss(capture.probs, masks, [data["roles"][i] for i in scenes_idx.tolist()],
                                   keep & (plan == 0))
        frame_attn = frame_attention_loss(capture.frame_probs, masks, frames) if frames > 1 else torch.zeros(())
        loss = diffusion + attn_weight * attn + frame_attn_weight * frame_attn.to(device)
        base.optimizer_step(loss, params, opt, sched, [(ema[k], models[k]) for k in models], ema_decay)
        if (step + 1) % log_every == 0 or step + 1 == steps:
            now = time.time()
            per_step = (now - clock) / (step + 1 - logged)
            log.write(json.dumps({"step": step + 1, "frames": frames, "diffusion": diffusion.item(),
                                  "attention": attn.item(), "frame_attention": frame_attn.item(),
                                  "seconds_per_step": round(per_step, 3)}) + "\n")
            log.flush()
            bar.set_postfix(diff=f"{diffusion.item():.4f}", attn=f"{attn.item():.3f}",
                            frame=f"{frame_attn.item():.3f}", s_step=f"{per_step:.2f}")
            clock, logged = now, step + 1
        if (step + 1) % ckpt_every == 0 or step + 1 == steps:
            save_checkpoint(ckpt, step + 1, models, ema, opt, gen)
        if (step + 1) % eval_every == 0:
            for m in ema.values():
                m.eval()
            acc = base.t2i_accuracy(ema["unet"], ema["text"], tokenizer, vae)
            log.write(json.dumps({"step": step + 1, **acc}) + "\n")
            log.flush()
    log.close()
    return ema["unet"].eval(), ema["text"].eval(), tokenizer, vae
