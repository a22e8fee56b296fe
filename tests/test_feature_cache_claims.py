"""The feature cache's promises (README, downstream/features.py): a new checkpoint never reads another's
features, a build killed half-way leaves nothing that is read later, and a cache above 90% of the free disk
is refused (the upstream is recomputed instead)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from process_group import popen_group
from s3prl_colld.downstream import corpus, features
from s3prl_colld.downstream.features import CachedFeatures, LiveFeatures, estimate_bytes, feature_source
from s3prl_colld.downstream.upstream import FrozenUpstream

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _same_as_live(source: features.FeatureSource, upstream: FrozenUpstream, utts: list) -> bool:
    live = LiveFeatures(upstream, utts)
    return len(source) == len(utts) and all(
        torch.allclose(source.get([i])[0], live.get([i])[0].half().float()) for i in range(len(utts)))


def test_a_new_checkpoint_never_reads_another_checkpoints_features(teacher_run: Path, synth_corpus_en: Path,
                                                                   tmp_path: Path) -> None:
    """The same path, size and modification time, another content: the features are the new model's."""
    utts = corpus.transcript_utterances(synth_corpus_en, "dev")[:3]
    ckpt, cache = tmp_path / "model.ckpt", tmp_path / "cache"
    shutil.copy(teacher_run / "states-20.ckpt", ckpt)
    stamp = os.stat(ckpt)
    old = FrozenUpstream("hubert_local", ckpt)
    first = feature_source(old, utts, "asr-dev", cache, max_gb=1.0, progress=False)
    assert isinstance(first, CachedFeatures)

    shutil.copy(teacher_run / "states-40.ckpt", ckpt)  # trained further: same shapes, same file size
    assert os.path.getsize(ckpt) == stamp.st_size
    os.utime(ckpt, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    new = FrozenUpstream("hubert_local", ckpt)
    second = feature_source(new, utts, "asr-dev", cache, max_gb=1.0, progress=False)
    assert _same_as_live(second, new, utts)
    assert not torch.allclose(second.get([0])[0], first.get([0])[0], atol=1e-2)  # the two models do differ
    # and the old checkpoint still finds its own features
    shutil.copy(teacher_run / "states-20.ckpt", ckpt)
    again = FrozenUpstream("hubert_local", ckpt)
    assert _same_as_live(feature_source(again, utts, "asr-dev", cache, max_gb=1.0, progress=False), again, utts)


KILLED_BUILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from s3prl_colld.downstream import corpus, features
    from s3prl_colld.downstream.upstream import FrozenUpstream

    root, cache = Path(sys.argv[1]), Path(sys.argv[2])
    get, calls = features.LiveFeatures.get, []

    def get_then_hang(self, indices):
        calls.append(1)
        if len(calls) == 4:  # three utterances written: wait here to be killed
            print("half-way", flush=True)
            time.sleep(600)
        return get(self, indices)

    features.LiveFeatures.get = get_then_hang
    utts = corpus.transcript_utterances(root, "dev")
    features.feature_source(FrozenUpstream("fbank"), utts, "asr-dev", cache, max_gb=1.0, progress=False)
""")


def test_a_build_killed_half_way_leaves_no_cache_that_is_read(synth_corpus_en: Path, tmp_path: Path) -> None:
    script, cache = tmp_path / "build.py", tmp_path / "cache"
    script.write_text(KILLED_BUILD)
    with popen_group([sys.executable, str(script), str(synth_corpus_en), str(cache)], env=ENV,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "half-way", proc.stderr.read()
        proc.kill()
        proc.wait()
    upstream = FrozenUpstream("fbank")
    folder = cache / upstream.fingerprint / "asr-dev"
    assert not (folder / "index.json").exists()  # nothing complete-looking where the cache would be
    utts = corpus.transcript_utterances(synth_corpus_en, "dev")
    source = feature_source(upstream, utts, "asr-dev", cache, max_gb=1.0, progress=False)
    assert isinstance(source, CachedFeatures) and source.folder == folder
    assert _same_as_live(source, upstream, utts)  # rebuilt in full, not the 3 utterances of the killed build


@pytest.mark.parametrize("free_over_need, cached", [(1.05, False), (1.2, True)])
def test_a_cache_above_90_percent_of_the_free_disk_is_refused(free_over_need: float, cached: bool,
                                                             synth_corpus_en: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    upstream = FrozenUpstream("fbank")
    utts = corpus.transcript_utterances(synth_corpus_en, "dev")
    need = estimate_bytes(utts, upstream)
    real = shutil.disk_usage

    def disk_usage(path: str | os.PathLike) -> tuple:  # a disk with room for `free_over_need` caches
        usage = real(path)
        return type(usage)(usage.total, usage.used, int(need * free_over_need))

    monkeypatch.setattr(features.shutil, "disk_usage", disk_usage)
    with caplog.at_level(logging.WARNING):
        source = feature_source(upstream, utts, "asr-dev", tmp_path / "cache", max_gb=1000.0, progress=False)
    folder = tmp_path / "cache" / upstream.fingerprint / "asr-dev"
    if cached:
        assert isinstance(source, CachedFeatures) and (folder / "index.json").is_file()
    else:
        assert isinstance(source, LiveFeatures) and not folder.exists()
        assert "90%" in caplog.text and "free" in caplog.text
    assert len(source) == len(utts)
