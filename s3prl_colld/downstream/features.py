"""Frozen features for a split: read from an fp16 disk cache, or recomputed by the upstream.

The cache of a split lives in ``CACHE_DIR/<upstream fingerprint>/<split>-<key>/``:
``feats.f16`` (every utterance's ``[L, T, D]`` hidden states, fp16, back to
back) and ``index.json`` (utterance ids, offsets, frame counts, sample counts
and each audio file's content identity). A cache is only read when all of
these still hold, and is rebuilt otherwise:

- the upstream fingerprint: its name and the sha256 of its checkpoint;
- ``<key>``: a hash of the audio paths and of every setting that changes the
  features (``resample``, the upstream batch size, the cache format, the
  s3prl version);
- every audio file's content: the SHA-256 of the whole file, so a corpus
  regenerated, a file fixed in place at the same path, or a same-size edit
  with its mtime restored is a cache miss. The hash is computed when the
  cache is built and again only for files whose stat changed since (size,
  ``mtime_ns``, ``ctime_ns``, inode: the kernel sets ``ctime`` on every write
  and on every ``utime``, and no tool can set it back); an unchanged file
  costs one ``stat``. Whole-file hashing costs about 1% of extracting even
  fbank features from the same bytes (``docs/feature_cache.md``);
- the first time an entry is read, its file's sample count (from the header)
  and its frame count are checked against what the cache was built from.

A cache is built in a temporary folder and renamed into place when complete,
so a killed run never leaves half a cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from s3prl_colld.checkpoint import current_umask, file_sha256
from s3prl_colld.data.audio import AudioError, AudioFormatError, load_audio, num_samples_16k
from s3prl_colld.downstream.corpus import DataError, Utterance
from s3prl_colld.downstream.upstream import FrozenUpstream

log = logging.getLogger(__name__)

CACHE_VERSION = 3  # 3: whole-file content hashes (2: size, mtime and a hash of the head and tail)
FRAME_SLACK = 3  # frames (+1%) an upstream may give beyond or below samples / downsample rate (edge windows)


class StaleCacheError(DataError):
    """A cache entry that no longer matches its audio file (the message names the folder to delete)."""


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
        except AudioFormatError as err:  # only a rate or channel count that resampling converts gets the hint
            raise AudioFormatError(f"{err} [run_downstream.py: set config.data.resample=true to convert such files "
                                   "on the fly]", err.path) from None
        return self.upstream(wavs)


class CachedFeatures:
    """A finished cache folder, read through a memory map (fp16 -> float32 on access).

    The first read of each entry checks its audio file's sample count (header
    only) and its frame count against what the cache was built from.
    """

    def __init__(self, folder: str | Path, utts: Sequence[Utterance] | None = None,
                 downsample_rate: int | None = None) -> None:
        self.folder = Path(folder)
        self.index = json.loads((self.folder / "index.json").read_text())
        shape = (int(self.index["total_frames"]), self.index["n_layers"], self.index["dim"])
        self.data = np.memmap(self.folder / "feats.f16", dtype=np.float16, mode="r", shape=shape) \
            if shape[0] else np.zeros(shape, np.float16)
        self.paths = [u.path for u in utts] if utts is not None else None
        self.rate = downsample_rate
        self.verified: set[int] = set()

    def __len__(self) -> int:
        return len(self.index["uttids"])

    def verify(self, i: int) -> None:
        """Check entry ``i`` against its audio file; StaleCacheError (naming the folder) if it no longer fits."""
        frames, samples = self.index["frames"][i], self.index["samples"][i]
        now = num_samples_16k(self.paths[i]) if self.paths is not None else samples
        expected = samples / self.rate if self.rate else frames
        if now != samples or abs(frames - expected) > FRAME_SLACK + 0.01 * expected:
            raise StaleCacheError(
                f"feature cache {self.folder} is stale: {self.index['uttids'][i]} has {frames} cached frames from "
                f"{samples} samples, its audio now has {now} samples: delete the folder (the next run rebuilds it)")
        self.verified.add(i)

    def get(self, indices: Sequence[int]) -> list[torch.Tensor]:
        out = []
        for i in indices:
            if i not in self.verified:
                self.verify(i)
            start, n = self.index["offsets"][i], self.index["frames"][i]
            out.append(torch.from_numpy(np.array(self.data[start: start + n])).float().transpose(0, 1))
        return out

    def get_padded(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(hs [B, L, T, D] float32, zero after each utterance's frames; lengths [B])`` of entries ``indices``:
        ``featurizer.pad_features(self.get(indices))`` in one copy from the memory map (fp16 -> float32)."""
        for i in indices:
            if i not in self.verified:
                self.verify(i)
        frames = [int(self.index["frames"][i]) for i in indices]
        n_layers, dim = self.data.shape[1], self.data.shape[2]
        out = torch.empty(len(indices), n_layers, max(frames, default=0), dim)
        with warnings.catch_warnings():  # the map is read-only; it is only read here
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            for b, (i, n) in enumerate(zip(indices, frames)):
                start = int(self.index["offsets"][i])
                out[b, :, :n].copy_(torch.from_numpy(self.data[start: start + n]).transpose(0, 1))  # [L, n, D]
                out[b, :, n:].zero_()
        return out, torch.tensor(frames, dtype=torch.long)


def check_audio(utts: Sequence[Utterance], resample: bool, split: str, cache_name: str | None = None) -> None:
    """Decode every file once (cached, see ``data.audio_check``); BadAudioError listing every unusable one."""
    from s3prl_colld.data.audio_check import BadAudioError, bad_audio_message, find_problems

    if not utts:
        return
    _, problems = find_problems([u.path for u in utts], resample, cache_name=cache_name)
    if problems:
        raise BadAudioError(bad_audio_message(problems, len(utts), f"split {split}",
                                              "Fix or replace them (a SUPERB split is scored on all its utterances)"))


def estimate_bytes(utts: Sequence[Utterance], upstream: FrozenUpstream) -> int:
    """fp16 bytes of the hidden states of ``utts``: sum_i (ceil(N_i / rate) + 1) x L x D x 2."""
    frames = sum(math.ceil(num_samples_16k(u.path) / upstream.downsample_rate) + 1 for u in utts)
    return frames * upstream.n_layers * upstream.dim * 2


def stat_key(path: str | Path) -> str:
    """``"SIZE-MTIME_NS-CTIME_NS-INODE"``: changes whenever the file's bytes may have (``ctime`` cannot be set back)."""
    st = os.stat(path)
    return f"{st.st_size}-{st.st_mtime_ns}-{st.st_ctime_ns}-{st.st_ino}"


def content_hash(path: str | Path) -> str:
    """Hex SHA-256 of the whole file (``checkpoint.file_sha256``; a few s per GB on one core, about 1% of
    extracting fbank features from it: ``docs/feature_cache.md``)."""
    return file_sha256(path)


def identities(utts: Sequence[Utterance], known: dict[str, tuple[str, str]] | None = None,
               workers: int = 8) -> tuple[list[str], list[str]]:
    """``(content hashes, stat keys)`` of every utterance's audio file (threads: it is I/O).

    Args:
        known: ``path -> (stat key, hash)`` from a cache index: a file whose stat key is unchanged keeps its
            hash (one ``stat``); any other file is hashed whole.
    """
    known = known or {}

    def one(path: Path) -> tuple[str, str]:
        key = stat_key(path)
        before = known.get(str(path))
        return (before[1] if before is not None and before[0] == key else content_hash(path)), key

    try:
        with ThreadPoolExecutor(max(1, min(workers, len(utts)))) as pool:
            pairs = list(pool.map(one, [u.path for u in utts]))
    except OSError as err:
        raise AudioError(f"cannot read audio file {err.filename}: {err.strerror}", err.filename) from None
    return [h for h, _ in pairs], [k for _, k in pairs]


def known_identities(folder: Path) -> dict[str, tuple[str, str]]:
    """``path -> (stat key, hash)`` of the cache index in ``folder`` (empty when there is none of this version)."""
    try:
        index = json.loads((folder / "index.json").read_text())
    except (OSError, ValueError):
        return {}
    if index.get("version") != CACHE_VERSION:
        return {}
    return {p: (k, h) for p, k, h in zip(index.get("paths", []), index.get("stat", []), index.get("identity", []))}


def refresh_stat_keys(folder: Path, keys: Sequence[str]) -> None:
    """Store ``keys`` in the index of a cache that still fits (files touched, bytes unchanged), so the next run
    does not hash them again; a cache that cannot be written (shared, read-only) only costs that hashing."""
    try:
        index = json.loads((folder / "index.json").read_text())
        if index.get("stat") == list(keys):
            return
        index["stat"] = list(keys)
        fd, tmp = tempfile.mkstemp(prefix=".index.", suffix=".json", dir=folder)
        with os.fdopen(fd, "w") as f:
            json.dump(index, f)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, folder / "index.json")
    except OSError as err:
        log.debug("could not refresh %s/index.json: %s", folder, err)


def cache_settings(upstream: FrozenUpstream, resample: bool) -> dict[str, Any]:
    """Every setting besides the checkpoint and the audio that changes the cached features."""
    import s3prl

    return {"version": CACHE_VERSION, "upstream": upstream.fingerprint, "resample": bool(resample),
            "batch_size": upstream.batch_size, "s3prl": getattr(s3prl, "__version__", "?")}


def cache_folder(cache_dir: Path, upstream: FrozenUpstream, utts: Sequence[Utterance], split_key: str,
                 resample: bool) -> Path:
    """``CACHE_DIR/<fingerprint>/<split_key>-<hash of the audio paths and the settings>``."""
    listing = "\n".join(str(Path(u.path).resolve()) for u in utts)
    key = json.dumps({"paths": listing, **cache_settings(upstream, resample)}, sort_keys=True)
    return Path(cache_dir) / upstream.fingerprint / f"{split_key}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"


def stale_reason(folder: Path, utts: Sequence[Utterance], ids: Sequence[str], settings: dict[str, Any]) -> str | None:
    """Why the cache in ``folder`` cannot serve ``utts`` (None: it can)."""
    try:
        index = json.loads((folder / "index.json").read_text())
    except (OSError, ValueError):
        return "no complete cache"
    if index.get("version") != CACHE_VERSION or index.get("settings") != settings:
        return "built with other settings"
    if index.get("uttids") != [u.uttid for u in utts]:
        return "built for other utterances"
    changed = [u.path for u, a, b in zip(utts, ids, index.get("identity", [])) if a != b]
    if changed or len(index.get("identity", [])) != len(utts):
        example = f" (e.g. {changed[0]})" if changed else ""
        return f"{len(changed)} of {len(utts)} audio files changed since it was built{example}"
    n = (folder / "feats.f16").stat().st_size if (folder / "feats.f16").is_file() else -1
    if n != int(index["total_frames"]) * index["n_layers"] * index["dim"] * 2:
        return "its feature file has the wrong size"
    return None


def build_cache(folder: Path, upstream: FrozenUpstream, utts: Sequence[Utterance], resample: bool = False,
                desc: str = "cache", progress: bool = True, ids: tuple[Sequence[str], Sequence[str]] | None = None
                ) -> CachedFeatures:
    """Extract every utterance once and write the cache folder atomically (temp folder + rename).

    ``ids``: ``identities(utts)`` when already computed (content hashes, stat keys).
    """
    hashes, keys = ids if ids is not None else identities(utts)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        offsets, frames, samples, total = [], [], [], 0
        live = LiveFeatures(upstream, utts, resample)
        with open(tmp / "feats.f16", "wb") as f:
            step = upstream.batch_size
            for start in tqdm(range(0, len(utts), step), desc=desc, unit="batch" if step > 1 else "utt",
                              disable=not progress, leave=False):
                idx = range(start, min(start + step, len(utts)))
                for i, h in zip(idx, live.get(idx)):
                    arr = h.transpose(0, 1).contiguous().to(torch.float16).numpy()  # [T, L, D]
                    f.write(arr.tobytes())
                    offsets.append(total)
                    frames.append(arr.shape[0])
                    samples.append(num_samples_16k(utts[i].path))
                    total += arr.shape[0]
            f.flush()
            os.fsync(f.fileno())
        index = {"version": CACHE_VERSION, "upstream": upstream.fingerprint,
                 "settings": cache_settings(upstream, resample), "n_layers": upstream.n_layers,
                 "dim": upstream.dim, "total_frames": total, "uttids": [u.uttid for u in utts],
                 "paths": [str(u.path) for u in utts], "identity": list(hashes), "stat": list(keys),
                 "offsets": offsets,
                 "frames": frames, "samples": samples}
        (tmp / "index.json").write_text(json.dumps(index))
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700; let other users of a shared cache read it
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CachedFeatures(folder, utts, upstream.downsample_rate)


def feature_source(upstream: FrozenUpstream, utts: Sequence[Utterance], split_key: str, cache_dir: Path | None,
                   max_gb: float, resample: bool = False, progress: bool = True) -> FeatureSource:
    """The cached features of a split (built on first use, rebuilt when stale) or, if caching is off or too big, live ones.

    Args:
        split_key: names the split in the cache (e.g. ``train``); the folder is
            ``CACHE_DIR/<upstream fingerprint>/<split_key>-<hash of the paths and settings>``.
        cache_dir: the cache root; None turns caching off.
        max_gb: refuse to write a cache estimated above this size (or above the free disk space).
    """
    if cache_dir is None:
        return LiveFeatures(upstream, utts, resample)
    folder = cache_folder(cache_dir, upstream, utts, split_key, resample)
    ids = identities(utts, known_identities(folder))
    reason = stale_reason(folder, utts, ids[0], cache_settings(upstream, resample))
    if reason is None:
        log.info("feature cache: reading %s", folder)
        refresh_stat_keys(folder, ids[1])
        return CachedFeatures(folder, utts, upstream.downsample_rate)
    if folder.exists():
        log.warning("feature cache %s is stale (%s): rebuilding it", folder, reason)
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
    return build_cache(folder, upstream, utts, resample, desc=f"features {split_key}", progress=progress, ids=ids)
