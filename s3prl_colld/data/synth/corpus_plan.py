"""The plan of a synthetic corpus: speakers, who says what in which split, and which utterances are made noisy.

Everything here is drawn from ``random.Random`` objects seeded by the corpus
seed, before any audio exists; :mod:`.synth` then renders the plan. Splits:

- ``train``, ``dev``, ``test``: speakers disjoint; the engines take turns
  among each split's speakers; no speaker of the held-out voice family.
- ``test_unseen``: speakers of one voice family (e.g. ``flite:awb``) that no
  other split has.
- ``dev_noisy``, ``test_noisy``: the utterances of ``dev`` and ``test`` (same
  ids, speakers and folders), every one with an acoustic condition.

Sentences of the held-out splits never occur in ``train``. Training
sentences are each used once, and when a ``--hours`` target needs more
utterances than there are sentences, they are used again, each time by
another speaker.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, replace
from typing import Sequence, Union

from s3prl_colld.data.synth import flite
from s3prl_colld.data.synth.augment import Augmentation, Room, plan_augmentation
from s3prl_colld.data.synth.sentences import SentencePair, spoken_words
from s3prl_colld.data.synth.voices import Speaker, UtteranceSpec, espeak_families, jitter
from s3prl_colld.data.synth.voices import make_speakers as make_espeak_speakers

AnySpeaker = Union[Speaker, flite.FliteSpeaker]

BASE_SPLITS = ("train", "dev", "test", "test_unseen")  # synthesised
NOISY_SPLITS = {"dev_noisy": "dev", "test_noisy": "test"}  # noisy copy -> its clean split
SPLITS = BASE_SPLITS + tuple(NOISY_SPLITS)
ENGINES = ("espeak", "flite")
UTTERANCE_SHARES = (0.8, 0.1, 0.1)  # train/dev/test of --utterances
UNSEEN_SHARE = 0.05  # test_unseen, on top of --utterances
HELD_OUT_SPEAKER_SHARE = 0.125  # of --speakers, for dev and for test each
CHAPTER_SIZE = 40  # utterances per chapter
FIRST_CHAPTER = 1000
FIRST_SPEAKER_ID = 100
BABBLE_POOL = 500  # babble talkers of a split come from at most this many of its utterances
SILENCE_SECONDS = 0.2  # kept around an utterance (0.1 s at each end)
HOURS_MARGIN = 1.02  # plan this much more than --hours: the estimate is within ~1 % (measured 9.97 h for 10)


class SynthError(RuntimeError):
    """A bad argument or output folder (the CLI prints it as one line)."""


@dataclass(frozen=True)
class Utterance:
    """One utterance of the corpus: who says what, where it goes, and its acoustic condition (None: clean)."""

    uttid: str
    split: str
    speaker: AnySpeaker
    chapter: int
    pair: SentencePair
    spec: UtteranceSpec
    augmentation: Augmentation | None = None

    @property
    def rel_path(self) -> str:
        """The flac path relative to the corpus root."""
        return f"{self.split}/{self.speaker.speaker_id}/{self.chapter}/{self.uttid}.flac"

    @property
    def clean_rel_path(self) -> str | None:
        """Where the clean audio of a noisy utterance is kept (``clean/<rel_path>``); None for a clean one."""
        return None if self.augmentation is None else f"clean/{self.rel_path}"

    @property
    def condition(self) -> str:
        """``clean`` or e.g. ``reverb+babble+noise``."""
        return "clean" if self.augmentation is None else self.augmentation.condition


@dataclass(frozen=True)
class Sizes:
    """Utterances per held-out split, and either a train count or a train length target in hours."""

    dev: int
    test: int
    unseen: int
    train: int | None = None
    hours: float | None = None


def sizes_for_utterances(total: int) -> Sizes:
    """``--utterances``: 80/10/10 % of ``total`` for train/dev/test (held-out ones at least 1), 5 % more for test_unseen."""
    held = [max(1, round(s * total)) for s in UTTERANCE_SHARES[1:]]
    if total - sum(held) < 1:
        raise SynthError(f"--utterances {total} is too small: need at least {len(UTTERANCE_SHARES)}")
    return Sizes(dev=held[0], test=held[1], unseen=max(1, round(UNSEEN_SHARE * total)), train=total - sum(held))


def sizes_for_hours(hours: float, held_out: int) -> Sizes:
    """``--hours``: train until ``hours`` of speech (estimated), ``held_out`` utterances for dev and for test, half for test_unseen."""
    if hours <= 0 or held_out < 1:
        raise SynthError(f"--hours must be above 0 and --held-out at least 1, got {hours} and {held_out}")
    return Sizes(dev=held_out, test=held_out, unseen=max(1, held_out // 2), hours=hours)


def check_engines(lang: str, engines: Sequence[str]) -> tuple[str, ...]:
    """``engines`` if each is known and speaks ``lang``, else :class:`SynthError`."""
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines or len(set(engines)) != len(engines):
        raise SynthError(f"--engines {','.join(engines)}: give distinct engines out of {', '.join(ENGINES)}")
    if lang != "en" and "flite" in engines:
        raise SynthError(f"flite has no voice for {lang!r}: use --engines espeak")
    return tuple(engines)


def default_unseen_family(engines: Sequence[str]) -> str:
    """``flite:awb`` (a Scottish recorded speaker) when flite speaks, else espeak-ng's Klatt voices."""
    return "flite:awb" if "flite" in engines else "espeak:klatt"


def check_family(family: str, lang: str, espeak_variants: Sequence[str], flite_voices: Sequence[str]) -> str:
    """``family`` if speakers of it can be made for ``lang``, else :class:`SynthError` listing the choices."""
    choices = espeak_families(lang, espeak_variants) + ([f"flite:{v}" for v in flite_voices] if lang == "en" else [])
    if family not in choices:
        raise SynthError(f"unknown voice family {family!r} for --lang {lang}: choose one of {', '.join(choices)}")
    return family


def make_speaker_groups(lang: str, engines: Sequence[str], n_speakers: int, n_unseen: int, unseen: str,
                        rng: random.Random, espeak_variants: Sequence[str],
                        flite_voices: Sequence[str]) -> dict[str, list[AnySpeaker]]:
    """Speakers of train/dev/test (``n_speakers``, 12.5 % each for dev and test) and test_unseen (``n_unseen``).

    Within a split the engines take turns; ids are numbered from
    :data:`FIRST_SPEAKER_ID` in the order train, dev, test, test_unseen.
    """
    held = max(1, round(HELD_OUT_SPEAKER_SHARE * n_speakers))
    counts = {"dev": held, "test": held, "train": n_speakers - 2 * held}
    if counts["train"] < 1 or n_unseen < 1:
        raise SynthError(f"--speakers {n_speakers} / --unseen-speakers {n_unseen} are too few: need at least 3 and 1")
    per_engine = {e: {s: len(range(i, c, len(engines))) for s, c in counts.items()} for i, e in enumerate(engines)}
    made: dict[str, dict[str, list[AnySpeaker]]] = {e: {} for e in engines}
    try:
        if "espeak" in engines:
            n = per_engine["espeak"]
            dev, test, train = make_espeak_speakers(lang, [n["dev"], n["test"], n["train"]], rng, espeak_variants,
                                                    exclude=unseen if unseen.startswith("espeak:") else None)
            made["espeak"] = {"dev": dev, "test": test, "train": train}
        if "flite" in engines:
            voices = [v for v in flite_voices if f"flite:{v}" != unseen]
            made["flite"] = {s: flite.make_speakers(voices, c, rng) for s, c in per_engine["flite"].items()}
        if unseen.startswith("flite:"):
            unseen_group: list[AnySpeaker] = list(flite.make_speakers([unseen.partition(":")[2]], n_unseen, rng))
        else:
            unseen_group = list(make_espeak_speakers(lang, [n_unseen], rng, espeak_variants, family=unseen)[0])
    except ValueError as e:
        raise SynthError(str(e)) from None
    groups: dict[str, list[AnySpeaker]] = {}
    for split in ("train", "dev", "test"):
        taken = {e: iter(made[e][split]) for e in engines}
        groups[split] = [next(taken[engines[i % len(engines)]]) for i in range(counts[split])]
    groups["test_unseen"] = unseen_group
    ids = itertools.count(FIRST_SPEAKER_ID)
    for split in ("train", "dev", "test", "test_unseen"):
        groups[split] = [replace(speaker, speaker_id=next(ids)) for speaker in groups[split]]
    return groups


def estimated_seconds(speaker: AnySpeaker, spec: UtteranceSpec) -> float:
    """A planning estimate of an utterance's length (words x the speaker's time per word, + silence)."""
    return SILENCE_SECONDS + len(spoken_words(spec.text)) * speaker.seconds_per_word() * 100 / spec.rate


def plan_utterances(pairs: Sequence[SentencePair], lang: str, sizes: Sizes, groups: dict[str, list[AnySpeaker]],
                    rng: random.Random) -> list[Utterance]:
    """The clean utterances of train, dev, test and test_unseen (see the module docstring)."""
    held_sizes = {"dev": sizes.dev, "test": sizes.test, "test_unseen": sizes.unseen}
    n_held = sum(held_sizes.values())
    if n_held + (sizes.train or 1) > len(pairs):
        wanted = n_held + (sizes.train or 1)
        raise SynthError(f"{wanted} utterances need {wanted} sentences, more than the {len(pairs)} sentence pairs available")
    order = [pairs[i] for i in rng.sample(range(len(pairs)), len(pairs))]
    held, pool = order[:n_held], order[n_held:]
    utterances: list[Utterance] = []
    chapter = FIRST_CHAPTER
    # train: each sentence once per pass; at pass w, utterance k goes to speaker (k + w) % n
    speakers = groups["train"]
    train: list[tuple[SentencePair, UtteranceSpec, int]] = []
    seconds = 0.0
    k = 0
    while (sizes.train is not None and k < sizes.train) or (sizes.hours is not None
                                                             and seconds < sizes.hours * 3600 * HOURS_MARGIN):
        pair = pool[k % len(pool)]
        speaker_index = (k + k // len(pool)) % len(speakers)
        rate, pitch = jitter(rng)
        spec = UtteranceSpec(pair.side(lang), rate, pitch)
        seconds += estimated_seconds(speakers[speaker_index], spec)
        train.append((pair, spec, speaker_index))
        k += 1
    by_speaker: dict[int, list[tuple[SentencePair, UtteranceSpec]]] = {}
    for pair, spec, s in train:
        by_speaker.setdefault(s, []).append((pair, spec))
    for s in sorted(by_speaker):
        chapter = _chapters("train", speakers[s], by_speaker[s], utterances, chapter)
    start = 0
    for split, size in held_sizes.items():
        group = groups[split][:size]  # no speaker without utterances
        mine = held[start : start + size]
        start += size
        for s, speaker in enumerate(group):
            chapter = _chapters(split, speaker, [(p, UtteranceSpec(p.side(lang), *jitter(rng)))
                                                 for p in mine[s :: len(group)]], utterances, chapter)
    return utterances


def _chapters(split: str, speaker: AnySpeaker, said: Sequence[tuple[SentencePair, UtteranceSpec]],
              out: list[Utterance], chapter: int) -> int:
    """Append ``speaker``'s utterances of ``split`` to ``out`` in chapters of :data:`CHAPTER_SIZE`; returns the last chapter."""
    for k, (pair, spec) in enumerate(said):
        if k % CHAPTER_SIZE == 0:
            chapter += 1
        out.append(Utterance(f"{speaker.speaker_id}-{chapter}-{k % CHAPTER_SIZE:04d}", split, speaker, chapter, pair, spec))
    return chapter


def auto_rooms(n_noisy: int) -> int:
    """Rooms in the bank when ``--rooms`` is not given: one per 16 noisy utterances, 2 to 24."""
    return min(24, max(2, math.ceil(n_noisy / 16)))


def plan_conditions(utterances: Sequence[Utterance], noisy_fraction: float, rooms: Sequence[Room],
                    snr_range: tuple[float, float], rng: random.Random) -> list[Utterance]:
    """All utterances of the corpus: ``noisy_fraction`` of train given a condition, dev and test copied
    to dev_noisy and test_noisy with a condition each; babble talkers from the same (clean) split."""
    if not 0.0 <= noisy_fraction <= 1.0:
        raise SynthError(f"--noisy-fraction must be between 0 and 1, got {noisy_fraction}")
    by_split = {s: [u for u in utterances if u.split == s] for s in BASE_SPLITS}
    train = by_split["train"]
    noisy_ids = {u.uttid for u in rng.sample(train, round(noisy_fraction * len(train)))}
    out: list[Utterance] = []
    pools = {s: rng.sample(by_split[s], min(BABBLE_POOL, len(by_split[s]))) for s in ("train", *NOISY_SPLITS.values())}

    def condition(u: Utterance, source_split: str) -> Augmentation:
        talkers = [b.uttid for b in pools[source_split] if b.speaker.speaker_id != u.speaker.speaker_id]
        return plan_augmentation(rng, rooms, talkers, snr_range)

    for u in utterances:
        out.append(replace(u, augmentation=condition(u, "train")) if u.uttid in noisy_ids else u)
    for noisy, clean in NOISY_SPLITS.items():
        out += [replace(u, split=noisy, augmentation=condition(u, clean)) for u in by_split[clean]]
    return out
