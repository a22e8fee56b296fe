"""A small CoLLD task on the session's tiny teacher, and a padded waveform batch: what the CoLLD tests share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from s3prl_colld.checkpoint import latest_checkpoint
from s3prl_colld.config import from_dict
from s3prl_colld.pretrain.tasks.distill import DistillConfig, DistillTask

TINY_CNN = [[128, 10, 5], [128, 3, 2], [128, 3, 2], [128, 3, 2], [128, 3, 2], [128, 2, 2], [128, 2, 2]]
SMALL_STUDENT = {"layers": 2, "dim": 64, "ffn_dim": 128, "heads": 4, "conv_pos": 16, "conv_pos_groups": 4,
                 "dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0,
                 "cnn": {"conv_layers": TINY_CNN}}


def colld_task(corpus: Path, teacher_run: Path, tmp_path: Path, **sections: dict[str, Any]) -> DistillTask:
    """A CoLLD task (span masks 0.8 x 10, per-frame InfoNCE, K = 20) with a small student, in eval mode (no
    dropout); ``sections`` update the config's sections (``loss={...}``, ``mask={...}``, ...)."""
    raw: dict[str, Any] = {
        "data": {"root": str(corpus)}, "teacher": {"ckpt": str(latest_checkpoint(teacher_run))},
        "heads": {"map": "uniform"}, "mask": {"prob": 0.8, "length": 10},
        "loss": {"kind": "contrastive", "num_negatives": 20, "temperature": 0.1, "masked_only": True},
        "model": dict(SMALL_STUDENT)}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    torch.manual_seed(0)
    return DistillTask(from_dict(DistillConfig, raw), tmp_path).eval()


def wav_batch(lengths: list[int]) -> dict[str, torch.Tensor]:
    """Noise waveforms of ``lengths`` samples, zero-padded: ``{"wav": [B, max(lengths)], "wav_lengths": [B]}``."""
    gen = torch.Generator().manual_seed(3)
    wav = torch.randn(len(lengths), max(lengths), generator=gen) * 0.1
    for i, n in enumerate(lengths):
        wav[i, n:] = 0
    return {"wav": wav, "wav_lengths": torch.tensor(lengths)}
