"""Watch an objective's accuracy against its chance level across log rows, and say when it is stuck.

A task logs pairs of stats: an accuracy and the accuracy of a predictor that ignores its input (its chance
level), e.g. InfoNCE's ``acc_1_6`` / ``chance_1_6`` and the discriminative loss's ``unit_agreement`` /
``unit_chance``. ``ChanceMonitor.update`` reads one log row's means, returns a short summary for the log line
(``acc 0.031 / chance 0.010 (3.1x)``, averaged over the pairs of each objective) and logs a warning when an
objective's accuracy has stayed at or below ``ratio`` times its chance level for ``patience`` log rows in a
row (once per stuck stretch; the count starts again when it rises above). The counts are not checkpointed: a
resumed run starts counting afresh.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

log = logging.getLogger(__name__)

# (accuracy key pattern, chance key given the accuracy key's suffix, objective name)
_PAIRS = ((re.compile(r"^acc(_\d+_\d+)?$"), "chance{}", "contrastive"),
          (re.compile(r"^unit_agreement()$"), "unit_chance{}", "discriminative"))


@dataclass
class ObjectiveReading:
    """One objective in one log row: accuracy and chance level, averaged over its pairs."""

    name: str
    acc: float
    chance: float

    @property
    def ratio(self) -> float:
        return self.acc / self.chance if self.chance > 0 else float("inf")


def readings(means: dict[str, float]) -> list[ObjectiveReading]:
    """The objectives whose accuracy and chance level are both in ``means`` (mean over their pairs)."""
    out = []
    for pattern, chance_fmt, name in _PAIRS:
        accs, chances = [], []
        for key, value in means.items():
            m = pattern.match(key)
            if m is None:
                continue
            chance_key = chance_fmt.format(m.group(1) or "")
            if chance_key in means:
                accs.append(value)
                chances.append(means[chance_key])
        if accs:
            out.append(ObjectiveReading(name, sum(accs) / len(accs), sum(chances) / len(chances)))
    return out


class ChanceMonitor:
    """Counts consecutive log rows at ``acc <= ratio * chance`` per objective; warns at ``patience``."""

    def __init__(self, patience: int = 5, ratio: float = 1.5) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience, self.ratio = patience, ratio
        self.streak: dict[str, int] = {}
        self.warned: list[tuple[int, str]] = []  # (step, objective) of each warning given

    def update(self, step: int, means: dict[str, float]) -> str:
        """Read one log row (``means``: stat name -> value); returns the log-line summary ('' if none)."""
        parts = []
        for r in readings(means):
            parts.append(f"{r.name} acc {r.acc:.3f} / chance {r.chance:.3f} ({r.ratio:.1f}x)")
            if r.ratio <= self.ratio:
                self.streak[r.name] = self.streak.get(r.name, 0) + 1
                if self.streak[r.name] == self.patience:
                    log.warning("step %d: the %s objective's accuracy has stayed at or below %.1fx its chance level "
                                "for %d log rows (acc %.4f, chance %.4f): it is not learning; check the mask rate "
                                "(config.mask.prob), the frames the loss reads (config.loss.masked_only / "
                                "masked_weight), config.teacher.target_norm and the learning rate",
                                step, r.name, self.ratio, self.patience, r.acc, r.chance)
                    self.warned.append((step, r.name))
            else:
                self.streak[r.name] = 0
        return "; ".join(parts)
