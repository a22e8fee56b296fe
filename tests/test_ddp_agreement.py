"""DDP agreement under torchrun (2 CPU processes, gloo): a bad step on one rank is skipped by every rank,
SIGTERM to one rank stops them all with one checkpoint, and a 2-rank CoLLD run resumes exactly.

torchrun picks its own free port (``--standalone``) and every process runs one thread.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch

from process_group import popen_group, run_group, slow_toy_worker
from s3prl_colld import checkpoint as ckpt_io

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def torchrun(script: Path, *args: str) -> list[str]:
    """The command line of a 2-process torchrun of ``script``."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
            *args]


def _rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if x.strip()]


BAD_STEP_SCRIPT = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    import torch
    from s3prl_colld.pretrain.cli import resolve_config
    from s3prl_colld.pretrain.task import get_task
    from s3prl_colld.pretrain.tasks.toy import ToyTask
    from s3prl_colld.pretrain.trainer import Trainer

    out, rank = Path(sys.argv[1]), int(os.environ["RANK"])
    forward = ToyTask.forward

    def one_rank_goes_bad(self, batch):
        loss, stats = forward(self, batch)
        if self.one_rank and rank == 1 and self.calls == 3:  # a NaN loss whose gradient is finite
            loss = loss + torch.tensor(float("nan"))
        if self.one_rank and rank == 1 and self.calls == 5:  # a finite loss whose gradient is not
            loss = loss + 0.0 * torch.sqrt(self.student.mask_emb.sum() * 0.0)
        return loss, stats

    ToyTask.forward = one_rank_goes_bad
    task = get_task("toy_regression")
    common = ("config.runner.total_steps=7,,config.runner.save_step=7,,config.runner.max_bad_steps=5,,"
              "config.runner.device=cpu")
    trainers = []
    for name, one_rank, extra in (("one", True, ""), ("both", False, ",,config.model.nan_steps=[3, 5]")):
        ToyTask.one_rank = one_rank
        trainers.append(Trainer(task, resolve_config(task, overrides=common + extra), out / name))
        summary = trainers[-1].fit()
        torch.save({"bad_steps": summary["bad_steps"], "student": trainers[-1].task.student.state_dict()},
                   out / f"{name}-rank{rank}.pt")
    trainers[0].close()  # the first one set the process group up
""")


def test_a_bad_step_on_one_rank_is_skipped_by_every_rank(tmp_path: Path) -> None:
    """Rank 1 alone has a NaN loss (finite gradient) at step 3 and a NaN gradient (finite loss) at step 5.

    Both ranks skip both steps and stay identical, and the run equals one where every rank had NaN losses
    at those steps (``model.nan_steps``)."""
    script = tmp_path / "bad.py"
    script.write_text(BAD_STEP_SCRIPT)
    proc = run_group(torchrun(script, str(tmp_path)), timeout=240, cwd=tmp_path, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = {r: torch.load(tmp_path / f"one-rank{r}.pt", weights_only=True) for r in (0, 1)}
    both = torch.load(tmp_path / "both-rank0.pt", weights_only=True)
    assert one[0]["bad_steps"] == one[1]["bad_steps"] == both["bad_steps"] == 2
    assert [r["step"] for r in _rows(tmp_path / "one")] == [1, 2, 4, 6, 7]  # skipped steps are not logged
    for k, v in one[0]["student"].items():
        assert torch.equal(v, one[1]["student"][k]), k  # the replicas did not drift apart
        assert torch.equal(v, both["student"][k]), k  # the same updates as when every rank skipped
    assert [r["loss"] for r in _rows(tmp_path / "one")] == [r["loss"] for r in _rows(tmp_path / "both")]
    assert torch.load(tmp_path / "one" / "states-7.ckpt", weights_only=True)["bad_steps"] == 2


def test_sigterm_to_one_rank_stops_every_rank_with_one_checkpoint(tmp_path: Path) -> None:
    pid_file = "Path(sys.argv[1], f\"pid-{os.environ['RANK']}\").write_text(str(os.getpid()))"
    script = slow_toy_worker(tmp_path / "slow.py", setup=pid_file, first_arg=2)
    run = tmp_path / "run"
    with popen_group(torchrun(script, str(tmp_path), "-u", "toy_regression", "-p", str(run), "-o",
                              "config.runner.total_steps=100000,,config.runner.save_step=100000,,"
                              "config.runner.device=cpu"),
                     cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        deadline = time.time() + 240
        while time.time() < deadline and not (run / "log.jsonl").is_file():
            time.sleep(0.1)
        time.sleep(0.3)
        pid = int((tmp_path / "pid-1").read_text())
        os.kill(pid, signal.SIGTERM)  # rank 1 only, not torchrun
        _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    saved = ckpt_io.list_checkpoints(run)
    assert len(saved) == 1, saved
    step = ckpt_io.step_of(saved[0])
    assert 0 < step < 100000
    state = torch.load(saved[0], weights_only=True)
    assert state["step"] == step and state["world_size"] == 2 and len(state["rng_per_rank"]) == 2
    assert _rows(run)[-1]["step"] == step
    assert f"saved states-{step}.ckpt after a signal to another rank" in err  # rank 0 stopped for rank 1


COLLD_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from s3prl_colld.pretrain.cli import resolve_config
    from s3prl_colld.pretrain.task import get_task
    from s3prl_colld.pretrain.trainer import Trainer

    out, overrides = Path(sys.argv[1]), sys.argv[2]
    task = get_task("colld_distiller")
    cfg = resolve_config(task, overrides=overrides)
    full = Trainer(task, cfg, out / "full")
    full.fit()
    part = Trainer(task, cfg, out / "part", resume=out / "full" / "states-2.ckpt")
    part.fit()
    full.close()
""")


def test_two_rank_colld_resume_is_exact(synth_corpus_en: Path, teacher_run: Path, tmp_path: Path) -> None:
    script = tmp_path / "colld.py"
    script.write_text(COLLD_SCRIPT)
    ov = (f"config.data.root={synth_corpus_en},,config.teacher.ckpt={ckpt_io.latest_checkpoint(teacher_run)},,"
          "config.runner.total_steps=4,,config.runner.log_step=1,,config.runner.save_step=2,,config.runner.max_keep=5,,"
          "config.runner.num_workers=0,,config.runner.progress_bar=false,,config.runner.device=cpu,,"
          "config.data.batch_size=2,,config.data.crop_min_sec=1.0,,config.data.crop_max_sec=1.5,,"
          "config.optimizer.warmup_steps=1,,config.model.dim=64,,config.model.ffn_dim=128,,config.model.conv_pos=16,,"
          "config.model.conv_pos_groups=4")
    proc = run_group(torchrun(script, str(tmp_path), ov), timeout=400, cwd=tmp_path, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    full, part = _rows(tmp_path / "full"), _rows(tmp_path / "part")
    assert [r["step"] for r in full] == [1, 2, 3, 4] and [r["step"] for r in part] == [3, 4]
    assert [r["loss"] for r in part] == [r["loss"] for r in full[2:]]  # masks, negatives and crops replay exactly
    a = torch.load(tmp_path / "full" / "states-4.ckpt", weights_only=True)
    b = torch.load(tmp_path / "part" / "states-4.ckpt", weights_only=True)
    assert a["world_size"] == 2 and not any(k.startswith("teacher.") for k in a["model"])
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
