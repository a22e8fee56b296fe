"""English-German sentence pairs from the TU Chemnitz dictionary (Debian's trans-de-en).

Each dictionary line reads ``German side :: English side``; each side lists
alternatives separated by `` | `` that correspond position by position, and
many alternatives are example sentences (``Ich habe eine Erkältung. :: I have
a cold.``). A pair is kept when both sides are whole, plain sentences: an
upper-case first letter, one final ``.``, ``!`` or ``?``, 3 to 20 words, and
only letters, spaces, apostrophes, commas and hyphens in between (so no
brackets, slashes, digits, quotes, semicolons, abbreviations such as ``sth.``
or ``jdm.``, and no all-capital acronyms, whose pronunciation is ambiguous).

The dictionary is read from ``/usr/share/trans/de-en`` (``apt-get install
trans-de-en``), or from the file named in ``$S3PRL_COLLD_TRANS_DE_EN`` (the
GPU kit's copy, see :mod:`s3prl_colld.gpu_kit`).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

DICTIONARY_PATH = Path(os.environ.get("S3PRL_COLLD_TRANS_DE_EN") or "/usr/share/trans/de-en")
MIN_WORDS = 3
MAX_WORDS = 20

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u00b4": "'"})
_BODY = re.compile(r"(?:[^\W\d_]|[ ',\-])+")  # letters, spaces, apostrophes, commas, hyphens
_SENTENCE_END = re.compile(r"[.!?](?: \| |$)")
_ACRONYM = re.compile(r"\b[^\W\d_]*[A-ZÄÖÜ][^\W\d_]*[A-ZÄÖÜ]")  # two capitals in one word


class DictionaryMissing(FileNotFoundError):
    """The trans-de-en dictionary file is not installed."""


@dataclass(frozen=True)
class SentencePair:
    """One aligned sentence in both languages (original casing and punctuation)."""

    en: str
    de: str

    def side(self, lang: str) -> str:
        """The sentence in ``lang`` (``"en"`` or ``"de"``)."""
        return self.en if lang == "en" else self.de


def is_plain_sentence(text: str) -> bool:
    """True for a whole sentence that a TTS reads unambiguously (see module docstring)."""
    if len(text) < 2 or not text[0].isupper() or not text[0].isalpha() or text[-1] not in ".!?":
        return False
    body = text[:-1]
    if not _BODY.fullmatch(body):
        return False
    if _ACRONYM.search(body) or "--" in body or "''" in body or " -" in body or "- " in body:
        return False
    words = body.replace(",", " ").split()
    return MIN_WORDS <= len(words) <= MAX_WORDS and all(any(c.isalpha() for c in w) for w in words)


def pairs_from_line(line: str) -> list[SentencePair]:
    """The sentence pairs of one dictionary line (possibly none)."""
    if line.startswith("#") or line.count(" :: ") != 1:
        return []
    de_side, en_side = line.rstrip("\n").translate(_APOSTROPHES).split(" :: ")
    de_alts, en_alts = de_side.split(" | "), en_side.split(" | ")
    if len(de_alts) != len(en_alts):
        return []
    return [
        SentencePair(en=en.strip(), de=de.strip())
        for de, en in zip(de_alts, en_alts)
        if is_plain_sentence(de.strip()) and is_plain_sentence(en.strip())
    ]


def require_dictionary(path: str | Path = DICTIONARY_PATH) -> Path:
    """``path`` as a Path if the dictionary file exists, else :class:`DictionaryMissing` with the install hint."""
    path = Path(path)
    if not path.is_file():
        raise DictionaryMissing(
            f"the English-German dictionary {path} is missing: install it with `apt-get install trans-de-en`"
        )
    return path


def load_sentence_pairs(path: str | Path = DICTIONARY_PATH) -> list[SentencePair]:
    """All usable pairs in dictionary order, each English and each German sentence at most once.

    The parse (~1 s) is cached per process for an unchanged file.

    Raises:
        DictionaryMissing: when ``path`` does not exist (with the install command).
    """
    path = require_dictionary(path).resolve()
    return list(_parse_dictionary(str(path), path.stat().st_mtime_ns))


@functools.lru_cache(maxsize=2)
def _parse_dictionary(path: str, mtime_ns: int) -> tuple[SentencePair, ...]:
    seen_en: set[str] = set()
    seen_de: set[str] = set()
    out: list[SentencePair] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not _SENTENCE_END.search(line):  # fast skip: no alternative ends like a sentence
                continue
            for pair in pairs_from_line(line):
                if pair.en.lower() in seen_en or pair.de.lower() in seen_de:
                    continue
                seen_en.add(pair.en.lower())
                seen_de.add(pair.de.lower())
                out.append(pair)
    return tuple(out)


def spoken_words(text: str) -> list[str]:
    """The words of a sentence in lower case, as espeak-ng reads them (hyphens split words)."""
    return re.sub(r"[^\w']|[\d_]", " ", text.replace("-", " ")).lower().split()


def normalise_transcript(text: str) -> str:
    """LibriSpeech normalisation: upper case; letters, apostrophes and single spaces only."""
    return " ".join(w.upper() for w in spoken_words(text))
