"""Checkpoint files: plain dicts, written atomically, read with ``weights_only=True``.

A checkpoint holds only tensors and plain Python values (dict, list, str,
int, float, bool, None), so ``torch.load(path, weights_only=True)`` reads it
and no class is unpickled. ``save_atomic`` writes to a temporary file in the
same folder, flushes it to disk and renames it over the target, so a kill
during a save leaves the previous file intact (``remove_stale_temp_files``
clears what such a kill leaves), and a full disk is an error that names the
folder and the space needed, the previous file intact.

Checkpoints given to s3prl's own loaders (``-k``, ``config.teacher.ckpt``)
are unpickled by some of them with ``weights_only=False``, which runs any
code a crafted file holds. ``check_trusted`` reads such a file with
``weights_only=True`` first and refuses it, unless the user said it is
trusted (``--trust-checkpoint``, which sets ``trust_checkpoints(True)``).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

import torch

log = logging.getLogger(__name__)

CKPT_PATTERN = re.compile(r"^states-(\d+)\.ckpt$")
DOWNSTREAM_KIND = "s3prl_colld_downstream"  # the "kind" of run_downstream.py checkpoints
TEMP_PATTERN = re.compile(r"^\..+\.ckpt\.[^.]+\.tmp$")  # save_atomic's temporary files (mkstemp names)
SPACE_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                errno.EFBIG: "file size limit exceeded"}
TRUST_FLAG = "--trust-checkpoint"
_trusted = False


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or of the wrong kind."""


class UntrustedCheckpointError(CheckpointError):
    """A checkpoint that only loads by unpickling arbitrary objects, which can run code."""


def current_umask() -> int:
    """The process's umask (read without changing it for long)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def state_nbytes(state: Any) -> int:
    """Bytes of the tensor storages in ``state`` (each counted once): about the size ``torch.save`` writes."""
    seen: dict[int, int] = {}

    def walk(x: Any) -> None:
        if torch.is_tensor(x):
            storage = x.untyped_storage()
            seen[storage.data_ptr() or id(storage)] = storage.nbytes()
        elif isinstance(x, (dict, list, tuple)):
            for v in x.values() if isinstance(x, dict) else x:
                walk(v)

    walk(state)
    return sum(seen.values())


def _space_error(path: Path, need: int, reason: str, more: bool = False) -> CheckpointError:
    folder = path.parent
    free = shutil.disk_usage(folder).free
    kept = latest_checkpoint(folder)
    keep = f"The last good checkpoint {kept} is kept" if kept else f"Nothing in {folder} was overwritten"
    return CheckpointError(f"cannot write {path.name} in {folder}: {reason}; it needs {'more than' if more else 'about'} "
                           f"{need / 1e6:.1f} MB and {free / 1e6:.1f} MB are free there. {keep}; free some space "
                           "(then resume from it)")


def write_atomic(path: str | Path, write: Callable[[IO[Any]], Any], mode: str = "wb", need: int = 0) -> Path:
    """``write(f)`` into a temp file beside ``path``, fsync, rename it over ``path``; returns ``path``.

    Args:
        need: bytes the file will take about (0: unknown); more than the free space is an error before writing.

    Raises:
        CheckpointError: the folder cannot be written, or lacks the disk space
            (checked first when ``need`` is given, and on a failed write: the
            message names the folder and the space needed). The file at
            ``path``, if any, is untouched.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if need > shutil.disk_usage(path.parent).free:
            raise _space_error(path, need, "not enough disk space")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except CheckpointError:
        raise
    except BaseException as err:
        written = os.path.getsize(tmp) if tmp and os.path.exists(tmp) else 0
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, OSError) and cause.errno in SPACE_ERRNOS:
            raise _space_error(path, max(need, written), SPACE_ERRNOS[cause.errno], written >= need) from err
        if isinstance(err, RuntimeError) and ("inline_container" in str(err) or "write" in str(err)):
            raise _space_error(path, max(need, written), f"the write failed ({str(err).splitlines()[0]})",
                               written >= need) from err
        if isinstance(cause, OSError):
            kept = latest_checkpoint(path.parent) if path.parent.is_dir() else None
            raise CheckpointError(f"cannot write {path}: {cause.strerror or cause}"
                                  + (f"; the last good checkpoint {kept} is kept" if kept else "")) from err
        raise
    return path


def save_atomic(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` (``torch.save``) via ``write_atomic``, with its size checked first; returns ``path``."""
    return write_atomic(path, lambda f: torch.save(state, f), need=state_nbytes(state) + (1 << 20))


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete ``save_atomic``'s temporary files (``.states-N.ckpt.XXXX.tmp``) left in ``folder`` by a kill."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if TEMP_PATTERN.match(p.name) and p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def trust_checkpoints(enabled: bool = True) -> None:
    """Let ``check_trusted`` pass checkpoints that need full unpickling (the CLIs' ``--trust-checkpoint``)."""
    global _trusted
    _trusted = enabled


def _load_weights_only(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as err:
        if "mmap" not in str(err):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)  # the legacy (non-zip) format


def check_trusted(ckpt: str | Path | None, where: str) -> Any:
    """Make sure a checkpoint may be handed to a loader that unpickles it fully (s3prl's upstream loaders).

    The file must load with ``torch.load(weights_only=True)``: then it holds
    tensors and plain values only, and full unpickling builds the same thing.
    A file that needs more (pickled classes or functions: the way code is
    smuggled in, but also how fairseq and some s3prl checkpoints store their
    configs) is refused unless ``trust_checkpoints(True)`` was called.

    Args:
        ckpt: a path, a URL, or None (the upstream's own default: nothing to check).
        where: how the user gave it, for the message (e.g. ``-k``, ``config.teacher.ckpt``).

    Returns:
        What ``weights_only`` loading gave (for further checks), or None (no
        file, or a trusted file that needs full unpickling).

    Raises:
        UntrustedCheckpointError: the file (or URL) cannot be checked or needs full unpickling.
        CheckpointError: the file cannot be read at all.
    """
    if ckpt is None:
        return None
    text = str(ckpt)
    if re.match(r"^[a-z][a-z0-9+.-]*://", text):
        if _trusted:
            return None
        raise UntrustedCheckpointError(
            f"{where} {text} is a URL: it cannot be checked before it is downloaded and unpickled. Download it, "
            f"then pass the file (it is checked to hold only tensors and plain values), or pass {TRUST_FLAG}")
    path = Path(text)
    if not path.is_file():
        return None  # the caller's own "not found" error says more
    try:
        return _load_weights_only(path)
    except pickle.UnpicklingError as err:
        if _trusted:
            log.warning("%s %s needs full unpickling; loading it because of %s", where, path, TRUST_FLAG)
            return None
        found = re.search(r"WeightsUnpickler error: ([^\n]*?)(?: was not an allowed global.*)?$", str(err), re.M)
        why = found.group(1).strip() if found else type(err).__name__
        raise UntrustedCheckpointError(
            f"{where} {path} does not load with torch.load(weights_only=True) ({why}): the upstream's loader "
            f"would unpickle it fully, which runs whatever code a crafted file holds. If you trust where it comes "
            f"from (e.g. an official fairseq or s3prl release), pass {TRUST_FLAG}") from None
    except Exception as err:  # noqa: BLE001 - a corrupt file: said with its path
        raise CheckpointError(f"cannot read checkpoint {path} ({where}): {err}") from None


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read one of our checkpoints with ``weights_only=True``; clear errors otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the path and the cause
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not an s3prl-colld checkpoint (top level is {type(state).__name__})")
    return state


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (a checkpoint's identity in cache keys)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def step_of(path: str | Path) -> int | None:
    """``states-1200.ckpt`` -> 1200; other names -> None."""
    m = CKPT_PATTERN.match(Path(path).name)
    return int(m.group(1)) if m else None


def list_checkpoints(folder: str | Path) -> list[Path]:
    """The ``states-STEP.ckpt`` files in ``folder``, oldest step first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(step_of(p), p) for p in folder.iterdir()]
    return [p for s, p in sorted((s, p) for s, p in found if s is not None)]


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The ``states-STEP.ckpt`` with the highest step in ``folder``, if any."""
    return next(reversed(list_checkpoints(folder)), None)


def exported(state: dict[str, Any], name: str, path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(config, weights)`` of the module that checkpoint ``state`` (read from ``path``) exports as ``name``.

    A pretrain checkpoint's ``export`` section (``PretrainTask.export_section``) lists
    ``modules: {NAME: {"config", "prefix"}}``; the weights are the ``prefix*`` keys of
    ``state["model"]``. Checkpoints written before export sections are read as exporting
    ``config.model`` under the prefix ``NAME.`` when they have such keys.

    Raises:
        CheckpointError: the checkpoint exports no ``name`` (naming the upstream that loads it, if any).
    """
    section = state.get("export")
    if section is None and any(k.startswith(f"{name}.") for k in state.get("model", {})):
        section = {"modules": {name: {"config": state["config"]["model"], "prefix": f"{name}."}}}
    section = section or {}
    entry = section.get("modules", {}).get(name)
    if entry is None:
        upstreams = section.get("upstreams") or []
        hint = f"; load it with the upstream name {upstreams[0]}" if upstreams else ""
        raise CheckpointError(f"{path} is a checkpoint of task {state.get('task')!r}, which exports no {name} "
                              f"(it exports: {', '.join(section.get('modules', {})) or 'nothing'}){hint}")
    prefix = entry["prefix"]
    return entry["config"], {k[len(prefix):]: v for k, v in state["model"].items() if k.startswith(prefix)}
