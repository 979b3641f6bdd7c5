"""Restoration methods. Each module registers its ``run`` functions in ``METHODS`` on import."""
from __future__ import annotations

import importlib

from .base import METHODS, TASKS, MethodInfo, Progress, Result, get_method, register

# Modules imported lazily so that `import deepprior` stays fast; later issues append theirs.
_METHOD_MODULES = ("classic",)


def load_all() -> dict[str, MethodInfo]:
    for mod in _METHOD_MODULES:
        importlib.import_module(f"{__name__}.{mod}")
    return METHODS


__all__ = ["METHODS", "TASKS", "MethodInfo", "Progress", "Result", "get_method", "load_all", "register"]
