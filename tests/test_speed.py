"""The fast paths compute what the reference paths compute (issue 12: faster, not different).

Each fast path (SDPA attention, the masked losses, the InfoNCE from one
similarity matrix, the channels-last CNN, the direct teacher call, norms in
the autocast dtype) is compared with the implementation it replaces, on CPU,
forward and gradients; then whole distillation steps, fast vs reference.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from s3prl_colld.models.attention import EncoderLayer, use_fairseq_sdpa
from s3prl_colld.models.frontends import CNNConfig, WavCNN, conv_stack
from s3prl_colld.objectives.losses import info_nce, l1_cosine, sample_negatives

TINY_CNN = [[32, 10, 5]] + [[32, 3, 2]] * 4 + [[32, 2, 2]] * 2


# ---------------------------------------------------------------- references (the code the fast paths replaced)
def _l1_cosine_ref(pred, target, mask, cos_weight=1.0):
    p, y = pred[mask].float(), target[mask].float()
    cos = F.cosine_similarity(p, y, dim=-1)
    return (p - y).abs().mean() + cos_weight * -F.logsigmoid(cos).mean()


def _info_nce_ref(pred, target, valid, query, k, tau, generator):
    b, t = query.nonzero(as_tuple=True)
    neg_t = sample_negatives(valid, query, k, generator)
    p = F.normalize(pred[b, t].float(), dim=-1)
    y = F.normalize(target.float(), dim=-1)
    pos, negs = y[b, t], y[b[:, None], neg_t]
    logits = torch.cat([(p * pos).sum(-1, keepdim=True), torch.einsum("md,mkd->mk", p, negs)], dim=1) / tau
    logits[:, 1:] = logits[:, 1:].masked_fill(neg_t == t[:, None], float("-inf"))
    return F.cross_entropy(logits, torch.zeros_like(b))


def _grads(loss: torch.Tensor, *xs: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, xs))


def _padded_valid(b: int, t: int) -> torch.Tensor:
    valid = torch.ones(b, t, dtype=torch.bool)
    valid[1, t // 2:] = False
    valid[2, t - 3:] = False
    return valid


# ---------------------------------------------------------------- losses
def test_l1_cosine_equals_the_gathering_version() -> None:
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(3, 17, 8, generator=g, requires_grad=True)
    target = torch.randn(3, 17, 8, generator=g)
    mask = _padded_valid(3, 17)
    with torch.no_grad():
        pred[~mask] = float("nan")  # padding must not leak, whatever it holds
    loss, stats = l1_cosine(pred, target, mask, cos_weight=0.7)
    ref = _l1_cosine_ref(pred, target, mask, cos_weight=0.7)
    torch.testing.assert_close(loss, ref)
    (g1,), (g2,) = _grads(loss, pred), _grads(ref, pred)
    torch.testing.assert_close(g1[mask], g2[mask])
    assert torch.isfinite(loss) and math.isfinite(stats["cos"].item())
    assert math.isnan(l1_cosine(pred, target, torch.zeros_like(mask))[0].item())  # as the mean of nothing


def test_info_nce_from_the_similarity_matrix_equals_the_gathered_negatives() -> None:
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(3, 21, 8, generator=g, requires_grad=True)
    target = torch.randn(3, 21, 8, generator=g)
    valid = _padded_valid(3, 21)
    query = valid & (torch.rand(3, 21, generator=g) < 0.5)
    loss, _ = info_nce(pred, target, valid, query, 10, 0.1, torch.Generator().manual_seed(7))
    ref = _info_nce_ref(pred, target, valid, query, 10, 0.1, torch.Generator().manual_seed(7))
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(_grads(loss, pred)[0], _grads(ref, pred)[0])
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the cosines stay fp32 under autocast
        lb, _ = info_nce(pred, target, valid, query, 10, 0.1, torch.Generator().manual_seed(7))
    torch.testing.assert_close(lb, ref)


# ---------------------------------------------------------------- attention
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("padding", [False, True])
def test_sdpa_encoder_layer_equals_torch_layer(norm_first: bool, padding: bool) -> None:
    torch.manual_seed(0)
    layer = EncoderLayer(16, 4, 32, dropout=0.0, activation="gelu", batch_first=True, norm_first=norm_first)
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation="gelu", batch_first=True,
                                     norm_first=norm_first)
    assert all(torch.equal(a, b) for a, b in zip(layer.state_dict().values(), ref.state_dict().values()))
    assert list(layer.state_dict()) == list(ref.state_dict())  # same checkpoints, same initialisation
    x = torch.randn(3, 11, 16, requires_grad=True)
    pad = ~_padded_valid(3, 11) if padding else None
    y, y_ref = layer(x, src_key_padding_mask=pad), ref(x, src_key_padding_mask=pad)
    keep = torch.ones(3, 11, dtype=torch.bool) if pad is None else ~pad
    torch.testing.assert_close(y[keep], y_ref[keep])
    g = torch.randn_like(y)
    torch.testing.assert_close(_grads((y * g).sum(), x)[0], _grads((y_ref * g).sum(), x)[0])
    layer.sdpa = False  # the switch restores the reference
    torch.testing.assert_close(layer(x, src_key_padding_mask=pad), y_ref)


# ---------------------------------------------------------------- tiny HuBERT teachers
def _teacher_ckpt(folder: Path, mode: str = "default", normalize: bool = False) -> Path:
    from s3prl_colld.models.tiny_hubert import TinyHubertConfig, build_hubert, hubert_local_keys

    cfg = TinyHubertConfig(conv_layers=TINY_CNN, extractor_mode=mode, encoder_layers=2, encoder_embed_dim=32,
                           encoder_ffn_embed_dim=64, encoder_attention_heads=4, conv_pos=16, conv_pos_groups=4)
    torch.manual_seed(0)
    keys = hubert_local_keys(build_hubert(cfg, 10), cfg, 10)
    keys["task_cfg"]["normalize"] = normalize
    path = folder / f"teacher_{mode}_{int(normalize)}.ckpt"
    torch.save(keys, path)
    return path


@pytest.fixture(scope="module")
def teachers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("speed_teachers")
    return {"default": _teacher_ckpt(folder), "layer_norm": _teacher_ckpt(folder, "layer_norm"),
            "normalize": _teacher_ckpt(folder, normalize=True)}


def _teacher(ckpt: Path):
    from s3prl_colld.s3prl_bridge.teacher import Teacher, TeacherConfig

    return Teacher(TeacherConfig(name="hubert_local", ckpt=str(ckpt)))


@pytest.mark.parametrize("kind", ["default", "layer_norm", "normalize"])
def test_teacher_fast_paths_equal_s3prl_upstream(kind: str, teachers: dict[str, Path]) -> None:
    from s3prl_colld.models.fftconv import use_fft_pos_conv
    from s3prl_colld.models.teacher_fast import direct_hidden_states

    teacher = _teacher(teachers[kind])
    wav = torch.randn(3, 8_000) * 0.1
    lengths = torch.full((3,), 8_000)
    teacher.set_kernels(direct=False, sdpa=False, cnn_channels_last=False)
    ref = teacher(wav, lengths)
    assert use_fft_pos_conv(teacher.upstream, False) == 1  # the FFT position conv reaches this teacher's encoder
    with torch.inference_mode():  # the direct call is really taken on this teacher
        assert direct_hidden_states(teacher.upstream, wav, padded=False) is not None
        assert direct_hidden_states(teacher.upstream, wav, padded=True) is None
    for direct, sdpa, cl, fft in [(True, False, False, False), (False, True, False, False),
                                  (False, False, True, False), (False, False, False, True), (True, True, True, True)]:
        teacher.set_kernels(direct=direct, sdpa=sdpa, cnn_channels_last=cl, fft_pos_conv=fft)
        fast = teacher(wav, lengths, padded=False)
        assert [h.shape for h in fast] == [h.shape for h in ref] and len(ref) == 3
        for a, b in zip(fast, ref):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # a padded batch takes the reference path (masks and all) whatever the switches say
    lengths = torch.tensor([8_000, 5_000, 8_000])
    wav[1, 5_000:] = 0
    teacher.set_kernels(direct=False, sdpa=False, cnn_channels_last=False)
    ref = teacher(wav, lengths)
    teacher.set_kernels(direct=True, sdpa=True, cnn_channels_last=True, fft_pos_conv=True)
    for a, b in zip(teacher(wav, lengths, padded=True), ref):
        torch.testing.assert_close(a[[0, 2]], b[[0, 2]], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(a[1, :15], b[1, :15], rtol=1e-4, atol=1e-5)


def test_fairseq_sdpa_wrapper_on_a_padding_mask(teachers: dict[str, Path]) -> None:
    teacher = _teacher(teachers["default"])
    attn = teacher.fairseq_model.encoder.layers[0].self_attn
    x = torch.randn(9, 2, 32)
    pad = torch.zeros(2, 9, dtype=torch.bool)
    pad[1, 6:] = True
    with torch.no_grad():
        ref, _ = attn(x, x, x, key_padding_mask=pad, need_weights=False)
        assert use_fairseq_sdpa(teacher.upstream, True) == 2
        fast, _ = attn(x, x, x, key_padding_mask=pad, need_weights=False)
        _, weights = attn(x, x, x, key_padding_mask=pad, need_weights=True)  # weights: the original code
    torch.testing.assert_close(fast, ref)
    assert weights is not None


# ---------------------------------------------------------------- the CNN
@pytest.mark.parametrize("mode", ["default", "layer_norm"])
def test_channels_last_cnn_equals_reference(mode: str) -> None:
    """In the default mode the first block runs fused (conv + per-channel GroupNorm from the windows'
    covariance); utterance 1 is half silent (zero padding)."""
    from s3prl_colld.models.frontends import _norm_conv_parts

    torch.manual_seed(0)
    cnn = WavCNN(CNNConfig(conv_layers=TINY_CNN, mode=mode))
    assert (_norm_conv_parts(cnn.layers[0]) is not None) == (mode == "default")
    wav = torch.randn(2, 6_000) * 0.1
    wav[1, 3_000:] = 0
    lengths = torch.full((2,), 6_000)
    ref, _ = cnn(wav, lengths)
    cnn.channels_last = True
    fast, valid = cnn(wav, lengths)
    assert fast.is_contiguous() and valid.all()
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-5)
    g = torch.randn_like(ref)
    fast_grads = torch.autograd.grad((fast * g).sum(), list(cnn.parameters()))
    cnn.channels_last = False
    ref_grads = torch.autograd.grad((cnn(wav, lengths)[0] * g).sum(), list(cnn.parameters()))
    # In layer_norm mode the silent half is exact zeros: LayerNorm over a zero frame divides by sqrt(eps) in the
    # backward, layer after layer, and some gradients reach 1e14; float32 sums in another order then differ by
    # 1e7 there (1e-7 of the tensor's scale). So the tolerance is measured against each gradient's scale.
    for a, b in zip(fast_grads, ref_grads):
        scale = max(1.0, float(b.abs().max()))
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("channels_last", [False, True])
def test_cnn_norm_in_bf16_under_autocast(channels_last: bool) -> None:
    torch.manual_seed(0)
    cnn = WavCNN(CNNConfig(conv_layers=TINY_CNN))
    cnn.channels_last, cnn.low_precision_norm = channels_last, True
    wav = torch.randn(2, 6_000) * 0.1
    lengths = torch.full((2,), 6_000)
    seen: list[torch.dtype] = []
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = conv_stack(cnn.layers[:1], wav, channels_last, low_precision_norm=True)
        seen.append(x.dtype)
        fast, _ = cnn(wav, lengths)
        cnn.low_precision_norm = False
        ref, _ = cnn(wav, lengths)
    assert seen == [torch.bfloat16]  # no fp32 round trip of the first (largest) activation
    torch.testing.assert_close(fast.float(), ref.float(), rtol=0.05, atol=0.02)


# ---------------------------------------------------------------- whole steps
def _task(ckpt: Path, tmp: Path, kind: str, share: bool = False):
    from s3prl_colld.config import from_dict
    from s3prl_colld.pretrain.tasks.distill import DistillConfig, DistillTask

    loss = {"kind": "regression"} if kind == "regression" else {"kind": "contrastive", "num_negatives": 8}
    cfg = from_dict(DistillConfig, {
        "teacher": {"name": "hubert_local", "ckpt": str(ckpt)},
        "model": {"frontend": "cnn", "cnn": {"conv_layers": TINY_CNN}, "layers": 2, "dim": 32, "ffn_dim": 64,
                  "heads": 4, "conv_pos": 16, "conv_pos_groups": 4, "dropout": 0.0, "attention_dropout": 0.0,
                  "activation_dropout": 0.0},
        "heads": {"map": "last" if kind == "regression" else "uniform", "targets": [1, 2]},
        "mask": {"prob": 0.0 if kind == "regression" else 0.5, "length": 3},
        "loss": loss, "init": {"share_teacher_frontend": share},
    })
    torch.manual_seed(0)
    return DistillTask(cfg, tmp).train()


@pytest.mark.parametrize("kind, share", [("regression", False), ("contrastive", False), ("regression", True)])
@pytest.mark.parametrize("padded", [False, True])
def test_distill_step_fast_equals_reference(kind: str, share: bool, padded: bool, teachers: dict[str, Path],
                                            tmp_path: Path) -> None:
    task = _task(teachers["default"], tmp_path, kind, share)
    wav = torch.randn(3, 8_000) * 0.1
    lengths = torch.full((3,), 8_000)
    if padded:
        lengths[1] = 5_120
        wav[1, 5_120:] = 0
    batch = {"wav": wav, "wav_lengths": lengths, "padded": padded}
    params = [p for p in task.parameters() if p.requires_grad]
    results = {}
    variants = [("reference", False, False, False), ("fast", True, False, False),
                ("fast+channels_last", True, True, False), ("fast+channels_last+fft", True, True, True)]
    for name, fast, cl, fft in variants:
        task.set_kernels(fast, cl, fft)
        torch.manual_seed(3)  # the same masks and negatives
        loss, stats = task(batch)
        grads = torch.autograd.grad(loss, params, allow_unused=True)  # mask_emb is unused without masking
        results[name] = (loss.detach(), [torch.zeros(()) if g is None else g for g in grads], stats)
    ref_loss, ref_grads, ref_stats = results["reference"]
    for name, *_ in variants[1:]:
        loss, grads, stats = results[name]
        torch.testing.assert_close(loss, ref_loss, rtol=1e-4, atol=1e-5)
        for a, b in zip(grads, ref_grads):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
        assert stats.keys() == ref_stats.keys()


def _step_loss_and_grads(task, batch: dict, precision: str = "fp32") -> tuple[torch.Tensor, list[torch.Tensor]]:
    from s3prl_colld.runtime.precision import autocast

    params = [p for p in task.parameters() if p.requires_grad]
    torch.manual_seed(3)
    with autocast(precision, torch.device("cpu")):
        loss, _ = task(batch)
    grads = torch.autograd.grad(loss.float(), params, allow_unused=True)
    return loss.detach().float(), [torch.zeros(()) if g is None else g.float() for g in grads]


def test_compiled_distill_step_equals_eager(teachers: dict[str, Path], tmp_path: Path) -> None:
    """``runner.compile`` (inductor on CPU: the student and the teacher's CNN) changes how, not what."""
    task = _task(teachers["default"], tmp_path, "regression")
    batch = {"wav": torch.randn(2, 6_000) * 0.1, "wav_lengths": torch.full((2,), 6_000), "padded": False}
    ref_loss, ref_grads = _step_loss_and_grads(task, batch)
    task.compile_modules()
    assert hasattr(task.student, "_compiled_call_impl") and task.student._compiled_call_impl is not None
    for _ in range(2):  # the second call runs the cached graph
        loss, grads = _step_loss_and_grads(task, batch)
        torch.testing.assert_close(loss, ref_loss, rtol=1e-4, atol=1e-5)
        for a, b in zip(grads, ref_grads):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
def test_bf16_distill_step_tracks_fp32(channels_last: bool, teachers: dict[str, Path], tmp_path: Path) -> None:
    """``runner.precision=bf16`` on CPU (the setting of the CPU speed table): the same loss and gradient
    directions as fp32, to bf16 rounding (8-bit mantissa)."""
    task = _task(teachers["default"], tmp_path, "regression")
    batch = {"wav": torch.randn(2, 6_000) * 0.1, "wav_lengths": torch.full((2,), 6_000), "padded": False}
    ref_loss, ref_grads = _step_loss_and_grads(task, batch)
    task.set_kernels(True, channels_last, True)
    loss, grads = _step_loss_and_grads(task, batch, "bf16")
    torch.testing.assert_close(loss, ref_loss, rtol=1e-3, atol=0.0)  # measured 4e-5
    flat, ref_flat = torch.cat([g.flatten() for g in grads]), torch.cat([g.flatten() for g in ref_grads])
    assert F.cosine_similarity(flat, ref_flat, dim=0) > 0.99  # measured 0.9996; another batch gives 0.72


@pytest.mark.parametrize("b, c, t, k, groups", [(3, 64, 37, 16, 4), (2, 48, 60, 128, 16), (2, 6, 10, 3, 3),
                                                 (1, 8, 5, 4, 2)])
def test_conv1d_fft_equals_conv1d(b: int, c: int, t: int, k: int, groups: int) -> None:
    """The FFT position conv against float64 ``F.conv1d``: outputs and gradients, odd and even kernels, a kernel
    longer than the input."""
    from s3prl_colld.models.fftconv import conv1d_fft

    torch.manual_seed(0)
    x, w, bias = (torch.randn(*shape, dtype=torch.float64, requires_grad=True)
                  for shape in ((b, c, t), (c, c // groups, k), (c,)))
    ref = F.conv1d(x, w, bias, padding=k // 2, groups=groups)
    g = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, (x, w, bias), g)
    xs = [v.detach().float().requires_grad_() for v in (x, w, bias)]
    out = conv1d_fft(*xs, padding=k // 2, groups=groups)
    assert out.shape == ref.shape and out.dtype == torch.float32
    grads = torch.autograd.grad(out, xs, g.float())
    for a, r in zip([out] + list(grads), [ref] + list(ref_grads)):
        torch.testing.assert_close(a.double(), r, rtol=0, atol=1e-5 * float(r.detach().abs().max()))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the dtype the conv would give under autocast
        assert conv1d_fft(xs[0], xs[1], None, k // 2, groups).dtype == torch.bfloat16


def test_fft_size_has_small_factors() -> None:
    from s3prl_colld.models.fftconv import fft_size

    assert [fft_size(n) for n in (1, 11, 13, 427, 1000)] == [1, 12, 14, 432, 1000]


def test_student_pos_conv_fft_equals_direct() -> None:
    from s3prl_colld.models.student import ConvPositionEmbedding

    torch.manual_seed(0)
    module = ConvPositionEmbedding(32, 16, 4)
    x = torch.randn(2, 25, 32, requires_grad=True)
    params = [x] + list(module.parameters())
    results = []
    for fft in (False, True):
        module.fft = fft
        y = module(x)
        results.append([y] + list(torch.autograd.grad(y.square().sum(), params)))
    assert len(params) == 4  # weight norm's g and v, the bias, and x
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_collate_says_whether_the_batch_is_padded() -> None:
    from s3prl_colld.data.bucket import crop_and_pad

    g = torch.Generator().manual_seed(0)
    long = [{"wav": torch.randn(40_000)} for _ in range(3)]
    assert crop_and_pad(long, 1.0, 1.0, 320, g)["padded"] is False
    mixed = long + [{"wav": torch.randn(8_000)}]
    batch = crop_and_pad(mixed, 1.0, 1.0, 320, g)
    assert batch["padded"] is True and batch["wav_lengths"].tolist() == [16_000] * 3 + [8_000]


# ---------------------------------------------------------------- data at scale
def test_length_table_rows_build_their_paths_lazily(tmp_path: Path) -> None:
    from s3prl_colld.data.lengths import LengthRow, read_length_table, write_length_csv

    write_length_csv([LengthRow("train/1/2/1-2-0003.flac", 16_000, "A, B"), LengthRow("train/1/2/x.y.wav", 8_000)],
                     tmp_path / "len_for_bucket" / "train.csv")
    rows = read_length_table(tmp_path, "train")
    assert [(r.uttid, r.num_samples, r.label) for r in rows] == [("1-2-0003", 16_000, "A, B"), ("x.y", 8_000, "")]
    assert "_path" not in rows[0].__dict__  # not built until asked for
    assert rows[0].path == tmp_path / "train/1/2/1-2-0003.flac" and rows[0].path is rows[0].path


def _epoch_batches_ref(sampler) -> list[list[int]]:
    """``BucketBatchSampler.epoch_batches`` before numpy's argsort replaced torch.sort (resumed runs must match)."""
    from s3prl_colld.data.bucket import mix_seed

    gen = torch.Generator().manual_seed(mix_seed(sampler.seed, sampler.epoch))
    n = len(sampler.lengths)
    perm = torch.randperm(n, generator=gen)
    order = perm[torch.sort(sampler.lengths[perm], stable=True).indices]
    key = torch.arange(n, dtype=torch.float64).div_(sampler.bucket_size).floor_() + torch.rand(
        n, generator=gen, dtype=torch.float64)
    flat = order[torch.argsort(key)].tolist()
    batches = [flat[i: i + sampler.batch_size] for i in range(0, n, sampler.batch_size)]
    batches = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
    return batches + [batches[i % len(batches)] for i in range(-len(batches) % sampler.world_size)]


def test_sampler_batches_unchanged_by_the_faster_sort() -> None:
    from s3prl_colld.data.bucket import BucketBatchSampler

    lengths = torch.randint(1, 40, (5_000,), generator=torch.Generator().manual_seed(0)).tolist()  # many ties
    for epoch in range(3):
        sampler = BucketBatchSampler(lengths, 24, 64, seed=11, rank=1, world_size=3)
        sampler.set_epoch(epoch)
        assert sampler.epoch_batches() == _epoch_batches_ref(sampler)


def test_crop_reader_gives_the_same_batches(tmp_path: Path) -> None:
    import numpy as np
    import soundfile as sf

    from s3prl_colld.data.audio_dataset import AudioDataset
    from s3prl_colld.data.bucket import crop_and_pad
    from s3prl_colld.data.crop_reader import CropReader, load_audio_span
    from s3prl_colld.data.lengths import LengthRow, write_length_csv

    rng = np.random.default_rng(0)
    rows = []
    for i, n in enumerate([40_000, 23_456, 70_001, 9_000, 52_000, 31_337]):
        rel = f"train/{i}.{'flac' if i % 2 else 'wav'}"
        (tmp_path / "train").mkdir(exist_ok=True)
        sf.write(tmp_path / rel, (rng.standard_normal(n) * 0.1).clip(-1, 1), 16_000, subtype="PCM_16")
        rows.append(LengthRow(rel, n))
    write_length_csv(rows, tmp_path / "len_for_bucket" / "train.csv")
    eager = AudioDataset(tmp_path, ["train"])
    lazy = CropReader(eager)
    assert lazy.lengths == eager.lengths
    for seed in range(4):
        for batch in ([0, 1, 2], [3, 4, 5], [0, 2, 4, 5]):
            a = crop_and_pad([eager[i] for i in batch], 0.5, 2.5, 320, torch.Generator().manual_seed(seed))
            b = crop_and_pad([lazy[i] for i in batch], 0.5, 2.5, 320, torch.Generator().manual_seed(seed))
            assert torch.equal(a["wav"], b["wav"]) and torch.equal(a["wav_lengths"], b["wav_lengths"])
            assert a["padded"] == b["padded"]
    k = eager.lengths.index(70_001)
    whole = eager[k]["wav"]
    assert torch.equal(load_audio_span(eager.rows[k].path, 69_000, 80_000), whole[69_000:])  # past the end
    assert load_audio_span(eager.rows[k].path, 90_000, 91_000).numel() == 0
    with pytest.raises(TypeError):
        lazy[0]["wav"][::2]
