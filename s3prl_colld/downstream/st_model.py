"""The SUPERB ST head: conv subsampling + transformer encoder-decoder, label smoothing, beam search.

Shaped like fairseq's ``s2t_transformer`` (which s3prl's ST task uses), written
with plain ``torch.nn`` transformer layers (pre-norm) so that no fairseq is
needed. Input: featurized upstream hidden states ``[B, T, D]``; output: target
piece ids of a sentencepiece vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from s3prl_colld.config import ConfigError


@dataclass
class STHeadConfig:
    d_model: int = 256
    nhead: int = 4
    ffn_dim: int = 1024
    encoder_layers: int = 3
    decoder_layers: int = 3
    conv_channels: int = 1024
    conv_kernel: int = 5
    conv_layers: int = 2
    dropout: float = 0.1
    label_smoothing: float = 0.1
    beam: int = 5
    max_len_a: float = 0.0  # max target length = a * encoder frames + b
    max_len_b: int = 200
    length_penalty: float = 1.0  # hypothesis score = sum log p / length ** length_penalty
    vocab_size: int = 1000  # sentencepiece pieces asked for (fewer on a small corpus)

    def validate(self) -> None:
        for name in ("d_model", "nhead", "ffn_dim", "encoder_layers", "decoder_layers", "conv_channels",
                     "conv_kernel", "conv_layers", "beam", "max_len_b", "vocab_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"config.head.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.nhead:
            raise ConfigError(f"config.head.d_model ({self.d_model}) must be divisible by nhead ({self.nhead})")
        if not 0.0 <= self.label_smoothing < 1.0 or not 0.0 <= self.dropout < 1.0:
            raise ConfigError("config.head.label_smoothing and dropout must be in [0, 1)")


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """``[length, dim]`` sin / cos position encodings (Vaswani et al.)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    out = torch.zeros(length, dim, device=device)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return out


def padding_mask(lengths: torch.Tensor, length: int) -> torch.Tensor:
    """``[B, length]``, True at padded positions."""
    return torch.arange(length, device=lengths.device)[None] >= lengths[:, None]


class Conv1dSubsampler(nn.Module):
    """``conv_layers`` x (Conv1d stride 2 -> GLU): ``[B, T, D]`` -> ``[B, ~T / 2^n, d_model]``."""

    def __init__(self, in_dim: int, channels: int, out_dim: int, kernel: int = 5, layers: int = 2) -> None:
        super().__init__()
        dims = [in_dim] + [channels // 2] * (layers - 1)
        outs = [channels] * (layers - 1) + [2 * out_dim]
        self.convs = nn.ModuleList(nn.Conv1d(i, o, kernel, stride=2, padding=kernel // 2) for i, o in zip(dims, outs))
        self.kernel = kernel

    def out_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for _ in self.convs:
            lengths = torch.div(lengths + 2 * (self.kernel // 2) - self.kernel, 2, rounding_mode="floor") + 1
        return lengths

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded frames are zeroed before every conv, so they never leak into valid outputs."""
        y = x.transpose(1, 2)  # [B, D, T]
        for conv in self.convs:
            y = y.masked_fill(padding_mask(lengths, y.size(2))[:, None], 0.0)
            y = F.glu(conv(y), dim=1)
            lengths = torch.div(lengths + 2 * (self.kernel // 2) - self.kernel, 2, rounding_mode="floor") + 1
        return y.transpose(1, 2), lengths


class STHead(nn.Module):
    """Encoder-decoder over featurized hidden states; the output projection is tied to the embedding."""

    def __init__(self, in_dim: int, vocab_size: int, cfg: STHeadConfig, pad_id: int, bos_id: int,
                 eos_id: int) -> None:
        super().__init__()
        self.cfg, self.pad_id, self.bos_id, self.eos_id = cfg, pad_id, bos_id, eos_id
        d = cfg.d_model
        self.scale = math.sqrt(d)
        self.subsample = Conv1dSubsampler(in_dim, cfg.conv_channels, d, cfg.conv_kernel, cfg.conv_layers)
        enc = nn.TransformerEncoderLayer(d, cfg.nhead, cfg.ffn_dim, cfg.dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(enc, cfg.encoder_layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)
        dec = nn.TransformerDecoderLayer(d, cfg.nhead, cfg.ffn_dim, cfg.dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(dec, cfg.decoder_layers, norm=nn.LayerNorm(d))
        self.embed = nn.Embedding(vocab_size, d, padding_idx=pad_id)
        nn.init.normal_(self.embed.weight, std=d ** -0.5)
        with torch.no_grad():
            self.embed.weight[pad_id].zero_()
        self.out = nn.Linear(d, vocab_size, bias=False)
        self.out.weight = self.embed.weight
        self.dropout = nn.Dropout(cfg.dropout)

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T, D]`` -> memory ``[B, T', d_model]`` and its padding mask ``[B, T']``."""
        y, lengths = self.subsample(x, lengths)
        y = y * self.scale + sinusoidal_positions(y.size(1), y.size(2), y.device)
        mask = padding_mask(lengths, y.size(1))
        return self.encoder(self.dropout(y), src_key_padding_mask=mask), mask

    def decode(self, prev: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """Previous tokens ``[B, U]`` -> logits ``[B, U, V]`` (causal)."""
        u = prev.size(1)
        tgt = self.embed(prev) * self.scale + sinusoidal_positions(u, memory.size(2), prev.device)
        causal = torch.triu(torch.ones(u, u, dtype=torch.bool, device=prev.device), 1)
        h = self.decoder(self.dropout(tgt), memory, tgt_mask=causal, tgt_key_padding_mask=prev == self.pad_id,
                         memory_key_padding_mask=memory_mask)
        return self.out(h)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: features ``[B, T, D]``, previous tokens ``[B, U]`` -> logits ``[B, U, V]``."""
        memory, mask = self.encode(x, lengths)
        return self.decode(prev, memory, mask)

    def teacher_forcing_batch(self, targets: list[list[int]], device: torch.device
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``prev = [bos] + y`` and ``gold = y + [eos]``, padded: two ``[B, max len + 1]`` tensors."""
        u = max(len(t) for t in targets) + 1
        prev = torch.full((len(targets), u), self.pad_id, dtype=torch.long)
        gold = torch.full((len(targets), u), self.pad_id, dtype=torch.long)
        for i, t in enumerate(targets):
            prev[i, 0] = self.bos_id
            prev[i, 1: len(t) + 1] = torch.tensor(t, dtype=torch.long)
            gold[i, : len(t)] = torch.tensor(t, dtype=torch.long)
            gold[i, len(t)] = self.eos_id
        return prev.to(device), gold.to(device)

    def loss(self, x: torch.Tensor, lengths: torch.Tensor, targets: list[list[int]]) -> torch.Tensor:
        """Label-smoothed cross entropy, mean over target tokens (eos included, pads ignored)."""
        prev, gold = self.teacher_forcing_batch(targets, x.device)
        logits = self(x, lengths, prev).float()
        return F.cross_entropy(logits.flatten(0, 1), gold.flatten(), ignore_index=self.pad_id,
                               label_smoothing=self.cfg.label_smoothing)

    @torch.no_grad()
    def beam_search(self, x: torch.Tensor, lengths: torch.Tensor, beam: int | None = None,
                    max_len: int | None = None) -> list[list[int]]:
        """Batched beam search; returns the best piece ids per utterance (no bos / eos).

        Every utterance keeps ``beam`` live hypotheses; an eos among the best
        ``beam`` candidates of a step finishes a hypothesis with score
        ``sum log p / length ** length_penalty``; an utterance stops when it has
        ``beam`` finished ones, and eos is forced at ``max_len``. With
        ``beam=1`` this is greedy decoding.
        """
        beam = beam or self.cfg.beam
        memory, mask = self.encode(x, lengths)
        b = x.size(0)
        max_len = max_len or int(self.cfg.max_len_a * memory.size(1) + self.cfg.max_len_b)
        memory, mask = memory.repeat_interleave(beam, 0), mask.repeat_interleave(beam, 0)
        tokens = torch.full((b * beam, 1), self.bos_id, dtype=torch.long, device=x.device)
        scores = torch.full((b, beam), -math.inf, device=x.device)
        scores[:, 0] = 0.0
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
        for step in range(max_len + 1):
            logp = self.decode(tokens, memory, mask)[:, -1].float().log_softmax(-1)  # [B * beam, V]
            logp[:, [self.pad_id, self.bos_id]] = -math.inf
            if step == max_len:
                eos = logp[:, self.eos_id].clone()
                logp.fill_(-math.inf)
                logp[:, self.eos_id] = eos
            vocab = logp.size(1)
            cand = (scores.reshape(-1, 1) + logp).reshape(b, beam * vocab)
            top, idx = cand.topk(min(2 * beam, cand.size(1)), dim=1)
            next_rows, next_tokens, next_scores = [], [], []
            for i in range(b):
                rows, toks, scs = [], [], []
                done = len(finished[i]) >= beam
                for rank in range(top.size(1)):
                    score, j = float(top[i, rank]), int(idx[i, rank])
                    src, tok = i * beam + j // vocab, j % vocab
                    if done or score == -math.inf:
                        break
                    if tok == self.eos_id:
                        if rank < beam:
                            length = step + 1
                            finished[i].append((score / length ** self.cfg.length_penalty,
                                                tokens[src, 1:].tolist()))
                        continue
                    if len(rows) < beam:
                        rows.append(src)
                        toks.append(tok)
                        scs.append(score)
                while len(rows) < beam:  # a finished utterance, or too few live candidates: dead padding rows
                    rows.append(i * beam)
                    toks.append(self.eos_id)
                    scs.append(-math.inf)
                next_rows += rows
                next_tokens += toks
                next_scores += scs
            if all(len(f) >= beam for f in finished):
                break
            tokens = torch.cat([tokens[next_rows], torch.tensor(next_tokens, device=x.device)[:, None]], 1)
            scores = torch.tensor(next_scores, device=x.device).reshape(b, beam)
        return [max(f, key=lambda h: h[0])[1] if f else [] for f in finished]
