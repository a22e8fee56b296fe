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

from typing import Callable

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
                     generator: torch.Generator | None = None, exclude: int = 0) -> torch.Tensor:
    """Indices of negatives from other valid frames of the same utterance.

    Args:
        valid: ``[B, T]`` bool, the valid frames of each utterance.
        query: ``[B, T]`` bool, the frames that need negatives (subset of valid).
        num_negatives: K.
        exclude: W; the frames ``t - W .. t + W`` around the positive ``t`` are never drawn
            (0: only the positive itself, the original behaviour, drawing the same random numbers).
    Returns:
        ``[M, K]`` int64 time indices for the ``M = query.sum()`` query frames
        (in ``query.nonzero()`` order), uniform (with replacement) over the utterance's valid frames
        farther than W from the positive. A query frame with no such frame (an utterance of at most
        ``2 W + 1`` frames around it) yields its own index, which the caller masks out.
    """
    if exclude < 0:
        raise ValueError(f"exclude must be >= 0, got {exclude}")
    b, t = query.nonzero(as_tuple=True)  # [M]
    lengths = valid.sum(1)[b]  # valid frames are a prefix: [M]
    lo = (t - exclude).clamp_min(0)  # first excluded frame [M]
    hi = torch.minimum(t + exclude, lengths - 1)  # last excluded frame [M]
    width = hi - lo + 1  # excluded frames [M]
    legal = lengths - width  # frames a negative may be [M]
    u = torch.rand(b.numel(), num_negatives, generator=generator, device="cpu").to(valid.device)
    idx = (u * legal.clamp_min(1)[:, None]).long()  # uniform in [0, legal)
    idx = idx + (idx >= lo[:, None]).long() * width[:, None]  # skip the excluded window
    return torch.where(legal[:, None] > 0, idx, t[:, None])


def candidate_chance(neg_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Per query frame, the accuracy of a scorer that ignores its input: ``1 / (1 + distinct negatives)``.

    ``neg_t [M, K]`` sampled indices (with replacement, so some repeat), ``t [M]`` the positives' indices
    (a negative equal to it is excluded, not a candidate). Equals ``1 / (K + 1)`` when the K are distinct.
    Returns ``[M]`` float32.
    """
    s = neg_t.sort(dim=1).values
    distinct = 1 + (s[:, 1:] != s[:, :-1]).sum(1)  # [M]
    distinct = distinct - (neg_t == t[:, None]).any(1).long()
    return 1.0 / (1.0 + distinct.float())


def info_nce_logits(p: torch.Tensor, pos: torch.Tensor, negs: torch.Tensor, temperature: float) -> torch.Tensor:
    """``[positive, negatives] / τ`` from unit vectors ``p [M, D]``, ``pos [M, D]``, ``negs [M, K, D]`` -> ``[M, 1 + K]``
    float32 (autocast off)."""
    with _fp32(p):
        p, pos, negs = p.float(), pos.float(), negs.float()
        return torch.cat([(p * pos).sum(-1, keepdim=True), torch.einsum("md,mkd->mk", p, negs)], dim=1) / temperature


def info_nce(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, query: torch.Tensor,
             num_negatives: int = 100, temperature: float = 0.1,
             generator: torch.Generator | None = None,
             exclude_neighbours: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CoLLD's contrastive loss with negatives from the same utterance.

    For each query frame t of utterance b: positive ``y_bt``, negatives
    ``y_bn`` for K sampled frames with ``|n - t| > exclude_neighbours``,
    ``L = -log( exp(cos(ŷ_bt, y_bt)/τ) / Σ_{c ∈ {t} ∪ negs} exp(cos(ŷ_bt, y_bc)/τ) )``,
    averaged over the query frames. A negative equal to the positive (same
    index, only possible when the utterance has no frame outside the excluded window) is excluded.

    Stats: ``acc``, the share of query frames whose positive scores strictly above every negative
    (ties count as wrong: a constant prediction is never right), and ``chance``, the mean over query
    frames of ``1 / (1 + distinct negatives)`` (``1 / (K + 1)`` when the negatives are distinct): what
    ``acc`` is for a prediction that carries no information about the target.
    """
    if not query.any():
        zero = pred.sum() * 0.0
        return zero, {"acc": zero.detach(), "chance": zero.detach()}
    b, t = query.nonzero(as_tuple=True)
    neg_t = sample_negatives(valid, query, num_negatives, generator, exclude_neighbours)  # [M, K]
    with _fp32(pred):
        p = F.normalize(pred.float(), dim=-1)  # [B, T, D]
        y = F.normalize(target.float(), dim=-1)  # [B, T, D]
        # all cosines within each utterance, [B, T, T] (B T^2 D flops), then gather [M, 1 + K] logits from it:
        # never materialises the [M, K, D] negatives (info_nce_logits is the gathering form)
        rows = torch.bmm(p, y.transpose(1, 2))[b, t]  # [M, T]: cos(ŷ_bt, y_bn) for every n
        logits = torch.cat([rows.gather(1, t[:, None]), rows.gather(1, neg_t)], dim=1) / temperature
        logits[:, 1:] = logits[:, 1:].masked_fill(neg_t == t[:, None], float("-inf"))
        loss = F.cross_entropy(logits, torch.zeros_like(b))
    with torch.no_grad():
        acc = (logits[:, 0] > logits[:, 1:].max(1).values).float().mean()
        chance = candidate_chance(neg_t, t).mean()
    return loss, {"acc": acc.detach(), "chance": chance}


def frame_terms(valid: torch.Tensor, mask: torch.Tensor | None, masked_only: bool,
                masked_weight: float | None) -> list[tuple[float, torch.Tensor]]:
    """Which frames a distillation loss reads, with what weight: ``[(weight, frames [B, T] bool), ...]``.

    - no mask (``mask_prob`` 0): ``[(1, valid)]``, every valid frame;
    - ``masked_weight`` None: ``[(1, valid & mask)]`` with ``masked_only``, else ``[(1, valid)]``;
    - ``masked_weight`` α: HuBERT's weighting ``α · L(masked) + (1 - α) · L(unmasked)``, each term the mean
      over its frames; a term of weight 0 is left out (α = 1 is the masked-only loss, α = 0 the unmasked-only).
    """
    if mask is None:
        return [(1.0, valid)]
    if masked_weight is None:
        return [(1.0, valid & mask)] if masked_only else [(1.0, valid)]
    if not 0.0 <= masked_weight <= 1.0:
        raise ValueError(f"masked_weight must be in [0, 1], got {masked_weight}")
    terms = []
    if masked_weight > 0:
        terms.append((masked_weight, valid & mask))
    if masked_weight < 1:
        terms.append((1.0 - masked_weight, valid & ~mask))
    return terms


def weighted_loss(fn: Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]],
                  terms: list[tuple[float, torch.Tensor]]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``Σ_k w_k · fn(frames_k)`` over ``frame_terms``; stats are averaged over the terms weighted by
    their frame counts (so ``acc`` stays the share of the frames read whose positive wins).

    With one term this is exactly ``fn(frames)`` (no arithmetic on the loss). A term with no frames adds
    nothing (not NaN): at a high mask rate every frame may be masked.
    """
    if len(terms) == 1 and terms[0][0] == 1.0:
        return fn(terms[0][1])
    total: torch.Tensor | None = None
    stat_sums: dict[str, torch.Tensor] = {}
    count = None
    for weight, frames in terms:
        if not bool(frames.any()):
            continue
        loss, stats = fn(frames)
        total = weight * loss if total is None else total + weight * loss
        n = frames.sum()
        count = n if count is None else count + n
        for k, v in stats.items():
            stat_sums[k] = stat_sums.get(k, 0) + v * n
    if total is None:
        raise ValueError("no frame to compute the loss on (every term selects no frame)")
    return total, {k: (v / count).detach() for k, v in stat_sums.items()}


def unit_log_probs(proj: torch.Tensor, codebook: torch.Tensor, temperature: float) -> torch.Tensor:
    """``log softmax_c(cos(proj_t, e_c) / κ)``: ``[..., F]``, ``[C, F]`` -> ``[..., C]``."""
    with _fp32(proj):
        sim = F.normalize(proj.float(), dim=-1) @ F.normalize(codebook.float(), dim=-1).T
        return (sim / temperature).log_softmax(-1)


def discriminative_kl(student_logp: torch.Tensor, teacher_logp: torch.Tensor,
                      mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Wang et al.'s discriminative loss: ``mean_t KL(p_T(·|t) || p_S(·|t))`` over selected frames.

    Both inputs are log-probabilities ``[B, T, C]``. Stats: ``unit_agreement`` (share of frames where the
    student's most likely unit is the teacher's) and ``unit_chance`` (the share of the batch's commonest teacher
    unit: the agreement of a student that ignores its input).
    """
    with _fp32(student_logp):
        s, tl = _frames(student_logp, mask).float(), _frames(teacher_logp, mask).float()
        kl = (tl.exp() * (tl - s)).sum(-1).mean()
    with torch.no_grad():
        t_units = tl.argmax(-1)  # [M]
        agree = (s.argmax(-1) == t_units).float().mean()
        # chance: what a student that ignores its input gets at best, always naming the batch's commonest unit
        chance = torch.bincount(t_units, minlength=tl.size(-1)).max() / t_units.numel() if t_units.numel() else agree
    return kl, {"kl": kl.detach(), "unit_agreement": agree.detach(), "unit_chance": chance.float().detach()}
