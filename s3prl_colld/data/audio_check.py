"""Check a corpus's audio once, up front, and name every bad file with its reason.

``probe_files`` decodes each file fully (a corrupt FLAC often has a good
header and fails only when decoded) and records what it found: samples,
rate, channels, or why it cannot be used. The results are cached per file,
keyed on the file's size and ``mtime_ns``
(``<cache>/audio_checks/<hash of the corpus root>.json``, the cache folder
being ``$S3PRL_COLLD_CACHE``, else ``$XDG_CACHE_HOME/s3prl_colld``, else
``~/.cache/s3prl_colld``), so only the first run on a corpus pays for the
decoding and a file changed since is checked again.

``audio_problem`` turns what was found into a reason, given what the caller
accepts (``resample``: other rates and several channels are converted) and
the length the length table gives: missing, unreadable, corrupt, empty,
shorter than one 25 ms window, not 16 kHz, not mono, non-finite samples, or a
length that disagrees with the table. ``BadAudioError`` lists them all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from s3prl_colld.checkpoint import CheckpointError, write_atomic
from s3prl_colld.constants import FRAME_WINDOW, SAMPLE_RATE
from s3prl_colld.data.audio import AudioError, os_reason

log = logging.getLogger(__name__)

MIN_SAMPLES = FRAME_WINDOW  # one 25 ms window at 16 kHz: shorter audio gives no frame
CACHE_VERSION = 1
ON_BAD_AUDIO = ("error", "skip")


class BadAudioError(AudioError):
    """Some audio files cannot be used; the message lists every one with its reason."""


@dataclass(frozen=True)
class AudioFacts:
    """What decoding a file found: samples per channel, rate, channels; or ``error`` (why it is unusable)."""

    frames: int = 0
    rate: int = 0
    channels: int = 0
    error: str | None = None

    def samples_16k(self) -> int:
        """The length in samples once resampled to 16 kHz."""
        return round(self.frames * SAMPLE_RATE / self.rate) if self.rate else 0


def cache_root() -> Path:
    """``$S3PRL_COLLD_CACHE``, else ``$XDG_CACHE_HOME/s3prl_colld``, else ``~/.cache/s3prl_colld``."""
    if os.environ.get("S3PRL_COLLD_CACHE"):
        return Path(os.environ["S3PRL_COLLD_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "s3prl_colld"


def probe(path: str | Path) -> AudioFacts:
    """Decode ``path`` completely; the facts, or the reason it cannot be read."""
    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError, TypeError) as err:  # soundfile.LibsndfileError is a RuntimeError
        if not Path(path).exists():
            return AudioFacts(error="file not found")
        if Path(path).is_file() and Path(path).stat().st_size == 0:
            return AudioFacts(error="empty file (0 bytes)")
        return AudioFacts(error=f"unreadable: {os_reason(path) or str(err).split(': ', 1)[-1].strip()}")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, TypeError) as err:
        return AudioFacts(0, info.samplerate, info.channels,
                          f"corrupt: decoding failed ({str(err).replace('Error : ', '').strip()})")
    if info.frames and data.shape[0] != info.frames:
        return AudioFacts(data.shape[0], rate, data.shape[1],
                          f"truncated: the header says {info.frames} samples, {data.shape[0]} decode")
    if not np.isfinite(data).all():
        return AudioFacts(data.shape[0], rate, data.shape[1], "non-finite samples (NaN or inf)")
    return AudioFacts(data.shape[0], rate, data.shape[1])


def audio_problem(facts: AudioFacts, resample: bool = False, table_length: int | None = None,
                  min_samples: int = MIN_SAMPLES) -> str | None:
    """Why a file with these facts cannot be used (None: it can).

    Args:
        resample: other rates and several channels are converted (not a problem).
        table_length: the length the length table gives (samples at the file's rate), if any.
        min_samples: the shortest usable length, in samples at 16 kHz.
    """
    if facts.error:
        return facts.error
    if facts.frames == 0:
        return "empty: no samples"
    if not resample:
        wrong = ([f"{facts.rate} Hz, expected {SAMPLE_RATE} Hz"] if facts.rate != SAMPLE_RATE else []) + \
                ([f"{facts.channels} channels, expected mono"] if facts.channels != 1 else [])
        if wrong:
            return "; ".join(wrong)
    if facts.samples_16k() < min_samples:
        return f"too short: {facts.frames} samples ({1000 * facts.frames / facts.rate:.1f} ms; " \
               f"under {min_samples} samples at 16 kHz no frame can be computed)"
    if table_length is not None and table_length != facts.frames:
        return f"the length table says {table_length} samples, the file has {facts.frames}"
    return None


# ---------------------------------------------------------------- the cache
def _cache_file(name: str) -> Path:
    return cache_root() / "audio_checks" / f"{hashlib.sha1(name.encode()).hexdigest()[:16]}.json"


def _stat_key(path: Path) -> str | None:
    """``"SIZE-MTIME_NS"`` (None when the file is missing)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_size}-{st.st_mtime_ns}"


def _read_cache(file: Path) -> dict[str, list]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data.get("files", {}) if data.get("version") == CACHE_VERSION else {}


def _write_cache(file: Path, name: str, files: dict[str, list]) -> None:
    """Atomic JSON write; a cache that cannot be written only costs the next run the decoding."""
    try:
        write_atomic(file, lambda f: json.dump({"version": CACHE_VERSION, "root": name, "files": files}, f), "w")
    except CheckpointError as err:
        log.warning("could not write the audio-check cache %s (%s): the next run checks the audio again", file, err)


def probe_files(paths: Sequence[Path], cache_name: str | None = None, workers: int | None = None,
                progress: bool = True) -> list[AudioFacts]:
    """``probe`` of every path (in order), reusing cached results of files unchanged since (size, mtime_ns).

    Args:
        cache_name: names the cache file (e.g. the corpus root); None: no cache.
        workers: decoding threads (default: up to 8, one per core).
    """
    paths = [Path(p).absolute() for p in paths]
    cache_file = _cache_file(cache_name) if cache_name else None
    cached = _read_cache(cache_file) if cache_file else {}
    keys = [_stat_key(p) for p in paths]
    hits = [cached.get(str(p)) for p in paths]
    out: list[AudioFacts | None] = [AudioFacts(*hit[1:]) if key is not None and hit is not None and hit[0] == key
                                    else None for hit, key in zip(hits, keys)]
    todo = [i for i, facts in enumerate(out) if facts is None]
    if todo:
        workers = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers) as pool:  # libsndfile releases the GIL while decoding
            found = list(tqdm(pool.map(probe, [paths[i] for i in todo]), total=len(todo), desc="checking audio",
                              unit="file", disable=not progress or len(todo) < 200, leave=False))
        added = False
        for i, facts in zip(todo, found):
            out[i] = facts
            if keys[i] is not None:  # a missing file is not cached: it is looked for again next time
                cached[str(paths[i])] = [keys[i], *astuple(facts)]
                added = True
        if cache_file and added:
            _write_cache(cache_file, cache_name, cached)
    return [f for f in out if f is not None]


def forget_checks(cache_name: str, paths: Sequence[Path]) -> None:
    """Drop the cached checks of ``paths`` (files found bad later), so that the next ``probe_files`` decodes them."""
    file = _cache_file(cache_name)
    cached = _read_cache(file)
    keys = [str(Path(p).absolute()) for p in paths]
    if any(k in cached for k in keys):
        for k in keys:
            cached.pop(k, None)
        _write_cache(file, cache_name, cached)


RESAMPLE_HINT = "files that are only not 16 kHz or not mono are converted on the fly with config.data.resample=true"


def bad_audio_message(problems: Sequence[tuple[Path, str]], total: int, where: str, fix: str,
                      resample_hint: str = RESAMPLE_HINT) -> str:
    """One error for all of ``problems`` (``(path, reason)``, every one listed), then ``fix``."""
    lines = [f"{len(problems)} of {total} audio files in {where} cannot be used:"]
    lines += [f"  {path}: {reason}" for path, reason in problems]
    if any("Hz, expected" in r or "channels, expected" in r for _, r in problems):
        fix += f"; {resample_hint}"
    return "\n".join(lines + [fix])


def find_problems(paths: Sequence[Path], resample: bool = False, table_lengths: Iterable[int | None] | None = None,
                  cache_name: str | None = None, workers: int | None = None, progress: bool = True
                  ) -> tuple[list[AudioFacts], list[tuple[Path, str]]]:
    """Facts of every file and ``(path, reason)`` of the unusable ones (see ``audio_problem``)."""
    facts = probe_files(paths, cache_name, workers, progress)
    lengths = list(table_lengths) if table_lengths is not None else [None] * len(paths)
    reasons = [audio_problem(f, resample, n) for f, n in zip(facts, lengths)]
    return facts, [(Path(path), reason) for path, reason in zip(paths, reasons) if reason is not None]
