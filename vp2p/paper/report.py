"""The paper's claims checked from a finished ``tables.json``, and the tables and figures that show them."""

from __future__ import annotations

from collections import Counter

import numpy as np

from vp2p.toy import world
from vp2p.paper.rows import CLIP_COLUMNS, PAPER_COLUMNS, PAPER_TABLE1, TOY_COLUMNS, Column, EditCase


# ---------------------------------------------------------------- the paper's claims, checked

SAME_DB = 1.0  # "shared ≈ per frame": reconstructions within this many dB
FAR_BELOW_DB = 3.0  # "DDIM far below": at least this many dB under both null-text inversions (paper: 7.3)


def _bar(claim: str, holds: bool | None, detail: str) -> dict:
    return {"claim": claim, "holds": holds, "detail": detail}


def _missing(claim: str, table: dict, names, key: str | None = None) -> dict | None:
    """A 'not measured' verdict when a row (or its ``key``) is absent from the table, else None."""
    absent = [n for n in names if n not in table or (key and table[n].get(key) is None)]
    if not absent:
        return None
    if key and len(absent) == len(names):
        return _bar(claim, None, f"no {key} numbers in this run")
    return _bar(claim, None, f"no {key or 'row'} for {', '.join(absent)} in this run")


def bar_background(table1: dict) -> dict:
    claim = "Video-P2P preserves the background better than w/o DG and TAV+DDIM"
    names = ("Video-P2P", "w/o DG", "TAV+DDIM")
    missing = _missing(claim, table1, names, "background_psnr")
    if missing:
        return missing
    ours, *others = (table1[n]["background_psnr"] for n in names)
    detail = ", ".join(f"{n} {table1[n]['background_psnr']:.2f} dB" for n in names) + " (background PSNR)"
    return _bar(claim, all(ours > o for o in others), detail)


def bar_shared_vs_per_frame(table2: dict, frames: int) -> dict:
    claim = (f"shared ≈ per-frame null-text in reconstruction (within {SAME_DB:g} dB), with {frames}× fewer "
             "parameters")
    shared, per_frame = "null-text, shared (Video-P2P)", "null-text, per frame"
    missing = _missing(claim, table2, (shared, per_frame), "psnr")
    if missing:
        return missing
    gap = table2[shared]["psnr"] - table2[per_frame]["psnr"]
    counts = table2[shared]["parameters"], table2[per_frame]["parameters"]
    detail = (f"shared {table2[shared]['psnr']:.2f} dB, per frame {table2[per_frame]['psnr']:.2f} dB "
              f"({abs(gap):.2f} dB apart); {counts[0]:,} vs {counts[1]:,} numbers ({counts[1] / counts[0]:.1f}×)")
    return _bar(claim, abs(gap) <= SAME_DB and counts[1] == frames * counts[0], detail)


def bar_ddim_far_below(table2: dict) -> dict:
    claim = f"DDIM alone reconstructs far below both null-text inversions (≥ {FAR_BELOW_DB:g} dB)"
    names = ("DDIM", "null-text, shared (Video-P2P)", "null-text, per frame")
    missing = _missing(claim, table2, names, "psnr")
    if missing:
        return missing
    ddim, *others = (table2[n]["psnr"] for n in names)
    detail = f"DDIM {ddim:.2f} dB, {min(others) - ddim:.2f} dB under the worse null-text inversion"
    return _bar(claim, min(others) - ddim >= FAR_BELOW_DB, detail)


def bar_image_p2p_worst(table1: dict, column: Column) -> dict:
    """Image-P2P strictly worst of the paper's rows on ``column`` (a tie is not 'worst')."""
    claim = f"Image-P2P is the worst Table 1 method on {column.label}"
    missing = _missing(claim, table1, list(PAPER_TABLE1), column.key)
    if missing:
        return missing
    sign = 1 if column.higher_is_better else -1  # sign · value: higher is better
    value = table1["Image-P2P"][column.key]
    others = {n: table1[n][column.key] for n in PAPER_TABLE1 if n != "Image-P2P"}
    next_worst = min(others, key=lambda n: sign * others[n])
    detail = (f"Image-P2P {column.fmt.format(value)}; the worst of the others: {next_worst} "
              f"{column.fmt.format(others[next_worst])}")
    return _bar(claim, sign * value < sign * others[next_worst], detail)


def check_bars(tables: dict) -> list[dict]:
    """Verdicts on the paper's claims from a ``tables.json`` dict: each {"claim", "holds" (True, False, or None
    when not measured), "detail" (the numbers behind it)}."""
    table1, table2 = tables["table1"], tables["table2"]
    temporal = [c for c in TOY_COLUMNS + CLIP_COLUMNS if c.paper in ("temp", "osv")]
    return ([bar_background(table1), bar_shared_vs_per_frame(table2, tables["frames"]), bar_ddim_far_below(table2)]
            + [bar_image_p2p_worst(table1, c) for c in temporal])


def ordering(tables: dict, column: Column) -> dict | None:
    """How the run orders the paper's six methods on ``column`` compared with the paper's own metric: the pairs of
    methods ordered the same way, the pairs tied here, and the best method of each. None if not measured."""
    from itertools import combinations

    paper_sign = 1 if next(c for c in PAPER_COLUMNS if c.key == column.paper).higher_is_better else -1
    sign = 1 if column.higher_is_better else -1
    # .get: a run written before a column existed (e.g. appearance flicker) has no number for it
    ours = {n: tables["table1"][n].get(column.key) for n in PAPER_TABLE1 if n in tables["table1"]}
    if len(ours) < len(PAPER_TABLE1) or None in ours.values():
        return None
    theirs = {n: PAPER_TABLE1[n][column.paper] for n in ours}
    agree = ties = 0
    for a, b in combinations(ours, 2):
        if ours[a] == ours[b]:
            ties += 1
        else:
            agree += (paper_sign * (theirs[a] - theirs[b]) > 0) == (sign * (ours[a] - ours[b]) > 0)
    return {"column": column.label, "paper_metric": column.paper, "agree": agree,
            "pairs": len(ours) * (len(ours) - 1) // 2, "ties": ties,
            "best_in_paper": max(theirs, key=lambda n: paper_sign * theirs[n]),
            "best_here": max(ours, key=lambda n: sign * ours[n])}


def orderings(tables: dict) -> list[dict]:
    """``ordering`` for every measured column that stands for one of the paper's metrics."""
    found = [ordering(tables, c) for c in TOY_COLUMNS + CLIP_COLUMNS if c.paper]
    return [o for o in found if o is not None]


# ---------------------------------------------------------------- markdown


def _cell(value, fmt: str) -> str:
    return "—" if value is None else fmt.format(value)


def _millions(count) -> str:
    return "—" if count is None else "0" if count == 0 else f"{count / 1e6:.2f} M" if count >= 1e5 else f"{count:,}"


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"


def verdict_word(holds: bool | None) -> str:
    return {True: "holds", False: "does not hold", None: "not measured"}[holds]


def table1_markdown(tables: dict, clip_table: bool = True) -> str:
    """Table 1: the paper's metrics, ours beside them ("—" where their weights were not given, and why); then
    each paper metric beside its toy counterpart. ``clip_table=False``: the toy counterparts only (a notebook that
    shows several runs without CLIP weights prints the table of "—" once, not once per run)."""
    paper_label = {c.key: c for c in PAPER_COLUMNS}
    # The paper's column goes before its first counterpart only (OSV has two: attribute agreement and flicker).
    first_of_paper = {}
    for column in TOY_COLUMNS:
        if column.paper:
            first_of_paper.setdefault(column.paper, column.key)
    beside = set(first_of_paper.values())
    toy_header, cells = ["method"], []
    for column in TOY_COLUMNS:
        if column.key in beside:
            toy_header.append(f"paper {paper_label[column.paper].label}")
        toy_header.append(f"{column.label} {'↑' if column.higher_is_better else '↓'}")
    for name, entry in tables["table1"].items():
        row = [name]
        for column in TOY_COLUMNS:
            if column.key in beside:
                row.append(_cell((entry["paper"] or {}).get(column.paper), paper_label[column.paper].fmt))
            row.append(_cell(entry.get(column.key), column.fmt))
        cells.append(row)
    header = ["method"] + [f"{side} {c.label} {'↑' if c.higher_is_better else '↓'}" for c in CLIP_COLUMNS
                           for side in ("paper", "ours")]
    paper_cells = [[name] + [v for c in CLIP_COLUMNS
                             for v in (_cell((e["paper"] or {}).get(c.paper), c.fmt), _cell(e[c.key], c.fmt))]
                   for name, e in tables["table1"].items()]
    lines = [_markdown_table(header, paper_cells), "", "Their toy counterparts, beside the paper's numbers:", "",
             _markdown_table(toy_header, cells)]
    if not clip_table:
        return _markdown_table(toy_header, cells)
    status = tables["metrics"]
    skipped = [f"*{status[name]['reason']}.*" for name in ("clip", "lpips") if not status[name]["computed"]]
    return "\n".join(lines[:1] + [line for note in skipped for line in ("", note)] + lines[1:])


def table2_markdown(tables: dict) -> str:
    header = ["inversion", "paper PSNR (dB)", "PSNR (dB)", "paper parameters", "parameters optimised"]
    cells = [[name, _cell((e["paper"] or {}).get("psnr"), "{:.2f}"), _cell(e["psnr"], "{:.2f}"),
              _millions((e["paper"] or {}).get("parameters")), _millions(e["parameters"])]
             for name, e in tables["table2"].items()]
    return _markdown_table(header, cells)


def bars_markdown(bars: list[dict]) -> str:
    return "\n".join(f"- **{verdict_word(b['holds'])}** — {b['claim']}: {b['detail']}." for b in bars)


def orderings_markdown(found: list[dict]) -> str:
    paper_label = {c.key: c.label for c in PAPER_COLUMNS}
    lines = []
    for o in found:
        tied = f", {o['ties']} tied" if o["ties"] else ""
        lines.append(f"- {o['column']} (for the paper's {paper_label[o['paper_metric']]}): {o['agree']} of "
                     f"{o['pairs']} pairs of methods ordered as in the paper{tied}; best in the paper "
                     f"{o['best_in_paper']}, here {o['best_here']}.")
    return "\n".join(lines)


def _markdown_table(header: list[str], cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def markdown(tables: dict) -> str:
    """``tables.md``: how the run was made, both tables with the paper's numbers beside ours, and the verdicts."""
    s = tables["settings"]
    kinds = Counter(e["kind"] for clip in tables["clips"] for e in clip["edits"])
    return "\n\n".join([
        "# Video-P2P's tables on the toy world",
        f"{_count(tables['videos'], 'held-out toy clip')} ({tables['frames']} frames, {tables['size']}×"
        f"{tables['size']}), {_count(sum(kinds.values()), 'edit')} ({', '.join(f'{n} {k}' for k, n in kinds.items())})"
        f"; model `{tables['model']}`, {s['num_steps']} DDIM steps, {_count(s['tune_steps'], 'tuning step')}, "
        f"guidance {s['guidance_scale']:g}; "
        f"{tables['machine']}; {tables['seconds'] / 60:.1f} min. The paper: 45 DAVIS clips, its numbers as printed.",
        "## Table 1 — editing", table1_markdown(tables),
        "Counterparts (`vp2p.paper.metrics`): target hit (every field the evaluator reads matches the target scene) for "
        "CLIP score; background PSNR outside the source and edited objects for masked PSNR; attribute agreement "
        "(share of frames whose color and shape agree with the clip's majority; higher is better, unlike OSV) for "
        "OSV; object temporal (IoU of the object's shape from frame to frame) for Temp. Drift and size error: how "
        "far the edited object lies from the target scene as the world renders it (same path, radius and look; a shape "
        "swap changes the outline) and how its area differs (`evaluator.object_geometry`).",
        "## Table 2 — reconstruction", table2_markdown(tables),
        "## The paper's claims", bars_markdown(tables["bars"]),
        "## Orderings: the paper's six methods, pair by pair", orderings_markdown(orderings(tables)),
    ]) + "\n"


# ---------------------------------------------------------------- figures


def edits_figure(video: world.ToyVideo, case: EditCase, edited: dict[str, np.ndarray]):
    """One edit of one clip across all rows (``edited``: row name → video), the input on top."""
    from vp2p.inspect import viz

    return viz.video_strip({"input": video.frames, **edited},
                           title=f"{video.caption} → {case.target.caption}")


def metrics_figure(tables: dict):
    """One bar chart per measured column, a bar per row: the paper's rows in blue, the extra rows in grey."""
    import matplotlib.pyplot as plt

    columns = [c for c in TOY_COLUMNS + CLIP_COLUMNS
               if any(e.get(c.key) is not None for e in tables["table1"].values())]
    names = list(tables["table1"])
    fig, axes = plt.subplots(1, len(columns), figsize=(2.6 * len(columns), 0.28 * len(names) + 1.2),
                             squeeze=False, sharey=True)
    positions = np.arange(len(names))
    colors = ["tab:blue" if n in PAPER_TABLE1 else "tab:gray" for n in names]
    for ax, column in zip(axes[0], columns):
        values = [tables["table1"][n][column.key] for n in names]
        ax.barh(positions, [np.nan if v is None else v for v in values], color=colors)
        ax.set_title(f"{column.label} {'↑' if column.higher_is_better else '↓'}", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(alpha=0.3, axis="x")
    axes[0, 0].set_yticks(positions, names, fontsize=8)
    axes[0, 0].invert_yaxis()
    fig.tight_layout()
    return fig


