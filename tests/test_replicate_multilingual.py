"""CoLLD's multilingual setting in the grid (issue 22, item 3): a teacher pretrained on English + German
(``teacher_mix``), a CoLLD and a DistilHuBERT student distilled from it on the mix, a CoLLD student distilled from it
on English only; which probes they get, their verdict lines, and the stages end to end at toy size."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from s3prl_colld.checkpoint import latest_checkpoint
from s3prl_colld.data.clean_copies import clean_copies
from s3prl_colld.replicate import SCALES, main, report, verdicts
from s3prl_colld.replicate.drift import moves
from s3prl_colld.replicate.measures import mean_std
from s3prl_colld.replicate.stages import slug
from s3prl_colld.replicate.plan import (ASR_BASELINE_SEEDS, ASR_BASELINES, CLAIMS, COLLD, COLLD_EN_MIX_TEACHER,
                                        COLLD_MULTILINGUAL, DISTILHUBERT, DISTILHUBERT_MULTILINGUAL, MULTILINGUAL, PR_DE_BASELINES,
                                        ST_BASELINE_SEEDS, ST_BASELINES, STUDENTS, TASK_CLAIMS, TEACHER, TEACHER_MIX,
                                        Student, asr_rows, plan_students, pr_de_rows, st_rows, teacher_corpora)

KEYS = [s.key for s in MULTILINGUAL]


def test_the_multilingual_rows_name_their_data_and_teacher() -> None:
    assert [(s.key, s.corpus, s.teacher) for s in MULTILINGUAL] == [
        ("colld_multilingual", "mix", "mix"), ("distilhubert_multilingual", "mix", "mix"),
        ("colld_en_mix_teacher", "en", "mix")]
    assert (COLLD_MULTILINGUAL.task, DISTILHUBERT_MULTILINGUAL.task) == (COLLD.task, DISTILHUBERT.task)
    assert all(s.teacher == "en" and s.corpus == "en" for s in STUDENTS if s not in MULTILINGUAL)
    assert all(len(s.name) <= 36 for s in MULTILINGUAL)  # short enough for the tables
    # the multilingual teacher exists only where a planned row needs it: not in the demo, tiny or gpu scales
    for name in ("demo", "tiny", "gpu", "gpu-tiny"):
        assert teacher_corpora(plan_students(SCALES[name])) == ("en",), name
    for name in ("reduced", "full"):
        assert set(KEYS) <= {s.key for s in plan_students(SCALES[name])}, name
        assert teacher_corpora(plan_students(SCALES[name])) == ("en", "mix"), name
    assert teacher_corpora([COLLD_EN_MIX_TEACHER]) == ("en", "mix")  # English data, but the mix's teacher
    with pytest.raises(ValueError, match="teacher='de'"):
        Student("x", "colld_distiller", 1, teacher="de", key="x")


def test_which_probes_the_multilingual_rows_get() -> None:
    full = plan_students(SCALES["full"])
    # English ASR: both seeds (the multilingual ASR verdicts need a spread); the multilingual teacher as a baseline
    assert sorted((s.key, seed) for s, seed in asr_rows(full) if s in MULTILINGUAL) == sorted(
        (k, seed) for k in KEYS for seed in (0, 1))
    assert TEACHER_MIX.key in ASR_BASELINES and ASR_BASELINE_SEEDS == {TEACHER_MIX.key: 2}  # a spread for the gap
    # ST both ways and German PR: both seeds (their verdicts need a spread), the teacher with 2 probe seeds
    assert sorted((s.key, seed) for s, seed in st_rows(full) if s in MULTILINGUAL) == sorted(
        (k, seed) for k in KEYS for seed in (0, 1))
    assert sorted((s.key, seed) for s, seed in pr_de_rows(full)) == sorted((k, seed) for k in KEYS for seed in (0, 1))
    assert TEACHER_MIX.key in ST_BASELINES and ST_BASELINE_SEEDS == {TEACHER_MIX.key: 2}
    assert set(PR_DE_BASELINES) == {TEACHER.key, TEACHER_MIX.key}
    # capped seeds cap them too; English students get no German PR
    capped = plan_students(dataclasses.replace(SCALES["full"], seeds_cap=1))
    assert {seed for _, seed in st_rows(capped) + pr_de_rows(capped)} == {0}
    assert not pr_de_rows([COLLD, DISTILHUBERT])


def _row(key: str, name: str, **blocks: dict) -> dict:
    return {"key": key, "name": name, "task": "t", "params_m": 1.0, "rtf": 0.01, "distil_minutes": None,
            "pr": {"test": mean_std([50.0])}, **blocks}


def test_the_multilingual_verdicts_are_declared_and_rendered() -> None:
    claims = {(block, c.a.key, c.b.key) for block, c in TASK_CLAIMS}
    assert {("st_de_en", "colld_multilingual", "distilhubert_multilingual"),
            ("st_en_de", "colld_multilingual", "distilhubert_multilingual"),
            ("st_de_en", "colld_multilingual", "colld_en_mix_teacher"),
            ("st_de_en", "colld_multilingual", "teacher_mix"),  # the multilingual gap, on ST and on German PR
            ("pr_de", "colld_multilingual", "teacher_mix"),
            ("asr", "colld_multilingual", "distilhubert_multilingual"),  # English ASR of the multilingual rows
            ("asr", "colld_multilingual", "teacher_mix")} <= claims
    assert any((c.a, c.b) == (COLLD_MULTILINGUAL, DISTILHUBERT_MULTILINGUAL) for c in CLAIMS)  # PR, every split
    bleu = lambda *v: {"test": mean_std(list(v))}  # noqa: E731
    results = {"rows": [_row("teacher_mix", "teacher_mix", st_de_en=bleu(12.0, 13.0), asr=bleu(39.0, 41.0)),
                        _row("colld_multilingual", COLLD_MULTILINGUAL.name, st_de_en=bleu(11.0, 12.0),
                             st_en_de=bleu(9.0), asr=bleu(44.0, 45.0)),
                        _row("distilhubert_multilingual", DISTILHUBERT_MULTILINGUAL.name, st_de_en=bleu(5.0, 5.5),
                             st_en_de=bleu(4.0), asr=bleu(50.0, 52.0)),
                        _row("colld_en_mix_teacher", COLLD_EN_MIX_TEACHER.name)],
               "pr_splits": ["test"], "st_splits": ["test"], "asr_splits": ["test"]}
    lines = verdicts(results)
    # ST De->En: CoLLD beyond the spread over DistilHuBERT; the gap to its teacher within it; En->De one seed each
    assert ("colld multilingual (en+de) 11.5 ± 0.7 vs distilhubert multilingual (en+de) 5.2 ± 0.4 BLEU de-en on test "
            "(difference +6.2): colld multilingual (en+de) is better, beyond the seed spread") in lines
    assert ("colld multilingual (en+de) 11.5 ± 0.7 vs teacher_mix 12.5 ± 0.7 BLEU de-en on test (difference -1.0): "
            "within the seed spread: no difference shown") in lines
    assert any("BLEU en-de" in line and line.endswith("one seed only: not tested") for line in lines)
    assert any(" PER on test " in line and line.endswith("one seed only: not tested") and "multilingual" in line
               for line in lines)
    assert not any("english-only" in line for line in lines)  # its ST block is missing: no line
    # English ASR of the multilingual rows: WER, lower is better; the teacher at 2 probe seeds
    assert ("colld multilingual (en+de) 44.5 ± 0.7 vs distilhubert multilingual (en+de) 51.0 ± 1.4 WER on test "
            "(difference -6.5): colld multilingual (en+de) is better, beyond the seed spread") in lines
    assert ("colld multilingual (en+de) 44.5 ± 0.7 vs teacher_mix 40.0 ± 1.4 WER on test (difference +4.5): "
            "teacher_mix is better, beyond the seed spread") in lines


def test_german_pr_has_a_column_and_verdicts(tmp_path: Path) -> None:
    per = lambda *v: {"test": mean_std(list(v)), "test_noisy": mean_std(list(v))}  # noqa: E731
    results = {"rows": [_row("teacher", "teacher", pr_de=per(60.0, 61.0)), _row("fbank", "fbank"),
                        _row("colld_multilingual", COLLD_MULTILINGUAL.name, pr_de=per(70.0, 72.0)),
                        _row("colld_en_mix_teacher", COLLD_EN_MIX_TEACHER.name, pr_de=per(80.0, 81.0))],
               "pr_splits": ["test"], "pr_de_splits": ["test", "test_noisy"], "curves": {}, "stage_times": {},
               "not_run": []}
    text = report(tmp_path, results)
    table = [line for line in text.split("\n\n")[0].splitlines() if line.startswith("| ")]
    assert "| PR test PER | PR de test PER | ASR test WER |" in table[0]
    assert "| 71.0 ± 1.4 (2) | - |" in next(line for line in table if line.startswith("| colld multilingual"))
    assert next(line for line in table if line.startswith("| fbank")).endswith("| 50.0 | - | - | - | - |")
    gains = [line for line in verdicts(results) if "German PER" in line]
    assert len(gains) == 2 and all("colld multilingual (en+de) is better, beyond the seed spread" in g for g in gains)
    shifted = {**results, "rows": [{**row, "pr_de": per(62.0, 63.0)} if row["key"] == "teacher" else row
                                   for row in results["rows"]]}
    german = [m for m in moves(results, shifted) if m["task"] == "pr_de"]  # drift (two runs of a grid) reads it
    assert {(m["row"], m["split"], m["move"]) for m in german if m["move"]} == {("teacher", "test", 2.0),
                                                                                ("teacher", "test_noisy", 2.0)}


def test_a_scale_without_german_refuses_the_multilingual_rows(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "g"), "--scale", "demo", "--students", "colld,colld_en_mix_teacher"])
    assert not (tmp_path / "g" / "corpus_en").exists()  # refused before any stage ran


# the tiny scale with both teacher iterations (it has iteration 1 only) and a shorter iteration 1 (120 steps took
# 107 s here under load: this test checks the wiring, not what the teachers learn); its other budgets as they are
TINY_IT1 = SCALES["tiny"].teacher_overrides.replace("total_steps=120,,config.runner.save_step=120",
                                                    "total_steps=40,,config.runner.save_step=40")
TINY_ITER2 = (",,config.runner.total_steps=10,,config.runner.save_step=10,,config.runner.log_step=5,,"
              "config.runner.num_workers=0,,config.runner.progress_bar=false,,config.data.batch_size=8,,"
              "config.data.crop_min_sec=1.0,,config.data.crop_max_sec=2.0,,config.units.n_clusters=12,,"
              "config.optimizer.warmup_steps=2")


@pytest.mark.slow
def test_multilingual_teacher_and_students_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    assert TINY_IT1 != SCALES["tiny"].teacher_overrides
    monkeypatch.setitem(SCALES, "tiny", dataclasses.replace(SCALES["tiny"], teacher_overrides=TINY_IT1,
                                                            teacher_iter2_overrides=TINY_ITER2))
    out = tmp_path / "grid"
    args = ["--out", str(out), "--scale", "tiny", "--students", ",".join(KEYS), "--tasks", "pr"]
    assert main(args) == 0
    config = lambda run: yaml.safe_load((out / run / "config.yaml").read_text())  # noqa: E731
    mix = out / "corpus_mix"
    # the multilingual teacher: both iterations on the mix, iteration 2 from iteration 1; the English one on English
    for name in ("teacher_it1", "teacher", "teacher_mix_it1", "teacher_mix"):
        assert (out / name / "DONE").is_file(), name
    assert config("teacher_mix_it1")["data"]["root"] == str(mix) == config("teacher_mix")["data"]["root"]
    assert Path(config("teacher_mix")["teacher"]["ckpt"]).parent == out / "teacher_mix_it1"
    assert config("teacher_it1")["data"]["root"] == str(out / "corpus_en")
    assert Path(config("teacher")["teacher"]["ckpt"]).parent == out / "teacher_it1"
    # its iteration-1 units are denoised like the English teacher's: from the clean copies of both languages
    (units,) = (out / "teacher_mix_it1").rglob("units-*.pt")
    copies = clean_copies(mix)
    assert {c.resolve().relative_to(out.resolve()).parts[0] for c in copies.values()} == {"corpus_en", "corpus_de"}
    assert torch.load(units, weights_only=True)["num_denoised"] == len(copies)
    # the students: the mix teacher's final checkpoint; the mix, or English, as their data
    mix_teacher = latest_checkpoint(out / "teacher_mix")
    for student, root in ((COLLD_MULTILINGUAL, mix), (DISTILHUBERT_MULTILINGUAL, mix),
                          (COLLD_EN_MIX_TEACHER, out / "corpus_en")):
        run = config(f"students/{slug(student.name)}-s0")
        assert Path(run["teacher"]["ckpt"]) == mix_teacher and run["data"]["root"] == str(root), student.key
    # results: both teachers and the students, finite PR numbers; German PR for the teachers and the students
    results = json.loads((out / "results.json").read_text())
    rows = {r["key"]: r for r in results["rows"]}
    assert list(rows) == ["teacher", "teacher_mix", "fbank", "mfcc", "random_init", *KEYS]
    assert results["not_run"] == [] and results["pr_de_splits"] == ["test", "test_noisy", "test_unseen"]
    for key, r in rows.items():
        assert r["pr"]["test"]["n"] == 1 and math.isfinite(r["pr"]["test"]["mean"]), key
        if key in ("teacher", "teacher_mix", *KEYS):
            assert all(r["pr_de"][s]["n"] == 1 and math.isfinite(r["pr_de"][s]["mean"])
                       for s in ("dev", *results["pr_de_splits"])), key
        else:
            assert "pr_de" not in r, key
    assert rows["teacher_mix"]["ckpt"] == "teacher_mix/" + mix_teacher.name
    assert {"teacher_mix_it1", "teacher_mix_it2", "corpus_mix"} <= set(results["stage_times"])
    assert (out / "probes" / "pr_de" / "teacher_mix-p0" / "DONE.json").is_file()
    md = (out / "results.md").read_text()
    assert "PR de test PER" in md and "German PER on test" in md and "one seed only: not tested" in md
    assert "PR probes: 13 trained" in md  # English and German
    capsys.readouterr()
    assert main(args) == 0  # everything reused
    printed = capsys.readouterr().out
    assert "running" not in printed, printed
    assert json.loads((out / "results.json").read_text())["rows"] == results["rows"]
