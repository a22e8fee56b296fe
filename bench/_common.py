"""Shared helpers of the benchmarks: argument parsing, the synthetic batch, the tiny teacher, timing, tables.

Not a benchmark itself (``make bench`` runs ``bench/*.py``; this module only defines functions).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # runnable from any working directory, installed or not
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from s3prl_colld.constants import SAMPLE_RATE  # noqa: E402 - re-exported for the bench scripts

# the student of the distillation benchmarks: 2 x 192 with a 128-channel CNN of the tiny teacher's shape
TINY_CNN = [[128, 10, 5]] + [[128, 3, 2]] * 4 + [[128, 2, 2]] * 2
STUDENT = dict(frontend="cnn", cnn={"conv_layers": TINY_CNN}, layers=2, dim=192, ffn_dim=768, heads=4, conv_pos=64,
               conv_pos_groups=16)
LR, BETAS, EPS = 2e-4, (0.9, 0.98), 1e-6


def parse_args(description: str, batch: tuple[int, float], quick_batch: tuple[int, float],
               iters: int, quick_iters: int, warmup: int = 3,
               extra: Callable[[argparse.ArgumentParser], None] | None = None
               ) -> argparse.Namespace:
    """Common flags; ``args.batch_size``, ``args.seconds``, ``args.iters``, ``args.warmup`` are resolved."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true",
                   help=f"batch {quick_batch[0]} x {quick_batch[1]:g} s and {quick_iters} timed iterations")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--iters", type=int, default=None, help="timed iterations per contender (median is reported)")
    p.add_argument("--warmup", type=int, default=warmup, help="untimed iterations per contender first")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seconds", type=float, default=None, help="seconds of audio per utterance")
    p.add_argument("--seed", type=int, default=0)
    if extra is not None:
        extra(p)
    args = p.parse_args()
    b, s = quick_batch if args.quick else batch
    args.batch_size = args.batch_size or b
    args.seconds = args.seconds or s
    args.iters = args.iters or (quick_iters if args.quick else iters)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    return args


def synthetic_batch(batch_size: int, seconds: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(wav [B, N] = randn * 0.1, lengths [B] = N)``: equal-length crops, as one bucketed batch of the trainer."""
    n = int(round(seconds * SAMPLE_RATE))
    g = torch.Generator().manual_seed(seed)
    wav = torch.randn(batch_size, n, generator=g) * 0.1
    return wav, torch.full((batch_size,), n, dtype=torch.long)


def start(args: argparse.Namespace) -> tuple[dict[str, torch.Tensor], float]:
    """Warn if the CPUs are busy; ``({"wav", "wav_lengths", "padded"}, seconds of audio)`` of the synthetic batch.

    ``padded`` is False, as the trainer's collate marks a batch of equal-length crops.
    """
    warn_if_busy()
    wav, lengths = synthetic_batch(args.batch_size, args.seconds, args.seed)
    return {"wav": wav, "wav_lengths": lengths, "padded": False}, float(lengths.sum()) / SAMPLE_RATE


def distill_task(config: dict, teacher_ckpt: Path, expdir: Path, precision: str = "fp32"):
    """A ``DistillTask`` (``STUDENT``, tiny teacher ``teacher_ckpt``, deep-merged with ``config``) and its step.

    ``step(batch, rec=None)`` is what ``Trainer.train_step`` does: forward under
    autocast, backward, clip, AdamW step, zero_grad (``rec.mark(phase)`` after
    forward, backward and optimizer). Returns ``(task, trainable params, step)``.
    """
    from s3prl_colld.config import deep_merge, from_dict
    from s3prl_colld.pretrain.tasks.distill import DistillConfig, DistillTask
    from s3prl_colld.runtime.precision import autocast

    base = {"teacher": {"name": "hubert_local", "ckpt": str(teacher_ckpt)}, "model": STUDENT,
            "optimizer": {"lr": LR, "betas": list(BETAS), "eps": EPS}}
    cfg = from_dict(DistillConfig, deep_merge(base, config))
    torch.manual_seed(0)
    task = DistillTask(cfg, expdir).train()
    params = [p for p in task.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, betas=BETAS, eps=EPS, weight_decay=0.0)

    def step(batch: dict, rec=None) -> torch.Tensor:
        with autocast(precision, torch.device("cpu")):
            loss, _stats = task(batch)
        rec and rec.mark("forward")
        loss.float().backward()
        rec and rec.mark("backward")
        torch.nn.utils.clip_grad_norm_(params, cfg.runner.gradient_clipping)
        opt.step()
        opt.zero_grad(set_to_none=True)
        rec and rec.mark("optimizer")
        return loss.detach()

    return task, params, step


def write_tiny_teacher(folder: Path, n_units: int = 50) -> Path:
    """A freshly initialised tiny HuBERT (default ``TinyHubertConfig``: 4 x 192, 128-ch CNN) as a hubert_local ckpt."""
    from s3prl_colld.models.tiny_hubert import TinyHubertConfig, build_hubert, hubert_local_keys

    cfg = TinyHubertConfig()
    model = build_hubert(cfg, n_units)
    path = Path(folder) / "tiny_hubert.ckpt"
    torch.save(hubert_local_keys(model, cfg, n_units), path)
    return path


def load_teacher_upstream(ckpt: Path) -> torch.nn.Module:
    """The teacher as s3prl loads it (``S3PRLUpstream("hubert_local")``), frozen, eval mode, fp32."""
    from s3prl_colld.s3prl_bridge.frozen import FrozenS3PRLUpstream

    return FrozenS3PRLUpstream("hubert_local", ckpt).upstream


def tmpdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="s3prl_colld_bench_")


def time_interleaved(fns: dict[str, Callable[[], object]], iters: int, warmup: int) -> dict[str, list[float]]:
    """Warm every contender up, then time them round-robin (order rotated each round); seconds per call."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(iters):
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float]) -> str:
    """``min-max`` in ms."""
    return f"{min(xs) * 1e3:.0f}-{max(xs) * 1e3:.0f}"


def table(headers: list[str], rows: list[list[object]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def machine_line(args) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"machine: {cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
            f"threads={torch.get_num_threads()}; "
            f"batch {args.batch_size} x {args.seconds:g} s; warm-up {args.warmup}, median of {args.iters} "
            f"interleaved iterations; {_contention()}")


# ---------------------------------------------------------------- contention (a shared machine)
_START: tuple[int, int, float, float] | None = None  # busy ticks, total ticks, process CPU s, wall s
_BUSY_BEFORE: float | None = None


def _cpu_ticks() -> tuple[int, int]:
    with open("/proc/stat", encoding="utf-8") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + vals[4]  # idle + iowait
    return sum(vals) - idle, sum(vals)


def warn_if_busy(threshold: float = 0.15, window: float = 1.0) -> None:
    """Measure the CPUs' use for ``window`` s before the run (warn when other processes use them), start the meter.

    Other processes on the cores skew absolute times; ratios suffer less, since the contenders are interleaved.
    """
    global _START, _BUSY_BEFORE
    try:
        b0, t0 = _cpu_ticks()
        time.sleep(window)
        b1, t1 = _cpu_ticks()
    except (OSError, ValueError, IndexError):
        return
    _BUSY_BEFORE = (b1 - b0) / max(1, t1 - t0)
    if _BUSY_BEFORE > threshold:
        print(f"note: the CPUs were {_BUSY_BEFORE:.0%} busy just before the run; other processes share the cores",
              file=sys.stderr)
    _START = (b1, t1, time.process_time(), time.perf_counter())


def _contention() -> str:
    """Share of the machine's CPU time that other processes used before and during the run."""
    if _START is None or _BUSY_BEFORE is None:
        return "CPU use by other processes: n/a"
    b, t = _cpu_ticks()
    hz = os.sysconf("SC_CLK_TCK")
    busy_s = (b - _START[0]) / hz
    total_s = max(1e-9, (t - _START[1]) / hz)
    mine_s = time.process_time() - _START[2]
    others = max(0.0, busy_s - mine_s) / total_s
    return f"CPU use by other processes: {_BUSY_BEFORE:.0%} just before, ~{others:.0%} during the run"


def count_params(module: torch.nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
