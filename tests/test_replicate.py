"""The results-grid driver (``python -m s3prl_colld.replicate``): stage reuse, ordering, report-only, tables."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from s3prl_colld.data.clean_copies import clean_copies
from s3prl_colld.data.lengths import read_length_table
from s3prl_colld.config import load_yaml
from s3prl_colld.models.student import StudentEncoder
from s3prl_colld.pretrain.cli import resolve_config
from s3prl_colld.pretrain.task import get_task
from s3prl_colld.replicate import (CLAIMS, SCALES, STUDENTS, Grid, Student, compare, mean_std, plan_students, report,
                                   model_overrides, student_order, verdicts, write_mixed_corpus)
from s3prl_colld.replicate.plan import COLLD, DISTILHUBERT


def test_a_finished_stage_is_reused_and_its_time_kept(tmp_path: Path) -> None:
    grid = Grid(tmp_path, SCALES["tiny"], 0)
    calls: list[int] = []
    done = tmp_path / "stage" / "DONE"

    def work() -> None:
        calls.append(1)
        done.parent.mkdir()
        done.touch()

    assert grid.stage("s", done, work) is True
    assert grid.stage("s", done, work) is True
    assert calls == [1]
    again = Grid(tmp_path, SCALES["tiny"], 0)  # a new process reads the recorded wall time back
    assert "s" in again.times and again.times["s"] >= 0


def test_stage_times_keep_other_processes_entries_and_not_stale_ones(tmp_path: Path) -> None:
    first = Grid(tmp_path, SCALES["tiny"], 0)
    first._record("a", 1.0)
    second = Grid(tmp_path, SCALES["tiny"], 0)  # another process, started after "a" was recorded
    second._record("b", 2.0)
    first._record("c", 3.0)
    assert json.loads((tmp_path / "stage_times.json").read_text()) == {"a": 1.0, "b": 2.0, "c": 3.0}
    # an entry removed from the file (a stale time) does not come back from a process that only read it
    (tmp_path / "stage_times.json").write_text(json.dumps({"b": 2.0, "c": 3.0}))
    second._record("d", 4.0)
    assert json.loads((tmp_path / "stage_times.json").read_text()) == {"b": 2.0, "c": 3.0, "d": 4.0}


def test_report_only_runs_nothing(tmp_path: Path) -> None:
    grid = Grid(tmp_path, SCALES["tiny"], 0, report_only=True)
    assert grid.stage("s", tmp_path / "DONE", lambda: pytest.fail("report-only ran a stage")) is False
    assert grid.probe("pr", "x", "fbank", None, 0, "", ["test"]) is None
    assert grid.distil(STUDENTS[0], 0, tmp_path / "teacher.ckpt") is None
    finished = tmp_path / "probes" / "pr" / "y-p0"
    finished.mkdir(parents=True)
    (finished / "DONE.json").write_text(json.dumps({"dev": 1.0, "test": 2.0}))
    assert grid.probe("pr", "y", "fbank", None, 0, "", ["test"]) == {"dev": 1.0, "test": 2.0}


def test_the_main_comparison_runs_its_seeds_first() -> None:
    order = [(s.name, seed) for s, seed in student_order(plan_students(SCALES["full"]))]
    main = [(n, s) for n in ("distilhubert", "colld") for s in range(3)]
    assert sorted(order[:6]) == sorted(main)
    rest = order[6:]
    first_seeds = [n for n, s in rest if s == 0]
    assert len(first_seeds) == len(STUDENTS) - 2  # every other method once before any extra seed
    assert all(s == 0 for _, s in rest[: len(first_seeds)])
    assert len(order) == sum(s.seeds for s in STUDENTS)


def test_scales_cap_seeds_and_pick_students() -> None:
    demo = plan_students(SCALES["demo"])
    assert [s.name for s in demo] == ["distilhubert", "colld"] and all(s.seeds == 1 for s in demo)
    reduced = plan_students(SCALES["reduced"])  # every row, the multilingual ones included (run with --students)
    assert {s.key for s in reduced} == {s.key for s in STUDENTS}
    assert not any("mix" in (s.corpus, s.teacher) for s in demo + plan_students(SCALES["tiny"]))


def test_pretraining_subset_and_mixed_corpus(synth_corpus_en: Path, synth_corpus_de: Path, tmp_path: Path) -> None:
    scale = dataclasses.replace(SCALES["tiny"], pretrain_every=3)
    # the subset table is written into the grid's own folder (a view of the corpus), never into the corpus
    grid_dir = tmp_path / "grid"
    grid_dir.mkdir()
    (grid_dir / "corpus_en").symlink_to(synth_corpus_en, target_is_directory=True)
    before = sorted(p.name for p in (synth_corpus_en / "len_for_bucket").iterdir())
    grid = Grid(grid_dir, scale, 0)
    assert grid.splits == ",,config.data.splits=[train_every3]"
    view = grid.pretrain_root
    assert view == grid_dir / "corpus_en_every3" and not view.is_symlink()
    assert grid.pretrain_data == f"config.data.root={view},,config.data.splits=[train_every3]"
    assert sorted(p.name for p in (synth_corpus_en / "len_for_bucket").iterdir()) == before
    full, sub = read_length_table(synth_corpus_en, "train"), read_length_table(view, "train_every3")
    assert len(sub) == (len(full) + 2) // 3
    assert {r.uttid for r in sub} <= {r.uttid for r in full} and all(r.path.is_file() for r in sub)
    assert (view / "manifest.json").is_file()  # the clean-copy manifest is reachable from the view
    assert Grid(grid_dir, dataclasses.replace(scale, pretrain_every=1), 0).pretrain_root == grid_dir / "corpus_en"
    # a little-data student (data_every 2) reads every 2nd utterance of the grid's subset: every 6th of the corpus
    little = grid.pretrain_data_of("en", 2)
    assert little == f"config.data.root={grid_dir / 'corpus_en_every6'},,config.data.splits=[train_every6]"
    assert len(read_length_table(grid_dir / "corpus_en_every6", "train_every6")) == (len(full) + 5) // 6
    assert grid.pretrain_data_of("en") == grid.pretrain_data
    with pytest.raises(ValueError, match="English pretraining data only"):
        grid.pretrain_data_of("mix", 2)

    mix = tmp_path / "mix"
    write_mixed_corpus(mix, {"en": view, "de": synth_corpus_de}, {"en": "train_every3"})  # the grid's English subset
    rows = read_length_table(mix, "train")
    en, de = read_length_table(view, "train_every3"), read_length_table(synth_corpus_de, "train")
    assert len(rows) == len(en) + len(de) and all(r.path.is_file() for r in rows)
    # the two corpora share utterance ids (speaker numbers from 100); the mix's are distinct (unit targets key on them)
    assert {r.uttid for r in en} & {r.uttid for r in de}
    assert len({r.uttid for r in rows}) == len(rows) and {r.uttid[:3] for r in rows} == {"en-", "de-"}
    # the clean copies of noisy utterances are listed for the mix too (a teacher's denoised units come from them)
    copies, en_copies, de_copies = clean_copies(mix), clean_copies(view), clean_copies(synth_corpus_de)
    expected = {p: en_copies[p] for r in en if (p := str(r.path.resolve())) in en_copies}
    expected |= {p: de_copies[p] for r in de if (p := str(r.path.resolve())) in de_copies}
    assert expected and {p: c.resolve() for p, c in copies.items()} == {p: c.resolve() for p, c in expected.items()}


def test_report_and_verdicts(tmp_path: Path) -> None:
    def row(name: str, values: list[float]) -> dict:
        return {"key": name.replace("+", "_"), "name": name, "task": "t", "params_m": 1.0, "rtf": 0.01,
                "distil_minutes": 1.0, "pr": {"test": mean_std(values)}}

    results = {"rows": [row("colld", [40.0, 41.0, 42.0]), row("distilhubert", [50.0, 51.0, 52.0]),
                        row("colld+disc", [41.0])],
               "pr_splits": ["test"], "curves": {}, "stage_times": {"a": 60.0}, "not_run": ["x seed 1"]}
    assert "colld is better, beyond the seed spread" in compare(results, "colld", "distilhubert")
    assert "one seed only" in compare(results, "colld_disc", "colld")
    results["rows"][1]["pr"]["test"] = mean_std([41.0, 45.0, 37.0])
    assert "within the seed spread" in compare(results, "colld", "distilhubert")
    text = report(tmp_path, results)
    assert "41.0 ± 1.0 (3)" in text and "Not run (the grid was cut short): x seed 1" in text
    assert json.loads((tmp_path / "results.json").read_text())["rows"][0]["name"] == "colld"
    assert (tmp_path / "per_vs_params.png").is_file()


def test_a_renamed_row_keeps_its_verdict() -> None:
    """Claims find their rows by the plan's objects (keys), not by display names."""
    def row(student: Student, name: str, values: list[float]) -> dict:
        return {"key": student.key, "name": name, "task": student.task, "params_m": 1.0, "rtf": 0.01,
                "distil_minutes": 1.0, "pr": {"test": mean_std(values)}}

    assert all(c.a in STUDENTS and c.b in STUDENTS for c in CLAIMS)
    claim = next(c for c in CLAIMS if (c.a, c.b) == (COLLD, DISTILHUBERT))
    for name in (COLLD.name, "CoLLD (renamed)"):
        renamed = dataclasses.replace(COLLD, name=name)
        assert renamed.key == COLLD.key
        results = {"rows": [row(renamed, name, [40.0, 41.0, 42.0]),
                            row(DISTILHUBERT, "distilhubert", [50.0, 51.0, 52.0])],
                   "pr_splits": ["test"]}
        lines = verdicts(results, (claim,))
        assert lines == [f"{name} 41.0 ± 1.0 vs distilhubert 51.0 ± 1.0 PER on test (difference -10.0): "
                         f"{name} is better, beyond the seed spread"]
    with pytest.raises(ValueError, match="needs a key"):
        Student("no key", "colld_distiller", 1)
    for bad in (dict(data_every=0), dict(data_every=2, corpus="mix")):
        with pytest.raises(ValueError, match="data_every"):
            Student("little", "distilhubert", 1, key="little", **bad)


def test_student_shapes_keep_the_task_model_and_have_equal_parameters() -> None:
    """Deep-thin and shallow-wide replace only their shape keys of colld's model.yaml (the teacher-shaped CNN stays),
    and their encoders have the same number of parameters within 1%."""
    shapes = [s for s in STUDENTS if s.model]
    assert len(shapes) == 2
    base = load_yaml(get_task("colld_distiller").default_config_paths()[0])
    models = [resolve_config(get_task(s.task), overrides=model_overrides(s).lstrip(",")).model for s in shapes]
    for shape, model in zip(shapes, models):
        assert model.cnn.conv_layers == base["cnn"]["conv_layers"] and model.conv_pos == base["conv_pos"]
        assert all(getattr(model, k) == v for k, v in shape.model.items())
    counts = [sum(p.numel() for p in StudentEncoder(model).parameters()) for model in models]
    assert abs(counts[0] - counts[1]) / counts[0] < 0.01, counts


def test_task_verdicts_read_wer_lower_and_bleu_higher_as_better() -> None:
    """ASR and ST claims (plan.TASK_CLAIMS) compare their own blocks; BLEU's direction is the other way round."""
    def row(student: Student, wer: list[float], bleu: list[float]) -> dict:
        return {"key": student.key, "name": student.name, "task": student.task, "params_m": 1.0, "rtf": 0.01,
                "distil_minutes": 1.0, "pr": {}, "asr": {"test": mean_std(wer)}, "st_en_de": {"test": mean_std(bleu)}}

    results = {"rows": [row(COLLD, [30.0, 31.0], [20.0, 21.0]), row(DISTILHUBERT, [40.0, 41.0], [10.0, 11.0])],
               "pr_splits": ["test"], "asr_splits": ["test"], "st_splits": ["test"]}
    lines = verdicts(results)
    assert "colld 30.5 ± 0.7 vs distilhubert 40.5 ± 0.7 WER on test (difference -10.0): colld is better" in lines[0]
    assert "BLEU en-de on test (difference +10.0): colld is better, beyond the seed spread" in lines[1]
    assert len(lines) == 2  # no PR blocks, no De->En block, no other rows: nothing else is claimed


def test_hypotheses_pairs_each_hypothesis_with_its_reference(tmp_path: Path) -> None:
    """The report's by-eye lines: hypotheses in the probe's order, references looked up by utterance id."""
    from s3prl_colld.replicate.run import hypotheses

    (tmp_path / "test-ref.ark").write_text("u1 THE CAT\nu2 A DOG\nu3 TWO MEN\n")
    (tmp_path / "test-hyp.ark").write_text("u2 A DOG\nu1 THE CAD\nu3 \nu4 EXTRA\n")
    assert hypotheses(tmp_path, n=3) == [{"ref": "A DOG", "hyp": "A DOG"}, {"ref": "THE CAT", "hyp": "THE CAD"},
                                         {"ref": "TWO MEN", "hyp": ""}]
    assert hypotheses(tmp_path / "missing") == []
    asr = tmp_path / "asr"  # the ASR probe's names, and the ST probe's tsv
    asr.mkdir()
    (asr / "test-noLM-ref.ark").write_text("u1 THE CAT\n")
    (asr / "test-noLM-hyp.ark").write_text("u1 THE CAD\n")
    assert hypotheses(asr) == [{"ref": "THE CAT", "hyp": "THE CAD"}]
    (asr / "output-st-test.tsv").write_text("utt_id\thyp\tref\nu1\tDie Katze.\tDer Hund.\n")
    assert hypotheses(asr) == [{"ref": "Der Hund.", "hyp": "Die Katze."}]


def test_a_pretraining_run_stopped_before_its_last_step_is_not_finished(tmp_path: Path) -> None:
    """A student stopped by SIGTERM leaves ``states-3.ckpt`` of 300 steps and exit code 0: not a finished stage."""
    from s3prl_colld.replicate.stages import finished_run

    (tmp_path / "config.yaml").write_text("runner:\n  total_steps: 300\n")
    (tmp_path / "states-3.ckpt").write_bytes(b"")
    with pytest.raises(SystemExit, match="stopped at step 3 of 300"):
        finished_run("colld_distiller", tmp_path)
    (tmp_path / "states-300.ckpt").write_bytes(b"")
    assert finished_run("colld_distiller", tmp_path) == tmp_path / "states-300.ckpt"
