"""A noisy copy of a synthetic corpus that follows corpus v2's clean-copy contract (test and experiment helper).

``make_noisy_corpus(src, dst)`` copies the corpus ``src`` to ``dst`` and
then, deterministically from ``seed``:

- replaces ``noisy_fraction`` of the training utterances by a noisy version
  (babble of ``talkers`` other training utterances plus white noise, at an SNR
  drawn from ``snr_db``) and keeps the clean audio at
  ``dst/clean/<same relative path>``;
- writes ``dev_noisy`` / ``test_noisy`` splits: every ``dev`` / ``test``
  utterance made noisy the same way (babble from training utterances), with
  transcripts and length tables;
- adds ``"utterances": [{"id", "split", "engine", "voice", "speaker",
  "condition", "path", "clean_path"}]`` to ``dst/manifest.json``
  (``clean_path`` is null for clean utterances).

It is not corpus v2 (``s3prl_colld.data.synth`` builds that); it only
follows its contract, so that denoising units can be tested without it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from s3prl_colld.data.lengths import read_length_table, write_split_lengths

SAMPLE_RATE = 16_000


def _fit(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``x`` tiled and cut at a random offset to ``n`` samples."""
    reps = -(-n // len(x)) + 1
    tiled = np.tile(x, reps)
    start = int(rng.integers(0, len(tiled) - n + 1))
    return tiled[start:start + n]


def add_noise(clean: np.ndarray, others: list[np.ndarray], snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``clean`` + (babble of ``others`` + white noise) scaled to ``snr_db``; peak-limited to 0.99."""
    n = len(clean)
    babble = sum(_fit(o, n, rng) for o in others) if others else np.zeros(n, dtype=np.float64)
    babble = babble / (np.std(babble) + 1e-8)
    white = rng.standard_normal(n)
    noise = babble + 0.5 * white
    p_speech = np.mean(clean.astype(np.float64) ** 2) + 1e-10
    p_noise = np.mean(noise ** 2) + 1e-10
    noisy = clean + noise * np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10)))
    peak = np.max(np.abs(noisy))
    if peak > 0.99:
        noisy = noisy * (0.99 / peak)
    return noisy.astype(np.float32)


def make_noisy_corpus(src: Path, dst: Path, noisy_fraction: float = 0.5, seed: int = 0, talkers: int = 4,
                      snr_db: tuple[float, float] = (0.0, 15.0)) -> Path:
    """Build the noisy copy described in the module docstring; returns ``dst``."""
    src, dst = Path(src), Path(dst)
    shutil.copytree(src, dst)
    rng = np.random.default_rng(seed)
    train = read_length_table(dst, "train")
    train_audio = {r.uttid: sf.read(str(r.path), dtype="float32")[0] for r in train}
    ids = sorted(train_audio)
    utterances = []

    def speaker(uttid: str) -> str:
        return uttid.split("-")[0]

    def noisy_version(uttid: str, clean: np.ndarray) -> tuple[np.ndarray, float]:
        pool = [i for i in ids if speaker(i) != speaker(uttid)] or ids
        chosen = rng.choice(len(pool), size=min(talkers, len(pool)), replace=False)
        snr = float(rng.uniform(*snr_db))
        return add_noise(clean, [train_audio[pool[k]] for k in chosen], snr, rng), snr

    order = rng.permutation(len(train))
    noisy_set = {train[k].uttid for k in order[: int(round(noisy_fraction * len(train)))]}
    for row in sorted(train, key=lambda r: r.uttid):
        rel = row.path.relative_to(dst).as_posix()
        entry = {"id": row.uttid, "split": "train", "engine": "espeak-ng", "voice": speaker(row.uttid),
                 "speaker": speaker(row.uttid), "condition": "clean", "path": rel, "clean_path": None}
        if row.uttid in noisy_set:
            clean = train_audio[row.uttid]
            noisy, snr = noisy_version(row.uttid, clean)
            clean_file = dst / "clean" / rel
            clean_file.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(row.path, clean_file)
            sf.write(str(row.path), noisy, SAMPLE_RATE, subtype="PCM_16")
            entry.update(condition=f"babble{talkers}+white snr {snr:.1f}", clean_path=f"clean/{rel}")
        utterances.append(entry)
    for split in ("dev", "test"):
        out_split = f"{split}_noisy"
        shutil.copytree(dst / split, dst / out_split)
        for row in read_length_table(dst, split):
            rel = row.path.relative_to(dst / split).as_posix()
            target = dst / out_split / rel
            noisy, snr = noisy_version(row.uttid, sf.read(str(row.path), dtype="float32")[0])
            sf.write(str(target), noisy, SAMPLE_RATE, subtype="PCM_16")
            utterances.append({"id": row.uttid, "split": out_split, "engine": "espeak-ng",
                               "voice": speaker(row.uttid), "speaker": speaker(row.uttid),
                               "condition": f"babble{talkers}+white snr {snr:.1f}",
                               "path": f"{out_split}/{rel}", "clean_path": None})
        write_split_lengths(dst, out_split)
    manifest_path = dst / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    manifest["utterances"] = utterances
    manifest["noisy_copy"] = {"noisy_fraction": noisy_fraction, "seed": seed, "talkers": talkers,
                              "snr_db": list(snr_db)}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return dst
