"""Inference throughput and size of a student with the Fbank front-end vs the waveform CNN, same encoder.

The DistilHuBERT-size student (``StudentConfig()`` defaults: 2 x 768, FFN
3072, 12 heads) with ``frontend="cnn"`` (HuBERT's 512-channel CNN,
``CNNConfig()``) vs ``frontend="fbank"`` (80 log-mels -> 2 convs -> 512,
``FbankConfig()``). Forward only, eval mode, ``torch.inference_mode``, the
two models interleaved on the same synthetic batch; the table also times
the front-ends alone (a shorter interleaved loop: max(3, iters // 2)).

    python bench/bench_fbank_frontend.py [--quick]
"""

from __future__ import annotations

import _common as C
import torch


def main() -> None:
    args = C.parse_args(__doc__.splitlines()[0], batch=(8, 10.0), quick_batch=(4, 4.0),
                        iters=5, quick_iters=6, warmup=1)
    from s3prl_colld.models.student import StudentConfig, StudentEncoder

    C.warn_if_busy()
    wav, lengths = C.synthetic_batch(args.batch_size, args.seconds, args.seed)
    audio_sec = float(lengths.sum()) / C.SAMPLE_RATE
    models = {}
    for name in ("cnn", "fbank"):
        torch.manual_seed(0)
        models[name] = StudentEncoder(StudentConfig(frontend=name)).eval()

    def fwd(model):
        def go():
            with torch.inference_mode():
                return model(wav, lengths)
        return go

    def front(model):
        def go():
            with torch.inference_mode():
                return model.frontend(wav, lengths)
        return go

    with torch.inference_mode():
        frames = {n: m(wav, lengths)[0][-1].shape[1] for n, m in models.items()}
    times = C.time_interleaved({"cnn": fwd(models["cnn"]), "fbank": fwd(models["fbank"])}, args.iters, args.warmup)
    front_iters = max(3, args.iters // 2)
    times.update(C.time_interleaved({"cnn_front": front(models["cnn"]), "fbank_front": front(models["fbank"])},
                                    front_iters, 1))
    m = {k: C.med(v) for k, v in times.items()}
    params = {n: C.count_params(mod, trainable_only=False) for n, mod in models.items()}
    fparams = {n: C.count_params(mod.frontend, trainable_only=False) for n, mod in models.items()}

    rows = []
    for n, label in (("cnn", "CNN (HuBERT 512-ch, 7 convs)"), ("fbank", "Fbank (80 mels -> 2 convs -> 512)")):
        rows.append([label, f"{params[n] / 1e6:.2f} M", f"{fparams[n] / 1e6:.3f} M", frames[n],
                     f"{m[n] * 1e3:.0f}", C.spread(times[n]), f"{m[n + '_front'] * 1e3:.0f}",
                     f"{audio_sec / m[n]:.1f}"])
    print("\n### Student inference, Fbank vs CNN front-end (encoder 2 x 768, FFN 3072, 12 heads)\n")
    print(C.machine_line(args))
    print()
    print(C.table(["front-end", "params (all)", "front-end params", "frames", "median forward (ms)",
                   "min-max (ms)", f"front-end alone (ms, median of {front_iters})", "audio-sec / s"], rows))
    speed = m["cnn"] / m["fbank"]
    reduction = (1 - params["fbank"] / params["cnn"]) * 100
    print(f"\nratio fbank/cnn inference speed = {speed:.2f}x (issue target >= 2x); "
          f"front-end alone {m['cnn_front'] / m['fbank_front']:.2f}x")
    print(f"parameter reduction = {reduction:.1f}% fewer "
          f"({params['cnn'] / 1e6:.2f} M -> {params['fbank'] / 1e6:.2f} M; "
          f"issue target >= 15%)")


if __name__ == "__main__":
    main()
