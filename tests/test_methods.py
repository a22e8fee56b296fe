"""Issue 10: normalising teachers, teacher precision, FFN targets, the layer map and s3prl's DistilHuBERT recipe."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from s3prl_colld.checkpoint import latest_checkpoint, load, save_atomic
from s3prl_colld.config import CONFIG_DIR, ConfigError, from_dict
from s3prl_colld.models.frontends import normalize_waveform
from s3prl_colld.s3prl_bridge.teacher import Teacher, TeacherConfig
from s3prl_colld.pretrain.cli import main

TINY_CNN = [[128, 10, 5], [128, 3, 2], [128, 3, 2], [128, 3, 2], [128, 3, 2], [128, 2, 2], [128, 2, 2]]
TINY_STUDENT = {"layers": 2, "dim": 64, "ffn_dim": 128, "heads": 4, "cnn": {"conv_layers": TINY_CNN}}


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two utterances of different lengths, far from zero mean / unit variance (padding is 0)."""
    gen = torch.Generator().manual_seed(0)
    wav = torch.zeros(2, 24_000)
    wav[0] = 3.0 * torch.randn(24_000, generator=gen) + 0.7
    wav[1, :17_000] = 0.05 * torch.randn(17_000, generator=gen) - 0.2
    return wav, torch.tensor([24_000, 17_000])


@pytest.fixture(scope="module")
def normalizing_teacher(teacher_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's tiny HuBERT teacher with ``task_cfg.normalize: true`` (as XLS-R / HuBERT Large have)."""
    state = load(latest_checkpoint(teacher_run))
    assert state["task_cfg"]["normalize"] is False
    state["task_cfg"]["normalize"] = True
    return save_atomic(state, tmp_path_factory.mktemp("norm_teacher") / "states-40.ckpt")


def _task(corpus: Path, teacher_ckpt: Path, tmp_path: Path, **sections: dict):
    from s3prl_colld.pretrain.tasks.distill import DistillConfig, DistillTask

    model = {**TINY_STUDENT, **sections.pop("model", {})}
    cfg = from_dict(DistillConfig, {"data": {"root": str(corpus)}, "teacher": {"ckpt": str(teacher_ckpt)},
                                    "heads": {"map": "uniform"}, "model": model, **sections})
    return DistillTask(cfg, tmp_path)


# ---------------------------------------------------------------- 1. waveform normalisation
def test_normalize_waveform_is_s3prls_layer_norm_per_utterance() -> None:
    wav, lengths = _batch()
    out = normalize_waveform(wav, lengths)
    for b, n in enumerate(lengths.tolist()):
        assert torch.equal(out[b, :n], F.layer_norm(wav[b, :n], (n,)))
        assert torch.all(out[b, n:] == 0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert normalize_waveform(wav, lengths).dtype == torch.float32


def test_student_cnn_input_equals_the_normalising_teachers(synth_corpus_en: Path, normalizing_teacher: Path,
                                                          teacher_run: Path, tmp_path: Path) -> None:
    task = _task(synth_corpus_en, normalizing_teacher, tmp_path)
    assert task.teacher.normalizes_waveform and task.cfg.model.normalize_waveform is True
    seen: dict[str, torch.Tensor] = {}
    task.teacher.frontend_module.register_forward_pre_hook(lambda _m, args: seen.__setitem__("teacher", args[0]))
    task.student.frontend.register_forward_pre_hook(lambda _m, args: seen.__setitem__("student", args[0]))
    wav, lengths = _batch()
    loss, _ = task({"wav": wav, "wav_lengths": lengths})
    assert torch.isfinite(loss)
    teacher_in, student_in = seen["teacher"], seen["student"]
    assert teacher_in.dtype == student_in.dtype == torch.float32
    assert torch.equal(teacher_in, student_in)  # what the student's CNN sees is what the teacher's CNN sees
    assert not torch.allclose(student_in, wav)
    assert abs(float(student_in[0].mean())) < 1e-4 and abs(float(student_in[0].std()) - 1) < 1e-3

    # a teacher that does not normalise: the student keeps the raw waveform
    raw = _task(synth_corpus_en, latest_checkpoint(teacher_run), tmp_path)
    assert not raw.teacher.normalizes_waveform and raw.cfg.model.normalize_waveform is False
    seen.clear()
    raw.student.frontend.register_forward_pre_hook(lambda _m, args: seen.__setitem__("student", args[0]))
    raw({"wav": wav, "wav_lengths": lengths})
    assert torch.equal(seen["student"], wav)

    with pytest.raises(ConfigError, match="normalize_waveform=false, but the teacher .* does layer-normalise"):
        _task(synth_corpus_en, normalizing_teacher, tmp_path, model={"normalize_waveform": False})


def test_shared_frontend_and_input_distillation_follow_the_normalisation(
        synth_corpus_en: Path, normalizing_teacher: Path, tmp_path: Path) -> None:
    from s3prl_colld.pretrain.tasks.input_distill import InputDistillConfig, InputDistillTask

    task = _task(synth_corpus_en, normalizing_teacher, tmp_path, init={"share_teacher_frontend": True}).eval()
    wav, lengths = _batch()
    out = task.teacher.run(wav, lengths, frontend=True)
    shared, _, _ = task.student(wav, lengths, frontend_out=out.frontend)
    own, _, _ = task.student(wav, lengths)  # what the student upstream computes at inference
    for a, b in zip(shared, own):
        torch.testing.assert_close(a, b)
    # stage 1 of input distillation regresses the CNN output of the normalised waveform
    torch.testing.assert_close(task.teacher.frontend_features(wav, lengths), out.frontend, rtol=0, atol=0)
    cfg = from_dict(InputDistillConfig, {"data": {"root": str(synth_corpus_en)}, "model": {"out_dim": 128},
                                         "teacher": {"ckpt": str(normalizing_teacher)}})
    stage1 = InputDistillTask(cfg, tmp_path)
    assert stage1.cfg.normalize_waveform is True


def test_normalising_student_checkpoint_and_upstream(synth_corpus_en: Path, normalizing_teacher: Path,
                                                     teacher_run: Path, tmp_path: Path) -> None:
    import s3prl_colld.hub  # noqa: F401
    from s3prl.nn import S3PRLUpstream

    common = (f"config.data.root={synth_corpus_en},,config.runner.total_steps=2,,config.runner.log_step=1,,"
              "config.runner.save_step=2,,config.runner.num_workers=0,,config.runner.progress_bar=false,,"
              "config.data.batch_size=2,,config.data.crop_min_sec=1.0,,config.data.crop_max_sec=1.5")
    run = tmp_path / "student"
    assert main(["-u", "colld_distiller", "-p", str(run), "-o", f"{common},,config.teacher.ckpt={normalizing_teacher}"]) == 0
    ckpt = latest_checkpoint(run)
    assert load(ckpt)["config"]["model"]["normalize_waveform"] is True  # stored resolved
    upstream = S3PRLUpstream("colld_local", path_or_url=str(ckpt)).eval()
    seen: list[torch.Tensor] = []
    upstream.upstream.model.frontend.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    wav, lengths = _batch()
    with torch.no_grad():
        upstream(wav, lengths)
    torch.testing.assert_close(seen[0], normalize_waveform(wav, lengths))

    # stage 1 of input distillation stores the normalisation; stage 2 refuses a teacher that differs
    fbank = tmp_path / "fbank"
    assert main(["-u", "input_distill", "-p", str(fbank), "-o",
                 f"{common},,config.teacher.ckpt={normalizing_teacher}"]) == 0
    assert load(latest_checkpoint(fbank))["config"]["normalize_waveform"] is True
    with pytest.raises(ConfigError, match="trained on normalised waveforms"):
        _task(synth_corpus_en, latest_checkpoint(teacher_run), tmp_path,
              model={"frontend": "fbank", "fbank": {"out_dim": 128}},
              init={"frontend_ckpt": str(latest_checkpoint(fbank))})


# ---------------------------------------------------------------- 2. precision
def _dtypes_inside(teacher: Teacher, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[set, list[torch.Tensor]]:
    dtypes: set[torch.dtype] = set()
    hooks = [m.register_forward_hook(lambda _m, _i, out: dtypes.add(out.dtype))
             for m in (teacher.frontend_module, *teacher.ffn_modules())]
    hooks.append(teacher.fairseq_model.post_extract_proj.register_forward_hook(lambda _m, _i, o: dtypes.add(o.dtype)))
    try:
        hidden = teacher(wav, lengths)
    finally:
        for h in hooks:
            h.remove()
    return dtypes, hidden


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_teacher_runs_at_its_precision_under_bf16_autocast(precision: str, dtype: torch.dtype,
                                                           teacher_run: Path) -> None:
    teacher = Teacher(TeacherConfig(ckpt=str(latest_checkpoint(teacher_run)), precision=precision))
    wav, lengths = _batch()
    plain_dtypes, plain = _dtypes_inside(teacher, wav, lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto_dtypes, auto = _dtypes_inside(teacher, wav, lengths)
        logp = teacher.unit_log_probs(auto[-1])
    assert plain_dtypes == auto_dtypes == {dtype}
    assert all(h.dtype == torch.float32 for h in auto) and logp.dtype == torch.float32
    for a, b in zip(plain, auto):
        assert torch.equal(a, b)  # the trainer's autocast does not reach the teacher


def test_contrastive_and_discriminative_terms_are_fp32_under_autocast() -> None:
    from s3prl_colld.objectives.losses import discriminative_kl, info_nce, info_nce_logits, l1_cosine, unit_log_probs

    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 30, 16, generator=gen), torch.randn(2, 30, 16, generator=gen)
    valid = torch.ones(2, 30, dtype=torch.bool)
    valid[1, 20:] = False
    proj, codebook = torch.randn(2, 30, 8, generator=gen), torch.randn(10, 8, generator=gen)

    def all_terms() -> list[torch.Tensor]:
        nce, _ = info_nce(pred, target, valid, valid, 10, 0.1, torch.Generator().manual_seed(1))
        p = F.normalize(pred[0], dim=-1)
        logits = info_nce_logits(p, F.normalize(target[0], dim=-1), F.normalize(target[1:, :5], dim=-1).expand(30, 5, 16), 0.1)
        s_logp = unit_log_probs(proj, codebook, 0.1)
        kl, _ = discriminative_kl(s_logp, unit_log_probs(proj.flip(1), codebook, 0.1), valid)
        reg, _ = l1_cosine(pred, target, valid)
        return [nce, logits, s_logp, kl, reg]

    plain = all_terms()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = all_terms()
    for a, b in zip(plain, auto):
        assert b.dtype == torch.float32
        assert torch.equal(a, b)


# ---------------------------------------------------------------- 3. FFN targets, layer map
def test_ffn_target_equals_a_hand_computed_ffn(teacher_run: Path) -> None:
    teacher = Teacher(TeacherConfig(ckpt=str(latest_checkpoint(teacher_run)), target="ffn"))
    model = teacher.fairseq_model
    assert not model.encoder.layer_norm_first  # the tiny teacher is post-LN, as HuBERT Base
    # 49 frames: fairseq's encoder pads them to 50 inside; the FFN targets keep the 49 real ones
    assert teacher.run(torch.randn(1, 16_000) * 0.1, torch.tensor([16_000]), ffn=True).ffn[1].size(1) == 49
    wav = torch.randn(1, 16_320, generator=torch.Generator().manual_seed(0)) * 0.1  # 50 frames: no padding inside
    out = teacher.run(wav, torch.tensor([16_320]), ffn=True)
    assert len(out.ffn) == teacher.num_layers + 1 and out.ffn[0] is out.hidden[0]
    T = out.ffn[1].size(1)
    assert T == 50 and out.hidden[1].size(1) == 51  # s3prl repeats the last frame up to ceil(N / 320)
    with torch.no_grad():
        for k, layer in enumerate(model.encoder.layers, start=1):
            x = out.hidden[k - 1][:, :T].transpose(0, 1)  # the layer's input, [T, B, D]
            attn, _ = layer.self_attn(query=x, key=x, value=x, key_padding_mask=None, need_weights=False)
            x1 = layer.self_attn_layer_norm(x + attn)
            ffn = layer.fc2(F.gelu(layer.fc1(x1)))  # the FFN output before the residual
            torch.testing.assert_close(out.ffn[k], ffn.transpose(0, 1))
            torch.testing.assert_close(out.hidden[k][:, :T], layer.final_layer_norm(x1 + ffn).transpose(0, 1))
            assert not torch.allclose(out.ffn[k], out.hidden[k][:, :T], atol=1e-2)


def test_ffn_target_trains_and_rejects_layer_zero(synth_corpus_en: Path, teacher_run: Path, tmp_path: Path) -> None:
    teacher = latest_checkpoint(teacher_run)
    task = _task(synth_corpus_en, teacher, tmp_path, teacher={"ckpt": str(teacher), "target": "ffn"},
                 loss={"kind": "contrastive", "num_negatives": 8}, mask={"prob": 0.5})
    wav, lengths = _batch()
    layer_outputs = task.teacher(wav, lengths)
    loss, stats = task({"wav": wav, "wav_lengths": lengths})
    loss.backward()
    assert torch.isfinite(loss) and "acc_1_2" in stats and "acc_2_4" in stats
    assert task.student.proj.weight.grad is not None
    ffn = task.teacher.run(wav, lengths, ffn=True).ffn
    assert not torch.allclose(ffn[4], layer_outputs[4][:, : ffn[4].size(1)])
    with pytest.raises(ConfigError, match="target=ffn: teacher layer 0"):
        _task(synth_corpus_en, teacher, tmp_path, teacher={"ckpt": str(teacher), "target": "ffn"},
              heads={"map": "pairs", "pairs": [[2, 0]]})


def test_uniform_layer_map_rounds_half_up() -> None:
    from s3prl_colld.models.heads import HeadConfig

    assert [j for _, j in HeadConfig().resolve(8, 12)] == [2, 3, 5, 6, 8, 9, 11, 12]
    assert [j for _, j in HeadConfig().resolve(2, 4)] == [2, 4]
    assert [j for _, j in HeadConfig().resolve(4, 12)] == [3, 6, 9, 12]
    assert [j for _, j in HeadConfig().resolve(12, 12)] == list(range(1, 13))


# ---------------------------------------------------------------- 3. DistilHuBERT as s3prl trains it
def _s3prl_recipe():
    from s3prl_colld.pretrain.cli import resolve_config
    from s3prl_colld.pretrain.task import get_task

    return resolve_config(get_task("distilhubert"), str(CONFIG_DIR / "students" / "distilhubert.yaml"),
                          str(CONFIG_DIR / "pretrain" / "librispeech" / "distilhubert_hubert_base.yaml"))


def test_distilhubert_config_is_s3prls_recipe() -> None:
    from s3prl_colld.data.bucket import crop_spans

    cfg = _s3prl_recipe()
    r, o, d, m = cfg.runner, cfg.optimizer, cfg.data, cfg.model
    assert (r.total_steps, r.gradient_clipping, r.precision, r.gradient_accumulate_steps) == (200_000, 5.0, "fp16", 1)
    assert (o.name, o.lr, o.betas, o.eps, o.warmup_steps, o.decay) == ("AdamW", 2e-4, [0.9, 0.98], 1e-6, 14_000, "linear")
    assert (o.weight_decay, o.no_decay) == (0.01, ["bias", "LayerNorm.bias", "LayerNorm.weight"])
    assert (d.batch_size, d.crop, int(d.crop_max_sec * 16_000), d.max_sec) == (24, "max_length", 250_000, None)
    assert (cfg.teacher.name, cfg.teacher.precision) == ("hubert_base", "fp32")
    assert (m.layers, m.dim, m.ffn_dim, m.heads, m.feature_grad_mult, m.frontend_norm) == (2, 768, 3072, 12, 0.1, False)
    assert (cfg.heads.map, cfg.heads.targets, cfg.heads.kind) == ("last", [4, 8, 12], "mlp")
    assert (cfg.loss.kind, cfg.loss.cos_weight) == ("regression", 1.0)
    assert cfg.init.frontend_from_teacher and cfg.init.layers_from_teacher and not cfg.init.share_teacher_frontend
    # s3prl's sequence_length: a longer utterance gets one crop of exactly 250000 samples, shorter ones stay whole
    spans = crop_spans([400_000, 250_000, 90_000], 0, 250_000, 320, torch.Generator().manual_seed(0), d.crop)
    assert [e - s for s, e in spans] == [250_000, 250_000, 90_000] and spans[0][0] % 320 == 0
    assert crop_spans([400_000, 90_000], 0, 1, 320, torch.Generator(), "none") == [(0, 400_000), (0, 90_000)]


def test_distilhubert_recipe_scales_the_cnn_gradient_by_a_tenth() -> None:
    import dataclasses

    from s3prl_colld.models.student import StudentEncoder
    from s3prl_colld.runtime.optim import param_groups

    cfg = _s3prl_recipe()
    students = {}
    for mult in (cfg.model.feature_grad_mult, 1.0):
        torch.manual_seed(0)
        students[mult] = StudentEncoder(dataclasses.replace(cfg.model, feature_grad_mult=mult)).double().eval()
    assert not isinstance(students[0.1].frontend_norm, torch.nn.LayerNorm)
    wav = torch.randn(1, 8_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.1  # float64:
    # the comparison below is then exact up to rounding far below its tolerance
    weights = None
    for student in students.values():
        hidden, _, _ = student(wav, torch.tensor([8_000]))
        weights = torch.randn(hidden[-1].shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        (hidden[-1] * weights).sum().backward()
    slow, full = students[0.1], students[1.0]
    for (name, a), b in zip(slow.frontend.named_parameters(), full.frontend.parameters()):
        assert a.grad is not None and float(b.grad.abs().sum()) > 0, name
        torch.testing.assert_close(a.grad, 0.1 * b.grad, rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(slow.proj.weight.grad, full.proj.weight.grad)  # only the CNN is scaled
    # weight decay 0.01 on weights, none on biases (s3prl's get_grouped_parameters)
    groups = param_groups(list(slow.named_parameters()), cfg.optimizer)
    decay, no_decay = groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    names = dict((id(p), n) for n, p in slow.named_parameters())
    assert all(names[id(p)].endswith("bias") for p in no_decay["params"])
    assert all(not names[id(p)].endswith("bias") for p in decay["params"])
