"""What s3prl 0.4.18 needs from newer torch / torchaudio: applied by ``s3prl_colld.hook`` before s3prl is imported.

``allow_s3prl_runner_checkpoints()``: s3prl's own runner stores its command line
(an ``argparse.Namespace``) in every ``states-STEP.ckpt`` / ``dev-best.ckpt``
and reads them back with ``torch.load`` (``weights_only`` by default since
torch 2.6), which refuses that class: ``run_downstream.py -m evaluate -e`` and
resuming failed unless ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` turned the check
off for every load. It adds ``argparse.Namespace``, and only it, to torch's
safe globals: unpickling it builds an empty object and sets its attributes from
values the weights-only unpickler built, so it runs no code.

``patch_torchaudio()``: ``import s3prl.hub`` needs what torchaudio >= 2.9 removed.
s3prl calls ``torchaudio.set_audio_backend`` and imports ``torchaudio.sox_effects``
while its hub is imported. ``patch_torchaudio()`` adds a no-op
``set_audio_backend`` and a ``sox_effects`` module whose functions raise a clear
error when called (no s3prl upstream we use calls them), and only when they are
missing: on torchaudio 2.8 it changes nothing. ``s3prl_colld.hook`` applies it
before ``s3prl`` is imported.
"""

from __future__ import annotations

import argparse
import sys
import types
from typing import Any, Callable


def _removed(name: str) -> Callable[..., Any]:
    if name.startswith("_"):  # __path__, __file__, ...: a plain module has none
        raise AttributeError(name)

    def stub(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"torchaudio.sox_effects.{name} was removed in torchaudio 2.9; s3prl-colld only "
                           "stubs the module so that s3prl.hub imports: use torchaudio < 2.9 for sox effects")

    return stub


S3PRL_RUNNER_GLOBALS = (argparse.Namespace,)  # what s3prl's runner checkpoints hold besides tensors and plain values


def allow_s3prl_runner_checkpoints() -> list[str]:
    """Let ``torch.load(weights_only=True)`` read s3prl's runner checkpoints (see the module docstring); returns
    the names it allowed."""
    import torch

    torch.serialization.add_safe_globals(list(S3PRL_RUNNER_GLOBALS))
    return [f"{c.__module__}.{c.__qualname__}" for c in S3PRL_RUNNER_GLOBALS]


def patch_torchaudio() -> list[str]:
    """Add what is missing (see the module docstring); returns the names it added (empty when none)."""
    try:
        import torchaudio
    except ImportError:
        return []
    added = []
    if not hasattr(torchaudio, "set_audio_backend"):
        torchaudio.set_audio_backend = lambda backend=None: None  # the dispatcher picks backends itself
        added.append("set_audio_backend")
    try:
        import torchaudio.sox_effects  # noqa: F401
    except (ImportError, OSError):
        module = types.ModuleType("torchaudio.sox_effects", "stub of the module removed in torchaudio 2.9")
        module.__getattr__ = lambda name: _removed(name)  # type: ignore[method-assign]  # PEP 562
        sys.modules["torchaudio.sox_effects"] = module
        torchaudio.sox_effects = module
        added.append("sox_effects")
    return added
