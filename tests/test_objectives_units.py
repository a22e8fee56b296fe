"""More unit tests of the distillation objectives and span masks: several frames and utterances at once,
worked by hand, defaults, devices and random streams (mutation-testing targets, see docs/quality/mutation.md)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from s3prl_colld.objectives.losses import (discriminative_kl, info_nce, info_nce_logits, l1_cosine, sample_negatives,
                                          unit_log_probs)
from s3prl_colld.objectives.masking import span_mask


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ regression
def test_l1_cosine_several_frames_by_hand() -> None:
    pred, target = torch.randn(2, 3, 4, generator=_gen(0)), torch.randn(2, 3, 4, generator=_gen(1))
    mask = torch.tensor([[True, False, True], [True, True, False]])
    loss, stats = l1_cosine(pred, target, mask)  # default λ = 1
    frames = [(b, t) for b in range(2) for t in range(3) if mask[b, t]]
    l1 = sum((pred[b, t] - target[b, t]).abs().sum().item() for b, t in frames) / (4 * len(frames))
    cos = [F.cosine_similarity(pred[b, t], target[b, t], dim=0).item() for b, t in frames]
    expected = l1 + sum(-math.log(1 / (1 + math.exp(-c))) for c in cos) / len(frames)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert set(stats) == {"l1", "cos"} and stats["cos"].item() == pytest.approx(sum(cos) / len(cos), rel=1e-5)
    assert l1_cosine(pred, target, mask, cos_weight=0.0)[0].item() == pytest.approx(l1, rel=1e-5)
    assert not stats["l1"].requires_grad


def test_mismatched_shapes_are_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"^mask \(2, 3\) does not match features \(2, 4, 5\)$"):
        l1_cosine(torch.zeros(2, 4, 5), torch.zeros(2, 4, 5), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"^prediction \(2, 4, 5\) and target \(2, 4, 6\) differ in shape$"):
        l1_cosine(torch.zeros(2, 4, 5), torch.zeros(2, 4, 6), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"^mask \(1, 3\) does not match features \(1, 2, 4\)$"):
        discriminative_kl(torch.zeros(1, 2, 4), torch.zeros(1, 2, 4), torch.ones(1, 3, dtype=torch.bool))


# ------------------------------------------------------------------ negatives and InfoNCE
def test_negatives_of_two_and_one_frame_utterances() -> None:
    valid = torch.zeros(3, 4, dtype=torch.bool)
    valid[0, :2] = True  # two frames: the only negative of each frame is the other one
    valid[1, :1] = True  # one frame: its own index (masked out by info_nce)
    valid[2, :4] = True
    negs = sample_negatives(valid, valid, 50, _gen(0))  # rows in valid.nonzero() order
    assert negs[0].tolist() == [1] * 50 and negs[1].tolist() == [0] * 50
    assert negs[2].tolist() == [0] * 50
    assert all(set(row.tolist()) == {0, 1, 2, 3} - {t} for row, t in zip(negs[3:], range(4)))


def test_negatives_are_drawn_per_query_from_the_given_generator() -> None:
    valid = torch.ones(2, 50, dtype=torch.bool)
    negs = sample_negatives(valid, valid, 8, _gen(0))
    assert negs.shape == (100, 8) and negs.dtype == torch.int64
    assert len({tuple(row.tolist()) for row in negs}) > 90  # independent draws, not one row repeated
    torch.manual_seed(1)
    state = torch.get_rng_state()
    again = sample_negatives(valid, valid, 8, _gen(0))
    assert torch.equal(again, negs) and torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched


def _info_nce_by_hand(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, query: torch.Tensor,
                      negs: torch.Tensor, tau: float) -> tuple[float, float]:
    losses, right = [], 0
    for row, (b, t) in enumerate(query.nonzero().tolist()):
        sims = [F.cosine_similarity(pred[b, t], target[b, j], dim=0).item() / tau
                for j in [t] + [n for n in negs[row].tolist() if n != t]]
        losses.append(-sims[0] + math.log(sum(math.exp(x) for x in sims)))
        right += int(sims[0] >= max(sims))
    return sum(losses) / len(losses), right / len(losses)


def test_info_nce_logits_by_hand() -> None:
    """The gathering form: ``[p . pos, p . neg_1, ..., p . neg_K] / τ`` for unit vectors."""
    p = F.normalize(torch.randn(3, 4, generator=_gen(12)), dim=-1)
    pos = F.normalize(torch.randn(3, 4, generator=_gen(13)), dim=-1)
    negs = F.normalize(torch.randn(3, 2, 4, generator=_gen(14)), dim=-1)
    logits = info_nce_logits(p, pos, negs, 0.25)
    expected = torch.tensor([[float(p[m] @ pos[m]), *(float(p[m] @ negs[m, k]) for k in range(2))] for m in range(3)])
    torch.testing.assert_close(logits, expected / 0.25)


def test_info_nce_several_queries_by_hand() -> None:
    pred, target = torch.randn(2, 5, 3, generator=_gen(2)), torch.randn(2, 5, 3, generator=_gen(3))
    pred[0, 1] = target[0, 1] * 2  # one query certainly right
    valid = torch.tensor([[True] * 5, [True, True, True, False, False]])
    query = torch.tensor([[False, True, True, True, False], [True, False, True, False, False]])
    negs = sample_negatives(valid, query, 4, _gen(7))
    expected, acc = _info_nce_by_hand(pred, target, valid, query, negs, 0.2)
    loss, stats = info_nce(pred, target, valid, query, num_negatives=4, temperature=0.2, generator=_gen(7))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert set(stats) == {"acc", "chance"} and stats["acc"].item() == pytest.approx(acc) and 0 < acc < 1
    distinct = [len(set(row.tolist())) for row in negs]  # chance: 1 / (1 + distinct negatives), per query
    assert stats["chance"].item() == pytest.approx(sum(1 / (1 + d) for d in distinct) / len(distinct))


def test_info_nce_defaults_and_random_stream() -> None:
    pred, target = torch.randn(1, 30, 3, generator=_gen(4)), torch.randn(1, 30, 3, generator=_gen(5))
    valid = torch.ones(1, 30, dtype=torch.bool)
    default, _ = info_nce(pred, target, valid, valid, generator=_gen(1))
    explicit, _ = info_nce(pred, target, valid, valid, num_negatives=100, temperature=0.1, generator=_gen(1))
    assert default.item() == explicit.item()
    negs = sample_negatives(valid, valid, 100, _gen(1))
    assert default.item() == pytest.approx(_info_nce_by_hand(pred, target, valid, valid, negs, 0.1)[0], rel=1e-5)
    torch.manual_seed(123)
    again, _ = info_nce(pred, target, valid, valid, generator=_gen(1))
    assert again.item() == default.item()  # the negatives come from the generator, not the global RNG


def test_info_nce_without_queries_is_a_zero_that_backpropagates() -> None:
    pred = torch.randn(2, 3, 4, requires_grad=True)
    valid = torch.ones(2, 3, dtype=torch.bool)
    loss, stats = info_nce(pred, torch.randn(2, 3, 4), valid, torch.zeros(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0 and stats == {"acc": 0.0, "chance": 0.0} and loss.requires_grad
    loss.backward()
    assert pred.grad is not None and not pred.grad.any()


# ------------------------------------------------------------------ discriminative loss
def test_unit_log_probs_by_hand_on_batches() -> None:
    proj, codebook = torch.randn(2, 3, 4, generator=_gen(8)), torch.randn(5, 4, generator=_gen(9))
    lp = unit_log_probs(proj, codebook, 0.5)
    assert lp.shape == (2, 3, 5)
    for b in range(2):
        for t in range(3):
            sims = torch.stack([F.cosine_similarity(proj[b, t], c, dim=0) for c in codebook]) / 0.5
            torch.testing.assert_close(lp[b, t], sims.log_softmax(0))


def test_discriminative_kl_several_frames_by_hand() -> None:
    t_logp = torch.randn(2, 3, 4, generator=_gen(10)).log_softmax(-1)
    s_logp = torch.randn(2, 3, 4, generator=_gen(11)).log_softmax(-1)
    s_logp[1, 0] = t_logp[1, 0]  # one frame agrees exactly
    mask = torch.tensor([[True, True, False], [True, False, True]])
    kl, stats = discriminative_kl(s_logp, t_logp, mask)
    frames = mask.nonzero().tolist()
    per_frame = [(t_logp[b, t].exp() * (t_logp[b, t] - s_logp[b, t])).sum().item() for b, t in frames]
    assert kl.item() == pytest.approx(sum(per_frame) / len(frames), rel=1e-5)
    agree = sum(int(s_logp[b, t].argmax() == t_logp[b, t].argmax()) for b, t in frames) / len(frames)
    assert set(stats) == {"kl", "unit_agreement", "unit_chance"} and stats["unit_agreement"].item() == pytest.approx(agree)
    units = [int(t_logp[b, t].argmax()) for b, t in frames]  # chance: the share of the commonest teacher unit
    assert stats["unit_chance"].item() == pytest.approx(max(units.count(u) for u in units) / len(units))
    assert stats["kl"].item() == kl.item() and 0 < agree < 1


# ------------------------------------------------------------------ span masks
def _runs(row: list[bool]) -> list[tuple[int, int]]:
    """``(start, length)`` of each run of True."""
    runs, start = [], None
    for i, m in enumerate(row + [False]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append((start, i - start))
            start = None
    return runs


def test_span_mask_forced_span_only() -> None:
    """With no random starts (mask_prob 0) every utterance gets exactly its one forced span, fully inside."""
    valid = torch.zeros(300, 20, dtype=torch.bool)
    valid[:, :12] = True  # starts 0, 1 and 2 fit a span of 10
    mask = span_mask(valid, 0.0, 10, generator=_gen(0))
    runs = [_runs(row) for row in mask.tolist()]
    assert all(len(r) == 1 and r[0][1] == 10 for r in runs)
    assert {r[0][0] for r in runs} == {0, 1, 2}  # every start that fits is used, the last one included
    two = span_mask(valid[:, :], 0.0, 3, min_spans=2, generator=_gen(0))
    assert all(1 <= len(_runs(row)) <= 2 and 3 <= sum(n for _, n in _runs(row)) <= 6 for row in two.tolist())
    assert not span_mask(valid, 0.0, 10, min_spans=0, generator=_gen(0)).any()


def test_span_mask_short_utterances_are_masked_whole() -> None:
    valid = torch.zeros(100, 8, dtype=torch.bool)
    valid[:, :5] = True  # shorter than the span: the forced span starts at 0 and covers every frame
    assert torch.equal(span_mask(valid, 0.0, 10, generator=_gen(1)), valid)


def test_span_mask_rows_draw_independently_from_the_generator() -> None:
    valid = torch.ones(16, 100, dtype=torch.bool)
    mask = span_mask(valid, 0.5, 5, generator=_gen(2))
    assert len({tuple(row.tolist()) for row in mask}) == 16
    torch.manual_seed(9)
    state = torch.get_rng_state()
    assert torch.equal(span_mask(valid, 0.5, 5, generator=_gen(2)), mask)
    assert torch.equal(torch.get_rng_state(), state)
    assert span_mask(valid, 30.0, 10, generator=_gen(3)).all()  # p = min(1, prob / span): every frame starts one


def test_span_mask_stays_on_the_input_device() -> None:
    """The meta device stands in for a GPU: every tensor must follow ``valid`` (random draws stay on the CPU)."""
    valid = torch.ones(2, 30, dtype=torch.bool, device="meta")
    mask = span_mask(valid, 0.8, 10, generator=_gen(0))
    assert mask.device.type == "meta" and mask.shape == (2, 30) and mask.dtype == torch.bool


def test_masks_and_negatives_do_not_depend_on_the_default_device() -> None:
    """Code that sets ``torch.set_default_device`` (e.g. to a GPU) gets the same masks and negatives: every tensor
    is made on the input's device and the random draws on the CPU generator's. A meta default device stands in for
    the GPU (a tensor made there by mistake has no data and cannot be read back)."""
    valid = torch.ones(3, 40, dtype=torch.bool)
    valid[2, 25:] = False
    mask, negs = span_mask(valid, 0.8, 10, generator=_gen(4)), sample_negatives(valid, valid, 6, _gen(5))
    with torch.device("meta"):
        assert torch.equal(span_mask(valid, 0.8, 10, generator=_gen(4)), mask)
        assert torch.equal(sample_negatives(valid, valid, 6, _gen(5)), negs)
