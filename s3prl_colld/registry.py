"""One registry style for pretrain and downstream tasks: ``@REGISTRY.register("name")`` in a module of a package.

The package's modules are found with ``pkgutil`` and imported on the first
lookup, so a new task is one new module (plus its config) and no other edit.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import Any, Callable, Generic, TypeVar

from s3prl_colld.config import ConfigError

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Classes by name, registered by the modules of ``package`` (those not starting with ``_``).

    Args:
        kind: what the names are, for messages ("pretrain task").
        package: dotted name of the package whose modules register classes.
        error: raised for an unknown name (a ``ConfigError``), naming close matches and every name.
    """

    def __init__(self, kind: str, package: str, error: type[ConfigError] = ConfigError) -> None:
        self.kind, self.package, self.error = kind, package, error
        self.classes: dict[str, T] = {}
        self._imported = False

    def register(self, name: str, **attrs: Any) -> Callable[[T], T]:
        """Class decorator: set ``cls.name = name`` (and ``attrs``) and register the class."""

        def wrap(cls: T) -> T:
            cls.name = name
            for key, value in attrs.items():
                setattr(cls, key, value)
            self.classes[name] = cls
            return cls

        return wrap

    def all(self) -> dict[str, T]:
        """Every registered class by name (imports the package's modules the first time)."""
        if not self._imported:
            package = importlib.import_module(self.package)
            for module in pkgutil.iter_modules(package.__path__):
                if not module.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{module.name}")
            self._imported = True
        return self.classes

    def get(self, name: str) -> T:
        """The class registered as ``name``; an unknown name raises ``error`` with close matches."""
        if name not in self.all():
            close = difflib.get_close_matches(name, list(self.classes), n=3)
            hint = f" Did you mean {' or '.join(close)}?" if close else ""
            raise self.error(f"unknown {self.kind} {name!r}.{hint} Available tasks: {', '.join(sorted(self.classes))}")
        return self.classes[name]
