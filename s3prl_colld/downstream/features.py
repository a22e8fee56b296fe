"""Frozen features for a split: read from an fp16 disk cache, or recomputed by the upstream.

The cache of a split lives in ``CACHE_DIR/<upstream fingerprint>/<split key>/``:
``feats.f16`` (every utterance's ``[L, T, D]`` hidden states, fp16, back to
back) and ``index.json`` (utterance ids, offsets, frame counts). The
fingerprint is the upstream name plus the sha256 of its checkpoint, so a new
checkpoint never reads stale features. A cache is built in a temporary folder
and renamed into place when complete, so a killed run never leaves half a
cache; a cache whose utterance list differs from the split's is rebuilt.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from s3prl_colld.checkpoint import current_umask
from s3prl_colld.data.audio import AudioError, load_audio, num_samples
from s3prl_colld.downstream.corpus import Utterance
from s3prl_colld.downstream.upstream import FrozenUpstream

log = logging.getLogger(__name__)

CACHE_VERSION = 1


class FeatureSource(Protocol):
    """Hidden states ``[L, T, D]`` of the utterances of one split, by index."""

    def __len__(self) -> int: ...

    def get(self, indices: Sequence[int]) -> list[torch.Tensor]: ...


class LiveFeatures:
    """Recomputes the frozen upstream on every request (what s3prl's runner does)."""

    def __init__(self, upstream: FrozenUpstream, utts: Sequence[Utterance], resample: bool = False) -> None:
        self.upstream, self.utts, self.resample = upstream, list(utts), resample

    def __len__(self) -> int:
        return len(self.utts)

    def get(self, indices: Sequence[int]) -> list[torch.Tensor]:
        try:
            wavs = [load_audio(self.utts[i].path, resample=self.resample) for i in indices]
        except AudioError as err:
            raise AudioError(f"{err} [run_downstream.py: set config.data.resample=true to convert such files "
                             "on the fly]") from None
        return self.upstream(wavs)


class CachedFeatures:
    """A finished cache folder, read through a memory map (fp16 -> float32 on access)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.index = json.loads((self.folder / "index.json").read_text())
        shape = (int(self.index["total_frames"]), self.index["n_layers"], self.index["dim"])
        self.data = np.memmap(self.folder / "feats.f16", dtype=np.float16, mode="r", shape=shape) \
            if shape[0] else np.zeros(shape, np.float16)

    def __len__(self) -> int:
        return len(self.index["uttids"])

    @property
    def uttids(self) -> list[str]:
        return list(self.index["uttids"])

    def get(self, indices: Sequence[int]) -> list[torch.Tensor]:
        out = []
        for i in indices:
            start, n = self.index["offsets"][i], self.index["frames"][i]
            out.append(torch.from_numpy(np.array(self.data[start: start + n])).float().transpose(0, 1))
        return out


def estimate_bytes(utts: Sequence[Utterance], upstream: FrozenUpstream) -> int:
    """fp16 bytes of the hidden states of ``utts``: sum_i (ceil(N_i / rate) + 1) x L x D x 2."""
    frames = sum(math.ceil(num_samples(u.path) / upstream.downsample_rate) + 1 for u in utts)
    return frames * upstream.n_layers * upstream.dim * 2


def _matches(folder: Path, utts: Sequence[Utterance]) -> bool:
    try:
        index = json.loads((folder / "index.json").read_text())
    except (OSError, ValueError):
        return False
    return index.get("version") == CACHE_VERSION and index.get("uttids") == [u.uttid for u in utts]


def build_cache(folder: Path, upstream: FrozenUpstream, utts: Sequence[Utterance], resample: bool = False,
                desc: str = "cache", progress: bool = True) -> CachedFeatures:
    """Extract every utterance once and write the cache folder atomically (temp folder + rename)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        offsets, frames, total = [], [], 0
        live = LiveFeatures(upstream, utts, resample)
        with open(tmp / "feats.f16", "wb") as f:
            step = upstream.batch_size
            for start in tqdm(range(0, len(utts), step), desc=desc, unit="batch" if step > 1 else "utt",
                              disable=not progress, leave=False):
                for h in live.get(range(start, min(start + step, len(utts)))):
                    arr = h.transpose(0, 1).contiguous().to(torch.float16).numpy()  # [T, L, D]
                    f.write(arr.tobytes())
                    offsets.append(total)
                    frames.append(arr.shape[0])
                    total += arr.shape[0]
            f.flush()
            os.fsync(f.fileno())
        index = {"version": CACHE_VERSION, "upstream": upstream.fingerprint, "n_layers": upstream.n_layers,
                 "dim": upstream.dim, "total_frames": total, "uttids": [u.uttid for u in utts],
                 "offsets": offsets, "frames": frames}
        (tmp / "index.json").write_text(json.dumps(index))
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700; let other users of a shared cache read it
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CachedFeatures(folder)


def feature_source(upstream: FrozenUpstream, utts: Sequence[Utterance], split_key: str, cache_dir: Path | None,
                   max_gb: float, resample: bool = False, progress: bool = True) -> FeatureSource:
    """The cached features of a split (built on first use) or, if caching is off or too big, live ones.

    Args:
        split_key: names the split in the cache (e.g. ``pr-train``); together with the
            upstream fingerprint it keys the cache folder.
        cache_dir: the cache root; None turns caching off.
        max_gb: refuse to write a cache estimated above this size (or above the free disk space).
    """
    if cache_dir is None:
        return LiveFeatures(upstream, utts, resample)
    folder = Path(cache_dir) / upstream.fingerprint / split_key
    if _matches(folder, utts):
        log.info("feature cache: reading %s", folder)
        return CachedFeatures(folder)
    need = estimate_bytes(utts, upstream)
    folder.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder.parent).free
    gb = need / 1e9
    if need > max_gb * 1e9 or need > 0.9 * free:
        log.warning("feature cache for %s (%d utterances) would take %.2f GB, above the limit of %.2f GB "
                    "(config.cache.max_gb) or 90%% of the %.2f GB free: recomputing the upstream at every step "
                    "instead", split_key, len(utts), gb, max_gb, free / 1e9)
        return LiveFeatures(upstream, utts, resample)
    log.info("feature cache: writing %s: %d utterances, about %.3f GB (fp16, %d layers x %d dims)",
             folder, len(utts), gb, upstream.n_layers, upstream.dim)
    return build_cache(folder, upstream, utts, resample, desc=f"features {split_key}", progress=progress)
