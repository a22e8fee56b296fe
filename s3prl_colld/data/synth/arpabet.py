"""English pronunciations in ARPAbet (CMUdict's 39 phones, no stress) from flite's lexicon and letter-to-sound rules.

One phone set serves every English voice, whichever engine speaks it:
the 39 ARPAbet phones of CMUdict, the phone set of LibriSpeech's lexicon
that SUPERB's phoneme recognition is scored on (s3prl keeps lexical stress
as AA0/AA1/AA2; we drop it, as most phone-recognition setups do, since a
stress digit says little about the sound of an unstressed syllable in
synthetic speech). flite's ``t2p`` prints a word's phones from ``cmulex``,
flite's copy of CMUdict, and from its letter-to-sound rules (trained on
CMUdict) for a word that CMUdict lacks, so every word gets a CMUdict-style
pronunciation, and the flite voices speak exactly these phones.

Words are phonemised in batches, ``t2p "w1, w2, w3"``: the commas make
phrase breaks, so the output reads ``pau P1 P2 pau P3 ... pau`` with one group
per word. A batch whose group count does not match (flite reads ``Mr, St`` as
one phrase "mister street") is split in halves down to single words. A word
with letters that flite drops (``à``) is retried with its accents removed.
flite's own symbols become ARPAbet: upper case, stress digits removed, ``ax``
(unstressed schwa) -> ``AH``, as CMUdict writes it. The only hand-written
entry is ``A`` -> ``AH`` (CMUdict's first pronunciation, and flite's in
running text): alone, flite reads ``a`` as the letter name ``EY``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Sequence

T2P = "t2p"
ARPABET = ("AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH", "IY",
           "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y",
           "Z", "ZH")
FLITE_TO_ARPABET = {"AX": ["AH"], "AXR": ["ER"], "IX": ["IH"], "EL": ["AH", "L"], "EM": ["AH", "M"],
                    "EN": ["AH", "N"]}
OVERRIDES = {"a": ["AH"]}
BATCH_WORDS = 500  # words per t2p call (fixed, so results never depend on the number of workers)
PAUSE = "pau"


class T2PMissing(FileNotFoundError):
    """flite's t2p executable cannot be found."""


def require_t2p(executable: str = T2P) -> str:
    """The full path of flite's ``t2p``, or :class:`T2PMissing` with the install command."""
    found = shutil.which(executable)
    if found is None:
        raise T2PMissing(f"flite's t2p not found (looked for {executable!r} on PATH): it phonemises English; "
                         "install it with `apt-get install flite`")
    return found


def to_arpabet(flite_phone: str) -> list[str]:
    """ARPAbet phones of one flite phone (``ae1`` -> ``[AE]``, ``ax`` -> ``[AH]``).

    Raises:
        ValueError: a symbol that is not ARPAbet (a flite phone set we do not know).
    """
    base = re.sub(r"\d", "", flite_phone).upper()
    phones = FLITE_TO_ARPABET.get(base, [base])
    if any(p not in ARPABET for p in phones):
        raise ValueError(f"flite printed the phone {flite_phone!r}, which is not ARPAbet")
    return phones


def _groups(words: Sequence[str], executable: str) -> list[list[str]]:
    """flite phone groups (one per phrase) of ``t2p "w1, w2, ..."``."""
    proc = subprocess.run([executable, ", ".join(words)], capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{executable} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    groups: list[list[str]] = [[]]
    for token in proc.stdout.decode().split():
        if token == PAUSE:
            groups.append([])
        else:
            groups[-1].append(token)
    return [g for g in groups if g]


def _phonemise(words: Sequence[str], executable: str) -> list[list[str]]:
    """flite phones of each word (halving the batch when groups and words do not align)."""
    groups = _groups(words, executable)
    if len(groups) == len(words):
        return groups
    if len(words) == 1:
        return [[p for g in groups for p in g]]
    half = len(words) // 2
    return _phonemise(words[:half], executable) + _phonemise(words[half:], executable)


def strip_accents(word: str) -> str:
    """``à`` -> ``a``, ``première`` -> ``premiere``."""
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


def arpabet_lexicon(words: Iterable[str], executable: str = T2P, workers: int = 1) -> dict[str, list[str]]:
    """ARPAbet phones of each (lower-case) word, from flite's ``t2p``.

    Batches of :data:`BATCH_WORDS` words run in ``workers`` threads; words with
    non-ASCII letters are phonemised one by one (accents removed).

    Raises:
        RuntimeError: a word gets no phones at all.
    """
    unique = sorted(set(words))
    overridden = [w for w in unique if strip_accents(w) in OVERRIDES]
    plain = [w for w in unique if w.isascii() and w not in overridden]
    special = [w for w in unique if not w.isascii() and w not in overridden]
    batches = [plain[i : i + BATCH_WORDS] for i in range(0, len(plain), BATCH_WORDS)]
    batches += [[strip_accents(w)] for w in special]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = list(pool.map(lambda b: _phonemise(b, executable), batches))
    lexicon = {w: list(OVERRIDES[strip_accents(w)]) for w in overridden}
    for word, phones in zip(plain + special, (p for r in results for p in r)):
        if not phones:
            raise RuntimeError(f"flite's t2p gave no phones for the word {word!r}")
        lexicon[word] = [a for p in phones for a in to_arpabet(p)]
    return lexicon
