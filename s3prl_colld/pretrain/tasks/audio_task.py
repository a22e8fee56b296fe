"""``AudioTask``: the data side shared by tasks that train on plain audio (distillation, input distillation)."""

from __future__ import annotations

from typing import Any

import torch

from s3prl_colld.constants import FRAME_STRIDE
from s3prl_colld.data.audio_dataset import AudioDataset
from s3prl_colld.data.bucket import crop_and_pad
from s3prl_colld.data.crop_reader import CropReader
from s3prl_colld.pretrain.task import PretrainTask


class AudioTask(PretrainTask):
    """A task whose items are utterances of ``config.data`` and whose batches are random crops (``wav``, ``wav_lengths``)."""

    def train_dataset(self) -> AudioDataset | CropReader:
        """The utterances of ``config.data``; items decode only their crop (``CropReader``) unless resampled."""
        d = self.cfg.data
        dataset = AudioDataset(d.root, d.splits, d.min_sec, d.max_sec)
        return dataset if getattr(dataset, "resample", False) else CropReader(dataset)

    def collate(self, items: list[dict[str, Any]], generator: torch.Generator) -> dict[str, Any]:
        d = self.cfg.data
        return crop_and_pad(items, d.crop_min_sec, d.crop_max_sec, FRAME_STRIDE, generator)
