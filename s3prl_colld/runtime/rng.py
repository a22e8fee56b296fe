"""Seeding, and the global RNG states as values that ``torch.load(weights_only=True)`` reads back."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def rng_state(device: torch.device) -> dict[str, Any]:
    """The global RNG states as tensors and plain values (``torch.load(weights_only=True)``-safe).

    ``python``: ``[version, [625 ints], gauss_next]``; ``numpy``: the MT19937
    key as an int64 tensor ``[624]`` plus plain values; ``torch``: the CPU
    state ``[5056] uint8``; ``cuda``: ``[state of this rank's device]`` or ``[]``.
    """
    version, internal, gauss = random.getstate()
    kind, key, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": {"kind": str(kind), "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state(device)] if device.type == "cuda" else [],
    }


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Inverse of ``rng_state`` (CUDA states are skipped on CPU)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npy = state["numpy"]
    if isinstance(npy, (list, tuple)):  # checkpoints of the first trainer version
        npy = dict(zip(("kind", "key", "pos", "has_gauss", "cached_gaussian"), npy))
    np.random.set_state((npy["kind"], npy["key"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"][0], device)


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's (CPU and CUDA) global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
