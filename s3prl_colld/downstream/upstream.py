"""The frozen upstream of a downstream run: waveforms -> per-utterance hidden states.

Any name in ``s3prl.hub`` works (``fbank``, ``mfcc``, ``hubert_local`` + a
path, our students). It is the shared ``upstream.frozen.FrozenS3PRLUpstream``
(eval mode, no gradients), run under ``torch.inference_mode``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from s3prl_colld.checkpoint import file_sha256
from s3prl_colld.s3prl_bridge.frozen import FrozenS3PRLUpstream, UpstreamError

__all__ = ["FrozenUpstream", "UpstreamError", "layer_of"]
SELECTIONS = ("hidden_states", "last_hidden_state")  # plus "hidden_state_N" (= -l N)


def layer_of(selection: str, layer: int | None) -> int | None:
    """s3prl's ``-s`` / ``-l`` -> the layer to read (None: a weighted sum of all)."""
    if selection == "hidden_states":
        return layer
    if selection == "last_hidden_state":
        return -1
    if selection.startswith("hidden_state_") and selection.rsplit("_", 1)[1].isdigit():
        return int(selection.rsplit("_", 1)[1])
    raise UpstreamError(f"-s {selection!r} is not supported: use one of {', '.join(SELECTIONS)} or hidden_state_N")


class FrozenUpstream(FrozenS3PRLUpstream):
    """The shared frozen upstream, on ``device``, turning waveforms into per-utterance hidden states.

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
        super().__init__(name, ckpt)
        self.device, self.batch_size = torch.device(device), max(1, batch_size)
        self.to(self.device)
        sizes = set(self.hidden_sizes)
        if len(sizes) != 1:
            raise UpstreamError(f"upstream {name} has hidden states of different sizes {sorted(sizes)}; "
                                "the weighted sum needs one size")
        self.n_layers, self.dim = self.num_hidden, sizes.pop()
        self.fingerprint = f"{name}-{file_sha256(self.ckpt)[:16] if self.ckpt else 'none'}"

    @torch.inference_mode()
    def forward(self, wavs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Waveforms ``[N_i]`` (16 kHz) -> hidden states ``[L, T_i, D]`` (float32, CPU) each."""
        out: list[torch.Tensor] = []
        for i in range(0, len(wavs), self.batch_size):
            chunk = wavs[i: i + self.batch_size]
            lengths = torch.tensor([w.numel() for w in chunk])
            padded = torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True).float()
            hs, hs_len = self.upstream(padded.to(self.device), lengths.to(self.device))
            stacked = torch.stack(hs, 1).float().cpu()  # [B, L, T, D]
            out += [stacked[j, :, : int(hs_len[0][j])].clone() for j in range(len(chunk))]
        return out
