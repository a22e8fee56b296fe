"""The grid's teacher cell trained again at another thread count (issue 21 item 5; not a speed benchmark, `make
bench` does not run it).

Run it under the thread count to test (``OMP_NUM_THREADS=2``) with ``--reference`` a finished results grid (its
``results.json``, teacher trained at the other count). It links the reference's English corpus into ``--out``
(the same audio: only the training's summation order differs), pretrains the teacher there with the grid's own
stages (iterations 1 and 2, the scale's budget), probes PR with the grid's probe at its probe seeds, and compares
each split's mean with the reference's teacher row::

    OMP_NUM_THREADS=2 python bench/experiments/teacher_threads.py --reference result/grid --out result/grid_omp2

Every stage is reused when it has finished. Writes ``OUT/teacher_threads.json`` (both teacher rows, the move per
split, the thread counts, the fbank row of the reference for the teacher / fbank ratio) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from s3prl_colld.replicate import SCALES, Grid  # noqa: E402
from s3prl_colld.replicate.plan import PR_SPLITS, TEACHER  # noqa: E402
from s3prl_colld.replicate.run import block, probe_runs  # noqa: E402
from s3prl_colld.replicate.stages import probe_config_drift  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _reference import link_corpus  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", type=Path, required=True, help="a finished results grid (results.json, corpus_en)")
    p.add_argument("--out", type=Path, required=True, help="where the teacher is trained again")
    p.add_argument("--scale", default="reduced", choices=sorted(SCALES), help="the grid's scale (default reduced)")
    args = p.parse_args(argv)
    reference = json.loads((args.reference / "results.json").read_text())
    rows = {row["key"]: row for row in reference["rows"]}
    if TEACHER.key not in rows or "fbank" not in rows:
        p.error(f"{args.reference}/results.json has no {TEACHER.key} or fbank row")
    link_corpus(args.reference / "corpus_en", args.out / "corpus_en")
    scale = SCALES[args.scale]
    for seed in range(scale.probe_seeds):  # the reference's teacher row must be this grid's probe, rule for rule
        drift = probe_config_drift("pr", args.reference / "probes" / "pr" / f"{TEACHER.key}-p{seed}",
                                   scale.probe_overrides)
        if drift:
            p.error(f"{args.reference}'s teacher probe p{seed} ran another probe than this scale's "
                    f"({'; '.join(drift)}): the move would mix the two")
    grid = Grid(args.out, scale, 0, tasks=("pr",))
    teacher = grid.teacher("en")
    splits = [s for s in PR_SPLITS if (grid.corpus_en / s).is_dir()]
    probes = [grid.probe("pr", TEACHER.key, "hubert_local", teacher, seed, scale.probe_overrides, splits)
              for seed in range(scale.probe_seeds)]
    here, there, fbank = block(probes, splits), rows[TEACHER.key]["pr"], rows["fbank"]["pr"]
    threads = str(torch.get_num_threads())
    out = {"threads": threads, "reference": str(args.reference), "teacher": here, "probes": probe_runs(probes),
           "reference_teacher": there, "reference_fbank": fbank,
           "move": {s: here[s]["mean"] - there[s]["mean"] for s in ("dev", *splits) if s in there}}
    (args.out / "teacher_threads.json").write_text(json.dumps(out, indent=1))
    print(f"| split | teacher, reference | teacher, {threads} threads | move | teacher / fbank, "
          "reference -> here |")
    print("|---|---|---|---|---|")
    for s, move in out["move"].items():
        ratio = (f"{there[s]['mean'] / fbank[s]['mean']:.2f} -> {here[s]['mean'] / fbank[s]['mean']:.2f}"
                 if s in fbank else "-")
        print(f"| {s} | {there[s]['mean']:.1f} ± {there[s]['std']:.1f} | {here[s]['mean']:.1f} ± {here[s]['std']:.1f}"
              f" | {move:+.1f} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
