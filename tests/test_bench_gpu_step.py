"""bench/bench_gpu_step.py keeps working: ``--device cpu --quick`` runs its code paths at tiny shapes.

No timing is asserted (speed claims live in bench/README.md); this checks that
each kind of contender runs, reports its numbers and phases, writes the JSON
after every contender, and that one failing contender loses nothing of the others.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import bench_gpu_step as bench  # noqa: E402

QUICK = ["--device", "cpu", "--quick", "--iters", "1", "--warmup", "1", "--phase-steps", "1"]


def test_quick_cpu_run_covers_s3prl_ours_and_colld(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gpu_bench.json"
    names = ["s3prl_fp16", "ours_bf16_ncl", "colld_bf16"]
    rc = bench.main(QUICK + ["--only", ",".join(names), "--profile", "ours_bf16_ncl", "--json", str(out),
                             "--peak-tflops", "0.5"])
    assert rc == 0
    data = json.loads(out.read_text())
    assert list(data["results"]) == names and data["shapes"]["batch"] == 2
    for name in names:
        r = data["results"][name]
        assert r["status"] == "ok", r.get("traceback")
        assert r["ms_median"] > 0 and r["audio_sec_per_s"] > 0 and math.isfinite(r["loss"])
        assert set(r["phases_ms"]) == set(bench.PHASES) and r["phases_ms"]["total"] > 0
        assert r["phases_ms"]["teacher"] > 0 and r["phases_ms"]["backward"] > 0
        assert r["flops_per_step"] > 1e6 and r["peak_tflops"] == 0.5  # counted: tiny shapes, still > 1 MFLOP
        assert r["achieved_tflops"] == pytest.approx(r["flops_per_step"] / (r["ms_median"] / 1e3) / 1e12, rel=1e-3)
        assert r["peak_fraction"] == pytest.approx(r["achieved_tflops"] / 0.5, rel=1e-3)
    assert data["results"]["ours_bf16_ncl"]["phases_ms"]["student CNN"] > 0
    assert "aten::" in data["results"]["ours_bf16_ncl"]["profile"]
    assert "profile" not in data["results"]["colld_bf16"]
    printed = capsys.readouterr().out
    assert "| contender | ms / step" in printed and "Per phase" in printed
    assert "GFLOP / step (counted)" in printed and "% of 0.5" in printed


def test_counted_flops_of_a_linear_step_match_the_analytic_count() -> None:
    """Forward x @ W.T, backward dX and dW: three (4 x 16) @ (16 x 8) products of 2 * 4 * 16 * 8 FLOPs each."""
    import torch

    layer = torch.nn.Linear(16, 8)
    x = torch.randn(4, 16, requires_grad=True)
    assert bench.count_flops(lambda: layer(x).sum().backward()) == 3 * 2 * 4 * 16 * 8
    with torch.no_grad():  # forward only
        assert bench.count_flops(lambda: layer(x)) == 2 * 4 * 16 * 8


def test_counted_flops_of_a_grouped_conv_step_are_three_forwards() -> None:
    """Conv1d 8 -> 8 channels in 4 groups, kernel 3, on 2 x 8 x 10: forward 2 * 2 * 10 * 8 * (8 / 4) * 3 FLOPs;
    backward = the same again for the input gradient and for the weight gradient (torch alone counts the
    weight gradient 4x: 5760 in all)."""
    import torch

    conv = torch.nn.Conv1d(8, 8, 3, padding=1, groups=4, bias=False)
    x = torch.randn(2, 8, 10, requires_grad=True)
    forward = 2 * 2 * 10 * 8 * 2 * 3
    assert bench.count_flops(lambda: conv(x).sum().backward()) == 3 * forward


def test_counted_flops_of_attention_on_cpu() -> None:
    """softmax(q k^T) v with q, k, v of 1 x 2 heads x 5 x 4: two products of 2 * 2 * 5 * 5 * 4 FLOPs forward;
    backward five more (the scores recomputed, as the fused kernels do and torch counts on CUDA, their
    gradient, dv, dq, dk)."""
    import torch
    import torch.nn.functional as F

    q, k, v = (torch.randn(1, 2, 5, 4, requires_grad=True) for _ in range(3))
    assert bench.count_flops(lambda: F.scaled_dot_product_attention(q, k, v).detach()) == 2 * (2 * 2 * 5 * 5 * 4)
    assert bench.count_flops(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward()) == 7 * (2 * 2 * 5 * 5 * 4)


def test_peaks_by_device_name_and_precision() -> None:
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == pytest.approx(989.4)
    assert bench.peak_tflops("NVIDIA H200", "fp32") == pytest.approx(494.7)  # TF32 is on for every contender
    assert bench.peak_tflops("NVIDIA H100 PCIe", "fp16") == pytest.approx(756.0)
    assert bench.peak_tflops("cpu", "bf16") is None
    assert bench.peak_tflops("cpu", "bf16", override=2.0) == 2.0


def test_a_failing_contender_keeps_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args, **_kwargs):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(bench, "build_s3prl", broken)
    out = tmp_path / "gpu_bench.json"
    rc = bench.main(QUICK + ["--only", "s3prl_fp32,ours_fp32_ref", "--phase-steps", "0", "--json", str(out)])
    assert rc == 1
    results = json.loads(out.read_text())["results"]
    assert results["s3prl_fp32"]["status"] == "error" and "injected failure" in results["s3prl_fp32"]["error"]
    assert results["ours_fp32_ref"]["status"] == "ok" and results["ours_fp32_ref"]["ms_median"] > 0


def test_unknown_contender_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--device", "cpu", "--quick", "--only", "ours_fast"]) == 2
    assert "unknown contender" in capsys.readouterr().err


def test_deadline_stops_a_contender_and_budget_skips_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "gpu_bench.json"
    rc = bench.main(QUICK + ["--only", "ours_fp32_ref,ours_bf16_compile", "--iters", "100000", "--deadline-s", "20",
                             "--budget-s", "19", "--json", str(out)])
    results = json.loads(out.read_text())["results"]
    assert rc == 1 and results["ours_fp32_ref"]["status"] == "error"
    assert "DeadlineExceeded" in results["ours_fp32_ref"]["error"]
    assert results["ours_bf16_compile"]["status"] == "skipped"


def test_kernels_bench_runs_every_piece_on_cpu(tmp_path: Path) -> None:
    """bench/bench_gpu_kernels.py at tiny shapes: every piece (position conv direct and FFT, CNN conv variants,
    teacher and student with the FFT conv on and off) reports a time."""
    import bench_gpu_kernels as kernels

    out = tmp_path / "kernels.json"
    assert kernels.main(["--device", "cpu", "--quick", "--iters", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    names = [r[0] for r in rows]
    assert {"pos conv, fp32, fft", "pos conv, bf16, direct", "teacher forward (bf16), fft pos conv",
            "student forward (bf16 autocast), direct pos conv"} <= set(names)
    assert sum(n.startswith("CNN conv") for n in names) == 3
    assert all(isinstance(r[1], float) and r[1] > 0 for r in rows)
