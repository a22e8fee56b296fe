"""Trained weights arrive where they should: the s3prl hub upstream computes the trained student's own forward
pass, and stage 2 of input distillation starts from (and, frozen, keeps) stage 1's Fbank front-end exactly."""

from __future__ import annotations

from pathlib import Path

import torch

from s3prl_colld.checkpoint import latest_checkpoint
from s3prl_colld.config import from_dict
from s3prl_colld.pretrain.cli import main, resolve_config
from s3prl_colld.pretrain.task import get_task
from s3prl_colld.pretrain.tasks.distill import DistillConfig, DistillTask
from s3prl_colld.pretrain.trainer import Trainer

COMMON = ("config.runner.log_step=1,,config.runner.num_workers=0,,config.runner.progress_bar=false,,"
          "config.data.batch_size=2,,config.data.crop_min_sec=1.0,,config.data.crop_max_sec=1.5,,"
          "config.optimizer.warmup_steps=1,,config.optimizer.lr=2.0e-3")


def _fbank(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def test_hub_upstream_equals_the_trained_students_forward(synth_corpus_en: Path, teacher_run: Path,
                                                          tmp_path: Path) -> None:
    import s3prl_colld.hub  # noqa: F401
    from s3prl.nn import S3PRLUpstream

    task_cls = get_task("colld_distiller")
    cfg = resolve_config(task_cls, overrides=(
        f"config.data.root={synth_corpus_en},,config.teacher.ckpt={latest_checkpoint(teacher_run)},,"
        f"config.runner.total_steps=3,,config.runner.save_step=3,,{COMMON}"))
    trainer = Trainer(task_cls, cfg, tmp_path / "run")
    try:
        summary = trainer.fit()
    finally:
        trainer.close()
    student = trainer.task.student.eval()  # the object that was trained, not a reload of the checkpoint

    lengths = torch.tensor([32_000, 20_000])
    wav = torch.randn(2, 32_000, generator=torch.Generator().manual_seed(0)) * 0.1
    wav[1, 20_000:] = 0
    with torch.no_grad():
        ours, valid, _ = student(wav, lengths)
    frames = valid.sum(1)
    for name in ("colld_local", "colld_small"):
        upstream = S3PRLUpstream(name, path_or_url=summary["checkpoint"]).eval()
        with torch.no_grad():
            hs, hs_len = upstream(wav, lengths)
        assert len(hs) == len(ours) == cfg.model.layers + 1
        assert hs_len[0].tolist() == [100, 63] and frames.tolist() == [99, 62]  # s3prl pads to ceil(N / 320)
        for h, o in zip(hs, ours):
            for b, n in enumerate(frames.tolist()):
                torch.testing.assert_close(h[b, :n], o[b, :n], atol=1e-5, rtol=1e-5)
    # the checkpoint is the trained student, not its random init: a fresh student of the same config differs
    fresh = DistillTask(cfg, tmp_path / "run").student.eval()
    with torch.no_grad():
        other, _, _ = fresh(wav, lengths)
    assert not torch.allclose(other[-1][0, :99], hs[-1][0, :99], atol=1e-3)


def test_input_distillation_stage_two_carries_stage_one_fbank(synth_corpus_en: Path, teacher_run: Path,
                                                              tmp_path: Path) -> None:
    teacher = latest_checkpoint(teacher_run)
    base = f"config.data.root={synth_corpus_en},,config.teacher.ckpt={teacher},,{COMMON}"
    stage1 = tmp_path / "fbank"
    assert main(["-u", "input_distill", "-p", str(stage1), "-o",
                 base + ",,config.runner.total_steps=3,,config.runner.save_step=3"]) == 0
    fbank = _fbank(torch.load(stage1 / "states-3.ckpt", weights_only=True)["model"], "frontend.")
    assert fbank

    def student_cfg(**init: object) -> DistillConfig:
        return from_dict(DistillConfig, {
            "data": {"root": str(synth_corpus_en)}, "teacher": {"ckpt": str(teacher)}, "heads": {"map": "uniform"},
            "model": {"frontend": "fbank", "fbank": {"out_dim": 128}, "layers": 1, "dim": 64, "ffn_dim": 128, "heads": 4, "conv_pos": 16,
                      "conv_pos_groups": 4}, "init": init})

    torch.manual_seed(0)
    loaded = DistillTask(student_cfg(frontend_ckpt=str(latest_checkpoint(stage1))), tmp_path).student.frontend
    torch.manual_seed(0)
    fresh = DistillTask(student_cfg(), tmp_path).student.frontend
    got = loaded.state_dict()
    assert got.keys() == fbank.keys()
    assert all(torch.equal(got[k], fbank[k]) for k in fbank)
    assert not all(torch.equal(fresh.state_dict()[k], fbank[k]) for k in fbank if fbank[k].is_floating_point())

    # stage 2 with a frozen front-end: the student's checkpoint still holds stage 1's weights, bit for bit,
    # while the rest of the student trained
    stage2 = tmp_path / "student"
    assert main(["-u", "colld_distiller", "-p", str(stage2), "-o",
                 base + ",,config.runner.total_steps=2,,config.runner.save_step=1,,config.runner.max_keep=3,,"
                 f"config.model.frontend=fbank,,config.init.frontend_ckpt={latest_checkpoint(stage1)},,"
                 "config.model.freeze_frontend=true"]) == 0
    states = [torch.load(stage2 / f"states-{s}.ckpt", weights_only=True)["model"] for s in (1, 2)]
    for state in states:
        kept = _fbank(state, "student.frontend.")
        assert kept.keys() == fbank.keys() and all(torch.equal(kept[k], fbank[k]) for k in fbank)
    assert not torch.equal(states[0]["student.proj.weight"], states[1]["student.proj.weight"])
