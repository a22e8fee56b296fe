"""A student as an ONNX graph: ``(wav [B, N], lengths [B]) -> (hidden_0 .. hidden_L [B, T, D], frame_lengths [B])``.

Every student exports, the Fbank front-end one included; batch and time are
dynamic. ``GraphEncoder`` is the function written to the graph: our upstream's
(``upstream/expert.py``; s3prl's HuBERT expert for ``hubert`` checkpoints),
with three things spelled out in exportable operations and nothing else
changed:

- the per-utterance waveform normalisation (``normalize_waveform``) as masked
  means instead of a Python loop over the batch;
- the Fbank front-end's power spectrum as a DFT matrix product over gathered
  frames, in float64 (torch's FFT has no ONNX form; in float64 the product is
  as exact as the FFT, so quiet mel bands, whose log is sensitive, agree);
- the position convolution's weight norm folded into a plain weight.

Hidden states are zero on padded frames (as our upstream returns them);
``frame_lengths`` counts the valid frames of each utterance. ``quantize_int8``
writes a second file with dynamic int8 quantisation (``onnxruntime.quantization``)
of the matrix products (Linear layers); the convolutions stay float32.

Needs the ``export`` extra: ``pip install s3prl-colld[export]`` (onnx, onnxruntime).
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from s3prl_colld.checkpoint import current_umask
from s3prl_colld.export.source import ExportSource, hubert_padding
from s3prl_colld.models.frontends import FbankFrontend, WavCNN, conv_stack

OPSET = 17
INPUTS = ("wav", "lengths")


def output_names(num_hidden: int) -> list[str]:
    """``hidden_0 .. hidden_{L}`` and ``frame_lengths``."""
    return [f"hidden_{i}" for i in range(num_hidden)] + ["frame_lengths"]


def _positions(x: torch.Tensor) -> torch.Tensor:
    """``x [B, T]`` -> ``[T]`` = 0 .. T-1 (int64), computed from ``x``'s shape (so dynamic in the graph)."""
    return torch.ones_like(x[0], dtype=torch.long).cumsum(0) - 1


class DftPower(nn.Module):
    """``MelSpectrogram``'s power spectrum (``center=False``) as frames @ DFT matrices, in float64.

    ``wav [B, N]`` -> ``[B, F, n_fft // 2 + 1]`` float64, ``F = (N - n_fft) // hop + 1``.
    """

    def __init__(self, window: torch.Tensor, n_fft: int, hop: int) -> None:
        super().__init__()
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
        n = torch.arange(n_fft, dtype=torch.float64)
        angle = 2 * math.pi * n[:, None] * k[None, :] / n_fft
        win = window.to(torch.float64)[:, None]
        self.register_buffer("cos", win * torch.cos(angle))  # [n_fft, bins]
        self.register_buffer("sin", win * torch.sin(angle))
        self.n_fft, self.hop = n_fft, hop

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        num = _positions(wav)[-1] + 1  # N
        count = torch.div(num - self.n_fft, self.hop, rounding_mode="floor") + 1
        starts = torch.arange(count, device=wav.device) * self.hop  # [F]
        index = starts[:, None] + torch.arange(self.n_fft, device=wav.device)[None, :]  # [F, n_fft]
        frames = wav.to(torch.float64)[:, index]  # [B, F, n_fft]
        return (frames @ self.cos) ** 2 + (frames @ self.sin) ** 2


class GraphEncoder(nn.Module):
    """The exported function (module docstring); built from an ``ExportSource``, which it does not modify."""

    def __init__(self, source: ExportSource) -> None:
        super().__init__()
        enc = copy.deepcopy(source.encoder).eval()
        conv = enc.pos_conv.conv
        if parametrize.is_parametrized(conv, "weight"):  # a plain conv with the folded weight (removing the
            plain = nn.Conv1d(conv.in_channels, conv.out_channels, conv.kernel_size[0], padding=conv.padding[0],
                              groups=conv.groups)  # parametrization from a deep copy would alter the original's class)
            with torch.no_grad():
                plain.weight.copy_(conv.weight)
                plain.bias.copy_(conv.bias)
            enc.pos_conv.conv = plain
        enc.pos_conv.fft = False
        self.enc = enc
        self.padding = source.padding
        self.normalize = bool(enc.cfg.normalize_waveform)
        self.power: DftPower | None = None
        if isinstance(enc.frontend, FbankFrontend):
            spec = enc.frontend.fbank.spectrogram
            if spec.center or spec.power != 2 or spec.normalized or spec.pad:
                raise ValueError("the Fbank front-end's spectrogram settings changed: update DftPower")
            self.power = DftPower(spec.window, spec.n_fft, spec.hop_length)
            self.register_buffer("mel", enc.frontend.fbank.mel_scale.fb.to(torch.float64))  # [bins, n_mels]

    @property
    def num_hidden(self) -> int:
        return len(self.enc.layers) + 1

    def normalized(self, wav: torch.Tensor, inside: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``F.layer_norm`` of each utterance's valid samples (eps 1e-5), padding 0: ``[B, N]``."""
        n = lengths.to(wav.dtype)[:, None]
        mean = (wav * inside).sum(1, keepdim=True) / n
        centred = (wav - mean) * inside
        var = (centred * centred).sum(1, keepdim=True) / n
        return centred * torch.rsqrt(var + 1e-5)

    def frontend(self, wav: torch.Tensor) -> torch.Tensor:
        """``wav [B, N]`` -> front-end frames ``[B, T, C]``."""
        front = self.enc.frontend
        if isinstance(front, WavCNN):
            return conv_stack(front.layers, wav).transpose(1, 2)
        assert self.power is not None
        spec = (self.power(wav) @ self.mel).to(torch.float32).clamp_min(1e-10).log()  # [B, F, n_mels]
        return front.conv(front.norm(spec).transpose(1, 2)).transpose(1, 2)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``wav [B, N]`` float32 (zero-padded), ``lengths [B]`` int64 -> ``L + 1`` x ``[B, T, D]``, ``[B]``."""
        enc = self.enc
        if self.normalize:
            samples = _positions(wav)
            wav = self.normalized(wav, (samples[None, :] < lengths[:, None]).to(wav.dtype), lengths)
        feats = self.frontend(wav)
        frames = _positions(feats[:, :, 0])
        if self.padding == "fairseq":
            valid = hubert_padding(frames, _positions(wav)[-1] + 1, lengths)
        else:
            valid = frames[None, :] < enc.frontend.output_lengths(lengths)[:, None]
        keep = valid[..., None].to(feats.dtype)
        # from here as StudentEncoder.forward (no masking, eval mode)
        x = enc.proj(enc.frontend_norm(feats)) * keep
        x = enc.norm(x + enc.pos_conv(x))
        hidden = [x]
        for layer in enc.layers:
            hidden.append(layer(hidden[-1], src_key_padding_mask=~valid))
        hidden[-1] = enc.final_norm(hidden[-1])
        return tuple(h * keep for h in hidden) + (valid.sum(1),)


def example_batch(seconds: float = 1.5, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch to trace with: ``wav [B, N]``, ``lengths [B]`` (the last utterance shorter)."""
    n = int(seconds * 16_000)
    wav = torch.randn(batch, n, generator=torch.Generator().manual_seed(seed)) * 0.1
    lengths = torch.full((batch,), n, dtype=torch.long)
    lengths[-1] = n * 2 // 3
    wav[-1, lengths[-1]:] = 0
    return wav, lengths


def to_onnx(source: ExportSource, out: str | Path) -> Path:
    """Write ``source``'s ``GraphEncoder`` to ``out`` (atomically: a temp file renamed); returns ``out``."""
    import onnx

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = GraphEncoder(source).eval()
    names = output_names(model.num_hidden)
    axes = {"wav": {0: "batch", 1: "samples"}, "lengths": {0: "batch"}, "frame_lengths": {0: "batch"},
            **{n: {0: "batch", 1: "frames"} for n in names[:-1]}}
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the legacy exporter's deprecation notice, and tracer notes on shape checks that never fire in eval
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(model, example_batch(), tmp, input_names=list(INPUTS), output_names=names,
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)
        graph = onnx.load(tmp)
        onnx.checker.check_model(graph)
        graph.doc_string = f"s3prl-colld student ({source.task}) from {source.path.name}; outputs: {', '.join(names)}"
        onnx.save(graph, tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


def quantize_int8(model: str | Path, out: str | Path) -> Path:
    """Dynamic int8 quantisation of ``model``'s MatMul / Gemm weights into ``out`` (atomically); returns ``out``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = Path(out)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tmp = tmpdir / out.name
        quantize_dynamic(str(model), str(tmp), op_types_to_quantize=["MatMul", "Gemm"],
                         weight_type=QuantType.QInt8)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return out


def int8_path(path: str | Path) -> Path:
    """``student.onnx`` -> ``student.int8.onnx``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.int8{path.suffix or '.onnx'}")


def run_onnx(path: str | Path, wav: torch.Tensor, lengths: torch.Tensor, threads: int = 1) -> list[torch.Tensor]:
    """Run an exported file with onnxruntime (CPU): the hidden states ``[B, T, D]`` and ``frame_lengths``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    outs = session.run(None, {"wav": wav.float().numpy(), "lengths": lengths.long().numpy()})
    return [torch.from_numpy(o) for o in outs]


def max_valid_difference(a: list[torch.Tensor] | tuple[torch.Tensor, ...], b: list[torch.Tensor] | tuple[torch.Tensor, ...],
                         frames: torch.Tensor) -> float:
    """Largest ``|a - b|`` over the valid frames (``frames [B]``) of paired hidden states ``[B, T, D]``."""
    return max(float((x[i, :n] - y[i, :n]).abs().max()) for x, y in zip(a, b) for i, n in enumerate(frames.tolist()))


def check_onnx(source: ExportSource, path: str | Path) -> float:
    """Max abs difference of onnxruntime (CPU) running ``path`` vs PyTorch on a padded batch of another
    size than the traced one (3 utterances, 2.3 s and shorter)."""
    wav, lengths = example_batch(seconds=2.3, batch=3, seed=1)
    lengths[1] = lengths[0] // 2
    wav[1, lengths[1]:] = 0
    with torch.no_grad():
        ours = GraphEncoder(source).eval()(wav, lengths)
    theirs = run_onnx(path, wav, lengths)
    if not torch.equal(theirs[-1], ours[-1]):
        raise RuntimeError(f"{path}: frame lengths differ from PyTorch's ({theirs[-1].tolist()} vs {ours[-1].tolist()})")
    return max_valid_difference(ours[:-1], theirs[:-1], ours[-1])
