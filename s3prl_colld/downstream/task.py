"""The contract between the downstream runner and a task, and the task registry (``run_downstream.py -d NAME``).

A task turns a split into :class:`~s3prl_colld.downstream.corpus.Utterance` s
(audio + target text), fits its vocabulary on the training targets, builds a
head over featurized hidden states ``[B, T, D]``, and maps the head's output
back to text; it declares its metric (``metric``, ``higher_better``) and its
config (``Config``: a ``DownstreamConfig`` subclass with its typed ``head`` and
any keys of its own). Tasks register with ``@register("name")`` in a module of
``downstream/tasks/`` and read ``configs/downstream/NAME.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import torch
from torch import nn

from s3prl_colld.config import ConfigError
from s3prl_colld.downstream import batching, corpus
from s3prl_colld.downstream.schema import DownstreamConfig, DownstreamRunnerConfig
from s3prl_colld.registry import Registry

TASKS: Registry[type["DownstreamTask"]] = Registry("downstream task", "s3prl_colld.downstream.tasks", ConfigError)


def register(name: str) -> Callable[[type["DownstreamTask"]], type["DownstreamTask"]]:
    """Class decorator: make a task available as ``run_downstream.py -d NAME``."""
    return TASKS.register(name)
get_task = TASKS.get  # the task class of -d NAME (a ConfigError with close matches for an unknown name)


class DownstreamTask:
    """Base class; subclasses set the class attributes and implement the hooks."""

    name: ClassVar[str]
    metric: ClassVar[str]
    higher_better: ClassVar[bool]
    Config: ClassVar[type[DownstreamConfig]] = DownstreamConfig  # the task's config: shared sections + its own
    # s3prl's settings of this task (config sections runner / optimizer / specaug), applied under the YAML
    s3prl_defaults: ClassVar[dict[str, Any]] = {}
    # hypotheses that count as empty for the collapse test (besides "", which always does)
    empty_hypotheses: ClassVar[tuple[str, ...]] = ("",)

    def __init__(self, cfg: DownstreamConfig) -> None:
        self.cfg = cfg

    # -- batches and order (s3prl's)
    def train_batches(self, utts: Sequence[corpus.Utterance], samples: Sequence[int], rc: DownstreamRunnerConfig,
                      epoch: int, downsample_rate: int) -> list[list[int]]:
        """One epoch of training batches (utterance indices): s3prl's sampler, or random with ``batching: shuffle``.

        ``samples``: audio length of each utterance (16 kHz samples);
        ``downsample_rate``: samples per feature frame of the upstream.
        """
        if rc.batching == "shuffle":
            return batching.shuffled_batches(len(utts), rc.batch_size, rc.seed, epoch)
        return self.s3prl_batches(utts, samples, rc, epoch, downsample_rate)

    def s3prl_batches(self, utts: Sequence[corpus.Utterance], samples: Sequence[int], rc: DownstreamRunnerConfig,
                      epoch: int, downsample_rate: int) -> list[list[int]]:
        """s3prl's training batches of this task; a task without an s3prl recipe gets random batches."""
        return batching.shuffled_batches(len(utts), rc.batch_size, rc.seed, epoch)

    def eval_order(self, utts: Sequence[corpus.Utterance], samples: Sequence[int]) -> list[int]:
        """The order in which s3prl's evaluation visits (and writes) the utterances of a split."""
        return list(range(len(utts)))

    # -- data
    def split_name(self, role: str) -> str:
        """The corpus split of ``role`` (train / dev / test)."""
        return {"train": self.cfg.data.train_split, "dev": self.cfg.data.dev_split,
                "test": self.cfg.data.test_split}[role]

    def utterances(self, role: str) -> list[corpus.Utterance]:
        raise NotImplementedError

    def root(self) -> Path:
        """``config.data.root``, checked to exist."""
        root = Path(self.cfg.data.root)
        if not root.is_dir():
            raise corpus.DataError(f"corpus folder {root} not found: set config.data.root (-o config.data.root=DIR) "
                                   "to a LibriSpeech-layout corpus or one made by python -m s3prl_colld.data.synth")
        return root

    # -- vocabulary (saved in checkpoints)
    def fit_vocab(self, train: Sequence[corpus.Utterance]) -> None:
        raise NotImplementedError

    def vocab_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_vocab_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    # -- model
    def build_head(self, dim: int) -> nn.Module:
        raise NotImplementedError

    def loss(self, head: nn.Module, x: torch.Tensor, lengths: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError

    def loss_terms(self, head: nn.Module, x: torch.Tensor, lengths: torch.Tensor,
                   utts: Sequence[corpus.Utterance]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training loss ``[]`` of a batch of ``utts`` (features ``x [B, T, D]``, ``lengths [B]``) and its
        named terms ``{name: []}`` (detached, logged beside the loss). Default: :meth:`loss` of the target texts,
        no terms; a task whose loss has several objectives (or needs more than the targets) overrides it."""
        return self.loss(head, x, lengths, [u.text for u in utts]), {}

    def decode(self, head: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        raise NotImplementedError

    def score(self, hyps: Sequence[str], refs: Sequence[str]) -> float:
        raise NotImplementedError

    def better(self, a: float, b: float) -> bool:
        """Is metric value ``a`` better than ``b``?"""
        return a > b if self.higher_better else a < b

    # -- outputs
    def write_predictions(self, expdir: Path, role: str | None, split: str, ids: Sequence[str],
                          hyps: Sequence[str], refs: Sequence[str]) -> list[Path]:
        """s3prl's ``{role}-hyp.ark`` / ``{role}-ref.ark`` (PR: s3prl names them after its ``dev`` / ``test``
        dataloaders), ``UTTID TEXT`` lines in the order given (s3prl's).

        ``role``: ``dev`` / ``test`` for the run's own splits, None for another split of
        the corpus, whose files are named after ``split`` (the corpus split) instead.
        """
        name = role or split
        return [write_ark(expdir / f"{name}-{kind}.ark", ids, texts) for kind, texts in (("hyp", hyps), ("ref", refs))]

    def reference(self, text: str) -> str:
        """The reference text scored against (and written) for target ``text``."""
        return text


def write_ark(path: Path, ids: Sequence[str], texts: Sequence[str]) -> Path:
    """``UTTID TEXT`` lines, in the order given."""
    path.write_text("".join(f"{u} {t}\n" for u, t in zip(ids, texts)), encoding="utf-8")
    return path


def read_ark(path: Path) -> dict[str, str]:
    """:func:`write_ark`'s ``UTTID TEXT`` lines as ``{uttid: text}`` in file order (a line without a space is an
    empty text; blank lines are skipped)."""
    pairs = (line.partition(" ") for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return {uttid: text for uttid, _, text in pairs}
