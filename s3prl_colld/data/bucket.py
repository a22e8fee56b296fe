"""Length-bucketed batches, random crops and padding.

``BucketBatchSampler`` sorts utterances by length, cuts the order into
windows of ``bucket_size``, shuffles inside and between windows, forms
batches of similar lengths and shards them across DDP ranks. It is a pure
function of ``(seed, epoch)`` and can start at any batch of an epoch, which
is what exact resumption needs. Each batch carries its own crop seed, so
crops do not depend on the number of data-loader workers.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class BucketBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields batches as lists of ``(item index, crop seed)`` pairs.

    Args:
        lengths: samples per item.
        batch_size: items per batch (per process).
        bucket_size: length-sorted window from which batches are drawn.
        seed: base seed; the order depends on ``(seed, epoch)`` only.
        rank, world_size: DDP sharding; every rank gets the same number of batches.
        drop_last: drop a final incomplete batch (keeps batch shapes uniform).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, bucket_size: int = 64, seed: int = 0,
                 rank: int = 0, world_size: int = 1, drop_last: bool = False) -> None:
        if len(lengths) == 0:
            raise ValueError("BucketBatchSampler: the dataset is empty")
        self.lengths = torch.as_tensor(list(lengths))
        self.batch_size = batch_size
        self.bucket_size = max(bucket_size, batch_size)
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch, and the batch (of this rank) to start from."""
        self.epoch = epoch
        self.start_batch = start_batch

    def _all_batches(self) -> list[list[int]]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        noise = torch.rand(len(self.lengths), generator=gen)  # random tie-breaks between equal lengths
        order = sorted(range(len(self.lengths)), key=lambda i: (int(self.lengths[i]), float(noise[i])))
        windows = [order[i: i + self.bucket_size] for i in range(0, len(order), self.bucket_size)]
        batches: list[list[int]] = []
        for window in windows:
            perm = torch.randperm(len(window), generator=gen).tolist()
            shuffled = [window[p] for p in perm]
            batches += [shuffled[i: i + self.batch_size] for i in range(0, len(shuffled), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size] or batches[:1]
        perm = torch.randperm(len(batches), generator=gen).tolist()
        batches = [batches[p] for p in perm]
        usable = len(batches) - len(batches) % self.world_size if len(batches) >= self.world_size else len(batches)
        while len(batches) < self.world_size:  # tiny data: repeat so every rank has a batch
            batches.append(batches[len(batches) % max(usable, 1)])
            usable = len(batches)
        return batches[:usable]

    def batches_per_rank(self) -> int:
        return len(self._all_batches()) // self.world_size

    def __len__(self) -> int:
        return self.batches_per_rank() - self.start_batch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        mine = self._all_batches()[self.rank:: self.world_size]
        for k in range(self.start_batch, len(mine)):
            crop_seed = (self.seed * 1_000_003 + self.epoch) * 100_003 + k * self.world_size + self.rank
            yield [(i, crop_seed) for i in mine[k]]


def crop_spans(lengths: Sequence[int], min_samples: int, max_samples: int, align: int,
               generator: torch.Generator) -> list[tuple[int, int]]:
    """One crop length per batch, random aligned starts.

    Draws ``L`` uniformly in ``[min_samples, max_samples]`` (rounded down to a
    multiple of ``align``); an utterance longer than ``L`` gets a random start
    that is a multiple of ``align`` (so frame-level labels stay aligned),
    shorter ones are kept whole. Returns ``(start, end)`` per utterance.
    """
    span = int(torch.randint(min_samples, max_samples + 1, (1,), generator=generator))
    span = max(align, span // align * align)
    out = []
    for n in lengths:
        if n <= span:
            out.append((0, n))
            continue
        slots = (n - span) // align + 1
        start = int(torch.randint(slots, (1,), generator=generator)) * align
        out.append((start, start + span))
    return out


def pad_batch(wavs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``B`` waveforms ``[N_b]`` -> ``(padded [B, max N], lengths [B])`` (zero padding)."""
    lengths = torch.tensor([w.numel() for w in wavs])
    return torch.nn.utils.rnn.pad_sequence(list(wavs), batch_first=True), lengths


def crop_and_pad(items: Sequence[dict], crop_min_sec: float, crop_max_sec: float, align: int,
                 generator: torch.Generator, sample_rate: int = 16_000) -> dict[str, torch.Tensor]:
    """Audio-only collate: random crops then padding.

    Returns ``wav [B, N]``, ``wav_lengths [B]``.
    """
    spans = crop_spans([len(it["wav"]) for it in items], int(crop_min_sec * sample_rate),
                       int(crop_max_sec * sample_rate), align, generator)
    wav, lengths = pad_batch([it["wav"][s:e] for it, (s, e) in zip(items, spans)])
    return {"wav": wav, "wav_lengths": lengths}
