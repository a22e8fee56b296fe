"""Distillation objectives against values computed by hand, and masking statistics."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from s3prl_colld.objectives.losses import discriminative_kl, info_nce, l1_cosine, sample_negatives, unit_log_probs
from s3prl_colld.objectives.masking import span_mask


def test_l1_cosine_by_hand_and_padding_excluded() -> None:
    pred = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [9.0, 9.0]]])
    target = torch.tensor([[[1.0, 1.0], [0.0, 1.0], [-9.0, 3.0]]])
    mask = torch.tensor([[True, True, False]])  # the third frame is padding
    loss, stats = l1_cosine(pred, target, mask, cos_weight=1.0)
    l1 = (0 + 1 + 0 + 1) / 4
    cos = [1 / math.sqrt(2), 1.0]
    expected = l1 + sum(-math.log(1 / (1 + math.exp(-c))) for c in cos) / 2
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)
    assert math.isclose(stats["l1"].item(), l1, rel_tol=1e-6)


def test_info_nce_by_hand_with_known_negatives() -> None:
    # one utterance of 3 frames, query frame 0, K=2 negatives: necessarily frames 1 and 2
    target = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    pred = torch.tensor([[[2.0, 1.0], [0.0, 0.0], [0.0, 0.0]]])
    valid = torch.ones(1, 3, dtype=torch.bool)
    query = torch.tensor([[True, False, False]])
    gen = torch.Generator().manual_seed(0)
    negs = sample_negatives(valid, query, 2, gen)
    assert sorted(negs[0].tolist()) in ([1, 2], [1, 1], [2, 2])  # never the positive itself
    # force the negatives to be {1, 2} by asking for many and checking they never hit 0
    many = sample_negatives(valid, query, 1000, torch.Generator().manual_seed(1))
    assert 0 not in many.tolist()[0] and set(many.tolist()[0]) == {1, 2}
    tau = 0.1
    p = F.normalize(pred[0, 0], dim=0)
    sims = [float(p @ F.normalize(target[0, j], dim=0)) / tau for j in range(3)]
    negs_used = sample_negatives(valid, query, 2, torch.Generator().manual_seed(5))[0].tolist()
    logits = [sims[0]] + [sims[j] for j in negs_used]
    expected = -sims[0] + math.log(sum(math.exp(x) for x in logits))
    loss, stats = info_nce(pred, target, valid, query, num_negatives=2, temperature=tau,
                           generator=torch.Generator().manual_seed(5))
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)
    assert stats["acc"].item() == 1.0  # the positive has the highest similarity


def test_info_nce_negatives_stay_in_their_utterance() -> None:
    valid = torch.zeros(2, 10, dtype=torch.bool)
    valid[0, :4] = True
    valid[1, :10] = True
    query = valid.clone()
    negs = sample_negatives(valid, query, 50, torch.Generator().manual_seed(0))
    b, t = query.nonzero(as_tuple=True)
    for row, bi, ti in zip(negs, b, t):
        assert row.max() < valid[bi].sum() and (row != ti).all()


def test_discriminative_kl_by_hand() -> None:
    p_t = torch.tensor([[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]])
    p_s = torch.tensor([[[0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]]])
    mask = torch.tensor([[True, False]])
    kl, stats = discriminative_kl(p_s.log(), p_t.log(), mask)
    expected = sum(a * math.log(a / b) for a, b in zip([0.7, 0.2, 0.1], [0.5, 0.25, 0.25]))
    assert math.isclose(kl.item(), expected, rel_tol=1e-5)
    assert stats["unit_agreement"].item() == 1.0


def test_unit_log_probs_is_cosine_softmax() -> None:
    codebook = torch.eye(3)
    proj = torch.tensor([[2.0, 0.0, 0.0]])
    lp = unit_log_probs(proj, codebook, 0.1)
    expected = torch.tensor([10.0, 0.0, 0.0]).log_softmax(0)
    torch.testing.assert_close(lp[0], expected)


def test_span_mask_statistics() -> None:
    gen = torch.Generator().manual_seed(0)
    valid = torch.ones(64, 300, dtype=torch.bool)
    valid[::2, 200:] = False  # half the utterances are padded
    mask = span_mask(valid, mask_prob=0.8, span=10, generator=gen)
    assert not (mask & ~valid).any()  # never padding
    frac = (mask.sum() / valid.sum()).item()
    expected = 1 - (1 - 0.08) ** 10  # P(frame covered) with start prob 0.08 and span 10
    assert abs(frac - expected) < 0.05
    # spans: runs of masked frames are at least 10 long, except where they hit the end of the valid region
    row = mask[1].tolist()
    runs, n = [], 0
    for m in row + [False]:
        if m:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    assert runs and min(runs) >= 10
    assert (mask.sum(1) > 0).all()  # every utterance has at least one span
