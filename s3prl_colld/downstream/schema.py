"""Config of a downstream run (``configs/downstream/<task>.yaml`` + ``-o`` overrides).

Runner keys follow s3prl's downstream runner (``total_steps``, ``log_step``,
``eval_step``, ``save_step``, ``max_keep``, ``gradient_clipping``); the
``head`` section is checked against the task's own head dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from s3prl_colld.config import ConfigError, choice
from s3prl_colld.runtime.optim import OptimizerConfig


@dataclass
class DownstreamRunnerConfig:
    total_steps: int = 20000
    log_step: int = 100
    eval_step: int = 1000
    save_step: int = 1000
    max_keep: int = 1  # states-STEP.ckpt files kept (dev-best.ckpt is kept apart)
    batch_size: int = 16
    eval_batch_size: int = 16
    gradient_clipping: float = 1.0
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast of featurizer + head; fp16 scales the loss)
    max_bad_steps: int = 20  # abort when more steps than this had a NaN/inf loss or gradient
    seed: int = 1337
    device: str = "auto"  # auto | cpu | cuda
    progress_bar: bool = True

    def validate(self) -> None:
        choice(self.device, ("auto", "cpu", "cuda"), "config.runner.device")
        choice(self.precision, ("fp32", "bf16", "fp16"), "config.runner.precision")
        for name in ("total_steps", "log_step", "eval_step", "save_step", "max_keep", "batch_size",
                     "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"config.runner.{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class DownstreamDataConfig:
    root: str = "data/synth_en"  # LibriSpeech layout (PR, ASR) / CoVoST audio root (ST)
    train_split: str = "train"  # LibriSpeech: train-clean-100
    dev_split: str = "dev"  # LibriSpeech: dev-clean
    test_split: str = "test"  # LibriSpeech: test-clean
    lexicon: Optional[str] = None  # PR: WORD PH1 PH2 ... (default ROOT/lexicon.txt)
    tsv_dir: str = "covost"  # ST: ROOT/TSV_DIR/SPLIT.tsv
    audio_dir: Optional[str] = None  # ST: tsv audio paths are relative to this (default ROOT)
    resample: bool = False  # audio not 16 kHz mono: false = refuse (naming the file), true = convert
    max_train_utts: Optional[int] = None  # use only the first N training utterances (by id)


@dataclass
class CacheConfig:
    enabled: bool = True  # frozen-feature cache (fp16 on disk), when it fits
    dir: Optional[str] = None  # default: the run folder's parent / _feature_cache (shared by runs)
    max_gb: float = 50.0  # refuse (recompute instead) above this estimated size


@dataclass
class FeaturizerConfig:
    normalize: bool = True  # layer-normalise each hidden state before the weighted sum


@dataclass
class UpstreamConfig:
    batch_size: int = 1  # utterances per upstream forward; 1 is exact for GroupNorm front-ends


@dataclass
class DownstreamConfig:
    runner: DownstreamRunnerConfig = field(default_factory=DownstreamRunnerConfig)
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name="Adam", lr=1e-2,
                                                                                decay="constant"))
    data: DownstreamDataConfig = field(default_factory=DownstreamDataConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    featurizer: FeaturizerConfig = field(default_factory=FeaturizerConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    head: dict[str, Any] = field(default_factory=dict)  # checked by the task's head config
