"""Length tables for bucketing, in the format of s3prl's ``preprocess/generate_len_for_bucket.py``.

``len_for_bucket/<split>.csv`` has the header ``,file_path,length,label``:
a row index, the audio path relative to the corpus root
(``train-clean-100/103/1240/103-1240-0000.flac``), the number of samples and
the transcript (s3prl leaves it empty; we fill it from ``*.trans.txt`` when
there is one). Rows are sorted by length, longest first (ties by path).

Every file is decoded once (``s3prl_colld.data.audio_check``, cached, so
training does not decode it again to check it): unusable files (missing,
corrupt, empty, too short, not 16 kHz mono without ``--resample``) are all
listed and no table is written (exit 2), or with ``--on_bad_audio skip`` left
out of the table.

Usage for a real LibriSpeech::

    python -m s3prl_colld.data.lengths --root /data/LibriSpeech --split train-clean-100 --split dev-clean
"""

from __future__ import annotations

import argparse
import csv
import functools
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from s3prl_colld.data.audio import AudioError
from s3prl_colld.data.audio_check import BadAudioError, bad_audio_message, find_problems

log = logging.getLogger(__name__)
HEADER = ["", "file_path", "length", "label"]
AUDIO_EXTENSIONS = (".flac", ".wav")


@dataclass(frozen=True)
class LengthRow:
    """One utterance: path relative to the corpus root, length in samples, transcript."""

    file_path: str
    length: int
    label: str = ""


def write_length_csv(rows: Iterable[LengthRow], path: str | Path) -> Path:
    """Write ``rows`` (sorted here: longest first, ties by path) in s3prl's format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = sorted(rows, key=lambda r: (-r.length, r.file_path))
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(HEADER)
        for i, row in enumerate(ordered):
            writer.writerow([i, row.file_path, row.length, row.label])
    return path


def read_transcripts(split_dir: Path) -> dict[str, tuple[Path, str]]:
    """``uttid -> (audio path, transcript)`` from every ``*.trans.txt`` under ``split_dir`` (LibriSpeech layout:
    ``SPK/CHAPTER/SPK-CHAPTER.trans.txt`` with ``UTTID TRANSCRIPT`` lines, the audio ``UTTID.flac`` beside it)."""
    out: dict[str, tuple[Path, str]] = {}
    for trans in sorted(split_dir.rglob("*.trans.txt")):
        for line in trans.read_text(encoding="utf-8").splitlines():
            if line.strip():
                uttid, _, text = line.strip().partition(" ")
                out[uttid] = (trans.parent / f"{uttid}.flac", text.strip())
    return out


def split_rows(root: str | Path, split: str, workers: int = 8, resample: bool = False,
               on_bad_audio: str = "error", progress: bool = True) -> list[LengthRow]:
    """Length rows of every audio file under ``root/split`` (each file decoded once: see ``audio_check``).

    Lengths are samples at the file's own rate (as s3prl's tool writes them).

    Args:
        resample: files that are not 16 kHz or not mono are fine (training converts them on the fly).
        on_bad_audio: ``error``: any unusable file raises ``BadAudioError`` listing all of them;
            ``skip``: they are left out of the table (each logged).

    Raises:
        FileNotFoundError: when ``root/split`` is not a folder or holds no audio.
        BadAudioError: unusable files, with ``on_bad_audio="error"``.
    """
    root = Path(root)
    split_dir = root / split
    if not split_dir.is_dir():
        raise FileNotFoundError(f"no split folder {split_dir}")
    files = sorted(p for p in split_dir.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"no {'/'.join(AUDIO_EXTENSIONS)} files under {split_dir}")
    labels = read_transcripts(split_dir)
    facts, problems = find_problems(files, resample, cache_name=str(root.resolve()), workers=workers,
                                    progress=progress)
    if problems and on_bad_audio == "error":
        raise BadAudioError(bad_audio_message(
            problems, len(files), str(split_dir),
            "Fix or remove them, or pass --on_bad_audio skip to leave them out of the table",
            "files that are only not 16 kHz or not mono are accepted with --resample "
            "(then train with config.data.resample=true)"))
    bad = {p for p, _ in problems}
    for path, reason in problems:
        log.warning("left out of the table: %s: %s", path, reason)
    return [
        LengthRow(p.relative_to(root).as_posix(), f.frames, labels.get(p.name.split(".")[0], (p, ""))[1])
        for p, f in zip(files, facts) if p not in bad
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: one length table per ``--split``; unusable audio files are listed (exit 2) or left out."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="corpus root in LibriSpeech layout")
    parser.add_argument("--split", action="append", required=True, help="split folder name (repeatable)")
    parser.add_argument("--out", default=None, help="output folder (default ROOT/len_for_bucket)")
    parser.add_argument("--workers", type=int, default=8, help="threads decoding audio")
    parser.add_argument("--resample", action="store_true",
                        help="accept audio that is not 16 kHz mono (train with config.data.resample=true)")
    parser.add_argument("--on_bad_audio", choices=("error", "skip"), default="error",
                        help="unusable files (missing, corrupt, empty, too short, not 16 kHz mono): "
                             "error = list them all and write no table; skip = leave them out")
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    out_dir = Path(args.out) if args.out is not None else Path(args.root) / "len_for_bucket"
    try:
        for split in args.split:
            rows = split_rows(args.root, split, args.workers, args.resample, args.on_bad_audio)
            print(f"wrote {write_length_csv(rows, out_dir / f'{split}.csv')}")
    except (OSError, AudioError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())


@dataclass(frozen=True)
class TableRow:
    """One utterance of a length table, resolved against the corpus root.

    ``path`` (absolute) is built on first use: building 281k ``Path`` objects
    up front costs seconds at every training start (``bench/bench_data.py``).
    """

    uttid: str
    rel: str  # the table's file_path, relative to ``root``
    num_samples: int
    label: str
    root: Path

    @functools.cached_property
    def path(self) -> Path:
        return self.root / self.rel


def read_length_table(root: str | Path, split: str) -> list[TableRow]:
    """Rows of ``ROOT/len_for_bucket/SPLIT.csv`` (s3prl's format), with absolute audio paths.

    Raises:
        FileNotFoundError: the corpus root or the table is missing (the message says how to make it).
    """
    root = Path(root)
    table = root / "len_for_bucket" / f"{split}.csv"
    if not root.is_dir():
        raise FileNotFoundError(
            f"corpus root {root} does not exist: make a synthetic one with "
            f"`python -m s3prl_colld.data.synth --lang en --out {root}` or point config.data.root at a LibriSpeech"
        )
    if not table.is_file():
        raise FileNotFoundError(
            f"length table {table} not found: run `python -m s3prl_colld.data.lengths --root {root} --split {split}`"
        )
    rows = []
    with open(table, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or header[1:3] != HEADER[1:3]:
            raise ValueError(f"{table}: expected s3prl's header ',file_path,length,label', got {header}")
        for rec in reader:  # string ops for the id: a Path per row costs seconds on 281k rows
            rel = rec[1]
            uttid = rel.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            rows.append(TableRow(uttid, rel, int(rec[2]), rec[3] if len(rec) > 3 else "", root))
    return rows
