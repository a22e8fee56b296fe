"""Subprocesses for the tests that never outlive them: each runs in its own session, and a timeout (or any
error) kills the whole group, torchrun's workers included, instead of leaving them spinning in a collective."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence


@contextmanager
def popen_group(cmd: Sequence[str], **kwargs: Any) -> Iterator[subprocess.Popen]:
    """``subprocess.Popen(cmd, start_new_session=True, ...)``; on leaving, whatever of its group still runs is killed."""
    proc = subprocess.Popen(list(cmd), start_new_session=True, **kwargs)
    try:
        yield proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def run_group(cmd: Sequence[str], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess:
    """Like ``subprocess.run(cmd, capture_output=True, text=True, timeout=...)``, but a timeout kills the group."""
    with popen_group(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs) as proc:
        out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(list(cmd), proc.returncode, out, err)


def slow_toy_worker(path: Path, setup: str = "", first_arg: int = 1) -> Path:
    """Write a worker script at ``path``: ``run_pretrain.py``'s main with ``ToyTask.forward`` slowed by 50 ms.

    ``setup`` is Python run first (after ``import os, sys, time`` and ``from pathlib import Path``); the
    script passes ``sys.argv[first_arg:]`` to the CLI. Slow steps give a signal time to land mid-run.
    """
    path.write_text(textwrap.dedent("""
        import os, sys, time
        from pathlib import Path
        {setup}
        from s3prl_colld.pretrain.tasks.toy import ToyTask
        forward = ToyTask.forward
        def slow(self, batch):
            time.sleep(0.05)
            return forward(self, batch)
        ToyTask.forward = slow
        from s3prl_colld.pretrain.cli import main
        sys.exit(main(sys.argv[{first_arg}:]))
    """).format(setup=setup, first_arg=first_arg))
    return path
