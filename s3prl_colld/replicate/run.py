"""The grid, stage by stage (``run_grid``), and its command (``main``): ``python -m s3prl_colld.replicate``."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from s3prl_colld.replicate.measures import mean_std, measure_upstream
from s3prl_colld.replicate.plan import COLLD_MULTILINGUAL, PR_SPLITS, SCALES, plan_students, student_order
from s3prl_colld.replicate.report import report
from s3prl_colld.replicate.stages import Grid, _latest, slug


def upstream_of(task: str) -> str:
    """The s3prl hub name that loads a checkpoint of ``task`` (the first name the task registers)."""
    from s3prl_colld.pretrain.task import get_task

    return get_task(task).upstreams[0]


def run_grid(grid: Grid) -> dict[str, Any]:
    """Every stage of the grid (or, with ``grid.report_only``, the finished ones); ``results.json``'s content."""
    scale = grid.scale
    grid.corpora()
    teacher = grid.teacher()
    students = plan_students(scale)
    splits = [s for s in PR_SPLITS if (grid.corpus_en / s).is_dir()]  # the PR test splits the corpus has
    test_wavs = sorted((grid.corpus_en / "test").rglob("*.flac"))[: scale.rtf_utterances]
    random_ckpt = grid.out / "random_init_teacher.ckpt"
    if not random_ckpt.is_file():  # a teacher of the same shape with random weights (the random_init baseline)
        from s3prl_colld.checkpoint import load
        from s3prl_colld.config import from_dict
        from s3prl_colld.pretrain.tasks.hubert_tiny import HubertTinyConfig, write_random_init_checkpoint

        state = load(teacher)
        write_random_init_checkpoint(from_dict(HubertTinyConfig, state["config"]),
                                     len(state["dictionaries_symbols"][0]), random_ckpt)

    def measured(name: str, upstream: str, ckpt: Path | None) -> dict[str, float]:
        path = grid.out / "measures" / f"{slug(name)}.json"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(measure_upstream(upstream, ckpt, test_wavs)))
        return json.loads(path.read_text())

    def pr(probes: list[dict[str, Any] | None]) -> dict[str, dict[str, float]]:
        done = [p for p in probes if p is not None and not p.get("collapsed")]  # a collapsed probe is no number
        return {k: mean_std(p[k] for p in done) for k in ("dev", *splits)}

    def probe_runs(probes: list[dict[str, Any] | None]) -> list[dict[str, Any]]:
        """Per probe: how long it trained, why it stopped, whether it collapsed (``results.json``'s record)."""
        return [{k: p.get(k) for k in ("updates", "stop_reason", "collapsed", "attempts")} for p in probes
                if p is not None]

    rows: list[dict[str, Any]] = []
    baselines = (("teacher", "hubert_tiny", "hubert_local", teacher), ("fbank", "baseline", "fbank", None),
                 ("mfcc", "baseline", "mfcc", None), ("random_init", "baseline", "hubert_local", random_ckpt))
    for name, task, upstream, ckpt in baselines:
        probes = [grid.probe("pr", name, upstream, ckpt, s, scale.probe_overrides, splits)
                  for s in range(scale.probe_seeds)]
        rows.append({"key": name, "name": name, "task": task, "upstream": upstream, "ckpt": grid.relative(ckpt),
                     **measured(name, upstream, ckpt), "distil_minutes": None, "pr": pr(probes),
                     "pr_probes": probe_runs(probes)})

    finals: dict[str, dict[int, Path]] = {s.name: {} for s in students}
    probes_of: dict[str, list[dict[str, Any] | None]] = {s.name: [] for s in students}
    for student, seed in student_order(students):
        run = grid.distil(student, seed, teacher)
        if run is None:
            continue
        finals[student.name][seed] = _latest(run)
        probes_of[student.name].append(grid.probe("pr", f"{student.name}-s{seed}", upstream_of(student.task),
                                                  finals[student.name][seed], 0, scale.probe_overrides, splits))
    curves: dict[str, list[tuple[int, float]]] = {}
    for student in students:
        if not finals[student.name]:
            continue
        upstream, first = upstream_of(student.task), min(finals[student.name].items())[1]
        times = [grid.times.get(f"student {student.name} seed {seed}") for seed in finals[student.name]]
        rows.append({"key": student.key, "name": student.name, "task": student.task, "upstream": upstream,
                     "ckpt": grid.relative(first),
                     "seeds": len(finals[student.name]), **measured(student.name, upstream, first),
                     "distil_minutes": mean_std(t / 60 for t in times if t is not None)["mean"],
                     "pr": pr(probes_of[student.name]), "pr_probes": probe_runs(probes_of[student.name])})
        if student.curve and scale.curves and 0 in finals[student.name]:
            from s3prl_colld.checkpoint import list_checkpoints, step_of

            points = [(step_of(c) or 0, probes_of[student.name][0] if step_of(c) == step_of(first) else
                       grid.probe("pr", f"{student.name}-s0-step{step_of(c)}", upstream, c, 0,
                                  scale.probe_overrides, ["test"]))
                      for c in list_checkpoints(first.parent)]
            curves[student.name] = [(step, res["test"]) for step, res in points
                                     if res is not None and not res.get("collapsed")]
    by_key = {r["key"]: r for r in rows}
    ranked = sorted((r for r in rows if r["task"] not in ("hubert_tiny", "baseline") and r["pr"]["test"]["n"]),
                    key=lambda r: r["pr"]["test"]["mean"])
    if scale.asr_overrides is not None:
        for row in [by_key["teacher"], by_key["fbank"], *ranked[: scale.asr_top]]:
            ckpt = grid.absolute(row["ckpt"])
            res = grid.probe("asr", row["name"], row["upstream"], ckpt, 0, scale.asr_overrides, ["test"])
            if res is not None:
                row["asr"] = {k: v for k, v in res.items() if k != "seconds"}
    if scale.st_overrides is not None:
        multi = by_key.get(COLLD_MULTILINGUAL.key)
        best = ranked[0] if ranked else None
        for row in [by_key["teacher"], *(r for r in (best, multi) if r is not None and r is not by_key["teacher"])]:
            ckpt = grid.absolute(row["ckpt"])
            for direction, corpus in (("en-de", grid.corpus_en), ("de-en", grid.corpus_de)):
                if corpus.is_dir():
                    res = grid.probe("st", f"{row['name']}-{direction}", row["upstream"], ckpt, 0,
                                     scale.st_overrides, ["test"], corpus=corpus)
                    if res is not None:
                        row.setdefault("st", {})[direction] = {"dev": res["dev"], "test": res["test"]}
    planned = {f"{s.name} seed {seed}" for s, seed in student_order(students)}
    missing = sorted(planned - {f"{n} seed {seed}" for n, seeds in finals.items() for seed in seeds})
    # the corpus: hours and speakers per split, from its manifest (what the synthesiser recorded)
    manifest = json.loads((grid.corpus_en / "manifest.json").read_text())
    if "command" in manifest:  # the synthesiser's command line names the corpus folder: relative to the grid's
        manifest["command"] = manifest["command"].replace(str(grid.corpus_en), grid.relative(grid.corpus_en) or "")
    return {"scale": next(k for k, v in SCALES.items() if v is scale), "rows": rows, "curves": curves,
            "stage_times": grid.times, "pr_splits": splits, "not_run": missing,
            "corpus": {k: v for k, v in manifest.items() if k != "utterances"}}


def main(argv: list[str] | None = None) -> int:
    """``python -m s3prl_colld.replicate``; returns the exit code."""
    from s3prl_colld import replicate as _package  # its docstring is the help text

    p = argparse.ArgumentParser(prog="python -m s3prl_colld.replicate", description=_package.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="where every stage writes")
    p.add_argument("--scale", choices=sorted(SCALES), default="full")
    p.add_argument("--seed", type=int, default=0, help="corpus seed")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing new: write results.md/json from the stages that have finished")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    results = run_grid(Grid(args.out, SCALES[args.scale], args.seed, args.report_only))
    print("\n" + report(args.out, results) + f"\n\n[replicate] results in {args.out}/results.md")
    return 0
