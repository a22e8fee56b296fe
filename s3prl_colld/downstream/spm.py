"""Sentencepiece target vocabulary for speech translation, kept as bytes inside checkpoints."""

from __future__ import annotations

import io
from typing import Sequence

import sentencepiece as spm
import torch

PAD, UNK, BOS, EOS = 0, 1, 2, 3
MODEL_TYPES = ("unigram", "bpe", "char", "word")


def train_sentencepiece(texts: Sequence[str], vocab_size: int, model_type: str = "unigram",
                        character_coverage: float = 1.0) -> bytes:
    """Train a sentencepiece model in memory on ``texts``; returns its serialized proto.

    ``hard_vocab_limit=False`` lets a small corpus end with fewer pieces than
    ``vocab_size``. Ids: pad 0, unk 1, bos 2, eos 3. Blank texts are skipped;
    ``ValueError`` if none is left, or if sentencepiece refuses the settings
    (e.g. a ``vocab_size`` below the number of distinct characters).
    """
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError("train_sentencepiece: no non-empty training texts")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"train_sentencepiece: model_type must be one of {MODEL_TYPES}, got {model_type!r}")
    if vocab_size < 5:
        raise ValueError(f"train_sentencepiece: vocab_size must be >= 5 (4 special ids + 1 piece), got {vocab_size}")
    if not 0.0 < character_coverage <= 1.0:
        raise ValueError(f"train_sentencepiece: character_coverage must be in (0, 1], got {character_coverage}")
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size, model_type=model_type,
            character_coverage=character_coverage, hard_vocab_limit=False, pad_id=PAD, unk_id=UNK, bos_id=BOS,
            eos_id=EOS, minloglevel=2, num_threads=1)
    except RuntimeError as e:  # e.g. "Vocabulary size is smaller than required_chars"
        raise ValueError(f"train_sentencepiece(vocab_size={vocab_size}, model_type={model_type!r}) failed on "
                         f"{len(texts)} texts: {e}") from e
    return model.getvalue()


class SentencePieceText:
    """Encode / decode target text with a trained sentencepiece model.

    The serialized proto (``self.proto``) is the whole state; ``to_tensor`` /
    ``from_tensor`` carry it through checkpoints read with ``weights_only=True``.
    """

    def __init__(self, proto: bytes) -> None:
        self.proto = proto
        self.sp = spm.SentencePieceProcessor(model_proto=proto)

    def to_tensor(self) -> torch.Tensor:
        """The proto as a uint8 tensor (``torch.load(weights_only=True)``-safe)."""
        return torch.frombuffer(bytearray(self.proto), dtype=torch.uint8).clone()

    @classmethod
    def from_tensor(cls, t: torch.Tensor) -> "SentencePieceText":
        """Inverse of ``to_tensor``: a 1-D uint8 tensor holding the proto."""
        if t.dtype != torch.uint8 or t.dim() != 1:
            raise ValueError(f"expected a 1-D uint8 tensor, got {t.dtype} of shape {tuple(t.shape)}")
        return cls(t.detach().cpu().contiguous().numpy().tobytes())

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    @property
    def pad_id(self) -> int:
        return self.sp.pad_id()

    @property
    def bos_id(self) -> int:
        return self.sp.bos_id()

    @property
    def eos_id(self) -> int:
        return self.sp.eos_id()

    def encode(self, text: str) -> list[int]:
        """Piece ids of ``text`` (no bos / eos)."""
        return list(self.sp.encode(text))

    def decode(self, ids: Sequence[int]) -> str:
        """Detokenised text; pad / bos / eos ids are dropped."""
        special = {self.pad_id, self.bos_id, self.eos_id}
        return self.sp.decode([int(i) for i in ids if int(i) not in special])
