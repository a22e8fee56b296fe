"""Train a downstream head on a frozen upstream, pick the best dev checkpoint, evaluate on test.

One readable loop, s3prl's downstream runner: batches of cached (or
recomputed) hidden states ``[B, L, T, D]`` -> featurizer -> SpecAugment
(training, when on) -> head -> task loss; ``gradient_accumulate_steps``
batches per Adam update, s3prl's lr schedule, gradient clipping; evaluation
on dev every ``eval_step`` (the best one is saved as ``dev-best.ckpt``);
``states-STEP.ckpt`` every ``save_step``. Early stopping (``runner.patience``,
``runner.min_delta``; ``total_steps`` is the cap) and the collapse test
(``runner.collapse_empty_rate``) are :mod:`~s3prl_colld.downstream.convergence`'s.
With ``runner.ema_decay`` every evaluation (dev, test, ``-m evaluate``) uses an
exponential moving average of the featurizer's and head's weights
(``torch.optim.swa_utils.AveragedModel``), kept in the checkpoints beside them;
the run's updates, stop reason and dev curve go to ``training.json``. A task
whose loss has several terms (ST with ``head.ctc_weight > 0``: ``ce``, ``ctc``)
has each logged beside the loss (tensorboard ``TASK/train-NAME``, the progress
bar, the dev log line and the dev curve's ``train_terms``). Checkpoints are plain dicts
(``torch.load(weights_only=True)``), written atomically, and carry the run's
spec, config, vocabulary and every RNG state, so ``-e`` continues exactly.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from s3prl_colld import checkpoint as ckpt_io
from s3prl_colld.config import from_dict, to_dict
from s3prl_colld.data.audio import num_samples
from s3prl_colld.downstream.convergence import STOP_CAP, STOP_PATIENCE, DevPoint, EarlyStopping, empty_rate, \
    is_collapsed
from s3prl_colld.downstream.corpus import Utterance
from s3prl_colld.downstream.featurizer import Featurizer, pad_features, plot_layer_weights
from s3prl_colld.downstream.features import CachedFeatures, FeatureSource, check_audio, feature_source
from s3prl_colld.downstream.schedule import lr_multiplier
from s3prl_colld.downstream.schema import DownstreamConfig, drop_legacy_keys
from s3prl_colld.downstream.specaug import spec_augment
from s3prl_colld.downstream.task import DownstreamTask, get_task
from s3prl_colld.downstream.upstream import FrozenUpstream
from s3prl_colld.runtime.distributed import pick_device
from s3prl_colld.runtime.optim import build_optimizer, load_optimizer_state
from s3prl_colld.runtime.precision import autocast, effective_precision
from s3prl_colld.runtime.rng import rng_state, seed_everything, set_rng_state
from s3prl_colld.runtime.step import StepPolicy

log = logging.getLogger("s3prl_colld.downstream")

KIND = ckpt_io.DOWNSTREAM_KIND
TRAINING_JSON = "training.json"  # updates run, stop reason, dev curve, collapse flag of a training run


@dataclass
class RunSpec:
    """What a run probes: ``-d``, ``-u``, ``-k``, ``-l`` (None: weighted sum of all hidden states)."""

    task: str
    upstream: str
    ckpt: Optional[str] = None
    layer: Optional[int] = None


class DownstreamRunner:
    """Builds upstream, features, featurizer and head for ``spec`` (optionally from a checkpoint)."""

    def __init__(self, spec: RunSpec, cfg: DownstreamConfig, expdir: Path, state: dict[str, Any] | None = None,
                 train: bool = True) -> None:
        self.spec, self.cfg, self.expdir = spec, cfg, Path(expdir)
        self.device = pick_device(cfg.runner.device)
        seed_everything(cfg.runner.seed)
        self.task: DownstreamTask = get_task(spec.task)(cfg)
        self.upstream = FrozenUpstream(spec.upstream, spec.ckpt, self.device, cfg.upstream.batch_size)
        self.utts: dict[str, list[Utterance]] = {}
        self.lengths: dict[str, list[int]] = {}
        if state is not None:
            self.task.load_vocab_state(state["vocab"])
        else:
            self.task.fit_vocab(self._utterances("train"))
        self.featurizer = Featurizer(self.upstream.n_layers, spec.layer, cfg.featurizer.normalize).to(self.device)
        self.head = self.task.build_head(self.upstream.dim).to(self.device)
        # runner.ema_decay: the averaged copy that every evaluation uses (None: the trained weights themselves)
        self.trained = nn.ModuleDict({"featurizer": self.featurizer, "head": self.head})
        self.ema: AveragedModel | None = None
        if cfg.runner.ema_decay is not None:
            self.ema = AveragedModel(self.trained,
                                     multi_avg_fn=get_ema_multi_avg_fn(cfg.runner.ema_decay))
        self.step, self.epoch, self.pos = 0, 0, 0
        self.train_terms: dict[str, torch.Tensor] = {}  # the last update's loss terms (task.loss_terms), detached
        self.best: dict[str, Any] = {"metric": self.task.metric, "value": None, "step": None}
        rc = cfg.runner
        self.stopper = EarlyStopping(rc.patience, rc.min_delta, self.task.higher_better)
        self.stop_reason: str | None = None
        self.optimizer, self.policy = None, None
        self.precision = effective_precision(cfg.runner.precision, self.device)
        if train:
            params = [p for m in (self.featurizer, self.head) for p in m.parameters() if p.requires_grad]
            self.optimizer = build_optimizer(params, cfg.optimizer, self.device)
            rc = cfg.runner
            self.policy = StepPolicy(self.optimizer, cfg.optimizer, rc.total_steps, rc.gradient_clipping,
                                     rc.max_bad_steps, self.precision, self.device,
                                     f"the last good checkpoint is in {self.expdir}",
                                     factor=lambda s: lr_multiplier(s, rc.total_steps, cfg.optimizer))
        if state is not None:
            self._restore(state)
        self.sources: dict[str, FeatureSource] = {}

    # ------------------------------------------------------------------ data
    def _utterances(self, role: str) -> list[Utterance]:
        if role not in self.utts:
            utts = self.task.utterances(role)
            if role == "train" and self.cfg.data.max_train_utts and len(utts) > self.cfg.data.max_train_utts:
                keep = self.cfg.data.max_train_utts  # evenly spread over the ids, so every speaker is kept
                utts = [utts[i * len(utts) // keep] for i in range(keep)]
            self.utts[role] = utts
        return self.utts[role]

    def samples(self, role: str) -> list[int]:
        """Audio length (samples, from the file headers) of each utterance of ``role``."""
        if role not in self.lengths:
            self.lengths[role] = [num_samples(u.path) for u in self._utterances(role)]
        return self.lengths[role]

    def source(self, role: str) -> FeatureSource:
        """Features of ``role``'s split (cached on first use when caching is on and it fits)."""
        if role not in self.sources:
            utts = self._utterances(role)
            check_audio(utts, self.cfg.data.resample, self.task.split_name(role),
                        str(Path(self.cfg.data.root).resolve()))
            # the same audio files share a cache across tasks (PR and ASR read the same LibriSpeech split)
            cache, cache_dir = self.cfg.cache, None
            if cache.enabled:
                cache_dir = Path(cache.dir) if cache.dir else self.expdir.parent / "_feature_cache"
            self.sources[role] = feature_source(self.upstream, utts, self.task.split_name(role), cache_dir,
                                                cache.max_gb, self.cfg.data.resample,
                                                self.cfg.runner.progress_bar)
        return self.sources[role]

    @property
    def eval_featurizer(self) -> Featurizer:
        """The featurizer that evaluations use: the moving average's with ``runner.ema_decay``, else the trained one."""
        return self.featurizer if self.ema is None else self.ema.module["featurizer"]

    @property
    def eval_head(self) -> nn.Module:
        """The head that evaluations use (see :attr:`eval_featurizer`)."""
        return self.head if self.ema is None else self.ema.module["head"]

    def batch(self, role: str, indices: list[int], featurizer: Featurizer | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """``(featurized [B, T, D], lengths [B], target texts)`` of utterances ``indices`` of ``role``, through
        ``featurizer`` (default: the trained one)."""
        source = self.source(role)
        if isinstance(source, CachedFeatures):  # one copy from the cache into the padded batch
            hs, lengths = source.get_padded(indices)
        else:
            hs, lengths = pad_features(source.get(indices))
        x = (self.featurizer if featurizer is None else featurizer)(hs.to(self.device))
        return x, lengths.to(self.device), [self._utterances(role)[i].text for i in indices]

    def train_batches(self) -> Iterator[list[int]]:
        """Endless training batches: the task's s3prl sampler, one epoch at a time.

        An epoch's batches are a pure function of ``(seed, epoch)`` and ``pos``
        counts the batches already used, so resuming mid-epoch is exact.
        """
        rc = self.cfg.runner
        utts = self._utterances("train")
        while True:
            epoch_batches = self.task.train_batches(utts, self.samples("train"), rc, self.epoch,
                                                    self.upstream.downsample_rate)
            while self.pos < len(epoch_batches):
                self.pos += 1
                yield epoch_batches[self.pos - 1]
            self.epoch, self.pos = self.epoch + 1, 0

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"kind": KIND, "version": 1, "spec": asdict(self.spec), "config": to_dict(self.cfg),
                "vocab": self.task.vocab_state(), "featurizer": self.featurizer.state_dict(),
                "head": self.head.state_dict(), "ema": self.ema.state_dict() if self.ema is not None else None,
                "optimizer": self.optimizer.state_dict() if self.optimizer else None,
                "policy": self.policy.state_dict() if self.policy else None,
                "step": self.step, "epoch": self.epoch, "pos": self.pos, "best": dict(self.best),
                "early_stopping": self.stopper.state_dict(), "stop_reason": self.stop_reason,
                "rng": rng_state(self.device)}

    def _restore(self, state: dict[str, Any]) -> None:
        self.featurizer.load_state_dict(state["featurizer"])
        self.head.load_state_dict(state["head"])
        if self.ema is not None:
            if state.get("ema") is None:
                raise ckpt_io.CheckpointError("config.runner.ema_decay is set but the checkpoint has no moving average "
                                              "(it was trained without one): set config.runner.ema_decay=null")
            self.ema.load_state_dict(state["ema"])
        if self.optimizer is not None and state.get("optimizer"):
            load_optimizer_state(self.optimizer, state["optimizer"])
        if self.policy is not None and state.get("policy"):
            self.policy.load_state_dict(state["policy"])
        self.step, self.epoch, self.pos = state["step"], state["epoch"], state["pos"]
        self.best = dict(state["best"])
        if state.get("early_stopping"):  # absent in checkpoints from before early stopping
            self.stopper.load_state_dict(state["early_stopping"])
        self.stop_reason = state.get("stop_reason")
        set_rng_state(state["rng"], self.device)

    def save(self, name: str | None = None) -> Path:
        path = ckpt_io.save_atomic(self.state_dict(), self.expdir / (name or f"states-{self.step}.ckpt"))
        if name is None:
            for old in ckpt_io.list_checkpoints(self.expdir)[: -self.cfg.runner.max_keep]:
                old.unlink(missing_ok=True)
        return path

    # ------------------------------------------------------------------ loops
    @torch.no_grad()
    def evaluate(self, role: str) -> dict[str, Any]:
        """Decode ``role``'s split; returns ``{metric, ids, hyps, refs, empty_rate, collapsed}``
        (``collapsed``: at least ``runner.collapse_empty_rate`` of the hypotheses are empty)."""
        featurizer, head = self.eval_featurizer, self.eval_head
        featurizer.eval()
        head.eval()
        utts = self._utterances(role)
        self.source(role)
        order = self.task.eval_order(utts, self.samples(role))
        bs = self.cfg.runner.eval_batch_size
        hyps: list[str] = []
        for start in tqdm(range(0, len(order), bs), desc=f"decode {role}", leave=False,
                          disable=not self.cfg.runner.progress_bar):
            x, lengths, _ = self.batch(role, order[start: start + bs], featurizer)
            hyps += self.task.decode(head, x, lengths)
        featurizer.train()
        head.train()
        refs = [self.task.reference(utts[i].text) for i in order]
        rate = empty_rate(hyps, self.task.empty_hypotheses)
        return {self.task.metric: self.task.score(hyps, refs), "ids": [utts[i].uttid for i in order],
                "hyps": hyps, "refs": refs, "empty_rate": rate,
                "collapsed": is_collapsed(rate, self.cfg.runner.collapse_empty_rate)}

    def train_step(self, batches: list[list[int]]) -> torch.Tensor:
        """One optimizer update over the training utterance batches ``batches`` (``gradient_accumulate_steps`` of
        them; each batch's loss is divided by their number), SpecAugment on the features when on.
        ``runtime.step.StepPolicy`` does s3prl's schedule, AMP and clipping; a non-finite loss or gradient skips
        the update, too many of them abort. Returns the mean batch loss ``[]``; the mean of each of the task's
        loss terms is left in ``self.train_terms``."""
        total = torch.zeros((), device=self.device)
        terms: dict[str, torch.Tensor] = {}
        utts = self._utterances("train")
        for indices in batches:
            with autocast(self.precision, self.device):
                x, lengths, _ = self.batch("train", indices)
                if self.cfg.specaug.enabled:
                    x = spec_augment(x, lengths, self.cfg.specaug)
                loss, batch_terms = self.task.loss_terms(self.head, x, lengths, [utts[i] for i in indices])
                loss = loss / len(batches)
            self.policy.backward(loss)
            total = total + loss.detach().float()
            for name, value in batch_terms.items():
                terms[name] = terms.get(name, 0.0) + value.detach().float() / len(batches)
        self.train_terms = terms
        self.step += 1
        outcome = self.policy.step(total)
        if outcome.bad:
            self.policy.count_bad(self.step)
        if outcome.updated and self.ema is not None:
            self.ema.update_parameters(self.trained)
        return total

    def better_than_best(self, value: float, collapsed: bool) -> bool:
        """Is a dev result better than the best so far? A collapsed result never beats one that is not."""
        if self.best["value"] is None:
            return True
        best_collapsed = bool(self.best.get("collapsed", False))
        if collapsed != best_collapsed:
            return not collapsed
        return self.task.better(value, self.best["value"])

    def on_dev(self, result: dict[str, Any], train_loss: float | None, writer: SummaryWriter | None = None,
               train_terms: dict[str, float] | None = None) -> bool:
        """Record a dev evaluation after update ``self.step``: the curve, the best checkpoint, the stop rule.
        ``train_loss`` / ``train_terms``: the mean training loss (and loss terms) since the last evaluation.
        Returns whether training should stop (``runner.patience`` evaluations without improvement)."""
        metric = self.task.metric
        value, rate, collapsed = float(result[metric]), float(result["empty_rate"]), bool(result["collapsed"])
        if writer is not None:
            writer.add_scalar(f"{self.spec.task}/dev-{metric}", value, self.step)
            writer.add_scalar(f"{self.spec.task}/dev-empty-rate", rate, self.step)
        self.stopper.update(DevPoint(self.step, value, rate, collapsed, train_loss, train_terms or None))
        log.info("step %d: dev %s %.2f (%.0f%% empty hypotheses)", self.step, metric, value, 100 * rate)
        if train_terms and train_loss is not None:
            log.info("step %d: train loss %.3f (%s)", self.step, train_loss,
                     ", ".join(f"{name} {v:.3f}" for name, v in train_terms.items()))
        if collapsed:
            log.warning("step %d: dev collapsed: %.0f%% of the hypotheses are empty (>= %.0f%%, "
                        "config.runner.collapse_empty_rate); not counted for early stopping", self.step, 100 * rate,
                        100 * self.cfg.runner.collapse_empty_rate)
        if self.better_than_best(value, collapsed):
            self.best = {"metric": metric, "value": value, "step": self.step, "empty_rate": rate,
                         "collapsed": collapsed}
            self.save("dev-best.ckpt")
            self.task.write_predictions(self.expdir, "dev", self.task.split_name("dev"), result["ids"],
                                        result["hyps"], result["refs"])
        weights = self.eval_featurizer.layer_weights()  # drawn at the end of training (a plot takes about 0.4 s)
        (self.expdir / "layer_weights.json").write_text(json.dumps({"step": self.step, "weights": weights}))
        return self.stopper.should_stop()

    def training_summary(self, seconds: float | None = None) -> dict[str, Any]:
        """``training.json``: what the run did (updates, why it stopped, dev curve) and its best dev result."""
        rc = self.cfg.runner
        return {"task": self.spec.task, "upstream": self.spec.upstream, "ckpt": self.spec.ckpt,
                "metric": self.task.metric, "updates": self.step, "stop_reason": self.stop_reason,
                "best": dict(self.best), "collapsed": bool(self.best.get("collapsed", False)),
                "rule": {"cap": rc.total_steps, "eval_step": rc.eval_step, "patience": rc.patience,
                         "min_delta": rc.min_delta, "collapse_empty_rate": rc.collapse_empty_rate,
                         "ema_decay": rc.ema_decay},
                "dev_curve": self.stopper.state_dict()["curve"], "seconds": seconds}

    def train(self) -> dict[str, Any]:
        """Train to ``runner.total_steps`` or until dev stops improving (``runner.patience``).

        Returns the best dev result ``{metric, value, step, empty_rate, collapsed}`` with the run's
        ``updates`` and ``stop_reason`` (``cap`` / ``patience``); the same and the dev curve go to ``training.json``.
        """
        rc = self.cfg.runner
        start = time.perf_counter()
        self.expdir.mkdir(parents=True, exist_ok=True)
        for tmp in ckpt_io.remove_stale_temp_files(self.expdir):
            log.warning("removed %s, left by a save that was interrupted", tmp)
        for role in ("train", "dev"):
            self.source(role)
        writer = SummaryWriter(str(self.expdir / "tb"), purge_step=self.step or None)
        batches = self.train_batches()
        bar = tqdm(total=rc.total_steps, initial=self.step, desc=f"{self.spec.task} {self.spec.upstream}",
                   unit="step", disable=not rc.progress_bar)
        loss_sum, loss_n = torch.zeros((), device=self.device), 0  # training loss since the last evaluation
        terms_sum: dict[str, torch.Tensor] = {}  # and its terms (task.loss_terms)
        self.stop_reason = STOP_PATIENCE if self.stopper.should_stop() else None  # resumed after a stop
        while self.stop_reason is None and self.step < rc.total_steps:
            loss = self.train_step([next(batches) for _ in range(rc.gradient_accumulate_steps)])
            loss_sum, loss_n = loss_sum + loss, loss_n + 1
            for name, term in self.train_terms.items():
                terms_sum[name] = terms_sum.get(name, 0.0) + term
            bar.update(1)
            if self.step % rc.log_step == 0:  # the only host sync of the loss between evaluations
                value = loss.item()
                writer.add_scalar(f"{self.spec.task}/train-loss", value, self.step)
                terms = {name: term.item() for name, term in self.train_terms.items()}
                for name, term_value in terms.items():
                    writer.add_scalar(f"{self.spec.task}/train-{name}", term_value, self.step)
                bar.set_postfix(loss=f"{value:.3f}", **{name: f"{v:.3f}" for name, v in terms.items()})
            if self.step % rc.eval_step == 0 or self.step == rc.total_steps:
                mean_loss = loss_sum.item() / max(1, loss_n)
                mean_terms = {name: term.item() / max(1, loss_n) for name, term in terms_sum.items()}
                loss_sum, loss_n, terms_sum = torch.zeros((), device=self.device), 0, {}
                if self.on_dev(self.evaluate("dev"), mean_loss, writer, mean_terms):
                    self.stop_reason = STOP_PATIENCE
                    log.info("step %d: dev has not improved by %g for %d evaluations: stopping (best %s %.2f at "
                             "step %s)", self.step, rc.min_delta, rc.patience, self.task.metric, self.best["value"],
                             self.best["step"])
            if self.step % rc.save_step == 0 or self.step == rc.total_steps or self.stop_reason is not None:
                self.save()
        if self.stop_reason is None:
            self.stop_reason = STOP_CAP
        bar.close()
        writer.close()
        plot_layer_weights(self.eval_featurizer.layer_weights(), self.expdir / "layer_weights.png",
                           f"{self.spec.upstream} {self.spec.task} step {self.step}")
        summary = self.training_summary(time.perf_counter() - start)
        if summary["collapsed"]:
            log.warning("the best dev result is collapsed (%.0f%% empty hypotheses): do not report this probe; "
                        "retry it with another seed or a lower learning rate (downstream.retry.probe_with_retry)",
                        100 * self.best["empty_rate"])
        text = json.dumps(summary, indent=1)
        ckpt_io.write_atomic(self.expdir / TRAINING_JSON, lambda f: f.write(text), mode="w")
        return {**self.best, "updates": self.step, "stop_reason": self.stop_reason}


def evaluate_checkpoint(path: Path, split: str = "test", overrides: dict[str, Any] | None = None,
                        out_dir: Path | None = None) -> dict[str, Any]:
    """``-m evaluate``: decode a split with a checkpoint; writes its predictions and ``{SPLIT}-results.json``.

    Args:
        split: ``dev`` / ``test`` (the config's ``data.dev_split`` / ``data.test_split``)
            or the name of any other split of the corpus (``test_noisy``).

    The results are named after the corpus split (``test-clean-results.json``).
    The predictions of the run's own dev / test split keep s3prl's names (PR
    ``test-hyp.ark``, ASR ``test-clean-noLM-hyp.ark``, ST ``output-st-test.tsv``);
    those of any other split are named after it (``test_noisy-hyp.ark``). So
    evaluating another split never overwrites a split's results; results of a
    split of the same name from another corpus root are not overwritten either
    (an error says so).

    Where they go (``out_dir``, default): ``dev-best.ckpt``'s beside it, in the
    run folder (s3prl's place); any other checkpoint's in a folder named after
    it (``RUN/states-20/test-results.json``), so results of different
    checkpoints never overwrite each other. The feature cache is the run
    folder's either way.
    """
    from s3prl_colld.config import deep_merge

    state = load_downstream_checkpoint(path)
    overrides = dict(overrides or {})
    role = split if split in ("dev", "test") else "test"
    if role != split:
        overrides = deep_merge(overrides, {"data": {"test_split": split}})
    task = state["spec"]["task"]
    config_cls = get_task(task).Config  # the task's own config; a checkpoint of the shared schema loads too
    cfg = from_dict(config_cls, drop_legacy_keys(config_cls, deep_merge(state["config"], overrides), task))
    path = Path(path)
    out_dir = Path(out_dir or results_folder(path))
    name = f"{cfg.data.test_split if role == 'test' else cfg.data.dev_split}"
    results = out_dir / f"{name}-results.json"
    root = str(Path(cfg.data.root).resolve())
    if results.is_file():
        try:
            earlier = json.loads(results.read_text()).get("root")
        except ValueError:
            earlier = None
        if earlier is not None and earlier != root:
            raise ckpt_io.CheckpointError(f"{results} holds the results of split {name} of {earlier}, not of {root}: "
                                          "move it away first (it is not overwritten)")
    runner = DownstreamRunner(RunSpec(**state["spec"]), cfg, path.parent, state, train=False)
    result = runner.evaluate(role)
    training_json = Path(path).parent / TRAINING_JSON
    training = json.loads(training_json.read_text()) if training_json.is_file() else {}
    metric = runner.task.metric
    out_dir.mkdir(exist_ok=True)
    # s3prl's file names for the run's own dev / test split; any other split's files are named after it
    own = state["config"]["data"]["test_split" if role == "test" else "dev_split"]
    runner.task.write_predictions(out_dir, role if name == own else None, name, result["ids"], result["hyps"],
                                  result["refs"])
    summary = {"task": runner.spec.task, "upstream": runner.spec.upstream, "ckpt": runner.spec.ckpt,
               "checkpoint": str(path), "step": state["step"], "split": name, "root": root,
               "metric": metric, metric: result[metric], "utterances": len(result["ids"]),
               "empty_rate": result["empty_rate"], "collapsed": result["collapsed"],
               # the training run behind the checkpoint (its training.json; None when there is none)
               "dev_collapsed": state["best"].get("collapsed"), "updates": training.get("updates"),
               "stop_reason": training.get("stop_reason"),
               "layer_weights": runner.eval_featurizer.layer_weights()}
    if result["collapsed"]:
        log.warning("%s on %s is collapsed: %.0f%% of the hypotheses are empty (>= %.0f%%, "
                    "config.runner.collapse_empty_rate): not a measurement of the features, do not report it",
                    path, name, 100 * result["empty_rate"], 100 * cfg.runner.collapse_empty_rate)
    results.write_text(json.dumps(summary, indent=1))
    return summary


def results_folder(ckpt: Path) -> Path:
    """Where ``-m evaluate -e CKPT`` writes: the run folder for ``dev-best.ckpt``, else ``RUN/<CKPT's stem>``."""
    return ckpt.parent if ckpt.name == "dev-best.ckpt" else ckpt.parent / ckpt.stem


def load_downstream_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a downstream checkpoint (``weights_only``); a pretrain or foreign checkpoint is a clear error."""
    state = ckpt_io.load(path)
    if state.get("kind") != KIND:
        raise ckpt_io.CheckpointError(f"{path} is not a run_downstream.py checkpoint (kind {state.get('kind')!r}); "
                                      "pass a result/downstream/NAME/{dev-best,states-STEP}.ckpt")
    return state

