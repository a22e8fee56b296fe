"""When a probe has converged (early stopping on dev) and when it has collapsed (mostly empty hypotheses).

- :class:`EarlyStopping`: after each dev evaluation, an evaluation *improves* when
  its metric beats the reference by at least ``min_delta`` (and by more than 0);
  the reference is the value of the last improving evaluation (so a plateau that
  creeps by less than ``min_delta`` per evaluation still counts once it adds up).
  The probe stops after ``patience`` evaluations in a row without improvement.
  A collapsed evaluation (see below) neither improves nor counts against the
  patience: a CTC head on its blank plateau has not started to learn yet, so
  stopping there would report the plateau. ``patience=None`` never stops
  (s3prl's fixed schedule).
- :func:`empty_rate` / :func:`is_collapsed`: a decode is *collapsed* when at least
  ``threshold`` of its hypotheses are empty (CTC: only blanks; ST: ``<unk>``).
  A collapsed result is not a measurement of the features and is never reported
  as a number.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

STOP_CAP = "cap"  # trained to runner.total_steps
STOP_PATIENCE = "patience"  # dev stopped improving for runner.patience evaluations


def empty_rate(hyps: Sequence[str], empty: Sequence[str] = ("",)) -> float:
    """Fraction of hypotheses that are empty (after stripping) or equal one of ``empty``; 0 for no hypotheses."""
    if not hyps:
        return 0.0
    marks = set(empty)
    return sum(1 for h in hyps if h.strip() == "" or h.strip() in marks) / len(hyps)


def is_collapsed(rate: float, threshold: float) -> bool:
    """A decode whose ``rate`` of empty hypotheses is at least ``threshold`` (``runner.collapse_empty_rate``)."""
    return rate >= threshold


@dataclass
class DevPoint:
    """One dev evaluation: the update it followed, its metric, its empty-hypothesis rate and collapse flag,
    and the mean training loss of the updates since the previous evaluation (and of its terms, for a task
    whose loss has several: ST with ``head.ctc_weight > 0``, ``{"ce", "ctc", "ctc_infeasible"}``)."""

    step: int
    value: float
    empty_rate: float
    collapsed: bool
    train_loss: Optional[float] = None
    train_terms: Optional[dict[str, float]] = None


@dataclass
class EarlyStopping:
    """The stop rule (module docstring); a plain state, saved in downstream checkpoints (``early_stopping``).

    Args:
        patience: evaluations without improvement before stopping (None: never stop early).
        min_delta: the least gain (metric units, e.g. PER points) that counts as an improvement.
        higher_better: the metric's direction (BLEU: True; PER / WER: False).
    """

    patience: Optional[int] = None
    min_delta: float = 0.0
    higher_better: bool = False
    reference: Optional[float] = None  # value of the last improving evaluation
    bad_evals: int = 0  # evaluations since then that did not improve (collapsed ones not counted)
    curve: list[DevPoint] = field(default_factory=list)

    def improves(self, value: float) -> bool:
        """Does ``value`` beat the reference by at least ``min_delta`` (and by more than 0)?"""
        if self.reference is None:
            return True
        gain = value - self.reference if self.higher_better else self.reference - value
        return gain > 0 and gain >= self.min_delta

    def update(self, point: DevPoint) -> bool:
        """Record an evaluation; returns whether it improved (collapsed evaluations never do)."""
        self.curve.append(point)
        if point.collapsed:
            return False
        if self.improves(point.value):
            self.reference, self.bad_evals = point.value, 0
            return True
        self.bad_evals += 1
        return False

    def should_stop(self) -> bool:
        """Have ``patience`` evaluations in a row failed to improve?"""
        return self.patience is not None and self.bad_evals >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "bad_evals": self.bad_evals, "curve": [asdict(p) for p in self.curve]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reference, self.bad_evals = state["reference"], int(state["bad_evals"])
        self.curve = [DevPoint(**p) for p in state["curve"]]


def stop_step(values: Sequence[float], eval_step: int, patience: int, min_delta: float = 0.0,
              higher_better: bool = False, collapsed: Sequence[bool] | None = None) -> tuple[int, str]:
    """Where a dev curve ``values`` (one value every ``eval_step`` updates) stops: ``(update, reason)``.

    ``reason`` is :data:`STOP_PATIENCE`, or :data:`STOP_CAP` when the curve ends first
    (its last update is then the cap). The runner applies the same rule one evaluation at a time.
    """
    rule = EarlyStopping(patience, min_delta, higher_better)
    flags = list(collapsed) if collapsed is not None else [False] * len(values)
    for i, (v, c) in enumerate(zip(values, flags)):
        rule.update(DevPoint((i + 1) * eval_step, float(v), 0.0, bool(c)))
        if rule.should_stop():
            return (i + 1) * eval_step, STOP_PATIENCE
    return len(values) * eval_step, STOP_CAP
