"""Unit targets beyond MFCCs: HuBERT's iteration-2 units, denoising units, the cache, and DiceHuBERT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from s3prl_colld.checkpoint import latest_checkpoint, load
from s3prl_colld.config import ConfigError, from_dict
from s3prl_colld.data.audio import load_audio
from s3prl_colld.data.bucket import crop_spans
from s3prl_colld.data.clean_copies import clean_copies
from s3prl_colld.data.lengths import read_length_table
from s3prl_colld.data.units import UnitQuantizer, mfcc_50hz, num_frames
from s3prl_colld.s3prl_bridge.teacher import TeacherConfig
from s3prl_colld.models.tiny_hubert import TinyHubertConfig, build_hubert
from s3prl_colld.pretrain.schema import DataConfig
from s3prl_colld.pretrain.task import get_task
from s3prl_colld.pretrain.unit_targets import UnitsConfig, load_units, prepare_units

CPU = torch.device("cpu")


def _teacher_ckpt(teacher_run: Path) -> Path:
    ckpt = latest_checkpoint(teacher_run)
    assert ckpt is not None
    return ckpt


def _layer_features(ckpt: Path, wav: torch.Tensor, layer: int) -> torch.Tensor:
    """Our own HubertModel (not s3prl's upstream hooks): the output of transformer layer ``layer``, ``[T, D]``."""
    state = load(ckpt)
    model = build_hubert(from_dict(TinyHubertConfig, state["config"]["model"]), len(state["dictionaries_symbols"][0]))
    model.load_state_dict(state["model_weight"])
    model.eval()
    with torch.no_grad():
        x, _ = model.extract_features(wav[None], padding_mask=torch.zeros(1, wav.numel(), dtype=torch.bool),
                                      mask=False, output_layer=layer)
    return x[0]


def test_iteration2_units_are_kmeans_of_an_iteration1_layer(teacher_run: Path, synth_corpus_en: Path,
                                                            tmp_path: Path) -> None:
    ckpt = _teacher_ckpt(teacher_run)
    units = UnitsConfig(source="teacher", layer=2, n_clusters=8, cache_dir=str(tmp_path / "cache"))
    teacher = TeacherConfig(name="hubert_local", ckpt=str(ckpt))
    data = DataConfig(root=str(synth_corpus_en))
    path = prepare_units(units, teacher, data, tmp_path, CPU)
    state = load_units(path)
    q = UnitQuantizer.from_state_dict(state["quantizer"])
    assert q.centroids is not None and q.centroids.shape == (8, 192)  # clustered the 192-dim layer, not MFCCs
    rows = read_length_table(synth_corpus_en, "train")
    assert set(state["units"]) == {r.uttid for r in rows}
    used = torch.cat(list(state["units"].values())).unique()
    assert len(used) >= 6  # k-means of a layer, not a constant
    copies = clean_copies(synth_corpus_en)
    noisy = [r for r in rows if str(r.path.resolve()) in copies]
    for row in [noisy[0], noisy[1]] + [r for r in rows if r not in noisy][:1]:
        # a noisy utterance's units come from its clean copy (units.denoise is on by default)
        wav = load_audio(copies.get(str(row.path.resolve()), row.path))
        expected = q.labels(_layer_features(ckpt, wav, 2))
        got = state["units"][row.uttid]
        assert got.shape == (num_frames(row.num_samples),) and got.dtype == torch.long
        assert torch.equal(got, expected)
        # the layer index is honoured: the last layer's features would give other units
        assert not torch.equal(got, q.labels(_layer_features(ckpt, wav, 4)))

    # cached: the same key reuses the file, another layer or k makes another one
    mtime = path.stat().st_mtime_ns
    assert prepare_units(units, teacher, data, tmp_path, CPU) == path and path.stat().st_mtime_ns == mtime
    other = prepare_units(UnitsConfig(source="teacher", layer=1, n_clusters=8, cache_dir=units.cache_dir),
                          teacher, data, tmp_path, CPU)
    assert other != path and other.parent == path.parent


def test_iteration2_layer_out_of_range_is_a_config_error(teacher_run: Path, synth_corpus_en: Path,
                                                         tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="has 4 layers"):
        prepare_units(UnitsConfig(source="teacher", layer=5, n_clusters=8), TeacherConfig(ckpt=str(_teacher_ckpt(teacher_run))),
                      DataConfig(root=str(synth_corpus_en)), tmp_path, CPU)


def test_denoised_units_come_from_the_clean_copy(synth_corpus_en: Path, tmp_path: Path) -> None:
    data = DataConfig(root=str(synth_corpus_en))
    copies = clean_copies(synth_corpus_en)
    rows = read_length_table(synth_corpus_en, "train")
    noisy_rows = [r for r in rows if str(r.path.resolve()) in copies]
    clean_rows = [r for r in rows if str(r.path.resolve()) not in copies]
    assert 0 < len(noisy_rows) < len(rows)  # corpus v2: half of train is noisy, with clean copies
    row = noisy_rows[0]
    assert copies[str(row.path.resolve())] == synth_corpus_en / "clean" / row.path.relative_to(synth_corpus_en)

    auto = load_units(prepare_units(UnitsConfig(n_clusters=10), None, data, tmp_path / "auto", CPU))
    off = load_units(prepare_units(UnitsConfig(n_clusters=10, denoise=False), None, data, tmp_path / "off", CPU))
    assert auto["num_denoised"] == len(noisy_rows) and off["num_denoised"] == 0
    q_auto, q_off = UnitQuantizer.from_state_dict(auto["quantizer"]), UnitQuantizer.from_state_dict(off["quantizer"])
    changed = 0
    for row in noisy_rows[:4]:
        clean = load_audio(copies[str(row.path.resolve())])
        noisy = load_audio(row.path)
        assert clean.shape == noisy.shape and not torch.equal(clean, noisy)
        assert torch.equal(auto["units"][row.uttid], q_auto.labels(mfcc_50hz(clean)))
        assert torch.equal(off["units"][row.uttid], q_off.labels(mfcc_50hz(noisy)))
        changed += int(not torch.equal(auto["units"][row.uttid], q_auto.labels(mfcc_50hz(noisy))))
    assert changed == 4  # the noisy audio would have given other units
    for row in clean_rows[:2]:
        assert torch.equal(auto["units"][row.uttid], q_auto.labels(mfcc_50hz(load_audio(row.path))))

    with pytest.raises(ConfigError, match="lists no clean copy"):  # dev is clean (dev_noisy is its noisy twin)
        prepare_units(UnitsConfig(n_clusters=10, denoise=True), None, DataConfig(root=str(synth_corpus_en),
                                                                                  splits=["dev"]), tmp_path / "dev", CPU)
    with pytest.raises(ConfigError, match="occurs twice"):  # units are stored by id; dev_noisy reuses dev's ids
        prepare_units(UnitsConfig(n_clusters=10), None, DataConfig(root=str(synth_corpus_en),
                                                                   splits=["dev", "dev_noisy"]), tmp_path / "d2", CPU)


def _task(name: str, overrides: dict, expdir: Path):  # type: ignore[no-untyped-def]
    from s3prl_colld.pretrain.cli import resolve_config

    cls = get_task(name)
    text = ",,".join(f"config.{k}={v}" for k, v in overrides.items())
    cfg = resolve_config(cls, overrides=text)
    cls.prepare(cfg, expdir)
    return cls(cfg, expdir)


def test_online_units_use_the_clean_crop_at_the_noisy_crops_offsets(teacher_run: Path, synth_corpus_en: Path,
                                                                    tmp_path: Path) -> None:
    ckpt = _teacher_ckpt(teacher_run)
    common = {"data.root": synth_corpus_en, "teacher.ckpt": ckpt, "units.n_clusters": 8, "units.layer": 2,
              "units.cache_dir": tmp_path / "cache", "runner.device": "cpu"}
    offline = _task("dicehubert", {**common, "units.mode": "offline"}, tmp_path / "off")
    online = _task("dicehubert", {**common, "units.mode": "online"}, tmp_path / "on")  # reuses offline's k-means
    ds = online.train_dataset()
    copies = clean_copies(synth_corpus_en)
    idx = [i for i, r in enumerate(ds.rows) if str(r.path.resolve()) in copies][:3]
    items = [ds[i] for i in idx]
    assert all(it["clean"] is not None and it["clean"].shape == it["wav"].shape for it in items)

    gen = torch.Generator().manual_seed(5)
    batch = online.collate(items, gen)
    d = online.cfg.data
    spans = crop_spans([len(it["wav"]) for it in items], int(d.crop_min_sec * 16_000), int(d.crop_max_sec * 16_000),
                       320, torch.Generator().manual_seed(5))
    for b, (it, (start, end)) in enumerate(zip(items, spans)):
        assert torch.equal(batch["wav"][b, : end - start], it["wav"][start:end])
        assert torch.equal(batch["clean_wav"][b, : end - start], it["clean"][start:end])
        assert not torch.equal(batch["clean_wav"][b, : end - start], batch["wav"][b, : end - start])

    # on a whole utterance (no crop, no padding), online labels equal the offline cache's
    online.cfg.data.crop_min_sec = online.cfg.data.crop_max_sec = 1000.0
    one = online.collate([items[0]], torch.Generator().manual_seed(0))
    assert one["clean_wav"].shape == (1, items[0]["wav"].numel())
    got = online.targets(one)[0]
    assert offline.units is not None and torch.equal(got, offline.units[items[0]["id"]])


def test_iteration2_init_from_teacher_copies_weights_but_not_the_unit_head(teacher_run: Path, synth_corpus_en: Path,
                                                                          tmp_path: Path) -> None:
    ckpt = _teacher_ckpt(teacher_run)
    task = _task("hubert_tiny", {"data.root": synth_corpus_en, "teacher.ckpt": ckpt, "units.source": "teacher",
                                 "units.layer": 3, "units.n_clusters": 12, "init.from_teacher": "all",
                                 "units.cache_dir": tmp_path / "cache"}, tmp_path)
    teacher = load(ckpt)["model_weight"]
    mine = task.hubert.state_dict()
    assert task.n_units == 12 and mine["label_embs_concat"].shape[0] == 12
    for name in ("feature_extractor.conv_layers.0.0.weight", "encoder.layers.3.fc2.weight", "post_extract_proj.bias"):
        assert torch.equal(mine[name], teacher[name])
    assert not torch.equal(mine["final_proj.weight"], teacher["final_proj.weight"])


@pytest.mark.parametrize("overrides, message", [
    ({"units.source": "teacher"}, "need config.teacher"),
    ({"teacher.ckpt": "x.ckpt"}, "config.teacher is set but unused"),
    ({"init.from_teacher": "all"}, "need config.teacher"),
])
def test_hubert_tiny_teacher_options_are_checked(overrides: dict, message: str) -> None:
    from s3prl_colld.pretrain.cli import resolve_config

    text = ",,".join(f"config.{k}={v}" for k, v in overrides.items())
    with pytest.raises(ConfigError, match=message):
        resolve_config(get_task("hubert_tiny"), overrides=text)


def test_dicehubert_needs_teacher_units() -> None:
    from s3prl_colld.pretrain.cli import resolve_config

    with pytest.raises(ConfigError, match="units.source must be teacher"):
        resolve_config(get_task("dicehubert"), overrides="config.units.source=mfcc,,config.teacher.ckpt=x.ckpt")


def test_dicehubert_learns_the_units_and_loads_through_s3prl(teacher_run: Path, synth_corpus_en: Path,
                                                             tmp_path: Path) -> None:
    from s3prl.nn import S3PRLUpstream

    import s3prl_colld.hub  # noqa: F401  (registers dicehubert_local)
    from s3prl_colld.pretrain.cli import main
    from s3prl_colld.pretrain.tasks.hubert_tiny import units_location
    from s3prl_colld.pretrain.unit_targets import load_units

    expdir = tmp_path / "dice"
    ckpt = _teacher_ckpt(teacher_run)
    # toy size: 100 steps of a 2 x 192 student on a 40-step teacher's layer-1 units; short masks (2 frames,
    # mask_prob 0.3) so that masked prediction is learnable within a few seconds of training
    rc = main(["-u", "dicehubert", "-p", str(expdir), "-o",
               f"config.data.root={synth_corpus_en},,config.teacher.ckpt={ckpt},,config.runner.total_steps=100,,"
               "config.runner.log_step=10,,config.runner.save_step=100,,config.runner.num_workers=0,,"
               "config.runner.progress_bar=false,,config.data.batch_size=8,,config.data.crop_min_sec=1.0,,"
               "config.data.crop_max_sec=2.0,,config.optimizer.warmup_steps=10,,config.units.n_clusters=20,,"
               "config.units.layer=1,,config.model.mask_length=2,,config.model.mask_prob=0.3"])
    assert rc == 0
    rows = [json.loads(x) for x in (expdir / "log.jsonl").read_text().splitlines()]
    state = load(expdir / "states-100.ckpt")
    cfg = from_dict(get_task("dicehubert").Config, state["config"])
    labels = torch.cat(list(load_units(units_location(cfg, expdir)[0])["units"].values()))
    chance = float(torch.bincount(labels, minlength=20).max()) / len(labels)  # always guessing the commonest unit
    first, last = rows[0]["acc_m"], sum(r["acc_m"] for r in rows[-3:]) / 3
    assert last > first + 0.05 and last > chance + 0.05, (first, last, chance)

    upstream = S3PRLUpstream("dicehubert_local", path_or_url=str(expdir / "states-100.ckpt")).eval()
    wav = torch.randn(1, 16_000) * 0.1
    with torch.no_grad():
        hs, _ = upstream(wav, torch.tensor([16_000]))
    assert len(hs) == 3 and all(h.shape == (1, 50, 192) for h in hs)  # front-end + 2 student layers, ceil(N / 320)
    student = build_hubert(from_dict(TinyHubertConfig, state["config"]["model"]), 20)
    student.load_state_dict(state["model_weight"])
    student.eval()
    with torch.no_grad():
        x, _ = student.extract_features(wav, padding_mask=torch.zeros_like(wav, dtype=torch.bool))
    torch.testing.assert_close(hs[-1][:, : x.size(1)], x)
