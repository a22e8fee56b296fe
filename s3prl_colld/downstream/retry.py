"""Retry a collapsed probe: train again with another probe seed or a lower learning rate until it is not collapsed.

A probe whose best dev result is collapsed (``training.json``: ``collapsed: true``,
see :mod:`~s3prl_colld.downstream.convergence`) measures CTC's blank plateau, not
the features. :func:`probe_with_retry` trains a probe with ``run_downstream.py``;
while the result is collapsed and retries are left, it moves the collapsed run
aside (``RUN.collapsed-K``) and trains again into ``RUN`` with the next
:class:`Retry`'s changes. ``RUN`` then holds the last attempt, so a caller reads
``RUN/dev-best.ckpt`` as before; ``RUN/training.json`` lists every attempt.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from s3prl_colld import checkpoint as ckpt_io

log = logging.getLogger("s3prl_colld.downstream")


class ProbeError(RuntimeError):
    """``run_downstream.py`` failed (its own error message is on stderr)."""


@dataclass(frozen=True)
class Retry:
    """The changes of one retry, relative to the first attempt's config: the probe seed
    (``runner.seed + seed_offset``) and the learning rate (``optimizer.lr * lr_scale``)."""

    seed_offset: int = 0
    lr_scale: float = 1.0

    def overrides(self, seed: int, lr: float) -> str:
        """``-o`` text of this retry given the first attempt's seed and learning rate."""
        return f"config.runner.seed={seed + self.seed_offset},,config.optimizer.lr={lr * self.lr_scale!r}"


# another probe seed first, then a 3x lower learning rate with it, then 10x lower
DEFAULT_RETRIES: tuple[Retry, ...] = (Retry(seed_offset=1000), Retry(seed_offset=1000, lr_scale=1 / 3),
                                      Retry(seed_offset=2000, lr_scale=0.1))


def probe_with_retry(task: str, upstream: str, run: Path, overrides: str = "", ckpt: Optional[Path] = None,
                     retries: Sequence[Retry] = DEFAULT_RETRIES, config: Optional[str] = None) -> dict[str, Any]:
    """Train ``run_downstream.py -m train -u UPSTREAM [-k CKPT] -d TASK -p RUN -o OVERRIDES`` until its best dev
    result is not collapsed, or the ``retries`` are spent.

    Args:
        overrides: ``-o`` text (``config.a.b=v,,...``; may start with ``,,``).
        retries: the changes tried, in order, after a collapsed attempt (each relative to the first attempt).
        config: ``-c`` (default: the task's ``configs/downstream/TASK.yaml``).

    Returns:
        ``RUN/training.json`` of the last attempt (``collapsed`` false unless every attempt collapsed),
        with ``attempts``: per attempt ``{overrides, folder, collapsed, best, updates, stop_reason}``.
        The caller must not report a result whose ``collapsed`` is true.

    Raises:
        ProbeError: ``run_downstream.py`` exited with an error.
    """
    from s3prl_colld.downstream.cli import main, resolve_config
    from s3prl_colld.downstream.runner import TRAINING_JSON

    run = Path(run)
    base = overrides.lstrip(",")
    cfg = resolve_config(task, config, base)
    tries = [""] + [r.overrides(cfg.runner.seed, cfg.optimizer.lr) for r in retries]
    attempts: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for k, extra in enumerate(tries):
        if k > 0:  # keep the collapsed attempt for inspection
            aside = run.with_name(f"{run.name}.collapsed-{k}")
            if aside.exists():
                shutil.rmtree(aside)
            run.rename(aside)
            attempts[-1]["folder"] = str(aside)
            log.warning("probe %s collapsed (attempt %d): retrying with %s", run, k, extra)
        argv = ["-m", "train", "-u", upstream, "-d", task, "-p", str(run)]
        if ckpt is not None:
            argv += ["-k", str(ckpt)]
        if config is not None:
            argv += ["-c", config]
        text = ",,".join(x for x in (base, extra) if x)
        if text:
            argv += ["-o", text]
        if main(argv) != 0:
            raise ProbeError(f"run_downstream.py {' '.join(argv)} failed (see its error above)")
        summary = json.loads((run / TRAINING_JSON).read_text())
        attempts.append({"overrides": extra, "folder": str(run), "collapsed": summary["collapsed"],
                         "best": summary["best"], "updates": summary["updates"],
                         "stop_reason": summary["stop_reason"]})
        if not summary["collapsed"]:
            break
    summary["attempts"] = attempts
    summary["retries"] = [asdict(r) for r in retries]
    text = json.dumps(summary, indent=1)
    ckpt_io.write_atomic(run / TRAINING_JSON, lambda f: f.write(text), mode="w")
    if summary["collapsed"]:
        log.warning("probe %s is still collapsed after %d attempts: do not report it", run, len(attempts))
    return summary
