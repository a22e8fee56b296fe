"""``-u toy_regression``: a tiny task on in-memory waveforms, for tests and as a reference task.

A small conv net regresses a fixed random function of synthetic waveforms.
``forward`` draws from torch's and numpy's global RNGs (like masking does in
real tasks), so resuming exercises RNG-state restoration. ``nan_steps``
injects non-finite losses at given calls to test the bad-step guard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from s3prl_colld.data.bucket import crop_and_pad
from s3prl_colld.pretrain.schema import DataConfig, OptimizerConfig, RunnerConfig
from s3prl_colld.pretrain.task import PretrainTask, register


@dataclass
class ToyModelConfig:
    channels: int = 16
    items: int = 48  # synthetic utterances
    nan_steps: list[int] = field(default_factory=list)  # forward calls (1-based) whose loss is NaN


@dataclass
class ToyConfig:
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ToyModelConfig = field(default_factory=ToyModelConfig)


class ToyWaves(Dataset):
    """Deterministic waveforms of 0.3-0.9 s: ``{"wav": [N]}``."""

    def __init__(self, items: int) -> None:
        gen = torch.Generator().manual_seed(1234)
        self.lengths = torch.randint(4_800, 14_400, (items,), generator=gen).tolist()

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        gen = torch.Generator().manual_seed(index)
        return {"wav": torch.randn(self.lengths[index], generator=gen) * 0.1}


@register("toy_regression")
class ToyTask(PretrainTask):
    """Regress a frozen random conv net's output from the (noised) waveform."""

    Config = ToyConfig

    def __init__(self, cfg: ToyConfig, expdir: Path) -> None:
        super().__init__(cfg, expdir)
        c = cfg.model.channels
        self.net = nn.Sequential(nn.Conv1d(1, c, 400, stride=320), nn.GELU(), nn.Conv1d(c, 8, 1))
        gen = torch.Generator().manual_seed(99)
        self.register_buffer("target_w", torch.randn(8, 1, 400, generator=gen) * 0.05)
        self.calls = 0

    def train_dataset(self) -> ToyWaves:
        return ToyWaves(self.cfg.model.items)

    def collate(self, items: list[dict[str, Any]], generator: torch.Generator) -> dict[str, Any]:
        d = self.cfg.data
        return crop_and_pad(items, d.crop_min_sec, d.crop_max_sec, 320, generator)

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.calls += 1
        wav = batch["wav"][:, None]  # [B, 1, N]
        noise = torch.randn_like(wav) * 0.01 + float(np.random.uniform(-1e-3, 1e-3))
        pred = self.net(wav + noise)
        target = nn.functional.conv1d(wav, self.target_w, stride=320)
        loss = (pred - target).pow(2).mean()
        if self.calls in self.cfg.model.nan_steps:
            loss = loss * float("nan")
        return loss, {"target_rms": target.pow(2).mean().sqrt().detach()}
