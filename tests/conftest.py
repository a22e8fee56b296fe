"""Shared fixtures: tiny synthetic corpora, generated once per test session.

``synth_corpus_en``: 120 English utterances (train/dev/test 96/12/12, half of
train noisy, test_unseen 6, dev_noisy and test_noisy 12 each; espeak-ng and
flite voices, German targets); ``synth_corpus_de``: 60 German utterances
(48/6/6, test_unseen 3; espeak-ng, English targets). Both are the full layout
of :mod:`s3prl_colld.data.synth` (LibriSpeech folders, clean copies of noisy
audio, lexicon, phone transcripts, CoVoST tsv, len_for_bucket, manifest),
seed 0; each takes 10-20 s on 2 cores.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # importable however pytest was started
    sys.path.insert(0, str(REPO_ROOT))

from s3prl_colld.data.synth import main as synth_main  # noqa: E402

# the per-user cache (audio checks) goes to a throwaway folder, for this process and the subprocesses of tests
_CACHE = tempfile.mkdtemp(prefix="s3prl_colld_test_cache_")
os.environ["S3PRL_COLLD_CACHE"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, True)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a test of a minute or more (deselect with -m 'not slow')")


def make_corpus(out: Path, lang: str, utterances: int, seed: int = 0, workers: int = 2,
                extra: Sequence[str] = ()) -> Path:
    """Generate a corpus into ``out`` (in this process, with more CLI arguments ``extra``) and return ``out``."""
    argv = ["--lang", lang, "--out", str(out), "--utterances", str(utterances), "--seed", str(seed),
            "--workers", str(workers), *extra]
    assert synth_main(argv) == 0, f"corpus generation failed: {argv}"
    return out


@pytest.fixture(scope="session")
def synth_corpus_en(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a 120-utterance English corpus (read-only: do not write into it)."""
    return make_corpus(tmp_path_factory.mktemp("synth_en") / "corpus", "en", 120)


@pytest.fixture(scope="session")
def synth_corpus_de(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a 60-utterance German corpus (read-only: do not write into it)."""
    return make_corpus(tmp_path_factory.mktemp("synth_de") / "corpus", "de", 60)


@pytest.fixture(scope="session")
def teacher_run(synth_corpus_en: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40-step tiny HuBERT teacher trained on ``synth_corpus_en`` (its run folder)."""
    from s3prl_colld.pretrain.cli import main

    expdir = tmp_path_factory.mktemp("teacher")
    rc = main([
        "-u", "hubert_tiny", "-n", "t", "-p", str(expdir), "-o",
        f"config.data.root={synth_corpus_en},,config.runner.total_steps=40,,config.runner.log_step=1,,"
        "config.runner.save_step=20,,config.runner.num_workers=0,,config.runner.progress_bar=false,,"
        "config.data.batch_size=4,,config.units.n_clusters=20,,config.optimizer.warmup_steps=5",
    ])
    assert rc == 0
    return expdir

