"""The tiny HuBERT with an Fbank front-end (``config.model.frontend=fbank``): training, ``hubert_fbank_local``,
iteration 2 from it, and the clear errors where s3prl's ``hubert_local`` or an export cannot take it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from s3prl_colld.checkpoint import CheckpointError, latest_checkpoint, load
from s3prl_colld.config import ConfigError
from s3prl_colld.data.units import num_frames
from s3prl_colld.models.tiny_hubert import FbankExtractor, TinyHubertConfig, build_hubert, load_tiny_hubert
from s3prl_colld.pretrain.cli import main as pretrain_main

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
COMMON = ("config.runner.log_step=1,,config.runner.num_workers=0,,config.runner.progress_bar=false,,"
          "config.data.batch_size=4,,config.optimizer.warmup_steps=5")


@pytest.fixture(scope="module")
def fbank_teacher(synth_corpus_en: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 30-step tiny HuBERT with the Fbank front-end (iteration 1, MFCC units) on ``synth_corpus_en``."""
    expdir = tmp_path_factory.mktemp("fbank_teacher")
    assert pretrain_main(["-u", "hubert_tiny", "-n", "t", "-p", str(expdir), "-o",
                          f"config.data.root={synth_corpus_en},,config.runner.total_steps=30,,"
                          f"config.runner.save_step=30,,config.units.n_clusters=20,,config.model.frontend=fbank,,"
                          + COMMON]) == 0
    return expdir


def test_fbank_frames_are_the_cnns_or_one_fewer() -> None:
    fx = FbankExtractor(out_dim=128, hidden=32)
    for n in (800, 959, 960, 16_000, 16_321, 33_333):  # from 0.05 s, what S3PRLUpstream pads shorter input to
        with torch.no_grad():
            t = fx(torch.randn(2, n) * 0.1).shape
        assert t[:2] == (2, 128)
        assert t[2] in (num_frames(n), num_frames(n) - 1), (n, t, num_frames(n))


def test_fbank_teacher_trains_and_names_its_upstream(fbank_teacher: Path) -> None:
    rows = [json.loads(x) for x in (fbank_teacher / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows]
    assert len(losses) == 30 and sum(losses[-6:]) / 6 < sum(losses[:6]) / 6
    state = load(latest_checkpoint(fbank_teacher))
    assert state["export"]["upstreams"] == ["hubert_fbank_local"]
    assert state["tiny_hubert"]["frontend"] == "fbank"
    assert any(k.startswith("feature_extractor.fbank.") for k in state["model_weight"])
    assert not any(k.startswith("feature_extractor.conv_layers.") for k in state["model_weight"])


def test_hubert_fbank_local_gives_the_models_own_hidden_states(fbank_teacher: Path) -> None:
    from s3prl.nn import S3PRLUpstream

    import s3prl_colld.hub  # noqa: F401  (registers hubert_fbank_local)

    ckpt = latest_checkpoint(fbank_teacher)
    upstream = S3PRLUpstream("hubert_fbank_local", path_or_url=str(ckpt)).eval()
    wav = torch.randn(1, 24_000) * 0.1
    with torch.no_grad():
        hs, _ = upstream(wav, torch.tensor([24_000]))
    assert len(hs) == 5 and all(h.shape == (1, 75, 192) for h in hs)
    ours, _ = load_tiny_hubert(ckpt)
    with torch.no_grad():
        x, _ = ours.eval().extract_features(wav, padding_mask=torch.zeros_like(wav, dtype=torch.bool))
    torch.testing.assert_close(hs[-1][:, : x.size(1)], x)
    # a model built from the config with other weights differs: the loader did load this checkpoint's weights
    fresh = build_hubert(TinyHubertConfig(frontend="fbank"), 20).eval()
    with torch.no_grad():
        y, _ = fresh.extract_features(wav, padding_mask=torch.zeros_like(wav, dtype=torch.bool))
    assert not torch.allclose(x, y)


def test_the_teachers_fast_path_matches_s3prls(fbank_teacher: Path) -> None:
    from s3prl_colld.s3prl_bridge.teacher import Teacher, TeacherConfig

    from s3prl_colld.models.teacher_fast import hubert_expert

    teacher = Teacher(TeacherConfig(name="hubert_fbank_local", ckpt=str(latest_checkpoint(fbank_teacher))))
    assert hubert_expert(teacher.upstream) is not None  # the direct path is open to it (else both runs are s3prl's)
    wav, lengths = torch.randn(2, 20_000) * 0.1, torch.tensor([20_000, 20_000])
    teacher.set_kernels(direct=True)
    with torch.no_grad():
        fast = teacher.run(wav, lengths, padded=False, frontend=True)
    teacher.set_kernels(direct=False)
    with torch.no_grad():
        slow = teacher.run(wav, lengths, padded=False, frontend=True)
    assert len(fast.hidden) == 5
    for a, b in zip(fast.hidden, slow.hidden):
        torch.testing.assert_close(a, b)
    assert fast.frontend is not None and fast.frontend.shape[-1] == 128  # the front-end's output width
    with pytest.raises(ConfigError, match="runs in fp32 only"):
        Teacher(TeacherConfig(name="hubert_fbank_local", ckpt=str(latest_checkpoint(fbank_teacher)), precision="bf16"))


def test_hubert_local_and_export_refuse_it_by_name(fbank_teacher: Path) -> None:
    from s3prl_colld.export.source import ExportError, load_source
    from s3prl_colld.s3prl_bridge.frozen import FrozenS3PRLUpstream

    ckpt = latest_checkpoint(fbank_teacher)
    with pytest.raises(CheckpointError, match="load it with -u hubert_fbank_local, not -u hubert_local"):
        FrozenS3PRLUpstream("hubert_local", ckpt)
    with pytest.raises(ExportError, match="fbank front-end"):
        load_source(ckpt)


def test_iteration_2_from_an_fbank_teacher(fbank_teacher: Path, synth_corpus_en: Path, tmp_path: Path) -> None:
    """Units of the iteration-1 model's layer (loaded as hubert_fbank_local) and every weight copied from it."""
    it1 = latest_checkpoint(fbank_teacher)
    assert pretrain_main(["-u", "hubert_tiny", "-n", "it2", "-p", str(tmp_path),
                          "-c", str(CONFIG_DIR / "pretrain" / "hubert_tiny" / "iter2.yaml"), "-o",
                          f"config.data.root={synth_corpus_en},,config.teacher.ckpt={it1},,"
                          "config.teacher.name=hubert_fbank_local,,config.model.frontend=fbank,,"
                          "config.units.n_clusters=20,,config.units.layer=2,,config.runner.total_steps=1,,"
                          "config.runner.save_step=1,,config.optimizer.lr=1e-12,," + COMMON]) == 0
    state = load(latest_checkpoint(tmp_path))
    start, before = state["model_weight"], load(it1)["model_weight"]
    front = [k for k in start if k.startswith("feature_extractor.fbank.")]
    # init.from_teacher: all (one update at lr 1e-12 moves nothing measurable)
    assert front and all(torch.allclose(start[k], before[k], atol=1e-6) for k in front)
    units = list((tmp_path / "units").glob("units-*.pt"))
    assert units and load(units[0])["quantizer"]["n_clusters"] == 20  # k-means of the fbank teacher's layer 2
    assert state["export"]["upstreams"] == ["hubert_fbank_local"]


def test_a_cnn_teacher_names_hubert_local_only(teacher_run: Path) -> None:
    """The task registers both names; a checkpoint names the one that builds its front-end."""
    assert load(latest_checkpoint(teacher_run))["export"]["upstreams"] == ["hubert_local"]
