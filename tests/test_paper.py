"""The paper's tables (vp2p.paper): every row runs, the stages are shared as they should be, the command writes its
files, and the claims are judged from the numbers.

Rows run on the tiny model (32×32, 2 frames, 3 DDIM steps, 2 tuning steps): the edits mean nothing, but every path
— tuning, each inversion, decoupled or not, with and without attention control, the image model — runs end to end
and every toy metric comes out as a number. The command runs once on the bundled toy model with the same reductions.
"""

from __future__ import annotations

import copy
import json
import math

import pytest

from test_metrics import clip_dir  # noqa: F401 (the tiny seeded CLIP, a fixture)
from vp2p.paper import metrics
from vp2p import paper, workflow
from vp2p.toy import world

TINY = workflow.Settings(tune_steps=2, tune_lr=1e-4, num_steps=3, inner_steps=2)
TOY_COLUMNS = ("target_hit", "background_psnr", "attribute_agreement", "object_temporal")


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir, tmp_path_factory):
    """Shared by the row tests: one clip, its edit cases and the stages (tuned weights and inversions cached)."""
    stages = paper.Stages(str(tiny_model_dir), TINY, tmp_path_factory.mktemp("paper_cache"), device="cpu",
                          progress=False)
    video = paper.held_out_video(0, num_frames=2, size=32)
    return stages, video, paper.edit_cases(video.scene, 0)


# ---------------------------------------------------------------- rows as data


def test_every_paper_row_is_a_row_and_video_p2p_is_metrics_row():
    names = [row.name for row in paper.ROWS]
    assert set(paper.PAPER_TABLE1) <= set(names) and len(set(names)) == len(names)
    assert paper.PAPER_TABLE1["Video-P2P"] == metrics.PAPER_TABLE1
    row = {r.name: r for r in paper.ROWS}
    assert row["w/o MI"].model.tuned is False and row["w/o DG"].decoupled is False
    assert row["w/o SU"].inversion == "null-text-per-frame"
    assert row["TAV+DDIM"].inversion == "ddim" and not row["TAV+DDIM"].attention_control
    assert row["Image-P2P"].model.kind == "image" and row["Image-P2P"].inversion == "null-text-per-frame"
    assert len({r.model.slug for r in paper.ROWS}) == 5  # Video-P2P's, untuned, image, first+previous, frame GN


def test_rows_and_models_reject_what_they_cannot_run():
    with pytest.raises(ValueError, match="unknown rows.*'Video-P2P'"):
        paper.rows_named(["Video-P2P", "Ours"])
    with pytest.raises(ValueError, match="inversion='dim'.*null-text"):
        paper.Row("typo", inversion="dim")
    with pytest.raises(ValueError, match="image model is not tuned"):
        paper.Model(kind="image")


def test_work_per_clip_counts_what_the_rows_share():
    assert paper.work_per_clip(paper.ROWS, edits_per_video=3) == {"tunings": 3, "inversions": 9, "null_text": 6,
                                                                   "edits": 33}
    # the default run: Table 1's rows share one tuning; Table 2 adds nothing they do not invert already
    assert paper.work_per_clip(paper.TABLE1_ROWS) == {"tunings": 1, "inversions": 5, "null_text": 4, "edits": 6}


def test_default_rows_are_table_1_and_table_2_follows_the_rows():
    assert [r.name for r in paper.TABLE1_ROWS] == list(paper.PAPER_TABLE1)
    assert paper.rows_named(["all"]) == paper.ROWS
    paper_three = ["DDIM", "null-text, per frame", "null-text, shared (Video-P2P)"]
    assert list(paper.table2_methods(paper.TABLE1_ROWS)) == paper_three
    assert list(paper.table2_methods(paper.ROWS)) == paper_three + ["fast", "negative prompt"]  # rows' order
    # only Video-P2P's model's inversions join Table 2: the image model's per-frame one is Image-P2P's own
    assert list(paper.table2_methods(paper.rows_named(["Image-P2P", "fast inversion"]))) == paper_three + ["fast"]


def test_controller_options_follow_the_row():
    video = paper.held_out_video(0, num_frames=1, size=32)
    refine = next(c for i in range(3) for c in paper.edit_cases(video.scene, i) if c.kind == "refine")
    rows = {r.name: r for r in paper.ROWS}
    assert paper.controller_options(rows["Video-P2P"], refine) == refine.options
    assert "blend_words" not in paper.controller_options(rows["no local blend"], refine)
    tav = paper.controller_options(rows["TAV+DDIM"], refine)
    assert "blend_words" not in tav and tav["cross_replace_steps"] == 0 and tav["self_replace_steps"] == 0


def test_edit_cases_rotate_through_the_kinds():
    scene = paper.held_out_video(0, num_frames=1, size=32).scene
    assert [paper.edit_cases(scene, i)[0].kind for i in range(4)] == ["color", "shape", "refine", "color"]
    cases = paper.edit_cases(scene, 0, per_video=3)
    assert [c.kind for c in cases] == ["color", "shape", "refine"]
    assert cases[0].target.color != scene.color and cases[1].target.shape != scene.shape
    assert cases[2].target.attribute in world.ATTRIBUTES
    with pytest.raises(ValueError, match="edits per video = 4"):
        paper.edit_cases(scene, 0, per_video=4)


# ---------------------------------------------------------------- every Table 1 row, end to end


@pytest.mark.parametrize("name", list(paper.PAPER_TABLE1))
def test_each_table1_row_edits_and_scores(tiny_run, name):
    stages, video, cases = tiny_run
    row = paper.rows_named([name])[0]
    edits, videos = paper.row_scores(stages, row, 0, video, cases, paper.Scorers())
    assert [e["kind"] for e in edits] == [c.kind for c in cases]
    assert videos[cases[0].kind].shape == video.frames.shape
    for key in TOY_COLUMNS:
        assert math.isfinite(edits[0][key]), key
    assert "clip_score" not in edits[0]  # no CLIP weights: not computed, not faked


def test_table1_rows_differ_as_the_method_says(tiny_run):
    """Each ablation removes one part of the method, so each edits the clip differently from Video-P2P (and from
    every other row); the rows differing only at editing time (w/o DG: the targets' null embeddings) share the
    inversion, so their source branches start from the same z_T.

    Compared on the edits' final latents, both branches: on this tiny random model (3 steps) some rows differ by
    less than one pixel level after decoding (w/o SU and TAV+DDIM beside Video-P2P: one level, enough to fail on
    another machine's rounding); their latents differ by 0.019 or more (measured)."""
    stages, video, cases = tiny_run
    latents = {}
    for name in paper.PAPER_TABLE1:
        row = paper.rows_named([name])[0]
        pipe, inversion = stages.inversion(row.model, row.inversion, 0, video)
        result = paper.run.edit_as(row, stages, pipe, inversion, [video.caption, cases[0].target.caption], cases[0])
        latents[name] = result.latents  # both branches: w/o SU changes the source branch first
    names = list(latents)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            diff = (latents[a] - latents[b]).abs().max().item()
            assert diff > 1e-3, (a, b, diff)
    rows = {r.name: r for r in paper.rows_named(["Video-P2P", "w/o DG"])}
    _, ours = stages.inversion(rows["Video-P2P"].model, rows["Video-P2P"].inversion, 0, video)
    _, without_dg = stages.inversion(rows["w/o DG"].model, rows["w/o DG"].inversion, 0, video)
    assert ours.key == without_dg.key


# ---------------------------------------------------------------- sharing and caching


def without_seconds(table1: dict) -> dict:
    return {name: {k: v for k, v in entry.items() if k != "seconds"} for name, entry in table1.items()}


def test_rows_share_tuning_and_inversions_and_a_second_run_recomputes_nothing(tiny_model_dir, tmp_path,
                                                                               monkeypatch):
    from vp2p import inversion

    calls = {"tune": 0, "invert": 0, "edit": 0}

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(workflow, "tune", counted("tune", workflow.tune))
    monkeypatch.setattr(inversion, "ddim_invert", counted("invert", inversion.ddim_invert))
    monkeypatch.setattr(paper.run, "edit_as", counted("edit", paper.run.edit_as))  # where run_row looks it up
    rows = paper.rows_named(["Video-P2P", "w/o MI", "w/o DG", "w/o SU", "TAV+DDIM"])
    run = dict(model=str(tiny_model_dir), videos=2, rows=rows, settings=TINY, frames=2, progress=False)
    tables = paper.run_paper(tmp_path / "out", **run)
    # per clip: one tuning (the tuned video model; w/o MI is untuned); Table 2's three inversions of the tuned model
    # serve Video-P2P and w/o DG (shared), w/o SU (per frame) and TAV+DDIM (ddim); plus w/o MI's own
    assert calls == {"tune": 2, "invert": 8, "edit": 10}
    work = paper.work_per_clip(rows)
    assert (work["tunings"], work["inversions"], work["edits"]) == (1, 4, 5)
    assert tables["work"]["computed"]["tune"] == 2 and tables["work"]["computed"]["edit"] == 10
    assert [c["edits"][0]["kind"] for c in tables["clips"]] == ["color", "shape"]
    with pytest.raises(FileExistsError, match="overwrite"):
        paper.run_paper(tmp_path / "out", **run)
    again = paper.run_paper(tmp_path / "out", overwrite=True, **run)
    assert calls == {"tune": 2, "invert": 8, "edit": 10}  # tuned weights, inversions and scores from the cache
    assert again["work"]["computed"] == {}
    assert without_seconds(again["table1"]) == without_seconds(tables["table1"])
    assert (tmp_path / "out" / "cache" / ".gitignore").read_text() == "*\n"


# ---------------------------------------------------------------- the command


def test_paper_command_on_the_toy_model_writes_tables_and_figures(tmp_path, capsys):
    from vp2p.cli import main

    out = tmp_path / "paper"
    assert main(["paper", "--out", str(out), "--videos", "1", "--frames", "2", "--steps", "2", "--tune-steps", "1",
                 "--inner-steps", "1"]) == 0
    for name in paper.OUTPUTS:
        assert (out / name).stat().st_size > 0, name
    tables = json.loads((out / "tables.json").read_text())
    assert list(tables["table1"]) == [r.name for r in paper.TABLE1_ROWS]
    assert list(tables["table2"]) == ["VAE round trip", *paper.table2_methods(paper.TABLE1_ROWS)]
    assert tables["metrics"]["clip"]["computed"] is False and "--clip" in tables["metrics"]["clip"]["reason"]
    assert tables["table1"]["Video-P2P"]["clip_score"] is None
    text = (out / "tables.md").read_text()
    assert "| Video-P2P | 0.3367 |" in text and "| null-text, per frame | 22.97 |" in text
    assert "CLIP score, OSV and Temp skipped" in text
    assert "claims" in capsys.readouterr().out
    assert main(["paper", "--out", str(out), "--videos", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_paper_help_gives_the_run_defaults():
    from vp2p.cli import build_parser

    command = next(a for a in build_parser()._actions if a.dest == "command").choices["paper"]
    helps = {a.dest: a.help for a in command._actions}
    assert f"(default: {workflow.TOY_SETTINGS.num_steps} on the toy model, {workflow.Settings().num_steps}" in helps["steps"]
    assert f"(default: {workflow.TOY_SETTINGS.tune_steps} on the toy model" in helps["tune_steps"]
    assert f"(default: {workflow.TOY_SETTINGS.inner_steps} on the toy model, {workflow.Settings().inner_steps}" in helps["inner_steps"]


# ---------------------------------------------------------------- the paper's metrics, with weights


def test_paper_metrics_need_their_weights_and_say_so():
    video = world.render(world.Scene("red", "circle", "grass", seed=3), num_frames=3, size=32)
    case = paper.edit_cases(video.scene, 0)[0]
    status = paper.Scorers().status()
    assert not status["clip"]["computed"] and not status["lpips"]["computed"]
    scores = paper.score_edit(video, case, video.frames)  # the "edit" that changed nothing
    assert scores["background_psnr"] == 100.0 and scores["target_hit"] == 0.0  # wrong color: not the target
    assert scores["drift_px"] < 0.5 and scores["object_temporal"] > 0.9  # segmented vs true masks: nearly 0
    assert not {"clip_score", "osv", "temp", "lpips"} & set(scores)


def test_paper_metrics_are_computed_with_clip_weights(clip_dir):  # noqa: F811
    video = world.render(world.Scene("red", "circle", "grass", seed=3), num_frames=3, size=32)
    case = paper.edit_cases(video.scene, 0)[0]
    scorers = paper.Scorers.load(clip=clip_dir, device="cpu")
    assert scorers.status()["clip"] == {"computed": True, "weights": str(clip_dir)}
    scores = paper.score_edit(video, case, video.frames, scorers)
    assert all(math.isfinite(scores[k]) for k in ("clip_score", "temp", "osv")) and "lpips" not in scores
    assert scores["clip_score"] == pytest.approx(metrics.clip_score(scorers.clip, video.frames, case.target.caption))


# ---------------------------------------------------------------- the claims


def synthetic_tables(frames: int = 8) -> dict:
    """A tables dict as run_paper writes it, with made-up numbers for which every claim holds."""
    toy = {"Video-P2P": (0.9, 35.0, 0.95, 0.9, 0.05), "w/o DG": (0.8, 30.0, 0.9, 0.85, 0.1),
           "TAV+DDIM": (0.7, 20.0, 0.9, 0.9, 0.08), "w/o MI": (0.5, 33.0, 0.9, 0.88, 0.12),
           "w/o SU": (0.85, 34.0, 0.92, 0.89, 0.09), "Image-P2P": (0.6, 34.0, 0.7, 0.6, 0.6)}
    columns = TOY_COLUMNS + ("appearance_flicker",)
    table1 = {name: {**dict(zip(columns, values)), "drift_px": 1.0, "size_error": 0.1, "clip_score": None,
                     "lpips": None, "osv": None, "temp": None, "paper": paper.PAPER_TABLE1[name]}
              for name, values in toy.items()}
    shared = 25 * 77 * 32
    table2 = {"VAE round trip": {"psnr": 33.0, "parameters": None},
              "DDIM": {"psnr": 20.0, "parameters": 0},
              "null-text, per frame": {"psnr": 31.2, "parameters": frames * shared},
              "null-text, shared (Video-P2P)": {"psnr": 31.0, "parameters": shared}}
    return {"table1": table1, "table2": table2, "frames": frames}


def verdicts(tables) -> dict:
    return {b["claim"]: b["holds"] for b in paper.check_bars(tables)}


def test_claims_hold_on_numbers_made_to_hold():
    bars = paper.check_bars(synthetic_tables())
    # background, shared null-text, DDIM, then Image-P2P worst on attribute agreement, object temporal, appearance
    # flicker, and (no CLIP: unmeasured) Temp and OSV
    assert [b["holds"] for b in bars] == [True, True, True, True, True, True, None, None]
    assert "appearance flicker" in bars[5]["claim"] and "Image-P2P 0.600" in bars[5]["detail"]
    assert "35.00 dB" in bars[0]["detail"] and "(8.0×)" in bars[1]["detail"]
    assert bars[-1]["detail"] == "no temp numbers in this run"


def test_claims_fail_when_the_numbers_say_so():
    tables = synthetic_tables()
    tables["table1"]["w/o DG"]["background_psnr"] = 35.0  # a tie is not "better"
    tables["table2"]["null-text, per frame"]["psnr"] = 32.5  # 1.5 dB apart
    tables["table2"]["DDIM"]["psnr"] = 29.0  # only 2 dB under
    tables["table1"]["w/o MI"]["object_temporal"] = 0.6  # Image-P2P only tied worst
    tables["table1"]["Video-P2P"]["attribute_agreement"] = 0.5  # Image-P2P no longer worst
    assert [b["holds"] for b in paper.check_bars(tables)][:5] == [False] * 5
    parameters = synthetic_tables(frames=4)
    parameters["table2"]["null-text, per frame"]["parameters"] *= 2  # 8× the numbers for 4 frames
    assert paper.check_bars(parameters)[1]["holds"] is False


def test_claims_with_clip_numbers_and_with_rows_missing():
    tables = synthetic_tables()
    for name, entry in tables["table1"].items():
        entry["temp"], entry["osv"] = (0.90, 80.0) if name == "Image-P2P" else (0.97, 50.0)
    assert list(verdicts(tables).values())[-2:] == [True, True]
    partial = copy.deepcopy(tables)
    del partial["table1"]["TAV+DDIM"]
    bars = paper.check_bars(partial)
    assert bars[0]["holds"] is None and "TAV+DDIM" in bars[0]["detail"]


def test_orderings_count_the_pairs_ordered_as_in_the_paper():
    tables = synthetic_tables()
    for name, entry in tables["table1"].items():  # the paper's own masked PSNR order, reproduced exactly
        entry["background_psnr"] = paper.PAPER_TABLE1[name]["masked_psnr"]
    found = {o["paper_metric"]: o for o in paper.orderings(tables)}  # OSV: appearance flicker's (the later)
    assert set(found) == {"clip_score", "masked_psnr", "osv", "temp"}  # no CLIP numbers: no second OSV/Temp
    assert found["masked_psnr"] == {"column": "background PSNR (dB)", "paper_metric": "masked_psnr", "agree": 15,
                                         "pairs": 15, "ties": 0, "best_in_paper": "Image-P2P",
                                         "best_here": "Image-P2P"}
    tables["table1"]["Image-P2P"]["background_psnr"] = 0.0  # now worst: its 5 pairs flip
    assert paper.ordering(tables, paper.TOY_COLUMNS[1])["agree"] == 10
    # OSV: lower is better in the paper, attribute agreement higher is better here — compared in the right sense
    osv = paper.ordering(tables, next(c for c in paper.TOY_COLUMNS if c.key == "attribute_agreement"))
    assert osv["best_in_paper"] == "Video-P2P" and osv["best_here"] == "Video-P2P"
    # ... and appearance flicker, lower is better like OSV
    assert found["osv"]["column"] == "appearance flicker" and found["osv"]["best_here"] == "Video-P2P"


def test_markdown_puts_the_paper_beside_ours():
    tables = synthetic_tables()
    tables.update(videos=1, size=64, model="toy", machine="CPU", seconds=60.0, settings=vars(TINY),
                  metrics=paper.Scorers().status(), clips=[{"edits": [{"kind": "color"}]}])
    for name, entry in tables["table2"].items():
        entry["paper"] = paper.PAPER_TABLE2.get(name)
    tables["bars"] = paper.check_bars(tables)
    text = paper.markdown(tables)
    assert "| Video-P2P | 0.3367 | 0.90 | 20.65 | 35.00 |" in text
    assert "| null-text, shared (Video-P2P) | 22.75 | 31.00 | 2.94 M | 61,600 |" in text
    assert "- **holds** — Video-P2P preserves the background" in text


def test_table1_without_its_clip_table_keeps_the_toy_counterparts_only():
    tables = synthetic_tables()
    tables.update(metrics=paper.Scorers().status())
    full, toy = paper.table1_markdown(tables), paper.table1_markdown(tables, clip_table=False)
    assert "ours CLIP score" in full and "no CLIP weights given" in full
    assert "ours CLIP score" not in toy and "no CLIP weights given" not in toy
    assert "| Video-P2P | 0.3367 | 0.90 | 20.65 | 35.00 |" in toy and toy in full  # the same toy table, once
    # Each paper metric heads its counterparts once (OSV stands beside attribute agreement, not again by flicker).
    header = toy.splitlines()[0].split(" | ")
    assert header.count("paper OSV") == 1 and header.index("paper OSV") + 1 == header.index("attribute agreement ↑")
    assert header.index("appearance flicker ↓") == header.index("object temporal ↑") + 1
