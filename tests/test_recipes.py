"""The three recipes of docs/architecture.md, followed to the letter by a toy method, a toy downstream task and a
teacher that is not the tiny HuBERT; each runs through the real CLIs and s3prl's ``S3PRLUpstream``.

The toy classes are registered for the duration of their fixture only (the registries and the hub table are
restored afterwards), so the rest of the suite sees the shipped tasks alone. Between the ``# recipe`` markers
is exactly what a new method / task adds (docs/architecture.md quotes the line counts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from s3prl_colld.checkpoint import latest_checkpoint
from s3prl_colld.downstream import corpus
from s3prl_colld.downstream.schema import DownstreamConfig, DownstreamDataConfig
from s3prl_colld.downstream.task import TASKS as DOWNSTREAM_TASKS
from s3prl_colld.downstream.task import DownstreamTask
from s3prl_colld.downstream.task import register as register_downstream
from s3prl_colld.pretrain.task import TASKS as PRETRAIN_TASKS
from s3prl_colld.pretrain.task import register
from s3prl_colld.pretrain.tasks.distill import DistillConfig, DistillTask
from s3prl_colld.s3prl_bridge import hub as hub_table

QUIET = "config.runner.num_workers=0,,config.runner.progress_bar=false,,config.runner.log_step=1"


# recipe: a new distillation method (the module s3prl_colld/pretrain/tasks/toy_method.py) ------------------------
@dataclass
class ToyMethodConfig(DistillConfig):
    loss_scale: float = 1.0  # the method's own key: config.loss_scale


class ToyMethodTask(DistillTask):
    """DistillTask's objective, scaled (a stand-in for a new objective)."""

    Config = ToyMethodConfig

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, stats = super().forward(batch)
        return self.cfg.loss_scale * loss, stats
# end of recipe: plus configs/pretrain/toy_method/runner.yaml (TOY_RUNNER_YAML) and one line of the hub table


TOY_RUNNER_YAML = """\
runner: {total_steps: 3, save_step: 3}
data: {batch_size: 2, crop_min_sec: 1.0, crop_max_sec: 1.5}
teacher: {name: hubert_local}
heads: {map: uniform}
loss_scale: 0.5
"""


@pytest.fixture(scope="module")
def toy_method(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Registers ``toy_method`` (hub name ``toy_method_local``) as the recipe says; yields its runner.yaml."""
    import s3prl.hub

    folder = tmp_path_factory.mktemp("configs") / "toy_method"
    folder.mkdir()
    (folder / "runner.yaml").write_text(TOY_RUNNER_YAML)
    register("toy_method", upstreams=("toy_method_local",))(ToyMethodTask)
    hub_table.STUDENT_NAMES["toy_method"] = ("toy_method_local",)  # the recipe's line in s3prl_bridge/hub.py
    try:
        yield folder / "runner.yaml"
    finally:
        PRETRAIN_TASKS.classes.pop("toy_method", None)
        hub_table.STUDENT_NAMES.pop("toy_method", None)
        if hasattr(s3prl.hub, "toy_method_local"):
            delattr(s3prl.hub, "toy_method_local")


@pytest.fixture(scope="module")
def toy_method_run(toy_method: Path, synth_corpus_en: Path, teacher_run: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> Path:
    from s3prl_colld.pretrain.cli import main

    run = tmp_path_factory.mktemp("toy_method") / "run"
    overrides = f"config.data.root={synth_corpus_en},,config.teacher.ckpt={latest_checkpoint(teacher_run)},,{QUIET}"
    assert main(["-u", "toy_method", "-p", str(run), "-c", str(toy_method), "-o", overrides]) == 0
    return run


def test_recipe_new_method_trains_and_its_student_loads_as_an_upstream(toy_method_run: Path) -> None:
    from s3prl.nn import S3PRLUpstream

    from s3prl_colld.checkpoint import load
    from s3prl_colld.s3prl_bridge.hub import register as register_hub

    state = load(latest_checkpoint(toy_method_run))
    assert state["task"] == "toy_method" and state["config"]["loss_scale"] == 0.5
    assert state["config"]["model"]["dim"] == 192  # the shared student, configs/students/tiny.yaml
    assert state["export"]["upstreams"] == ["toy_method_local"]
    assert "toy_method_local" in register_hub()
    upstream = S3PRLUpstream("toy_method_local", path_or_url=str(latest_checkpoint(toy_method_run))).eval()
    with torch.no_grad():
        hidden, _ = upstream(torch.randn(1, 16_000) * 0.1, torch.tensor([16_000]))
    assert len(hidden) == 3 and hidden[-1].shape == (1, 50, 192)


# recipe: a new teacher is configuration only --------------------------------------------------------------------
def test_recipe_new_teacher_is_config_only(toy_method_run: Path, synth_corpus_en: Path, tmp_path: Path) -> None:
    """Any ``s3prl.hub`` name teaches: here the toy method's student (``toy_method_local``, our own 2-layer
    encoder, not a fairseq HuBERT); its layer count and sizes are read from the upstream."""
    from s3prl_colld.checkpoint import load
    from s3prl_colld.pretrain.cli import main

    teacher = latest_checkpoint(toy_method_run)
    run = tmp_path / "run"
    overrides = (f"config.teacher.name=toy_method_local,,config.teacher.ckpt={teacher},,"  # the recipe: two keys
                 f"config.data.root={synth_corpus_en},,config.runner.total_steps=2,,config.runner.save_step=2,,"
                 f"config.data.batch_size=2,,config.model.layers=1,,config.heads.map=uniform,,{QUIET}")
    assert main(["-u", "distilhubert", "-p", str(run), "-o", overrides]) == 0
    state = load(latest_checkpoint(run))
    assert state["config"]["teacher"]["name"] == "toy_method_local" and state["step"] == 2
    assert any(k.startswith("heads.") for k in state["model"])  # a head per (student, teacher) layer pair


# recipe: a new downstream task (the module s3prl_colld/downstream/tasks/first_letter.py) -------------------------
@dataclass
class FirstLetterData(DownstreamDataConfig):
    word: int = 0  # the task's own data key: whose first letter (0: the first word's)


@dataclass
class FirstLetterHead:
    hidden: int = 32


@dataclass
class FirstLetterConfig(DownstreamConfig):
    data: FirstLetterData = field(default_factory=FirstLetterData)
    head: FirstLetterHead = field(default_factory=FirstLetterHead)


class FirstLetterTask(DownstreamTask):
    """Classify the first letter of a word of the transcript from mean-pooled features; accuracy %."""

    metric, higher_better = "acc", True
    Config = FirstLetterConfig

    def utterances(self, role: str) -> list[corpus.Utterance]:
        utts = corpus.transcript_utterances(self.root(), self.split_name(role))
        return [corpus.Utterance(u.uttid, u.path, u.text.split()[self.cfg.data.word][0].upper()) for u in utts]

    def fit_vocab(self, train: Sequence[corpus.Utterance]) -> None:
        self.labels = sorted({u.text for u in train})

    def vocab_state(self) -> dict[str, Any]:
        return {"labels": list(self.labels)}

    def load_vocab_state(self, state: dict[str, Any]) -> None:
        self.labels = list(state["labels"])

    def build_head(self, dim: int) -> nn.Module:
        hidden = self.cfg.head.hidden
        return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, len(self.labels)))

    def logits(self, head: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``x`` [B, T, D] -> ``[B, labels]`` (mean over the valid frames)."""
        valid = (torch.arange(x.size(1), device=x.device)[None] < lengths.to(x.device)[:, None]).to(x.dtype)
        return head((x * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).clamp_min(1))

    def loss(self, head: nn.Module, x: torch.Tensor, lengths: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        target = torch.tensor([self.labels.index(t) if t in self.labels else -100 for t in texts], device=x.device)
        return F.cross_entropy(self.logits(head, x, lengths).float(), target, ignore_index=-100)

    def decode(self, head: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        return [self.labels[i] for i in self.logits(head, x, lengths).argmax(-1).tolist()]

    def score(self, hyps: Sequence[str], refs: Sequence[str]) -> float:
        return 100.0 * sum(h == r for h, r in zip(hyps, refs)) / max(1, len(refs))
# end of recipe: plus configs/downstream/first_letter.yaml (FIRST_LETTER_YAML)


FIRST_LETTER_YAML = """\
runner: {total_steps: 4, eval_step: 2, save_step: 4, log_step: 1, batch_size: 8}
optimizer: {lr: 1.0e-3}
head: {hidden: 16}
"""


@pytest.fixture()
def first_letter(tmp_path: Path) -> Iterator[Path]:
    register_downstream("first_letter")(FirstLetterTask)
    (tmp_path / "first_letter.yaml").write_text(FIRST_LETTER_YAML)
    try:
        yield tmp_path / "first_letter.yaml"
    finally:
        DOWNSTREAM_TASKS.classes.pop("first_letter", None)


def test_recipe_new_downstream_task_trains_and_evaluates(first_letter: Path, synth_corpus_en: Path,
                                                         tmp_path: Path) -> None:
    import json

    from s3prl_colld.downstream.cli import main, resolve_config
    from s3prl_colld.downstream.runner import load_downstream_checkpoint

    cfg = resolve_config("first_letter", str(first_letter), "config.data.word=1")
    assert isinstance(cfg, FirstLetterConfig) and (cfg.head.hidden, cfg.data.word) == (16, 1)
    run = tmp_path / "run"
    overrides = (f"config.data.root={synth_corpus_en},,config.cache.dir={tmp_path / 'cache'},,"
                 "config.runner.progress_bar=false")
    assert main(["-m", "train", "-u", "fbank", "-d", "first_letter", "-c", str(first_letter), "-p", str(run),
                 "-o", overrides]) == 0
    state = load_downstream_checkpoint(run / "dev-best.ckpt")
    assert state["best"]["metric"] == "acc" and 0.0 <= state["best"]["value"] <= 100.0
    assert state["config"]["head"] == {"hidden": 16} and state["config"]["data"]["word"] == 0
    assert main(["-m", "evaluate", "-e", str(run / "dev-best.ckpt")]) == 0
    summary = json.loads((run / "test-results.json").read_text())
    assert 0.0 <= summary["acc"] <= 100.0
