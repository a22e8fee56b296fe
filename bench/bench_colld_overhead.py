"""Time overhead of a CoLLD training step over an L1 + cosine (layer-to-layer) step, and where it goes.

Two ``DistillTask`` instances with the same student (2 x 192, CNN 128-ch as
the teacher's), the same uniform layer map (student layer i -> teacher layer
2i), the same teacher checkpoint (tiny HuBERT 4 x 192, written to a temp
file) and the same synthetic batch:

- ``l2l_distiller`` settings: no masking, ``loss.kind=regression`` (L1 + cosine);
- ``colld_distiller`` settings: span masking (prob 0.8, length 10) of the
  student input, ``loss.kind=contrastive`` (InfoNCE, K=100 negatives from
  the same utterance, tau 0.1) on the masked frames.

A step is what ``Trainer.train_step`` does at fp32: ``task(batch)``, backward,
clip, AdamW step, zero_grad. The two steps run interleaved.

The breakdown times the pieces separately on the same tensors:
teacher forward; student (+ heads) forward + backward with a fixed output
gradient (no loss); each loss function alone, forward + backward to its
(leaf) predictions, on the real teacher targets and masks.

    python bench/bench_colld_overhead.py [--quick]
"""

from __future__ import annotations

from pathlib import Path

import _common as C
import torch

def build(kind: str, ckpt: Path, expdir: Path):
    if kind == "colld":
        extra = {"mask": {"prob": 0.8, "length": 10},
                 "loss": {"kind": "contrastive", "num_negatives": 100, "temperature": 0.1, "masked_only": True}}
    else:
        extra = {"mask": {"prob": 0.0}, "loss": {"kind": "regression", "cos_weight": 1.0}}
    task, _params, step = C.distill_task({"heads": {"map": "uniform"}, **extra}, ckpt, expdir)
    return task, step


def breakdown(task, batch: dict, args) -> tuple[dict[str, list[float]], float, float]:
    """Per-piece times of the CoLLD task (same student as the l2l one) on ``batch``."""
    from s3prl_colld.objectives.losses import info_nce, l1_cosine
    from s3prl_colld.objectives.masking import span_mask

    cfg = task.cfg
    wav, lengths = batch["wav"], batch["wav_lengths"]
    targets = task.teacher(wav, lengths)
    mask_fn = lambda v: span_mask(v, cfg.mask.prob, cfg.mask.length)  # noqa: E731
    with torch.no_grad():
        hidden, valid, mask = task.student(wav, lengths, mask_fn=mask_fn)
        T = min(hidden[0].size(1), targets[0].size(1))
        preds = [p.detach() for p in task.heads([h[:, :T] for h in hidden])]
    valid, mask = valid[:, :T], mask[:, :T]
    select = valid & mask
    ys = [targets[j][:, :T] for _, j in task.pairs]
    grads = [torch.randn_like(p) * 1e-3 for p in preds]

    def teacher_fwd():
        task.teacher(wav, lengths)

    def student_fwd_bwd():
        h, _, _ = task.student(wav, lengths, mask_fn=mask_fn)
        out = task.heads([x[:, :T] for x in h])
        torch.autograd.backward(out, grads)
        task.zero_grad(set_to_none=True)

    def run_loss(fn):
        def go():
            leaves = [p.clone().requires_grad_(True) for p in preds]
            total = sum(fn(p, y) for p, y in zip(leaves, ys)) / len(leaves)
            total.backward()
        return go

    nce = run_loss(lambda p, y: info_nce(p, y, valid, select, cfg.loss.num_negatives, cfg.loss.temperature)[0])
    l1c = run_loss(lambda p, y: l1_cosine(p, y, valid, 1.0)[0])
    return C.time_interleaved({"teacher": teacher_fwd, "student": student_fwd_bwd, "info_nce": nce, "l1_cosine": l1c},
                              args.iters, args.warmup), float(select.sum()), float(valid.sum())


def main() -> None:
    args = C.parse_args(__doc__.splitlines()[0], batch=(8, 3.0), quick_batch=(4, 2.0),
                        iters=20, quick_iters=8, warmup=3)
    batch, audio_sec = C.start(args)

    with C.tmpdir() as tmp:
        tmp = Path(tmp)
        ckpt = C.write_tiny_teacher(tmp)
        l2l, l2l_step = build("l2l", ckpt, tmp / "l2l")
        colld, colld_step = build("colld", ckpt, tmp / "colld")
        torch.manual_seed(args.seed)
        times = C.time_interleaved({"l2l": lambda: l2l_step(batch), "colld": lambda: colld_step(batch)},
                                   args.iters, args.warmup)
        parts, n_query, n_valid = breakdown(colld, batch, args)

    m = {k: C.med(v) for k, v in times.items()}
    rows = [
        ["l2l_distiller step (L1 + cosine, no mask)", f"{m['l2l'] * 1e3:.0f}", C.spread(times["l2l"]),
         f"{audio_sec / m['l2l']:.1f}"],
        ["colld_distiller step (mask 0.8/10, InfoNCE K=100, tau 0.1)", f"{m['colld'] * 1e3:.0f}",
         C.spread(times["colld"]), f"{audio_sec / m['colld']:.1f}"],
    ]
    print("\n### CoLLD vs L1 + cosine training step (tiny HuBERT teacher 4 x 192, student 2 x 192, uniform map)\n")
    print(C.machine_line(args))
    print()
    print(C.table(["step", "median (ms)", "min-max (ms)", "audio-sec / s"], rows))

    p = {k: C.med(v) for k, v in parts.items()}
    print(f"\nBreakdown (CoLLD task; {len(colld.pairs)} heads {colld.pairs}; {n_query:.0f} masked query frames "
          f"of {n_valid:.0f} valid; loss times are forward + backward to the predictions, summed over heads):\n")
    prow = [
        ["teacher forward (inference)", f"{p['teacher'] * 1e3:.1f}", C.spread(parts["teacher"])],
        ["student + heads forward + backward (no loss)", f"{p['student'] * 1e3:.1f}", C.spread(parts["student"])],
        ["info_nce alone (fwd + bwd)", f"{p['info_nce'] * 1e3:.1f}", C.spread(parts["info_nce"])],
        ["l1_cosine alone (fwd + bwd, all valid frames)", f"{p['l1_cosine'] * 1e3:.1f}", C.spread(parts["l1_cosine"])],
    ]
    print(C.table(["piece", "median (ms)", "min-max (ms)"], prow))
    overhead = (m["colld"] / m["l2l"] - 1) * 100
    print(f"\ninfo_nce = {p['info_nce'] / p['student'] * 100:.1f}% of the student forward/backward; "
          f"l1_cosine = {p['l1_cosine'] / p['student'] * 100:.1f}%")
    print(f"ratio colld/l2l step time = {m['colld'] / m['l2l']:.3f}: CoLLD overhead = {overhead:+.1f}% "
          f"(issue target <= 15%)")


if __name__ == "__main__":
    main()
