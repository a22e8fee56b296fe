"""s3prl's downstream learning-rate schedulers (``s3prl/schedulers.py``), as plain functions.

s3prl wraps each in ``torch.optim.lr_scheduler.LambdaLR`` and calls
``scheduler.step()`` after every optimizer update, so the update that follows
``s`` earlier updates runs at ``lr * f(s)``. :func:`lr_multiplier` returns that
``f(s)`` for a :class:`~s3prl_colld.downstream.schema.DownstreamOptimizerConfig`.
"""

from __future__ import annotations

import math

from s3prl_colld.downstream.schema import DownstreamOptimizerConfig


def lr_multiplier(updates_done: int, total_steps: int, cfg: DownstreamOptimizerConfig) -> float:
    """``f(s)`` for the update after ``updates_done`` (``s``) updates of ``total_steps`` (``T``).

    With ``W = cfg.warmup_steps``: ``s / W`` while ``s < W``, then

    - ``constant``: 1;
    - ``linear``: ``(T - s) / (T - W)`` (floored at 0), scaled into ``[final_lr_ratio, 1]``;
    - ``cosine``: ``0.5 (1 + cos(pi p))`` with ``p = (s - W) / (T - W)``, scaled the same way;
    - ``sqrt``: ``1 / sqrt(max(s, W))``.
    """
    s, w = updates_done, cfg.warmup_steps
    if s < w:
        return s / max(1, w)
    if cfg.decay == "constant":
        return 1.0
    if cfg.decay == "sqrt":
        return 1.0 / math.sqrt(max(s, w))
    span = max(1, total_steps - w)
    if cfg.decay == "linear":
        shape = max(0.0, (total_steps - s) / span)
    else:  # cosine
        shape = max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(1.0, (s - w) / span))))
    return cfg.final_lr_ratio + (1.0 - cfg.final_lr_ratio) * shape
