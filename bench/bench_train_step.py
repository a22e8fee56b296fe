"""Training-step throughput: our ``distilhubert`` task vs s3prl's own ``DistillerModel`` (DistilHuBERT L1 + cosine).

Both sides train the same student size (CNN 128-ch as the teacher's, 2 x 192,
FFN 768, 4 heads, prediction heads for teacher layers [2, 4] from the last
student layer) against the same frozen teacher module (a tiny HuBERT,
``hubert_local``, 4 x 192, written to a temp file), on the same synthetic
batch, with the same optimizer (AdamW, clipping) and thread count.

- ours: ``DistillTask`` built from ``DistillConfig`` (heads.map=last,
  targets=[2, 4], loss.kind=regression); ``task(batch)`` -> loss, backward,
  clip, AdamW step, zero_grad: what ``Trainer.train_step`` does at fp32.
- s3prl: ``DistillerModel(DistillerConfig)`` with s3prl's DistilHuBERT config
  (``task_emb_type`` / ``out_layer_type`` ``expand-last``, ``pred_layer_id``
  [2, 4], ``feature_grad_mult`` 0.1, ``loss_type`` l1, ``cosine_loss`` 1),
  driven as s3prl's ``pretrain/distiller`` expert does: student forward,
  teacher under ``torch.no_grad`` in fp32, ``L1(pred, target).mean() +
  mean(-logsigmoid(cos(pred, target)))`` over B x N x T, backward, clip,
  AdamW step, zero_grad.

The contenders run interleaved; the reported number is audio seconds per
wall-clock second from the median step time. ``--profile`` adds a
torch.profiler op table of one step of each and a per-phase breakdown
(teacher, student CNN, student encoder, heads, loss, backward, optimizer;
timed with forward hooks registered by this script). ``--precision bf16``
runs both student forwards under CPU bf16 autocast (s3prl's expert keeps its
teacher in fp32; ours keeps its teacher out of autocast too, at its precision);
``--teacher-precision bf16`` sets our ``config.teacher.precision``.

    python bench/bench_train_step.py [--quick] [--heads mlp|linear] [--profile]
                                     [--precision fp32|bf16] [--teacher-precision fp32|bf16]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
from pathlib import Path

import _common as C
import torch
import torch.nn.functional as F

TARGETS = [2, 4]


def _extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("--heads", choices=("mlp", "linear"), default="mlp",
                   help="our head kind: mlp (Linear-GELU-Linear, the same parameters as s3prl's expand-last "
                        "output layer; default) or linear (our shipped distilhubert config)")
    p.add_argument("--profile", action="store_true",
                   help="also print a phase breakdown and a torch.profiler op table of both steps")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="student forward under CPU autocast (both sides; the s3prl teacher stays fp32 as in its "
                        "expert, ours follows --teacher-precision)")
    p.add_argument("--teacher-precision", choices=("fp32", "bf16"), default="fp32",
                   help="our config.teacher.precision (s3prl's expert always runs the teacher in fp32)")
    p.add_argument("--kernels", choices=("fast", "reference"), default="fast",
                   help="our runner.fast_kernels (default fast: SDPA, direct teacher call, masks only when padded)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="our runner.cnn_channels_last (both CNNs; default on, as the trainer)")
    p.add_argument("--compile", action="store_true",
                   help="our runner.compile (torch.compile of the student and the teacher's CNN; inductor on CPU)")
    p.add_argument("--s3prl-precision", choices=("fp32", "bf16"), default=None,
                   help="the s3prl side's autocast (default: --precision); the issue's baseline is s3prl fp32")
    p.add_argument("--with-reference", action="store_true",
                   help="also time ours with the reference kernels (a third contender, interleaved)")
    p.add_argument("--share-frontend", action="store_true",
                   help="ours with config.init.share_teacher_frontend=true: its CNN is frozen and the teacher's CNN "
                        "output is reused (a different training configuration: s3prl's CNN stays trainable)")


# ---------------------------------------------------------------- ours
def build_ours(teacher_ckpt: Path, expdir: Path, heads_kind: str, precision: str = "fp32",
               teacher_precision: str = "fp32", share_frontend: bool = False, fast: bool = True,
               channels_last: bool = False, compile: bool = False):
    task, params, step = C.distill_task({"teacher": {"precision": teacher_precision},
                                         "heads": {"map": "last", "targets": TARGETS, "kind": heads_kind},
                                         "loss": {"kind": "regression", "cos_weight": 1.0},
                                         "init": {"share_teacher_frontend": share_frontend},
                                         "runner": {"fast_kernels": fast, "cnn_channels_last": channels_last}},
                                        teacher_ckpt, expdir, precision)
    if compile:
        task.compile_modules()
    return task, params, step


# ---------------------------------------------------------------- s3prl
def s3prl_distiller_config():
    from s3prl.upstream.distiller.model import DistillerConfig

    return DistillerConfig({
        # s3prl/pretrain/distiller/config_model.yaml, resized to the tiny teacher
        "extractor_mode": "default",
        "extractor_conv_feature_layers": "[(128,10,5)] + [(128,3,2)] * 4 + [(128,2,2)] * 2",
        "extractor_dropout": 0.0,
        "feature_grad_mult": 0.1,
        "conv_pos": C.STUDENT["conv_pos"],
        "conv_pos_groups": C.STUDENT["conv_pos_groups"],
        "encoder_layers": C.STUDENT["layers"],
        "encoder_embed_dim": C.STUDENT["dim"],
        "encoder_ffn_embed_dim": C.STUDENT["ffn_dim"],
        "encoder_attention_heads": C.STUDENT["heads"],
        "activation_fn": "gelu",
        "layer_norm_first": False,
        "attention_type": "original",
        "dropout": 0.1,
        "attention_dropout": 0.1,
        "activation_dropout": 0.1,
        "encoder_layerdrop": 0.0,
        "final_dim": 192,  # the teacher's hidden size
        "out_layer_type": "expand-last",
        "n_tasks": len(TARGETS),
        "task_emb_type": "expand-last",
        "loss_type": "l1",
        "feat_pen_loss": 0.0,
        "cosine_loss": 1.0,
        "pred_layer_id": TARGETS,
        "init_teacher_conv_layers": True,
        "init_teacher_encoder_layers": False,
    })


def build_s3prl(teacher_upstream: torch.nn.Module, precision: str = "fp32"):
    """s3prl's DistillerModel + a DistilHuBERT step written as s3prl's distiller pretrain expert does it."""
    from s3prl.upstream.distiller.model import DistillerModel

    from s3prl_colld.runtime.precision import autocast

    config = s3prl_distiller_config()
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):  # DistillerModel prints its set-up
        distiller = DistillerModel(config).train()
    hubert = teacher_upstream.upstream.model  # init_teacher_conv_layers, as the expert does
    distiller.feature_extractor.load_state_dict(hubert.feature_extractor.state_dict())
    if distiller.post_extract_proj is not None:
        distiller.post_extract_proj.load_state_dict(hubert.post_extract_proj.state_dict())
    params = [p for p in distiller.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=C.LR, betas=C.BETAS, eps=C.EPS, weight_decay=0.0)
    loss_func = torch.nn.L1Loss(reduction="none")

    def step(batch: dict, rec: "Phases | None" = None) -> torch.Tensor:
        wav, lengths = batch["wav"], batch["wav_lengths"]
        pad_mask = (torch.arange(wav.size(1))[None, :] < lengths[:, None]).to(wav.dtype)  # 1 = valid sample
        with autocast(precision, torch.device("cpu")):  # s3prl's runner: the expert's forward under AMP when fp16 is on
            feat, feat_final, pred, _ = distiller(wav, pad_mask)  # pred: B x N x T x D
            t0 = time.perf_counter()
            with torch.no_grad(), torch.autocast(device_type="cpu", enabled=False):  # the expert's fp32 teacher
                hs, _ = teacher_upstream(wav, lengths)
                target = torch.stack([hs[i] for i in distiller.pred_layer_id], dim=1)  # B x N x T' x D
            rec and rec.add("teacher", time.perf_counter() - t0)
            t = min(pred.size(2), target.size(2))  # s3prl's own hub teacher yields the student's T
            pred, target = pred[:, :, :t], target[:, :, :t]
            rec_loss = loss_func(pred, target).mean()
            sim_loss = -F.logsigmoid(F.cosine_similarity(pred, target, dim=-1)).mean()
            feat_pen = feat.float().pow(2).mean()
            loss = rec_loss + feat_pen * config.feat_pen_loss + sim_loss * config.cosine_loss
        rec and rec.mark("forward")
        loss.backward()
        rec and rec.mark("backward")
        torch.nn.utils.clip_grad_norm_(params, 5.0)  # s3prl's distiller runner config
        opt.step()
        opt.zero_grad(set_to_none=True)
        rec and rec.mark("optimizer")
        return loss.detach()

    return distiller, params, step


class Phases:
    """Wall time per phase of a step: module forwards via hooks (bench-side only), the rest via marks."""

    def __init__(self) -> None:
        self.acc: dict[str, float] = {}
        self.t = 0.0
        self._open: dict[str, float] = {}

    def start(self) -> None:
        self.t = time.perf_counter()

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.acc[name] = self.acc.get(name, 0.0) + now - self.t
        self.t = now

    def add(self, name: str, seconds: float) -> None:
        self.acc[name] = self.acc.get(name, 0.0) + seconds

    def hook(self, module: torch.nn.Module, name: str) -> None:
        if not isinstance(module, torch.nn.Module):  # (object, method name): time calls of that method
            obj, method = module
            orig = getattr(obj, method)

            def timed(*args, **kwargs):
                t = time.perf_counter()
                out = orig(*args, **kwargs)
                self.acc[name] = self.acc.get(name, 0.0) + time.perf_counter() - t
                return out

            setattr(obj, method, timed)
            return

        def pre(*_):
            self._open[name] = time.perf_counter()

        def post(*_):
            self.acc[name] = self.acc.get(name, 0.0) + time.perf_counter() - self._open.pop(name)

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)


def phase_breakdown(contenders: dict, batch: dict, steps: int) -> None:
    """Median over ``steps`` steps of each phase, both contenders interleaved; the modules get hooks for this."""
    import statistics

    runs: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
    recs = {}
    for name, (step, modules) in contenders.items():
        recs[name] = rec = Phases()
        for label, module in modules.items():
            rec.hook(module, label)
    for _ in range(steps):
        for name, (step, _m) in contenders.items():
            rec = recs[name]
            rec.acc = {}
            rec.start()
            step(batch, rec)
            runs[name].append(dict(rec.acc))
    rows = []
    order = ["teacher forward", "student CNN forward", "student encoder forward", "heads forward",
             "loss + glue (rest of forward)", "backward", "clip + AdamW + zero_grad", "total"]
    meds: dict[str, dict[str, float]] = {}
    for name, rs in runs.items():
        per = []
        for a in rs:
            if "student_incl_heads" in a:  # s3prl: DistillerModel.forward contains its output layer
                student = a["student_incl_heads"] - a.get("heads", 0.0)
            else:
                student = a.get("student", 0.0)
            nested = a.get("teacher", 0.0) + student + a.get("heads", 0.0)
            per.append({
                "teacher forward": a.get("teacher", 0.0),
                "student CNN forward": a.get("cnn", 0.0),
                "student encoder forward": student - a.get("cnn", 0.0),
                "heads forward": a.get("heads", 0.0),
                "loss + glue (rest of forward)": a["forward"] - nested,
                "backward": a["backward"],
                "clip + AdamW + zero_grad": a["optimizer"],
                "total": a["forward"] + a["backward"] + a["optimizer"],
            })
        meds[name] = {k: statistics.median(p[k] for p in per) for k in order}
    names = list(contenders)
    for k in order:
        rows.append([k] + [f"{meds[n][k] * 1e3:.1f}" for n in names]
                    + [f"{(meds[names[1]][k] - meds[names[0]][k]) * 1e3:+.1f}"])
    print(f"\n#### Phase breakdown (median of {steps} steps each, ms; forward-hook timing, bench-side only)\n")
    print(C.table(["phase"] + names + [f"{names[1]} - {names[0]}"], rows))


def op_profile(name: str, step, batch: dict) -> None:
    from torch.profiler import ProfilerActivity, profile as tprofile

    with tprofile(activities=[ProfilerActivity.CPU]) as prof:
        step(batch)
    print(f"\n#### torch.profiler, one step of {name} (top 10 ops by self CPU time)\n")
    print("```")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10, max_name_column_width=40))
    print("```")


def main() -> None:
    args = C.parse_args(__doc__.splitlines()[0], batch=(8, 3.0), quick_batch=(4, 2.0),
                        iters=20, quick_iters=8, warmup=3, extra=_extra)
    batch, audio_sec = C.start(args)
    s3prl_precision = args.s3prl_precision or args.precision

    with C.tmpdir() as tmp:
        tmp = Path(tmp)
        ckpt = C.write_tiny_teacher(tmp)
        task, ours_params, ours_step = build_ours(ckpt, tmp / "exp", args.heads, args.precision,
                                                  args.teacher_precision, args.share_frontend,
                                                  args.kernels == "fast", args.channels_last,
                                                  args.compile)
        # the same teacher weights, in s3prl's own module (ours may run its copy with other kernels or dtype)
        s3prl_teacher = C.load_teacher_upstream(ckpt)
        distiller, s3prl_params, s3prl_step = build_s3prl(s3prl_teacher, s3prl_precision)
        fns = {"ours": lambda: ours_step(batch), "s3prl": lambda: s3prl_step(batch)}
        if args.with_reference:
            _, _, ref_step = build_ours(ckpt, tmp / "exp_ref", args.heads, args.precision, args.teacher_precision,
                                        args.share_frontend, fast=False)
            fns["ours_ref"] = lambda: ref_step(batch)
        times = C.time_interleaved(fns, args.iters, args.warmup)
        if args.profile:
            op_profile("ours (DistillTask distilhubert)", ours_step, batch)
            op_profile("s3prl (DistillerModel + expert-style step)", s3prl_step, batch)
            # the teacher module is shared: the s3prl step times its call inline, ours through a hook on Teacher
            phase_breakdown({
                "s3prl": (s3prl_step, {"cnn": distiller.feature_extractor, "student_incl_heads": distiller,
                                       "heads": distiller.output_layer}),
                "ours": (ours_step, {"teacher": (task.teacher, "run"), "cnn": task.student.frontend,
                                     "student": task.student, "heads": task.heads}),
            }, batch, steps=max(3, args.iters // 4))

    amp = "" if args.precision == "fp32" else f", student {args.precision} autocast"
    ours_label = f"ours DistillTask distilhubert (heads={args.heads}, {args.kernels} kernels" + (
        ", channels-last CNNs" if args.channels_last else "") + (", compiled" if args.compile else "") + f"{amp}" + (
        "" if args.teacher_precision == "fp32" else f", teacher {args.teacher_precision}") + (
        ", CNN frozen and shared with the teacher" if args.share_frontend else "") + ")"
    s3prl_label = "s3prl DistillerModel + expert step" + (
        f" (student {s3prl_precision} autocast, teacher fp32)" if s3prl_precision != "fp32" else "")
    rows, tput = [], {}
    contenders = [("s3prl", s3prl_label, s3prl_params), ("ours", ours_label, ours_params)]
    if args.with_reference:
        teacher = "" if args.teacher_precision == "fp32" else f", teacher {args.teacher_precision}"
        contenders.append(("ours_ref", f"ours DistillTask distilhubert (heads={args.heads}, reference kernels{amp}"
                                       f"{teacher})", ours_params))
    for name, label, params in contenders:
        m = C.med(times[name])
        tput[name] = audio_sec / m
        rows.append([label, f"{sum(p.numel() for p in params) / 1e6:.3f} M", f"{m * 1e3:.0f}",
                     C.spread(times[name]), f"{tput[name]:.1f}"])
    print("\n### Training step, DistilHuBERT L1 + cosine (tiny HuBERT teacher 4 x 192, student 2 x 192)\n")
    print(C.machine_line(args))
    print()
    print(C.table(["contender", "trainable params", "median step (ms)", "min-max (ms)", "audio-sec / s"], rows))
    ratio = tput["ours"] / tput["s3prl"]
    print(f"\nratio ours/s3prl throughput = {ratio:.2f}x (issue target >= 1.3x)")
    if args.with_reference:
        print(f"ratio ours/ours_ref throughput = {tput['ours'] / tput['ours_ref']:.2f}x "
              f"(the kernels alone; ours_ref/s3prl = {tput['ours_ref'] / tput['s3prl']:.2f}x)")
    if args.share_frontend:
        print("note: ours trains with a frozen CNN shared with the teacher; s3prl's CNN is trainable "
              "(feature_grad_mult 0.1). Same student size, teacher, batch and crops; different training configuration.")


if __name__ == "__main__":
    main()
