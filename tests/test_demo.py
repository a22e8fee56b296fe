"""``make demo`` end to end at toy size: ``python -m s3prl_colld.replicate --scale tiny`` runs every stage (corpus,
teacher, students, probes, measures, report), the teacher beats its random init, and a second run reuses it all."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from s3prl_colld.replicate import PR_SPLITS, main


def test_tiny_grid_runs_every_stage_and_reuses_them(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "grid"
    assert main(["--out", str(out), "--scale", "tiny"]) == 0
    results = json.loads((out / "results.json").read_text())
    rows = {r["name"]: r for r in results["rows"]}
    assert list(rows) == ["teacher", "fbank", "mfcc", "random_init", "distilhubert", "colld"]
    assert results["pr_splits"] == list(PR_SPLITS) and results["not_run"] == []
    for r in rows.values():
        for split in ("dev", *PR_SPLITS):
            stat = r["pr"][split]
            assert stat["n"] == 1 and math.isfinite(stat["mean"]) and 0 <= stat["mean"] <= 200, (r["name"], split)
        assert r["params_m"] >= 0 and r["rtf"] > 0
    assert rows["teacher"]["params_m"] > rows["colld"]["params_m"] > 0 and rows["fbank"]["params_m"] == 0
    # every probe says how long it trained, why it stopped and that it did not collapse (a collapsed one is retried)
    for r in rows.values():
        (probe,) = r["pr_probes"]
        assert 0 < probe["updates"] <= 150 and probe["stop_reason"] in ("patience", "cap"), (r["name"], probe)
        assert probe["collapsed"] is False and probe["attempts"] >= 1, (r["name"], probe)
    assert "PR probes: 6 trained" in (out / "results.md").read_text()
    # results.json names no folder of this machine: checkpoints are relative to the grid's folder (and exist there)
    assert str(tmp_path) not in (out / "results.json").read_text()
    stored = [r["ckpt"] for r in rows.values() if r["ckpt"]]
    assert len(stored) == 4 and all(not Path(c).is_absolute() and (out / c).is_file() for c in stored), stored
    # the teacher learnt: its features beat the random-init teacher's (the old demo test measured 69.2 / 84.1
    # against 88.9 / 89.4 dev / test PER at this size)
    mean = {name: (rows[name]["pr"]["dev"]["mean"] + rows[name]["pr"]["test"]["mean"]) / 2
            for name in ("teacher", "random_init")}
    assert mean["teacher"] < mean["random_init"] - 6, mean
    for name in ("distilhubert", "colld"):  # seed 0 saved every step: one curve point per checkpoint
        assert [step for step, _ in results["curves"][name]] == [1, 2]
    assert (out / "results.md").read_text().count("|") > 40
    assert (out / "per_vs_params.png").is_file() and (out / "learning_curve.png").is_file()
    capsys.readouterr()
    assert main(["--out", str(out), "--scale", "tiny"]) == 0  # a second run reuses every stage
    printed = capsys.readouterr().out
    assert "running" not in printed and printed.count("reusing") == 4, printed  # corpus, teacher, 2 students
    assert json.loads((out / "results.json").read_text())["rows"] == results["rows"]
