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


@dataclass
class ASRHeadConfig:
    """ASR: Linear(D, project_dim) -> (BiLSTM(hidden_dim) -> dropout) x layers -> Linear(2 hidden_dim, V).

    Defaults: s3prl's ``downstream/asr/config.yaml`` (``modelrc.project_dim``, ``RNNs.dim``, ``RNNs.dropout``).
    """

    project_dim: int = 1024
    hidden_dim: int = 1024
    layers: int = 2
    dropout: float = 0.2

    def validate(self) -> None:
        if min(self.project_dim, self.hidden_dim, self.layers) < 1:
            raise ConfigError("config.head.project_dim, hidden_dim and layers must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("config.head.dropout must be in [0, 1)")


class LinearCTCHead(nn.Module):
    """``[B, T, D]`` -> log-probs ``[B, T, V]`` through two linear layers."""

    def __init__(self, dim: int, vocab_size: int, cfg: PRHeadConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, cfg.project_dim), nn.Linear(cfg.project_dim, vocab_size))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.net(x).log_softmax(-1)


class BiLSTMCTCHead(nn.Module):
    """``[B, T, D]`` -> log-probs ``[B, T, V]``: s3prl's ASR ``RNNs`` model.

    ``Linear(D, project_dim)`` (s3prl's ``projector``), then ``layers`` x
    (one-layer BiLSTM(hidden_dim) -> Dropout(dropout)), then ``Linear(2 hidden_dim, V)``.
    As in s3prl's ``RNNLayer``, dropout follows every LSTM layer, the last one included.
    """

    def __init__(self, dim: int, vocab_size: int, cfg: ASRHeadConfig) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, cfg.project_dim)
        sizes = [cfg.project_dim] + [2 * cfg.hidden_dim] * (cfg.layers - 1)
        self.lstms = nn.ModuleList(nn.LSTM(n, cfg.hidden_dim, bidirectional=True, batch_first=True) for n in sizes)
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(2 * cfg.hidden_dim, vocab_size)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        y = self.proj(x)
        for lstm in self.lstms:
            packed = nn.utils.rnn.pack_padded_sequence(y, lengths.cpu(), batch_first=True, enforce_sorted=False)
            y, _ = lstm(packed)
            y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.size(1))
            y = self.dropout(y)
        return self.out(y).log_softmax(-1)
