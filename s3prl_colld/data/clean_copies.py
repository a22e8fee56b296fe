"""Clean copies of noisy training utterances, for denoising masked prediction (WavLM, Chen et al. 2022).

A corpus whose training utterances were made noisy (rooms, babble, noise,
telephone band) keeps each one's clean audio, and says so in
``ROOT/manifest.json``::

    {"utterances": [{"id": ..., "split": ..., "engine": ..., "voice": ..., "speaker": ...,
                     "condition": ..., "path": "train/.../X.flac",
                     "clean_path": "clean/train/.../X.flac"},   # null for a clean utterance
                    ...]}

Paths are relative to ``ROOT`` (absolute paths are used as they are). A
corpus without ``utterances`` in its manifest (LibriSpeech, the first
synthetic corpus) simply has no clean copies.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

MANIFEST = "manifest.json"


class CleanCopyError(ValueError):
    """A manifest whose ``utterances`` do not follow the contract above (the message says what and where)."""


def clean_copies(root: str | Path) -> dict[str, Path]:
    """``{resolved noisy audio path: clean audio path}`` for every utterance of ``ROOT/manifest.json``
    that has a ``clean_path``; empty when there is no manifest or it lists no utterances.

    Raises:
        CleanCopyError: ``utterances`` is not a list of objects with a ``path``.
    """
    root = Path(root)
    manifest = root / MANIFEST
    if not manifest.is_file():
        return {}
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except ValueError as err:
        raise CleanCopyError(f"{manifest} is not valid JSON: {err}") from None
    utterances = data.get("utterances") if isinstance(data, dict) else None
    if utterances is None:
        return {}
    if not isinstance(utterances, list):
        raise CleanCopyError(f"{manifest}: 'utterances' must be a list, got {type(utterances).__name__}")
    out: dict[str, Path] = {}
    for i, utt in enumerate(utterances):
        if not isinstance(utt, dict) or "path" not in utt:
            raise CleanCopyError(f"{manifest}: utterances[{i}] has no 'path' (expected an object with 'path' and "
                                 "'clean_path')")
        clean = utt.get("clean_path")
        if clean:
            out[str((root / utt["path"]).resolve())] = root / clean
    return out


def align_clean(clean: torch.Tensor, num_samples: int) -> torch.Tensor:
    """The clean waveform ``[M]`` cut or zero-padded at the end to the noisy one's ``num_samples``.

    Both copies start at the same sample; a reverberated copy may carry a
    longer tail, which is dropped.
    """
    if clean.numel() >= num_samples:
        return clean[:num_samples]
    return torch.cat([clean, clean.new_zeros(num_samples - clean.numel())])
