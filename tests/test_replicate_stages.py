"""The sweep and curves stages of the grid (issue 21) at toy size: ``--stages sweep,grid,curves`` chooses a setting
on dev, the grid's row becomes that setting, each budget of the curve is its own run, and a second run reuses all."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from s3prl_colld.replicate import main, sweep
from s3prl_colld.replicate.plan import COLLD, COLLD_DISC, COLLD_FBANK, DISTILHUBERT, DISTILHUBERT_DISC, STUDENTS, SWEEP, \
    SweepPoint


def test_choose_takes_the_lowest_finished_dev_and_keeps_the_earlier_on_a_tie() -> None:
    points = [{"method": "a", "label": "planned", "dev": 50.0}, {"method": "a", "label": "x", "dev": 50.0},
              {"method": "a", "label": "collapsed", "dev": 10.0, "collapsed": True},
              {"method": "a", "label": "unfinished", "dev": None},
              {"method": "b", "label": "planned", "dev": 60.0}, {"method": "b", "label": "y", "dev": 59.9}]
    assert sweep.choose(points) == {"a": "planned", "b": "y"}


def test_colld_variants_take_colld_s_chosen_setting_on_top_of_their_own(tmp_path: Path) -> None:
    """A finished sweep that chose "no mask" for CoLLD gives CoLLD's variants (the discriminative loss, the Fbank
    front-end) that setting too, so each differs from the CoLLD row by its own change only; DistilHuBERT's variant
    keeps its planned row when DistilHuBERT's planned point was chosen."""
    no_mask = next(p for p in SWEEP if p.method == COLLD.key and p.overrides == "config.mask.prob=0")
    planned_dh = next(p for p in SWEEP if p.method == DISTILHUBERT.key)
    (tmp_path / sweep.SWEEP_FILE).write_text(json.dumps(
        {"chosen": {COLLD.key: no_mask.label, DISTILHUBERT.key: planned_dh.label}}))
    got = {s.key: s for s in sweep.chosen_students(tmp_path, [COLLD, COLLD_DISC, COLLD_FBANK, DISTILHUBERT,
                                                              DISTILHUBERT_DISC])}
    assert got[COLLD.key].overrides == "config.mask.prob=0"
    assert got[COLLD_DISC.key].overrides == "config.loss.disc_weight=1.0,,config.mask.prob=0"
    assert got[COLLD_FBANK.key].overrides == "config.model.frontend=fbank,,config.mask.prob=0"
    assert got[COLLD_DISC.key].name == f"colld+disc [{no_mask.label}]" and got[COLLD_FBANK.key].needs_frontend
    assert got[DISTILHUBERT_DISC.key] == DISTILHUBERT_DISC and got[DISTILHUBERT.key] == DISTILHUBERT
    assert sweep.chosen_students(tmp_path / "no_sweep", [COLLD_DISC]) == [COLLD_DISC]
    swept = {p.method for p in SWEEP}
    for s in STUDENTS:  # every CoLLD- or DistilHuBERT-task row is swept itself or names its swept family
        if s.task in ("colld_distiller", "distilhubert") and s.key not in swept:
            assert s.family in swept, f"{s.key}: set family= to the swept method whose setting it should take"


def test_every_sweep_point_names_a_planned_row_and_each_method_starts_with_it() -> None:
    methods = {p.method for p in SWEEP}
    assert COLLD.key in methods
    for method in methods:
        first = next(p for p in SWEEP if p.method == method)
        assert first.overrides == "", f"{method}: the first point must be the planned row (the one a tie keeps)"
    labels = [(p.method, p.label) for p in SWEEP]
    assert len(labels) == len(set(labels))


def test_sweep_grid_and_curves_stages_at_toy_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    # two of CoLLD's points (the full sweep is 7 x a distillation and a probe)
    monkeypatch.setattr(sweep, "SWEEP", (SweepPoint(COLLD.key, "planned"),
                                         SweepPoint(COLLD.key, "no mask", "config.mask.prob=0")))
    out = tmp_path / "grid"
    args = ["--out", str(out), "--scale", "tiny", "--students", "colld", "--stages", "sweep,grid,curves",
            "--curve-steps", "2,4"]
    assert main(args) == 0
    swept = json.loads((out / "sweep.json").read_text())
    devs = {p["label"]: p["dev"] for p in swept["points"]}
    assert set(devs) == {"planned", "no mask"} and all(math.isfinite(v) for v in devs.values())
    assert swept["chosen"] == {"colld": min(devs, key=lambda k: (devs[k], k != "planned"))}
    # the unmasked point really trained without masks: its run's config says so
    run_config = yaml.safe_load((out / "students" / "colld_no_mask-s0" / "config.yaml").read_text())
    assert run_config["mask"]["prob"] == 0
    results = json.loads((out / "results.json").read_text())
    rows = {r["key"]: r for r in results["rows"]}
    chosen_name = "colld" if swept["chosen"]["colld"] == "planned" else "colld [no mask]"
    assert rows["colld"]["name"] == chosen_name and rows["colld"]["pr"]["test"]["n"] == 1
    assert results["sweep"]["chosen"] == swept["chosen"]
    # the curve: the scale's 2 steps are the grid's run; 4 steps its own run, from scratch
    curve = results["budget_curves"]["curves"][chosen_name]
    assert set(curve) == {"2", "4"} and all(curve[k]["test"]["n"] == 1 for k in curve)
    folder = "colld" if chosen_name == "colld" else "colld_no_mask"
    assert (out / "students" / f"{folder}-4steps-s0" / "states-4.ckpt").is_file()
    assert not (out / "students" / f"{folder}-4steps-s0" / "states-2.ckpt").exists()  # no intermediate save
    # the curve's reference line is the grid's teacher, its probes reused (the same numbers as its row)
    reference = results["budget_curves"]["reference"]
    assert reference["name"] == "teacher" and reference["test"] == rows["teacher"]["pr"]["test"]
    text = (out / "results.md").read_text()
    assert "Settings chosen on dev" in text and "PER against distillation budget" in text
    assert "| teacher (reference) | - |" in text
    assert (out / "sweep.md").is_file() and (out / "budget_curve.png").is_file()
    # the software stack every stage ran under: one stack here, naming the stages it ran
    (stack,) = results["environments"]
    assert {"teacher_it1", "student colld seed 0", "probe pr teacher p0"} <= set(stack["stages"])
    assert stack["versions"]["torch"].startswith(torch.__version__.split("+")[0])
    assert "Software stack of every stage: python" in text
    capsys.readouterr()
    assert main(args) == 0  # everything reused
    assert "running" not in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["rows"] == results["rows"]
    # --baselines: only the named baseline rows are probed and reported (the students' rows as they were)
    assert main(["--out", str(out), "--scale", "tiny", "--students", "colld", "--report-only",
                 "--baselines", "teacher,mfcc"]) == 0
    partial = {r["key"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert list(partial) == ["teacher", "mfcc", "colld"]
    assert all(partial[k]["pr"] == rows[k]["pr"] for k in partial)
    # --report-only renders the budgets and seeds that finished and trains none of the missing ones
    assert main([*args[:-1], "2,4,8", "--curve-seeds", "2", "--report-only"]) == 0
    curve = json.loads((out / "curves.json").read_text())["curves"][chosen_name]
    assert [curve[k]["test"]["n"] for k in ("2", "4", "8")] == [1, 1, 0]
    assert not list((out / "students").glob("*-8steps-*")) and not list((out / "students").glob("*-s1"))


def test_bad_stage_and_student_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--scale", "tiny", "--stages", "grid,sweeps"])
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--scale", "tiny", "--students", "colld,nope"])
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--scale", "tiny", "--baselines", "teacher,bert"])
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--scale", "demo", "--stages", "curves"])  # demo has no curve budgets
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--scale", "tiny", "--stages", "curves", "--curve-seeds", "0"])


def test_budget_verdicts_compare_the_students_at_each_budget_by_the_seed_spread() -> None:
    from s3prl_colld.replicate.curves import budget_verdicts

    cell = lambda mean, std, n=2: {"test": {"mean": mean, "std": std, "n": n}}  # noqa: E731
    result = {"splits": ["test"], "curves": {"a": {"300": cell(72.0, 0.5), "1200": cell(68.0, 0.2)},
                                             "b": {"300": cell(72.3, 0.4), "1200": cell(70.0, 0.3),
                                                   "3000": cell(67.0, 0.0, 1)}}}
    lines = budget_verdicts(result)
    assert len(lines) == 2  # 3000 steps: one student only
    assert lines[0].startswith("- 300 steps: a 72.0") and "no difference shown" in lines[0]
    assert lines[1].startswith("- 1200 steps: a 68.0") and "a is better, beyond the seed spread" in lines[1]
