"""A small HuBERT built from s3prl's own ``HubertModel``, and the keys ``hubert_local`` loads.

Our config lists the CNN as ``[[dim, kernel, stride], ...]``; s3prl's
``HubertConfig`` wants the same list as a Python string, which we write with
``repr`` (s3prl evaluates it; we never do).

``frontend: fbank`` swaps the waveform CNN (``HubertModel.feature_extractor``)
for log-mel filterbanks and two convolutions (``FbankExtractor``: the same
50 Hz frames and output width ``conv_layers[-1][0]``; the CNN list then only
gives the stride and that width). s3prl's ``hubert_local`` cannot build that
model; its checkpoints name ``hubert_fbank_local`` instead (``load_tiny_hubert``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from s3prl.upstream.hubert.hubert_model import HubertConfig, HubertModel, HubertPretrainingConfig
from torch import nn

from s3prl_colld.config import ConfigError, choice
from s3prl_colld.constants import HUBERT_HUB_NAMES, SAMPLE_RATE
from s3prl_colld.models.frontends import FbankConfig, FbankFrontend

FRONTENDS = tuple(HUBERT_HUB_NAMES)  # cnn, fbank


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
    # cnn: s3prl's waveform CNN (conv_layers); fbank: 80 log-mels -> 2 convs (FbankExtractor), frames at the
    # CNN's stride, output width conv_layers[-1][0] (a departure from HuBERT: docs/usage.md, "Teachers")
    frontend: str = "cnn"
    fbank_hidden: int = 256  # channels of the fbank front-end's first convolution

    def validate(self) -> None:
        choice(self.extractor_mode, ("default", "layer_norm"), "config.model.extractor_mode")
        choice(self.frontend, FRONTENDS, "config.model.frontend")
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


class FbankExtractor(nn.Module):
    """``FbankFrontend`` behind the interface of s3prl's CNN (``HubertModel.feature_extractor``):
    ``wav [B, N] -> [B, C, T]``, ``T = ((N - 400) // 160 + 1) // 2`` (the CNN's ``T`` or one frame fewer).
    Padding is the caller's padding mask's business, as for the CNN."""

    def __init__(self, out_dim: int, hidden: int) -> None:
        super().__init__()
        self.fbank = FbankFrontend(FbankConfig(hidden=hidden, out_dim=out_dim))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        lengths = torch.full((wav.size(0),), wav.size(1), dtype=torch.long, device=wav.device)
        frames, _ = self.fbank(wav, lengths)
        return frames.transpose(1, 2)


def build_hubert(cfg: TinyHubertConfig, n_units: int, label_rate: float = 50.0) -> HubertModel:
    """A freshly initialised s3prl ``HubertModel`` predicting ``n_units`` classes (its front-end:
    ``cfg.frontend``)."""
    model_cfg, task_cfg = hubert_configs(cfg, label_rate)
    model = HubertModel(model_cfg, task_cfg, [unit_symbols(n_units)])
    return with_frontend(model, cfg.frontend, cfg.conv_layers[-1][0], cfg.fbank_hidden)


def with_frontend(model: HubertModel, frontend: str, width: int, fbank_hidden: int) -> HubertModel:
    """``model`` with its ``feature_extractor`` of kind ``frontend`` (``cnn``: s3prl's, left as built)."""
    if frontend == "fbank":
        model.feature_extractor = FbankExtractor(width, fbank_hidden)
    return model


def hub_names(cfg: TinyHubertConfig) -> list[str]:
    """The ``s3prl.hub`` names that load a checkpoint of this model: ``hubert_local`` (s3prl's) for the CNN,
    ``hubert_fbank_local`` (ours) for the Fbank front-end."""
    return [HUBERT_HUB_NAMES[cfg.frontend]]


def load_tiny_hubert(path: str | Path) -> tuple[HubertModel, HubertPretrainingConfig]:
    """``(model, task_cfg)`` of a ``hubert_local``-style checkpoint, the Fbank front-end's included (its
    ``tiny_hubert`` key), loaded with ``weights_only``; s3prl's ``load_converted_model`` for our models."""
    from s3prl.upstream.hubert.convert import merge_with_parent

    from s3prl_colld import checkpoint as ckpt_io

    state = ckpt_io.load(path)
    missing = [k for k in ("task_cfg", "model_cfg", "model_weight", "dictionaries_symbols") if k not in state]
    if missing:
        raise ckpt_io.CheckpointError(f"{path} is not a tiny HuBERT checkpoint: it lacks {', '.join(missing)} "
                                      "(written by run_pretrain.py -u hubert_tiny)")
    task_cfg = merge_with_parent(HubertPretrainingConfig, state["task_cfg"])
    model_cfg = merge_with_parent(HubertConfig, state["model_cfg"])
    model = HubertModel(model_cfg, task_cfg, state["dictionaries_symbols"])
    extra = state.get("tiny_hubert") or {}
    width = model.embed
    model = with_frontend(model, str(extra.get("frontend", "cnn")), width, int(extra.get("fbank_hidden", 256)))
    model.load_state_dict(state["model_weight"])
    return model, task_cfg


def unit_symbols(n_units: int) -> list[str]:
    """The dictionary of unit ids as s3prl stores it (``dictionaries_symbols``)."""
    return [str(i) for i in range(n_units)]


def hubert_local_keys(model: HubertModel, cfg: TinyHubertConfig, n_units: int, label_rate: float = 50.0) -> dict[str, Any]:
    """The checkpoint keys s3prl's ``hubert_local`` reads: task_cfg, model_cfg, model_weight, dictionaries_symbols;
    with the Fbank front-end also ``tiny_hubert`` (``frontend``, ``fbank_hidden``: ``load_tiny_hubert``)."""
    model_cfg, task_cfg = hubert_configs(cfg, label_rate)
    keys = {
        "task_cfg": _plain(dataclasses.asdict(task_cfg)),
        "model_cfg": _plain(dataclasses.asdict(model_cfg)),
        "model_weight": model.state_dict(),
        "dictionaries_symbols": [unit_symbols(n_units)],
    }
    if cfg.frontend != "cnn":
        keys["tiny_hubert"] = {"frontend": cfg.frontend, "fbank_hidden": cfg.fbank_hidden}
    return keys


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    """Enum-like values -> str, tuples stay (``weights_only`` accepts them)."""
    return {k: v if v is None or isinstance(v, (bool, int, float, str, tuple, list)) else str(v) for k, v in d.items()}
