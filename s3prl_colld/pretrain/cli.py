"""``python run_pretrain.py -u TASK -n NAME [-g model.yaml] [-c runner.yaml] [-p EXPDIR] [-e CKPT] [-o ...]``.

s3prl's flags. The config is resolved as: the task's dataclass defaults <-
its runner.yaml (or ``-c``) <- ``{"model": model.yaml}`` (or ``-g``) <- ``-o``
overrides; with ``-e`` the checkpoint's own config replaces the first three.
Mistakes (unknown task or key, a bad value, a missing file) print one line
on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

from s3prl_colld import checkpoint as ckpt_io
from s3prl_colld.config import ConfigError, deep_merge, from_dict, load_yaml, parse_overrides, to_dict
from s3prl_colld.pretrain.task import TASKS, PretrainTask

log = logging.getLogger("s3prl_colld.pretrain")


class UsageError(Exception):
    """A mistake on the command line; printed as one line, exit code 2."""


def get_task(name: str) -> type[PretrainTask]:
    """The registered task class ``name`` (importing every task module first)."""
    import s3prl_colld.pretrain.tasks  # noqa: F401  (registers the tasks)

    if name not in TASKS:
        close = difflib.get_close_matches(name, list(TASKS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"unknown pretrain task {name!r}.{hint} Available: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def resolve_config(task_cls: type[PretrainTask], model_yaml: str | None, runner_yaml: str | None,
                   overrides: str | None, base: dict[str, Any] | None = None) -> Any:
    """Build and validate the task's config (see the module docstring for the order)."""
    if base is None:
        default_model, default_runner = task_cls.default_config_paths()
        base = load_yaml(runner_yaml or default_runner)
        model_path = model_yaml or default_model
        if Path(model_path).is_file() or model_yaml:
            base = deep_merge(base, {"model": load_yaml(model_path)})
    merged = deep_merge(base, parse_overrides(overrides))
    return from_dict(task_cls.Config, merged)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run_pretrain.py", description="Pretrain (distil) a speech encoder.")
    p.add_argument("-u", "--upstream", required=True, help="the pretrain task, e.g. hubert_tiny, colld_distiller")
    p.add_argument("-n", "--expname", help="run name; the run folder is result/pretrain/NAME")
    p.add_argument("-g", "--upstream_config", help="model config yaml (default: configs/pretrain/TASK/model.yaml)")
    p.add_argument("-c", "--config", help="runner config yaml (default: configs/pretrain/TASK/runner.yaml)")
    p.add_argument("-p", "--expdir", help="run folder (overrides -n)")
    p.add_argument("-e", "--past_exp", help="checkpoint to resume from (states-STEP.ckpt)")
    p.add_argument("-o", "--override", help='e.g. "config.runner.total_steps=2000,,config.data.root=/data/LibriSpeech"')
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def _expdir(args: argparse.Namespace) -> Path:
    if args.expdir:
        return Path(args.expdir)
    if args.past_exp:
        return Path(args.past_exp).parent
    if not args.expname:
        raise UsageError("give a run name with -n NAME (or a run folder with -p DIR)")
    return Path("result") / "pretrain" / args.expname


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Resolve everything, write ``config.yaml``, train; returns the trainer's summary."""
    from s3prl_colld.pretrain.trainer import train

    task_cls = get_task(args.upstream)
    expdir = _expdir(args)
    resume = Path(args.past_exp) if args.past_exp else None
    base = None
    if resume is not None:
        state = ckpt_io.load(resume)
        if state.get("task") != task_cls.name:
            raise UsageError(f"{resume} is a checkpoint of task {state.get('task')!r}, not {task_cls.name!r}")
        base = state["config"]
    elif ckpt_io.latest_checkpoint(expdir) is not None:
        last = ckpt_io.latest_checkpoint(expdir)
        raise UsageError(f"{expdir} already has checkpoints; resume with -e {last} or choose a new -n NAME")
    cfg = resolve_config(task_cls, args.upstream_config, args.config, args.override, base)
    expdir.mkdir(parents=True, exist_ok=True)
    (expdir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")
    return train(task_cls, cfg, expdir, resume)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        summary = run(args)
    except (UsageError, ConfigError, ckpt_io.CheckpointError, FileNotFoundError) as err:
        print(f"run_pretrain.py: error: {err}", file=sys.stderr)
        return 2
    log.info("finished: %s", summary)
    return 0
