"""run_downstream.py: metrics, corpus readers, featurizer, feature cache, the PR / ASR / ST tasks, errors."""

from __future__ import annotations

import json
import math
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from s3prl_colld.checkpoint import latest_checkpoint
from s3prl_colld.downstream import corpus, metrics
from s3prl_colld.downstream.cli import main
from s3prl_colld.downstream.featurizer import Featurizer
from s3prl_colld.downstream.features import CachedFeatures, LiveFeatures, feature_source
from s3prl_colld.downstream.runner import DownstreamRunner, RunSpec, load_downstream_checkpoint
from s3prl_colld.downstream.submit import main as submit_main
from s3prl_colld.downstream.task import get_task
from s3prl_colld.downstream.upstream import FrozenUpstream, UpstreamError

QUIET = "config.runner.progress_bar=false"


# ------------------------------------------------------------------ metrics
def test_error_rates_by_hand() -> None:
    # ref a b c d, hyp a x c: one substitution + one deletion = 2 / 4
    assert metrics.per(["a x c"], ["a b c d"]) == pytest.approx(50.0)
    # summed over utterances: (1 + 0) / (3 + 2)
    assert metrics.wer(["THE CAT SAT", "HI THERE"], ["THE DOG SAT", "HI THERE"]) == pytest.approx(20.0)
    assert metrics.wer(["A B C D"], ["A B"]) == pytest.approx(100.0)  # two insertions / two words
    with pytest.raises(ValueError, match="empty"):
        metrics.per(["a"], [""])


def test_bleu_by_hand() -> None:
    # one sentence of 6 words, 5 match: p_n = 5/6, 4/5, 3/4, 2/3, brevity penalty 1
    expected = 100 * (5 / 6 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25
    assert metrics.bleu(["a b c d e f"], ["a b c d e g"]) == pytest.approx(expected, abs=1e-6)
    assert metrics.bleu(["Das ist gut."], ["Das ist gut."]) == pytest.approx(100.0)
    assert metrics.bleu(["das ist gut."], ["Das ist gut."]) < 100.0  # case-sensitive


def test_ctc_greedy_merges_repeats_and_drops_blanks() -> None:
    best = torch.tensor([[0, 1, 1, 0, 1, 2, 2, 3]])
    log_probs = torch.nn.functional.one_hot(best, 4).float()
    assert metrics.ctc_greedy(log_probs, torch.tensor([8])) == [[1, 1, 2, 3]]
    assert metrics.ctc_greedy(log_probs, torch.tensor([3])) == [[1]]


# ------------------------------------------------------------------ corpus
def test_lexicon_phones_equal_the_corpus_phone_transcripts(synth_corpus_en: Path) -> None:
    lexicon = corpus.read_lexicon(synth_corpus_en / "lexicon.txt")
    utts = corpus.phone_utterances(synth_corpus_en, "dev", lexicon)
    written = {}
    for line in (synth_corpus_en / "dev" / "phones.txt").read_text(encoding="utf-8").splitlines():
        uttid, *phones = line.split()
        written[uttid] = " ".join(phones)
    assert len(utts) == 12 and {u.uttid: u.text for u in utts} == written
    assert all(u.path.is_file() for u in utts)


def test_covost_rows(synth_corpus_en: Path) -> None:
    rows = corpus.covost_utterances(synth_corpus_en / "covost" / "dev.tsv", synth_corpus_en)
    assert len(rows) == 12 and all(r.path.is_file() and r.text for r in rows)


# ------------------------------------------------------------------ featurizer, cache
def test_featurizer_weighted_sum_and_layer_choice() -> None:
    hs = torch.randn(2, 3, 5, 4)
    feat = Featurizer(3, normalize=False)
    torch.testing.assert_close(feat(hs), hs.mean(1))  # zero-initialised weights: equal mix
    with torch.no_grad():
        feat.weights.copy_(torch.tensor([0.0, math.log(3.0), 0.0]))  # softmax = 1/5, 3/5, 1/5
    torch.testing.assert_close(feat(hs), 0.2 * hs[:, 0] + 0.6 * hs[:, 1] + 0.2 * hs[:, 2])
    assert Featurizer(3, layer=-1, normalize=False)(hs).equal(hs[:, 2])
    normed = Featurizer(3, normalize=True)(hs * 7.0 + 3.0)  # the option: layer norm inside the weighted sum
    torch.testing.assert_close(normed.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(normed, Featurizer(3, normalize=True)(hs), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="0..2"):
        Featurizer(3, layer=3)


@pytest.fixture(scope="module")
def teacher_upstream(teacher_run: Path) -> FrozenUpstream:
    return FrozenUpstream("hubert_local", latest_checkpoint(teacher_run))


def test_cached_features_equal_recomputed(teacher_upstream: FrozenUpstream, synth_corpus_en: Path,
                                          tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    utts = corpus.transcript_utterances(synth_corpus_en, "dev")
    cached = feature_source(teacher_upstream, utts, "asr-dev", tmp_path, max_gb=1.0)
    assert isinstance(cached, CachedFeatures) and cached.index["uttids"] == [u.uttid for u in utts]
    live = LiveFeatures(teacher_upstream, utts)
    for i in (0, 5, 11):
        c, r = cached.get([i])[0], live.get([i])[0]
        assert c.shape == r.shape == (teacher_upstream.n_layers, c.size(1), teacher_upstream.dim)
        torch.testing.assert_close(c, r.half().float())  # exactly the fp16 rounding of the recomputed states
    # a second request reads the same folder; a different utterance list rebuilds it
    again = feature_source(teacher_upstream, utts, "asr-dev", tmp_path, max_gb=1.0)
    assert isinstance(again, CachedFeatures) and again.folder == cached.folder
    fewer = feature_source(teacher_upstream, utts[:4], "asr-dev", tmp_path, max_gb=1.0)
    assert isinstance(fewer, CachedFeatures) and len(fewer) == 4
    # too big for the limit: refused, with a message, and recomputed instead
    with caplog.at_level("WARNING"):
        refused = feature_source(teacher_upstream, utts, "asr-test", tmp_path, max_gb=1e-6)
    assert isinstance(refused, LiveFeatures) and "above the limit" in caplog.text
    assert not list((tmp_path / teacher_upstream.fingerprint).glob("asr-test*"))


# ------------------------------------------------------------------ tasks end to end
def _train(task: str, corpus_root: Path, out: Path, upstream: list[str], steps: int, extra: str = "") -> Path:
    ov = (f"config.data.root={corpus_root},,config.runner.total_steps={steps},,config.runner.eval_step={steps // 2},,"
          f"config.runner.save_step={steps // 2},,config.runner.log_step=1,,config.runner.batch_size=8,,{QUIET}"
          f",,config.cache.dir={out.parent / 'cache'}" + extra)
    assert main(["-m", "train", *upstream, "-d", task, "-p", str(out), "-o", ov]) == 0
    return out


def _evaluate(run: Path, split: str = "test") -> dict:
    assert main(["-m", "evaluate", "-e", str(run / "dev-best.ckpt"), "-t", split]) == 0
    return json.loads((run / f"{split}-results.json").read_text())


@pytest.fixture(scope="module")
def pr_run(teacher_run: Path, synth_corpus_en: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pr") / "run"
    return _train("pr", synth_corpus_en, out, ["-u", "hubert_local", "-k", str(latest_checkpoint(teacher_run))], 300,
                  ",,config.runner.eval_step=100")


def test_pr_beats_an_untrained_head(pr_run: Path, synth_corpus_en: Path) -> None:
    state = load_downstream_checkpoint(pr_run / "dev-best.ckpt")
    cfg = get_task("pr").Config()  # the task's own config (its data and head sections)
    cfg.data.root, cfg.runner.progress_bar = str(synth_corpus_en), False
    cfg.cache.dir = str(pr_run.parent / "cache")
    untrained = DownstreamRunner(RunSpec(**state["spec"]), cfg, pr_run.parent / "untrained", train=False)
    before = untrained.evaluate("test")["per"]
    after = _evaluate(pr_run)["per"]
    assert after < 0.8 * before and after < 95.0, (before, after)
    hyp_lines = (pr_run / "test-hyp.ark").read_text(encoding="utf-8").splitlines()
    assert len(hyp_lines) == 12 and hyp_lines[0].split()[0] in {u.uttid for u in untrained.utts["test"]}


def test_layer_weights_saved_drawn_and_loaded_back(pr_run: Path) -> None:
    state = load_downstream_checkpoint(pr_run / "dev-best.ckpt")
    saved = json.loads((pr_run / "layer_weights.json").read_text())
    last = load_downstream_checkpoint(latest_checkpoint(pr_run))
    assert saved["step"] == last["step"] == 300
    torch.testing.assert_close(torch.tensor(saved["weights"]), last["featurizer"]["weights"].softmax(0))
    assert not torch.equal(last["featurizer"]["weights"], torch.zeros_like(last["featurizer"]["weights"]))
    assert (pr_run / "layer_weights.png").read_bytes()[:4] == b"\x89PNG"
    feat = Featurizer(len(saved["weights"]))
    feat.load_state_dict(state["featurizer"])
    assert feat.layer_weights() == pytest.approx(state["featurizer"]["weights"].softmax(0).tolist())


def test_resume_continues_exactly(synth_corpus_en: Path, tmp_path: Path) -> None:
    fbank = ["-u", "fbank"]
    const = ",,config.optimizer.decay=constant"  # the lr schedule must not depend on total_steps, which -e changes
    full = _train("pr", synth_corpus_en, tmp_path / "full", fbank, 8, const)
    half = _train("pr", synth_corpus_en, tmp_path / "half", fbank, 8, const + ",,config.runner.total_steps=4")
    assert main(["-m", "train", "-e", str(half / "states-4.ckpt"), "-o", "config.runner.total_steps=8"]) == 0
    a = load_downstream_checkpoint(full / "states-8.ckpt")["head"]
    b = load_downstream_checkpoint(half / "states-8.ckpt")["head"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_asr_trains_and_evaluates(synth_corpus_en: Path, tmp_path: Path) -> None:
    run = _train("asr", synth_corpus_en, tmp_path / "asr", ["-u", "fbank"], 6,
                 ",,config.head.project_dim=32,,config.head.hidden_dim=32,,config.optimizer.lr=1.0e-3")
    result = _evaluate(run)
    assert result["utterances"] == 12 and result["wer"] >= 0.0
    assert (run / "test-noLM-hyp.ark").is_file() and (run / "dev-noLM-hyp.ark").is_file()  # s3prl's names


@pytest.mark.parametrize("lang", ["en", "de"])
def test_st_trains_and_evaluates(lang: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    root = request.getfixturevalue(f"synth_corpus_{lang}")  # en: English audio -> German; de: German -> English
    n_test = len(corpus.covost_utterances(root / "covost" / "test.tsv", root))
    head = (",,config.head.d_model=32,,config.head.nhead=2,,config.head.ffn_dim=64,,config.head.conv_channels=32,,"
            "config.head.encoder_layers=1,,config.head.decoder_layers=1,,config.head.vocab_size=120,,"
            "config.head.beam=2,,config.head.max_len_b=12,,config.optimizer.warmup_steps=2")
    run = _train("st", root, tmp_path / "st", ["-u", "fbank"], 6, head)
    result = _evaluate(run)
    assert result["utterances"] == n_test and 0.0 <= result["bleu"] <= 100.0
    lines = (run / "output-st-test.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "utt_id\thyp\tref" and len(lines) == n_test + 1


def test_superb_zip(pr_run: Path, tmp_path: Path) -> None:
    _evaluate(pr_run)
    asr = tmp_path / "asr"
    asr.mkdir()
    (asr / "test-clean-noLM-hyp.ark").write_text("u1 HELLO\n")
    assert submit_main(["--pr", str(pr_run), "--asr_no_lm", str(asr), "--output_dir", str(tmp_path / "sub")]) == 0
    with zipfile.ZipFile(tmp_path / "sub" / "predict.zip") as zf:
        assert zf.namelist() == ["predict/", "predict/asr_public/", "predict/asr_public/predict.ark",
                                 "predict/pr_public/", "predict/pr_public/predict.ark"]  # like `zip -r`
        assert zf.read("predict/pr_public/predict.ark") == (pr_run / "test-hyp.ark").read_bytes()
    assert submit_main(["--st", str(asr), "--output_dir", str(tmp_path / "sub2")]) == 2  # no ST predictions


# ------------------------------------------------------------------ errors
def test_unknown_upstream_lists_close_matches() -> None:
    with pytest.raises(UpstreamError, match="hubert_local"):
        FrozenUpstream("hubert_lcoal")


def test_cli_errors(synth_corpus_en: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    def fails(argv: list[str], *needles: str) -> None:
        assert main(argv) == 2
        err = capsys.readouterr().err
        for needle in needles:
            assert needle in err, err

    base = ["-m", "train", "-u", "fbank", "-d", "pr"]
    fails([*base, "-p", str(tmp_path / "a"), "-o", f"config.data.root={tmp_path / 'nowhere'},,{QUIET}"],
          "corpus folder", "config.data.root")
    fails([*base, "-p", str(tmp_path / "a2"), "-o", f"config.data.root={synth_corpus_en},,config.data.dev_split=dve"],
          "split folder", "dve")
    fails([*base, "-p", str(tmp_path / "b"), "-o", "config.runner.totl_steps=3"], "totl_steps", "total_steps")
    fails(["-m", "train", "-u", "fbnak", "-d", "pr", "-p", str(tmp_path / "c")], "unknown upstream", "fbank")
    fails(["-m", "evaluate"], "-e CKPT")


def test_audio_not_16k_mono_is_refused_or_resampled(synth_corpus_en: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "corpus"
    shutil.copytree(synth_corpus_en, root)
    victim = sorted((root / "dev").glob("*/*/*.flac"))[0]
    wav, rate = sf.read(victim)
    sf.write(victim, np.stack([wav[::2], wav[::2]], 1), rate // 2)  # 8 kHz stereo
    base = ["-m", "train", "-u", "fbank", "-d", "pr"]
    ov = (f"config.data.root={root},,config.runner.total_steps=2,,config.runner.batch_size=4,,{QUIET},,"
          f"config.cache.dir={tmp_path / 'cache'}")
    assert main([*base, "-p", str(tmp_path / "refuse"), "-o", ov]) == 2
    err = capsys.readouterr().err
    assert victim.name in err and "config.data.resample=true" in err
    assert main([*base, "-p", str(tmp_path / "convert"), "-o", ov + ",,config.data.resample=true"]) == 0


def test_pr_and_asr_share_the_feature_cache(synth_corpus_en: Path, tmp_path: Path) -> None:
    tiny_asr = ",,config.head.project_dim=16,,config.head.hidden_dim=16"
    _train("pr", synth_corpus_en, tmp_path / "pr", ["-u", "fbank"], 2)
    folders = sorted(p.name for p in (tmp_path / "cache" / "fbank-none").iterdir())
    assert len(folders) == 2 and folders[0].startswith("dev-") and folders[1].startswith("train-")
    _train("asr", synth_corpus_en, tmp_path / "asr", ["-u", "fbank"], 2, tiny_asr)
    assert sorted(p.name for p in (tmp_path / "cache" / "fbank-none").iterdir()) == folders
