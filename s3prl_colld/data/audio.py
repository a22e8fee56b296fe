"""Audio input: 16 kHz mono float waveforms read with soundfile.

Everything in this project expects 16 kHz mono audio. A file at another rate
or with several channels is an error that says what to do, unless
``resample=True``, which downmixes (channel mean) and resamples with
``scipy.signal.resample_poly`` and logs that it did.
"""

from __future__ import annotations

import hashlib
import logging
import os
from contextlib import contextmanager
from math import gcd
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly

from s3prl_colld.constants import SAMPLE_RATE


log = logging.getLogger(__name__)


class AudioError(RuntimeError):
    """An audio file that cannot be read, or is not 16 kHz mono; ``path``: the file (None: not known)."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)

    def __reduce__(self) -> tuple[Any, ...]:  # keeps ``path`` across processes (data-loader workers)
        return type(self), (str(self), self.path)


class AudioFormatError(AudioError):
    """A readable file that is not 16 kHz mono (``resample=True`` converts it)."""


def os_reason(path: str | Path) -> str | None:
    """What the OS says when ``path`` is opened for reading (``"Permission denied"``, ...); None when it opens.

    libsndfile reports such failures as "System error"; this names the cause.
    """
    try:
        with open(path, "rb"):
            return None
    except OSError as err:
        return err.strerror or str(err)


@contextmanager
def reading(path: str | Path) -> Iterator[None]:
    """Turn soundfile's errors inside the block into an ``AudioError`` naming ``path`` (and the OS's reason when
    the file cannot be opened)."""
    try:
        yield
    except (RuntimeError, OSError, TypeError) as e:  # soundfile.LibsndfileError is a RuntimeError
        raise AudioError(f"cannot read audio file {path}: {os_reason(path) or e}", path) from None


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """``([frames, channels] float32, sample rate)`` of any file soundfile reads.

    Raises:
        AudioError: naming ``path``, when it is missing or not readable audio.
    """
    with reading(path):
        return sf.read(str(path), dtype="float32", always_2d=True)


def num_samples(path: str | Path) -> int:
    """Samples per channel of an audio file, from its header (no decoding).

    Raises:
        AudioError: naming ``path``, when it is missing or not readable audio.
    """
    with reading(path):
        return sf.info(str(path)).frames


def num_samples_16k(path: str | Path, sample_rate: int = SAMPLE_RATE) -> int:
    """Samples per channel once resampled to ``sample_rate`` (from the header; equals ``num_samples`` at 16 kHz).

    Raises:
        AudioError: naming ``path``, when it is missing or not readable audio.
    """
    with reading(path):
        info = sf.info(str(path))
    return info.frames if info.samplerate == sample_rate else round(info.frames * sample_rate / info.samplerate)


def file_identity(path: str | Path, block: int = 4096) -> str:
    """A cheap content identity: ``"SIZE-MTIME_NS-DIGEST"``, DIGEST a blake2b of the first and last ``block`` bytes.

    Size and ``mtime_ns`` catch any ordinary rewrite; the digest also catches a
    file replaced with its old size and time restored (``cp -p``, ``rsync -t``):
    a FLAC header holds the MD5 of the decoded audio, so for FLAC the first
    block alone identifies the content. Costs one ``stat`` and two small reads.

    Raises:
        OSError: the file is missing or unreadable.
    """
    st = os.stat(path)
    digest = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as f:
        digest.update(f.read(block))
        if st.st_size > block:
            f.seek(max(block, st.st_size - block))
            digest.update(f.read(block))
    return f"{st.st_size}-{st.st_mtime_ns}-{digest.hexdigest()}"


def load_audio(path: str | Path, resample: bool = False, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """A waveform ``[N]`` (float32, about [-1, 1]) at ``sample_rate`` (16 kHz), mono.

    Args:
        path: any file soundfile reads (flac, wav, ogg, ...).
        resample: downmix several channels to mono and resample another rate
            to ``sample_rate`` (logged) instead of raising.

    Raises:
        AudioError: the file is unreadable, or (unless ``resample``) not mono
            or not at ``sample_rate``; the message names the file and the fix.
    """
    data, rate = read_audio(path)
    channels = data.shape[1]
    if channels != 1:
        if not resample:
            raise AudioFormatError(
                f"{path} has {channels} channels, expected mono: downmix it "
                f"(e.g. `sox IN OUT remix -` or `ffmpeg -i IN -ac 1 OUT`) or call load_audio(..., resample=True)", path
            )
        log.info("%s: averaging %d channels to mono", path, channels)
    wav = data.mean(axis=1) if channels != 1 else data[:, 0]
    if rate != sample_rate:
        if not resample:
            raise AudioFormatError(
                f"{path} has a sample rate of {rate} Hz, expected {sample_rate} Hz: resample it "
                f"(e.g. `sox IN -r {sample_rate} OUT` or `ffmpeg -i IN -ar {sample_rate} OUT`) "
                f"or call load_audio(..., resample=True)", path
            )
        log.info("%s: resampling %d Hz -> %d Hz", path, rate, sample_rate)
        g = gcd(sample_rate, rate)
        wav = resample_poly(wav, sample_rate // g, rate // g)
    return torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
