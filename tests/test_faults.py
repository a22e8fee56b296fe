"""The fault battery of issue 11: bad audio, stale caches, untrusted checkpoints, kills, full and read-only disks.

Each test breaks something the way a user meets it and asserts the message
(what is wrong, which file, how to fix it) and that nothing was lost (the last
good checkpoint, the other split's results, the cache that still fits).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from s3prl_colld import checkpoint as ckpt_io
from s3prl_colld.data.audio import AudioError, file_identity, load_audio
from s3prl_colld.data.audio_check import _cache_file
from s3prl_colld.data.audio_dataset import AudioDataset
from s3prl_colld.data.lengths import main as lengths_main
from s3prl_colld.data.lengths import read_length_table
from s3prl_colld.downstream import corpus
from s3prl_colld.downstream.cli import main as downstream_main
from s3prl_colld.downstream.features import CachedFeatures, LiveFeatures, StaleCacheError, feature_source
from s3prl_colld.downstream.upstream import FrozenUpstream
from s3prl_colld.s3prl_bridge.teacher import Teacher, TeacherConfig
from s3prl_colld.pretrain.cli import main as pretrain_main
from s3prl_colld.pretrain.task import get_task

from conftest import REPO_ROOT, make_corpus
from process_group import slow_toy_worker

import audio_toy_task  # noqa: E402,F401 - registers -u audio_toy

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests")]), "OMP_NUM_THREADS": "1"}
PY = sys.executable
RUN_PRETRAIN, RUN_DOWNSTREAM = str(REPO_ROOT / "run_pretrain.py"), str(REPO_ROOT / "run_downstream.py")


def toy_runner(tmp: Path, steps: int = 6, save_step: int = 2, workers: int = 0) -> Path:
    """A runner.yaml for ``-u audio_toy``."""
    path = tmp / "runner.yaml"
    path.write_text(textwrap.dedent(f"""
        runner: {{total_steps: {steps}, log_step: 1, save_step: {save_step}, max_keep: 5, num_workers: {workers},
                  device: cpu, progress_bar: false}}
        optimizer: {{lr: 1.0e-2}}
        data: {{batch_size: 4, bucket_size: 8, crop_min_sec: 0.5, crop_max_sec: 1.0, min_sec: 0.5}}
    """))
    return path


def log_rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if x.strip()]


# ------------------------------------------------------------------ bad audio
@pytest.fixture()
def corpus_copy(synth_corpus_en: Path, tmp_path: Path) -> Path:
    """A writable copy of the session's corpus."""
    return Path(shutil.copytree(synth_corpus_en, tmp_path / "corpus"))


def break_train_files(root: Path) -> dict[Path, str]:
    """Break six training files the ways the issue lists; returns ``path -> expected reason``."""
    rows = read_length_table(root, "train")
    victims = [r.path for r in rows[:6]]
    expected = {}
    data = bytearray(victims[0].read_bytes())  # corrupt: a good header, garbage in the middle
    data[len(data) // 2: len(data) // 2 + 4000] = bytes(4000)
    victims[0].write_bytes(bytes(data))
    expected[victims[0]] = "corrupt: decoding failed"
    victims[1].write_bytes(b"")
    expected[victims[1]] = "empty file"
    sf.write(victims[2], np.zeros(200, np.float32), 16000, format="FLAC")
    expected[victims[2]] = "too short: 200 samples"
    sf.write(victims[3], np.random.RandomState(0).randn(8000).astype(np.float32) * 0.1, 8000, format="FLAC")
    expected[victims[3]] = "8000 Hz, expected 16000 Hz"
    sf.write(victims[4], np.random.RandomState(1).randn(16000, 2).astype(np.float32) * 0.1, 16000, format="FLAC")
    expected[victims[4]] = "2 channels, expected mono"
    victims[5].unlink()
    expected[victims[5]] = "file not found"
    return expected


def test_every_bad_file_is_listed_in_one_error_and_nothing_is_written(corpus_copy: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    bad = break_train_files(corpus_copy)
    run = tmp_path / "run"
    rc = pretrain_main(["-u", "audio_toy", "-p", str(run), "-c", str(toy_runner(tmp_path)),
                        "-o", f"config.data.root={corpus_copy}"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert f"6 of 96 audio files in {corpus_copy} (splits train) cannot be used" in err
    for path, reason in bad.items():
        assert f"  {path}: {reason}" in err, (path, reason)
    assert "config.data.on_bad_audio=skip" in err and "config.data.resample=true" in err
    assert ckpt_io.latest_checkpoint(run) is None


def test_skip_leaves_bad_files_out_logs_and_counts_them(corpus_copy: Path, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    bad = break_train_files(corpus_copy)
    run = tmp_path / "run"
    with caplog.at_level("WARNING"):
        rc = pretrain_main(["-u", "audio_toy", "-p", str(run), "-c", str(toy_runner(tmp_path, steps=2)),
                            "-o", f"config.data.root={corpus_copy},,config.data.on_bad_audio=skip"])
    assert rc == 0 and ckpt_io.step_of(ckpt_io.latest_checkpoint(run)) == 2
    for path, reason in bad.items():
        assert f"skipping {path}: {reason}" in caplog.text
    assert "skipped 6 of 96 audio files (config.data.on_bad_audio=skip)" in caplog.text
    # the check is cached: unchanged files are not decoded again, a fixed file is checked again
    ds = AudioDataset(corpus_copy, ["train"], 0.5, on_bad_audio="skip")
    cache = _cache_file(str(corpus_copy.resolve()))
    before = cache.stat().st_mtime_ns
    assert len(AudioDataset(corpus_copy, ["train"], 0.5, on_bad_audio="skip").rows) == len(ds.rows)
    assert cache.stat().st_mtime_ns == before  # nothing was re-checked, so nothing rewritten
    short = next(p for p, r in bad.items() if r.startswith("too short"))
    row = next(r for r in read_length_table(corpus_copy, "train") if r.path == short)
    sf.write(short, np.random.RandomState(2).randn(row.num_samples).astype(np.float32) * 0.1, 16000, format="FLAC")
    fixed = AudioDataset(corpus_copy, ["train"], 0.0, on_bad_audio="skip")
    assert short not in {p for p, _ in fixed.skipped} and len(fixed.skipped) == 5


def test_resample_converts_8k_and_stereo_files(corpus_copy: Path) -> None:
    bad = break_train_files(corpus_copy)
    converted = [p for p, r in bad.items() if "Hz" in r or "channels" in r]
    assert lengths_main(["--root", str(corpus_copy), "--split", "train", "--resample", "--on_bad_audio", "skip"]) == 0
    ds = AudioDataset(corpus_copy, ["train"], 0.0, resample=True)  # the four other bad files left the table
    assert len(ds.rows) == 96 - 4 and not ds.skipped
    for path in converted:
        i = next(i for i, r in enumerate(ds.rows) if r.path == path)
        wav = ds[i]["wav"]
        assert wav.dim() == 1 and wav.numel() == ds.lengths[i] == 16000  # 1 s at 16 kHz, mono


def test_length_tool_flags_the_same_problems(corpus_copy: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    bad = break_train_files(corpus_copy)
    out = tmp_path / "tables"
    del bad[next(p for p, r in bad.items() if r == "file not found")]  # the tool lists the folder: no row for it
    assert lengths_main(["--root", str(corpus_copy), "--split", "train", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"5 of 95 audio files in {corpus_copy / 'train'} cannot be used" in err
    for path, reason in bad.items():
        assert f"  {path}: {reason}" in err
    assert "--on_bad_audio skip" in err and "accepted with --resample" in err and not (out / "train.csv").exists()
    assert lengths_main(["--root", str(corpus_copy), "--split", "train", "--out", str(out),
                         "--on_bad_audio", "skip"]) == 0
    table = (out / "train.csv").read_text()
    assert sum(1 for _ in table.splitlines()) == 1 + 95 - 5
    assert not any(p.relative_to(corpus_copy).as_posix() in table for p in bad)


def corrupt_keeping_size_and_mtime(path: Path) -> None:
    """Damage a file after its check was cached: same size, same mtime_ns (the cached check still passes)."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 4000] = bytes(4000)
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_data_worker_error_saves_the_last_step_and_exits_2(corpus_copy: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    AudioDataset(corpus_copy, ["train"], 0.5)  # the check passes and is cached
    victim = read_length_table(corpus_copy, "train")[10].path
    corrupt_keeping_size_and_mtime(victim)
    run = tmp_path / "run"
    rc = pretrain_main(["-u", "audio_toy", "-p", str(run), "-c", str(toy_runner(tmp_path, 60, 100, workers=1)),
                        "-o", f"config.data.root={corpus_copy}"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    line = next(x for x in err.splitlines() if x.startswith("run_pretrain.py: error:"))
    assert str(victim) in line and "AudioError" in line
    done = log_rows(run)[-1]["step"]
    assert f"loading the batches of step {done + 1} failed" in line
    assert done > 0 and f"states-{done}.ckpt (step {done}) is saved" in line
    state = ckpt_io.load(run / f"states-{done}.ckpt")
    assert state["step"] == done and ckpt_io.latest_checkpoint(run) == run / f"states-{done}.ckpt"


# ------------------------------------------------------------------ stale feature cache
def test_feature_cache_misses_when_the_audio_changes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root, cache = tmp_path / "corpus", tmp_path / "cache"
    make_corpus(root, "en", 12, seed=0)
    fbank = FrozenUpstream("fbank")
    utts = corpus.transcript_utterances(root, "train")
    first = feature_source(fbank, utts, "train", cache, max_gb=1.0, progress=False)
    assert isinstance(first, CachedFeatures)
    with caplog.at_level("INFO"):
        again = feature_source(fbank, utts, "train", cache, max_gb=1.0, progress=False)
    assert again.folder == first.folder and "feature cache: reading" in caplog.text
    # touch one file: its bytes are unchanged, so the whole-file hash still fits (a hit, issue 23)
    os.utime(utts[3].path, ns=(time.time_ns(), time.time_ns()))
    caplog.clear()
    with caplog.at_level("INFO"):
        touched = feature_source(fbank, utts, "train", cache, max_gb=1.0, progress=False)
    assert "is stale" not in caplog.text and "feature cache: reading" in caplog.text
    assert touched.folder == first.folder
    # regenerate the corpus at the same path with another seed: new audio, a miss, the new audio's features
    shutil.rmtree(root)
    make_corpus(root, "en", 12, seed=1)
    new = corpus.transcript_utterances(root, "train")
    caplog.clear()
    with caplog.at_level("INFO"):
        regenerated = feature_source(fbank, new, "train", cache, max_gb=1.0, progress=False)
    assert "feature cache: reading" not in caplog.text
    live = LiveFeatures(fbank, new)
    for i in range(len(new)):
        torch.testing.assert_close(regenerated.get([i])[0], live.get([i])[0].half().float())
    # a setting that changes the features keys another folder
    other = feature_source(fbank, new, "train", cache, max_gb=1.0, resample=True, progress=False)
    assert other.folder != regenerated.folder


def test_a_cache_entry_is_checked_when_it_is_read(tmp_path: Path) -> None:
    root = make_corpus(tmp_path / "corpus", "en", 12, seed=0)
    fbank = FrozenUpstream("fbank")
    utts = corpus.transcript_utterances(root, "train")
    cached = feature_source(fbank, utts, "train", tmp_path / "cache", max_gb=1.0, progress=False)
    cached.get([0])
    wav = load_audio(utts[1].path)
    sf.write(utts[1].path, torch.cat([wav, wav[:1280]]).numpy(), 16000, format="FLAC")  # fixed in place: 8 frames more
    assert len(cached.get([0])) == 1  # an entry already checked is served
    with pytest.raises(StaleCacheError, match=re.escape(f"feature cache {cached.folder} is stale: {utts[1].uttid}")):
        cached.get([1])


def test_file_identity_sees_content_behind_the_same_size_and_time(tmp_path: Path) -> None:
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"x" * 10_000)
    b.write_bytes(b"y" + b"x" * 9_999)
    os.utime(b, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns))
    assert file_identity(a) != file_identity(b)
    assert file_identity(a) == file_identity(a)


# ------------------------------------------------------------------ untrusted and wrong checkpoints
class Payload:
    """Unpickling this creates the file ``path`` (what a crafted checkpoint could do, harmlessly)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):  # noqa: ANN204
        return open, (self.path, "w")


def malicious_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    ckpt, marker = tmp_path / "evil.ckpt", tmp_path / "payload-ran"
    torch.save({"Upstream": {}, "Config": {}, "x": Payload(marker)}, ckpt)
    return ckpt, marker


def test_a_malicious_upstream_checkpoint_is_refused(synth_corpus_en: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    ckpt, marker = malicious_checkpoint(tmp_path)
    rc = downstream_main(["-m", "train", "-u", "distiller_local", "-k", str(ckpt), "-d", "pr", "-p",
                          str(tmp_path / "probe"), "-o", f"config.data.root={synth_corpus_en}"])
    err = capsys.readouterr().err
    assert rc == 2 and not marker.exists()
    assert f"-k {ckpt} does not load with torch.load(weights_only=True)" in err and "--trust-checkpoint" in err
    # the teacher of a distillation run is checked the same way
    rc = pretrain_main(["-u", "distilhubert", "-p", str(tmp_path / "student"), "-o",
                        f"config.data.root={synth_corpus_en},,config.teacher.name=distiller_local,,"
                        f"config.teacher.ckpt={ckpt},,config.runner.total_steps=1"])
    err = capsys.readouterr().err
    assert rc == 2 and not marker.exists() and f"config.teacher.ckpt {ckpt} does not load" in err
    # --trust-checkpoint lets it through: the payload runs (what the flag's help warns of)
    try:
        downstream_main(["-m", "train", "-u", "distiller_local", "-k", str(ckpt), "-d", "pr", "-p",
                         str(tmp_path / "probe2"), "--trust-checkpoint", "-o", f"config.data.root={synth_corpus_en}"])
    except Exception:  # noqa: BLE001, S110 - s3prl's loader then fails on the fake content; not under test
        pass
    finally:
        ckpt_io.trust_checkpoints(False)
    assert marker.exists()
    help_text = subprocess.run([PY, RUN_DOWNSTREAM, "-h"], env=ENV, capture_output=True, text=True).stdout
    assert "--trust-checkpoint" in help_text and "runs any code" in " ".join(help_text.split())


def test_checkpoints_of_the_wrong_kind_say_what_they_are(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    student = tmp_path / "states-300.ckpt"
    task = get_task("colld_distiller")  # what the trainer writes: the task's export section, the student's weights
    torch.save({"task": task.name, "config": {"model": {}}, "model": {"student.w": torch.ones(2)}, "step": 300,
                "export": {"upstreams": list(task.upstreams),
                           "modules": {"student": {"config": {}, "prefix": "student."}}}}, student)
    rc = downstream_main(["-m", "train", "-u", "hubert_local", "-k", str(student), "-d", "pr", "-p",
                          str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert rc == 2 and "is a student checkpoint of the pretrain task colld_distiller: load it with -u colld_local" in err
    with pytest.raises(ckpt_io.CheckpointError, match="load it with config.teacher.name=colld_local"):
        Teacher(TeacherConfig(name="hubert_local", ckpt=str(student)))
    probe = tmp_path / "dev-best.ckpt"
    torch.save({"kind": ckpt_io.DOWNSTREAM_KIND, "spec": {"task": "pr"}, "step": 10}, probe)
    assert pretrain_main(["-u", "colld_distiller", "-e", str(probe)]) == 2
    err = capsys.readouterr().err
    assert f"{probe} is a downstream checkpoint (run_downstream.py: a pr probe)" in err and "task None" not in err
    assert downstream_main(["-m", "train", "-u", "hubert_local", "-k", str(probe), "-d", "pr", "-p",
                            str(tmp_path / "b")]) == 2
    assert "is a run_downstream.py checkpoint (a probe's head, not an upstream)" in capsys.readouterr().err


# ------------------------------------------------------------------ kills, full and read-only disks
KILL_IN_SAVE = textwrap.dedent('''
    import sys, time, torch
    from s3prl_colld import checkpoint as ckpt_io
    real_save = torch.save
    def save(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        if isinstance(obj, dict) and obj.get("step") == 4:
            f.flush()
            print("in-save", flush=True)
            time.sleep(600)  # killed here: the temporary file is written, not yet renamed
    ckpt_io.torch.save = save
    from s3prl_colld.pretrain.cli import main
    sys.exit(main(sys.argv[1:]))
''')


def test_kill_during_a_save_then_resume(tmp_path: Path) -> None:
    script = tmp_path / "kill.py"
    script.write_text(KILL_IN_SAVE)
    run, full = tmp_path / "run", tmp_path / "full"
    args = ["-u", "toy_regression", "-o", "config.runner.total_steps=6,,config.runner.save_step=2,,"
            "config.runner.max_keep=5,,config.runner.device=cpu"]
    proc = subprocess.Popen([PY, str(script), "-p", str(run), *args], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "in-save"
    proc.kill()
    proc.wait()
    assert len(list(run.glob(".states-4.ckpt.*.tmp"))) == 1 and not (run / "states-4.ckpt").exists()
    assert ckpt_io.load(run / "states-2.ckpt")["step"] == 2  # the last good checkpoint survived
    res = subprocess.run([PY, RUN_PRETRAIN, "-p", str(run), "-e", str(run / "states-2.ckpt"), *args], env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "removed" in res.stderr and ".states-4.ckpt." in res.stderr and not list(run.glob("*.tmp"))
    # the uninterrupted reference runs in a subprocess with the same environment (thread count) as the resumed run,
    # so that the comparison can be exact
    ref = subprocess.run([PY, RUN_PRETRAIN, "-p", str(full), *args], env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert ref.returncode == 0, ref.stderr[-2000:]
    assert [(r["step"], r["loss"]) for r in log_rows(run)] == [(r["step"], r["loss"]) for r in log_rows(full)]


def in_namespace(shell: str) -> subprocess.CompletedProcess:
    """Run ``shell`` as root of a new user + mount namespace (tmpfs and read-only mounts without privileges)."""
    return subprocess.run(["unshare", "-rm", "sh", "-c", shell], env=ENV, capture_output=True, text=True, timeout=300)


def namespaces_work() -> bool:
    return shutil.which("unshare") is not None and in_namespace("mount -t tmpfs tmpfs /mnt").returncode == 0


FULL_DISK = textwrap.dedent('''
    import json, os, sys, torch
    from pathlib import Path
    from s3prl_colld import checkpoint as ckpt_io
    from s3prl_colld.pretrain.cli import main
    disk, free = Path(sys.argv[1]), int(sys.argv[2])

    def fill(leave):
        # fill the disk, then give back ``leave`` bytes
        with open(disk / "filler", "ab", buffering=0) as f:
            try:
                while True:
                    f.write(b"\\1" * 65536)
            except OSError:
                pass
        os.truncate(disk / "filler", os.path.getsize(disk / "filler") - leave)

    fill(free)
    print("rc", main(["-u", "toy_regression", "-p", str(disk / "run"), "-o", "config.runner.total_steps=4,,"
                      "config.runner.save_step=2,,config.runner.device=cpu"]), flush=True)
    # a write that fails half-way (the size check before it cannot see non-tensor content): ENOSPC itself
    os.unlink(disk / "filler")
    fill(2_000_000)
    try:
        ckpt_io.save_atomic({"w": torch.ones(4), "big": list(range(600_000))}, disk / "run" / "states-9.ckpt")
    except ckpt_io.CheckpointError as err:
        print("enospc", err)
    print("files", json.dumps(sorted(p.name for p in (disk / "run").iterdir())))
''')


def test_a_full_disk_names_the_folder_and_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    if not namespaces_work():
        pytest.fail("this test needs `unshare -rm` (user namespaces) to mount a small tmpfs")
    script = tmp_path / "full.py"
    script.write_text(FULL_DISK)
    disk = tmp_path / "disk"
    disk.mkdir()
    res = in_namespace(f"mount -t tmpfs -o size=8m tmpfs {disk} && {PY} {script} {disk} 1250000")
    out, err = res.stdout, res.stderr
    assert res.returncode == 0 and "rc 2" in out, err[-3000:]
    line = next(x for x in err.splitlines() if x.startswith("run_pretrain.py: error:"))
    assert f"cannot write states-4.ckpt in {disk / 'run'}: not enough disk space; it needs about 1." in line
    assert f"The last good checkpoint {disk / 'run' / 'states-2.ckpt'} is kept" in line
    assert "enospc cannot write states-9.ckpt" in out and "no space left on the device" in out
    files = json.loads(out.split("files ", 1)[1])
    assert "states-2.ckpt" in files and not [f for f in files if f.endswith(".tmp")]


def test_an_unwritable_run_folder_is_one_line_before_any_work(tmp_path: Path) -> None:
    if not namespaces_work():
        pytest.fail("this test needs `unshare -rm` (user namespaces) for a read-only bind mount")
    ro = tmp_path / "ro"
    (ro / "old").mkdir(parents=True)
    (ro / "old" / "keep.txt").write_text("earlier results")
    cmd = (f"mount --bind {ro} {ro} && mount -o remount,bind,ro {ro} && {PY} {RUN_PRETRAIN} "
           f"-u toy_regression -p {ro / 'old'} -o config.runner.device=cpu")
    res = in_namespace(cmd)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"run_pretrain.py: error: cannot write in the run folder {ro / 'old'}: Read-only file system" in res.stderr
    assert (ro / "old" / "keep.txt").read_text() == "earlier results" and len(list((ro / "old").iterdir())) == 1


# ------------------------------------------------------------------ torchrun: SIGTERM and data errors end cleanly
def launch(tmp_path: Path, *args: str) -> subprocess.Popen:
    script = slow_toy_worker(tmp_path / "worker.py", setup="import audio_toy_task")
    return subprocess.Popen([PY, "-m", "s3prl_colld.launch", "--standalone", "--nproc_per_node", "2", str(script),
                             *args], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_torchrun_sigterm_saves_and_exits_cleanly(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = launch(tmp_path, "-u", "toy_regression", "-p", str(run), "-o",
                  "config.runner.total_steps=100000,,config.runner.save_step=100000,,config.runner.device=cpu")
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "log.jsonl").is_file():
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)  # to torchrun's agent only, as a scheduler would
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "Traceback" not in err and "SignalException" not in err
    assert "s3prl_colld.launch: SIGTERM received" in err
    saved = ckpt_io.latest_checkpoint(run)
    state = ckpt_io.load(saved)
    assert state["world_size"] == 2 and state["step"] == log_rows(run)[-1]["step"]
    # the "finished" summary gives the all-rank mean that log.jsonl shows (log_step is 1), not rank 0's loss
    summary = next(x for x in err.splitlines() if "finished:" in x)
    assert repr(log_rows(run)[-1]["loss"]) in summary


def test_torchrun_data_error_saves_on_every_rank_and_exits_2(corpus_copy: Path, tmp_path: Path) -> None:
    AudioDataset(corpus_copy, ["train"], 0.5)  # checked and cached
    victim = read_length_table(corpus_copy, "train")[10].path
    corrupt_keeping_size_and_mtime(victim)
    run = tmp_path / "run"
    proc = launch(tmp_path, "-u", "audio_toy", "-p", str(run), "-c", str(toy_runner(tmp_path, 60, 100)),
                  "-o", f"config.data.root={corpus_copy}")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err[-3000:]
    assert "Traceback" not in err and "ChildFailedError" not in err
    assert err.count("run_pretrain.py: error: loading the batches of step") == 2  # one line per rank
    # torchrun reports the first rank(s) to fail (it stops the others); the checkpoint was complete before either exited
    assert str(victim) in err and "failed with exit code 2; its error is printed above" in err
    done = log_rows(run)[-1]["step"]
    assert done > 0 and ckpt_io.load(run / f"states-{done}.ckpt")["world_size"] == 2


# ------------------------------------------------------------------ results of one split never overwrite another's
def test_results_are_named_after_the_split(synth_corpus_en: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    root = Path(shutil.copytree(synth_corpus_en, tmp_path / "corpus"))  # it has a test_noisy split
    run = tmp_path / "probe"
    assert downstream_main(["-m", "train", "-u", "fbank", "-d", "pr", "-p", str(run), "-o",
                            f"config.data.root={root},,config.runner.total_steps=2,,config.runner.eval_step=2,,"
                            f"config.runner.progress_bar=false,,config.cache.dir={tmp_path / 'cache'}"]) == 0
    best = run / "dev-best.ckpt"
    assert downstream_main(["-m", "evaluate", "-e", str(best), "-t", "test"]) == 0
    test_results = (run / "test-results.json").read_bytes()
    assert downstream_main(["-m", "evaluate", "-e", str(best), "-t", "test_noisy"]) == 0
    assert json.loads((run / "test_noisy-results.json").read_text())["split"] == "test_noisy"
    assert (run / "test_noisy-hyp.ark").is_file() and (run / "test-results.json").read_bytes() == test_results
    # pointing data.test_split at another split writes that split's files, never test-results.json
    assert downstream_main(["-m", "evaluate", "-e", str(best), "-o", "config.data.test_split=test_noisy"]) == 0
    assert (run / "test-results.json").read_bytes() == test_results
    out = capsys.readouterr().out
    assert "test_noisy per:" in out


# ================================================================== issue 23: the residue of the fault battery
# ------------------------------------------------------------------ 1. our hub names check the file first
HUB_PAYLOAD = textwrap.dedent('''
    import json, sys
    from s3prl.nn import S3PRLUpstream  # s3prl only: our names come from the start-up hook
    evil, marker = sys.argv[1], sys.argv[2]
    out = {}
    for name in ("dicehubert_local", "colld_local"):
        try:
            S3PRLUpstream(name, path_or_url=evil)
            out[name] = "loaded"
        except Exception as err:
            out[name] = f"{type(err).__name__}: {err}"
        out[name + " payload ran"] = __import__("os").path.exists(marker)
    print(json.dumps(out))
''')


def test_our_hub_names_refuse_a_payload_even_with_torch_force_no_weights_only_load(tmp_path: Path) -> None:
    ckpt, marker = malicious_checkpoint(tmp_path)
    script = tmp_path / "hub_payload.py"
    script.write_text(HUB_PAYLOAD)
    env = {**ENV, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}  # what the README used to tell users to set
    res = subprocess.run([PY, str(script), str(ckpt), str(marker)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert not marker.exists()
    for name in ("dicehubert_local", "colld_local"):
        assert out[f"{name} payload ran"] is False, out
        assert out[name].startswith("UntrustedCheckpointError: upstream "
                                    f"{name}: checkpoint {ckpt} does not load with torch.load(weights_only=True)"), out


# ------------------------------------------------------------------ 1. s3prl's runner checkpoints under weights_only
S3PRL_RUNNER_CKPT = textwrap.dedent('''
    import argparse, json, os, pickle, sys
    import torch
    folder = sys.argv[1]

    class Payload:
        def __reduce__(self):
            return open, (os.path.join(folder, "payload-ran"), "w")

    # what s3prl's downstream/runner.py saves (0.4.18, Runner.train): Args is run_downstream.py's Namespace
    args = argparse.Namespace(mode="train", evaluate_split="test", override=None, backend="nccl", local_rank=None,
                              past_exp=None, init_ckpt=None, config="downstream/ctc/libriphone.yaml",
                              downstream="ctc", downstream_variant=None, hub="torch", upstream="colld_small",
                              upstream_ckpt="/abs/STUDENT.ckpt", upstream_model_config=None, upstream_refresh=False,
                              upstream_trainable=False, upstream_feature_selection="hidden_states",
                              upstream_layer_selection=None, upstream_feature_normalize=False, expname="pr",
                              expdir="result/downstream/pr", auto_resume=False, seed=1337, device="cpu",
                              cache_dir=None, verbose=False, disable_cudnn=False)
    head = torch.nn.Linear(4, 3)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    head(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    states = {"Optimizer": optimizer.state_dict(), "Step": 20, "Epoch": 1, "Args": args,
              "Config": {"runner": {"total_steps": 20}, "downstream_expert": {"corpus": {"path": "/data"}}},
              "Downstream": head.state_dict(), "Featurizer": {"weights": torch.zeros(5)},
              "Scheduler": scheduler.state_dict()}
    torch.save(states, os.path.join(folder, "states-20.ckpt"))
    torch.save({**states, "Args": argparse.Namespace(mode="train", x=Payload())}, os.path.join(folder, "evil.ckpt"))

    out = {}
    def load(name):
        try:
            ckpt = torch.load(os.path.join(folder, name), map_location="cpu")  # s3prl's call: weights_only default
            return f"loaded: {ckpt['Args'].upstream} step {ckpt['Step']}"
        except pickle.UnpicklingError as err:
            return "refused: " + str(err).splitlines()[0]
    def safe_globals():
        return {f"{g.__module__}.{g.__qualname__}" for g in torch.serialization.get_safe_globals()}
    out["before"] = load("states-20.ckpt")
    allowed = safe_globals()
    import s3prl.hub  # through our start-up hook, as s3prl's run_downstream.py imports it
    out["after"] = load("states-20.ckpt")
    out["evil"] = load("evil.ckpt")
    out["payload ran"] = os.path.exists(os.path.join(folder, "payload-ran"))
    # what importing s3prl added, less what torch's own modules (dynamo, pulled in by s3prl) allow of theirs
    out["safe globals"] = sorted(g for g in safe_globals() - allowed if not g.startswith("torch."))
    print(json.dumps(out))
''')


def test_s3prl_runner_checkpoints_load_under_weights_only_through_the_hook(tmp_path: Path) -> None:
    script = tmp_path / "runner_ckpt.py"
    script.write_text(S3PRL_RUNNER_CKPT)
    env = {k: v for k, v in ENV.items() if k != "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"}
    res = subprocess.run([PY, str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["before"].startswith("refused: Weights only load failed")  # torch alone refuses the Namespace
    assert out["after"] == "loaded: colld_small step 20"
    assert out["evil"].startswith("refused: Weights only load failed") and out["payload ran"] is False
    assert out["safe globals"] == ["argparse.Namespace"]  # only what s3prl's runner checkpoints need


# ------------------------------------------------------------------ 3. a file damaged after its check is skipped
def test_skip_drops_a_file_that_fails_to_decode_during_training(corpus_copy: Path, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    AudioDataset(corpus_copy, ["train"], 0.5)  # the check passes and is cached
    victim = read_length_table(corpus_copy, "train")[10].path
    corrupt_keeping_size_and_mtime(victim)
    run = tmp_path / "run"
    with caplog.at_level("WARNING"):
        rc = pretrain_main(["-u", "audio_toy", "-p", str(run), "-c", str(toy_runner(tmp_path, 60, 100)),
                            "-o", f"config.data.root={corpus_copy},,config.data.on_bad_audio=skip"])
    assert rc == 0 and log_rows(run)[-1]["step"] == 60 and ckpt_io.step_of(ckpt_io.latest_checkpoint(run)) == 60
    lines = [x for x in caplog.text.splitlines() if f"skipping {victim}:" in x]
    assert len(lines) == 1 and f"cannot read audio file {victim}" in lines[0], caplog.text[-3000:]
    assert "failed to decode during training although its check passed" in lines[0]
    # recorded: its cached check was dropped, so the next check decodes it again and leaves it out up front
    later = AudioDataset(corpus_copy, ["train"], 0.5, on_bad_audio="skip")
    assert [p for p, _ in later.skipped] == [victim]


# ------------------------------------------------------------------ 4. / 5. evaluate: per-checkpoint results, no typo folders
def test_results_of_another_checkpoint_do_not_replace_dev_bests(synth_corpus_en: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "probe"
    assert downstream_main(["-m", "train", "-u", "fbank", "-d", "pr", "-p", str(run), "-o",
                            f"config.data.root={synth_corpus_en},,config.runner.total_steps=4,,"
                            "config.runner.eval_step=2,,config.runner.save_step=2,,config.runner.max_keep=5,,"
                            "config.runner.progress_bar=false,,"
                            f"config.cache.dir={tmp_path / 'cache'}"]) == 0
    assert downstream_main(["-m", "evaluate", "-e", str(run / "dev-best.ckpt"), "-t", "test"]) == 0
    best = {n: (run / n).read_bytes() for n in ("test-results.json", "test-hyp.ark")}
    assert downstream_main(["-m", "evaluate", "-e", str(run / "states-2.ckpt"), "-t", "test"]) == 0
    assert {n: (run / n).read_bytes() for n in best} == best
    other = json.loads((run / "states-2" / "test-results.json").read_text())
    assert other["checkpoint"] == str(run / "states-2.ckpt") and other["step"] == 2
    assert (run / "states-2" / "test-hyp.ark").is_file()
    assert str(run / "states-2" / "test-results.json") in capsys.readouterr().out
    assert ckpt_io.list_checkpoints(run) == [run / "states-2.ckpt", run / "states-4.ckpt"]


def test_failed_runs_leave_no_folders_behind(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    typo = tmp_path / "typo" / "dir"
    assert downstream_main(["-m", "evaluate", "-e", str(typo / "x.ckpt")]) == 2
    assert f"checkpoint not found: {typo / 'x.ckpt'}" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()
    nowhere = tmp_path / "no-corpus"
    assert downstream_main(["-m", "train", "-u", "fbank", "-d", "pr", "-p", str(tmp_path / "new" / "probe"),
                            "-o", f"config.data.root={nowhere}"]) == 2
    assert str(nowhere) in capsys.readouterr().err and not (tmp_path / "new").exists()
    assert pretrain_main(["-u", "audio_toy", "-p", str(tmp_path / "p" / "run"), "-o",
                          f"config.data.root={nowhere},,config.runner.device=cpu"]) == 2
    assert not (tmp_path / "p").exists()
    # a folder that was there before is kept, and so is what it held
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    assert downstream_main(["-m", "train", "-u", "fbank", "-d", "pr", "-p", str(kept / "probe"),
                            "-o", f"config.data.root={nowhere}"]) == 2
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert downstream_main(["-m", "train", "-u", "fbank", "-d", "pr", "-p", str(empty),
                            "-o", f"config.data.root={nowhere}"]) == 2
    assert empty.is_dir()


# ------------------------------------------------------------------ 6. / 7. messages: the OS's reason, the right hint
def test_an_unreadable_file_says_what_the_os_said(tmp_path: Path) -> None:
    from s3prl_colld.data.audio_check import probe

    folder = Path(tempfile.mkdtemp(prefix="unreadable-", dir="/tmp"))  # reachable by another user (tmp_path is not)
    try:
        folder.chmod(0o755)
        path = folder / "a.flac"
        sf.write(path, np.random.RandomState(0).randn(16000).astype(np.float32) * 0.1, 16000, format="FLAC")
        path.chmod(0)
        root = os.geteuid() == 0
        if root:  # root reads any file: read as nobody
            os.setegid(65534)
            os.seteuid(65534)
        try:
            assert not os.access(path, os.R_OK, effective_ids=True)
            facts = probe(path)
            with pytest.raises(AudioError) as err:
                load_audio(path)
        finally:
            if root:
                os.seteuid(0)
                os.setegid(0)
        assert facts.error == "unreadable: Permission denied"
        assert str(err.value) == f"cannot read audio file {path}: Permission denied"
    finally:
        shutil.rmtree(folder)


def test_the_resample_hint_only_comes_with_rate_and_channel_errors(tmp_path: Path) -> None:
    corrupt, rate = tmp_path / "corrupt.flac", tmp_path / "8k.flac"
    sf.write(corrupt, np.random.RandomState(0).randn(32000).astype(np.float32) * 0.1, 16000, format="FLAC")
    data = bytearray(corrupt.read_bytes())
    data[len(data) // 2: len(data) // 2 + 4000] = bytes(4000)
    corrupt.write_bytes(bytes(data))
    sf.write(rate, np.random.RandomState(1).randn(8000).astype(np.float32) * 0.1, 8000, format="FLAC")
    fbank = FrozenUpstream("fbank")
    with pytest.raises(AudioError) as err:
        LiveFeatures(fbank, [corpus.Utterance("c", corrupt, "a")]).get([0])
    assert str(corrupt) in str(err.value) and "config.data.resample" not in str(err.value)
    with pytest.raises(AudioError, match=r"8000 Hz, expected 16000 Hz.*set config\.data\.resample=true"):
        LiveFeatures(fbank, [corpus.Utterance("r", rate, "a")]).get([0])


# ------------------------------------------------------------------ 8. skipped files are listed once
def test_skip_lists_each_skipped_file_once(corpus_copy: Path, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    bad = break_train_files(corpus_copy)
    with caplog.at_level("WARNING"):
        assert pretrain_main(["-u", "audio_toy", "-p", str(tmp_path / "run"), "-c", str(toy_runner(tmp_path, 1)),
                              "-o", f"config.data.root={corpus_copy},,config.data.on_bad_audio=skip"]) == 0
    for path, reason in bad.items():
        assert caplog.text.count(f"skipping {path}: ") == 1, path
    assert caplog.text.count("skipped 6 of 96 audio files") == 1


# ------------------------------------------------------------------ 11. predict.zip has the usual permissions
def test_predict_zip_is_written_with_the_usual_permissions(tmp_path: Path) -> None:
    from s3prl_colld.downstream.submit import pack

    (tmp_path / "pr").mkdir()
    (tmp_path / "pr" / "test-hyp.ark").write_text("u1 a b\n")
    mask = os.umask(0o022)
    try:
        zipped = pack({"pr": tmp_path / "pr"}, tmp_path / "sub")
    finally:
        os.umask(mask)
    assert zipped == tmp_path / "sub" / "predict.zip" and (zipped.stat().st_mode & 0o777) == 0o644
    assert not list((tmp_path / "sub").glob(".*"))  # no temporary file left


# ------------------------------------------------------------------ 10. the feature cache keys on whole files
def test_a_same_size_edit_with_its_mtime_restored_is_a_feature_cache_miss(tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    from s3prl_colld.downstream.features import stat_key

    rng = np.random.RandomState(0)
    utts = []
    for i in range(4):  # WAV: the size depends on the length only
        path = tmp_path / "audio" / f"u{i}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, rng.randn(32000).astype(np.float32) * 0.1, 16000, subtype="PCM_16")
        utts.append(corpus.Utterance(f"u{i}", path, "a"))
    fbank, cache = FrozenUpstream("fbank"), tmp_path / "cache"
    first = feature_source(fbank, utts, "train", cache, max_gb=1.0, progress=False)
    old = first.get([2])[0]
    # edit the middle of u2 (the first and last 4 KiB stay), same size, mtime restored
    victim = utts[2].path
    st = victim.stat()
    wav, _ = sf.read(victim, dtype="float32")
    wav[12000:20000] = rng.randn(8000).astype(np.float32) * 0.1
    sf.write(victim, wav, 16000, subtype="PCM_16")
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert victim.stat().st_size == st.st_size and victim.stat().st_mtime_ns == st.st_mtime_ns
    assert file_identity(victim) == file_identity(victim)  # (the previous key could not tell)
    caplog.clear()
    with caplog.at_level("INFO"):
        again = feature_source(fbank, utts, "train", cache, max_gb=1.0, progress=False)
    assert "is stale (1 of 4 audio files changed since it was built" in caplog.text
    new = again.get([2])[0]
    torch.testing.assert_close(new, LiveFeatures(fbank, utts).get([2])[0].half().float())
    assert not torch.allclose(new, old)
    # touched, bytes unchanged: a hit, and the index keeps the new stat so the next run does not hash it again
    os.utime(utts[0].path, ns=(time.time_ns(), time.time_ns()))
    caplog.clear()
    with caplog.at_level("INFO"):
        hit = feature_source(fbank, utts, "train", cache, max_gb=1.0, progress=False)
    assert "feature cache: reading" in caplog.text and hit.folder == again.folder
    index = json.loads((hit.folder / "index.json").read_text())
    assert index["stat"][0] == stat_key(utts[0].path)
