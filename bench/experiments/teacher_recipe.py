"""The teacher-recipe experiment of issue 8 section 2 (not a speed benchmark; `make bench` does not run it).

On a small corpus v2 (``s3prl_colld.data.synth --utterances N``: half of the
training utterances noisy with their clean copies kept, ``test_noisy`` = ``test``
made noisy), it trains

- ``it1_noisy``: HuBERT iteration 1 with MFCC units of the (noisy) audio the model hears;
- ``it1_denoise``: the same, units from the clean copies (denoising masked prediction);
- ``it2``: iteration 2 from ``it1_denoise``: units = k-means of one of its layers
  (the transformer layer with the largest weight in ``it1_denoise``'s PR probe), from the clean copies;

and probes each (SUPERB PR, dev-best checkpoint) on ``test`` and ``test_noisy``, with fbank as the baseline.
Every stage is reused when its output exists::

    nice -n 5 python bench/experiments/teacher_recipe.py --out result/teacher_recipe

Its table (docs/results_history.md, "Teacher recipe experiment") was
measured at commit eee4dad, before corpus v2: on an espeak-only corpus made
noisy by that commit's ``tests/noisy_fixture.py`` (babble of 4 talkers +
white noise at SNR 0-15 dB).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from s3prl_colld.checkpoint import latest_checkpoint  # noqa: E402
from s3prl_colld.replicate import SCALES, Grid, slug  # noqa: E402


def cpu_seconds() -> float:
    """CPU time of this process and its finished children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def pretrain(expdir: Path, task: str, overrides: str, runner_yaml: str | None = None) -> Path:
    from s3prl_colld.pretrain.cli import main

    if (expdir / "DONE").exists():
        ckpt = latest_checkpoint(expdir)
        assert ckpt is not None
        return ckpt
    args = ["-u", task, "-p", str(expdir), "-o", overrides]
    if runner_yaml:
        args += ["-c", runner_yaml]
    last = latest_checkpoint(expdir)
    if last is not None:
        args += ["-e", str(last)]
    assert main(args) == 0
    (expdir / "DONE").touch()
    ckpt = latest_checkpoint(expdir)
    assert ckpt is not None
    return ckpt


def probe_both(name: str, upstream: str, ckpt: Path | None, corpus: Path, out: Path, overrides: str) -> dict[str, Any]:
    """PR probe (train on train, best on dev), then test on ``test`` and ``test_noisy`` (reused when finished)."""
    res = Grid(out, SCALES["tiny"], 0).probe("pr", name, upstream, ckpt, 0, overrides, ["test", "test_noisy"],
                                             corpus=corpus)
    assert res is not None
    test = json.loads((out / "probes" / "pr" / f"{slug(name)}-p0" / "test-results.json").read_text())
    return {"dev_per": res["dev"], "test_per": res["test"], "test_noisy_per": res["test_noisy"],
            "layer_weights": test["layer_weights"]}


def last_acc(expdir: Path) -> float:
    log = expdir / "log.jsonl"
    rows = [json.loads(x) for x in log.read_text().splitlines() if x.strip()] if log.is_file() else []
    return rows[-1].get("acc_m", float("nan")) if rows else float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "result" / "teacher_recipe")
    p.add_argument("--utterances", type=int, default=600)
    p.add_argument("--steps", type=int, default=200, help="training steps of each iteration")
    p.add_argument("--k2", type=int, default=100, help="k of iteration 2")
    p.add_argument("--probe-overrides", default="")
    args = p.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.time(), cpu_seconds()
    corpus = out / "corpus"
    if not (corpus / "manifest.json").is_file():
        from s3prl_colld.data import synth

        assert synth.main(["--lang", "en", "--out", str(corpus), "--utterances", str(args.utterances), "--seed", "0"]) == 0
    common = (f"config.data.root={corpus},,config.runner.total_steps={args.steps},,config.runner.save_step={args.steps},,"
              f"config.runner.num_workers=1,,config.runner.progress_bar=false,,config.units.cache_dir={out / 'units'}")
    rows: dict[str, dict[str, Any]] = {}
    times: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        c = cpu_seconds()
        value = fn()
        times[name] = cpu_seconds() - c
        print(f"[recipe] {name}: {times[name]:.0f} CPU s", flush=True)
        return value

    it1n = timed("it1_noisy", lambda: pretrain(out / "it1_noisy", "hubert_tiny", common + ",,config.units.denoise=false"))
    it1d = timed("it1_denoise", lambda: pretrain(out / "it1_denoise", "hubert_tiny", common))
    po = args.probe_overrides
    rows["fbank"] = timed("probe fbank", lambda: probe_both("fbank", "fbank", None, corpus, out, po))
    rows["it1_noisy"] = timed("probe it1_noisy", lambda: probe_both("it1_noisy", "hubert_local", it1n, corpus, out, po))
    rows["it1_denoise"] = timed("probe it1_denoise",
                                lambda: probe_both("it1_denoise", "hubert_local", it1d, corpus, out, po))
    weights = rows["it1_denoise"]["layer_weights"]
    layer = 1 + max(range(len(weights) - 1), key=lambda i: weights[i + 1])  # best transformer layer (not the CNN)
    it2 = timed("it2", lambda: pretrain(out / "it2", "hubert_tiny",
                                         common + f",,config.teacher.ckpt={it1d},,config.units.layer={layer},,"
                                         f"config.units.n_clusters={args.k2}",
                                         str(REPO / "configs/pretrain/hubert_tiny/iter2.yaml")))
    rows["it2"] = timed("probe it2", lambda: probe_both("it2", "hubert_local", it2, corpus, out, po))
    for name, d in (("it1_noisy", out / "it1_noisy"), ("it1_denoise", out / "it1_denoise"), ("it2", out / "it2")):
        rows[name]["acc_m"] = last_acc(d)
    fb = rows["fbank"]
    lines = [f"corpus v2: {args.utterances} utterances, half of train noisy; {args.steps} steps per iteration; "
             f"iteration 2: layer {layer} of it1_denoise (probe weights {[round(w, 2) for w in weights]}), k={args.k2}",
             "", "| features | masked acc | dev PER | test PER | test_noisy PER | x fbank test | x fbank test_noisy |",
             "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        acc = f"{100 * r['acc_m']:.0f}%" if "acc_m" in r else "-"
        lines.append(f"| {name} | {acc} | {r['dev_per']:.1f} | {r['test_per']:.1f} | {r['test_noisy_per']:.1f} | "
                     f"{r['test_per'] / fb['test_per']:.2f} | {r['test_noisy_per'] / fb['test_noisy_per']:.2f} |")
    lines += ["", "CPU seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()),
              f"total: {cpu_seconds() - c0:.0f} CPU s, {time.time() - t0:.0f} s wall"]
    text = "\n".join(lines)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps({"rows": rows, "layer": layer, "cpu_seconds": times}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
