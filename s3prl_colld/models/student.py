"""The student: a front-end, a projection, a convolutional position embedding and transformer layers.

Hidden states follow s3prl's convention: ``h_0`` is the projected front-end
output (after the position embedding and layer norm, as HuBERT's first
layer input), ``h_1 .. h_L`` the outputs of the layers; each ``[B, T, D]``.
Any depth and width is set from config; presets live in ``configs/students``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import nn

from s3prl_colld.config import ConfigError, choice
from s3prl_colld.models.attention import EncoderLayer
from s3prl_colld.models.fftconv import fft_conv_forward
from s3prl_colld.models.frontends import (CNNConfig, FbankConfig, FbankFrontend, GradMultiply, WavCNN,
                                          normalize_waveform)


@dataclass
class StudentConfig:
    frontend: str = "cnn"  # cnn | fbank
    cnn: CNNConfig = field(default_factory=CNNConfig)
    fbank: FbankConfig = field(default_factory=FbankConfig)
    freeze_frontend: bool = False
    # the CNN's gradient is multiplied by this (fairseq / s3prl distiller ``feature_grad_mult``; 0 = no gradient)
    feature_grad_mult: float = 1.0
    frontend_norm: bool = True  # LayerNorm on the front-end output before the projection (s3prl's distiller: none)
    # per-utterance layer norm of the waveform (s3prl experts with task_cfg.normalize); null = follow the
    # teacher (resolved when a distillation task is built, and stored resolved in the checkpoint's config)
    normalize_waveform: Optional[bool] = None
    layers: int = 2
    dim: int = 768
    ffn_dim: int = 3072
    heads: int = 12
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.1
    layer_norm_first: bool = False
    conv_pos: int = 128
    conv_pos_groups: int = 16

    def validate(self) -> None:
        choice(self.frontend, ("cnn", "fbank"), "config.model.frontend")
        if self.dim % self.heads:
            raise ConfigError(f"config.model.dim={self.dim} is not divisible by config.model.heads={self.heads}")
        if self.layers < 1:
            raise ConfigError("config.model.layers must be >= 1")
        if self.feature_grad_mult < 0:
            raise ConfigError(f"config.model.feature_grad_mult must be >= 0, got {self.feature_grad_mult}")


class ConvPositionEmbedding(nn.Module):
    """wav2vec 2.0's relative position embedding: a grouped, weight-normed conv over time.

    ``fft`` (set by ``runner.fft_pos_conv``) computes the conv as an FFT product (``models/fftconv.py``):
    the same function, far faster on a GPU.
    """

    def __init__(self, dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)
        nn.init.normal_(conv.weight, mean=0.0, std=(4.0 / (kernel * dim)) ** 0.5)
        nn.init.zeros_(conv.bias)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.even = kernel % 2 == 0
        self.fft = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, D]`` -> ``[B, T, D]``."""
        x = x.transpose(1, 2)
        y = fft_conv_forward(self.conv, x) if self.fft else self.conv(x)
        if self.even:
            y = y[..., :-1]
        return nn.functional.gelu(y).transpose(1, 2)


class StudentEncoder(nn.Module):
    """Front-end -> Linear -> (mask) -> + conv position -> LayerNorm -> transformer layers."""

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.frontend: WavCNN | FbankFrontend = WavCNN(cfg.cnn) if cfg.frontend == "cnn" else FbankFrontend(cfg.fbank)
        if cfg.freeze_frontend or cfg.feature_grad_mult == 0:
            self.frontend.requires_grad_(False)
        self.frontend_norm = nn.LayerNorm(self.frontend.out_dim) if cfg.frontend_norm else nn.Identity()
        self.proj = nn.Linear(self.frontend.out_dim, cfg.dim)
        self.mask_emb = nn.Parameter(torch.empty(cfg.dim).uniform_())
        self.pos_conv = ConvPositionEmbedding(cfg.dim, cfg.conv_pos, cfg.conv_pos_groups)
        self.norm = nn.LayerNorm(cfg.dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(cfg.dim, cfg.heads, cfg.ffn_dim, dropout=cfg.dropout, activation="gelu",
                         batch_first=True, norm_first=cfg.layer_norm_first)
            for _ in range(cfg.layers)
        )
        for layer in self.layers:  # attention dropout differs from the residual dropout
            layer.self_attn.dropout = cfg.attention_dropout
            layer.dropout.p = cfg.activation_dropout
        self.final_norm = nn.LayerNorm(cfg.dim) if cfg.layer_norm_first else nn.Identity()

    @property
    def downsample_rate(self) -> int:
        return self.frontend.downsample_rate

    def frontend_features(self, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``wav [B, N]`` -> ``(front-end output [B, T, C], valid [B, T])`` (what input distillation regresses).

        The waveform is layer-normalised per utterance first when ``normalize_waveform`` is set, and the
        front-end's gradient is scaled by ``feature_grad_mult`` (none with 0 or ``freeze_frontend``).
        """
        if self.cfg.normalize_waveform:
            wav = normalize_waveform(wav, lengths)
        mult = 0.0 if self.cfg.freeze_frontend else self.cfg.feature_grad_mult
        if mult == 0:
            with torch.no_grad():
                return self.frontend(wav, lengths)
        feats, valid = self.frontend(wav, lengths)
        if mult != 1.0 and torch.is_grad_enabled():
            feats = GradMultiply.apply(feats, mult)
        return feats, valid

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor,
                mask_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                frontend_out: torch.Tensor | None = None, padded: bool = True,
                ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor | None]:
        """Encode a padded batch.

        Args:
            wav: ``[B, N]`` waveforms, zero-padded.
            lengths: ``[B]`` valid samples.
            mask_fn: optional ``valid [B, T] -> mask [B, T]``; masked frames are replaced by the mask embedding.
            frontend_out: ``[B, T, C]``, the output of an identical frozen CNN computed elsewhere (the
                teacher's, see ``init.share_teacher_frontend``); the student's own front-end is then skipped.
            padded: False promises that every ``lengths[b]`` equals ``N`` (no padding): attention then runs
                without a key-padding mask (the same result, faster kernels; see ``models/attention.py``).
        Returns:
            ``(hidden_states, valid, mask)``: ``L + 1`` tensors ``[B, T, D]``, ``valid [B, T]``, the mask or None.
        """
        if frontend_out is None:
            feats, valid = self.frontend_features(wav, lengths)
        else:
            feats = frontend_out
            valid = torch.arange(feats.size(1), device=feats.device)[None] < self.frontend.output_lengths(lengths)[:, None]
        x = self.proj(self.frontend_norm(feats))
        mask = mask_fn(valid) if mask_fn is not None else None
        if mask is not None:
            x = torch.where(mask[..., None], self.mask_emb.to(x.dtype), x)
        x = x * valid[..., None]
        x = self.norm(x + self.pos_conv(x))
        x = self.dropout(x)
        hidden = [x]
        pad = ~valid if padded else None
        for layer in self.layers:
            hidden.append(layer(hidden[-1], src_key_padding_mask=pad))
        hidden[-1] = self.final_norm(hidden[-1])  # pre-norm (layer_norm_first) students end with a LayerNorm
        return hidden, valid, mask
