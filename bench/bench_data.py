"""Data at scale: flac decoding per data-loader worker, and the start of training on a 281k-utterance table.

Two parts (``--part decode|table|both``):

- **decode**: one process with one thread, as one data-loader worker.
  Writes ``--files`` flac files (16 kHz mono PCM_16, LibriSpeech-like
  lengths; a harmonic "voice" with a moving pitch, an amplitude envelope and
  noise, so the encoder works as on speech) or reads a real corpus
  (``--root DIR --split train-clean-100``), then measures audio seconds
  decoded per second for whole files (``load_audio``, what ``AudioDataset``
  does), for the random crop only (``sf.read(start=, stop=)``), and for the
  trainer's whole item path (dataset + ``AudioTask.collate``: read, crop,
  pad a batch; with whole files, and with ``CropReader``, which decodes
  only the crops), in crop seconds produced per second.
  It prints how many workers one GPU needs at a given step time
  (``--step-ms``, ``--batch-size``, ``--crop-sec``).
- **table**: a synthetic ``len_for_bucket`` table of 281,241 rows
  (LibriSpeech 960 h) with LibriSpeech-like lengths; times what a training
  start does with it: ``read_length_table``, ``AudioDataset``'s filtering,
  ``BucketBatchSampler`` (one and 8 ranks), the first epoch's batch list and
  the first batches, and the resident memory they add.

    python bench/bench_data.py [--part both] [--files 60] [--step-ms 40]
    python bench/bench_data.py --part decode --root /data/LibriSpeech --split train-clean-100 --files 200
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import _common as C
import numpy as np
import torch

LIBRISPEECH_960H_UTTERANCES = 281_241
LIBRISPEECH_MEAN_SEC = 12.3  # 960 h / 281,241 utterances


def librispeech_like_lengths(n: int, seed: int = 0) -> np.ndarray:
    """Lengths in samples: most utterances 10-16 s, a tail of short ones, at most 35 s (mean near 12.3 s)."""
    rng = np.random.default_rng(seed)
    sec = np.where(rng.random(n) < 0.8, rng.normal(14.2, 1.8, n), rng.uniform(1.0, 12.0, n))
    return (np.clip(sec, 1.0, 35.0) * C.SAMPLE_RATE).astype(np.int64)


def voice(n: int, rng: np.random.Generator) -> np.ndarray:
    """A speech-like test signal ``[n]`` float32 in [-1, 1]: harmonics of a moving f0, syllable envelope, noise."""
    t = np.arange(n) / C.SAMPLE_RATE
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / C.SAMPLE_RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.5 * (1 + np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6))) ** 2
    x = 0.2 * x * env + 0.01 * rng.standard_normal(n)
    return np.clip(x, -1, 1).astype(np.float32)


def write_flacs(folder: Path, count: int, seed: int = 0) -> list[Path]:
    import soundfile as sf

    rng = np.random.default_rng(seed)
    paths = []
    for i, n in enumerate(librispeech_like_lengths(count, seed)):
        path = folder / "train" / f"{i:05d}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, voice(int(n), rng), C.SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        paths.append(path)
    return paths


def write_table(folder: Path, paths: list[Path], lengths: list[int], split: str = "train") -> None:
    from s3prl_colld.data.lengths import LengthRow, write_length_csv

    write_length_csv([LengthRow(p.relative_to(folder).as_posix(), n) for p, n in zip(paths, lengths)],
                     folder / "len_for_bucket" / f"{split}.csv")


# ---------------------------------------------------------------- decode
def part_decode(args: argparse.Namespace) -> dict[str, float]:
    import soundfile as sf

    from s3prl_colld.config import from_dict
    from s3prl_colld.data.audio import load_audio, num_samples
    from s3prl_colld.data.audio_dataset import AudioDataset
    from s3prl_colld.data.bucket import BucketBatchSampler, seeded_loader
    from s3prl_colld.data.crop_reader import CropReader
    from s3prl_colld.pretrain.tasks.audio_task import AudioTask

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="s3prl_colld_bench_data_") as tmp:
        if args.root:
            root, split = Path(args.root), args.split
            from s3prl_colld.data.lengths import read_length_table

            rows = read_length_table(root, split)[: args.files]
            paths, lengths = [r.path for r in rows], [r.num_samples for r in rows]
            source = f"{len(paths)} files of {root}/{split}"
        else:
            root, split = Path(tmp), "train"
            t = time.perf_counter()
            paths = write_flacs(root, args.files, args.seed)
            lengths = [num_samples(p) for p in paths]
            write_table(root, paths, lengths)
            source = (f"{len(paths)} synthetic speech-like flac files (16 kHz PCM_16, written in "
                      f"{time.perf_counter() - t:.1f} s)")
        total_sec = sum(lengths) / C.SAMPLE_RATE
        print(f"decode: {source}, {total_sec / 60:.1f} min of audio, mean {total_sec / len(paths):.1f} s; "
              f"one process, torch threads 1")
        for p in paths[: min(5, len(paths))]:  # warm the page cache: measure decoding, not the disk
            p.read_bytes()

        def timed(fn) -> float:
            best = math.inf
            for _ in range(args.repeats):
                t = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t)
            return best

        for p in paths:
            p.read_bytes()
        whole = timed(lambda: [load_audio(p) for p in paths])
        rng = np.random.default_rng(1)
        crop = int(args.crop_sec * C.SAMPLE_RATE)
        starts = [int(rng.integers(0, max(1, n - crop))) for n in lengths]
        spans = [(a, min(n, a + crop)) for a, n in zip(starts, lengths)]
        part = timed(lambda: [sf.read(str(p), start=a, stop=b, dtype="float32") for p, (a, b) in zip(paths, spans)])
        crop_sec = sum(b - a for a, b in spans) / C.SAMPLE_RATE

        from types import SimpleNamespace

        from s3prl_colld.pretrain.schema import DataConfig

        data_cfg = from_dict(DataConfig, {"root": str(root), "splits": [split], "batch_size": args.batch_size,
                                          "crop_min_sec": args.crop_min_sec, "crop_max_sec": args.crop_max_sec,
                                          "min_sec": 0.0})
        task_like = SimpleNamespace(cfg=SimpleNamespace(data=data_cfg))  # what AudioTask.collate reads
        eager = AudioDataset(root, [split], 0.0, None, check=False)
        item_paths = {}
        for name, ds in (("whole files", eager), ("crops only", CropReader(eager))):
            sampler = BucketBatchSampler(ds.lengths, args.batch_size, 64, seed=0, drop_last=True)
            collate = lambda items, g: AudioTask.collate(task_like, items, g)  # noqa: E731
            best = (math.inf, 0.0, 0)
            for _ in range(args.repeats):
                t = time.perf_counter()
                produced, n_batches = 0.0, 0
                for batch in seeded_loader(ds, sampler, collate, num_workers=0):
                    produced += float(batch["wav_lengths"].sum()) / C.SAMPLE_RATE
                    n_batches += 1
                best = min(best, (time.perf_counter() - t, produced, n_batches))
            item_paths[name] = best
    res = {
        "whole_file_audio_sec_per_s": total_sec / whole,
        "crop_only_audio_sec_per_s": crop_sec / part,
        "crop_only_files_per_s": len(paths) / part,
        "whole_files_per_s": len(paths) / whole,
    }
    rows = [
        ["whole file (load_audio)", f"{len(paths) / whole:.0f}", f"{total_sec / whole:.0f}"],
        [f"crop only, {args.crop_sec:g} s (sf.read start/stop)", f"{len(paths) / part:.0f}", f"{crop_sec / part:.0f}"],
    ]
    for name, (dt, produced, n_batches) in item_paths.items():
        rate = produced / dt if n_batches else float("nan")
        res[f"item_path_{name.replace(' ', '_')}_crop_sec_per_s"] = rate
        rows.append([f"trainer item path, {name}: dataset + AudioTask.collate, batches of {args.batch_size}, "
                     f"crops {args.crop_min_sec:g}-{args.crop_max_sec:g} s ({n_batches} batches)",
                     f"{n_batches * args.batch_size / dt:.0f}" if n_batches else "n/a",
                     f"{rate:.0f} (crop seconds)" if n_batches else "n/a"])
    print()
    print(C.table(["what one worker does", "utterances / s", "audio s / s"], rows))
    need = args.batch_size * (args.crop_min_sec + args.crop_max_sec) / 2 / (args.step_ms / 1e3)
    print(f"\nAt {args.step_ms:g} ms per step of {args.batch_size} crops of {args.crop_min_sec:g}-"
          f"{args.crop_max_sec:g} s, one GPU consumes {need:.0f} crop seconds / s, i.e. workers of this machine:")
    for name, key in (("whole files", "item_path_whole_files_crop_sec_per_s"),
                      ("crops only (the trainer's path)", "item_path_crops_only_crop_sec_per_s")):
        if math.isfinite(res.get(key, float("nan"))):
            res[f"workers_needed_{key.split('_')[2]}"] = math.ceil(need / res[key])
            print(f"  {name}: {math.ceil(need / res[key])} (one worker makes {res[key]:.0f} crop seconds / s)")
    res["gpu_crop_sec_per_s"] = need
    return res


# ---------------------------------------------------------------- table
def _rss() -> int:
    """This process's resident memory in bytes (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="utf-8") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def part_table(args: argparse.Namespace) -> dict[str, float]:
    from s3prl_colld.data.audio_dataset import AudioDataset
    from s3prl_colld.data.bucket import BucketBatchSampler
    from s3prl_colld.data.lengths import HEADER, read_length_table

    n = args.utterances
    lengths = librispeech_like_lengths(n, args.seed)
    res: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="s3prl_colld_bench_table_") as tmp:
        root = Path(tmp)
        table = root / "len_for_bucket" / "train.csv"
        table.parent.mkdir(parents=True)
        with open(table, "w", encoding="utf-8") as f:  # s3prl's format, longest first
            f.write(",".join(HEADER) + "\n")
            for i, k in enumerate(np.argsort(-lengths, kind="stable")):
                spk, ch = 100 + k % 2338, 1000 + k % 7
                f.write(f"{i},train-other-500/{spk}/{ch}/{spk}-{ch}-{k:06d}.flac,{lengths[k]},\n")
        print(f"\ntable: {n:,} rows ({table.stat().st_size / 2**20:.1f} MiB csv), "
              f"{lengths.sum() / C.SAMPLE_RATE / 3600:.0f} h, mean {lengths.mean() / C.SAMPLE_RATE:.1f} s")
        steps: list[list[str]] = []

        def step(name: str, fn):
            rss = _rss()
            t = time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t
            steps.append([name, f"{dt:.2f}", f"{(_rss() - rss) / 2**20:+.0f}"])
            res[name] = dt
            return out

        step("read_length_table", lambda: read_length_table(root, "train"))
        # the table's files do not exist: the up-front audio check (cached per file; bench_audio_checks.py) is off
        ds = step("AudioDataset (table + min/max filter, no audio check)",
                  lambda: AudioDataset(root, ["train"], 0.5, 20.0, check=False))
        sampler = step("BucketBatchSampler(batch 24)", lambda: BucketBatchSampler(ds.lengths, 24, 64, seed=0))
        step("first epoch's batches (1 rank)", sampler.epoch_batches)
        step("len(sampler) + first 10 batches", lambda: (len(sampler), list(zip(range(10), iter(sampler)))))
        ddp = BucketBatchSampler(ds.lengths, 24, 64, seed=0, rank=3, world_size=8)
        step("8 ranks: rank 3's epoch + first batch", lambda: (ddp.epoch_batches(), next(iter(ddp))))
        sampler.set_epoch(1)
        step("next epoch's batches", sampler.epoch_batches)
        print()
        print(C.table(["step of a training start", "seconds", "resident memory (MiB, change)"], steps))
        res["utterances_kept"] = len(ds)
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("decode", "table", "both"), default="both")
    p.add_argument("--files", type=int, default=60, help="flac files to decode (synthetic, or the first of --split)")
    p.add_argument("--root", default=None, help="a real corpus root (LibriSpeech layout with len_for_bucket)")
    p.add_argument("--split", default="train-clean-100")
    p.add_argument("--repeats", type=int, default=2, help="decode passes (the fastest is reported)")
    p.add_argument("--crop-sec", type=float, default=6.0, help="crop length for the crop-only decode")
    p.add_argument("--crop-min-sec", type=float, default=4.0)
    p.add_argument("--crop-max-sec", type=float, default=8.0)
    p.add_argument("--batch-size", type=int, default=24)
    p.add_argument("--step-ms", type=float, default=40.0, help="GPU step time for the worker estimate")
    p.add_argument("--utterances", type=int, default=LIBRISPEECH_960H_UTTERANCES)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    cpu = platform.processor() or platform.machine()
    for line in open("/proc/cpuinfo", encoding="utf-8") if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    C.warn_if_busy()
    print(f"machine: {cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__}")
    if args.part in ("decode", "both"):
        part_decode(args)
    if args.part in ("table", "both"):
        part_table(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
