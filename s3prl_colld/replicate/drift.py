"""How far one grid's numbers move between two runs of it: ``python -m s3prl_colld.replicate.drift A B``.

A and B are results folders (or their ``results.json``) of the same scale run twice, e.g. ``make demo`` with
``OMP_NUM_THREADS=1`` and ``=2`` (a different summation order, as another CPU gives). For every row, task and
split that both have, it prints the two means and the move (B - A), then the largest move against
``--tolerance`` (default 2, the issue's goal in PER / WER / BLEU points). A measurement, not a test: the exit
code is 0 either way (1 only for unreadable input).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from s3prl_colld.replicate.report import BLOCKS, upgrade


def load(path: Path) -> dict[str, Any]:
    """A ``results.json`` (of any version, in today's shape), given it or its folder."""
    path = path / "results.json" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results.json there (give a results folder or its results.json)")
    return upgrade(json.loads(path.read_text()))


def moves(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per (row, task, split) measured in both: ``{"row", "task", "split", "a", "b", "move"}``
    (means; ``move`` = b - a), in A's row order."""
    rows_b = {row["key"]: row for row in b["rows"]}
    out = []
    for row in a["rows"]:
        other = rows_b.get(row["key"])
        if other is None:
            continue
        for task in BLOCKS:  # the metric blocks of a results.json row, the report's own list
            for split, cell in (row.get(task) or {}).items():
                cell_b = (other.get(task) or {}).get(split)
                if not _measured(cell) or not _measured(cell_b):
                    continue
                out.append({"row": row["name"], "task": task, "split": split, "a": cell["mean"],
                            "b": cell_b["mean"], "move": cell_b["mean"] - cell["mean"]})
    return out


def _measured(cell: Any) -> bool:
    return isinstance(cell, dict) and cell.get("n", 0) > 0 and not math.isnan(cell.get("mean", math.nan))


def render(found: list[dict[str, Any]], labels: tuple[str, str], tolerance: float) -> str:
    """A markdown table of ``found`` and the verdict line (largest absolute move against ``tolerance``)."""
    if not found:
        return "no row, task and split is measured in both runs"
    lines = [f"| row | task | split | {labels[0]} | {labels[1]} | move |", "|---|---|---|---|---|---|"]
    lines += [f"| {m['row']} | {m['task']} | {m['split']} | {m['a']:.1f} | {m['b']:.1f} | {m['move']:+.1f} |"
              for m in found]
    worst = max(found, key=lambda m: abs(m["move"]))
    test = [m for m in found if m["split"] != "dev"]
    worst_test = max(test, key=lambda m: abs(m["move"])) if test else worst
    verdict = "within" if abs(worst["move"]) <= tolerance else "beyond"
    lines += ["", f"largest move: {abs(worst['move']):.1f} ({worst['row']}, {worst['task']} {worst['split']}); "
                  f"on a test split {abs(worst_test['move']):.1f} ({worst_test['row']}, {worst_test['task']} "
                  f"{worst_test['split']}): {verdict} the tolerance of {tolerance:g}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m s3prl_colld.replicate.drift", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", type=Path, help="the first run's results folder or results.json")
    p.add_argument("b", type=Path, help="the second run's")
    p.add_argument("--labels", default="A,B", help="column names of the two runs (default A,B)")
    p.add_argument("--tolerance", type=float, default=2.0, help="the largest acceptable move (default 2)")
    args = p.parse_args(argv)
    labels = tuple(args.labels.split(",", 1)) if "," in args.labels else ("A", "B")
    try:
        a, b = load(args.a), load(args.b)
    except (OSError, ValueError) as err:
        print(f"[compare] {err}")
        return 1
    print(render(moves(a, b), labels, args.tolerance))  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
