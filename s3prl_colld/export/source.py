"""A checkpoint -> ``ExportSource``: the student as a ``StudentEncoder`` plus how our upstream runs it.

Two kinds of checkpoint hold a student:

- ``student``: a pretrain checkpoint whose ``export`` section exports a ``student``
  (CoLLD, DistilHuBERT, L2L, with or without the discriminative head, any preset,
  CNN or Fbank front-end), read with ``checkpoint.exported``;
- ``hubert``: an s3prl HuBERT checkpoint (the keys ``hubert_local`` reads:
  ``task_cfg, model_cfg, model_weight``), i.e. DiceHuBERT and ``hubert_tiny``
  checkpoints. Its fairseq-style ``HubertModel`` is the same function as a
  ``StudentEncoder`` with a CNN front-end, the front-end LayerNorm on, and, for
  a ``layer_norm_first`` model, no LayerNorm after the position convolution
  (``encoder.norm`` is an ``Identity`` then). Its weights are renamed into the
  student's (``hubert_to_student``); the unit head (``final_proj``,
  ``label_embs_concat``) is left out.

The two also differ in which frames of a padded utterance count as padding:
our students use the CNN's output length (``padding="conv"``, as Hugging
Face does); s3prl's HuBERT marks a frame as padding when every sample of its
``N // T``-sample block is padding (``padding="fairseq"``, ``hubert_padding``).
The two agree on unpadded input and differ by at most one frame at the end of
a padded utterance.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from s3prl_colld import checkpoint as ckpt_io
from s3prl_colld.config import from_dict
from s3prl_colld.models.frontends import CNNConfig
from s3prl_colld.models.student import StudentConfig, StudentEncoder

HUBERT_KEYS = ("task_cfg", "model_cfg", "model_weight")  # what s3prl's hubert_local reads


class ExportError(ValueError):
    """A checkpoint or a student that cannot be exported as asked (the message says what to do instead)."""


@dataclass
class ExportSource:
    """What an export needs to know about one checkpoint.

    Attributes:
        encoder: the student in eval mode: ``encoder(wav [B, N], lengths [B])`` -> ``(L + 1`` hidden states
            ``[B, T, D]``, ``valid [B, T]``, None)`` (with ``padding="conv"``; see ``hidden_states``).
        kind: ``student`` or ``hubert`` (see the module docstring).
        padding: ``conv`` or ``fairseq``: which frames of a padded utterance are padding.
        task: the pretrain task that wrote the checkpoint (``colld_distiller``, ``dicehubert``, ...).
        config: the checkpoint's whole ``config`` (teacher, data, ...: for the model card).
        step: the checkpoint's training step (None if it does not say).
        path: the checkpoint file.
        upstreams: the ``s3prl.hub`` names that load the checkpoint.
    """

    encoder: StudentEncoder
    kind: str
    padding: str
    task: str
    config: dict[str, Any]
    step: int | None
    path: Path
    upstreams: list[str]

    @property
    def normalize_waveform(self) -> bool:
        return bool(self.encoder.cfg.normalize_waveform)

    @property
    def num_parameters(self) -> int:
        """Parameters of the encoder (the mask embedding included, as Hugging Face's ``masked_spec_embed``)."""
        return sum(p.numel() for p in self.encoder.parameters())


def load_source(path: str | Path) -> ExportSource:
    """Read a checkpoint of either kind (module docstring) with ``weights_only=True``.

    Raises:
        ExportError: the file holds no student and no s3prl HuBERT model (the message says what it is).
        CheckpointError: the file is missing or unreadable.
    """
    path = Path(path)
    state = ckpt_io.load(path)
    section = state.get("export") or {}
    upstreams = list(section.get("upstreams") or [])
    task = str(state.get("task"))
    step = state.get("step") if isinstance(state.get("step"), int) else None
    config = state.get("config") if isinstance(state.get("config"), dict) else {}
    has_student = "student" in section.get("modules", {}) or (
        not section and any(k.startswith("student.") for k in state.get("model", {})))
    if has_student:
        cfg_dict, weights = ckpt_io.exported(state, "student", path)
        encoder = StudentEncoder(from_dict(StudentConfig, cfg_dict, "config.model"))
        encoder.load_state_dict(weights)
        return ExportSource(encoder.eval(), "student", "conv", task, config, step, path, upstreams)
    if all(k in state for k in HUBERT_KEYS):
        frontend = (state.get("tiny_hubert") or {}).get("frontend", "cnn")
        if frontend != "cnn":
            raise ExportError(f"{path} is a HuBERT with the {frontend} front-end (config.model.frontend={frontend}): "
                              "Hugging Face's HubertModel and the ONNX graph have only the waveform CNN, so it "
                              "cannot be exported; export a student of it, or a teacher with frontend: cnn")
        encoder = hubert_to_student(state["model_cfg"], state["task_cfg"], state["model_weight"])
        return ExportSource(encoder.eval(), "hubert", "fairseq", task, config, step, path,
                            upstreams or ["hubert_local"])
    raise ExportError(f"{path} holds no student to export: it is a checkpoint of task {task!r} with neither an "
                      "exported student (CoLLD, DistilHuBERT, L2L, ...: run_pretrain.py checkpoints of a "
                      "distillation task) nor an s3prl HuBERT model (task_cfg / model_cfg / model_weight: "
                      "DiceHuBERT, hubert_tiny)")


# ----------------------------------------------------------------------------------------- s3prl HuBERT
def _conv_layers(spec: Any) -> list[list[int]]:
    """s3prl's ``conv_feature_layers`` (a Python literal string, or a list) -> ``[[dim, kernel, stride], ...]``."""
    layers = ast.literal_eval(spec) if isinstance(spec, str) else spec  # a literal only: never evaluated as code
    return [[int(d), int(k), int(s)] for d, k, s in layers]


def hubert_student_config(model_cfg: dict[str, Any], task_cfg: dict[str, Any]) -> StudentConfig:
    """The ``StudentConfig`` computing the same function as s3prl's ``HubertModel`` of ``model_cfg``."""
    activation = str(model_cfg.get("activation_fn", "gelu"))
    if activation != "gelu":
        raise ExportError(f"the HuBERT model uses activation_fn={activation}; only gelu models can be exported")
    mode = str(model_cfg.get("extractor_mode", "default"))
    if mode not in ("default", "layer_norm"):
        raise ExportError(f"the HuBERT model's extractor_mode={mode} is not one of default, layer_norm")
    return StudentConfig(
        frontend="cnn",
        cnn=CNNConfig(conv_layers=_conv_layers(model_cfg["conv_feature_layers"]), mode=mode,
                      conv_bias=bool(model_cfg.get("conv_bias", False))),
        frontend_norm=True, normalize_waveform=bool(task_cfg.get("normalize", False)),
        layers=int(model_cfg["encoder_layers"]), dim=int(model_cfg["encoder_embed_dim"]),
        ffn_dim=int(model_cfg["encoder_ffn_embed_dim"]), heads=int(model_cfg["encoder_attention_heads"]),
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        layer_norm_first=bool(model_cfg.get("layer_norm_first", False)),
        conv_pos=int(model_cfg.get("conv_pos", 128)), conv_pos_groups=int(model_cfg.get("conv_pos_groups", 16)))


def hubert_to_student(model_cfg: dict[str, Any], task_cfg: dict[str, Any],
                      weights: dict[str, torch.Tensor]) -> StudentEncoder:
    """s3prl's HuBERT (``model_cfg``, ``task_cfg``, ``model_weight``) as a ``StudentEncoder`` (same function).

    Renames: CNN blocks ``conv_layers.i.0`` / ``.2`` / ``.2.1`` -> ``frontend.layers.i.0`` / ``.1``;
    ``layer_norm`` -> ``frontend_norm``; ``post_extract_proj`` -> ``proj`` (the identity when absent);
    ``encoder.pos_conv.0`` -> ``pos_conv.conv``; ``encoder.layer_norm`` -> ``norm`` (post-norm) or
    ``final_norm`` (``layer_norm_first``); per layer ``q/k/v_proj`` -> ``in_proj``, ``self_attn_layer_norm`` ->
    ``norm1``, ``fc1`` / ``fc2`` -> ``linear1`` / ``linear2``, ``final_layer_norm`` -> ``norm2``.
    """
    cfg = hubert_student_config(model_cfg, task_cfg)
    encoder = StudentEncoder(cfg)
    if cfg.layer_norm_first:
        encoder.norm = nn.Identity()  # fairseq's pre-norm encoder has no LayerNorm after the position conv
    w = {k: v for k, v in weights.items() if not k.startswith(("final_proj.", "label_embs_concat"))}
    out: dict[str, torch.Tensor] = {}
    for i in range(len(cfg.cnn.conv_layers)):
        for p in ("weight", "bias"):
            for src, dst in ((f"feature_extractor.conv_layers.{i}.0.{p}", f"frontend.layers.{i}.0.{p}"),
                             (f"feature_extractor.conv_layers.{i}.2.{p}", f"frontend.layers.{i}.1.{p}"),
                             (f"feature_extractor.conv_layers.{i}.2.1.{p}", f"frontend.layers.{i}.1.{p}")):
                if src in w:
                    out[dst] = w.pop(src)
    for p in ("weight", "bias"):
        out[f"frontend_norm.{p}"] = w.pop(f"layer_norm.{p}")
        out[f"{'final_norm' if cfg.layer_norm_first else 'norm'}.{p}"] = w.pop(f"encoder.layer_norm.{p}")
    if "post_extract_proj.weight" in w:
        out["proj.weight"], out["proj.bias"] = w.pop("post_extract_proj.weight"), w.pop("post_extract_proj.bias")
    else:  # embed dim = CNN dim: fairseq has no projection; an identity Linear is the same function, exactly
        out["proj.weight"], out["proj.bias"] = torch.eye(cfg.dim), torch.zeros(cfg.dim)
    out["mask_emb"] = w.pop("mask_emb")
    pos = "encoder.pos_conv.0."
    g = w.pop(pos + "weight_g", None)
    if g is None:
        g = w.pop(pos + "parametrizations.weight.original0")
    v = w.pop(pos + "weight_v", None)
    if v is None:
        v = w.pop(pos + "parametrizations.weight.original1")
    out["pos_conv.conv.parametrizations.weight.original0"] = g
    out["pos_conv.conv.parametrizations.weight.original1"] = v
    out["pos_conv.conv.bias"] = w.pop(pos + "bias")
    for i in range(cfg.layers):
        src, dst = f"encoder.layers.{i}.", f"layers.{i}."
        for p in ("weight", "bias"):
            out[f"{dst}self_attn.in_proj_{p}"] = torch.cat([w.pop(f"{src}self_attn.{x}_proj.{p}") for x in "qkv"])
            for a, b in (("self_attn.out_proj", "self_attn.out_proj"), ("self_attn_layer_norm", "norm1"),
                         ("fc1", "linear1"), ("fc2", "linear2"), ("final_layer_norm", "norm2")):
                out[f"{dst}{b}.{p}"] = w.pop(f"{src}{a}.{p}")
    if w:
        raise ExportError(f"the HuBERT model has weights this export does not know: {', '.join(sorted(w)[:6])}")
    encoder.load_state_dict(out)
    return encoder


def hubert_padding(frames: torch.Tensor, num_samples: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """s3prl HuBERT's valid frames (``forward_padding_mask``): ``frames [T]`` (0 .. T-1), ``num_samples`` (0-dim:
    the padded length N), ``lengths [B]`` -> ``valid [B, T]``.

    A frame is padding when all samples of its ``N // T``-sample block are (the first ``T * (N // T)``
    samples are split into ``T`` blocks), so frame ``t`` is valid iff ``t * (N // T) < length``.
    """
    block = torch.div(num_samples, frames[-1] + 1, rounding_mode="floor")  # T >= 1 (at least one frame)
    return (frames[None, :] * block) < lengths[:, None]
