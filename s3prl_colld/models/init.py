"""Initialise a student from its teacher where shapes allow (DistilHuBERT's recipe).

The teacher is an s3prl wav2vec 2.0-family model (HuBERT, wav2vec 2.0, WavLM's
CNN) whose ``feature_extractor`` and ``encoder.layers`` follow fairseq's
layout; copied are the waveform CNN (conv + norm weights), the front-end
LayerNorm and projection, the position conv, the encoder LayerNorm, and
optionally the first student layers from the first teacher layers. Every
copy is checked for shape; what does not fit is left at its random init and
logged, never forced.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import torch
from torch import nn



class Teacher(Protocol):
    """What is read of the teacher (``s3prl_bridge.teacher.Teacher``; models/ does not import that layer)."""

    cfg: Any  # .name, for messages
    fairseq_model: nn.Module | None  # the fairseq-style model (feature_extractor, encoder.layers), if any

log = logging.getLogger(__name__)


def _copy(dst: torch.Tensor, src: torch.Tensor, name: str, skipped: list[str]) -> bool:
    if dst.shape != src.shape:
        skipped.append(f"{name} {tuple(src.shape)} -> {tuple(dst.shape)}")
        return False
    with torch.no_grad():
        dst.copy_(src.to(dst.dtype))
    return True


def _copy_affine(dst: nn.Module, src: nn.Module, name: str, skipped: list[str]) -> int:
    """``_copy`` of ``weight`` and ``bias`` (a linear layer or a norm); returns how many fitted."""
    return sum(_copy(getattr(dst, p), getattr(src, p), f"{name}.{p}", skipped) for p in ("weight", "bias"))


def _norm_and_conv(seq: nn.Module) -> tuple[nn.Conv1d | None, nn.Module | None]:
    conv = next((m for m in seq.modules() if isinstance(m, nn.Conv1d)), None)
    norm = next((m for m in seq.modules() if isinstance(m, (nn.GroupNorm, nn.LayerNorm))), None)
    return conv, norm


def _copy_cnn(student_cnn: nn.Module, teacher_fx: nn.Module, skipped: list[str]) -> int:
    copied = 0
    if not hasattr(teacher_fx, "conv_layers"):  # a teacher with the Fbank front-end (tiny_hubert.FbankExtractor)
        skipped.append("CNN (the teacher's front-end is not a CNN)")
        return 0
    t_layers = list(teacher_fx.conv_layers)
    if len(t_layers) != len(student_cnn.layers):
        skipped.append(f"CNN depth {len(t_layers)} -> {len(student_cnn.layers)}")
        return 0
    for k, (s_seq, t_seq) in enumerate(zip(student_cnn.layers, t_layers)):
        (s_conv, s_norm), (t_conv, t_norm) = _norm_and_conv(s_seq), _norm_and_conv(t_seq)
        if s_conv is not None and t_conv is not None:
            copied += _copy(s_conv.weight, t_conv.weight, f"cnn.{k}.conv", skipped)
        if s_norm is not None and t_norm is not None:
            copied += _copy_affine(s_norm, t_norm, f"cnn.{k}.norm", skipped)
    return copied


def _copy_layer(s_layer: nn.TransformerEncoderLayer, t_layer: Any, k: int, skipped: list[str]) -> int:
    """fairseq TransformerSentenceEncoderLayer -> torch TransformerEncoderLayer."""
    att = t_layer.self_attn
    w = torch.cat([att.q_proj.weight, att.k_proj.weight, att.v_proj.weight])
    b = torch.cat([att.q_proj.bias, att.k_proj.bias, att.v_proj.bias])
    copied = (_copy(s_layer.self_attn.in_proj_weight, w, f"layer{k}.in_proj.weight", skipped)
              + _copy(s_layer.self_attn.in_proj_bias, b, f"layer{k}.in_proj.bias", skipped))
    pairs = ((s_layer.self_attn.out_proj, att.out_proj, "out_proj"), (s_layer.linear1, t_layer.fc1, "fc1"),
             (s_layer.linear2, t_layer.fc2, "fc2"), (s_layer.norm1, t_layer.self_attn_layer_norm, "norm1"),
             (s_layer.norm2, t_layer.final_layer_norm, "norm2"))
    return copied + sum(_copy_affine(d, s, f"layer{k}.{n}", skipped) for d, s, n in pairs)


def init_student_from_teacher(student: nn.Module, teacher: Teacher, cfg: Any) -> dict[str, int]:
    """Copy what fits (see module docstring). ``cfg`` is an ``InitConfig``. Returns counts."""
    model = teacher.fairseq_model
    skipped: list[str] = []
    copied = {"frontend": 0, "layers": 0}
    if model is None or not hasattr(model, "feature_extractor"):
        if cfg.frontend_from_teacher or cfg.layers_from_teacher:
            log.warning("teacher %s has no fairseq-style model to copy from; the student starts from random init",
                        teacher.cfg.name)
        return copied
    if cfg.frontend_from_teacher and student.cfg.frontend == "cnn":
        copied["frontend"] += _copy_cnn(student.frontend, model.feature_extractor, skipped)
        if getattr(model, "layer_norm", None) is not None and isinstance(student.frontend_norm, nn.LayerNorm):
            copied["frontend"] += _copy_affine(student.frontend_norm, model.layer_norm, "frontend_norm", skipped)
        if getattr(model, "post_extract_proj", None) is not None:
            copied["frontend"] += _copy_affine(student.proj, model.post_extract_proj, "proj", skipped)
    if cfg.layers_from_teacher:
        enc = model.encoder
        t_pos = enc.pos_conv[0]
        s_pos = student.pos_conv.conv
        if hasattr(t_pos, "weight_g"):
            copied["layers"] += _copy(s_pos.parametrizations.weight.original0, t_pos.weight_g, "pos_conv.g", skipped)
            copied["layers"] += _copy(s_pos.parametrizations.weight.original1, t_pos.weight_v, "pos_conv.v", skipped)
            copied["layers"] += _copy(s_pos.bias, t_pos.bias, "pos_conv.bias", skipped)
        copied["layers"] += _copy_affine(student.norm, enc.layer_norm, "norm", skipped)
        for k, (s_layer, t_layer) in enumerate(zip(student.layers, enc.layers)):
            copied["layers"] += _copy_layer(s_layer, t_layer, k, skipped)
    if skipped:
        log.warning("init from teacher: %d tensors did not fit and keep their random init: %s", len(skipped),
                    "; ".join(skipped[:6]) + (" ..." if len(skipped) > 6 else ""))
    log.info("init from teacher: copied %d front-end and %d encoder tensors", copied["frontend"], copied["layers"])
    return copied


def load_frontend(student: nn.Module, ckpt: str) -> None:
    """Copy the front-end that checkpoint ``ckpt`` exports (``-u input_distill``, stage 1) into ``student``."""
    from s3prl_colld import checkpoint as ckpt_io
    from s3prl_colld.config import ConfigError, to_dict

    state = ckpt_io.load(ckpt)
    config, weights = ckpt_io.exported(state, "frontend", ckpt)
    if student.cfg.frontend != "fbank":
        raise ConfigError("config.init.frontend_ckpt needs config.model.frontend=fbank")
    if config != to_dict(student.cfg.fbank):
        raise ConfigError(f"the Fbank front-end in {ckpt} ({config}) does not match config.model.fbank "
                          f"({to_dict(student.cfg.fbank)})")
    trained_on_normalized = bool(state.get("export", {}).get("modules", {}).get("frontend", {}).get("normalize_waveform"))
    if trained_on_normalized != bool(student.cfg.normalize_waveform):
        raise ConfigError(f"the Fbank front-end in {ckpt} was trained on {'' if trained_on_normalized else 'un'}normalised "
                          f"waveforms, but this student's teacher {'does' if student.cfg.normalize_waveform else 'does not'} "
                          "layer-normalise the waveform: train stage 1 with the same teacher")
    student.frontend.load_state_dict(weights)
    log.info("loaded the Fbank front-end from %s", ckpt)
