"""The SUPERB featurizer: a learned softmax-weighted sum of an upstream's hidden states."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class Featurizer(nn.Module):
    """``[B, L, T, D]`` -> ``[B, T, D]``: s3prl's SUPERB featurizer.

    - ``L > 1``: ``sum_l softmax(w)_l * h_l`` (with ``normalize``: ``layer_norm(h_l)``
      without parameters before mixing); the weights start at zero (an equal mix).
    - ``L == 1`` (fbank, mfcc): the hidden state is passed through untouched, as
      s3prl's ``Featurizer`` does; its single weight gets no gradient.
    - ``layer`` (``-l``): that hidden state alone, untouched (s3prl normalises
      only inside the weighted sum).

    Args:
        n_layers: hidden states per utterance (front-end output + every layer).
        layer: read only this layer (``-l``; negative counts from the end) instead of the sum.
        normalize: layer-normalise each hidden state before the weighted sum (s3prl's
            ``--upstream_feature_normalize``; off in SUPERB, and off by default).
    """

    def __init__(self, n_layers: int, layer: int | None = None, normalize: bool = False) -> None:
        super().__init__()
        if layer is not None and not -n_layers <= layer < n_layers:
            raise ValueError(f"-l {layer}: the upstream has hidden states 0..{n_layers - 1}")
        self.n_layers, self.layer, self.normalize = n_layers, layer, normalize
        self.weights = nn.Parameter(torch.zeros(n_layers))  # s3prl initialises them to zero (equal mix)

    def forward(self, hs: torch.Tensor) -> torch.Tensor:
        """``hs [B, L, T, D]`` -> ``[B, T, D]``."""
        if self.layer is not None:
            return hs[:, self.layer]
        if self.n_layers == 1:
            return hs[:, 0]
        if self.normalize:
            hs = F.layer_norm(hs, hs.shape[-1:])
        return torch.einsum("l,bltd->btd", self.weights.softmax(0), hs)

    def layer_weights(self) -> list[float]:
        """The mixing weights (softmax), or one-hot for ``-l``."""
        if self.layer is not None:
            return [1.0 if i == self.layer % self.n_layers else 0.0 for i in range(self.n_layers)]
        return self.weights.detach().softmax(0).tolist()


def plot_layer_weights(weights: Sequence[float], path: str | Path, title: str = "") -> Path:
    """Bar chart of the layer weights (layer 0 = the front-end output) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(weights) + 1.5), 3.0))
    ax.bar(range(len(weights)), weights, color="tab:blue")
    ax.axhline(1.0 / len(weights), color="gray", ls="--", lw=0.8, label="uniform")
    ax.set_xlabel("hidden state (0 = front-end)")
    ax.set_ylabel("softmax weight")
    ax.set_xticks(range(len(weights)))
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def pad_features(feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[L, T_i, D]`` each -> zero-padded ``[B, L, T, D]`` and lengths ``[B]``."""
    lengths = torch.tensor([f.size(1) for f in feats])
    padded = torch.nn.utils.rnn.pad_sequence([f.transpose(0, 1) for f in feats], batch_first=True)  # [B, T, L, D]
    return padded.transpose(1, 2).contiguous(), lengths
