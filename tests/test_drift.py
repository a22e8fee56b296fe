"""The run-to-run comparison (``python -m s3prl_colld.replicate.drift``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from s3prl_colld.replicate.drift import main, moves


def _results(teacher_test: float, fbank_noisy: float | None) -> dict:
    cell = lambda m: {"mean": m, "std": 0.0, "n": 1}  # noqa: E731
    fbank = {"test": cell(80.0)}
    if fbank_noisy is not None:
        fbank["test_noisy"] = cell(fbank_noisy)
    return {"rows": [{"key": "teacher", "name": "teacher", "pr": {"dev": cell(70.0), "test": cell(teacher_test)}},
                     {"key": "fbank", "name": "fbank", "pr": fbank, "asr": {"test": {"mean": float("nan"),
                                                                                      "std": 0.0, "n": 0}}}]}


def test_moves_pair_rows_by_key_and_skip_cells_measured_once() -> None:
    found = moves(_results(71.0, 85.0), _results(73.5, None))
    assert [(m["row"], m["split"], round(m["move"], 1)) for m in found] == [
        ("teacher", "dev", 0.0), ("teacher", "test", 2.5), ("fbank", "test", 0.0)]


def test_the_cli_reports_the_largest_move_against_the_tolerance(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    for name, value in (("one", 71.0), ("two", 73.5)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(_results(value, 85.0)))
    assert main([str(tmp_path / "one"), str(tmp_path / "two"), "--labels", "OMP 1,OMP 2"]) == 0
    out = capsys.readouterr().out
    assert "| teacher | pr | test | 71.0 | 73.5 | +2.5 |" in out
    assert "largest move: 2.5 (teacher, pr test)" in out and "beyond the tolerance of 2" in out
    assert main([str(tmp_path / "one"), str(tmp_path / "two"), "--tolerance", "3"]) == 0
    assert "within the tolerance of 3" in capsys.readouterr().out
    assert main([str(tmp_path / "one"), str(tmp_path / "missing")]) == 1
    assert "no results.json there" in capsys.readouterr().out
