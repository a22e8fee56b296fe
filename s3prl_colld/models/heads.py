"""Prediction heads and the layer map: which student layer predicts which teacher layer."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from s3prl_colld.config import ConfigError, choice


def uniform_layer(i: int, student_layers: int, teacher_layers: int) -> int:
    """``floor(i * L_T / L_S + 1/2)`` in integers: round half up (Python's ``round`` rounds half to even,
    which maps an 8-layer student onto 12 teacher layers as 2, 3, 4, 6, 8, 9, 10, 12 instead of
    2, 3, 5, 6, 8, 9, 11, 12)."""
    return (2 * i * teacher_layers + student_layers) // (2 * student_layers)


@dataclass
class HeadConfig:
    # uniform: (i, round_half_up(i * L_T / L_S)) for i = 1..L_S | last: last layer -> targets | pairs
    map: str = "uniform"
    targets: list[int] = field(default_factory=lambda: [4, 8, 12])  # teacher layers, for map=last
    pairs: list[list[int]] = field(default_factory=list)  # [[student_layer, teacher_layer], ...], for map=pairs
    kind: str = "linear"  # linear | mlp (Linear -> GELU -> Linear)
    mlp_hidden: int = 0  # 0 = the student's width

    def validate(self) -> None:
        choice(self.map, ("uniform", "last", "pairs"), "config.heads.map")
        choice(self.kind, ("linear", "mlp"), "config.heads.kind")

    def resolve(self, student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
        """The (student layer, teacher layer) pairs, checked against both depths (layer 0 = front-end output)."""
        if self.map == "uniform":
            pairs = [(i, uniform_layer(i, student_layers, teacher_layers)) for i in range(1, student_layers + 1)]
        elif self.map == "last":
            pairs = [(student_layers, j) for j in self.targets]
        else:
            if not self.pairs or any(len(p) != 2 for p in self.pairs):
                raise ConfigError("config.heads.pairs must be a non-empty list of [student_layer, teacher_layer]")
            pairs = [(int(i), int(j)) for i, j in self.pairs]
        for i, j in pairs:
            if not 0 <= j <= teacher_layers:
                raise ConfigError(
                    f"the layer map asks for teacher layer {j}, but the teacher has {teacher_layers} layers "
                    f"(valid: 0..{teacher_layers}); fix config.heads.targets / config.heads.pairs"
                )
            if not 0 <= i <= student_layers:
                raise ConfigError(
                    f"the layer map reads student layer {i}, but the student has {student_layers} layers (valid: 0..{student_layers})"
                )
        return pairs


class PredictionHeads(nn.Module):
    """One head per pair: student hidden state ``[B, T, D_S]`` -> teacher-layer prediction ``[B, T, D_T]``."""

    def __init__(self, pairs: list[tuple[int, int]], student_dim: int, teacher_dims: list[int], cfg: HeadConfig) -> None:
        super().__init__()
        self.pairs = pairs
        hidden = cfg.mlp_hidden or student_dim

        def make(out_dim: int) -> nn.Module:
            if cfg.kind == "linear":
                return nn.Linear(student_dim, out_dim)
            return nn.Sequential(nn.Linear(student_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))

        self.heads = nn.ModuleList(make(teacher_dims[j]) for _, j in pairs)

    def forward(self, hidden: list[torch.Tensor]) -> list[torch.Tensor]:
        """Student hidden states (``L_S + 1`` tensors) -> one prediction per pair."""
        return [head(hidden[i]) for (i, _), head in zip(self.pairs, self.heads)]
