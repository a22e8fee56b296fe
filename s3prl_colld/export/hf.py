"""A student as a Hugging Face ``transformers.HubertModel`` folder, loadable with no code of ours.

``to_hf(source, out_dir)`` writes ``config.json`` + ``model.safetensors``
(``HubertModel.save_pretrained``), ``preprocessor_config.json``
(``Wav2Vec2FeatureExtractor``: 16 kHz, ``do_normalize`` = the student's
``normalize_waveform``, ``return_attention_mask``) and ``README.md`` (the model
card, ``export.card``), into a temporary folder beside ``out_dir`` that is
renamed to it at the end: an error leaves nothing behind.

What maps to what (``StudentEncoder`` -> ``HubertModel``):

====================================  ==================================================
``frontend.layers.i.0`` (Conv1d)      ``feature_extractor.conv_layers.i.conv``
``frontend.layers.i.1`` (norm)        ``feature_extractor.conv_layers.i.layer_norm``
                                      (``cnn.mode``: default -> ``feat_extract_norm=group``,
                                      layer_norm -> ``layer``)
``frontend_norm``                     ``feature_projection.layer_norm``
                                      (``feat_proj_layer_norm`` = ``frontend_norm``)
``proj``                              ``feature_projection.projection``
``mask_emb``                          ``masked_spec_embed``
``pos_conv.conv`` (weight norm g, v)  ``encoder.pos_conv_embed.conv``
``norm``                              ``encoder.layer_norm`` (post-norm students)
``final_norm``                        ``encoder.layer_norm`` (``do_stable_layer_norm``)
``layers.i.self_attn.in_proj``        ``encoder.layers.i.attention.{q,k,v}_proj`` (split in 3)
``layers.i.self_attn.out_proj``       ``encoder.layers.i.attention.out_proj``
``layers.i.norm1`` / ``norm2``        ``encoder.layers.i.layer_norm`` / ``final_layer_norm``
``layers.i.linear1`` / ``linear2``    ``encoder.layers.i.feed_forward.intermediate_dense`` /
                                      ``output_dense``
====================================  ==================================================

``HubertModel(x, attention_mask=m, output_hidden_states=True).hidden_states`` are then
our upstream's hidden states (the attention mask is needed for padded batches:
our students never attend to padding). Not representable, with an
``ExportError`` that names the ONNX route: the Fbank front-end, and a pre-norm
(``layer_norm_first``) student, whose LayerNorm after the position
convolution Hugging Face's pre-norm encoder lacks. DiceHuBERT (s3prl HuBERT)
checkpoints map as fairseq HuBERT does in ``transformers``' own converter; in
a padded batch Hugging Face counts an utterance's frames by the CNN's output
length where s3prl's HuBERT uses ``source.hubert_padding``, which can keep
one more frame (docs/export.md).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from s3prl_colld.checkpoint import current_umask
from s3prl_colld.constants import SAMPLE_RATE
from s3prl_colld.export.source import ExportError, ExportSource

ONNX_HINT = "export it to ONNX instead: python -m s3prl_colld.export CKPT --to onnx OUT.onnx"


def check_representable(source: ExportSource) -> None:
    """Raise ``ExportError`` (naming the ONNX route) for a student ``HubertModel`` cannot represent."""
    cfg = source.encoder.cfg
    if cfg.frontend != "cnn":
        raise ExportError(f"{source.path}: a student with the {cfg.frontend} front-end cannot be a transformers "
                          f"HubertModel (it takes a waveform CNN); {ONNX_HINT}")
    if cfg.layer_norm_first and not isinstance(source.encoder.norm, torch.nn.Identity):
        raise ExportError(f"{source.path}: a pre-norm (layer_norm_first) student has a LayerNorm after the position "
                          f"convolution that transformers' pre-norm HubertModel lacks; {ONNX_HINT}")
    if cfg.cnn.mode not in ("default", "layer_norm"):
        raise ExportError(f"{source.path}: CNN mode {cfg.cnn.mode} has no transformers equivalent; {ONNX_HINT}")


def hf_config(source: ExportSource) -> Any:
    """The ``transformers.HubertConfig`` of ``source``'s student."""
    from transformers import HubertConfig

    cfg = source.encoder.cfg
    conv = cfg.cnn.conv_layers
    return HubertConfig(
        hidden_size=cfg.dim, num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
        intermediate_size=cfg.ffn_dim, hidden_act="gelu", hidden_dropout=cfg.dropout,
        activation_dropout=cfg.activation_dropout, attention_dropout=cfg.attention_dropout,
        feat_proj_dropout=cfg.dropout, feat_proj_layer_norm=bool(cfg.frontend_norm), layerdrop=0.0,
        layer_norm_eps=1e-5, feat_extract_norm="group" if cfg.cnn.mode == "default" else "layer",
        feat_extract_activation="gelu", conv_dim=[d for d, _, _ in conv], conv_kernel=[k for _, k, _ in conv],
        conv_stride=[s for _, _, s in conv], conv_bias=bool(cfg.cnn.conv_bias),
        num_conv_pos_embeddings=cfg.conv_pos, num_conv_pos_embedding_groups=cfg.conv_pos_groups,
        do_stable_layer_norm=bool(cfg.layer_norm_first), apply_spec_augment=True,
        architectures=["HubertModel"])


def hf_state_dict(source: ExportSource) -> dict[str, torch.Tensor]:
    """``source``'s student weights under ``HubertModel``'s names (the table in the module docstring)."""
    enc = source.encoder
    ours = {k: v.detach().clone() for k, v in enc.state_dict().items()}
    out: dict[str, torch.Tensor] = {}

    def move(src: str, dst: str) -> None:
        for p in ("weight", "bias"):
            if f"{src}.{p}" in ours:
                out[f"{dst}.{p}"] = ours.pop(f"{src}.{p}")

    for i in range(len(enc.cfg.cnn.conv_layers)):
        move(f"frontend.layers.{i}.0", f"feature_extractor.conv_layers.{i}.conv")
        move(f"frontend.layers.{i}.1", f"feature_extractor.conv_layers.{i}.layer_norm")
    move("frontend_norm", "feature_projection.layer_norm")
    move("proj", "feature_projection.projection")
    out["masked_spec_embed"] = ours.pop("mask_emb")
    pos = "encoder.pos_conv_embed.conv"
    out[f"{pos}.parametrizations.weight.original0"] = ours.pop("pos_conv.conv.parametrizations.weight.original0")
    out[f"{pos}.parametrizations.weight.original1"] = ours.pop("pos_conv.conv.parametrizations.weight.original1")
    out[f"{pos}.bias"] = ours.pop("pos_conv.conv.bias")
    move("final_norm" if enc.cfg.layer_norm_first else "norm", "encoder.layer_norm")
    d = enc.cfg.dim
    for i in range(enc.cfg.layers):
        src, dst = f"layers.{i}.", f"encoder.layers.{i}."
        for p in ("weight", "bias"):
            for j, name in enumerate("qkv"):
                out[f"{dst}attention.{name}_proj.{p}"] = ours[f"{src}self_attn.in_proj_{p}"][j * d:(j + 1) * d].clone()
            del ours[f"{src}self_attn.in_proj_{p}"]
        move(f"{src}self_attn.out_proj", f"{dst}attention.out_proj")
        move(f"{src}norm1", f"{dst}layer_norm")
        move(f"{src}norm2", f"{dst}final_layer_norm")
        move(f"{src}linear1", f"{dst}feed_forward.intermediate_dense")
        move(f"{src}linear2", f"{dst}feed_forward.output_dense")
    if ours:
        raise ExportError(f"{source.path}: student weights with no transformers place: {', '.join(sorted(ours)[:6])}")
    return out


def feature_extractor(source: ExportSource) -> Any:
    """The ``Wav2Vec2FeatureExtractor`` that prepares waveforms as our upstream does."""
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
                                    do_normalize=source.normalize_waveform, return_attention_mask=True)


def build_hf_model(source: ExportSource) -> Any:
    """A ``transformers.HubertModel`` holding ``source``'s student (eval mode)."""
    from transformers import HubertModel

    check_representable(source)
    model = HubertModel(hf_config(source))
    missing, unexpected = model.load_state_dict(hf_state_dict(source), strict=False)
    if missing or unexpected:
        raise ExportError(f"{source.path}: the transformers HubertModel does not match the student "
                          f"(missing {missing[:5]}, unexpected {unexpected[:5]}); transformers version changed?")
    return model.eval()


def to_hf(source: ExportSource, out_dir: str | Path, card: str, force: bool = False) -> Path:
    """Write the folder (module docstring) to ``out_dir``; returns it.

    Raises:
        ExportError: the student cannot be a ``HubertModel`` (naming the ONNX route), or ``out_dir``
            exists and is not empty (without ``force``). Nothing is written then.
    """
    out_dir = Path(out_dir)
    check_representable(source)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not force:
        raise ExportError(f"{out_dir} exists and is not empty: choose a new folder or pass --force to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        model = build_hf_model(source)
        model.save_pretrained(tmp, safe_serialization=True)
        feature_extractor(source).save_pretrained(tmp)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        for f in tmp.iterdir():  # the usual permissions (some writers make 0600 temp files)
            os.chmod(f, 0o666 & ~current_umask())
        os.chmod(tmp, 0o777 & ~current_umask())
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
