"""``-u dicehubert``: DiceHuBERT (Chi et al., Interspeech 2025, arXiv 2507.02911), distillation with HuBERT's own objective.

No layer-to-layer targets: the student, an s3prl ``HubertModel`` of any size
(``config.model``), is trained with HuBERT's masked unit prediction, the
units being k-means clusters of the teacher's layer ``units.layer``: HuBERT's
next iteration with the student in the teacher's place. The teacher is any
s3prl upstream with 320 samples per frame (``config.teacher``); units are made
once and cached (``units.mode=offline``, CPU is fine) or computed for each
batch on the training device (``online``). Everything else is
``hubert_tiny``'s machinery (denoising units included); what the paper's
abstract leaves open is assumed from HuBERT's second iteration and listed
in ``docs/methods_family.md``.

The checkpoint is ``hubert_local``-loadable, and ``import s3prl_colld.hub``
registers it as ``S3PRLUpstream("dicehubert_local", path_or_url=CKPT)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from s3prl_colld.config import ConfigError
from s3prl_colld.s3prl_bridge.teacher import TeacherConfig
from s3prl_colld.pretrain.task import register
from s3prl_colld.pretrain.tasks.hubert_tiny import HubertInitConfig, HubertTinyConfig, HubertTinyTask
from s3prl_colld.pretrain.unit_targets import UnitsConfig


@dataclass
class DiceHubertConfig(HubertTinyConfig):
    teacher: Optional[TeacherConfig] = field(default_factory=TeacherConfig)
    units: UnitsConfig = field(default_factory=lambda: UnitsConfig(source="teacher"))
    init: HubertInitConfig = field(default_factory=lambda: HubertInitConfig(from_teacher="frontend"))

    def validate(self) -> None:
        if self.teacher is None:
            raise ConfigError("dicehubert needs config.teacher (any s3prl upstream: name, and ckpt for *_local names)")
        if self.units.source != "teacher":
            raise ConfigError(f"dicehubert clusters a teacher layer: config.units.source must be teacher, "
                              f"got {self.units.source!r} (MFCC units are -u hubert_tiny)")
        super().validate()


@register("dicehubert", upstreams=("dicehubert_local",))
class DiceHubertTask(HubertTinyTask):
    """A ``HubertModel`` student trained on k-means units of a teacher layer (see the module docstring)."""

    Config = DiceHubertConfig
