"""wav2vec 2.0's convolutional position embedding as an FFT product: the same function, far less work.

The embedding is ``Conv1d(D, D, K=128, padding=K // 2, groups=16)``. Run
directly it costs ``D * D / G * K`` multiply-adds per frame (4.7 M at
HuBERT Base, 68 GFLOP per batch of 24 x 6 s), and cuDNN has no fast
half-precision kernel for a grouped conv with so long a kernel. As a
correlation in the frequency domain it is an rFFT of the input and of the
kernel, one ``(D / G) x (D / G)`` complex matrix product per group and
frequency, and an inverse rFFT: a few hundred MFLOP, in fp32 (more exact than
the bf16 conv it replaces). Autograd differentiates it, weight norm included.

``conv1d_fft`` is used by the student's ``ConvPositionEmbedding`` and, through
``use_fft_pos_conv``, by a fairseq-style teacher's ``encoder.pos_conv``
(``runner.fft_pos_conv``); tests/test_speed.py checks both against the direct
conv, forward and gradients.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn


def fft_size(n: int) -> int:
    """The smallest ``m >= n`` whose prime factors are 2, 3, 5 and 7 (sizes the FFT libraries do fast)."""
    m = n
    while True:
        r = m
        for p in (2, 3, 5, 7):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def conv1d_fft(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int,
               groups: int) -> torch.Tensor:
    """``F.conv1d(x, weight, bias, padding=padding, groups=groups)`` computed with FFTs.

    Args:
        x: ``[B, C_in, T]``.
        weight: ``[C_out, C_in / groups, K]``.
        bias: ``[C_out]`` or None.
    Returns:
        ``[B, C_out, T + 2 * padding - K + 1]`` in the dtype the conv would return (autocast's, else ``x``'s);
        computed in fp32.
    """
    b, c_in, t = x.shape
    c_out, c_group, k = weight.shape
    if c_in != c_group * groups or c_out % groups:
        raise ValueError(f"conv1d_fft: weight {tuple(weight.shape)} does not fit x {tuple(x.shape)} with "
                         f"groups={groups}")
    dev = x.device.type
    dtype = (torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev)
             else torch.promote_types(x.dtype, weight.dtype))
    t_out = t + 2 * padding - k + 1
    n = fft_size(t + 2 * padding)  # a circular correlation of this length wraps nothing into the first t_out
    with torch.autocast(device_type=dev, enabled=False):
        xf = torch.fft.rfft(F.pad(x.float(), (padding, 0)), n=n)  # [B, C_in, F]; the right padding is implicit
        wf = torch.fft.rfft(weight.float(), n=n).conj()  # correlation = product with the conjugate spectrum
        f = xf.size(-1)
        y = torch.einsum("goif,bgif->bgof", wf.view(groups, c_out // groups, c_group, f),
                         xf.view(b, groups, c_group, f))
        y = torch.fft.irfft(y.reshape(b, c_out, f), n=n)[..., :t_out]
        if bias is not None:
            y = y + bias.float()[:, None]
    return y.to(dtype)


def fft_conv_forward(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` (``[B, C_in, T]`` -> ``[B, C_out, T']``) through ``conv1d_fft``; ``conv`` must be
    ``fft_supported``."""
    return conv1d_fft(x, conv.weight, conv.bias, conv.padding[0], conv.groups)


def fft_supported(conv: nn.Module) -> bool:
    """A ``Conv1d`` that ``conv1d_fft`` computes exactly: stride 1, no dilation, symmetric zero padding."""
    return (isinstance(conv, nn.Conv1d) and conv.stride == (1,) and conv.dilation == (1,)
            and isinstance(conv.padding, tuple) and conv.padding_mode == "zeros")


def use_fft_pos_conv(model: nn.Module, enable: bool = True) -> int:
    """Run the position-embedding conv of every fairseq-style encoder in ``model`` (``encoder.pos_conv``, an
    ``nn.Sequential`` whose first module is the weight-normed ``Conv1d``) through ``conv1d_fft``, or back;
    returns how many. The weight norm's pre-hook still runs: only the conv's arithmetic changes."""
    n = 0
    for module in model.modules():
        pos = getattr(module, "pos_conv", None)
        if isinstance(pos, nn.Sequential) and len(pos) and fft_supported(pos[0]):
            if enable:
                pos[0].forward = types.MethodType(fft_conv_forward, pos[0])
            else:
                pos[0].__dict__.pop("forward", None)
            n += 1
    return n
