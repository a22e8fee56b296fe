"""``-u hubert_tiny``: HuBERT's first iteration on a small corpus, with s3prl's own ``HubertModel``.

Targets are k-means units of 50 Hz MFCCs (``s3prl_colld.data.units``), made
once by ``prepare`` and cached in the run folder. The loss is HuBERT's
masked prediction, plus (a departure from HuBERT's default, named
``loss.unmasked_weight``) the same prediction on unmasked frames: with it the
raw-waveform CNN of a tiny model learns in minutes instead of hours.

The checkpoint also carries ``task_cfg, model_cfg, model_weight,
dictionaries_symbols``, so ``S3PRLUpstream("hubert_local", path_or_url=CKPT)``
loads the teacher, ``final_proj`` and unit embeddings included.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from s3prl_colld.checkpoint import save_atomic
from s3prl_colld.config import ConfigError, to_dict
from s3prl_colld.constants import FRAME_STRIDE, FRAME_WINDOW, SAMPLE_RATE
from s3prl_colld.data.audio import load_audio
from s3prl_colld.data.audio_dataset import AudioDataset
from s3prl_colld.data.bucket import crop_spans, pad_batch
from s3prl_colld.data.units import UnitQuantizer, mfcc_50hz, num_frames
from s3prl_colld.models.tiny_hubert import TinyHubertConfig, build_hubert, hubert_local_keys
from s3prl_colld.pretrain.schema import TaskConfig
from s3prl_colld.pretrain.task import PretrainTask, register

log = logging.getLogger(__name__)

UNITS_FILE = "units/units.pt"
MIN_UNIT_SEC = FRAME_WINDOW / SAMPLE_RATE  # shorter utterances give no MFCC frame


@dataclass
class UnitsConfig:
    n_clusters: int = 50
    max_fit_frames: int = 200_000  # frames sampled to fit k-means
    seed: int = 0


@dataclass
class HubertLossConfig:
    masked_weight: float = 1.0  # HuBERT's pred_masked_weight
    unmasked_weight: float = 1.0  # HuBERT's pred_nomask_weight; HuBERT's default is 0 (see module docstring)
    features_pen_weight: float = 10.0  # HuBERT's penalty on CNN output magnitude


@dataclass
class HubertTinyConfig(TaskConfig):
    units: UnitsConfig = field(default_factory=UnitsConfig)
    loss: HubertLossConfig = field(default_factory=HubertLossConfig)
    model: TinyHubertConfig = field(default_factory=TinyHubertConfig)

    def validate(self) -> None:
        if self.model.total_stride != FRAME_STRIDE:
            raise ConfigError(
                f"config.model.conv_layers has total stride {self.model.total_stride}; "
                f"the 50 Hz unit targets need {FRAME_STRIDE}"
            )


class UnitDataset(AudioDataset):
    """``AudioDataset`` items with their unit sequences: ``{"id", "wav": [N], "units": [num_frames(N)] int64}``."""

    def __init__(self, root: str | Path, splits: list[str], units: dict[str, torch.Tensor], min_sec: float,
                 max_sec: float | None, resample: bool = False, on_bad_audio: str = "error") -> None:
        super().__init__(root, splits, min_sec, max_sec, resample, on_bad_audio)
        missing = [r.uttid for r in self.rows if r.uttid not in units]
        if missing:
            raise ConfigError(f"{len(missing)} utterances have no units (first: {missing[0]}); "
                              f"delete {UNITS_FILE} in the run folder to rebuild them")
        self.units = units

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = super().__getitem__(index)
        item["units"] = self.units[item["id"]]
        return item


@register("hubert_tiny", upstreams=("hubert_local",))
class HubertTinyTask(PretrainTask):
    """Masked prediction of MFCC k-means units with s3prl's ``HubertModel``."""

    Config = HubertTinyConfig

    def __init__(self, cfg: HubertTinyConfig, expdir: Path) -> None:
        super().__init__(cfg, expdir)
        state = torch.load(self.expdir / UNITS_FILE, weights_only=True)
        self.n_units = int(state["quantizer"]["n_clusters"])
        self.units = state["units"]
        self.hubert = build_hubert(cfg.model, self.n_units)
        self.hubert.skip_masked = cfg.loss.masked_weight == 0
        self.hubert.skip_nomask = cfg.loss.unmasked_weight == 0

    # ---- data ---------------------------------------------------------
    @classmethod
    def prepare(cls, cfg: HubertTinyConfig, expdir: Path) -> None:
        """Fit k-means on the training MFCCs and label every training utterance (cached)."""
        out = Path(expdir) / UNITS_FILE
        d = cfg.data
        # every usable utterance of the tables (checked once; bad files per data.on_bad_audio) gets units
        rows = AudioDataset(d.root, d.splits, MIN_UNIT_SEC, None, d.resample, d.on_bad_audio).rows
        listing = hashlib.sha1("\n".join(f"{r.path}:{r.num_samples}" for r in rows).encode()).hexdigest()
        key = {"root": str(Path(d.root).resolve()), "splits": list(d.splits), "resample": d.resample,
               "utterances": listing, **to_dict(cfg.units)}
        if out.is_file():
            cached = torch.load(out, weights_only=True)
            if cached.get("key") == json.dumps(key, sort_keys=True):
                log.info("reusing k-means units in %s", out)
                return
        feats = {r.uttid: mfcc_50hz(load_audio(r.path, resample=d.resample))
                 for r in tqdm(rows, desc="MFCC", unit="utt")}
        frames = torch.cat(list(feats.values()))
        gen = torch.Generator().manual_seed(cfg.units.seed)
        if len(frames) > cfg.units.max_fit_frames:
            frames = frames[torch.randperm(len(frames), generator=gen)[: cfg.units.max_fit_frames]]
        quantizer = UnitQuantizer(cfg.units.n_clusters, seed=cfg.units.seed)
        log.info("fitting k-means (%d units) on %d MFCC frames", cfg.units.n_clusters, len(frames))
        inertia = quantizer.fit(frames)
        units = {uttid: quantizer.labels(f) for uttid, f in feats.items()}
        save_atomic({"key": json.dumps(key, sort_keys=True), "quantizer": quantizer.state_dict(), "units": units,
                     "inertia": inertia}, out)
        log.info("wrote %s (%d utterances, mean sq. distance %.3f)", out, len(units), inertia)

    def train_dataset(self) -> UnitDataset:
        d = self.cfg.data
        return UnitDataset(d.root, d.splits, self.units, max(d.min_sec, 0.03), d.max_sec, d.resample, d.on_bad_audio)

    def collate(self, items: list[dict[str, Any]], generator: torch.Generator) -> dict[str, Any]:
        """Crop audio and units together (crop starts are multiples of 320 samples) and pad.

        Returns ``wav [B, N]``, ``wav_lengths [B]``, ``wav_padding_mask [B, N]`` (True = padding),
        ``units [B, T]`` (padding frames hold 0; they are excluded by the padding mask).
        """
        d = self.cfg.data
        spans = crop_spans([len(it["wav"]) for it in items], int(d.crop_min_sec * SAMPLE_RATE),
                           int(d.crop_max_sec * SAMPLE_RATE), FRAME_STRIDE, generator, d.crop)
        wavs, units = [], []
        for it, (start, end) in zip(items, spans):
            wavs.append(it["wav"][start:end])
            first = start // FRAME_STRIDE
            units.append(it["units"][first: first + num_frames(end - start)])
        wav, lengths = pad_batch(wavs)
        padding_mask = torch.arange(wav.size(1))[None, :] >= lengths[:, None]
        unit_pad = torch.nn.utils.rnn.pad_sequence(units, batch_first=True)
        return {"wav": wav, "wav_lengths": lengths, "wav_padding_mask": padding_mask, "units": unit_pad}

    # ---- training -----------------------------------------------------
    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """HuBERT loss: ``w_m CE(masked) + w_u CE(unmasked) + w_pen mean(CNN_out^2)``."""
        w = self.cfg.loss
        out = self.hubert(batch["wav"], target_list=[batch["units"]], padding_mask=batch["wav_padding_mask"], mask=True)
        loss = w.features_pen_weight * out["features_pen"]
        stats: dict[str, torch.Tensor] = {"features_pen": out["features_pen"].detach()}
        for kind, weight, logits in (("m", w.masked_weight, out["logit_m_list"][0]), ("u", w.unmasked_weight, out["logit_u_list"][0])):
            if weight == 0 or logits is None or logits.size(0) == 0:
                continue
            logits = logits.float()
            target = logits.new_zeros(logits.size(0), dtype=torch.long)
            ce = F.cross_entropy(logits, target)
            loss = loss + weight * ce
            stats[f"loss_{kind}"] = ce.detach()
            stats[f"acc_{kind}"] = (logits.argmax(-1) == 0).float().mean().detach()
        return loss, stats

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return self.hubert.state_dict()

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.hubert.load_state_dict(state)

    def export(self) -> dict[str, Any]:
        return hubert_local_keys(self.hubert, self.cfg.model, self.n_units)


def write_random_init_checkpoint(cfg: HubertTinyConfig, n_units: int, path: Path, seed: int = 0) -> Path:
    """A ``hubert_local``-loadable checkpoint of an untrained teacher of the same shape (a probe baseline)."""
    torch.manual_seed(seed)
    model = build_hubert(cfg.model, n_units)
    return save_atomic(hubert_local_keys(model, cfg.model, n_units), path)
