"""A distilled student as an s3prl upstream: ``forward(wavs) -> {"hidden_states": [...], ...}``.

Loads the ``student`` that a pretrain checkpoint exports (its ``export`` section,
``checkpoint.exported``), with ``weights_only``. Hidden states are the projected
front-end output and every layer, ``[B, T, D]``; the downsample rate is the
front-end's (320 for the CNN and for the Fbank front-end). A student of a
teacher that layer-normalises the waveform has ``normalize_waveform: true``
in its config and normalises each utterance the same way here (checkpoints
without the key do not normalise).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from s3prl_colld import checkpoint as ckpt_io
from s3prl_colld.config import from_dict
from s3prl_colld.models.student import StudentConfig, StudentEncoder


def load_student(ckpt: str | Path) -> tuple[StudentEncoder, str]:
    """``(student, task name)`` from a checkpoint that exports a student; clear errors for other files."""
    state = ckpt_io.load(ckpt)
    config, weights = ckpt_io.exported(state, "student", ckpt)
    student = StudentEncoder(from_dict(StudentConfig, config, "config.model"))
    student.load_state_dict(weights)
    return student.eval(), str(state.get("task"))


class UpstreamExpert(nn.Module):
    """s3prl's upstream interface around ``StudentEncoder``."""

    def __init__(self, ckpt: str, **kwargs: object) -> None:
        super().__init__()
        self.model, self.task = load_student(ckpt)

    def get_downsample_rates(self, key: str) -> int:
        return self.model.downsample_rate

    def forward(self, wavs: list[torch.Tensor]) -> dict[str, list[torch.Tensor] | torch.Tensor]:
        """``wavs``: list of ``[N_b]`` -> hidden states ``L + 1`` x ``[B, T, D]`` (zero beyond each length)."""
        lengths = torch.tensor([w.numel() for w in wavs], device=wavs[0].device)
        padded = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)
        hidden, valid, _ = self.model(padded, lengths)
        hidden = [h * valid[..., None] for h in hidden]
        return {"hidden_states": hidden, "last_hidden_state": hidden[-1]}
