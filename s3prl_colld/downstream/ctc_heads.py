"""CTC heads of the SUPERB PR and ASR tasks (blank = label 0)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from s3prl_colld.config import ConfigError


@dataclass
class PRHeadConfig:
    """PR: Linear(D, project_dim) -> Linear(project_dim, V) (s3prl ``ctc/libriphone.yaml``: ``FrameLevel``)."""

    project_dim: int = 256

    def validate(self) -> None:
        if self.project_dim < 1:
            raise ConfigError("config.head.project_dim must be >= 1")


ASR_HEAD_KINDS = ("bilstm", "conv")


@dataclass
class ASRHeadConfig:
    """ASR: Linear(D, project_dim) -> (BiLSTM(hidden_dim) -> dropout) x layers -> Linear(2 hidden_dim, V).

    Defaults: s3prl's ``downstream/asr/config.yaml`` (``modelrc.project_dim``, ``RNNs.dim``, ``RNNs.dropout``).
    ``kind: conv`` (not in s3prl; the 2-core mini preset, :class:`ConvCTCHead`) replaces the BiLSTMs by
    ``layers`` residual dilated convolutions of ``hidden_dim`` channels and width ``kernel``. ``sample_rate`` R
    concatenates every R frames before the projection (s3prl's ``RNNs.sample_rate`` with ``sample_style:
    concat``, applied once at the input): the head then runs at 1/R of the upstream's frame rate.
    ``upsample`` k (not in s3prl; as the ST head's ``ctc_upsample``) lets the output layer emit k CTC frames per
    head frame (``Linear(., k V)`` read as k frames of V classes): a 50 Hz upstream then meets character CTC at
    100 Hz, as fbank's frames do.
    """

    project_dim: int = 1024
    hidden_dim: int = 1024
    layers: int = 2
    dropout: float = 0.2
    kind: str = "bilstm"
    kernel: int = 5
    sample_rate: int = 1
    upsample: int = 1

    def validate(self) -> None:
        if min(self.project_dim, self.hidden_dim, self.layers) < 1:
            raise ConfigError("config.head.project_dim, hidden_dim and layers must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("config.head.dropout must be in [0, 1)")
        if self.kind not in ASR_HEAD_KINDS:
            raise ConfigError(f"config.head.kind={self.kind!r}: use one of {', '.join(ASR_HEAD_KINDS)}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ConfigError(f"config.head.kernel={self.kernel}: use an odd width >= 1")
        if self.sample_rate < 1:
            raise ConfigError(f"config.head.sample_rate={self.sample_rate}: use an integer >= 1 (1: every frame)")
        if self.upsample < 1:
            raise ConfigError(f"config.head.upsample={self.upsample}: use an integer >= 1 (1: one output per frame)")


def split_outputs(logits: torch.Tensor, k: int) -> torch.Tensor:
    """``[B, T, k V]`` -> ``[B, k T, V]``: each frame's ``k`` groups of ``V`` logits become ``k`` frames in a row."""
    return logits.reshape(logits.size(0), logits.size(1) * k, logits.size(2) // k)


def concat_frames(x: torch.Tensor, lengths: torch.Tensor, rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, T, D]`` -> ``[B, ceil(T / rate), rate * D]``: every ``rate`` frames side by side, the frames past each
    utterance's length set to 0 (so the last group does not read its batch's padding); lengths become
    ``ceil(lengths / rate)``."""
    if rate == 1:
        return x, lengths
    valid = torch.arange(x.size(1), device=x.device)[None, :] < lengths.to(x.device)[:, None]
    x = x.masked_fill(~valid.unsqueeze(-1), 0.0)
    pad = (-x.size(1)) % rate
    x = nn.functional.pad(x, (0, 0, 0, pad))
    return x.reshape(x.size(0), x.size(1) // rate, rate * x.size(2)), (lengths + rate - 1) // rate


class LinearCTCHead(nn.Module):
    """``[B, T, D]`` -> log-probs ``[B, T, V]`` through two linear layers."""

    def __init__(self, dim: int, vocab_size: int, cfg: PRHeadConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, cfg.project_dim), nn.Linear(cfg.project_dim, vocab_size))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.net(x).log_softmax(-1)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames of the output per utterance: the input's."""
        return lengths


class BiLSTMCTCHead(nn.Module):
    """``[B, T, D]`` -> log-probs ``[B, T, V]``: s3prl's ASR ``RNNs`` model.

    ``Linear(D, project_dim)`` (s3prl's ``projector``), then ``layers`` x
    (one-layer BiLSTM(hidden_dim) -> Dropout(dropout)), then ``Linear(2 hidden_dim, V)``.
    As in s3prl's ``RNNLayer``, dropout follows every LSTM layer, the last one included.
    """

    def __init__(self, dim: int, vocab_size: int, cfg: ASRHeadConfig) -> None:
        super().__init__()
        self.rate = cfg.sample_rate
        self.proj = nn.Linear(dim * cfg.sample_rate, cfg.project_dim)
        sizes = [cfg.project_dim] + [2 * cfg.hidden_dim] * (cfg.layers - 1)
        self.lstms = nn.ModuleList(nn.LSTM(n, cfg.hidden_dim, bidirectional=True, batch_first=True) for n in sizes)
        self.dropout = nn.Dropout(cfg.dropout)
        self.up = cfg.upsample
        self.out = nn.Linear(2 * cfg.hidden_dim, cfg.upsample * vocab_size)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, T, D]`` -> ``[B, T', V]`` (``T' = upsample * ceil(T / sample_rate)``; :meth:`output_lengths`)."""
        x, lengths = concat_frames(x, lengths, self.rate)
        y = self.proj(x)
        for lstm in self.lstms:
            packed = nn.utils.rnn.pack_padded_sequence(y, lengths.cpu(), batch_first=True, enforce_sorted=False)
            y, _ = lstm(packed)
            y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.size(1))
            y = self.dropout(y)
        return split_outputs(self.out(y), self.up).log_softmax(-1)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames of the output per utterance: ``upsample * ceil(lengths / sample_rate)``."""
        return (lengths + self.rate - 1) // self.rate * self.up


class ConvCTCHead(nn.Module):
    """``[B, T, D]`` -> log-probs ``[B, T', V]``: the ASR mini preset's head (``kind: conv``; not in s3prl).

    Frames concatenated by ``sample_rate`` (``T' = ceil(T / sample_rate)``), ``Linear(R D, project_dim)``, a
    ``Linear(project_dim, hidden_dim)`` when they differ, then ``layers`` x residual
    ``x + Dropout(GELU(Conv1d(LayerNorm(x))))`` of width ``kernel`` and dilation 1, 2, 4, ... (receptive field
    ``1 + (kernel - 1)(2^layers - 1)`` frames), then ``Linear(hidden_dim, upsample V)`` read as ``upsample``
    output frames per head frame (``T' = upsample * ceil(T / sample_rate)``). Padded frames are zeroed before
    every convolution, so an utterance's output does not depend on the padding of its batch.
    """

    def __init__(self, dim: int, vocab_size: int, cfg: ASRHeadConfig) -> None:
        super().__init__()
        self.rate = cfg.sample_rate
        self.proj = nn.Sequential(nn.Linear(dim * cfg.sample_rate, cfg.project_dim),
                                  *([nn.Linear(cfg.project_dim, cfg.hidden_dim)] if cfg.project_dim != cfg.hidden_dim else []))
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.hidden_dim) for _ in range(cfg.layers))
        self.convs = nn.ModuleList(nn.Conv1d(cfg.hidden_dim, cfg.hidden_dim, cfg.kernel, dilation=2 ** i,
                                             padding=(cfg.kernel - 1) // 2 * 2 ** i) for i in range(cfg.layers))
        self.dropout = nn.Dropout(cfg.dropout)
        self.up = cfg.upsample
        self.out = nn.Linear(cfg.hidden_dim, cfg.upsample * vocab_size)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x, lengths = concat_frames(x, lengths, self.rate)
        valid = (torch.arange(x.size(1), device=x.device)[None, :] < lengths.to(x.device)[:, None]).unsqueeze(-1)
        y = self.proj(x)
        for norm, conv in zip(self.norms, self.convs):
            h = norm(y).masked_fill(~valid, 0.0).transpose(1, 2)  # [B, C, T']
            y = y + self.dropout(nn.functional.gelu(conv(h))).transpose(1, 2)
        return split_outputs(self.out(y), self.up).log_softmax(-1)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames of the output per utterance: ``upsample * ceil(lengths / sample_rate)``."""
        return (lengths + self.rate - 1) // self.rate * self.up
