"""The ST head's auxiliary source-CTC loss (``config.head.ctc_weight``, joint CTC / attention): off by default."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from s3prl_colld.config import ConfigError, from_dict
from s3prl_colld.downstream import corpus
from s3prl_colld.downstream.cli import main
from s3prl_colld.downstream.runner import load_downstream_checkpoint
from s3prl_colld.downstream.st_model import STHead, STHeadConfig, ctc_feasible_length
from s3prl_colld.downstream.tasks.superb import STTask, source_characters

PAD, BOS, EOS = 0, 2, 3
TARGETS = [[5, 6, 7], [8]]
SOURCES = [[1, 2, 3, 3], [4, 1]]  # labels 1..4 (0: blank); 3, 3 needs a blank between


def tiny_cfg(**kw) -> STHeadConfig:
    base = dict(d_model=32, nhead=2, ffn_dim=64, encoder_layers=1, decoder_layers=1, conv_channels=32, dropout=0.0,
                label_smoothing=0.1)
    return STHeadConfig(**{**base, **kw})


def tiny_head(ctc_vocab_size: int = 5, **kw) -> STHead:
    torch.manual_seed(0)
    return STHead(8, 10, tiny_cfg(**kw), pad_id=PAD, bos_id=BOS, eos_id=EOS, ctc_vocab_size=ctc_vocab_size)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    return torch.randn(2, 40, 8), torch.tensor([40, 29])  # 10 and 8 encoder frames


def ce_by_hand(head: STHead, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """s3prl's (fairseq's) label-smoothed CE, written out: the loss of the head before the CTC branch."""
    prev = torch.tensor([[BOS, 5, 6, 7], [BOS, 8, PAD, PAD]])
    gold = torch.tensor([[5, 6, 7, EOS], [8, EOS, PAD, PAD]])
    logp = head(x, lengths, prev).log_softmax(-1)
    valid = gold != PAD
    eps, eps_i = 0.1, 0.1 / (logp.size(-1) - 1)
    nll = -logp.gather(-1, gold[..., None])[..., 0][valid]
    return ((1 - eps - eps_i) * nll + eps_i * -logp.sum(-1)[valid]).sum() / 2


def ctc_by_hand(head: STHead, x: torch.Tensor, lengths: torch.Tensor, sources: list[list[int]]) -> torch.Tensor:
    """torch's CTC of ``sources`` on the CTC layer's outputs, sub-frames unfolded one by one; summed / sentences."""
    memory, mask = head.encode(x, lengths)
    k = head.cfg.ctc_upsample
    logits = head.ctc(memory)  # [B, T', k * V]
    v = logits.size(-1) // k
    frames = torch.stack([logits[:, :, j * v: (j + 1) * v] for j in range(k)], 2).flatten(1, 2)  # [B, T' k, V]
    out_lengths = (~mask).sum(1) * k
    total = sum(F.ctc_loss(frames[i: i + 1].log_softmax(-1).transpose(0, 1), torch.tensor([s]),
                           out_lengths[i: i + 1], torch.tensor([len(s)]), reduction="sum", zero_infinity=True)
                for i, s in enumerate(sources))
    return total / len(sources)


# ------------------------------------------------------------------ (a) off: s3prl's model, unchanged
def test_weight_zero_has_no_ctc_layer_and_the_ce_loss() -> None:
    head = tiny_head()
    assert STHeadConfig().ctc_weight == 0.0 and head.ctc is None
    assert not any("ctc" in k for k in head.state_dict())
    x, lengths = batch()
    loss, terms = head.loss_terms(x, lengths, TARGETS)
    assert terms == {}
    torch.testing.assert_close(loss, ce_by_hand(head, x, lengths))
    torch.testing.assert_close(head.loss(x, lengths, TARGETS, SOURCES), loss)  # sources are ignored
    # the CTC layer is built last: the other parameters draw the same initial values with it
    with_ctc = tiny_head(ctc_weight=0.3)
    other = {k: v for k, v in with_ctc.state_dict().items() if not k.startswith("ctc.")}
    assert other.keys() == head.state_dict().keys()
    assert all(torch.equal(v, head.state_dict()[k]) for k, v in other.items())
    assert set(with_ctc.state_dict()) - set(other) == {"ctc.weight", "ctc.bias"}
    with pytest.raises(RuntimeError, match="no CTC layer"):
        head.ctc_log_probs(*head.encode(x, lengths))


# ------------------------------------------------------------------ (b) on: the weighted sum, and it trains
@pytest.mark.parametrize("upsample", [1, 2])
def test_loss_is_the_weighted_sum_of_ce_and_ctc(upsample: int) -> None:
    head = tiny_head(ctc_weight=0.3, ctc_upsample=upsample)
    assert head.ctc.out_features == upsample * 5
    x, lengths = batch()
    loss, terms = head.loss_terms(x, lengths, TARGETS, SOURCES)
    ce, ctc = ce_by_hand(head, x, lengths), ctc_by_hand(head, x, lengths, SOURCES)
    torch.testing.assert_close(terms["ce"], ce)
    torch.testing.assert_close(terms["ctc"], ctc)
    torch.testing.assert_close(loss, 0.7 * ce + 0.3 * ctc)
    assert float(terms["ctc"]) > 0 and float(terms["ctc_infeasible"]) == 0.0
    with pytest.raises(ValueError, match="source label"):
        head.loss(x, lengths, TARGETS)


def test_infeasible_targets_add_zero_and_are_counted() -> None:
    """8 encoder frames cannot emit 9 labels: zero_infinity drops that utterance; upsampling makes it fit."""
    long = [[1, 2, 3, 4, 1, 2, 3, 4, 1], [1]]
    assert ctc_feasible_length([1, 1, 2]) == 4 and ctc_feasible_length(long[0]) == 9
    x, lengths = batch()
    one = tiny_head(ctc_weight=0.3)
    _, terms = one.loss_terms(x[1:], lengths[1:], TARGETS[:1], long[:1])
    assert float(terms["ctc"]) == 0.0 and float(terms["ctc_infeasible"]) == 1.0
    two = tiny_head(ctc_weight=0.3, ctc_upsample=2)
    _, terms = two.loss_terms(x[1:], lengths[1:], TARGETS[:1], long[:1])
    assert float(terms["ctc"]) > 0.0 and float(terms["ctc_infeasible"]) == 0.0


def test_optimisation_lowers_the_ctc_term() -> None:
    head = tiny_head(ctc_weight=0.3)
    x, lengths = batch()
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    ctc = []
    for _ in range(40):
        loss, terms = head.loss_terms(x, lengths, TARGETS, SOURCES)
        ctc.append(float(terms["ctc"]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert ctc[-1] < 0.5 * ctc[0], ctc


# ------------------------------------------------------------------ (c) config
@pytest.mark.parametrize("bad", [-0.1, 1.0, float("nan")])
def test_bad_ctc_weight_is_a_config_error(bad: float) -> None:
    with pytest.raises(ConfigError, match="ctc_weight"):
        from_dict(STHeadConfig, {"ctc_weight": bad})


def test_bad_ctc_upsample_and_missing_vocabulary() -> None:
    with pytest.raises(ConfigError, match="ctc_upsample"):
        from_dict(STHeadConfig, {"ctc_upsample": 0})
    assert from_dict(STHeadConfig, {"ctc_weight": 0.3}).ctc_weight == 0.3
    with pytest.raises(ValueError, match="source vocabulary"):
        tiny_head(ctc_vocab_size=0, ctc_weight=0.3)


# ------------------------------------------------------------------ (d) the source vocabulary
def st_task(ctc_weight: float) -> STTask:
    return STTask(STTask.Config(head=STHeadConfig(d_model=16, nhead=2, ffn_dim=16, conv_channels=8,
                                                  ctc_weight=ctc_weight)))


UTTS = [corpus.Utterance(str(i), Path("x.flac"), tgt, src) for i, (src, tgt) in enumerate([
    ("Do five fathers bring eleven soft cakes in the black city?", "Bringen fünf Väter elf weiche Kuchen?"),
    ("Eleven angry neighbours don't love a singer.", "Elf wütende Nachbarn lieben keinen Sänger."),
    ("The well-known dog, 2 cats!", "Der bekannte Hund, 2 Katzen!")])]


def test_source_characters_are_the_asr_tasks() -> None:
    assert source_characters("Do five,  fathers?") == list("DO|FIVE|FATHERS|")
    assert source_characters("don't well-known 2") == list("DON'T|WELL|KNOWN|2|")
    assert source_characters(" ?! ") == [] and source_characters("") == []


def test_source_vocabulary_is_saved_and_restored() -> None:
    task = st_task(0.3)
    task.fit_vocab(UTTS)
    assert task.source_tokens == sorted(set("".join(c for u in UTTS for c in source_characters(u.source))))
    assert "|" in task.source_tokens and "?" not in task.source_tokens and "'" in task.source_tokens
    buf = io.BytesIO()
    torch.save(task.vocab_state(), buf)
    buf.seek(0)
    again = st_task(0.3)
    again.load_vocab_state(torch.load(buf, weights_only=True))
    assert again.source_tokens == task.source_tokens
    assert again.source_labels(UTTS[0].source) == task.source_labels(UTTS[0].source)
    assert min(task.source_labels(UTTS[2].source)) >= 1  # 0 is the blank
    assert again.build_head(8).ctc.out_features == len(task.source_tokens) + 1
    # weight 0: the vocabulary state is s3prl's (no source characters), and no CTC layer
    off = st_task(0.0)
    off.fit_vocab(UTTS)
    assert set(off.vocab_state()) == {"spm"} and off.build_head(8).ctc is None
    with pytest.raises(ConfigError, match="no source vocabulary"):
        st_task(0.3).load_vocab_state(off.vocab_state())


def test_missing_source_transcripts_are_a_data_error() -> None:
    no_source = [corpus.Utterance(u.uttid, u.path, u.text) for u in UTTS]
    with pytest.raises(corpus.DataError, match="src_text"):
        st_task(0.3).fit_vocab(no_source)
    st_task(0.0).fit_vocab(no_source)  # not needed without the CTC


def test_covost_reader_keeps_the_source(tmp_path: Path) -> None:
    tsv = tmp_path / "train.tsv"
    tsv.write_text("id\taudio\tn_frames\tsr\tsrc_text\ttgt_text\nu1\ta.flac\t16000\t16000\tHello there.\tHallo.\n")
    (u,) = corpus.covost_utterances(tsv, tmp_path)
    assert (u.text, u.source) == ("Hallo.", "Hello there.")
    tsv.write_text("id\taudio\ttgt_text\nu1\ta.flac\tHallo.\n")
    assert corpus.covost_utterances(tsv, tmp_path)[0].source == ""


# ------------------------------------------------------------------ (e) the whole probe, end to end
def test_st_probe_trains_logs_and_tests_with_ctc(synth_corpus_en: Path, tmp_path: Path) -> None:
    run = tmp_path / "st"
    ov = (f"config.data.root={synth_corpus_en},,config.runner.total_steps=6,,config.runner.eval_step=3,,"
          "config.runner.save_step=3,,config.runner.log_step=1,,config.runner.batch_size=8,,"
          f"config.runner.progress_bar=false,,config.cache.dir={tmp_path / 'cache'},,"
          "config.head.d_model=32,,config.head.nhead=2,,config.head.ffn_dim=64,,config.head.conv_channels=32,,"
          "config.head.encoder_layers=1,,config.head.decoder_layers=1,,config.head.vocab_size=120,,"
          "config.head.beam=2,,config.head.max_len_b=12,,config.optimizer.warmup_steps=2,,"
          "config.head.ctc_weight=0.3,,config.head.ctc_upsample=2")
    assert main(["-m", "train", "-u", "fbank", "-d", "st", "-p", str(run), "-o", ov]) == 0
    state = load_downstream_checkpoint(run / "dev-best.ckpt")
    assert state["config"]["head"]["ctc_weight"] == 0.3 and {"ctc.weight", "ctc.bias"} <= set(state["head"])
    assert "|" in state["vocab"]["source_tokens"]
    curve = json.loads((run / "training.json").read_text())["dev_curve"]
    assert [p["step"] for p in curve] == [3, 6]
    for p in curve:  # both objectives are logged, and the loss is their weighted sum
        terms = p["train_terms"]
        assert terms["ce"] > 0 and terms["ctc"] > 0
        assert p["train_loss"] == pytest.approx(0.7 * terms["ce"] + 0.3 * terms["ctc"], rel=1e-4)
    # resuming restores the source vocabulary; the test pass decodes with the checkpoint
    assert main(["-m", "train", "-e", str(run / "states-6.ckpt"), "-o", "config.runner.total_steps=7,,"
                 "config.runner.eval_step=7"]) == 0
    assert load_downstream_checkpoint(run / "states-7.ckpt")["vocab"]["source_tokens"] == \
        state["vocab"]["source_tokens"]
    assert main(["-m", "evaluate", "-e", str(run / "dev-best.ckpt"), "-t", "test"]) == 0
    result = json.loads((run / "test-results.json").read_text())
    assert result["utterances"] > 0 and 0.0 <= result["bleu"] <= 100.0
