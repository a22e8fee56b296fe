"""CTC heads of the SUPERB PR and ASR tasks (blank = label 0)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from s3prl_colld.config import ConfigError


@dataclass
class PRHeadConfig:
    """PR: Linear(D, project_dim) -> Linear(project_dim, V)."""

    project_dim: int = 256

    def validate(self) -> None:
        if self.project_dim < 1:
            raise ConfigError("config.head.project_dim must be >= 1")


@dataclass
class ASRHeadConfig:
    """ASR: Linear(D, project_dim) -> BiLSTM(hidden_dim) x layers -> Linear(2 hidden_dim, V)."""

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
    """``[B, T, D]`` -> log-probs ``[B, T, V]`` through a projection and a bidirectional LSTM."""

    def __init__(self, dim: int, vocab_size: int, cfg: ASRHeadConfig) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, cfg.project_dim)
        self.lstm = nn.LSTM(cfg.project_dim, cfg.hidden_dim, num_layers=cfg.layers, bidirectional=True,
                            batch_first=True, dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.out = nn.Linear(2 * cfg.hidden_dim, vocab_size)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(self.proj(x), lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        y, _ = self.lstm(packed)
        y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.size(1))
        return self.out(y).log_softmax(-1)
