"""Unit targets for masked prediction: k-means of frame features, made once and cached.

The features of an utterance are either its 50 Hz MFCCs (HuBERT's first
iteration) or one hidden state of a frozen s3prl upstream, the *unit teacher*
(``config.teacher``): HuBERT's second iteration clusters a layer of the
iteration-1 model, DiceHuBERT a layer of the teacher it distils.

Denoising (WavLM): when the corpus keeps a clean copy of a noisy utterance
(``data.clean_copies``), its features, and so its units, come from the
clean copy, while the model is trained on the noisy audio.

``prepare_units`` fits the k-means on up to ``units.max_fit_frames`` frames
and, in ``offline`` mode, labels every training utterance; everything goes
into one file ``units-<key>.pt`` whose name and content carry a key made of
the unit teacher (name, SHA-256 of its checkpoint, precision), the layer, k,
the fit settings, the denoise flag and the corpus (resolved root, splits,
SHA-256 of its length tables and manifest). A file with the same key is
reused, so runs that share ``units.cache_dir`` share their units.
In ``online`` mode only the k-means is stored; the task labels each batch's
(clean) crops with the unit teacher on the training device.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from tqdm.auto import tqdm

from s3prl_colld.checkpoint import CheckpointError, file_sha256, save_atomic
from s3prl_colld.config import ConfigError, choice
from s3prl_colld.data.audio import load_audio
from s3prl_colld.data.clean_copies import MANIFEST, align_clean, clean_copies
from s3prl_colld.data.audio_dataset import AudioDataset
from s3prl_colld.data.lengths import TableRow
from s3prl_colld.constants import FRAME_STRIDE, FRAME_WINDOW, SAMPLE_RATE
from s3prl_colld.data.units import UnitQuantizer, mfcc_50hz, num_frames
from s3prl_colld.s3prl_bridge.teacher import Teacher, TeacherConfig
from s3prl_colld.pretrain.schema import DataConfig

log = logging.getLogger(__name__)

UNITS_DIR = "units"  # default cache folder, inside the run folder
KEY_VERSION = 1
MIN_UNIT_SEC = FRAME_WINDOW / SAMPLE_RATE  # shorter utterances give no frame


@dataclass
class UnitsConfig:
    """How the unit targets are made (``config.units``)."""

    source: str = "mfcc"  # mfcc: k-means of 50 Hz MFCCs (HuBERT iteration 1) | teacher: of config.teacher's `layer`
    layer: int = 2  # source=teacher: hidden state to cluster (0 = front-end output, i = after transformer layer i)
    n_clusters: int = 50  # k
    max_fit_frames: int = 200_000  # frames sampled to fit k-means
    seed: int = 0
    mode: str = "offline"  # offline: label every utterance once (cached; CPU is fine) | online: label each batch's
    #                        crops with the unit teacher on the training device (source=teacher only)
    denoise: Optional[bool] = None  # units of a noisy utterance from its clean copy; null = when the corpus has some
    cache_dir: Optional[str] = None  # folder of units-<key>.pt; default RUN_FOLDER/units (share it to reuse units)

    def validate(self) -> None:
        choice(self.source, ("mfcc", "teacher"), "config.units.source")
        choice(self.mode, ("offline", "online"), "config.units.mode")
        if self.n_clusters < 2:
            raise ConfigError(f"config.units.n_clusters must be >= 2, got {self.n_clusters}")
        if self.max_fit_frames < self.n_clusters:
            raise ConfigError(f"config.units.max_fit_frames ({self.max_fit_frames}) must be >= n_clusters "
                              f"({self.n_clusters})")
        if self.layer < 0:
            raise ConfigError(f"config.units.layer must be >= 0 (0 = front-end output), got {self.layer}")
        if self.mode == "online" and self.source != "teacher":
            raise ConfigError("config.units.mode=online needs config.units.source=teacher (MFCC units are cheap to "
                              "make once: use mode=offline)")


# ------------------------------------------------------------------ features
class LayerFeatures:
    """One hidden state of a frozen upstream, at 50 Hz (320 samples per frame).

    Args:
        teacher: the frozen upstream (on its device).
        layer: 0 = front-end output, ``i`` = after transformer layer ``i`` (s3prl's ``hidden_states[i]``).
    """

    def __init__(self, teacher: Teacher, layer: int) -> None:
        if layer > teacher.num_layers:
            raise ConfigError(f"config.units.layer={layer}, but the unit teacher {teacher.cfg.name} has "
                              f"{teacher.num_layers} layers (valid: 0..{teacher.num_layers})")
        if teacher.downsample_rate != FRAME_STRIDE:
            raise ConfigError(f"the unit teacher {teacher.cfg.name} has {teacher.downsample_rate} samples per frame; "
                              f"50 Hz units need {FRAME_STRIDE}")
        self.teacher = teacher
        self.layer = layer

    @property
    def device(self) -> torch.device:
        return next(self.teacher.parameters()).device

    def batch(self, wav: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``wav [B, N]``, ``lengths [B]`` -> ``[B, num_frames(N), D]`` float32 on the teacher's device.

        The teacher runs at its own precision with autocast off; frames past
        the teacher's output (at most a frame or two) repeat its last frame.
        """
        with torch.autocast(device_type=wav.device.type, enabled=False):
            hidden = self.teacher(wav, lengths)[self.layer]  # [B, T', D]
        want = num_frames(wav.size(1))
        if abs(hidden.size(1) - want) > 2:
            raise RuntimeError(f"the unit teacher gave {hidden.size(1)} frames for {wav.size(1)} samples, "
                               f"expected {want} (50 Hz)")
        if hidden.size(1) < want:
            hidden = torch.cat([hidden, hidden[:, -1:].expand(-1, want - hidden.size(1), -1)], dim=1)
        return hidden[:, :want]

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        """One utterance ``[N]`` -> ``[num_frames(N), D]`` float32 on the CPU."""
        x = wav.to(self.device)[None]
        return self.batch(x, torch.tensor([wav.numel()], device=self.device))[0].cpu()


FeatureFn = Callable[[torch.Tensor], torch.Tensor]  # [N] waveform -> [num_frames(N), D]


# ------------------------------------------------------------------ cache key
def corpus_fingerprint(root: str | Path, splits: list[str]) -> str:
    """SHA-256 over the splits' length tables and the manifest (when there is one)."""
    root = Path(root)
    h = hashlib.sha256()
    for path in [root / "len_for_bucket" / f"{s}.csv" for s in splits] + [root / MANIFEST]:
        if path.is_file():
            h.update(path.name.encode())
            h.update(file_sha256(path).encode())
    return h.hexdigest()


def units_key(units: UnitsConfig, teacher: Optional[TeacherConfig], data: DataConfig, denoise: bool,
              rows: list[TableRow]) -> dict[str, Any]:
    """What the units of ``rows`` (``training_rows(data)``) depend on (see the module docstring)."""
    listing = hashlib.sha1("\n".join(f"{r.path}:{r.num_samples}" for r in rows).encode()).hexdigest()
    key: dict[str, Any] = {
        "version": KEY_VERSION, "source": units.source, "n_clusters": units.n_clusters,
        "max_fit_frames": units.max_fit_frames, "seed": units.seed, "denoise": denoise,
        "corpus": {"root": str(Path(data.root).resolve()), "splits": list(data.splits), "resample": data.resample,
                   "utterances": listing, "sha256": corpus_fingerprint(data.root, list(data.splits))},
    }
    if units.source == "teacher":
        if teacher is None:
            raise ConfigError("config.units.source=teacher needs config.teacher (name, and ckpt for *_local names)")
        if teacher.ckpt is not None and not Path(teacher.ckpt).is_file():
            raise ConfigError(f"config.teacher.ckpt={teacher.ckpt}: file not found")
        key["teacher"] = {"name": teacher.name, "precision": teacher.precision,
                          "ckpt_sha256": file_sha256(teacher.ckpt) if teacher.ckpt else None}
        key["layer"] = units.layer
    return key


def units_file(units: UnitsConfig, expdir: Path, key: dict[str, Any]) -> Path:
    """``CACHE_DIR/units-<first 16 hex digits of the key's SHA-256>.pt``."""
    folder = Path(units.cache_dir) if units.cache_dir else Path(expdir) / UNITS_DIR
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return folder / f"units-{digest}.pt"


# ------------------------------------------------------------------ building
def resolve_denoise(units: UnitsConfig, data: DataConfig, rows: list[TableRow]) -> dict[str, Path]:
    """The clean copies to use: ``{resolved noisy path: clean path}`` (empty when not denoising).

    Raises:
        ConfigError: ``units.denoise=true`` but no training utterance has a clean copy.
    """
    if units.denoise is False:
        return {}
    copies = clean_copies(data.root)
    used = {str(r.path.resolve()): copies[str(r.path.resolve())] for r in rows if str(r.path.resolve()) in copies}
    if units.denoise and not used:
        raise ConfigError(f"config.units.denoise=true, but {Path(data.root) / MANIFEST} lists no clean copy "
                          f"(clean_path) of any utterance of splits {list(data.splits)}; set it to null or false")
    return used


def unit_audio(row: TableRow, clean: dict[str, Path], resample: bool = False) -> torch.Tensor:
    """The waveform the units of ``row`` are computed from: its clean copy (aligned to ``row.num_samples``,
    16 kHz samples) if it has one, else itself."""
    copy = clean.get(str(row.path.resolve()))
    if copy is None:
        return load_audio(row.path, resample=resample)
    return align_clean(load_audio(copy, resample=resample), row.num_samples)


def fit_rows(rows: list[TableRow], max_frames: int, gen: torch.Generator) -> list[int]:
    """Indices of the utterances whose frames fit k-means: all of them (in order) when they hold at most
    ``max_frames`` frames, else a random subset holding just over ``max_frames``."""
    frames = [num_frames(r.num_samples) for r in rows]
    if sum(frames) <= max_frames:
        return list(range(len(rows)))
    chosen, total = [], 0
    for i in torch.randperm(len(rows), generator=gen).tolist():
        chosen.append(i)
        total += frames[i]
        if total >= max_frames:
            break
    return sorted(chosen)


def build_units(rows: list[TableRow], features: FeatureFn, clean: dict[str, Path], units: UnitsConfig,
                with_labels: bool, resample: bool = False) -> dict[str, Any]:
    """Fit k-means on (a sample of) the rows' features and, if ``with_labels``, label every row.

    Returns ``{"quantizer": state dict, "inertia": float, "units": {uttid: [T] int64} (empty without labels),
    "num_denoised": int}``.
    """
    gen = torch.Generator().manual_seed(units.seed)
    fit_idx = fit_rows(rows, units.max_fit_frames, gen)
    feats: dict[int, torch.Tensor] = {}
    for i in tqdm(fit_idx, desc="unit features (k-means sample)", unit="utt"):
        feats[i] = features(unit_audio(rows[i], clean, resample))
    frames = torch.cat([feats[i] for i in fit_idx])
    if len(frames) > units.max_fit_frames:
        frames = frames[torch.randperm(len(frames), generator=gen)[: units.max_fit_frames]]
    quantizer = UnitQuantizer(units.n_clusters, seed=units.seed)
    log.info("fitting k-means (%d units) on %d frames of dim %d", units.n_clusters, len(frames), frames.size(1))
    inertia = quantizer.fit(frames)
    del frames
    labels: dict[str, torch.Tensor] = {}
    if with_labels:
        for i in tqdm(range(len(rows)), desc="unit labels", unit="utt"):
            f = feats.pop(i) if i in feats else features(unit_audio(rows[i], clean, resample))
            labels[rows[i].uttid] = quantizer.labels(f)
    return {"quantizer": quantizer.state_dict(), "inertia": inertia, "units": labels,
            "num_denoised": sum(str(r.path.resolve()) in clean for r in rows)}


def training_rows(data: DataConfig) -> list[TableRow]:
    """Every usable utterance of ``data.splits`` long enough for one frame (audio checked as the training set
    checks it: ``data.resample``, ``data.on_bad_audio``), with ``num_samples`` at 16 kHz."""
    ds = AudioDataset(data.root, data.splits, MIN_UNIT_SEC, None, data.resample, data.on_bad_audio)
    rows = [dataclasses.replace(r, num_samples=n) for r, n in zip(ds.rows, ds.lengths)]
    seen: dict[str, Path] = {}
    for r in rows:  # units are stored by utterance id
        if r.uttid in seen:
            raise ConfigError(f"utterance id {r.uttid} occurs twice in config.data.splits {list(data.splits)} "
                              f"({seen[r.uttid]} and {r.path}): train on splits whose ids are distinct "
                              "(a noisy split such as dev_noisy reuses the ids of its clean twin)")
        seen[r.uttid] = r.path
    return rows


def prepare_units(units: UnitsConfig, teacher: Optional[TeacherConfig], data: DataConfig, expdir: Path,
                  device: torch.device) -> Path:
    """Make (or reuse) the cached unit file of this configuration; returns its path.

    Args:
        device: where the unit teacher runs (features are moved to the CPU for k-means).
    """
    rows = training_rows(data)
    clean = resolve_denoise(units, data, rows)
    key = units_key(units, teacher, data, bool(clean), rows)
    path = units_file(units, expdir, key)
    with_labels = units.mode == "offline"
    if path.is_file():
        cached = torch.load(path, weights_only=True)
        if cached.get("key") == json.dumps(key, sort_keys=True) and (cached.get("units") or not with_labels):
            log.info("reusing the units in %s", path)
            return path
    if units.source == "mfcc":
        features: FeatureFn = mfcc_50hz
    else:
        assert teacher is not None  # units_key checked it
        features = LayerFeatures(Teacher(teacher).to(device), units.layer)
    log.info("making units (%s%s, k=%d, %s) for %d utterances%s", units.source,
             f" layer {units.layer} of {teacher.name}" if units.source == "teacher" and teacher else "",
             units.n_clusters, units.mode, len(rows), f", {len(clean)} from clean copies" if clean else "")
    state = build_units(rows, features, clean, units, with_labels, data.resample)
    save_atomic({"key": json.dumps(key, sort_keys=True), **state}, path)
    log.info("wrote %s (mean sq. distance %.3f)", path, state["inertia"])
    return path


def load_units(path: Path) -> dict[str, Any]:
    """A unit file written by ``prepare_units``."""
    if not Path(path).is_file():
        raise CheckpointError(f"unit file {path} not found: it is made by the task's prepare step (run_pretrain.py)")
    return torch.load(path, weights_only=True)
