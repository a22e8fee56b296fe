"""Which software stack ran a grid's stages (``environments.json`` in the grid's folder): package versions, and
(since session 19) torch's thread count and the CPU model.

The stack is part of a result: in session 15 a fresh environment (its unpinned numerical packages at whatever
releases pip chose that day; the committed grid's were not recorded) retrained the reduced grid's teacher
1.9 test PER away from the committed one (67.0 vs 68.9, 2 probe seeds each; ``docs/results_history.md``). Every
stage that runs records the versions it ran under; ``results.json`` carries them, and the report says when the
stages of one grid ran under more than one stack.
"""

from __future__ import annotations

import json
import platform
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from s3prl_colld.checkpoint import write_atomic

ENVIRONMENTS_FILE = "environments.json"
# the packages whose release can change what a stage computes (corpus synthesis, training, k-means, probes)
PACKAGES = ("torch", "torchaudio", "numpy", "scipy", "scikit-learn", "pyroomacoustics", "soundfile", "s3prl",
            "sentencepiece", "sacrebleu", "editdistance")


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """``{"python": ..., package: version or "not installed", ..., "torch threads": N, "cpu": model}`` of this
    process (read once: a process's stack does not change while it runs; every stage it records uses this).

    The thread count and the CPU model are part of the stack: they set the order of floating-point sums, and a
    teacher trained again at ``OMP_NUM_THREADS=2`` or on another CPU reads several PER away (README, "Tolerance
    between machines")."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    import torch

    found["torch threads"] = str(torch.get_num_threads())
    found["cpu"] = cpu_model()
    return found


def cpu_model() -> str:
    """The CPU's model name, and whether it has AVX-512 (``/proc/cpuinfo``'s ``model name`` and ``flags``;
    ``platform.processor()`` elsewhere): virtual machines often name only the family, and the vector width
    decides which kernels run."""
    info = Path("/proc/cpuinfo")
    if not info.is_file():
        return platform.processor() or "unknown"
    fields = dict(line.split(":", 1) for line in info.read_text(errors="replace").splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    avx512 = "avx512f" in fields.get("flags", "").split()
    return f"{fields.get('model name', 'unknown')}{', AVX-512' if avx512 else ''}"


def record(out: Path, stage: str, current: dict[str, str] | None = None) -> None:
    """Add ``stage`` to the stages run under ``current`` (default: this process's :func:`versions`) in
    ``out/environments.json``: a list of ``{"versions": {...}, "stages": [...]}``, one entry per distinct stack.
    The caller holds the grid's lock on the file (``Grid._record``)."""
    current = current or versions()
    entries = load(out)
    entry = next((e for e in entries if e["versions"] == current), None)
    if entry is None:
        entry = {"versions": current, "stages": []}
        entries.append(entry)
    if stage not in entry["stages"]:
        entry["stages"].append(stage)
    text = json.dumps(entries, indent=1).encode()
    write_atomic(out / ENVIRONMENTS_FILE, lambda f: f.write(text))


def load(out: Path) -> list[dict[str, Any]]:
    """The entries of ``out/environments.json`` ([] when no stage recorded one: grids from before session 15)."""
    path = out / ENVIRONMENTS_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def summary(entries: list[dict[str, Any]]) -> str:
    """One line for the report: the stack the stages ran under, or the keys whose values differ between the
    stacks when there is more than one; "" without entries. A key an entry lacks (written before the key was
    recorded: the thread count and CPU since session 19) is unknown there, not a difference."""
    if not entries:
        return ""
    keys = list(dict.fromkeys(k for e in entries for k in e["versions"]))
    differ = [k for k in keys if len({e["versions"][k] for e in entries if k in e["versions"]}) > 1]
    if not differ:
        merged = {k: next(e["versions"][k] for e in entries if k in e["versions"]) for k in keys}
        listed = ", ".join(f"{k} {merged[k]}" for k in merged)
        return f"Software stack of every stage: {listed} ({ENVIRONMENTS_FILE})."
    parts = [", ".join(f"{k} {e['versions'].get(k, 'not recorded')}" for k in differ)
             + f" ({len(e['stages'])} stage{'s' * (len(e['stages']) != 1)})" for e in entries]
    return (f"**The stages ran under {len(entries)} software stacks**, differing in {', '.join(differ)}: "
            + "; ".join(parts) + f" ({ENVIRONMENTS_FILE}). Rows from different stacks may not compare.")
