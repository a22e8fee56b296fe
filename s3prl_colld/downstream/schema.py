"""Config of a downstream run: dataclass defaults <- the task's s3prl defaults <- YAML <- ``-o`` overrides.

Keys follow s3prl's downstream recipes where s3prl has one: the runner's
``total_steps``, ``log_step``, ``eval_step``, ``save_step``, ``max_keep``,
``gradient_clipping`` and ``gradient_accumulate_steps``; the ``specaug``
section uses the keys of s3prl's ``downstream/specaug.py``.

``DownstreamConfig`` holds what every task has; each task declares its own
subclass (``DownstreamTask.Config``) with its typed ``head`` section and, where
it reads more, its own ``data`` (PR: ``lexicon``; ST: ``tsv_dir``,
``audio_dir``) and ``runner`` (ST: ``max_tokens``) sections. Each task's s3prl
values (``DownstreamTask.s3prl_defaults``) are applied before the YAML, so a
config file only needs the keys it changes; ``docs/superb_protocol.md`` maps
every setting to s3prl's file and key.
"""

from __future__ import annotations

import dataclasses
import logging
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

from s3prl_colld.config import ConfigError, choice
from s3prl_colld.runtime.optim import OptimizerConfig

log = logging.getLogger(__name__)

BATCHING = ("s3prl", "shuffle")
DECAYS = ("constant", "linear", "cosine", "sqrt")


@dataclass
class DownstreamRunnerConfig:
    total_steps: int = 20000  # optimizer updates (s3prl counts updates, not batches)
    log_step: int = 100
    eval_step: int = 1000
    save_step: int = 1000
    max_keep: int = 1  # states-STEP.ckpt files kept (dev-best.ckpt is kept apart)
    batch_size: int = 16  # utterances per batch (s3prl's bucket size; see batching)
    batching: str = "s3prl"  # s3prl: the task's s3prl sampler (length buckets); shuffle: random batches
    gradient_accumulate_steps: int = 1  # batches per optimizer update (each loss divided by this)
    eval_batch_size: int = 16
    gradient_clipping: float = 1.0
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast of featurizer + head; fp16 scales the loss)
    max_bad_steps: int = 20  # abort when more steps than this had a NaN/inf loss or gradient
    seed: int = 1337
    device: str = "auto"  # auto | cpu | cuda
    progress_bar: bool = True
    # early stopping (downstream/convergence.py): dev every eval_step; stop after `patience` evaluations in a row
    # that did not beat the last improvement by at least `min_delta` (metric units); total_steps stays the cap.
    # null: no early stopping (s3prl's fixed schedule)
    patience: Optional[int] = None
    min_delta: float = 0.0
    # a decode with at least this fraction of empty hypotheses (CTC: only blanks; ST: <unk>) is collapsed:
    # flagged in the log and the result files, never reported as a number
    collapse_empty_rate: float = 0.5
    # evaluate (dev, test) with an exponential moving average of the featurizer's and head's weights, updated after
    # every optimizer update with this decay (torch.optim.swa_utils; e.g. 0.99: about the last 100 updates);
    # null: the weights as trained (s3prl)
    ema_decay: Optional[float] = None

    def validate(self) -> None:
        choice(self.device, ("auto", "cpu", "cuda"), "config.runner.device")
        choice(self.batching, BATCHING, "config.runner.batching")
        choice(self.precision, ("fp32", "bf16", "fp16"), "config.runner.precision")
        for name in ("total_steps", "log_step", "eval_step", "save_step", "max_keep", "batch_size",
                     "eval_batch_size", "gradient_accumulate_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"config.runner.{name} must be >= 1, got {getattr(self, name)}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"config.runner.patience must be >= 1 or null (no early stopping), got {self.patience}")
        if self.min_delta < 0:
            raise ConfigError(f"config.runner.min_delta must be >= 0, got {self.min_delta}")
        if not 0.0 < self.collapse_empty_rate <= 1.0:
            raise ConfigError(f"config.runner.collapse_empty_rate must be in (0, 1], got {self.collapse_empty_rate}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"config.runner.ema_decay must be in (0, 1) or null (no averaging), got {self.ema_decay}")


@dataclass
class DownstreamOptimizerConfig(OptimizerConfig):
    """Adam with torch's defaults (s3prl's ``TorchOptim`` / ``Adam``) and s3prl's schedulers.

    ``decay`` with ``warmup_steps`` names s3prl's ``scheduler`` (``s3prl/schedulers.py``),
    with s3prl's formulas (``LambdaLR``: the update after ``s`` updates uses ``lr * f(s)``,
    see :func:`s3prl_colld.downstream.schedule.lr_multiplier`):

    - ``constant``, ``warmup_steps: 0``: no scheduler (PR, ASR);
    - ``constant``, ``warmup_steps: W``: ``constant_decay_schedule_with_warmup``;
    - ``linear``: ``linear_schedule_with_warmup``, ``f(s) = (T - s) / (T - W)`` after warm-up;
    - ``cosine``: ``cosine_schedule_with_warmup``;
    - ``sqrt``: ``sqrt_decay_schedule_with_warmup`` (ST), ``f(s) = 1 / sqrt(max(s, W))``
      after warm-up: note that s3prl's formula drops the lr by a factor ``sqrt(W)`` at the
      end of the warm-up (100x for W = 10000); we reproduce it as it is.

    During warm-up ``f(s) = s / W`` (so the first update has lr 0, as in s3prl).
    ``final_lr_ratio`` (linear / cosine) is 0 in s3prl.
    """

    name: str = "Adam"  # Adam | AdamW
    lr: float = 1.0e-2
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # torch's defaults
    eps: float = 1.0e-8  # torch's default
    decay: str = "constant"  # constant | linear | cosine | sqrt

    def validate(self) -> None:
        choice(self.name, ("Adam", "AdamW"), "config.optimizer.name")
        choice(self.decay, DECAYS, "config.optimizer.decay")
        if len(self.betas) != 2:
            raise ConfigError(f"config.optimizer.betas must hold two numbers, got {self.betas}")
        if self.warmup_steps < 0:
            raise ConfigError(f"config.optimizer.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.decay == "sqrt" and self.warmup_steps < 1:
            raise ConfigError("config.optimizer.decay=sqrt needs config.optimizer.warmup_steps >= 1 "
                              "(s3prl's sqrt_decay_schedule_with_warmup divides by sqrt(max(step, warmup)))")


@dataclass
class DownstreamDataConfig:
    """The data keys of every task (a task's own ``data`` section subclasses this)."""

    root: str = "data/synth_en"  # LibriSpeech layout (PR, ASR) / CoVoST audio root (ST)
    train_split: str = "train"  # LibriSpeech: train-clean-100
    dev_split: str = "dev"  # LibriSpeech: dev-clean
    test_split: str = "test"  # LibriSpeech: test-clean
    resample: bool = False  # audio not 16 kHz mono: false = refuse (naming the file), true = convert
    max_train_utts: Optional[int] = None  # use only N training utterances, evenly spread over the ids


@dataclass
class CacheConfig:
    enabled: bool = True  # frozen-feature cache (fp16 on disk), when it fits
    dir: Optional[str] = None  # default: the run folder's parent / _feature_cache (shared by runs)
    max_gb: float = 50.0  # refuse (recompute instead) above this estimated size


@dataclass
class FeaturizerConfig:
    # s3prl's SUPERB featurizer: no normalisation (run_downstream.py --upstream_feature_normalize is off),
    # and an upstream with a single hidden state (fbank, mfcc) is passed through untouched
    normalize: bool = False  # true: layer-normalise each hidden state before the weighted sum


@dataclass
class SpecAugConfig:
    """SpecAugment on the featurized features ``[B, T, D]``, training only (s3prl's ``specaug`` block).

    Defaults: s3prl's ``downstream/asr/config.yaml``. Widths are drawn from
    ``[low, high)``; masks are filled with zeros.
    """

    enabled: bool = False  # s3prl: the specaug block is present (ASR) or commented out (PR, ST)
    apply_time_warp: bool = True
    apply_time_mask: bool = True
    apply_freq_mask: bool = True
    time_warp_window: int = 5
    time_warp_mode: str = "bicubic"
    time_mask_width_range: list[int] = field(default_factory=lambda: [0, 40])
    freq_mask_width_range: list[int] = field(default_factory=lambda: [0, 50])
    num_freq_mask: int = 4
    num_time_mask: int = 2

    def validate(self) -> None:
        for name in ("time_mask_width_range", "freq_mask_width_range"):
            low_high = getattr(self, name)
            if len(low_high) != 2 or not 0 <= low_high[0] < low_high[1]:
                raise ConfigError(f"config.specaug.{name} must be [low, high] with 0 <= low < high, got {low_high}")
        if min(self.time_warp_window, self.num_freq_mask, self.num_time_mask) < 0:
            raise ConfigError("config.specaug.time_warp_window, num_freq_mask and num_time_mask must be >= 0")
        choice(self.time_warp_mode, ("bicubic", "bilinear", "nearest"), "config.specaug.time_warp_mode")
        if self.enabled and not (self.apply_time_warp or self.apply_time_mask or self.apply_freq_mask):
            raise ConfigError("config.specaug.enabled=true needs at least one of apply_time_warp, apply_time_mask, "
                              "apply_freq_mask")


@dataclass
class UpstreamConfig:
    batch_size: int = 1  # utterances per upstream forward; 1 is exact for GroupNorm front-ends


@dataclass
class DownstreamConfig:
    """The sections every task has; a task's ``Config`` subclasses this, adding ``head`` (and its own ``data``)."""

    runner: DownstreamRunnerConfig = field(default_factory=DownstreamRunnerConfig)
    optimizer: DownstreamOptimizerConfig = field(default_factory=DownstreamOptimizerConfig)
    data: DownstreamDataConfig = field(default_factory=DownstreamDataConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    featurizer: FeaturizerConfig = field(default_factory=FeaturizerConfig)
    specaug: SpecAugConfig = field(default_factory=SpecAugConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)


# Keys that the one shared schema had for every task, with their defaults (configs and checkpoints written before
# each task declared its own config carry them for every task): dropped where a task's Config lacks them.
LEGACY_SHARED_KEYS: dict[str, dict[str, Any]] = {
    "data": {"lexicon": None, "tsv_dir": "covost", "audio_dir": None},
    "runner": {"max_tokens": None},
}


def drop_legacy_keys(config_cls: type[DownstreamConfig], raw: dict[str, Any], task: str) -> dict[str, Any]:
    """``raw`` without the ``LEGACY_SHARED_KEYS`` that ``config_cls`` does not declare (a copy; ``raw`` is kept).

    A dropped key with another value than its old default was set but never read (the task has no use for it):
    that is logged as a warning.
    """
    out = dict(raw)
    hints = typing.get_type_hints(config_cls)
    for section, keys in LEGACY_SHARED_KEYS.items():
        if not isinstance(out.get(section), dict) or section not in hints:
            continue
        declared = {f.name for f in dataclasses.fields(hints[section])}
        values = dict(out[section])
        for key, default in keys.items():
            if key in values and key not in declared:
                value = values.pop(key)
                if value != default:
                    log.warning("config.%s.%s=%r is not a key of task %s (nothing reads it): ignored",
                                section, key, value, task)
        out[section] = values
    return out
