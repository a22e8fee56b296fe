"""Distillation tasks: DistilHuBERT, layer-to-layer regression, CoLLD, and the discriminative loss.

One task class, ``DistillTask``, serves the three tasks below; their classes
only name them (and their hub names), and they differ only in their shipped
runner configs (``configs/pretrain/<name>/runner.yaml``; the student is
``configs/students/tiny.yaml`` for all three):

- ``distilhubert``: every head reads the LAST student layer and regresses
  teacher layers {4, 8, 12} with L1 + cosine (methods.md, 1);
- ``l2l_distiller``: head (i, j) reads student layer i, regresses teacher layer j (2);
- ``colld_distiller``: span-masked student input, unmasked teacher, per-frame
  InfoNCE against the teacher frame with negatives from the same utterance (3).

Any of them can add Wang et al.'s discriminative loss (``loss.disc_weight``;
4) on a HuBERT teacher, and use the Fbank front-end of input distillation (5)
through ``model.frontend=fbank`` + ``init.frontend_ckpt``. With
``teacher.target=ffn`` the targets are the teacher layers' FFN outputs
(data2vec-style) instead of the layer outputs. The options a sweep chooses CoLLD's setting with
(``teacher.target_norm``, ``loss.exclude_neighbours``, ``loss.masked_weight``, ``mask.prob`` 0) and the
accuracy-against-chance log are described in ``docs/colld_options.md``.

The student follows the teacher's input normalisation: when the teacher's
s3prl expert layer-normalises the waveform (``task_cfg.normalize``), so does
the student (``model.normalize_waveform``, resolved here and stored with the
student's config in the checkpoint, so the student upstream applies it too).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from s3prl_colld.config import ConfigError, choice
from s3prl_colld.models.heads import HeadConfig, PredictionHeads
from s3prl_colld.models.init import init_student_from_teacher, load_frontend
from s3prl_colld.models.student import StudentConfig, StudentEncoder
from s3prl_colld.objectives.losses import (discriminative_kl, frame_terms, info_nce, l1_cosine, unit_log_probs,
                                          weighted_loss)
from s3prl_colld.objectives.monitor import ChanceMonitor
from s3prl_colld.objectives.targets import normalize_targets
from s3prl_colld.objectives.masking import span_mask
from s3prl_colld.pretrain.schema import TaskConfig
from s3prl_colld.pretrain.task import register
from s3prl_colld.pretrain.tasks.audio_task import AudioTask
from s3prl_colld.s3prl_bridge.teacher import Teacher, TeacherConfig, resolve_normalization

log = logging.getLogger(__name__)


@dataclass
class MaskConfig:
    # span-start probability x span (HuBERT's mask_prob); 0 = no masking (then every loss reads all valid
    # frames, whatever loss.masked_only / masked_weight say); a low rate still masks >= 1 span per utterance
    prob: float = 0.0
    length: int = 10

    def validate(self) -> None:
        if not self.prob >= 0:
            raise ConfigError(f"config.mask.prob must be >= 0 (0 = no masking), got {self.prob}")
        if self.length < 1:
            raise ConfigError(f"config.mask.length must be >= 1 frame, got {self.length}")


@dataclass
class LossConfig:
    kind: str = "regression"  # regression (L1 + cosine) | contrastive (InfoNCE)
    cos_weight: float = 1.0  # λ of the cosine term in regression
    num_negatives: int = 100  # K, contrastive
    temperature: float = 0.1  # τ, contrastive
    masked_only: bool = True  # contrastive/regression on masked frames only (when masking is on); false: all frames
    # HuBERT-style weighting, overrides masked_only when set: loss = α · L(masked frames) + (1 - α) · L(unmasked
    # frames), each the mean over its frames; 1 = masked only, 0 = unmasked only; null = use masked_only
    masked_weight: Optional[float] = None
    # contrastive: negatives are never drawn from the W frames either side of the positive (neighbouring frames
    # of a 50 Hz teacher are near copies of it); 0 = only the positive itself is excluded
    exclude_neighbours: int = 0
    # stuck-objective warning: after acc_warn_after log rows in a row at accuracy <= acc_warn_ratio x its chance
    # level (InfoNCE: 1 / (1 + distinct negatives), 1 / (K + 1) when distinct), the log warns (objectives/monitor.py)
    acc_warn_ratio: float = 1.5
    acc_warn_after: int = 5
    regression_weight: float = 0.0  # with kind=contrastive: add L1 + cosine with this weight
    disc_weight: float = 0.0  # α of the discriminative KL loss (HuBERT teachers only)
    disc_temperature: float = 0.1  # κ (HuBERT's logit_temp)
    disc_final_dim: int = 0  # student projection dim; 0 = the teacher's final_dim

    def validate(self) -> None:
        choice(self.kind, ("regression", "contrastive"), "config.loss.kind")
        if self.masked_weight is not None:
            if not 0.0 <= self.masked_weight <= 1.0:
                raise ConfigError(f"config.loss.masked_weight must be in [0, 1] (or null), got {self.masked_weight}")
            if not self.masked_only:
                raise ConfigError("config.loss.masked_only=false (all frames) contradicts config.loss.masked_weight="
                                  f"{self.masked_weight}: set one of them (masked_weight null, or masked_only true)")
        if self.exclude_neighbours < 0:
            raise ConfigError(f"config.loss.exclude_neighbours must be >= 0 frames, got {self.exclude_neighbours}")
        if self.num_negatives < 1:
            raise ConfigError(f"config.loss.num_negatives must be >= 1, got {self.num_negatives}")
        if self.acc_warn_after < 1:
            raise ConfigError(f"config.loss.acc_warn_after must be >= 1 log rows, got {self.acc_warn_after}")


@dataclass
class InitConfig:
    frontend_from_teacher: bool = True  # copy the teacher's CNN when shapes match
    layers_from_teacher: bool = False  # copy the teacher's first layers when shapes match
    frontend_ckpt: str | None = None  # states-*.ckpt of an input_distill run (Fbank front-end)
    # freeze the teacher-copied CNN and reuse the teacher's CNN output instead of running it again (faster;
    # needs frontend_from_teacher and a student CNN of the teacher's shape)
    share_teacher_frontend: bool = False


@dataclass
class DistillConfig(TaskConfig):
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    model: StudentConfig = field(default_factory=StudentConfig)
    heads: HeadConfig = field(default_factory=HeadConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    init: InitConfig = field(default_factory=InitConfig)


class DistillTask(AudioTask):
    """Frozen teacher -> targets; student (+ heads) -> predictions; objective over valid frames."""

    Config = DistillConfig
    exports = ("student",)
    model_config = "students/tiny.yaml"  # the default student of every distillation task (-g replaces it)

    def __init__(self, cfg: DistillConfig, expdir: Path) -> None:
        super().__init__(cfg, expdir)
        self.teacher = Teacher(cfg.teacher)
        cfg.model.normalize_waveform = resolve_normalization(cfg.model.normalize_waveform, self.teacher,
                                                             "config.model.normalize_waveform")
        self.student = StudentEncoder(cfg.model)
        self.pairs = cfg.heads.resolve(cfg.model.layers, self.teacher.num_layers)
        if cfg.teacher.target == "ffn" and any(j == 0 for _, j in self.pairs):
            raise ConfigError("config.teacher.target=ffn: teacher layer 0 (the front-end output) has no FFN; "
                              "map student layers to teacher layers 1..L_T (config.heads)")
        self.heads = PredictionHeads(self.pairs, cfg.model.dim, self.teacher.hidden_sizes, cfg.heads)
        self.unit_proj: nn.Linear | None = None
        if cfg.loss.disc_weight > 0:
            if not self.teacher.has_unit_head:
                raise ConfigError(
                    f"config.loss.disc_weight={cfg.loss.disc_weight} needs a HuBERT teacher with its unit head "
                    f"(final_proj, label_embs_concat); {cfg.teacher.name} has none: set config.loss.disc_weight=0"
                )
            final_dim = cfg.loss.disc_final_dim or int(self.teacher.codebook().size(1))
            self.unit_proj = nn.Linear(cfg.model.dim, final_dim)
            self.register_buffer("codebook", self.teacher.codebook(), persistent=False)
        init_student_from_teacher(self.student, self.teacher, cfg.init)
        if cfg.init.frontend_ckpt:
            load_frontend(self.student, cfg.init.frontend_ckpt)
        if cfg.init.share_teacher_frontend:
            self._check_shared_frontend()
            self.student.frontend.requires_grad_(False)
        self.set_kernels(cfg.runner.fast_kernels, cfg.runner.cnn_channels_last, cfg.runner.fft_pos_conv)

    def set_kernels(self, fast: bool = True, cnn_channels_last: bool = False, fft_pos_conv: bool = False) -> None:
        """How the step runs, not what it computes (``runner.fast_kernels``, ``runner.cnn_channels_last``,
        ``runner.fft_pos_conv``).

        ``fast``: SDPA attention in student and teacher, no padding masks on
        unpadded batches, the direct teacher call, CNN norms in the autocast
        dtype; False runs the reference implementations (for tests and benchmarks).
        """
        self.fast = fast
        for layer in self.student.layers:
            layer.sdpa = fast
        frontend = self.student.frontend
        if hasattr(frontend, "channels_last"):
            frontend.channels_last = cnn_channels_last
            frontend.low_precision_norm = fast
        self.student.pos_conv.fft = fft_pos_conv
        self.teacher.set_kernels(direct=fast, sdpa=fast, cnn_channels_last=cnn_channels_last, fft_pos_conv=fft_pos_conv)

    def compile_modules(self) -> None:
        """``runner.compile``: ``torch.compile`` in place the student and the teacher's CNN (its largest part;
        the teacher's transformer is left alone: s3prl collects its hidden states with hooks)."""
        self.student.compile()
        cnn = self.teacher.frontend_module
        if cnn is not None:
            cnn.compile()

    def _check_shared_frontend(self) -> None:
        """``init.share_teacher_frontend`` needs the student's CNN to be an exact copy of the teacher's."""
        cfg = self.cfg
        teacher_cnn = self.teacher.frontend_module
        why = None
        if cfg.model.frontend != "cnn" or cfg.init.frontend_ckpt:
            why = "the student's front-end is not a CNN copied from the teacher (model.frontend must be cnn)"
        elif not cfg.init.frontend_from_teacher:
            why = "init.frontend_from_teacher is false"
        elif teacher_cnn is None:
            why = f"the teacher {cfg.teacher.name} has no fairseq-style feature_extractor to share"
        elif self.teacher.dtype != torch.float32:
            why = "the teacher runs in reduced precision (teacher.precision must be fp32)"
        elif bool(cfg.model.normalize_waveform) != self.teacher.normalizes_waveform:
            why = "the student does not normalise the waveform as the teacher does (model.normalize_waveform)"
        else:
            mine = list(self.student.frontend.state_dict().values())
            theirs = list(teacher_cnn.state_dict().values())
            if len(mine) != len(theirs) or any(a.shape != b.shape or not torch.equal(a, b.to(a.device))
                                               for a, b in zip(mine, theirs)):
                why = "the student's CNN does not have the teacher's shape (model.cnn.conv_layers, mode, conv_bias)"
        if why:
            raise ConfigError(f"config.init.share_teacher_frontend=true: {why}; set it to false")

    # ---- training -----------------------------------------------------
    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss of one batch; see the module docstring for the objectives."""
        cfg = self.cfg
        wav, lengths = batch["wav"], batch["wav_lengths"]
        # False only when the collate says every crop fills the batch (then no padding masks are needed)
        padded = bool(batch.get("padded", True)) or not self.fast
        mask_fn = (lambda v: span_mask(v, cfg.mask.prob, cfg.mask.length)) if cfg.mask.prob > 0 else None
        share = cfg.init.share_teacher_frontend
        teacher = self.teacher.run(wav, lengths, ffn=cfg.teacher.target == "ffn", frontend=share, padded=padded)
        targets = teacher.ffn if teacher.ffn is not None else teacher.hidden  # L_T + 1 x [B, T_T, D_T]
        hidden, valid, mask = self.student(wav, lengths, mask_fn=mask_fn,
                                           frontend_out=teacher.frontend if share else None, padded=padded)
        T = min([hidden[0].size(1)] + [targets[j].size(1) for _, j in self.pairs])
        valid = valid[:, :T]
        terms = frame_terms(valid, None if mask is None else mask[:, :T], cfg.loss.masked_only, cfg.loss.masked_weight)
        preds = self.heads([h[:, :T] for h in hidden])
        total = hidden[0].new_zeros(())
        stats: dict[str, torch.Tensor] = {}
        for (i, j), pred in zip(self.pairs, preds):
            y = normalize_targets(targets[j][:, :T], valid, cfg.teacher.target_norm)
            if cfg.loss.kind == "contrastive":
                loss, s = weighted_loss(lambda sel: info_nce(pred, y, valid, sel, cfg.loss.num_negatives,
                                                             cfg.loss.temperature,
                                                             exclude_neighbours=cfg.loss.exclude_neighbours), terms)
                if cfg.loss.regression_weight > 0:
                    reg, _ = l1_cosine(pred, y, valid, cfg.loss.cos_weight)
                    loss = loss + cfg.loss.regression_weight * reg
            else:
                loss, s = weighted_loss(lambda sel: l1_cosine(pred, y, sel, cfg.loss.cos_weight), terms)
            total = total + loss / len(self.pairs)
            stats[f"loss_{i}_{j}"] = loss.detach()
            stats.update({f"{k}_{i}_{j}": v for k, v in s.items()})
        if self.unit_proj is not None:
            t_logp = self.teacher.unit_log_probs(teacher.hidden[-1][:, :T])
            s_logp = unit_log_probs(self.unit_proj(hidden[-1][:, :T]), self.codebook, cfg.loss.disc_temperature)
            kl, s = discriminative_kl(s_logp, t_logp, valid)
            total = total + cfg.loss.disc_weight * kl
            stats.update(s)
        if mask is not None:
            stats["mask_frac"] = (mask[:, :T] & valid).sum() / valid.sum().clamp_min(1)
        return total, stats

    def log_summary(self, step: int, means: dict[str, float]) -> str:
        """Accuracy against chance of the contrastive and discriminative objectives; warns when one is stuck
        (``loss.acc_warn_after`` log rows at <= ``loss.acc_warn_ratio`` x chance)."""
        if not hasattr(self, "_chance_monitor"):
            self._chance_monitor = ChanceMonitor(self.cfg.loss.acc_warn_after, self.cfg.loss.acc_warn_ratio)
        return self._chance_monitor.update(step, means)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Student, heads and unit projection; the frozen teacher is not stored."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("teacher.")}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("teacher.")]
        if missing or unexpected:
            raise RuntimeError(f"checkpoint does not match the task: missing {missing[:5]}, unexpected {unexpected[:5]}")


@register("distilhubert", upstreams=("distilhubert_colld_local",))
class DistilhubertTask(DistillTask):
    """DistilHuBERT (methods.md 1): every head reads the last student layer and regresses a teacher layer."""


@register("l2l_distiller", upstreams=("l2l_local",))
class L2LDistillerTask(DistillTask):
    """Layer-to-layer regression (methods.md 2): head (i, j) reads student layer i, regresses teacher layer j."""


@register("colld_distiller", upstreams=("colld_local", "colld_small"))
class ColldDistillerTask(DistillTask):
    """CoLLD (methods.md 3): span-masked student input, per-frame InfoNCE against the unmasked teacher."""
