"""``AudioTask``: the data side shared by tasks that train on plain audio (distillation, input distillation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from s3prl_colld.constants import FRAME_STRIDE
from s3prl_colld.data.audio_dataset import AudioDataset
from s3prl_colld.data.bucket import crop_and_pad
from s3prl_colld.data.crop_reader import CropReader
from s3prl_colld.pretrain.task import PretrainTask


class AudioTask(PretrainTask):
    """A task whose items are utterances of ``config.data`` and whose batches are crops (``data.crop``) of them
    (``wav``, ``wav_lengths``)."""

    @classmethod
    def prepare(cls, cfg: Any, expdir: Path) -> None:
        """Check the corpus's audio on rank 0 (cached), so that every rank's ``train_dataset`` reads the result;
        the files ``data.on_bad_audio=skip`` leaves out are logged here, once."""
        cls.dataset_of(cfg)

    @staticmethod
    def dataset_of(cfg: Any, log_skipped: bool = True) -> AudioDataset:
        """The checked training set of ``cfg.data`` (bad files: an error or skipped, per ``data.on_bad_audio``)."""
        d = cfg.data
        return AudioDataset(d.root, d.splits, d.min_sec, d.max_sec, d.resample, d.on_bad_audio,
                            log_skipped=log_skipped)

    def train_dataset(self) -> AudioDataset | CropReader:
        """The checked utterances of ``config.data``; items decode only their crop (``CropReader``) unless
        resampled (then whole files, converted). Skipped files were logged by ``prepare``."""
        dataset = self.dataset_of(self.cfg, log_skipped=False)
        return dataset if getattr(dataset, "resample", False) else CropReader(dataset)

    def collate(self, items: list[dict[str, Any]], generator: torch.Generator) -> dict[str, Any]:
        d = self.cfg.data
        return crop_and_pad(items, d.crop_min_sec, d.crop_max_sec, FRAME_STRIDE, generator, mode=d.crop)
