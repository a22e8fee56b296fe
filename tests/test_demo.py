"""``make demo`` end to end at toy size: every stage runs, the teacher beats its random init, the report lists every
probe, stages are reused."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from s3prl_colld.demo import main

TINY = ["--utterances", "60",
        # 120 steps of 8 crops of 1-2 s: enough for the teacher to learn its 12 units (masked accuracy ~50%)
        "--teacher-overrides", ",,config.runner.total_steps=120,,config.runner.save_step=120,,config.runner.log_step=10,,"
        "config.runner.num_workers=0,,config.runner.progress_bar=false,,config.data.batch_size=8,,"
        "config.data.crop_min_sec=1.0,,config.data.crop_max_sec=2.0,,config.units.n_clusters=12,,"
        "config.optimizer.warmup_steps=20",
        "--student-overrides", ",,config.runner.total_steps=4,,config.runner.save_step=4,,config.runner.log_step=2,,"
        "config.runner.num_workers=0,,config.runner.progress_bar=false,,config.data.batch_size=4",
        "--probe-overrides", ",,config.runner.total_steps=150,,config.runner.eval_step=75,,config.runner.batch_size=8,,"
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
    # the teacher learnt, and its features beat the random-init teacher's (measured on this toy run: masked unit
    # accuracy 0.52; PER dev / test 69.2 / 84.1 against 88.9 / 89.4, i.e. 12.5 points better on average)
    assert results["teacher"]["acc_m"] > 0.3  # chance is about 1 / 12
    teacher, random_init = results["probes"]["teacher (tiny HuBERT)"], results["probes"]["random-init teacher"]
    mean = {name: (r["dev_per"] + r["test_per"]) / 2 for name, r in (("teacher", teacher), ("random", random_init))}
    assert mean["teacher"] < mean["random"] - 6, (teacher, random_init)
    assert (out / "results.md").read_text().count("|") > 20 and (out / "teacher_curves.png").is_file()
    capsys.readouterr()
    assert main(["--out", str(out), *TINY]) == 0  # a second run reuses every stage
    printed = capsys.readouterr().out
    assert printed.count("reusing") == 3 + 5, printed
