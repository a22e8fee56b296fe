"""Synthetic speakers from Debian's ``flite`` voices, and their speech.

flite's ``slt``, ``rms`` and ``awb`` are clustergen voices and ``kal16`` a
diphone voice, each built from one recorded speaker (US female, US male,
Scottish male, US male); all speak 16 kHz audio (Debian's other two, ``kal``
at 8 kHz and the clock-times-only ``awb_time``, are not used). Like an espeak-ng speaker
(:mod:`.voices`), a flite speaker is a base voice varied in three ways, and
each utterance gets a small rate and pitch jitter on top:

- speed: flite's ``duration_stretch`` feature (``--setf``), 0.85-1.2;
- pitch: flite's ``int_f0_target_mean`` feature, 0.8-1.25 x the voice's own
  mean F0 (``rms`` ignores this feature, so its pitch varies only through
  the warp below);
- vocal-tract warp: the audio is resampled by ``100 / warp`` (``warp`` 92-108 %),
  which scales formants and F0 by ``warp / 100`` like a shorter or longer vocal
  tract; ``duration_stretch`` is multiplied by ``warp / 100`` so that the
  speaking rate stays the chosen one.

One call is ``flite -voice V --setf duration_stretch=S --setf
int_f0_target_mean=F -t TEXT -o /dev/stdout`` per utterance (flite's start-up is
~1 ms, so batching would gain nothing); the audio is trimmed to 0.1 s of
silence at each end and scaled to a peak of 0.9, as espeak-ng's is. The voice
family of a flite speaker (see ``test_unseen`` in :mod:`.synth`) is
``flite:<voice>``.
"""

from __future__ import annotations

import io
import random
import shutil
import subprocess
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from s3prl_colld.constants import SAMPLE_RATE
from s3prl_colld.data.synth.voices import SynthesisError, UtteranceSpec, trim_and_scale

FLITE = "flite"
# voice -> its own mean F0 in Hz (measured on a test sentence); None: int_f0_target_mean has no effect
VOICE_F0: dict[str, int | None] = {"slt": 170, "rms": None, "awb": 125, "kal16": 95}
VOICES = tuple(VOICE_F0)
# seconds per word at duration_stretch 1 (measured), for planning a corpus of a given length
SECONDS_PER_WORD = {"slt": 0.30, "rms": 0.34, "awb": 0.30, "kal16": 0.27}
STRETCH_RANGE = (0.85, 1.2)
F0_FACTOR_RANGE = (0.8, 1.25)
WARP_RANGE = (92, 108)  # percent


class FliteMissing(FileNotFoundError):
    """The flite executable cannot be found."""


def require_flite(executable: str = FLITE) -> str:
    """The full path of the flite executable, or :class:`FliteMissing` with the install command."""
    found = shutil.which(executable)
    if found is None:
        raise FliteMissing(f"flite not found (looked for {executable!r} on PATH): install it with `apt-get install flite`")
    return found


def installed_voices(executable: str) -> list[str]:
    """The names in :data:`VOICES` that ``flite -lv`` lists, in that order."""
    out = subprocess.run([executable, "-lv"], capture_output=True, check=True).stdout.decode()
    found = set(out.partition(":")[2].split())
    return [v for v in VOICES if v in found]


@dataclass(frozen=True)
class FliteSpeaker:
    """One synthetic flite speaker (see the module docstring); ``f0`` is None for ``rms``."""

    speaker_id: int
    voice: str
    stretch: float
    f0: int | None
    warp: int

    engine = "flite"  # class attribute, not a field

    @property
    def voice_name(self) -> str:
        """The voice as the manifest names it (``slt``)."""
        return self.voice

    @property
    def family(self) -> str:
        """``flite:<voice>``."""
        return f"flite:{self.voice}"

    def seconds_per_word(self) -> float:
        """Planning estimate of this speaker's speaking time per word."""
        return SECONDS_PER_WORD[self.voice] * self.stretch


def make_speakers(voices: Sequence[str], count: int, rng: random.Random) -> list[FliteSpeaker]:
    """``count`` speakers, base voices taken in turn (from a shuffled order); ids are 0 (set them later)."""
    if not voices:
        raise ValueError("no flite voice to make speakers from")
    order = list(voices)
    rng.shuffle(order)
    speakers = []
    for i in range(count):
        voice = order[i % len(order)]
        stretch = round(rng.uniform(*STRETCH_RANGE), 2)
        factor = rng.uniform(*F0_FACTOR_RANGE)
        base = VOICE_F0[voice]
        speakers.append(FliteSpeaker(0, voice, stretch, None if base is None else round(base * factor),
                                     rng.randint(*WARP_RANGE)))
    return speakers


def command(speaker: FliteSpeaker, spec: UtteranceSpec, executable: str) -> list[str]:
    """The flite command line for one utterance (``spec.rate`` / ``spec.pitch`` in % of the speaker's)."""
    stretch = speaker.stretch * speaker.warp / spec.rate  # = stretch * (warp / 100) / (rate / 100)
    cmd = [executable, "-voice", speaker.voice, "--setf", f"duration_stretch={stretch:.4f}"]
    if speaker.f0 is not None:
        cmd += ["--setf", f"int_f0_target_mean={speaker.f0 * spec.pitch / 100 / (speaker.warp / 100):.2f}"]
    return cmd + ["-t", spec.text, "-o", "/dev/stdout"]


def synthesize_one(speaker: FliteSpeaker, spec: UtteranceSpec, executable: str) -> np.ndarray:
    """16 kHz float32 ``[T]`` waveform of one utterance."""
    cmd = command(speaker, spec, executable)
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        raise SynthesisError(f"{' '.join(cmd[:-4])} failed ({proc.returncode}) for {spec.text!r}: "
                             f"{proc.stderr.decode(errors='replace')}")
    samples, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    if rate != SAMPLE_RATE or samples.ndim != 1:
        raise SynthesisError(f"flite voice {speaker.voice} gave {rate} Hz audio with shape {samples.shape}, "
                             f"expected mono {SAMPLE_RATE} Hz")
    # F0 was divided by warp/100 above, so after the warp it is the target again
    warped = resample_poly(samples, 100, speaker.warp).astype(np.float32) if speaker.warp != 100 else samples
    try:
        return trim_and_scale(warped)
    except SynthesisError as e:
        raise SynthesisError(f"{e} (flite voice {speaker.voice}, text {spec.text!r})") from None


def synthesize(speaker: FliteSpeaker, utterances: Sequence[UtteranceSpec], executable: str) -> tuple[list[np.ndarray], bool]:
    """16 kHz float32 waveforms of ``utterances`` (and False: nothing is ever redone, unlike espeak-ng batches)."""
    return [synthesize_one(speaker, u, executable) for u in utterances], False
