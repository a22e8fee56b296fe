"""The model card (``README.md``) of an exported student: what it is, how it was made, how it scored.

The results-grid row comes from a ``results.json`` of ``python -m s3prl_colld.replicate``: the one
given, or the one of the grid folder the checkpoint lies in (``GRID/students/NAME-sK/states-N.ckpt``);
its row is the one whose ``ckpt`` is this checkpoint or lies in the same run folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from s3prl_colld.export.source import ExportSource

METHODS = {
    "colld_distiller": "CoLLD (masked layer-to-layer distillation)",
    "distilhubert": "DistilHuBERT (layer-to-layer prediction heads, L1 + cosine)",
    "l2l_distiller": "layer-to-layer distillation (L2L)",
    "dicehubert": "DiceHuBERT (HuBERT's masked unit prediction on k-means units of the teacher)",
    "hubert_tiny": "HuBERT pretraining (masked unit prediction)",
}


def find_results_row(source: ExportSource, results: str | Path | None = None) -> dict[str, Any] | None:
    """The results-grid row of ``source``'s checkpoint (module docstring), or None."""
    ckpt = source.path.resolve()
    candidates = [Path(results)] if results else [p / "results.json" for p in ckpt.parents[:3]]
    for path in candidates:
        if not path.is_file():
            continue
        try:
            rows = json.loads(path.read_text()).get("rows", [])
        except (OSError, ValueError):
            continue
        for row in rows:
            if not row.get("ckpt"):
                continue
            theirs = path.parent / row["ckpt"]  # relative to the grid's folder (an absolute path stays as it is)
            if theirs.resolve() == ckpt or theirs.parent.name == ckpt.parent.name:
                return row
    return None


def _fmt(stat: Any) -> str:
    if not isinstance(stat, dict) or not stat.get("n"):
        return "-"
    return f"{stat['mean']:.1f}" + (f" ± {stat['std']:.1f} ({stat['n']} seeds)" if stat["n"] > 1 else "")


def model_card(source: ExportSource, row: dict[str, Any] | None = None, fmt: str = "transformers") -> str:
    """Markdown model card of ``source`` (``fmt``: what the folder holds, for the usage section)."""
    cfg = source.encoder.cfg
    teacher = source.config.get("teacher") or {}
    data = source.config.get("data") or {}
    method = METHODS.get(source.task, source.task)
    loss = source.config.get("loss") or {}
    if loss.get("kind") and source.task != "dicehubert":
        method += f", {loss['kind']} loss"
    disc = loss.get("disc_weight")
    if disc:
        method += f", with the discriminative loss (weight {disc})"
    lines = [
        "---", "library_name: transformers", "tags: [audio, speech, self-supervised, distillation, hubert]", "---", "",
        f"# {source.path.parent.name or 'student'}: a distilled speech encoder", "",
        f"Exported by s3prl-colld from `{source.path.name}`.", "",
        "| | |", "|---|---|",
        f"| method | {method} (`run_pretrain.py -u {source.task}`) |",
        f"| teacher | `{teacher.get('name', '-')}`" + (f" (`{teacher['ckpt']}`)" if teacher.get("ckpt") else "") + " |",
        f"| training steps | {source.step if source.step is not None else '-'} |",
        f"| data | `{data.get('root', '-')}` |",
        f"| parameters | {source.num_parameters / 1e6:.2f} M |",
        f"| structure | {cfg.layers} layers x {cfg.dim}, FFN {cfg.ffn_dim}, {cfg.heads} heads, "
        f"{'pre' if cfg.layer_norm_first else 'post'}-norm, {cfg.frontend} front-end |",
        f"| input | 16 kHz mono waveform{', layer-normalised per utterance' if source.normalize_waveform else ''} |",
        f"| hidden states | {cfg.layers + 1} (front-end projection, then every layer), 50 Hz |", "",
    ]
    if row:
        pr = row.get("pr") or {}
        splits = [s for s in pr if s != "dev"]
        lines += ["## Results grid (phone recognition, frozen probe, PER %)", "",
                  "| row | " + " | ".join(["dev", *splits]) + " | params (M) |",
                  "|---|" + "---|" * (len(splits) + 2),
                  f"| {row.get('name')} | " + " | ".join(_fmt(pr.get(s)) for s in ["dev", *splits])
                  + f" | {row.get('params_m', 0):.2f} |", ""]
    if fmt == "transformers":
        lines += ["## Use", "", "```python", "import torch",
                  "from transformers import AutoFeatureExtractor, HubertModel", "",
                  "fe = AutoFeatureExtractor.from_pretrained(FOLDER)",
                  "model = HubertModel.from_pretrained(FOLDER).eval()",
                  "x = fe([wav1, wav2], sampling_rate=16000, padding=True, return_tensors='pt')",
                  "hidden = model(**x, output_hidden_states=True).hidden_states",
                  "```", "", "Pass the attention mask for padded batches (the feature extractor returns it).", ""]
        if source.padding == "fairseq":
            lines += ["In padded batches transformers counts an utterance's frames by the CNN's output length; "
                      "s3prl's HuBERT expert keeps a frame while any sample of its block is speech, so its "
                      "features of a padded utterance can differ (unpadded input: the same).", ""]
    return "\n".join(lines)
