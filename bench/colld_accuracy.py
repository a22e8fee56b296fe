"""Does CoLLD's objective learn at a small budget? InfoNCE accuracy against chance for several settings.

Trains one CoLLD student per setting (the demo's student and budget: 2 x 192, 200 steps, batch 8, K = 100,
τ = 0.1) from a given teacher, then measures on ``dev`` (the same utterances and negatives for every setting):

- ``train acc/chance``: the logged accuracy over the frames the loss reads, mean of the last two log rows
  (steps 161-200), divided by its chance level ``1 / (1 + distinct negatives)``;
- ``dev masked``: accuracy on masked frames of a 0.8 x 10 span-masked input (the masked-prediction task);
- ``dev unmasked``: accuracy on every frame of the unmasked input (what a probe reads), both against the
  targets of the run's own ``teacher.target_norm``, with its chance level.

    OMP_NUM_THREADS=1 nice python bench/colld_accuracy.py --corpus DEMO/corpus_en \\
        --teacher DEMO/teacher_it1/states-400.ckpt --out /tmp/colld_acc [--steps 200] [--only today,mask0]

Each finished setting is kept in ``OUT/results.json`` (re-running skips it); the table is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from s3prl_colld.config import from_dict, safe_load  # noqa: E402
from s3prl_colld.data.audio_dataset import AudioDataset  # noqa: E402
from s3prl_colld.objectives.losses import info_nce  # noqa: E402
from s3prl_colld.objectives.masking import span_mask  # noqa: E402
from s3prl_colld.objectives.targets import normalize_targets  # noqa: E402
from s3prl_colld.pretrain.cli import main as pretrain_main  # noqa: E402
from s3prl_colld.pretrain.tasks.distill import DistillConfig, DistillTask  # noqa: E402

SETTINGS: dict[str, str] = {
    "today (0.8 x 10, masked only)": "",
    "mask 0": ",,config.mask.prob=0.0",
    "mask 0.2 (masked only)": ",,config.mask.prob=0.2",
    "0.8 x 10, loss on all frames": ",,config.loss.masked_only=false",
    "0.8 x 10, target_norm layer": ",,config.teacher.target_norm=layer",
    "0.8 x 10, exclude_neighbours 2": ",,config.loss.exclude_neighbours=2",
    "0.8 x 10, target_norm instance": ",,config.teacher.target_norm=instance",
}
KEYS = {"today": 0, "mask0": 1, "mask0.2": 2, "all": 3, "layer": 4, "exclude2": 5, "instance": 6}


def train(name: str, overrides: str, corpus: Path, teacher: Path, out: Path, steps: int) -> Path:
    run = out / f"run{list(SETTINGS).index(name)}"
    ov = (f"config.data.root={corpus},,config.teacher.ckpt={teacher},,config.runner.total_steps={steps},,"
          f"config.runner.save_step={steps},,config.runner.log_step={max(1, min(20, steps // 2))},,config.runner.num_workers=0,,"
          "config.runner.progress_bar=false,,config.data.batch_size=8" + overrides)
    if not (run / f"states-{steps}.ckpt").is_file():
        assert pretrain_main(["-u", "colld_distiller", "-p", str(run), "-o", ov]) == 0
    return run


@torch.no_grad()
def evaluate(run: Path, steps: int, corpus: Path, utterances: int = 60) -> dict[str, float]:
    """Dev accuracy (masked 0.8 x 10 frames; every unmasked frame) with fixed masks and negatives."""
    cfg = from_dict(DistillConfig, safe_load((run / "config.yaml").read_text()))
    task = DistillTask(cfg, run).eval()
    state = torch.load(run / f"states-{steps}.ckpt", map_location="cpu", weights_only=True)
    task.load_trainable_state_dict(state["model"])
    ds = AudioDataset(corpus, ["dev"], 0.5, 8.0)
    sums = {"masked_acc": 0.0, "masked_chance": 0.0, "masked_n": 0, "all_acc": 0.0, "all_chance": 0.0, "all_n": 0}
    gen = torch.Generator().manual_seed(0)
    for i in range(min(utterances, len(ds))):
        wav = ds[i]["wav"][None]
        lengths = torch.tensor([wav.size(1)])
        targets = task.teacher.run(wav, lengths).hidden
        for masked in (True, False):
            fixed = None
            if masked:
                def mask_fn(v: torch.Tensor) -> torch.Tensor:
                    nonlocal fixed
                    fixed = span_mask(v, 0.8, 10, generator=gen)
                    return fixed
            hidden, valid, mask = task.student(wav, lengths, mask_fn=mask_fn if masked else None)
            T = min([hidden[0].size(1)] + [targets[j].size(1) for _, j in task.pairs])
            valid = valid[:, :T]
            query = valid & mask[:, :T] if masked else valid
            preds = task.heads([h[:, :T] for h in hidden])
            n = int(query.sum())
            for (_, j), pred in zip(task.pairs, preds):
                y = normalize_targets(targets[j][:, :T], valid, cfg.teacher.target_norm)
                _, s = info_nce(pred, y, valid, query, 100, cfg.loss.temperature, gen)
                key = "masked" if masked else "all"
                sums[f"{key}_acc"] += float(s["acc"]) * n / len(task.pairs)
                sums[f"{key}_chance"] += float(s["chance"]) * n / len(task.pairs)
            sums[f"{'masked' if masked else 'all'}_n"] += n
    return {k: sums[f"{p}_{q}"] / sums[f"{p}_n"] for p in ("masked", "all") for q in ("acc", "chance")
            for k in [f"{p}_{q}"]}


def train_stats(run: Path) -> dict[str, float]:
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if x.strip()]
    last = rows[-2:]
    pairs = sorted(k[4:] for k in last[-1] if k.startswith("acc_"))
    acc = sum(r[f"acc_{p}"] for r in last for p in pairs) / (len(last) * len(pairs))
    chance = sum(r[f"chance_{p}"] for r in last for p in pairs) / (len(last) * len(pairs))
    first = rows[0]
    ratio0 = sum(first[f"acc_{p}"] / first[f"chance_{p}"] for p in pairs) / len(pairs)
    nce = sum(r[f"loss_{p}"] for r in last for p in pairs) / (len(last) * len(pairs))
    return {"train_acc": acc, "train_chance": chance, "first_ratio": ratio0, "train_infonce": nce,
            "mask_frac": last[-1].get("mask_frac", 0.0)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--teacher", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--only", default="", help=f"comma-separated subset of {', '.join(KEYS)}")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    names = list(SETTINGS)
    if args.only:
        names = [names[KEYS[k]] for k in args.only.split(",")]
    for name in names:
        if name in results:
            continue
        t0 = time.time()
        run = train(name, SETTINGS[name], args.corpus, args.teacher, args.out, args.steps)
        results[name] = {**train_stats(run), **evaluate(run, args.steps, args.corpus), "seconds": time.time() - t0}
        path.write_text(json.dumps(results, indent=1))
        print(f"[colld_accuracy] {name}: {results[name]}", flush=True)
    print(f"\nCoLLD InfoNCE accuracy vs chance, {args.steps} steps, K = 100 (ln(K + 1) = {math.log(101):.2f})\n")
    print("| setting | masked frames | train InfoNCE | train acc / chance | dev masked acc / chance | "
          "dev unmasked acc / chance |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['mask_frac']:.2f} | {r['train_infonce']:.2f} | {r['train_acc']:.3f} / "
              f"{r['train_chance']:.3f} ({r['train_acc'] / r['train_chance']:.1f}x) | {r['masked_acc']:.3f} / "
              f"{r['masked_chance']:.3f} ({r['masked_acc'] / r['masked_chance']:.1f}x) | {r['all_acc']:.3f} / "
              f"{r['all_chance']:.3f} ({r['all_acc'] / r['all_chance']:.1f}x) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
