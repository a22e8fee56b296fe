"""Student front-ends: the waveform CNN (HuBERT's) and the light Fbank front-end.

Both map a padded batch of waveforms ``[B, N]`` (16 kHz) to frames
``[B, T, C]`` at 50 Hz plus a validity mask ``[B, T]``, and report their
``downsample_rate`` (samples per frame).

Also here: ``normalize_waveform`` (the per-utterance waveform layer norm that
s3prl's HuBERT / wav2vec 2.0 / WavLM experts apply when the checkpoint's
``task_cfg.normalize`` is true) and ``GradMultiply`` (fairseq's gradient
scaling of the CNN output, ``feature_grad_mult``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from s3prl_colld.constants import FRAME_STRIDE, SAMPLE_RATE


def normalize_waveform(wav: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Per-utterance ``F.layer_norm`` over the valid samples, as s3prl's experts do; padding stays 0.

    ``wav [B, N]`` (zero-padded), ``lengths [B]`` -> float32 ``[B, N]``. Each
    utterance is normalised exactly as ``F.layer_norm(wav_b[:n_b], (n_b,))``
    (zero mean, unit variance, eps 1e-5), in float32 and outside autocast, so
    a student's CNN sees bit for bit what the teacher's CNN sees.
    """
    out = torch.zeros_like(wav, dtype=torch.float32)
    with torch.autocast(device_type=wav.device.type, enabled=False):
        for b, n in enumerate(lengths.tolist()):
            if n > 0:
                out[b, :n] = F.layer_norm(wav[b, :n].float(), (n,))
    return out


class GradMultiply(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by ``scale`` (fairseq's ``feature_grad_mult``)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:  # noqa: D102
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        return grad * ctx.scale, None


def _hubert_cnn() -> list[list[int]]:
    return [[512, 10, 5]] + [[512, 3, 2]] * 4 + [[512, 2, 2]] * 2


@dataclass
class CNNConfig:
    conv_layers: list[list[int]] = field(default_factory=_hubert_cnn)  # [dim, kernel, stride]
    mode: str = "default"  # default: GroupNorm in the first layer (HuBERT Base); layer_norm: LN in every layer
    conv_bias: bool = False


@dataclass
class FbankConfig:
    n_mels: int = 80
    hidden: int = 256  # channels of the two subsampling convs
    out_dim: int = 512  # = the teacher's CNN output dim (what stage 1 regresses)


class WavCNN(nn.Module):
    """HuBERT's feature extractor (conv, [GroupNorm|LayerNorm], GELU) x layers.

    ``channels_last`` and ``low_precision_norm`` choose how it runs, not what it
    computes (see ``conv_stack``); ``runner.cnn_channels_last`` and
    ``runner.fast_kernels`` set them for training.
    """

    channels_last: bool = False
    low_precision_norm: bool = False

    def __init__(self, cfg: CNNConfig) -> None:
        super().__init__()
        layers, in_dim = [], 1
        for i, (dim, k, s) in enumerate(cfg.conv_layers):
            block: list[nn.Module] = [nn.Conv1d(in_dim, dim, k, stride=s, bias=cfg.conv_bias)]
            if cfg.mode == "default" and i == 0:
                block.append(nn.GroupNorm(dim, dim, affine=True))
            elif cfg.mode == "layer_norm":
                block.append(_ChannelLayerNorm(dim))
            block.append(nn.GELU())
            layers.append(nn.Sequential(*block))
            in_dim = dim
        self.layers = nn.ModuleList(layers)
        self.kernels = [k for _, k, _ in cfg.conv_layers]
        self.strides = [s for _, _, s in cfg.conv_layers]
        self.out_dim = in_dim
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight)

    @property
    def downsample_rate(self) -> int:
        return math.prod(self.strides)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames per utterance for ``lengths`` samples."""
        for k, s in zip(self.kernels, self.strides):
            lengths = torch.div(lengths - k, s, rounding_mode="floor") + 1
        return lengths.clamp_min(0)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``wav [B, N]``, ``lengths [B]`` -> ``(frames [B, T, C], valid [B, T])``."""
        x = conv_stack(self.layers, wav, self.channels_last, self.low_precision_norm).transpose(1, 2)
        out_len = self.output_lengths(lengths)
        valid = torch.arange(x.size(1), device=x.device)[None, :] < out_len[:, None]
        return x, valid


class _ChannelLayerNorm(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T]
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


# ---------------------------------------------------------------- running a fairseq-style conv stack
def conv_stack(blocks: Iterable[nn.Module], wav: torch.Tensor, channels_last: bool = False,
               low_precision_norm: bool = False) -> torch.Tensor:
    """Run conv blocks (``nn.Sequential(Conv1d, [Dropout], [norm], GELU)``, ours or fairseq's) on ``wav [B, N]``.

    Returns ``[B, C, T]``. Two ways, the same function up to rounding:

    - ``channels_last=False``: each block as written (the reference);
    - ``channels_last=True``: each conv as a ``conv2d`` on ``[B, C, 1, T]``
      tensors in channels-last layout (what oneDNN and cuDNN's tensor-core
      kernels prefer); the result is a ``[B, C, T]`` view whose
      ``transpose(1, 2)`` is contiguous. Blocks with other modules fall back
      to the reference.

    ``low_precision_norm``: under autocast, a GroupNorm / LayerNorm whose
    input is fp16 / bf16 normalises it in that dtype (statistics are
    accumulated in fp32 by the kernels) instead of autocast's fp32 round trip
    of the largest activation of the step. fairseq's ``Fp32GroupNorm`` keeps
    its own fp32 semantics.
    """
    blocks = list(blocks)
    if not channels_last or not all(_cl_supported(m) for b in blocks for m in _flat(b)):
        x = wav[:, None, :]
        for block in blocks:
            x = _run_3d(block, x, low_precision_norm)
        return x
    x = wav[:, None, None, :]  # [B, 1, 1, N]
    first = _norm_conv_parts(blocks[0]) if blocks else None
    if first is not None:  # the first block's conv and per-channel GroupNorm as one batched matmul
        conv, norm, gelu = first
        x = gelu(_conv_group_norm(conv, norm, wav).transpose(1, 2).unsqueeze(2))  # [B, C, 1, T], channels-last
        blocks = blocks[1:]
    for block in blocks:
        for m in _flat(block):
            if isinstance(m, nn.Conv1d):
                w = m.weight.unsqueeze(2)  # [C_out, C_in, 1, k]
                if w.size(1) > 1:
                    w = w.contiguous(memory_format=torch.channels_last)
                x = F.conv2d(x, w, m.bias, stride=(1, m.stride[0]), padding=(0, m.padding[0]),
                             dilation=(1, m.dilation[0]), groups=m.groups)
            elif isinstance(m, nn.GroupNorm):
                x = _norm(m, x, low_precision_norm).contiguous(memory_format=torch.channels_last)
            elif isinstance(m, nn.LayerNorm):  # over channels: [B, C, 1, T] -> [B, 1, T, C] (a view) and back
                x = _norm(m, x.permute(0, 2, 3, 1), low_precision_norm).permute(0, 3, 1, 2)
            elif type(m).__name__ != "TransposeLast":  # GELU, Dropout: elementwise, the layout is kept
                x = m(x)
    return x[:, :, 0, :]


def _norm_conv_parts(block: nn.Module) -> tuple[nn.Conv1d, nn.GroupNorm, nn.Module] | None:
    """``(conv, norm, gelu)`` when ``block`` is HuBERT's first block: a bias-free ``Conv1d(1 -> C)`` without
    padding, [an inactive Dropout], ``GroupNorm(C, C)``, GELU; else None."""
    leaves = [m for m in _flat(block) if not (isinstance(m, nn.Dropout) and (m.p == 0 or not m.training))]
    if len(leaves) != 3 or not isinstance(leaves[2], nn.GELU):
        return None
    conv, norm = leaves[0], leaves[1]
    if not (isinstance(conv, nn.Conv1d) and conv.in_channels == 1 and conv.groups == 1 and conv.bias is None
            and conv.padding == (0,) and conv.dilation == (1,) and isinstance(norm, nn.GroupNorm)
            and norm.num_groups == norm.num_channels == conv.out_channels and norm.affine):
        return None
    return conv, norm, leaves[2]


def _conv_group_norm(conv: nn.Conv1d, norm: nn.GroupNorm, wav: torch.Tensor) -> torch.Tensor:
    """``norm(conv(wav[:, None]))`` for a one-channel conv and a per-channel GroupNorm, time-major.

    ``wav [B, N]`` -> ``[B, T, C]``. The norm's per-(utterance, channel)
    statistics over time follow from the ``k x k`` covariance of the
    waveform's windows (``var = w^T Cov w``), so the conv output is never
    normalised in a separate pass: one ``baddbmm`` with per-utterance weights
    writes the normalised activation (the largest of the step), in the dtype
    the conv would have (autocast's, else ``wav``'s). The statistics (a few
    ``k x k`` products) are taken in fp64, which keeps the result as close to
    the float64 truth as the reference's fp32 GroupNorm.
    """
    k, s = conv.kernel_size[0], conv.stride[0]
    windows = wav.unfold(1, k, s)  # [B, T, k], a view
    # var = w^T Cov w cancels: in fp32 it lost ~1e-4 of the output on a half-silent utterance (MPS has no fp64)
    stats = torch.float32 if wav.device.type == "mps" else torch.float64
    w = conv.weight[:, 0, :].to(stats)  # [C, k]
    with torch.autocast(device_type=wav.device.type, enabled=False):
        f = windows.to(stats)
        mean = f.mean(1)  # [B, k]
        centred = f - mean[:, None, :]
        cov = centred.transpose(1, 2) @ centred / f.size(1)  # [B, k, k]
        var = ((w @ cov) * w).sum(-1)  # [B, C]
        scale = (norm.weight.to(stats) * torch.rsqrt(var + norm.eps)).float()  # [B, C]
        shift = norm.bias.float() - (mean @ w.t()).float() * scale  # [B, C]
        weight = w.t().float()[None] * scale[:, None, :]  # [B, k, C]
    dtype = torch.get_autocast_dtype(wav.device.type) if torch.is_autocast_enabled(wav.device.type) else wav.dtype
    return torch.baddbmm(shift[:, None, :].to(dtype), windows.to(dtype), weight.to(dtype))  # the conv's dtype


def _flat(block: nn.Module) -> list[nn.Module]:
    """The leaf modules of a block, in order (fairseq nests its channel LayerNorm between two TransposeLast)."""
    if isinstance(block, nn.Sequential):
        return [leaf for m in block for leaf in _flat(m)]
    return [block]


def _cl_supported(m: nn.Module) -> bool:
    if type(m).__name__ == "TransposeLast":  # fairseq's, around its channel LayerNorm: handled by the permute
        return True
    return isinstance(m, (nn.Conv1d, nn.GroupNorm, nn.LayerNorm, nn.GELU, nn.Dropout)) and (
        not isinstance(m, nn.Conv1d) or m.padding_mode == "zeros" and isinstance(m.padding, tuple))


def _run_3d(block: nn.Module, x: torch.Tensor, low_precision_norm: bool) -> torch.Tensor:
    if not low_precision_norm or not torch.is_autocast_enabled(x.device.type) or not isinstance(block, nn.Sequential):
        return block(x)
    for m in block:  # as nn.Sequential, with our norms in the conv output's dtype
        if isinstance(m, nn.GroupNorm):
            x = _norm(m, x, True)
        elif isinstance(m, _ChannelLayerNorm):
            x = _norm(m, x.transpose(1, 2), True).transpose(1, 2)
        else:
            x = m(x)
    return x


def _norm(m: nn.GroupNorm | nn.LayerNorm, x: torch.Tensor, low_precision_norm: bool) -> torch.Tensor:
    """``m(x)`` for a group norm or a layer norm (over its last dims) with fairseq's precision rules.

    ``Fp32*Norm`` runs in fp32 and casts back; with ``low_precision_norm`` under fp16/bf16 autocast the
    norm runs in ``x``'s dtype instead of autocast's fp32; otherwise as ``m`` would.
    """
    if isinstance(m, nn.GroupNorm):
        def norm(x: torch.Tensor, w: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor:
            return F.group_norm(x, m.num_groups, w, b, m.eps)
    else:
        def norm(x: torch.Tensor, w: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor:
            return F.layer_norm(x, m.normalized_shape, w, b, m.eps)
    if type(m).__name__.startswith("Fp32"):  # fairseq's Fp32GroupNorm / Fp32LayerNorm
        w, b = (None if p is None else p.float() for p in (m.weight, m.bias))
        return norm(x.float(), w, b).type_as(x)
    if low_precision_norm and x.dtype in (torch.float16, torch.bfloat16) and torch.is_autocast_enabled(x.device.type):
        w, b = (None if p is None else p.to(x.dtype) for p in (m.weight, m.bias))
        with torch.autocast(device_type=x.device.type, enabled=False):
            return norm(x, w, b)
    return norm(x, m.weight, m.bias)


class FbankFrontend(nn.Module):
    """80-dim log-mel filterbanks (25 ms / 10 ms) -> 2 convs (stride 2 overall) -> ``out_dim`` at 50 Hz.

    Frame ``k`` of the output covers fbank frames ``2k, 2k+1`` (and neighbours),
    i.e. the same 20 ms hop as the CNN, so targets align by truncation.
    """

    def __init__(self, cfg: FbankConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.fbank = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=400, win_length=400, hop_length=160, n_mels=cfg.n_mels, center=False
        )
        self.norm = nn.LayerNorm(cfg.n_mels)
        self.conv = nn.Sequential(
            nn.Conv1d(cfg.n_mels, cfg.hidden, kernel_size=3, stride=1, padding=1),
            nn.GELU(),
            nn.Conv1d(cfg.hidden, cfg.out_dim, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.out_dim = cfg.out_dim

    downsample_rate = FRAME_STRIDE

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        frames = torch.div(lengths - 400, 160, rounding_mode="floor") + 1
        return torch.div(frames.clamp_min(0), 2, rounding_mode="floor")

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``wav [B, N]``, ``lengths [B]`` -> ``(frames [B, T, C], valid [B, T])``."""
        with torch.autocast(device_type=wav.device.type, enabled=False):
            spec = self.fbank(wav.float()).clamp_min(1e-10).log()  # [B, n_mels, F]
        x = self.norm(spec.transpose(1, 2)).transpose(1, 2)
        x = self.conv(x).transpose(1, 2)  # [B, F // 2, C]
        out_len = self.output_lengths(lengths)
        valid = torch.arange(x.size(1), device=x.device)[None, :] < out_len[:, None]
        return x, valid
