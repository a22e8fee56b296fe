"""fp32 / bf16 / fp16: what a device can run, the autocast for it, and the GPU backend switches."""

from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Any, ContextManager

import torch

from s3prl_colld.config import ConfigError

log = logging.getLogger(__name__)


def effective_precision(precision: str, device: torch.device) -> str:
    """``runner.precision`` as it can run on ``device`` (fp16 needs CUDA: fp32 on CPU, with a warning)."""
    if precision == "fp16" and device.type != "cuda":
        log.warning("precision=fp16 needs a GPU: training in fp32 on %s (bf16 works on CPU)", device)
        return "fp32"
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("config.runner.precision=bf16 is not supported by this GPU: use fp16")
    return precision


def autocast(precision: str, device: torch.device) -> ContextManager[Any]:
    """Autocast for bf16 / fp16 forward passes; nothing for fp32."""
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def configure_backends(rc: Any, device: torch.device) -> None:
    """``runner.cudnn_benchmark`` and ``runner.tf32``: process-wide switches, GPU only.

    cuDNN benchmark times the conv algorithms once per input shape and keeps
    the fastest (crops of a few hundred lengths: a few hundred timings per
    run); TF32 lets fp32 matmuls use TF32 tensor cores (cuDNN convs do by default).
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = bool(rc.cudnn_benchmark)
        torch.backends.cuda.matmul.allow_tf32 = bool(rc.tf32)
