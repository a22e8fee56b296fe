"""Teacher-target normalisation (``config.teacher.target_norm``), applied to the targets before any loss.

- ``none``: the teacher's features as they are.
- ``instance``: per utterance and channel, subtract the mean over the utterance's VALID frames and divide by
  their standard deviation (biased, + eps): data2vec's instance norm over time (``F.instance_norm`` on
  ``[B, D, T]``), with padding left out of the statistics. Padding frames are set to 0.
- ``layer``: per frame, subtract the mean over channels and divide by their standard deviation (layer norm
  without affine parameters, ``F.layer_norm(y, (D,))``), as data2vec's ``layer_norm_targets``.

Normalised targets are float32, computed with autocast off.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TARGET_NORMS = ("none", "instance", "layer")
EPS = 1e-5


def normalize_targets(y: torch.Tensor, valid: torch.Tensor, kind: str, eps: float = EPS) -> torch.Tensor:
    """Normalise teacher targets.

    Args:
        y: ``[B, T, D]`` teacher features.
        valid: ``[B, T]`` bool, True on real frames (the statistics of ``instance`` use only these).
        kind: ``none`` | ``instance`` | ``layer``.
        eps: added to the variance.
    Returns:
        ``[B, T, D]``: ``y`` itself for ``none`` (the same tensor, untouched), else float32 normalised targets.
    """
    if kind == "none":
        return y
    if y.shape[:2] != valid.shape:
        raise ValueError(f"valid {tuple(valid.shape)} does not match targets {tuple(y.shape)}")
    with torch.autocast(device_type=y.device.type, enabled=False):
        y = y.float()
        if kind == "layer":
            return F.layer_norm(y, (y.size(-1),), eps=eps)
        if kind == "instance":
            w = valid[..., None].to(y.dtype)  # [B, T, 1]
            n = w.sum(1, keepdim=True).clamp_min(1.0)  # [B, 1, 1]
            mean = (y * w).sum(1, keepdim=True) / n  # [B, 1, D]
            var = (((y - mean) * w) ** 2).sum(1, keepdim=True) / n
            return (y - mean) * torch.rsqrt(var + eps) * w
    raise ValueError(f"target_norm={kind!r} is not one of: {', '.join(TARGET_NORMS)}")
