"""ASR and ST heads learn: on a tiny fixed training set (4 utterances, fbank features), the training loss falls
clearly and greedy decoding of those utterances beats the same head untrained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from s3prl_colld.downstream import metrics
from s3prl_colld.downstream.cli import resolve_config
from s3prl_colld.downstream.runner import DownstreamRunner, RunSpec

HEADS = {
    "asr": {"project_dim": 64, "hidden_dim": 64, "layers": 1, "dropout": 0.0},
    "st": {"d_model": 64, "nhead": 2, "ffn_dim": 128, "conv_channels": 64, "encoder_layers": 1, "decoder_layers": 1,
           "vocab_size": 60, "beam": 1, "max_len_b": 30, "dropout": 0.0},  # beam 1: greedy decoding
}
STEPS = {"asr": 100, "st": 100}
OPTIM = {"asr": {"lr": 1.0e-2, "warmup_steps": 0}, "st": {"lr": 3.0e-3, "warmup_steps": 10}}


def _learn(task: str, root: Path, out: Path) -> tuple[list[float], dict[str, Any], dict[str, Any]]:
    """(training losses, decoding of the training set before training, after training).

    The task's own recipe (s3prl's settings and the shipped YAML) with a small head, a 4-utterance training set,
    a higher learning rate and no SpecAugment: its masks are there against over-fitting, which is what this check
    measures (with them, 100 steps of ASR bring the loss down to a quarter instead of under a tenth)."""
    settings = {"specaug.enabled": "false", "data.root": root, "data.max_train_utts": 4, "runner.batch_size": 4, "runner.eval_batch_size": 4,
                "runner.batching": "shuffle", "runner.total_steps": STEPS[task], "runner.progress_bar": "false", "cache.dir": out / "cache",
                **{f"optimizer.{k}": v for k, v in OPTIM[task].items()},
                **{f"head.{k}": v for k, v in HEADS[task].items()}}
    cfg = resolve_config(task, None, ",,".join(f"config.{k}={v}" for k, v in settings.items()))
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
    # measured: loss 6.8 -> 0.07, WER 100 -> 7.4, CER 157 -> 3.7 after 100 steps
    assert after["wer"] < before["wer"] - 40 and after["wer"] < 40, (before["wer"], after["wer"])
    cer = [metrics.per([" ".join(h.replace(" ", "|")) for h in r["hyps"]],
                       [" ".join(t.replace(" ", "|")) for t in r["refs"]]) for r in (before, after)]
    assert cer[1] < 0.25 * cer[0], cer


def test_st_head_learns_its_training_utterances(synth_corpus_en: Path, tmp_path: Path) -> None:
    losses, before, after = _learn("st", synth_corpus_en, tmp_path)
    assert len(after["refs"]) == 4
    assert _mean(losses[-5:]) < 0.4 * _mean(losses[:5]), losses  # label-smoothed: it cannot reach 0
    # measured: loss 130 -> 25, BLEU 2.3 -> 68 after 100 steps
    assert after["bleu"] > before["bleu"] + 30, (before["bleu"], after["bleu"])
