"""``-u audio_toy``: a pretrain task on real audio through the real data pipeline, in seconds (no teacher).

Imported by the fault tests and by their subprocess scripts (``tests/`` on ``PYTHONPATH``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from s3prl_colld.pretrain.schema import TaskConfig
from s3prl_colld.pretrain.task import TASKS, register
from s3prl_colld.pretrain.tasks.audio_task import AudioTask


class AudioToy(AudioTask):
    """Regresses each crop's mean |amplitude| ``[B]`` with one parameter."""

    Config = TaskConfig

    def __init__(self, cfg: TaskConfig, expdir: Path) -> None:
        super().__init__(cfg, expdir)
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        level = batch["wav"].abs().sum(1) / batch["wav_lengths"]  # [B]
        return ((level - self.w) ** 2).mean(), {}


if "audio_toy" not in TASKS.classes:
    register("audio_toy")(AudioToy)
