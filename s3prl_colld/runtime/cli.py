"""What both command lines share: usage errors, run folders, logging, ``config.yaml``, the exit-code wrapper."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from s3prl_colld import checkpoint as ckpt_io
from s3prl_colld.config import ConfigError


class UsageError(Exception):
    """A mistake on the command line; printed as one line, exit code 2."""


# mistakes a user can fix, reported as one line (exit code 2) instead of a traceback
USER_ERRORS: tuple[type[BaseException], ...] = (UsageError, ConfigError, ckpt_io.CheckpointError, FileNotFoundError)


def run_folder(args: argparse.Namespace, kind: str) -> Path:
    """``-p``, else ``result/KIND/NAME`` (KIND: pretrain / downstream), else the folder of the ``-e`` checkpoint."""
    if args.expdir:
        return Path(args.expdir)
    if args.expname:
        return Path("result") / kind / args.expname
    if args.past_exp:
        return Path(args.past_exp).parent
    raise UsageError("give a run name with -n NAME (or a run folder with -p DIR, or a checkpoint with -e)")


def refuse_existing_run(expdir: Path) -> None:
    """A run folder that already holds checkpoints is only continued with ``-e``."""
    last = ckpt_io.latest_checkpoint(expdir)
    if last is not None:
        raise UsageError(f"{expdir} already has checkpoints: pass -e {last} to resume, or choose a new -n NAME")


def ensure_writable(expdir: Path) -> None:
    """Create the run folder and make sure files can be written in it (a one-line error before any work)."""
    try:
        expdir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=expdir):
            pass
    except OSError as err:
        raise UsageError(f"cannot write in the run folder {expdir}: {err.strerror or err}: fix its permissions or "
                         "free space, or choose another folder (-p DIR or -n NAME)") from None


RUN_START_FILES = ("config.yaml",)  # what the CLIs write into a run folder before any work


@contextmanager
def run_folder_guard(expdir: Path, cleanup: bool = True) -> Iterator[None]:
    """``ensure_writable(expdir)`` for the block; if the block fails, the folders it created are removed again
    when they hold nothing but ``RUN_START_FILES`` (a failed run leaves no empty run folder behind).

    A folder that existed before, or that holds anything else (a checkpoint, logs), is kept. ``cleanup=False``
    (torchrun ranks other than 0, which share the folder) removes nothing.
    """
    created = [p for p in (expdir, *expdir.parents) if not p.exists()] if cleanup else []  # deepest first
    ensure_writable(expdir)
    try:
        yield
    except BaseException:
        for folder in created:
            left = list(folder.iterdir()) if folder.is_dir() else []
            if folder == expdir and all(p.name in RUN_START_FILES and p.is_file() for p in left):
                for p in left:
                    p.unlink()
            try:
                folder.rmdir()
            except FileNotFoundError:
                continue
            except OSError:  # not empty: kept, with its parents
                break
        raise


def add_trust_flag(parser: argparse.ArgumentParser) -> None:
    """``--trust-checkpoint`` (see ``checkpoint.check_trusted``)."""
    parser.add_argument(
        ckpt_io.TRUST_FLAG, dest="trust_checkpoint", action="store_true",
        help="let s3prl's loaders unpickle upstream / teacher checkpoints (-k, config.teacher.ckpt) that do not load "
             "with torch.load(weights_only=True), such as fairseq's. Unpickling runs any code the file holds: use it "
             "only for files from a source you trust")


def write_yaml_atomic(data: dict[str, Any], path: Path) -> None:
    """``path`` <- YAML of ``data`` (temp file + rename)."""
    ckpt_io.write_atomic(path, lambda f: yaml.safe_dump(data, f, sort_keys=False), "w")


def setup_logging(verbose: bool) -> None:
    """Timestamped messages on stderr; under torchrun only rank 0 logs below WARNING."""
    if logging.getLogger().handlers:
        return
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level if rank == 0 else logging.WARNING,
                        format=f"%(asctime)s %(levelname)s{f' [rank {rank}]' if world > 1 else ''} %(name)s: %(message)s")


def run_command(prog: str, args: argparse.Namespace, command: Callable[[argparse.Namespace], Any],
                errors: tuple[type[BaseException], ...] = USER_ERRORS) -> int:
    """Set up logging and run ``command(args)``; a user error (``errors``) prints one line and returns 2
    (``args.verbose`` re-raises it with its traceback). Returns 0 on success."""
    setup_logging(args.verbose)
    try:
        command(args)
    except errors as err:
        if args.verbose:
            raise
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    return 0
