"""The frozen teacher: any s3prl upstream, run in eval mode under inference mode.

``Teacher`` is the shared ``FrozenS3PRLUpstream`` (so ``hubert_base``,
``wavlm_base_plus``, ``hubert_local`` + a path, ... all work), optionally run
in half precision, and, for HuBERT teachers, exposes the unit-prediction head
(``final_proj`` and the unit embeddings ``label_embs_concat``) for the
discriminative loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from s3prl_colld.config import ConfigError, choice
from s3prl_colld.upstream.frozen import FrozenS3PRLUpstream


@dataclass
class TeacherConfig:
    name: str = "hubert_local"  # any s3prl hub name
    ckpt: str | None = None  # path for *_local upstreams
    precision: str = "fp32"  # fp32 | fp16 | bf16 (weights cast; fp16/bf16 are for GPUs)

    def validate(self) -> None:
        choice(self.precision, ("fp32", "fp16", "bf16"), "config.teacher.precision")
        if self.name.endswith("_local") and not self.ckpt:
            raise ConfigError(f"config.teacher.name={self.name} needs config.teacher.ckpt=PATH")


class Teacher(FrozenS3PRLUpstream):
    """Frozen upstream -> hidden states ``[B, T, D_T]`` (front-end output + every layer)."""

    def __init__(self, cfg: TeacherConfig) -> None:
        super().__init__(cfg.name, cfg.ckpt)
        self.cfg = cfg
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[cfg.precision]
        self.upstream.to(self.dtype)
        self.num_layers = self.num_hidden - 1  # transformer layers (hidden_states also has h_0)
        self.direct = True  # unpadded batches skip S3PRLUpstream's list round trip (models/teacher_fast.py)

    def set_kernels(self, direct: bool = True, sdpa: bool = True, cnn_channels_last: bool = False) -> None:
        """How the teacher runs (not what it computes): the direct call on unpadded batches, SDPA attention,
        a channels-last CNN (HuBERT teachers; see ``models/teacher_fast.py`` and ``models/attention.py``)."""
        from s3prl_colld.models.attention import use_fairseq_sdpa
        from s3prl_colld.models.teacher_fast import use_channels_last_cnn

        self.direct = direct
        use_fairseq_sdpa(self.upstream, sdpa)
        use_channels_last_cnn(self.upstream, cnn_channels_last)

    @property
    def fairseq_model(self) -> nn.Module | None:
        """The fairseq-style model inside s3prl's expert (``HubertModel``, ``Wav2Vec2Model``), if any."""
        return getattr(getattr(self.upstream, "upstream", None), "model", None)

    @property
    def hubert(self) -> nn.Module | None:
        """The s3prl ``HubertModel`` inside, when the teacher is a HuBERT with its pre-training head."""
        model = self.fairseq_model
        if model is not None and getattr(model, "final_proj", None) is not None and hasattr(model, "label_embs_concat"):
            return model
        return None

    @property
    def has_unit_head(self) -> bool:
        return self.hubert is not None

    @property
    def frontend_module(self) -> nn.Module | None:
        """The fairseq-style CNN (``feature_extractor``: ``[B, N] -> [B, C, T]``) inside, if any."""
        return getattr(self.fairseq_model, "feature_extractor", None)

    def forward_with_frontend(self, wav: torch.Tensor, lengths: torch.Tensor, padded: bool = True
                              ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``forward`` plus the teacher's CNN output ``[B, T, C]`` (float32), captured in the same pass."""
        module = self.frontend_module
        if module is None:
            raise RuntimeError(f"teacher {self.cfg.name} has no feature_extractor")
        captured: list[torch.Tensor] = []
        handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            hidden = self.forward(wav, lengths, padded)
        finally:
            handle.remove()
        return hidden, captured[-1].transpose(1, 2).float().clone()

    @torch.inference_mode()
    def _forward(self, wav: torch.Tensor, lengths: torch.Tensor, padded: bool = True) -> list[torch.Tensor]:
        from s3prl_colld.models.teacher_fast import direct_hidden_states

        wav = wav.to(self.dtype)
        hs = direct_hidden_states(self.upstream, wav, padded) if self.direct else None
        if hs is None:
            hs, _ = self.upstream(wav, lengths)
        return list(hs)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor, padded: bool = True) -> list[torch.Tensor]:
        """``wav [B, N]``, ``lengths [B]`` -> ``L_T + 1`` float32 tensors ``[B, T, D_T]`` (plain, not inference tensors).

        ``padded=False`` promises that every ``lengths[b]`` equals ``N``: a faster path, the same result.
        """
        return [h.float().clone() for h in self._forward(wav, lengths, padded)]

    @torch.inference_mode()
    def _unit_log_probs(self, last: torch.Tensor) -> torch.Tensor:
        from s3prl_colld.objectives.losses import unit_log_probs

        model = self.hubert
        assert model is not None
        proj = model.final_proj(last.to(self.dtype))
        codebook = model.label_embs_concat.split(model.num_classes, 0)[0]
        return unit_log_probs(proj, codebook, float(model.logit_temp))

    def unit_log_probs(self, last: torch.Tensor) -> torch.Tensor:
        """HuBERT's unit distribution ``log p_T(c|t)`` from the last hidden state ``[B, T, D]`` -> ``[B, T, C]``."""
        if not self.has_unit_head:
            raise ConfigError(
                f"the discriminative loss needs a HuBERT teacher with its unit-prediction head "
                f"(final_proj and label_embs_concat); {self.cfg.name} has none"
            )
        return self._unit_log_probs(last).float().clone()

    def codebook(self) -> torch.Tensor:
        """The frozen unit embeddings ``[C, final_dim]`` (first label set)."""
        model = self.hubert
        if model is None:
            raise ConfigError(f"{self.cfg.name} has no unit embeddings")
        return model.label_embs_concat.split(model.num_classes, 0)[0].detach().float().clone()
