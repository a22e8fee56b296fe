"""Register our students as s3prl upstream names (``import s3prl_colld.hub``).

After the import, ``s3prl.nn.S3PRLUpstream("colld_small", path_or_url=CKPT)``
and anything else that looks names up in ``s3prl.hub`` find:

- ``colld_local`` / ``colld_small``: a CoLLD student checkpoint;
- ``distilhubert_colld_local``: our DistilHuBERT-baseline student;
- ``l2l_local``: a layer-to-layer regression student;
- ``dicehubert_local``: a DiceHuBERT student (``-u dicehubert``; a HuBERT
  checkpoint, loaded by s3prl's own HuBERT expert as ``hubert_local`` does).

Each takes s3prl's hubconf signature ``(ckpt=None, model_config=None, refresh=False, **kw)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from s3prl_colld.checkpoint import CheckpointError


def _entry(name: str) -> Callable[..., object]:
    def entry(ckpt: str | None = None, model_config: str | None = None, refresh: bool = False, **kwargs: object) -> object:
        from s3prl_colld.upstream.expert import UpstreamExpert

        if ckpt is None:
            raise CheckpointError(f"upstream {name} needs a checkpoint: S3PRLUpstream({name!r}, path_or_url=PATH) "
                                  "or -k PATH (a states-STEP.ckpt of run_pretrain.py)")
        if not Path(ckpt).is_file():
            raise CheckpointError(f"upstream {name}: checkpoint not found: {ckpt}")
        return UpstreamExpert(ckpt, **kwargs)

    entry.__name__ = name
    entry.__doc__ = f"s3prl-colld student upstream {name!r} (ckpt: a states-STEP.ckpt)."
    return entry


def _hubert_entry(name: str) -> Callable[..., object]:
    """An upstream entry for our ``HubertModel`` checkpoints (they carry the keys s3prl's ``hubert_local`` reads)."""

    def entry(ckpt: str | None = None, model_config: str | None = None, refresh: bool = False, **kwargs: object) -> object:
        from s3prl.upstream.hubert.expert import UpstreamExpert as HubertExpert

        if ckpt is None:
            raise CheckpointError(f"upstream {name} needs a checkpoint: S3PRLUpstream({name!r}, path_or_url=PATH) "
                                  "or -k PATH (a states-STEP.ckpt of run_pretrain.py -u dicehubert)")
        if not Path(ckpt).is_file():
            raise CheckpointError(f"upstream {name}: checkpoint not found: {ckpt}")
        return HubertExpert(str(ckpt), **kwargs)

    entry.__name__ = name
    entry.__doc__ = f"s3prl-colld HuBERT-objective student upstream {name!r} (ckpt: a states-STEP.ckpt)."
    return entry


NAMES = ("colld_local", "colld_small", "distilhubert_colld_local", "l2l_local")
HUBERT_NAMES = ("dicehubert_local",)


def register() -> list[str]:
    """Add our names to ``s3prl.hub`` (idempotent); returns them."""
    import s3prl.hub as hub

    for name in NAMES:
        if not hasattr(hub, name):
            setattr(hub, name, _entry(name))
    for name in HUBERT_NAMES:
        if not hasattr(hub, name):
            setattr(hub, name, _hubert_entry(name))
    return list(NAMES + HUBERT_NAMES)


register()
