"""Pretrain tasks, one module each; importing this package registers them all.

Every public module here is imported (found with ``pkgutil``), so a new task
file registers itself with ``@register("name")`` without editing this file.
"""

from __future__ import annotations

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
