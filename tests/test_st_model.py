"""The ST head: sentencepiece vocabulary, conv subsampling, label-smoothed loss, beam search."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F

from s3prl_colld.config import ConfigError, from_dict
from s3prl_colld.downstream.spm import SentencePieceText, train_sentencepiece
from s3prl_colld.downstream.st_model import Conv1dSubsampler, STHead, STHeadConfig

SENTENCES = ([f"{a} {b} {c}." for a in ("Das Haus", "Der Hund", "Die Katze", "Ein Kind", "Mein Freund")
              for b in ("ist", "war", "bleibt") for c in ("gross", "klein", "hier", "dort")][::2]
             + [f"{a} {b} {c}." for a in ("The house", "The dog", "A child", "My friend", "Her cat")
                for b in ("is", "was", "stays") for c in ("big", "small", "here", "there")][1::2])


def tiny_cfg(**kw) -> STHeadConfig:
    base = dict(d_model=32, nhead=2, ffn_dim=64, encoder_layers=1, decoder_layers=1, conv_channels=32, dropout=0.0,
                label_smoothing=0.1, beam=3, max_len_b=20)
    return STHeadConfig(**{**base, **kw})


def test_sentencepiece_round_trip_and_checkpoint() -> None:
    assert len(SENTENCES) == 60
    spm = SentencePieceText(train_sentencepiece(SENTENCES, vocab_size=60))
    assert 4 < spm.vocab_size <= 60 and (spm.pad_id, spm.bos_id, spm.eos_id) == (0, 2, 3)
    for s in SENTENCES:
        ids = spm.encode(s)
        assert spm.bos_id not in ids and spm.eos_id not in ids and spm.sp.unk_id() not in ids
        assert spm.decode(ids) == s
        assert spm.decode([spm.bos_id, *ids, spm.eos_id, spm.pad_id]) == s
    messy = "  Der Hund   war \t hier.  "
    assert spm.decode(spm.encode(messy)) == " ".join(messy.split())
    buf = io.BytesIO()
    torch.save({"spm": spm.to_tensor()}, buf)
    buf.seek(0)
    again = SentencePieceText.from_tensor(torch.load(buf, weights_only=True)["spm"])
    assert again.encode(SENTENCES[3]) == spm.encode(SENTENCES[3])
    with pytest.raises(ValueError, match="no non-empty"):
        train_sentencepiece(["", " "], 10)
    with pytest.raises(ValueError, match="no non-empty"):
        train_sentencepiece([], 10)
    with pytest.raises(ValueError, match="vocab_size=8"):  # fewer pieces than distinct characters
        train_sentencepiece(SENTENCES, 8)


def test_subsampler_lengths_and_padding_independence() -> None:
    torch.manual_seed(0)
    sub = Conv1dSubsampler(8, 16, 12, kernel=5, layers=2).eval()
    lengths = torch.tensor([37, 20, 1])
    x = torch.randn(3, 37, 8)
    y, out = sub(x, lengths)
    half = lambda n: (n - 1) // 2 + 1  # noqa: E731
    assert out.tolist() == [half(half(n)) for n in lengths.tolist()] and y.shape == (3, half(half(37)), 12)
    for i, n in enumerate(lengths.tolist()):
        alone, n_out = sub(x[i: i + 1, :n], lengths[i: i + 1])
        torch.testing.assert_close(y[i, : int(n_out)], alone[0])


def test_encoder_output_does_not_depend_on_padding() -> None:
    torch.manual_seed(0)
    head = STHead(8, 10, tiny_cfg(), pad_id=0, bos_id=2, eos_id=3).eval()
    lengths = torch.tensor([30, 13, 5])
    x = torch.randn(3, 30, 8)
    for grad in (True, False):  # eval + no_grad may take PyTorch's fused encoder fast path
        with torch.set_grad_enabled(grad):
            memory, mask = head.encode(x, lengths)
            for i, n in enumerate(lengths.tolist()):
                alone, alone_mask = head.encode(x[i: i + 1, :n], lengths[i: i + 1])
                assert not alone_mask.any() and int((~mask[i]).sum()) == alone.size(1)
                torch.testing.assert_close(memory[i, : alone.size(1)], alone[0], atol=1e-5, rtol=1e-5)


def test_label_smoothed_loss_by_hand() -> None:
    """fairseq's label_smoothed_nll_loss, summed over tokens and divided by the sentences (s3prl's ST expert)."""
    torch.manual_seed(0)
    head = STHead(8, 10, tiny_cfg(), pad_id=0, bos_id=2, eos_id=3).eval()
    x, lengths = torch.randn(2, 12, 8), torch.tensor([12, 9])
    targets = [[5, 6, 7], [8]]
    prev = torch.tensor([[2, 5, 6, 7], [2, 8, 0, 0]])
    gold = torch.tensor([[5, 6, 7, 3], [8, 3, 0, 0]])
    logits = head(x, lengths, prev)
    logp = logits.log_softmax(-1)
    valid = gold != 0
    nll = -logp.gather(-1, gold[..., None])[..., 0][valid]
    smooth = -logp.sum(-1)[valid]
    eps_i = 0.1 / 9  # eps / (V - 1)
    expected = ((1 - 0.1 - eps_i) * nll + eps_i * smooth).sum() / 2  # 2 sentences
    torch.testing.assert_close(head.loss(x, lengths, targets), expected)
    # the same as torch's label smoothing spread over the other V - 1 classes, per sentence
    assert not torch.allclose(expected, F.cross_entropy(logits[valid], gold[valid], label_smoothing=0.1))
    # pads (in the features and in the targets) are ignored: the batch loss is the mean of the sentences' sums
    alone = [head.loss(x[i: i + 1, : int(lengths[i])], lengths[i: i + 1], [t]) for i, t in enumerate(targets)]
    torch.testing.assert_close(head.loss(x, lengths, targets), (alone[0] + alone[1]) / 2)


def _score(head: STHead, x: torch.Tensor, lengths: torch.Tensor, hyp: list[int]) -> float:
    """Length-normalised log-probability of ``hyp`` + eos."""
    prev, gold = head.teacher_forcing_batch([hyp], x.device)
    logp = head(x, lengths, prev).log_softmax(-1)[0]
    total = float(logp.gather(-1, gold[0][:, None]).sum())
    return total / (len(hyp) + 1) ** head.cfg.length_penalty


def test_beam_one_is_greedy_and_wider_beams_score_no_worse() -> None:
    torch.manual_seed(1)
    head = STHead(8, 12, tiny_cfg(max_len_b=8), pad_id=0, bos_id=2, eos_id=3).eval()
    x, lengths = torch.randn(2, 16, 8), torch.tensor([16, 11])
    greedy = []
    for i in range(2):
        memory, mask = head.encode(x[i: i + 1, : int(lengths[i])], lengths[i: i + 1])
        seq = [2]
        for _ in range(8):
            logp = head.decode(torch.tensor([seq]), memory, mask)[0, -1].log_softmax(-1)
            logp[[0, 2]] = -math.inf
            tok = int(logp.argmax())
            if tok == 3:
                break
            seq.append(tok)
        greedy.append(seq[1:])
    assert head.beam_search(x, lengths, beam=1) == greedy
    wide = head.beam_search(x, lengths, beam=4)
    for i in range(2):
        xi, li = x[i: i + 1, : int(lengths[i])], lengths[i: i + 1]
        assert _score(head, xi, li, wide[i]) >= _score(head, xi, li, greedy[i]) - 1e-5
        assert head.beam_search(xi, li, beam=4) == [wide[i]]  # batching does not change the result
        assert all(len(h) <= 2 for h in head.beam_search(xi, li, beam=4, max_len=2))
    assert head.beam_search(x, lengths, max_len=0) == [[], []]
    with pytest.raises(ValueError, match="beam"):
        head.beam_search(x, lengths, beam=0)


def test_head_overfits_three_targets() -> None:
    torch.manual_seed(0)
    head = STHead(8, 12, tiny_cfg(label_smoothing=0.0), pad_id=0, bos_id=2, eos_id=3)
    x, lengths = torch.randn(3, 20, 8), torch.tensor([20, 17, 14])
    targets = [[4, 5, 6, 7], [8, 9], [10, 11, 4]]
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    first = None
    for _ in range(300):
        loss = head.loss(x, lengths, targets)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first
    head.eval()
    assert head.beam_search(x, lengths, beam=3) == targets


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="divisible"):
        from_dict(STHeadConfig, {"d_model": 30, "nhead": 4})
    with pytest.raises(ConfigError, match="beam"):
        from_dict(STHeadConfig, {"beam": 0})
    with pytest.raises(ConfigError, match="conv_channels"):
        from_dict(STHeadConfig, {"conv_channels": 33})
    with pytest.raises(ConfigError, match="max_len"):
        from_dict(STHeadConfig, {"max_len_a": 0.0, "max_len_b": 0})
    assert from_dict(STHeadConfig, {"d_model": 32, "nhead": 2}).d_model == 32
