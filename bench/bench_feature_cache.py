"""Seconds per PR training epoch with the frozen-feature cache vs recomputing the upstream at every step.

Same upstream (a freshly initialised tiny HuBERT, 4 x 192, loaded as s3prl's
``hubert_local``), same PR head (Linear(192, 256) -> Linear(256, V), CTC),
same batches, on a synthetic espeak-ng corpus made for the run. "recompute"
runs the frozen upstream on every (padded) batch, as s3prl's runner does; "cache"
reads the fp16 hidden states written by the first epoch. The first epoch of
each (cache building, warm-up) is not timed; then epochs alternate between
the two, order rotated each round.

    python bench/bench_feature_cache.py [--quick]
"""

from __future__ import annotations

import time
from pathlib import Path

import _common as C
import torch
from s3prl_colld.data.audio import num_samples


def main() -> None:
    def extra(p):
        p.add_argument("--utterances", type=int, default=None, help="corpus size (default 200, quick 80)")

    args = C.parse_args(__doc__.splitlines()[0], batch=(16, 0.0), quick_batch=(16, 0.0), iters=3, quick_iters=2,
                        warmup=1, extra=extra)
    from s3prl_colld.data.synth import main as synth_main
    from s3prl_colld.downstream.runner import DownstreamRunner, RunSpec
    from s3prl_colld.downstream.schema import DownstreamConfig

    n_utts = args.utterances or (80 if args.quick else 200)
    with C.tmpdir() as tmp:
        tmp = Path(tmp)
        corpus = tmp / "corpus"
        assert synth_main(["--lang", "en", "--out", str(corpus), "--utterances", str(n_utts), "--seed", "0"]) == 0
        ckpt = C.write_tiny_teacher(tmp)
        C.warn_if_busy()
        runners = {}
        for name, cached in (("recompute", False), ("cache", True)):
            cfg = DownstreamConfig()
            cfg.data.root, cfg.runner.progress_bar, cfg.runner.batch_size = str(corpus), False, args.batch_size
            cfg.cache.enabled, cfg.cache.dir = cached, str(tmp / "cache")
            if not cached:  # s3prl runs the upstream on the padded batch
                cfg.upstream.batch_size = args.batch_size
            runners[name] = DownstreamRunner(RunSpec("pr", "hubert_local", str(ckpt)), cfg, tmp / name)
        n_train = len(runners["cache"].utts["train"])
        args.seconds = sum(num_samples(u.path) for u in runners["cache"].utts["train"]) / n_train / C.SAMPLE_RATE
        args.seconds = round(args.seconds, 2)
        bs = args.batch_size

        def epoch(runner):
            def go():
                order = torch.randperm(n_train).tolist()
                for i in range(0, n_train, bs):
                    runner.train_step(order[i: i + bs])
            return go

        t0 = time.perf_counter()
        runners["cache"].source("train")  # the first pass writes the cache
        build = time.perf_counter() - t0
        times = C.time_interleaved({n: epoch(r) for n, r in runners.items()}, args.iters, args.warmup)
        r, c = C.med(times["recompute"]), C.med(times["cache"])
        print(C.table(["contender", "s / epoch (median)", "min-max ms", "steps / epoch"],
                      [["recompute upstream every step (s3prl)", f"{r:.2f}", C.spread(times["recompute"]),
                        -(-n_train // bs)],
                       ["feature cache (fp16, from epoch 2)", f"{c:.3f}", C.spread(times["cache"]),
                        -(-n_train // bs)]]))
        print(f"\ncache build (first pass over {n_train} train utterances): {build:.1f} s")
        print(f"speed-up per epoch from epoch 2: {r / c:.1f}x (target >= 5x)")
        print(C.machine_line(args))


if __name__ == "__main__":
    main()
