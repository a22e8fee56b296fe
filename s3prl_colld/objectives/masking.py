"""Span masks in the wav2vec 2.0 / HuBERT way, computed with tensor ops.

Every valid frame starts a span with probability ``p = mask_prob / span`` so
that about ``mask_prob`` of the frames would be covered without overlap
(wav2vec 2.0's definition: "mask start probability" times span length);
a span covers ``span`` frames from its start. Padding is never masked, and
each utterance has at least ``min_spans`` spans.
"""

from __future__ import annotations

import torch


def span_mask(valid: torch.Tensor, mask_prob: float, span: int, min_spans: int = 1,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Random span mask.

    Args:
        valid: ``[B, T]`` bool, True on real (non-padding) frames.
        mask_prob: expected share of starts times ``span`` (HuBERT: 0.8 with span 10).
        span: span length in frames.
        min_spans: at least this many spans per utterance (if it has frames).
        generator: RNG (defaults to torch's global RNG).
    Returns:
        ``[B, T]`` bool, True on masked frames; always False on padding.
    """
    B, T = valid.shape
    device = valid.device
    lengths = valid.sum(1)  # [B]
    # a start may sit anywhere a full span fits (or at 0 for very short utterances)
    last_start = (lengths - span).clamp_min(0)  # [B]
    pos = torch.arange(T, device=device)[None, :]  # [1, T]
    can_start = pos <= last_start[:, None]
    p = min(1.0, mask_prob / span)
    u = torch.rand(B, T, generator=generator, device="cpu").to(device)
    starts = (u < p) & can_start & valid
    # guarantee min_spans: force the lowest-u positions among allowed starts
    if min_spans > 0:
        scores = torch.where(can_start & valid, u, torch.full_like(u, 2.0))
        k = min(min_spans, T)
        forced = torch.zeros_like(starts)
        idx = scores.topk(k, dim=1, largest=False).indices
        forced.scatter_(1, idx, True)
        forced &= can_start & valid
        starts |= forced
    # dilate starts into spans: frame t is masked if a start lies in (t - span, t]
    counts = torch.nn.functional.conv1d(starts.float()[:, None], torch.ones(1, 1, span, device=device),
                                        padding=span - 1)[:, 0, :T]
    return (counts > 0) & valid
