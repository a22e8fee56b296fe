"""Each downstream task declares its own typed config; configs and checkpoints of the one shared schema still load."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from s3prl_colld.config import CONFIG_DIR, ConfigError, deep_merge, to_dict
from s3prl_colld.downstream.cli import resolve_config
from s3prl_colld.downstream.schema import LEGACY_SHARED_KEYS, DownstreamConfig
from s3prl_colld.downstream.task import TASKS

SHIPPED = {"pr": ["pr.yaml", "librispeech/pr.yaml"], "asr": ["asr.yaml", "librispeech/asr.yaml"],
           "st": ["st.yaml", "covost2/st.yaml"]}


def fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("task", sorted(TASKS.all()))
def test_each_task_declares_its_config_and_the_shared_schema_keeps_only_what_all_have(task: str) -> None:
    config = TASKS.get(task).Config
    assert issubclass(config, DownstreamConfig) and config is not DownstreamConfig
    assert "head" in fields(config) and "head" not in fields(DownstreamConfig)
    shared = {f.name: fields(type(getattr(DownstreamConfig(), f.name))) for f in dataclasses.fields(DownstreamConfig)}
    for section, keys in LEGACY_SHARED_KEYS.items():
        assert not set(keys) & shared[section], f"config.{section} still holds a task's own keys"
    cfg = resolve_config(task, None, None)
    assert isinstance(cfg, config) and dataclasses.is_dataclass(cfg.head)


def test_task_keys_live_with_their_task() -> None:
    pr, asr, st = (resolve_config(t, None, None) for t in ("pr", "asr", "st"))
    assert hasattr(pr.data, "lexicon") and not hasattr(asr.data, "lexicon") and not hasattr(st.data, "lexicon")
    assert (st.data.tsv_dir, st.runner.max_tokens) == ("covost", 4000) and not hasattr(pr.runner, "max_tokens")
    with pytest.raises(ConfigError, match="Did you mean config.data.lexicon"):
        resolve_config("pr", None, "config.data.lexicn=x.txt")
    with pytest.raises(ConfigError, match="unknown config key config.head.hiden_dim"):
        resolve_config("asr", None, "config.head.hiden_dim=8")


@pytest.mark.parametrize("task", sorted(SHIPPED))
def test_a_checkpoint_config_of_the_shared_schema_loads_unchanged(task: str) -> None:
    """What a checkpoint (or config.yaml) of the one shared schema holds: every task's keys at their defaults,
    and ``head`` as a plain mapping; it resolves to the same config, and ``-o`` still applies."""
    for yaml in SHIPPED[task]:
        new = resolve_config(task, str(CONFIG_DIR / "downstream" / yaml), None)
        old = to_dict(new)
        for section, keys in LEGACY_SHARED_KEYS.items():
            old[section] = {**keys, **old[section]}  # the shared schema's keys, at their defaults where unset
        assert resolve_config(task, None, None, base=old) == new
        again = resolve_config(task, None, "config.runner.total_steps=7", base=old)
        assert again.runner.total_steps == 7 and again.head == new.head


def test_an_old_key_that_a_task_never_read_is_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    base = to_dict(resolve_config("asr", None, None))
    old = deep_merge(base, {"data": {"lexicon": "/some/lexicon.txt", "tsv_dir": "covost"}})
    with caplog.at_level(logging.WARNING):
        cfg = resolve_config("asr", None, None, base=old)
    assert to_dict(cfg) == base
    assert "config.data.lexicon='/some/lexicon.txt' is not a key of task asr" in caplog.text
    assert "tsv_dir" not in caplog.text  # at its old default: dropped silently
