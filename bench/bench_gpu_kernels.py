"""Where a GPU distillation step spends its time: its pieces timed alone, at HuBERT Base shapes (issue 12).

``bench_gpu_step.py`` times whole steps and their phases; this times the
pieces that dominate them, each in the variants the trainer can choose:

- the position-embedding conv (768 channels, kernel 128, 16 groups) over
  24 x 299 frames, forward and forward + backward, at fp32 (TF32), bf16 and
  fp16 autocast, run directly (cuDNN) or as an FFT product (``runner.fft_pos_conv``);
- one 512 -> 512 CNN conv (kernel 3, stride 2) over 24 x 19,199 frames in bf16:
  cuDNN on the channels-last layout the trainer uses, cuDNN on ``[B, C, T]``,
  and the same conv as one GEMM over unfolded windows;
- the teacher's forward (bf16) and its CNN alone, the student's forward and
  its CNN forward + backward, as ``ours_bf16`` of ``bench_gpu_step.py`` builds
  them, with the FFT position conv on and off.

    python bench/bench_gpu_kernels.py [--json OUT]      # a GPU, about a minute
    python bench/bench_gpu_kernels.py --device cpu --quick
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import _common as C  # noqa: F401  (puts the repository on sys.path)
import torch
import torch.nn.functional as F

import bench_gpu_step as G


def timed(fn: Callable[[], Any], device: torch.device, iters: int, warmup: int) -> float:
    """Median ms of ``fn()`` over ``iters`` calls after ``warmup`` (CUDA events on a GPU)."""
    for _ in range(warmup):
        fn()
    G.synchronize(device)
    ms = []
    for _ in range(iters):
        a, b = G.new_event(device), G.new_event(device)
        a.record()
        fn()
        b.record()
        G.synchronize(device)
        ms.append(a.elapsed_time(b))
    return round(statistics.median(ms), 3)


def fwd_and_bwd(fn: Callable[[], torch.Tensor], device: torch.device, iters: int, warmup: int
                ) -> tuple[float, float]:
    """``(forward ms under no_grad, forward + backward ms)`` of ``fn``."""
    def both() -> None:
        fn().float().square().mean().backward()

    with torch.no_grad():
        f = timed(fn, device, iters, warmup)
    return f, timed(both, device, iters, warmup)


def pos_conv_rows(shapes: G.Shapes, device: torch.device, iters: int, warmup: int) -> list[list[Any]]:
    from s3prl_colld.models.student import ConvPositionEmbedding

    t = int(shapes.seconds * 50) - 1
    module = ConvPositionEmbedding(shapes.dim, shapes.conv_pos, shapes.conv_pos_groups).to(device)
    x = torch.randn(shapes.batch, t, shapes.dim, device=device, requires_grad=True)
    rows = []
    for prec, dtype in (("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        if prec == "fp16" and device.type == "cpu":
            continue
        for fft in (False, True):
            module.fft = fft

            def fwd() -> torch.Tensor:
                with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                    return module(x)

            rows.append([f"pos conv, {prec}, {'fft' if fft else 'direct'}", *fwd_and_bwd(fwd, device, iters, warmup)])
    return rows


def cnn_conv_rows(shapes: G.Shapes, device: torch.device, iters: int, warmup: int) -> list[list[Any]]:
    c = shapes.cnn[1][0]
    t_in = int(shapes.seconds * 16000 - shapes.cnn[0][1]) // shapes.cnn[0][2] + 1
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    conv = torch.nn.Conv1d(c, c, 3, stride=2, bias=False).to(device, dtype)
    w4 = conv.weight.detach().unsqueeze(2).contiguous(memory_format=torch.channels_last).requires_grad_()
    w3 = conv.weight.detach().clone().requires_grad_()
    w_gemm = conv.weight.detach().permute(0, 2, 1).reshape(c, 3 * c).clone().requires_grad_()  # [C_out, k * C_in]
    x_cl = torch.randn(shapes.batch, c, 1, t_in, device=device, dtype=dtype).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    x_ncw = x_cl.detach()[:, :, 0].contiguous().requires_grad_()
    x_btc = x_cl.detach()[:, :, 0].transpose(1, 2).contiguous().requires_grad_()  # [B, T, C]
    flops = 2 * shapes.batch * ((t_in - 3) // 2 + 1) * c * c * 3
    variants = {
        "cuDNN channels-last conv2d": lambda: F.conv2d(x_cl, w4, stride=(1, 2)),
        "cuDNN [B, C, T] conv1d": lambda: F.conv1d(x_ncw, w3, stride=2),
        "GEMM over unfolded windows": lambda: F.linear(x_btc.unfold(1, 3, 2).transpose(2, 3).flatten(2), w_gemm),
    }
    rows = []
    for name, fn in variants.items():
        f, fb = fwd_and_bwd(fn, device, iters, warmup)
        rows.append([f"CNN conv 512x3/2, {name} ({flops / f / 1e9:.0f} TFLOP/s fwd)", f, fb])
    return rows


def model_rows(shapes: G.Shapes, device: torch.device, iters: int, warmup: int) -> list[list[Any]]:
    contender = next(c for c in G.CONTENDERS if c.name == "ours_bf16")
    n = int(round(shapes.seconds * 16000))
    wav = torch.randn(shapes.batch, n) * 0.1
    batch = {"wav": wav, "wav_lengths": torch.full((shapes.batch,), n), "padded": False}
    rows = []
    with tempfile.TemporaryDirectory(prefix="s3prl_colld_kernels_") as tmp_s:
        tmp = Path(tmp_s)
        ckpt = G.write_teacher(tmp, shapes)
        built = G.build_ours(contender, ckpt, shapes, device, batch, tmp / "ours")
        task = built["keep"][0].task
        wav_d, lengths = wav.to(device), batch["wav_lengths"].to(device)
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        teacher, student = task.teacher, task.student
        for fft in (True, False):
            task.set_kernels(True, True, fft)
            tag = "fft pos conv" if fft else "direct pos conv"
            rows.append([f"teacher forward (bf16), {tag}",
                         timed(lambda: teacher.run(wav_d, lengths, padded=False), device, iters, warmup), ""])

            def student_fwd() -> torch.Tensor:
                with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
                    return student(wav_d, lengths, padded=False)[0][-1]

            rows.append([f"student forward (bf16 autocast), {tag}", *fwd_and_bwd(student_fwd, device, iters, warmup)])
        cnn = teacher.frontend_module
        with torch.inference_mode():
            rows.append(["teacher CNN alone (bf16)", timed(lambda: cnn(wav_d.to(teacher.dtype)), device, iters,
                                                           warmup), ""])

        def student_cnn() -> torch.Tensor:
            with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
                return student.frontend_features(wav_d, lengths)[0]

        rows.append(["student CNN (bf16 autocast)", *fwd_and_bwd(student_cnn, device, iters, warmup)])
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    p.add_argument("--quick", action="store_true", help="tiny shapes (what CI runs on CPU)")
    p.add_argument("--iters", type=int, default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
        args.quick = args.quick or args.device == "cpu"
    device = torch.device(args.device, 0) if args.device == "cuda" else torch.device("cpu")
    shapes = G.TINY if args.quick else G.HUBERT_BASE
    iters = args.iters or (2 if args.quick else 10)
    warmup = 1 if args.quick else 3
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = False  # the trainer's default (runner.cudnn_benchmark)
    G.say(f"device: {G.device_name(device)}; torch {torch.__version__}; batch {shapes.batch} x {shapes.seconds:g} s")
    rows: list[list[Any]] = []
    for part in (pos_conv_rows, cnn_conv_rows, model_rows):
        t = time.perf_counter()
        try:
            rows += part(shapes, device, iters, warmup)
        except Exception as err:  # noqa: BLE001 - one part failing must not lose the others
            rows.append([f"{part.__name__}: FAILED {type(err).__name__}: {err}"[:200], "", ""])
        G.say(f"{part.__name__}: {time.perf_counter() - t:.1f} s")
        G.free(device)
    print(f"\n### GPU step pieces (bench/bench_gpu_kernels.py)\n\ndevice: {G.device_name(device)}; torch "
          f"{torch.__version__}; batch {shapes.batch} x {shapes.seconds:g} s; median of {iters} calls\n")
    print(C.table(["piece", "forward ms", "forward + backward ms"], rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"device": G.device_name(device), "torch": torch.__version__,
                                         "rows": rows}, indent=1) + "\n", encoding="utf-8")
    return 0 if not any(str(r[0]).count("FAILED") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
