"""The teacher's budget curve (issue 21, item 4; not a speed benchmark, `make bench` does not run it).

On a results grid's folder whose corpus and teacher iteration 1 exist (``python -m s3prl_colld.replicate --scale
reduced``), it trains iteration 2 again from the same iteration 1 for ``--steps`` updates (one linear schedule,
a checkpoint every ``--every``) into ``GRID/teacher_budget``, probes PR (the grid's preset and probe data) at
each checkpoint, with ``--probe-seeds`` probe seeds at the last one, and compares each with the grid's fbank
probes (``probes/pr/fbank-p*``): the target is teacher PER <= 0.85 x fbank's on ``test`` and <= 0.75 x on
``test_noisy``. Every stage is reused when its output exists::

    OMP_NUM_THREADS=1 python bench/experiments/teacher_budget.py --grid result/grid --steps 1800 --every 600

Writes ``GRID/teacher_budget.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from s3prl_colld.checkpoint import list_checkpoints, step_of  # noqa: E402
from s3prl_colld.config import CONFIG_DIR  # noqa: E402
from s3prl_colld.replicate import SCALES, Grid, pretrain  # noqa: E402
from s3prl_colld.replicate.measures import mean_std  # noqa: E402
from s3prl_colld.replicate.plan import PR_SPLITS  # noqa: E402
from s3prl_colld.replicate.stages import _latest  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", type=Path, required=True, help="a results grid's folder (corpus and teacher_it1 done)")
    p.add_argument("--scale", default="reduced", choices=sorted(SCALES), help="the grid's scale (its probe preset)")
    p.add_argument("--steps", type=int, default=1800, help="iteration-2 updates (default 1800)")
    p.add_argument("--every", type=int, default=600, help="a checkpoint (and a probe) every N updates")
    p.add_argument("--probe-seeds", type=int, default=2, help="probe seeds at the last checkpoint (default 2)")
    args = p.parse_args(argv)
    scale = SCALES[args.scale]
    grid = Grid(args.grid, scale, 0, tasks=("pr",))
    it1 = args.grid / "teacher_it1"
    if not (it1 / "DONE").is_file():
        p.error(f"{it1} is not finished: run the grid's teacher stage first")
    run = args.grid / "teacher_budget"
    keep = args.steps // args.every + 1
    grid.stage(f"teacher_budget {args.steps}", run / "DONE", lambda: (
        pretrain("hubert_tiny", run, f"{grid.pretrain_data},,config.teacher.ckpt={_latest(it1)},,"
                 f"config.runner.total_steps={args.steps},,config.runner.save_step={args.every},,"
                 f"config.runner.max_keep={keep},,config.runner.progress_bar=false",
                 runner_yaml=CONFIG_DIR / "pretrain" / "hubert_tiny" / "iter2.yaml"),
        (run / "DONE").touch()))
    splits = [s for s in PR_SPLITS if (grid.corpus_en / s).is_dir()]
    fbank = [json.loads(f.read_text()) for f in sorted((args.grid / "probes" / "pr").glob("fbank-p*/DONE.json"))]
    rows = []
    checkpoints = list_checkpoints(run)
    for ckpt in checkpoints:
        seeds = args.probe_seeds if ckpt == checkpoints[-1] else 1
        probes = [grid.probe("pr", f"teacher_budget-step{step_of(ckpt)}", "hubert_local", ckpt, s,
                             scale.probe_overrides, splits) for s in range(seeds)]
        rows.append({"step": step_of(ckpt), **{k: mean_std(p[k] for p in probes) for k in ("dev", *splits)},
                     "updates": [p["updates"] for p in probes], "collapsed": any(p["collapsed"] for p in probes)})
    base = {k: mean_std(f[k] for f in fbank) for k in ("dev", *splits)} if fbank else None
    result = {"iteration2_steps": args.steps, "rows": rows, "fbank": base}
    (args.grid / "teacher_budget.json").write_text(json.dumps(result, indent=1))
    head = ["iteration-2 step", "probes", *[f"{s} PER" for s in ("dev", *splits)], "x fbank test", "x fbank test_noisy"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        ratio = [f"{r[s]['mean'] / base[s]['mean']:.2f}" if base and s in base else "-" for s in ("test", "test_noisy")]
        print(f"| {r['step']} | {r['test']['n']} | " + " | ".join(f"{r[s]['mean']:.1f}" for s in ("dev", *splits))
              + " | " + " | ".join(ratio) + " |")
    if base:
        print(f"| fbank | {base['test']['n']} | " + " | ".join(f"{base[s]['mean']:.1f}" for s in ("dev", *splits))
              + " | 1.00 | 1.00 |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
