"""What the reliability checks cost per audio file: content identity (feature cache) and the up-front audio check.

On a synthetic espeak-ng corpus made for the run, each contender runs over
every file of the corpus (round-robin, order rotated, median of N rounds):

- ``stat``: ``os.stat`` (size + mtime_ns alone);
- ``identity``: ``data.audio.file_identity`` (stat + blake2b of the first and
  last 4 KiB), what the feature cache computes for every file each time a
  split is opened;
- ``header``: ``soundfile.info`` (what the length tool used to read);
- ``decode``: ``audio_check.probe`` (full decode + checks), what the
  up-front audio check pays once per file (the first run on a corpus);
- ``cached check``: ``audio_check.probe_files`` with its cache warm (a stat
  per file and one JSON read), what every later run pays.

The last lines scale the per-file costs to LibriSpeech 960 h (281,241 files,
12.3 s each on average, against the corpus's mean length here) for one thread.

    python bench/bench_audio_checks.py [--quick] [--utterances N]
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import _common as C
import soundfile as sf

LIBRISPEECH_FILES, LIBRISPEECH_MEAN_SEC = 281_241, 12.3


def main() -> None:
    def extra(p):
        p.add_argument("--utterances", type=int, default=None, help="corpus size (default 600, quick 150)")

    args = C.parse_args(__doc__.splitlines()[0], batch=(1, 0.0), quick_batch=(1, 0.0), iters=5, quick_iters=3,
                        warmup=1, extra=extra)
    from s3prl_colld.data import audio_check
    from s3prl_colld.data.audio import file_identity
    from s3prl_colld.data.synth import main as synth_main

    n_utts = args.utterances or (150 if args.quick else 600)
    with C.tmpdir() as tmp:
        tmp = Path(tmp)
        corpus = tmp / "corpus"
        assert synth_main(["--lang", "en", "--out", str(corpus), "--utterances", str(n_utts), "--seed", "0"]) == 0
        files = sorted(corpus.rglob("*.flac"))
        seconds = sum(sf.info(str(f)).duration for f in files) / len(files)
        args.seconds = round(seconds, 2)
        os.environ["S3PRL_COLLD_CACHE"] = tempfile.mkdtemp(dir=tmp)
        audio_check.probe_files(files, "bench", workers=1, progress=False)  # warms the check cache
        C.warn_if_busy()

        def over_all(fn):
            return lambda: [fn(f) for f in files]

        contenders = {
            "stat": over_all(os.stat),
            "identity": over_all(file_identity),
            "header": over_all(lambda f: sf.info(str(f))),
            "decode": over_all(audio_check.probe),
            "cached check": lambda: audio_check.probe_files(files, "bench", workers=1, progress=False),
        }
        times = C.time_interleaved(contenders, args.iters, args.warmup)
        per_file = {k: C.med(v) / len(files) for k, v in times.items()}
        rows = [[k, f"{per_file[k] * 1e6:.0f}", f"{per_file[k] / per_file['stat']:.1f}x",
                 f"{per_file[k] * LIBRISPEECH_FILES * (LIBRISPEECH_MEAN_SEC / seconds if k == 'decode' else 1):.0f}"]
                for k in contenders]
        print(C.table(["contender", "us / file (median)", "vs stat", "s for LibriSpeech 960 h, 1 thread"], rows))
        print(f"\n{len(files)} files, {seconds:.2f} s of audio each on average (decode scaled to "
              f"{LIBRISPEECH_MEAN_SEC} s files for the LibriSpeech column)")
        print(f"identity / header: {per_file['identity'] / per_file['header']:.2f}x; "
              f"decode / cached check: {per_file['decode'] / per_file['cached check']:.0f}x")
        print(C.machine_line(args))


if __name__ == "__main__":
    main()
