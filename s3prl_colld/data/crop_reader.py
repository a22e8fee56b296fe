"""Decode only the crops: items whose waveform is read when the collate slices it.

The trainer's collate (``bucket.crop_and_pad``) draws one crop per utterance
from the utterances' lengths, then slices each waveform. When the dataset
returns whole decoded files, every step decodes whole utterances (12.3 s on
average in LibriSpeech) to keep 4-8 s crops of them. ``CropReader`` returns
``LazyWav`` items instead: ``len()`` comes from the length table and
``wav[start:stop]`` decodes only that span (FLAC and WAV seek to a sample),
so the same crops come out (same lengths, same random draws) for about half
the decoding (``bench/bench_data.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from s3prl_colld.constants import SAMPLE_RATE
from s3prl_colld.data.audio import load_audio, reading


def load_audio_span(path: str | Path, start: int, stop: int) -> torch.Tensor:
    """Samples ``[start, stop)`` of a 16 kHz mono file as ``[stop - start]`` float32 (fewer at the file's end).

    Equal to ``load_audio(path)[start:stop]``; a file that is not 16 kHz mono
    gets ``load_audio``'s error (or its conversion, never here: see ``CropReader``).

    Raises:
        AudioError: naming ``path``, when it is missing, unreadable or not 16 kHz mono.
    """
    with reading(path), sf.SoundFile(str(path)) as f:
        if f.channels != 1 or f.samplerate != SAMPLE_RATE:
            return load_audio(path)[start:stop]  # raises the error that says what to do
        start = min(max(start, 0), f.frames)
        f.seek(start)
        data = f.read(max(0, min(stop, f.frames) - start), dtype="float32", always_2d=True)
    return torch.from_numpy(np.ascontiguousarray(data[:, 0]))


class LazyWav:
    """A waveform of ``num_samples`` samples that is decoded only where it is sliced (``wav[a:b]``)."""

    __slots__ = ("path", "num_samples")

    def __init__(self, path: str | Path, num_samples: int) -> None:
        self.path, self.num_samples = path, int(num_samples)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, span: slice) -> torch.Tensor:
        if not isinstance(span, slice) or span.step not in (None, 1):
            raise TypeError(f"LazyWav supports contiguous slices only, got {span!r}")
        start, stop, _ = span.indices(self.num_samples)
        return load_audio_span(self.path, start, stop)


class CropReader(Dataset):
    """An ``AudioDataset`` (``rows``, ``lengths``) whose items are ``{"id", "wav": LazyWav}``."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.lengths = dataset.lengths

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.dataset.rows[index]
        return {"id": row.uttid, "wav": LazyWav(row.path, self.lengths[index])}
