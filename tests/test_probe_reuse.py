"""A grid reuses a finished probe only when it trained with the config the grid asks for now.

A probe folder's name holds its row and seed, not its settings: when a scale's probe settings change (the reduced
grid's PR probes took ``runner.ema_decay`` 0.95 in session 19), an old grid folder's probes would otherwise be
reported as if they were the new ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from s3prl_colld.config import to_dict
from s3prl_colld.runtime.cli import write_yaml_atomic
from s3prl_colld.downstream.cli import resolve_config
from s3prl_colld.replicate.plan import SCALES
from s3prl_colld.replicate.stages import Grid, preset_path, probe_config_drift


def _finished_probe(run: Path, task: str, overrides: str, config: str | None = None, attempts: int = 1,
                    upstream: str | None = None) -> None:
    """A probe folder as the grid leaves it: ``config.yaml`` (as ``run_downstream.py`` writes it) and ``DONE.json``."""
    run.mkdir(parents=True)
    cfg = resolve_config(task, preset_path(config), overrides)
    spec = {"task": task, **({"upstream": upstream} if upstream else {})}
    write_yaml_atomic({"spec": spec, "config": to_dict(cfg)}, run / "config.yaml")
    (run / "DONE.json").write_text(json.dumps({"dev": 70.0, "test": 71.0, "updates": 2000, "stop_reason": "cap",
                                               "collapsed": False, "attempts": attempts, "dev_curve": []}))


def test_drift_names_the_changed_key_and_ignores_where_the_probe_ran(tmp_path: Path) -> None:
    run = tmp_path / "fbank-p0"
    _finished_probe(run, "pr", "config.data.root=/elsewhere/corpus,,config.cache.dir=/elsewhere/cache,,"
                               "config.runner.seed=1338,,config.data.max_train_utts=1000")
    assert probe_config_drift("pr", run, ",,config.data.max_train_utts=1000") == []
    assert probe_config_drift("pr", run, ",,config.data.max_train_utts=1000,,config.runner.ema_decay=0.95") == [
        "runner.ema_decay: None -> 0.95"]
    assert probe_config_drift("pr", run, "") == ["data.max_train_utts: 1000 -> None"]


def test_a_key_the_old_probe_s_config_lacks_takes_its_default(tmp_path: Path) -> None:
    """A probe trained before ``runner.ema_decay`` existed (the committed grid's) saved no such key: it ran without
    an average, and reads so, instead of the key being skipped."""
    run = tmp_path / "fbank-p0"
    _finished_probe(run, "pr", "config.data.max_train_utts=1000")
    saved = yaml.safe_load((run / "config.yaml").read_text())
    del saved["config"]["runner"]["ema_decay"]
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    assert probe_config_drift("pr", run, ",,config.data.max_train_utts=1000") == []
    assert probe_config_drift("pr", run, ",,config.data.max_train_utts=1000,,config.runner.ema_decay=0.95") == [
        "runner.ema_decay: None -> 0.95"]


def test_a_probe_without_config_yaml_is_not_checked(tmp_path: Path) -> None:
    (tmp_path / "old-p0").mkdir()
    assert probe_config_drift("pr", tmp_path / "old-p0", ",,config.runner.ema_decay=0.95") == []


def test_the_grid_reuses_a_preset_probe_and_a_retried_one(tmp_path: Path) -> None:
    """Through ``Grid.probe``: an ASR probe of the mini preset agrees with itself (the preset reaches the check),
    and a probe whose retry lowered its lr (``attempts`` in ``DONE.json``) is reused, unless the lr was set so."""
    scale = SCALES["tiny"]
    grid = Grid(tmp_path, scale, 0, tasks=("pr", "asr"))
    _finished_probe(tmp_path / "probes" / "asr" / "teacher-p0", "asr", scale.asr_overrides.lstrip(","),
                    scale.asr_config)
    assert grid.probe("asr", "teacher", "hubert_local", None, 0, scale.asr_overrides, ["test"],
                      config=scale.asr_config)["test"] == 71.0
    retried = scale.probe_overrides + ",,config.optimizer.lr=0.001"  # a retry lowered the lr (its config.yaml)
    _finished_probe(tmp_path / "probes" / "pr" / "mfcc-p0", "pr", retried.lstrip(","), attempts=3)
    assert grid.probe("pr", "mfcc", "mfcc", None, 0, scale.probe_overrides, ["test"])["test"] == 71.0
    _finished_probe(tmp_path / "probes" / "pr" / "fbank-p0", "pr", retried.lstrip(","), attempts=1)
    with pytest.raises(SystemExit, match=r"optimizer\.lr: 0\.001 -> 0\.01"):
        grid.probe("pr", "fbank", "fbank", None, 0, scale.probe_overrides, ["test"])


def test_the_grid_refuses_to_reuse_a_probe_trained_with_other_settings(tmp_path: Path) -> None:
    scale = SCALES["tiny"]
    grid = Grid(tmp_path, scale, 0, tasks=("pr",))
    run = tmp_path / "probes" / "pr" / "fbank-p0"
    _finished_probe(run, "pr", scale.probe_overrides.lstrip(","))
    reused = grid.probe("pr", "fbank", "fbank", None, 0, scale.probe_overrides, ["test"])
    assert reused is not None and reused["test"] == 71.0
    with pytest.raises(SystemExit, match=r"runner\.ema_decay: None -> 0\.95.*Move that folder aside"):
        grid.probe("pr", "fbank", "fbank", None, 0, scale.probe_overrides + ",,config.runner.ema_decay=0.95", ["test"])


def test_the_grid_refuses_a_probe_of_another_upstream(tmp_path: Path) -> None:
    """A teacher probe of the CNN teacher (``hubert_local``) in a folder the Fbank-front-end teacher's grid asks for
    (``hubert_fbank_local``; the folder is named by the row): refused, naming both; the same upstream is reused."""
    scale = SCALES["tiny"]
    grid = Grid(tmp_path, scale, 0, tasks=("pr",))
    _finished_probe(tmp_path / "probes" / "pr" / "teacher-p0", "pr", scale.probe_overrides.lstrip(","),
                    upstream="hubert_local")
    assert grid.probe("pr", "teacher", "hubert_local", None, 0, scale.probe_overrides, ["test"])["test"] == 71.0
    with pytest.raises(SystemExit, match=r"upstream: 'hubert_local' -> 'hubert_fbank_local'"):
        grid.probe("pr", "teacher", "hubert_fbank_local", None, 0, scale.probe_overrides, ["test"])
    assert probe_config_drift("pr", tmp_path / "probes" / "pr" / "teacher-p0", scale.probe_overrides) == []


def test_a_preset_probe_agrees_with_itself(tmp_path: Path) -> None:
    run = tmp_path / "teacher-p0"
    _finished_probe(run, "asr", "config.data.root=/x", "mini/asr.yaml")
    assert probe_config_drift("asr", run, "", "mini/asr.yaml") == []
    assert probe_config_drift("asr", run, ",,config.runner.total_steps=9000", "mini/asr.yaml") == [
        "runner.total_steps: 3000 -> 9000"]


def _probe_ema_module():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / "experiments" / "probe_ema.py"
    spec = importlib.util.spec_from_file_location("probe_ema", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_probe_ema_names_the_grid_s_own_rule_by_the_row_and_the_other_rules_by_their_tag() -> None:
    ema = _probe_ema_module()
    reduced, demo = SCALES["reduced"].probe_overrides, SCALES["demo"].probe_overrides
    assert "config.runner.ema_decay=0.95" in reduced and "ema_decay" not in demo
    # the reduced grid's own probe averages: "none" asks for the trained weights explicitly, under its own name
    assert ema.overrides_for(reduced, "0.95") == reduced and ema.probe_name("fbank", "0.95", reduced) == "fbank"
    assert ema.overrides_for(reduced, "none").endswith(",,config.runner.ema_decay=null")
    assert ema.probe_name("fbank", "none", reduced) == "fbank [trained]"
    assert ema.overrides_for(reduced, "0.99").count("ema_decay") == 1
    assert ema.probe_name("fbank", "0.99", reduced) == "fbank [ema 0.99]"
    # the demo's own probe does not: "none" is its own
    assert ema.overrides_for(demo, "none") == demo and ema.probe_name("fbank", "none", demo) == "fbank"
    assert ema.probe_name("fbank", "0.95", demo) == "fbank [ema 0.95]"
