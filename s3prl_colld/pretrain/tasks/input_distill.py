"""``-u input_distill``: stage 1 of input distillation (Wang et al.; methods.md 5).

Trains the light Fbank front-end alone to regress the teacher's waveform-CNN
output (L1 + cosine over valid frames, the two sequences aligned by
truncation to the shorter). Stage 2 is any distillation task with
``model.frontend=fbank`` and ``init.frontend_ckpt=<this run's states-N.ckpt>``
(``model.freeze_frontend`` chooses frozen or fine-tuned).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from s3prl_colld.config import ConfigError
from s3prl_colld.constants import SAMPLE_RATE
from s3prl_colld.models.frontends import FbankConfig, FbankFrontend
from s3prl_colld.models.teacher import Teacher, TeacherConfig
from s3prl_colld.objectives.losses import l1_cosine
from s3prl_colld.pretrain.schema import TaskConfig
from s3prl_colld.pretrain.task import register
from s3prl_colld.pretrain.tasks.audio_task import AudioTask


@dataclass
class InputDistillConfig(TaskConfig):
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    model: FbankConfig = field(default_factory=FbankConfig)
    cos_weight: float = 1.0


@register("input_distill")
class InputDistillTask(AudioTask):
    """Fbank front-end -> teacher CNN output ``[B, T, C]``."""

    Config = InputDistillConfig
    exports = ("frontend",)

    def __init__(self, cfg: InputDistillConfig, expdir: Path) -> None:
        super().__init__(cfg, expdir)
        self.teacher = Teacher(cfg.teacher)
        self.teacher_cnn = self.teacher.frontend_module
        if self.teacher_cnn is None:
            raise ConfigError(f"input distillation needs a teacher with a waveform CNN (feature_extractor); "
                              f"{cfg.teacher.name} has none")
        with torch.no_grad():
            dim = self.teacher_cnn(torch.zeros(1, SAMPLE_RATE, dtype=self.teacher.dtype)).size(1)
        if dim != cfg.model.out_dim:
            raise ConfigError(f"config.model.out_dim={cfg.model.out_dim} must equal the teacher's CNN output dim {dim}")
        self.frontend = FbankFrontend(cfg.model)

    @torch.inference_mode()
    def _target(self, wav: torch.Tensor) -> torch.Tensor:
        return self.teacher_cnn(wav.to(self.teacher.dtype)).transpose(1, 2).float()

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``L1 + λ cos`` between the Fbank front-end and the teacher CNN over valid frames."""
        wav, lengths = batch["wav"], batch["wav_lengths"]
        target = self._target(wav).clone()  # [B, T_T, C]
        pred, valid = self.frontend(wav, lengths)  # [B, T_S, C]
        T = min(pred.size(1), target.size(1))
        return l1_cosine(pred[:, :T], target[:, :T], valid[:, :T], self.cfg.cos_weight)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if k.startswith("frontend.")}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.frontend.load_state_dict({k[len("frontend."):]: v for k, v in state.items()})
