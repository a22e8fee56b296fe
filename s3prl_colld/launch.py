"""``python -m s3prl_colld.launch [torchrun options] run_pretrain.py ...``: torchrun, ending cleanly.

What torchrun (``torch.distributed.run``, torch 2.8) does on SIGTERM (and
SIGINT, SIGHUP, SIGQUIT): its agent raises ``SignalException``, sends the same
signal to every worker, waits up to 30 s for them to exit (then SIGKILLs
them), and re-raises: a ``SignalException`` traceback and exit code 1, even
when every worker saved its checkpoint and exited 0, as ours do on SIGTERM.
When a worker fails, it prints a ``ChildFailedError`` traceback and exits 1,
whatever the worker's own code.

This launcher runs torchrun's own code with the same options and only
changes how it ends:

- after a signal: one line, and exit code ``128 + signal`` (143 for SIGTERM,
  130 for SIGINT), the shell's convention for "ended by that signal"; the
  workers have saved (``run_pretrain.py`` saves after the current step and
  exits 0), so resume with ``-e`` from the last ``states-STEP.ckpt``;
- after a worker failure: one line per failed rank, and the first failed
  rank's exit code (2 for our usage and data errors, whose one-line messages
  the workers print themselves);
- otherwise: exit 0.

The save must fit in torchrun's 30 s grace period (a student of a few hundred
MB takes seconds); if it does not, the SIGKILL leaves the previous
checkpoint intact (saves are atomic) and the next run removes the temporary file.
"""

from __future__ import annotations

import signal
import sys
from typing import Sequence

PROG = "s3prl_colld.launch"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse torchrun's options, run it, and return the exit code described in the module docstring."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(list(argv) if argv is not None else None)
    try:
        run(args)
    except SignalException as err:
        sig = signal.Signals(err.sigval)
        print(f"{PROG}: {sig.name} received: every worker was sent {sig.name} to save a checkpoint and stop; "
              f"resume with -e from the run folder's last states-STEP.ckpt (exit code {128 + sig.value})",
              file=sys.stderr)
        return 128 + sig.value
    except ChildFailedError as err:
        failures = sorted(err.failures.items())
        for rank, failure in failures:
            how = f"signal {-failure.exitcode}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
            print(f"{PROG}: rank {rank} (pid {failure.pid}) failed with {how}; its error is printed above",
                  file=sys.stderr)
        first = failures[0][1].exitcode if failures else 1
        return first if first > 0 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
