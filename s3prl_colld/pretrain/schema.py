"""Config sections shared by every pretrain task: runner, data (and ``runtime.optim.OptimizerConfig``).

Key names follow s3prl's runner configs where it has them
(``total_steps``, ``log_step``, ``save_step``, ``max_keep``,
``gradient_accumulate_steps``, ``gradient_clipping``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from s3prl_colld.config import ConfigError, choice
from s3prl_colld.runtime.optim import OptimizerConfig


@dataclass
class RunnerConfig:
    total_steps: int = 1000
    log_step: int = 20
    save_step: int = 500
    max_keep: int = 2  # how many states-STEP.ckpt to keep (older ones are deleted)
    gradient_accumulate_steps: int = 1
    gradient_clipping: float = 10.0  # max global grad norm; <= 0 disables clipping (the norm is still logged)
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16 uses a GradScaler)
    seed: int = 1337
    num_workers: int = 2
    device: str = "auto"  # auto | cpu | cuda
    max_bad_steps: int = 20  # abort when more steps than this had a NaN/inf loss or gradient
    progress_bar: bool = True
    find_unused_parameters: bool = False  # DDP: set true if some trainable parameters get no gradient in a step
    # speed: how a step runs, not what it learns (bench/README.md has the measurements)
    fast_kernels: bool = True  # SDPA attention, no padding masks on unpadded batches, direct teacher call, CNN norms in bf16/fp16 under autocast
    cnn_channels_last: bool = True  # the waveform CNNs (student and teacher) as channels-last conv2d, first block fused
    fft_pos_conv: bool = True  # the position-embedding conv (K=128, 16 groups) of student and teacher as an FFT product
    # GPU: cuDNN times its conv algorithms once per input shape (random crops: many shapes) and keeps the fastest;
    # no gain measured on an H100 or an H200, and a worse pick in one of two H100 runs (bench/README.md)
    cudnn_benchmark: bool = False
    tf32: bool = False  # GPU, precision=fp32: TF32 matmuls (10-bit mantissa products; cuDNN convs use TF32 by default)
    compile: bool = False  # torch.compile the task's hot modules (the student); the first steps of each shape are slow

    def validate(self) -> None:
        choice(self.precision, ("fp32", "bf16", "fp16"), "config.runner.precision")
        choice(self.device, ("auto", "cpu", "cuda"), "config.runner.device")
        for name in ("total_steps", "log_step", "save_step", "max_keep", "gradient_accumulate_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"config.runner.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_workers", "max_bad_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"config.runner.{name} must be >= 0, got {getattr(self, name)}")


CROP_MODES = ("random", "max_length", "none")


@dataclass
class DataConfig:
    root: str = "data/synth_en"  # LibriSpeech-layout corpus (from s3prl_colld.data.synth or real)
    splits: list[str] = field(default_factory=lambda: ["train"])  # names of len_for_bucket/<split>.csv
    batch_size: int = 8  # utterances per batch per process
    # random: each batch draws one crop length in [crop_min_sec, crop_max_sec]; max_length: utterances longer
    # than crop_max_sec get one random crop of that length, the others stay whole (s3prl's sequence_length);
    # none: whole utterances
    crop: str = "random"
    crop_min_sec: float = 2.0
    crop_max_sec: float = 4.0
    min_sec: float = 0.5  # utterances shorter than this are dropped
    max_sec: Optional[float] = None  # utterances longer than this are dropped
    bucket_size: int = 64  # batches are drawn from windows of this many length-sorted utterances
    resample: bool = False  # audio not 16 kHz mono: false = a bad file, true = downmix and resample on the fly
    on_bad_audio: str = "error"  # error: list every bad file and stop | skip: leave them out (each logged)

    def validate(self) -> None:
        choice(self.on_bad_audio, ("error", "skip"), "config.data.on_bad_audio")
        choice(self.crop, CROP_MODES, "config.data.crop")
        if self.crop_min_sec > self.crop_max_sec:
            raise ConfigError("config.data.crop_min_sec must not exceed config.data.crop_max_sec")
        if self.batch_size < 1:
            raise ConfigError("config.data.batch_size must be >= 1")


@dataclass
class TaskConfig:
    """The sections every pretrain task has; a task's config subclasses this and adds its own."""

    runner: RunnerConfig = field(default_factory=RunnerConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
