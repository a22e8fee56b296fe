"""``--teacher-frontend fbank``: the grid's teacher with the Fbank front-end, at toy size. The teacher and the
random-init row are probed as ``hubert_fbank_local``, the students are distilled from that teacher by name, the
report says so, and a grid folder of the other front-end is refused instead of reused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from s3prl_colld.checkpoint import load
from s3prl_colld.replicate import SCALES, main
from s3prl_colld.replicate.stages import check_teacher_frontend


def test_scale_overrides_name_the_front_end_only_when_it_is_not_the_cnn() -> None:
    import dataclasses

    cnn = SCALES["reduced"]
    assert cnn.teacher_upstream == "hubert_local"
    assert cnn.teacher_run_overrides(1) == cnn.teacher_run_overrides(2) == cnn.student_teacher_overrides() == ""
    fbank = dataclasses.replace(cnn, teacher_frontend="fbank")
    assert fbank.teacher_upstream == "hubert_fbank_local"
    assert fbank.teacher_run_overrides(1) == ",,config.model.frontend=fbank"
    assert fbank.teacher_run_overrides(2) == ",,config.model.frontend=fbank,,config.teacher.name=hubert_fbank_local"
    assert fbank.student_teacher_overrides() == ",,config.teacher.name=hubert_fbank_local"


def test_a_grid_with_the_fbank_teacher_at_toy_size(tmp_path: Path) -> None:
    out = tmp_path / "grid"
    args = ["--out", str(out), "--scale", "tiny", "--students", "distilhubert", "--baselines", "teacher,random_init",
            "--teacher-frontend", "fbank"]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["teacher_frontend"] == "fbank"
    rows = {r["key"]: r for r in results["rows"]}
    assert list(rows) == ["teacher", "random_init", "distilhubert"]
    assert rows["teacher"]["upstream"] == rows["random_init"]["upstream"] == "hubert_fbank_local"
    assert all(rows[k]["pr"]["test"]["n"] == 1 for k in rows)
    teacher = yaml.safe_load((out / "teacher_it1" / "config.yaml").read_text())
    assert teacher["model"]["frontend"] == "fbank"
    assert load(out / "random_init_teacher.ckpt")["tiny_hubert"]["frontend"] == "fbank"
    student = yaml.safe_load((out / "students" / "distilhubert-s0" / "config.yaml").read_text())
    assert student["teacher"]["name"] == "hubert_fbank_local"
    assert "the fbank front-end" in (out / "results.md").read_text()
    # the same folder asked for the CNN teacher: refused by name, nothing reused or trained over
    with pytest.raises(SystemExit, match="teacher with the fbank front-end, and this grid asks for cnn"):
        main(args[:-2])
    with pytest.raises(SystemExit, match="--teacher-frontend fbank"):
        check_teacher_frontend(out / "teacher_it1", "cnn")
    check_teacher_frontend(out / "teacher_it1", "fbank")  # the same front-end: no complaint
