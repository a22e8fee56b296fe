"""Training sets over length tables: utterances as waveforms (for the pretrain tasks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from s3prl_colld.constants import SAMPLE_RATE
from s3prl_colld.data.audio import load_audio
from s3prl_colld.data.lengths import TableRow, read_length_table


class AudioDataset(Dataset):
    """Utterances of ``ROOT/len_for_bucket/{split}.csv`` between ``min_sec`` and ``max_sec``.

    Item: ``{"id": str, "wav": [N] float}``; ``lengths`` (samples) serves the bucketing sampler.
    """

    def __init__(self, root: str | Path, splits: list[str], min_sec: float = 0.0, max_sec: float | None = None) -> None:
        rows = [r for split in splits for r in read_length_table(root, split)]
        self.rows: list[TableRow] = [
            r for r in rows
            if r.num_samples >= min_sec * SAMPLE_RATE and (max_sec is None or r.num_samples <= max_sec * SAMPLE_RATE)
        ]
        if not self.rows:
            raise ValueError(f"no utterances of {min_sec}-{max_sec} s in {root} splits {splits}")
        self.lengths = [r.num_samples for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        return {"id": row.uttid, "wav": load_audio(row.path)}
