"""The speech-corpus generator: a LibriSpeech-layout corpus spoken by espeak-ng and flite voices.

``python -m s3prl_colld.data.synth --lang en --out DIR`` (``colld-synth``) writes
it; only the results grid (``replicate``), the tests and some benchmarks use it.
Loading a corpus, synthetic or real, is the rest of ``s3prl_colld.data``.

- ``generate``: the command (``main``): plan, synthesise, augment, write, check;
- ``corpus_plan``: speakers, sentences and rooms per split, decided before any audio;
- ``voices`` / ``flite``: the espeak-ng and flite voices; ``augment``: rooms and noise;
- ``sentences`` / ``grammar`` / ``phonemes`` / ``arpabet``: texts (dictionary or templated grammar),
  their phonemes and the lexicons.

``main`` and ``SPLITS`` are importable from here too (what ``s3prl_colld.data.synth``
offered as a module), without importing the generator until they are used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["main", "SPLITS"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from s3prl_colld.data.synth import generate

        return getattr(generate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
