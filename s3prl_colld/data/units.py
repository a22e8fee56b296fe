"""HuBERT's targets: k-means units of frame features at 50 Hz (MFCCs for iteration 1).

MFCCs are computed as in HuBERT's ``dump_mfcc_feature.py`` (Kaldi-style
13 coefficients, no energy, plus deltas and delta-deltas: 39 dims) at 100 Hz
and every second frame is kept. Frame ``k`` then starts at sample ``320 k``
with a 400-sample window, which is exactly the receptive field of frame ``k``
of a HuBERT CNN (total stride 320, receptive field 400), so unit ``k`` labels
CNN frame ``k`` and the two sequences have the same length.

``UnitQuantizer`` clusters any ``[T, D]`` frame features (39-dim MFCCs, or a
teacher layer's hidden states for HuBERT's second iteration and DiceHuBERT);
``UnitLabeler`` applies a fitted quantizer to batches on any device.
"""

from __future__ import annotations

import numpy as np
import torch
import torchaudio
from sklearn.cluster import MiniBatchKMeans

from s3prl_colld.constants import FRAME_STRIDE, FRAME_WINDOW, SAMPLE_RATE


def num_frames(num_samples: int) -> int:
    """Frames of a stride-320 / receptive-field-400 CNN (and of our 50 Hz MFCC) for ``num_samples``."""
    return max(0, (num_samples - FRAME_WINDOW) // FRAME_STRIDE + 1)


def mfcc_50hz(wav: torch.Tensor) -> torch.Tensor:
    """39-dim MFCC + deltas at 50 Hz.

    Args:
        wav: ``[N]`` float waveform at 16 kHz, in [-1, 1], ``N >= 400``.
    Returns:
        ``[T, 39]`` with ``T = num_frames(N)``.
    """
    if wav.numel() < FRAME_WINDOW:
        raise ValueError(f"waveform of {wav.numel()} samples is shorter than one 25 ms frame ({FRAME_WINDOW} samples)")
    with torch.inference_mode():
        mfcc = torchaudio.compliance.kaldi.mfcc(
            wav.float().view(1, -1), sample_frequency=SAMPLE_RATE, use_energy=False, dither=0.0
        )  # [T100, 13]
        feats = mfcc.transpose(0, 1)  # [13, T100]
        d1 = torchaudio.functional.compute_deltas(feats)
        d2 = torchaudio.functional.compute_deltas(d1)
        full = torch.cat([feats, d1, d2], dim=0).transpose(0, 1)  # [T100, 39]
    return full[::2][: num_frames(wav.numel())].contiguous()


class UnitQuantizer:
    """k-means of standardised frame features: ``fit`` on sampled frames, ``labels`` per utterance."""

    def __init__(self, n_clusters: int, seed: int = 0) -> None:
        self.n_clusters = n_clusters
        self.seed = seed
        self.mean: torch.Tensor | None = None  # [D]
        self.std: torch.Tensor | None = None  # [D]
        self.centroids: torch.Tensor | None = None  # [K, D] (in standardised units)

    def fit(self, frames: torch.Tensor, batch_size: int = 10_000, max_iter: int = 100) -> float:
        """Fit on ``frames`` ``[M, D]``; returns the mean squared distance to the nearest centroid."""
        if len(frames) < self.n_clusters:
            raise ValueError(f"k-means with {self.n_clusters} clusters needs at least as many frames, got {len(frames)}")
        frames = frames.float()
        self.mean = frames.mean(0)
        self.std = frames.std(0).clamp_min(1e-5)
        x = ((frames - self.mean) / self.std).numpy().astype(np.float32)
        km = MiniBatchKMeans(
            n_clusters=self.n_clusters,
            batch_size=batch_size,
            max_iter=max_iter,
            n_init=3,
            random_state=self.seed,
            max_no_improvement=50,
        )
        km.fit(x)
        self.centroids = torch.from_numpy(km.cluster_centers_).float()
        return float(km.inertia_ / len(x))

    def labels(self, feats: torch.Tensor) -> torch.Tensor:
        """``[T, D]`` features -> ``[T]`` int64 unit ids (nearest centroid)."""
        if self.centroids is None or self.mean is None or self.std is None:
            raise RuntimeError("UnitQuantizer.labels called before fit/load")
        x = (feats.float() - self.mean) / self.std
        return torch.cdist(x, self.centroids).argmin(dim=1)

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        """Plain tensors, for ``torch.save`` / ``weights_only`` loading."""
        return {"n_clusters": self.n_clusters, "mean": self.mean, "std": self.std, "centroids": self.centroids}

    @classmethod
    def from_state_dict(cls, state: dict) -> "UnitQuantizer":
        q = cls(int(state["n_clusters"]))
        q.mean, q.std, q.centroids = state["mean"], state["std"], state["centroids"]
        return q


class UnitLabeler(torch.nn.Module):
    """A fitted ``UnitQuantizer`` as a module (buffers follow ``.to(device)``): ``[B, T, D] -> [B, T]`` unit ids.

    The buffers are not persistent: the quantizer lives in its own cache file, not in a model's state dict.
    """

    def __init__(self, quantizer: UnitQuantizer) -> None:
        super().__init__()
        if quantizer.centroids is None or quantizer.mean is None or quantizer.std is None:
            raise RuntimeError("UnitLabeler needs a fitted UnitQuantizer")
        self.register_buffer("mean", quantizer.mean.float().clone(), persistent=False)
        self.register_buffer("std", quantizer.std.float().clone(), persistent=False)
        self.register_buffer("centroids", quantizer.centroids.float().clone(), persistent=False)

    @torch.no_grad()
    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """``feats [B, T, D]`` (any float dtype) -> ``[B, T]`` int64, computed in float32."""
        x = (feats.float() - self.mean) / self.std
        return torch.cdist(x, self.centroids[None].expand(x.size(0), -1, -1)).argmin(dim=-1)
