"""The frozen teacher: any s3prl upstream, run in eval mode under inference mode, at its own precision.

``Teacher`` is the shared ``FrozenS3PRLUpstream`` (so ``hubert_base``,
``wavlm_base_plus``, ``hubert_local`` + a path, ... all work), run at exactly
``teacher.precision``: outside any autocast of the trainer, with weights and
waveform cast to that dtype. For HuBERT teachers it exposes the
unit-prediction head (``final_proj`` and the unit embeddings
``label_embs_concat``) for the discriminative loss.

Two facts a student must follow are read from the s3prl expert:
``normalizes_waveform`` (s3prl's HuBERT / wav2vec 2.0 / WavLM experts apply
``F.layer_norm`` to each waveform when the checkpoint's ``task_cfg.normalize``
is true: XLS-R, HuBERT Large, WavLM Large) and, with ``teacher.target=ffn``,
the output of each layer's feed-forward block before its residual
(data2vec's target), captured by forward hooks on the ``fc2`` of every
fairseq-style ``TransformerSentenceEncoderLayer``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from s3prl_colld.config import ConfigError, choice
from s3prl_colld.models.frontends import normalize_waveform
from s3prl_colld.models.teacher_fast import direct_hidden_states
from s3prl_colld.models.tiny_hubert import FbankExtractor
from s3prl_colld.s3prl_bridge.frozen import FrozenS3PRLUpstream

log = logging.getLogger(__name__)


@dataclass
class TeacherConfig:
    name: str = "hubert_local"  # any s3prl hub name
    ckpt: str | None = None  # path for *_local upstreams
    precision: str = "fp32"  # fp32 | fp16 | bf16: the teacher runs in exactly this dtype (fp16/bf16 are for GPUs)
    # layer: each layer's output (s3prl's hidden states) | ffn: each layer's FFN output before the residual
    # (data2vec-style; fairseq-style HuBERT / wav2vec 2.0 / WavLM teachers)
    target: str = "layer"
    # normalisation of the distillation targets before the loss (objectives/targets.py): none (the features as
    # they are) | instance (per utterance and channel over its valid frames: data2vec's instance norm) |
    # layer (per frame over channels: layer norm without affine). Read by the distillation tasks
    # (distilhubert, l2l_distiller, colld_distiller); not by the discriminative loss (the HuBERT head reads the
    # raw last layer), input_distill, hubert_tiny or dicehubert, which reject a value other than none.
    target_norm: str = "none"

    def validate(self) -> None:
        choice(self.precision, ("fp32", "fp16", "bf16"), "config.teacher.precision")
        choice(self.target, ("layer", "ffn"), "config.teacher.target")
        choice(self.target_norm, ("none", "instance", "layer"), "config.teacher.target_norm")
        if self.name.endswith("_local") and not self.ckpt:
            raise ConfigError(f"config.teacher.name={self.name} needs config.teacher.ckpt=PATH")

    def require_raw_targets(self, task: str, why: str) -> None:
        """For tasks that do not read normalised targets: ``target_norm`` other than none is an error."""
        if self.target_norm != "none":
            raise ConfigError(f"config.teacher.target_norm={self.target_norm}: {task} {why}, so it does not "
                              f"normalise teacher targets; set config.teacher.target_norm=none")


@dataclass
class TeacherOutput:
    """What one teacher pass returns (float32, plain tensors, ``[B, T, D]`` unless noted).

    ``hidden``: ``L_T + 1`` hidden states (front-end output + every layer), as s3prl gives them;
    ``ffn``: with ``ffn=True``, ``L_T + 1`` tensors: ``hidden[0]``, then each layer's FFN output (``T`` = the
    CNN's frame count; s3prl's hidden states repeat the last frame up to ``ceil(N / 320)``);
    ``frontend``: with ``frontend=True``, the CNN output ``[B, T, C]``.
    """

    hidden: list[torch.Tensor]
    ffn: list[torch.Tensor] | None = None
    frontend: torch.Tensor | None = None


_NORMALIZE_FLAGS = ("wav_normalize", "task_cfg.normalize", "task.cfg.normalize", "cfg.normalize")


def expert_normalizes_waveform(expert: nn.Module) -> bool:
    """Whether an s3prl upstream expert layer-normalises each waveform before its model.

    s3prl keeps the checkpoint's ``task_cfg.normalize`` as ``wav_normalize`` (wav2vec 2.0, data2vec),
    ``task_cfg.normalize`` (HuBERT), ``task.cfg.normalize`` (fairseq-loaded HuBERT) or ``cfg.normalize``
    (WavLM, UniSpeech-SAT); LightHuBERT always normalises. Other upstreams do not.
    """
    for path in _NORMALIZE_FLAGS:
        obj: Any = expert
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        else:
            return bool(obj)
    return type(expert).__module__.startswith("s3prl.upstream.lighthubert")


def resolve_normalization(value: bool | None, teacher: Teacher, where: str) -> bool:
    """The student's ``normalize_waveform``: the teacher's when unset (null); an explicit value must agree."""
    if value is None:
        if teacher.normalizes_waveform:
            log.info("the teacher %s layer-normalises each waveform (task_cfg.normalize): so will the student",
                     teacher.cfg.name)
        return teacher.normalizes_waveform
    if value != teacher.normalizes_waveform:
        raise ConfigError(
            f"{where}={str(value).lower()}, but the teacher {teacher.cfg.name} "
            f"{'does' if teacher.normalizes_waveform else 'does not'} layer-normalise the waveform "
            f"(its task_cfg.normalize); the student must see what the teacher sees: leave {where} unset (null)"
        )
    return value


class Teacher(FrozenS3PRLUpstream):
    """Frozen upstream -> hidden states ``[B, T, D_T]`` (front-end output + every layer)."""

    def __init__(self, cfg: TeacherConfig) -> None:
        super().__init__(cfg.name, cfg.ckpt, "config.teacher.ckpt", "config.teacher.name=")
        self.cfg = cfg
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[cfg.precision]
        if self.dtype != torch.float32 and isinstance(self.frontend_module, FbankExtractor):
            # its mel filterbank and log would run in half precision (fp16: the power spectrum overflows)
            raise ConfigError(f"config.teacher.precision={cfg.precision}: the teacher {cfg.name} has the Fbank "
                              "front-end (config.model.frontend=fbank), which runs in fp32 only; set "
                              "config.teacher.precision=fp32")
        self.upstream.to(self.dtype)
        self.num_layers = self.num_hidden - 1  # transformer layers (hidden_states also has h_0)
        self.normalizes_waveform = expert_normalizes_waveform(getattr(self.upstream, "upstream", self.upstream))
        if cfg.target == "ffn":
            self.ffn_modules()  # fail early with a clear message
        self.direct = True  # unpadded batches skip S3PRLUpstream's list round trip (models/teacher_fast.py)

    def set_kernels(self, direct: bool = True, sdpa: bool = True, cnn_channels_last: bool = False,
                    fft_pos_conv: bool = False) -> None:
        """How the teacher runs (not what it computes): the direct call on unpadded batches, SDPA attention,
        a channels-last CNN (HuBERT teachers), the position conv as an FFT product (see
        ``models/teacher_fast.py``, ``models/attention.py``, ``models/fftconv.py``)."""
        from s3prl_colld.models.attention import use_fairseq_sdpa
        from s3prl_colld.models.fftconv import use_fft_pos_conv
        from s3prl_colld.models.teacher_fast import use_channels_last_cnn

        self.direct = direct
        use_fairseq_sdpa(self.upstream, sdpa)
        use_channels_last_cnn(self.upstream, cnn_channels_last)
        use_fft_pos_conv(self.upstream, fft_pos_conv)

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

    def ffn_modules(self) -> list[nn.Module]:
        """The second FFN linear (``fc2``) of each encoder layer, in order (``L_T`` modules)."""
        layers = getattr(getattr(self.fairseq_model, "encoder", None), "layers", None)
        fc2 = [getattr(layer, "fc2", None) for layer in layers] if layers is not None else []
        if not fc2 or any(m is None for m in fc2) or len(fc2) != self.num_layers:
            raise ConfigError(
                f"config.teacher.target=ffn needs a fairseq-style teacher (s3prl's HuBERT / wav2vec 2.0 / WavLM: "
                f"model.encoder.layers[i].fc2); {self.cfg.name} has none: use config.teacher.target=layer"
            )
        return fc2

    @torch.inference_mode()
    def _run(self, wav: torch.Tensor, lengths: torch.Tensor, ffn: bool, frontend: bool, padded: bool = True
             ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """One pass at ``self.dtype`` with autocast off; hooks collect FFN outputs ``[T, B, D]`` / CNN ``[B, C, T]``."""
        ffn_out: list[torch.Tensor] = []
        cnn_out: list[torch.Tensor] = []
        handles = []
        if ffn:
            handles += [m.register_forward_hook(lambda _m, _i, out: ffn_out.append(out)) for m in self.ffn_modules()]
        if frontend or ffn:  # the CNN's frame count also tells the FFN outputs' real length
            module = self.frontend_module
            if module is None:
                raise ConfigError(f"teacher {self.cfg.name} has no feature_extractor")
            handles.append(module.register_forward_hook(lambda _m, _i, out: cnn_out.append(out)))
        try:
            with torch.autocast(device_type=wav.device.type, enabled=False):
                wav = wav.to(self.dtype)
                hs = direct_hidden_states(self.upstream, wav, padded) if self.direct else None
                if hs is None:
                    hs, _ = self.upstream(wav, lengths)
        finally:
            for h in handles:
                h.remove()
        return list(hs), ffn_out, cnn_out

    def run(self, wav: torch.Tensor, lengths: torch.Tensor, ffn: bool = False, frontend: bool = False,
            padded: bool = True) -> TeacherOutput:
        """``wav [B, N]``, ``lengths [B]`` -> ``TeacherOutput`` (float32 copies, usable in autograd graphs).

        ``padded=False`` promises that every ``lengths[b]`` equals ``N``: a faster path
        (``models/teacher_fast.py``), the same result.
        """
        hs, ffn_out, cnn_out = self._run(wav, lengths, ffn, frontend, padded)
        hidden = [h.float().clone() for h in hs]
        out = TeacherOutput(hidden)
        if ffn:
            if len(ffn_out) != self.num_layers:
                raise RuntimeError(f"expected {self.num_layers} FFN outputs from {self.cfg.name}, got {len(ffn_out)}")
            # fairseq's encoder pads the frames to an even count (required_seq_len_multiple); the hooks see that
            frames = cnn_out[-1].size(2)
            out.ffn = [hidden[0]] + [f.transpose(0, 1)[:, :frames].float().clone() for f in ffn_out]
        if frontend:
            out.frontend = cnn_out[-1].transpose(1, 2).float().clone()
        return out

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor, padded: bool = True) -> list[torch.Tensor]:
        """``wav [B, N]``, ``lengths [B]`` -> ``L_T + 1`` float32 tensors ``[B, T, D_T]`` (plain, not inference tensors)."""
        return self.run(wav, lengths, padded=padded).hidden

    def frontend_features(self, wav: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The teacher's CNN output ``[B, T, C]`` (float32) of the waveform as the teacher sees it (normalised
        per utterance when the teacher normalises), without running its transformer."""
        module = self.frontend_module
        if module is None:
            raise ConfigError(f"teacher {self.cfg.name} has no waveform CNN (feature_extractor)")
        with torch.inference_mode():
            if self.normalizes_waveform:
                wav = normalize_waveform(wav, lengths)
            with torch.autocast(device_type=wav.device.type, enabled=False):
                out = module(wav.to(self.dtype))
        return out.transpose(1, 2).float().clone()

    def unit_log_probs(self, last: torch.Tensor) -> torch.Tensor:
        """HuBERT's unit distribution ``log p_T(c|t)`` from the last hidden state ``[B, T, D]`` -> ``[B, T, C]``."""
        from s3prl_colld.objectives.losses import unit_log_probs

        model = self.hubert
        if model is None:
            raise ConfigError(
                f"the discriminative loss needs a HuBERT teacher with its unit-prediction head "
                f"(final_proj and label_embs_concat); {self.cfg.name} has none"
            )
        with torch.inference_mode(), torch.autocast(device_type=last.device.type, enabled=False):
            proj = model.final_proj(last.to(self.dtype))
            out = unit_log_probs(proj, model.label_embs_concat.split(model.num_classes, 0)[0], float(model.logit_temp))
        return out.float().clone()

    def codebook(self) -> torch.Tensor:
        """The frozen unit embeddings ``[C, final_dim]`` (first label set)."""
        model = self.hubert
        if model is None:
            raise ConfigError(f"{self.cfg.name} has no unit embeddings")
        return model.label_embs_concat.split(model.num_classes, 0)[0].detach().float().clone()
