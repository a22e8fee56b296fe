"""What hashing whole audio files costs per GB, next to extracting features from the same files (issue 23).

The feature cache keys each audio file on its content (``downstream.features``).
On a synthetic espeak-ng corpus made for the run (FLAC, as LibriSpeech), every
contender runs over the same files, one thread, files in the page cache
(a corpus read once is; a cold disk adds its read time to hashing and to
extraction alike), and is reported in seconds per GB of audio files:

- ``stat``: ``features.stat_key`` (what an unchanged file costs on a later run);
- ``head+tail``: ``data.audio.file_identity`` (the previous key: stat + 8 KiB);
- ``sha256``: ``features.content_hash``, the whole file (the key now: paid
  when a cache is built and for files whose stat changed); ``blake2b`` for scale
  (slower than SHA-256 where the CPU has SHA instructions);
- ``fbank``, ``tiny HuBERT``, ``HuBERT Base``: ``LiveFeatures.get`` one file at a
  time (decode + upstream forward), what building the cache does per file:
  s3prl's fbank, a 4 x 192 HuBERT and a randomly initialised HuBERT Base
  (12 x 768, s3prl's ``hubert_local``); HuBERT Base runs on the first
  ``--base-files`` files only (scaled by their bytes).

    python bench/bench_content_hash.py [--quick] [--utterances N] [--base-files N]
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import _common as C
import torch


def main() -> None:
    def extra(p):
        p.add_argument("--utterances", type=int, default=None, help="corpus size (default 300, quick 80)")
        p.add_argument("--base-files", type=int, default=None, help="files for HuBERT Base (default 24, quick 8)")

    args = C.parse_args(__doc__.splitlines()[0], batch=(1, 0.0), quick_batch=(1, 0.0), iters=5, quick_iters=3,
                        warmup=1, extra=extra)
    torch.set_num_threads(1)
    from bench_gpu_step import HUBERT_BASE, write_teacher
    from s3prl_colld.data.audio import file_identity
    from s3prl_colld.data.synth import main as synth_main
    from s3prl_colld.downstream.corpus import Utterance
    from s3prl_colld.downstream.features import LiveFeatures, content_hash, stat_key
    from s3prl_colld.downstream.upstream import FrozenUpstream

    n_utts = args.utterances or (80 if args.quick else 300)
    n_base = args.base_files or (8 if args.quick else 24)
    with C.tmpdir() as tmp:
        tmp = Path(tmp)
        corpus = tmp / "corpus"
        assert synth_main(["--lang", "en", "--out", str(corpus), "--utterances", str(n_utts), "--seed", "0"]) == 0
        files = sorted(corpus.rglob("*.flac"))
        utts = [Utterance(f.stem, f, "") for f in files]
        gb = sum(f.stat().st_size for f in files) / 1e9
        base_utts = utts[:n_base]
        base_gb = sum(u.path.stat().st_size for u in base_utts) / 1e9
        upstreams = {"fbank": FrozenUpstream("fbank", batch_size=1),
                     "tiny HuBERT": FrozenUpstream("hubert_local", str(C.write_tiny_teacher(tmp)), batch_size=1),
                     "HuBERT Base": FrozenUpstream("hubert_local", str(write_teacher(tmp, HUBERT_BASE)), batch_size=1)}
        C.warn_if_busy()

        def over(fn, which=files):
            return lambda: [fn(f) for f in which]

        def blake2b(path: Path) -> str:
            with open(path, "rb") as f:
                return hashlib.file_digest(f, "blake2b").hexdigest()

        def extract(name: str, which: list) -> object:
            live = LiveFeatures(upstreams[name], which)
            return lambda: [live.get([i]) for i in range(len(which))]

        cheap = {"stat": over(stat_key), "head+tail": over(file_identity), "sha256": over(content_hash),
                 "blake2b": over(blake2b), "fbank": extract("fbank", utts), "tiny HuBERT": extract("tiny HuBERT", utts)}
        times = C.time_interleaved(cheap, args.iters, args.warmup)
        per_gb = {k: C.med(v) / gb for k, v in times.items()}
        start = time.perf_counter()
        extract("HuBERT Base", base_utts)()
        per_gb["HuBERT Base"] = (time.perf_counter() - start) / base_gb
        rows = [[k, f"{per_gb[k]:.3g}", f"{per_gb['sha256'] / per_gb[k]:.2%}" if k in upstreams else "",
                 f"{min(times[k]) / gb:.3g}-{max(times[k]) / gb:.3g}" if k in times else f"1 pass, {n_base} files"]
                for k in per_gb]
        print(C.table(["contender", "s / GB of audio files (median)", "sha256 / extraction", "range"], rows))
        print(f"\n{len(files)} FLAC files, {gb * 1e3:.1f} MB ({gb * 1e9 / len(files) / 1e3:.0f} kB each); one thread")
        print(f"sha256 {1 / per_gb['sha256']:.2f} GB/s; stat / sha256 {per_gb['stat'] / per_gb['sha256']:.2%}")
        print(C.machine_line(args))


if __name__ == "__main__":
    main()
