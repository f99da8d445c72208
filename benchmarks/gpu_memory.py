"""GPU memory and T4 time of each Video-P2P stage for Stable Diffusion 1.5, 8 frames of 512², fp16, estimated on a
machine without a GPU.

    python benchmarks/gpu_memory.py     # writes benchmarks/gpu_memory.json and vp2p/course/t4_minutes.json

How: SD-1.5 is built from its published component configs (``vp2p.io.sd15``) with random weights under PyTorch's
``FakeTensorMode``: every tensor has its real shape, dtype and size, and none has data, so nothing is computed and
4 GB of weights cost nothing. The real stage functions (``vp2p.tune``, ``vp2p.invert``, ``vp2p.edit``,
``probes.generate``) run on it with one or two steps, under two more dispatch modes:

* ``LiveMemory`` adds up the bytes of every tensor storage alive, weights included, and keeps the peak: what
  ``torch.cuda.max_memory_allocated`` reports on a GPU (before the caching allocator's rounding). The peak of the
  second step is kept: from then on the optimiser's state and the previous step's gradients are alive too;
* ``torch.utils.flop_counter.FlopCounterMode`` (in a second run) counts the floating-point operations; the stages'
  totals for the official step counts follow from the one- and two-step runs (each stage is linear in its steps).

What CUDA does differently is put back in by hand. On CUDA, ``scaled_dot_product_attention`` runs a fused kernel
(memory-efficient attention on a T4) that never holds the attention matrix: here ``FusedAttention`` stands in for it
(output and log-sum-exp only, its FLOPs counted as the kernel does them), wherever vp2p calls SDPA; the layers whose
probabilities a controller needs (the edit's cross-attention and, for the first half of the steps, its frame
attention) go through vp2p's explicit softmax path and are counted as they are. The pipeline runs on a fake CPU
device in float16 (CUDA's autocast refuses to run without a GPU; CPU autocast to float16 casts the same tensors),
with gradient checkpointing switched on or off as on CUDA. Not counted: the CUDA context (about 0.3-0.5 GB on a
T4, outside PyTorch's allocator), the allocator's rounding and fragmentation, cuBLAS/cuDNN workspaces. Data-dependent
values (a loss read with ``.item()``) read as 1.0, so null-text never stops early: its time is the official upper
bound of 10 Adam iterations per step.

Time on a T4: FLOPs / (65 TFLOP/s fp16 tensor-core peak × UTILISATION). The notebooks' totals add up the stages
each notebook runs (``NOTEBOOKS``), from an empty cache and after the notebooks before it (their cache).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
import weakref
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parent.parent
FRAMES, SIZE = 8, 512
# A T4's 65 TFLOP/s is its fp16 tensor-core peak at boost clock; Stable Diffusion's UNet (GroupNorm, SiLU, softmax:
# memory-bound on the T4's 320 GB/s) gets far less. Sampling SD-1.5 at 512² on a T4 is commonly reported at 2-3
# iterations per second (batch 2 with guidance): 2 × 0.85 TFLOP × 2.5/s ≈ 4.3 TFLOP/s — 7 % of the peak. 12 % is
# the figure used here (between that and the 30-40 % a large GPU reaches); not measured by this project.
T4_PEAK_TFLOPS, UTILISATION, T4_GB, OFFICIAL_GB = 65.0, 0.12, 15.0, 20.0
SOURCE, TARGET = "a man is walking on the grass", "a Spider-Man is walking on the grass"


class LiveMemory(TorchDispatchMode):
    """The bytes of all tensor storages alive (weights included once ``track``ed) and their peak.

    Also answers ``.item()`` on fake tensors: 0 for GradScaler's found-inf flags (every step is taken), 1.0 for
    anything else (a loss: null-text never stops early)."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self.refs: dict[int, weakref.ref] = {}
        self.found_inf: set[int] = set()

    def track(self, tensor) -> None:
        if not isinstance(tensor, torch.Tensor):
            return
        storage = tensor.untyped_storage()
        key = id(storage)
        if key in self.refs and self.refs[key]() is storage:
            return
        size = storage.nbytes()
        self.live += size
        self.peak = max(self.peak, self.live)
        self.refs[key] = weakref.ref(storage, lambda _, key=key, size=size: self._free(key, size))

    def _free(self, key, size):
        self.live -= size
        self.refs.pop(key, None)

    def reset_peak(self):
        self.peak = self.live

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._local_scalar_dense.default:
            return 0 if id(args[0].untyped_storage()) in self.found_inf else 1.0
        out = func(*args, **kwargs)
        if func is torch.ops.aten._amp_foreach_non_finite_check_and_unscale_.default:
            self.found_inf.add(id(args[1].untyped_storage()))
        for value in torch.utils._pytree.tree_leaves(out):
            self.track(value)
        return out


class FusedAttention(torch.autograd.Function):
    """What CUDA's fused attention keeps: the output and a float32 log-sum-exp per query, never the (queries × keys)
    matrix; its backward recomputes the scores (5 matmuls to the forward's 2). FLOPs go to ``FusedAttention.flops``."""

    flops = 0

    @staticmethod
    def forward(ctx, query, key, value):
        out = query.new_empty(*query.shape[:-1], value.shape[-1])
        lse = query.new_empty(query.shape[:-1], dtype=torch.float32)
        ctx.save_for_backward(query, key, value, out, lse)
        FusedAttention.flops += 2 * matmul_flops(query, key, value)
        return out

    @staticmethod
    def backward(ctx, grad):
        query, key, value, _, _ = ctx.saved_tensors
        FusedAttention.flops += 5 * matmul_flops(query, key, value)
        return torch.empty_like(query), torch.empty_like(key), torch.empty_like(value)


def matmul_flops(query, key, value) -> int:
    """FLOPs of one (batch, heads, queries, d) × (…, keys, d) product: 2 per multiply-add."""
    return 2 * math.prod(query.shape[:-1]) * key.shape[-2] * query.shape[-1]


SDPA = torch.nn.functional.scaled_dot_product_attention


def fused_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **options):
    if attn_mask is not None or is_causal:  # the text encoder's causal mask: 77 tokens, counted as computed
        return SDPA(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale,
                    **options)
    return FusedAttention.apply(query, key, value)


@contextmanager
def cuda_like(live: LiveMemory):
    """CUDA's behaviour where the CPU's differs (fused SDPA; gradient checkpointing in null-text, as on CUDA), and
    no reading of values that fake tensors do not have (cache fingerprints; reconstruction errors: the VAE still
    decodes the reconstruction)."""
    import vp2p.inversion as inversion

    functional = torch.nn.functional
    saved = {name: getattr(inversion, name) for name in ("gradient_checkpointing", "inversion_key",
                                                         "record_reconstruction")}
    functional.scaled_dot_product_attention = fused_sdpa
    inversion.gradient_checkpointing = lambda unet, enabled: saved["gradient_checkpointing"](unet, True)
    inversion.inversion_key = lambda *args, **kwargs: "fake"
    inversion.record_reconstruction = lambda pipe, inv, path: pipe.decode_latents(path[-1])
    try:
        yield
    finally:
        functional.scaled_dot_product_attention = SDPA
        for name, value in saved.items():
            setattr(inversion, name, value)


@contextmanager
def convertible_fake_parameters():
    """Let ``Module.to()`` convert fake parameters: it swaps a fake parameter with its converted copy, which fails
    once the fake mode keeps a weak reference to it; assigning ``.data`` does the same for a tensor without data."""
    swap = torch.utils.swap_tensors

    def swap_or_assign(old, new):
        try:
            swap(old, new)
        except RuntimeError:
            with torch.no_grad():
                old.data = new

    torch.utils.swap_tensors = swap_or_assign
    try:
        yield
    finally:
        torch.utils.swap_tensors = swap


def fake_pipeline():
    """SD-1.5 with fake float16 weights, inflated, decoding to zeros (fake tensors have no values to show)."""
    import vp2p
    from vp2p.io.sd15 import random_pipeline

    pipe = random_pipeline("cpu", torch.float16)

    def decode_latents(latents):  # the VAE runs as in Pipeline.decode_latents; the frames are zeros
        with torch.no_grad():
            for chunk in latents.split(pipe.vae_batch):
                pipe.vae.decode(chunk.to(pipe.device, pipe.dtype) / pipe.vae.config.scaling_factor)
        count, _, height, width = latents.shape
        scale = pipe.vae_scale_factor
        return np.zeros((count, height * scale, width * scale, 3), np.uint8)

    pipe.decode_latents = decode_latents
    vp2p.inflate_unet(pipe.unet)
    return pipe


def measure(run, live: LiveMemory) -> dict:
    """Peak bytes and FLOPs of ``run()`` (a stage on the fake pipeline), in two runs: FlopCounterMode's module
    tracking keeps tensors alive for its backward hooks, which would inflate the peak."""
    from torch.utils.flop_counter import FlopCounterMode

    live.reset_peak()
    start = time.perf_counter()
    run()
    peak = live.peak
    FusedAttention.flops = 0
    counter = FlopCounterMode(display=False)
    with counter:
        run()
    return {"peak_bytes": peak, "flops": counter.get_total_flops() + FusedAttention.flops,
            "seconds_here": round(time.perf_counter() - start, 1)}


def stages(pipe, frames: np.ndarray):
    """Each stage as ``{name: (function of the step counts, [step counts to run])}``; every function takes keyword
    step counts and returns nothing."""
    import vp2p
    from vp2p.inspect import probes

    def tune(checkpointing):
        return lambda steps: vp2p.tune(pipe, frames, SOURCE, steps=steps, checkpointing=checkpointing, progress=False)

    def invert(method):
        return lambda steps, inner=1: vp2p.invert(pipe, frames, SOURCE, method=method, num_steps=steps,
                                                  inner_steps=inner, early_stop=-1.0, progress=False)

    def edit(steps):
        inversion = vp2p.invert(pipe, frames, SOURCE, method="fast", num_steps=steps, reconstruct=False,
                                progress=False)
        controller = vp2p.make_controller(pipe, [SOURCE, TARGET], steps, blend_words=[["man"], ["Spider-Man"]])
        vp2p.edit(pipe, inversion, [SOURCE, TARGET], controller=controller, progress=False)

    def generate(steps):
        probes.generate(pipe, SOURCE, num_frames=len(frames), num_steps=steps, progress=False)

    return {"tune (gradient checkpointing, as on CUDA)": (tune(True), [{"steps": 1}, {"steps": 2}]),
            "tune (no checkpointing)": (tune(False), [{"steps": 1}, {"steps": 2}]),
            "null-text inversion": (invert("null-text"), [{"steps": 1, "inner": 1}, {"steps": 2, "inner": 1},
                                                          {"steps": 1, "inner": 2}]),
            "DDIM inversion + reconstruction": (invert("ddim"), [{"steps": 1}, {"steps": 2}]),
            "edit (Replace + LocalBlend)": (edit, [{"steps": 1}, {"steps": 2}]),
            "sample (generate)": (generate, [{"steps": 1}, {"steps": 2}])}


def linear_model(runs: list[tuple[dict, int]]) -> dict:
    """FLOPs as a + b·steps (+ c·steps·inner) from the runs' (step counts, FLOPs)."""
    (one, f1), (two, f2) = runs[0], runs[1]
    per_step = f2 - f1
    if len(runs) == 3:  # null-text: (1, 1), (2, 1), (1, 2)
        per_inner = runs[2][1] - f1
        per_step -= per_inner
        return {"fixed": f1 - per_step - per_inner, "per_step": per_step, "per_step_and_iteration": per_inner}
    return {"fixed": f1 - per_step, "per_step": per_step}


def stage_flops(model: dict, steps: int, inner: int = 0) -> float:
    return model["fixed"] + steps * model["per_step"] + steps * inner * model.get("per_step_and_iteration", 0)


def t4_minutes(flops: float) -> float:
    return flops / (T4_PEAK_TFLOPS * 1e12 * UTILISATION) / 60


# What each notebook runs on Stable Diffusion, in stage calls: (stage, count, step-count settings). "cached" stages
# are skipped when the notebooks before it ran (their tuning and inversion are in the work folder). Kept next to
# the notebooks' code: 01 samples three times (image, inflated, per-frame GroupNorm models, 25 steps); 02 tunes and
# samples before and after; 03 tunes (cached) and inverts five ways; 03b loads four of them (cached) and edits
# from each; 04-06 prepare (cached) and edit (04: the
# recorded edit and the coupled one; 04b: the default edit, Image-P2P with the image model's negative-prompt
# inversion, and four new edits of the two sweeps); 07 runs paper.run_paper's Table 1 rows on one clip of 4 frames
# (1 tuning, 4 null-text inversions, 1 DDIM inversion, 6 edits). The course's break-its and comparisons run on the
# toy model whatever MODEL is.
NOTEBOOKS = {
    "01_inflation": [("sample", 3, {"steps": 25, "frames": FRAMES})],
    "02_tuning": [("tune", 1, {}), ("sample", 2, {})],
    "03_inversion": [("tune", 1, {"cached": True}), ("null-text", 2, {}), ("ddim", 3, {})],
    "03b_null_text": [("tune", 1, {"cached": True}), ("null-text", 2, {"cached": True}), ("ddim", 2, {"cached": True}),
                      ("edit", 4, {})],
    "04_word_swap": [("tune", 1, {"cached": True}), ("null-text", 1, {"cached": True}), ("edit", 2, {})],
    "04b_knobs": [("tune", 1, {"cached": True}), ("null-text", 1, {"cached": True}), ("ddim", 1, {}),
                  ("edit", 6, {})],
    "05_refinement": [("tune", 1, {"cached": True}), ("null-text", 1, {"cached": True}), ("edit", 2, {})],
    "06_reweighting": [("tune", 1, {"cached": True}), ("null-text", 1, {"cached": True}), ("edit", 6, {})],
    "07_paper": [("tune", 1, {"frames": 4}), ("null-text", 4, {"frames": 4}), ("ddim", 1, {"frames": 4}),
                 ("edit", 6, {"frames": 4})],
    "studio": [("tune", 1, {"cached": True}), ("null-text", 1, {"cached": True}), ("edit", 1, {})],
}
STAGE_OF = {"tune": "tune (gradient checkpointing, as on CUDA)", "null-text": "null-text inversion",
            "ddim": "DDIM inversion + reconstruction", "edit": "edit (Replace + LocalBlend)",
            "sample": "sample (generate)"}


def notebook_minutes(models: dict, frames_of: dict, choice_settings) -> dict:
    """{notebook: {"alone", "in_order"}} minutes on a T4 under ``choice_settings`` (a vp2p Settings)."""
    result = {}
    for notebook, calls in NOTEBOOKS.items():
        alone = in_order = 0.0
        for stage, count, options in calls:
            frames = options.get("frames", frames_of)
            steps = options.get("steps", {"tune": choice_settings.tune_steps}.get(stage, choice_settings.num_steps))
            flops = stage_flops(models[STAGE_OF[stage]]["flops"], steps, choice_settings.inner_steps if stage == "null-text"
                                else 0) * frames / FRAMES  # linear in the frames but for temporal attention (F² per position, small)
            minutes = count * t4_minutes(flops)
            alone += minutes
            in_order += 0 if options.get("cached") else minutes
        result[notebook] = {"alone": round(alone, 1), "in_order": round(in_order, 1)}
    return result


def measure_stages(only: str | None = None) -> tuple[dict, int]:
    """{stage: {"peak_gb", "flops": linear_model}} for SD-1.5 with 8 frames of 512², and the weights' bytes."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    frames = np.zeros((FRAMES, SIZE, SIZE, 3), np.uint8)
    live = LiveMemory()
    rows = {}
    with ExitStack() as stack:
        stack.enter_context(FakeTensorMode(allow_non_fake_inputs=True))
        stack.enter_context(convertible_fake_parameters())
        pipe = fake_pipeline()
        stack.enter_context(live)
        for module in (pipe.unet, pipe.vae, pipe.text_encoder):
            for tensor in [*module.parameters(), *module.buffers()]:
                live.track(tensor)
        weights = live.live
        stack.enter_context(cuda_like(live))
        for name, (run, step_counts) in stages(pipe, frames).items():
            if only and only not in name:
                continue
            runs = []
            for counts in step_counts:
                row = measure(lambda: run(**counts), live)
                runs.append((counts, row["flops"]))
                print(f"{name} {counts}: peak {row['peak_bytes'] / 2**30:.2f} GB, {row['flops'] / 1e12:.1f} TFLOP "
                      f"({row['seconds_here']} s here)", flush=True)
            rows[name] = {"peak_gb": round(row["peak_bytes"] / 2**30, 2), "flops": linear_model(runs)}
    return rows, weights


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "gpu_memory.json"))
    parser.add_argument("--package-data", default=str(ROOT / "vp2p" / "course" / "t4_minutes.json"))
    parser.add_argument("--only", default=None, help="run only the stages whose name contains this")
    parser.add_argument("--reuse", action="store_true", help="take the stages' numbers from --out (computed "
                        "before) and recompute only the notebooks' times")
    args = parser.parse_args(argv)

    from vp2p.course.clip import SETTING_CHOICES
    from vp2p.workflow import Settings

    if args.reuse:
        previous = json.loads(Path(args.out).read_text())
        rows, weights = previous["stages"], previous["weights_gb"] * 2**30
    else:
        rows, weights = measure_stages(args.only)
    official = Settings()
    for name, row in rows.items():
        steps = official.tune_steps if "tune" in name else official.num_steps
        row["official_tflop"] = round(stage_flops(row["flops"], steps, official.inner_steps
                                                  if "null-text" in name else 0) / 1e12, 1)
        row["t4_minutes"] = round(t4_minutes(row["official_tflop"] * 1e12), 1)
        row["fits_t4_15gb"] = row["peak_gb"] < T4_GB - 0.5  # the CUDA context takes about half a GB
    if args.only:
        print(json.dumps(rows, indent=1))
        return rows
    frames_of = {choice: SETTING_CHOICES[choice][1] for choice in ("official", "course")}
    notebooks = {}
    for choice in ("official", "course"):
        settings = official.replace(**SETTING_CHOICES[choice][0])
        for notebook, minutes in notebook_minutes(rows, frames_of[choice], settings).items():
            notebooks.setdefault(notebook, {})[choice] = minutes
    method = __doc__.split("How: ", 1)[1].split("\n\nTime on a T4")[0].replace("\n", " ")
    report = {"model": "Stable Diffusion 1.5 (published component configs, random weights)", "frames": FRAMES,
              "size": SIZE, "dtype": "float16", "settings": dataclasses.asdict(official), "method": method,
              "not_counted": "the CUDA context (0.3-0.5 GB), allocator rounding and fragmentation, library workspaces",
              "weights_gb": round(weights / 2**30, 2), "t4_gb": T4_GB, "official_code_gb": OFFICIAL_GB,
              "peak_tflops": T4_PEAK_TFLOPS, "utilisation": UTILISATION, "stages": rows, "notebooks": notebooks,
              "measured_on_gpu": earlier_gpu_measurement(Path(args.out)), "torch": torch.__version__}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    package = {"peak_tflops": T4_PEAK_TFLOPS, "utilisation": UTILISATION, "frames": frames_of,
               "notebooks": notebooks}
    Path(args.package_data).write_text(json.dumps(package, indent=1) + "\n")
    print(json.dumps(notebooks, indent=1))
    return report


def earlier_gpu_measurement(path: Path):
    """The real-GPU peaks recorded in an earlier report (``benchmarks/stages.py --config sd15`` on a lent GPU, copied
    in by hand): kept when the estimate is rerun, since this machine has no GPU to measure them again."""
    return json.loads(path.read_text()).get("measured_on_gpu") if path.exists() else None


if __name__ == "__main__":
    sys.exit(main() and 0)
