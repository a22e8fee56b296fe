"""``-u input_distill``: stage 1 of input distillation (Wang et al.; methods.md 5).

Trains the light Fbank front-end alone to regress the teacher's waveform-CNN
output (L1 + cosine over valid frames, the two sequences aligned by
truncation to the shorter). Stage 2 is any distillation task with
``model.frontend=fbank`` and ``init.frontend_ckpt=<this run's states-N.ckpt>``
(``model.freeze_frontend`` chooses frozen or fine-tuned).

When the teacher layer-normalises the waveform (s3prl's ``task_cfg.normalize``),
the target is its CNN output of the normalised waveform and the Fbank
front-end reads the normalised waveform too, as it will inside the stage-2
student (``normalize_waveform``, resolved here and stored in the config and
the checkpoint's export section; stage 2 checks that it agrees).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from s3prl_colld.config import ConfigError
from s3prl_colld.constants import SAMPLE_RATE
from s3prl_colld.models.frontends import FbankConfig, FbankFrontend, normalize_waveform
from s3prl_colld.s3prl_bridge.teacher import Teacher, TeacherConfig, resolve_normalization
from s3prl_colld.objectives.losses import l1_cosine
from s3prl_colld.pretrain.schema import TaskConfig
from s3prl_colld.pretrain.task import register
from s3prl_colld.pretrain.tasks.audio_task import AudioTask


@dataclass
class InputDistillConfig(TaskConfig):
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    model: FbankConfig = field(default_factory=FbankConfig)
    cos_weight: float = 1.0
    normalize_waveform: Optional[bool] = None  # null = follow the teacher (see the module docstring)

    def validate(self) -> None:
        self.teacher.require_raw_targets("input_distill", "trains a drop-in replacement of the teacher's CNN "
                                         "(its raw output is what stage 2 reads)")


@register("input_distill")
class InputDistillTask(AudioTask):
    """Fbank front-end -> teacher CNN output ``[B, T, C]``."""

    Config = InputDistillConfig
    exports = ("frontend",)

    def __init__(self, cfg: InputDistillConfig, expdir: Path) -> None:
        super().__init__(cfg, expdir)
        self.teacher = Teacher(cfg.teacher)
        if self.teacher.frontend_module is None:
            raise ConfigError(f"input distillation needs a teacher with a waveform CNN (feature_extractor); "
                              f"{cfg.teacher.name} has none")
        cfg.normalize_waveform = resolve_normalization(cfg.normalize_waveform, self.teacher, "config.normalize_waveform")
        dim = self.teacher.frontend_features(torch.zeros(1, SAMPLE_RATE), torch.tensor([SAMPLE_RATE])).size(2)
        if dim != cfg.model.out_dim:
            raise ConfigError(f"config.model.out_dim={cfg.model.out_dim} must equal the teacher's CNN output dim {dim}")
        self.frontend = FbankFrontend(cfg.model)

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``L1 + λ cos`` between the Fbank front-end and the teacher CNN over valid frames."""
        wav, lengths = batch["wav"], batch["wav_lengths"]
        target = self.teacher.frontend_features(wav, lengths)  # [B, T_T, C], of the waveform the teacher sees
        if self.cfg.normalize_waveform:
            wav = normalize_waveform(wav, lengths)
        pred, valid = self.frontend(wav, lengths)  # [B, T_S, C]
        T = min(pred.size(1), target.size(1))
        return l1_cosine(pred[:, :T], target[:, :T], valid[:, :T], self.cfg.cos_weight)

    def export_section(self) -> dict[str, Any]:
        """The base section, plus whether the exported front-end was trained on normalised waveforms."""
        section = super().export_section()
        section["modules"]["frontend"]["normalize_waveform"] = bool(self.cfg.normalize_waveform)
        return section

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if k.startswith("frontend.")}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.frontend.load_state_dict({k[len("frontend."):]: v for k, v in state.items()})
