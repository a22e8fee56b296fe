"""The SUPERB tasks (``downstream.task.DownstreamTask``): what each reads, its head, decoding and metric.

- ``pr``: phones from a lexicon, Linear-Linear CTC head, PER (lower is better);
- ``asr``: characters (``|`` between words), BiLSTM CTC head, WER (lower is better);
- ``st``: sentencepiece target pieces, transformer encoder-decoder, BLEU (higher is better).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from s3prl_colld.config import from_dict
from s3prl_colld.downstream import corpus, metrics
from s3prl_colld.downstream.ctc_heads import ASRHeadConfig, BiLSTMCTCHead, LinearCTCHead, PRHeadConfig
from s3prl_colld.downstream.schema import DownstreamConfig
from s3prl_colld.downstream.task import DownstreamTask, register

class CTCTask(DownstreamTask):
    """Shared CTC side of PR and ASR: label 0 is the blank, labels 1.. the sorted training tokens."""

    def __init__(self, cfg: DownstreamConfig) -> None:
        super().__init__(cfg)
        self.tokens: list[str] = []

    def tokenize(self, text: str) -> list[str]:
        raise NotImplementedError

    def detokenize(self, tokens: Sequence[str]) -> str:
        raise NotImplementedError

    def fit_vocab(self, train: Sequence[corpus.Utterance]) -> None:
        self.tokens = sorted({t for u in train for t in self.tokenize(u.text)})
        if not self.tokens:
            raise corpus.DataError("the training targets are empty: no vocabulary to learn")

    def vocab_state(self) -> dict[str, Any]:
        return {"tokens": list(self.tokens)}

    def load_vocab_state(self, state: dict[str, Any]) -> None:
        self.tokens = list(state["tokens"])

    @property
    def vocab_size(self) -> int:
        return len(self.tokens) + 1

    def targets(self, texts: Sequence[str]) -> list[torch.Tensor]:
        index = {t: i + 1 for i, t in enumerate(self.tokens)}
        return [torch.tensor([index[t] for t in self.tokenize(s) if t in index], dtype=torch.long) for s in texts]

    def loss(self, head: nn.Module, x: torch.Tensor, lengths: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """Mean CTC loss per utterance (s3prl: ``zero_infinity=True``)."""
        ys = self.targets(texts)
        log_probs = head(x, lengths).float().transpose(0, 1)  # [T, B, V]
        return F.ctc_loss(log_probs, torch.cat(ys).to(x.device), lengths.to(x.device),
                          torch.tensor([len(y) for y in ys], device=x.device), blank=0, zero_infinity=True)

    def decode(self, head: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        return [self.detokenize([self.tokens[i - 1] for i in ids])
                for ids in metrics.ctc_greedy(head(x, lengths), lengths)]


@register("pr")
class PRTask(CTCTask):
    """Phoneme recognition: lexicon phones of the transcript; PER%."""

    metric, higher_better = "per", False

    def __init__(self, cfg: DownstreamConfig) -> None:
        super().__init__(cfg)
        self.head_cfg = from_dict(PRHeadConfig, cfg.head, "config.head")
        self._lexicon: dict[str, list[str]] | None = None

    def utterances(self, role: str) -> list[corpus.Utterance]:
        if self._lexicon is None:
            self._lexicon = corpus.read_lexicon(self.cfg.data.lexicon or self.root() / "lexicon.txt")
        return corpus.phone_utterances(self.root(), self.split_name(role), self._lexicon)

    def tokenize(self, text: str) -> list[str]:
        return text.split()

    def detokenize(self, tokens: Sequence[str]) -> str:
        return " ".join(tokens)

    def build_head(self, dim: int) -> nn.Module:
        return LinearCTCHead(dim, self.vocab_size, self.head_cfg)

    def score(self, hyps: Sequence[str], refs: Sequence[str]) -> float:
        return metrics.per(hyps, refs)


@register("asr")
class ASRTask(CTCTask):
    """Speech recognition: characters of the transcript (``|`` = word boundary); WER% without an LM."""

    metric, higher_better = "wer", False

    def __init__(self, cfg: DownstreamConfig) -> None:
        super().__init__(cfg)
        self.head_cfg = from_dict(ASRHeadConfig, cfg.head, "config.head")

    def utterances(self, role: str) -> list[corpus.Utterance]:
        return corpus.transcript_utterances(self.root(), self.split_name(role))

    def tokenize(self, text: str) -> list[str]:
        return list("|".join(text.split()))

    def detokenize(self, tokens: Sequence[str]) -> str:
        return " ".join("".join(tokens).replace("|", " ").split())

    def build_head(self, dim: int) -> nn.Module:
        return BiLSTMCTCHead(dim, self.vocab_size, self.head_cfg)

    def score(self, hyps: Sequence[str], refs: Sequence[str]) -> float:
        return metrics.wer(hyps, refs)


@register("st")
class STTask(DownstreamTask):
    """Speech translation: CoVoST 2 tsv, sentencepiece targets, encoder-decoder head; sacreBLEU."""

    metric, higher_better = "bleu", True

    def __init__(self, cfg: DownstreamConfig) -> None:
        from s3prl_colld.downstream.st_model import STHeadConfig

        super().__init__(cfg)
        self.head_cfg = from_dict(STHeadConfig, cfg.head, "config.head")
        self.spm: Any = None

    def utterances(self, role: str) -> list[corpus.Utterance]:
        data = self.cfg.data
        tsv = self.root() / data.tsv_dir / f"{self.split_name(role)}.tsv"
        return corpus.covost_utterances(tsv, data.audio_dir or self.root())

    def fit_vocab(self, train: Sequence[corpus.Utterance]) -> None:
        from s3prl_colld.downstream.spm import SentencePieceText, train_sentencepiece

        proto = train_sentencepiece([u.text for u in train], self.head_cfg.vocab_size)
        self.spm = SentencePieceText.from_bytes(proto)

    def vocab_state(self) -> dict[str, Any]:
        return {"spm": self.spm.to_tensor()}

    def load_vocab_state(self, state: dict[str, Any]) -> None:
        from s3prl_colld.downstream.spm import SentencePieceText

        self.spm = SentencePieceText.from_tensor(state["spm"])

    def build_head(self, dim: int) -> nn.Module:
        from s3prl_colld.downstream.st_model import STHead

        s = self.spm
        return STHead(dim, s.vocab_size, self.head_cfg, pad_id=s.pad_id, bos_id=s.bos_id, eos_id=s.eos_id)

    def loss(self, head: nn.Module, x: torch.Tensor, lengths: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        return head.loss(x, lengths, [self.spm.encode(t) for t in texts])

    def decode(self, head: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        return [self.spm.decode(ids) for ids in head.beam_search(x, lengths)]

    def score(self, hyps: Sequence[str], refs: Sequence[str]) -> float:
        return metrics.bleu(hyps, refs)

    def write_predictions(self, expdir: Path, split: str, ids: Sequence[str], hyps: Sequence[str],
                          refs: Sequence[str]) -> list[Path]:
        """s3prl's ``output-st-{split}.tsv`` (``utt_id, hyp, ref``), which SUPERB's submission reads."""
        path = expdir / f"output-st-{split}.tsv"
        rows = "".join(f"{u}\t{h}\t{r}\n" for u, h, r in sorted(zip(ids, hyps, refs)))
        path.write_text("utt_id\thyp\tref\n" + rows, encoding="utf-8")
        return [path]
