"""A frozen s3prl upstream that turns waveforms into per-utterance hidden states.

Any name in ``s3prl.hub`` works (``fbank``, ``mfcc``, ``hubert_local`` + a
path, our students after ``import s3prl_colld.hub``). The upstream is put in
eval mode with ``requires_grad=False`` and always runs under
``torch.inference_mode``.
"""

from __future__ import annotations

import difflib
import hashlib
from pathlib import Path

import torch

SELECTIONS = ("hidden_states", "last_hidden_state")  # plus "hidden_state_N" (= -l N)


class UpstreamError(ValueError):
    """An upstream name that s3prl does not know, or a missing checkpoint."""


def file_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's content (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def available_upstreams() -> list[str]:
    """Every name ``S3PRLUpstream`` accepts, ours included."""
    import s3prl_colld.hub  # noqa: F401 - registers our students
    from s3prl.nn import S3PRLUpstream

    return S3PRLUpstream.available_names()


def check_upstream_name(name: str) -> None:
    """Raise an UpstreamError listing close matches if s3prl does not know ``name``."""
    names = available_upstreams()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        raise UpstreamError(f"unknown upstream {name!r}.{hint} All {len(names)} names: "
                            "python -c 'import s3prl_colld.hub; from s3prl.nn import S3PRLUpstream; "
                            "print(S3PRLUpstream.available_names())'")


def layer_of(selection: str, layer: int | None) -> int | None:
    """s3prl's ``-s`` / ``-l`` -> the layer to read (None: a weighted sum of all)."""
    if selection == "hidden_states":
        return layer
    if selection == "last_hidden_state":
        return -1
    if selection.startswith("hidden_state_") and selection.rsplit("_", 1)[1].isdigit():
        return int(selection.rsplit("_", 1)[1])
    raise UpstreamError(f"-s {selection!r} is not supported: use one of {', '.join(SELECTIONS)} or hidden_state_N")


class FrozenUpstream:
    """``S3PRLUpstream(name, path_or_url=ckpt)`` frozen, with its shape and a content fingerprint.

    Args:
        name: an ``s3prl.hub`` name.
        ckpt: the checkpoint for ``*_local`` / our student names (``-k``).
        device: where the upstream runs.
        batch_size: utterances per forward; 1 (the default) is exact for models
            whose first layer normalises over time (HuBERT's GroupNorm), where
            padding a batch changes the features of the shorter utterances.
    """

    def __init__(self, name: str, ckpt: str | Path | None = None, device: str | torch.device = "cpu",
                 batch_size: int = 1) -> None:
        from s3prl.nn import S3PRLUpstream

        check_upstream_name(name)
        if ckpt is not None and not Path(ckpt).is_file():
            raise UpstreamError(f"upstream checkpoint not found: {ckpt} (-k)")
        from s3prl_colld.hub import check_upstream_checkpoint

        check_upstream_checkpoint(name, str(ckpt) if ckpt else None, "-k", "-u ")
        self.name, self.ckpt = name, str(ckpt) if ckpt else None
        self.device, self.batch_size = torch.device(device), max(1, batch_size)
        self.model = S3PRLUpstream(name, path_or_url=self.ckpt).to(self.device).eval()
        self.model.requires_grad_(False)
        sizes = set(self.model.hidden_sizes)
        if len(sizes) != 1:
            raise UpstreamError(f"upstream {name} has hidden states of different sizes {sorted(sizes)}; "
                                "the weighted sum needs one size")
        self.n_layers, self.dim = self.model.num_layers, sizes.pop()
        self.downsample_rate = max(self.model.downsample_rates)
        self.fingerprint = f"{name}-{file_hash(self.ckpt)[:16] if self.ckpt else 'none'}"

    @torch.inference_mode()
    def __call__(self, wavs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Waveforms ``[N_i]`` (16 kHz) -> hidden states ``[L, T_i, D]`` (float32, CPU) each."""
        out: list[torch.Tensor] = []
        for i in range(0, len(wavs), self.batch_size):
            chunk = wavs[i: i + self.batch_size]
            lengths = torch.tensor([w.numel() for w in chunk])
            padded = torch.zeros(len(chunk), int(lengths.max()))
            for j, w in enumerate(chunk):
                padded[j, : w.numel()] = w
            hs, hs_len = self.model(padded.to(self.device), lengths.to(self.device))
            stacked = torch.stack(hs, 1).float().cpu()  # [B, L, T, D]
            out += [stacked[j, :, : int(hs_len[0][j])].clone() for j in range(len(chunk))]
        return out
