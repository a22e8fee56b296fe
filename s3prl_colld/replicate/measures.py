"""What the grid measures besides the probes: parameters and CPU real-time factor; mean and spread over seeds."""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Iterable

from s3prl_colld.constants import SAMPLE_RATE


def mean_std(values: Iterable[float]) -> dict[str, float]:
    """``{"mean", "std", "n"}`` (sample standard deviation; 0 for one value)."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "n": len(vals)}


def measure_upstream(upstream: str, ckpt: Path | None, wavs: list[Path], passes: int = 3) -> dict[str, float]:
    """Parameters (M) and CPU real-time factor (compute seconds / audio seconds, one utterance at a time).

    The RTF is that of the fastest of ``passes`` passes over ``wavs`` (after one warm-up pass), so that a
    moment of contention on the machine does not decide it.
    """
    import soundfile as sf
    import torch

    from s3prl.nn import S3PRLUpstream

    from s3prl_colld.s3prl_bridge.hub import register

    register()  # our names in s3prl.hub

    model = S3PRLUpstream(upstream, path_or_url=str(ckpt) if ckpt else None).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    audio = [torch.from_numpy(sf.read(str(w), dtype="float32")[0])[None] for w in wavs]
    times = []
    with torch.inference_mode():
        for _ in range(passes + 1):  # the first pass warms up
            start = time.perf_counter()
            for wav in audio:
                model(wav, torch.tensor([wav.shape[1]]))
            times.append(time.perf_counter() - start)
    total = sum(a.numel() for a in audio) / SAMPLE_RATE
    return {"params_m": params, "rtf": min(times[1:]) / total}
