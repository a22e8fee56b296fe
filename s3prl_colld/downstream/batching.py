"""s3prl's training batches for PR, ASR and ST, as pure functions of ``(seed, epoch)``.

Each returns one epoch's batches (lists of utterance indices) in the order they
are trained on, so a run resumed mid-epoch continues with the same batches.

- :func:`libriphone_batches` (PR; s3prl ``downstream/ctc/corpus/libriphone.py`` + ``ctc/data.py``):
  utterances sorted by target length (longest first); every utterance starts a
  window of ``batch_size`` neighbours (windows near the end are moved back so
  that they are full), and the epoch visits all windows in random order; a
  window whose first utterance is longer than 300,000 samples is halved.
- :func:`bucket_batches` (ASR; s3prl ``downstream/asr/dataset.py``): utterances
  sorted by audio length (longest first) and cut into consecutive buckets of
  ``batch_size``; a full bucket whose longest utterance exceeds 2,000 samples
  is split in two halves (so on real speech every batch has ``batch_size // 2``
  utterances); a last, partial bucket is kept if it has more than one
  utterance; the batches are shuffled every epoch.
- :func:`max_tokens_batches` (ST; fairseq's ``batch_by_size`` as s3prl's ST
  task uses it): utterances sorted by feature frames (longest first, ties in
  random order), cut into batches whose padded size ``len(batch) * longest``
  stays within ``max_tokens``; the batches are shuffled every epoch.
- :func:`shuffled_batches`: random batches of ``batch_size`` (not s3prl's; ``runner.batching: shuffle``).
"""

from __future__ import annotations

from typing import Sequence

import torch

from s3prl_colld.config import ConfigError

PR_HALF_BATCH_SAMPLES = 300_000  # s3prl ctc/data.py: collect_audio_batch(half_batch_size_wav_len=300000)
ASR_HALF_BATCH_SAMPLES = 2_000  # s3prl asr/dataset.py: HALF_BATCHSIZE_TIME = 2000 (compared with samples)


def _generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed + epoch)


def longest_first(lengths: Sequence[int]) -> list[int]:
    """Indices sorted by ``lengths``, longest first; equal lengths keep their order (a stable sort)."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def libriphone_batches(target_lengths: Sequence[int], audio_samples: Sequence[int], batch_size: int, seed: int,
                       epoch: int, half_samples: int = PR_HALF_BATCH_SAMPLES) -> list[list[int]]:
    """PR: one window of ``batch_size`` length-sorted utterances per utterance, in random order."""
    order = longest_first(target_lengths)
    n = len(order)
    out = []
    for start in torch.randperm(n, generator=_generator(seed, epoch)).tolist():
        begin = max(0, min(n - batch_size, start))
        window = order[begin: begin + batch_size]
        if len(window) > 1 and audio_samples[window[0]] > half_samples:
            window = window[: len(window) // 2]
        out.append(window)
    return out


def bucket_batches(audio_samples: Sequence[int], batch_size: int, seed: int, epoch: int,
                   half_samples: int = ASR_HALF_BATCH_SAMPLES) -> list[list[int]]:
    """ASR: consecutive buckets of length-sorted utterances (halved when long), shuffled."""
    order = longest_first(audio_samples)
    batches: list[list[int]] = []
    for begin in range(0, len(order), batch_size):
        bucket = order[begin: begin + batch_size]
        if len(bucket) == batch_size:
            if batch_size >= 2 and max(audio_samples[i] for i in bucket) > half_samples:
                batches += [bucket[: batch_size // 2], bucket[batch_size // 2:]]
            else:
                batches.append(bucket)
        elif len(bucket) > 1:  # s3prl drops a last bucket of a single utterance
            batches.append(bucket)
    perm = torch.randperm(len(batches), generator=_generator(seed, epoch)).tolist()
    return [batches[i] for i in perm]


def max_tokens_batches(frames: Sequence[int], max_tokens: int, seed: int, epoch: int) -> list[list[int]]:
    """ST: length-sorted batches of at most ``max_tokens`` padded frames, shuffled.

    Raises:
        ConfigError: an utterance alone is longer than ``max_tokens`` frames.
    """
    gen = _generator(seed, epoch)
    tie = torch.randperm(len(frames), generator=gen).tolist()
    order = sorted(range(len(frames)), key=lambda i: (-frames[i], tie[i]))
    batches: list[list[int]] = []
    batch: list[int] = []
    longest = 0
    for i in order:
        if frames[i] > max_tokens:
            raise ConfigError(f"an utterance has {frames[i]} feature frames, more than config.runner.max_tokens="
                              f"{max_tokens}: raise max_tokens (s3prl: 10000) or lower config.head.max_source_positions")
        if batch and (len(batch) + 1) * max(longest, frames[i]) > max_tokens:
            batches.append(batch)
            batch, longest = [], 0
        batch.append(i)
        longest = max(longest, frames[i])
    if batch:
        batches.append(batch)
    perm = torch.randperm(len(batches), generator=gen).tolist()
    return [batches[i] for i in perm]


def shuffled_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Random batches of ``batch_size`` utterances (the last one may be smaller)."""
    order = torch.randperm(n, generator=_generator(seed, epoch)).tolist()
    return [order[i: i + batch_size] for i in range(0, n, batch_size)]
