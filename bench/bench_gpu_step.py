"""GPU distillation step: ours vs s3prl's DistillerModel, HuBERT-Base-shaped teacher, in one run (issue 12).

The setup of the issue: a randomly initialised HuBERT-Base-shaped teacher
(s3prl's own ``HubertModel``: 512-channel CNN, 12 x 768, written to a temp
file and loaded as ``hubert_local``; no download), a DistilHuBERT student
(2 x 768, 512-channel CNN copied from the teacher) predicting teacher layers
4, 8 and 12, batches of 24 x 6 s of synthetic audio (pinned host memory,
copied to the GPU every step, as a data loader would hand them over), TF32
on, the median of 12 steps after 3 warm-up steps.

Contenders run one after the other, each on its own freshly built models,
and each writes its results as soon as it finishes (``--json``), so that a
failing contender loses nothing of the others:

- ``s3prl_*``: ``DistillerModel`` + the step of s3prl's distiller
  ``pretrain_expert.py`` and ``pretrain/runner.py``: student forward, the hub
  teacher on the list of waveforms under ``no_grad`` and ``autocast(False)``
  (fp32), L1 + cosine, backward, ``loss.item()``, clipping, the NaN check,
  AdamW; fp16 = the runner's ``fp16`` (autocast + GradScaler).
- ``ours_*`` / ``colld_*``: our ``Trainer.train_step`` (the real one: AMP,
  clipping, non-finite checks, fused AdamW, scheduler) on a
  ``distilhubert`` / ``colld_distiller`` task with ``runner.fast_kernels``
  off (``_ref``: the reference kernels) or on, and the other speed options
  named in the label.

Reported per contender: ms / step (median, from CUDA events at the step
boundaries), audio seconds per second, the ratio to ``s3prl_fp32``, the model
FLOPs of one step counted by ``torch.utils.flop_counter.FlopCounterMode`` (one
extra step after the warm-up: matrix products, convolutions and attention,
forward and backward; element-wise ops, the optimizer and FFTs are not counted,
so the FFT position conv of ``fft_pos_conv`` contenders drops out of their
count, about 5 % of the step at HuBERT-Base shapes; a grouped convolution's
weight gradient is counted once, not ``groups`` times as torch 2.8's formula
does, see :func:`count_flops`; the compile contender takes
the count of ``ours_bf16``, the same model math), the achieved TFLOP/s
(counted FLOPs / median step time) and its fraction of the device's dense peak
for the contender's precision (:data:`PEAK_TFLOPS`; fp32 contenders run with
TF32 on, so their peak is TF32's; on a CPU or an unknown device only with
``--peak-tflops``), peak GPU memory, the last loss (a sanity check), and a per-phase breakdown from CUDA
events recorded by hooks in separate steps: teacher, student CNN, student
encoder, heads, loss, backward (+ clipping and the step's host sync),
optimizer, other (data copy, zero_grad, scheduler, gaps).

    python bench/bench_gpu_step.py --json result/bench_gpu.json            # GPU, at most ~3.5 min
    python bench/bench_gpu_step.py --device cpu --quick                    # tiny shapes, every code path on CPU
    python bench/bench_gpu_step.py --profile                               # + op tables of s3prl_fp32, ours_bf16

On a GPU, ``--budget-s`` (default 165) skips the contenders that would start
after that many seconds and ``--deadline-s`` (default 210) stops one still
running then; the compile contender runs last, only with 90 s to spare.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import itertools
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import _common as C  # noqa: F401  (puts the repository on sys.path)
import torch
import torch.nn.functional as F

T0 = time.perf_counter()


def say(msg: str) -> None:
    """A progress line with the seconds since start (flushed: the lead watches it live)."""
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", flush=True)


# ---------------------------------------------------------------- shapes
@dataclass
class Shapes:
    cnn: list[list[int]]
    teacher_layers: int
    dim: int
    ffn: int
    heads: int
    conv_pos: int
    conv_pos_groups: int
    final_dim: int
    n_units: int
    student_layers: int
    batch: int
    seconds: float

    @property
    def targets(self) -> list[int]:
        """DistilHuBERT's teacher layers: 4, 8, 12 of 12 (thirds of the depth)."""
        L = self.teacher_layers
        return [L // 3, 2 * L // 3, L]


HUBERT_BASE = Shapes(cnn=[[512, 10, 5]] + [[512, 3, 2]] * 4 + [[512, 2, 2]] * 2, teacher_layers=12, dim=768,
                     ffn=3072, heads=12, conv_pos=128, conv_pos_groups=16, final_dim=256, n_units=504,
                     student_layers=2, batch=24, seconds=6.0)
TINY = Shapes(cnn=[[32, 10, 5]] + [[32, 3, 2]] * 4 + [[32, 2, 2]] * 2, teacher_layers=3, dim=64, ffn=128, heads=4,
              conv_pos=16, conv_pos_groups=4, final_dim=32, n_units=20, student_layers=2, batch=2, seconds=1.0)


# ---------------------------------------------------------------- contenders
@dataclass
class Contender:
    name: str
    label: str
    side: str  # s3prl | ours
    task: str = "distilhubert"  # distilhubert | colld_distiller (ours)
    precision: str = "fp32"  # fp32 | fp16 (s3prl) | bf16 (ours)
    teacher_precision: str = "fp32"
    fast: bool = True  # runner.fast_kernels
    channels_last: bool = True  # runner.cnn_channels_last (the trainer's default)
    fft: bool = True  # runner.fft_pos_conv (the trainer's default)
    cudnn_benchmark: bool = False  # runner.cudnn_benchmark (the trainer's default)
    compile: bool = False
    share: bool = False  # init.share_teacher_frontend


CONTENDERS = [  # the baseline and the headline first: a run cut short by its time budget keeps them
    Contender("s3prl_fp32", "s3prl DistillerModel + expert step, fp32", "s3prl"),
    Contender("ours_bf16", "ours, bf16 autocast + bf16 teacher, the trainer's speed defaults", "ours",
              precision="bf16", teacher_precision="bf16"),
    Contender("ours_bf16_nofft", "ours_bf16 with the position conv run directly (fft_pos_conv=false)", "ours",
              precision="bf16", teacher_precision="bf16", fft=False),
    Contender("ours_fp32_ref", "ours distilhubert, fp32, reference kernels", "ours", fast=False, channels_last=False,
              fft=False),
    Contender("ours_fp32", "ours distilhubert, fp32, the trainer's speed defaults", "ours"),
    Contender("s3prl_fp16", "s3prl, fp16 autocast + GradScaler (teacher fp32)", "s3prl", precision="fp16"),
    Contender("ours_bf16_ref", "ours, bf16 autocast + bf16 teacher, reference kernels", "ours", precision="bf16",
              teacher_precision="bf16", fast=False, channels_last=False, fft=False),
    Contender("ours_bf16_ncl", "ours_bf16 with the CNNs in the reference layout (cnn_channels_last=false)", "ours",
              precision="bf16", teacher_precision="bf16", channels_last=False),
    Contender("ours_bf16_bench", "ours_bf16 + cuDNN benchmark (runner.cudnn_benchmark=true)", "ours",
              precision="bf16", teacher_precision="bf16", cudnn_benchmark=True),
    Contender("ours_bf16_shared", "ours, bf16 autocast, fp32 teacher, shared teacher CNN (frozen student CNN)", "ours",
              precision="bf16", share=True),
    Contender("colld_fp32_ref", "ours colld_distiller, fp32, reference kernels", "ours", task="colld_distiller",
              fast=False, channels_last=False, fft=False),
    Contender("colld_bf16", "ours colld_distiller, bf16 + bf16 teacher, the trainer's speed defaults", "ours",
              task="colld_distiller", precision="bf16", teacher_precision="bf16"),
    Contender("ours_bf16_compile", "ours_bf16 + torch.compile(student)", "ours", precision="bf16",
              teacher_precision="bf16", compile=True),
]
BASELINE = "s3prl_fp32"
PHASES = ["teacher", "student CNN", "student encoder", "heads", "loss", "backward", "optimizer", "other", "total"]

# dense peak TFLOP/s by device (NVIDIA's data sheets, SXM unless named): bf16/fp16 tensor cores, TF32, plain fp32.
# Matched in this order against torch.cuda.get_device_name (e.g. "NVIDIA H100 80GB HBM3").
PEAK_TFLOPS = {
    "H100 PCIe": {"bf16": 756.0, "fp16": 756.0, "tf32": 378.0, "fp32": 51.2},
    "H100": {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "H200": {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "A100": {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5},
}


def peak_tflops(device_name: str, precision: str, override: float | None = None) -> float | None:
    """Dense peak TFLOP/s of ``device_name`` for a contender's ``precision`` (fp32 runs as TF32 here).

    ``override`` (``--peak-tflops``) wins; None when the device is not in :data:`PEAK_TFLOPS` (a CPU).
    """
    if override:
        return override
    key = "tf32" if precision == "fp32" else precision
    for name, peaks in PEAK_TFLOPS.items():
        if name in device_name:
            return peaks[key]
    return None


def _conv_backward_flop(grad_out_shape: list[int], x_shape: list[int], w_shape: list[int], _bias: Any,
                        _stride: Any, _padding: Any, _dilation: Any, transposed: bool, _output_padding: Any,
                        groups: int, output_mask: list[bool], out_shape: Any = None, **_: Any) -> int:
    """torch's formula for ``aten.convolution_backward``, with the weight gradient divided by ``groups``.

    torch.utils.flop_counter (2.8) counts a grouped convolution's weight gradient as if
    it were ungrouped: ``groups`` times too many (16x for the position conv, 48 instead
    of 5.7 GFLOP per 6 s utterance of HuBERT Base). Its input gradient is right.
    """
    from torch.utils.flop_counter import conv_flop_count

    def t(shape: list[int]) -> list[int]:
        return [shape[1], shape[0], *shape[2:]]

    flops = 0
    if output_mask[0]:  # grad_input = conv_transpose(grad_out, weight)
        flops += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if output_mask[1]:  # grad_weight = conv(input, grad_out), channels as batch: once per group
        a, b = (grad_out_shape, x_shape) if transposed else (x_shape, grad_out_shape)
        flops += conv_flop_count(t(a), t(b), t(out_shape[1]), transposed=False) // groups
    return flops


def _sdpa_cpu_flop(query: list[int], key: list[int], value: list[int], *_: Any, **__: Any) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query, key, value)


def _sdpa_cpu_backward_flop(grad_out: list[int], query: list[int], key: list[int], value: list[int], *_: Any,
                            **__: Any) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(grad_out, query, key, value)


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of the ops that ``fn()`` runs, counted by ``torch.utils.flop_counter.FlopCounterMode``.

    Counts matrix products, convolutions and attention (forward and backward;
    a multiply-add is 2 FLOPs); element-wise ops, reductions and FFTs count 0.
    Two formulas are ours: a grouped convolution's weight gradient (torch's
    counts it ``groups`` times over, see :func:`_conv_backward_flop`) and the
    CPU's fused attention, which torch does not count (its CUDA kernels it does).
    """
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    mapping: dict[Any, Callable[..., int]] = {aten.convolution_backward: _conv_backward_flop}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_cpu_flop
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _sdpa_cpu_backward_flop
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return int(counter.get_total_flops())


def add_throughput(r: dict[str, Any], flops: int | None, peak: float | None) -> None:
    """Put the counted FLOPs / step, the achieved TFLOP/s and the fraction of ``peak`` into a result ``r``."""
    r["flops_per_step"] = flops
    r["achieved_tflops"] = float(f"{flops / (r['ms_median'] / 1e3) / 1e12:.4g}") if flops else None
    r["peak_tflops"] = peak
    r["peak_fraction"] = float(f"{r['achieved_tflops'] / peak:.4g}") if peak and r["achieved_tflops"] else None


# ---------------------------------------------------------------- events (CUDA events, or a CPU clock stand-in)
class _CpuEvent:
    """``torch.cuda.Event``'s interface on the host clock (CPU ops run synchronously)."""

    def __init__(self) -> None:
        self.t = 0.0

    def record(self) -> None:
        self.t = time.perf_counter()

    def elapsed_time(self, end: "_CpuEvent") -> float:
        return (end.t - self.t) * 1e3


def new_event(device: torch.device) -> Any:
    return torch.cuda.Event(enable_timing=True) if device.type == "cuda" else _CpuEvent()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Recorder:
    """Labelled events (``X:start`` / ``X:end`` pairs) recorded by hooks and marks during one step."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.events: list[tuple[str, Any]] = []
        self.handles: list[Any] = []

    def mark(self, label: str) -> None:
        ev = new_event(self.device)
        ev.record()
        self.events.append((label, ev))

    def hook_module(self, module: torch.nn.Module, name: str) -> None:
        self.handles.append(module.register_forward_pre_hook(lambda *_: self.mark(f"{name}:start")))
        self.handles.append(module.register_forward_hook(lambda *_: self.mark(f"{name}:end")))

    def hook_optimizer(self, opt: torch.optim.Optimizer) -> None:
        self.handles.append(opt.register_step_pre_hook(lambda *_: self.mark("optimizer:start")))
        self.handles.append(opt.register_step_post_hook(lambda *_: self.mark("optimizer:end")))

    def wrap_method(self, obj: Any, method: str, name: str) -> None:
        """Time ``obj.method`` (an instance attribute shadows the class's; removed by ``remove``)."""
        orig = getattr(obj, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            self.mark(f"{name}:start")
            out = orig(*args, **kwargs)
            self.mark(f"{name}:end")
            return out

        setattr(obj, method, timed)
        self.handles.append(_Unpatch(obj, method))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def durations(self) -> dict[str, float]:
        """ms per label: the sum over its start/end pairs (call after ``synchronize``)."""
        out: dict[str, float] = {}
        open_: dict[str, Any] = {}
        for label, ev in self.events:
            name, _, edge = label.rpartition(":")
            if edge == "start":
                open_[name] = ev
            elif name in open_:
                out[name] = out.get(name, 0.0) + open_.pop(name).elapsed_time(ev)
        return out


class _Unpatch:
    def __init__(self, obj: Any, attr: str) -> None:
        self.obj, self.attr = obj, attr

    def remove(self) -> None:
        self.obj.__dict__.pop(self.attr, None)


def phases_of(d: dict[str, float]) -> dict[str, float]:
    """Raw durations -> the issue's phases (ms); ``student`` includes the CNN, ``forward`` everything."""
    student = d.get("student", 0.0) - d.get("heads_in_student", 0.0)
    ph = {
        "teacher": d.get("teacher", 0.0),
        "student CNN": d.get("cnn", 0.0),
        "student encoder": max(0.0, student - d.get("cnn", 0.0)),
        "heads": d.get("heads", 0.0) + d.get("heads_in_student", 0.0),
        "loss": max(0.0, d.get("forward", 0.0) - d.get("teacher", 0.0) - d.get("student", 0.0) - d.get("heads", 0.0)),
        "backward": d.get("backward", 0.0),
        "optimizer": d.get("optimizer", 0.0),
        "total": d.get("step", 0.0),
    }
    ph["other"] = max(0.0, ph["total"] - sum(v for k, v in ph.items() if k != "total"))
    return ph


# ---------------------------------------------------------------- the teacher checkpoint
def write_teacher(folder: Path, shapes: Shapes) -> Path:
    """A randomly initialised HuBERT of ``shapes`` (s3prl's ``HubertModel``) as a ``hubert_local`` checkpoint."""
    from s3prl_colld.models.tiny_hubert import TinyHubertConfig, build_hubert, hubert_local_keys

    cfg = TinyHubertConfig(conv_layers=shapes.cnn, encoder_layers=shapes.teacher_layers,
                           encoder_embed_dim=shapes.dim, encoder_ffn_embed_dim=shapes.ffn,
                           encoder_attention_heads=shapes.heads, final_dim=shapes.final_dim,
                           conv_pos=shapes.conv_pos, conv_pos_groups=shapes.conv_pos_groups, feature_grad_mult=0.1)
    torch.manual_seed(0)
    model = build_hubert(cfg, shapes.n_units)
    path = folder / "hubert_random.ckpt"
    torch.save(hubert_local_keys(model, cfg, shapes.n_units), path)
    return path


# ---------------------------------------------------------------- s3prl's step
def s3prl_config(shapes: Shapes):
    from s3prl.upstream.distiller.model import DistillerConfig

    return DistillerConfig({  # s3prl/pretrain/distiller/config_model.yaml (DistilHuBERT), at these shapes
        "extractor_mode": "default",
        "extractor_conv_feature_layers": repr([tuple(x) for x in shapes.cnn]),
        "extractor_dropout": 0.0, "feature_grad_mult": 0.1,
        "conv_pos": shapes.conv_pos, "conv_pos_groups": shapes.conv_pos_groups,
        "encoder_layers": shapes.student_layers, "encoder_embed_dim": shapes.dim,
        "encoder_ffn_embed_dim": shapes.ffn, "encoder_attention_heads": shapes.heads,
        "activation_fn": "gelu", "layer_norm_first": False, "attention_type": "original",
        "dropout": 0.1, "attention_dropout": 0.1, "activation_dropout": 0.1, "encoder_layerdrop": 0.0,
        "final_dim": shapes.dim, "out_layer_type": "expand-last", "n_tasks": len(shapes.targets),
        "task_emb_type": "expand-last", "loss_type": "l1", "feat_pen_loss": 0.0, "cosine_loss": 1.0,
        "pred_layer_id": shapes.targets, "init_teacher_conv_layers": True, "init_teacher_encoder_layers": True,
    })


def build_s3prl(c: Contender, ckpt: Path, shapes: Shapes, device: torch.device, batch: dict) -> dict:
    """DistillerModel + the s3prl runner's step (see the module docstring); returns the step and its hooks."""
    from s3prl.nn import S3PRLUpstream
    from s3prl.upstream.distiller.model import DistillerModel

    torch.backends.cudnn.benchmark = c.cudnn_benchmark
    config = s3prl_config(shapes)
    with contextlib.redirect_stdout(io.StringIO()):
        teacher = S3PRLUpstream("hubert_local", path_or_url=str(ckpt)).upstream  # the hub expert itself
    teacher = teacher.to(device).eval()
    teacher.requires_grad_(False)
    teacher.model.encoder.layerdrop = 0
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        distiller = DistillerModel(config).to(device).train()
    distiller.feature_extractor.load_state_dict(teacher.model.feature_extractor.state_dict())
    if distiller.post_extract_proj is not None:
        distiller.post_extract_proj.load_state_dict(teacher.model.post_extract_proj.state_dict())
    distiller.encoder.pos_conv.load_state_dict(teacher.model.encoder.pos_conv.state_dict())
    for k in range(config.encoder_layers):
        distiller.encoder.layers[k].load_state_dict(teacher.model.encoder.layers[k].state_dict())
    params = [p for p in distiller.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.0)
    amp = c.precision == "fp16"
    scaler = torch.amp.GradScaler(device.type, enabled=amp)  # CPU too: every code path runs in CI
    loss_func = torch.nn.L1Loss(reduction="none")
    wav_cpu, rows = batch["wav"], [w for w in batch["wav"]]  # pinned; rows = the expert's wave_orig list
    state: dict[str, Any] = {"rec": None}

    def mark(label: str) -> None:
        if state["rec"] is not None:
            state["rec"].mark(label)

    def step() -> float:
        wav = wav_cpu.to(device, non_blocking=True)
        pad_mask = torch.ones_like(wav)
        mark("forward:start")
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            feat, feat_final, pred, _ = distiller(wav, pad_mask)  # pred: B x N x T x D
            mark("teacher:start")
            with torch.no_grad():
                wave_orig = [w.to(device) for w in rows]
                with torch.autocast(device.type, enabled=False):
                    hs = teacher(wave_orig)["hidden_states"]
                target = torch.stack([hs[i] for i in distiller.pred_layer_id], dim=1)  # B x N x T x D
            mark("teacher:end")
            t = min(pred.size(2), target.size(2))
            pred, target = pred[:, :, :t], target[:, :, :t]
            rec_loss = loss_func(pred, target).mean()
            sim_loss = -F.logsigmoid(F.cosine_similarity(pred, target, dim=-1)).mean()
            loss = rec_loss + feat.float().pow(2).mean() * config.feat_pen_loss + sim_loss * config.cosine_loss
        mark("forward:end")
        mark("backward:start")
        (scaler.scale(loss) if scaler.is_enabled() else loss).backward()
        value = loss.item()  # the runner's all_loss += loss.item()
        if scaler.is_enabled():
            scaler.unscale_(opt)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, 10.0)
        nan = math.isnan(grad_norm)  # the runner's NaN check (a host sync, as there)
        mark("backward:end")
        if not nan:
            if scaler.is_enabled():
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
        opt.zero_grad()
        return value

    def hooks(rec: Recorder) -> None:
        state["rec"] = rec
        rec.hook_module(distiller, "student")
        rec.hook_module(distiller.feature_extractor, "cnn")
        rec.hook_module(distiller.output_layer, "heads_in_student")
        rec.hook_optimizer(opt)

    def unhook() -> None:
        state["rec"] = None

    return {"step": step, "hooks": hooks, "unhook": unhook,
            "params": sum(p.numel() for p in params), "keep": (teacher, distiller, opt, scaler)}


# ---------------------------------------------------------------- our step (the real Trainer.train_step)
class _Lengths(torch.utils.data.Dataset):
    """A stand-in training set: the trainer's sampler only reads ``lengths`` (batches are fed directly)."""

    def __init__(self, n: int, length: int) -> None:
        self.lengths = [length] * n

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        raise RuntimeError("bench batches are fed to Trainer.train_step directly")


def ours_config(c: Contender, ckpt: Path, shapes: Shapes, device: torch.device) -> dict[str, Any]:
    colld = c.task == "colld_distiller"
    return {
        "runner": {"total_steps": 10**9, "log_step": 10**9, "save_step": 10**9, "precision": c.precision,
                   "device": device.type, "num_workers": 0, "progress_bar": False, "gradient_clipping": 10.0,
                   "fast_kernels": c.fast, "cnn_channels_last": c.channels_last, "fft_pos_conv": c.fft,
                   "cudnn_benchmark": c.cudnn_benchmark, "tf32": True, "compile": c.compile},
        "optimizer": {"name": "AdamW", "lr": 2e-4, "betas": [0.9, 0.98], "eps": 1e-6, "decay": "constant"},
        "data": {"root": "unused", "batch_size": shapes.batch},
        "teacher": {"name": "hubert_local", "ckpt": str(ckpt), "precision": c.teacher_precision},
        "model": {"frontend": "cnn", "cnn": {"conv_layers": shapes.cnn}, "layers": shapes.student_layers,
                  "dim": shapes.dim, "ffn_dim": shapes.ffn, "heads": shapes.heads, "conv_pos": shapes.conv_pos,
                  "conv_pos_groups": shapes.conv_pos_groups},
        "heads": ({"map": "uniform", "kind": "linear"} if colld else
                  {"map": "last", "targets": shapes.targets, "kind": "mlp"}),  # mlp = s3prl's expand-last layer
        "mask": {"prob": 0.8, "length": 10} if colld else {"prob": 0.0},
        "loss": ({"kind": "contrastive", "num_negatives": 100, "temperature": 0.1} if colld else
                 {"kind": "regression", "cos_weight": 1.0}),
        "init": {"share_teacher_frontend": c.share},
    }


def build_ours(c: Contender, ckpt: Path, shapes: Shapes, device: torch.device, batch: dict, expdir: Path) -> dict:
    from s3prl_colld.config import from_dict
    from s3prl_colld.pretrain.task import get_task
    from s3prl_colld.pretrain.trainer import Trainer

    base = get_task(c.task)
    n = shapes.batch

    class BenchTask(base):  # type: ignore[misc, valid-type]
        @classmethod
        def prepare(cls, cfg: Any, expdir: Path) -> None:  # no corpus to check or prepare
            return None

        def train_dataset(self) -> _Lengths:
            return _Lengths(n, batch["wav"].size(1))

    BenchTask.name = base.name
    cfg = from_dict(base.Config, ours_config(c, ckpt, shapes, device))
    trainer = Trainer(BenchTask, cfg, expdir)
    if hasattr(trainer, "_fetch"):  # train_step uses the micro-batches fetched during the previous step
        batches: Any = itertools.repeat((batch, 0, 0))  # (batch, epoch, position in the epoch), as Trainer.batches
        trainer._fetch(batches)
    else:
        batches = itertools.repeat(batch)
    task = trainer.task

    def step() -> float:
        return trainer.train_step(batches).loss  # a device tensor: no sync here

    def hooks(rec: Recorder) -> None:
        rec.hook_module(task, "forward")
        rec.wrap_method(task.teacher, "run" if hasattr(task.teacher, "run") else "forward", "teacher")
        rec.hook_module(task.student, "student")
        rec.hook_module(task.student.frontend, "cnn")
        rec.hook_module(task.heads, "heads")
        rec.hook_optimizer(trainer.optimizer)
        # backward = the end of the forward .. the optimizer's start (incl. unscale, clipping, the flags' sync)
        rec.handles.append(task.register_forward_hook(lambda *_: rec.mark("backward:start")))
        rec.handles.append(trainer.optimizer.register_step_pre_hook(lambda *_: rec.mark("backward:end")))

    return {"step": step, "hooks": hooks, "unhook": lambda: None,
            "params": sum(p.numel() for p in trainer.params), "keep": (trainer,)}


# ---------------------------------------------------------------- running one contender
def run_contender(c: Contender, args: argparse.Namespace, ckpt: Path, shapes: Shapes, device: torch.device,
                  batch: dict, tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"label": c.label, "settings": asdict(c)}
    t = time.perf_counter()
    say(f"{c.name}: building ({c.label})")
    built = (build_s3prl(c, ckpt, shapes, device, batch) if c.side == "s3prl"
             else build_ours(c, ckpt, shapes, device, batch, tmp / c.name))
    out["build_s"] = round(time.perf_counter() - t, 1)
    out["trainable_params_M"] = round(built["params"] / 1e6, 3)
    step = built["step"]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t = time.perf_counter()
    for _ in range(args.warmup):
        step()
    synchronize(device)
    out["warmup_s"] = round(time.perf_counter() - t, 1)
    say(f"{c.name}: {args.warmup} warm-up steps in {out['warmup_s']} s; timing {args.iters} steps")
    flops = None
    if not c.compile:  # a dispatch mode inside a compiled graph would break it; main() takes ours_bf16's count
        flops = count_flops(step)
        synchronize(device)
        say(f"{c.name}: {flops / 1e9:.2f} GFLOP / step (counted)")
    marks = [new_event(device) for _ in range(args.iters + 1)]
    losses = []
    t = time.perf_counter()
    marks[0].record()
    for i in range(args.iters):
        losses.append(step())
        marks[i + 1].record()
    synchronize(device)
    wall = time.perf_counter() - t
    ms = [marks[i].elapsed_time(marks[i + 1]) for i in range(args.iters)]
    loss = float(losses[-1])
    out.update({
        "ms_median": round(statistics.median(ms), 2), "ms_min": round(min(ms), 2), "ms_max": round(max(ms), 2),
        "ms_all": [round(x, 2) for x in ms], "wall_ms_per_step": round(wall / args.iters * 1e3, 2),
        "audio_sec_per_s": round(shapes.batch * shapes.seconds / (statistics.median(ms) / 1e3), 1),
        "loss": loss, "loss_finite": math.isfinite(loss),
    })
    if device.type == "cuda":
        out["peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    add_throughput(out, flops, peak_tflops(args.device_name, c.precision, args.peak_tflops))
    say(f"{c.name}: median {out['ms_median']} ms/step ({out['ms_min']}-{out['ms_max']}), "
        f"{out['audio_sec_per_s']} audio-s/s" + (f", peak {out['peak_gib']} GiB" if "peak_gib" in out else "")
        + f", loss {loss:.4f}" + (f", {out['achieved_tflops']:.3f} TFLOP/s" if out["achieved_tflops"] else "")
        + (f" ({100 * out['peak_fraction']:.1f} % of peak)" if out["peak_fraction"] else ""))
    if args.phase_steps > 0 and not c.compile:  # hooks inside a compiled module would break its graph
        runs = []
        for _ in range(args.phase_steps):
            rec = Recorder(device)
            built["hooks"](rec)
            rec.mark("step:start")
            step()
            rec.mark("step:end")
            rec.remove()
            built["unhook"]()
            synchronize(device)
            runs.append(phases_of(rec.durations()))
        out["phases_ms"] = {k: round(statistics.median(r[k] for r in runs), 2) for k in PHASES}
        say(f"{c.name}: phases (ms) " + ", ".join(f"{k} {v}" for k, v in out["phases_ms"].items()))
    if c.name in args.profile:
        out["profile"] = profile_table(step, device, args.profile_steps)
        print(f"\n#### torch.profiler: {c.name}, {args.profile_steps} steps\n\n```\n{out['profile']}\n```\n",
              flush=True)
    del built
    return out


def profile_table(step: Callable[[], Any], device: torch.device, steps: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        synchronize(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=50)


class DeadlineExceeded(Exception):
    """A contender ran past ``--deadline-s``."""


@contextlib.contextmanager
def deadline(seconds: float):
    """Raise ``DeadlineExceeded`` in the main thread after ``seconds`` (no-op for inf or off the main thread)."""
    import signal
    import threading

    if not math.isfinite(seconds) or threading.current_thread() is not threading.main_thread() \
            or not hasattr(signal, "setitimer"):
        yield
        return

    def fire(*_: Any) -> None:
        raise DeadlineExceeded(f"still running at --deadline-s; stopped after {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- reporting
def report(results: dict[str, dict[str, Any]]) -> str:
    base = results.get(BASELINE, {}).get("ms_median")
    rows = []
    for name, r in results.items():
        if r.get("status") != "ok":
            rows.append([name, r.get("status", "?"), "", "", "", "", "", "", "", "", r.get("error", "")[:80]])
            continue
        ratio = f"{base / r['ms_median']:.2f}x" if base else "n/a"
        flops, tflops, frac = r.get("flops_per_step"), r.get("achieved_tflops"), r.get("peak_fraction")
        rows.append([name, f"{r['ms_median']:.1f}", f"{r['ms_min']:.0f}-{r['ms_max']:.0f}",
                     f"{r['audio_sec_per_s']:.0f}", ratio,
                     f"{flops / 1e9:.2f}" if flops else "n/a", f"{tflops:.3f}" if tflops else "n/a",
                     f"{100 * frac:.1f} % of {r['peak_tflops']:g}" if frac else "peak unknown",
                     f"{r['peak_gib']:.2f}" if "peak_gib" in r else "n/a", f"{r['loss']:.3f}", r["label"]])
    out = [C.table(["contender", "ms / step", "min-max", "audio-s / s", f"x {BASELINE}", "GFLOP / step (counted)",
                    "TFLOP/s", "of dense peak", "peak GiB", "loss", "what"], rows)]
    phased = [(n, r) for n, r in results.items() if r.get("status") == "ok" and "phases_ms" in r]
    if phased:
        out.append("\nPer phase (ms, median of the phase steps; CUDA events from hooks):\n")
        out.append(C.table(["contender"] + PHASES, [[n] + [f"{r['phases_ms'][k]:.1f}" for k in PHASES]
                                                    for n, r in phased]))
    return "\n".join(out)


def write_json(path: Path | None, payload: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return f"{p.name} ({p.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} threads"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"),
                   help="auto (default): cuda if available, else cpu at the tiny --quick shapes (make bench)")
    p.add_argument("--quick", action="store_true", help="tiny shapes (CNN 32 ch, 3 x 64 teacher, 2 x 1 s), 2 steps")
    p.add_argument("--iters", type=int, default=None, help="timed steps per contender (default 12; quick 2)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 3; quick 1)")
    p.add_argument("--phase-steps", type=int, default=None, help="steps with phase hooks (default 3; quick 1)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seconds", type=float, default=None, help="seconds of audio per utterance")
    p.add_argument("--only", default="", help="comma-separated contender names (default: all)")
    p.add_argument("--skip", default="", help="comma-separated contender names to leave out")
    p.add_argument("--profile", nargs="?", const="s3prl_fp32,ours_bf16", default="",
                   help="torch.profiler op tables of these contenders (comma-separated; 'all'; "
                        "default when given without a value: s3prl_fp32,ours_bf16)")
    p.add_argument("--profile-steps", type=int, default=2)
    p.add_argument("--json", type=Path, default=None, help="write the results here, after every contender")
    p.add_argument("--budget-s", type=float, default=None,
                   help="start no contender after this many seconds (default 165 on GPU, none on CPU)")
    p.add_argument("--deadline-s", type=float, default=None,
                   help="abort a contender still running at this many seconds (default 210 on GPU, none on CPU); "
                        "the compile contender starts only with 90 s to spare")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU runs)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the device's peak TFLOP/s for the fraction of peak (default: from PEAK_TFLOPS by GPU name "
                        "and precision; none on a CPU: 'peak unknown')")
    p.add_argument("--list", action="store_true", help="list the contenders and exit")
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
        if args.device == "cpu" and not args.quick:
            print("note: no CUDA device: running on CPU at the tiny --quick shapes (a check that the benchmark "
                  "works, not the issue's measurement)", file=sys.stderr)
            args.quick = True
    args.iters = args.iters or (2 if args.quick else 12)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    args.phase_steps = args.phase_steps if args.phase_steps is not None else (1 if args.quick else 3)
    gpu = args.device == "cuda"
    args.budget_s = args.budget_s if args.budget_s is not None else (165.0 if gpu else float("inf"))
    args.deadline_s = args.deadline_s if args.deadline_s is not None else (210.0 if gpu else float("inf"))
    names = [c.name for c in CONTENDERS]
    args.profile = names if args.profile == "all" else [x for x in args.profile.split(",") if x]
    return args


def main(argv: list[str] | None = None) -> int:
    global T0
    T0 = time.perf_counter()
    args = parse_args(argv)
    if args.list:
        for c in CONTENDERS:
            print(f"{c.name:20s} {c.label}")
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device; run with --device cpu (add --quick for tiny shapes)", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device, 0) if args.device == "cuda" else torch.device("cpu")
    args.device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    shapes = TINY if args.quick else HUBERT_BASE
    if args.batch_size or args.seconds:
        shapes = Shapes(**{**asdict(shapes), "batch": args.batch_size or shapes.batch,
                           "seconds": args.seconds or shapes.seconds})
    names = [c.name for c in CONTENDERS]
    only = [x for x in args.only.split(",") if x] or names
    skip = [x for x in args.skip.split(",") if x]
    unknown = [x for x in only + skip + args.profile if x not in names]
    if unknown:
        print(f"error: unknown contender(s) {unknown}; known: {', '.join(names)}", file=sys.stderr)
        return 2
    chosen = [c for c in CONTENDERS if c.name in only and c.name not in skip]
    torch.backends.cuda.matmul.allow_tf32 = True  # the setting, for every contender
    torch.backends.cudnn.allow_tf32 = True

    n = int(round(shapes.seconds * C.SAMPLE_RATE))
    g = torch.Generator().manual_seed(0)
    wav = torch.randn(shapes.batch, n, generator=g) * 0.1
    batch = {"wav": wav, "wav_lengths": torch.full((shapes.batch,), n, dtype=torch.long), "padded": False}
    if device.type == "cuda":
        batch["wav"], batch["wav_lengths"] = batch["wav"].pin_memory(), batch["wav_lengths"].pin_memory()

    payload: dict[str, Any] = {
        "device": device_name(device), "torch": torch.__version__, "shapes": asdict(shapes),
        "targets": shapes.targets, "iters": args.iters, "warmup": args.warmup, "tf32": True,
        "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
        "results": {},
    }
    say(f"device: {payload['device']}; torch {torch.__version__}; batch {shapes.batch} x {shapes.seconds:g} s; "
        f"teacher {shapes.teacher_layers} x {shapes.dim} (CNN {shapes.cnn[0][0]} ch), targets {shapes.targets}")
    results = payload["results"]
    with tempfile.TemporaryDirectory(prefix="s3prl_colld_gpu_bench_") as tmp_s:
        tmp = Path(tmp_s)
        ckpt = write_teacher(tmp, shapes)
        say(f"teacher checkpoint written ({ckpt.stat().st_size / 2**20:.0f} MiB)")
        for c in chosen:
            elapsed = time.perf_counter() - T0
            if elapsed > args.budget_s or (c.compile and elapsed > args.deadline_s - 90):
                results[c.name] = {"label": c.label, "status": "skipped",
                                   "error": f"time budget ({elapsed:.0f} s; --budget-s {args.budget_s:.0f}, "
                                            f"--deadline-s {args.deadline_s:.0f})"}
                say(f"{c.name}: skipped (time budget)")
                write_json(args.json, payload)
                continue
            try:
                with deadline(args.deadline_s - elapsed):
                    results[c.name] = {"status": "ok", **run_contender(c, args, ckpt, shapes, device, batch, tmp)}
            except Exception as err:  # noqa: BLE001 - one contender failing must not lose the others
                results[c.name] = {"label": c.label, "status": "error", "error": f"{type(err).__name__}: {err}",
                                   "traceback": traceback.format_exc()[-4000:]}
                say(f"{c.name}: FAILED: {type(err).__name__}: {err}")
            finally:
                if c.compile:
                    with contextlib.suppress(Exception):
                        torch._dynamo.reset()
                free(device)
            twin = results.get("ours_bf16", {})
            if c.compile and results[c.name].get("status") == "ok" and twin.get("flops_per_step"):
                add_throughput(results[c.name], twin["flops_per_step"],
                               peak_tflops(args.device_name, c.precision, args.peak_tflops))
                results[c.name]["flops_from"] = "ours_bf16"
            payload["elapsed_s"] = round(time.perf_counter() - T0, 1)
            write_json(args.json, payload)
            base = results.get(BASELINE, {}).get("ms_median")
            r = results[c.name]
            if base and r.get("status") == "ok":
                say(f"{c.name}: {base / r['ms_median']:.2f}x {BASELINE}")
    print("\n### GPU step benchmark (bench/bench_gpu_step.py)\n")
    print(f"device: {payload['device']}; torch {torch.__version__}; batch {shapes.batch} x {shapes.seconds:g} s; "
          f"median of {args.iters} steps after {args.warmup} warm-up; TF32 on\n")
    print(report(results))
    print("\nGFLOP / step: counted by torch.utils.flop_counter (matmuls, convolutions, attention; forward + backward; "
          "no FFTs, element-wise ops or optimizer); TFLOP/s = that / median step; peak = dense "
          + (f"{args.peak_tflops:g} TFLOP/s (--peak-tflops)" if args.peak_tflops else
             f"for the contender's precision on {args.device_name} (fp32 contenders run TF32)"))
    best = [(n_, r) for n_, r in results.items() if r.get("status") == "ok" and n_ != BASELINE
            and n_.startswith("ours") and not r["settings"]["share"]]
    base_r = results.get(BASELINE, {})
    if best and base_r.get("status") == "ok":
        n_, r = min(best, key=lambda kv: kv[1]["ms_median"])
        mem = (f"; peak {r['peak_gib']:.2f} vs {base_r['peak_gib']:.2f} GiB"
               if "peak_gib" in r and "peak_gib" in base_r else "")
        print(f"\nfastest ours (same student and training configuration as s3prl): {n_}, "
              f"{base_r['ms_median'] / r['ms_median']:.2f}x s3prl fp32{mem} (issue target >= 2.0x, memory <= s3prl's)")
    payload["elapsed_s"] = round(time.perf_counter() - T0, 1)
    write_json(args.json, payload)
    say("done")
    return 0 if all(r.get("status") in ("ok", "skipped") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
