"""CoLLD's wiring inside the distillation task: which frames the loss reads, what the student sees at masked
frames, one-frame utterances, and the shared front-end's precision check."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from s3prl_colld.config import ConfigError
from s3prl_colld.objectives.losses import info_nce, sample_negatives
from s3prl_colld.pretrain.tasks.distill import DistillTask

from colld_tiny import colld_task, wav_batch

def _pred_grads(task: DistillTask, batch: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor,
                                                                                torch.Tensor]:
    """Gradients of the loss w.r.t. every prediction head's output ``[B, T, D]``, with ``valid`` and ``mask``."""
    captured: dict[str, Any] = {}

    def keep_preds(_module: Any, _inputs: Any, outputs: list[torch.Tensor]) -> None:
        for p in outputs:
            p.retain_grad()
        captured["preds"] = outputs

    def keep_mask(_module: Any, _inputs: Any, outputs: tuple) -> None:
        captured["valid"], captured["mask"] = outputs[1], outputs[2]

    hooks = [task.heads.register_forward_hook(keep_preds), task.student.register_forward_hook(keep_mask)]
    try:
        loss, _ = task(batch)
        loss.backward()
    finally:
        for h in hooks:
            h.remove()
    return [p.grad for p in captured["preds"]], captured["valid"], captured["mask"]


@pytest.mark.parametrize("masked_only", [True, False])
def test_masked_only_limits_the_loss_to_masked_frames(masked_only: bool, synth_corpus_en: Path, teacher_run: Path,
                                                      tmp_path: Path) -> None:
    task = colld_task(synth_corpus_en, teacher_run, tmp_path, loss={"masked_only": masked_only})
    grads, valid, mask = _pred_grads(task, wav_batch([32_000, 20_000]))
    assert mask is not None and (mask & valid).any() and (~mask & valid).any()
    T = grads[0].size(1)
    valid, mask = valid[:, :T], mask[:, :T]
    for g in grads:
        moved = g.abs().sum(-1) > 0  # [B, T]: frames whose prediction the loss reads
        assert not (moved & ~valid).any()  # never padding
        if masked_only:
            assert torch.equal(moved, mask & valid)
        else:
            assert torch.equal(moved, valid)


def test_the_mask_embedding_replaces_the_masked_inputs(synth_corpus_en: Path, teacher_run: Path,
                                                       tmp_path: Path) -> None:

    task = colld_task(synth_corpus_en, teacher_run, tmp_path)
    student = task.student
    batch = wav_batch([32_000, 20_000])
    seen: dict[str, torch.Tensor] = {}

    def keep_input(_module: Any, inputs: tuple, _output: Any) -> None:  # the encoder input after masking
        seen["x"] = inputs[0].detach()

    def keep_mask(_module: Any, _inputs: Any, output: tuple) -> None:
        seen["mask"] = output[2]

    hook = student.pos_conv.register_forward_hook(keep_input)
    try:
        with torch.no_grad():
            feats, valid = student.frontend_features(batch["wav"], batch["wav_lengths"])
            plain = student.proj(student.frontend_norm(feats))  # [B, T, D]: the unmasked input of the encoder
            fixed = torch.zeros_like(valid)
            fixed[0, 5:15] = fixed[1, 30:40] = True
            fixed &= valid
            hidden, _, mask = student(batch["wav"], batch["wav_lengths"], mask_fn=lambda v: fixed)
    finally:
        hook.remove()
    x = seen["x"]
    assert torch.equal(mask, fixed)
    assert torch.equal(x[fixed], student.mask_emb.detach().expand(int(fixed.sum()), -1))
    keep = valid & ~fixed
    torch.testing.assert_close(x[keep], plain[keep])
    assert not x[~valid].any()  # padding is zero
    assert not torch.equal(plain[fixed], x[fixed])  # the mask changed something
    # and the task's own masks reach the student the same way
    seen.clear()
    hook = student.pos_conv.register_forward_hook(keep_input)
    mask_hook = student.register_forward_hook(keep_mask)
    try:
        with torch.no_grad():
            task(batch)
    finally:
        hook.remove()
        mask_hook.remove()
    task_mask = seen["mask"]
    assert task_mask.any() and torch.equal(seen["x"][task_mask], student.mask_emb.expand(int(task_mask.sum()), -1))


def test_info_nce_one_frame_utterance() -> None:
    """Utterance 0 has one valid frame: every negative drawn for it is the positive itself and is excluded,
    so its frame costs exactly 0 (a certain positive); the other frames cost what they cost by hand."""
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 6, 4, generator=gen), torch.randn(2, 6, 4, generator=gen)
    pred.requires_grad_(True)
    valid = torch.zeros(2, 6, dtype=torch.bool)
    valid[0, 0] = True
    valid[1, :6] = True
    query = valid.clone()
    negs = sample_negatives(valid, query, 5, torch.Generator().manual_seed(1))  # [7, 5], query.nonzero() order
    assert negs[0].tolist() == [0] * 5  # the one-frame utterance can only draw its own frame
    cos = torch.nn.functional.cosine_similarity
    per_frame = [0.0]
    for row, t in enumerate(range(6), start=1):
        assert t not in negs[row].tolist() and int(negs[row].max()) < 6
        sims = [float(cos(pred[1, t], target[1, j], dim=0)) / 0.1 for j in [t, *negs[row].tolist()]]
        per_frame.append(-sims[0] + math.log(sum(math.exp(x) for x in sims)))
    loss, stats = info_nce(pred, target, valid, query, num_negatives=5, temperature=0.1,
                           generator=torch.Generator().manual_seed(1))
    assert loss.item() == pytest.approx(sum(per_frame) / 7, rel=1e-5)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and not pred.grad[0, 0].any() and pred.grad[1].any()
    assert 1 / 7 <= stats["acc"].item() <= 1.0  # the one-frame query is always "right"


def test_one_frame_utterance_in_a_colld_batch(synth_corpus_en: Path, teacher_run: Path, tmp_path: Path) -> None:
    """A 400-sample utterance (one frame) next to a normal one: the loss and every gradient stay finite."""
    task = colld_task(synth_corpus_en, teacher_run, tmp_path)
    grads, valid, mask = _pred_grads(task, wav_batch([32_000, 400]))
    assert valid[1].sum() == 1 and mask[1].sum() == 1  # the one frame is masked (every utterance gets a span)
    assert all(torch.isfinite(g).all() for g in grads)
    assert all(torch.isfinite(p.grad).all() for p in task.parameters() if p.grad is not None)
    loss, stats = task(wav_batch([32_000, 400]))
    assert math.isfinite(loss.item()) and all(math.isfinite(float(v)) for v in stats.values())


def test_shared_frontend_needs_an_fp32_teacher(synth_corpus_en: Path, teacher_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"share_teacher_frontend.*teacher\.precision must be fp32"):
        colld_task(synth_corpus_en, teacher_run, tmp_path, teacher={"precision": "bf16"},
               init={"share_teacher_frontend": True})
    # the same config with an fp32 teacher is accepted (the error above is about precision only)
    task = colld_task(synth_corpus_en, teacher_run, tmp_path, init={"share_teacher_frontend": True})
    assert not any(p.requires_grad for p in task.student.frontend.parameters())
