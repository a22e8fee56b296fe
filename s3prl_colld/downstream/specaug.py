"""SpecAugment on featurized upstream features, as s3prl's downstream runner applies it (training only).

s3prl (``downstream/runner.py``) runs ``SpecAug`` (``downstream/specaug.py``) on
the featurizer's output when the config has a ``specaug`` block (its ASR
recipe), between the featurizer and the downstream head, in training steps
only. The same three operations in the same order, on a padded batch
``[B, T, D]`` with valid lengths ``[B]``:

1. **time warp** (per utterance, on its valid frames; skipped when
   ``T_i <= 2 * window``): a centre ``c ~ U[window, T_i - window)`` moves to
   ``w ~ U[c - window, c + window) + 1``; frames ``[0, c)`` are resized to ``w``
   frames and ``[c, T_i)`` to ``T_i - w`` (``F.interpolate``, bicubic);
2. **frequency masks**: ``num_freq_mask`` bands per utterance, widths
   ``~ U[low, high)``, starts ``~ U[0, max(1, D - widest))``, set to 0;
3. **time masks**: ``num_time_mask`` spans per utterance, drawn the same way
   over the padded length ``T`` (as s3prl, which pads the batch first), set to 0.

Random numbers come from torch's global CPU generator (seeded and saved in
checkpoints by the runner), so a resumed run draws the same masks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from s3prl_colld.downstream.schema import SpecAugConfig


def time_warp(x: torch.Tensor, window: int, mode: str = "bicubic") -> torch.Tensor:
    """Warp one utterance ``x [T, D]`` along time; returns ``[T, D]`` (``x`` itself when too short)."""
    t = x.size(0)
    if window < 1 or t - window <= window:
        return x
    centre = int(torch.randint(window, t - window, ()))
    warped = int(torch.randint(centre - window, centre + window, ())) + 1
    img = x[None, None]  # [1, 1, T, D]
    left = F.interpolate(img[:, :, :centre], size=(warped, x.size(1)), mode=mode, align_corners=False)
    right = F.interpolate(img[:, :, centre:], size=(t - warped, x.size(1)), mode=mode, align_corners=False)
    return torch.cat([left, right], dim=2)[0, 0]


def band_mask(batch: int, size: int, num: int, width_range: list[int], device: torch.device) -> torch.Tensor:
    """``[B, size]`` bool: ``num`` bands per row, widths ``~ U[low, high)``, starts ``~ U[0, max(1, size - widest))``."""
    if num < 1:
        return torch.zeros(batch, size, dtype=torch.bool, device=device)
    low, high = width_range
    widths = torch.randint(low, high, (batch, num))[..., None]  # [B, num, 1]
    starts = torch.randint(0, max(1, size - int(widths.max())), (batch, num))[..., None]
    pos = torch.arange(size)[None, None]  # [1, 1, size]
    return ((starts <= pos) & (pos < starts + widths)).any(1).to(device)


def spec_augment(x: torch.Tensor, lengths: torch.Tensor, cfg: SpecAugConfig) -> torch.Tensor:
    """``x [B, T, D]`` (zero-padded after ``lengths [B]``) -> augmented ``[B, T, D]``, padding still zero."""
    out = x
    if cfg.apply_time_warp and cfg.time_warp_window > 0:
        rows = []
        for i, n in enumerate(lengths.tolist()):
            warped = time_warp(x[i, :n], cfg.time_warp_window, cfg.time_warp_mode)
            rows.append(F.pad(warped, (0, 0, 0, x.size(1) - n)))
        out = torch.stack(rows)
    b, t, d = out.shape
    if cfg.apply_freq_mask and cfg.num_freq_mask > 0:
        out = out.masked_fill(band_mask(b, d, cfg.num_freq_mask, cfg.freq_mask_width_range, out.device)[:, None], 0.0)
    if cfg.apply_time_mask and cfg.num_time_mask > 0:
        out = out.masked_fill(band_mask(b, t, cfg.num_time_mask, cfg.time_mask_width_range, out.device)[..., None],
                              0.0)
    return out
