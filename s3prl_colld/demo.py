"""``make demo``: the offline mini replication, stage by stage, reusing finished stages.

Stages (each writes into ``--out`` and is skipped when its output exists):
1. corpus  - a synthetic multi-speaker English corpus (espeak-ng), LibriSpeech layout;
2. teacher - ``run_pretrain.py -u hubert_tiny`` (resumes from its last checkpoint if killed);
3. student - ``run_pretrain.py -u colld_distiller``: a 2 x 192 CoLLD student of the teacher;
4. probes  - SUPERB PR (``run_downstream.py -d pr``: frozen upstream, weighted layer sum,
             linear CTC head, best dev checkpoint, test on held-out speakers) for the
             teacher, the CoLLD student, fbank, a random-init teacher and MFCC;
5. report  - ``results.md`` (table), ``results.json`` and ``teacher_curves.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

from s3prl_colld.checkpoint import latest_checkpoint

log = logging.getLogger("s3prl_colld.demo")


def _stage(name: str, done: Path, fn: Callable[[], Any]) -> None:
    """Run ``fn`` unless ``done`` exists; print timing either way."""
    if done.exists():
        print(f"[demo] {name}: reusing {done}", flush=True)
        return
    print(f"[demo] {name}: running ...", flush=True)
    start = time.time()
    fn()
    print(f"[demo] {name}: done in {time.time() - start:.0f} s", flush=True)


def make_corpus(out: Path, utterances: int, seed: int) -> None:
    from s3prl_colld.data import synth

    synth.main(["--lang", "en", "--out", str(out), "--utterances", str(utterances), "--seed", str(seed)])


def pretrain(task: str, expdir: Path, overrides: str) -> Path:
    """Run (or resume) ``run_pretrain.py -u task`` in ``expdir``; returns its final checkpoint."""
    from s3prl_colld.pretrain.cli import main as pretrain_main

    args = ["-u", task, "-p", str(expdir), "-o", overrides]
    last = latest_checkpoint(expdir)
    if last is not None:
        args += ["-e", str(last)]
    if pretrain_main(args) != 0:
        raise SystemExit(f"[demo] run_pretrain.py -u {task} failed")
    final = latest_checkpoint(expdir)
    assert final is not None
    return final


def probe(name: str, upstream: str, ckpt: Path | None, corpus: Path, probes_dir: Path,
          overrides: str = "") -> dict[str, Any]:
    """``run_downstream.py -m train -d pr`` then ``-m evaluate -t test``; reuses a finished probe.

    Returns ``{"dev_per", "test_per", "layer_weights", "run"}``.
    """
    from s3prl_colld.downstream.cli import main as downstream_main

    run = probes_dir / name
    done = run / "test-results.json"
    if done.is_file():
        print(f"[demo] probe {name}: reusing {done}", flush=True)
    else:
        print(f"[demo] probe {name}: run_downstream.py -m train -u {upstream} -d pr", flush=True)
        if run.exists():  # an unfinished probe: start it again (it is short)
            shutil.rmtree(run)
        args = ["-m", "train", "-u", upstream, "-d", "pr", "-p", str(run),
                "-o", f"config.data.root={corpus},,config.cache.dir={probes_dir / '_feature_cache'}" + overrides]
        if ckpt is not None:
            args[4:4] = ["-k", str(ckpt)]
        if downstream_main(args) != 0 or downstream_main(["-m", "evaluate", "-e", str(run / "dev-best.ckpt"),
                                                           "-t", "test"]) != 0:
            raise SystemExit(f"[demo] the PR probe of {name} failed")
    best = load_downstream_best(run / "dev-best.ckpt")
    test = json.loads(done.read_text())
    return {"dev_per": best, "test_per": test["per"], "layer_weights": test["layer_weights"], "run": str(run)}


def load_downstream_best(path: Path) -> float:
    """The best dev PER recorded in a downstream checkpoint."""
    from s3prl_colld.downstream.runner import load_downstream_checkpoint

    return float(load_downstream_checkpoint(path)["best"]["value"])


def run_probes(corpus: Path, teacher_dir: Path, student_dir: Path, out: Path, overrides: str) -> dict[str, Any]:
    """SUPERB PR (run_downstream.py) for the teacher, the CoLLD student, fbank, a random-init teacher and MFCC."""
    from s3prl_colld.checkpoint import load
    from s3prl_colld.config import from_dict
    from s3prl_colld.pretrain.tasks.hubert_tiny import HubertTinyConfig, write_random_init_checkpoint

    ckpt = latest_checkpoint(teacher_dir)
    assert ckpt is not None
    state = load(ckpt)
    n_units = len(state["dictionaries_symbols"][0])
    random_ckpt = out / "random_init_teacher.ckpt"
    if not random_ckpt.is_file():
        write_random_init_checkpoint(from_dict(HubertTinyConfig, state["config"]), n_units, random_ckpt)
    del state
    probes_dir = out / "probes"
    return {name: probe(slug, upstream, path, corpus, probes_dir, overrides) for name, slug, upstream, path in (
        ("teacher (tiny HuBERT)", "teacher", "hubert_local", ckpt),
        ("CoLLD student (2 x 192)", "colld_student", "colld_local", latest_checkpoint(student_dir)),
        ("fbank", "fbank", "fbank", None),
        ("random-init teacher", "random_init", "hubert_local", random_ckpt),
        ("MFCC (s3prl mfcc)", "mfcc", "mfcc", None),
    )}


def _log_rows(run: Path) -> list[dict[str, Any]]:
    """The rows of a run's ``log.jsonl`` (none if it logged nothing yet)."""
    path = run / "log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def teacher_summary(teacher_dir: Path) -> dict[str, float]:
    """Steps/s and the last logged loss / masked accuracy, from ``log.jsonl``."""
    rows = _log_rows(teacher_dir)
    if not rows:
        return {"steps": 0, "loss": float("nan"), "acc_m": float("nan"), "steps_per_sec": float("nan")}
    last = rows[-1]
    speeds = [r["steps_per_sec"] for r in rows if "steps_per_sec" in r]
    return {"steps": last["step"], "loss": last["loss"], "acc_m": last.get("acc_m", float("nan")),
            "steps_per_sec": sum(speeds) / max(len(speeds), 1)}


def plot_curves(teacher_dir: Path, png: Path) -> None:
    """Loss and masked accuracy against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _log_rows(teacher_dir)
    if not rows:
        print("[demo] the teacher logged no steps (runner.log_step > total_steps): no curves drawn")
        return
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot(steps, [r["loss"] for r in rows])
    ax[0].set(xlabel="step", ylabel="loss", title="tiny HuBERT: training loss")
    ax[1].plot(steps, [100 * r.get("acc_m", float("nan")) for r in rows], label="masked")
    ax[1].plot(steps, [100 * r.get("acc_u", float("nan")) for r in rows], label="unmasked")
    ax[1].set(xlabel="step", ylabel="unit accuracy %", title="unit prediction accuracy")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def report(out: Path, teacher: dict[str, float], probes: dict[str, Any]) -> str:
    """Write results.md / results.json and return the markdown table."""
    lines = [
        "| features | dev PER | test PER (held-out speakers) |",
        "|---|---|---|",
        *[f"| {name} | {r['dev_per']:.1f} | {r['test_per']:.1f} |" for name, r in probes.items()],
        "",
        f"Teacher: {teacher['steps']} steps at {teacher['steps_per_sec']:.2f} steps/s, "
        f"final loss {teacher['loss']:.3f}, masked unit accuracy {100 * teacher['acc_m']:.0f}%.",
    ]
    text = "\n".join(lines)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps({"teacher": teacher, "probes": probes}, indent=2))
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("result/demo"), help="where every stage writes")
    p.add_argument("--utterances", type=int, default=1500, help="corpus size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--teacher-overrides", default="", help="extra -o overrides for the teacher, e.g. ',,config.runner.total_steps=50'")
    p.add_argument("--student-overrides", default="", help="extra -o overrides for the CoLLD student")
    p.add_argument("--probe-overrides", default="", help="extra -o overrides for every PR probe, e.g. ',,config.runner.total_steps=100'")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    corpus, teacher_dir, student_dir = out / "corpus_en", out / "teacher", out / "student"

    _stage("corpus", corpus / "manifest.json", lambda: make_corpus(corpus, args.utterances, args.seed))
    _stage("teacher", teacher_dir / "DONE", lambda: (
        pretrain("hubert_tiny", teacher_dir, f"config.data.root={corpus}" + args.teacher_overrides),
        (teacher_dir / "DONE").touch()))
    _stage("student", student_dir / "DONE", lambda: (
        pretrain("colld_distiller", student_dir,
                 f"config.data.root={corpus},,config.teacher.ckpt={latest_checkpoint(teacher_dir)}"
                 + args.student_overrides),
        (student_dir / "DONE").touch()))
    print("[demo] probes: SUPERB PR on each upstream (finished probes are reused)", flush=True)
    start = time.time()
    probes = run_probes(corpus, teacher_dir, student_dir, out, args.probe_overrides)
    (out / "probes.json").write_text(json.dumps(probes, indent=2))
    print(f"[demo] probes: done in {time.time() - start:.0f} s", flush=True)
    plot_curves(teacher_dir, out / "teacher_curves.png")
    table = report(out, teacher_summary(teacher_dir), probes)
    print("\n" + table + f"\n\n[demo] results in {out}/results.md, curves in {out}/teacher_curves.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
