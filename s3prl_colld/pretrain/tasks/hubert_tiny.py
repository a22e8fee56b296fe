"""``-u hubert_tiny``: HuBERT's first and second iterations on a small corpus, with s3prl's own ``HubertModel``.

Iteration 1 (the default): targets are k-means units of 50 Hz MFCCs.
Iteration 2 (``configs/pretrain/hubert_tiny/iter2.yaml``, or
``units.source=teacher`` + ``teacher.ckpt=ITERATION_1.ckpt``): targets are
k-means units of the iteration-1 model's layer ``units.layer``, as in HuBERT.
Units are made by ``prepare`` and cached (``pretrain.unit_targets``).

Denoising masked prediction (WavLM): on a corpus that keeps the clean copy
of each noisy training utterance, the units come from the clean copy and the
model hears the noisy one (``units.denoise``, on by default when the corpus
has clean copies); crops of both are taken at the same offsets.

The loss is HuBERT's masked prediction, plus (a departure from HuBERT's
default, named ``loss.unmasked_weight``) the same prediction on unmasked
frames: with it the raw-waveform CNN of a tiny model learns in minutes
instead of hours.

The checkpoint also carries ``task_cfg, model_cfg, model_weight,
dictionaries_symbols``, so ``S3PRLUpstream("hubert_local", path_or_url=CKPT)``
loads the model, ``final_proj`` and unit embeddings included; with the Fbank
front-end (``config.model.frontend=fbank``) the name is ``hubert_fbank_local``
(the checkpoint's ``export.upstreams`` says which).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import nn

from s3prl_colld.checkpoint import save_atomic
from s3prl_colld.config import ConfigError, choice
from s3prl_colld.constants import FBANK_HUB_NAME, FRAME_STRIDE, SAMPLE_RATE
from s3prl_colld.data.audio import load_audio
from s3prl_colld.data.audio_dataset import AudioDataset
from s3prl_colld.data.bucket import crop_spans, pad_batch
from s3prl_colld.data.clean_copies import align_clean, clean_copies
from s3prl_colld.data.units import UnitLabeler, UnitQuantizer, num_frames
from s3prl_colld.s3prl_bridge.teacher import Teacher, TeacherConfig
from s3prl_colld.models.tiny_hubert import TinyHubertConfig, build_hubert, hub_names, hubert_local_keys
from s3prl_colld.pretrain.schema import TaskConfig
from s3prl_colld.pretrain.task import PretrainTask, register
from s3prl_colld.pretrain.unit_targets import (MIN_UNIT_SEC, LayerFeatures, UnitsConfig, load_units, prepare_units, resolve_denoise,
                                               training_rows, units_file, units_key)

log = logging.getLogger(__name__)

FRONTEND_PREFIXES = ("feature_extractor.", "layer_norm.", "post_extract_proj.")
HEAD_PREFIXES = ("final_proj.", "label_embs_concat")


@dataclass
class HubertLossConfig:
    masked_weight: float = 1.0  # HuBERT's pred_masked_weight
    unmasked_weight: float = 1.0  # HuBERT's pred_nomask_weight; HuBERT's default is 0 (see module docstring)
    features_pen_weight: float = 10.0  # HuBERT's penalty on CNN output magnitude


@dataclass
class HubertInitConfig:
    # copy weights of config.teacher (a fairseq-style HuBERT, e.g. iteration 1) where names and shapes match:
    # none | frontend (CNN, its LayerNorm and projection) | all (also the transformer; never the unit head)
    from_teacher: str = "none"

    def validate(self) -> None:
        choice(self.from_teacher, ("none", "frontend", "all"), "config.init.from_teacher")


@dataclass
class HubertTinyConfig(TaskConfig):
    units: UnitsConfig = field(default_factory=UnitsConfig)
    loss: HubertLossConfig = field(default_factory=HubertLossConfig)
    model: TinyHubertConfig = field(default_factory=TinyHubertConfig)
    teacher: Optional[TeacherConfig] = None  # the unit teacher (units.source=teacher) and init.from_teacher's source
    init: HubertInitConfig = field(default_factory=HubertInitConfig)

    def validate(self) -> None:
        if self.model.total_stride != FRAME_STRIDE:
            raise ConfigError(
                f"config.model.conv_layers has total stride {self.model.total_stride}; "
                f"the 50 Hz unit targets need {FRAME_STRIDE}"
            )
        uses_teacher = self.units.source == "teacher" or self.init.from_teacher != "none"
        if uses_teacher and self.teacher is None:
            raise ConfigError("config.units.source=teacher and config.init.from_teacher need config.teacher: "
                              "e.g. -o config.teacher.ckpt=result/pretrain/ITERATION_1/states-600.ckpt "
                              "(name hubert_local) or config.teacher.name=hubert_base")
        if self.teacher is not None:
            self.teacher.require_raw_targets("hubert_tiny / dicehubert", "clusters the teacher's raw features into units")
        if self.teacher is not None and not uses_teacher:
            raise ConfigError("config.teacher is set but unused: set config.units.source=teacher (units from its "
                              "layer config.units.layer) and/or config.init.from_teacher=frontend|all")


class UnitDataset(AudioDataset):
    """``AudioDataset`` items with their targets.

    Offline units: ``{"id", "wav": [N], "units": [num_frames(N)] int64}``.
    Online units: ``{"id", "wav": [N], "clean": [N] or None}`` (``clean``: the aligned clean copy, if any).
    """

    def __init__(self, root: str | Path, splits: list[str], units: dict[str, torch.Tensor] | None, min_sec: float,
                 max_sec: float | None, clean: dict[str, Path] | None = None, resample: bool = False,
                 on_bad_audio: str = "error", log_skipped: bool = True) -> None:
        super().__init__(root, splits, min_sec, max_sec, resample, on_bad_audio, log_skipped=log_skipped)
        if units is not None:
            missing = [r.uttid for r in self.rows if r.uttid not in units]
            if missing:
                raise ConfigError(f"{len(missing)} utterances have no units (first: {missing[0]}); delete the "
                                  "units-*.pt file in config.units.cache_dir (default RUN_FOLDER/units) to rebuild it")
        self.units = units
        self.clean = clean or {}

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = super().__getitem__(index)
        if self.units is not None:
            item["units"] = self.units[item["id"]]
        else:
            copy = self.clean.get(str(self.rows[index].path.resolve()))
            item["clean"] = None if copy is None else align_clean(load_audio(copy, resample=self.resample),
                                                                  item["wav"].numel())
        return item


def copy_matching(dst: nn.Module, src: nn.Module, prefixes: tuple[str, ...] | None) -> tuple[int, list[str]]:
    """Copy ``src``'s tensors into ``dst`` where names and shapes match (names starting with ``prefixes``,
    or all but the unit head when ``None``). Returns ``(copied, names that did not fit)``."""
    theirs = src.state_dict()
    mine = dst.state_dict()
    copied, skipped = 0, []
    with torch.no_grad():
        for name, value in mine.items():
            if name.startswith(HEAD_PREFIXES) or (prefixes is not None and not name.startswith(prefixes)):
                continue
            other = theirs.get(name)
            if other is None or other.shape != value.shape:
                skipped.append(name)
                continue
            value.copy_(other.to(value.dtype))
            copied += 1
    return copied, skipped


@register("hubert_tiny", upstreams=("hubert_local", "hubert_fbank_local"))
class HubertTinyTask(PretrainTask):
    """Masked prediction of k-means units (of MFCCs, or of a unit teacher's layer) with s3prl's ``HubertModel``."""

    Config = HubertTinyConfig
    hubert_checkpoint: ClassVar[bool] = True  # checkpoints carry hubert_local's keys (s3prl_colld.hub loads them so)

    def __init__(self, cfg: HubertTinyConfig, expdir: Path) -> None:
        super().__init__(cfg, expdir)
        path, self.clean = units_location(cfg, self.expdir)
        state = load_units(path)
        self.n_units = int(state["quantizer"]["n_clusters"])
        self.units: dict[str, torch.Tensor] | None = state["units"] if cfg.units.mode == "offline" else None
        self.hubert = build_hubert(cfg.model, self.n_units)
        self.hubert.skip_masked = cfg.loss.masked_weight == 0
        self.hubert.skip_nomask = cfg.loss.unmasked_weight == 0
        self.unit_teacher: Teacher | None = None
        self.labeler: UnitLabeler | None = None
        self.layer_features: LayerFeatures | None = None
        needs_teacher = cfg.init.from_teacher != "none" or cfg.units.mode == "online"
        teacher = Teacher(cfg.teacher) if cfg.teacher is not None and needs_teacher else None
        if cfg.init.from_teacher != "none":
            assert teacher is not None  # validate() checked it
            self._init_from(teacher)
        if cfg.units.mode == "online":
            assert teacher is not None
            self.unit_teacher = teacher  # a submodule: moves with the task; frozen, left out of the checkpoint
            self.layer_features = LayerFeatures(teacher, cfg.units.layer)
            self.labeler = UnitLabeler(UnitQuantizer.from_state_dict(state["quantizer"]))

    def _init_from(self, teacher: Teacher) -> None:
        """``init.from_teacher``: copy the unit teacher's matching tensors (see ``copy_matching``)."""
        source = teacher.fairseq_model
        if source is None:
            raise ConfigError(f"config.init.from_teacher={self.cfg.init.from_teacher}: the teacher "
                              f"{self.cfg.teacher.name if self.cfg.teacher else None} has no fairseq-style model "
                              "to copy from; set config.init.from_teacher=none")
        prefixes = FRONTEND_PREFIXES if self.cfg.init.from_teacher == "frontend" else None
        copied, skipped = copy_matching(self.hubert, source, prefixes)
        if copied == 0:
            raise ConfigError(f"config.init.from_teacher={self.cfg.init.from_teacher}: no tensor of the teacher fits "
                              "the model (different names or shapes); set config.init.from_teacher=none")
        log.info("init from the teacher: copied %d tensors%s", copied,
                 f"; {len(skipped)} did not fit and keep their random init: {', '.join(skipped[:6])}"
                 + (" ..." if len(skipped) > 6 else "") if skipped else "")

    # ---- data ---------------------------------------------------------
    @classmethod
    def prepare(cls, cfg: HubertTinyConfig, expdir: Path) -> None:
        """Make (or reuse) the unit targets (``pretrain.unit_targets.prepare_units``)."""
        from s3prl_colld.runtime.distributed import pick_device

        prepare_units(cfg.units, cfg.teacher, cfg.data, Path(expdir), pick_device(cfg.runner.device))

    def train_dataset(self) -> UnitDataset:
        d = self.cfg.data
        return UnitDataset(d.root, d.splits, self.units, max(d.min_sec, MIN_UNIT_SEC), d.max_sec,
                           clean=self.clean if self.units is None else None, resample=d.resample,
                           on_bad_audio=d.on_bad_audio, log_skipped=False)  # prepare_units logged them

    def collate(self, items: list[dict[str, Any]], generator: torch.Generator) -> dict[str, Any]:
        """Crop audio and targets together (crop starts are multiples of 320 samples) and pad.

        Returns ``wav [B, N]``, ``wav_lengths [B]``, ``wav_padding_mask [B, N]`` (True = padding) and
        ``units [B, T]`` (offline; padding frames hold 0, excluded by the padding mask) or
        ``clean_wav [B, N]`` (online: the clean copy's crop at the same offsets, or the crop itself).
        """
        d = self.cfg.data
        spans = crop_spans([len(it["wav"]) for it in items], int(d.crop_min_sec * SAMPLE_RATE),
                           int(d.crop_max_sec * SAMPLE_RATE), FRAME_STRIDE, generator, d.crop)
        wavs = [it["wav"][start:end] for it, (start, end) in zip(items, spans)]
        wav, lengths = pad_batch(wavs)
        padding_mask = torch.arange(wav.size(1))[None, :] >= lengths[:, None]
        batch = {"wav": wav, "wav_lengths": lengths, "wav_padding_mask": padding_mask}
        if self.units is not None:
            units = [it["units"][start // FRAME_STRIDE: start // FRAME_STRIDE + num_frames(end - start)]
                     for it, (start, end) in zip(items, spans)]
            batch["units"] = torch.nn.utils.rnn.pad_sequence(units, batch_first=True)
        else:
            clean = [w if it["clean"] is None else it["clean"][start:end]
                     for it, w, (start, end) in zip(items, wavs, spans)]
            batch["clean_wav"] = pad_batch(clean)[0]
        return batch

    # ---- training -----------------------------------------------------
    def targets(self, batch: dict[str, Any]) -> torch.Tensor:
        """``units [B, T]``: the batch's own (offline) or the unit teacher's labels of ``clean_wav`` (online)."""
        if "units" in batch:
            return batch["units"]
        assert self.layer_features is not None and self.labeler is not None
        with torch.no_grad(), torch.autocast(device_type=batch["clean_wav"].device.type, enabled=False):
            return self.labeler(self.layer_features.batch(batch["clean_wav"], batch["wav_lengths"]))

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """HuBERT loss: ``w_m CE(masked) + w_u CE(unmasked) + w_pen mean(CNN_out^2)``."""
        w = self.cfg.loss
        units = self.targets(batch)
        out = self.hubert(batch["wav"], target_list=[units], padding_mask=batch["wav_padding_mask"], mask=True)
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

    def checkpoint_extras(self) -> dict[str, Any]:
        return hubert_local_keys(self.hubert, self.cfg.model, self.n_units)

    def export_section(self) -> dict[str, Any]:
        """As the base class's, but the Fbank front-end's checkpoints name only ``hubert_fbank_local``: s3prl's
        ``hubert_local`` (or ``dicehubert_local``) cannot build that model (``check_upstream_checkpoint`` then
        says which name loads the file)."""
        section = super().export_section()
        if self.cfg.model.frontend != "cnn":
            section["upstreams"] = hub_names(self.cfg.model)
        else:  # the task's names but the Fbank front-end's (hubert_tiny registers both)
            section["upstreams"] = [n for n in section["upstreams"] if n != FBANK_HUB_NAME]
        return section


def write_random_init_checkpoint(cfg: HubertTinyConfig, n_units: int, path: Path, seed: int = 0) -> Path:
    """A checkpoint of an untrained teacher of the same shape (a probe baseline), loadable by the name of its
    front-end (``hubert_local``, or ``hubert_fbank_local``)."""
    torch.manual_seed(seed)
    model = build_hubert(cfg.model, n_units)
    return save_atomic(hubert_local_keys(model, cfg.model, n_units), path)


def units_location(cfg: HubertTinyConfig, expdir: Path) -> tuple[Path, dict[str, Path]]:
    """``(unit file, clean copies used)`` of a ``hubert_tiny`` / ``dicehubert`` run with config ``cfg`` in ``expdir``."""
    rows = training_rows(cfg.data)
    clean = resolve_denoise(cfg.units, cfg.data, rows)
    return units_file(cfg.units, Path(expdir), units_key(cfg.units, cfg.teacher, cfg.data, bool(clean), rows)), clean
