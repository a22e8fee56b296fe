"""A synthetic speech corpus with real TTS audio and acoustic conditions, in LibriSpeech and CoVoST 2 layouts.

    python -m s3prl_colld.data.synth --lang en --out data/synth_en --seed 0             # >= 10 h of training speech
    python -m s3prl_colld.data.synth --lang en --out data/tiny --utterances 1500 --seed 0
    python -m s3prl_colld.data.synth --lang de --out data/synth_de --seed 0             # >= 3 h

Sentences are English-German pairs from Debian's trans-de-en dictionary
(:mod:`.sentences`), or with ``--sentences grammar`` from a small templated
grammar whose translations a small model can learn (:mod:`.grammar`). English is spoken by espeak-ng speakers (:mod:`.voices`)
and flite speakers (:mod:`.flite`), German by espeak-ng speakers (flite has
no German voice); ``--engines`` picks them. English phones are ARPAbet from
flite's CMUdict-based lexicon whichever engine spoke (:mod:`.arpabet`),
German phones come from espeak-ng (:mod:`.phonemes`). The splits
(:mod:`.corpus_plan`): ``train``, ``dev``, ``test`` (speakers disjoint, dev and
test sentences never in train), ``test_unseen`` (a voice family that no other
split has, ``--unseen``), and ``dev_noisy`` / ``test_noisy`` (the dev and test
utterances, each with an acoustic condition). ``--noisy-fraction`` (default
0.5) of the training utterances get a condition too (:mod:`.augment`: room
reverb, babble of other utterances of the same split, coloured noise,
telephone band). The output, identical byte for byte for a given seed and
arguments (whatever ``--workers``)::

    DIR/<split>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac           16 kHz mono PCM_16, every split
    DIR/<split>/<spk>/<chapter>/<spk>-<chapter>.trans.txt            UTTID TRANSCRIPT
    DIR/<split>/phones.txt                                           UTTID PH1 PH2 ...
    DIR/clean/<split>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac     clean audio of each noisy utterance
    DIR/lexicon.txt, DIR/phones.txt                                  WORD<TAB>PHONES, inventory
    DIR/covost/<split>.tsv                                           id audio n_frames sr src_text tgt_text
    DIR/len_for_bucket/<split>.csv                                   s3prl length tables
    DIR/manifest.json                                                what is where, and how it was made

Contract (other parts of the toolkit rely on it):

- every noisy utterance (in ``train``, ``dev_noisy``, ``test_noisy``) keeps its
  clean audio at ``DIR/clean/<its path relative to DIR>`` (same file name),
  with exactly as many samples and time-aligned sample for sample (reverb is
  shifted back by the direct-path delay), so units computed on the clean file
  label the frames of the noisy one;
- ``manifest.json`` has a list under ``"utterances"`` with, per utterance,
  ``{"id", "split", "engine", "voice", "speaker", "condition", "path",
  "clean_path", "augmentation"}``: ``condition`` is ``"clean"`` or the parts
  present, e.g. ``"reverb+babble+noise"``; ``path`` and ``clean_path`` are
  relative to DIR (``clean_path`` null for a clean utterance); ``augmentation``
  holds the condition's settings (room, RT60, babble talkers, SNRs; null when
  clean). An id is unique within a split; ``dev_noisy`` and ``test_noisy`` reuse
  the ids of ``dev`` and ``test``;
- every split, noisy ones included, has the LibriSpeech layout above,
  ``DIR/<split>/phones.txt``, ``DIR/len_for_bucket/<split>.csv`` and
  ``DIR/covost/<split>.tsv``.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import math
import random
import shlex
import shutil
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict
from multiprocessing import Pool
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from s3prl_colld.constants import SAMPLE_RATE
from s3prl_colld.data.synth import flite
from s3prl_colld.data.synth.arpabet import T2PMissing, arpabet_lexicon, require_t2p
from s3prl_colld.data.synth.augment import RT60_RANGE, SNR_RANGE, augment, plan_rooms, room_impulse_response
from s3prl_colld.data.synth.corpus_plan import (BASE_SPLITS, NOISY_SPLITS, SPLITS, SynthError, Utterance, auto_rooms,
                                          check_engines, check_family, default_unseen_family, make_speaker_groups,
                                          plan_conditions, plan_utterances, sizes_for_hours, sizes_for_utterances,
                                          Sizes)
from s3prl_colld.data.synth import grammar
from s3prl_colld.data.lengths import LengthRow, write_length_csv
from s3prl_colld.data.synth.phonemes import (PHONEME_VOICE, EspeakMissing, phonemize_words, require_espeak,
                                       write_lexicon, write_phone_inventory)
from s3prl_colld.data.synth.sentences import (DICTIONARY_PATH, DictionaryMissing, SentencePair, load_sentence_pairs,
                                        normalise_transcript, require_dictionary, spoken_words)
from s3prl_colld.data.synth.voices import SynthesisError, installed_variants, speaker_record
from s3prl_colld.data.synth.voices import synthesize as espeak_synthesize

__all__ = ["SPLITS", "SynthError", "generate", "main", "parser"]

GENERATOR_VERSION = "s3prl-colld-synth/2"
LANGUAGES = {"en": "de", "de": "en"}  # spoken language -> translation target
DEFAULT_ENGINES = {"en": "espeak,flite", "de": "espeak"}
DEFAULT_HOURS = {"en": 10.0, "de": 3.0}  # of training speech, when neither --hours nor --utterances is given
HELD_OUT_UTTERANCES = 600  # dev and test each with --hours (test_unseen: half)
BATCH = 16  # utterances of one speaker per synthesis job
AUGMENT_BATCH = 16  # noisy utterances per augmentation job
OUTPUTS = (*SPLITS, "clean", "covost", "len_for_bucket", "lexicon.txt", "phones.txt", "manifest.json")
TSV_HEADER = ["id", "audio", "n_frames", "sr", "src_text", "tgt_text"]
SYNTHESISERS: dict[str, Callable] = {"espeak": espeak_synthesize, "flite": flite.synthesize}
SENTENCE_SOURCES = ("dictionary", "grammar")
GRAMMAR_SECONDS_PER_UTTERANCE = 1.5  # grammar utterances average ~2.3 s: --hours does not run out of distinct pairs


def grammar_pool_size(sizes: Sizes) -> int:
    """How many distinct grammar pairs a corpus of ``sizes`` draws from: one per utterance of train, dev, test
    and test_unseen (with ``--hours``, one per :data:`GRAMMAR_SECONDS_PER_UTTERANCE` of training speech)."""
    train = sizes.train if sizes.train is not None else math.ceil(sizes.hours * 3600 / GRAMMAR_SECONDS_PER_UTTERANCE)
    return sizes.dev + sizes.test + sizes.unseen + train


def sentence_pairs(args: argparse.Namespace, sizes: Sizes) -> list[SentencePair]:
    """The pairs the corpus draws its sentences from: the dictionary's, or ``--sentences grammar``'s
    (:mod:`.grammar`, seeded by ``--seed``)."""
    if args.sentences == "grammar":
        return grammar.grammar_pairs(grammar_pool_size(sizes), args.seed)
    return load_sentence_pairs(args.dictionary)


def prepare_output_dir(out: Path, force: bool) -> Path:
    """Create ``out`` (writable, and empty unless ``force``, which removes an earlier corpus there)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise SynthError(f"cannot write to the output directory {out}: {e.strerror or e}") from None
    existing = sorted(p.name for p in out.iterdir())
    if existing and not force:
        raise SynthError(f"output directory {out} is not empty ({', '.join(existing[:5])}): "
                         "pass --force to replace the corpus in it")
    for name in OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    return out


def batches(utterances: Sequence[Utterance]) -> list[list[Utterance]]:
    """Consecutive runs of at most :data:`BATCH` utterances of one speaker."""
    out: list[list[Utterance]] = []
    for u in utterances:
        if out and len(out[-1]) < BATCH and out[-1][0].speaker == u.speaker:
            out[-1].append(u)
        else:
            out.append([u])
    return out


def write_flac(path: Path, wav: np.ndarray) -> None:
    """16 kHz PCM_16 flac of a float waveform ``[T]`` in [-1, 1]."""
    sf.write(path, np.round(wav * 32767).astype(np.int16), SAMPLE_RATE, format="FLAC", subtype="PCM_16")


def render(job: tuple[list[Utterance], str, dict[str, str]]) -> tuple[list[int], bool]:
    """Worker: synthesise one batch (one speaker) and write its clean flacs; returns their lengths and the redo flag."""
    batch, out, executables = job
    engine = batch[0].speaker.engine
    wavs, redone = SYNTHESISERS[engine](batch[0].speaker, [u.spec for u in batch], executables[engine])
    for u, wav in zip(batch, wavs):
        write_flac(Path(out) / (u.clean_rel_path or u.rel_path), wav)
    return [len(w) for w in wavs], redone


_ROOM_BANK: list[np.ndarray] = []  # impulse responses, set in each augmentation worker


def _set_room_bank(bank: list[np.ndarray]) -> None:
    global _ROOM_BANK
    _ROOM_BANK = bank


@functools.lru_cache(maxsize=1024)
def _clean_audio(path: str) -> np.ndarray:
    """float32 ``[T]`` of a clean flac (babble talkers are read many times: cached per worker)."""
    wav, _ = sf.read(path, dtype="float32")
    return wav


AugmentJob = tuple[str, list[tuple[str, str, Any, list[str]]]]  # out, [(clean rel, noisy rel, Augmentation, babble rels)]


def render_noisy(job: AugmentJob) -> list[int]:
    """Worker: write the noisy flacs of a batch from their clean ones; returns their lengths."""
    out, items = job
    lengths = []
    for clean_rel, noisy_rel, aug, babble_rels in items:
        clean, _ = sf.read(Path(out) / clean_rel, dtype="float32")
        rir = _ROOM_BANK[aug.room] if aug.room is not None else None
        noisy = augment(clean, aug, [_clean_audio(str(Path(out) / b)) for b in babble_rels], rir)
        if len(noisy) != len(clean):
            raise SynthesisError(f"{noisy_rel}: the noisy audio has {len(noisy)} samples, the clean one {len(clean)}")
        write_flac(Path(out) / noisy_rel, noisy)
        lengths.append(len(noisy))
    return lengths


def run_jobs(fn: Callable, jobs: list, workers: int, desc: str, sizes: list[int],
             initializer: Callable | None = None, initargs: tuple = ()) -> Iterator[Any]:
    """``fn(job)`` for each job, in job order, from ``workers`` processes, with a progress bar counting ``sizes``."""
    with tqdm(total=sum(sizes), desc=desc, unit="utt") as bar, ExitStack() as stack:
        if workers == 1:
            if initializer is not None:
                initializer(*initargs)
            results = map(fn, jobs)
        else:  # leaving the block terminates the pool
            results = stack.enter_context(Pool(workers, initializer=initializer, initargs=initargs)).imap(fn, jobs)
        for result, size in zip(results, sizes):
            bar.update(size)
            yield result


def room_bank(rooms: Sequence, workers: int) -> list[np.ndarray]:
    """Impulse responses of ``rooms`` (computed in ``workers`` processes)."""
    if not rooms:
        return []
    if workers == 1:
        return [room_impulse_response(r) for r in rooms]
    with Pool(workers) as pool:
        return list(pool.imap(room_impulse_response, rooms))


def write_tsv(path: Path, rows: list[list[str | int]]) -> None:
    """Tab-separated file with :data:`TSV_HEADER`; no field may hold a tab, newline or double quote."""
    for row in rows:
        for field in row:
            if any(c in str(field) for c in '\t\n\r"'):
                raise ValueError(f"{path}: a tab, newline or double quote in the field {field!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None, lineterminator="\n")
        writer.writerow(TSV_HEADER)
        writer.writerows(rows)


def build_lexicon(utterances: Sequence[Utterance], lang: str, executables: dict[str, str],
                  workers: int) -> dict[str, list[str]]:
    """``WORD -> phones`` for every transcript word (each word spelt as its first surface form, sorted):
    ARPAbet from flite's t2p for English, espeak-ng's IPA for German."""
    surface: dict[str, str] = {}
    for word in sorted({w for u in utterances for w in spoken_words(u.spec.text)}):
        surface.setdefault(word.upper(), word)
    if lang == "en":
        phones = arpabet_lexicon(surface.values(), executables["t2p"], workers)
    else:
        phones = phonemize_words(surface.values(), PHONEME_VOICE[lang], executables["espeak"], workers)
    return {key: phones[word] for key, word in surface.items()}


def write_texts(out: Path, utterances: Sequence[Utterance], lengths: dict[tuple[str, str], int], lang: str,
                lexicon: dict[str, list[str]]) -> None:
    """Transcripts, phone transcripts, lexicon, CoVoST tsv and length tables of every split."""
    write_lexicon(lexicon, out / "lexicon.txt")
    write_phone_inventory(lexicon, out / "phones.txt")
    target = LANGUAGES[lang]
    for split in SPLITS:
        mine = sorted((u for u in utterances if u.split == split), key=lambda u: u.uttid)
        chapters: dict[Path, list[str]] = {}
        phone_lines, tsv_rows, length_rows = [], [], []
        for u in mine:
            words = normalise_transcript(u.spec.text)
            n = lengths[split, u.uttid]
            folder = out / split / str(u.speaker.speaker_id) / str(u.chapter)
            chapters.setdefault(folder / f"{u.speaker.speaker_id}-{u.chapter}.trans.txt", []).append(f"{u.uttid} {words}")
            phone_lines.append(" ".join([u.uttid] + [p for w in words.split() for p in lexicon[w]]))
            tsv_rows.append([u.uttid, u.rel_path, n, SAMPLE_RATE, u.spec.text, u.pair.side(target)])
            length_rows.append(LengthRow(u.rel_path, n, words))
        for path, lines in chapters.items():
            path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        (out / split).mkdir(parents=True, exist_ok=True)
        (out / split / "phones.txt").write_text("".join(line + "\n" for line in phone_lines), encoding="utf-8")
        write_tsv(out / "covost" / f"{split}.tsv", tsv_rows)
        write_length_csv(length_rows, out / "len_for_bucket" / f"{split}.csv")


def utterance_record(u: Utterance) -> dict[str, Any]:
    """The manifest entry of one utterance (see the module docstring)."""
    return {"id": u.uttid, "split": u.split, "engine": u.speaker.engine, "voice": u.speaker.voice_name,
            "speaker": u.speaker.speaker_id, "condition": u.condition, "path": u.rel_path,
            "clean_path": u.clean_rel_path, "augmentation": None if u.augmentation is None else u.augmentation.to_dict()}


def manifest(args: argparse.Namespace, argv: Sequence[str], utterances: Sequence[Utterance],
             lengths: dict[tuple[str, str], int], n_pairs: int, lexicon: dict[str, list[str]],
             settings: dict[str, Any]) -> dict:
    """What the corpus holds and how it was made; only ``command`` differs between runs with the same seed."""
    counts, hours, speakers, conditions = {}, {}, {}, {}
    for split in SPLITS:
        mine = [u for u in utterances if u.split == split]
        counts[split] = len(mine)
        hours[split] = round(sum(lengths[split, u.uttid] for u in mine) / SAMPLE_RATE / 3600, 4)
        speakers[split] = [speaker_record(s) for s in dict.fromkeys(u.speaker for u in mine)]
        conditions[split] = dict(sorted(Counter(u.condition for u in mine).items()))
    order = {s: i for i, s in enumerate(SPLITS)}
    return {
        "generator": GENERATOR_VERSION, "lang": args.lang, "target_lang": LANGUAGES[args.lang], "seed": args.seed,
        "sample_rate": SAMPLE_RATE, **settings, "splits": list(SPLITS), "counts": counts, "hours": hours,
        "conditions": conditions, "speakers": speakers, "sentence_pairs_available": n_pairs,
        "lexicon_words": len(lexicon), "phones": len({p for ph in lexicon.values() for p in ph}),
        "command": shlex.join(["python", "-m", "s3prl_colld.data.synth", *argv]),
        "utterances": [utterance_record(u) for u in sorted(utterances, key=lambda u: (order[u.split], u.uttid))],
    }


def _range(text: str, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise SynthError(f"{name} takes LOW,HIGH (two numbers), got {text!r}") from None
    if lo > hi:
        raise SynthError(f"{name} {text}: LOW is above HIGH")
    return lo, hi


def generate(args: argparse.Namespace, argv: Sequence[str]) -> dict:
    """Build the corpus described by the parsed CLI ``args``; returns the manifest."""
    begin = time.perf_counter()
    lang = args.lang
    if lang not in LANGUAGES:
        raise SynthError(f"unknown language {lang!r}: choose one of {', '.join(LANGUAGES)}")
    engines = check_engines(lang, (args.engines or DEFAULT_ENGINES[lang]).split(","))
    unseen = args.unseen or default_unseen_family(engines)
    if args.workers < 1:
        raise SynthError(f"--workers must be at least 1, got {args.workers}")
    if args.utterances is not None and args.hours is not None:
        raise SynthError("give --utterances or --hours, not both")
    rt60, snr = _range(args.rt60, "--rt60"), _range(args.snr, "--snr")
    if rt60[0] <= 0:
        raise SynthError(f"--rt60 must be above 0 s, got {args.rt60}")
    uses_flite = "flite" in engines or unseen.startswith("flite:")
    executables = {"espeak": require_espeak(args.espeak)}  # German phones and every espeak speaker need it
    if uses_flite:
        executables["flite"] = flite.require_flite(args.flite)
    if lang == "en":
        executables["t2p"] = require_t2p(args.t2p)
    if args.sentences not in SENTENCE_SOURCES:
        raise SynthError(f"unknown --sentences {args.sentences!r}: choose one of {', '.join(SENTENCE_SOURCES)}")
    if args.sentences == "dictionary":
        require_dictionary(args.dictionary)
    variants = installed_variants(executables["espeak"])
    flite_voices = flite.installed_voices(executables["flite"]) if uses_flite else []
    check_family(unseen, lang, variants, flite_voices)
    sizes = (sizes_for_utterances(args.utterances) if args.utterances is not None
             else sizes_for_hours(DEFAULT_HOURS[lang] if args.hours is None else args.hours, args.held_out))

    pairs = sentence_pairs(args, sizes)
    rng = random.Random(args.seed)
    groups = make_speaker_groups(lang, engines, args.speakers, args.unseen_speakers, unseen, rng, variants, flite_voices)
    clean = plan_utterances(pairs, lang, sizes, groups, rng)
    aug_rng = random.Random(f"augment-{args.seed}")
    n_noisy = round(args.noisy_fraction * sum(u.split == "train" for u in clean)) + sum(
        u.split in NOISY_SPLITS.values() for u in clean)
    rooms = plan_rooms(auto_rooms(n_noisy) if args.rooms is None else args.rooms, rt60, aug_rng)
    utterances = plan_conditions(clean, args.noisy_fraction, rooms, snr, aug_rng)
    out = prepare_output_dir(Path(args.out).resolve(), args.force)
    for u in utterances:
        for rel in (u.rel_path, u.clean_rel_path):
            if rel is not None:
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
    lexicon = build_lexicon(clean, lang, executables, args.workers)
    planned = time.perf_counter()

    # 1. clean audio of train/dev/test/test_unseen (noisy-to-be training utterances go to clean/)
    synthesised = [u for u in utterances if u.split in BASE_SPLITS]
    jobs = [(b, str(out), executables) for b in batches(synthesised)]
    lengths: dict[tuple[str, str], int] = {}
    redone = 0
    for (batch, _, _), (sizes_, was_redone) in zip(jobs, run_jobs(render, jobs, args.workers, "synthesising",
                                                                   [len(j[0]) for j in jobs])):
        lengths.update(((u.split, u.uttid), n) for u, n in zip(batch, sizes_))
        redone += was_redone
    synthesis_done = time.perf_counter()

    # 2. the room bank, the clean copies of dev/test for dev_noisy/test_noisy, then every noisy utterance
    bank = room_bank(rooms, args.workers)
    rooms_done = time.perf_counter()
    clean_of = {u.uttid: u.clean_rel_path or u.rel_path for u in synthesised}
    noisy = [u for u in utterances if u.augmentation is not None]
    for u in noisy:
        if u.split in NOISY_SPLITS:
            shutil.copyfile(out / clean_of[u.uttid], out / u.clean_rel_path)
    items = [(u.clean_rel_path, u.rel_path, u.augmentation, [clean_of[b] for b in u.augmentation.babble]) for u in noisy]
    aug_jobs = [(str(out), items[i : i + AUGMENT_BATCH]) for i in range(0, len(items), AUGMENT_BATCH)]
    results = run_jobs(render_noisy, aug_jobs, args.workers, "augmenting", [len(j[1]) for j in aug_jobs],
                       initializer=_set_room_bank, initargs=(bank,))
    for u, n in zip(noisy, (n for r in results for n in r)):
        lengths[u.split, u.uttid] = n
    augment_done = time.perf_counter()

    settings = {"sentences": args.sentences, **({"grammar": {
                    "pairs_possible": grammar.count_pairs(), "content_words": grammar.content_words(),
                    "word_forms": {s: len(grammar.vocabulary(s)) for s in LANGUAGES}}} if args.sentences == "grammar" else {}),
                "engines": list(engines), "unseen_family": unseen, "phone_set": "arpabet" if lang == "en" else "espeak-ipa",
                "hours_target": sizes.hours, "augmentation": {
                    "noisy_fraction": args.noisy_fraction, "rt60_s": list(rt60), "snr_db": list(snr),
                    "rooms": [asdict(r) for r in rooms]}}
    write_texts(out, utterances, lengths, lang, lexicon)
    info = manifest(args, argv, utterances, lengths, len(pairs), lexicon, settings)
    (out / "manifest.json").write_text(json.dumps(info, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    total = time.perf_counter() - begin
    print(f"{len(synthesised)} utterances synthesised ({sum(info['hours'][s] for s in BASE_SPLITS):.3f} h; "
          f"train {info['hours']['train']:.3f} h) and {len(noisy)} made noisy, in {total:.1f} s with "
          f"{args.workers} workers: planning and lexicon {planned - begin:.1f} s, synthesis "
          f"{synthesis_done - planned:.1f} s, {len(rooms)} rooms {rooms_done - synthesis_done:.1f} s, augmentation "
          f"{augment_done - rooms_done:.1f} s; {redone} of {len(jobs)} espeak-ng batches redone one by one; "
          f"{len(lexicon)} words, {info['phones']} phones; {len(pairs)} sentence pairs available -> {out}",
          file=sys.stderr)
    return info


def parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    p = argparse.ArgumentParser(prog="python -m s3prl_colld.data.synth",
                                description="Synthesise a LibriSpeech/CoVoST 2-layout corpus with espeak-ng and flite, "
                                            "with noisy and unseen-voice test splits.")
    p.add_argument("--lang", required=True, help="spoken language: en (targets de) or de (targets en)")
    p.add_argument("--out", required=True, help="output directory (must be empty unless --force)")
    p.add_argument("--hours", type=float, default=None,
                   help="hours of training speech to aim at (estimated while planning; default "
                        f"{DEFAULT_HOURS['en']:g} for en, {DEFAULT_HOURS['de']:g} for de, unless --utterances is given)")
    p.add_argument("--utterances", type=int, default=None,
                   help="instead of --hours: utterances in train+dev+test (80/10/10 %%; test_unseen adds 5 %%)")
    p.add_argument("--held-out", type=int, default=HELD_OUT_UTTERANCES,
                   help=f"with --hours: utterances in dev and in test each (default {HELD_OUT_UTTERANCES}; test_unseen half)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    p.add_argument("--engines", default=None, help="comma-separated TTS engines: espeak, flite "
                   f"(default {DEFAULT_ENGINES['en']} for en, {DEFAULT_ENGINES['de']} for de)")
    p.add_argument("--speakers", type=int, default=96,
                   help="speakers in train+dev+test, 12.5%% each for dev and test (default 96: 72/12/12)")
    p.add_argument("--unseen", default=None, help="voice family of test_unseen, kept out of every other split, e.g. "
                   "flite:awb, espeak:klatt, espeak:en-gb-scotland (default flite:awb with flite, else espeak:klatt)")
    p.add_argument("--unseen-speakers", type=int, default=8, help="speakers in test_unseen (default 8)")
    p.add_argument("--noisy-fraction", type=float, default=0.5,
                   help="fraction of the training utterances given an acoustic condition (default 0.5)")
    p.add_argument("--rooms", type=int, default=None,
                   help="rooms in the impulse-response bank (default: one per 16 noisy utterances, 2 to 24; 0: no reverb)")
    p.add_argument("--rt60", default=",".join(f"{x:g}" for x in RT60_RANGE), help="RT60 range of the rooms in s (default 0.2,0.9)")
    p.add_argument("--snr", default=",".join(f"{x:g}" for x in SNR_RANGE), help="SNR range in dB of noise and babble (default 0,20)")
    p.add_argument("--sentences", default="dictionary", choices=SENTENCE_SOURCES,
                   help="where the sentence pairs come from: dictionary (real sentences of trans-de-en, default) or "
                        "grammar (a small templated grammar with ~260 content words, learnable by a small "
                        "translation model; see docs/corpus.md)")
    p.add_argument("--dictionary", default=str(DICTIONARY_PATH), help=f"trans-de-en dictionary (default {DICTIONARY_PATH})")
    p.add_argument("--espeak", default="espeak-ng", help="espeak-ng executable (default: espeak-ng on PATH)")
    p.add_argument("--flite", default="flite", help="flite executable (default: flite on PATH)")
    p.add_argument("--t2p", default="t2p", help="flite's t2p executable, for English phones (default: t2p on PATH)")
    p.add_argument("--force", action="store_true", help="replace an earlier corpus in --out")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; expected errors print as one line and exit with status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    try:
        generate(args, argv)
    except (SynthError, SynthesisError, EspeakMissing, flite.FliteMissing, T2PMissing, DictionaryMissing) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
