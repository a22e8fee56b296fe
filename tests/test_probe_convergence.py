"""Probes that converge and say so: the early-stopping rule, the collapse flag, the retry of a collapsed probe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from s3prl_colld.checkpoint import CheckpointError
from s3prl_colld.config import ConfigError
from s3prl_colld.downstream.cli import resolve_config
from s3prl_colld.downstream.convergence import STOP_CAP, STOP_PATIENCE, DevPoint, EarlyStopping, empty_rate, stop_step
from s3prl_colld.downstream.retry import Retry, probe_with_retry
from s3prl_colld.downstream.runner import (TRAINING_JSON, DownstreamRunner, RunSpec, evaluate_checkpoint,
                                           load_downstream_checkpoint)

QUIET = "config.runner.progress_bar=false,,config.runner.batch_size=8"


# ------------------------------------------------------------------ the rule, on synthetic dev curves
def test_stop_rule_plateau_within_min_delta_is_no_improvement() -> None:
    curve = [100.0, 90.0, 80.0, 79.8, 79.7, 79.9, 70.0]  # PER, lower is better; one value every 50 updates
    # 79.8 / 79.7 / 79.9 gain less than 0.5 over 80.0: three evaluations without improvement -> stop at update 300
    assert stop_step(curve, 50, patience=3, min_delta=0.5) == (300, STOP_PATIENCE)
    # without min_delta, 79.8 and 79.7 improve, 79.9 does not, 70 does: the curve runs to its end (the cap)
    assert stop_step(curve, 50, patience=3, min_delta=0.0) == (350, STOP_CAP)
    # patience 1: the first non-improving evaluation stops
    assert stop_step(curve, 50, patience=1, min_delta=0.5) == (200, STOP_PATIENCE)


def test_stop_rule_creeping_gains_add_up_and_equal_values_do_not_improve() -> None:
    rule = EarlyStopping(patience=2, min_delta=0.5)
    assert rule.update(DevPoint(1, 80.0, 0.0, False))
    assert not rule.update(DevPoint(2, 79.7, 0.0, False))  # 0.3 < 0.5
    assert rule.update(DevPoint(3, 79.4, 0.0, False))  # 0.6 below the last improvement (80.0): improves
    assert rule.reference == 79.4 and rule.bad_evals == 0
    flat = EarlyStopping(patience=2, min_delta=0.0)
    flat.update(DevPoint(1, 50.0, 0.0, False))
    assert not flat.update(DevPoint(2, 50.0, 0.0, False))  # no gain is no improvement, even with min_delta 0


def test_stop_rule_higher_better_and_collapsed_evaluations() -> None:
    bleu = [10.0, 12.0, 11.0, 11.5, 12.4]
    assert stop_step(bleu, 100, patience=3, min_delta=0.5, higher_better=True) == (500, STOP_PATIENCE)
    assert stop_step(bleu, 100, patience=3, min_delta=0.3, higher_better=True) == (500, STOP_CAP)
    # a CTC head on its blank plateau (collapsed, PER 100) is not counted against the patience
    per = [100.0, 100.0, 100.0, 95.0, 96.0, 97.0]
    collapsed = [True, True, True, False, False, False]
    assert stop_step(per, 10, patience=2, collapsed=collapsed) == (60, STOP_PATIENCE)
    assert stop_step(per, 10, patience=2) == (30, STOP_PATIENCE)  # counted, the plateau would end the probe


def test_bad_early_stopping_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="patience"):
        resolve_config("pr", None, "config.runner.patience=0")
    with pytest.raises(ConfigError, match="min_delta"):
        resolve_config("pr", None, "config.runner.min_delta=-1")
    with pytest.raises(ConfigError, match="collapse_empty_rate"):
        resolve_config("pr", None, "config.runner.collapse_empty_rate=0")
    assert resolve_config("pr", None, "config.runner.patience=null").runner.patience is None


# ------------------------------------------------------------------ the runner
class ScriptedDevRunner(DownstreamRunner):
    """The real runner (training, decoding, checkpoints) whose dev metric is replaced by a scripted curve."""

    def __init__(self, *args: Any, curve: list[float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.curve, self.evals = list(curve), 0

    def evaluate(self, role: str) -> dict[str, Any]:
        result = super().evaluate(role)
        if role == "dev":
            result[self.task.metric] = self.curve[self.evals]
            self.evals += 1
        return result


def _cfg(root: Path, out: Path, extra: str) -> Any:
    return resolve_config("pr", None, f"config.data.root={root},,config.cache.dir={out / 'cache'},,{QUIET},,{extra}")


def test_runner_stops_at_the_right_update_and_records_the_curve(synth_corpus_en: Path, tmp_path: Path) -> None:
    curve = [90.0, 70.0, 69.8, 69.9, 50.0, 40.0]  # would improve again at update 25, but patience 2 stops it at 20
    cfg = _cfg(synth_corpus_en, tmp_path, "config.runner.total_steps=30,,config.runner.eval_step=5,,"
                                          "config.runner.save_step=100,,config.runner.patience=2,,"
                                          "config.runner.min_delta=0.5")
    runner = ScriptedDevRunner(RunSpec("pr", "fbank"), cfg, tmp_path / "run", curve=curve)
    best = runner.train()
    # min_delta only decides when to stop: the best checkpoint is the best dev value (69.8 at update 15)
    assert (best["updates"], best["stop_reason"], best["step"], best["value"]) == (20, STOP_PATIENCE, 15, 69.8)
    saved = json.loads((tmp_path / "run" / TRAINING_JSON).read_text())
    assert saved["updates"] == 20 and saved["stop_reason"] == "patience" and saved["collapsed"] is False
    assert [p["step"] for p in saved["dev_curve"]] == [5, 10, 15, 20]
    assert [p["value"] for p in saved["dev_curve"]] == curve[:4]
    assert all(0.0 <= p["empty_rate"] <= 1.0 and p["train_loss"] > 0 for p in saved["dev_curve"])
    assert load_downstream_checkpoint(tmp_path / "run" / "dev-best.ckpt")["step"] == 15
    last = load_downstream_checkpoint(tmp_path / "run" / "states-20.ckpt")  # saved at the stop, for -e
    assert last["stop_reason"] == STOP_PATIENCE and last["early_stopping"]["bad_evals"] == 2

    # the same curve without patience runs to the cap, and the best is the last value
    cfg.runner.patience = None
    capped = ScriptedDevRunner(RunSpec("pr", "fbank"), cfg, tmp_path / "cap", curve=curve).train()
    assert (capped["updates"], capped["stop_reason"], capped["step"]) == (30, STOP_CAP, 30)


# ------------------------------------------------------------------ the collapse flag
def _set_head(runner: DownstreamRunner, favourite: int) -> None:
    """Make the PR head's output ``favourite`` on every frame (0: the CTC blank)."""
    last = runner.head.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-10.0)
        last.bias[favourite] = 10.0


def test_a_blank_only_head_is_collapsed_and_a_healthy_one_is_not(synth_corpus_en: Path, tmp_path: Path) -> None:
    cfg = _cfg(synth_corpus_en, tmp_path, "config.runner.collapse_empty_rate=0.5")
    runner = DownstreamRunner(RunSpec("pr", "fbank"), cfg, tmp_path / "run", train=False)
    _set_head(runner, 0)
    blank = runner.evaluate("dev")
    assert blank["empty_rate"] == 1.0 and blank["collapsed"] is True and blank["per"] == pytest.approx(100.0)
    _set_head(runner, 1)
    healthy = runner.evaluate("dev")
    assert healthy["empty_rate"] == 0.0 and healthy["collapsed"] is False

    # the test-set result of a blank-only checkpoint carries the flag, so a caller can refuse to report it
    _set_head(runner, 0)
    runner.expdir.mkdir(parents=True)
    ckpt = runner.save("dev-best.ckpt")
    summary = evaluate_checkpoint(ckpt, "test")
    assert summary["collapsed"] is True and summary["empty_rate"] == 1.0
    assert json.loads((tmp_path / "run" / "test-results.json").read_text())["collapsed"] is True
    assert empty_rate(["", "<unk>", "a"], ("<unk>",)) == pytest.approx(2 / 3)  # ST's empty translation


def test_a_collapsed_result_never_beats_a_healthy_one(synth_corpus_en: Path, tmp_path: Path) -> None:
    runner = DownstreamRunner(RunSpec("pr", "fbank"), _cfg(synth_corpus_en, tmp_path, ""), tmp_path / "r",
                              train=False)
    runner.best = {"metric": "per", "value": 99.0, "step": 5, "empty_rate": 0.1, "collapsed": False}
    assert not runner.better_than_best(90.0, collapsed=True)
    assert runner.better_than_best(98.0, collapsed=False)
    runner.best.update(collapsed=True, value=90.0)
    assert runner.better_than_best(99.5, collapsed=False)


# ------------------------------------------------------------------ retry
@pytest.fixture(scope="module")
def random_hubert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny HuBERT as a ``hubert_local`` checkpoint: a PR probe on it at lr 1e-3 sits on the blank
    plateau for its first 30 updates (measured: 75-92% empty dev hypotheses), at lr 1e-2 it does not."""
    from s3prl_colld.models.tiny_hubert import TinyHubertConfig, build_hubert, hubert_local_keys

    cfg = TinyHubertConfig()
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("random_hubert") / "random.ckpt"
    torch.save(hubert_local_keys(build_hubert(cfg, 20), cfg, 20), path)
    return path


def test_probe_with_retry_reruns_a_collapsed_probe(random_hubert: Path, synth_corpus_en: Path,
                                                   tmp_path: Path) -> None:
    ov = (f",,config.data.root={synth_corpus_en},,config.cache.dir={tmp_path / 'cache'},,{QUIET},,"
          "config.runner.total_steps=30,,config.runner.eval_step=10,,config.runner.save_step=30,,"
          "config.optimizer.lr=1.0e-3")
    run = tmp_path / "probe"
    out = probe_with_retry("pr", "hubert_local", run, ov, ckpt=random_hubert, retries=(Retry(lr_scale=10.0),))
    first, second = out["attempts"]
    assert first["collapsed"] is True and first["best"]["empty_rate"] >= 0.5
    assert second["collapsed"] is False and out["collapsed"] is False
    assert "config.optimizer.lr=0.01" in second["overrides"]
    aside = Path(first["folder"])
    assert aside == tmp_path / "probe.collapsed-1" and (aside / "dev-best.ckpt").is_file()
    state = load_downstream_checkpoint(run / "dev-best.ckpt")  # the reported attempt is where the caller reads it
    assert state["config"]["optimizer"]["lr"] == pytest.approx(1.0e-2) and state["best"]["collapsed"] is False
    assert json.loads((run / TRAINING_JSON).read_text())["attempts"] == out["attempts"]

    # out of tries: every attempt collapsed -> the result says so (the caller must not report it)
    run2 = tmp_path / "probe2"
    out2 = probe_with_retry("pr", "hubert_local", run2, ov, ckpt=random_hubert, retries=(Retry(seed_offset=0),))
    assert out2["collapsed"] is True and [a["collapsed"] for a in out2["attempts"]] == [True, True]


# ------------------------------------------------------------------ the fast path
def test_padded_batch_from_the_cache_equals_pad_features(synth_corpus_en: Path, tmp_path: Path) -> None:
    from s3prl_colld.downstream.featurizer import pad_features
    from s3prl_colld.downstream.features import CachedFeatures

    runner = DownstreamRunner(RunSpec("pr", "fbank"), _cfg(synth_corpus_en, tmp_path, ""), tmp_path / "r",
                              train=False)
    source = runner.source("train")
    assert isinstance(source, CachedFeatures)
    indices = [5, 0, 17, 3]
    hs, lengths = source.get_padded(indices)
    ref_hs, ref_lengths = pad_features(source.get(indices))
    assert hs.dtype == torch.float32 and hs.shape == ref_hs.shape and len(set(lengths.tolist())) > 1
    assert torch.equal(hs, ref_hs) and torch.equal(lengths, ref_lengths)


# ------------------------------------------------------------------ the moving average of the weights
def test_ema_is_the_moving_average_of_the_trained_weights_and_evaluations_use_it(synth_corpus_en: Path,
                                                                                 tmp_path: Path) -> None:
    decay = 0.8
    cfg = _cfg(synth_corpus_en, tmp_path, f"config.runner.ema_decay={decay},,config.optimizer.lr=1.0e-2")
    runner = DownstreamRunner(RunSpec("pr", "fbank"), cfg, tmp_path / "run")
    batches = runner.train_batches()
    expected: dict[str, torch.Tensor] = {}
    for _ in range(4):  # e_1 = w_1, e_k = decay * e_(k-1) + (1 - decay) * w_k
        runner.train_step([next(batches)])
        for name, w in runner.head.named_parameters():
            w = w.detach().clone()
            expected[name] = w if name not in expected else decay * expected[name] + (1 - decay) * w
    averaged = dict(runner.eval_head.named_parameters())
    assert runner.eval_head is not runner.head and averaged.keys() == expected.keys()
    for name, w in runner.head.named_parameters():
        torch.testing.assert_close(averaged[name], expected[name])
        assert not torch.equal(averaged[name], w)  # the average lags the trained weights

    # a checkpoint carries both; evaluating it (-m evaluate) decodes with the average, as dev did
    runner.expdir.mkdir(parents=True)
    dev = runner.evaluate("dev")
    runner.best = {"metric": "per", "value": dev["per"], "step": runner.step, "empty_rate": dev["empty_rate"],
                   "collapsed": dev["collapsed"]}
    ckpt = runner.save("dev-best.ckpt")
    state = load_downstream_checkpoint(ckpt)
    assert state["ema"] is not None and state["config"]["runner"]["ema_decay"] == decay
    assert evaluate_checkpoint(ckpt, "dev")["per"] == pytest.approx(dev["per"])
    loaded = DownstreamRunner(RunSpec("pr", "fbank"), cfg, tmp_path / "run", state, train=False)
    for name, w in loaded.eval_head.named_parameters():
        torch.testing.assert_close(w, averaged[name])
    # without the option the trained weights decode; with it, a checkpoint trained without an average is an error
    cfg_plain = _cfg(synth_corpus_en, tmp_path, "")
    plain = DownstreamRunner(RunSpec("pr", "fbank"), cfg_plain, tmp_path / "plain", train=False)
    assert plain.ema is None and plain.eval_head is plain.head
    plain_state = {**plain.state_dict(), "config": state["config"]}
    with pytest.raises(CheckpointError, match="ema_decay=null"):
        DownstreamRunner(RunSpec("pr", "fbank"), cfg, tmp_path / "p2", plain_state, train=False)
    with pytest.raises(ConfigError, match="ema_decay"):
        resolve_config("pr", None, "config.runner.ema_decay=1.0")


def test_ema_probe_resumes_exactly(synth_corpus_en: Path, tmp_path: Path) -> None:
    def train(folder: str, steps: int, state: dict[str, Any] | None = None) -> None:
        cfg = _cfg(synth_corpus_en, tmp_path, "config.runner.ema_decay=0.9,,config.optimizer.decay=constant,,"
                   f"config.runner.eval_step=100,,config.runner.save_step=3,,config.runner.total_steps={steps}")
        DownstreamRunner(RunSpec("pr", "fbank"), cfg, tmp_path / folder, state).train()

    train("full", 6)
    train("half", 3)
    train("half", 6, load_downstream_checkpoint(tmp_path / "half" / "states-3.ckpt"))
    a = load_downstream_checkpoint(tmp_path / "full" / "states-6.ckpt")["ema"]
    b = load_downstream_checkpoint(tmp_path / "half" / "states-6.ckpt")["ema"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert int(a["n_averaged"]) == 6
