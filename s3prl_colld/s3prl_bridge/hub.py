"""Our checkpoints as ``s3prl.hub`` names: a static table, so registering them imports nothing of ours.

Every pretrain task whose checkpoints an ``s3prl.hub`` name loads declares
those names (``@register(name, upstreams=...)``); ``STUDENT_NAMES`` and
``HUBERT_NAMES`` below repeat them by task, so that ``import s3prl.hub`` can add
them without importing the tasks (torch models, sklearn, scipy):
``tests/test_layering.py`` checks the table against the task registry.

- ``STUDENT_NAMES``: tasks that export a ``student`` (today ``colld_local`` /
  ``colld_small`` (CoLLD), ``distilhubert_colld_local`` and ``l2l_local``). Each
  entry takes s3prl's hubconf signature ``(ckpt=None, model_config=None,
  refresh=False, **kw)`` and loads ``s3prl_bridge.expert.UpstreamExpert``.
- ``HUBERT_NAMES``: tasks whose checkpoints are s3prl HuBERT checkpoints
  (``hubert_checkpoint = True``: the keys s3prl's ``hubert_local`` reads); their
  entries load s3prl's own HuBERT expert: ``dicehubert_local`` (``-u dicehubert``);
  ``hubert_local`` itself is s3prl's. ``hubert_fbank_local`` (``-u hubert_tiny`` with
  ``config.model.frontend=fbank``) loads ``s3prl_bridge.fbank_hubert.UpstreamExpert``,
  s3prl's HuBERT expert around a model whose CNN is an Fbank front-end.

``register()`` runs by itself once ``s3prl.hub`` is imported (``s3prl_colld.hook``,
started by the package's ``.pth`` file or by ``import s3prl_colld``), so s3prl's
own runner finds the names with no import of ours; ``import s3prl_colld.hub`` does it too.

Every entry runs ``checkpoint.check_trusted`` on its file first (it must load with
``torch.load(weights_only=True)``, whatever ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` says),
unless ``checkpoint.trust_checkpoints(True)`` (``--trust-checkpoint``) was called.
This module imports only the standard library at import time.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Callable

# pretrain task -> the s3prl.hub names of its checkpoints (mirrors the tasks' @register(upstreams=...))
STUDENT_NAMES: dict[str, tuple[str, ...]] = {
    "distilhubert": ("distilhubert_colld_local",),
    "l2l_distiller": ("l2l_local",),
    "colld_distiller": ("colld_local", "colld_small"),
}
HUBERT_NAMES: dict[str, tuple[str, ...]] = {
    "hubert_tiny": ("hubert_local", "hubert_fbank_local"),
    "dicehubert": ("dicehubert_local",),
}


def _entry(name: str, hubert: bool = False) -> Callable[..., object]:
    """The hubconf entry of ``name``: our student expert, or, with ``hubert``, s3prl's own HuBERT expert (for our
    ``HubertModel`` checkpoints: they carry the keys s3prl's ``hubert_local`` reads)."""
    made_by = ("run_pretrain.py -u hubert_tiny -o config.model.frontend=fbank" if name == "hubert_fbank_local"
               else "run_pretrain.py -u dicehubert" if hubert else "run_pretrain.py")

    def entry(ckpt: str | None = None, model_config: str | None = None, refresh: bool = False, **kwargs: object) -> object:
        from s3prl_colld.checkpoint import CheckpointError, check_trusted

        if ckpt is None:
            raise CheckpointError(f"upstream {name} needs a checkpoint: S3PRLUpstream({name!r}, path_or_url=PATH) "
                                  f"or -k PATH (a states-STEP.ckpt of {made_by})")
        if not Path(ckpt).is_file():
            raise CheckpointError(f"upstream {name}: checkpoint not found: {ckpt}")
        # before any loader sees the file: s3prl's HubertExpert unpickles it fully when the environment says so
        # (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD); check_trusted loads it with weights_only=True whatever it says
        check_trusted(ckpt, f"upstream {name}: checkpoint")
        if name == "hubert_fbank_local":
            from s3prl_colld.s3prl_bridge.fbank_hubert import UpstreamExpert as FbankHubertExpert

            return FbankHubertExpert(str(ckpt), **kwargs)
        if hubert:
            from s3prl.upstream.hubert.expert import UpstreamExpert as HubertExpert

            return HubertExpert(str(ckpt), **kwargs)
        from s3prl_colld.s3prl_bridge.expert import UpstreamExpert

        return UpstreamExpert(ckpt, **kwargs)

    entry.__name__ = name
    kind = ("tiny HuBERT with the Fbank front-end" if name == "hubert_fbank_local"
            else "HuBERT-objective student" if hubert else "student")
    entry.__doc__ = f"s3prl-colld {kind} upstream {name!r} (ckpt: a states-STEP.ckpt)."
    return entry


def student_names() -> list[str]:
    """The hub names of every pretrain task that exports a ``student`` (``STUDENT_NAMES``)."""
    return [n for names in STUDENT_NAMES.values() for n in names]


def hubert_names() -> list[str]:
    """The hub names of every pretrain task whose checkpoints are s3prl HuBERT checkpoints (``HUBERT_NAMES``)."""
    return [n for names in HUBERT_NAMES.values() for n in names]


def register(hub: ModuleType | None = None) -> list[str]:
    """Add our names to ``hub`` (default: ``s3prl.hub``) where s3prl lacks them (idempotent); returns them."""
    if hub is None:
        import s3prl.hub as hub

    names = student_names()
    for name in names:
        if not hasattr(hub, name):
            setattr(hub, name, _entry(name))
    for name in hubert_names():
        if not hasattr(hub, name):
            setattr(hub, name, _entry(name, hubert=True))
        if getattr(getattr(hub, name), "__module__", None) == __name__:  # ours (hubert_local is s3prl's own)
            names.append(name)
    return names

