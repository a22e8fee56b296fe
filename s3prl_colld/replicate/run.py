"""The grid, stage by stage (``run_grid``), and its command (``main``): ``python -m s3prl_colld.replicate``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from s3prl_colld.replicate import environment
from s3prl_colld.replicate.measures import mean_std, measure_upstream
from s3prl_colld.replicate.plan import (ASR_BASELINE_SEEDS, ASR_BASELINES, ASR_SPLITS, BASELINES, PR_DE_BASELINES,
                                        PR_SPLITS, SCALES, ST_BASELINE_SEEDS, ST_BASELINES, ST_DIRECTIONS, ST_SPLITS,
                                        STUDENTS, TASKS, TEACHER_FRONTENDS, TEACHERS, asr_rows, plan_students, pr_de_rows, st_direction,
                                        st_rows, student_order)
from s3prl_colld.replicate.report import report, upgrade
from s3prl_colld.replicate.stages import Grid, _latest, slug
from s3prl_colld.replicate.sweep import chosen_students, run_sweep

STAGES = ("sweep", "grid", "curves")  # what --stages may name, in the order they run
DIRECTION_FIELDS = {st_direction(field): field for field in ST_DIRECTIONS}  # --st-directions: "de-en" -> "st_de_en"


def upstream_of(task: str) -> str:
    """The s3prl hub name that loads a checkpoint of ``task`` (the first name the task registers)."""
    from s3prl_colld.pretrain.task import get_task

    return get_task(task).upstreams[0]


def block(probes: list[dict[str, Any] | None], splits: list[str] | tuple[str, ...]) -> dict[str, dict[str, float]]:
    """A ``results.json`` block (``pr``, ``pr_de``, ``asr``, ``st_en_de``, ``st_de_en``): ``{"dev": {"mean", "std",
    "n"}, SPLIT: {...}, ...}`` over the finished probes (``None``: not finished) of one row; a collapsed probe is no
    number and is left out."""
    done = [p for p in probes if p is not None and not p.get("collapsed")]
    return {k: mean_std(p[k] for p in done if k in p) for k in ("dev", *splits)}


def probe_runs(probes: list[dict[str, Any] | None]) -> list[dict[str, Any]]:
    """Per finished probe: how long it trained, why it stopped, its attempts, whether it collapsed (a row's
    ``pr_probes`` / ``pr_de_probes`` / ``asr_probes`` / ``st_en_de_probes`` / ``st_de_en_probes`` in
    ``results.json``), with ``dev_tail``: its last three dev evaluations (the report says how far a probe stopped
    by the cap was still moving)."""
    return [{**{k: p.get(k) for k in ("updates", "stop_reason", "collapsed", "attempts")},
             "dev_tail": [round(float(v), 2) for _, v in (p.get("dev_curve") or [])[-3:]]}
            for p in probes if p is not None]


def run_grid(grid: Grid) -> dict[str, Any]:
    """Every stage of the grid (or, with ``grid.report_only``, the finished ones); ``results.json``'s content."""
    scale = grid.scale
    grid.corpora()
    # the teachers by corpus: the English one, and the multilingual one where a planned row needs it (None with
    # report_only when it has not finished: its rows are then left out)
    teachers = {corpus: grid.teacher(corpus) for corpus in grid.teachers_needed}
    teacher = teachers["en"]
    if teacher is None:
        raise SystemExit(f"[replicate] {grid.out} has no finished teacher: nothing to report")
    students = chosen_students(grid.out, plan_students(scale))  # a finished sweep's choices replace its rows
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
        return block(probes, splits)

    rows: list[dict[str, Any]] = []
    hubert = scale.teacher_upstream  # hubert_local, or hubert_fbank_local with --teacher-frontend fbank
    baselines = (*[(TEACHERS[c].key, "hubert_tiny", hubert, ckpt) for c, ckpt in teachers.items() if ckpt],
                 ("fbank", "baseline", "fbank", None), ("mfcc", "baseline", "mfcc", None),
                 ("random_init", "baseline", hubert, random_ckpt))
    if scale.baselines is not None:  # --baselines: only these rows (a partial run beside a committed grid)
        baselines = tuple(b for b in baselines if b[0] in scale.baselines)
    for name, task, upstream, ckpt in baselines:
        probes = [grid.probe("pr", name, upstream, ckpt, s, scale.probe_overrides, splits)
                  for s in range(scale.probe_seeds)]
        rows.append({"key": name, "name": name, "task": task, "upstream": upstream, "ckpt": grid.relative(ckpt),
                     **measured(name, upstream, ckpt), "distil_minutes": None, "pr": pr(probes),
                     "pr_probes": probe_runs(probes)})

    finals: dict[str, dict[int, Path]] = {s.name: {} for s in students}
    probes_of: dict[str, list[dict[str, Any] | None]] = {s.name: [] for s in students}
    for student, seed in student_order(students):
        if teachers.get(student.teacher) is None:  # report_only, its teacher not finished
            continue
        run = grid.distil(student, seed, teachers[student.teacher])
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
    pr_de_splits = [s for s in PR_SPLITS if (grid.corpus_de / s).is_dir()]
    # German PR, where the plan has the multilingual rows: plan.PR_DE_BASELINES and plan.pr_de_rows
    if "mix" in teachers and (grid.corpus_de / "manifest.json").is_file():
        pr_de_probes: dict[str, list[dict[str, Any] | None]] = {}
        for name, _, upstream, ckpt in baselines:
            if name in PR_DE_BASELINES:
                pr_de_probes[name] = [grid.probe("pr", name, upstream, ckpt, s, scale.probe_overrides, pr_de_splits,
                                                 corpus=grid.corpus_de, folder="pr_de")
                                      for s in range(scale.probe_seeds)]
        for student, seed in pr_de_rows(students):
            if seed in finals[student.name]:
                pr_de_probes.setdefault(student.key, []).append(grid.probe(
                    "pr", f"{student.name}-s{seed}", upstream_of(student.task), finals[student.name][seed], 0,
                    scale.probe_overrides, pr_de_splits, corpus=grid.corpus_de, folder="pr_de"))
        for key, probes in pr_de_probes.items():
            if key in by_key and any(p is not None for p in probes):
                by_key[key]["pr_de"] = block(probes, pr_de_splits)
                by_key[key]["pr_de_probes"] = probe_runs(probes)
    asr_splits = [s for s in ASR_SPLITS if (grid.asr_corpus / s).is_dir()]
    if scale.asr_overrides is not None:  # ASR: the plan's rows (plan.ASR_BASELINES, plan.asr_rows)
        asr_probes: dict[str, list[dict[str, float] | None]] = {}
        for name, _, upstream, ckpt in baselines:
            if name in ASR_BASELINES:  # at the probe seeds of plan.ASR_BASELINE_SEEDS (at most the scale's)
                asr_probes[name] = [grid.probe("asr", name, upstream, ckpt, p, scale.asr_overrides, asr_splits,
                                               corpus=grid.asr_corpus, config=scale.asr_config)
                                    for p in range(min(scale.probe_seeds, ASR_BASELINE_SEEDS.get(name, 1)))]
        for student, seed in asr_rows(students):
            if seed in finals[student.name]:
                asr_probes.setdefault(student.key, []).append(grid.probe(
                    "asr", f"{student.name}-s{seed}", upstream_of(student.task), finals[student.name][seed], 0,
                    scale.asr_overrides, asr_splits, corpus=grid.asr_corpus, config=scale.asr_config))
        for key, probes in asr_probes.items():
            if key in by_key and any(p is not None for p in probes):
                by_key[key]["asr"] = block(probes, asr_splits)
                by_key[key]["asr_probes"] = probe_runs(probes)
    if scale.st_overrides is not None:  # ST both directions: plan.ST_BASELINES and plan.st_rows
        # (row key, probe name, upstream, checkpoint, probe seed): a baseline at its probe seeds
        # (plan.ST_BASELINE_SEEDS, at most the scale's), a student at probe seed 0 of each distillation seed
        targets = [(name, name, upstream, ckpt, p) for name, _, upstream, ckpt in baselines if name in ST_BASELINES
                   for p in range(min(scale.probe_seeds, ST_BASELINE_SEEDS.get(name, 1)))]
        targets += [(s.key, f"{s.name}-s{seed}", upstream_of(s.task), finals[s.name][seed], 0)
                    for s, seed in st_rows(students) if seed in finals[s.name]]
        st_probes: dict[tuple[str, str], list[dict[str, Any] | None]] = {}
        for key, name, upstream, ckpt, probe_seed in targets:
            for field, lang in ST_DIRECTIONS.items():
                if field not in scale.st_directions:  # --st-directions: the other direction is not probed
                    continue
                corpus = grid.st_corpus(lang)
                if not (corpus / "manifest.json").is_file():
                    continue
                st_probes.setdefault((key, field), []).append(grid.probe(
                    "st", f"{name}-{st_direction(field)}", upstream, ckpt, probe_seed, scale.st_overrides,
                    ST_SPLITS, corpus=corpus, config=scale.st_config))
        for (key, field), probes in st_probes.items():
            if key in by_key and any(p is not None for p in probes):
                by_key[key][field] = block(probes, ST_SPLITS)
                by_key[key][f"{field}_probes"] = probe_runs(probes)
    samples = {f"{folder} {name}": lines for folder, name in (("asr", "teacher-p0"), ("st", "teacher_en_de-p0"),
                                                             ("st", "teacher_de_en-p0"))
               if (lines := hypotheses(grid.out / "probes" / folder / name))}
    planned = {f"{s.name} seed {seed}" for s, seed in student_order(students)}
    missing = sorted(planned - {f"{n} seed {seed}" for n, seeds in finals.items() for seed in seeds})
    # the corpus: hours and speakers per split, from its manifest (what the synthesiser recorded)
    manifest = json.loads((grid.corpus_en / "manifest.json").read_text())
    return {"scale": grid.scale_name, "teacher_frontend": scale.teacher_frontend, "rows": rows, "curves": curves,
            **_stage_files(grid),
            "stage_times": grid.times, "environments": environment.load(grid.out), "pr_splits": splits,
            "asr_splits": asr_splits, "st_splits": list(ST_SPLITS),
            **({"pr_de_splits": pr_de_splits} if any("pr_de" in r for r in rows) else {}),
            "tasks": list(grid.tasks), "not_run": missing, "samples": samples,
            "corpus": {k: _without_folder(v, grid) for k, v in manifest.items() if k != "utterances"}}


def hypotheses(run: Path, split: str = "test", n: int = 3) -> list[dict[str, str]]:
    """The first ``n`` test utterances of a finished probe as ``{"ref", "hyp"}``, for the report's by-eye check:
    from ``SPLIT-hyp.ark`` / ``SPLIT-ref.ark`` (PR; ``SPLIT-noLM-*.ark``, ASR: ``uttid text`` lines) or
    ``output-st-SPLIT.tsv`` (ST: ``utt_id``, ``hyp``, ``ref`` columns); [] when the probe has none."""
    table = run / f"output-st-{split}.tsv"
    if table.is_file():
        rows = [line.split("\t") for line in table.read_text().splitlines()[1:n + 1]]
        return [{"ref": r[2].strip(), "hyp": r[1].strip()} for r in rows if len(r) >= 3]
    for tag in ("", "-noLM"):
        ref, hyp = run / f"{split}{tag}-ref.ark", run / f"{split}{tag}-hyp.ark"
        if ref.is_file() and hyp.is_file():
            break
    else:
        return []
    from s3prl_colld.downstream.task import read_ark  # here: the downstream corpus code is slow to import

    refs, hyps = read_ark(ref), list(read_ark(hyp).items())[:n]
    return [{"ref": refs.get(uttid, "").strip(), "hyp": text.strip()} for uttid, text in hyps]


def _stage_files(grid: Grid) -> dict[str, Any]:
    """The results of the sweep and curves stages found in the grid's folder (``sweep``, ``budget_curves``)."""
    from s3prl_colld.replicate.curves import CURVES_FILE
    from s3prl_colld.replicate.sweep import SWEEP_FILE

    found = {}
    for key, name in (("sweep", SWEEP_FILE), ("budget_curves", CURVES_FILE)):
        if (grid.out / name).is_file():
            found[key] = json.loads((grid.out / name).read_text())
    return found


def _without_folder(value: Any, grid: Grid) -> Any:
    """A manifest entry with the grid's folder written ``GRID`` (the synthesiser's command names its ``--out``):
    a committed ``results.json`` names no folder of the machine it was made on."""
    if not isinstance(value, str):
        return value
    for folder in (str(grid.out.resolve()), str(grid.out)):
        value = value.replace(folder, "GRID")
    return value


def main(argv: list[str] | None = None) -> int:
    """``python -m s3prl_colld.replicate``; returns the exit code."""
    from s3prl_colld import replicate as _package  # its docstring is the help text

    p = argparse.ArgumentParser(prog="python -m s3prl_colld.replicate", description=_package.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="where every stage writes")
    p.add_argument("--scale", choices=sorted(SCALES), default="full")
    p.add_argument("--seed", type=int, default=0, help="corpus seed")
    p.add_argument("--tasks", default=None,
                   help=f"comma-separated probe tasks to run, of {','.join(TASKS)} (default: the scale's; ASR and "
                        "ST run on the students of the PR grid, each probe reused once finished)")
    p.add_argument("--st-directions", default=None,
                   help=f"comma-separated ST directions to probe with --tasks st, of {','.join(DIRECTION_FIELDS)} "
                        "(default: both)")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing new: write results.md/json from the stages that have finished (a folder "
                        "holding only a results.json, e.g. docs/results/grid_reduced, is rendered again from it)")
    p.add_argument("--stages", default="grid",
                   help="comma-separated, of sweep,grid,curves (run in that order; default grid): sweep = each "
                        "method's settings (plan.SWEEP) on dev, whose choices the grid then uses; curves = the main "
                        "students at several budgets (Scale.curve_steps)")
    p.add_argument("--students", default=None,
                   help="comma-separated row keys to run instead of the scale's (e.g. colld,distilhubert). Without "
                        "it, the reduced and full scales plan every row, the multilingual ones included: they "
                        "pretrain a second teacher on the English + German mix first (hours on a CPU)")
    p.add_argument("--baselines", default=None,
                   help=f"comma-separated baseline rows to probe, of {','.join(BASELINES)} (default: all; the "
                        "English teacher is pretrained either way, the students' and the other rows' teacher)")
    p.add_argument("--seeds-cap", type=int, default=None,
                   help="at most this many distillation seeds per student (default: the scale's)")
    p.add_argument("--curve-steps", default=None, help="comma-separated step counts of the curves stage "
                                                         "(default: the scale's)")
    p.add_argument("--teacher-frontend", choices=TEACHER_FRONTENDS, default=None,
                   help="the teachers' front-end: cnn (HuBERT's waveform CNN, the scales' default) or fbank "
                        "(log-mel filterbanks: docs/usage.md, 'Teachers'); every student is distilled from it")
    p.add_argument("--curve-seeds", type=int, default=None,
                   help="distillation seeds per budget of the curves stage (default: the scale's); with "
                        "--report-only, the seeds to look for")
    args = p.parse_args(argv)
    tasks = None if args.tasks is None else tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    if tasks is not None and (not tasks or any(t not in TASKS for t in tasks)):
        p.error(f"--tasks {args.tasks!r}: give a comma-separated subset of {','.join(TASKS)}, e.g. pr,asr,st")
    stages = [t.strip() for t in args.stages.split(",") if t.strip()]
    if not stages or any(t not in STAGES for t in stages):
        p.error(f"--stages {args.stages!r}: give a comma-separated subset of {','.join(STAGES)}, e.g. sweep,grid")
    scale = SCALES[args.scale]
    if args.students is not None:
        keys = tuple(k.strip() for k in args.students.split(",") if k.strip())
        known = {s.key for s in STUDENTS}
        if not keys or any(k not in known for k in keys):
            p.error(f"--students {args.students!r}: give row keys of {','.join(sorted(known))}")
        scale = dataclasses.replace(scale, students=keys)
    if args.baselines is not None:
        names = tuple(k.strip() for k in args.baselines.split(",") if k.strip())
        if any(k not in BASELINES for k in names):
            p.error(f"--baselines {args.baselines!r}: give baseline row keys of {','.join(BASELINES)} (or none: '')")
        scale = dataclasses.replace(scale, baselines=names)
    if args.st_directions is not None:
        directions = [d.strip() for d in args.st_directions.split(",") if d.strip()]
        if not directions or any(d not in DIRECTION_FIELDS for d in directions):
            p.error(f"--st-directions {args.st_directions!r}: give a comma-separated subset of "
                    f"{','.join(DIRECTION_FIELDS)}, e.g. de-en")
        scale = dataclasses.replace(scale, st_directions=tuple(DIRECTION_FIELDS[d] for d in directions))
    if args.seeds_cap is not None:
        if args.seeds_cap < 1:
            p.error(f"--seeds-cap {args.seeds_cap}: give at least 1")
        scale = dataclasses.replace(scale, seeds_cap=args.seeds_cap)
    if args.curve_steps is not None:
        try:
            scale = dataclasses.replace(scale, curve_steps=tuple(int(n) for n in args.curve_steps.split(",")))
        except ValueError:
            p.error(f"--curve-steps {args.curve_steps!r}: give comma-separated step counts, e.g. 300,1200")
    if args.teacher_frontend is not None:
        scale = dataclasses.replace(scale, teacher_frontend=args.teacher_frontend)
    if args.curve_seeds is not None:
        if args.curve_seeds < 1:
            p.error(f"--curve-seeds {args.curve_seeds}: give at least 1")
        scale = dataclasses.replace(scale, curve_seeds=args.curve_seeds)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    stored = args.out / "results.json"
    if args.report_only and stored.is_file() and not (args.out / "corpus_en" / "manifest.json").is_file():
        results = upgrade(json.loads(stored.read_text()))  # the stages are gone: render the stored numbers again
    else:
        try:
            grid = Grid(args.out, scale, args.seed, args.report_only, tasks, scale_name=args.scale)
        except ValueError as err:
            p.error(f"--scale {args.scale} --tasks {args.tasks}: {err}")
        if "curves" in stages and not scale.curve_steps:
            p.error(f"--scale {args.scale} has no curve budgets: give --curve-steps")
        if "sweep" in stages:
            grid.corpora()
            run_sweep(grid, grid.teacher())
            print(f"[replicate] sweep in {args.out}/sweep.md", flush=True)
        if "grid" in stages:
            results = run_grid(grid)
        if "curves" in stages:
            from s3prl_colld.replicate.curves import run_curves

            run_curves(grid, grid.teacher(), chosen_students(grid.out, plan_students(scale)))
        if "grid" not in stages or "curves" in stages:  # the report of what has finished, the new stages' included
            results = run_grid(Grid(args.out, scale, args.seed, True, tasks, scale_name=args.scale))
    print("\n" + report(args.out, results) + f"\n\n[replicate] results in {args.out}/results.md")
    return 0
