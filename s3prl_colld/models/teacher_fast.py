"""The teacher's fast path: the same hidden states as ``S3PRLUpstream(wav, lengths)``, computed with less work.

``S3PRLUpstream.forward`` (s3prl's ``nn/upstream.py``) slices the padded
batch into a list of waveforms (one host sync per utterance), the HuBERT
expert pads them again, builds a padding mask and hands it to the model
(boolean-mask indexing: more host syncs; a key-padding mask in every
attention: no flash kernels), and the hidden states are collected by hooks,
matched in length and sliced (more syncs). On a batch without padding, which
is what bucketed random crops give, all of that is a no-op; this module runs
the model directly on the padded tensor with ``padding_mask=None`` and returns
exactly what the reference returns (tests/test_speed.py).

Only s3prl's HuBERT expert (``hubert``, ``hubert_base``, ``hubert_local``,
...) and ours around it (``hubert_fbank_local``) take the direct path; any other upstream, and any padded batch, goes
through ``S3PRLUpstream`` as before. ``use_channels_last_cnn`` and
``models.attention.use_fairseq_sdpa`` change how the teacher's CNN and
attention run, not what they compute.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

from s3prl_colld.models.frontends import conv_stack

MIN_SAMPLES = 800  # S3PRLUpstream pads shorter batches to 0.05 s: left to the reference path
# s3prl's HuBERT expert, and ours for the Fbank front-end (a subclass of it), by module (no import of either)
HUBERT_EXPERT_MODULES = ("s3prl.upstream.hubert.expert", "s3prl_colld.s3prl_bridge.fbank_hubert")


def hubert_expert(upstream: nn.Module) -> nn.Module | None:
    """s3prl's HuBERT ``UpstreamExpert`` inside an ``S3PRLUpstream``, or None."""
    expert = getattr(upstream, "upstream", None)
    cls = type(expert)
    if cls.__name__ == "UpstreamExpert" and cls.__module__ in HUBERT_EXPERT_MODULES \
            and hasattr(expert, "model") and hasattr(expert, "_hook_hiddens"):
        return expert
    return None


def direct_hidden_states(upstream: nn.Module, wav: torch.Tensor, padded: bool) -> list[torch.Tensor] | None:
    """``S3PRLUpstream(wav, lengths)[0]`` for an unpadded batch ``wav [B, N]`` of a HuBERT expert, else None.

    Args:
        upstream: an ``s3prl.nn.S3PRLUpstream``.
        wav: ``[B, N]``; with ``padded=False`` every utterance is ``N`` samples long.
        padded: True when some utterance is shorter than ``N`` (then None: use the reference path).
    Returns:
        ``L + 1`` tensors ``[B, T, D]`` (the reference's values and shapes), or None.
    """
    expert = hubert_expert(upstream)
    if padded or expert is None or wav.dim() != 2 or wav.size(1) < MIN_SAMPLES \
            or not hasattr(upstream, "_match_length"):  # s3prl's private helper: another s3prl takes the reference
        return None
    if getattr(expert.task_cfg, "normalize", False):  # per utterance, as the expert: here each row is one
        wav = F.layer_norm(wav, wav.shape[-1:])
    expert._hook_hiddens.clear()
    try:
        expert.model.extract_features(wav, padding_mask=None, mask=None)
        hooks = expert._hook_hiddens.copy()
    finally:
        expert._hook_hiddens.clear()
    if callable(expert.hook_postprocess):
        hooks = expert.hook_postprocess(hooks)
    hidden = [h for _, h in hooks]
    if len(hidden) != upstream.num_layers:
        return None
    n = wav.size(1)
    out = []
    for h, stride in zip(hidden, upstream.downsample_rates):
        h = upstream._match_length(h, len(range(0, n, stride)))[:, : (n - 1) // stride + 1]
        if upstream.normalize:
            h = F.layer_norm(h, h.shape[-1:])
        out.append(h)
    return out


def use_channels_last_cnn(upstream: nn.Module, enable: bool = True) -> bool:
    """Run a HuBERT teacher's conv feature extractor as channels-last conv2d (see ``conv_stack``); True if done."""
    expert = hubert_expert(upstream)
    fx = getattr(getattr(expert, "model", None), "feature_extractor", None)
    if fx is None or not hasattr(fx, "conv_layers"):
        return False
    if enable:
        fx.forward = types.MethodType(lambda self, x: conv_stack(self.conv_layers, x, channels_last=True), fx)
    else:
        fx.__dict__.pop("forward", None)
    return True
