"""PR probes with and without a moving average of their weights (issue 21: the baselines' probe-seed spread;
not a speed benchmark, `make bench` does not run it).

On a results grid's folder whose English corpus exists (``python -m s3prl_colld.replicate --scale reduced``; the
teacher row needs its finished teacher too), it trains the grid's PR probe (the scale's preset and probe data)
``--probe-seeds`` times for each row of ``--rows`` and each ``--decays`` value: ``none`` is the trained weights
(dev-best), a number sets ``config.runner.ema_decay`` (every evaluation, dev and test, uses the exponential moving
average of the head's and featurizer's weights). The probes under the grid's own rule
carry the row's name (``probes/pr/fbank-p0``, ...: on the reduced scale, EMA 0.95 since session 19; ``none`` there
is ``fbank [trained]``), so a grid run reuses them and this reuses a grid's. Every probe is reused when it has
finished and trained with the same config (``stages.probe_config_drift``). ``--students`` adds students of the
grid (its chosen settings when it has a finished sweep),
distilled from its teacher with ``--student-seeds`` seeds, one probe each (probe seed 0), as the grid probes
them::

    OMP_NUM_THREADS=1 python bench/experiments/probe_ema.py --grid result/grid --rows fbank,mfcc,teacher \\
        --decays none,0.99,0.95 --probe-seeds 3 --students distilhubert,colld

Writes ``GRID/probe_ema.json`` (per row and decay: a ``results.json`` PR block, mean, std and n of dev and each
test split, and ``probes``, each probe's updates, stop reason, collapse flag, attempts and last dev values, as the
grid's ``pr_probes``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from s3prl_colld.replicate import SCALES, Grid  # noqa: E402
from s3prl_colld.replicate.plan import TEACHER_FRONTENDS, BASELINE_UPSTREAMS as UPSTREAMS, PR_SPLITS, TEACHER, plan_students  # noqa: E402
from s3prl_colld.replicate.run import block, probe_runs, upstream_of  # noqa: E402
from s3prl_colld.replicate.stages import _latest  # noqa: E402
from s3prl_colld.replicate.sweep import chosen_students  # noqa: E402

EMA_KEY = "config.runner.ema_decay="


def overrides_for(probe_overrides: str, decay: str) -> str:
    """The grid's probe overrides with its own ``config.runner.ema_decay`` (if any) replaced: by ``decay``, or for
    ``none`` by ``null`` (the trained weights; nothing added where the grid's probe has no average)."""
    base = ",,".join(item for item in probe_overrides.split(",,") if not item.strip().startswith(EMA_KEY))
    if decay == "none":
        return base if base == probe_overrides else f"{base},,{EMA_KEY}null"
    return f"{base},,{EMA_KEY}{decay}"


def probe_name(row: str, decay: str, probe_overrides: str) -> str:
    """The probe's name in the grid: ``row`` where the probe is the grid's own (its overrides are the scale's:
    ``fbank``), else tagged with its rule (``fbank [ema 0.99]``, ``fbank [trained]`` on a scale whose own probe
    averages), so a grid run and this one reuse each other's probes and never mistake one rule for the other."""
    if overrides_for(probe_overrides, decay) == probe_overrides:
        return row
    return f"{row} [trained]" if decay == "none" else f"{row} [ema {decay}]"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", type=Path, required=True, help="a results grid's folder (its English corpus done)")
    p.add_argument("--scale", default="reduced", choices=sorted(SCALES), help="the grid's scale (its probe preset)")
    p.add_argument("--rows", default="fbank,mfcc", help=f"comma-separated rows, of {','.join(UPSTREAMS)}")
    p.add_argument("--teacher-frontend", choices=TEACHER_FRONTENDS, default="cnn",
                   help="the grid's teacher front-end (its --teacher-frontend; default cnn): names the teacher's hub")
    p.add_argument("--decays", default="none,0.99", help="comma-separated: none (the trained weights) or an EMA decay")
    p.add_argument("--probe-seeds", type=int, default=3, help="probe seeds per row and decay (default 3)")
    p.add_argument("--students", default="", help="comma-separated student keys of the grid (plan.STUDENTS), e.g. "
                   "distilhubert,colld (default: none)")
    p.add_argument("--student-seeds", type=int, default=2, help="distillation seeds per student (default 2)")
    args = p.parse_args(argv)
    rows, decays = args.rows.split(","), args.decays.split(",")
    unknown = [r for r in rows if r not in UPSTREAMS]
    if unknown:
        p.error(f"unknown row(s) {unknown}: --rows takes a comma-separated subset of {','.join(UPSTREAMS)}")
    for decay in decays:
        try:
            ok = decay == "none" or 0.0 < float(decay) < 1.0
        except ValueError:
            ok = False
        if not ok:
            p.error(f"--decays: {decay!r} is not 'none' or a number in (0, 1)")
    scale = dataclasses.replace(SCALES[args.scale], teacher_frontend=args.teacher_frontend)
    upstreams = {**UPSTREAMS, TEACHER.key: scale.teacher_upstream}  # the teacher's hub name by its front-end
    grid = Grid(args.grid, scale, 0, tasks=("pr",))
    planned = {s.key: s for s in chosen_students(args.grid, plan_students(scale))}
    keys = [k for k in args.students.split(",") if k]
    unknown = [k for k in keys if k not in planned]
    if unknown:
        p.error(f"--students: unknown {unknown}; the scale's are {','.join(planned)}")
    if not (grid.corpus_en / "manifest.json").is_file():
        p.error(f"{grid.corpus_en} is not finished: run the grid's corpus stage first")
    teacher = args.grid / TEACHER.key
    needs_teacher = TEACHER.key in rows or bool(keys)  # the teacher row, and every student's teacher
    if needs_teacher and not (teacher / "DONE").is_file():
        p.error(f"{teacher} is not finished: run the grid's teacher stage first, or leave {TEACHER.key} out of --rows "
                "and --students empty")
    teacher_ckpt = _latest(teacher) if needs_teacher else None
    splits = [s for s in PR_SPLITS if (grid.corpus_en / s).is_dir()]
    out: dict[str, Any] = {"scale": args.scale, "splits": splits, "rows": {}}
    lines = ["| row | probe weights | dev PER | test PER | test_noisy PER | test_unseen PER | updates (stop) |",
             "|---|---|---|---|---|---|---|"]
    # (row, decay) -> probes: a baseline's over probe seeds, a student's over distillation seeds (probe seed 0)
    table: dict[tuple[str, str], list[dict[str, Any] | None]] = {}
    own = scale.probe_overrides  # the grid's own PR probe
    for row in rows:
        ckpt = teacher_ckpt if row == TEACHER.key else None
        for decay in decays:
            table[row, decay] = [grid.probe("pr", probe_name(row, decay, own), upstreams[row], ckpt, seed,
                                            overrides_for(own, decay), splits)
                                 for seed in range(args.probe_seeds)]
    for key in keys:
        student = planned[key]
        for seed in range(args.student_seeds):
            final = _latest(grid.distil(student, seed, teacher_ckpt))
            for decay in decays:
                table.setdefault((student.name, decay), []).append(grid.probe(
                    "pr", probe_name(f"{student.name}-s{seed}", decay, own), upstream_of(student.task), final, 0,
                    overrides_for(own, decay), splits))
    for (row, decay), probes in table.items():
        cells, runs = block(probes, splits), probe_runs(probes)
        out["rows"].setdefault(row, {})[decay] = {**cells, "probes": runs}
        weights = "trained (dev-best)" if decay == "none" else f"EMA {decay}"
        lines.append(f"| {row} | {weights} | " + " | ".join(
            f"{cells[k]['mean']:.1f} ± {cells[k]['std']:.1f} ({cells[k]['n']})" for k in ("dev", *splits))
            + " | " + ", ".join(f"{r['updates']} ({r['stop_reason']}{', collapsed' if r['collapsed'] else ''})"
                                for r in runs) + " |")
    (args.grid / "probe_ema.json").write_text(json.dumps(out, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
