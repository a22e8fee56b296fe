"""The shared trainer: training, exact resume, DDP (gloo), atomic checkpoints, SIGTERM, NaN guard, CLI errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from s3prl_colld import checkpoint as ckpt_io
from s3prl_colld.data.bucket import BucketBatchSampler, crop_spans
from s3prl_colld.pretrain.cli import main
from s3prl_colld.pretrain.trainer import BadLossError

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _run(expdir: Path, *extra: str, override: str = "") -> int:
    args = ["-u", "toy_regression", "-p", str(expdir), *extra]
    if override:
        args += ["-o", override]
    return main(args)


def _losses(expdir: Path) -> list[tuple[int, float]]:
    rows = [json.loads(x) for x in (expdir / "log.jsonl").read_text().splitlines() if x.strip()]
    return [(r["step"], r["loss"]) for r in rows]


def test_loss_falls_and_checkpoint_is_plain(tmp_path: Path) -> None:
    assert _run(tmp_path / "run", override="config.runner.total_steps=40") == 0
    losses = [v for _, v in _losses(tmp_path / "run")]
    assert len(losses) == 40
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])
    state = torch.load(tmp_path / "run" / "states-40.ckpt", weights_only=True)
    assert state["step"] == 40 and state["task"] == "toy_regression"
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert [p.name for p in ckpt_io.list_checkpoints(tmp_path / "run")] == ["states-30.ckpt", "states-40.ckpt"]


def test_resume_reproduces_the_uninterrupted_losses(tmp_path: Path) -> None:
    full, part = tmp_path / "full", tmp_path / "part"
    # 24 steps, 48 items / 4 per batch = 12 batches per epoch: the resume point (8) and the run cross epochs
    assert _run(full, override="config.runner.total_steps=24,,config.runner.save_step=8,,config.runner.max_keep=5") == 0
    part.mkdir()
    (part / "states-8.ckpt").write_bytes((full / "states-8.ckpt").read_bytes())  # as if killed after step 8
    assert _run(part, "-e", str(part / "states-8.ckpt")) == 0
    resumed = _losses(part)
    assert [s for s, _ in resumed] == list(range(9, 25))
    assert resumed == _losses(full)[8:]  # exact float equality, every step


def test_existing_run_refuses_without_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path / "r", override="config.runner.total_steps=2") == 0
    assert _run(tmp_path / "r") == 2
    assert "-e" in capsys.readouterr().err


def test_non_finite_losses_are_skipped_then_abort(tmp_path: Path) -> None:
    assert _run(tmp_path / "a", override="config.runner.total_steps=6,,config.model.nan_steps=[2, 3]") == 0
    state = torch.load(ckpt_io.latest_checkpoint(tmp_path / "a"), weights_only=True)
    assert state["bad_steps"] == 2
    with pytest.raises(BadLossError, match="max_bad_steps"):
        _run(tmp_path / "b", override="config.runner.total_steps=6,,config.runner.max_bad_steps=1,,"
                                      "config.model.nan_steps=[1, 2, 3]")


@pytest.mark.parametrize("argv, needle", [
    (["-u", "toy_regresion", "-n", "x"], "Did you mean toy_regression"),
    (["-u", "toy_regression", "-n", "x", "-o", "config.runner.total_step=3"], "Valid keys of config.runner"),
    (["-u", "toy_regression", "-n", "x", "-o", "config.runner.precision=fp8"], "fp32, bf16, fp16"),
    (["-u", "toy_regression", "-n", "x", "-o", "config.runner.total_steps=abc"], "expected an integer"),
])
def test_cli_mistakes_are_one_line_errors(tmp_path: Path, argv: list[str], needle: str) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "run_pretrain.py"), *argv], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sampler_is_deterministic_sharded_and_resumable() -> None:
    lengths = list(range(1000, 1000 + 37 * 10, 10))
    a = BucketBatchSampler(lengths, 4, 8, seed=3)
    a.set_epoch(2)
    batches = list(a)
    a.set_epoch(2, start_batch=3)
    assert list(a) == batches[3:]
    ranks = []
    for r in range(2):
        s = BucketBatchSampler(lengths, 4, 8, seed=3, rank=r, world_size=2)
        s.set_epoch(2)
        ranks.append([i for b in s for i, _ in b])
    assert len(ranks[0]) > 0 and not set(ranks[0]) & set(ranks[1])
    for batch in batches:  # batches group similar lengths
        ls = [lengths[i] for i, _ in batch]
        assert max(ls) - min(ls) <= 10 * 8


def test_crops_are_aligned() -> None:
    gen = torch.Generator().manual_seed(0)
    spans = crop_spans([50_000, 20_000, 3_000], 16_000, 32_000, 320, gen)
    for (s, e), n in zip(spans, [50_000, 20_000, 3_000]):
        assert s % 320 == 0 and 0 <= s < e <= n
    assert spans[2] == (0, 3_000)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_ddp(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(REPO / "run_pretrain.py"), "-u", "toy_regression",
           "-p", str(tmp_path / "ddp"), "-o", "config.runner.total_steps=6,,config.runner.save_step=6"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(tmp_path / "ddp" / "states-6.ckpt", weights_only=True)
    assert state["world_size"] == 2 and state["step"] == 6
    losses = _losses(tmp_path / "ddp")
    assert len(losses) == 6


SIGTERM_SCRIPT = textwrap.dedent("""
    import sys, time
    from s3prl_colld.pretrain import tasks  # noqa
    from s3prl_colld.pretrain.tasks.toy import ToyTask
    orig = ToyTask.forward
    def slow(self, batch):
        time.sleep(0.2)
        return orig(self, batch)
    ToyTask.forward = slow
    from s3prl_colld.pretrain.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_sigterm_saves_and_resumes(tmp_path: Path) -> None:
    script = tmp_path / "slow.py"
    script.write_text(SIGTERM_SCRIPT)
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(script), "-u", "toy_regression", "-p", str(run), "-o",
                             "config.runner.total_steps=1000,,config.runner.save_step=1000"],
                            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "log.jsonl").is_file():
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    saved = ckpt_io.latest_checkpoint(run)
    assert saved is not None and 0 < ckpt_io.step_of(saved) < 1000
    assert "SIGTERM" in err
    step = ckpt_io.step_of(saved)
    assert _run(run, "-e", str(saved), override=f"config.runner.total_steps={step + 3}") == 0
    assert ckpt_io.step_of(ckpt_io.latest_checkpoint(run)) == step + 3


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
        time.sleep(0.01)
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
