"""The tiny HuBERT teacher: units, training, and the s3prl hub round-trip."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from s3prl_colld.checkpoint import latest_checkpoint, load
from s3prl_colld.data.units import UnitQuantizer, mfcc_50hz, num_frames
from s3prl_colld.models.tiny_hubert import TinyHubertConfig, build_hubert


def test_mfcc_frames_match_cnn_frames() -> None:
    model = build_hubert(TinyHubertConfig(), n_units=10).eval()
    for n in (400, 719, 720, 16_000, 16_321, 33_333):
        wav = torch.randn(n) * 0.1
        with torch.no_grad():
            cnn = model.feature_extractor(wav[None])  # [1, C, T]
        assert mfcc_50hz(wav).shape == (num_frames(n), 39)
        assert cnn.size(2) == num_frames(n)


def test_unit_quantizer_recovers_clusters() -> None:
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 39, generator=gen) * 10
    labels = torch.randint(4, (2000,), generator=gen)
    frames = centres[labels] + 0.1 * torch.randn(2000, 39, generator=gen)
    q = UnitQuantizer(4, seed=0)
    q.fit(frames)
    pred = UnitQuantizer.from_state_dict(q.state_dict()).labels(frames)
    # the same partition up to a permutation of ids: 4 distinct predictions, each true cluster mapped to
    # exactly one of them, and the mapping one-to-one (a constant or merging quantizer fails here)
    assert sorted(set(pred.tolist())) == [0, 1, 2, 3]
    mapping = {}
    for true, got in zip(labels.tolist(), pred.tolist()):
        assert mapping.setdefault(true, got) == got, f"true cluster {true} split over units {mapping[true]}, {got}"
    assert sorted(mapping.values()) == [0, 1, 2, 3]
    perm = torch.tensor([mapping[k] for k in range(4)])
    assert torch.equal(pred, perm[labels])
    # unseen frames of the same clusters get the same units
    fresh = torch.randint(4, (200,), generator=gen)
    assert torch.equal(q.labels(centres[fresh] + 0.1 * torch.randn(200, 39, generator=gen)), perm[fresh])


def test_teacher_trains_and_loss_falls(teacher_run: Path) -> None:
    rows = [json.loads(x) for x in (teacher_run / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows]
    assert len(losses) == 40 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-8:]) / 8 < sum(losses[:8]) / 8
    assert all(0.0 <= r["acc_m"] <= 1.0 for r in rows if "acc_m" in r)


def test_teacher_checkpoint_loads_through_s3prl_hub(teacher_run: Path, synth_corpus_en: Path) -> None:
    from s3prl.nn import S3PRLUpstream

    ckpt = latest_checkpoint(teacher_run)
    assert ckpt is not None and ckpt.name == "states-40.ckpt"
    state = load(ckpt)  # weights_only=True
    for key in ("task_cfg", "model_cfg", "model_weight", "dictionaries_symbols"):
        assert key in state
    assert "final_proj.weight" in state["model_weight"] and "label_embs_concat" in state["model_weight"]
    assert len(state["dictionaries_symbols"][0]) == 20

    upstream = S3PRLUpstream("hubert_local", path_or_url=str(ckpt)).eval()
    wav = torch.randn(1, 24_000) * 0.1
    with torch.no_grad():
        hs, lens = upstream(wav, torch.tensor([24_000]))
    assert len(hs) == 5  # CNN-projected input + 4 layers
    assert all(h.shape == (1, 75, 192) for h in hs)
    # the hub's last hidden state equals our own model's encoder output
    ours = build_hubert(TinyHubertConfig(), 20)
    ours.load_state_dict(state["model_weight"])
    ours.eval()
    with torch.no_grad():
        x, _ = ours.extract_features(wav, padding_mask=torch.zeros_like(wav, dtype=torch.bool))
    torch.testing.assert_close(hs[-1][:, : x.size(1)], x)
