"""Word pronunciations from espeak-ng: a LibriSpeech-style lexicon ``WORD -> phones``.

Words are phonemised in batches, one word per input line of
``espeak-ng -q --ipa --sep=_ -v VOICE`` (espeak-ng reads stdin line by line,
so output line ``i`` is the pronunciation of input line ``i``; a batch whose
line count does not match is split in halves until it does, down to single
words). With ``--sep`` a multi-letter phoneme such as ``oʊ``, ``aɪ``, ``iː``
or ``ts`` stays one token. Each token is then made a stable phone symbol:
stress marks are removed (length marks stay joined to their vowel),
language-switch markers such as ``(en)`` and pause markers are dropped, and
German ``UR`` (which espeak-ng 1.51 prints as ``??`` in IPA) becomes ``ʊɐ``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

ESPEAK = "espeak-ng"
PHONEME_VOICE = {"en": "en-us", "de": "de"}  # the lexicon uses the base voice of the language
BATCH_WORDS = 500  # words per espeak-ng call (fixed, so results never depend on --workers)

_LANG_SWITCH = re.compile(r"\([a-z-]+\)")
_DROP_CHARS = str.maketrans("", "", "ˈˌ.‿ˑ")  # stress, syllable, linking, half-long marks
_NO_IPA = {"??": "ʊɐ"}  # espeak-ng 1.51 has no IPA for German "UR" and prints "??"


class EspeakMissing(FileNotFoundError):
    """The espeak-ng executable cannot be found or run."""


def require_espeak(executable: str = ESPEAK) -> str:
    """The full path of the espeak-ng executable.

    Raises:
        EspeakMissing: with the install command, when it is not on ``PATH`` (or not a file).
    """
    found = shutil.which(executable)
    if found is None:
        raise EspeakMissing(
            f"espeak-ng not found (looked for {executable!r} on PATH): install it with `apt-get install espeak-ng`"
        )
    return found


def clean_phones(ipa: str) -> list[str]:
    """Phone symbols from one line of ``espeak-ng --ipa --sep=_`` output."""
    phones = []
    for token in re.split(r"[_\s]+", _LANG_SWITCH.sub("_", ipa)):
        token = _NO_IPA.get(token.translate(_DROP_CHARS), token.translate(_DROP_CHARS))
        if any(c.isalpha() for c in token):
            phones.append(token)
    return phones


def _espeak_lines(words: Sequence[str], voice: str, executable: str) -> list[str]:
    """Raw IPA lines for ``words``, one per word (halving the batch when lines do not align)."""
    proc = subprocess.run(
        [executable, "-q", "--ipa", "--sep=_", "-v", voice],
        input="".join(w + "\n" for w in words).encode("utf-8"),
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{executable} -v {voice} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    lines = proc.stdout.decode("utf-8").splitlines()
    if len(lines) == len(words):
        return lines
    if len(words) == 1:
        return [" ".join(lines)]
    half = len(words) // 2
    return _espeak_lines(words[:half], voice, executable) + _espeak_lines(words[half:], voice, executable)


def phonemize_words(
    words: Iterable[str], voice: str, executable: str = ESPEAK, workers: int = 1
) -> dict[str, list[str]]:
    """Phones of each (lower-case, surface-form) word with espeak-ng's ``voice``.

    Batches of :data:`BATCH_WORDS` words run in ``workers`` threads (each
    thread waits on its own espeak-ng process).

    Raises:
        RuntimeError: when a word gets no phones at all.
    """
    unique = sorted(set(words))
    batches = [unique[i : i + BATCH_WORDS] for i in range(0, len(unique), BATCH_WORDS)]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = list(pool.map(lambda b: _espeak_lines(b, voice, executable), batches))
    lexicon = {}
    for batch, lines in zip(batches, results):
        for word, line in zip(batch, lines):
            phones = clean_phones(line)
            if not phones:
                raise RuntimeError(f"espeak-ng -v {voice} gave no phones for the word {word!r} (output {line!r})")
            lexicon[word] = phones
    return lexicon


def write_lexicon(lexicon: dict[str, list[str]], path: Path) -> None:
    """LibriSpeech lexicon format: ``WORD<TAB>PH1 PH2 ...``, sorted by word."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for word in sorted(lexicon):
            f.write(f"{word}\t{' '.join(lexicon[word])}\n")


def write_phone_inventory(lexicon: dict[str, list[str]], path: Path) -> list[str]:
    """All phones of ``lexicon``, sorted, one per line; returns them."""
    inventory = sorted({p for phones in lexicon.values() for p in phones})
    Path(path).write_text("".join(p + "\n" for p in inventory), encoding="utf-8")
    return inventory
