"""Distillation tasks on the synthetic corpus with the tiny teacher; students load through s3prl's hub."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from s3prl_colld.checkpoint import CheckpointError, latest_checkpoint
from s3prl_colld.config import ConfigError
from s3prl_colld.pretrain.cli import main


def _distil(task: str, corpus: Path, teacher: Path, out: Path, extra: str = "", steps: int = 24) -> Path:
    ov = (f"config.data.root={corpus},,config.teacher.ckpt={latest_checkpoint(teacher)},,"
          f"config.runner.total_steps={steps},,config.runner.log_step=1,,config.runner.save_step={steps},,"
          "config.runner.num_workers=0,,config.runner.progress_bar=false,,config.data.batch_size=4,,"
          "config.data.crop_min_sec=1.0,,config.data.crop_max_sec=2.0,,config.optimizer.warmup_steps=4,,"
          "config.optimizer.lr=2.0e-3" + extra)
    assert main(["-u", task, "-p", str(out), "-o", ov]) == 0
    return out


def _losses(run: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (run / "log.jsonl").read_text().splitlines() if x.strip()]


@pytest.mark.parametrize("task, extra", [
    ("distilhubert", ""),
    ("l2l_distiller", ""),
    ("colld_distiller", ""),
    ("l2l_distiller", ",,config.loss.disc_weight=1.0"),  # seed 001: regression + discriminative
])
def test_task_runs_and_loss_falls(task: str, extra: str, synth_corpus_en: Path, teacher_run: Path,
                                  tmp_path: Path) -> None:
    run = _distil(task, synth_corpus_en, teacher_run, tmp_path / task, extra)
    losses = _losses(run)
    assert len(losses) == 24 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-6:]) / 6 < sum(losses[:6]) / 6
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    if "disc_weight" in extra:
        assert "kl" in rows[-1]
    if task == "colld_distiller":
        assert 0.3 < rows[-1]["mask_frac"] < 0.8


@pytest.fixture(scope="module")
def colld_run(synth_corpus_en: Path, teacher_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _distil("colld_distiller", synth_corpus_en, teacher_run, tmp_path_factory.mktemp("colld"), steps=4)


@pytest.mark.parametrize("name", ["colld_small", "colld_local"])
def test_student_loads_through_s3prl_upstream(name: str, colld_run: Path) -> None:
    import s3prl_colld.hub  # noqa: F401
    from s3prl.nn import S3PRLUpstream

    upstream = S3PRLUpstream(name, path_or_url=str(latest_checkpoint(colld_run))).eval()
    with torch.no_grad():
        hs, lens = upstream(torch.randn(2, 32_000) * 0.1, torch.tensor([32_000, 20_000]))
    assert len(hs) == 3 and all(h.shape == (2, 100, 192) for h in hs)
    assert lens[0].tolist() == [100, 63] and upstream.downsample_rates == [320, 320, 320]


def test_wrong_checkpoint_kind_and_missing_file(teacher_run: Path, tmp_path: Path) -> None:
    import s3prl_colld.hub  # noqa: F401
    from s3prl.nn import S3PRLUpstream

    with pytest.raises(CheckpointError, match="hubert_tiny"):
        S3PRLUpstream("colld_small", path_or_url=str(latest_checkpoint(teacher_run)))
    with pytest.raises(CheckpointError, match="not found"):
        S3PRLUpstream("colld_small", path_or_url=str(tmp_path / "none.ckpt"))


def test_layer_map_checked_against_teacher(synth_corpus_en: Path, teacher_run: Path, tmp_path: Path) -> None:
    from s3prl_colld.config import from_dict
    from s3prl_colld.pretrain.tasks.distill import DistillConfig, DistillTask

    cfg = from_dict(DistillConfig, {"data": {"root": str(synth_corpus_en)}, "heads": {"map": "last", "targets": [4, 12]},
                                    "teacher": {"ckpt": str(latest_checkpoint(teacher_run))},
                                    "model": {"layers": 2, "dim": 64, "ffn_dim": 128, "heads": 4}})
    with pytest.raises(ConfigError, match="teacher layer 12, but the teacher has 4 layers"):
        DistillTask(cfg, tmp_path)


def test_discriminative_loss_needs_a_unit_head(synth_corpus_en: Path, tmp_path: Path) -> None:
    from s3prl_colld.config import from_dict
    from s3prl_colld.pretrain.tasks.distill import DistillConfig, DistillTask

    cfg = from_dict(DistillConfig, {"data": {"root": str(synth_corpus_en)}, "teacher": {"name": "fbank"},
                                    "heads": {"map": "uniform"}, "loss": {"disc_weight": 1.0},
                                    "model": {"layers": 1, "dim": 64, "ffn_dim": 128, "heads": 4}})
    with pytest.raises(ConfigError, match="unit head"):
        DistillTask(cfg, tmp_path)


def test_input_distillation_two_stages(synth_corpus_en: Path, teacher_run: Path, tmp_path: Path) -> None:
    import s3prl_colld.hub  # noqa: F401
    from s3prl.nn import S3PRLUpstream

    teacher = latest_checkpoint(teacher_run)
    ov = (f"config.data.root={synth_corpus_en},,config.teacher.ckpt={teacher},,config.runner.total_steps=16,,"
          "config.runner.log_step=1,,config.runner.save_step=16,,config.runner.num_workers=0,,"
          "config.runner.progress_bar=false,,config.data.batch_size=4,,config.optimizer.lr=3.0e-3")
    stage1 = tmp_path / "fbank"
    assert main(["-u", "input_distill", "-p", str(stage1), "-o", ov]) == 0
    losses = _losses(stage1)
    assert sum(losses[-4:]) < sum(losses[:4])
    stage2 = _distil("colld_distiller", synth_corpus_en, teacher_run, tmp_path / "student",
                     f",,config.model.frontend=fbank,,config.init.frontend_ckpt={latest_checkpoint(stage1)}", steps=4)
    upstream = S3PRLUpstream("colld_local", path_or_url=str(latest_checkpoint(stage2))).eval()
    with torch.no_grad():
        hs, _ = upstream(torch.randn(1, 16_000) * 0.1, torch.tensor([16_000]))
    assert len(hs) == 3 and hs[0].shape[-1] == 192 and upstream.downsample_rates[0] == 320


@pytest.mark.parametrize("preset, params_m", [("distilhubert", 23.49), ("deep_thin", 26.87), ("shallow_wide", 28.23)])
def test_student_presets(preset: str, params_m: float) -> None:
    from s3prl_colld.config import CONFIG_DIR, from_dict, load_yaml
    from s3prl_colld.models.student import StudentConfig, StudentEncoder

    cfg = from_dict(StudentConfig, load_yaml(CONFIG_DIR / "students" / f"{preset}.yaml"), "config.model")
    n = sum(p.numel() for p in StudentEncoder(cfg).parameters()) / 1e6
    assert abs(n - params_m) < 0.01, n


@pytest.mark.parametrize("name, precision", [("colld_hubert_base", "bf16"), ("wang_disc_hubert_base", "bf16"),
                                             ("distilhubert_hubert_base", "fp16")])  # s3prl's runner.fp16
def test_librispeech_configs_validate(name: str, precision: str) -> None:
    from s3prl_colld.config import CONFIG_DIR, from_dict, load_yaml
    from s3prl_colld.pretrain.tasks.distill import DistillConfig

    cfg = from_dict(DistillConfig, load_yaml(CONFIG_DIR / "pretrain" / "librispeech" / f"{name}.yaml"))
    assert cfg.teacher.name == "hubert_base" and cfg.runner.precision == precision


def test_colld_resume_equality(synth_corpus_en: Path, teacher_run: Path, tmp_path: Path) -> None:
    full = _distil("colld_distiller", synth_corpus_en, teacher_run, tmp_path / "full",
                   ",,config.runner.save_step=3,,config.runner.max_keep=5", steps=6)
    part = tmp_path / "part"
    part.mkdir()
    (part / "states-3.ckpt").write_bytes((full / "states-3.ckpt").read_bytes())
    assert main(["-u", "colld_distiller", "-p", str(part), "-e", str(part / "states-3.ckpt")]) == 0
    assert _losses(part) == _losses(full)[3:]  # masks, negatives and crops replay exactly


TINY_CNN = [[128, 10, 5], [128, 3, 2], [128, 3, 2], [128, 3, 2], [128, 3, 2], [128, 2, 2], [128, 2, 2]]


def _shared_task(corpus: Path, teacher: Path, tmp_path: Path, **model: object):
    from s3prl_colld.config import from_dict
    from s3prl_colld.pretrain.tasks.distill import DistillConfig, DistillTask

    cfg = from_dict(DistillConfig, {
        "data": {"root": str(corpus)}, "teacher": {"ckpt": str(latest_checkpoint(teacher))},
        "heads": {"map": "uniform"}, "init": {"share_teacher_frontend": True},
        "model": {"layers": 2, "dim": 64, "ffn_dim": 128, "heads": 4, "cnn": {"conv_layers": TINY_CNN}, **model}})
    return DistillTask(cfg, tmp_path)


def test_shared_teacher_frontend_equals_the_students_own(synth_corpus_en: Path, teacher_run: Path,
                                                        tmp_path: Path) -> None:
    task = _shared_task(synth_corpus_en, teacher_run, tmp_path).eval()
    assert not any(p.requires_grad for p in task.student.frontend.parameters())
    assert all(p.requires_grad for p in task.student.proj.parameters())
    torch.manual_seed(0)
    wav = torch.randn(2, 24000) * 0.1
    lengths = torch.tensor([24000, 17000])
    wav[1, 17000:] = 0
    out = task.teacher.run(wav, lengths, frontend=True)  # the CNN output, captured in the same pass
    targets, cnn = out.hidden, out.frontend
    plain = task.teacher(wav, lengths)
    assert all(torch.equal(a, b) for a, b in zip(targets, plain))
    shared, valid_s, _ = task.student(wav, lengths, frontend_out=cnn)
    own, valid_o, _ = task.student(wav, lengths)
    assert torch.equal(valid_s, valid_o)
    for a, b in zip(shared, own):
        torch.testing.assert_close(a, b)
    loss, _ = task.train()({"wav": wav, "wav_lengths": lengths})
    loss.backward()
    assert all(p.grad is None for p in task.student.frontend.parameters())
    assert task.student.proj.weight.grad is not None


def test_shared_teacher_frontend_needs_the_teachers_cnn(synth_corpus_en: Path, teacher_run: Path,
                                                       tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="share_teacher_frontend.*shape"):
        _shared_task(synth_corpus_en, teacher_run, tmp_path, cnn={"conv_layers": [[64, 10, 5]] + TINY_CNN[1:]})
    with pytest.raises(ConfigError, match="share_teacher_frontend.*model.frontend must be cnn"):
        _shared_task(synth_corpus_en, teacher_run, tmp_path, frontend="fbank")


def test_shared_teacher_frontend_run_loss_falls(synth_corpus_en: Path, teacher_run: Path, tmp_path: Path) -> None:
    run = _distil("colld_distiller", synth_corpus_en, teacher_run, tmp_path / "shared",
                  ",,config.init.share_teacher_frontend=true")
    losses = _losses(run)
    assert len(losses) == 24 and sum(losses[-6:]) / 6 < sum(losses[:6]) / 6
