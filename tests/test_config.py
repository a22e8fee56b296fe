"""Typed configs: overrides parsing, validation, merging."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from s3prl_colld.config import ConfigError, deep_merge, from_dict, parse_overrides, to_dict
from s3prl_colld.pretrain.schema import RunnerConfig


@dataclass
class Inner:
    lr: float = 1.0
    layers: list[int] = field(default_factory=lambda: [4, 8])


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    flag: bool = False


def test_overrides_parse_values_with_yaml() -> None:
    got = parse_overrides("config.inner.lr=1e-3,,config.inner.layers=[4, 12],,flag=true,,config.name=hubert_base")
    assert got == {"inner": {"lr": 1e-3, "layers": [4, 12]}, "flag": True, "name": "hubert_base"}
    assert isinstance(got["inner"]["lr"], float)


def test_malformed_override() -> None:
    with pytest.raises(ConfigError, match="no '='"):
        parse_overrides("config.inner.lr")


def test_unknown_key_names_valid_keys_and_close_match() -> None:
    with pytest.raises(ConfigError) as err:
        from_dict(Outer, {"inner": {"lrr": 2}})
    msg = str(err.value)
    assert "config.inner.lrr" in msg and "Did you mean config.inner.lr" in msg and "layers, lr" in msg


def test_types_are_checked_and_ints_widen_to_floats() -> None:
    cfg = from_dict(Outer, {"inner": {"lr": 2}})
    assert cfg.inner.lr == 2.0 and isinstance(cfg.inner.lr, float)
    with pytest.raises(ConfigError, match="expected true or false"):
        from_dict(Outer, {"flag": "yes please"})
    with pytest.raises(ConfigError, match="expected a list"):
        from_dict(Outer, {"inner": {"layers": 3}})


def test_validate_hooks_run() -> None:
    with pytest.raises(ConfigError, match="precision"):
        from_dict(RunnerConfig, {"precision": "fp8"})


def test_deep_merge_and_round_trip() -> None:
    merged = deep_merge({"inner": {"lr": 1, "layers": [1]}}, {"inner": {"lr": 3}})
    assert merged == {"inner": {"lr": 3, "layers": [1]}}
    cfg = from_dict(Outer, merged)
    assert from_dict(Outer, to_dict(cfg)) == cfg
