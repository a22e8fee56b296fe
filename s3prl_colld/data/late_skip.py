"""``data.on_bad_audio=skip`` during training: a file that fails to decode after its up-front check is dropped.

The up-front check (``data.audio_check``) is cached on each file's size and
``mtime_ns``, so a file damaged in place with both kept (or failing on a
flaky disk) passes it and fails only when a training step reads it. With
``skip``, ``LateSkip`` makes that one file drop out of its batch instead of
ending the run: the dataset side (``LateSkip.dataset``: items decoded by
``__getitem__``) turns the failing item into a ``Dropped`` marker, the
collate side (``LateSkip.collate``: ``CropReader`` items decode their crop in
the collate) drops the item whose file failed and collates the others again
with the same random draws (the generator's state is restored). Each such
file is recorded once per process: logged as a warning naming it and why,
and forgotten by the audio-check cache, so the next run's check decodes it
again and leaves it out up front. A batch whose every file fails is an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import Dataset

from s3prl_colld.data.audio import AudioError
from s3prl_colld.data.audio_check import forget_checks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dropped:
    """An item whose audio file failed to decode (``LateSkip.dataset``'s stand-in; the collate leaves it out)."""

    path: Path
    reason: str


def _path_of(item: Any) -> Path | None:
    """The audio file an item still has to decode (a ``CropReader`` item's ``LazyWav``), if any."""
    wav = item.get("wav") if isinstance(item, dict) else None
    path = getattr(wav, "path", None)
    return None if path is None else Path(path)


class LateSkip:
    """Drops files that fail to decode during training; wraps a training set and its collate (see the module)."""

    def __init__(self, cache_name: str | None = None) -> None:
        """``cache_name``: the audio-check cache to forget failed files in (``AudioDataset.cache_name``)."""
        self.cache_name = cache_name
        self.dropped: set[Path] = set()  # per process (each data-loader worker has its own)

    def record(self, path: Path, reason: str) -> None:
        """Log ``path`` (once) and forget its cached check."""
        if path in self.dropped:
            return
        self.dropped.add(path)
        log.warning("skipping %s: %s (it failed to decode during training although its check passed; "
                    "config.data.on_bad_audio=skip leaves it out of the rest of this run, and the next run checks "
                    "it again)", path, reason)
        if self.cache_name:
            forget_checks(self.cache_name, [path])

    def dataset(self, dataset: Dataset) -> Dataset:
        """``dataset`` whose items that fail with an ``AudioError`` naming a file are ``Dropped`` markers."""
        return _SkippingDataset(dataset, self)

    def collate(self, collate: Callable[[list[Any], torch.Generator], Any]
                ) -> Callable[[list[Any], torch.Generator], Any]:
        """``collate(items, generator)`` without the ``Dropped`` items and the items whose file fails in it."""
        return _SkippingCollate(collate, self)


class _SkippingDataset(Dataset):
    def __init__(self, dataset: Dataset, skip: LateSkip) -> None:
        self.inner, self.skip = dataset, skip
        self.lengths = getattr(dataset, "lengths", None)

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        try:
            return self.inner[index]
        except AudioError as err:
            if err.path is None:
                raise
            self.skip.record(err.path, str(err))
            return Dropped(err.path, str(err))


class _SkippingCollate:
    def __init__(self, collate: Callable[[list[Any], torch.Generator], Any], skip: LateSkip) -> None:
        self.inner, self.skip = collate, skip

    def __call__(self, items: list[Any], generator: torch.Generator) -> Any:
        state = generator.get_state()
        n = len(items)
        items = [it for it in items if not isinstance(it, Dropped) and _path_of(it) not in self.skip.dropped]
        while items:
            try:
                return self.inner(items, generator)
            except AudioError as err:
                if err.path is None or not any(_path_of(it) == err.path for it in items):
                    raise
                self.skip.record(err.path, str(err))
                items = [it for it in items if _path_of(it) != err.path]
                generator.set_state(state)  # the same crops for the items that are left
        raise AudioError(f"all {n} audio files of a batch failed to decode (config.data.on_bad_audio=skip drops "
                         "single files, not whole batches): check the corpus's disk, then rerun "
                         "`python -m s3prl_colld.data.lengths`")
