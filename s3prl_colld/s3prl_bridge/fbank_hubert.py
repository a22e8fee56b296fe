"""``hubert_fbank_local``: a tiny HuBERT with the Fbank front-end (``config.model.frontend=fbank``) as an s3prl upstream.

s3prl's ``hubert_local`` builds ``HubertModel`` with its waveform CNN and loads
the weights strictly, so it cannot load this model. This expert is s3prl's
HuBERT expert (its ``forward``, downsample rate and hidden states: the input of
every encoder layer and the encoder's output, as s3prl hooks them) around a
model built by ``models.tiny_hubert.load_tiny_hubert`` (``weights_only``).
"""

from __future__ import annotations

import torch
from s3prl.upstream.hubert.expert import UpstreamExpert as HubertExpert
from s3prl.upstream.interfaces import UpstreamBase

from s3prl_colld.models.tiny_hubert import load_tiny_hubert


def _same_length(hooks: list[tuple[str, torch.Tensor]]) -> list[tuple[str, torch.Tensor]]:
    """Hidden states cut to the shortest one's frames (as s3prl's HuBERT expert does)."""
    frames = min(h.size(1) for _, h in hooks)
    return [(name, h[:, :frames]) for name, h in hooks]


class UpstreamExpert(HubertExpert):
    """s3prl's HuBERT expert over ``load_tiny_hubert(ckpt)``: ``forward(wavs) -> {"hidden_states": L + 1 x [B, T, D]}``."""

    def __init__(self, ckpt: str, **kwargs: object) -> None:
        UpstreamBase.__init__(self, **kwargs)  # not HubertExpert.__init__: its loader builds the CNN
        self.model, self.task_cfg = load_tiny_hubert(ckpt)
        self.model.feature_grad_mult = 0.0
        self.model.encoder.layerdrop = 0.0
        if not self.hooks:
            for i in range(len(self.model.encoder.layers)):
                self.add_hook(f"self.model.encoder.layers[{i}]", lambda input, output: input[0].transpose(0, 1))
            self.add_hook("self.model.encoder", lambda input, output: output[0])
            self.hook_postprocess = _same_length
