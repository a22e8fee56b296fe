"""The optimizer, its config section and the learning-rate schedule (shared by pretraining and probing)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from s3prl_colld.config import ConfigError, choice


@dataclass
class OptimizerConfig:
    name: str = "AdamW"  # AdamW | Adam
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    weight_decay: float = 0.0
    # parameters whose name contains one of these get no weight decay (s3prl's get_grouped_parameters:
    # ["bias", "LayerNorm.bias", "LayerNorm.weight"]); empty = decay every parameter
    no_decay: list[str] = field(default_factory=list)
    warmup_steps: int = 0  # linear warm-up from 0 to lr
    decay: str = "linear"  # linear | cosine | constant, from the end of warm-up to total_steps
    final_lr_ratio: float = 0.0  # lr at the last step, as a fraction of lr

    def validate(self) -> None:
        choice(self.name, ("AdamW", "Adam"), "config.optimizer.name")
        choice(self.decay, ("linear", "cosine", "constant"), "config.optimizer.decay")


def param_groups(named: list[tuple[str, torch.nn.Parameter]], cfg: OptimizerConfig) -> list[dict[str, Any]]:
    """Optimizer parameter groups: ``weight_decay`` for all, except names containing one of ``cfg.no_decay``
    (weight decay 0), as s3prl's ``get_grouped_parameters``. Empty groups are left out."""
    decay = [p for n, p in named if not any(s in n for s in cfg.no_decay)]
    no_decay = [p for n, p in named if any(s in n for s in cfg.no_decay)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(params: list[torch.nn.Parameter] | list[tuple[str, torch.nn.Parameter]], cfg: OptimizerConfig,
                    device: torch.device) -> torch.optim.Optimizer:
    """AdamW / Adam over ``params`` (fused kernels on CUDA).

    ``params`` are plain parameters, or ``(name, parameter)`` pairs, which ``cfg.no_decay`` needs.
    """
    if not params:
        raise ConfigError("the task has no trainable parameters (none has requires_grad=True)")
    named = [p for p in params if isinstance(p, tuple)]
    if named and len(named) != len(params):
        raise TypeError("build_optimizer: give either parameters or (name, parameter) pairs, not both")
    if not named and cfg.no_decay:
        raise ConfigError("config.optimizer.no_decay needs parameter names; leave it empty here")
    groups = param_groups(named, cfg) if named else params
    cls = torch.optim.AdamW if cfg.name == "AdamW" else torch.optim.Adam
    return cls(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay,
               fused=True if device.type == "cuda" else None)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """``optimizer.load_state_dict`` keeping this run's implementation flags (fused/foreach),
    so that a checkpoint written on GPU resumes on CPU and vice versa."""
    current = optimizer.state_dict()["param_groups"]
    impl = ("fused", "foreach", "capturable", "differentiable")
    groups = [{**saved, **{k: cur[k] for k in impl if k in cur}} for saved, cur in zip(state["param_groups"], current)]
    optimizer.load_state_dict({**state, "param_groups": groups})


def lr_factor(step: int, total_steps: int, cfg: OptimizerConfig) -> float:
    """Multiplier of ``cfg.lr`` for optimizer step ``step`` (0-based).

    Linear warm-up over ``warmup_steps`` (``(step + 1) / warmup_steps``), then
    linear / cosine / constant decay from 1 to ``final_lr_ratio`` at ``total_steps``.
    """
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.decay == "constant":
        return 1.0
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
    shape = 1.0 - progress if cfg.decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.final_lr_ratio + (1.0 - cfg.final_lr_ratio) * shape
