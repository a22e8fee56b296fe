"""ASR and ST heads learn: on a tiny fixed training set (4 utterances, fbank features), the training loss falls
clearly and greedy decoding of those utterances beats the same head untrained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from s3prl_colld.config import from_dict
from s3prl_colld.downstream import metrics
from s3prl_colld.downstream.runner import DownstreamRunner, RunSpec
from s3prl_colld.downstream.schema import DownstreamConfig

HEADS = {
    "asr": {"project_dim": 64, "hidden_dim": 64, "layers": 1, "dropout": 0.0},
    "st": {"d_model": 64, "nhead": 2, "ffn_dim": 128, "conv_channels": 64, "encoder_layers": 1, "decoder_layers": 1,
           "vocab_size": 60, "beam": 1, "max_len_b": 30, "dropout": 0.0},  # beam 1: greedy decoding
}
STEPS = {"asr": 100, "st": 100}
OPTIM = {"asr": {"lr": 1.0e-2, "warmup_steps": 0}, "st": {"lr": 3.0e-3, "warmup_steps": 10}}


def _learn(task: str, root: Path, out: Path) -> tuple[list[float], dict[str, Any], dict[str, Any]]:
    """(training losses, decoding of the training set before training, after training)."""
    cfg = from_dict(DownstreamConfig, {
        "data": {"root": str(root), "max_train_utts": 4},
        "runner": {"batch_size": 4, "eval_batch_size": 4, "total_steps": STEPS[task], "progress_bar": False,
                   "batching": "shuffle"},  # every step sees the 4 utterances
        "optimizer": OPTIM[task], "cache": {"dir": str(out / "cache")}, "head": HEADS[task]})
    runner = DownstreamRunner(RunSpec(task, "fbank"), cfg, out / "run")
    before = runner.evaluate("train")
    batches = runner.train_batches()
    losses = [runner.train_step([next(batches)]).item() for _ in range(STEPS[task])]
    return losses, before, runner.evaluate("train")


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def test_asr_head_learns_its_training_utterances(synth_corpus_en: Path, tmp_path: Path) -> None:
    losses, before, after = _learn("asr", synth_corpus_en, tmp_path)
    assert len(after["refs"]) == 4
    assert _mean(losses[-5:]) < 0.2 * _mean(losses[:5]), losses
    # measured: WER 100 -> 46, CER 92 -> 20 after 100 steps
    assert after["wer"] < before["wer"] - 25 and after["wer"] < 75, (before["wer"], after["wer"])
    cer = [metrics.per([" ".join(h.replace(" ", "|")) for h in r["hyps"]],
                       [" ".join(t.replace(" ", "|")) for t in r["refs"]]) for r in (before, after)]
    assert cer[1] < 0.5 * cer[0], cer


def test_st_head_learns_its_training_utterances(synth_corpus_en: Path, tmp_path: Path) -> None:
    losses, before, after = _learn("st", synth_corpus_en, tmp_path)
    assert len(after["refs"]) == 4
    assert _mean(losses[-5:]) < 0.4 * _mean(losses[:5]), losses  # label-smoothed: it cannot reach 0
    # measured: BLEU 0 -> 36 after 100 steps
    assert after["bleu"] > before["bleu"] + 15, (before["bleu"], after["bleu"])
