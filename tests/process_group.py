"""Subprocesses for the tests that never outlive them: each runs in its own session, and a timeout (or any
error) kills the whole group, torchrun's workers included, instead of leaving them spinning in a collective."""

from __future__ import annotations

import os
import signal
import subprocess
from contextlib import contextmanager
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
