"""Checkpoint files: plain dicts, written atomically, read with ``weights_only=True``.

A checkpoint holds only tensors and plain Python values (dict, list, str,
int, float, bool, None), so ``torch.load(path, weights_only=True)`` reads it
and no class is unpickled. ``save_atomic`` writes to a temporary file in the
same folder, flushes it to disk and renames it over the target, so a kill
during a save leaves the previous file intact.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

import torch

CKPT_PATTERN = re.compile(r"^states-(\d+)\.ckpt$")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or of the wrong kind."""


def current_umask() -> int:
    """The process's umask (read without changing it for long)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, write: Callable[[IO[Any]], Any], mode: str = "wb") -> Path:
    """``write(f)`` into a temp file beside ``path``, fsync, rename it over ``path``; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_atomic(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` (``torch.save``) via temp file + fsync + rename; returns ``path``."""
    return write_atomic(path, lambda f: torch.save(state, f))


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
    found = list_checkpoints(folder)
    return found[-1] if found else None


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
