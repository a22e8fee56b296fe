"""One frozen s3prl upstream, shared by the distillation teacher and the downstream runner.

``FrozenS3PRLUpstream(name, ckpt)`` checks ``name`` against ``s3prl.hub`` (our
students included, close matches for a typo), checks ``ckpt`` before any s3prl
loader sees it (``check_upstream_checkpoint``: safe to unpickle unless
``--trust-checkpoint``, and of a kind ``name`` loads), builds
``s3prl.nn.S3PRLUpstream(name, path_or_url=ckpt)``, turns its gradients off and
keeps it in eval mode whatever its parent module does.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from torch import nn

from s3prl_colld.checkpoint import DOWNSTREAM_KIND, CheckpointError, check_trusted
from s3prl_colld.config import ConfigError


class UpstreamError(ConfigError):
    """An upstream name that s3prl does not know, or a missing checkpoint."""


def check_upstream_name(name: str) -> None:
    """Raise an ``UpstreamError`` listing close matches if s3prl does not know ``name`` (ours included)."""
    from s3prl.nn import S3PRLUpstream

    from s3prl_colld.s3prl_bridge.hub import register

    register()
    names = S3PRLUpstream.available_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        raise UpstreamError(f"unknown upstream {name!r}.{hint} All {len(names)} names: "
                            "python -c 'import s3prl_colld.hub; from s3prl.nn import S3PRLUpstream; "
                            "print(S3PRLUpstream.available_names())'")


HUBERT_LOCAL_KEYS = {"task_cfg", "model_cfg", "model_weight"}  # what s3prl's hubert_local reads


def upstream_names_for(state: dict) -> list[str]:
    """The ``s3prl.hub`` names that load one of our pretrain checkpoints (its ``export`` section; empty: none)."""
    from s3prl_colld.s3prl_bridge.hub import student_names

    section = state.get("export") or {}
    names = list(section.get("upstreams") or [])
    if "student" in section.get("modules", {}) or (
            not section and any(k.startswith("student.") for k in state.get("model", {}))):
        names += [n for n in student_names() if n not in names]  # every student name loads any student
    if not section and HUBERT_LOCAL_KEYS <= set(state):  # written before export sections
        names.append("hubert_local")
    return names


def check_upstream_checkpoint(name: str, ckpt: str | None, where: str = "-k", name_flag: str = "-u ") -> None:
    """What must hold before s3prl's loader for upstream ``name`` sees ``ckpt``.

    The file must be safe to unpickle (``checkpoint.check_trusted``), and if it
    is one of ours, of a kind that ``name`` loads: a student checkpoint given to
    ``hubert_local`` or a downstream checkpoint given as an upstream is an
    error that says what the file is and which name loads it.

    Args:
        where, name_flag: how the user gave the file and the name (``-k`` / ``-u ``,
            ``config.teacher.ckpt`` / ``config.teacher.name=``), for the messages.

    Raises:
        CheckpointError: (``UntrustedCheckpointError`` for an unsafe file) what is wrong and how to fix it.
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
    if not loaders:
        raise CheckpointError(f"{where} {ckpt} is a checkpoint of the pretrain task {task}, which no upstream name "
                              "loads (it exports no student and no hubert_local model)")
    student = "student" in (state.get("export") or {}).get("modules", {}) or any(
        k.startswith("student.") for k in state.get("model", {}))
    raise CheckpointError(f"{where} {ckpt} is {'a student' if student else 'a'} checkpoint of the pretrain task "
                          f"{task}: load it with {name_flag}{loaders[0]}"
                          + (f" (s3prl-colld's student upstream; also {', '.join(loaders[1:])})" if student and
                             len(loaders) > 1 else "") + f", not {name_flag}{name}")


class FrozenS3PRLUpstream(nn.Module):
    """``S3PRLUpstream(name, path_or_url=ckpt)``, frozen (no gradients, always in eval mode).

    Attributes:
        upstream: the ``S3PRLUpstream``; ``forward(wav [B, N], lengths [B])`` ->
            ``(num_hidden x [B, T, D_l], num_hidden x lengths [B])``.
        num_hidden: hidden states per input (front-end output + every layer).
        hidden_sizes: ``D_l`` of each hidden state.
        downsample_rate: input samples per output frame (the largest of the hidden states').
    """

    def __init__(self, name: str, ckpt: str | Path | None = None, where: str = "-k", name_flag: str = "-u ") -> None:
        super().__init__()
        from s3prl.nn import S3PRLUpstream

        check_upstream_name(name)
        if ckpt is not None and not Path(ckpt).is_file():
            raise UpstreamError(f"upstream {name}: checkpoint not found: {ckpt}")
        check_upstream_checkpoint(name, str(ckpt) if ckpt else None, where, name_flag)
        self.name, self.ckpt = name, str(ckpt) if ckpt else None
        self.upstream = S3PRLUpstream(name, path_or_url=self.ckpt)
        self.upstream.requires_grad_(False)
        self.num_hidden = self.upstream.num_layers
        self.hidden_sizes = list(self.upstream.hidden_sizes)
        self.downsample_rate = int(max(self.upstream.downsample_rates))
        self.eval()

    def train(self, mode: bool = True) -> "FrozenS3PRLUpstream":
        """Stays in eval mode (no dropout, no layerdrop) whatever its parent does."""
        return super().train(False)
