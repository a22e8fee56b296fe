"""One trainer for every pretrain task: DDP, AMP, accumulation, clipping, schedule, checkpoints.

The loop is deliberately plain (in the spirit of nanoGPT's ``train.py``).
Everything a run needs to continue exactly is in its checkpoint: model,
optimizer, scheduler, scaler, step, data position and every RNG state, so
``-e states-N.ckpt`` reproduces the uninterrupted loss sequence on CPU.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from s3prl_colld import checkpoint as ckpt_io
from s3prl_colld.config import to_dict
from s3prl_colld.data.bucket import BucketBatchSampler
from s3prl_colld.pretrain.schema import OptimizerConfig, RunnerConfig
from s3prl_colld.pretrain.task import PretrainTask

log = logging.getLogger(__name__)


class BadLossError(RuntimeError):
    """Too many steps with a NaN/inf loss or gradient."""


# ---------------------------------------------------------------- distributed
@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_pref: str) -> tuple[Dist, torch.device]:
    """Init the process group under torchrun (NCCL on GPU, gloo on CPU); pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_pref != "cpu"
    if device_pref == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config.runner.device=cuda but no CUDA device is available; use auto or cpu")
    device = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(rank, world, local), device


def _all_reduce_mean(values: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.world_size > 1:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= d.world_size
    return values


# ---------------------------------------------------------------- optimisation
def build_optimizer(params: list[torch.nn.Parameter], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if cfg.name == "AdamW" else torch.optim.Adam
    return cls(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


def lr_factor(step: int, total: int, cfg: OptimizerConfig) -> float:
    """Multiplier of ``cfg.lr`` at optimizer step ``step`` (0-based): linear warm-up, then decay."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.decay == "constant":
        return 1.0
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    shape = 1.0 - progress if cfg.decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.final_lr_ratio + (1.0 - cfg.final_lr_ratio) * shape


# ---------------------------------------------------------------- RNG state
def rng_state() -> dict[str, Any]:
    """Every global RNG as plain values / tensors (``weights_only``-safe)."""
    py = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npy = state["numpy"]
    np.random.set_state((npy[0], npy[1].numpy().astype(np.uint32), npy[2], npy[3], npy[4]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------- data
class _Seeded(Dataset):
    """Passes each batch's crop seed through the data loader next to the item."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> tuple[Any, int]:
        index, seed = key
        return self.ds[index], seed


class _Collate:
    def __init__(self, task: PretrainTask) -> None:
        self.collate = task.collate

    def __call__(self, pairs: list[tuple[Any, int]]) -> dict[str, Any]:
        gen = torch.Generator().manual_seed(pairs[0][1])
        return self.collate([p[0] for p in pairs], gen)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _truncate_log(path: Path, step: int) -> None:
    """Drop log rows past ``step`` (written after the checkpoint a run resumes from)."""
    if path.is_file():
        rows = [line for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line)["step"] <= step]
        path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")


# ---------------------------------------------------------------- the trainer
class Trainer:
    """Trains one task; see ``train`` for the entry point."""

    def __init__(self, task_cls: type[PretrainTask], cfg: Any, expdir: Path, resume: Path | None = None) -> None:
        self.cfg, self.expdir, self.task_cls = cfg, Path(expdir), task_cls
        self.rc: RunnerConfig = cfg.runner
        self.d, self.device = setup_distributed(self.rc.device)
        self.resume_state = ckpt_io.load(resume) if resume is not None else None
        seed_everything(self.rc.seed + self.d.rank)
        if self.d.main:
            self.expdir.mkdir(parents=True, exist_ok=True)
            task_cls.prepare(cfg, self.expdir)
        if self.d.world_size > 1:
            dist.barrier()
        self.task = task_cls(cfg, self.expdir).to(self.device)
        params = [p for p in self.task.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(params, cfg.optimizer)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, self.rc.total_steps, cfg.optimizer))
        self.precision = self.rc.precision
        if self.precision == "fp16" and self.device.type != "cuda":
            log.warning("fp16 needs a GPU; training in fp32 on %s", self.device)
            self.precision = "fp32"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.model: torch.nn.Module = self.task
        if self.d.world_size > 1:
            self.model = DistributedDataParallel(
                self.task, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.step, self.epoch, self.batch_in_epoch, self.bad_steps = 0, 0, 0, 0
        self.stop_signal: str | None = None
        if self.resume_state is not None:
            self._restore(self.resume_state)

    # -- checkpoints
    def _state(self) -> dict[str, Any]:
        return {
            "task": self.task_cls.name,
            "config": to_dict(self.cfg),
            "model": self.task.trainable_state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "bad_steps": self.bad_steps,
            "world_size": self.d.world_size,
            "rng": rng_state(),
            **self.task.export(),
        }

    def _restore(self, state: dict[str, Any]) -> None:
        if state.get("task") != self.task_cls.name:
            raise ckpt_io.CheckpointError(
                f"checkpoint is of task {state.get('task')!r}, not {self.task_cls.name!r}")
        self.task.load_trainable_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batch_in_epoch, self.bad_steps = int(state["batch_in_epoch"]), int(state["bad_steps"])
        if int(state.get("world_size", 1)) == self.d.world_size and self.d.world_size == 1:
            set_rng_state(state["rng"])
        else:  # other ranks / another world size: keep the data position, reseed per rank
            seed_everything(self.rc.seed + 7919 * self.step + self.d.rank)
        if self.d.main:
            _truncate_log(self.expdir / "log.jsonl", self.step)
        log.info("resumed at step %d (epoch %d, batch %d)", self.step, self.epoch, self.batch_in_epoch)

    def save(self) -> Path | None:
        if not self.d.main:
            return None
        path = ckpt_io.save_atomic(self._state(), self.expdir / f"states-{self.step}.ckpt")
        for old in ckpt_io.list_checkpoints(self.expdir)[: -self.rc.max_keep]:
            old.unlink(missing_ok=True)
        log.info("saved %s", path)
        return path

    # -- data
    def _batches(self) -> Iterator[dict[str, Any]]:
        """Endless batches, epoch after epoch, starting at the saved position."""
        ds = self.task.train_dataset()
        dcfg = self.cfg.data
        sampler = BucketBatchSampler(ds.lengths, dcfg.batch_size, dcfg.bucket_size, self.rc.seed,
                                     self.d.rank, self.d.world_size)
        while True:
            sampler.set_epoch(self.epoch, self.batch_in_epoch)
            loader = DataLoader(_Seeded(ds), batch_sampler=sampler, collate_fn=_Collate(self.task),
                                num_workers=self.rc.num_workers, pin_memory=self.device.type == "cuda",
                                generator=torch.Generator().manual_seed(self.rc.seed + self.epoch),
                                persistent_workers=False)
            for batch in loader:
                self.batch_in_epoch += 1
                yield batch
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    # -- one optimizer step
    def _autocast(self) -> Any:
        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _train_step(self, batches: Iterator[dict[str, Any]]) -> tuple[float, dict[str, float], float, bool]:
        """Accumulate ``gradient_accumulate_steps`` micro-batches and step; returns (loss, stats, grad norm, ok)."""
        n = self.rc.gradient_accumulate_steps
        total, stats, audio_sec = 0.0, {}, 0.0
        finite = True
        for k in range(n):
            batch = _to_device(next(batches), self.device)
            if "wav_lengths" in batch:
                audio_sec += float(batch["wav_lengths"].sum()) / 16_000
            sync = k == n - 1 or self.d.world_size == 1
            ctx = self.model.no_sync() if not sync and isinstance(self.model, DistributedDataParallel) else nullcontext()
            with ctx:
                with self._autocast():
                    loss, s = self.model(batch)
                finite &= bool(torch.isfinite(loss.detach()))
                self.scaler.scale(loss / n).backward()
            total += loss.item() / n
            for key, v in s.items():
                stats[key] = stats.get(key, 0.0) + float(v) / n
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.task.parameters() if p.requires_grad]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.rc.gradient_clipping)
        finite &= bool(torch.isfinite(grad_norm))
        flag = torch.tensor([0.0 if finite else 1.0], device=self.device)
        ok = float(_all_reduce_mean(flag, self.d)) == 0.0  # every rank skips together
        if ok:
            self.scaler.step(self.optimizer)
        elif self.scaler.is_enabled():
            self.scaler.step(self.optimizer)  # the scaler sees the inf grads, skips, and lowers its scale
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        stats["audio_sec"] = audio_sec
        return total, stats, float(grad_norm), ok

    # -- the loop
    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stop_signal = signal.Signals(signum).name
        log.warning("%s received: saving after this step", self.stop_signal)

    def fit(self) -> dict[str, Any]:
        """Train to ``runner.total_steps``; returns a summary."""
        rc = self.rc
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        writer = None
        if self.d.main:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.expdir))
        bar = tqdm(total=rc.total_steps, initial=self.step, desc=self.task_cls.name, unit="step",
                   disable=not (self.d.main and rc.progress_bar), dynamic_ncols=True)
        batches = self._batches()
        self.task.train()
        window: dict[str, float] = {}
        count, t_log, speeds, last_loss, saved = 0, time.time(), [], float("nan"), None
        try:
            while self.step < rc.total_steps and self.stop_signal is None:
                loss, stats, grad_norm, ok = self._train_step(batches)
                self.step += 1
                bar.update(1)
                if not ok:
                    self.bad_steps += 1
                    log.warning("step %d: non-finite loss or gradient, step skipped (%d so far)", self.step, self.bad_steps)
                    if self.bad_steps > rc.max_bad_steps:
                        raise BadLossError(
                            f"{self.bad_steps} steps had a non-finite loss or gradient (limit "
                            f"config.runner.max_bad_steps={rc.max_bad_steps}); lower config.optimizer.lr, use "
                            "config.runner.precision=bf16 instead of fp16, or check the data")
                    continue
                last_loss = loss
                for key, v in {"loss": loss, "grad_norm": grad_norm, **stats}.items():
                    window[key] = window.get(key, 0.0) + v
                count += 1
                if self.step % rc.log_step == 0:
                    speeds.append(self._log(window, count, time.time() - t_log, writer, bar))
                    window, count, t_log = {}, 0, time.time()
                if self.step % rc.save_step == 0:
                    saved = self.save()
            if self.step % rc.save_step != 0 or self.stop_signal is not None:
                saved = self.save()
            if self.stop_signal:
                log.warning("stopped by %s at step %d; resume with -e %s", self.stop_signal, self.step, saved)
        finally:
            bar.close()
            if writer is not None:
                writer.close()
            for s, h in old.items():
                signal.signal(s, h)
        return {"step": self.step, "loss": last_loss, "steps_per_sec": sum(speeds) / len(speeds) if speeds else None,
                "checkpoint": str(saved) if saved else None, "bad_steps": self.bad_steps, "stopped_by": self.stop_signal}

    def _log(self, window: dict[str, float], count: int, seconds: float, writer: Any, bar: tqdm) -> float:
        keys = sorted(window)
        values = _all_reduce_mean(torch.tensor([window[k] / max(count, 1) for k in keys], dtype=torch.float64,
                                               device=self.device), self.d).tolist()
        means = dict(zip(keys, values))
        audio = means.pop("audio_sec", 0.0) * count * self.d.world_size
        speed = count / max(seconds, 1e-9)
        if self.d.main:
            lr = self.scheduler.get_last_lr()[0]
            row = {"step": self.step, **means, "lr": lr, "steps_per_sec": speed,
                   "audio_sec_per_sec": audio / max(seconds, 1e-9)}
            if self.scaler.is_enabled():
                row["loss_scale"] = self.scaler.get_scale()
            for k, v in row.items():
                if k != "step":
                    writer.add_scalar(f"train/{k}", v, self.step)
            with open(self.expdir / "log.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            bar.set_postfix(loss=f"{means['loss']:.3f}", lr=f"{lr:.2e}")
        return speed


def train(task_cls: type[PretrainTask], cfg: Any, expdir: Path, resume: Path | None = None) -> dict[str, Any]:
    """Train ``task_cls`` with ``cfg`` in ``expdir`` (resuming from ``resume``); returns a summary."""
    return Trainer(task_cls, cfg, expdir, resume).fit()
