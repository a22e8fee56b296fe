"""The ASR probe's update budget against issue 22's bound (the teacher's test WER < 50; not a speed benchmark,
`make bench` does not run it).

Every ASR probe of the committed reduced grid stopped at the mini preset's 3,000-update cap while dev still
improved. On a results grid's folder whose ASR corpus and teacher exist (``python -m s3prl_colld.replicate
--scale reduced --tasks pr,asr``), it trains the grid's ASR probe of ``--rows`` (the preset ``mini/asr.yaml`` and
the scale's ASR data) at each of ``--caps``: the preset's own cap is the grid's own probe (``probes/asr/teacher-p0``),
another cap sets ``runner.total_steps`` with a dev pass (and a checkpoint) every ``--eval-step`` updates (the
same linear decay to 0 at the cap; the same early-stopping rule, counted in evaluations, so 4 of 500 updates
span 2,000) and is named ``teacher [cap N]``. Every probe is reused when it has finished::

    OMP_NUM_THREADS=1 python bench/experiments/asr_budget.py --grid result/grid --rows teacher --caps 3000,9000

Writes ``GRID/asr_budget.json`` (per row and cap: dev and test WER by split, CER by test split from the probe's
hypotheses, updates, stop reason, the dev curve, the featurizer's layer weights, minutes) and prints a table.
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

from s3prl_colld.downstream.cli import resolve_config  # noqa: E402
from s3prl_colld.downstream.metrics import error_rate  # noqa: E402
from s3prl_colld.downstream.task import read_ark  # noqa: E402
from s3prl_colld.replicate import SCALES, Grid  # noqa: E402
from s3prl_colld.replicate.plan import TEACHER_FRONTENDS, ASR_SPLITS, BASELINE_UPSTREAMS as UPSTREAMS, TEACHER  # noqa: E402
from s3prl_colld.replicate.stages import _latest, preset_path, slug  # noqa: E402


def cer(run: Path, split: str) -> float:
    """Character error rate (%) of a finished ASR probe's ``SPLIT-noLM-hyp.ark`` against its reference."""
    hyps, refs = read_ark(run / f"{split}-noLM-hyp.ark"), read_ark(run / f"{split}-noLM-ref.ark")
    return error_rate([hyps.get(k, "") for k in refs], list(refs.values()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", type=Path, required=True, help="a results grid's folder (its ASR corpus and teacher done)")
    p.add_argument("--scale", default="reduced", choices=sorted(SCALES), help="the grid's scale (its ASR preset)")
    p.add_argument("--rows", default=TEACHER.key, help=f"comma-separated rows, of {','.join(UPSTREAMS)}")
    p.add_argument("--teacher-frontend", choices=TEACHER_FRONTENDS, default="cnn",
                   help="the grid's teacher front-end (its --teacher-frontend; default cnn): names the teacher's hub")
    p.add_argument("--caps", default="3000,9000", help="comma-separated update caps (the preset's: the grid's probe)")
    p.add_argument("--eval-step", type=int, default=500, help="updates between dev passes under another cap")
    args = p.parse_args(argv)
    scale = dataclasses.replace(SCALES[args.scale], teacher_frontend=args.teacher_frontend)
    upstreams = {**UPSTREAMS, TEACHER.key: scale.teacher_upstream}  # the teacher's hub name by its front-end
    if scale.asr_overrides is None or scale.asr_config is None:
        p.error(f"the {args.scale} scale has no mini ASR stage")
    rows, caps = args.rows.split(","), [int(c) for c in args.caps.split(",")]
    unknown = [r for r in rows if r not in UPSTREAMS]
    if unknown:
        p.error(f"unknown row(s) {unknown}: --rows takes a comma-separated subset of {','.join(UPSTREAMS)}")
    grid = Grid(args.grid, scale, 0, tasks=("pr", "asr"))
    if not (grid.asr_corpus / "manifest.json").is_file():
        p.error(f"{grid.asr_corpus} is not finished: run the grid with --tasks pr,asr first")
    preset = resolve_config("asr", preset_path(scale.asr_config), scale.asr_overrides.lstrip(","))
    preset_cap = preset.runner.total_steps
    splits = [s for s in ASR_SPLITS if (grid.asr_corpus / s).is_dir()]
    out: dict[str, Any] = {"scale": args.scale, "preset_cap": preset_cap, "splits": splits, "rows": {}}
    lines = ["| row | cap | dev WER | " + " | ".join(f"{s} WER (CER)" for s in splits) + " | updates (stop) | min |",
             "|---|---|---|" + "---|" * len(splits) + "---|---|"]
    if TEACHER.key in rows and not (args.grid / TEACHER.key / "DONE").is_file():
        p.error(f"{args.grid / TEACHER.key} is not finished: run the grid's teacher stage first")
    for row in rows:
        ckpt = _latest(args.grid / TEACHER.key) if row == TEACHER.key else None
        for cap in caps:
            name, extra = row, ""
            if cap != preset_cap:
                name = f"{row} [cap {cap}]"
                extra = (f",,config.runner.total_steps={cap},,config.runner.eval_step={args.eval_step},,"
                         f"config.runner.save_step={args.eval_step}")
            result = grid.probe("asr", name, upstreams[row], ckpt, 0, scale.asr_overrides + extra, splits,
                                corpus=grid.asr_corpus, config=scale.asr_config)
            run = args.grid / "probes" / "asr" / f"{slug(name)}-p0"
            weights = json.loads((run / "layer_weights.json").read_text())["weights"]
            entry = {**{k: result[k] for k in ("dev", *splits, "updates", "stop_reason", "collapsed", "dev_curve")},
                     "cer": {s: cer(run, s) for s in splits}, "layer_weights": weights,
                     "minutes": result.get("seconds", 0.0) / 60}
            out["rows"].setdefault(row, {})[str(cap)] = entry
            lines.append(f"| {row} | {cap} | {entry['dev']:.1f} | " + " | ".join(
                f"{entry[s]:.1f} ({entry['cer'][s]:.1f})" for s in splits)
                + f" | {entry['updates']} ({entry['stop_reason']}) | {entry['minutes']:.0f} |")
    (args.grid / "asr_budget.json").write_text(json.dumps(out, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
