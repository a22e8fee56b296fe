"""Start-up hook: when ``s3prl`` is imported, patch torchaudio first; when ``s3prl.hub`` is, add our names.

The package installs ``s3prl_colld_hub.pth`` into site-packages; Python runs its
one line at start-up, which calls ``install()``. ``install()`` only puts a finder
on ``sys.meta_path`` (standard library only: no torch at start-up). The finder
wraps the loaders of ``s3prl`` and ``s3prl.hub``:

- before either runs: ``compat.patch_torchaudio()`` (only what a newer torchaudio lacks) and
  ``compat.allow_s3prl_runner_checkpoints()`` (s3prl's runner checkpoints hold an
  ``argparse.Namespace``: ``torch.load``'s default ``weights_only`` then reads them);
- after ``s3prl.hub`` has run: ``hub.register(module)`` (our student names).

So ``python run_downstream.py -u colld_small ...`` of an s3prl git checkout
finds our names without importing anything of ours. ``import s3prl_colld``
installs the same finder. A failure in our code is logged as a warning and
never breaks ``import s3prl.hub``.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

TARGETS = ("s3prl", "s3prl.hub")


class _Loader:  # the importlib loader protocol (importlib.abc is not imported: it pulls in much at start-up)
    """Runs the real loader of ``s3prl`` / ``s3prl.hub`` with our step before / after it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        _safely(_patch)  # before s3prl (or a hub imported after a bare s3prl) runs; idempotent
        self.inner.exec_module(module)
        if module.__name__ == "s3prl.hub":
            _safely(_register, module)


def _patch() -> None:
    from s3prl_colld.compat import allow_s3prl_runner_checkpoints, patch_torchaudio

    allow_s3prl_runner_checkpoints()
    patch_torchaudio()


def _register(hub: ModuleType) -> None:
    from s3prl_colld.s3prl_bridge.hub import register

    register(hub)


def _safely(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception as err:  # noqa: BLE001 - s3prl must import even if our side fails
        import logging

        logging.getLogger(__name__).warning("s3prl-colld start-up hook: %s failed: %r", fn.__name__, err)


class HubFinder:  # the importlib meta-path finder protocol
    """Finds ``s3prl`` / ``s3prl.hub`` with the other finders and wraps their loaders."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname not in TARGETS:
            return None
        for finder in sys.meta_path:
            if isinstance(finder, HubFinder) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and not isinstance(spec.loader, _Loader):
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


def install() -> None:
    """Put ``HubFinder`` first on ``sys.meta_path`` (once); if ``s3prl.hub`` is already imported, register now."""
    if not any(isinstance(f, HubFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, HubFinder())
    hub = sys.modules.get("s3prl.hub")
    if hub is not None and getattr(hub, "options", None) is not None:
        _safely(_register, hub)
