"""``python run_downstream.py -m train -u UPSTREAM [-k CKPT] -d {pr,asr,st} -n NAME ...`` and ``-m evaluate``.

s3prl's flags. Train: the config is the dataclass defaults <- the task's
s3prl recipe (``s3prl_defaults``) <- ``configs/downstream/TASK.yaml`` (or ``-c``) <- ``-o`` overrides
(``config.a.b=v,,config.c=w``, values read as YAML). The run folder is ``-p``,
else ``result/downstream/NAME``. ``-e CKPT`` with ``-m train`` continues that
run exactly (its own spec and config; ``-o`` may change e.g. total_steps).

Evaluate: ``-m evaluate -e result/downstream/NAME/dev-best.ckpt -t test``
decodes the split (``dev``, ``test`` or any split name of the corpus), writes
the predictions and ``SPLIT-results.json`` beside the checkpoint, named after
the corpus split so that no split's results overwrite another's, and prints
the metric. Another checkpoint's (``-e RUN/states-20.ckpt``) go to ``RUN/states-20/``,
so they never replace the dev-best checkpoint's.

An upstream checkpoint (``-k``) must load with ``torch.load(weights_only=True)``
before it reaches s3prl's loader, unless ``--trust-checkpoint`` is given.

Mistakes (a wrong data path, an unknown upstream or config key, bad audio,
an untrusted or wrong kind of checkpoint, a run folder that cannot be
written) print one line on stderr and exit with code 2 (``-v`` shows the
traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, Sequence

from s3prl_colld import checkpoint as ckpt_io
from s3prl_colld.config import CONFIG_DIR, deep_merge, from_dict, load_yaml, parse_overrides, to_dict
from s3prl_colld.data.audio import AudioError
from s3prl_colld.downstream.corpus import DataError
from s3prl_colld.downstream.schema import DownstreamConfig, drop_legacy_keys
from s3prl_colld.downstream.task import TASKS
from s3prl_colld.downstream.upstream import layer_of
from s3prl_colld.runtime.cli import (USER_ERRORS, UsageError, add_trust_flag, refuse_existing_run, run_command,
                                     run_folder, run_folder_guard, write_yaml_atomic)

log = logging.getLogger("s3prl_colld.downstream")


def parser() -> argparse.ArgumentParser:
    """s3prl's ``run_downstream.py`` flags."""
    p = argparse.ArgumentParser(prog="run_downstream.py", description="Probe a frozen upstream on PR / ASR / ST.")
    p.add_argument("-m", "--mode", choices=("train", "evaluate"), required=True)
    p.add_argument("-u", "--upstream", help="an s3prl.hub name: fbank, hubert_local, colld_small, ...")
    p.add_argument("-k", "--upstream_ckpt", help="the upstream's checkpoint (for *_local and our students)")
    p.add_argument("-d", "--downstream", choices=sorted(TASKS.all()), help="the task")
    p.add_argument("-n", "--expname", help="run name; the run folder is result/downstream/NAME")
    p.add_argument("-p", "--expdir", help="run folder (instead of result/downstream/NAME)")
    p.add_argument("-c", "--config", help="config yaml (default: configs/downstream/TASK.yaml)")
    p.add_argument("-o", "--override", help='e.g. "config.runner.total_steps=2000,,config.data.root=/data/LibriSpeech"')
    p.add_argument("-s", "--upstream_feature_selection", default="hidden_states",
                   help="hidden_states (weighted sum of all, default), last_hidden_state or hidden_state_N")
    p.add_argument("-l", "--upstream_layer_selection", type=int, help="read only this hidden state")
    p.add_argument("-e", "--past_exp", help="train: resume from this checkpoint; evaluate: the checkpoint to test")
    p.add_argument("-t", "--evaluate_split", default="test",
                   help="evaluate: dev or test (the config's data.dev_split / data.test_split), or the name of any "
                        "other split of the corpus (e.g. test_noisy); result files are named after the split")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging; tracebacks for errors")
    add_trust_flag(p)
    return p


def resolve_config(task: str, config_yaml: str | None, overrides: str | None,
                   base: dict[str, Any] | None = None) -> DownstreamConfig:
    """Defaults <- s3prl's recipe of ``task`` <- its YAML (or ``-c``) <- ``-o``; or a checkpoint's config ``base``
    (complete already) <- ``-o``. Built as the task's own ``Config``."""
    config_cls = TASKS.get(task).Config
    if base is None:
        base = deep_merge(TASKS.get(task).s3prl_defaults,
                          load_yaml(config_yaml or CONFIG_DIR / "downstream" / f"{task}.yaml"))
    return from_dict(config_cls, drop_legacy_keys(config_cls, deep_merge(base, parse_overrides(overrides)), task))


def train(args: argparse.Namespace) -> dict[str, Any]:
    from s3prl_colld.downstream.runner import DownstreamRunner, RunSpec, load_downstream_checkpoint

    ckpt_io.trust_checkpoints(args.trust_checkpoint)
    expdir = run_folder(args, "downstream")
    if args.past_exp:
        state = load_downstream_checkpoint(args.past_exp)
        spec = RunSpec(**state["spec"])
        cfg = resolve_config(spec.task, None, args.override, state["config"])
    else:
        if not args.upstream or not args.downstream:
            raise UsageError("-m train needs -u UPSTREAM and -d TASK (or -e CKPT to resume)")
        refuse_existing_run(expdir)
        state = None
        ckpt = str(Path(args.upstream_ckpt).resolve()) if args.upstream_ckpt else None
        spec = RunSpec(args.downstream, args.upstream, ckpt,
                       layer_of(args.upstream_feature_selection, args.upstream_layer_selection))
        cfg = resolve_config(spec.task, args.config, args.override)
    with run_folder_guard(expdir):
        write_yaml_atomic({"spec": vars(spec), "config": to_dict(cfg)}, expdir / "config.yaml")
        runner = DownstreamRunner(spec, cfg, expdir, state)
        best = runner.train()
    print(f"best dev {best['metric']}: {best['value']:.2f} at step {best['step']} ({expdir / 'dev-best.ckpt'})")
    return best


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from s3prl_colld.downstream.runner import evaluate_checkpoint, results_folder

    ckpt_io.trust_checkpoints(args.trust_checkpoint)
    if not args.past_exp:
        raise UsageError("-m evaluate needs -e CKPT (e.g. result/downstream/NAME/dev-best.ckpt)")
    ckpt = Path(args.past_exp)
    if not ckpt.is_file():  # before any folder is made: a typo creates nothing
        raise ckpt_io.CheckpointError(f"checkpoint not found: {ckpt}")
    out_dir = results_folder(ckpt)
    with run_folder_guard(out_dir):
        summary = evaluate_checkpoint(ckpt, args.evaluate_split, parse_overrides(args.override), out_dir)
    print(f"{summary['split']} {summary['metric']}: {summary[summary['metric']]:.2f} "
          f"({out_dir / (summary['split'] + '-results.json')})")
    log.info("results: %s", json.dumps({k: v for k, v in summary.items() if k != "layer_weights"}))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``run_downstream.py`` / ``colld-downstream``; returns the exit code."""
    args = parser().parse_args(argv)
    return run_command("run_downstream.py", args, train if args.mode == "train" else evaluate,
                       USER_ERRORS + (DataError, AudioError, OSError))  # OSError: e.g. a full disk
