"""The grid's stages: each runs once, writes a ``DONE`` marker (or its result file) and is reused after that.

``Grid`` runs the corpora, the teachers (iterations 1 and 2; the English one,
and the multilingual one where a planned row needs it), the students and the
probes of one grid in its folder and records their wall times
(``stage_times.json``); an unfinished pretraining run resumes from its last
checkpoint, an unfinished probe starts again (it is short). A stage writes
only into its own folder under the grid's, never into its inputs.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import yaml

from s3prl_colld.checkpoint import latest_checkpoint, step_of, write_atomic
from s3prl_colld.data.clean_copies import MANIFEST
from s3prl_colld.config import CONFIG_DIR
from s3prl_colld.replicate import environment
from s3prl_colld.replicate.plan import ST_DIRECTIONS, TASKS, TEACHERS, Scale, Student, plan_students, teacher_corpora


class Grid:
    """Runs (or reuses) the stages of one grid in ``out``; records stage wall times.

    ``tasks`` (default ``scale.default_tasks()``) are the probe tasks that may run; a probe of another task is
    reused when it has finished and otherwise left out, as with ``report_only``.
    """

    def __init__(self, out: Path, scale: Scale, seed: int, report_only: bool = False,
                 tasks: Iterable[str] | None = None, scale_name: str | None = None) -> None:
        from s3prl_colld.replicate.plan import SCALES

        self.out, self.scale, self.seed, self.report_only = out, scale, seed, report_only
        # the name results.json records (default: the SCALES entry that is ``scale``)
        self.scale_name = scale_name or next((k for k, v in SCALES.items() if v is scale), "custom")
        self.tasks = tuple(scale.default_tasks() if tasks is None else tasks)
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}: --tasks takes a comma-separated subset of {','.join(TASKS)}")
        missing = [t for t, o in (("asr", scale.asr_overrides), ("st", scale.st_overrides)) if t in self.tasks and o is None]
        if missing:
            raise ValueError(f"this scale has no {' or '.join(missing)} stage (its Scale.{missing[0]}_overrides is None): "
                             "leave it out of --tasks or pick a scale that has it (tiny, reduced, full, gpu, gpu-tiny)")
        self.corpus_en, self.corpus_de, self.corpus_mix = out / "corpus_en", out / "corpus_de", out / "corpus_mix"
        if "mix" in self.teachers_needed and scale.de_args is None:
            mixed = [s.key for s in plan_students(scale) if "mix" in (s.corpus, s.teacher)]
            raise ValueError(f"the rows {mixed} need the English + German mix, and this scale has no German corpus "
                             "(its Scale.de_args is None): leave them out of --students or pick a scale with one "
                             "(tiny, reduced, full)")
        self.times_path = out / "stage_times.json"
        self.times: dict[str, float] = json.loads(self.times_path.read_text()) if self.times_path.is_file() else {}
        self._recorded: dict[str, float] = {}  # the entries of stage_times.json this process wrote

    def stage(self, name: str, done: Path, fn: Callable[[], Any]) -> bool:
        """Run ``fn`` unless ``done`` exists; the wall time of a run is kept in ``stage_times.json``.

        Returns whether the stage is finished (``False`` only with ``report_only``, which runs nothing). The stage
        holds a lock (``.<name>.lock`` in the grid's folder) while it runs: a second process asking for it waits.
        """
        if done.exists():
            print(f"[replicate] {name}: reusing {done}", flush=True)
            return True
        if self.report_only:
            print(f"[replicate] {name}: not run (--report-only)", flush=True)
            return False
        self.out.mkdir(parents=True, exist_ok=True)
        with exclusive(self.out / f".{slug(name)}.lock"):  # another process runs it: wait, then reuse
            if done.exists():
                print(f"[replicate] {name}: reusing {done} (finished by another process)", flush=True)
                return True
            print(f"[replicate] {name}: running ...", flush=True)
            start = time.time()
            fn()
            self._record(name, self.times.get(name, 0.0) + time.time() - start)
            print(f"[replicate] {name}: done in {time.time() - start:.0f} s", flush=True)
        return True

    def relative(self, path: Path | None) -> str | None:
        """``path`` as ``results.json`` stores it: relative to the grid's folder when inside it (a committed
        ``results.json`` names no folder of the machine it was made on), else as given."""
        if path is None:
            return None
        try:
            return Path(path).resolve().relative_to(self.out.resolve()).as_posix()
        except ValueError:
            return str(path)

    def absolute(self, stored: str | None) -> Path | None:
        """The inverse of :meth:`relative`: a stored path resolved against the grid's folder."""
        return None if stored is None else self.out / stored

    def _record(self, name: str, seconds: float, ran_here: bool = True) -> None:
        """Keep ``seconds`` as the wall time of ``name`` in ``stage_times.json``.

        The file is read again under a lock (``.stage_times.lock``) and only the entries this process recorded
        are merged into it, so two processes working on one grid (say, the sweep beside a probe stage) keep each
        other's entries, and an entry removed from the file while a process runs stays removed (unless that
        process records it itself); the file is replaced atomically. A stage that ran in this process (``ran_here``)
        is also listed under this process's software stack in ``environments.json`` (``environment.record``)."""
        self._recorded[name] = seconds
        self.out.mkdir(parents=True, exist_ok=True)
        with exclusive(self.out / ".stage_times.lock"):
            on_disk = json.loads(self.times_path.read_text()) if self.times_path.is_file() else {}
            self.times = {**on_disk, **self._recorded}
            text = json.dumps(self.times, indent=1, sort_keys=True).encode()
            write_atomic(self.times_path, lambda f: f.write(text))
            if ran_here:  # the software stack the stage ran under (not a reused one's: another process ran it)
                environment.record(self.out, name)

    # ---- corpora
    def corpora(self) -> None:
        from s3prl_colld.data.synth.generate import main as synth_main

        workers = self.scale.synth_workers or os.cpu_count() or 1
        made = [("en", self.corpus_en, self.scale.en_args), ("de", self.corpus_de, self.scale.de_args)]
        if self.scale.st_corpus_args is not None:
            made += [(lang, self.st_corpus(lang), self.scale.st_corpus_args) for lang in self.st_corpus_langs()]
        for lang, path, extra in made:
            if extra is None or (path == self.corpus_de and not self.needs_german):
                continue
            self.stage(path.name, path / "manifest.json", lambda lang=lang, path=path, extra=extra: _check(
                synth_main(["--lang", lang, "--out", str(path), "--seed", str(self.seed), "--workers", str(workers),
                            *extra]), f"corpus {path.name}"))
        if "mix" in self.teachers_needed:  # the English pretraining utterances and every German training one
            self.stage("corpus_mix", self.corpus_mix / MANIFEST, lambda: write_mixed_corpus(
                self.corpus_mix, {"en": self.pretrain_root, "de": self.corpus_de},
                {"en": self.pretrain_split, "de": "train"}))

    @property
    def teachers_needed(self) -> tuple[str, ...]:
        """The teachers of this grid's planned rows, by corpus (``plan.teacher_corpora``): ``("en",)``, or
        ``("en", "mix")`` when a row is distilled on the mix or from the multilingual teacher."""
        return teacher_corpora(plan_students(self.scale))

    def st_corpus_langs(self) -> list[str]:
        """The languages whose ST corpus this grid's tasks need: English for ST En->De (and for ASR with
        ``Scale.asr_on_st_corpus``), German for ST De->En (of ``Scale.st_directions``)."""
        st = [ST_DIRECTIONS[d] for d in self.scale.st_directions] if "st" in self.tasks else []
        en = "en" in st or ("asr" in self.tasks and self.scale.asr_on_st_corpus)
        return (["en"] if en else []) + (["de"] if "de" in st else [])

    def st_corpus(self, lang: str) -> Path:
        """The corpus ST trains and tests on when ``lang`` is spoken: ``corpus_st_<lang>`` when the scale gives ST
        corpora of its own (``Scale.st_corpus_args``), else the grid's English / German corpus."""
        if self.scale.st_corpus_args is not None:
            return self.out / f"corpus_st_{lang}"
        return {"en": self.corpus_en, "de": self.corpus_de}[lang]

    @property
    def asr_corpus(self) -> Path:
        """The corpus ASR trains and tests on: ST's English corpus with ``Scale.asr_on_st_corpus``, else the
        grid's English corpus (PR's)."""
        return self.st_corpus("en") if self.scale.asr_on_st_corpus else self.corpus_en

    @property
    def needs_german(self) -> bool:
        """Whether the German corpus is made: the scale has one, and a planned row needs the mix (its teacher or
        its data) or ST De->En runs on it (no ST corpora of its own)."""
        st_on_it = "de" in self.st_corpus_langs() and self.scale.st_corpus_args is None
        return self.scale.de_args is not None and (st_on_it or "mix" in self.teachers_needed)

    @property
    def pretrain_root(self) -> Path:
        """The English pretraining corpus: ``corpus_en``, or with ``scale.pretrain_every`` N > 1 a view of it in
        the grid's own folder, ``corpus_en_everyN`` (:meth:`every_view`). No stage writes into the corpus, its
        input."""
        return self.every_view(self.scale.pretrain_every)[0]

    @property
    def pretrain_split(self) -> str:
        """The length table of ``pretrain_root`` that pretraining reads: ``train``, or ``train_everyN``."""
        return self.every_view(self.scale.pretrain_every)[1]

    def every_view(self, every: int) -> tuple[Path, str]:
        """``(root, split)`` of every ``every``-th English training utterance (by utterance id): ``corpus_en`` and
        ``train`` for 1, else the view ``corpus_en_everyN``: links to every entry of the corpus and its own
        ``len_for_bucket`` (links to the corpus's tables plus ``train_everyN.csv``), made on first use."""
        if every == 1:
            return self.corpus_en, "train"
        view, name = self.out / f"corpus_en_every{every}", f"train_every{every}"
        table = view / "len_for_bucket" / f"{name}.csv"
        if not table.is_file():
            from s3prl_colld.data.lengths import read_length_table, write_length_csv, LengthRow

            (view / "len_for_bucket").mkdir(parents=True, exist_ok=True)
            for item in self.corpus_en.iterdir():
                if item.name != "len_for_bucket" and not (view / item.name).exists():
                    (view / item.name).symlink_to(item.resolve(), target_is_directory=item.is_dir())
            for csv in (self.corpus_en / "len_for_bucket").glob("*.csv"):
                if not (view / "len_for_bucket" / csv.name).exists():
                    (view / "len_for_bucket" / csv.name).symlink_to(csv.resolve())
            rows = sorted(read_length_table(self.corpus_en, "train"), key=lambda r: r.uttid)
            write_length_csv([LengthRow(os.path.relpath(r.path, self.corpus_en), r.num_samples, r.label)
                              for r in rows[::every]], table)
        return view, name

    @property
    def splits(self) -> str:
        """The ``-o`` for the pretraining split of ``pretrain_root``: ``train``, or ``train_everyN``."""
        return "" if self.pretrain_split == "train" else f",,config.data.splits=[{self.pretrain_split}]"

    @property
    def pretrain_data(self) -> str:
        """``config.data.root=...`` and the split of the English pretraining data (``-o`` text)."""
        return self.english_data(self.scale.pretrain_every)

    def english_data(self, every: int) -> str:
        """The ``-o`` text of every ``every``-th English training utterance (:meth:`every_view`): its root, and
        its split unless it is ``train``."""
        root, split = self.every_view(every)
        return f"config.data.root={root}" + ("" if split == "train" else f",,config.data.splits=[{split}]")

    def pretrain_data_of(self, corpus: str, data_every: int = 1) -> str:
        """The ``-o`` text of the pretraining data on ``corpus``: ``en``, the English pretraining data
        (:attr:`pretrain_data`), or with ``data_every`` M > 1 every M-th of its utterances (a student with less
        data: the view of every ``scale.pretrain_every * M``-th training utterance); ``mix``, ``corpus_mix``
        (those English utterances and the German training ones)."""
        if corpus not in TEACHERS:
            raise ValueError(f"corpus {corpus!r}: expected one of {', '.join(TEACHERS)}")
        if corpus == "mix":
            if data_every != 1:
                raise ValueError("data_every applies to English pretraining data only (corpus 'en')")
            return f"config.data.root={self.corpus_mix}"
        return self.english_data(self.scale.pretrain_every * data_every)

    # ---- teachers
    def teacher(self, corpus: str = "en") -> Path | None:
        """The tiny HuBERT pretrained on ``corpus`` (``plan.TEACHERS``: ``en`` in ``teacher_it1`` / ``teacher``,
        ``mix`` in ``teacher_mix_it1`` / ``teacher_mix``; every one with the scale's budget): iteration 1 (MFCC
        units) and, where the scale asks, iteration 2 (units of iteration 1's layer, from its weights). Returns the
        final checkpoint; ``None`` with ``report_only`` when it has not finished."""
        name, data = TEACHERS[corpus].key, self.pretrain_data_of(corpus)
        it1 = self.out / f"{name}_it1"
        check_teacher_frontend(it1, self.scale.teacher_frontend)
        if not self.stage(f"{name}_it1", it1 / "DONE", lambda: (
                pretrain("hubert_tiny", it1, data + self.scale.teacher_overrides + self.scale.teacher_run_overrides(1)),
                (it1 / "DONE").touch())):
            return None
        if self.scale.teacher_iter2_overrides is None:
            return _latest(it1)
        it2 = self.out / name
        check_teacher_frontend(it2, self.scale.teacher_frontend)
        if not self.stage(f"{name}_it2", it2 / "DONE", lambda: (
                pretrain("hubert_tiny", it2, f"{data},,config.teacher.ckpt={_latest(it1)}"
                         + self.scale.teacher_iter2_overrides + self.scale.teacher_run_overrides(2),
                         runner_yaml=CONFIG_DIR / "pretrain" / "hubert_tiny" / "iter2.yaml"),
                (it2 / "DONE").touch())):
            return None
        return _latest(it2)

    # ---- students
    def frontend(self, teacher: Path) -> Path:
        """Stage 1 of input distillation (one run, shared by every seed of the Fbank student)."""
        run = self.out / "students" / "fbank_frontend"
        self.stage("fbank_frontend", run / "DONE", lambda: (
            pretrain("input_distill", run, f"{self.pretrain_data},,config.teacher.ckpt={teacher},,"
                     f"config.runner.total_steps={self.scale.frontend_steps},,"
                     f"config.runner.save_step={self.scale.frontend_steps},,config.data.batch_size={self.scale.student_batch}"
                     + self.scale.student_teacher_overrides()),
            (run / "DONE").touch()))
        return _latest(run)

    def budget_suffix(self, steps: int | None) -> str:
        """``""`` for the scale's own distillation budget (or ``None``), else ``"-<steps>steps"``: the suffix of a
        student's run and probe names at another budget (the curves stage)."""
        return "" if steps is None or steps == self.scale.student_steps else f"-{steps}steps"

    def distil(self, student: Student, seed: int, teacher: Path, steps: int | None = None) -> Path | None:
        """Distil (or resume, or reuse) one seed of ``student`` for ``steps`` (default: the scale's budget); its
        run folder (``None``: not run). A budget other than the scale's has its own folder (``...-<N>steps-sS``).

        ``teacher`` is the checkpoint of the student's teacher (``self.teacher(student.teacher)``); the student
        reads the pretraining data of ``student.corpus`` (:meth:`pretrain_data_of`)."""
        budget = self.budget_suffix(steps)
        run = self.out / "students" / f"{slug(student.name)}{budget}-s{seed}"
        if self.report_only and not (run / "DONE").exists():
            return None
        steps = steps or self.scale.student_steps
        save = max(1, steps // 4) if student.curve and seed == 0 and self.scale.curves and not budget else steps
        overrides = (f"{self.pretrain_data_of(student.corpus, student.data_every)},,config.teacher.ckpt={teacher},,"
                     f"config.runner.seed={1337 + seed},,config.runner.total_steps={steps},,config.runner.save_step={save},,"
                     f"config.runner.max_keep=8,,config.data.batch_size={self.scale.student_batch}"
                     + self.scale.student_teacher_overrides())
        if student.needs_frontend:
            overrides += f",,config.init.frontend_ckpt={self.frontend(teacher)}"
        if student.overrides:
            overrides += ",," + student.overrides
        overrides += model_overrides(student)
        finished = self.stage(f"student {student.name}{budget.replace('-', ' ')} seed {seed}", run / "DONE", lambda: (
            pretrain(student.task, run, overrides), (run / "DONE").touch()))
        return run if finished else None

    # ---- probes
    def probe(self, task: str, name: str, upstream: str, ckpt: Path | None, seed: int, overrides: str,
              splits: Iterable[str], corpus: Path | None = None, config: str | None = None,
              folder: str | None = None) -> dict[str, float] | None:
        """Train ``task`` on a frozen upstream (best on dev), then test once on each of ``splits``.

        ``config``: a yaml under ``configs/downstream/`` (``-c``; None: the task's default); ``folder``: the
        folder under ``probes/`` (default ``task``). Returns ``{"dev": best dev metric, SPLIT: metric, ...,
        "updates", "stop_reason", "collapsed", "attempts", "dev_curve"}``; a finished probe is reused (``None``
        with ``report_only``, or for a task outside ``tasks``, for a probe that has not finished). A probe that
        collapses (mostly empty hypotheses) is trained again with another seed or a lower learning rate
        (:func:`~s3prl_colld.downstream.retry.probe_with_retry`); ``collapsed`` is true when every attempt
        collapsed or a tested split's decode did: its numbers must not be reported. A probe holds a lock
        (``probes/<folder>/.<run>.lock``) while it runs, so two processes working on one grid (the sweep beside
        a probe stage, say) never train the same probe twice: the second waits and reuses the first's result.
        """
        folder = folder or task
        run = self.out / "probes" / folder / f"{slug(name)}-p{seed}"
        if self.report_only or task not in self.tasks:
            return self._probe(task, name, run, seed, folder, upstream, ckpt, overrides, splits, corpus, config)
        run.parent.mkdir(parents=True, exist_ok=True)
        with exclusive(run.parent / f".{run.name}.lock"):  # another process on this probe: wait, then reuse
            return self._probe(task, name, run, seed, folder, upstream, ckpt, overrides, splits, corpus, config)

    def _probe(self, task: str, name: str, run: Path, seed: int, folder: str, upstream: str, ckpt: Path | None,
               overrides: str, splits: Iterable[str], corpus: Path | None, config: str | None) -> dict[str, Any] | None:
        """:meth:`probe` in its folder ``run`` (under the probe's lock)."""
        done = run / "DONE.json"
        if done.is_file():
            result = json.loads(done.read_text())
            drift = probe_config_drift(task, run, overrides, config, retried=result.get("attempts", 1) > 1,
                                       upstream=upstream)
            if drift:
                raise SystemExit(
                    f"[replicate] probe {folder} {name} p{seed}: {run} was trained with another config than this grid "
                    f"asks for ({'; '.join(drift)}); it is not reused as if it were this one. Move that folder "
                    "aside to train it again (or run the grid in a new --out).")
            if f"probe {folder} {name} p{seed}" not in self.times:  # a probe of a grid from before probes were timed
                self._record(f"probe {folder} {name} p{seed}", result.get("seconds", 0.0), ran_here=False)
            print(f"[replicate] probe {folder} {name} p{seed}: reused ({done})", flush=True)
            return result
        if self.report_only or task not in self.tasks:
            return None
        from s3prl_colld.downstream.retry import DEFAULT_RETRIES, probe_with_retry
        from s3prl_colld.downstream.runner import evaluate_checkpoint, load_downstream_checkpoint

        for old in (run, *run.parent.glob(f"{run.name}.collapsed-*")):  # an unfinished probe starts again
            if old.exists():
                shutil.rmtree(old)
        corpus = corpus or self.corpus_en
        print(f"[replicate] probe {folder} {name} p{seed}: running ...", flush=True)
        start = time.time()
        training = probe_with_retry(
            task, upstream, run, f"config.data.root={corpus},,config.cache.dir={self.out / 'probes' / '_feature_cache'},,"
            f"config.runner.seed={1337 + seed},,config.runner.progress_bar=false" + overrides, ckpt,
            retries=DEFAULT_RETRIES[: self.scale.probe_retries],
            config=preset_path(config))
        best = load_downstream_checkpoint(run / "dev-best.ckpt")["best"]
        result: dict[str, Any] = {"dev": float(best["value"])}
        collapsed = bool(training["collapsed"])
        for split in splits:
            summary = evaluate_checkpoint(run / "dev-best.ckpt", split)
            result[split] = float(summary[best["metric"]])
            collapsed = collapsed or bool(summary.get("collapsed"))
        result.update(updates=training["updates"], stop_reason=training["stop_reason"], collapsed=collapsed,
                      attempts=len(training["attempts"]),
                      dev_curve=[[point["step"], point["value"]] for point in training["dev_curve"]])
        result["seconds"] = time.time() - start
        done.write_text(json.dumps(result, indent=1))
        self._record(f"probe {folder} {name} p{seed}", result["seconds"])
        print(f"[replicate] {task} {name} (probe seed {seed}): {result}", flush=True)
        return result


# keys of a probe's config not compared on reuse: where it ran (its corpus and cache folders, the progress bar) and
# its seed, which its folder name carries
UNCOMPARED_KEYS = frozenset({"data.root", "cache.dir", "runner.seed", "runner.progress_bar"})


def preset_path(config: str | None) -> str | None:
    """A probe preset's path: ``config`` is a yaml under ``configs/downstream/`` (None: the task's default)."""
    return None if config is None else str(CONFIG_DIR / "downstream" / config)


def probe_config_drift(task: str, run: Path, overrides: str, config: str | None = None,
                       retried: bool = False, upstream: str | None = None) -> list[str]:
    """The keys where the config a finished probe in ``run`` trained with (``run/config.yaml``) differs from the one
    ``overrides`` and the preset ``config`` (a yaml under ``configs/downstream/``) give now, as ``"key: then -> now"``
    lines; empty when they agree, or when ``run`` has no ``config.yaml`` (a probe from before it was written).
    With ``upstream`` (an ``s3prl.hub`` name), the upstream the probe read (``spec.upstream`` of its
    ``config.yaml``) is compared too, as the line ``"upstream: then -> now"``: a teacher probe of ``hubert_local``
    is not the one of ``hubert_fbank_local`` (the probe's folder is named by its row, not by its upstream).

    The saved config is read through today's schema, so a key added since (``runner.ema_decay``, session 18) takes
    its default there, as it did when the probe ran without it. ``UNCOMPARED_KEYS`` (the probe's corpus and cache
    folders, its seed) are not compared, nor the learning rate of a probe that was ``retried`` after a collapse (a
    retry lowers it)."""
    saved_path = run / "config.yaml"
    if not saved_path.is_file():
        return []
    from s3prl_colld.config import to_dict
    from s3prl_colld.downstream.cli import resolve_config

    saved_yaml = yaml.safe_load(saved_path.read_text()) or {}
    saved = _flatten(to_dict(resolve_config(task, None, None, base=saved_yaml.get("config") or {})))
    wanted = _flatten(to_dict(resolve_config(task, preset_path(config), overrides.lstrip(","))))
    skip = UNCOMPARED_KEYS | ({"optimizer.lr"} if retried else set())
    drift = [f"{key}: {saved.get(key)!r} -> {wanted[key]!r}" for key in sorted(wanted)
             if key not in skip and saved.get(key) != wanted[key]]
    then = (saved_yaml.get("spec") or {}).get("upstream")
    if upstream is not None and then is not None and then != upstream:
        drift.insert(0, f"upstream: {then!r} -> {upstream!r}")
    return drift


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists are values)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def model_overrides(student: Student) -> str:
    """``-o`` text setting a student shape's keys (``,,config.model.layers=4,,...``; empty without a shape).

    ``-o`` merges them into the task's ``model.yaml``, so the rest of it (the teacher-shaped CNN) stays.
    """
    return "".join(f",,config.model.{k}={v}" for k, v in (student.model or {}).items())


@contextmanager
def exclusive(lock: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the file ``lock`` (created if missing) for the ``with`` block: a second
    process asking for it waits until the first leaves the block (or dies)."""
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def slug(name: str) -> str:
    """A folder name for a row name."""
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_").replace("__", "_")


def _check(rc: int, what: str) -> None:
    if rc != 0:
        raise SystemExit(f"[replicate] {what} failed (exit code {rc})")


def check_teacher_frontend(run: Path, frontend: str) -> None:
    """Refuse to reuse (or resume) a teacher run whose saved config has another ``model.frontend`` than the
    grid's (``--teacher-frontend``): the run folders are named alike for both front-ends."""
    saved = run / "config.yaml"
    if not saved.is_file():
        return
    config = yaml.safe_load(saved.read_text()) or {}
    model = (config.get("config", config) or {}).get("model") or {}
    have = model.get("frontend", "cnn")
    if have != frontend:
        raise SystemExit(f"[replicate] {run} is a teacher with the {have} front-end, and this grid asks for "
                         f"{frontend} (--teacher-frontend): give another --out, or --teacher-frontend {have}")


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
    return finished_run(task, expdir)


def finished_run(task: str, expdir: Path) -> Path:
    """The final checkpoint of the pretraining run in ``expdir``; ``SystemExit`` when it stopped before its
    ``runner.total_steps`` (SIGTERM or Ctrl-C: the trainer saves a checkpoint and returns 0, so a caller that
    only checked the exit code would mark a half-trained student done)."""
    last = _latest(expdir)
    total = yaml.safe_load((expdir / "config.yaml").read_text())["runner"]["total_steps"]
    if (step_of(last) or 0) < total:
        raise SystemExit(f"[replicate] run_pretrain.py -u {task} -p {expdir} stopped at step {step_of(last)} of "
                         f"{total} (a stop signal?): run the grid again to resume it")
    return last


def write_mixed_corpus(out: Path, corpora: dict[str, Path], splits: dict[str, str] | None = None) -> None:
    """A corpus root whose ``train`` length table lists the utterances of every corpus's ``splits[lang]`` table
    (default ``train``), and whose ``manifest.json`` lists their clean copies.

    Two synthetic corpora reuse speaker and chapter numbers, so their utterance ids (file names) collide, and unit
    targets are keyed by id: each utterance is a link ``out/<lang>/<its folder>/<lang>-<its file name>`` to the
    corpus's file. The manifest keeps each corpus's clean copies (a teacher's denoised units on the mix come from
    the same clean audio as on each corpus); it is written last, so the mix is finished when it exists.
    """
    from s3prl_colld.data.clean_copies import clean_copies
    from s3prl_colld.data.lengths import LengthRow, read_length_table, write_length_csv

    out.mkdir(parents=True, exist_ok=True)
    rows, utterances = [], []
    for lang, root in corpora.items():
        if (out / lang).is_symlink():  # a mix of before the per-file links: one link to the whole corpus
            (out / lang).unlink()
        copies = clean_copies(root)
        for r in read_length_table(root, (splits or {}).get(lang, "train")):
            rel = Path(r.rel)
            path = (Path(lang) / rel.parent / f"{lang}-{rel.name}").as_posix()
            target = r.path.resolve()
            if not (out / path).is_symlink():
                (out / path).parent.mkdir(parents=True, exist_ok=True)
                (out / path).symlink_to(target)
            rows.append(LengthRow(path, r.num_samples, r.label))
            clean = copies.get(str(target))
            utterances.append({"id": f"{lang}-{r.uttid}", "path": path,
                               **({"clean_path": os.path.relpath(clean.resolve(), out.resolve())} if clean else {})})
    write_length_csv(rows, out / "len_for_bucket" / "train.csv")
    manifest = {"generator": "s3prl_colld.replicate.write_mixed_corpus", "languages": list(corpora),
                "utterances": utterances}
    text = json.dumps(manifest, indent=1).encode()
    write_atomic(out / MANIFEST, lambda f: f.write(text))  # the stage's marker: never half-written
