"""``-u toy_regression``: a seconds-long task on in-memory waveforms; the tests' task and a reference task.

A small student (strided conv front-end + frame-wise MLP) regresses, frame
by frame, a fixed random non-linear function of the clean waveform (the
"teacher", made once by ``prepare`` like a real task's k-means targets),
from a masked and noised copy of it. It shows every hook of the
``PretrainTask`` contract:

- ``prepare`` (rank 0, once): writes the teacher to the run folder;
- ``train_dataset``: items are deterministic functions of the index, with ``.lengths``;
- ``collate``: aligned random crops + padding, randomness only from ``generator``;
- ``forward``: masks and noise drawn from torch's and numpy's *global* RNGs
  (which the trainer seeds per rank and checkpoints), loss over valid frames only;
- ``trainable_state_dict``: the student only (the frozen teacher is left out);
- ``export``: extra top-level checkpoint keys.

``model.nan_steps`` makes given forward calls (1-based, counted in this
process) return a NaN loss, to test the trainer's bad-step guard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from s3prl_colld.checkpoint import save_atomic
from s3prl_colld.config import to_dict
from s3prl_colld.constants import FRAME_STRIDE, FRAME_WINDOW
from s3prl_colld.data.bucket import crop_and_pad
from s3prl_colld.pretrain.schema import TaskConfig
from s3prl_colld.pretrain.task import PretrainTask, register

TEACHER_FILE = "toy_teacher.pt"


@dataclass
class ToyModelConfig:
    channels: int = 16  # student front-end channels
    hidden: int = 32  # student MLP width
    targets: int = 8  # target dimensions per frame
    items: int = 48  # synthetic utterances of 0.3-0.9 s
    mask_prob: float = 0.2  # fraction of student input frames zeroed (torch's global RNG)
    noise: float = 0.01  # input noise std; its scale is jittered by +-10 % (numpy's global RNG)
    teacher_seed: int = 99
    nan_steps: list[int] = field(default_factory=list)  # forward calls (1-based) whose loss is NaN


@dataclass
class ToyConfig(TaskConfig):
    model: ToyModelConfig = field(default_factory=ToyModelConfig)


class ToyWaves(Dataset):
    """``items`` deterministic waveforms of 0.3-0.9 s; item ``i``: ``{"id": str, "wav": [N_i] float}``."""

    def __init__(self, items: int) -> None:
        gen = torch.Generator().manual_seed(1234)
        self.lengths: list[int] = torch.randint(4_800, 14_400, (items,), generator=gen).tolist()

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        gen = torch.Generator().manual_seed(index)
        return {"id": f"toy-{index}", "wav": torch.randn(self.lengths[index], generator=gen) * 0.1}


def num_frames(lengths: torch.Tensor) -> torch.Tensor:
    """Valid output frames of a ``FRAME_WINDOW``/``FRAME_STRIDE`` conv for ``lengths`` ``[B]`` samples -> ``[B]``."""
    return ((lengths - FRAME_WINDOW) // FRAME_STRIDE + 1).clamp(min=0)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` ``[B, T]`` where ``mask`` ``[B, T]`` is True (0 if none; no host sync)."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


class ToyStudent(nn.Module):
    """``wav [B, N]`` -> ``[B, T, targets]``, T = (N - 400) // 320 + 1; input frames masked by ``mask [B, T]``."""

    def __init__(self, cfg: ToyModelConfig) -> None:
        super().__init__()
        self.frontend = nn.Conv1d(1, cfg.channels, FRAME_WINDOW, stride=FRAME_STRIDE)
        self.mask_emb = nn.Parameter(torch.zeros(cfg.channels))
        self.mlp = nn.Sequential(nn.Linear(cfg.channels, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, cfg.targets))

    def forward(self, wav: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.frontend(wav[:, None]).transpose(1, 2)  # [B, T, C]
        x = torch.where(mask[..., None], self.mask_emb.to(x.dtype), x)
        return self.mlp(torch.nn.functional.gelu(x))


@register("toy_regression")
class ToyTask(PretrainTask):
    """Masked frame-wise regression of a frozen random teacher; see the module docstring."""

    Config = ToyConfig

    def __init__(self, cfg: ToyConfig, expdir: Path) -> None:
        super().__init__(cfg, expdir)
        self.student = ToyStudent(cfg.model)
        teacher = torch.load(self.expdir / TEACHER_FILE, weights_only=True)
        self.register_buffer("teacher_w", teacher["weight"])  # [targets, 1, FRAME_WINDOW]
        self.calls = 0

    @classmethod
    def prepare(cls, cfg: ToyConfig, expdir: Path) -> None:
        """Write the frozen teacher (a random conv kernel) once per run folder."""
        path = Path(expdir) / TEACHER_FILE
        if not path.is_file():
            gen = torch.Generator().manual_seed(cfg.model.teacher_seed)
            save_atomic({"weight": torch.randn(cfg.model.targets, 1, FRAME_WINDOW, generator=gen) * 0.05}, path)

    def train_dataset(self) -> ToyWaves:
        return ToyWaves(self.cfg.model.items)

    def collate(self, items: list[dict[str, Any]], generator: torch.Generator) -> dict[str, Any]:
        """Returns ``wav [B, N]``, ``wav_lengths [B]`` (crops start at multiples of 320 samples)."""
        d = self.cfg.data
        return crop_and_pad(items, d.crop_min_sec, d.crop_max_sec, FRAME_STRIDE, generator, mode=d.crop)

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss: mean over valid frames and dims of ``(student(masked noisy wav) - tanh(teacher(wav)))^2``."""
        self.calls += 1
        m = self.cfg.model
        wav, lengths = batch["wav"], batch["wav_lengths"]
        with torch.no_grad():
            target = torch.tanh(nn.functional.conv1d(wav[:, None], self.teacher_w, stride=FRAME_STRIDE)).transpose(1, 2)
        valid = torch.arange(target.size(1), device=wav.device)[None, :] < num_frames(lengths)[:, None]  # [B, T]
        mask = torch.rand(valid.shape, device=wav.device) < m.mask_prob  # global torch RNG
        noise_std = m.noise * float(np.random.uniform(0.9, 1.1))  # global numpy RNG
        pred = self.student(wav + noise_std * torch.randn_like(wav), mask)
        err = (pred.float() - target.float()).pow(2).mean(-1)  # [B, T]
        loss = masked_mean(err, valid)
        if self.calls in m.nan_steps:
            loss = loss * float("nan")
        return loss, {"masked_loss": masked_mean(err.detach(), valid & mask), "target_rms": target.pow(2).mean().sqrt()}

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return self.student.state_dict()

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.student.load_state_dict(state)

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"toy_model_config": to_dict(self.cfg.model)}
