"""Length-bucketed batches with per-batch seeds, random crops and padding.

``BucketBatchSampler`` sorts utterances by length (random tie-breaks), cuts
the order into windows of ``bucket_size``, shuffles inside each window, cuts
windows into batches, shuffles the batches, and deals them round-robin to
the DDP ranks (every rank gets the same number). The batches are a pure
function of ``(seed, epoch)`` and the sampler can start at any batch of an
epoch, which is what exact resumption needs.

Every batch carries its own seed, ``mix_seed(seed, epoch, batch, rank)``;
``seeded_loader`` passes it through the ``DataLoader`` to the collate
function as a ``torch.Generator``, so crops depend neither on the number of
workers nor on any global RNG.

Length tables (``len_for_bucket/<split>.csv``) are read by
``s3prl_colld.data.lengths.read_length_table``; datasets expose the lengths
in samples as ``dataset.lengths``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from s3prl_colld.constants import SAMPLE_RATE

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def mix_seed(*values: int) -> int:
    """A 63-bit seed from a tuple of integers (a splitmix64 chain).

    Distinct tuples give unrelated seeds, unlike ``a * K + b`` which collides
    once ``b`` exceeds ``K``.
    """
    h = _GOLDEN
    for v in values:
        h = ((h ^ (int(v) & _MASK64)) + _GOLDEN) & _MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 31
    return h >> 1


class BucketBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields this rank's batches as lists of ``(item index, batch seed)`` pairs.

    Args:
        lengths: samples per item (``dataset.lengths``).
        batch_size: items per batch (per process).
        bucket_size: batches are drawn from windows of this many length-sorted
            items (rounded up to a multiple of ``batch_size``).
        seed: base seed; the batches depend on ``(seed, epoch)`` only.
        rank, world_size: DDP sharding. Every rank gets the same number of
            batches: the epoch's batch list is padded by repeating its first
            batches to a multiple of ``world_size``.
        drop_last: drop incomplete batches (keeps batch shapes uniform).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, bucket_size: int = 64, seed: int = 0,
                 rank: int = 0, world_size: int = 1, drop_last: bool = False) -> None:
        if len(lengths) == 0:
            raise ValueError("BucketBatchSampler: the dataset is empty")
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"BucketBatchSampler: bad batch_size={batch_size}, rank={rank}, world_size={world_size}")
        self.lengths = torch.as_tensor(np.asarray(lengths), dtype=torch.long)
        self.batch_size = batch_size
        self.bucket_size = -(-max(bucket_size, batch_size) // batch_size) * batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0
        self.start_batch = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch, and the batch of this rank to start from (0 = the beginning)."""
        self.epoch = epoch
        self.start_batch = start_batch

    def epoch_batches(self) -> list[list[int]]:
        """All batches of the current epoch, for all ranks (a multiple of ``world_size``)."""
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        gen = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
        n = len(self.lengths)
        perm = torch.randperm(n, generator=gen)  # random tie-breaks between equal lengths
        # numpy's stable argsort (radix sort for integers): the same order as torch.sort(stable=True), ~40x faster
        order = perm[torch.from_numpy(np.argsort(self.lengths[perm].numpy(), kind="stable"))]
        # shuffle inside each window: sort by (window number + uniform noise in [0, 1))
        key = torch.arange(n, dtype=torch.float64).div_(self.bucket_size).floor_() + torch.rand(
            n, generator=gen, dtype=torch.float64)
        order = order[torch.from_numpy(np.argsort(key.numpy(), kind="stable"))]
        # windows are whole batches (bucket_size is a multiple of batch_size): no batch spans two windows
        flat = order.tolist()
        batches = [flat[i: i + self.batch_size] for i in range(0, n, self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size] or batches[:1]
        batches = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
        pad = -len(batches) % self.world_size
        batches += [batches[i % len(batches)] for i in range(pad)]
        self._cache = (self.epoch, batches)
        return batches

    def __len__(self) -> int:
        return max(0, len(self.epoch_batches()) // self.world_size - self.start_batch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        mine = self.epoch_batches()[self.rank:: self.world_size]
        for k in range(self.start_batch, len(mine)):
            seed = mix_seed(self.seed, self.epoch, k, self.rank)  # this rank's batch k of the epoch
            yield [(i, seed) for i in mine[k]]


class SeededDataset(Dataset):
    """``dataset[(index, seed)] -> (dataset[index], seed)``: carries the batch seed to the collate function."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> tuple[Any, int]:
        index, seed = key
        return self.dataset[index], seed


class SeededCollate:
    """Calls ``collate(items, generator)`` with a generator seeded by the batch seed."""

    def __init__(self, collate: Callable[[list[Any], torch.Generator], Any]) -> None:
        self.collate = collate

    def __call__(self, pairs: list[tuple[Any, int]]) -> Any:
        generator = torch.Generator().manual_seed(pairs[0][1])
        return self.collate([item for item, _ in pairs], generator)


class DataLoadError(RuntimeError):
    """Loading a batch failed (in a data-loader worker or in this process); the message is one line."""


def one_line(err: BaseException) -> str:
    """``"ErrorType: message"`` of ``err`` on one line; for an error re-raised from a data-loader worker,
    the original error's last line rather than torch's wrapper text and traceback."""
    text = str(err).strip()
    last = text.splitlines()[-1].strip() if text else ""
    if "Original Traceback" in text:  # torch.utils.data's ExceptionWrapper: the last line is "module.Type: message"
        head, sep, msg = last.partition(": ")
        if sep and head.replace(".", "").replace("_", "").isalnum():
            return f"{head.rsplit('.', 1)[-1]}: {msg}"
    return f"{type(err).__name__}: {last}" if last else type(err).__name__


def seeded_loader(dataset: Dataset, sampler: BucketBatchSampler,
                  collate: Callable[[list[Any], torch.Generator], Any], num_workers: int = 0,
                  pin_memory: bool = False) -> DataLoader:
    """A ``DataLoader`` over ``sampler``'s batches that calls ``collate(items, generator)``.

    The loader's own generator (which seeds the workers) is seeded from the
    sampler's ``(seed, epoch, rank)``, so building the loader does not
    consume the global torch RNG.
    """
    return DataLoader(
        SeededDataset(dataset), batch_sampler=sampler, collate_fn=SeededCollate(collate),
        num_workers=num_workers, pin_memory=pin_memory, persistent_workers=False,
        generator=torch.Generator().manual_seed(mix_seed(sampler.seed, sampler.epoch, sampler.rank, 1)),
    )


def crop_spans(lengths: Sequence[int], min_samples: int, max_samples: int, align: int,
               generator: torch.Generator, mode: str = "random") -> list[tuple[int, int]]:
    """Crop spans for one batch, random aligned starts.

    ``mode="random"``: draws one ``L`` uniformly in ``[min_samples, max_samples]``,
    rounded down to a multiple of ``align`` (at least ``align``).
    ``mode="max_length"``: ``L = max_samples`` exactly (s3prl's ``sequence_length``).
    ``mode="none"``: every utterance whole (no random draw).
    An utterance longer than ``L`` gets a random start that is a multiple of
    ``align`` (320 samples = one 50 Hz frame, so frame-level labels stay
    aligned); shorter ones are kept whole.

    Returns:
        ``(start, end)`` sample indices per utterance.
    """
    if mode == "none":
        return [(0, int(n)) for n in lengths]
    if mode not in ("random", "max_length"):
        raise ValueError(f"crop_spans: unknown mode {mode!r} (random | max_length | none)")
    if min_samples > max_samples:
        raise ValueError(f"crop_spans: min_samples={min_samples} > max_samples={max_samples}")
    if mode == "max_length":
        span = max_samples
    else:
        span = int(torch.randint(min_samples, max_samples + 1, (1,), generator=generator))
        span = max(align, span // align * align)
    # a random multiple of align for each utterance longer than span (one draw each, in order), else 0
    starts = [int(torch.randint((n - span) // align + 1, (1,), generator=generator)) * align if n > span else 0
              for n in lengths]
    return [(start, min(start + span, int(n))) for start, n in zip(starts, lengths)]


def pad_batch(wavs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``B`` waveforms ``[N_b]`` -> ``(padded [B, max N_b], lengths [B] int64)`` (zero padding)."""
    lengths = torch.tensor([w.numel() for w in wavs], dtype=torch.long)
    return torch.nn.utils.rnn.pad_sequence(list(wavs), batch_first=True), lengths


def crop_and_pad(items: Sequence[dict[str, Any]], crop_min_sec: float, crop_max_sec: float, align: int,
                 generator: torch.Generator, sample_rate: int = SAMPLE_RATE, mode: str = "random"
                 ) -> dict[str, torch.Tensor]:
    """Audio-only collate: crops (``crop_spans`` with ``mode``), then padding.

    Args:
        items: dicts with ``"wav"`` ``[N_b]``.

    Returns:
        ``wav [B, N]``, ``wav_lengths [B]``, and ``padded``: a Python bool, False when every crop is ``N``
        samples long (the usual case; models may then skip their padding masks without asking the GPU).
    """
    spans = crop_spans([len(it["wav"]) for it in items], int(crop_min_sec * sample_rate),
                       int(crop_max_sec * sample_rate), align, generator, mode)
    wav, lengths = pad_batch([it["wav"][s:e] for it, (s, e) in zip(items, spans)])
    return {"wav": wav, "wav_lengths": lengths, "padded": bool((lengths < wav.size(1)).any())}
