"""What the experiments that re-run one cell of a finished results grid share: linking its corpora.

Not an experiment itself (its name starts with ``_``); imported by the scripts beside it.
"""

from __future__ import annotations

from pathlib import Path


def link_corpus(src: Path, dst: Path) -> None:
    """Make ``dst`` a link to ``src``, a finished corpus of a reference grid (its ``manifest.json`` written), once:
    an existing ``dst`` is left as it is. The experiment then reads the same audio as the reference grid and writes
    nothing into it. Stops with a message naming ``src`` when that corpus has not finished."""
    if not (src / "manifest.json").is_file():
        raise SystemExit(f"{src} is not a finished corpus (no manifest.json): run the reference grid's corpus "
                         "stage first (python -m s3prl_colld.replicate --out REFERENCE ... --stages grid)")
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(src.resolve(), target_is_directory=True)
