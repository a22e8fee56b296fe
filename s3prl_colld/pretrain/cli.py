"""``python run_pretrain.py -u TASK -n NAME [-g model.yaml] [-c runner.yaml] [-p EXPDIR] [-e CKPT] [-o ...]``.

s3prl's flags. The config is resolved as: the task's dataclass defaults <-
its runner.yaml (or ``-c``) <- ``{"model": model.yaml}`` (or ``-g``) <- ``-o``
overrides (``config.a.b=v,,config.c=w``, values read as YAML, never ``eval``).
With ``-e`` the checkpoint's own config replaces the first three, and ``-o``
may still change it (e.g. ``config.runner.total_steps``).

The run folder is ``-p``, else ``result/pretrain/NAME`` (relative to the
current directory, like s3prl), else the folder of ``-e``. A folder that
already holds checkpoints is only continued with ``-e``.

``config.teacher.ckpt`` must load with ``torch.load(weights_only=True)``
before it reaches s3prl's loader, unless ``--trust-checkpoint`` is given.

Mistakes (unknown task or key, a bad value, a missing file, bad audio, a
wrong or untrusted checkpoint, a run folder that cannot be written) print one
line on stderr (bad audio: one line per bad file) and exit with code 2 (``-v``
shows the traceback instead). So does a batch that fails to load during
training, after the last completed step is saved.
Under ``torchrun`` every process runs this; rank 0 writes the files (see
``s3prl_colld.launch`` for a launcher whose SIGTERM ends without a traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any, Sequence

from s3prl_colld import checkpoint as ckpt_io
from s3prl_colld.config import deep_merge, from_dict, load_yaml, parse_overrides, to_dict
from s3prl_colld.pretrain.task import PretrainTask, get_task
from s3prl_colld.data.audio import AudioError
from s3prl_colld.data.bucket import DataLoadError
from s3prl_colld.runtime.cli import (USER_ERRORS, UsageError, add_trust_flag, refuse_existing_run, run_command,
                                     run_folder, run_folder_guard, write_yaml_atomic)

log = logging.getLogger("s3prl_colld.pretrain")

__all__ = ["main", "run", "parser", "resolve_config"]


def resolve_config(task_cls: type[PretrainTask], model_yaml: str | None = None, runner_yaml: str | None = None,
                   overrides: str | None = None, base: dict[str, Any] | None = None) -> Any:
    """Build and validate ``task_cls.Config`` (see the module docstring for the order).

    Args:
        model_yaml, runner_yaml: ``-g`` / ``-c`` (default: the task's shipped files).
        overrides: ``-o``'s text.
        base: a checkpoint's config, used instead of the YAML files.

    Raises:
        ConfigError: an unknown key (naming the valid ones), a bad value or a missing file.
    """
    if base is None:
        default_model, default_runner = task_cls.default_config_paths()
        base = load_yaml(runner_yaml or default_runner)
        model_path = Path(model_yaml) if model_yaml else default_model
        if model_yaml or model_path.is_file():
            base = deep_merge(base, {"model": load_yaml(model_path)})
    return from_dict(task_cls.Config, deep_merge(base, parse_overrides(overrides)))


def parser() -> argparse.ArgumentParser:
    """s3prl's ``run_pretrain.py`` flags."""
    p = argparse.ArgumentParser(prog="run_pretrain.py", description="Pretrain (distil) a speech encoder.")
    p.add_argument("-u", "--upstream", required=True, help="the pretrain task, e.g. colld_distiller, hubert_tiny")
    p.add_argument("-n", "--expname", help="run name; the run folder is result/pretrain/NAME")
    p.add_argument("-g", "--upstream_config", help="model config yaml (default: the task's, e.g. configs/pretrain/TASK/model.yaml)")
    p.add_argument("-c", "--config", help="runner config yaml (default: configs/pretrain/TASK/runner.yaml)")
    p.add_argument("-p", "--expdir", help="run folder (instead of result/pretrain/NAME)")
    p.add_argument("-e", "--past_exp", help="checkpoint to resume from exactly (EXPDIR/states-STEP.ckpt)")
    p.add_argument("-o", "--override", help='e.g. "config.runner.total_steps=2000,,config.data.root=/data/LibriSpeech"')
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging; tracebacks for config errors")
    add_trust_flag(p)
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Resolve the task, folder and config, write ``config.yaml``, train; returns the trainer's summary."""
    from s3prl_colld.pretrain.trainer import train  # imports the training stack only when needed

    ckpt_io.trust_checkpoints(args.trust_checkpoint)
    task_cls = get_task(args.upstream)
    expdir = run_folder(args, "pretrain")
    resume = Path(args.past_exp) if args.past_exp else None
    base = None
    if resume is not None:
        state = ckpt_io.load(resume)
        if state.get("kind") == ckpt_io.DOWNSTREAM_KIND:
            raise UsageError(f"{resume} is a downstream checkpoint (run_downstream.py: a {state.get('spec', {}).get('task')}"
                             f" probe), not a run_pretrain.py one: -e takes result/pretrain/NAME/states-STEP.ckpt "
                             f"(continue that probe with run_downstream.py -m train -e {resume})")
        if "task" not in state or "step" not in state:
            raise UsageError(f"{resume} is not a run_pretrain.py checkpoint (it has no task and step): -e takes "
                             "result/pretrain/NAME/states-STEP.ckpt")
        if state.get("task") != task_cls.name:
            raise UsageError(f"{resume} is a checkpoint of task {state.get('task')!r}, not {task_cls.name!r}")
        if args.upstream_config or args.config:
            log.warning("-g / -c are ignored with -e: the checkpoint's config is used (change values with -o)")
        base = state["config"]
        del state
    else:
        refuse_existing_run(expdir)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    with run_folder_guard(expdir, cleanup=rank0):
        cfg = resolve_config(task_cls, args.upstream_config, args.config, args.override, base)
        if rank0:
            write_yaml_atomic(to_dict(cfg), expdir / "config.yaml")
        return train(task_cls, cfg, expdir, resume)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``run_pretrain.py`` / ``colld-pretrain``; returns the exit code (0 also after SIGTERM)."""
    return run_command("run_pretrain.py", parser().parse_args(argv), lambda args: log.info("finished: %s", run(args)),
                       USER_ERRORS + (AudioError, DataLoadError, OSError))  # OSError: e.g. a full disk
