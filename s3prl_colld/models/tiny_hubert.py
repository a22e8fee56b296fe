"""A small HuBERT built from s3prl's own ``HubertModel``, and the keys ``hubert_local`` loads.

Our config lists the CNN as ``[[dim, kernel, stride], ...]``; s3prl's
``HubertConfig`` wants the same list as a Python string, which we write with
``repr`` (s3prl evaluates it; we never do).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from s3prl.upstream.hubert.hubert_model import HubertConfig, HubertModel, HubertPretrainingConfig

from s3prl_colld.config import ConfigError, choice
from s3prl_colld.constants import SAMPLE_RATE


def _tiny_cnn() -> list[list[int]]:
    return [[128, 10, 5]] + [[128, 3, 2]] * 4 + [[128, 2, 2]] * 2


@dataclass
class TinyHubertConfig:
    """The HuBERT fields a user may set; everything else keeps s3prl's HubertConfig default."""

    conv_layers: list[list[int]] = field(default_factory=_tiny_cnn)  # [dim, kernel, stride]; total stride 320
    extractor_mode: str = "default"  # default (GroupNorm in conv 1, as HuBERT Base) | layer_norm
    encoder_layers: int = 4
    encoder_embed_dim: int = 192
    encoder_ffn_embed_dim: int = 768
    encoder_attention_heads: int = 4
    final_dim: int = 64  # projection dim of the unit-prediction head
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    encoder_layerdrop: float = 0.0
    dropout_input: float = 0.1
    dropout_features: float = 0.1
    feature_grad_mult: float = 1.0  # HuBERT Base uses 0.1; a tiny CNN trained for minutes needs the full gradient
    mask_prob: float = 0.8
    mask_length: int = 10
    logit_temp: float = 0.1
    conv_pos: int = 64
    conv_pos_groups: int = 16
    layer_norm_first: bool = False

    def validate(self) -> None:
        choice(self.extractor_mode, ("default", "layer_norm"), "config.model.extractor_mode")
        if any(len(layer) != 3 for layer in self.conv_layers):
            raise ConfigError("config.model.conv_layers: each layer is [dim, kernel, stride]")
        if self.encoder_embed_dim % self.encoder_attention_heads:
            raise ConfigError("config.model.encoder_embed_dim must be divisible by encoder_attention_heads")

    @property
    def total_stride(self) -> int:
        return math.prod(stride for _, _, stride in self.conv_layers)


def hubert_configs(cfg: TinyHubertConfig, label_rate: float) -> tuple[HubertConfig, HubertPretrainingConfig]:
    """Our config -> s3prl's ``(HubertConfig, HubertPretrainingConfig)``."""
    fields = {f.name for f in dataclasses.fields(HubertConfig)}
    kwargs: dict[str, Any] = {k: v for k, v in dataclasses.asdict(cfg).items() if k in fields}
    kwargs["conv_feature_layers"] = repr([tuple(layer) for layer in cfg.conv_layers])
    model_cfg = HubertConfig(label_rate=label_rate, **kwargs)
    task_cfg = HubertPretrainingConfig(label_rate=label_rate, sample_rate=SAMPLE_RATE, normalize=False)
    return model_cfg, task_cfg


def build_hubert(cfg: TinyHubertConfig, n_units: int, label_rate: float = 50.0) -> HubertModel:
    """A freshly initialised s3prl ``HubertModel`` predicting ``n_units`` classes."""
    model_cfg, task_cfg = hubert_configs(cfg, label_rate)
    return HubertModel(model_cfg, task_cfg, [unit_symbols(n_units)])


def unit_symbols(n_units: int) -> list[str]:
    """The dictionary of unit ids as s3prl stores it (``dictionaries_symbols``)."""
    return [str(i) for i in range(n_units)]


def hubert_local_keys(model: HubertModel, cfg: TinyHubertConfig, n_units: int, label_rate: float = 50.0) -> dict[str, Any]:
    """The checkpoint keys s3prl's ``hubert_local`` reads: task_cfg, model_cfg, model_weight, dictionaries_symbols."""
    model_cfg, task_cfg = hubert_configs(cfg, label_rate)
    return {
        "task_cfg": _plain(dataclasses.asdict(task_cfg)),
        "model_cfg": _plain(dataclasses.asdict(model_cfg)),
        "model_weight": model.state_dict(),
        "dictionaries_symbols": [unit_symbols(n_units)],
    }


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    """Enum-like values -> str, tuples stay (``weights_only`` accepts them)."""
    return {k: v if v is None or isinstance(v, (bool, int, float, str, tuple, list)) else str(v) for k, v in d.items()}
