"""Restoration methods. Each module registers its ``run`` functions in ``METHODS`` on import."""
from __future__ import annotations

import importlib

from .base import METHODS, TASKS, MethodInfo, Progress, Result, get_method, register

# Modules imported lazily so that `import deepprior` stays fast.
_METHOD_MODULES = ("classic", "denoise", "daep", "dmsp", "dip", "red", "deepred")

# Best first; a method is skipped when it is not registered or needs DAE weights we do not ship.
# deblur: RED with our DAE matched or beat DMSP in less time in both measured settings (Levin
# σ 2.55: 31.78 dB in 7 s vs 31.42 in 15 s; DeepRED colour set, σ √2: 30.21 vs 28.97 dB).
PREFERENCE = {
    "denoise": ("dae", "bm3d", "tv"),
    "deblur": ("red", "dmsp", "daep", "tv"),
    "sr": ("dmsp", "daep", "bicubic"),
    "inpaint": ("dip", "tv"),
    "demosaic": ("dmsp", "bilinear"),
}


def load_all() -> dict[str, MethodInfo]:
    for mod in _METHOD_MODULES:
        importlib.import_module(f"{__name__}.{mod}")
    return METHODS


def best_method(task: str, channels: int | None = None) -> str:
    """The best available method for ``task`` (learned ones only if their DAE weights ship)."""
    from ..nets.dae import default_weights_path

    load_all()
    if task not in PREFERENCE:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    for name in PREFERENCE[task]:
        info = METHODS.get(name)
        if info is None:
            continue
        if info.kind in ("learned", "hybrid"):  # hybrid: red/deepred use the DAE by default
            needed = [channels] if channels else [1, 3]
            if not all(default_weights_path(c).exists() for c in needed):
                continue
        return name
    raise ValueError(f"no method available for task {task!r}")


__all__ = ["METHODS", "PREFERENCE", "TASKS", "MethodInfo", "Progress", "Result", "best_method",
           "get_method", "load_all", "register"]
