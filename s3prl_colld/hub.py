"""Register our students as s3prl upstream names (``import s3prl_colld.hub``).

After the import, ``s3prl.nn.S3PRLUpstream("colld_small", path_or_url=CKPT)``
and anything else that looks names up in ``s3prl.hub`` find:

- ``colld_local`` / ``colld_small``: a CoLLD student checkpoint;
- ``distilhubert_colld_local``: our DistilHuBERT-baseline student;
- ``l2l_local``: a layer-to-layer regression student.

Each takes s3prl's hubconf signature ``(ckpt=None, model_config=None, refresh=False, **kw)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from s3prl_colld.checkpoint import DOWNSTREAM_KIND, CheckpointError, check_trusted


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


NAMES = ("colld_local", "colld_small", "distilhubert_colld_local", "l2l_local")
HUBERT_LOCAL_KEYS = {"task_cfg", "model_cfg", "model_weight"}  # what s3prl's hubert_local reads


def upstream_names_for(state: dict) -> tuple[str, ...]:
    """The upstream names that load one of our pretrain checkpoints (empty: none does)."""
    from s3prl_colld.upstream.expert import STUDENT_TASKS

    if state.get("task") in STUDENT_TASKS:
        return NAMES
    if HUBERT_LOCAL_KEYS <= set(state):
        return ("hubert_local",)
    return ()


def check_upstream_checkpoint(name: str, ckpt: str | None, where: str, name_flag: str) -> None:
    """What must hold before s3prl's loader for upstream ``name`` sees ``ckpt``.

    The file must be safe to unpickle (``checkpoint.check_trusted``), and if it
    is one of ours, of a kind that ``name`` loads: a student checkpoint given to
    ``hubert_local`` or a downstream checkpoint given as an upstream is an
    error that says what the file is and which name loads it.

    Args:
        where, name_flag: how the user gave the file and the name (``-k`` / ``-u ``,
            ``config.teacher.ckpt`` / ``config.teacher.name=``), for the messages.
    """
    state = check_trusted(ckpt, where)
    if not isinstance(state, dict):
        return
    if state.get("kind") == DOWNSTREAM_KIND:
        raise CheckpointError(f"{where} {ckpt} is a run_downstream.py checkpoint (a probe's head, not an upstream): "
                              f"give the upstream checkpoint that probe was trained on")
    task = state.get("task")
    if not isinstance(task, str) or "config" not in state:
        return  # not one of ours: s3prl's loader decides
    loaders = upstream_names_for(state)
    if name in loaders:
        return
    if loaders == NAMES:
        raise CheckpointError(f"{where} {ckpt} is a student checkpoint of the pretrain task {task}: load it with "
                              f"{name_flag}{loaders[0]} (s3prl-colld's student upstream; {', '.join(NAMES[1:])} "
                              f"load it too), not {name_flag}{name}")
    if loaders:
        raise CheckpointError(f"{where} {ckpt} is a checkpoint of the pretrain task {task}: load it with "
                              f"{name_flag}{loaders[0]}, not {name_flag}{name}")
    raise CheckpointError(f"{where} {ckpt} is a checkpoint of the pretrain task {task}, which no upstream name loads "
                          "(upstreams are distillation students and hubert_tiny teachers)")


def register() -> list[str]:
    """Add our names to ``s3prl.hub`` (idempotent); returns them."""
    import s3prl.hub as hub

    for name in NAMES:
        if not hasattr(hub, name):
            setattr(hub, name, _entry(name))
    return list(NAMES)


register()
