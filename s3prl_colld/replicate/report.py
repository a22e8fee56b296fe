"""The grid's report: ``results.md`` (table and verdicts), ``results.json`` and two plots."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from s3prl_colld.constants import HUBERT_HUB_NAMES
from s3prl_colld.replicate import environment
from s3prl_colld.replicate.plan import (CLAIMS, FRONTEND_SPEED, INSTRUMENT_CHECKS, ST_DIRECTIONS, STUDENTS, TASK_CLAIMS,
                                        TEACHER, Claim, st_direction)

BLOCKS = ("pr", "pr_de", "asr", *ST_DIRECTIONS)  # the probe blocks of a row: {"dev": {"mean", "std", "n"}, SPLIT: ...}


def fmt(stat: dict[str, float] | None) -> str:
    """``mean ± std (n)`` of a :func:`mean_std` entry."""
    if not stat or stat.get("n", 0) == 0:
        return "-"
    return f"{stat['mean']:.1f} ± {stat['std']:.1f} ({stat['n']})" if stat["n"] > 1 else f"{stat['mean']:.1f}"


def _stat(value: Any) -> dict[str, float]:
    """A block entry: a ``mean_std`` dict as is, an old bare number as one value (``n`` 1)."""
    if isinstance(value, dict):
        return value
    return {"mean": float(value), "std": 0.0, "n": 1}


def upgrade(results: dict[str, Any]) -> dict[str, Any]:
    """``results.json`` of any earlier version in today's shape (a copy; today's is returned unchanged in content).

    Rows without a ``key`` (before keys) get their plan key (by display name; the baselines' name is their
    key); an old ``asr`` of bare numbers (``{"dev": 12.3, "test": 14.5}``) and an old ``st`` of
    ``{"en-de": {"dev", "test"}}`` become blocks shaped like ``pr`` (``asr``, ``st_en_de``, ``st_de_en``).
    """
    keys = {s.name: s.key for s in STUDENTS}
    rows = []
    for old in results["rows"]:
        row = dict(old)
        row.setdefault("key", keys.get(row["name"], row["name"]))
        if "asr" in row:
            row["asr"] = {k: _stat(v) for k, v in row["asr"].items() if k != "seconds"}
        for direction, stat in row.pop("st", {}).items():  # the old ST entry: {"en-de": {"dev", "test"}}
            row.setdefault("st_" + direction.replace("-", "_"), {k: _stat(v) for k, v in stat.items()})
        rows.append(row)
    return {**results, "rows": rows}


def report(out: Path, results: dict[str, Any]) -> str:
    """``results.md`` / ``results.json`` and the plots; returns the markdown.

    ``results`` may be of an older version (:func:`upgrade`); what is written is today's shape.
    """
    results = upgrade(results)
    splits = results["pr_splits"]
    directions = [st_direction(d) for d in ST_DIRECTIONS]  # en-de, de-en
    german = any("pr_de" in r for r in results["rows"])  # German PR (the multilingual rows): a column of its own
    head = ["features / student", "params (M)", "RTF (CPU)", "distil (min)",
            *[f"PR {s} PER" for s in splits], *(["PR de test PER"] if german else []), "ASR test WER",
            *[f"ST {d} BLEU" for d in directions]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results["rows"]:
        cells = [r["name"], f"{r['params_m']:.2f}", f"{r['rtf']:.4f}",
                 "-" if r["distil_minutes"] is None else f"{r['distil_minutes']:.1f}",
                 *[fmt(r["pr"].get(s)) for s in splits],
                 *([fmt(r.get("pr_de", {}).get("test"))] if german else []),
                 fmt(r.get("asr", {}).get("test")),
                 *[fmt(r.get(field, {}).get("test")) for field in ST_DIRECTIONS]]
        lines.append("| " + " | ".join(cells) + " |")
    asr_splits = results.get("asr_splits") or []
    if len(asr_splits) > 1 and any("asr" in r for r in results["rows"]):
        lines += ["", "ASR WER by test split (greedy CTC, no LM; mean ± std (n) over distillation seeds):", "",
                  "| ASR WER: features / student | dev | " + " | ".join(asr_splits) + " |",
                  "|" + "---|" * (len(asr_splits) + 2)]
        lines += ["| " + " | ".join([r["name"], *[fmt(r["asr"].get(s)) for s in ("dev", *asr_splits)]]) + " |"
                  for r in results["rows"] if "asr" in r]
    times = results["stage_times"]
    probes = sum(v for k, v in times.items() if k.startswith("probe ")) / 60
    total = sum(times.values()) / 60
    lines += ["", f"PER, WER, BLEU: mean ± std (n) over distillation seeds (students; one probe each) or probe seeds "
                  f"(baselines). The stages took {total:.0f} min in all: {total - probes:.0f} min of corpus, "
                  f"teacher and distillation, {probes:.0f} min of probes (`stage_times` in results.json; "
                  f"measures and report not counted)."]
    if results.get("teacher_frontend", "cnn") != "cnn":
        lines += ["", f"The teachers have the {results['teacher_frontend']} front-end (`--teacher-frontend "
                      f"{results['teacher_frontend']}`, upstream `{HUBERT_HUB_NAMES[results['teacher_frontend']]}`) instead of HuBERT's waveform CNN; "
                      "every student is distilled from that teacher."]
    stack = environment.summary(results.get("environments") or [])
    if stack:
        lines += ["", stack]
    lines += probe_summary(results["rows"])
    lines += instrument_checks(results["rows"])
    if results.get("not_run"):
        lines += ["", f"Not run (the grid was cut short): {', '.join(results['not_run'])}."]
    if results.get("samples"):
        lines += ["", "By eye: the teacher's first test utterances (reference / hypothesis):"]
        for probe, pairs in results["samples"].items():
            for x in pairs:
                lines += [f"- {probe}: `{x['ref']}`", f"  -> `{x['hyp'] or '(empty)'}`"]
    if results.get("sweep"):
        from s3prl_colld.replicate.sweep import render as render_sweep

        lines += ["", "Settings chosen on dev (`--stages sweep`; the chosen one is the method's row above):", "",
                  render_sweep(results["sweep"])]
    if results.get("budget_curves"):
        from s3prl_colld.replicate.curves import render as render_curves

        lines += ["", "PER against distillation budget (`--stages curves`; each budget its own run, mean ± std (n) "
                      "over distillation seeds; budget_curve.png):", "", render_curves(results["budget_curves"])]
    checks = verdicts(results)
    if checks:
        lines += ["", "Paper claims, from these numbers:", *[f"- {c}" for c in checks]]
    text = "\n".join(lines)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    plot(out, results)
    if results.get("budget_curves"):
        from s3prl_colld.replicate.curves import plot as plot_curves

        plot_curves(out, results["budget_curves"])
    return text


# the probe families of the summary: (label, the row fields of its probes, each with a suffix for its names)
PROBE_FAMILIES: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("PR", (("pr_probes", ""), ("pr_de_probes", " (German)"))),
    ("ASR", (("asr_probes", ""),)),
    ("ST", (("st_en_de_probes", " (en-de)"), ("st_de_en_probes", " (de-en)"))),
)


def probe_summary(rows: list[dict[str, Any]]) -> list[str]:
    """Lines saying how the probes of each task ended (PR with German PR, ASR, ST both directions): updates, stop
    reason, retries, and for probes stopped by the update cap how far dev still moved over their last two
    evaluations (``dev_tail``); rows of a ``results.json`` from before probes recorded it give none. A collapsed
    probe is named, and left out of the means.
    """
    lines: list[str] = []
    for label, fields in PROBE_FAMILIES:
        runs = [(r["name"] + suffix, p) for r in rows for field, suffix in fields for p in r.get(field, [])]
        if not runs:
            continue
        updates = [p["updates"] for _, p in runs if p.get("updates") is not None]
        reasons = Counter(str(p.get("stop_reason")) for _, p in runs)
        retried = sum(1 for _, p in runs if (p.get("attempts") or 1) > 1)
        line = (f"{label} probes: {len(runs)} trained until dev stopped improving or the cap "
                f"({', '.join(f'{n} by {k}' for k, n in sorted(reasons.items()))}), "
                f"{min(updates, default=0)}-{max(updates, default=0)} updates; {retried} retried after a collapse.")
        moves = [abs(p["dev_tail"][-1] - p["dev_tail"][0]) for _, p in runs
                 if p.get("stop_reason") == "cap" and len(p.get("dev_tail") or []) >= 3]
        if moves:
            line += (f" At the cap, dev still moved by {min(moves):.1f}-{max(moves):.1f} over the last two "
                     f"evaluations ({len(moves)} probes).")
        lines += ["", line]
        collapsed = [name for name, p in runs if p.get("collapsed")]
        if collapsed:
            lines.append(f"**Collapsed {label} probes (mostly empty hypotheses), left out of the means: "
                         f"{', '.join(collapsed)}.**")
    return lines


def instrument_checks(rows: list[dict[str, Any]]) -> list[str]:
    """One line: whether the teacher's features reach each bound of ``plan.INSTRUMENT_CHECKS`` on the test split
    (ASR WER < 50, ST BLEU >= 10 each way), i.e. whether the probe can learn at all on this corpus; empty when the
    grid ran none of those tasks."""
    teacher = next((r for r in rows if r.get("key") == TEACHER.key), None)
    if teacher is None or not any(block in teacher for block, _ in INSTRUMENT_CHECKS):
        return []
    parts = []
    for block, bound in INSTRUMENT_CHECKS:
        metric, higher = METRICS[block]
        stat = teacher.get(block, {}).get("test")
        sign = ">=" if higher else "<"
        if not stat or not stat["n"]:
            parts.append(f"{metric} (bound {sign} {bound:g}): not measured")
            continue
        met = stat["mean"] >= bound if higher else stat["mean"] < bound
        parts.append(f"{metric} {stat['mean']:.1f} (bound {sign} {bound:g}): {'met' if met else '**not met**'}")
    return ["", "Instrument checks (the teacher's features, test split): " + "; ".join(parts) + "."]


# what each block measures: (metric, whether higher is better)
METRICS: dict[str, tuple[str, bool]] = {"pr": ("PER", False), "pr_de": ("German PER", False), "asr": ("WER", False),
                                        "st_en_de": ("BLEU en-de", True), "st_de_en": ("BLEU de-en", True)}


def compare(results: dict[str, Any], a: str, b: str, split: str = "test", block: str = "pr") -> str | None:
    """Row ``a`` against row ``b`` (their keys) on ``block``'s ``split`` (PR PER, ASR WER, ST BLEU): the means,
    the difference and whether it exceeds the spread; ``None`` when either row (or its block or split) is missing.

    A difference counts as real only when it is larger than the sum of both standard deviations
    (with one seed, it is reported as untested). The line names the rows by their display names.
    """
    rows = {r["key"]: r for r in results["rows"]}
    if a not in rows or b not in rows:
        return None
    x, y = rows[a].get(block, {}).get(split), rows[b].get(block, {}).get(split)
    if not x or not y or not x.get("n") or not y.get("n"):
        return None
    metric, higher_better = METRICS[block]
    na, nb = rows[a]["name"], rows[b]["name"]
    diff = x["mean"] - y["mean"]
    if min(x["n"], y["n"]) < 2:
        verdict = "one seed only: not tested"
    elif abs(diff) > x["std"] + y["std"]:
        verdict = f"{na if (diff > 0) == higher_better else nb} is better, beyond the seed spread"
    else:
        verdict = "within the seed spread: no difference shown"
    return (f"{na} {x['mean']:.1f} ± {x['std']:.1f} vs {nb} {y['mean']:.1f} ± {y['std']:.1f} {metric} on {split} "
            f"(difference {diff:+.1f}): {verdict}")


def verdicts(results: dict[str, Any], claims: tuple[Claim, ...] = CLAIMS,
             task_claims: tuple[tuple[str, Claim], ...] = TASK_CLAIMS) -> list[str]:
    """One line per paper claim the grid can check, from the numbers: ``claims`` (``plan.CLAIMS``) on every PR
    split, then ``task_claims`` (``plan.TASK_CLAIMS``: ASR, ST and German PR) on each of their blocks' test
    splits."""
    lines = []
    for split in results["pr_splits"]:
        for claim in claims:
            line = compare(results, claim.a.key, claim.b.key, split)
            if line:
                lines.append(line)
    for block, claim in task_claims:
        splits = results.get({"asr": "asr_splits", "pr_de": "pr_de_splits"}.get(block, "st_splits")) or ["test"]
        for split in splits:
            line = compare(results, claim.a.key, claim.b.key, split, block)
            if line:
                lines.append(line)
    rows = {r["key"]: r for r in results["rows"]}
    fbank, cnn = FRONTEND_SPEED.a.key, FRONTEND_SPEED.b.key
    if fbank in rows and cnn in rows:
        f, c = rows[fbank], rows[cnn]
        lines.append(f"Fbank front-end: {c['rtf'] / f['rtf']:.2f}x faster on CPU (RTF {f['rtf']:.4f} vs {c['rtf']:.4f}), "
                     f"{100 * (1 - f['params_m'] / c['params_m']):.1f}% fewer parameters "
                     f"({f['params_m']:.2f} M vs {c['params_m']:.2f} M)")
    return lines


def plot(out: Path, results: dict[str, Any]) -> None:
    """``per_vs_params.png`` and ``learning_curve.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    markers = "osD^v<>pP*Xh"
    for i, r in enumerate(results["rows"]):
        stat = r["pr"]["test"]
        if stat["n"]:  # a legend, not labels: the students sit on top of each other at one size
            ax.errorbar(r["params_m"], stat["mean"], yerr=stat["std"], fmt=markers[i % len(markers)], capsize=3,
                        label=f"{r['name']} ({stat['mean']:.1f})")
    ax.set(xlabel="parameters (M)", ylabel="PR test PER %", title="PER against parameters")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(out / "per_vs_params.png", dpi=110)
    plt.close(fig)
    if results["curves"]:
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for name, points in results["curves"].items():
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
        ax.set(xlabel="distillation steps", ylabel="PR test PER %", title="learning curve (seed 0)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "learning_curve.png", dpi=110)
        plt.close(fig)
