"""s3prl's SUPERB protocol by default: featurizer, optimizer and schedule, batches, SpecAugment, heads,
ST character vocabulary, prediction files in s3prl's order, and submissions identical to s3prl's submit.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch

from s3prl_colld.config import CONFIG_DIR, ConfigError, deep_merge, from_dict
from s3prl_colld.downstream import batching, corpus
from s3prl_colld.downstream.cli import main, resolve_config
from s3prl_colld.downstream.ctc_heads import ASRHeadConfig, BiLSTMCTCHead, PRHeadConfig
from s3prl_colld.downstream.featurizer import Featurizer
from s3prl_colld.downstream.runner import DownstreamRunner, RunSpec
from s3prl_colld.downstream.schedule import lr_multiplier
from s3prl_colld.downstream.schema import DownstreamConfig, DownstreamOptimizerConfig, SpecAugConfig
from s3prl_colld.downstream.specaug import spec_augment, time_warp
from s3prl_colld.downstream.st_model import STHead, STHeadConfig
from s3prl_colld.downstream.submit import main as submit_main
from s3prl_colld.downstream.task import TASKS
from s3prl_colld.downstream.tasks.superb import ASRTask, STTask

QUIET = "config.runner.progress_bar=false"
GPU_CONFIGS = {"pr": "librispeech/pr.yaml", "asr": "librispeech/asr.yaml", "st": "covost2/st.yaml"}
HEADS = {"pr": PRHeadConfig, "asr": ASRHeadConfig, "st": STHeadConfig}


# ------------------------------------------------------------------ defaults = s3prl's recipes
def test_featurizer_default_is_s3prls() -> None:
    assert DownstreamConfig().featurizer.normalize is False
    for task in TASKS.all():
        assert resolve_config(task, None, None).featurizer.normalize is False
        assert resolve_config(task, str(CONFIG_DIR / "downstream" / GPU_CONFIGS[task]), None).featurizer.normalize \
            is False
    hs = torch.randn(2, 3, 7, 4) * 5.0 + 2.0
    torch.testing.assert_close(Featurizer(3)(hs), hs.mean(1))  # no layer norm by default
    one = torch.randn(2, 1, 7, 4) * 5.0 + 2.0  # fbank / mfcc: one hidden state, passed through untouched
    for normalize in (False, True):
        assert Featurizer(1, normalize=normalize)(one).equal(one[:, 0])
        assert Featurizer(3, layer=1, normalize=normalize)(hs).equal(hs[:, 1])  # -l: untouched, as s3prl
    normed = Featurizer(3, normalize=True)(hs)  # the option: layer norm inside the weighted sum only
    torch.testing.assert_close(normed.mean(-1), torch.zeros(2, 7), atol=1e-5, rtol=0)


@pytest.mark.parametrize("task", sorted(TASKS.all()))
def test_gpu_configs_equal_the_code_defaults(task: str) -> None:
    """configs/downstream/{librispeech,covost2}/*.yaml restate s3prl's recipe: the same as the code's defaults."""
    from_yaml = resolve_config(task, str(CONFIG_DIR / "downstream" / GPU_CONFIGS[task]), None)
    from_code = from_dict(TASKS.get(task).Config, deep_merge(TASKS.get(task).s3prl_defaults, {}))
    for section in ("runner", "optimizer", "featurizer", "specaug"):
        mine, code = getattr(from_yaml, section), getattr(from_code, section)
        if section == "runner":  # machine-specific keys
            mine.device = code.device
            mine.eval_batch_size = code.eval_batch_size
        assert mine == code, section
    assert from_yaml.head == HEADS[task]()


def test_s3prl_values() -> None:
    """A few literal values of s3prl's yaml files (the table in docs/superb_protocol.md)."""
    pr, asr, st = (from_dict(TASKS.get(t).Config, TASKS.get(t).s3prl_defaults) for t in ("pr", "asr", "st"))
    for cfg in (pr, asr, st):
        assert cfg.optimizer.name == "Adam" and cfg.optimizer.betas == [0.9, 0.999] and cfg.optimizer.eps == 1e-8
    assert (pr.optimizer.lr, pr.runner.batch_size, pr.runner.gradient_accumulate_steps, pr.runner.total_steps) == \
        (1e-2, 16, 2, 100000)
    assert pr.optimizer.decay == "constant" and pr.optimizer.warmup_steps == 0 and not pr.specaug.enabled
    assert (asr.optimizer.lr, asr.runner.batch_size, asr.runner.total_steps, asr.specaug.enabled) == \
        (1e-4, 32, 200000, True)
    sa = asr.specaug
    assert (sa.time_warp_window, sa.freq_mask_width_range, sa.num_freq_mask, sa.time_mask_width_range,
            sa.num_time_mask) == (5, [0, 50], 4, [0, 40], 2)
    assert (st.optimizer.lr, st.optimizer.decay, st.optimizer.warmup_steps) == (1e-3, "sqrt", 10000)
    assert (st.runner.max_tokens, st.runner.gradient_accumulate_steps, st.runner.gradient_clipping) == (10000, 8, 10.0)
    h = STHeadConfig()
    assert (h.d_model, h.nhead, h.ffn_dim, h.encoder_layers, h.decoder_layers, h.conv_channels) == \
        (512, 8, 2048, 3, 3, 1024)
    assert (h.beam, h.max_len_a, h.max_len_b, h.spm_model_type, h.share_embeddings) == (20, 0.0, 400, "char", False)
    assert ASRHeadConfig() == ASRHeadConfig(project_dim=1024, hidden_dim=1024, layers=2, dropout=0.2)
    assert PRHeadConfig().project_dim == 256


def test_s3prl_lr_schedules() -> None:
    """s3prl's schedulers.py formulas, indexed by updates already done (LambdaLR after each update)."""
    sqrt = DownstreamOptimizerConfig(warmup_steps=10000, decay="sqrt")
    assert lr_multiplier(0, 32000, sqrt) == 0.0  # s3prl's first update runs at lr 0
    assert lr_multiplier(5000, 32000, sqrt) == 0.5
    assert lr_multiplier(10000, 32000, sqrt) == pytest.approx(0.01)  # s3prl's drop at the end of warm-up
    assert lr_multiplier(40000, 32000, sqrt) == pytest.approx(0.005)
    lin = DownstreamOptimizerConfig(warmup_steps=4, decay="linear")
    assert [lr_multiplier(s, 14, lin) for s in (0, 2, 4, 9, 14, 20)] == [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    assert lr_multiplier(0, 10, DownstreamOptimizerConfig(decay="linear")) == 1.0
    assert lr_multiplier(7, 10, DownstreamOptimizerConfig()) == 1.0  # no scheduler
    cos = DownstreamOptimizerConfig(warmup_steps=2, decay="cosine")
    assert lr_multiplier(7, 12, cos) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="warmup_steps >= 1"):
        from_dict(DownstreamOptimizerConfig, {"decay": "sqrt"})


# ------------------------------------------------------------------ batches
def test_libriphone_windows() -> None:
    targets = [5, 9, 1, 7, 3, 9, 2, 8]
    samples = [1000] * 8
    order = batching.longest_first(targets)
    assert order == [1, 5, 7, 3, 0, 4, 6, 2]
    epoch0 = batching.libriphone_batches(targets, samples, 3, seed=1, epoch=0)
    assert len(epoch0) == 8 and all(len(b) == 3 for b in epoch0)
    starts = sorted(order.index(b[0]) for b in epoch0)
    assert starts == [0, 1, 2, 3, 4, 5, 5, 5]  # one window per utterance, the last ones moved back to be full
    assert all(b == order[order.index(b[0]): order.index(b[0]) + 3] for b in epoch0)  # length-sorted neighbours
    assert epoch0 == batching.libriphone_batches(targets, samples, 3, seed=1, epoch=0)
    assert epoch0 != batching.libriphone_batches(targets, samples, 3, seed=1, epoch=1)
    long_first = [400_000 if i == 1 else 1000 for i in range(8)]  # a window led by > 300,000 samples is halved
    halved = [b for b in batching.libriphone_batches(targets, long_first, 4, seed=1, epoch=0) if b[0] == 1]
    assert halved == [[1, 5]]


def test_asr_buckets() -> None:
    samples = [30_000 + 100 * i for i in range(11)]  # 11 utterances, all longer than 2,000 samples
    batches = batching.bucket_batches(samples, 4, seed=0, epoch=0)
    assert sorted(len(b) for b in batches) == [2, 2, 2, 2, 3]  # 2 full buckets halved, the last 3 kept
    for b in batches:
        assert [samples[i] for i in b] == sorted((samples[i] for i in b), reverse=True)
    assert sorted(i for b in batches for i in b) == list(range(11))
    assert sum(len(b) for b in batching.bucket_batches(samples[:9], 4, 0, 0)) == 8  # a last single one is dropped
    assert [len(b) for b in batching.bucket_batches([100] * 8, 4, 0, 0)] == [4, 4]  # short audio: not halved


def test_st_max_tokens_batches() -> None:
    frames = [120, 80, 300, 75, 50, 220, 90, 60, 300]
    batches = batching.max_tokens_batches(frames, 400, seed=0, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(9))
    assert all(len(b) * max(frames[i] for i in b) <= 400 for b in batches)
    assert all([frames[i] for i in b] == sorted((frames[i] for i in b), reverse=True) for b in batches)
    with pytest.raises(ConfigError, match="max_tokens"):
        batching.max_tokens_batches([500], 400, 0, 0)


# ------------------------------------------------------------------ SpecAugment
def test_specaug_shapes_and_masks() -> None:
    torch.manual_seed(0)
    lengths = torch.tensor([200, 140, 9])
    x = torch.randn(3, 200, 96) + 10.0  # no exact zeros inside
    for i, n in enumerate(lengths.tolist()):
        x[i, n:] = 0.0
    y = spec_augment(x, lengths, SpecAugConfig(enabled=True))
    assert y.shape == x.shape
    for i, n in enumerate(lengths.tolist()):
        assert y[i, n:].eq(0).all()  # padding stays zero
    masks = SpecAugConfig(enabled=True, apply_time_warp=False)
    y = spec_augment(x, lengths, masks)
    masked = 0
    for i, n in enumerate(lengths.tolist()):
        zero = y[i, :n].eq(0)
        dims, frames = zero.all(0), zero.all(1)
        assert ((zero & ~dims[None] & ~frames[:, None]).sum()) == 0  # zeros only as whole bands
        assert int(dims.sum()) <= 4 * 49 and int(frames.sum()) <= 2 * 39  # widths in [0, 50) and [0, 40)
        kept = ~dims[None] & ~frames[:, None]
        assert y[i, :n][kept].equal(x[i, :n][kept])  # everything else untouched
        masked += int(zero.sum())
    assert masked > 0
    off = SpecAugConfig(enabled=True, apply_time_warp=False, apply_time_mask=False, apply_freq_mask=False)
    assert spec_augment(x, lengths, off).equal(x)


def test_time_warp() -> None:
    torch.manual_seed(0)
    short = torch.randn(10, 6)
    assert time_warp(short, window=5) is short  # T <= 2 * window: unchanged, as s3prl
    ramp = torch.arange(100.0)[:, None].repeat(1, 3)
    torch.manual_seed(3)
    warped = time_warp(ramp, window=5)
    assert warped.shape == ramp.shape and not torch.allclose(warped, ramp)
    torch.testing.assert_close(warped[0], ramp[0], atol=0.5, rtol=0)  # the ends stay in place
    torch.testing.assert_close(warped[-1], ramp[-1], atol=0.5, rtol=0)


def test_asr_head_drops_out_after_every_lstm() -> None:
    """s3prl's RNNLayer: dropout after each LSTM, the last one included (seen at the output layer's input)."""
    torch.manual_seed(0)
    head = BiLSTMCTCHead(6, 5, ASRHeadConfig(project_dim=8, hidden_dim=8, layers=2, dropout=0.5))
    assert len(head.lstms) == 2 and all(m.num_layers == 1 and m.bidirectional for m in head.lstms)
    seen: list[torch.Tensor] = []
    head.out.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    x, lengths = torch.randn(3, 20, 6), torch.tensor([20, 20, 20])
    head.train()(x, lengths)
    assert 0.3 < float(seen[-1].eq(0).float().mean()) < 0.7
    head.eval()(x, lengths)
    assert not seen[-1].eq(0).any()


def test_asr_targets_are_s3prls() -> None:
    task = ASRTask(ASRTask.Config())
    assert task.tokenize("he  said hi") == list("HE|SAID|HI|")  # upper case, | per space and at the end
    assert task.detokenize(task.tokenize("he  said hi")) == "HE SAID HI"


# ------------------------------------------------------------------ ST
def test_st_character_vocabulary() -> None:
    texts = ["Das Haus ist gross.", "Der Hund war hier!", "Ein Kind bleibt dort, oder?"] * 4
    cfg = STTask.Config(head=STHeadConfig(d_model=16, nhead=2, ffn_dim=16, conv_channels=8))
    task = STTask(cfg)
    assert task.head_cfg.spm_model_type == "char"
    task.fit_vocab([corpus.Utterance(str(i), Path("x.flac"), t) for i, t in enumerate(texts)])
    pieces = [task.spm.sp.id_to_piece(i) for i in range(task.spm.vocab_size)]
    specials = {"<pad>", "<unk>", "<s>", "</s>"}
    chars = {c for t in texts for c in t.replace(" ", "")}
    assert {p for p in pieces if p not in specials} == chars | {"▁"}  # every character, nothing longer
    for t in texts:
        assert task.spm.decode(task.spm.encode(t)) == t
        assert len(task.spm.encode(t)) == len(t) + 1  # one piece per character, "▁" for each word start
    assert task.reference("Das Haus ist klein.") == "Das Haus ist  \u2047 lein."  # unseen "k": unk, as s3prl scores
    head = task.build_head(4)
    assert head.out.weight is not head.embed.weight  # fairseq's default: decoder embeddings not shared
    tied = STHead(4, 10, STHeadConfig(d_model=16, nhead=2, ffn_dim=16, conv_channels=8, share_embeddings=True),
                  pad_id=0, bos_id=2, eos_id=3)
    assert tied.out.weight is tied.embed.weight


def test_st_input_cut_at_max_source_positions() -> None:
    torch.manual_seed(0)
    cfg = STHeadConfig(d_model=16, nhead=2, ffn_dim=16, conv_channels=8, max_source_positions=40, dropout=0.0)
    head = STHead(4, 10, cfg, pad_id=0, bos_id=2, eos_id=3).eval()
    x = torch.randn(1, 90, 4)
    a, _ = head.encode(x, torch.tensor([90]))
    b, _ = head.encode(x[:, :40], torch.tensor([40]))
    torch.testing.assert_close(a, b)


# ------------------------------------------------------------------ runs: SpecAugment in training only,
# accumulation, prediction files in s3prl's order
def _runner(task: str, root: Path, tmp: Path, extra: str = "") -> DownstreamRunner:
    cfg = resolve_config(task, None, f"config.data.root={root},,config.cache.dir={tmp / 'cache'},,{QUIET}" + extra)
    return DownstreamRunner(RunSpec(task, "fbank"), cfg, tmp / task)


def test_specaug_only_in_training_steps(synth_corpus_en: Path, tmp_path: Path) -> None:
    """With dropout 0, the only random numbers a step draws are SpecAugment's: on in training, never in eval."""
    small = ",,config.head.project_dim=8,,config.head.hidden_dim=8,,config.head.dropout=0.0,,config.runner.batch_size=4"
    runner = _runner("asr", synth_corpus_en, tmp_path, small)
    assert runner.cfg.specaug.enabled  # s3prl's ASR recipe
    batches = runner.train_batches()
    before = torch.get_rng_state()
    runner.train_step([next(batches)])
    assert not torch.equal(before, torch.get_rng_state())
    before = torch.get_rng_state()
    first = runner.evaluate("dev")
    assert torch.equal(before, torch.get_rng_state()) and runner.evaluate("dev")["hyps"] == first["hyps"]
    off = _runner("asr", synth_corpus_en, tmp_path / "off", small + ",,config.specaug.enabled=false")
    batches = off.train_batches()
    before = torch.get_rng_state()
    off.train_step([next(batches)])
    assert torch.equal(before, torch.get_rng_state())


def test_accumulation_takes_that_many_batches_per_update(synth_corpus_en: Path, tmp_path: Path) -> None:
    runner = _runner("pr", synth_corpus_en, tmp_path, ",,config.runner.total_steps=3,,config.runner.eval_step=3")
    assert runner.cfg.runner.gradient_accumulate_steps == 2  # s3prl's libriphone.yaml
    runner.train()
    assert (runner.step, runner.epoch, runner.pos) == (3, 0, 6)  # 6 of the epoch's batches used


def _evaluated(task: str, root: Path, tmp: Path, extra: str = "") -> Path:
    out = tmp / task
    ov = (f"config.data.root={root},,config.runner.total_steps=1,,config.runner.eval_step=1,,"
          f"config.runner.gradient_accumulate_steps=1,,config.cache.dir={tmp / 'cache'},,{QUIET}{extra}")
    assert main(["-m", "train", "-u", "fbank", "-d", task, "-p", str(out), "-o", ov]) == 0
    assert main(["-m", "evaluate", "-e", str(out / "dev-best.ckpt"), "-t", "test"]) == 0
    return out


def test_prediction_files_in_s3prls_order(synth_corpus_en: Path, tmp_path: Path) -> None:
    from s3prl_colld.data.audio import num_samples

    tiny_asr = ",,config.head.project_dim=8,,config.head.hidden_dim=8,,config.runner.batch_size=4"
    tiny_st = (",,config.head.d_model=16,,config.head.nhead=2,,config.head.ffn_dim=16,,config.head.conv_channels=8,,"
               "config.head.encoder_layers=1,,config.head.decoder_layers=1,,config.head.beam=1,,"
               "config.head.max_len_b=3,,config.runner.max_tokens=3000")
    lexicon = corpus.read_lexicon(synth_corpus_en / "lexicon.txt")
    phones = {u.uttid: len(u.text.split()) for u in corpus.phone_utterances(synth_corpus_en, "test", lexicon)}
    pr = _evaluated("pr", synth_corpus_en, tmp_path)
    ids = [line.split(" ")[0] for line in (pr / "test-hyp.ark").read_text().splitlines()]
    assert sorted(ids) == sorted(phones) and ids != sorted(ids)  # s3prl's order, not sorted by id
    assert [phones[i] for i in ids] == sorted(phones.values(), reverse=True)
    before = (pr / "test-hyp.ark").read_bytes()  # another split evaluated later is written under its own name
    assert main(["-m", "evaluate", "-e", str(pr / "dev-best.ckpt"), "-o", "config.data.test_split=dev"]) == 0
    assert (pr / "test-hyp.ark").read_bytes() == before and (pr / "dev-results.json").is_file()
    asr = _evaluated("asr", synth_corpus_en, tmp_path, tiny_asr)
    paths = {u.uttid: u.path for u in corpus.transcript_utterances(synth_corpus_en, "test")}
    ids = [line.split(" ")[0] for line in (asr / "test-noLM-hyp.ark").read_text().splitlines()]
    assert [num_samples(paths[i]) for i in ids] == sorted((num_samples(p) for p in paths.values()), reverse=True)
    assert (asr / "test-noLM-ref.ark").is_file() and not (asr / "test-hyp.ark").exists()
    st = _evaluated("st", synth_corpus_en, tmp_path, tiny_st)
    rows = (st / "output-st-test.tsv").read_text().splitlines()
    tsv = corpus.covost_utterances(synth_corpus_en / "covost" / "test.tsv", synth_corpus_en)
    assert rows[0] == "utt_id\thyp\tref" and [r.split("\t")[0] for r in rows[1:]] == [u.uttid for u in tsv]
    # our ASR run names its split "test": the packer finds it through test-results.json
    assert submit_main(["--pr", str(pr), "--asr_no_lm", str(asr), "--st", str(st), "--output_dir",
                        str(tmp_path / "sub")]) == 0
    with zipfile.ZipFile(tmp_path / "sub" / "predict.zip") as zf:
        assert zf.read("predict/asr_public/predict.ark") == (asr / "test-noLM-hyp.ark").read_bytes()
        assert zf.read("predict/st_public/predict.tsv") == (st / "output-st-test.tsv").read_bytes()


# ------------------------------------------------------------------ submission parity with s3prl's submit.py
def _s3prl_expdirs(root: Path) -> dict[str, Path]:
    """Stand-in s3prl experiment folders: the files s3prl's -m evaluate writes, lines in dataset order."""
    dirs = {name: root / name for name in ("pr_expdir", "asr_expdir", "st_expdir")}
    for d in dirs.values():
        d.mkdir(parents=True)
    (dirs["pr_expdir"] / "test-hyp.ark").write_text("2961-961-0022 sh iy w ah z\n1089-134686-0000 hh iy \n")
    (dirs["pr_expdir"] / "test-ref.ark").write_text("2961-961-0022 sh iy w ah z\n1089-134686-0000 hh iy hh oh p\n")
    (dirs["asr_expdir"] / "test-clean-noLM-hyp.ark").write_text("8555-284447-0001 THE SHIP\n121-121726-0000 ALSO\n")
    (dirs["asr_expdir"] / "dev-clean-noLM-hyp.ark").write_text("84-121123-0000 GO\n")
    (dirs["st_expdir"] / "output-st-test.tsv").write_text(
        "utt_id\thyp\tref\ncommon_voice_en_2\tDas ist gut.\tDas ist gut.\ncommon_voice_en_1\t<unk>\tJa.\n")
    return dirs


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_submit_matches_s3prls_layout(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dirs = _s3prl_expdirs(tmp_path / "expdirs")
    out = tmp_path / "submission"
    assert submit_main(["--output_dir", str(out), "--pr", str(dirs["pr_expdir"]),
                        "--asr_no_lm", str(dirs["asr_expdir"]), "--st", str(dirs["st_expdir"])]) == 0
    assert "Process 3 tasks: pr_public asr_public st_public" in capsys.readouterr().out
    expected = {"pr_public/predict.ark": (dirs["pr_expdir"] / "test-hyp.ark").read_bytes(),
                "asr_public/predict.ark": (dirs["asr_expdir"] / "test-clean-noLM-hyp.ark").read_bytes(),
                "st_public/predict.tsv": (dirs["st_expdir"] / "output-st-test.tsv").read_bytes()}
    assert _tree(out / "predict") == expected  # byte copies: dataset order kept, nothing sorted
    names = ["predict/", "predict/asr_public/", "predict/asr_public/predict.ark", "predict/pr_public/",
             "predict/pr_public/predict.ark", "predict/st_public/", "predict/st_public/predict.tsv"]
    with zipfile.ZipFile(out / "predict.zip") as zf:
        assert zf.namelist() == names
        assert {n[len("predict/"):]: zf.read(n) for n in names if not n.endswith("/")} == expected
        zf.extractall(tmp_path / "unzipped")
    assert _tree(tmp_path / "unzipped" / "predict") == expected
    if shutil.which("zip"):  # the command s3prl's submit.py runs: `cd OUT && zip -q -r predict.zip predict/`
        subprocess.run(["zip", "-q", "-r", str(tmp_path / "by_zip.zip"), "predict/"], cwd=out, check=True)
        with zipfile.ZipFile(tmp_path / "by_zip.zip") as zf:
            assert sorted(zf.namelist()) == sorted(names)
    # s3prl's flag names only: our earlier --asr still works, our earlier file name does not
    assert submit_main(["--output_dir", str(tmp_path / "alias"), "--asr", str(dirs["asr_expdir"])]) == 0
    (dirs["asr_expdir"] / "test-clean-noLM-hyp.ark").rename(dirs["asr_expdir"] / "test-hyp.ark")
    assert submit_main(["--output_dir", str(tmp_path / "bad"), "--asr_no_lm", str(dirs["asr_expdir"])]) == 2
    assert "test-clean-noLM-hyp.ark not found" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "predict.zip").exists()


def test_submit_accepts_every_s3prl_flag(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    (exp / "scoring" / "predictions").mkdir(parents=True)
    (exp / "scoring" / "predictions" / "a.rttm").write_text("x\n")
    (exp / "frame_shift").write_text("160\n")
    for name in ("test_predict.txt", "test_predict.csv", "benchmark.stdlist.xml", "test-hyp.ark",
                 "test_metrics.txt", "test-clean-LM-hyp.ark", *(f"test_fold{i}_predict.txt" for i in range(1, 6))):
        (exp / name).write_text(name + "\n")
    flags = ["sid", "ks", "ic", "asr_with_lm", "qbe", "sf", "sv", "sd", "se", "ss", "er_fold1", "er_fold3"]
    argv = [a for f in flags for a in (f"--{f}", str(exp))]
    assert submit_main(["--output_dir", str(tmp_path / "out"), *argv]) == 0
    tree = _tree(tmp_path / "out" / "predict")
    assert tree["sd_public/scoring/predictions/a.rttm"] == b"x\n" and tree["sd_public/frame_shift"] == b"160\n"
    assert tree["er_fold3_public/predict.txt"] == b"test_fold3_predict.txt\n"
    assert tree["asr_lm_public/predict.ark"] == b"test-clean-LM-hyp.ark\n"
    assert {k.split("/")[0] for k in tree} == {f"{f}_public" for f in flags if f != "asr_with_lm"} | {"asr_lm_public"}
