"""Seconds per PR probe update: the downstream runner on cached features vs the head's own compute.

"head compute": featurizer + PR head + CTC loss + backward + gradient clipping +
Adam, on update batches already padded in memory (the runner's own batches of
its first epoch, ``gradient_accumulate_steps`` batches per update, cycled).
"runner": ``DownstreamRunner.train`` on the frozen-feature cache (the PR preset
``configs/downstream/pr.yaml``: batches of 16, 2 per update, log every 50
updates; no progress bar, as the grid runs it), timed by difference: each
round continues the same runner by ``--short`` and by ``--long`` more updates
(each call ends with one dev evaluation and a checkpoint, as every run does),
and ``(t_long - t_short) / (long - short)`` is its time per update, without the
fixed costs. The two contenders alternate, order rotated each round. Upstream:
a freshly initialised tiny HuBERT (4 x 192, 5 hidden states), on a synthetic
espeak-ng corpus made for the run.

    python bench/bench_probe.py [--quick] [--threads 1] [--profile]

Prints ``probe runner / head compute = X`` (goal: X <= 1.5). ``--profile``
prints a cProfile of the runner's long calls (cumulative time, top 25).
"""

from __future__ import annotations

import cProfile
import io
import pstats
from pathlib import Path

import _common as C
import torch


def main() -> None:
    def extra(p):
        p.add_argument("--utterances", type=int, default=None, help="corpus size (default 200, quick 80)")
        p.add_argument("--short", type=int, default=None, help="updates of the short runner call (default 10)")
        p.add_argument("--long", type=int, default=None, help="updates of the long runner call (default 60, quick 30)")
        p.add_argument("--profile", action="store_true", help="cProfile the runner's long calls")

    args = C.parse_args(__doc__.splitlines()[0], batch=(16, 0.0), quick_batch=(16, 0.0), iters=5, quick_iters=3,
                        warmup=1, extra=extra)
    from s3prl_colld.data.synth import main as synth_main
    from s3prl_colld.downstream.cli import resolve_config
    from s3prl_colld.downstream.featurizer import pad_features
    from s3prl_colld.downstream.runner import DownstreamRunner, RunSpec

    n_utts = args.utterances or (80 if args.quick else 200)
    short = args.short or 10
    long = args.long or (30 if args.quick else 60)
    with C.tmpdir() as tmp:
        tmp = Path(tmp)
        corpus = tmp / "corpus"
        assert synth_main(["--lang", "en", "--out", str(corpus), "--utterances", str(n_utts), "--seed", "0"]) == 0
        ckpt = C.write_tiny_teacher(tmp)
        C.warn_if_busy()
        cfg = resolve_config("pr", None, f"config.data.root={corpus},,config.cache.dir={tmp / 'cache'},,"
                                         "config.runner.progress_bar=false,,"
                                         f"config.runner.batch_size={args.batch_size},,"
                                         "config.optimizer.decay=constant,,config.runner.eval_step=100000,,"
                                         "config.runner.save_step=100000,,config.runner.total_steps=1")
        runner = DownstreamRunner(RunSpec("pr", "hubert_local", str(ckpt)), cfg, tmp / "run")
        runner.train()  # builds the caches (train, dev), one update

        # the head's own compute: the same modules and batches, already padded in memory
        rc = cfg.runner
        utts = runner.utts["train"]
        epoch = runner.task.train_batches(utts, runner.samples("train"), rc, 0, runner.upstream.downsample_rate)
        batches = []
        for indices in epoch:
            hs, lengths = pad_features(runner.source("train").get(indices))
            batches.append((hs, lengths, [utts[i].text for i in indices]))
        head_ops = {"featurizer": runner.featurizer, "head": runner.head}
        params = [p for m in head_ops.values() for p in m.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=cfg.optimizer.lr)
        accum = rc.gradient_accumulate_steps
        cursor = [0]

        def head_updates(n: int) -> None:
            for _ in range(n):
                for _ in range(accum):
                    hs, lengths, texts = batches[cursor[0] % len(batches)]
                    cursor[0] += 1
                    loss = runner.task.loss(runner.head, runner.featurizer(hs), lengths, texts) / accum
                    loss.backward()
                torch.nn.utils.clip_grad_norm_(params, rc.gradient_clipping)
                opt.step()
                opt.zero_grad(set_to_none=True)

        profiler = cProfile.Profile() if args.profile else None

        def runner_updates(n: int, profile: bool = False) -> None:
            runner.cfg.runner.total_steps = runner.step + n
            if profile and profiler is not None:
                profiler.enable()
            runner.train()
            if profile and profiler is not None:
                profiler.disable()

        times = C.time_interleaved({
            "head": lambda: head_updates(long - short),
            "runner short": lambda: runner_updates(short),
            "runner long": lambda: runner_updates(long, profile=True),
        }, args.iters, args.warmup)
        head = [t / (long - short) for t in times["head"]]
        diffs = [(b - a) / (long - short) for a, b in zip(times["runner short"], times["runner long"])]
        h, r = C.med(head), C.med(diffs)
        frames = sum(int(b[1].float().mean() * b[0].size(0)) for b in batches) / len(batches)
        print(C.table(["contender", "ms / update (median)", "min-max ms"],
                      [["head compute (featurizer + head + CTC + Adam, batch in memory)", f"{1000 * h:.1f}",
                        C.spread([1000 * x for x in head])],
                       [f"runner on cached features ((t_{long} - t_{short}) / {long - short})", f"{1000 * r:.1f}",
                        C.spread([1000 * x for x in diffs])]]))
        print(f"\n{len(utts)} train utterances, {len(batches)} batches of {args.batch_size} per epoch "
              f"(about {frames:.0f} frames each), {accum} per update; upstream {runner.upstream.n_layers} hidden "
              f"states x {runner.upstream.dim}")
        print(f"fixed cost of a runner call (dev evaluation of {len(runner.utts['dev'])} utterances, checkpoint, "
              f"training.json): {1000 * (C.med(times['runner short']) - short * r):.0f} ms")
        print(f"probe runner / head compute = {r / h:.2f} (goal <= 1.5)")
        print(C.machine_line(args))
        if profiler is not None:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
            print(out.getvalue())


if __name__ == "__main__":
    main()
