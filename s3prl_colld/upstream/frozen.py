"""One frozen s3prl upstream, shared by the distillation teacher and the downstream runner.

``FrozenS3PRLUpstream(name, ckpt)`` checks ``name`` against ``s3prl.hub`` (our
students included, close matches for a typo), builds
``s3prl.nn.S3PRLUpstream(name, path_or_url=ckpt)``, turns its gradients off and
keeps it in eval mode whatever its parent module does.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from torch import nn

from s3prl_colld.config import ConfigError


class UpstreamError(ConfigError):
    """An upstream name that s3prl does not know, or a missing checkpoint."""


def available_upstreams() -> list[str]:
    """Every name ``S3PRLUpstream`` accepts, ours included."""
    from s3prl.nn import S3PRLUpstream

    from s3prl_colld.hub import register

    register()
    return S3PRLUpstream.available_names()


def check_upstream_name(name: str) -> None:
    """Raise an ``UpstreamError`` listing close matches if s3prl does not know ``name``."""
    names = available_upstreams()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        raise UpstreamError(f"unknown upstream {name!r}.{hint} All {len(names)} names: "
                            "python -c 'import s3prl_colld.hub; from s3prl.nn import S3PRLUpstream; "
                            "print(S3PRLUpstream.available_names())'")


class FrozenS3PRLUpstream(nn.Module):
    """``S3PRLUpstream(name, path_or_url=ckpt)``, frozen (no gradients, always in eval mode).

    Attributes:
        upstream: the ``S3PRLUpstream``; ``forward(wav [B, N], lengths [B])`` ->
            ``(num_hidden x [B, T, D_l], num_hidden x lengths [B])``.
        num_hidden: hidden states per input (front-end output + every layer).
        hidden_sizes: ``D_l`` of each hidden state.
        downsample_rate: input samples per output frame (the largest of the hidden states').
    """

    def __init__(self, name: str, ckpt: str | Path | None = None) -> None:
        super().__init__()
        from s3prl.nn import S3PRLUpstream

        check_upstream_name(name)
        if ckpt is not None and not Path(ckpt).is_file():
            raise UpstreamError(f"upstream {name}: checkpoint not found: {ckpt}")
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
