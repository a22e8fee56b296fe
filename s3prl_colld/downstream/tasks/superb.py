"""The SUPERB tasks (``downstream.task.DownstreamTask``): what each reads, its head, decoding and metric.

- ``pr``: phones from a lexicon, Linear-Linear CTC head, PER (lower is better);
- ``asr``: characters (``|`` after every word), BiLSTM CTC head, WER (lower is better);
- ``st``: character sentencepiece targets, transformer encoder-decoder, BLEU (higher is better);
  with ``config.head.ctc_weight > 0`` also a CTC loss of the source transcript's characters (s3prl's
  multitask ASR, ``taskrc.use_asr``; off by default).

Each task declares its config (``Config``: the shared sections plus its typed
``head``, and PR's / ST's own ``data`` and ST's ``runner`` keys), carries
s3prl's recipe for it (``s3prl_defaults``: runner, optimizer, SpecAugment; the
head's defaults are in its head dataclass), its s3prl training
batches (``train_batches``) and the order in which s3prl's evaluation lists
utterances (``eval_order``), which is the order of the prediction files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from s3prl_colld.config import ConfigError
from s3prl_colld.downstream import batching, corpus, metrics
from s3prl_colld.downstream.ctc_heads import ASRHeadConfig, BiLSTMCTCHead, ConvCTCHead, LinearCTCHead, PRHeadConfig
from s3prl_colld.downstream.schema import DownstreamConfig, DownstreamDataConfig, DownstreamRunnerConfig
from s3prl_colld.downstream.st_model import STHeadConfig
from s3prl_colld.downstream.task import DownstreamTask, register, write_ark

log = logging.getLogger("s3prl_colld.downstream")

# ---------------------------------------------------------------- each task's config
@dataclass
class PRDataConfig(DownstreamDataConfig):
    lexicon: Optional[str] = None  # WORD PH1 PH2 ... (default ROOT/lexicon.txt)


@dataclass
class PRConfig(DownstreamConfig):
    data: PRDataConfig = field(default_factory=PRDataConfig)
    head: PRHeadConfig = field(default_factory=PRHeadConfig)


@dataclass
class ASRConfig(DownstreamConfig):
    head: ASRHeadConfig = field(default_factory=ASRHeadConfig)


@dataclass
class STDataConfig(DownstreamDataConfig):
    tsv_dir: str = "covost"  # ROOT/TSV_DIR/SPLIT.tsv
    audio_dir: Optional[str] = None  # tsv audio paths are relative to this (default ROOT)


@dataclass
class STRunnerConfig(DownstreamRunnerConfig):
    max_tokens: Optional[int] = None  # a batch holds at most this many padded feature frames (fairseq)

    def validate(self) -> None:
        super().validate()
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ConfigError(f"config.runner.max_tokens must be >= 1 or null, got {self.max_tokens}")


@dataclass
class STConfig(DownstreamConfig):
    runner: STRunnerConfig = field(default_factory=STRunnerConfig)
    data: STDataConfig = field(default_factory=STDataConfig)
    head: STHeadConfig = field(default_factory=STHeadConfig)


# ---------------------------------------------------------------- the tasks


class CTCTask(DownstreamTask):
    """Shared CTC side of PR and ASR: label 0 is the blank, labels 1.. the sorted training tokens.

    A subclass names its head (``head_class`` built from ``config.head``, typed by its ``Config``) and
    its metric function (``scorer(hyps, refs)``).
    """

    head_class: type[nn.Module]
    scorer: Callable[[Sequence[str], Sequence[str]], float]

    def __init__(self, cfg: DownstreamConfig) -> None:
        super().__init__(cfg)
        self.tokens: list[str] = []
        self.head_cfg = cfg.head

    def build_head(self, dim: int) -> nn.Module:
        return self.head_class(dim, self.vocab_size, self.head_cfg)

    def score(self, hyps: Sequence[str], refs: Sequence[str]) -> float:
        return self.scorer(hyps, refs)

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
        log_probs = head(x, lengths).float().transpose(0, 1)  # [T', B, V]
        return F.ctc_loss(log_probs, torch.cat(ys).to(x.device), _output_lengths(head, lengths).to(x.device),
                          torch.tensor([len(y) for y in ys], device=x.device), blank=0, zero_infinity=True)

    def decode(self, head: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        return [self.detokenize([self.tokens[i - 1] for i in ids])
                for ids in metrics.ctc_greedy(head(x, lengths), _output_lengths(head, lengths))]


def _output_lengths(head: nn.Module, lengths: torch.Tensor) -> torch.Tensor:
    """The frames per utterance of a CTC head's output (a head that subsamples says so; a DDP wrapper is looked
    through)."""
    inner = getattr(head, "module", head)
    return inner.output_lengths(lengths) if hasattr(inner, "output_lengths") else lengths


@register("pr")
class PRTask(CTCTask):
    """Phoneme recognition: lexicon phones of the transcript; PER%."""

    metric, higher_better = "per", False
    Config = PRConfig
    head_class, scorer = LinearCTCHead, staticmethod(metrics.per)
    s3prl_defaults = {  # s3prl downstream/ctc/libriphone.yaml
        "runner": {"total_steps": 100000, "gradient_clipping": 1.0, "gradient_accumulate_steps": 2,
                   "log_step": 100, "eval_step": 1000, "save_step": 100, "max_keep": 1,
                   "batch_size": 16},  # downstream_expert.corpus.batch_size (bucketing: True)
        "optimizer": {"name": "Adam", "lr": 1.0e-2},  # TorchOptim Adam: torch's betas and eps; no scheduler
    }

    def __init__(self, cfg: DownstreamConfig) -> None:
        super().__init__(cfg)
        self._lexicon: dict[str, list[str]] | None = None

    def s3prl_batches(self, utts: Sequence[corpus.Utterance], samples: Sequence[int], rc: DownstreamRunnerConfig,
                      epoch: int, downsample_rate: int) -> list[list[int]]:
        return batching.libriphone_batches([len(u.text.split()) for u in utts], samples, rc.batch_size, rc.seed,
                                           epoch)

    def eval_order(self, utts: Sequence[corpus.Utterance], samples: Sequence[int]) -> list[int]:
        """Longest phone sequence first (s3prl's ``LibriPhoneDataset``; ties: by utterance id)."""
        return batching.longest_first([len(u.text.split()) for u in utts])

    def utterances(self, role: str) -> list[corpus.Utterance]:
        if self._lexicon is None:
            self._lexicon = corpus.read_lexicon(self.cfg.data.lexicon or self.root() / "lexicon.txt")
        return corpus.phone_utterances(self.root(), self.split_name(role), self._lexicon)

    def tokenize(self, text: str) -> list[str]:
        return text.split()

    def detokenize(self, tokens: Sequence[str]) -> str:
        return " ".join(tokens)



@register("asr")
class ASRTask(CTCTask):
    """Speech recognition: characters of the transcript (``|`` = word boundary); WER% without an LM."""

    metric, higher_better = "wer", False
    Config = ASRConfig
    head_class, scorer = BiLSTMCTCHead, staticmethod(metrics.wer)

    def build_head(self, dim: int) -> nn.Module:
        """s3prl's BiLSTM head, or with ``config.head.kind: conv`` the mini preset's :class:`ConvCTCHead`."""
        cls = ConvCTCHead if self.head_cfg.kind == "conv" else BiLSTMCTCHead
        return cls(dim, self.vocab_size, self.head_cfg)
    s3prl_defaults = {  # s3prl downstream/asr/config.yaml
        "runner": {"total_steps": 200000, "gradient_clipping": 1.0, "gradient_accumulate_steps": 1,
                   "log_step": 100, "eval_step": 2000, "save_step": 500, "max_keep": 1,
                   "batch_size": 32},  # datarc.train_batch_size / batch_size: buckets of 32, halved (16 per batch)
        "optimizer": {"name": "Adam", "lr": 1.0e-4},  # TorchOptim Adam: torch's betas and eps; no scheduler
        "specaug": {"enabled": True},  # the specaug block: SpecAugConfig's defaults are its values
    }

    def utterances(self, role: str) -> list[corpus.Utterance]:
        return corpus.transcript_utterances(self.root(), self.split_name(role))

    def s3prl_batches(self, utts: Sequence[corpus.Utterance], samples: Sequence[int], rc: DownstreamRunnerConfig,
                      epoch: int, downsample_rate: int) -> list[list[int]]:
        return batching.bucket_batches(samples, rc.batch_size, rc.seed, epoch)

    def eval_order(self, utts: Sequence[corpus.Utterance], samples: Sequence[int]) -> list[int]:
        """Longest audio first (s3prl's ``SequenceDataset`` sorts the length table; ties: by utterance id)."""
        return batching.longest_first(samples)

    def tokenize(self, text: str) -> list[str]:
        """s3prl's targets: upper-case characters, ``|`` for every space and one ``|`` at the end."""
        return list("|".join(text.upper().split()) + "|")

    def reference(self, text: str) -> str:
        return " ".join(text.upper().split())

    def write_predictions(self, expdir: Path, role: str | None, split: str, ids: Sequence[str],
                          hyps: Sequence[str], refs: Sequence[str]) -> list[Path]:
        """s3prl's ``{split}-noLM-hyp.ark`` / ``-ref.ark`` (``split``: the corpus split, e.g. ``test-clean``)."""
        return [write_ark(expdir / f"{split}-noLM-{kind}.ark", ids, texts)
                for kind, texts in (("hyp", hyps), ("ref", refs))]

    def detokenize(self, tokens: Sequence[str]) -> str:
        return " ".join("".join(tokens).replace("|", " ").split())



@register("st")
class STTask(DownstreamTask):
    """Speech translation: CoVoST 2 tsv, sentencepiece targets, encoder-decoder head; sacreBLEU."""

    metric, higher_better = "bleu", True
    Config = STConfig
    empty_hypotheses = ("", "<unk>")  # _decode writes an empty translation as <unk>
    s3prl_defaults = {  # s3prl downstream/speech_translation/config.yaml
        "runner": {"total_steps": 32000, "gradient_clipping": 10.0, "gradient_accumulate_steps": 8,
                   "log_step": 100, "eval_step": 2000, "save_step": 250, "max_keep": 1,
                   "max_tokens": 10000},  # datarc.max_tokens (fairseq batches of padded feature frames)
        "optimizer": {"name": "Adam", "lr": 1.0e-3,  # s3prl optimizers.get_Adam: betas (0.9, 0.999)
                      "warmup_steps": 10000, "decay": "sqrt"},  # scheduler: sqrt_decay_schedule_with_warmup
    }

    def __init__(self, cfg: STConfig) -> None:
        super().__init__(cfg)
        self.head_cfg = cfg.head
        self.spm: Any = None
        self.source_tokens: list[str] = []  # the CTC labels 1.. (config.head.ctc_weight > 0 only)
        self._ctc_checked = False  # the first training batch's CTC lengths were checked

    def utterances(self, role: str) -> list[corpus.Utterance]:
        data = self.cfg.data
        tsv = self.root() / data.tsv_dir / f"{self.split_name(role)}.tsv"
        return corpus.covost_utterances(tsv, data.audio_dir or self.root())

    def fit_vocab(self, train: Sequence[corpus.Utterance]) -> None:
        from s3prl_colld.downstream.spm import SentencePieceText, train_sentencepiece

        proto = train_sentencepiece([u.text for u in train], self.head_cfg.vocab_size, self.head_cfg.spm_model_type)
        self.spm = SentencePieceText(proto)
        if self.head_cfg.ctc_weight > 0:
            missing = sum(not source_characters(u.source) for u in train)
            if missing:
                raise corpus.DataError(
                    f"config.head.ctc_weight={self.head_cfg.ctc_weight} trains a CTC of the source transcript, but "
                    f"{missing} of {len(train)} training utterances have an empty src_text (is the tsv's src_text "
                    "column there?): fill it, or set config.head.ctc_weight=0")
            self.source_tokens = sorted({c for u in train for c in source_characters(u.source)})

    def vocab_state(self) -> dict[str, Any]:
        """The target sentencepiece model; with ``ctc_weight > 0`` also the source characters (CTC labels)."""
        state: dict[str, Any] = {"spm": self.spm.to_tensor()}
        if self.head_cfg.ctc_weight > 0:
            state["source_tokens"] = list(self.source_tokens)
        return state

    def load_vocab_state(self, state: dict[str, Any]) -> None:
        from s3prl_colld.downstream.spm import SentencePieceText

        self.spm = SentencePieceText.from_tensor(state["spm"])
        self.source_tokens = list(state.get("source_tokens", []))
        if self.head_cfg.ctc_weight > 0 and not self.source_tokens:
            raise ConfigError(f"config.head.ctc_weight={self.head_cfg.ctc_weight}, but the checkpoint has no source "
                              "vocabulary (it was trained with ctc_weight 0): keep config.head.ctc_weight=0 for it")

    def build_head(self, dim: int) -> nn.Module:
        from s3prl_colld.downstream.st_model import STHead

        s = self.spm
        return STHead(dim, s.vocab_size, self.head_cfg, pad_id=s.pad_id, bos_id=s.bos_id, eos_id=s.eos_id,
                      ctc_vocab_size=len(self.source_tokens) + 1 if self.head_cfg.ctc_weight > 0 else 0)

    def source_labels(self, text: str) -> list[int]:
        """The CTC labels of a source transcript: ``source_characters`` as indices ``1..`` (0 is the blank);
        characters outside the training vocabulary are dropped."""
        index = {c: i + 1 for i, c in enumerate(self.source_tokens)}
        return [index[c] for c in source_characters(text) if c in index]

    def loss(self, head: nn.Module, x: torch.Tensor, lengths: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """The label-smoothed CE of the targets ``texts``; with ``ctc_weight > 0`` use :meth:`loss_terms`, which
        has the source transcripts."""
        if self.head_cfg.ctc_weight > 0:
            raise ValueError("config.head.ctc_weight > 0: the ST loss needs the source transcripts; "
                             "call loss_terms with the utterances")
        return head.loss(x, lengths, [self.spm.encode(t) for t in texts])

    def loss_terms(self, head: nn.Module, x: torch.Tensor, lengths: torch.Tensor,
                   utts: Sequence[corpus.Utterance]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(1 - w) * CE + w * source CTC`` and its terms ``{"ce", "ctc", "ctc_infeasible"}`` (``w``:
        ``config.head.ctc_weight``; 0: the CE alone and no terms, s3prl's loss)."""
        targets = [self.spm.encode(u.text) for u in utts]
        if self.head_cfg.ctc_weight == 0:
            return head.loss_terms(x, lengths, targets)
        loss, terms = head.loss_terms(x, lengths, targets, [self.source_labels(u.source) for u in utts])
        if not self._ctc_checked:  # one host sync, on the first batch
            self._ctc_checked = True
            infeasible = float(terms["ctc_infeasible"])
            if infeasible > 0.1:
                log.warning("%.0f%% of the first batch's source transcripts need more CTC frames than the encoder "
                            "gives (they add 0 to the CTC loss): raise config.head.ctc_upsample (now %d)",
                            100 * infeasible, self.head_cfg.ctc_upsample)
        return loss, terms

    def s3prl_batches(self, utts: Sequence[corpus.Utterance], samples: Sequence[int], rc: DownstreamRunnerConfig,
                      epoch: int, downsample_rate: int) -> list[list[int]]:
        if rc.max_tokens is None:
            raise ConfigError("ST's s3prl batches need config.runner.max_tokens (s3prl: 10000), "
                              "or set config.runner.batching=shuffle to use config.runner.batch_size")
        limit = self.head_cfg.max_source_positions
        frames = [min(limit, n // downsample_rate) for n in samples]
        return batching.max_tokens_batches(frames, rc.max_tokens, rc.seed, epoch)

    def decode(self, head: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """Beam search; an empty hypothesis is written ``<unk>`` (s3prl's ``_decode``)."""
        return [self.spm.decode(ids) or "<unk>" for ids in head.beam_search(x, lengths)]

    def reference(self, text: str) -> str:
        """The target as s3prl scores it: encoded and decoded by the vocabulary (``<unk>`` if empty)."""
        return self.spm.decode(self.spm.encode(text)) or "<unk>"

    def score(self, hyps: Sequence[str], refs: Sequence[str]) -> float:
        return metrics.bleu(hyps, refs)

    def write_predictions(self, expdir: Path, role: str | None, split: str, ids: Sequence[str],
                          hyps: Sequence[str], refs: Sequence[str]) -> list[Path]:
        """s3prl's ``output-st-{role}.tsv`` (``utt_id, hyp, ref``, in tsv order), which SUPERB's submission reads
        (another split than the run's own: ``output-st-{split}.tsv``)."""
        path = expdir / f"output-st-{role or split}.tsv"
        rows = "".join(f"{u}\t{h}\t{r}\n" for u, h, r in zip(ids, hyps, refs))
        path.write_text("utt_id\thyp\tref\n" + rows, encoding="utf-8")
        return [path]


def source_characters(text: str) -> list[str]:
    """The CTC labels of a source transcript (the ASR task's characters): upper case, ``|`` after every word;
    letters, digits and apostrophes are kept, any other character (punctuation) separates words.

    ``"Do five fathers bring cakes?"`` -> ``D O | F I V E | ... | C A K E S |``; ``""`` -> ``[]``.
    """
    words = "".join(c if c.isalnum() or c == "'" else " " for c in text.upper()).split()
    return list("|".join(words) + "|") if words else []
