"""One trainer for every pretrain task: DDP, AMP, accumulation, clipping, LR schedule, checkpoints.

The loop (``Trainer.fit`` and ``Trainer.train_step``) is kept plain, in the
spirit of nanoGPT's ``train.py``: draw ``gradient_accumulate_steps``
micro-batches, forward under autocast, backward (``no_sync`` on all but the
last under DDP), unscale, clip, step unless a loss or the gradient is not
finite, log, save.

Exact resume: a checkpoint holds the model, optimizer, scheduler, scaler,
step, data position (epoch, batch) and the RNG states of every rank, and the
batches are a pure function of ``(seed, epoch)``, so ``-e states-N.ckpt``
reproduces an uninterrupted run's losses bit for bit on CPU (with the same
number of processes).

Launch: ``python run_pretrain.py ...`` (one process) or
``torchrun --nproc_per_node G run_pretrain.py ...`` (DDP: NCCL on GPUs,
gloo on CPU). SIGTERM or Ctrl-C saves a checkpoint after the current step
and returns normally; a second Ctrl-C aborts at once (``python -m
s3prl_colld.launch`` instead of ``torchrun`` makes the launcher end quietly too).

Failures keep what was done: a batch that cannot be loaded (on any rank; the
next step's batches are loaded during the current step and the failure is
all-reduced with the step's other flags) stops every rank after the last
completed step, which is saved; a checkpoint that cannot be written (a full
disk) stops every rank with the earlier checkpoints intact.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from s3prl_colld import checkpoint as ckpt_io
from s3prl_colld.config import to_dict
from s3prl_colld.constants import SAMPLE_RATE
from s3prl_colld.data.bucket import BucketBatchSampler, DataLoadError, mix_seed, one_line, seeded_loader
from s3prl_colld.data.late_skip import LateSkip
from s3prl_colld.pretrain.task import PretrainTask, get_task
from s3prl_colld.runtime.precision import autocast, configure_backends, effective_precision
from s3prl_colld.runtime.distributed import DistInfo, all_gather_objects, all_reduce_, setup_distributed, to_device
from s3prl_colld.runtime.optim import build_optimizer, load_optimizer_state
from s3prl_colld.runtime.rng import rng_state, seed_everything, set_rng_state
from s3prl_colld.runtime.step import StepPolicy

log = logging.getLogger(__name__)

# top-level checkpoint keys written by the trainer (a task's checkpoint_extras() must not reuse them)
TRAINER_KEYS = frozenset({"task", "config", "export", "model", "optimizer", "scheduler", "scaler", "step", "epoch",
                          "batch_in_epoch", "bad_steps", "world_size", "rng", "rng_per_rank"})
# log.jsonl keys written by the trainer (a task's stats must not reuse them)
LOG_KEYS = frozenset({"step", "epoch", "loss", "grad_norm", "lr", "steps_per_sec", "audio_sec_per_sec",
                      "loss_scale", "bad_steps"})
# ------------------------------------------------------------------ small helpers
def truncate_log(path: Path, step: int) -> None:
    """Drop ``log.jsonl`` rows past ``step`` (written after the checkpoint a run resumes from)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):  # a line cut short by a kill
            continue
    path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")


@dataclass
class StepResult:
    """One optimizer step. Tensors stay on the device until a log step reads them."""

    loss: torch.Tensor  # [] mean over micro-batches
    stats: dict[str, tuple[torch.Tensor, int]]  # name -> (sum over micro-batches [], how many had it)
    grad_norm: torch.Tensor  # [] before clipping
    audio_sec: torch.Tensor  # [] seconds of audio in the micro-batches (0 without "wav_lengths")
    lr: float  # the learning rate of this step
    updated: bool  # the optimizer stepped
    bad: bool  # a non-finite loss or gradient (not an fp16 overflow the scaler handles)
    stop: bool  # some rank received SIGTERM / SIGINT
    data_error: bool = False  # some rank failed to load the next step's batches


class Meter:
    """Sums over the steps of one logging window, reduced across ranks when logged."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.steps = 0  # every step of the window
        self.updates = 0  # steps whose loss counts (the optimizer stepped)
        self.audio = torch.zeros((), dtype=torch.float64, device=device)
        self.lr = 0.0  # of the window's last step
        self.t0 = time.perf_counter()

    def _add(self, key: str, value: torch.Tensor, count: int = 1) -> None:
        value = value.detach().to(torch.float64)
        self.sums[key] = self.sums[key] + value if key in self.sums else value
        self.counts[key] = self.counts.get(key, 0) + count

    def record(self, r: StepResult) -> None:
        self.steps += 1
        self.audio += r.audio_sec
        self.lr = r.lr
        if not r.updated:
            return
        self.updates += 1
        self._add("loss", r.loss)
        self._add("grad_norm", r.grad_norm)
        for key, (total, count) in r.stats.items():
            self._add(key, total, count)

    def reduce(self, d: DistInfo) -> tuple[dict[str, float], float]:
        """(means over the window and all ranks, audio seconds of all ranks). Collective under DDP."""
        keys = sorted(set().union(*all_gather_objects(sorted(self.sums), d)))
        zero = torch.zeros((), dtype=torch.float64, device=self.device)
        sums = torch.stack([self.sums.get(k, zero) for k in keys] + [self.audio])
        counts = torch.tensor([self.counts.get(k, 0) for k in keys], dtype=torch.float64, device=self.device)
        packed = all_reduce_(torch.cat([sums, counts]), d).tolist()
        n = len(keys)
        means = {k: packed[i] / packed[n + 1 + i] for i, k in enumerate(keys) if packed[n + 1 + i] > 0}
        return means, packed[n]


# ------------------------------------------------------------------ the trainer
class Trainer:
    """Trains one task (see the module docstring); ``fit()`` runs to ``runner.total_steps``.

    Args:
        task_cls: a registered ``PretrainTask`` subclass.
        cfg: its ``Config`` instance (validated).
        expdir: the run folder (checkpoints, ``log.jsonl``, TensorBoard events).
        resume: a ``states-STEP.ckpt`` to continue from exactly.
    """

    def __init__(self, task_cls: type[PretrainTask], cfg: Any, expdir: Path, resume: Path | None = None) -> None:
        self.task_cls, self.cfg, self.expdir = task_cls, cfg, Path(expdir)
        self.rc = cfg.runner
        self.dist, self.device = setup_distributed(self.rc.device)
        try:
            self._build(resume)
        except BaseException:
            self.close()
            raise

    def _build(self, resume: Path | None) -> None:
        """Prepare (rank 0), build the task, DDP wrapper, optimizer, schedule, scaler, data; restore ``resume``."""
        task_cls, cfg = self.task_cls, self.cfg
        self.precision = effective_precision(self.rc.precision, self.device)
        state = ckpt_io.load(resume) if resume is not None else None
        if state is not None and state.get("task") != task_cls.name:
            raise ckpt_io.CheckpointError(f"{resume} is a checkpoint of task {state.get('task')!r}, not {task_cls.name!r}")
        self._prepare()

        seed_everything(self.rc.seed)  # the same initial weights on every rank
        self.task = task_cls(cfg, self.expdir).to(self.device)
        if state is not None:
            self.task.load_trainable_state_dict(state["model"])
        configure_backends(self.rc, self.device)
        if self.rc.compile:
            self.task.compile_modules()
        named = [(n, p) for n, p in self.task.named_parameters() if p.requires_grad]
        self.params = [p for _, p in named]
        self.model: torch.nn.Module = self.task
        if self.dist.ddp:
            self.model = DistributedDataParallel(
                self.task, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.rc.find_unused_parameters)
        self.optimizer = build_optimizer(named, cfg.optimizer, self.device)
        self.policy = StepPolicy(self.optimizer, cfg.optimizer, self.rc.total_steps, self.rc.gradient_clipping,
                                 self.rc.max_bad_steps, self.precision, self.device,
                                 f"the last good checkpoint is in {self.expdir}")

        self.dataset = self.task.train_dataset()
        if not hasattr(self.dataset, "lengths"):
            raise TypeError(f"{task_cls.__name__}.train_dataset() must have .lengths (samples per item) for bucketing")
        self.collate = self.task.collate
        if getattr(cfg.data, "on_bad_audio", "error") == "skip":  # a file that fails to decode later is dropped too
            inner = getattr(self.dataset, "dataset", self.dataset)  # a CropReader's AudioDataset
            skip = LateSkip(getattr(inner, "cache_name", None))
            self.dataset, self.collate = skip.dataset(self.dataset), skip.collate(self.collate)
        d = cfg.data
        self.sampler = BucketBatchSampler(self.dataset.lengths, d.batch_size, d.bucket_size, self.rc.seed,
                                          self.dist.rank, self.dist.world_size)

        self.step = self.epoch = self.batch_in_epoch = 0
        self.stop_signal: str | None = None
        self.last_saved_step: int | None = None
        self._pending: list[tuple[dict[str, Any], int, int]] = []  # the next step's micro-batches
        self._data_error: str | None = None
        self._data_exception: BaseException | None = None
        if state is None:
            seed_everything(self.rc.seed + self.dist.rank)  # per-rank randomness (masks, noise) from here on
            if self.dist.main:
                truncate_log(self.expdir / "log.jsonl", 0)  # rows of an earlier attempt that never saved
        else:
            self._restore(state, resume)

    # ---------------------------------------------------------------- set-up
    def _prepare(self) -> None:
        """Rank 0 runs ``task_cls.prepare``; every rank waits, and fails too if it failed."""
        error: BaseException | None = None
        if self.dist.main:
            self.expdir.mkdir(parents=True, exist_ok=True)
            for tmp in ckpt_io.remove_stale_temp_files(self.expdir):
                log.warning("removed %s, left by a save that was interrupted", tmp)
            try:
                self.task_cls.prepare(self.cfg, self.expdir)
            except BaseException as err:  # noqa: BLE001 - re-raised below, after telling the other ranks
                error = err
        failed = all_reduce_(torch.tensor([error is not None], dtype=torch.float32, device=self.device),
                             self.dist, dist.ReduceOp.MAX)  # also the barrier
        if error is not None:
            raise error
        if float(failed) > 0:
            raise RuntimeError("rank 0 failed in prepare(); see its log")

    def _restore(self, state: dict[str, Any], path: Path | None) -> None:
        """Optimizer, scheduler, scaler, counters, data position and RNG states from a checkpoint."""
        load_optimizer_state(self.optimizer, state["optimizer"])
        self.policy.load_state_dict(state)
        self.step, self.epoch, self.batch_in_epoch = int(state["step"]), int(state["epoch"]), int(state["batch_in_epoch"])
        self.last_saved_step = self.step  # that checkpoint exists
        saved_world = int(state.get("world_size", 1))
        if saved_world == self.dist.world_size:
            rngs = state.get("rng_per_rank") or [state["rng"]]
            set_rng_state(rngs[self.dist.rank], self.device)
        else:
            log.warning("%s was written by %d processes, this run has %d: training continues from the same "
                        "point of the epoch, but not with exactly the same batches and random draws",
                        path, saved_world, self.dist.world_size)
            self.batch_in_epoch = self.batch_in_epoch * saved_world // self.dist.world_size
            seed_everything(mix_seed(self.rc.seed, self.step, self.dist.rank))
        if self.dist.main:
            truncate_log(self.expdir / "log.jsonl", self.step)
            later = [p for p in ckpt_io.list_checkpoints(self.expdir) if (ckpt_io.step_of(p) or 0) > self.step]
            if later:
                log.warning("%s has checkpoints past step %d (%s): they will be overwritten as the run reaches them",
                            self.expdir, self.step, ", ".join(p.name for p in later))
        log.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.step, self.epoch, self.batch_in_epoch)

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self, rngs: list[dict[str, Any]]) -> dict[str, Any]:
        """The checkpoint: plain values and tensors only (see ``checkpoint.py``)."""
        extra = self.task.checkpoint_extras()
        clash = TRAINER_KEYS & set(extra)
        if clash:
            raise ValueError(f"{self.task_cls.__name__}.checkpoint_extras() reuses trainer checkpoint keys: {sorted(clash)}")
        state = {
            "task": self.task_cls.name,
            "config": to_dict(self.cfg),
            "export": self.task.export_section(),
            "model": self.task.trainable_state_dict(),
            "optimizer": self.optimizer.state_dict(),
            **self.policy.state_dict(),  # scheduler, scaler, bad_steps
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "world_size": self.dist.world_size,
            "rng": rngs[0],
        }
        if self.dist.ddp:
            state["rng_per_rank"] = rngs
        return {**state, **extra}

    def save(self) -> Path:
        """Write ``states-STEP.ckpt`` (rank 0; every rank must call it: the RNG states are gathered)."""
        rngs = all_gather_objects(rng_state(self.device), self.dist)
        path = self.expdir / f"states-{self.step}.ckpt"
        error: ckpt_io.CheckpointError | None = None
        if self.dist.main:
            try:
                ckpt_io.save_atomic(self.state_dict(rngs), path)
            except ckpt_io.CheckpointError as err:  # e.g. a full disk: the earlier checkpoints are kept
                error = err
            else:
                older = [p for p in ckpt_io.list_checkpoints(self.expdir) if (ckpt_io.step_of(p) or 0) <= self.step]
                for old in older[: -self.rc.max_keep]:
                    old.unlink(missing_ok=True)
                log.info("saved %s", path)
        if self.dist.ddp:  # every rank stops if rank 0 could not save
            failed = all_reduce_(torch.tensor([error is not None], dtype=torch.float32, device=self.device),
                                 self.dist, dist.ReduceOp.MAX)
            if error is None and float(failed) > 0:
                error = ckpt_io.CheckpointError(f"rank 0 could not write {path}; see its error")
        if error is not None:
            raise error
        self.last_saved_step = self.step
        return path

    # ---------------------------------------------------------------- data
    def batches(self) -> Iterator[tuple[dict[str, Any], int, int]]:
        """Endless ``(batch, epoch, batches of the epoch used once it is used)``, from the current data position.

        The trainer's data position (``epoch``, ``batch_in_epoch``, saved in
        checkpoints) moves when a batch is used, not when it is loaded, so
        loading ahead never skips data on resume.
        """
        epoch, k = self.epoch, self.batch_in_epoch
        while True:
            self.sampler.set_epoch(epoch, k)
            if len(self.sampler) > 0:
                loader = seeded_loader(self.dataset, self.sampler, self.collate, self.rc.num_workers,
                                       pin_memory=self.device.type == "cuda")
                for batch in loader:
                    k += 1
                    yield batch, epoch, k
            epoch, k = epoch + 1, 0

    def _fetch(self, batches: Iterator[tuple[dict[str, Any], int, int]]) -> bool:
        """Load the next step's micro-batches into ``_pending``; False (and ``_data_error`` set) if loading failed."""
        try:
            self._pending = [next(batches) for _ in range(self.rc.gradient_accumulate_steps)]
        except Exception as err:  # noqa: BLE001 - any data error: reported as one line, after a checkpoint
            self._pending, self._data_error = [], one_line(err)
            self._data_exception = err
            return False
        return True

    # ---------------------------------------------------------------- one step
    def train_step(self, batches: Iterator[tuple[dict[str, Any], int, int]], fetch_next: bool = True) -> StepResult:
        """Accumulate ``gradient_accumulate_steps`` micro-batches, then step (or skip, on non-finite values).

        The step uses the micro-batches loaded by the previous one (``_pending``;
        the first are loaded by ``fit``) and, with ``fetch_next``, loads the
        next step's before the flags are reduced. One host sync per step: the
        all-reduced flags (non-finite loss, non-finite gradient, stop signal,
        data error) that every rank acts on alike.
        """
        n = self.rc.gradient_accumulate_steps
        dev = self.device
        loss_sum = torch.zeros((), device=dev)
        audio = torch.zeros((), dtype=torch.float64, device=dev)
        stats: dict[str, tuple[torch.Tensor, int]] = {}
        micro, self._pending = self._pending, []
        for k, (batch, epoch, position) in enumerate(micro):
            self.epoch, self.batch_in_epoch = epoch, position  # the data position moves as batches are used
            batch = to_device(batch, dev)
            ddp = isinstance(self.model, DistributedDataParallel)
            with self.model.no_sync() if ddp and k < n - 1 else nullcontext():  # DDP syncs the last micro-batch
                with autocast(self.precision, dev):
                    loss, step_stats = self.model(batch)
                if loss.dim() != 0:
                    raise ValueError(f"{self.task_cls.__name__}.forward must return a scalar loss, got {tuple(loss.shape)}")
                self.policy.backward(loss.float() / n)
            loss_sum += loss.detach().float()
            for key, value in step_stats.items():
                self._add_stat(stats, key, value)
            if "wav_lengths" in batch:
                audio += batch["wav_lengths"].sum() / SAMPLE_RATE

        data_ok = self._fetch(batches) if fetch_next else True
        data_bad = torch.zeros((), device=dev)

        def reduce(flags: torch.Tensor) -> torch.Tensor:  # the data flag travels with the step's flags: one reduce
            both = all_reduce_(torch.cat([flags, torch.tensor([float(not data_ok)], device=dev)]), self.dist,
                               dist.ReduceOp.MAX)
            data_bad.copy_(both[-1])
            return both[:-1]

        out = self.policy.step(loss_sum, self.stop_signal is not None, reduce)
        return StepResult(loss_sum / n, stats, out.grad_norm, audio, out.lr, out.updated, out.bad, out.stop,
                          data_error=bool(data_bad > 0))

    def _add_stat(self, stats: dict[str, tuple[torch.Tensor, int]], key: str, value: Any) -> None:
        """Accumulate one micro-batch's stat ``key`` (a scalar tensor or number)."""
        if key in LOG_KEYS:
            raise ValueError(f"{self.task_cls.__name__}.forward returned a stat named {key!r}, which the trainer "
                             f"logs itself; rename it (reserved: {', '.join(sorted(LOG_KEYS))})")
        value = torch.as_tensor(value).detach()
        if value.numel() != 1:
            raise ValueError(f"stat {key!r} must be a scalar, got shape {tuple(value.shape)}")
        value = value.reshape(()).to(self.device, torch.float32)
        total, count = stats.get(key, (torch.zeros((), device=self.device), 0))
        stats[key] = (total + value, count + 1)

    # ---------------------------------------------------------------- the loop
    def fit(self) -> dict[str, Any]:
        """Train to ``runner.total_steps`` (or a stop signal); returns a summary.

        A data error (a batch that cannot be loaded, on any rank) stops every
        rank after the last completed step, saves it, and raises
        ``DataLoadError`` with a one-line message.

        Returns:
            ``{"step", "epoch", "loss" (mean over all ranks of the steps since
            the previous log row, or of that row: what ``log.jsonl`` shows),
            "steps_per_sec" (mean over this call), "checkpoint" (path of the
            last save), "bad_steps", "stopped_by" (signal name or None)}``.
        """
        rc = self.rc
        # TensorBoard events in the run folder (rank 0); those past the current step (an earlier attempt's) are purged
        writer = None
        if self.dist.main:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when training

            writer = SummaryWriter(str(self.expdir), purge_step=self.step + 1)
        bar = tqdm(total=rc.total_steps, initial=self.step, desc=self.task_cls.name, unit="step",
                   disable=not (self.dist.main and rc.progress_bar), dynamic_ncols=True)
        batches = self.batches()
        meter, stopped = Meter(self.device), None
        self.last_means: dict[str, float] = {}
        first_step, t_start = self.step, time.perf_counter()
        self.task.train()
        try:
            with self._signal_handlers():
                data_bad = self.step < rc.total_steps and not self._fetch(batches)
                data_bad = bool(float(all_reduce_(torch.tensor([float(data_bad)], device=self.device), self.dist,
                                                  dist.ReduceOp.MAX)) > 0)
                while self.step < rc.total_steps and not data_bad:
                    result = self.train_step(batches, fetch_next=self.step + 1 < rc.total_steps)
                    self.step += 1
                    bar.update(1)
                    meter.record(result)
                    if result.bad:
                        self.policy.count_bad(self.step)
                    if self.step % rc.log_step == 0:
                        self._log(meter, writer, bar)
                        meter = Meter(self.device)
                    if result.stop:
                        stopped = self.stop_signal or "a signal to another rank"
                        break
                    data_bad = result.data_error
                    if self.step % rc.save_step == 0 or (data_bad and self.step > 0):
                        self.save()
                if self.last_saved_step != self.step and self.step > 0:
                    self.save()
                if meter.updates > 0:  # the steps since the last log row (the same count on every rank)
                    self.last_means = meter.reduce(self.dist)[0]
        finally:
            batches.close()  # shuts the data-loader workers down
            bar.close()
            if writer is not None:
                writer.close()
        if data_bad:
            self._raise_data_error()
        if stopped and self.dist.main:
            log.warning("saved states-%d.ckpt after %s; resume with -e %s", self.step, stopped,
                        self.expdir / f"states-{self.step}.ckpt")
        if self.dist.ddp:
            dist.barrier()  # the last checkpoint exists when any rank returns
        seconds = time.perf_counter() - t_start
        return {
            "step": self.step,
            "epoch": self.epoch,
            "loss": self.last_means.get("loss"),
            "steps_per_sec": (self.step - first_step) / seconds if seconds > 0 else None,
            "checkpoint": str(self.expdir / f"states-{self.last_saved_step}.ckpt"),
            "bad_steps": self.policy.bad_steps,
            "stopped_by": stopped,
        }

    def _raise_data_error(self) -> None:
        """Every rank: raise one ``DataLoadError`` naming the first failing rank's error and the checkpoint kept."""
        errors = all_gather_objects(self._data_error, self.dist)
        rank, message = next((r, e) for r, e in enumerate(errors) if e is not None)
        where = f" on rank {rank}" if self.dist.ddp else ""
        if self.last_saved_step:
            saved = self.expdir / f"states-{self.last_saved_step}.ckpt"
            kept = f"states-{self.last_saved_step}.ckpt (step {self.last_saved_step}) is saved; resume with -e {saved}"
        else:
            kept = "no step was completed, nothing to save"
        err = DataLoadError(f"loading the batches of step {self.step + 1} failed{where}: {message}. "
                            f"{kept} once the data is fixed (config.data.on_bad_audio=skip leaves bad files out)")
        raise err from self._data_exception

    def _log(self, meter: Meter, writer: Any, bar: tqdm) -> None:
        """One ``log.jsonl`` row + TensorBoard scalars (rank 0), over the window's updated steps and all ranks."""
        if meter.updates == 0:  # every step of the window was skipped (the same on every rank)
            return
        means, audio = meter.reduce(self.dist)
        self.last_means = dict(means)
        if not self.dist.main:
            return
        seconds = max(time.perf_counter() - meter.t0, 1e-9)
        row: dict[str, Any] = {"step": self.step, "epoch": self.epoch, "loss": means.pop("loss"),
                               "grad_norm": means.pop("grad_norm"), **means,
                               "lr": meter.lr, "steps_per_sec": meter.steps / seconds,
                               "bad_steps": self.policy.bad_steps}
        if audio > 0:
            row["audio_sec_per_sec"] = audio / seconds
        if self.policy.scaler.is_enabled():
            row["loss_scale"] = self.policy.scaler.get_scale()
        with open(self.expdir / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if writer is not None:
            for key, value in row.items():
                if key not in ("step", "epoch"):
                    writer.add_scalar(f"train/{key}", value, self.step)
        summary = self.task.log_summary(self.step, means)  # e.g. accuracy against chance (may warn)
        if bar.disable:
            log.info("step %d/%d loss %.4f lr %.2e %.2f steps/s%s", self.step, self.rc.total_steps, row["loss"],
                     row["lr"], row["steps_per_sec"], f" | {summary}" if summary else "")
        else:
            bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}", **({"obj": summary} if summary else {}),
                            refresh=False)

    @contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        """SIGTERM / SIGINT set ``stop_signal``: the loop saves after the current step and returns."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: abort without saving
        self.stop_signal = name
        log.warning("%s received: saving a checkpoint after step %d, then stopping (Ctrl-C again aborts)",
                    name, self.step + 1)

    def close(self) -> None:
        """Destroy the process group if this trainer created it."""
        if self.dist.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def train(task: str | type[PretrainTask], cfg: Any, expdir: Path, resume: Path | None = None) -> dict[str, Any]:
    """Train ``task`` (a registered name or class) with ``cfg`` in ``expdir``, resuming from ``resume``.

    Returns ``Trainer.fit``'s summary (final step, last loss, mean steps/s, checkpoint path, ...).
    """
    task_cls = get_task(task) if isinstance(task, str) else task
    trainer = Trainer(task_cls, cfg, Path(expdir), resume)
    try:
        return trainer.fit()
    finally:
        trainer.close()
