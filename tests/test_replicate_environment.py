"""The software stack a grid's stages ran under (``replicate.environment``)."""

from __future__ import annotations

import json
from pathlib import Path

from s3prl_colld.replicate import environment


def test_versions_name_the_numerical_stack() -> None:
    found = environment.versions()
    assert {"python", "torch", "numpy", "scikit-learn", "pyroomacoustics"} <= set(found)
    assert found["numpy"] != "not installed" and found["numpy"][0].isdigit()
    import torch

    assert found["torch threads"] == str(torch.get_num_threads()) and found["cpu"] not in ("", None)


def test_stages_are_grouped_by_stack_and_a_second_stack_is_reported(tmp_path: Path) -> None:
    old = {"python": "3.11.7", "numpy": "2.3.0", "scikit-learn": "1.7.0"}
    new = {**old, "numpy": "2.4.6"}
    assert environment.load(tmp_path) == [] and environment.summary([]) == ""
    environment.record(tmp_path, "teacher_it1", old)
    environment.record(tmp_path, "teacher_it1", old)  # recorded once
    one = environment.load(tmp_path)
    assert one == [{"versions": old, "stages": ["teacher_it1"]}]
    assert environment.summary(one).startswith("Software stack of every stage: python 3.11.7, numpy 2.3.0")
    environment.record(tmp_path, "probe pr teacher p0", new)
    two = json.loads((tmp_path / environment.ENVIRONMENTS_FILE).read_text())
    assert [e["stages"] for e in two] == [["teacher_it1"], ["probe pr teacher p0"]]
    line = environment.summary(two)
    assert "2 software stacks" in line and "differing in numpy:" in line  # only the package that differs
    assert "numpy 2.3.0 (1 stage); numpy 2.4.6 (1 stage)" in line and "scikit-learn" not in line


def test_a_key_an_older_record_lacks_is_unknown_not_a_difference(tmp_path: Path) -> None:
    old = {"python": "3.11.7", "numpy": "2.4.6"}  # written before the thread count was recorded
    new = {**old, "torch threads": "1"}
    environment.record(tmp_path, "teacher_it1", old)
    environment.record(tmp_path, "probe pr teacher p0", new)
    entries = environment.load(tmp_path)
    assert len(entries) == 2  # kept apart: the old one's thread count is not known
    assert environment.summary(entries) == (
        "Software stack of every stage: python 3.11.7, numpy 2.4.6, torch threads 1 (environments.json).")
    environment.record(tmp_path, "probe pr teacher p1", {**old, "torch threads": "2"})
    line = environment.summary(environment.load(tmp_path))
    assert "3 software stacks" in line and "differing in torch threads:" in line and "numpy" not in line
    assert "torch threads not recorded (1 stage)" in line
