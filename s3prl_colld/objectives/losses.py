"""Distillation objectives as pure functions ``(pred, target, mask, ...) -> (loss, stats)``.

Shapes: ``pred`` and ``target`` are ``[B, T, D]``; ``mask`` is ``[B, T]``
bool and selects the frames a loss is averaged over (valid frames, or masked
valid frames); padding must be False in it. Stats are detached scalars.

Every loss, cosine and logit is computed in float32 with autocast off,
whatever the trainer's precision: under bf16 autocast a matmul or einsum
would otherwise round the InfoNCE negatives (at τ = 0.1, about ±0.04 of
noise on each logit) and the discriminative cosines to bf16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _fp32(x: torch.Tensor) -> torch.autocast:
    """A context that turns autocast off on ``x``'s device (the losses run in float32)."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def _frames(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B, T, D]`` and ``[B, T]`` -> the selected frames ``[M, D]``."""
    if x.shape[:2] != mask.shape:
        raise ValueError(f"mask {tuple(mask.shape)} does not match features {tuple(x.shape)}")
    return x[mask]


def l1_cosine(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
              cos_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DistilHuBERT's regression loss over selected frames.

    ``L = mean_{t,d} |ŷ_td - y_td| + λ mean_t -log σ(cos(ŷ_t, y_t))``, the means over the frames
    ``mask`` selects (NaN when it selects none). Computed on the padded ``[B, T]`` grid and
    weighted by the mask, without gathering the frames: no host sync, no copies.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if pred.shape[:2] != mask.shape:
        raise ValueError(f"mask {tuple(mask.shape)} does not match features {tuple(pred.shape)}")
    with _fp32(pred):
        p, y = pred.float(), target.float()
        n = mask.sum()
        zero = p.new_zeros(())
        l1 = torch.where(mask, (p - y).abs().mean(-1), zero).sum() / n
        cos = F.cosine_similarity(p, y, dim=-1)  # [B, T]
        cos_loss = torch.where(mask, -F.logsigmoid(cos), zero).sum() / n
        loss = l1 + cos_weight * cos_loss
        cos_mean = torch.where(mask, cos, zero).sum() / n
    return loss, {"l1": l1.detach(), "cos": cos_mean.detach()}


def sample_negatives(valid: torch.Tensor, query: torch.Tensor, num_negatives: int,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices of negatives from other valid frames of the same utterance.

    Args:
        valid: ``[B, T]`` bool, the valid frames of each utterance.
        query: ``[B, T]`` bool, the frames that need negatives (subset of valid).
        num_negatives: K.
    Returns:
        ``[M, K]`` int64 time indices for the ``M = query.sum()`` query frames
        (in ``query.nonzero()`` order), uniform over the utterance's other valid frames.
        An utterance with a single valid frame yields its own index (masked out by the caller).
    """
    b, t = query.nonzero(as_tuple=True)  # [M]
    lengths = valid.sum(1)[b]  # valid frames are a prefix: [M]
    others = (lengths - 1).clamp_min(1)
    u = torch.rand(b.numel(), num_negatives, generator=generator, device="cpu").to(valid.device)
    idx = (u * others[:, None]).long()  # uniform in [0, others)
    idx = idx + (idx >= t[:, None]).long()  # skip the positive's own position
    return torch.minimum(idx, (lengths - 1).clamp_min(0)[:, None])


def info_nce_logits(p: torch.Tensor, pos: torch.Tensor, negs: torch.Tensor, temperature: float) -> torch.Tensor:
    """``[positive, negatives] / τ`` from unit vectors ``p [M, D]``, ``pos [M, D]``, ``negs [M, K, D]`` -> ``[M, 1 + K]``
    float32 (autocast off)."""
    with _fp32(p):
        p, pos, negs = p.float(), pos.float(), negs.float()
        return torch.cat([(p * pos).sum(-1, keepdim=True), torch.einsum("md,mkd->mk", p, negs)], dim=1) / temperature


def info_nce(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, query: torch.Tensor,
             num_negatives: int = 100, temperature: float = 0.1,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CoLLD's contrastive loss with negatives from the same utterance.

    For each query frame t of utterance b: positive ``y_bt``, negatives
    ``y_bn`` for K sampled frames n != t,
    ``L = -log( exp(cos(ŷ_bt, y_bt)/τ) / Σ_{c ∈ {t} ∪ negs} exp(cos(ŷ_bt, y_bc)/τ) )``,
    averaged over the query frames. A negative equal to the positive (same
    index, only possible in one-frame utterances) is excluded.
    """
    if not query.any():
        zero = pred.sum() * 0.0
        return zero, {"acc": zero.detach()}
    b, t = query.nonzero(as_tuple=True)
    neg_t = sample_negatives(valid, query, num_negatives, generator)  # [M, K]
    with _fp32(pred):
        p = F.normalize(pred.float(), dim=-1)  # [B, T, D]
        y = F.normalize(target.float(), dim=-1)  # [B, T, D]
        # all cosines within each utterance, [B, T, T] (B T^2 D flops), then gather [M, 1 + K] logits from it:
        # never materialises the [M, K, D] negatives (info_nce_logits is the gathering form)
        rows = torch.bmm(p, y.transpose(1, 2))[b, t]  # [M, T]: cos(ŷ_bt, y_bn) for every n
        logits = torch.cat([rows.gather(1, t[:, None]), rows.gather(1, neg_t)], dim=1) / temperature
        logits[:, 1:] = logits[:, 1:].masked_fill(neg_t == t[:, None], float("-inf"))
        loss = F.cross_entropy(logits, torch.zeros_like(b))
    acc = (logits.argmax(1) == 0).float().mean()
    return loss, {"acc": acc.detach()}


def unit_log_probs(proj: torch.Tensor, codebook: torch.Tensor, temperature: float) -> torch.Tensor:
    """``log softmax_c(cos(proj_t, e_c) / κ)``: ``[..., F]``, ``[C, F]`` -> ``[..., C]``."""
    with _fp32(proj):
        sim = F.normalize(proj.float(), dim=-1) @ F.normalize(codebook.float(), dim=-1).T
        return (sim / temperature).log_softmax(-1)


def discriminative_kl(student_logp: torch.Tensor, teacher_logp: torch.Tensor,
                      mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Wang et al.'s discriminative loss: ``mean_t KL(p_T(·|t) || p_S(·|t))`` over selected frames.

    Both inputs are log-probabilities ``[B, T, C]``.
    """
    with _fp32(student_logp):
        s, tl = _frames(student_logp, mask).float(), _frames(teacher_logp, mask).float()
        kl = (tl.exp() * (tl - s)).sum(-1).mean()
    agree = (s.argmax(-1) == tl.argmax(-1)).float().mean()
    return kl, {"kl": kl.detach(), "unit_agreement": agree.detach()}
