"""The ``vp2p`` command.

    vp2p demo --out demo                      # the whole pipeline on a toy video (CPU, a few minutes)
    vp2p edit VIDEO --source "..." --target "..." --out DIR [--model toy|FOLDER|HUB_ID] [options]
    vp2p toy-bench --out DIR                  # the toy model's quality bars (toy_bench.json)
    vp2p train-toy --work runs/toy --out vp2p/toy/model   # retrain the bundled toy model
"""

from __future__ import annotations

import argparse
import json
import sys


def cmd_demo(args):
    from vp2p.toy.demo import run_demo

    metrics = run_demo(args.out, model=args.model, overwrite=args.overwrite)
    print(json.dumps(metrics, indent=2))


def cmd_edit(args):
    from vp2p.editing import parse_weights
    from vp2p.loading import load_pipeline
    from vp2p.video import read_video, write_videos
    from vp2p.workflow import settings_for, video_p2p

    frames = read_video(args.video, num_frames=args.frames, start=args.start, stride=args.stride, size=args.size)
    pipe = load_pipeline(args.model)
    settings = settings_for(pipe)
    changes = {k: v for k, v in dict(tune_steps=args.tune_steps, method=args.method, num_steps=args.steps,
                                     guidance_scale=args.guidance, cross_replace_steps=args.cross_replace,
                                     self_replace_steps=args.self_replace, threshold=args.threshold).items()
               if v is not None}
    settings = settings.replace(**changes)
    options = {"is_word_swap": not args.refine}
    if args.blend:
        options["blend_words"] = args.blend
    if args.reweight:
        options["eq_params"] = parse_weights(args.reweight)
    run = video_p2p(pipe, frames, args.source, args.target, settings, work_dir=f"{args.out}/cache", **options)
    written = write_videos(args.out, {"source": frames, "reconstruction": run.inversion.reconstruction,
                                      "edit": run.edits[-1].edited}, overwrite=args.overwrite)
    print(json.dumps({"written": {k: [str(p) for p in v] for k, v in written.items()},
                      "seconds": run.seconds}, indent=2))


def cmd_bench(args):
    from vp2p.toy.bench import run_bench

    result = run_bench(args.out, model=args.model, t2i_count=args.t2i, attention_count=args.attention,
                       videos=args.videos, overwrite=args.overwrite)
    print(json.dumps({k: v for k, v in result.items() if k != "videos"}, indent=2))


def cmd_train(args):
    from vp2p.toy.train import main as train_main

    train_main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vp2p", description="Video-P2P: text-driven video editing, explained.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole pipeline on a toy video")
    demo.add_argument("--out", default="demo")
    demo.add_argument("--model", default="toy")
    demo.add_argument("--overwrite", action="store_true")
    demo.set_defaults(func=cmd_demo)

    edit = sub.add_parser("edit", help="edit a video (folder of frames, mp4 or gif)")
    edit.add_argument("video")
    edit.add_argument("--source", required=True, help="a prompt describing the video")
    edit.add_argument("--target", required=True, help="the edited prompt")
    edit.add_argument("--out", required=True)
    edit.add_argument("--model", default="toy", help="'toy', a local SD folder or a hub id")
    edit.add_argument("--frames", type=int, default=8)
    edit.add_argument("--start", type=int, default=0)
    edit.add_argument("--stride", type=int, default=1)
    edit.add_argument("--size", type=int, default=None, help="square size (default: 64 for toy, 512 otherwise)")
    edit.add_argument("--tune-steps", type=int)
    edit.add_argument("--method", choices=["null-text", "null-text-per-frame", "negative-prompt", "fast", "ddim"])
    edit.add_argument("--steps", type=int, help="DDIM steps (50)")
    edit.add_argument("--guidance", type=float)
    edit.add_argument("--cross-replace", type=float)
    edit.add_argument("--self-replace", type=float)
    edit.add_argument("--threshold", type=float)
    edit.add_argument("--refine", action="store_true", help="Refine (added words) instead of Replace (word swap)")
    edit.add_argument("--blend", nargs=2, metavar=("SOURCE_WORD", "TARGET_WORD"), help="LocalBlend words")
    edit.add_argument("--reweight", nargs="+", metavar="WORD=WEIGHT")
    edit.add_argument("--overwrite", action="store_true")
    edit.set_defaults(func=cmd_edit)

    bench = sub.add_parser("toy-bench", help="measure the toy model against its bars")
    bench.add_argument("--out", required=True)
    bench.add_argument("--model", default="toy")
    bench.add_argument("--t2i", type=int, default=200, help="captions for the text-to-image accuracies")
    bench.add_argument("--attention", type=int, default=50, help="frames for attention_in_mask")
    bench.add_argument("--videos", type=int, default=20, help="held-out videos through the full pipeline")
    bench.add_argument("--overwrite", action="store_true")
    bench.set_defaults(func=cmd_bench)

    train = sub.add_parser("train-toy", help="retrain the toy model (python -m vp2p.toy.train -h)")
    train.add_argument("rest", nargs=argparse.REMAINDER)
    train.set_defaults(func=cmd_train)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if getattr(args, "size", None) is None and args.command == "edit":
        args.size = 64 if args.model == "toy" else 512
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
