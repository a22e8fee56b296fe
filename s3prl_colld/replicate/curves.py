"""The budget curve (``--stages curves``): the main students distilled for several step counts, several seeds.

For each student of the grid with ``curve`` (CoLLD and DistilHuBERT, at their dev-chosen settings when a sweep
ran) and each step count of ``Scale.curve_steps``, ``Scale.curve_seeds`` distillation seeds are run from scratch
(each budget with its own linear schedule, unlike the grid's intermediate checkpoints) and probed on PR like a grid
row. The scale's own budget is the grid's run, shared. The teacher's PR probes (the grid's, reused) are the
curve's reference: the PER the students distil towards. Writes ``curves.json``, ``curves.md`` and
``budget_curve.png`` in the grid's folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from s3prl_colld.replicate.plan import PR_SPLITS, Student
from s3prl_colld.replicate.stages import Grid, _latest

CURVES_FILE = "curves.json"


def run_curves(grid: Grid, teacher: Path, students: list[Student]) -> dict[str, Any]:
    """Distil and probe each ``(student with curve, step count, seed)``; returns ``curves.json``'s content:
    ``{"splits": [...], "curves": {name: {str(steps): {SPLIT: {"mean", "std", "n"}, "runs": [...]}}},
    "reference": {"name": teacher's row, "dev": {...}, SPLIT: {...}}}`` (the teacher over its probe seeds)."""
    from s3prl_colld.replicate.plan import TEACHERS
    from s3prl_colld.replicate.run import block, upstream_of  # run imports this module

    scale = grid.scale
    splits = [s for s in PR_SPLITS if (grid.corpus_en / s).is_dir()]
    curves: dict[str, dict[str, Any]] = {}
    for student in (s for s in students if s.curve):
        for steps in scale.curve_steps:
            probes = []
            for seed in range(scale.curve_seeds):
                run = grid.distil(student, seed, teacher, steps)
                if run is None:
                    continue
                name = f"{student.name}{grid.budget_suffix(steps)}-s{seed}"
                probe = grid.probe("pr", name, upstream_of(student.task), _latest(run), 0, scale.probe_overrides,
                                   splits)
                if probe is not None:
                    probes.append({"seed": seed, **{k: probe.get(k) for k in ("dev", *splits, "updates", "collapsed")}})
            curves.setdefault(student.name, {})[str(steps)] = {**block(probes, splits), "runs": probes}
    reference = [grid.probe("pr", TEACHERS["en"].key, scale.teacher_upstream, teacher, s, scale.probe_overrides, splits)
                 for s in range(scale.probe_seeds)]  # the grid's teacher probes: reused when the grid ran
    result = {"splits": splits, "curves": curves, "reference": {"name": TEACHERS["en"].key, **block(reference, splits)}}
    (grid.out / CURVES_FILE).write_text(json.dumps(result, indent=1))
    (grid.out / "curves.md").write_text(render(result) + "\n")
    plot(grid.out, result)
    return result


def render(result: dict[str, Any]) -> str:
    """``curves.md``: PR PER per student and budget (mean ± std (n) over distillation seeds)."""
    from s3prl_colld.replicate.report import fmt

    splits = result["splits"]
    lines = ["| student | steps | dev PER | " + " | ".join(f"{s} PER" for s in splits) + " |",
             "|" + "---|" * (len(splits) + 3)]
    for name, by_steps in result["curves"].items():
        for steps, cell in sorted(by_steps.items(), key=lambda kv: int(kv[0])):
            lines.append(f"| {name} | {steps} | " + " | ".join(fmt(cell.get(k)) for k in ("dev", *splits)) + " |")
    ref = result.get("reference")
    if ref and ref.get("test", {}).get("n"):
        lines.append(f"| {ref['name']} (reference) | - | " + " | ".join(fmt(ref.get(k)) for k in ("dev", *splits))
                     + " |")
    ranking = budget_verdicts(result)
    return "\n".join(lines + (["", "Does the ranking change with the budget? (test PER; a difference counts only "
                                 "beyond the sum of the seed spreads)", ""] + ranking if ranking else []))


def budget_verdicts(result: dict[str, Any], split: str = "test") -> list[str]:
    """Per budget where two or more students have ``split`` numbers, each pair's comparison line
    (:func:`~s3prl_colld.replicate.report.compare`'s rule), prefixed by the step count."""
    from itertools import combinations

    from s3prl_colld.replicate.report import compare

    budgets = sorted({int(k) for by_steps in result["curves"].values() for k in by_steps})
    lines = []
    for steps in budgets:
        rows = [{"key": name, "name": name, "pr": by_steps[str(steps)]} for name, by_steps in result["curves"].items()
                if by_steps.get(str(steps), {}).get(split, {}).get("n")]
        for a, b in combinations([r["key"] for r in rows], 2):
            line = compare({"rows": rows}, a, b, split)
            if line:
                lines.append(f"- {steps} steps: {line}")
    return lines


def plot(out: Path, result: dict[str, Any]) -> None:
    """``budget_curve.png``: PR test PER against distillation steps, mean and std over seeds; the teacher's test
    PER (``result["reference"]``, where measured) as a dashed line with its spread shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, by_steps in result["curves"].items():
        points = sorted((int(k), v["test"]) for k, v in by_steps.items() if v.get("test", {}).get("n"))
        if points:
            ax.errorbar([p[0] for p in points], [p[1]["mean"] for p in points], yerr=[p[1]["std"] for p in points],
                        marker="o", capsize=3, label=name)
    ref = (result.get("reference") or {}).get("test") or {}
    if ref.get("n"):
        mean, std = ref["mean"], ref["std"] or 0.0
        ax.axhline(mean, color="grey", linestyle="--", linewidth=1,
                   label=f"{result['reference']['name']} ({mean:.1f})")
        ax.axhspan(mean - std, mean + std, color="grey", alpha=0.15, linewidth=0)
    ax.set(xscale="log", xlabel="distillation steps (each budget its own run)", ylabel="PR test PER %",
           title="PER against distillation budget")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "budget_curve.png", dpi=110)
    plt.close(fig)
