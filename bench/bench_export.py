"""CPU latency of an exported student on one 10 s utterance: PyTorch eager vs ONNX Runtime fp32 vs int8.

The student is the DistilHuBERT preset (``configs/students/distilhubert.yaml``:
2 x 768, FFN 3072, 12 heads, HuBERT's 512-channel CNN; random weights) or the
one of ``--ckpt``. It is exported with ``s3prl_colld.export`` (``--to onnx``,
then ``--quantize int8``) into a temp folder; the three contenders then run
one utterance each call, round-robin (``_common.time_interleaved``), with the
same thread count (``--threads``, default 2: ``torch.set_num_threads`` and
onnxruntime's ``intra_op_num_threads``). Prints the median latencies, their
ratios to PyTorch, the file sizes, and how far each ONNX model's hidden states
are from PyTorch's (max abs difference, all layers).

    python bench/bench_export.py [--quick] [--ckpt STATES.ckpt]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import _common as C
import torch
import yaml


def _ckpt_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", type=Path, help="a student checkpoint (default: the DistilHuBERT preset, random weights)")


def main() -> None:
    args = C.parse_args(__doc__.splitlines()[0], batch=(1, 10.0), quick_batch=(1, 10.0),
                        iters=10, quick_iters=4, warmup=2, extra=_ckpt_flag)
    import onnxruntime as ort

    from s3prl_colld.config import from_dict
    from s3prl_colld.export.onnx_export import GraphEncoder, int8_path, quantize_int8, to_onnx
    from s3prl_colld.export.source import ExportSource, load_source
    from s3prl_colld.models.student import StudentConfig, StudentEncoder

    if args.ckpt:
        source = load_source(args.ckpt)
        what = f"{args.ckpt} ({source.task})"
    else:
        cfg = from_dict(StudentConfig, yaml.safe_load((C.REPO_ROOT / "configs/students/distilhubert.yaml").read_text()))
        source = ExportSource(StudentEncoder(cfg).eval(), "student", "conv", "distilhubert", {}, None,
                              Path("distilhubert-preset.ckpt"), [])
        what = "DistilHuBERT preset (2 x 768, 512-ch CNN, random weights)"
    C.warn_if_busy()
    wav, lengths = C.synthetic_batch(args.batch_size, args.seconds, args.seed)
    with C.tmpdir() as tmp:
        fp32 = to_onnx(source, Path(tmp) / "student.onnx")
        int8 = quantize_int8(fp32, int8_path(fp32))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = args.threads, 1
        sessions = {n: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
                    for n, p in (("ort_fp32", fp32), ("ort_int8", int8))}
        sizes = {"torch": sum(t.numel() * t.element_size() for t in source.encoder.state_dict().values()),
                 "ort_fp32": fp32.stat().st_size, "ort_int8": int8.stat().st_size}
        feed = {"wav": wav.numpy(), "lengths": lengths.numpy()}

        def eager() -> object:
            with torch.inference_mode():
                return source.encoder(wav, lengths, padded=False)[0]

        def onnx(name: str):
            return lambda: sessions[name].run(None, feed)

        with torch.inference_mode():
            ref = GraphEncoder(source).eval()(wav, lengths)[:-1]
        diff = {n: max(float((torch.from_numpy(o) - r).abs().max()) for o, r in zip(s.run(None, feed)[:-1], ref))
                for n, s in sessions.items()}
        times = C.time_interleaved({"torch": eager, "ort_fp32": onnx("ort_fp32"), "ort_int8": onnx("ort_int8")},
                                   args.iters, args.warmup)
    m = {k: C.med(v) for k, v in times.items()}
    labels = {"torch": "PyTorch eager (fp32)", "ort_fp32": "ONNX Runtime fp32", "ort_int8": "ONNX Runtime int8 (dynamic)"}
    rows = [[labels[n], f"{m[n] * 1e3:.0f}", C.spread(times[n]), f"{m['torch'] / m[n]:.2f}x",
             f"{sizes[n] / 1e6:.1f}", "-" if n == "torch" else f"{diff[n]:.1e}"] for n in labels]
    print(f"\n### Exported student, CPU latency of one {args.seconds:g} s utterance: {what}\n")
    print(C.machine_line(args))
    print()
    print(C.table(["runtime", f"median (ms, {args.iters} runs)", "min-max (ms)", "speed-up vs PyTorch",
                   "weights / file (MB)", "max abs diff vs PyTorch"], rows))
    print(f"\nratio ort_fp32/torch latency = {m['ort_fp32'] / m['torch']:.2f}, ort_int8/torch = "
          f"{m['ort_int8'] / m['torch']:.2f}, ort_int8/ort_fp32 = {m['ort_int8'] / m['ort_fp32']:.2f}; "
          f"int8 file = {sizes['ort_int8'] / sizes['ort_fp32']:.2f} x the fp32 file")


if __name__ == "__main__":
    main()
