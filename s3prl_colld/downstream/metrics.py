"""Downstream metrics: PER / WER by edit distance, BLEU by sacreBLEU, CTC greedy decoding."""

from __future__ import annotations

from typing import Sequence

import editdistance
import sacrebleu
import torch


def error_rate(hyps: Sequence[Sequence], refs: Sequence[Sequence]) -> float:
    """Summed edit distance / summed reference length x 100 (PER on phone lists, WER on word lists).

    Raises:
        ValueError: when the lists differ in length or the references are empty.
    """
    if len(hyps) != len(refs):
        raise ValueError(f"error_rate: {len(hyps)} hypotheses but {len(refs)} references")
    total = sum(len(r) for r in refs)
    if total == 0:
        raise ValueError("error_rate: the references are empty")
    errors = sum(editdistance.eval(list(h), list(r)) for h, r in zip(hyps, refs))
    return 100.0 * errors / total


def wer(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Word error rate (%) of transcripts (words split on whitespace, case kept)."""
    return error_rate([h.split() for h in hyps], [r.split() for r in refs])


per = wer  # phone error rate (%): the same count over space-separated phone strings


def bleu(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Corpus BLEU of detokenised text: sacreBLEU, case-sensitive, ``13a`` tokenisation."""
    if len(hyps) != len(refs):
        raise ValueError(f"bleu: {len(hyps)} hypotheses but {len(refs)} references")
    return float(sacrebleu.corpus_bleu(list(hyps), [list(refs)], tokenize="13a").score)


def ctc_greedy(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """CTC greedy decoding: best label per frame, repeats merged, blanks removed.

    Args:
        log_probs: ``[B, T, V]`` scores (any monotone transform of probabilities).
        lengths: ``[B]`` valid frames.
    Returns:
        label ids per utterance (blank excluded).
    """
    best = log_probs.argmax(-1).cpu()
    out = []
    for seq, n in zip(best, lengths.tolist()):
        ids = torch.unique_consecutive(seq[: int(n)])
        out.append([int(i) for i in ids if i != blank])
    return out
