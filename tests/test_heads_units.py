"""Fast unit tests of the SUPERB featurizer and the CTC heads (the mutation-testing targets of
``make mutation`` with ``tests/test_objectives.py``; see docs/quality/mutation.md)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from s3prl_colld.config import ConfigError
from s3prl_colld.downstream.ctc_heads import ASRHeadConfig, BiLSTMCTCHead, ConvCTCHead, LinearCTCHead, PRHeadConfig
from s3prl_colld.downstream.featurizer import Featurizer, pad_features, plot_layer_weights
from s3prl_colld.downstream.schema import FeaturizerConfig


# ------------------------------------------------------------------ featurizer
def test_featurizer_normalises_each_layer_before_mixing() -> None:
    gen = torch.Generator().manual_seed(0)
    hs = torch.randn(2, 3, 5, 4, generator=gen) * torch.tensor([1.0, 10.0, 100.0])[None, :, None, None] + 3.0
    feat = Featurizer(3, normalize=True)
    normed = F.layer_norm(hs, (4,))
    torch.testing.assert_close(feat(hs), normed.mean(1))
    with torch.no_grad():
        feat.weights.copy_(torch.tensor([0.0, math.log(2.0), math.log(5.0)]))  # softmax = 1/8, 2/8, 5/8
    torch.testing.assert_close(feat(hs), (normed[:, 0] + 2 * normed[:, 1] + 5 * normed[:, 2]) / 8)
    assert feat.layer_weights() == pytest.approx([1 / 8, 2 / 8, 5 / 8])
    # without normalisation the raw states are mixed
    raw = Featurizer(3, normalize=False)
    torch.testing.assert_close(raw(hs), hs.mean(1))
    assert not torch.allclose(raw(hs), Featurizer(3, normalize=True)(hs))


def test_featurizer_single_layer_reads_that_layer_only() -> None:
    hs = torch.randn(2, 4, 3, 5)
    for layer, index in ((0, 0), (3, 3), (-1, 3), (-4, 0), (2, 2)):
        feat = Featurizer(4, layer=layer, normalize=False)
        assert torch.equal(feat(hs), hs[:, index])
        assert feat.layer_weights() == [1.0 if i == index else 0.0 for i in range(4)]
        assert torch.equal(Featurizer(4, layer=layer, normalize=True)(hs), hs[:, index])  # s3prl: untouched
    assert Featurizer(4).layer_weights() == pytest.approx([0.25] * 4)  # zero-initialised: equal weights
    one = torch.randn(2, 1, 3, 5) * 4.0 + 2.0  # a single hidden state (fbank, mfcc) is passed through untouched
    assert torch.equal(Featurizer(1)(one), one[:, 0]) and torch.equal(Featurizer(1, normalize=True)(one), one[:, 0])
    assert Featurizer(4).normalize is FeaturizerConfig().normalize  # one default for the class and the config
    assert Featurizer(4).weights.shape == (4,) and not Featurizer(4).weights.any()


def test_featurizer_passes_a_single_hidden_state_through() -> None:
    """fbank / mfcc have one hidden state: it is used as it is, normalisation or not (s3prl's Featurizer)."""
    hs = torch.randn(2, 1, 3, 5) * 7 + 2
    for normalize in (False, True):
        feat = Featurizer(1, normalize=normalize)
        assert torch.equal(feat(hs), hs[:, 0]) and feat.layer_weights() == [1.0]


@pytest.mark.parametrize("layer", [4, 5, -5, -6])
def test_featurizer_refuses_layers_out_of_range(layer: int) -> None:
    with pytest.raises(ValueError, match=r"-l -?\d+: the upstream has hidden states 0\.\.3"):
        Featurizer(4, layer=layer)


def test_featurizer_weights_learn() -> None:
    feat = Featurizer(3, normalize=False)
    hs = torch.zeros(1, 3, 2, 2)
    hs[:, 2] = 1.0  # only the last layer carries the target
    loss = (feat(hs) - 1.0).pow(2).mean()
    loss.backward()
    assert feat.weights.grad is not None and feat.weights.grad[2] < 0 < feat.weights.grad[0]


def test_pad_features_zero_pads_to_the_longest() -> None:
    a, b = torch.ones(3, 4, 2), torch.full((3, 2, 2), 2.0)
    out, lengths = pad_features([a, b])
    assert out.shape == (2, 3, 4, 2) and lengths.tolist() == [4, 2]
    assert torch.equal(out[0], a) and torch.equal(out[1, :, :2], b) and not out[1, :, 2:].any()
    assert out.dtype == a.dtype
    single, n = pad_features([b])
    assert single.shape == (1, 3, 2, 2) and n.tolist() == [2]


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_plot_layer_weights_writes_a_png(tmp_path: Path) -> None:
    path = plot_layer_weights([0.1, 0.2, 0.7], tmp_path / "w.png", "title")
    assert path == tmp_path / "w.png" and _png_size(path) == (400, 300)  # 4 x 3 inches at 100 dpi
    wide = plot_layer_weights([0.1] * 10, str(tmp_path / "wide.png"))  # 0.45 in per layer + 1.5 in
    assert isinstance(wide, Path) and _png_size(wide) == (600, 300)


def test_layer_weight_plot_shows_the_weights_and_the_uniform_line(tmp_path: Path) -> None:
    """Read back as SVG: labelled axes, the title, one bar per layer, and a dashed gray line at 1 / L."""
    svg = plot_layer_weights([1 / 3] * 3, tmp_path / "w.svg", "probe title").read_text()
    assert 'width="288pt" height="216pt"' in svg
    for text, scale in (("hidden state (0 = front-end)", "0.1"), ("softmax weight", "0.1"), ("probe title", "0.09"),
                        ("uniform", "0.08")):  # font sizes 10, 10, 9 and 8 points
        found = re.search(rf'<!-- {re.escape(text)} -->\s*<g transform="([^"]*)"', svg)
        assert found and found.group(1).endswith(f"scale({scale} -{scale})"), (text, found)
    bars = re.findall(r'<path d="([^"]*)"[^>]*style="fill: #1f77b4"', svg)
    assert len(bars) == 3
    tops = {round(min(float(y) for y in re.findall(r"[ML] [\d.]+ ([\d.]+)", bar)), 3) for bar in bars}
    dashed = ("fill: none; stroke-dasharray: 2.96,1.28; stroke-dashoffset: 0; stroke: #808080; "
              "stroke-width: 0.8")
    lines = re.findall(r'<path d="M [\d.]+ ([\d.]+)\s*L [\d.]+ ([\d.]+)\s*"[^>]*style="' + dashed + '"', svg)
    assert len(lines) == 1, lines  # the legend's sample has three points
    assert lines[0][0] == lines[0][1] and tops == {round(float(lines[0][0]), 3)}  # uniform weights reach the line
    untitled = plot_layer_weights([0.5, 0.5], tmp_path / "u.svg").read_text()
    assert "<!-- probe title -->" not in untitled and "XX" not in untitled


# ------------------------------------------------------------------ CTC heads
def test_head_configs_validate() -> None:
    PRHeadConfig(project_dim=1).validate()
    ASRHeadConfig(project_dim=1, hidden_dim=1, layers=1, dropout=0.0).validate()
    ASRHeadConfig(dropout=0.99).validate()
    with pytest.raises(ConfigError, match=r"^config\.head\.project_dim must be >= 1$"):
        PRHeadConfig(project_dim=0).validate()
    for bad in ({"project_dim": 0}, {"hidden_dim": 0}, {"layers": 0}):
        with pytest.raises(ConfigError, match=r"^config\.head\.project_dim, hidden_dim and layers must be >= 1$"):
            ASRHeadConfig(**bad).validate()
    for dropout in (1.0, -0.1):
        with pytest.raises(ConfigError, match=r"^config\.head\.dropout must be in \[0, 1\)$"):
            ASRHeadConfig(dropout=dropout).validate()


def test_linear_ctc_head_is_two_linear_layers_and_log_softmax() -> None:
    torch.manual_seed(0)
    head = LinearCTCHead(6, 5, PRHeadConfig(project_dim=3))
    first, second = head.net[0], head.net[1]
    assert first.weight.shape == (3, 6) and second.weight.shape == (5, 3) and len(head.net) == 2
    x = torch.randn(2, 4, 6)
    out = head(x, torch.tensor([4, 2]))
    torch.testing.assert_close(out, (x @ first.weight.T + first.bias) @ second.weight.T + second.bias
                               - torch.logsumexp((x @ first.weight.T + first.bias) @ second.weight.T + second.bias,
                                                 -1, keepdim=True))
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(2, 4))


def _asr_head(layers: int = 2, dropout: float = 0.0) -> BiLSTMCTCHead:
    torch.manual_seed(0)
    return BiLSTMCTCHead(6, 5, ASRHeadConfig(project_dim=4, hidden_dim=3, layers=layers, dropout=dropout)).eval()


def test_bilstm_ctc_head_shapes_and_structure() -> None:
    head = _asr_head()
    assert head.proj.weight.shape == (4, 6) and head.out.weight.shape == (5, 6)  # 2 x hidden: bidirectional
    assert len(head.lstms) == 2 and [lstm.input_size for lstm in head.lstms] == [4, 6]
    assert all(lstm.bidirectional and lstm.batch_first and lstm.hidden_size == 3 and lstm.num_layers == 1
               for lstm in head.lstms)
    assert _asr_head(layers=1, dropout=0.3).dropout.p == 0.3 and len(_asr_head(layers=3).lstms) == 3
    x = torch.randn(3, 7, 6)
    out = head(x, torch.tensor([2, 7, 5]))  # lengths in any order
    assert out.shape == (3, 7, 5)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(3, 7))
    short = head(x, torch.tensor([3, 5, 2]))  # every utterance shorter than the padded batch: T is kept
    assert short.shape == (3, 7, 5)
    torch.testing.assert_close(short[1, :5], head(x[1:2, :5], torch.tensor([5]))[0])


def test_bilstm_ctc_head_ignores_padding_and_reads_both_directions() -> None:
    head = _asr_head()
    x = torch.randn(2, 6, 6)
    lengths = torch.tensor([6, 3])
    both = head(x, lengths)
    alone = head(x[1:, :3], torch.tensor([3]))
    torch.testing.assert_close(both[1, :3], alone[0])  # padding frames do not reach the valid outputs
    noisy = x.clone()
    noisy[1, 3:] = 100.0
    torch.testing.assert_close(head(noisy, lengths)[1, :3], both[1, :3])
    later = x.clone()
    later[0, 5] += 1.0
    assert not torch.allclose(head(later, lengths)[0, 0], both[0, 0])  # the backward direction reads the future
    earlier = x.clone()
    earlier[0, 0] += 1.0
    assert not torch.allclose(head(earlier, lengths)[0, 5], both[0, 5])  # the forward direction reads the past
    assert torch.equal(head(x, lengths.to(torch.int32)), both)


def test_conv_asr_head_subsamples_and_ignores_its_batch_padding() -> None:
    """The mini ASR preset's convolution head with frame pairs concatenated (sample_rate 2): T' = ceil(T / 2),
    and an utterance's output is the same alone and padded inside a batch (padded frames are zeroed before every
    convolution)."""
    torch.manual_seed(0)
    cfg = ASRHeadConfig(project_dim=32, hidden_dim=24, layers=3, dropout=0.0, kind="conv", kernel=5, sample_rate=2)
    cfg.validate()
    head = ConvCTCHead(16, 7, cfg).eval()
    short = torch.randn(1, 9, 16)
    batch = torch.cat([F.pad(short, (0, 0, 0, 11)), torch.randn(1, 20, 16)])
    batch[0, 9:] = 5.0  # garbage in the padding must not leak into the short utterance
    lengths = torch.tensor([9, 20])
    out = head(batch, lengths)
    assert out.shape == (2, 10, 7)
    assert head.output_lengths(lengths).tolist() == [5, 10]
    alone = head(short, torch.tensor([9]))
    assert alone.shape == (1, 5, 7)
    torch.testing.assert_close(out[0, :5], alone[0], atol=1e-5, rtol=1e-5)
    for bad in (dict(kind="gru"), dict(kernel=4), dict(sample_rate=0), dict(upsample=0)):
        with pytest.raises(ConfigError):
            ASRHeadConfig(**bad).validate()


@pytest.mark.parametrize("kind", ["conv", "bilstm"])
def test_asr_head_upsample_emits_k_ctc_frames_per_frame_and_lets_ctc_fit_long_targets(kind: str) -> None:
    """``upsample: 2``: T' = 2 T, frame t's two outputs are frames 2t and 2t + 1 of the CTC input, and a target
    longer than the upstream's frames (infeasible without it: CTC's loss is infinite) gets a finite loss."""
    torch.manual_seed(0)
    cfg = ASRHeadConfig(project_dim=8, hidden_dim=8, layers=1, dropout=0.0, kind=kind, upsample=2)
    head = (ConvCTCHead if kind == "conv" else BiLSTMCTCHead)(6, 5, cfg).eval()
    x, lengths = torch.randn(2, 7, 6), torch.tensor([7, 4])
    out = head(x, lengths)
    assert out.shape == (2, 14, 5)
    assert head.output_lengths(lengths).tolist() == [14, 8]
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(2, 14))
    if kind == "conv":  # the two outputs of frame 3 are the two halves of the output layer on that frame
        with torch.no_grad():
            y = head.proj(x)
            for norm, conv in zip(head.norms, head.convs):
                y = y + F.gelu(conv(norm(y).transpose(1, 2))).transpose(1, 2)
            halves = head.out(y)[0, 3].reshape(2, 5).log_softmax(-1)
        torch.testing.assert_close(out[0, 6:8], halves, atol=1e-5, rtol=1e-5)
    targets = torch.tensor([1, 2, 1, 2, 1, 2, 1, 2, 1])  # 9 labels, 5 of them need a blank between: 13 frames > 7
    one = ConvCTCHead(6, 5, ASRHeadConfig(project_dim=8, hidden_dim=8, layers=1, kind="conv")).eval()
    plain = F.ctc_loss(one(x[:1], lengths[:1]).transpose(0, 1), targets, torch.tensor([7]), torch.tensor([9]))
    upsampled = F.ctc_loss(out[:1].transpose(0, 1), targets, torch.tensor([14]), torch.tensor([9]))
    assert torch.isinf(plain) and torch.isfinite(upsampled)
