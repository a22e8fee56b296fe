"""``python -m s3prl_colld.export CKPT --to hf OUT_DIR`` / ``--to onnx OUT.onnx [--quantize int8]``.

Writes a student checkpoint (``states-STEP.ckpt`` of a distillation task, or a
DiceHuBERT checkpoint) in a format that runs without s3prl-colld: a Hugging
Face ``transformers`` folder or an ONNX file (see ``s3prl_colld.export``).
This is not the checkpoint's own ``export`` section, which it reads.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from s3prl_colld.checkpoint import CheckpointError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m s3prl_colld.export", description=__doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", type=Path, help="a student checkpoint (states-STEP.ckpt of run_pretrain.py)")
    p.add_argument("--to", required=True, nargs=2, metavar=("FORMAT", "OUT"),
                   help="hf OUT_DIR (transformers HubertModel folder) or onnx OUT.onnx")
    p.add_argument("--quantize", choices=["int8"], help="onnx only: also write OUT.int8.onnx (dynamic int8)")
    p.add_argument("--results", type=Path, help="a replicate results.json with the student's row for the model "
                   "card (default: the grid folder the checkpoint lies in, if any)")
    p.add_argument("--force", action="store_true", help="hf only: replace a non-empty OUT_DIR")
    p.add_argument("--no-check", action="store_true", help="onnx only: skip the onnxruntime-vs-PyTorch check")
    return p


def _missing_extra(err: ImportError) -> str:
    return (f"{err.name or err} is not installed: the export needs the export extra: "
            "pip install 's3prl-colld[export]' (safetensors, onnx, onnxruntime)")


def main(argv: list[str] | None = None) -> int:
    """Run the export; 0 on success, 2 with a message on stderr for bad input."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    fmt, out = args.to[0], Path(args.to[1])
    if fmt not in ("hf", "onnx"):
        print(f"error: --to {fmt}: the format is hf (a transformers folder) or onnx (a .onnx file)", file=sys.stderr)
        return 2
    if args.quantize and fmt != "onnx":
        print("error: --quantize int8 applies to --to onnx only", file=sys.stderr)
        return 2
    from s3prl_colld.export.card import find_results_row, model_card
    from s3prl_colld.export.source import ExportError, load_source

    try:
        source = load_source(args.ckpt)
        if fmt == "hf":
            from s3prl_colld.export.hf import to_hf

            path = to_hf(source, out, model_card(source, find_results_row(source, args.results)), force=args.force)
            print(f"wrote {path}: config.json, model.safetensors, preprocessor_config.json, README.md")
            return 0
        from s3prl_colld.export.onnx_export import check_onnx, int8_path, quantize_int8, to_onnx

        path = to_onnx(source, out)
        written = [path]
        if args.quantize:
            written.append(quantize_int8(path, int8_path(path)))
        for p in written:
            line = f"wrote {p} ({p.stat().st_size / 1e6:.2f} MB)"
            if not args.no_check:
                line += f"; onnxruntime vs PyTorch: max abs difference {check_onnx(source, p):.2e}"
            print(line)
        return 0
    except ImportError as err:
        print(f"error: {_missing_extra(err)}", file=sys.stderr)
        return 2
    except (ExportError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
