"""The optimizer step both training loops take (pretraining and downstream probing).

``StepPolicy`` owns the LR schedule (``optim.lr_factor`` through ``LambdaLR``),
the fp16 ``GradScaler`` (disabled for fp32 / bf16), gradient clipping and the
rule for non-finite values: a step whose loss or gradient is not finite is
skipped, and more than ``max_bad_steps`` such steps raise ``BadLossError``.
With fp16, a gradient overflow while the loss scale is above 1 is the
scaler's business (it lowers the scale) and is not counted.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch

from s3prl_colld.runtime.optim import OptimizerConfig, lr_factor

log = logging.getLogger(__name__)
_SCHEDULER_WARNING = r"Detected call of `lr_scheduler.step\(\)` before `optimizer.step\(\)`"


class BadLossError(RuntimeError):
    """Too many steps had a non-finite loss or gradient."""


@dataclass
class StepOutcome:
    """One optimizer step. ``grad_norm`` stays on the device."""

    grad_norm: torch.Tensor  # [] before clipping
    lr: float  # the learning rate of this step
    updated: bool  # the optimizer stepped
    bad: bool  # a non-finite loss or gradient (not an fp16 overflow the scaler handles)
    stop: bool  # the ``stop`` flag, after ``reduce``


class StepPolicy:
    """Schedule, AMP loss scaling, clipping and the bad-step limit around one optimizer.

    Args:
        optimizer: its parameter groups are what gets clipped and stepped.
        cfg: the optimizer section (schedule: ``warmup_steps``, ``decay``, ``final_lr_ratio``).
        total_steps: the schedule's length.
        clipping: max global gradient norm; ``<= 0``: no clipping (the norm is still measured).
        max_bad_steps: skipped non-finite steps allowed before ``BadLossError``.
        precision: fp32 | bf16 | fp16 (fp16 scales the loss).
        device: where the parameters live.
        hint: where the last good checkpoint is, for the ``BadLossError`` message.
        factor: the lr multiplier of the update after ``s`` updates (default ``optim.lr_factor`` of ``cfg``;
            the downstream runner passes s3prl's schedulers).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: OptimizerConfig, total_steps: int, clipping: float,
                 max_bad_steps: int, precision: str, device: torch.device, hint: str = "",
                 factor: Callable[[int], float] | None = None) -> None:
        self.optimizer = optimizer
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, factor if factor is not None else (lambda s: lr_factor(s, total_steps, cfg)))
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.max_norm = clipping if clipping > 0 else float("inf")
        self.max_bad_steps, self.hint = max_bad_steps, hint
        self.bad_steps = 0

    def backward(self, loss: torch.Tensor) -> None:
        """``loss [].backward()``, scaled under fp16."""
        self.scaler.scale(loss.float()).backward()

    def step(self, loss: torch.Tensor, stop: bool = False,
             reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> StepOutcome:
        """Unscale, clip, then step unless ``loss`` ``[]`` or the gradient is not finite; always advance the schedule.

        ``reduce`` max-reduces the flags ``[loss bad, grad bad, stop]`` across processes
        (one host sync per step), so every rank acts alike.
        """
        self.scaler.unscale_(self.optimizer)  # no-op without fp16
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_norm)
        flags = torch.stack([~torch.isfinite(loss), ~torch.isfinite(grad_norm),
                             torch.tensor(stop, device=grad_norm.device)]).float()
        loss_bad, grad_bad, stop = ((reduce(flags) if reduce else flags) > 0).tolist()
        overflow = self.scaler.is_enabled() and grad_bad and not loss_bad and self.scaler.get_scale() > 1.0
        updated = not (loss_bad or grad_bad)
        lr = self.optimizer.param_groups[0]["lr"]
        if updated:
            self.scaler.step(self.optimizer)  # optimizer.step() without fp16
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():  # a skipped first step is expected, not a misuse
            warnings.filterwarnings("ignore", message=_SCHEDULER_WARNING)
            self.scheduler.step()
        return StepOutcome(grad_norm.detach(), lr, updated, (loss_bad or grad_bad) and not overflow, stop)

    def count_bad(self, step: int) -> None:
        """Count a skipped non-finite step (number ``step``); raise ``BadLossError`` past ``max_bad_steps``."""
        self.bad_steps += 1
        log.warning("step %d: non-finite loss or gradient, update skipped (%d such steps so far)", step,
                    self.bad_steps)
        if self.bad_steps > self.max_bad_steps:
            raise BadLossError(
                f"{self.bad_steps} steps had a non-finite loss or gradient (more than config.runner.max_bad_steps="
                f"{self.max_bad_steps}): lower config.optimizer.lr, use config.runner.precision=bf16 instead of "
                f"fp16, or check the data; {self.hint}")

    def state_dict(self) -> dict[str, Any]:
        """``{"scheduler", "scaler" (None unless fp16), "bad_steps"}``."""
        return {"scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "bad_steps": self.bad_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of ``state_dict``."""
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.bad_steps = int(state["bad_steps"])
