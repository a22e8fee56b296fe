"""A small synthetic speech corpus with real TTS audio, in LibriSpeech and CoVoST 2 layouts.

    python -m s3prl_colld.data.synth --lang en --out data/synth_en --utterances 1500 --seed 0

Sentences are English-German pairs from Debian's trans-de-en dictionary
(:mod:`.sentences`), spoken by espeak-ng speakers (:mod:`.voices`); the
lexicon comes from espeak-ng too (:mod:`.phonemes`). Splits are disjoint by
speaker (train/dev/test ~ 75/12.5/12.5 % of the speakers, 80/10/10 % of the
utterances). The output, identical byte for byte for a given seed::

    DIR/{train,dev,test}/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac   16 kHz mono PCM_16
    DIR/{train,dev,test}/<spk>/<chapter>/<spk>-<chapter>.trans.txt   UTTID TRANSCRIPT
    DIR/{train,dev,test}/phones.txt                                  UTTID PH1 PH2 ...
    DIR/lexicon.txt, DIR/phones.txt                                  WORD<TAB>PHONES, inventory
    DIR/covost/{train,dev,test}.tsv                                  id audio n_frames sr src_text tgt_text
    DIR/len_for_bucket/{train,dev,test}.csv                          s3prl length tables
    DIR/manifest.json                                                counts, hours, speakers, command
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from s3prl_colld.constants import SAMPLE_RATE
from s3prl_colld.data.lengths import LengthRow, write_length_csv
from s3prl_colld.data.phonemes import (PHONEME_VOICE, EspeakMissing, phonemize_words, require_espeak,
                                       write_lexicon, write_phone_inventory)
from s3prl_colld.data.sentences import (DICTIONARY_PATH, DictionaryMissing, SentencePair, load_sentence_pairs,
                                        normalise_transcript, require_dictionary, spoken_words)
from s3prl_colld.data.voices import (Speaker, SynthesisError, UtteranceSpec, installed_variants,
                                     jitter, make_speakers, synthesize)

GENERATOR_VERSION = "s3prl-colld-synth/1"
LANGUAGES = {"en": "de", "de": "en"}  # spoken language -> translation target
SPLITS = ("train", "dev", "test")
UTTERANCE_SHARES = (0.8, 0.1, 0.1)
HELD_OUT_SPEAKER_SHARE = 0.125  # of the speakers, for dev and for test each
BATCH = 16  # utterances of one speaker per espeak-ng call
CHAPTER_SIZE = 40  # utterances per chapter
FIRST_CHAPTER = 1000
OUTPUTS = ("train", "dev", "test", "covost", "len_for_bucket", "lexicon.txt", "phones.txt", "manifest.json")
TSV_HEADER = ["id", "audio", "n_frames", "sr", "src_text", "tgt_text"]


class SynthError(RuntimeError):
    """A bad argument or output folder (the CLI prints it as one line)."""


@dataclass(frozen=True)
class Utterance:
    """One planned utterance: who says what, where it goes."""

    uttid: str
    split: str
    speaker: Speaker
    chapter: int
    pair: SentencePair
    spec: UtteranceSpec

    @property
    def rel_path(self) -> str:
        """The flac path relative to the corpus root."""
        return f"{self.split}/{self.speaker.speaker_id}/{self.chapter}/{self.uttid}.flac"


def check_lang(lang: str) -> str:
    """``lang`` if it is one we can synthesise, else :class:`SynthError` listing them."""
    if lang not in LANGUAGES:
        raise SynthError(f"unknown language {lang!r}: choose one of {', '.join(LANGUAGES)}")
    return lang


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


def split_sizes(total: int, shares: Sequence[float]) -> list[int]:
    """Utterances per split: held-out splits get ``round(share * total)`` (at least 1), train the rest."""
    held_out = [max(1, round(s * total)) for s in shares[1:]]
    if total - sum(held_out) < 1:
        raise SynthError(f"--utterances {total} is too small: need at least {len(shares)}")
    return [total - sum(held_out), *held_out]


def plan(pairs: Sequence[SentencePair], lang: str, total: int, n_speakers: int, variants: Sequence[str],
         rng: random.Random) -> list[Utterance]:
    """Choose sentences, speakers, chapters and per-utterance jitter (all from ``rng``)."""
    if total > len(pairs):
        raise SynthError(f"--utterances {total} is more than the {len(pairs)} sentence pairs available")
    if n_speakers < len(SPLITS):
        raise SynthError(f"--speakers {n_speakers} is too small: need one per split at least")
    chosen = [pairs[i] for i in rng.sample(range(len(pairs)), total)]
    try:
        speakers = make_speakers(lang, n_speakers, rng, variants)
    except ValueError as e:
        raise SynthError(str(e)) from None
    held = max(1, round(HELD_OUT_SPEAKER_SHARE * n_speakers))
    groups = [speakers[: n_speakers - 2 * held], speakers[n_speakers - 2 * held : n_speakers - held],
              speakers[n_speakers - held :]]
    utterances: list[Utterance] = []
    chapter = FIRST_CHAPTER
    start = 0
    for split, size, group in zip(SPLITS, split_sizes(total, UTTERANCE_SHARES), groups):
        group = group[:size]  # no speaker without utterances
        for s, speaker in enumerate(group):
            mine = chosen[start + s : start + size : len(group)]
            for k, pair in enumerate(mine):
                if k % CHAPTER_SIZE == 0:
                    chapter += 1
                rate, pitch = jitter(rng)
                uttid = f"{speaker.speaker_id}-{chapter}-{k % CHAPTER_SIZE:04d}"
                spec = UtteranceSpec(pair.side(lang), rate, pitch)
                utterances.append(Utterance(uttid, split, speaker, chapter, pair, spec))
        start += size
    return utterances


def batches(utterances: Sequence[Utterance]) -> list[list[Utterance]]:
    """Consecutive runs of at most :data:`BATCH` utterances of one speaker."""
    out: list[list[Utterance]] = []
    for u in utterances:
        if out and len(out[-1]) < BATCH and out[-1][0].speaker == u.speaker:
            out[-1].append(u)
        else:
            out.append([u])
    return out


def render(job: tuple[list[Utterance], str, str]) -> tuple[list[int], bool]:
    """Worker: synthesise one batch and write its flacs; returns their lengths and the redo flag."""
    batch, out, executable = job
    wavs, redone = synthesize(batch[0].speaker, [u.spec for u in batch], executable)
    for u, wav in zip(batch, wavs):
        pcm = np.round(wav * 32767).astype(np.int16)
        sf.write(Path(out) / u.rel_path, pcm, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return [len(w) for w in wavs], redone


def run_batches(jobs: list[tuple[list[Utterance], str, str]], workers: int) -> Iterator[tuple[list[int], bool]]:
    """Results of :func:`render` in job order, from ``workers`` processes, with a progress bar."""
    with tqdm(total=sum(len(j[0]) for j in jobs), desc="synthesising", unit="utt") as bar:
        if workers == 1:
            for result in map(render, jobs):
                bar.update(len(result[0]))
                yield result
            return
        with Pool(workers) as pool:  # leaving the block (also on an error) terminates the workers
            for result in pool.imap(render, jobs):
                bar.update(len(result[0]))
                yield result


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


def build_lexicon(utterances: Sequence[Utterance], lang: str, executable: str, workers: int) -> dict[str, list[str]]:
    """``WORD -> phones`` for every transcript word (each word spelt as its first surface form, sorted)."""
    surface: dict[str, str] = {}
    for word in sorted({w for u in utterances for w in spoken_words(u.spec.text)}):
        surface.setdefault(word.upper(), word)
    phones = phonemize_words(surface.values(), PHONEME_VOICE[lang], executable, workers)
    return {key: phones[word] for key, word in surface.items()}


def write_texts(out: Path, utterances: Sequence[Utterance], lengths: dict[str, int], lang: str,
                lexicon: dict[str, list[str]]) -> None:
    """Transcripts, phone transcripts, lexicon, CoVoST tsv and length tables."""
    write_lexicon(lexicon, out / "lexicon.txt")
    write_phone_inventory(lexicon, out / "phones.txt")
    target = LANGUAGES[lang]
    for split in SPLITS:
        mine = sorted((u for u in utterances if u.split == split), key=lambda u: u.uttid)
        chapters: dict[Path, list[str]] = {}
        phone_lines, tsv_rows, length_rows = [], [], []
        for u in mine:
            words = normalise_transcript(u.spec.text)
            folder = out / split / str(u.speaker.speaker_id) / str(u.chapter)
            chapters.setdefault(folder / f"{u.speaker.speaker_id}-{u.chapter}.trans.txt", []).append(f"{u.uttid} {words}")
            phone_lines.append(" ".join([u.uttid] + [p for w in words.split() for p in lexicon[w]]))
            tsv_rows.append([u.uttid, u.rel_path, lengths[u.uttid], SAMPLE_RATE, u.spec.text, u.pair.side(target)])
            length_rows.append(LengthRow(u.rel_path, lengths[u.uttid], words))
        for path, lines in chapters.items():
            path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        (out / split / "phones.txt").write_text("".join(line + "\n" for line in phone_lines), encoding="utf-8")
        write_tsv(out / "covost" / f"{split}.tsv", tsv_rows)
        write_length_csv(length_rows, out / "len_for_bucket" / f"{split}.csv")


def manifest(args: argparse.Namespace, argv: Sequence[str], utterances: Sequence[Utterance],
             lengths: dict[str, int], n_pairs: int, lexicon: dict[str, list[str]]) -> dict:
    """What the corpus holds and how it was made; only ``command`` differs between runs with the same seed."""
    counts, hours, speakers = {}, {}, {}
    for split in SPLITS:
        mine = [u for u in utterances if u.split == split]
        counts[split] = len(mine)
        hours[split] = round(sum(lengths[u.uttid] for u in mine) / SAMPLE_RATE / 3600, 4)
        speakers[split] = [s.to_dict() for s in dict.fromkeys(u.speaker for u in mine)]
    return {
        "generator": GENERATOR_VERSION, "lang": args.lang, "target_lang": LANGUAGES[args.lang], "seed": args.seed,
        "sample_rate": SAMPLE_RATE, "counts": counts, "hours": hours, "speakers": speakers,
        "sentence_pairs_available": n_pairs, "lexicon_words": len(lexicon),
        "phones": len({p for ph in lexicon.values() for p in ph}),
        "command": shlex.join(["python", "-m", "s3prl_colld.data.synth", *argv]),
    }


def generate(args: argparse.Namespace, argv: Sequence[str]) -> dict:
    """Build the corpus described by the parsed CLI ``args``; returns the manifest."""
    check_lang(args.lang)
    executable = require_espeak(args.espeak)
    require_dictionary(args.dictionary)
    if args.workers < 1:
        raise SynthError(f"--workers must be at least 1, got {args.workers}")
    pairs = load_sentence_pairs(args.dictionary)
    utterances = plan(pairs, args.lang, args.utterances, args.speakers, installed_variants(executable),
                      random.Random(args.seed))
    out = prepare_output_dir(Path(args.out).resolve(), args.force)
    begin = time.perf_counter()
    for folder in sorted({(out / u.rel_path).parent for u in utterances}):
        folder.mkdir(parents=True, exist_ok=True)
    lexicon = build_lexicon(utterances, args.lang, executable, args.workers)

    start = time.perf_counter()
    jobs = [(b, str(out), executable) for b in batches(utterances)]
    lengths: dict[str, int] = {}
    redone = 0
    for (batch, _, _), (sizes, was_redone) in zip(jobs, run_batches(jobs, args.workers)):
        lengths.update((u.uttid, n) for u, n in zip(batch, sizes))
        redone += was_redone
    seconds = time.perf_counter() - start

    write_texts(out, utterances, lengths, args.lang, lexicon)
    info = manifest(args, argv, utterances, lengths, len(pairs), lexicon)
    (out / "manifest.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    total_hours = sum(info["hours"].values())
    print(f"{len(utterances)} utterances ({total_hours:.3f} h): synthesis {seconds:.1f} s "
          f"({len(utterances) / seconds:.0f} utt/s with {args.workers} workers), "
          f"all with lexicon and files {time.perf_counter() - begin:.1f} s; "
          f"{redone} of {len(jobs)} batches redone one by one; {len(lexicon)} words, {info['phones']} phones; "
          f"{len(pairs)} sentence pairs available -> {out}", file=sys.stderr)
    return info


def parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    p = argparse.ArgumentParser(prog="python -m s3prl_colld.data.synth",
                                description="Synthesise a small LibriSpeech/CoVoST 2-layout corpus with espeak-ng.")
    p.add_argument("--lang", required=True, help="spoken language: en (targets de) or de (targets en)")
    p.add_argument("--out", required=True, help="output directory (must be empty unless --force)")
    p.add_argument("--utterances", type=int, default=1500, help="number of utterances (default 1500)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    p.add_argument("--workers", type=int, default=2, help="synthesis processes (default 2)")
    p.add_argument("--speakers", type=int, default=24, help="number of speakers (default 24: 18/3/3)")
    p.add_argument("--dictionary", default=str(DICTIONARY_PATH), help=f"trans-de-en dictionary (default {DICTIONARY_PATH})")
    p.add_argument("--espeak", default="espeak-ng", help="espeak-ng executable (default: espeak-ng on PATH)")
    p.add_argument("--force", action="store_true", help="replace an earlier corpus in --out")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; expected errors print as one line and exit with status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    try:
        generate(args, argv)
    except (SynthError, SynthesisError, EspeakMissing, DictionaryMissing) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
