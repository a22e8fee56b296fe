"""The discriminative loss (methods.md 4) wired end to end: the teacher's unit distribution is HuBERT's own,
the KL reaches the student's gradient through the last layer and ``unit_proj``, and ``unit_proj`` trains and
is saved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from s3prl_colld.checkpoint import latest_checkpoint
from s3prl_colld.config import from_dict
from s3prl_colld.data.audio import load_audio
from s3prl_colld.s3prl_bridge.teacher import Teacher, TeacherConfig
from s3prl_colld.pretrain.cli import main
from s3prl_colld.pretrain.tasks.distill import DistillConfig, DistillTask

SMALL_STUDENT = {"layers": 2, "dim": 64, "ffn_dim": 128, "heads": 4, "conv_pos": 16, "conv_pos_groups": 4,
                 "dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0}


def _hubert_unit_log_probs(teacher: Teacher, wav: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``log p_T(c|t)`` ``[B * T, C]`` from s3prl's ``HubertModel.forward`` (its pre-training logits path).

    ``logit_u_list[0]`` has, per unmasked frame, the target unit's logit in column 0, then the logits of
    all C units with the target's own set to -inf; putting column 0 back in the target's place gives the
    full logit row, whatever (random) target was passed.
    """
    model = teacher.hubert
    assert model is not None
    n_units = int(model.num_classes[0])
    T = model.feature_extractor(wav).size(2)
    target = torch.randint(n_units, (wav.size(0), T), generator=gen)
    # HuBERT's forward computes unit logits only in training form (mask=True); masking nothing makes every frame
    # an "unmasked" one, whose logits come out in logit_u_list
    model.apply_mask = lambda x, padding_mask, target_list: (x, torch.zeros(x.shape[:2], dtype=torch.bool))
    skip_masked, model.skip_masked = model.skip_masked, True
    try:
        with torch.no_grad():
            out = model(wav, target_list=[target], padding_mask=torch.zeros_like(wav, dtype=torch.bool), mask=True)
    finally:
        del model.apply_mask
        model.skip_masked = skip_masked
    logits = out["logit_u_list"][0].float()  # [B * T, 1 + C]
    assert logits.shape == (wav.size(0) * T, 1 + n_units)
    full = logits[:, 1:].clone()
    rows, cols = torch.arange(full.size(0)), target.reshape(-1)
    assert torch.isinf(full[rows, cols]).all()
    full[rows, cols] = logits[:, 0]
    return full.log_softmax(-1)


def _speech(corpus: Path, n: int = 2, samples: int = 24_000) -> torch.Tensor:
    """``[n, samples]``: the first ``samples`` of ``n`` training utterances (all longer than 1.5 s)."""
    wavs = [load_audio(p) for p in sorted((corpus / "train").glob("*/*/*.flac"))[:20]]
    wavs = [w[:samples] for w in wavs if w.numel() >= samples][:n]
    assert len(wavs) == n
    return torch.stack(wavs)


@pytest.fixture(scope="module")
def teacher(teacher_run: Path) -> Teacher:
    return Teacher(TeacherConfig(ckpt=str(latest_checkpoint(teacher_run))))


def test_teacher_unit_log_probs_equal_hubert_model_logits(teacher: Teacher, synth_corpus_en: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    wav = _speech(synth_corpus_en)
    hidden = teacher(wav, torch.tensor([24_000, 24_000]))
    theirs = _hubert_unit_log_probs(teacher, wav, gen)  # [B * 74, C]: the CNN's frames of 1.5 s
    ours = teacher.unit_log_probs(hidden[-1][:, :74])  # s3prl's hub pads its hidden states to 75 frames
    assert ours.shape == (2, 74, 20)
    torch.testing.assert_close(ours.reshape(-1, 20), theirs, atol=1e-5, rtol=1e-5)
    # far from uniform (the 40-step teacher has learnt at least the unit prior), so the equality above is not
    # that of two flat distributions
    assert (theirs.exp().max(-1).values > 1.5 / 20).all()
    # the wrong layer gives another distribution
    assert not torch.allclose(teacher.unit_log_probs(hidden[-2][:, :74]).reshape(-1, 20), theirs, atol=1e-2)


def _disc_task(corpus: Path, teacher_run: Path, tmp_path: Path, weight: float) -> DistillTask:
    cfg = from_dict(DistillConfig, {
        "data": {"root": str(corpus)}, "teacher": {"ckpt": str(latest_checkpoint(teacher_run))},
        "heads": {"map": "uniform"}, "loss": {"disc_weight": weight}, "model": SMALL_STUDENT,
        "init": {"frontend_from_teacher": False}})
    torch.manual_seed(0)
    return DistillTask(cfg, tmp_path).eval()  # no dropout: the two passes below see the same function


def _grads(task: DistillTask, batch: dict) -> tuple[torch.Tensor, dict, dict[str, torch.Tensor]]:
    task.zero_grad(set_to_none=True)
    loss, stats = task(batch)
    loss.backward()
    grads = {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
             for n, p in task.named_parameters() if p.requires_grad}
    return loss.detach(), stats, grads


def test_kl_is_hubert_kl_and_reaches_the_students_gradient(synth_corpus_en: Path, teacher_run: Path,
                                                           tmp_path: Path) -> None:
    alpha = 0.5
    task = _disc_task(synth_corpus_en, teacher_run, tmp_path, alpha)
    gen = torch.Generator().manual_seed(1)
    wav = _speech(synth_corpus_en)
    batch = {"wav": wav, "wav_lengths": torch.tensor([24_000, 24_000])}

    total, stats, g_total = _grads(task, batch)
    task.cfg.loss.disc_weight = 0.0  # the same task without the KL term
    reg, _, g_reg = _grads(task, batch)
    task.cfg.loss.disc_weight = alpha

    # the KL, computed independently: HubertModel's logits for the teacher, and the student's last layer through
    # unit_proj against the teacher's unit embeddings (cosine / logit_temp) for the student
    p_t = _hubert_unit_log_probs(task.teacher, wav, gen)  # [B * T, C]
    hubert = task.teacher.hubert
    codebook = hubert.label_embs_concat.split(hubert.num_classes, 0)[0].detach()
    task.zero_grad(set_to_none=True)
    hidden, valid, _ = task.student(wav, batch["wav_lengths"])
    T = p_t.size(0) // 2
    assert valid.all() and hidden[-1].size(1) == T
    proj = task.unit_proj(hidden[-1]).reshape(-1, codebook.size(1))
    sim = F.cosine_similarity(proj[:, None, :], codebook[None], dim=-1) / float(hubert.logit_temp)
    kl = F.kl_div(sim.log_softmax(-1), p_t, log_target=True, reduction="batchmean")
    kl.backward()
    g_kl = {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            for n, p in task.named_parameters() if p.requires_grad}

    assert stats["kl"].item() == pytest.approx(kl.item(), rel=1e-4) and kl.item() > 1e-3
    assert total.item() == pytest.approx(reg.item() + alpha * kl.item(), rel=1e-5)
    last = f"student.layers.{len(task.student.layers) - 1}.linear2.weight"
    for name in (last, "student.proj.weight", "unit_proj.weight", "unit_proj.bias"):
        diff = g_total[name] - g_reg[name]
        assert diff.abs().max() > 1e-7, f"the KL does not reach {name}"
        torch.testing.assert_close(diff, alpha * g_kl[name], atol=1e-6, rtol=1e-3)
    assert not g_reg["unit_proj.weight"].any()  # only the KL trains unit_proj


def test_unit_proj_trains_and_is_saved(synth_corpus_en: Path, teacher_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "disc"
    ov = (f"config.data.root={synth_corpus_en},,config.teacher.ckpt={latest_checkpoint(teacher_run)},,"
          "config.runner.total_steps=3,,config.runner.log_step=1,,config.runner.save_step=1,,config.runner.max_keep=5,,"
          "config.runner.num_workers=0,,config.data.batch_size=2,,config.data.crop_min_sec=1.0,,"
          "config.data.crop_max_sec=1.0,,config.optimizer.warmup_steps=1,,config.loss.disc_weight=1.0,,"
          "config.model.dim=64,,config.model.ffn_dim=128,,config.model.conv_pos=16,,config.model.conv_pos_groups=4")
    assert main(["-u", "l2l_distiller", "-p", str(run), "-o", ov]) == 0
    states = [torch.load(run / f"states-{s}.ckpt", weights_only=True)["model"] for s in (1, 3)]
    for state in states:
        assert state["unit_proj.weight"].shape == (64, 64) and state["unit_proj.bias"].shape == (64,)
        assert "codebook" not in state  # the teacher's frozen unit embeddings are not stored
    assert not torch.equal(states[0]["unit_proj.weight"], states[1]["unit_proj.weight"])
    assert all("kl" in json.loads(line) for line in (run / "log.jsonl").read_text().splitlines())
    # a resumed task gets unit_proj back from the checkpoint
    cfg = from_dict(DistillConfig, torch.load(run / "states-3.ckpt", weights_only=True)["config"])
    task = DistillTask(cfg, run)
    task.load_trainable_state_dict(states[1])
    assert torch.equal(task.unit_proj.weight, states[1]["unit_proj.weight"])
