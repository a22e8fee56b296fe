"""The contract between the trainer and a pretrain task.

A pretrain task is an ``nn.Module`` that owns every module it trains (and any
frozen one it reads, such as a teacher), builds its training data, and turns
one batch into a scalar loss. The trainer (``s3prl_colld.pretrain.trainer``)
does everything else: devices, DDP, AMP, accumulation, clipping, schedule,
logging and checkpoints. Tasks register themselves by name with ``@register``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from s3prl_colld.config import CONFIG_DIR

TASKS: dict[str, type["PretrainTask"]] = {}


def register(name: str) -> Callable[[type["PretrainTask"]], type["PretrainTask"]]:
    """Class decorator: make a task available as ``run_pretrain.py -u NAME``."""

    def wrap(cls: type["PretrainTask"]) -> type["PretrainTask"]:
        cls.name = name
        TASKS[name] = cls
        return cls

    return wrap


class PretrainTask(nn.Module):
    """Base class of pretrain tasks.

    Subclasses set ``Config`` (a dataclass with at least ``runner``,
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
        """The training set; ``len(ds.lengths)`` equals ``len(ds)`` (samples per item, for bucketing)."""
        raise NotImplementedError

    def collate(self, items: list[dict[str, Any]], generator: torch.Generator) -> dict[str, Any]:
        """Items -> one batch. All randomness (crops) must come from ``generator``."""
        raise NotImplementedError

    # ---- training -----------------------------------------------------
    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One batch -> (scalar loss, stats of scalar tensors to log)."""
        raise NotImplementedError

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What the checkpoint stores as the model; frozen teachers may be left out."""
        return self.state_dict()

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of ``trainable_state_dict``."""
        self.load_state_dict(state)

    def export(self) -> dict[str, Any]:
        """Extra top-level checkpoint keys (plain values and tensors), e.g. for upstream loading."""
        return {}


def task_config_dict(cfg: Any) -> dict[str, Any]:
    """A task config as plain dicts, for the checkpoint and ``config.yaml``."""
    from s3prl_colld.config import to_dict

    return to_dict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
