"""The grid's teacher with an Fbank front-end instead of its waveform CNN (issue 22: the teacher's ASR bound; not
a speed benchmark, `make bench` does not run it).

The reduced grid's teacher misses the ASR instrument's bound (test WER < 50) while fbank features pass it with the
same head, and the Fbank-front-end CoLLD student of that teacher passes it too: the teacher's waveform CNN, trained
from scratch on 2 h, is the suspect. This trains the grid's teacher cell again with the grid's
``--teacher-frontend fbank`` (``config.model.frontend=fbank``, ``models.tiny_hubert.FbankExtractor``; the same
corpus, recipe and budget: iterations 1 and 2, 800 + 1,800 steps, units of iteration 1's layer 4) in ``--out``,
on the corpora of ``--reference`` (a results grid: its ``corpus_en`` and, for ASR, ``corpus_st_en``, linked), and
probes it with the grid's own probes (PR at the scale's probe seeds, ASR with the mini preset at probe seed 0),
comparing with the reference's teacher (its ``results.json`` PR row and its ``probes/asr/teacher-p0``)::

    OMP_NUM_THREADS=1 python bench/experiments/fbank_teacher.py --reference result/grid --out result/grid_fbank_teacher

Every stage is reused when it has finished. Writes ``OUT/fbank_teacher.json`` (both teachers' PR and ASR blocks,
CER, the ASR probe's layer weights, the teacher / fbank ratios) and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from s3prl_colld.constants import FBANK_HUB_NAME  # noqa: E402
from s3prl_colld.replicate import SCALES, Grid  # noqa: E402
from s3prl_colld.replicate.plan import ASR_SPLITS, PR_SPLITS, TEACHER  # noqa: E402
from s3prl_colld.replicate.run import block, probe_runs  # noqa: E402
from s3prl_colld.replicate.stages import probe_config_drift, slug  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _reference import link_corpus  # noqa: E402
from asr_budget import cer  # noqa: E402

ROW = TEACHER.key  # the grid's own teacher probes (--teacher-frontend fbank): reused both ways


def asr_entry(grid: Grid, name: str, upstream: str, ckpt: Path, splits: list[str]) -> dict[str, Any]:
    """The grid's ASR probe of ``ckpt`` (probe seed 0) with CER and layer weights."""
    scale = grid.scale
    result = grid.probe("asr", name, upstream, ckpt, 0, scale.asr_overrides, splits, corpus=grid.asr_corpus,
                        config=scale.asr_config)
    run = grid.out / "probes" / "asr" / f"{slug(name)}-p0"
    return {**{k: result[k] for k in ("dev", *splits, "updates", "stop_reason", "collapsed")},
            "cer": {s: cer(run, s) for s in splits},
            "layer_weights": json.loads((run / "layer_weights.json").read_text())["weights"],
            "minutes": result.get("seconds", 0.0) / 60}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", type=Path, required=True, help="a results grid (results.json, corpus_en, teacher)")
    p.add_argument("--out", type=Path, required=True, help="where the Fbank-front-end teacher is trained")
    p.add_argument("--scale", default="reduced", choices=sorted(SCALES), help="the grid's scale (default reduced)")
    p.add_argument("--tasks", default="pr,asr", help="probes to run: pr, asr or pr,asr (default)")
    args = p.parse_args(argv)
    tasks = args.tasks.split(",")
    scale = SCALES[args.scale]
    if scale.teacher_iter2_overrides is None:
        p.error(f"the {args.scale} scale has no teacher iteration 2")
    reference = json.loads((args.reference / "results.json").read_text())
    rows = {row["key"]: row for row in reference["rows"]}
    if TEACHER.key not in rows or "fbank" not in rows:
        p.error(f"{args.reference}/results.json has no {TEACHER.key} or fbank row")
    for seed in range(scale.probe_seeds):  # the reference's teacher row must be this scale's probe, rule for rule
        drift = probe_config_drift("pr", args.reference / "probes" / "pr" / f"{TEACHER.key}-p{seed}",
                                   scale.probe_overrides)
        if drift:
            p.error(f"{args.reference}'s teacher probe p{seed} ran another probe than this scale's ({'; '.join(drift)})")
    args.out.mkdir(parents=True, exist_ok=True)
    link_corpus(args.reference / "corpus_en", args.out / "corpus_en")
    fbank_scale = dataclasses.replace(scale, teacher_frontend="fbank")  # the grid's --teacher-frontend fbank
    grid = Grid(args.out, fbank_scale, 0, tasks=("pr", "asr") if "asr" in tasks else ("pr",))
    teacher = grid.teacher("en")
    out: dict[str, Any] = {"threads": str(torch.get_num_threads()), "reference": str(args.reference),
                           "reference_teacher": {"pr": rows[TEACHER.key]["pr"]}, "reference_fbank": rows["fbank"]}
    lines = ["| probe | split | teacher (CNN), reference | teacher (Fbank front-end) | fbank features |",
             "|---|---|---|---|---|"]
    if "pr" in tasks:
        splits = [s for s in PR_SPLITS if (grid.corpus_en / s).is_dir()]
        probes = [grid.probe("pr", ROW, FBANK_HUB_NAME, teacher, seed, scale.probe_overrides, splits)
                  for seed in range(scale.probe_seeds)]
        out["pr"], out["pr_probes"] = block(probes, splits), probe_runs(probes)
        there, fbank = rows[TEACHER.key]["pr"], rows["fbank"]["pr"]
        out["pr_ratio_to_fbank"] = {s: out["pr"][s]["mean"] / fbank[s]["mean"] for s in splits if s in fbank}
        for s in ("dev", *splits):
            if s in there:
                lines.append(f"| PR PER | {s} | {there[s]['mean']:.1f} ± {there[s]['std']:.1f} | "
                             f"{out['pr'][s]['mean']:.1f} ± {out['pr'][s]['std']:.1f} | "
                             f"{fbank[s]['mean']:.1f} ± {fbank[s]['std']:.1f} |")
    if "asr" in tasks:
        link_corpus(args.reference / "corpus_st_en", args.out / "corpus_st_en")
        splits = [s for s in ASR_SPLITS if (grid.asr_corpus / s).is_dir()]
        ref_grid = Grid(args.reference, scale, 0, tasks=("pr", "asr"))
        ref_ckpt = sorted((args.reference / TEACHER.key).glob("states-*.ckpt"),
                          key=lambda c: int(c.stem.split("-")[1]))[-1]
        out["reference_teacher"]["asr"] = asr_entry(ref_grid, TEACHER.key, rows[TEACHER.key]["upstream"], ref_ckpt,
                                                    splits)
        out["asr"] = asr_entry(grid, ROW, FBANK_HUB_NAME, teacher, splits)
        for s in ("dev", *splits):
            ref, here = out["reference_teacher"]["asr"], out["asr"]
            cers = f" (CER {ref['cer'][s]:.1f} -> {here['cer'][s]:.1f})" if s in here["cer"] else ""
            lines.append(f"| ASR WER{cers} | {s} | {ref[s]:.1f} | {here[s]:.1f} | - |")
    (args.out / "fbank_teacher.json").write_text(json.dumps(out, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
