"""The ``vp2p`` command.

    vp2p demo --out demo                      # the whole pipeline on a toy video (CPU, a few minutes)
    vp2p edit VIDEO --source "..." --target "..." --out DIR [--model toy|FOLDER|HUB_ID] [options]
    vp2p toy-bench --out DIR                  # the toy model's quality bars (toy_bench.json)
    vp2p paper --out DIR                      # the paper's Tables 1 and 2 on held-out toy clips
    vp2p train-toy --work runs/toy --out vp2p/toy/model   # retrain the bundled toy model
    vp2p course --build                       # run the notebooks in place: outputs and figures/ (a checkout)
    vp2p course --student DIR                 # the notebooks for students: exercises without solutions

Errors are one line, ``vp2p: error: ...``, with exit status 2; ``--debug`` shows the traceback. Everything a command
is given is checked before its long stages, and nothing it was given is written over. torch and diffusers are
imported by the command that needs them, so that ``vp2p --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings

from vp2p.checks import INVERSION_METHODS  # torch-free, as everything imported here

# The library speaks its API (num_steps=0); the command's messages name its flags (--steps 0).
API_FLAGS = {"num_frames": "--frames", "start": "--start", "stride": "--stride", "size": "--size",
             "tune_steps": "--tune-steps", "method": "--method", "num_steps": "--steps", "guidance_scale": "--guidance",
             "cross_replace_steps": "--cross-replace", "self_replace_steps": "--self-replace",
             "threshold": "--threshold", "blend_words": "--blend", "eq_params": "--reweight", "out": "--out",
             "model": "--model", "dpi": "--dpi"}
API_PHRASES = {"overwrite=True": "--overwrite", "is_word_swap=False": "--refine"}
EDIT_VIDEOS = ("source", "reconstruction", "edit")


def version() -> str:
    """The installed package's version (its metadata), else the source tree's ``vp2p.__version__``."""
    from importlib import metadata

    try:
        return metadata.version("vp2p")
    except metadata.PackageNotFoundError:
        from vp2p import __version__

        return __version__


def in_flags(message: str) -> str:
    """``message`` with the API's argument names replaced by the flags that set them."""
    for phrase, flag in API_PHRASES.items():
        message = message.replace(phrase, flag)
    for name, flag in API_FLAGS.items():
        message = re.sub(rf"\b{name}=", f"{flag} ", message)
        if "_" in name:  # a bare name only where it cannot be an ordinary word ("start", "size" can)
            message = re.sub(rf"\b{name}\b", flag, message)
    return message


def raised_by_vp2p(error: BaseException) -> bool:
    """Whether vp2p's own code raised ``error`` (its message is written for the user), not a library under it."""
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and frame.tb_frame.f_globals.get("__name__", "").startswith("vp2p.")


def one_line(error: BaseException) -> str:
    """The error as the one line the command prints: its message, in flags; for anything but vp2p's own errors
    about what it was given (ValueError, OSError, RuntimeError raised by vp2p), also its type and where to look."""
    text = in_flags(" ".join(str(error).split()))
    if isinstance(error, (ValueError, OSError, RuntimeError)) and raised_by_vp2p(error) and text:
        return text
    return f"{type(error).__name__}: {text} (run again with --debug for the traceback)"


def cmd_demo(args):
    from vp2p.toy.demo import output_files, run_demo

    metrics = run_demo(args.out, model=args.model, overwrite=args.overwrite)
    print(json.dumps(metrics, indent=2))
    tell_written(args.out, output_files())


def tell_written(folder, names) -> None:
    """Where the results went, for the person at the terminal (stdout stays the JSON report)."""
    print(f"vp2p: wrote {', '.join(names)} to {folder}/ (and the tuned weights and inversion to {folder}/cache/)",
          file=sys.stderr)


def settings_changes(args) -> dict:
    """The settings the flags change (those given)."""
    changes = dict(tune_steps=args.tune_steps, method=args.method, num_steps=args.steps, guidance_scale=args.guidance,
                   cross_replace_steps=args.cross_replace, self_replace_steps=args.self_replace,
                   threshold=args.threshold)
    return {name: value for name, value in changes.items() if value is not None}


def controller_options(args) -> dict:
    options = {"is_word_swap": not args.refine}
    if args.blend:
        options["blend_words"] = args.blend
    if args.reweight:
        options["eq_params"] = dict(args.reweight)
    return options


def check_edit(args) -> None:
    """What can be checked before loading anything: the numbers, the prompts, on the toy model its words, and
    every output path (none may be the input; existing results only with --overwrite)."""
    from vp2p import checks
    from vp2p.io.video import video_targets

    for name, value in settings_changes(args).items():
        checks.check_setting(name, value)
    checks.check_prompt(args.source, "source prompt")
    checks.check_prompt(args.target, "target prompt")
    if args.model == "toy":
        from vp2p.toy.settings import check_toy_words

        check_toy_words({"source prompt": args.source, "target prompt": args.target})
    names = [path.name for paths in video_targets(args.out, EDIT_VIDEOS).values() for path in paths]
    checks.check_outputs(args.out, names, inputs=[args.video], overwrite=args.overwrite)


def cmd_edit(args):
    check_edit(args)
    from vp2p.io.video import read_video, write_videos

    size = args.size if args.size is not None else 64 if args.model == "toy" else 512
    frames = read_video(args.video, num_frames=args.frames, start=args.start, stride=args.stride, size=size)
    pipe = load_model(args)
    from vp2p.workflow import settings_for, video_p2p

    settings = settings_for(pipe).replace(**settings_changes(args))
    # video_p2p checks the words of the edit (blend, reweight, word swap) before tuning
    run = video_p2p(pipe, frames, args.source, args.target, settings, work_dir=f"{args.out}/cache",
                    **controller_options(args))
    videos = dict(zip(EDIT_VIDEOS, (frames, run.inversion.reconstruction, run.edits[-1].edited)))
    written = write_videos(args.out, videos, overwrite=args.overwrite)
    print(json.dumps({**edit_quality(pipe, run), "written": {k: [str(p) for p in v] for k, v in written.items()},
                      "seconds": run.seconds}, indent=2))
    tell_written(args.out, [p.name for paths in written.values() for p in paths])


def edit_quality(pipe, run) -> dict:
    """What a run's numbers say: the reconstruction's PSNR (how well the inversion holds the clip), on the toy
    model what its evaluator reads in the source and the edit, and the warning of a clip the toy cannot draw."""
    from vp2p.io.loading import is_toy

    import numpy as np

    quality = {"reconstruction_psnr": round(float(np.mean(run.inversion.frame_psnr)), 2)}
    if is_toy(pipe):
        from vp2p.toy.evaluator import reading_text

        quality["toy_evaluator_reads"] = {"source": reading_text(run.inversion.frames),
                                          "edit": reading_text(run.edits[-1].edited)}
    if run.inversion.warning:
        quality["warning"] = run.inversion.warning
    return quality


def load_model(args):
    """``load_pipeline(args.model)``, without the hub's retry messages (its final error says it all) and without
    a deprecation warning diffusers triggers in huggingface_hub (nothing a user can act on)."""
    import warnings

    from vp2p.io.loading import load_pipeline

    if not args.debug:
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()
        warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks", category=UserWarning)
    return load_pipeline(args.model)


def cmd_bench(args):
    from vp2p.toy.bench import run_bench

    result = run_bench(args.out, model=args.model, t2i_count=args.t2i, attention_count=args.attention,
                       videos=args.videos, overwrite=args.overwrite)
    print(json.dumps({k: v for k, v in result.items() if k != "videos"}, indent=2))


def cmd_paper(args):
    """The paper's two tables on held-out toy clips (``vp2p.paper.run_paper``): tables.json, tables.md, figures."""
    from vp2p import paper

    changes = dict(num_steps=args.steps, tune_steps=args.tune_steps, inner_steps=args.inner_steps)
    settings = paper.default_settings(args.model).replace(**{k: v for k, v in changes.items() if v is not None})
    rows = paper.rows_named(args.rows) if args.rows else paper.TABLE1_ROWS
    tables = paper.run_paper(args.out, model=args.model, videos=args.videos, rows=rows, settings=settings,
                             frames=args.frames, edits_per_video=args.edits_per_video, clip=args.clip,
                             lpips=args.lpips, cache=args.cache, overwrite=args.overwrite)
    print(f"## The paper's claims\n\n{paper.bars_markdown(tables['bars'])}\n")
    print(json.dumps({"written": [f"{args.out}/{name}" for name in paper.OUTPUTS],
                      "minutes": round(tables["seconds"] / 60, 1)}, indent=2))


def cmd_train(args):
    from vp2p.toy.train import main as train_main

    train_main(args.rest, prog="vp2p train-toy")


def cmd_course(args):
    if args.student:
        cmd_course_student(args)
    if args.build:
        from vp2p.course.build import build

        build(args.notebooks, figures=args.figures, dpi=args.dpi)
    elif not args.student:
        raise ValueError("say what to do with the course: --build (run the notebooks in place) or --student DIR "
                         "(write the student notebooks); see vp2p course -h")


def cmd_course_student(args):
    """Write the student versions of the notebooks (``vp2p.course.exercises.export_student``)."""
    from vp2p.course.exercises import export_student

    written = export_student(args.student, overwrite=args.overwrite)
    print(json.dumps({"student": [str(p) for p in written]}, indent=2))


def reweight_pair(text: str) -> tuple[str, float]:
    """argparse type of --reweight: WORD=NUMBER."""
    from vp2p.checks import parse_weight

    try:
        return parse_weight(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def count(text: str) -> int:
    """argparse type of a count of things to measure (captions, frames, videos): a whole number, at least 1 — refused
    when parsed, not as a traceback after a minute of loading and measuring."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; give a count of at least 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a count to measure; give at least 1")
    return value


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors printed as one line like every other error of the command."""

    def error(self, message):
        self.exit(2, f"vp2p: error: {message} (see {self.prog} -h)\n")


def add_edit_arguments(edit):
    edit.add_argument("video", help="the clip to edit: a folder of frames (natural order), a video file (.mp4, .mov, "
                                    ".webm, .avi, .mkv, .m4v) or a .gif; it is only read")
    edit.add_argument("--source", required=True, help="a prompt describing the video (required)")
    edit.add_argument("--target", required=True, help="the edited prompt (required)")
    edit.add_argument("--out", required=True,
                      help="folder for the results (required): source, reconstruction and edit as .gif and .mp4, "
                           "and cache/ with the tuned weights and the inversion, which the next edit of the same "
                           "clip reuses; it cannot be the folder of the input frames")
    edit.add_argument("--model", default="toy",
                      help="'toy' (the bundled model of coloured shapes, 64x64, on a CPU), a local diffusers Stable "
                           "Diffusion folder, or a hub id such as stable-diffusion-v1-5/stable-diffusion-v1-5 "
                           "(default: toy)")
    edit.add_argument("--frames", type=int, default=8, help="number of frames to read and edit (default: 8)")
    edit.add_argument("--start", type=int, default=0, help="index of the first frame read (default: 0)")
    edit.add_argument("--stride", type=int, default=1,
                      help="read every STRIDE-th frame from --start on (default: 1, consecutive frames)")
    edit.add_argument("--size", type=int, default=None,
                      help="frames are centre-cropped to a square and resized to SIZE x SIZE, a multiple of 8 "
                           "(default: 64 on the toy model, 512 otherwise)")
    edit.add_argument("--tune-steps", type=int,
                      help="fine-tuning steps on the clip; 0 skips tuning (default: 50 on the toy model, 500 "
                           "otherwise, as the paper)")
    edit.add_argument("--method", choices=INVERSION_METHODS,
                      help="inversion: null-text (one unconditional embedding per step, shared by all frames), "
                           "null-text-per-frame, negative-prompt, fast (no optimisation) or ddim (default: "
                           "null-text)")
    edit.add_argument("--steps", type=int,
                      help="DDIM steps of the inversion and the edit (default: 25 on the toy model, 50 otherwise)")
    edit.add_argument("--guidance", type=float, help="classifier-free guidance scale, 1 or more (default: 7.5)")
    edit.add_argument("--cross-replace", type=float,
                      help="fraction of the steps in which the target takes the source's cross-attention maps "
                           "(default: 0.2)")
    edit.add_argument("--self-replace", type=float,
                      help="fraction of the steps in which the target takes the source's temporal-attention maps "
                           "(default: 0.5)")
    edit.add_argument("--threshold", type=float,
                      help="LocalBlend: share of each frame's maximum attention above which a pixel is edited, "
                           "between 0 and 1 (default: 0.3)")
    edit.add_argument("--refine", action="store_true",
                      help="Refine (the target adds words to the source) instead of Replace (a word swap between "
                           "prompts of as many words) (default: Replace)")
    edit.add_argument("--blend", nargs=2, metavar=("SOURCE_WORD", "TARGET_WORD"),
                      help="LocalBlend: change only where these words are, keep the rest of the frame (default: "
                           "none, the whole frame may change)")
    edit.add_argument("--reweight", nargs="+", metavar="WORD=NUMBER", type=reweight_pair,
                      help="scale the attention of words of the target, e.g. striped=2 (default: none)")
    edit.add_argument("--overwrite", action="store_true",
                      help="replace results already in --out (default: refuse); the input is never written over")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="vp2p", description="Video-P2P: text-driven video editing, explained.")
    parser.add_argument("--debug", action="store_true", help="on an error, show the traceback (default: one line)")
    parser.add_argument("--version", action="version", version=f"vp2p {version()}",
                        help="print vp2p's version and exit (default: off)")
    # --debug is accepted after the command too; SUPPRESS: a subcommand's default must not reset the main one
    debug = Parser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="on an error, show the traceback (default: one line)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    demo = sub.add_parser("demo", parents=[debug], help="run the whole pipeline on a toy video")
    demo.add_argument("--out", default="demo",
                      help="folder for the source, reconstruction and edit (.gif, .mp4), attention.png, "
                           "metrics.json and cache/ (default: demo)")
    demo.add_argument("--model", default="toy",
                      help="a model of the toy world: 'toy' or a retrained toy model's folder (default: toy)")
    demo.add_argument("--overwrite", action="store_true",
                      help="replace the results of an earlier demo in --out (default: refuse)")
    demo.set_defaults(func=cmd_demo)

    edit = sub.add_parser("edit", parents=[debug], help="edit a video (folder of frames, mp4 or gif)")
    add_edit_arguments(edit)
    edit.set_defaults(func=cmd_edit)

    bench = sub.add_parser("toy-bench", parents=[debug], help="measure the toy model against its bars")
    bench.add_argument("--out", required=True, help="folder for toy_bench.json (required)")
    bench.add_argument("--model", default="toy",
                       help="the model of the toy world to measure: 'toy' or a retrained toy model's folder "
                            "(default: toy)")
    bench.add_argument("--t2i", type=count, default=200, help="captions for the text-to-image accuracies (default: 200)")
    bench.add_argument("--attention", type=count, default=50, help="frames for attention_in_mask (default: 50)")
    bench.add_argument("--videos", type=count, default=20,
                       help="held-out videos through the full pipeline (default: 20)")
    bench.add_argument("--overwrite", action="store_true", help="replace an earlier toy_bench.json (default: refuse)")
    bench.set_defaults(func=cmd_bench)

    paper = sub.add_parser("paper", parents=[debug],
                           help="the paper's Table 1 (every method and ablation) and Table 2 on held-out toy clips")
    paper.add_argument("--out", required=True,
                       help="folder for tables.json, tables.md, edits.png and metrics.png (required), and cache/ with "
                            "the tuned weights, inversions and scores that a second run reuses")
    paper.add_argument("--model", default="toy", help="the model: 'toy', a local folder or a hub id (default: toy)")
    paper.add_argument("--videos", type=count, default=20, help="held-out toy clips (default: 20)")
    paper.add_argument("--frames", type=count, default=8, help="frames per clip (default: 8)")
    paper.add_argument("--edits-per-video", type=int, default=1, choices=(1, 2, 3),
                       help="edits of each clip, rotating through color swap, shape swap and refinement (default: 1)")
    paper.add_argument("--rows", nargs="+", metavar="ROW",
                       help="the rows to run, e.g. 'Video-P2P' 'w/o DG', or 'all' (default: Table 1's six; the others are "
                            "listed in vp2p.paper.ROWS)")
    paper.add_argument("--steps", type=int, help="DDIM steps (default: 25 on the toy model, 50 otherwise)")
    paper.add_argument("--tune-steps", type=int, help="tuning steps (default: 50 on the toy model, 500 otherwise)")
    paper.add_argument("--inner-steps", type=int,
                       help="null-text Adam steps per DDIM step at most (default: 2 on the toy model, 10 otherwise)")
    paper.add_argument("--clip", metavar="PATH_OR_HUB_ID",
                       help="CLIP weights for the paper's CLIP score, OSV and Temp (default: none: skipped, and "
                            "said so)")
    paper.add_argument("--lpips", nargs="+", metavar="FILE",
                       help="LPIPS weights: alex.pth and torchvision's alexnet-owt-7be5be79.pth, or one file holding "
                            "both (default: none, LPIPS skipped and said so)")
    paper.add_argument("--cache", help="folder for the cache (default: OUT/cache)")
    paper.add_argument("--overwrite", action="store_true",
                       help="replace the tables and figures of an earlier run in --out (default: refuse)")
    paper.set_defaults(func=cmd_paper)

    train = sub.add_parser("train-toy", help="retrain the toy model (its options: vp2p train-toy -h)")
    train.add_argument("rest", nargs=argparse.REMAINDER,
                       help="the options of python -m vp2p.toy.train, passed on as they are (default: its defaults)")
    train.set_defaults(func=cmd_train)

    course = sub.add_parser("course", parents=[debug], help="the course notebooks")
    course.add_argument("--build", action="store_true",
                        help="run the notebooks in place, top to bottom on the toy model: outputs saved into each "
                             ".ipynb, figures written to the checkout's figures/ (a few minutes a notebook on a CPU) "
                             "(default: off)")
    course.add_argument("--notebooks", nargs="+", metavar="IPYNB",
                        help="--build: the notebooks to run, in order (default: the checkout's notebooks/NN_*.ipynb)")
    course.add_argument("--figures", metavar="DIR",
                        help="--build: where the notebooks save their figures (default: the checkout's figures/)")
    course.add_argument("--dpi", type=int, default=60,
                        help="--build: resolution of the figures shown inside the notebooks (default: 60)")
    course.add_argument("--student", metavar="DIR",
                        help="write the student notebooks into DIR: each exercise's solution replaced by a one-line "
                             "hint, outputs cleared (.ipynb, and the .py twin when jupytext is installed); the "
                             "checkout's notebooks are only read (default: none)")
    course.add_argument("--overwrite", action="store_true",
                        help="--student: write into a DIR that is not empty (default: refuse)")
    course.set_defaults(func=cmd_course)
    return parser


def show_warning(message, category, filename, lineno, file=None, line=None):
    """vp2p's own warnings (a clip the toy model cannot represent, frames of another size than it was trained on)
    as one line each, as the errors; other libraries' warnings as Python prints them."""
    if "/vp2p/" in str(filename).replace("\\", "/"):
        print(f"vp2p: warning: {' '.join(str(message).split())}", file=sys.stderr)
    else:
        print(warnings.formatwarning(message, category, filename, lineno, line), end="", file=sys.stderr)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["train-toy"]:  # its options are vp2p.toy.train's own: passed on as they are
            args = argparse.Namespace(command="train-toy", rest=argv[1:], func=cmd_train, debug=False)
        else:
            args = build_parser().parse_args(argv)
    except SystemExit as stop:  # -h (0) or a usage error (2, already printed as one line by Parser.error)
        return stop.code
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            args.func(args)
    except KeyboardInterrupt:
        print("vp2p: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        print(f"vp2p: error: {one_line(error)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
