"""Typed configs: ``-o`` overrides parsing, validation against dataclasses, merging, task config resolution."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Optional

import pytest

from s3prl_colld.config import ConfigError, deep_merge, from_dict, parse_overrides, to_dict
from s3prl_colld.pretrain.cli import resolve_config
from s3prl_colld.pretrain.schema import DataConfig, RunnerConfig
from s3prl_colld.pretrain.task import UnknownTaskError, get_task


@dataclass
class Inner:
    lr: float = 1.0
    layers: list[int] = field(default_factory=lambda: [4, 8])
    steps: int = 10


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    flag: bool = False
    path: Optional[str] = None


@dataclass
class Required:
    needed: int


# ---------------------------------------------------------------- parse_overrides
def test_overrides_parse_values_with_yaml() -> None:
    got = parse_overrides("config.inner.lr=1e-3,,config.inner.layers=[4, 12],,flag=true,,config.name=hubert_base")
    assert got == {"inner": {"lr": 1e-3, "layers": [4, 12]}, "flag": True, "name": "hubert_base"}
    assert isinstance(got["inner"]["lr"], float)


@pytest.mark.parametrize("raw, value", [
    ("1e-3", 1e-3), ("5E4", 5e4), ("2.0e-4", 2e-4), (".5", 0.5), ("3", 3), ("-2", -2), ("false", False),
    ("null", None), ("[a, b]", ["a", "b"]), ("[1e-3, 2]", [1e-3, 2]), ("{a: 1}", {"a": 1}), ("", ""),
    ("/data/Libri=Speech", "/data/Libri=Speech"),  # only the first '=' separates key and value
])
def test_override_value_types(raw: str, value: object) -> None:
    got = parse_overrides(f"config.a={raw}")["a"]
    assert got == value and type(got) is type(value)


def test_overrides_nest_and_merge_siblings() -> None:
    got = parse_overrides("config.a.b.c=1,,config.a.b.d=2,,a.e=3,,")  # 'config.' optional, trailing ',,' ignored
    assert got == {"a": {"b": {"c": 1, "d": 2}, "e": 3}}
    assert parse_overrides(None) == {} and parse_overrides("") == {}


@pytest.mark.parametrize("text, needle", [
    ("config.inner.lr", "no '='"),
    ("config..lr=1", "malformed"),
    ("config.=1", "malformed"),
    ("config.a=1,,config.a.b=2", "conflicts"),
])
def test_malformed_overrides(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_overrides(text)


# ---------------------------------------------------------------- from_dict
def test_unknown_key_names_valid_keys_and_close_match() -> None:
    with pytest.raises(ConfigError) as err:
        from_dict(Outer, {"inner": {"lrr": 2}})
    msg = str(err.value)
    assert "unknown config key config.inner.lrr" in msg and "Did you mean config.inner.lr?" in msg
    assert "Valid keys of config.inner: layers, lr, steps" in msg
    with pytest.raises(ConfigError) as err:
        from_dict(Outer, {"zzz": 1})
    assert "Did you mean" not in str(err.value) and "flag, inner, name, path" in str(err.value)


@pytest.mark.parametrize("data, needle", [
    ({"flag": "yes please"}, "config.flag: expected true or false"),
    ({"inner": {"layers": 3}}, "config.inner.layers: expected a list"),
    ({"inner": {"layers": [1, "x"]}}, r"config.inner.layers\[1\]: expected an integer"),
    ({"inner": {"steps": 2.5}}, "config.inner.steps: expected an integer"),
    ({"inner": {"steps": True}}, "expected an integer"),
    ({"inner": {"lr": "fast"}}, "config.inner.lr: expected a number"),
    ({"inner": 3}, "config.inner: expected a mapping"),
    ({"name": None}, "config.name: null is not allowed"),
    ({"name": [1]}, "config.name: expected a string"),
])
def test_type_errors_name_the_key(data: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        from_dict(Outer, data)


def test_numbers_widen_and_optionals_accept_null() -> None:
    cfg = from_dict(Outer, {"inner": {"lr": 2, "steps": 4.0}, "path": None})
    assert cfg.inner.lr == 2.0 and isinstance(cfg.inner.lr, float)
    assert cfg.inner.steps == 4 and isinstance(cfg.inner.steps, int)
    assert cfg.path is None and from_dict(Outer, {"path": "a/b"}).path == "a/b"


def test_missing_required_field() -> None:
    with pytest.raises(ConfigError, match="needed"):
        from_dict(Required, {})


def test_validate_hooks_run() -> None:
    with pytest.raises(ConfigError, match="precision"):
        from_dict(RunnerConfig, {"precision": "fp8"})
    with pytest.raises(ConfigError, match="max_keep must be >= 1"):
        from_dict(RunnerConfig, {"max_keep": 0})
    with pytest.raises(ConfigError, match="crop_min_sec"):
        from_dict(DataConfig, {"crop_min_sec": 5.0, "crop_max_sec": 1.0})


# ---------------------------------------------------------------- deep_merge, round trip
def test_deep_merge_recurses_and_copies() -> None:
    base = {"inner": {"lr": 1, "layers": [1]}, "name": "a"}
    update = {"inner": {"lr": 3}, "flag": True}
    merged = deep_merge(base, update)
    assert merged == {"inner": {"lr": 3, "layers": [1]}, "name": "a", "flag": True}
    assert base == {"inner": {"lr": 1, "layers": [1]}, "name": "a"} and update == {"inner": {"lr": 3}, "flag": True}
    assert deep_merge({"a": {"b": 1}}, {"a": 5}) == {"a": 5}  # a non-mapping replaces a mapping
    assert deep_merge({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}  # lists are replaced, not concatenated


def test_round_trip() -> None:
    cfg = from_dict(Outer, deep_merge({"inner": {"lr": 1}}, {"inner": {"lr": 3}}))
    assert from_dict(Outer, to_dict(cfg)) == cfg


# ---------------------------------------------------------------- task configs (cli.resolve_config)
def test_task_config_resolution_order(tmp_path) -> None:
    task = get_task("toy_regression")
    default = resolve_config(task)
    assert default.runner.total_steps == 20 and default.model.channels == 16  # shipped runner.yaml / model.yaml
    assert default.runner.seed == 1337 and default.data.root == DataConfig().root  # dataclass defaults
    runner = tmp_path / "runner.yaml"
    runner.write_text("runner:\n  total_steps: 7\n  log_step: 2\noptimizer:\n  lr: 1e-3\n")
    model = tmp_path / "model.yaml"
    model.write_text("channels: 4\n")
    cfg = resolve_config(task, str(model), str(runner), "config.runner.log_step=3,,config.model.hidden=5")
    assert (cfg.runner.total_steps, cfg.runner.log_step) == (7, 3)
    assert (cfg.model.channels, cfg.model.hidden) == (4, 5)
    assert cfg.optimizer.lr == 1e-3  # YAML 1.2 float syntax in files too
    assert cfg.optimizer.warmup_steps == 0  # -c replaces the shipped runner.yaml: the dataclass default shows
    resumed = resolve_config(task, overrides="config.runner.total_steps=9", base=to_dict(cfg))
    assert resumed.runner.total_steps == 9 and resumed.model.channels == 4


def test_task_config_errors() -> None:
    task = get_task("toy_regression")
    with pytest.raises(ConfigError, match="Did you mean config.model.channels.*Valid keys of config.model"):
        resolve_config(task, overrides="config.model.chanels=3")
    with pytest.raises(ConfigError, match="config file not found"):
        resolve_config(task, model_yaml="no/such/model.yaml")
    with pytest.raises(UnknownTaskError, match="Did you mean toy_regression"):
        get_task("toy_regresion")


# The model.yaml that configs/pretrain/{distilhubert,l2l_distiller,colld_distiller}/ each shipped before the three
# tasks shared configs/students/tiny.yaml (identical files; comments dropped).
OLD_DISTILL_MODEL_YAML = """\
frontend: cnn
cnn:
  conv_layers: [[128, 10, 5], [128, 3, 2], [128, 3, 2], [128, 3, 2], [128, 3, 2], [128, 2, 2], [128, 2, 2]]
layers: 2
dim: 192
ffn_dim: 768
heads: 4
conv_pos: 64
fbank:
  n_mels: 80
  hidden: 256
  out_dim: 128
"""


@pytest.mark.parametrize("name", ["distilhubert", "l2l_distiller", "colld_distiller"])
def test_shared_student_config_resolves_as_the_three_copies_did(name: str, tmp_path) -> None:
    """The shared student (``DistillTask.model_config``) gives each task the resolved config its own copy gave."""
    task = get_task(name)
    model_yaml, runner_yaml = task.default_config_paths()
    assert model_yaml.name == "tiny.yaml" and model_yaml.is_file() and runner_yaml.parent.name == name
    old = tmp_path / "model.yaml"
    old.write_text(OLD_DISTILL_MODEL_YAML)
    assert to_dict(resolve_config(task)) == to_dict(resolve_config(task, model_yaml=str(old)))
    # an explicit class statement (inspect finds no source for a class made by type())
    assert inspect.getsource(task).startswith(f'@register("{name}"')
