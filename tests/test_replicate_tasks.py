"""The grid's ASR and ST stages (``replicate --tasks pr,asr,st``, issue 22) and the GPU scale's code path at toy size
(``--scale gpu-tiny``, issue 25): every stage runs on CPU, writes its ``results.json`` block and is reused on a
second run; the blocks' shape; the report's ASR / BLEU columns; old ``results.json`` still renders."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from s3prl_colld.replicate import SCALES, main, report
from s3prl_colld.replicate.plan import (ASR_SEEDS, COLLD, COLLD_MULTILINGUAL, DISTILHUBERT, GPU_STUDENTS, MULTILINGUAL,
                                        STUDENTS, asr_rows, plan_students, st_rows)
from s3prl_colld.replicate.report import instrument_checks, probe_summary, upgrade
from s3prl_colld.replicate.run import block

REPO = Path(__file__).resolve().parents[1]


def _is_stat(stat: dict) -> bool:
    return set(stat) == {"mean", "std", "n"} and stat["n"] >= 1 and math.isfinite(stat["mean"])


def _block_ok(row: dict, field: str, splits: tuple[str, ...]) -> bool:
    """``row[field]`` holds a number for each split, or its probe collapsed (a toy probe of a few updates may) and
    the block then holds none: a collapsed probe is flagged and never a number."""
    (probe,) = row[f"{field}_probes"]
    assert probe["updates"] > 0 and probe["stop_reason"] in ("patience", "cap") and probe["attempts"] == 1, probe
    assert 1 <= len(probe["dev_tail"]) <= 3, probe  # the last dev evaluations, for the report's convergence line
    if probe["collapsed"]:
        return all(row[field][s]["n"] == 0 for s in splits)
    return all(_is_stat(row[field][s]) for s in splits)


def test_gpu_tiny_runs_pr_asr_st_and_reuses_every_stage(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "grid"
    # first a partial run: ST De->En only (--st-directions), no ASR; the full run below adds the rest to it
    assert main(["--out", str(out), "--scale", "gpu-tiny", "--tasks", "pr,st", "--st-directions", "de-en"]) == 0
    partial = {r["key"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert {k for k, r in partial.items() if "st_de_en" in r} == {"teacher", "fbank", DISTILHUBERT.key, COLLD.key}
    assert not any("st_en_de" in r or "asr" in r for r in partial.values())
    st_runs = [p.name for p in (out / "probes" / "st").iterdir() if p.is_dir()]
    assert any(n.endswith("_de_en-p0") for n in st_runs) and not any(n.endswith("_en_de-p0") for n in st_runs), st_runs
    assert main(["--out", str(out), "--scale", "gpu-tiny", "--tasks", "pr,asr,st"]) == 0
    results = json.loads((out / "results.json").read_text())
    rows = {r["key"]: r for r in results["rows"]}
    assert set(GPU_STUDENTS) <= set(rows) and results["not_run"] == []
    assert results["asr_splits"] == ["test", "test_noisy", "test_unseen"] and results["tasks"] == ["pr", "asr", "st"]
    # both teacher iterations ran (the gpu scale's stages), German was made for ST De->En
    assert (out / "teacher_it1" / "DONE").is_file() and (out / "teacher" / "DONE").is_file()
    assert (out / "corpus_de" / "manifest.json").is_file()
    asr_keys = {"teacher", "fbank", "mfcc", *GPU_STUDENTS}  # every English student of the scale, seed 0
    st_keys = {"teacher", "fbank", DISTILHUBERT.key, COLLD.key}
    for key, r in rows.items():
        assert _block_ok(r, "pr", ("dev", "test")), key
        if key in asr_keys:
            assert set(r["asr"]) == {"dev", *results["asr_splits"]} and _block_ok(r, "asr", tuple(r["asr"])), key
            assert len(r["asr_probes"]) == 1  # gpu-tiny distils one seed: one ASR probe per student
        else:
            assert "asr" not in r, key
        for field in ("st_en_de", "st_de_en"):
            if key in st_keys:
                assert set(r[field]) == {"dev", "test"} and _block_ok(r, field, ("dev", "test")), (key, field)
                assert r[field]["test"]["n"] == 0 or 0 <= r[field]["test"]["mean"] <= 100
            else:
                assert field not in r, (key, field)
    assert {p.name for p in (out / "probes").iterdir() if p.is_dir()} >= {"pr", "asr", "st"}
    # the mini presets were used: the ASR head of the run is 256 wide
    assert "hidden_dim: 256" in (out / "probes" / "asr" / "teacher-p0" / "config.yaml").read_text()
    md = (out / "results.md").read_text()
    teacher_line = next(line for line in md.splitlines() if line.startswith("| teacher |"))
    cells = [c.strip() for c in teacher_line.strip("| ").split(" | ")]
    # PR (3 splits), ASR and both BLEU columns: a number exactly where the block has one ("-" for a collapsed probe)
    t = rows["teacher"]
    blocks = [t["pr"][s] for s in results["pr_splits"]] + [t["asr"]["test"], t["st_en_de"]["test"],
                                                           t["st_de_en"]["test"]]
    assert len(cells) == 10 and [c == "-" for c in cells[4:]] == [b["n"] == 0 for b in blocks], teacher_line
    capsys.readouterr()
    assert main(["--out", str(out), "--scale", "gpu-tiny", "--tasks", "pr,asr,st"]) == 0  # everything reused
    printed = capsys.readouterr().out
    assert "running" not in printed, printed
    assert json.loads((out / "results.json").read_text())["rows"] == results["rows"]
    # --tasks pr on the same folder keeps the finished ASR / ST blocks and runs nothing
    assert main(["--out", str(out), "--scale", "gpu-tiny", "--tasks", "pr"]) == 0
    assert "running" not in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["rows"] == results["rows"]


def test_the_plan_names_the_asr_and_st_rows() -> None:
    full = plan_students(SCALES["full"])
    pairs = asr_rows(full)
    assert {s.key for s, _ in pairs} == {s.key for s in full}  # English ASR for every student, multilingual ones too
    assert sorted(seed for s, seed in pairs if s.key == COLLD.key) == [0, 1] == list(range(ASR_SEEDS[COLLD.key]))
    assert sorted(seed for s, seed in pairs if s.key == DISTILHUBERT.key) == [0, 1]
    assert all(seed == 0 for s, seed in pairs if s.key not in ASR_SEEDS)
    assert {s.key for s, _ in st_rows(full)} == {DISTILHUBERT.key, COLLD.key, *(s.key for s in MULTILINGUAL)}
    # ST: two seeds of the main comparison and of the multilingual students (their verdicts need a spread)
    assert sorted(seed for s, seed in st_rows(full) if s.key == COLLD.key) == [0, 1]
    assert sorted(seed for s, seed in st_rows(full) if s.key == COLLD_MULTILINGUAL.key) == [0, 1]
    # seeds capped by the scale: gpu-tiny distils one seed, so ASR probes one
    assert all(seed == 0 for _, seed in asr_rows(plan_students(SCALES["gpu-tiny"])))
    # SUPERB's heads stay the default of the full and gpu scales; the mini presets are the CPU scales'
    for name in ("full", "gpu"):
        assert SCALES[name].asr_config is None and SCALES[name].st_config is None
        assert "config.head.d_model=512" in SCALES[name].st_overrides
    assert SCALES["gpu"].synth_workers == 0 and SCALES["gpu"].teacher_iter2_overrides is not None
    assert set(SCALES["gpu"].students) == set(GPU_STUDENTS) == set(SCALES["gpu-tiny"].students)
    assert SCALES["reduced"].default_tasks() == ("pr",) and SCALES["gpu"].default_tasks() == ("pr", "asr", "st")
    assert all(s.key in {x.key for x in STUDENTS} for s in plan_students(SCALES["gpu"]))


def test_blocks_are_shaped_like_pr() -> None:
    out = block([{"dev": 30.0, "test": 40.0, "test_noisy": 50.0, "seconds": 3.0}, None,
                 {"dev": 32.0, "test": 44.0, "test_noisy": 54.0}], ["test", "test_noisy"])
    assert list(out) == ["dev", "test", "test_noisy"]
    assert out["test"] == {"mean": 42.0, "std": pytest.approx(2.8284, abs=1e-3), "n": 2}
    assert block([None], ["test"])["test"]["n"] == 0


def _row(key: str, name: str, **blocks: dict) -> dict:
    return {"key": key, "name": name, "task": "t", "params_m": 1.0, "rtf": 0.01, "distil_minutes": None,
            "pr": {"dev": {"mean": 20.0, "std": 0.0, "n": 1}, "test": {"mean": 21.0, "std": 0.0, "n": 1}}, **blocks}


def test_report_renders_asr_and_bleu_columns(tmp_path: Path) -> None:
    stat = lambda m, s=0.0, n=1: {"mean": m, "std": s, "n": n}  # noqa: E731
    results = {"rows": [
        _row("teacher", "teacher", asr={"dev": stat(30.0), "test": stat(33.3), "test_noisy": stat(44.4),
                                         "test_unseen": stat(55.5)},
             st_en_de={"dev": stat(12.0), "test": stat(11.25)}, st_de_en={"dev": stat(9.0), "test": stat(8.75)}),
        _row("colld", "colld", asr={"dev": stat(40.0), "test": stat(41.0, 1.5, 2), "test_noisy": stat(50.0),
                                     "test_unseen": stat(60.0)}),
        _row("mfcc", "mfcc")],
        "pr_splits": ["test"], "asr_splits": ["test", "test_noisy", "test_unseen"], "curves": {},
        "stage_times": {"probe asr teacher p0": 60.0}, "not_run": []}
    text = report(tmp_path, results)
    main_table = text.split("\n\n")[0]
    lines = {line.split(" | ")[0]: line for line in main_table.splitlines() if line.startswith("| ")}
    assert "| ASR test WER | ST en-de BLEU | ST de-en BLEU |" in lines["| features / student"]
    assert lines["| teacher"].endswith("| 21.0 | 33.3 | 11.2 | 8.8 |"), lines["| teacher"]
    assert "| 41.0 ± 1.5 (2) | - | - |" in text and lines["| mfcc"].endswith("| 21.0 | - | - | - |")
    assert "| teacher | 30.0 | 33.3 | 44.4 | 55.5 |\n" in text  # the ASR table by split
    assert json.loads((tmp_path / "results.json").read_text())["rows"][0]["st_de_en"]["test"]["mean"] == 8.75


def test_probe_summary_covers_each_task_and_says_how_far_capped_probes_still_moved() -> None:
    def probe(stop: str, tail: list[float], collapsed: bool = False) -> dict:
        return {"updates": 6000 if stop == "cap" else 2500, "stop_reason": stop, "collapsed": collapsed,
                "attempts": 1, "dev_tail": tail}
    rows = [_row("teacher", "teacher", pr_probes=[probe("patience", [70.0, 69.0, 69.1])],
                 asr_probes=[probe("cap", [61.0, 60.0, 59.2])],
                 st_en_de_probes=[probe("cap", [38.7, 39.9, 40.5])], st_de_en_probes=[probe("patience", [9.0, 9.1, 9.0])]),
            _row("colld", "colld", st_en_de_probes=[probe("cap", [30.0, 30.5, 30.6], collapsed=True)])]
    lines = [line for line in probe_summary(rows) if line]
    assert lines[0].startswith("PR probes: 1 trained") and "At the cap" not in lines[0]
    assert lines[1].startswith("ASR probes: 1 trained") and "(1 by cap)" in lines[1]
    assert "dev still moved by 1.8-1.8 over the last two evaluations (1 probes)" in lines[1]
    assert lines[2].startswith("ST probes: 3 trained") and "(2 by cap, 1 by patience)" in lines[2]
    assert "moved by 0.6-1.8" in lines[2]
    assert lines[3] == "**Collapsed ST probes (mostly empty hypotheses), left out of the means: colld (en-de).**"
    assert probe_summary([_row("mfcc", "mfcc")]) == []  # rows from before probes were recorded


def test_instrument_checks_say_which_bound_the_teacher_meets() -> None:
    stat = lambda m: {"mean": m, "std": 0.0, "n": 1}  # noqa: E731
    rows = [_row("teacher", "teacher", asr={"test": stat(59.9)}, st_en_de={"test": stat(38.4)}),
            _row("fbank", "fbank", asr={"test": stat(42.5)})]
    (line,) = [x for x in instrument_checks(rows) if x]
    assert "WER 59.9 (bound < 50): **not met**" in line and "BLEU en-de 38.4 (bound >= 10): met" in line
    assert "BLEU de-en (bound >= 10): not measured" in line
    rows[0]["asr"]["test"] = stat(49.9)
    assert "WER 49.9 (bound < 50): met" in instrument_checks(rows)[1]
    assert instrument_checks([_row("teacher", "teacher")]) == []  # a PR-only grid: no line


def test_old_results_json_still_renders(tmp_path: Path) -> None:
    """The committed reduced grid (rows without keys) and the old flat asr / st entries."""
    old = {"rows": [{k: v for k, v in _row("x", "colld").items() if k != "key"}
                    | {"asr": {"dev": 30.0, "test": 31.5, "seconds": 9.0},
                       "st": {"en-de": {"dev": 5.0, "test": 4.5}, "de-en": {"dev": 3.0, "test": 2.5}}}],
           "pr_splits": ["test"], "curves": {}, "stage_times": {}, "not_run": []}
    new = upgrade(old)["rows"][0]
    assert new["key"] == "colld" and new["asr"]["test"] == {"mean": 31.5, "std": 0.0, "n": 1} and "seconds" not in new["asr"]
    assert new["st_en_de"]["test"]["mean"] == 4.5 and new["st_de_en"]["dev"]["mean"] == 3.0 and "st" not in new
    assert "| 31.5 | 4.5 | 2.5 |" in report(tmp_path, old)
    grid = tmp_path / "grid_reduced"  # replicate --report-only on a folder that holds only the committed results.json
    grid.mkdir()
    committed = REPO / "docs" / "results" / "history" / "grid_reduced_400_updates" / "results.json"
    shutil.copy(committed, grid / "results.json")
    assert main(["--out", str(grid), "--scale", "reduced", "--report-only"]) == 0
    md = (grid / "results.md").read_text()
    assert "Paper claims, from these numbers:" in md and "colld" in md
    rows = json.loads((grid / "results.json").read_text())["rows"]
    assert [r["pr"] for r in rows] == [r["pr"] for r in json.loads(committed.read_text())["rows"]]
    assert all(r["key"] for r in rows)


def test_bad_tasks_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--scale", "tiny", "--tasks", "pr,sid"])
    with pytest.raises(SystemExit):  # the demo scale has no ASR stage
        main(["--out", str(tmp_path), "--scale", "demo", "--tasks", "pr,asr"])
    with pytest.raises(SystemExit):  # a direction the grid does not have
        main(["--out", str(tmp_path), "--scale", "gpu-tiny", "--tasks", "st", "--st-directions", "en-fr"])
