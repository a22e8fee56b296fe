"""The dev sweep (``--stages sweep``): each swept method at each of its settings (``plan.SWEEP``), chosen on dev.

Every point is distilled once (seed 0) at the scale's budget and probed for PR like a grid row; the point with
the lowest dev PER (collapsed probes excluded, a tie keeps the earlier point) becomes that method's row in the
grid (:func:`chosen_students`), so its seed-0 run and probe are shared with the grid. ``sweep.json`` and
``sweep.md`` in the grid's folder hold the dev numbers, written again after every point (a sweep cut short keeps
what finished); test is read only by the grid, for the chosen point.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from s3prl_colld.replicate.plan import PR_SPLITS, SWEEP, Student, SweepPoint, plan_students
from s3prl_colld.replicate.stages import Grid, _latest

SWEEP_FILE = "sweep.json"


def variant(student: Student, point: SweepPoint) -> Student:
    """``student`` with ``point``'s overrides, named ``"<name> [<label>]"`` (its own run folders); the planned
    row itself for a point without overrides."""
    if not point.overrides:
        return student
    overrides = ",,".join(o for o in (student.overrides, point.overrides) if o)
    return Student(**{**asdict(student), "name": f"{student.name} [{point.label}]", "overrides": overrides})


def run_sweep(grid: Grid, teacher: Path) -> dict[str, Any]:
    """Distil and probe every point of the scale's swept students; writes ``sweep.json`` / ``sweep.md``.

    Returns ``{"points": [{"method", "label", "overrides", "name", "dev", "updates", "stop_reason",
    "collapsed"}, ...], "chosen": {method key: label}}`` (``dev`` None: not finished).
    """
    from s3prl_colld.replicate.run import upstream_of  # run imports this module

    students = {s.key: s for s in plan_students(grid.scale)}
    splits = [s for s in PR_SPLITS if (grid.corpus_en / s).is_dir()]
    todo = [p for p in SWEEP if p.method in students]
    variants = [variant(students[p.method], p) for p in todo]
    points = [_point(p, student, None) for p, student in zip(todo, variants)]
    result = _write(grid.out, points)  # a sweep cut short keeps its finished points (and says which are not)
    for i, (point, student) in enumerate(zip(todo, variants)):
        run = grid.distil(student, 0, teacher)
        probe = None if run is None else grid.probe(
            "pr", f"{student.name}-s0", upstream_of(student.task), _latest(run), 0, grid.scale.probe_overrides, splits)
        points[i] = _point(point, student, probe)
        result = _write(grid.out, points)
    return result


def _point(point: SweepPoint, student: Student, probe: dict[str, Any] | None) -> dict[str, Any]:
    """``sweep.json``'s entry of one point (``dev`` None: not finished)."""
    return {"method": point.method, "label": point.label, "overrides": point.overrides, "name": student.name,
            "dev": None if probe is None else probe["dev"],
            **{k: None if probe is None else probe.get(k) for k in ("updates", "stop_reason", "collapsed")}}


def _write(out: Path, points: list[dict[str, Any]]) -> dict[str, Any]:
    """``sweep.json`` and ``sweep.md`` of the points so far; returns the content."""
    result = {"points": points, "chosen": choose(points)}
    (out / SWEEP_FILE).write_text(json.dumps(result, indent=1))
    (out / "sweep.md").write_text(render(result) + "\n")
    return result


def choose(points: list[dict[str, Any]]) -> dict[str, str]:
    """Per method, the label of the finished, not collapsed point with the lowest dev PER (ties: the earlier)."""
    chosen: dict[str, str] = {}
    best: dict[str, float] = {}
    for p in points:
        if p["dev"] is None or p.get("collapsed"):
            continue
        if p["method"] not in best or p["dev"] < best[p["method"]]:
            chosen[p["method"]], best[p["method"]] = p["label"], p["dev"]
    return chosen


def render(result: dict[str, Any]) -> str:
    """``sweep.md``: one table row per point, the chosen one marked."""
    lines = ["| method | setting | overrides | dev PER | probe updates (stop) | chosen |", "|---|---|---|---|---|---|"]
    for p in result["points"]:
        dev = "not run" if p["dev"] is None else ("collapsed" if p.get("collapsed") else f"{p['dev']:.1f}")
        chosen = "**yes**" if result["chosen"].get(p["method"]) == p["label"] else ""
        lines.append(f"| {p['method']} | {p['label']} | `{p['overrides'] or '(planned row)'}` | {dev} | "
                     f"{p.get('updates') or '-'} ({p.get('stop_reason') or '-'}) | {chosen} |")
    return "\n".join(lines) + ("\n\nPR dev PER of one distillation seed and one probe seed per point, at the grid's "
                               "budget; the chosen point becomes the method's row in the grid (test read there only).")


def chosen_students(out: Path, students: list[Student]) -> list[Student]:
    """``students`` with each swept one replaced by its chosen variant, when ``out`` has a finished sweep, and each
    row of a swept family (``Student.family``: CoLLD's variants) given its family's chosen setting too."""
    path = out / SWEEP_FILE
    if not path.is_file():
        return students
    chosen = json.loads(path.read_text())["chosen"]
    points = {(p.method, p.label): p for p in SWEEP}

    def pick(s: Student) -> Student:
        method = s.family or s.key
        point = points.get((method, chosen.get(method, "")))
        return s if point is None else variant(s, point)

    return [pick(s) for s in students]
