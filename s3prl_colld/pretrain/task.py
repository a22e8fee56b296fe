"""The contract between the trainer and a pretrain task.

A pretrain task is an ``nn.Module`` that owns every module it trains (and any
frozen one it reads, such as a teacher), builds its training data, and turns
one batch into a scalar loss. The trainer (``s3prl_colld.pretrain.trainer``)
does everything else: devices, DDP, AMP, accumulation, clipping, schedule,
logging and checkpoints. Tasks register themselves by name with ``@register``.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from s3prl_colld.config import CONFIG_DIR, ConfigError

TASKS: dict[str, type["PretrainTask"]] = {}


class UnknownTaskError(ConfigError):
    """A task name that no module in ``s3prl_colld.pretrain.tasks`` registers."""


def register(name: str) -> Callable[[type["PretrainTask"]], type["PretrainTask"]]:
    """Class decorator: make a task available as ``run_pretrain.py -u NAME``."""

    def wrap(cls: type["PretrainTask"]) -> type["PretrainTask"]:
        cls.name = name
        TASKS[name] = cls
        return cls

    return wrap


class PretrainTask(nn.Module):
    """Base class of pretrain tasks.

    Subclasses set ``Config`` (a dataclass subclassing ``schema.TaskConfig``: ``runner``,
    ``optimizer`` and ``data`` fields) and implement the abstract methods.
    ``cfg`` is an instance of ``Config``; ``expdir`` is the run folder.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type]

    def __init__(self, cfg: Any, expdir: Path) -> None:
        super().__init__()
        self.cfg = cfg
        self.expdir = Path(expdir)

    # ---- set-up -------------------------------------------------------
    @classmethod
    def default_config_paths(cls) -> tuple[Path, Path]:
        """``(model.yaml, runner.yaml)`` shipped for this task under ``configs/pretrain/NAME``."""
        folder = CONFIG_DIR / "pretrain" / cls.name
        return folder / "model.yaml", folder / "runner.yaml"

    @classmethod
    def prepare(cls, cfg: Any, expdir: Path) -> None:
        """One-off work before training (e.g. k-means targets); run on rank 0 only, then all ranks wait."""

    def train_dataset(self) -> Dataset:
        """The training set; ``ds.lengths[i]`` is item ``i``'s length in samples (for bucketing).

        Called once per process, before training starts; items should be
        deterministic functions of the index (no global RNG).
        """
        raise NotImplementedError

    def collate(self, items: list[dict[str, Any]], generator: torch.Generator) -> dict[str, Any]:
        """Items -> one batch of CPU tensors. All randomness (crops) must come from ``generator``.

        Runs in data-loader worker processes: it must not touch CUDA or module state.
        """
        raise NotImplementedError

    # ---- training -----------------------------------------------------
    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One batch (tensors moved to the device) -> (scalar loss, stats: scalar tensors or floats to log).

        May draw from the global RNGs (torch, numpy, random), e.g. for masks:
        the trainer seeds them per rank and checkpoints their states. A stat
        missing from some batches is averaged over the batches that have it.
        If ``batch`` has ``"wav_lengths"`` ``[B]`` the trainer logs audio seconds per second.
        """
        raise NotImplementedError

    def compile_modules(self) -> None:
        """``runner.compile``: ``torch.compile`` the modules that dominate a step, in place (state-dict keys
        unchanged). The default compiles nothing and says so."""
        import logging

        logging.getLogger(__name__).warning("config.runner.compile: task %s compiles nothing", self.name)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What the checkpoint stores as the model; frozen teachers may be left out."""
        return self.state_dict()

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of ``trainable_state_dict``."""
        self.load_state_dict(state)

    def export(self) -> dict[str, Any]:
        """Extra top-level checkpoint keys (plain values and tensors), e.g. for upstream loading.

        They must not reuse the trainer's keys (``task``, ``config``, ``model``, ``optimizer``, ...).
        """
        return {}


def get_task(name: str) -> type[PretrainTask]:
    """The task class registered as ``name`` (imports every module of ``s3prl_colld.pretrain.tasks`` first).

    Raises:
        UnknownTaskError: naming the available tasks and the closest matches.
    """
    import s3prl_colld.pretrain.tasks  # noqa: F401  (registers the tasks)

    if name not in TASKS:
        close = difflib.get_close_matches(name, list(TASKS), n=3)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise UnknownTaskError(f"unknown pretrain task {name!r}.{hint} Available tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def task_config_dict(cfg: Any) -> dict[str, Any]:
    """A task config as plain dicts, for the checkpoint and ``config.yaml``."""
    from s3prl_colld.config import to_dict

    return to_dict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
