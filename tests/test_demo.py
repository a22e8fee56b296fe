"""``make demo`` end to end at toy size: every stage runs, the report lists every probe, stages are reused."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from s3prl_colld.demo import main

TINY = ["--utterances", "60",
        "--teacher-overrides", ",,config.runner.total_steps=8,,config.runner.save_step=8,,config.runner.log_step=2,,"
        "config.runner.num_workers=0,,config.runner.progress_bar=false,,config.data.batch_size=4,,"
        "config.units.n_clusters=12,,config.optimizer.warmup_steps=2",
        "--student-overrides", ",,config.runner.total_steps=4,,config.runner.save_step=4,,config.runner.log_step=2,,"
        "config.runner.num_workers=0,,config.runner.progress_bar=false,,config.data.batch_size=4",
        "--probe-overrides", ",,config.runner.total_steps=6,,config.runner.eval_step=3,,config.runner.batch_size=8,,"
        "config.runner.progress_bar=false"]


def test_demo_runs_every_stage_and_reuses_them(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "demo"
    assert main(["--out", str(out), *TINY]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["probes"]) == ["teacher (tiny HuBERT)", "CoLLD student (2 x 192)", "fbank",
                                       "random-init teacher", "MFCC (s3prl mfcc)"]
    for r in results["probes"].values():
        assert math.isfinite(r["dev_per"]) and math.isfinite(r["test_per"]) and r["test_per"] >= 0
        assert abs(sum(r["layer_weights"]) - 1.0) < 1e-5
    assert len(results["probes"]["teacher (tiny HuBERT)"]["layer_weights"]) == 5  # CNN output + 4 layers
    assert (out / "results.md").read_text().count("|") > 20 and (out / "teacher_curves.png").is_file()
    capsys.readouterr()
    assert main(["--out", str(out), *TINY]) == 0  # a second run reuses every stage
    printed = capsys.readouterr().out
    assert printed.count("reusing") == 3 + 5, printed
