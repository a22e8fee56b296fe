"""A quick linear CTC phone probe on frozen features (the teacher's sanity check).

Features of a frozen upstream are extracted once per utterance (one at a time:
the GroupNorm of HuBERT's first conv layer makes padded batches change the
features), standardised per layer and dimension with training-set
statistics, mixed by a softmax-weighted sum over layers (weights start
equal), and read by one linear layer trained with CTC. Greedy decoding;
PER% = phone edit distance / reference phones x 100, via ``editdistance``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import editdistance
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from s3prl_colld.data.audio import load_audio
from s3prl_colld.data.corpus import read_phone_inventory, read_phone_transcripts
from s3prl_colld.data.lengths import read_length_table
from s3prl_colld.data.units import mfcc_50hz

log = logging.getLogger(__name__)

FeatureFn = Callable[[torch.Tensor], torch.Tensor]  # wav [N] -> hidden states [L, T, D]


@dataclass
class ProbeConfig:
    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-2
    eval_every: int = 500
    max_train_utts: int | None = None
    seed: int = 0


def upstream_features(name: str, ckpt: str | Path | None = None, device: str = "cpu") -> FeatureFn:
    """Hidden states of an s3prl hub upstream (``S3PRLUpstream``), one utterance at a time."""
    from s3prl.nn import S3PRLUpstream

    upstream = S3PRLUpstream(name, path_or_url=str(ckpt) if ckpt else None).to(device).eval()

    def extract(wav: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            wav = wav.to(device)
            hs, _ = upstream(wav[None], torch.tensor([wav.numel()], device=device))
            return torch.stack([h[0] for h in hs]).float().cpu()

    return extract


def mfcc_features(wav: torch.Tensor) -> torch.Tensor:
    """The MFCC baseline: ``[1, T, 39]`` at 50 Hz."""
    return mfcc_50hz(wav)[None]


def extract_split(fn: FeatureFn, root: str | Path, split: str, limit: int | None = None,
                  desc: str = "") -> tuple[list[torch.Tensor], list[list[str]]]:
    """Features ``[L, T, D]`` (fp16) and phone sequences of the utterances of ``split``."""
    rows = read_length_table(root, split)
    phones = read_phone_transcripts(root, split)
    rows = sorted(rows, key=lambda r: r.uttid)[:limit]
    feats, labels = [], []
    for row in tqdm(rows, desc=desc or f"features {split}", unit="utt", leave=False):
        feats.append(fn(load_audio(row.path)).half())
        labels.append(phones[row.uttid])
    return feats, labels


class LinearCTCProbe(nn.Module):
    """Softmax-weighted layer sum -> Linear(D, V + 1) (blank = 0)."""

    def __init__(self, n_layers: int, dim: int, n_phones: int, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.layer_weights = nn.Parameter(torch.zeros(n_layers))
        self.register_buffer("mean", mean)  # [L, D]
        self.register_buffer("std", std)  # [L, D]
        self.out = nn.Linear(dim, n_phones + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, L, T, D]`` -> log-probs ``[B, T, V + 1]``."""
        x = (x.float() - self.mean[None, :, None]) / self.std[None, :, None]
        w = self.layer_weights.softmax(0)
        return self.out((w[None, :, None, None] * x).sum(1)).log_softmax(-1)


def _batch(feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([f.size(1) for f in feats])
    out = feats[0].new_zeros(len(feats), feats[0].size(0), int(lengths.max()), feats[0].size(2))
    for i, f in enumerate(feats):
        out[i, :, : f.size(1)] = f
    return out, lengths


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """CTC greedy decoding: ``[B, T, V+1]`` -> label ids (1-based, blank 0 removed, repeats merged)."""
    best = log_probs.argmax(-1)
    out = []
    for seq, n in zip(best, lengths):
        ids = torch.unique_consecutive(seq[: int(n)])
        out.append([int(i) for i in ids if i != 0])
    return out


def error_rate(hyps: Sequence[Sequence], refs: Sequence[Sequence]) -> float:
    """Edit distance summed over utterances / reference tokens x 100 (PER or WER)."""
    errors = sum(editdistance.eval(list(h), list(r)) for h, r in zip(hyps, refs))
    total = sum(len(r) for r in refs)
    if total == 0:
        raise ValueError("error_rate: the references are empty")
    return 100.0 * errors / total


@torch.no_grad()
def evaluate(probe: LinearCTCProbe, feats: list[torch.Tensor], labels: list[list[str]], vocab: list[str],
             batch_size: int = 32) -> float:
    """PER% of ``probe`` on features / phone labels."""
    probe.eval()
    hyps = []
    for i in range(0, len(feats), batch_size):
        x, lengths = _batch(feats[i: i + batch_size])
        hyps += [[vocab[j - 1] for j in h] for h in greedy_decode(probe(x), lengths)]
    probe.train()
    return error_rate(hyps, labels)


def train_probe(train: tuple[list[torch.Tensor], list[list[str]]], dev: tuple[list[torch.Tensor], list[list[str]]],
                vocab: list[str], cfg: ProbeConfig) -> tuple[LinearCTCProbe, list[dict[str, float]]]:
    """Train on ``train``, keep the weights with the best dev PER; returns (probe, history)."""
    feats, labels = train
    index = {p: i + 1 for i, p in enumerate(vocab)}
    targets = [torch.tensor([index[p] for p in seq]) for seq in labels]
    stacked = torch.cat([f.float().transpose(0, 1) for f in feats])  # [sum T, L, D]
    mean, std = stacked.mean(0), stacked.std(0).clamp_min(1e-4)
    torch.manual_seed(cfg.seed)
    probe = LinearCTCProbe(feats[0].size(0), feats[0].size(2), len(vocab), mean, std)
    opt = torch.optim.Adam(probe.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    best, best_state, history = math.inf, None, []
    for step in tqdm(range(1, cfg.steps + 1), desc="probe", unit="step", leave=False):
        idx = torch.randint(len(feats), (cfg.batch_size,), generator=gen).tolist()
        x, lengths = _batch([feats[i] for i in idx])
        ys = [targets[i] for i in idx]
        lp = probe(x).transpose(0, 1)  # [T, B, V+1]
        loss = F.ctc_loss(lp, torch.cat(ys), lengths, torch.tensor([len(y) for y in ys]), zero_infinity=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            per = evaluate(probe, *dev, vocab)
            history.append({"step": step, "loss": loss.item(), "dev_per": per})
            if per < best:
                best, best_state = per, {k: v.clone() for k, v in probe.state_dict().items()}
    if best_state is not None:
        probe.load_state_dict(best_state)
    return probe, history


def probe_per(fn: FeatureFn, root: str | Path, cfg: ProbeConfig, name: str = "") -> dict[str, float]:
    """Train a probe on ``train``, select on ``dev``, report PER% on ``test`` (held-out speakers)."""
    vocab = read_phone_inventory(root)
    train = extract_split(fn, root, "train", cfg.max_train_utts, desc=f"{name} train features")
    dev = extract_split(fn, root, "dev", desc=f"{name} dev features")
    test = extract_split(fn, root, "test", desc=f"{name} test features")
    probe, history = train_probe(train, dev, vocab, cfg)
    result = {"dev_per": min(h["dev_per"] for h in history), "test_per": evaluate(probe, *test, vocab),
              "layer_weights": probe.layer_weights.softmax(0).tolist()}
    log.info("%s probe: dev PER %.1f, test PER %.1f", name, result["dev_per"], result["test_per"])
    return result
