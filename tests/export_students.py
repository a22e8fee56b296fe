"""Student checkpoints of every kind for the export tests, written in the trainer's checkpoint format.

Weights are random, then every float tensor (LayerNorm gains and biases, the
weight norm's gain, ...) is perturbed, so that a weight put in the wrong place
by an export shows up as a difference. Shapes and options are the tasks' own:
the shipped ``model.yaml`` of each distillation task and the three presets in
``configs/students``; DiceHuBERT checkpoints are built the way its task writes
them (s3prl's ``HubertModel`` and ``hubert_local_keys``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from s3prl_colld.config import from_dict, to_dict
from s3prl_colld.models.student import StudentConfig, StudentEncoder
from s3prl_colld.models.tiny_hubert import TinyHubertConfig, build_hubert, hubert_local_keys
from s3prl_colld.pretrain.task import get_task

REPO = Path(__file__).resolve().parents[1]
UPSTREAMS = {"colld_distiller": ["colld_local", "colld_small"], "distilhubert": ["distilhubert_colld_local"],
             "l2l_distiller": ["l2l_local"], "dicehubert": ["dicehubert_local"]}


def _perturb(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1 * (p.abs().mean() + 0.1))


def task_model(task: str, **changes: Any) -> StudentConfig:
    """``config.model`` of ``task``'s shipped model.yaml (the task's own, or the shared one it names), with
    ``changes``."""
    model_yaml, _ = get_task(task).default_config_paths()
    data = yaml.safe_load(model_yaml.read_text())
    return replace(from_dict(StudentConfig, data, "model.yaml"), **changes)


def preset_model(name: str) -> StudentConfig:
    """A structure preset of ``configs/students`` (HuBERT's 512-channel CNN)."""
    return from_dict(StudentConfig, yaml.safe_load((REPO / "configs" / "students" / f"{name}.yaml").read_text()),
                     name)


def write_student(path: Path, task: str, cfg: StudentConfig, disc_head: bool = False, seed: int = 0) -> Path:
    """A pretrain checkpoint of ``task`` exporting a student of ``cfg`` (+ prediction heads, + the
    discriminative head's unit projection with ``disc_head``)."""
    torch.manual_seed(seed)
    student = StudentEncoder(cfg)
    _perturb(student, seed)
    model = {f"student.{k}": v for k, v in student.state_dict().items()}
    model["heads.0.weight"] = torch.randn(192, cfg.dim)  # what distillation tasks also store
    if disc_head:
        model["unit_proj.weight"], model["unit_proj.bias"] = torch.randn(64, cfg.dim), torch.randn(64)
    config = {"model": to_dict(cfg), "teacher": {"name": "hubert_local", "ckpt": "/runs/teacher/states-400.ckpt"},
              "data": {"root": "/data/synth_en"}, "loss": {"disc_weight": 1.0 if disc_head else 0.0}}
    torch.save({"task": task, "config": config, "model": model, "step": 200,
                "export": {"upstreams": UPSTREAMS[task],
                           "modules": {"student": {"config": to_dict(cfg), "prefix": "student."}}}}, path)
    return path


def write_hubert(path: Path, cfg: TinyHubertConfig, seed: int = 0, task: str = "dicehubert") -> Path:
    """A DiceHuBERT checkpoint: the keys s3prl's ``hubert_local`` reads, as ``HubertTinyTask`` writes them."""
    torch.manual_seed(seed)
    model = build_hubert(cfg, n_units=20)
    _perturb(model, seed)
    keys = hubert_local_keys(model, cfg, 20)
    torch.save({"task": task, "config": {"model": to_dict(cfg), "teacher": {"name": "hubert_local"}},
                "model": {f"hubert.{k}": v for k, v in model.state_dict().items()}, "step": 300,
                "export": {"upstreams": UPSTREAMS.get(task, ["hubert_local"]), "modules": {}}, **keys}, path)
    return path


def tiny_hubert(**changes: Any) -> TinyHubertConfig:
    """dicehubert's shipped model.yaml with ``changes``."""
    data = yaml.safe_load(get_task("dicehubert").default_config_paths()[0].read_text())
    return replace(from_dict(TinyHubertConfig, data, "model.yaml"), **changes)


# name -> (maker(path) -> checkpoint, represented by transformers.HubertModel)
KINDS: dict[str, tuple[Callable[[Path], Path], bool]] = {
    "distilhubert": (lambda p: write_student(p, "distilhubert", task_model("distilhubert", frontend_norm=False)), True),
    "l2l": (lambda p: write_student(p, "l2l_distiller", task_model(
        "l2l_distiller", cnn=replace(task_model("l2l_distiller").cnn, mode="layer_norm", conv_bias=True))), True),
    "colld": (lambda p: write_student(p, "colld_distiller", task_model(
        "colld_distiller", normalize_waveform=True, conv_pos=15, conv_pos_groups=8)), True),
    "colld_disc": (lambda p: write_student(p, "colld_distiller", task_model("colld_distiller"), disc_head=True,
                                           seed=1), True),
    "preset_distilhubert": (lambda p: write_student(p, "distilhubert", preset_model("distilhubert")), True),
    "preset_deep_thin": (lambda p: write_student(p, "colld_distiller", preset_model("deep_thin")), True),
    "preset_shallow_wide": (lambda p: write_student(p, "colld_distiller", preset_model("shallow_wide")), True),
    "dicehubert": (lambda p: write_hubert(p, tiny_hubert()), True),
    # pre-norm, a LayerNorm in every conv, embed dim = CNN dim (no post_extract_proj)
    "dicehubert_prenorm": (lambda p: write_hubert(p, tiny_hubert(layer_norm_first=True, extractor_mode="layer_norm",
                                                                 encoder_embed_dim=128), seed=2), True),
    "prenorm_student": (lambda p: write_student(p, "colld_distiller", task_model("colld_distiller",
                                                                                 layer_norm_first=True)), False),
    "fbank": (lambda p: write_student(p, "colld_distiller", task_model("colld_distiller", frontend="fbank")), False),
}
