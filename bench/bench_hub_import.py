"""What s3prl-colld adds to ``import s3prl.hub`` (the start-up hook and our hub names), from ``python -X importtime``.

Each round runs ``python -X importtime -c "import s3prl.hub"`` in a fresh
interpreter with ``PYTHONPATH`` set to a checkout (the installed
``s3prl_colld_hub.pth`` imports that checkout's hook) and sums the cumulative
times of the import chains that one of our modules starts (a ``s3prl_colld*``
entry whose parent is not ours; pip's editable finder is left out), the
median over the rounds. It also lists every ``sklearn`` / ``scipy`` module that
one of our modules imported (s3prl imports both itself; those are not ours).

    python bench/bench_hub_import.py [--rounds N] [--base DIR]

``--base DIR``: another checkout (e.g. ``git archive COMMIT s3prl_colld | tar -x -C DIR``) measured in the
same rounds, side by side, with the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
OURS = "s3prl_colld"


def parse_importtime(text: str) -> tuple[float, list[str], list[str]]:
    """``-X importtime`` stderr -> (our added ms, our top-level chains, sklearn/scipy modules imported under ours).

    Lines are ``import time: SELF | CUMULATIVE | <2 spaces per depth>NAME``, a child printed before its parent.
    """
    rows = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "|" not in line or "self [us]" in line:
            continue
        _, cumulative, name = line.split("|", 2)
        depth = (len(name) - len(name.lstrip(" "))) // 2
        rows.append((depth, int(cumulative.strip()), name.strip()))
    parents: list[str | None] = [None] * len(rows)
    for i, (depth, _, _) in enumerate(rows):  # the parent is the next row (later) of a smaller depth
        for j in range(i + 1, len(rows)):
            if rows[j][0] < depth:
                parents[i] = rows[j][2]
                break
    ours = lambda n: n is not None and n.split(".")[0] == OURS  # noqa: E731
    added_us, chains, heavy = 0, [], []
    for (depth, cumulative, name), parent in zip(rows, parents):
        if ours(name) and not ours(parent) and not (parent or "").startswith("__editable__"):
            added_us += cumulative
            chains.append(f"{name} {cumulative / 1000:.1f} ms")
    for i, (_, _, name) in enumerate(rows):
        if name.split(".")[0] in ("sklearn", "scipy"):
            j, under_ours = i, False
            while parents[j] is not None:  # walk up: is one of the ancestors ours?
                j = next(k for k in range(j + 1, len(rows)) if rows[k][2] == parents[j])
                under_ours = under_ours or ours(rows[j][2])
            if under_ours:
                heavy.append(name)
    return added_us / 1000, chains, heavy


def measure(checkout: Path) -> tuple[float, list[str], list[str]]:
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import s3prl.hub"], env=env, cwd=checkout,
                         capture_output=True, text=True, timeout=300, check=True)
    return parse_importtime(out.stderr)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--base", type=Path, help="another checkout to measure side by side (the 'before')")
    args = p.parse_args()
    checkouts = {"this": REPO_ROOT, **({"base": args.base.resolve()} if args.base else {})}
    times: dict[str, list[float]] = {k: [] for k in checkouts}
    last: dict[str, tuple[float, list[str], list[str]]] = {}
    for _ in range(args.rounds):  # alternate the checkouts within each round
        for key, path in checkouts.items():
            last[key] = measure(path)
            times[key].append(last[key][0])
    for key, path in checkouts.items():
        ms, chains, heavy = last[key]
        print(f"{key:5s} {path}: our added cost {statistics.median(times[key]):7.1f} ms (median of {args.rounds}; "
              f"rounds {', '.join(f'{t:.0f}' for t in times[key])})")
        print(f"      our chains (last round): {'; '.join(chains)}")
        print(f"      sklearn/scipy modules imported by ours: {len(heavy)} {sorted(heavy)[:6]}")
    if args.base:
        print(f"ratio base / this: {statistics.median(times['base']) / statistics.median(times['this']):.1f}x")


if __name__ == "__main__":
    main()
