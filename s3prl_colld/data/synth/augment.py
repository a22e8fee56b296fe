"""Acoustic conditions for the synthetic corpus: rooms, babble, coloured noise, telephone band.

Every random choice is made when the corpus is planned (:func:`plan_rooms`,
:func:`plan_augmentation`, from the corpus seed) and written into an
:class:`Augmentation`; applying it (:func:`augment`) is a pure function of the
clean waveform, the babble waveforms and the room's impulse response (the
noise samples come from the augmentation's own ``noise_seed``). So a corpus
is the same byte for byte whatever the number of workers.

- **reverb**: a room impulse response from pyroomacoustics' image-source
  model (shoebox rooms 3-10 x 3-8 x 2.5-4 m, wall absorption from Sabine's
  formula for an RT60 drawn from 0.2-0.9 s, image order as high as that RT60
  needs, source and microphone 1-4 m apart). A bank of rooms is computed
  once per corpus; the reverberant signal is shifted back by the direct-path
  delay, so it stays aligned with the clean one sample for sample.
- **babble**: 3-6 other utterances (other speakers, same split family: see
  :mod:`.synth`), each tiled to the utterance's length from a random start,
  scaled to equal power, summed, sent through the same room when there is
  one, and mixed at a speech-to-babble ratio drawn from the SNR range.
- **noise**: white, pink, brown or blue Gaussian noise (power spectrum
  ``f^0, f^-1, f^-2, f^+1``) at an SNR drawn from 0-20 dB.
- **telephone**: 300-3400 Hz band-pass (zero-phase 4th-order Butterworth),
  8 kHz sampling and 8-bit mu-law (G.711), then back to 16 kHz and band-passed
  again (the quantisation noise).

The output has exactly the length of the clean input and a peak of 0.9.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy.signal import butter, fftconvolve, resample_poly, sosfiltfilt

from s3prl_colld.constants import SAMPLE_RATE

RT60_RANGE = (0.2, 0.9)
SNR_RANGE = (0.0, 20.0)
BABBLE_TALKERS = (3, 6)
ROOM_DIMS = ((3.0, 3.0, 2.5), (10.0, 8.0, 4.0))  # min, max (m)
WALL_MARGIN = 0.5  # m between a wall and the source or microphone
DISTANCE = (1.0, 4.0)  # m between source and microphone
NOISE_COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0, "blue": -1.0}  # power spectrum ~ f^-beta
CONDITION_PROBABILITY = {"reverb": 0.5, "babble": 0.5, "noise": 0.5, "telephone": 0.2}
CONDITIONS = tuple(CONDITION_PROBABILITY)  # the order in a condition name such as "reverb+noise"
PEAK = 0.9
TAIL_DB = 60.0  # an impulse response is cut where its remaining energy is this far below the total


@dataclass(frozen=True)
class Room:
    """A shoebox room with one source and one microphone (positions in m)."""

    rt60: float
    dims: tuple[float, float, float]
    source: tuple[float, float, float]
    mic: tuple[float, float, float]


@dataclass(frozen=True)
class Augmentation:
    """Everything needed to make one noisy utterance from its clean one.

    ``room`` indexes the room bank; ``babble`` names the talkers' utterance ids
    and ``babble_starts`` where each one's tiling starts (a fraction of its length).
    """

    room: int | None = None
    rt60: float | None = None
    babble: tuple[str, ...] = ()
    babble_starts: tuple[float, ...] = ()
    babble_snr_db: float | None = None
    noise: str | None = None
    noise_snr_db: float | None = None
    noise_seed: int = 0
    telephone: bool = False

    @property
    def condition(self) -> str:
        """``reverb+babble+noise+telephone`` (the parts present, in that order)."""
        present = {"reverb": self.room is not None, "babble": bool(self.babble), "noise": self.noise is not None,
                   "telephone": self.telephone}
        return "+".join(c for c in CONDITIONS if present[c])

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for the manifest): the parts present and their settings."""
        out: dict[str, Any] = {}
        if self.room is not None:
            out.update(room=self.room, rt60=self.rt60)
        if self.babble:
            out.update(babble=list(self.babble), babble_snr_db=self.babble_snr_db)
        if self.noise is not None:
            out.update(noise=self.noise, noise_snr_db=self.noise_snr_db)
        if self.telephone:
            out.update(telephone=True)
        return out


def _uniform(rng: random.Random, lo: float, hi: float, digits: int = 2) -> float:
    return round(rng.uniform(lo, hi), digits)


def plan_rooms(count: int, rt60_range: tuple[float, float], rng: random.Random) -> list[Room]:
    """``count`` rooms with RT60s spread evenly over ``rt60_range`` (one per equal slice, random within it)."""
    import pyroomacoustics as pra  # imported on use: it takes ~2 s to import

    lo, hi = rt60_range
    rooms = []
    for k in range(count):
        rt60 = round(lo + (hi - lo) * (k + rng.random()) / count, 3)
        while True:  # redraw the rare geometry that the RT60 cannot fit (absorption above 1, or too cramped)
            dims = tuple(_uniform(rng, a, b) for a, b in zip(*ROOM_DIMS))
            source = tuple(_uniform(rng, WALL_MARGIN, d - WALL_MARGIN) for d in dims)
            mic = tuple(_uniform(rng, WALL_MARGIN, d - WALL_MARGIN) for d in dims)
            distance = float(np.linalg.norm(np.subtract(source, mic)))
            try:
                pra.inverse_sabine(rt60, dims)
            except ValueError:
                continue
            if DISTANCE[0] <= distance <= DISTANCE[1]:
                break
        rooms.append(Room(rt60, dims, source, mic))
    return rooms


def room_impulse_response(room: Room) -> np.ndarray:
    """float32 ``[L]`` impulse response (image-source model at 16 kHz), cut :data:`TAIL_DB` below its energy."""
    import pyroomacoustics as pra  # imported on use: it takes ~2 s to import

    absorption, max_order = pra.inverse_sabine(room.rt60, room.dims)
    shoebox = pra.ShoeBox(list(room.dims), fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=max_order,
                          air_absorption=False, use_rand_ism=False)
    shoebox.add_source(list(room.source))
    shoebox.add_microphone(list(room.mic))
    shoebox.compute_rir()
    rir = np.asarray(shoebox.rir[0][0], dtype=np.float64)
    remaining = np.cumsum((rir ** 2)[::-1])[::-1]
    keep = int(np.flatnonzero(remaining >= remaining[0] * 10 ** (-TAIL_DB / 10))[-1]) + 1
    rir = rir[:keep]
    return (rir / np.abs(rir).max()).astype(np.float32)


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``x`` ``[T]`` through ``rir``, shifted back by the direct path (the strongest tap): ``[T]``, aligned with ``x``."""
    delay = int(np.argmax(np.abs(rir)))
    return fftconvolve(x, rir.astype(np.float64))[delay : delay + len(x)]


def coloured_noise(length: int, colour: str, seed: int) -> np.ndarray:
    """Unit-power Gaussian noise ``[length]`` whose power spectrum goes as ``f^-beta`` (:data:`NOISE_COLOURS`)."""
    white = np.random.default_rng(seed).standard_normal(length)
    beta = NOISE_COLOURS[colour]
    if beta:
        spectrum = np.fft.rfft(white)
        f = np.arange(len(spectrum), dtype=np.float64)
        f[0] = 1.0  # keep the DC bin finite; it is removed below
        spectrum *= f ** (-beta / 2)
        spectrum[0] = 0.0
        white = np.fft.irfft(spectrum, n=length)
    return white / max(float(np.sqrt(np.mean(white ** 2))), 1e-12)


def telephone(x: np.ndarray) -> np.ndarray:
    """300-3400 Hz band, 8 kHz, 8-bit mu-law, back to 16 kHz: ``[T]`` -> ``[T]``."""
    sos = butter(4, [300, 3400], btype="bandpass", fs=SAMPLE_RATE, output="sos")
    narrow = resample_poly(sosfiltfilt(sos, x), 1, 2)
    scale = max(float(np.abs(narrow).max()), 1e-12)
    mu = 255.0
    companded = np.sign(narrow / scale) * np.log1p(mu * np.abs(narrow / scale)) / np.log1p(mu)
    quantised = np.round(companded * 127) / 127
    expanded = np.sign(quantised) * np.expm1(np.abs(quantised) * np.log1p(mu)) / mu * scale
    return sosfiltfilt(sos, resample_poly(expanded, 2, 1)[: len(x)])  # again: the quantisation noise


def _scaled_to_snr(noise: np.ndarray, speech_power: float, snr_db: float) -> np.ndarray:
    power = max(float(np.mean(noise ** 2)), 1e-20)
    return noise * np.sqrt(speech_power / power / 10 ** (snr_db / 10))


def _tiled(source: np.ndarray, length: int, start: float) -> np.ndarray:
    offset = int(start * len(source))
    reps = -(-(offset + length) // len(source))
    return np.tile(source, reps)[offset : offset + length]


def augment(clean: np.ndarray, aug: Augmentation, babble: Sequence[np.ndarray], rir: np.ndarray | None) -> np.ndarray:
    """The noisy version ``[T]`` (float32, peak 0.9) of ``clean`` ``[T]``.

    Args:
        clean: the clean 16 kHz waveform.
        aug: what to do (see :class:`Augmentation`).
        babble: the waveforms of ``aug.babble``, in that order.
        rir: the impulse response of room ``aug.room`` (None when there is no room).
    """
    if (aug.room is None) != (rir is None) or len(babble) != len(aug.babble):
        raise ValueError(f"augmentation {aug} needs {'a' if aug.room is not None else 'no'} room and "
                         f"{len(aug.babble)} babble waveforms, got {'a' if rir is not None else 'no'} room and {len(babble)}")
    x = clean.astype(np.float64)
    speech = reverberate(x, rir) if rir is not None else x
    speech_power = max(float(np.mean(speech ** 2)), 1e-20)
    mix = speech.copy()
    if babble:
        talkers = [_tiled(b.astype(np.float64), len(x), s) for b, s in zip(babble, aug.babble_starts)]
        crowd = sum(t / max(float(np.sqrt(np.mean(t ** 2))), 1e-12) for t in talkers)
        if rir is not None:
            crowd = reverberate(crowd, rir)
        mix += _scaled_to_snr(crowd, speech_power, aug.babble_snr_db)
    if aug.noise is not None:
        mix += _scaled_to_snr(coloured_noise(len(x), aug.noise, aug.noise_seed), speech_power, aug.noise_snr_db)
    if aug.telephone:
        mix = telephone(mix)
    return (mix * (PEAK / max(float(np.abs(mix).max()), 1e-12))).astype(np.float32)


def plan_augmentation(rng: random.Random, rooms: Sequence[Room], babble_pool: Sequence[str],
                      snr_range: tuple[float, float] = SNR_RANGE) -> Augmentation:
    """A random :class:`Augmentation`: each condition with its probability (:data:`CONDITION_PROBABILITY`), at least one.

    ``babble_pool`` holds the utterance ids that may be babble talkers (the
    caller leaves out the utterance itself and its speaker); with fewer than
    :data:`BABBLE_TALKERS` ``[0]`` there, all of them talk, and with none there is no babble.
    """
    chosen = {c for c in CONDITIONS if rng.random() < CONDITION_PROBABILITY[c]}
    if not chosen:
        chosen = {rng.choice(CONDITIONS)}
    if not rooms:
        chosen.discard("reverb")
    if not babble_pool:
        chosen.discard("babble")
    if not chosen:
        chosen = {"noise"}
    fields: dict[str, Any] = {"noise_seed": rng.getrandbits(63)}
    if "reverb" in chosen:
        room = rng.randrange(len(rooms))
        fields.update(room=room, rt60=rooms[room].rt60)
    if "babble" in chosen:
        count = min(rng.randint(*BABBLE_TALKERS), len(babble_pool))
        fields.update(babble=tuple(rng.sample(list(babble_pool), count)),
                      babble_starts=tuple(round(rng.random(), 3) for _ in range(count)),
                      babble_snr_db=_uniform(rng, *snr_range, digits=1))
    if "noise" in chosen:
        fields.update(noise=rng.choice(sorted(NOISE_COLOURS)), noise_snr_db=_uniform(rng, *snr_range, digits=1))
    if "telephone" in chosen:
        fields.update(telephone=True)
    return Augmentation(**fields)
