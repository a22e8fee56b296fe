"""``python -m s3prl_colld.replicate --out DIR``: the mini replication's results grid.

Every method of ``../shared/docs/methods.md`` is distilled from one tiny HuBERT
teacher at one budget (steps, data, batch), then probed SUPERB-style:

1. corpora  - English (and German, for the multilingual student and ST De->En)
              from :mod:`s3prl_colld.data.synth`;
2. teacher  - ``run_pretrain.py -u hubert_tiny`` (iteration 1, then iteration 2);
3. students - every distillation task, several seeds each (:data:`STUDENTS`);
4. probes   - PR (dev-best checkpoint, then ``test``, ``test_noisy`` and
              ``test_unseen``) for every student seed and the baselines
              (teacher, fbank, MFCC, a random-init teacher); ASR for the teacher,
              fbank and the best students; ST En->De and De->En for the
              teacher and two students (one of them multilingual);
5. measures - parameters and CPU real-time factor of each upstream;
6. report   - ``DIR/results.md``, ``DIR/results.json`` and two plots.

Each stage writes a ``DONE`` marker (or its result file) and is skipped when
run again; an unfinished pretraining run resumes from its last checkpoint, an
unfinished probe starts again (it is short). ``--scale`` picks the budget:
``full`` is the whole grid, ``reduced`` what fits in about two hours here (the
run in ``docs/results/``), ``demo`` the grid of ``make demo`` (about 15 min) and
``tiny`` the test suite's end-to-end run.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from s3prl_colld.checkpoint import latest_checkpoint
from s3prl_colld.config import CONFIG_DIR
from s3prl_colld.constants import SAMPLE_RATE

PR_SPLITS = ("test", "test_noisy", "test_unseen")


# --------------------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Student:
    """One row of the grid: a distillation task with its overrides, distilled ``seeds`` times."""

    name: str
    task: str
    seeds: int
    overrides: str = ""  # extra ``-o`` (``,,``-joined, without a leading ``,,``)
    model: dict[str, Any] | None = None  # student shape, written as the run's ``-g`` yaml
    corpus: str = "en"  # en | mix (English + German, the CoLLD multilingual setting)
    needs_frontend: bool = False  # stage 2 of input distillation: needs the Fbank front-end of stage 1
    curve: bool = False  # probe intermediate checkpoints too (learning curve)


@dataclass(frozen=True)
class Scale:
    """The budget of one grid size."""

    en_args: tuple[str, ...]  # synth arguments of the English corpus
    de_args: tuple[str, ...] | None  # German corpus (None: no German stage)
    teacher_overrides: str
    teacher_iter2_overrides: str | None  # None: iteration 1 only
    student_steps: int
    student_batch: int
    frontend_steps: int
    probe_overrides: str
    probe_seeds: int  # for the baselines
    asr_overrides: str | None
    asr_top: int  # ASR for this many best students
    st_overrides: str | None
    seeds_cap: int | None = None  # at most this many distillation seeds per student
    students: tuple[str, ...] | None = None  # None: all of STUDENTS
    rtf_utterances: int = 20
    curves: bool = True  # probe intermediate checkpoints of the main comparison (learning curve)
    pretrain_every: int = 1  # teacher and students train on every N-th training utterance (1: all)


# Deep-thin against shallow-wide at equal parameters (Wang et al. at mini scale): 1.140 M and 1.139 M.
DEEP_THIN = {"layers": 4, "dim": 128, "ffn_dim": 512, "heads": 4}
SHALLOW_WIDE = {"layers": 2, "dim": 192, "ffn_dim": 524, "heads": 4}

STUDENTS: tuple[Student, ...] = (
    Student("distilhubert", "distilhubert", 3, curve=True),
    Student("l2l", "l2l_distiller", 2),
    Student("colld", "colld_distiller", 3, curve=True),
    Student("colld+disc", "colld_distiller", 2, "config.loss.disc_weight=1.0"),
    Student("distilhubert+disc", "distilhubert", 2, "config.loss.disc_weight=1.0"),
    Student("colld fbank front-end", "colld_distiller", 2,
            "config.model.frontend=fbank", needs_frontend=True),
    Student("deep-thin (4 x 128) colld", "colld_distiller", 2, model=DEEP_THIN),
    Student("shallow-wide (2 x 192, FFN 524) colld", "colld_distiller", 2, model=SHALLOW_WIDE),
    Student("dicehubert", "dicehubert", 2),
    Student("colld multilingual (en+de)", "colld_distiller", 1, corpus="mix"),
)

SCALES: dict[str, Scale] = {
    "full": Scale(
        en_args=("--hours", "10"), de_args=("--hours", "3"),
        teacher_overrides="", teacher_iter2_overrides="",
        student_steps=400, student_batch=8, frontend_steps=300,
        probe_overrides=",,config.data.max_train_utts=2000", probe_seeds=2,
        asr_overrides=",,config.data.max_train_utts=2000", asr_top=3,
        st_overrides="",
    ),
    # What fits in about two hours of this 2-core machine (the run in docs/results/): the 2 h subset of the
    # 10 h corpus for pretraining (every 5th utterance), teacher iterations 1 and 2, every English student
    # with 3 seeds for the main comparison and 2 for the others, 300 steps each, shorter PR probes
    # (1,000 training utterances, 400 updates), 2 probe seeds for the baselines; no German, ASR or ST.
    "reduced": Scale(
        en_args=("--hours", "10"), de_args=None,
        teacher_overrides=",,config.runner.total_steps=800", teacher_iter2_overrides="",
        student_steps=300, student_batch=8, frontend_steps=200,
        probe_overrides=",,config.data.max_train_utts=1000,,config.runner.total_steps=400,,config.runner.eval_step=200",
        probe_seeds=2, asr_overrides=None, asr_top=0, st_overrides=None, curves=True, pretrain_every=5,
        students=tuple(s.name for s in STUDENTS if not s.name.startswith("colld multilingual")),
    ),
    # ``make demo``: about 15 min here. A 1,500-utterance corpus, iteration 1 of the teacher, DistilHuBERT and
    # CoLLD once each, short PR probes, no learning curve.
    "demo": Scale(
        en_args=("--utterances", "1500"), de_args=None,
        teacher_overrides=",,config.runner.total_steps=400", teacher_iter2_overrides=None,
        student_steps=200, student_batch=8, frontend_steps=200,
        probe_overrides=",,config.data.max_train_utts=600,,config.runner.total_steps=300,,config.runner.eval_step=150",
        probe_seeds=1, asr_overrides=None, asr_top=0, st_overrides=None,
        seeds_cap=1, students=("distilhubert", "colld"), rtf_utterances=10, curves=False,
    ),
    # The test suite's end-to-end run (tests/test_demo.py): 60 utterances, a teacher that learns its 12 units in
    # 120 steps of 1-2 s crops, 2-step students, 150-update probes.
    "tiny": Scale(
        en_args=("--utterances", "60"), de_args=None,
        teacher_overrides=",,config.runner.total_steps=120,,config.runner.save_step=120,,config.runner.log_step=10,,"
                          "config.runner.num_workers=0,,config.runner.progress_bar=false,,config.data.batch_size=8,,"
                          "config.data.crop_min_sec=1.0,,config.data.crop_max_sec=2.0,,config.units.n_clusters=12,,"
                          "config.optimizer.warmup_steps=20",
        teacher_iter2_overrides=None,
        student_steps=2, student_batch=4, frontend_steps=2,
        probe_overrides=",,config.runner.total_steps=150,,config.runner.eval_step=75,,config.runner.batch_size=8",
        probe_seeds=1, asr_overrides=None, asr_top=0, st_overrides=None,
        seeds_cap=1, students=("distilhubert", "colld"), rtf_utterances=2,
    ),
}


def plan_students(scale: Scale) -> list[Student]:
    """The students this scale distils, with seeds capped by the scale."""
    chosen = [s for s in STUDENTS if scale.students is None or s.name in scale.students]
    if scale.seeds_cap is not None:
        chosen = [Student(**{**asdict(s), "seeds": min(s.seeds, scale.seeds_cap)}) for s in chosen]
    return chosen


# --------------------------------------------------------------------------------------------- stages
class Grid:
    """Runs (or reuses) the stages of one grid in ``out``; records stage wall times."""

    def __init__(self, out: Path, scale: Scale, seed: int, report_only: bool = False) -> None:
        self.out, self.scale, self.seed, self.report_only = out, scale, seed, report_only
        self.corpus_en, self.corpus_de, self.corpus_mix = out / "corpus_en", out / "corpus_de", out / "corpus_mix"
        self.times_path = out / "stage_times.json"
        self.times: dict[str, float] = json.loads(self.times_path.read_text()) if self.times_path.is_file() else {}

    def stage(self, name: str, done: Path, fn: Callable[[], Any]) -> bool:
        """Run ``fn`` unless ``done`` exists; the wall time of a run is kept in ``stage_times.json``.

        Returns whether the stage is finished (``False`` only with ``report_only``, which runs nothing).
        """
        if done.exists():
            print(f"[replicate] {name}: reusing {done}", flush=True)
            return True
        if self.report_only:
            print(f"[replicate] {name}: not run (--report-only)", flush=True)
            return False
        print(f"[replicate] {name}: running ...", flush=True)
        start = time.time()
        fn()
        self._record(name, self.times.get(name, 0.0) + time.time() - start)
        print(f"[replicate] {name}: done in {time.time() - start:.0f} s", flush=True)
        return True

    def _record(self, name: str, seconds: float) -> None:
        """Keep ``seconds`` as the wall time of ``name`` in ``stage_times.json``."""
        self.times[name] = seconds
        self.times_path.write_text(json.dumps(self.times, indent=1, sort_keys=True))

    # ---- corpora
    def corpora(self) -> None:
        from s3prl_colld.data import synth

        for lang, path, extra in (("en", self.corpus_en, self.scale.en_args), ("de", self.corpus_de, self.scale.de_args)):
            if extra is None:
                continue
            self.stage(f"corpus_{lang}", path / "manifest.json", lambda lang=lang, path=path, extra=extra: _check(
                synth.main(["--lang", lang, "--out", str(path), "--seed", str(self.seed), *extra]), f"corpus {lang}"))
        if self.scale.de_args is not None:
            self.stage("corpus_mix", self.corpus_mix / "len_for_bucket" / "train.csv",
                       lambda: write_mixed_corpus(self.corpus_mix, {"en": self.corpus_en, "de": self.corpus_de}))

    @property
    def splits(self) -> str:
        """The ``-o`` for the pretraining split: ``train``, or a table of every N-th training utterance."""
        every = self.scale.pretrain_every
        if every == 1:
            return ""
        name = f"train_every{every}"
        table = self.corpus_en / "len_for_bucket" / f"{name}.csv"
        if not table.is_file():
            from s3prl_colld.data.lengths import read_length_table, write_length_csv, LengthRow

            rows = sorted(read_length_table(self.corpus_en, "train"), key=lambda r: r.uttid)
            write_length_csv([LengthRow(os.path.relpath(r.path, self.corpus_en), r.num_samples, r.label)
                              for r in rows[::every]], table)
        return f",,config.data.splits=[{name}]"

    # ---- teacher
    def teacher(self) -> Path:
        """Iteration 1 (MFCC units) and, where the scale asks, iteration 2; returns the final checkpoint."""
        it1 = self.out / "teacher_it1"
        self.stage("teacher_it1", it1 / "DONE", lambda: (
            pretrain("hubert_tiny", it1, f"config.data.root={self.corpus_en}{self.splits}" + self.scale.teacher_overrides),
            (it1 / "DONE").touch()))
        if self.scale.teacher_iter2_overrides is None:
            return _latest(it1)
        it2 = self.out / "teacher"
        self.stage("teacher_it2", it2 / "DONE", lambda: (
            pretrain("hubert_tiny", it2, f"config.data.root={self.corpus_en}{self.splits},,config.teacher.ckpt={_latest(it1)}"
                     + self.scale.teacher_iter2_overrides,
                     runner_yaml=CONFIG_DIR / "pretrain" / "hubert_tiny" / "iter2.yaml"),
            (it2 / "DONE").touch()))
        return _latest(it2)

    # ---- students
    def frontend(self, teacher: Path) -> Path:
        """Stage 1 of input distillation (one run, shared by every seed of the Fbank student)."""
        run = self.out / "students" / "fbank_frontend"
        self.stage("fbank_frontend", run / "DONE", lambda: (
            pretrain("input_distill", run, f"config.data.root={self.corpus_en}{self.splits},,config.teacher.ckpt={teacher},,"
                     f"config.runner.total_steps={self.scale.frontend_steps},,"
                     f"config.runner.save_step={self.scale.frontend_steps},,config.data.batch_size={self.scale.student_batch}"),
            (run / "DONE").touch()))
        return _latest(run)

    def distil(self, student: Student, seed: int, teacher: Path) -> Path | None:
        """Distil (or resume, or reuse) one seed of ``student``; its run folder (``None``: not run)."""
        run = self.out / "students" / f"{slug(student.name)}-s{seed}"
        if self.report_only and not (run / "DONE").exists():
            return None
        steps = self.scale.student_steps
        corpus = self.corpus_mix if student.corpus == "mix" else self.corpus_en
        save = max(1, steps // 4) if student.curve and seed == 0 and self.scale.curves else steps
        splits = self.splits if student.corpus == "en" else ""
        overrides = (f"config.data.root={corpus}{splits},,config.teacher.ckpt={teacher},,config.runner.seed={1337 + seed},,"
                     f"config.runner.total_steps={steps},,config.runner.save_step={save},,config.runner.max_keep=8,,"
                     f"config.data.batch_size={self.scale.student_batch}")
        if student.needs_frontend:
            overrides += f",,config.init.frontend_ckpt={self.frontend(teacher)}"
        if student.overrides:
            overrides += ",," + student.overrides
        overrides += model_overrides(student)
        finished = self.stage(f"student {student.name} seed {seed}", run / "DONE", lambda: (
            pretrain(student.task, run, overrides), (run / "DONE").touch()))
        return run if finished else None

    # ---- probes
    def probe(self, task: str, name: str, upstream: str, ckpt: Path | None, seed: int, overrides: str,
              splits: Iterable[str], corpus: Path | None = None) -> dict[str, float] | None:
        """Train ``task`` on a frozen upstream (best on dev), then test once on each of ``splits``.

        Returns ``{"dev": best dev metric, SPLIT: metric, ...}``; a finished probe is reused
        (``None`` with ``report_only`` for a probe that has not finished).
        """
        run = self.out / "probes" / task / f"{slug(name)}-p{seed}"
        done = run / "DONE.json"
        if done.is_file():
            result = json.loads(done.read_text())
            if f"probe {task} {name} p{seed}" not in self.times:  # a probe of a grid from before probes were timed
                self._record(f"probe {task} {name} p{seed}", result.get("seconds", 0.0))
            return result
        if self.report_only:
            return None
        from s3prl_colld.downstream.cli import main as downstream_main
        from s3prl_colld.downstream.runner import evaluate_checkpoint, load_downstream_checkpoint

        if run.exists():  # an unfinished probe starts again (it is short)
            shutil.rmtree(run)
        corpus = corpus or self.corpus_en
        args = ["-m", "train", "-u", upstream, "-d", task, "-p", str(run), "-o",
                f"config.data.root={corpus},,config.cache.dir={self.out / 'probes' / '_feature_cache'},,"
                f"config.runner.seed={1337 + seed},,config.runner.progress_bar=false" + overrides]
        if ckpt is not None:
            args[4:4] = ["-k", str(ckpt)]
        start = time.time()
        _check(downstream_main(args), f"run_downstream.py -d {task} -u {upstream} ({name})")
        best = load_downstream_checkpoint(run / "dev-best.ckpt")["best"]
        result: dict[str, float] = {"dev": float(best["value"])}
        for split in splits:
            summary = evaluate_checkpoint(run / "dev-best.ckpt", split)
            result[split] = float(summary[best["metric"]])
        result["seconds"] = time.time() - start
        done.write_text(json.dumps(result, indent=1))
        self._record(f"probe {task} {name} p{seed}", result["seconds"])
        print(f"[replicate] {task} {name} (probe seed {seed}): {result}", flush=True)
        return result

# --------------------------------------------------------------------------------------------- helpers
def model_overrides(student: Student) -> str:
    """``-o`` text setting a student shape's keys (``,,config.model.layers=4,,...``; empty without a shape).

    ``-o`` merges them into the task's ``model.yaml``, so the rest of it (the teacher-shaped CNN) stays.
    """
    return "".join(f",,config.model.{k}={v}" for k, v in (student.model or {}).items())


def slug(name: str) -> str:
    """A folder name for a row name."""
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_").replace("__", "_")


def _check(rc: int, what: str) -> None:
    if rc != 0:
        raise SystemExit(f"[replicate] {what} failed (exit code {rc})")


def _latest(run: Path) -> Path:
    last = latest_checkpoint(run)
    if last is None:
        raise SystemExit(f"[replicate] {run} has no checkpoint")
    return last


def pretrain(task: str, expdir: Path, overrides: str, runner_yaml: Path | None = None) -> Path:
    """Run (or resume) ``run_pretrain.py -u task [-c runner_yaml]`` in ``expdir``.

    Returns its final checkpoint.
    """
    from s3prl_colld.pretrain.cli import main as pretrain_main

    args = ["-u", task, "-p", str(expdir), "-o", overrides]
    if runner_yaml is not None:
        args += ["-c", str(runner_yaml)]
    last = latest_checkpoint(expdir)
    if last is not None:
        args += ["-e", str(last)]
    _check(pretrain_main(args), f"run_pretrain.py -u {task} -p {expdir}")
    return _latest(expdir)


def write_mixed_corpus(out: Path, corpora: dict[str, Path]) -> None:
    """A corpus root whose ``train`` length table lists every corpus's training utterances.

    ``out/<lang>`` links to each corpus; rows keep their paths under that link.
    """
    from s3prl_colld.data.lengths import LengthRow, read_length_table, write_length_csv

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for lang, root in corpora.items():
        link = out / lang
        if not link.exists():
            link.symlink_to(root.resolve(), target_is_directory=True)
        rows += [LengthRow(f"{lang}/{os.path.relpath(r.path, root)}", r.num_samples, r.label)
                 for r in read_length_table(root, "train")]
    write_length_csv(rows, out / "len_for_bucket" / "train.csv")


def mean_std(values: Iterable[float]) -> dict[str, float]:
    """``{"mean", "std", "n"}`` (sample standard deviation; 0 for one value)."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "n": len(vals)}


# --------------------------------------------------------------------------------------------- measures
def measure_upstream(upstream: str, ckpt: Path | None, wavs: list[Path], passes: int = 3) -> dict[str, float]:
    """Parameters (M) and CPU real-time factor (compute seconds / audio seconds, one utterance at a time).

    The RTF is that of the fastest of ``passes`` passes over ``wavs`` (after one warm-up pass), so that a
    moment of contention on the machine does not decide it.
    """
    import soundfile as sf
    import torch

    from s3prl.nn import S3PRLUpstream

    import s3prl_colld.hub  # noqa: F401  (our names in s3prl.hub)

    model = S3PRLUpstream(upstream, path_or_url=str(ckpt) if ckpt else None).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    audio = [torch.from_numpy(sf.read(str(w), dtype="float32")[0])[None] for w in wavs]
    times = []
    with torch.inference_mode():
        for _ in range(passes + 1):  # the first pass warms up
            start = time.perf_counter()
            for wav in audio:
                model(wav, torch.tensor([wav.shape[1]]))
            times.append(time.perf_counter() - start)
    total = sum(a.numel() for a in audio) / SAMPLE_RATE
    return {"params_m": params, "rtf": min(times[1:]) / total}


# --------------------------------------------------------------------------------------------- the grid
def upstream_of(task: str) -> str:
    """The s3prl hub name that loads a checkpoint of ``task`` (the first name the task registers)."""
    from s3prl_colld.pretrain.task import get_task

    return get_task(task).upstreams[0]


def student_order(students: list[Student]) -> list[tuple[Student, int]]:
    """``(student, seed)`` in the order they are run.

    Every seed of the main comparison (the students with ``curve``: CoLLD against DistilHuBERT) comes
    first, then seed 0 of every other student, then their seed 1, ...; so a grid cut short keeps the
    seeds of the main comparison and has every other method at least once before any extra seed.
    """
    groups = ([s for s in students if s.curve], [s for s in students if not s.curve])
    return [(s, seed) for group in groups for seed in range(max((s.seeds for s in group), default=0))
            for s in group if seed < s.seeds]


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

    def pr(probes: list[dict[str, float] | None]) -> dict[str, dict[str, float]]:
        done = [p for p in probes if p is not None]
        return {k: mean_std(p[k] for p in done) for k in ("dev", *splits)}

    rows: list[dict[str, Any]] = []
    baselines = (("teacher", "hubert_tiny", "hubert_local", teacher), ("fbank", "baseline", "fbank", None),
                 ("mfcc", "baseline", "mfcc", None), ("random_init", "baseline", "hubert_local", random_ckpt))
    for name, task, upstream, ckpt in baselines:
        probes = [grid.probe("pr", name, upstream, ckpt, s, scale.probe_overrides, splits)
                  for s in range(scale.probe_seeds)]
        rows.append({"name": name, "task": task, "upstream": upstream, "ckpt": str(ckpt) if ckpt else None,
                     **measured(name, upstream, ckpt), "distil_minutes": None, "pr": pr(probes)})

    finals: dict[str, dict[int, Path]] = {s.name: {} for s in students}
    probes_of: dict[str, list[dict[str, float] | None]] = {s.name: [] for s in students}
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
        rows.append({"name": student.name, "task": student.task, "upstream": upstream, "ckpt": str(first),
                     "seeds": len(finals[student.name]), **measured(student.name, upstream, first),
                     "distil_minutes": mean_std(t / 60 for t in times if t is not None)["mean"],
                     "pr": pr(probes_of[student.name])})
        if student.curve and scale.curves and 0 in finals[student.name]:
            from s3prl_colld.checkpoint import list_checkpoints, step_of

            points = [(step_of(c) or 0, probes_of[student.name][0] if step_of(c) == step_of(first) else
                       grid.probe("pr", f"{student.name}-s0-step{step_of(c)}", upstream, c, 0,
                                  scale.probe_overrides, ["test"]))
                      for c in list_checkpoints(first.parent)]
            curves[student.name] = [(step, res["test"]) for step, res in points if res is not None]
    by_name = {r["name"]: r for r in rows}
    ranked = sorted((r for r in rows if r["task"] not in ("hubert_tiny", "baseline") and r["pr"]["test"]["n"]),
                    key=lambda r: r["pr"]["test"]["mean"])
    if scale.asr_overrides is not None:
        for row in [by_name["teacher"], by_name["fbank"], *ranked[: scale.asr_top]]:
            ckpt = Path(row["ckpt"]) if row["ckpt"] else None
            res = grid.probe("asr", row["name"], row["upstream"], ckpt, 0, scale.asr_overrides, ["test"])
            if res is not None:
                row["asr"] = {k: v for k, v in res.items() if k != "seconds"}
    if scale.st_overrides is not None:
        multi = next((r for r in rows if r["name"].startswith("colld multilingual")), None)
        best = ranked[0] if ranked else None
        for row in [by_name["teacher"], *(r for r in (best, multi) if r is not None and r is not by_name["teacher"])]:
            ckpt = Path(row["ckpt"]) if row["ckpt"] else None
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
    return {"scale": next(k for k, v in SCALES.items() if v is scale), "rows": rows, "curves": curves,
            "stage_times": grid.times, "pr_splits": splits, "not_run": missing,
            "corpus": {k: v for k, v in manifest.items() if k != "utterances"}}


# --------------------------------------------------------------------------------------------- report
def fmt(stat: dict[str, float] | None) -> str:
    """``mean ± std (n)`` of a :func:`mean_std` entry."""
    if not stat or stat.get("n", 0) == 0:
        return "-"
    return f"{stat['mean']:.1f} ± {stat['std']:.1f} ({stat['n']})" if stat["n"] > 1 else f"{stat['mean']:.1f}"


def report(out: Path, results: dict[str, Any]) -> str:
    """``results.md`` / ``results.json`` and the plots; returns the markdown."""
    splits = results["pr_splits"]
    head = ["features / student", "params (M)", "RTF (CPU)", "distil (min)",
            *[f"PR {s} PER" for s in splits], "ASR test WER", "ST en-de BLEU", "ST de-en BLEU"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results["rows"]:
        st = r.get("st", {})
        cells = [r["name"], f"{r['params_m']:.2f}", f"{r['rtf']:.4f}",
                 "-" if r["distil_minutes"] is None else f"{r['distil_minutes']:.1f}",
                 *[fmt(r["pr"].get(s)) for s in splits],
                 f"{r['asr']['test']:.1f}" if "asr" in r else "-",
                 *[f"{st[d]['test']:.2f}" if d in st else "-" for d in ("en-de", "de-en")]]
        lines.append("| " + " | ".join(cells) + " |")
    times = results["stage_times"]
    probes = sum(v for k, v in times.items() if k.startswith("probe ")) / 60
    total = sum(times.values()) / 60
    lines += ["", f"PER: mean ± std (n) over distillation seeds (students; one probe each) or probe seeds "
                  f"(baselines). The stages took {total:.0f} min in all: {total - probes:.0f} min of corpus, "
                  f"teacher and distillation, {probes:.0f} min of probes (`stage_times` in results.json; "
                  f"measures and report not counted)."]
    if results.get("not_run"):
        lines += ["", f"Not run (the grid was cut short): {', '.join(results['not_run'])}."]
    checks = verdicts(results)
    if checks:
        lines += ["", "Paper claims, from these numbers:", *[f"- {c}" for c in checks]]
    text = "\n".join(lines)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    plot(out, results)
    return text


def compare(results: dict[str, Any], a: str, b: str, split: str = "test") -> str | None:
    """``a`` against ``b`` on PR ``split``: the means, the difference and whether it exceeds the spread.

    A difference counts as real only when it is larger than the sum of both standard deviations
    (with one seed, it is reported as untested).
    """
    rows = {r["name"]: r for r in results["rows"]}
    if a not in rows or b not in rows or split not in rows[a]["pr"] or split not in rows[b]["pr"]:
        return None
    x, y = rows[a]["pr"][split], rows[b]["pr"][split]
    diff = x["mean"] - y["mean"]
    if min(x["n"], y["n"]) < 2:
        verdict = "one seed only: not tested"
    elif abs(diff) > x["std"] + y["std"]:
        verdict = f"{a if diff < 0 else b} is better, beyond the seed spread"
    else:
        verdict = "within the seed spread: no difference shown"
    return (f"{a} {x['mean']:.1f} ± {x['std']:.1f} vs {b} {y['mean']:.1f} ± {y['std']:.1f} PER on {split} "
            f"(difference {diff:+.1f}): {verdict}")


def verdicts(results: dict[str, Any]) -> list[str]:
    """One line per paper claim the grid can check, from the numbers."""
    lines = []
    for split in results["pr_splits"]:
        for a, b in (("colld", "distilhubert"), ("colld+disc", "colld"), ("distilhubert+disc", "distilhubert"),
                     ("deep-thin (4 x 128) colld", "shallow-wide (2 x 192, FFN 524) colld"),
                     ("colld fbank front-end", "colld"), ("dicehubert", "colld")):
            line = compare(results, a, b, split)
            if line:
                lines.append(line)
    rows = {r["name"]: r for r in results["rows"]}
    if "colld fbank front-end" in rows and "colld" in rows:
        f, c = rows["colld fbank front-end"], rows["colld"]
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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


if __name__ == "__main__":
    sys.exit(main())
