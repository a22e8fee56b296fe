"""What int8 quantisation of an exported student costs in phone error rate (a frozen-probe check, issue 24).

Takes a finished grid of ``python -m s3prl_colld.replicate`` (e.g. ``--scale demo``),
exports one student (``--student``, default ``colld``, seed 0) to ONNX fp32 and int8
(``s3prl_colld.export``), and decodes the PR splits with that student's own PR probe
(its ``dev-best.ckpt``, trained on the PyTorch features) three times: features
from PyTorch (our upstream, as the grid did), from ONNX Runtime fp32 and from
ONNX Runtime int8. The ONNX features go through what ``S3PRLUpstream`` does to
any upstream's output (frames matched to ``ceil(N / 320)`` by repeating the
last one), so only the runtime differs. The feature cache is off. Prints PER per
split and the file sizes::

    nice python bench/experiments/export_int8_per.py --grid /work/demo-export [--student colld] [--splits dev test]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402


class OrtUpstream(nn.Module):
    """An ONNX student in ``S3PRLUpstream``'s place: ``(wav [B, N], lengths [B])`` -> ``(hidden states, lengths)``."""

    def __init__(self, path: Path, stride: int = 320) -> None:
        super().__init__()
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.stride = stride

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        outs = self.session.run(None, {"wav": wav.float().cpu().numpy(), "lengths": lengths.long().cpu().numpy()})
        want = len(range(0, int(lengths.max()), self.stride))  # S3PRLUpstream._match_length
        hs = []
        for h in (torch.from_numpy(o) for o in outs[:-1]):
            if h.size(1) > want:
                h = h[:, :want]
            elif h.size(1) < want:
                h = torch.cat([h, h[:, -1:].repeat(1, want - h.size(1), 1)], 1)
            hs.append(h)
        h_len = torch.div(lengths - 1, self.stride, rounding_mode="floor") + 1
        return [h[:, : int(h_len.max())] for h in hs], [h_len] * len(hs)


def per(probe: Path, split: str, upstream: nn.Module | None, out: Path) -> float:
    """PER of ``probe`` on ``split`` with features from ``upstream`` (None: the probe's own upstream)."""
    from s3prl_colld.config import deep_merge, from_dict
    from s3prl_colld.downstream.runner import DownstreamRunner, RunSpec, load_downstream_checkpoint
    from s3prl_colld.downstream.schema import DownstreamConfig

    state = load_downstream_checkpoint(probe)
    overrides = {"cache": {"enabled": False}, "runner": {"progress_bar": False}}
    if split not in ("dev", "test"):
        overrides["data"] = {"test_split": split}
    cfg = from_dict(DownstreamConfig, deep_merge(state["config"], overrides))
    runner = DownstreamRunner(RunSpec(**state["spec"]), cfg, out, state, train=False)
    if upstream is not None:
        runner.upstream.upstream = upstream
    result = runner.evaluate(split if split in ("dev", "test") else "test")
    return float(result[runner.task.metric])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", type=Path, required=True, help="a replicate output folder (finished)")
    p.add_argument("--student", default="colld", help="row name of the student (seed 0 is used)")
    p.add_argument("--splits", nargs="+", default=["dev"])
    p.add_argument("--json", type=Path, help="also write the numbers here")
    args = p.parse_args()
    torch.set_num_threads(1)
    from s3prl_colld.checkpoint import latest_checkpoint
    from s3prl_colld.export.onnx_export import int8_path, quantize_int8, to_onnx
    from s3prl_colld.export.source import load_source
    from s3prl_colld.replicate import slug

    run = args.grid / "students" / f"{slug(args.student)}-s0"
    ckpt = latest_checkpoint(run)
    probe = args.grid / "probes" / "pr" / f"{slug(args.student + '-s0')}-p0" / "dev-best.ckpt"
    if ckpt is None or not probe.is_file():
        raise SystemExit(f"no finished student {run} or probe {probe}: run the grid first")
    out = args.grid / "export"
    source = load_source(ckpt)
    fp32 = to_onnx(source, out / f"{slug(args.student)}.onnx")
    int8 = quantize_int8(fp32, int8_path(fp32))
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, upstream in (("pytorch", None), ("ort_fp32", OrtUpstream(fp32)), ("ort_int8", OrtUpstream(int8))):
            results[name] = {s: per(probe, s, upstream, Path(tmp) / name / s) for s in args.splits}
            print(f"{name}: " + ", ".join(f"{s} PER {v:.2f}" for s, v in results[name].items()), flush=True)
    sizes = {"ort_fp32": fp32.stat().st_size, "ort_int8": int8.stat().st_size}
    print(f"\n### int8 vs fp32, {args.student} of {args.grid} ({ckpt.name}), its PR probe ({probe.parent.name})\n")
    print("| features | " + " | ".join(f"{s} PER" for s in args.splits) + " | file (MB) |")
    print("|---|" + "---|" * (len(args.splits) + 1))
    for name in results:
        size = f"{sizes[name] / 1e6:.2f}" if name in sizes else "-"
        print(f"| {name} | " + " | ".join(f"{results[name][s]:.2f}" for s in args.splits) + f" | {size} |")
    print("\nint8 - fp32 PER: " + ", ".join(f"{s} {results['ort_int8'][s] - results['ort_fp32'][s]:+.2f}"
                                          for s in args.splits)
          + f"; int8 file = {sizes['ort_int8'] / sizes['ort_fp32']:.2f} x fp32")
    if args.json:
        args.json.write_text(json.dumps({"per": results, "bytes": sizes, "ckpt": str(ckpt), "probe": str(probe)},
                                        indent=1))


if __name__ == "__main__":
    main()
