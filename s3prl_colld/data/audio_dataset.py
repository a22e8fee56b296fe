"""Training sets over length tables: utterances as waveforms (for the pretrain tasks)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from s3prl_colld.config import choice
from s3prl_colld.constants import SAMPLE_RATE
from s3prl_colld.data.audio import load_audio
from s3prl_colld.data.audio_check import ON_BAD_AUDIO, BadAudioError, bad_audio_message, find_problems
from s3prl_colld.data.lengths import TableRow, read_length_table

log = logging.getLogger(__name__)


class AudioDataset(Dataset):
    """Utterances of ``ROOT/len_for_bucket/{split}.csv`` between ``min_sec`` and ``max_sec``.

    Every file is checked once, up front (``s3prl_colld.data.audio_check``,
    cached): with ``on_bad_audio="error"`` any unusable file is an error that
    lists all of them; with ``"skip"`` each is logged and left out
    (``self.skipped``). ``resample`` converts audio that is not 16 kHz mono.

    Item: ``{"id": str, "wav": [N] float}``; ``lengths`` (samples at 16 kHz) serves the bucketing sampler.
    """

    def __init__(self, root: str | Path, splits: list[str], min_sec: float = 0.0, max_sec: float | None = None,
                 resample: bool = False, on_bad_audio: str = "error", check: bool = True,
                 log_skipped: bool = True) -> None:
        """``log_skipped=False``: skipped files are only kept in ``skipped``, not logged (when an earlier
        instance over the same data, e.g. the task's ``prepare``, has logged them)."""
        choice(on_bad_audio, ON_BAD_AUDIO, "config.data.on_bad_audio")
        self.resample, self.on_bad_audio = resample, on_bad_audio
        self.cache_name = str(Path(root).resolve())

        def in_range(n: int) -> bool:
            return n >= min_sec * SAMPLE_RATE and (max_sec is None or n <= max_sec * SAMPLE_RATE)

        rows = [r for split in splits for r in read_length_table(root, split)]
        # table lengths are at each file's own rate: with resample they only become 16 kHz lengths once checked
        rows = rows if resample else [r for r in rows if in_range(r.num_samples)]
        self.skipped: list[tuple[Path, str]] = []
        lengths = [r.num_samples for r in rows]  # aligned with rows (no Path keys: 281k rows at every start)
        bad: set[Path] = set()
        if check and rows:
            facts, problems = find_problems([r.path for r in rows], resample, lengths, cache_name=self.cache_name)
            lengths = [f.samples_16k() for f in facts]
            if problems and on_bad_audio == "error":
                raise BadAudioError(bad_audio_message(
                    problems, len(rows), f"{root} (splits {', '.join(splits)})",
                    "Fix or remove them and rerun `python -m s3prl_colld.data.lengths`, or set "
                    "config.data.on_bad_audio=skip to train without them"))
            if problems and log_skipped:
                for path, reason in problems:
                    log.warning("skipping %s: %s", path, reason)
                log.warning("skipped %d of %d audio files (config.data.on_bad_audio=skip)", len(problems), len(rows))
            bad = {p for p, _ in problems}
            self.skipped = list(problems)
        kept = [(r, n) for r, n in zip(rows, lengths) if in_range(n) and (not bad or r.path not in bad)]
        self.rows: list[TableRow] = [r for r, _ in kept]
        if not self.rows:
            raise ValueError(f"no utterances of {min_sec}-{max_sec} s in {root} splits {splits}")
        self.lengths = [n for _, n in kept]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        return {"id": row.uttid, "wav": load_audio(row.path, resample=self.resample)}
