"""Utterance lists for the SUPERB tasks: LibriSpeech layout (+ lexicon) and CoVoST 2 tsv.

Both the synthetic corpus of :mod:`s3prl_colld.data.synth` and a real
LibriSpeech / CoVoST 2 are read by the same code:

- ``ROOT/SPLIT/SPK/CHAPTER/SPK-CHAPTER.trans.txt`` (``UTTID TRANSCRIPT``) with the
  audio ``UTTID.flac`` beside it;
- a lexicon (``WORD PH1 PH2 ...``, whitespace-separated, first pronunciation wins),
  e.g. s3prl's ``librispeech-lexicon.txt`` or the synthetic corpus's ``lexicon.txt``;
- CoVoST 2 tsv files (``id, audio, n_frames, sr, src_text, tgt_text``), audio
  paths relative to an audio folder.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from s3prl_colld.data.lengths import read_transcripts


class DataError(FileNotFoundError):
    """A corpus path, split or file that is missing or malformed (the message says which and how to fix it)."""


@dataclass(frozen=True)
class Utterance:
    """One example: ``text`` is the task's target (phones joined by spaces, a transcript, or a translation);
    ``source`` the source-language transcript of an ST example (CoVoST's ``src_text``; ``""`` elsewhere)."""

    uttid: str
    path: Path
    text: str
    source: str = ""


def transcript_utterances(root: str | Path, split: str) -> list[Utterance]:
    """ASR examples: every utterance of ``ROOT/SPLIT`` (LibriSpeech layout) with its transcript, sorted by uttid.

    Raises:
        DataError: the split folder is missing or holds no ``*.trans.txt``.
    """
    folder = Path(root) / split
    if not folder.is_dir():
        raise DataError(f"split folder {folder} not found: set config.data.root to a LibriSpeech-layout corpus "
                        f"(ROOT/{split}/SPK/CHAPTER/*.flac) and config.data.*_split to its split names")
    rows = [Utterance(uttid, path, text) for uttid, (path, text) in sorted(read_transcripts(folder).items())]
    if not rows:
        raise DataError(f"no transcripts (*/*/*.trans.txt) under {folder}: is it a LibriSpeech-layout split?")
    return rows


def read_lexicon(path: str | Path) -> dict[str, list[str]]:
    """``WORD PH1 PH2 ...`` lines -> ``{WORD: [phones]}`` (the first pronunciation of a word wins)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"lexicon {path} not found: set config.data.lexicon (e.g. s3prl's "
                        "downstream/ctc/lexicon/librispeech-lexicon.txt, or ROOT/lexicon.txt of the synthetic corpus)")
    lexicon: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] not in lexicon:
            lexicon[parts[0]] = parts[1:]
    if not lexicon:
        raise DataError(f"lexicon {path} has no 'WORD PHONE ...' lines")
    return lexicon


def phone_utterances(root: str | Path, split: str, lexicon: dict[str, list[str]]) -> list[Utterance]:
    """PR examples: audio with the lexicon's phones of its transcript.

    Raises:
        DataError: some words are missing from the lexicon (names a few).
    """
    out, missing = [], set()
    for u in transcript_utterances(root, split):
        unknown = {w for w in u.text.split() if w not in lexicon}
        missing |= unknown
        if not unknown:
            out.append(Utterance(u.uttid, u.path, " ".join(p for w in u.text.split() for p in lexicon[w])))
    if missing:
        raise DataError(f"{len(missing)} words of {Path(root) / split} are not in the lexicon, e.g. "
                        f"{', '.join(sorted(missing)[:5])}: use a lexicon that covers the corpus "
                        "(s3prl's g2p lexicons cover LibriSpeech)")
    return out


def covost_utterances(tsv: str | Path, audio_dir: str | Path) -> list[Utterance]:
    """ST examples from a CoVoST 2 tsv: audio (relative to ``audio_dir``) with ``tgt_text`` (and ``src_text`` as
    ``source`` when the column is there).

    Raises:
        DataError: the tsv is missing or lacks the ``id``, ``audio`` or ``tgt_text`` columns.
    """
    tsv = Path(tsv)
    if not tsv.is_file():
        raise DataError(f"CoVoST tsv {tsv} not found: set config.data.root and config.data.tsv_dir "
                        "(ROOT/TSV_DIR/SPLIT.tsv with columns id, audio, n_frames, sr, src_text, tgt_text)")
    with open(tsv, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = {"id", "audio", "tgt_text"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{tsv} lacks the column(s) {', '.join(sorted(missing))} "
                            f"(has: {', '.join(reader.fieldnames or [])})")
        rows = [Utterance(r["id"], Path(audio_dir) / r["audio"], r["tgt_text"], r.get("src_text") or "")
                for r in reader]
    if not rows:
        raise DataError(f"{tsv} has no rows")
    return rows
