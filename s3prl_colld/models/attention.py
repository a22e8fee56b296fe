"""Self-attention through ``F.scaled_dot_product_attention`` (SDPA) for the student and the teacher.

Same parameters, same initialisation, same function as the modules they
replace (``nn.TransformerEncoderLayer`` for the student, the fairseq-style
``MultiheadAttention`` of s3prl's HuBERT / wav2vec 2.0 for the teacher); what
changes is how the attention runs:

- one fused QKV projection and one SDPA call on ``[B, H, T, D/H]`` views, with
  no key-padding mask when the batch has no padding: then SDPA can pick its
  flash / memory-efficient kernels on GPUs (a mask rules flash out) and its
  flash kernel on CPUs;
- no boolean-mask indexing (which syncs with the host on GPUs).

Results equal the reference modules' up to floating-point rounding
(tests/test_speed.py); ``sdpa = False`` on a layer runs the reference code.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class EncoderLayer(nn.TransformerEncoderLayer):
    """``nn.TransformerEncoderLayer`` (batch first) whose self-attention block calls SDPA directly.

    Construction, parameter names and initialisation are the parent's, so
    checkpoints and ``init_student_from_teacher`` are unchanged.
    """

    sdpa: bool = True  # False: the parent's forward (the reference implementation)

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor | None = None,
                src_key_padding_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        """``src [B, T, D]``, ``src_key_padding_mask [B, T]`` (True = padding, or None) -> ``[B, T, D]``."""
        if not self.sdpa or src_mask is not None or is_causal:
            return super().forward(src, src_mask, src_key_padding_mask, is_causal)
        x = src
        if self.norm_first:
            x = x + self._sdpa_block(self.norm1(x), src_key_padding_mask)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sdpa_block(x, src_key_padding_mask))
            x = self.norm2(x + self._ff_block(x))
        return x

    def _sdpa_block(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
        attn = self.self_attn
        b, t, d = x.shape
        h = attn.num_heads
        qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).view(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # [B, H, T, D/H] each
        mask = None if key_padding_mask is None else _keep_mask(key_padding_mask)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=attn.dropout if self.training else 0.0)
        return self.dropout1(attn.out_proj(y.transpose(1, 2).reshape(b, t, d)))


def _keep_mask(key_padding_mask: torch.Tensor) -> torch.Tensor:
    """``[B, S]`` padding mask (True or -inf = padding) -> SDPA's boolean ``[B, 1, 1, S]`` (True = attend)."""
    if key_padding_mask.dtype == torch.bool:
        keep = ~key_padding_mask
    else:  # an additive float mask, as nn.TransformerEncoderLayer canonicalises it
        keep = key_padding_mask == 0
    return keep[:, None, None, :]


# ---------------------------------------------------------------- the teacher's fairseq-style attention
def _fairseq_sdpa_forward(self: nn.Module, query: torch.Tensor, key: torch.Tensor | None, value: torch.Tensor | None,
                          key_padding_mask: torch.Tensor | None = None, incremental_state: Any = None,
                          need_weights: bool = True, static_kv: bool = False, attn_mask: torch.Tensor | None = None,
                          before_softmax: bool = False, need_head_weights: bool = False,
                          ) -> tuple[torch.Tensor, None]:
    """s3prl ``MultiheadAttention.forward`` for self-attention over ``query [T, B, C]`` (time first) via SDPA.

    Anything else (attention weights, incremental state, an extra attention
    mask, ...) goes to the original forward.
    """
    if (need_weights or need_head_weights or incremental_state is not None or static_kv or attn_mask is not None
            or before_softmax or key is not query or value is not query):
        return type(self).forward(self, query, key, value, key_padding_mask=key_padding_mask,
                                  incremental_state=incremental_state, need_weights=need_weights,
                                  static_kv=static_kv, attn_mask=attn_mask, before_softmax=before_softmax,
                                  need_head_weights=need_head_weights)
    t, b, c = query.shape
    h = self.num_heads
    weight, bias = _fused_qkv(self)
    qkv = F.linear(query, weight, bias).view(t, b, 3, h, c // h).permute(2, 1, 3, 0, 4)  # [3, B, H, T, C/H]
    q, k, v = qkv.unbind(0)
    mask = None if key_padding_mask is None else _keep_mask(key_padding_mask)
    dropout = self.dropout_module.p if (self.training or getattr(self.dropout_module, "apply_during_inference", False)) else 0.0
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)  # [B, H, T, C/H]
    return self.out_proj(y.permute(2, 0, 1, 3).reshape(t, b, c)), None


def _fused_qkv(attn: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``cat(q, k, v)`` projection weights ``[3C, C]`` and biases; cached while frozen weights stay unchanged."""
    parts = (attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight)
    biases = (attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias)
    frozen = not any(p.requires_grad for p in parts + biases if p is not None)
    key = (torch.is_inference_mode_enabled(),) + tuple(
        (p.data_ptr(), p._version, p.dtype, p.device) for p in parts + biases if p is not None)
    cache = attn.__dict__.get("_sdpa_qkv")
    if frozen and cache is not None and cache[0] == key:
        return cache[1], cache[2]
    weight = torch.cat(parts)
    bias = None if any(x is None for x in biases) else torch.cat(biases)
    if frozen:
        attn.__dict__["_sdpa_qkv"] = (key, weight, bias)
    return weight, bias


def supports_fairseq_sdpa(attn: nn.Module) -> bool:
    """A fairseq-style self-attention module this wrapper can run (separate q/k/v projections, no extras)."""
    need = ("q_proj", "k_proj", "v_proj", "out_proj", "num_heads", "head_dim", "scaling", "dropout_module")
    return (all(hasattr(attn, n) for n in need) and bool(getattr(attn, "self_attention", False))
            and getattr(attn, "bias_k", None) is None and not getattr(attn, "add_zero_attn", False)
            and not getattr(attn, "skip_embed_dim_check", False) and not getattr(attn, "use_xformers", False)
            and abs(float(attn.scaling) - attn.head_dim ** -0.5) < 1e-9)


def use_fairseq_sdpa(model: nn.Module, enable: bool = True) -> int:
    """Route every supported fairseq-style self-attention in ``model`` through SDPA (or back); returns how many."""
    n = 0
    for module in model.modules():
        if type(module).__name__ == "MultiheadAttention" and supports_fairseq_sdpa(module):
            if enable:
                module.forward = types.MethodType(_fairseq_sdpa_forward, module)
            else:
                module.__dict__.pop("forward", None)
                module.__dict__.pop("_sdpa_qkv", None)
            n += 1
    return n
