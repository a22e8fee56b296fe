"""Readers for the text side of a LibriSpeech-layout corpus: phone transcripts and inventory."""

from __future__ import annotations

from pathlib import Path


def read_phone_transcripts(root: str | Path, split: str) -> dict[str, list[str]]:
    """``ROOT/SPLIT/phones.txt`` (``UTTID PH1 PH2 ...``) -> ``{uttid: [phones]}``."""
    path = Path(root) / split / "phones.txt"
    if not path.is_file():
        raise FileNotFoundError(f"phone transcripts {path} not found (the synthetic corpus writes them; for "
                                "LibriSpeech, make them from the lexicon)")
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            uttid, *phones = line.split()
            out[uttid] = phones
    return out


def read_phone_inventory(root: str | Path) -> list[str]:
    """``ROOT/phones.txt``, one phone per line -> sorted list."""
    path = Path(root) / "phones.txt"
    if not path.is_file():
        raise FileNotFoundError(f"phone inventory {path} not found")
    return [p for p in path.read_text(encoding="utf-8").split() if p]
