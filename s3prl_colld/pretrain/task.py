"""The contract between the trainer and a pretrain task.

A pretrain task is an ``nn.Module`` that owns every module it trains (and any
frozen one it reads, such as a teacher), builds its training data, and turns
one batch into a scalar loss. The trainer (``s3prl_colld.pretrain.trainer``)
does everything else: devices, DDP, AMP, accumulation, clipping, schedule,
logging and checkpoints. Tasks register themselves by name with ``@register``.

What a checkpoint is for is declared here too: ``exports`` names the task's
modules that other code loads (their config and weights go into the
checkpoint's ``export`` section, read by ``checkpoint.exported``), and
``upstreams`` the ``s3prl.hub`` names that load the checkpoint (``s3prl_colld.hub``
registers those of tasks that export a ``student``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from s3prl_colld.config import CONFIG_DIR, ConfigError, to_dict
from s3prl_colld.registry import Registry


class UnknownTaskError(ConfigError):
    """A task name that no module in ``s3prl_colld.pretrain.tasks`` registers."""


TASKS: Registry[type["PretrainTask"]] = Registry("pretrain task", "s3prl_colld.pretrain.tasks", UnknownTaskError)


def register(name: str, upstreams: tuple[str, ...] = ()) -> Callable[[type["PretrainTask"]], type["PretrainTask"]]:
    """Class decorator: make a task available as ``run_pretrain.py -u NAME`` (and its checkpoints as the
    ``s3prl.hub`` names ``upstreams``)."""
    return TASKS.register(name, upstreams=tuple(upstreams))


class PretrainTask(nn.Module):
    """Base class of pretrain tasks.

    Subclasses set ``Config`` (a dataclass subclassing ``schema.TaskConfig``: ``runner``,
    ``optimizer`` and ``data`` fields) and implement the abstract methods.
    ``cfg`` is an instance of ``Config``; ``expdir`` is the run folder.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type]
    exports: ClassVar[tuple[str, ...]] = ()  # modules (with a .cfg) stored as NAME.* in trainable_state_dict()
    upstreams: ClassVar[tuple[str, ...]] = ()  # s3prl.hub names that load this task's checkpoints
    # a model.yaml shared by several tasks, relative to configs/ (None: configs/pretrain/NAME/model.yaml)
    model_config: ClassVar[str | None] = None

    def __init__(self, cfg: Any, expdir: Path) -> None:
        super().__init__()
        self.cfg = cfg
        self.expdir = Path(expdir)

    # ---- set-up -------------------------------------------------------
    @classmethod
    def default_config_paths(cls) -> tuple[Path, Path]:
        """``(model.yaml, runner.yaml)`` shipped for this task: ``configs/pretrain/NAME/`` (the model's
        ``configs/MODEL_CONFIG`` when the task names a shared one)."""
        folder = CONFIG_DIR / "pretrain" / cls.name
        model = CONFIG_DIR / cls.model_config if cls.model_config else folder / "model.yaml"
        return model, folder / "runner.yaml"

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

    def log_summary(self, step: int, means: dict[str, float]) -> str:
        """Called on rank 0 with each log row's means (stat name -> mean over the window); returns extra text
        for the log line (e.g. an objective's accuracy against its chance level) and may log warnings.
        The default adds nothing."""
        return ""

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

    def checkpoint_extras(self) -> dict[str, Any]:
        """Extra top-level checkpoint keys (plain values and tensors), e.g. for s3prl's own upstream loaders.

        They must not reuse the trainer's keys (``task``, ``config``, ``model``, ``optimizer``, ...).
        """
        return {}

    def export_section(self) -> dict[str, Any]:
        """The checkpoint's ``export`` section: ``{"upstreams": [...], "modules": {NAME: {"config", "prefix"}}}``."""
        return {"upstreams": list(self.upstreams),
                "modules": {n: {"config": to_dict(getattr(self, n).cfg), "prefix": f"{n}."} for n in self.exports}}


get_task = TASKS.get  # the task class registered as NAME; UnknownTaskError names the close matches and every task
