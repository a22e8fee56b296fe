"""Synthetic speakers (espeak-ng voice + variant + speed + pitch) and their speech.

A speaker is a base voice (``en-us``, ``en-gb-scotland``, ... or ``de``), a
voice variant from espeak-ng's ``voices/!v`` folder (``m3``, ``f2``,
``klatt4``, ...), a speed in words per minute and a pitch (0-99). Each
utterance gets a small rate and pitch jitter on top, as SSML ``<prosody>``
percentages. One call is ``espeak-ng -m -v VOICE+VARIANT -s SPEED -p PITCH
--stdout SSML`` (22.05 kHz wav); the audio is resampled to 16 kHz
(``resample_poly(x, 320, 441)``), trimmed to 0.1 s of silence at each end
and scaled to a peak of 0.9.

Speed: starting espeak-ng costs ~15 ms, synthesising a sentence ~3 ms, so
several utterances of one speaker are synthesised in one call, separated by
2 s breaks, and the output is cut at the long pauses. If a cut does not give
exactly one piece per utterance (never seen so far), that batch is
synthesised again one utterance per call, so the result is always right and
still depends only on the batch, never on timing or on the worker.

Voice families (what ``test_unseen`` holds out): ``espeak:klatt`` for the
Klatt-synthesiser variants (``klatt`` ... ``klatt6``), else
``espeak:<base voice>`` (an accent, e.g. ``espeak:en-gb-scotland``).
"""

from __future__ import annotations

import io
import random
import re
import subprocess
from dataclasses import asdict, dataclass
from typing import Any, Sequence
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from s3prl_colld.constants import SAMPLE_RATE

ESPEAK_RATE = 22_050  # espeak-ng's output rate; 16000 / 22050 = 320 / 441 (not 160 / 441: that is 8 kHz)
BASE_VOICES = {
    "en": ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd"),
    "de": ("de",),
}
# Variants that give clear, voiced speech in en-us and de (whispering, robotic and
# effect variants left out); the ones missing from the installed espeak-ng are skipped.
VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6",
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "Denis", "Gene", "Henrique", "Hugo", "Jacky", "Lee",
    "Marco", "Mario", "Michael", "Mike", "Nguyen", "Storm", "Tweaky", "adam", "anika", "antonio",
    "aunty", "belinda", "benjamin", "boris", "caleb", "croak", "david", "ed", "edward", "grandma",
    "grandpa", "gustave", "iven", "iven2", "iven3", "john", "kaukovalta", "linda", "marcelo", "max",
    "michel", "miguel", "norbert", "pablo", "paul", "pedro", "quincy", "rob", "robert", "sandro",
    "shelby", "steph", "steph2", "steph3", "travis", "victor", "zac",
)
SPEED_RANGE = (140, 200)  # words per minute
PITCH_RANGE = (30, 70)  # espeak-ng pitch, 0-99
# seconds per word x words per minute, for planning a corpus of a given length (measured on 10 h of
# English and 3.6 h of German: espeak-ng's words are longer than its -s speed says)
SECONDS_PER_WORD_AT_1_WPM = {"en": 44.0, "de": 51.3}
RATE_JITTER = (94, 106)  # per utterance, % of the speaker's speed
PITCH_JITTER = (92, 108)  # per utterance, % of the speaker's pitch

BREAK_MS = 2000  # pause between the utterances of one espeak-ng call
MIN_GAP = int(1.0 * ESPEAK_RATE)  # a quiet stretch this long separates two utterances
QUIET_LEVEL = 64  # |int16| at or below this counts as quiet (breathy variants hiss slightly)
KEEP_SILENCE = int(0.1 * SAMPLE_RATE)  # silence kept at each end after trimming
PEAK = 0.9


KLATT_FAMILY = "espeak:klatt"


class SynthesisError(RuntimeError):
    """A TTS engine failed or produced no speech."""


@dataclass(frozen=True)
class Speaker:
    """One synthetic espeak-ng speaker; ``speaker_id`` is its LibriSpeech-style integer id."""

    speaker_id: int
    voice: str
    variant: str
    speed: int
    pitch: int

    engine = "espeak"  # class attribute, not a field

    @property
    def voice_name(self) -> str:
        """The voice as the manifest names it and espeak-ng's ``-v`` argument, e.g. ``en-gb+m3``."""
        return f"{self.voice}+{self.variant}"

    @property
    def family(self) -> str:
        """``espeak:klatt`` or ``espeak:<base voice>``."""
        return KLATT_FAMILY if self.variant.startswith("klatt") else f"espeak:{self.voice}"

    def seconds_per_word(self) -> float:
        """Planning estimate of this speaker's speaking time per word."""
        return SECONDS_PER_WORD_AT_1_WPM[self.voice.split("-")[0]] / self.speed


def speaker_record(speaker: Any) -> dict[str, Any]:
    """A speaker of either engine (``Speaker``, ``flite.FliteSpeaker``) as the manifest lists it."""
    return {"speaker_id": speaker.speaker_id, "engine": speaker.engine, "family": speaker.family, **{
        k: v for k, v in asdict(speaker).items() if k != "speaker_id"}}


@dataclass(frozen=True)
class UtteranceSpec:
    """What to say and how: the text and this utterance's rate and pitch, in % of the speaker's."""

    text: str
    rate: int
    pitch: int


def installed_variants(executable: str) -> list[str]:
    """The names in :data:`VARIANTS` that the installed espeak-ng has, in that order."""
    out = subprocess.run([executable, "--voices=variant"], capture_output=True, check=True).stdout.decode()
    found = set(re.findall(r"!v/(\S+)", out))
    return [v for v in VARIANTS if v in found]


def espeak_families(lang: str, variants: Sequence[str]) -> list[str]:
    """Every voice family that ``lang``'s espeak-ng speakers can belong to."""
    out = [f"espeak:{v}" for v in BASE_VOICES[lang]]
    return out + [KLATT_FAMILY] if any(v.startswith("klatt") for v in variants) else out


def make_speakers(lang: str, counts: Sequence[int], rng: random.Random, variants: Sequence[str],
                  family: str | None = None, exclude: str | None = None) -> list[list[Speaker]]:
    """espeak-ng speakers for several groups (e.g. dev, test, then train); ids are 0 (set them later).

    Every speaker of the first ``len(counts) - 1`` groups gets a variant of its
    own (held-out speakers never share a timbre with anyone); the last group
    takes the remaining variants, in turn if it needs more than are left (the
    speakers still differ by base voice, speed and pitch). Base voices are taken
    in turn. ``family`` keeps only speakers of that family, ``exclude`` drops
    those of that family.

    Raises:
        ValueError: too few variants for the held-out groups, or none left for the last group.
    """
    voices = [v for v in BASE_VOICES[lang]
              if not (family and family != KLATT_FAMILY and f"espeak:{v}" != family)
              and not (exclude and exclude != KLATT_FAMILY and f"espeak:{v}" == exclude)]
    chosen = [v for v in variants if not (family == KLATT_FAMILY and not v.startswith("klatt"))
              and not (exclude == KLATT_FAMILY and v.startswith("klatt"))]
    if not voices or not chosen:
        raise ValueError(f"no espeak-ng voice of family {family!r} (without {exclude!r}) for {lang!r}")
    rng.shuffle(voices)
    rng.shuffle(chosen)
    held = sum(counts[:-1])
    if held > len(chosen) or (counts[-1] and held == len(chosen)):
        raise ValueError(f"{len(chosen)} espeak-ng voice variants cannot give {held} held-out speakers a variant "
                         f"each and leave some for the other {counts[-1]}: use fewer --speakers")
    groups: list[list[Speaker]] = []
    start = 0
    for g, count in enumerate(counts):
        pool = chosen[start : start + count] if g < len(counts) - 1 else chosen[held:]
        groups.append([Speaker(0, voices[(start + i) % len(voices)], pool[i % len(pool)],
                               rng.randint(*SPEED_RANGE), rng.randint(*PITCH_RANGE)) for i in range(count)])
        start += count
    return groups


def jitter(rng: random.Random) -> tuple[int, int]:
    """A random (rate %, pitch %) for one utterance."""
    return rng.randint(*RATE_JITTER), rng.randint(*PITCH_JITTER)


def _espeak(speaker: Speaker, utterances: Sequence[UtteranceSpec], executable: str) -> np.ndarray:
    """int16 samples at 22.05 kHz of one espeak-ng call (SSML: each utterance's prosody, breaks between them)."""
    body = f'<break time="{BREAK_MS}ms"/>'.join(
        f'<prosody rate="{u.rate}%" pitch="{u.pitch}%">{escape(u.text)}</prosody>' for u in utterances)
    cmd = [executable, "-m", "-v", speaker.voice_name, "-s", str(speaker.speed), "-p", str(speaker.pitch),
           "--stdout", f"<speak>{body}</speak>"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        raise SynthesisError(f"{' '.join(cmd[:7])} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    samples, rate = sf.read(io.BytesIO(proc.stdout), dtype="int16")
    if rate != ESPEAK_RATE or samples.ndim != 1:
        raise SynthesisError(f"espeak-ng gave {rate} Hz audio with shape {samples.shape}, expected mono {ESPEAK_RATE} Hz")
    return samples


def split_at_pauses(samples: np.ndarray, count: int) -> list[np.ndarray] | None:
    """Cut at quiet stretches of at least :data:`MIN_GAP` samples; None unless that gives ``count`` pieces."""
    quiet = np.concatenate([[False], np.abs(samples.astype(np.int32)) <= QUIET_LEVEL, [False]])
    edges = np.flatnonzero(np.diff(quiet.astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]  # quiet runs [start, end)
    pieces, prev = [], 0
    for start, end in zip(starts, ends):
        if end - start >= MIN_GAP:
            if start > prev:
                pieces.append(samples[prev:start])
            prev = end
    if prev < len(samples):
        pieces.append(samples[prev:])
    return pieces if len(pieces) == count else None


def finish(samples: np.ndarray) -> np.ndarray:
    """22.05 kHz int16 -> 16 kHz float32: light silence trim (0.1 s kept), peak scaled to 0.9."""
    return trim_and_scale(resample_poly(samples.astype(np.float32) / 32768.0, 320, 441).astype(np.float32))


def trim_and_scale(wav: np.ndarray) -> np.ndarray:
    """16 kHz float32 ``[T]`` -> ``[T']``: silence trimmed to 0.1 s at each end, peak scaled to 0.9."""
    peak = float(np.abs(wav).max()) if wav.size else 0.0
    if peak < 1e-3:
        raise SynthesisError("the TTS engine produced silence")
    loud = np.flatnonzero(np.abs(wav) > 0.01 * peak)
    wav = wav[max(0, loud[0] - KEEP_SILENCE) : loud[-1] + 1 + KEEP_SILENCE]
    return (wav * (PEAK / peak)).astype(np.float32)


def synthesize(speaker: Speaker, utterances: Sequence[UtteranceSpec], executable: str) -> tuple[list[np.ndarray], bool]:
    """16 kHz float32 waveforms of ``utterances`` spoken by ``speaker``.

    Returns:
        The waveforms, and whether the batch had to be redone one utterance per call.
    """
    pieces = split_at_pauses(_espeak(speaker, utterances, executable), len(utterances))
    redone = pieces is None
    if pieces is None:
        pieces = [_espeak(speaker, [u], executable) for u in utterances]
    try:
        return [finish(p) for p in pieces], redone
    except SynthesisError as e:
        raise SynthesisError(f"{e} for voice {speaker.voice_name} and one of {[u.text for u in utterances]}") from None
