"""The shared trainer on the toy task: learning, exact resume, DDP (gloo), AMP, NaN guard, signals, checkpoints, CLI."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from process_group import popen_group, run_group, slow_toy_worker
from s3prl_colld import checkpoint as ckpt_io
from s3prl_colld.config import from_dict, load_yaml
from s3prl_colld.data.bucket import BucketBatchSampler, crop_spans, mix_seed, pad_batch
from s3prl_colld.pretrain.cli import main, resolve_config
from s3prl_colld.pretrain.task import get_task
from s3prl_colld.pretrain.trainer import Meter, StepResult, train
from s3prl_colld.runtime.distributed import DistInfo
from s3prl_colld.runtime.optim import OptimizerConfig, lr_factor
from s3prl_colld.runtime.rng import rng_state, set_rng_state
from s3prl_colld.runtime.step import BadLossError

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
TOY = "toy_regression"


def _run(expdir: Path, *extra: str, override: str = "") -> int:
    args = ["-u", TOY, "-p", str(expdir), *extra]
    if override:
        args += ["-o", override]
    return main(args)


def _log(expdir: Path) -> list[dict]:
    return [json.loads(x) for x in (expdir / "log.jsonl").read_text().splitlines() if x.strip()]


def _losses(expdir: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in _log(expdir)]


# ---------------------------------------------------------------- training and checkpoints
def test_loss_falls_and_checkpoint_is_plain(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert _run(run, override="config.runner.total_steps=40") == 0
    rows = _log(run)
    losses = [r["loss"] for r in rows]
    assert [r["step"] for r in rows] == list(range(1, 41))
    assert sum(losses[-5:]) < 0.6 * sum(losses[:5])
    for key in ("grad_norm", "lr", "steps_per_sec", "audio_sec_per_sec", "masked_loss", "target_rms"):
        assert all(math.isfinite(r[key]) for r in rows), key
    assert [p.name for p in ckpt_io.list_checkpoints(run)] == ["states-30.ckpt", "states-40.ckpt"]  # max_keep 2

    state = torch.load(run / "states-40.ckpt", weights_only=True)
    assert state["task"] == TOY and state["step"] == 40 and state["bad_steps"] == 0
    assert state["epoch"] == 3 and state["batch_in_epoch"] == 4  # 12 batches per epoch
    assert set(state["model"]) == set(get_task(TOY)(from_dict(get_task(TOY).Config, state["config"]), run)
                                      .student.state_dict())  # the student only, not the frozen teacher
    assert state["toy_model_config"]["channels"] == 16  # task.checkpoint_extras() at the top level
    assert state["export"] == {"upstreams": [], "modules": {}}  # the toy task exports no module
    assert state["scaler"] is None and isinstance(state["optimizer"]["state"], dict)
    # the RNG states round-trip
    set_rng_state(state["rng"], torch.device("cpu"))
    assert isinstance(random.getstate()[1], tuple)
    again = rng_state(torch.device("cpu"))
    assert again["python"] == state["rng"]["python"] and torch.equal(again["torch"], state["rng"]["torch"])
    assert torch.equal(again["numpy"]["key"], state["rng"]["numpy"]["key"])
    # config.yaml is the resolved config, valid as it stands
    cfg = from_dict(get_task(TOY).Config, load_yaml(run / "config.yaml"))
    assert cfg.runner.total_steps == 40 and cfg.model.channels == 16


@pytest.mark.parametrize("accumulate", [1, 2])
def test_resume_reproduces_the_uninterrupted_losses(tmp_path: Path, accumulate: int) -> None:
    """Run 3N steps; run N, resume from states-N for 2N more: the per-step losses are equal, bit for bit.

    The schedule is constant after warm-up, so the N-step run's lr does not depend on total_steps
    (the DDP test and the rewind test resume under linear decay).
    """
    full, part = tmp_path / "full", tmp_path / "part"
    steps = 24 if accumulate == 1 else 12  # 12 batches per epoch: both runs cross epochs after the resume point
    common = (f"config.runner.gradient_accumulate_steps={accumulate},,config.runner.max_keep=5,,"
              "config.optimizer.decay=constant")
    assert _run(full, override=f"{common},,config.runner.total_steps={steps},,config.runner.save_step=100") == 0
    assert _run(part, override=f"{common},,config.runner.total_steps={steps // 3},,config.runner.save_step=100") == 0
    first = _losses(part)
    assert first == _losses(full)[: steps // 3]
    resume = part / f"states-{steps // 3}.ckpt"
    assert torch.load(resume, weights_only=True)["batch_in_epoch"] == accumulate * steps // 3  # micro-batches
    assert _run(part, "-e", str(resume), override=f"config.runner.total_steps={steps}") == 0
    assert _losses(part) == _losses(full)  # exact float equality, every step
    a = torch.load(full / f"states-{steps}.ckpt", weights_only=True)["model"]
    b = torch.load(part / f"states-{steps}.ckpt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_from_an_earlier_checkpoint_rewinds_the_log(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert _run(run, override="config.runner.total_steps=8,,config.runner.save_step=4") == 0
    before = _losses(run)
    assert _run(run, "-e", str(run / "states-4.ckpt")) == 0
    assert _losses(run) == before  # rows 5-8 were dropped, then rewritten identically


def test_losses_do_not_depend_on_num_workers(tmp_path: Path) -> None:
    for workers in (0, 2):
        assert _run(tmp_path / f"w{workers}", override=f"config.runner.total_steps=5,,config.runner.num_workers={workers}") == 0
    assert _losses(tmp_path / "w0") == _losses(tmp_path / "w2")


def test_train_api_returns_a_summary(tmp_path: Path) -> None:
    task = get_task(TOY)
    cfg = resolve_config(task, overrides="config.runner.total_steps=3,,config.runner.precision=bf16")  # CPU autocast
    summary = train(TOY, cfg, tmp_path / "api")
    assert summary["step"] == 3 and math.isfinite(summary["loss"]) and summary["steps_per_sec"] > 0
    assert summary["checkpoint"] == str(tmp_path / "api" / "states-3.ckpt") and summary["stopped_by"] is None


def test_fp16_on_cpu_falls_back_to_fp32(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = resolve_config(get_task(TOY), overrides="config.runner.total_steps=2,,config.runner.precision=fp16")
    summary = train(TOY, cfg, tmp_path / "fp16")
    assert summary["step"] == 2 and "fp16 needs a GPU" in caplog.text


def test_fp16_overflows_are_left_to_the_scaler_but_nan_losses_count(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU fp16 path, run on CPU (torch's CPU GradScaler): a too-large initial loss scale overflows for a few
    steps, which the scaler skips without counting them as bad; a NaN loss is a bad step."""
    from functools import partial

    from s3prl_colld.pretrain import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "effective_precision", lambda precision, device: precision)
    monkeypatch.setattr(torch.amp, "GradScaler", partial(torch.amp.GradScaler, init_scale=2.0**24))
    cfg = resolve_config(get_task(TOY), overrides="config.runner.total_steps=12,,config.runner.precision=fp16,,"
                                                  "config.runner.max_bad_steps=1,,config.model.nan_steps=[9]")
    summary = train(TOY, cfg, tmp_path / "fp16")
    rows = _log(tmp_path / "fp16")
    assert summary["bad_steps"] == 1 and rows[-1]["bad_steps"] == 1
    skipped = sorted(set(range(1, 13)) - {r["step"] for r in rows})
    assert skipped[-1] == 9 and len(skipped) >= 3  # overflow steps first, then the NaN step
    scale = {r["step"]: r["loss_scale"] for r in rows}
    assert scale[8] < 2.0**24 and scale[10] == scale[8] / 2  # the NaN step also backs the scale off
    state = torch.load(tmp_path / "fp16" / "states-12.ckpt", weights_only=True)
    assert state["scaler"]["scale"] == scale[12]
    assert math.isfinite(summary["loss"])


def test_existing_run_refuses_without_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path / "r", override="config.runner.total_steps=2") == 0
    capsys.readouterr()
    assert _run(tmp_path / "r") == 2
    err = capsys.readouterr().err
    assert f"-e {tmp_path / 'r' / 'states-2.ckpt'}" in err and "new -n" in err


def test_non_finite_losses_are_skipped_then_abort(tmp_path: Path) -> None:
    run = tmp_path / "a"
    assert _run(run, override="config.runner.total_steps=6,,config.runner.save_step=3,,config.model.nan_steps=[2, 3]") == 0
    assert [s for s, _ in _losses(run)] == [1, 4, 5, 6]  # skipped steps are not logged
    assert all(math.isfinite(v) for _, v in _losses(run))
    assert [p.name for p in ckpt_io.list_checkpoints(run)] == ["states-3.ckpt", "states-6.ckpt"]  # saved at a bad step
    assert torch.load(run / "states-6.ckpt", weights_only=True)["bad_steps"] == 2
    with pytest.raises(BadLossError, match="2 steps had a non-finite loss.*lower config.optimizer.lr"):
        _run(tmp_path / "b", override="config.runner.total_steps=6,,config.runner.max_bad_steps=1,,"
                                      "config.model.nan_steps=[1, 2, 3]")


def test_meter_averages_stats_over_the_batches_that_have_them() -> None:
    meter = Meter(torch.device("cpu"))
    one = torch.tensor(1.0)
    for stats in ({"a": (one * 2, 2)}, {"a": (one * 4, 1), "b": (one * 3, 1)}):
        meter.record(StepResult(one, stats, one, torch.tensor(0.5, dtype=torch.float64), 1e-3, True, False, False))
    meter.record(StepResult(one * float("nan"), {}, one, torch.tensor(0.5, dtype=torch.float64), 1e-3, False, True, False))
    means, audio = meter.reduce(DistInfo())
    assert means == {"a": 2.0, "b": 3.0, "loss": 1.0, "grad_norm": 1.0} and audio == 1.5
    assert meter.steps == 3 and meter.updates == 2


def test_lr_schedule() -> None:
    cfg = OptimizerConfig(lr=1.0, warmup_steps=4, decay="linear", final_lr_ratio=0.1)
    assert [lr_factor(s, 14, cfg) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(14, 14, cfg) == pytest.approx(0.1) and lr_factor(9, 14, cfg) == pytest.approx(0.55)
    cos = OptimizerConfig(warmup_steps=0, decay="cosine", final_lr_ratio=0.0)
    assert lr_factor(0, 10, cos) == 1.0 and lr_factor(5, 10, cos) == pytest.approx(0.5) and lr_factor(10, 10, cos) == 0.0
    assert lr_factor(7, 10, OptimizerConfig(warmup_steps=0, decay="constant")) == 1.0


# ---------------------------------------------------------------- CLI
@pytest.mark.parametrize("argv, needle", [
    (["-u", "toy_regresion", "-n", "x"], "Did you mean toy_regression?"),
    (["-u", "toy_regression", "-n", "x", "-o", "config.runner.total_step=3"],
     "unknown config key config.runner.total_step. Did you mean config.runner.total_steps? Valid keys of config.runner:"),
    (["-u", "toy_regression", "-n", "x", "-o", "config.model.chanels=3"], "Did you mean config.model.channels?"),
    (["-u", "toy_regression", "-n", "x", "-o", "config.runner.precision=fp8"], "fp32, bf16, fp16"),
    (["-u", "toy_regression", "-n", "x", "-o", "config.runner.total_steps=abc"], "expected an integer"),
    (["-u", "toy_regression", "-n", "x", "-g", "missing.yaml"], "config file not found: missing.yaml"),
    (["-u", "toy_regression", "-n", "x", "-e", "nope.ckpt"], "checkpoint not found: nope.ckpt"),
])
def test_cli_mistakes_are_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and err.startswith("run_pretrain.py: error: ")
    assert not (tmp_path / "result").exists() or not list((tmp_path / "result").rglob("*.ckpt"))


def test_cli_error_in_a_subprocess(tmp_path: Path) -> None:
    """The real entry point: exit code 2, one line on stderr, no traceback, nothing written."""
    proc = subprocess.run([sys.executable, str(REPO / "run_pretrain.py"), "-u", "toy_regresion", "-n", "x"],
                          cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "Traceback" not in proc.stderr
    assert "unknown pretrain task 'toy_regresion'. Did you mean toy_regression? Available tasks: " in proc.stderr
    assert not (tmp_path / "result").exists()


def test_default_run_folder_is_relative_to_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["-u", TOY, "-n", "named", "-o", "config.runner.total_steps=1"]) == 0
    assert (tmp_path / "result" / "pretrain" / "named" / "states-1.ckpt").is_file()


# ---------------------------------------------------------------- data
def test_sampler_is_deterministic_bucketed_sharded_and_resumable() -> None:
    lengths = [1000 + 10 * ((i * 7) % 37) for i in range(37)]
    a = BucketBatchSampler(lengths, 4, 8, seed=3)
    a.set_epoch(2)
    batches = list(a)
    assert sorted(i for b in batches for i, _ in b) == list(range(37))  # every item once
    again = BucketBatchSampler(lengths, 4, 8, seed=3)
    again.set_epoch(2)
    assert list(again) == batches  # a pure function of (seed, epoch)
    again.set_epoch(3)
    assert list(again) != batches
    a.set_epoch(2, start_batch=3)
    assert list(a) == batches[3:] and len(a) == len(batches) - 3
    for batch in batches:  # similar lengths: from one window of 8 length-sorted items
        ls = sorted(lengths[i] for i, _ in batch)
        assert sum(1 for x in lengths if ls[0] < x < ls[-1]) <= 8
        assert len({s for _, s in batch}) == 1  # one seed per batch
    assert len({b[0][1] for b in batches}) == len(batches)  # distinct seeds
    shards = []
    for rank in range(3):
        s = BucketBatchSampler(lengths, 4, 8, seed=3, rank=rank, world_size=3)
        s.set_epoch(2)
        shards.append(list(s))
    assert len({len(x) for x in shards}) == 1  # every rank the same number of batches
    items = [i for shard in shards for b in shard for i, _ in b]
    assert set(items) == set(range(37))


def test_tiny_data_still_gives_every_rank_a_batch() -> None:
    for rank in range(4):
        s = BucketBatchSampler([100, 200], 8, 64, seed=0, rank=rank, world_size=4)
        assert len(list(s)) == 1


def test_crops_are_aligned_and_padding_keeps_lengths() -> None:
    gen = torch.Generator().manual_seed(0)
    lengths = [50_000, 20_000, 3_000]
    for _ in range(20):
        spans = crop_spans(lengths, 16_000, 32_000, 320, gen)
        span = spans[0][1] - spans[0][0]
        assert 16_000 <= span <= 32_000 and span % 320 == 0
        for (s, e), n in zip(spans, lengths):
            assert s % 320 == 0 and 0 <= s < e <= n
        assert spans[2] == (0, 3_000)  # shorter than the crop: kept whole
    wavs = [torch.randn(n) for n in lengths]
    padded, lens = pad_batch(wavs)
    assert padded.shape == (3, 50_000) and lens.tolist() == lengths
    assert torch.equal(padded[2, :3_000], wavs[2]) and not padded[2, 3_000:].any()


def test_mix_seed_separates_tuples() -> None:
    seeds = {mix_seed(1337, e, k, r) for e in range(3) for k in range(200) for r in range(2)}
    assert len(seeds) == 3 * 200 * 2 and all(0 <= s < 2**63 for s in seeds)


# ---------------------------------------------------------------- processes: DDP, SIGTERM, kill
DDP_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    import torch, torch.distributed as dist
    from s3prl_colld.pretrain.cli import resolve_config
    from s3prl_colld.pretrain.task import get_task
    from s3prl_colld.pretrain.trainer import Trainer

    out = Path(sys.argv[1])
    task = get_task("toy_regression")
    cfg = resolve_config(task, overrides="config.runner.total_steps=6,,config.runner.save_step=3,,"
                                         "config.runner.max_keep=5,,config.runner.device=cpu")
    full = Trainer(task, cfg, out / "full")  # initialises the gloo process group from torchrun's env
    full.fit()
    rank = dist.get_rank()
    torch.save(full.task.student.state_dict(), out / f"full-rank{rank}.pt")
    part = Trainer(task, cfg, out / "part", resume=out / "full" / "states-3.ckpt")
    part.fit()
    torch.save(part.task.student.state_dict(), out / f"part-rank{rank}.pt")
    full.close()
""")


def test_two_process_gloo_ddp(tmp_path: Path) -> None:
    """torchrun, 2 CPU processes: ranks stay identical, and a DDP resume reproduces the losses exactly."""
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    # --standalone: torchrun binds a free port itself (no race between probing a port and binding it)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(tmp_path)]
    proc = run_group(cmd, timeout=300, cwd=tmp_path, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(tmp_path / "full" / "states-6.ckpt", weights_only=True)
    assert state["world_size"] == 2 and state["step"] == 6 and len(state["rng_per_rank"]) == 2
    assert not torch.equal(state["rng_per_rank"][0]["torch"], state["rng_per_rank"][1]["torch"])  # per-rank masks
    r0, r1 = (torch.load(tmp_path / f"full-rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(r0[k], r1[k]) for k in r0)  # DDP kept the replicas identical
    assert all(torch.equal(r0[k], state["model"][k]) for k in r0)
    full, part = _losses(tmp_path / "full"), _losses(tmp_path / "part")
    assert [s for s, _ in full] == list(range(1, 7)) and part == full[3:]
    p0 = torch.load(tmp_path / "part-rank1.pt", weights_only=True)
    assert all(torch.equal(p0[k], r0[k]) for k in r0)


def test_sigterm_saves_and_resumes(tmp_path: Path) -> None:
    """SIGTERM mid-run saves a checkpoint; resuming from it gives the losses of an uninterrupted run, bit for bit.

    Every run is a subprocess with the same environment (one thread), and the lr is constant after warm-up so
    that it does not depend on total_steps.
    """
    script = slow_toy_worker(tmp_path / "slow.py")
    run, ref = tmp_path / "run", tmp_path / "ref"
    const = "config.optimizer.decay=constant,,config.runner.save_step=100000"
    with popen_group([sys.executable, str(script), "-u", TOY, "-p", str(run), "-o",
                      f"config.runner.total_steps=100000,,{const}"],
                     cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        deadline = time.time() + 120
        while time.time() < deadline and not (run / "log.jsonl").is_file():
            time.sleep(0.1)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    saved = ckpt_io.latest_checkpoint(run)
    assert saved is not None
    step = ckpt_io.step_of(saved)
    assert 0 < step < 100000 and f"saved states-{step}.ckpt after SIGTERM" in err
    assert _losses(run)[-1][0] == step
    for folder, extra in ((run, ["-e", str(saved)]), (ref, [])):
        done = run_group([sys.executable, str(REPO / "run_pretrain.py"), "-u", TOY, "-p", str(folder), *extra,
                          "-o", f"config.runner.total_steps={step + 3},,{const}"], timeout=300, cwd=tmp_path, env=ENV)
        assert done.returncode == 0, done.stderr[-2000:]
    assert ckpt_io.step_of(ckpt_io.latest_checkpoint(run)) == step + 3
    assert [s for s, _ in _losses(run)] == list(range(1, step + 4))
    assert _losses(run) == _losses(ref)  # exact float equality, before and after the signal
    a = torch.load(run / f"states-{step + 3}.ckpt", weights_only=True)["model"]
    b = torch.load(ref / f"states-{step + 3}.ckpt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


KILL_SCRIPT = textwrap.dedent("""
    import sys, torch
    from s3prl_colld.checkpoint import save_atomic
    path = sys.argv[1]
    save_atomic({"step": 1, "w": torch.ones(3)}, path)
    print("saved-first", flush=True)
    save_atomic({"step": 2, "w": torch.zeros(400_000_000 // 4)}, path)  # ~400 MB: killed while writing
""")


def test_kill_during_save_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    target = tmp_path / "states-1.ckpt"
    proc = subprocess.Popen([sys.executable, str(script), str(target)], env=ENV, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "saved-first"
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".states-1.ckpt.*.tmp")):
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    state = ckpt_io.load(target)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))


def test_load_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ckpt_io.CheckpointError, match="not found"):
        ckpt_io.load(tmp_path / "nope.ckpt")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt_io.CheckpointError, match="cannot read"):
        ckpt_io.load(bad)
    pickled = tmp_path / "pickled.ckpt"
    torch.save({"x": np.arange(3)}, pickled)  # numpy arrays are refused by weights_only=True
    with pytest.raises(ckpt_io.CheckpointError, match="cannot read"):
        ckpt_io.load(pickled)


def test_exported_reads_the_export_section_or_an_old_checkpoint() -> None:
    w = {"student.a": torch.ones(2), "heads.b": torch.zeros(1)}
    new = {"task": "x", "config": {"model": {"old": 1}}, "model": w,
           "export": {"upstreams": ["x_local"], "modules": {"student": {"config": {"dim": 4}, "prefix": "student."}}}}
    config, weights = ckpt_io.exported(new, "student", "new.ckpt")
    assert config == {"dim": 4} and list(weights) == ["a"]
    with pytest.raises(ckpt_io.CheckpointError, match="task 'x', which exports no frontend.*upstream name x_local"):
        ckpt_io.exported(new, "frontend", "new.ckpt")
    old = {k: v for k, v in new.items() if k != "export"}  # written before export sections
    assert ckpt_io.exported(old, "student", "old.ckpt")[0] == {"old": 1}
    with pytest.raises(ckpt_io.CheckpointError, match="exports no frontend"):
        ckpt_io.exported(old, "frontend", "old.ckpt")
