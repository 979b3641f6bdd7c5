"""What every restoration method shares: the ``Result`` it returns, the progress/history
tracker its loop reports to, and the registry that maps method names to implementations.

Method contract (DESIGN.md): ``run(y, operator, *, sigma=None, iters=None, callback=None,
reference=None, seed=0, device='auto', precision='auto', progress=False, **params) -> Result``.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..operators import TASKS


@dataclass
class Result:
    """A restored image (N×C×H×W float32 in [0, 1]) plus how it was obtained."""

    image: torch.Tensor
    history: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)
    interrupted: bool = False

    @property
    def iters(self) -> int:
        return self.history[-1]["iter"] if self.history else 0

    @property
    def seconds(self) -> float:
        return self.history[-1]["seconds"] if self.history else 0.0


def _psnr_float(x: torch.Tensor, ref: torch.Tensor) -> float:
    mse = torch.mean((x.clamp(0, 1) - ref) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


class Progress:
    """History, optional reference PSNR, progress report and Ctrl-C handling for a method's loop.

    Use as ``with Progress(total, ...) as prog: for t in ...: ...; if prog.log(t, x, loss): break``.
    A ``KeyboardInterrupt`` inside the block is swallowed and recorded in ``prog.interrupted``
    so the method still returns its current estimate (the CLI then saves it).
    ``callback(t, x, info) -> bool`` may return True to stop early.

    ``show=True`` draws a progress bar on a terminal; when stderr is not one (a log file of a
    ``nohup`` job) it writes a plain status line every ``LINE_EVERY_SECONDS`` instead:
    iteration, seconds per iteration, PSNR when a reference is known, elapsed time and ETA.
    """

    LINE_EVERY_SECONDS = 60.0

    def __init__(self, total: int, *, reference: torch.Tensor | None = None,
                 callback: Callable | None = None, show: bool = False, desc: str = "",
                 psnr_every: int = 1):
        self.total = total
        self.reference = reference
        self.callback = callback
        self.history: list[dict] = []
        self.interrupted = False
        self.psnr_every = max(1, psnr_every)
        self._t0 = time.perf_counter()
        self._bar = None
        self._lines = bool(show) and not sys.stderr.isatty()
        self._desc = desc or "fit"
        self._mark = (self._t0, 0)  # (clock, iteration) at the previous status line
        if show and not self._lines:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)

    def __enter__(self) -> "Progress":
        self._t0 = time.perf_counter()
        self._mark = (self._t0, 0)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._bar is not None:
            self._bar.close()
        if exc_type is KeyboardInterrupt:
            self.interrupted = True
            return True
        return False

    @property
    def elapsed(self) -> float:
        """Seconds since the loop started (including those restored by :meth:`restore`)."""
        return time.perf_counter() - self._t0

    def restore(self, history: list[dict], elapsed: float) -> None:
        """Continue a checkpointed run: its history so far, and its clock at ``elapsed``."""
        self.history = list(history)
        self._t0 = time.perf_counter() - float(elapsed)
        self._mark = (time.perf_counter(), self.history[-1]["iter"] if self.history else 0)
        if self._bar is not None:
            self._bar.update(len(self.history))

    def log(self, t: int, x: torch.Tensor | None = None, loss: float | None = None, **extra) -> bool:
        """Record iteration ``t`` (1-based); returns True when the caller should stop."""
        entry = {"iter": int(t), "seconds": time.perf_counter() - self._t0}
        if loss is not None:
            entry["loss"] = float(loss)
        if self.reference is not None and x is not None and (t % self.psnr_every == 0 or t == self.total):
            entry["psnr"] = _psnr_float(x.detach().float(), self.reference.to(x.device))
        entry.update(extra)
        self.history.append(entry)
        if self._bar is not None:
            post = {k: f"{entry[k]:.4g}" for k in ("loss", "psnr") if k in entry}
            self._bar.set_postfix(post, refresh=False)
            self._bar.update(1)
        elif self._lines and time.perf_counter() - self._mark[0] >= self.LINE_EVERY_SECONDS:
            self._status_line(entry)
        if self.callback is not None and x is not None:
            return bool(self.callback(t, x, entry))
        return False


    def _status_line(self, entry: dict) -> None:
        now, (then, it0) = time.perf_counter(), self._mark
        t = entry["iter"]
        rate = (now - then) / max(1, t - it0)  # over the last interval: the current speed
        parts = [f"{self._desc}: iteration {t}/{self.total}", f"{rate:.3g} s/it"]
        psnr = next((e["psnr"] for e in reversed(self.history[-50:]) if "psnr" in e), None)
        if psnr is not None:
            parts.append(f"PSNR {psnr:.2f} dB")
        elif "loss" in entry:
            parts.append(f"loss {entry['loss']:.4g}")
        parts += [f"{entry['seconds'] / 60:.1f} min elapsed", f"ETA {rate * max(0, self.total - t) / 60:.1f} min"]
        print(", ".join(parts), file=sys.stderr, flush=True)
        self._mark = (now, t)


@dataclass(frozen=True)
class MethodInfo:
    name: str
    run: Callable[..., Result]
    tasks: tuple[str, ...]
    description: str
    kind: str  # 'classic', 'learned', 'untrained', 'hybrid'


METHODS: dict[str, MethodInfo] = {}


def register(name: str, tasks: tuple[str, ...], description: str, kind: str = "classic"):
    """Decorator adding a method's ``run`` function to the registry."""
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown tasks {sorted(unknown)}")

    def wrap(fn: Callable[..., Result]) -> Callable[..., Result]:
        METHODS[name] = MethodInfo(name, fn, tuple(tasks), description, kind)
        return fn

    return wrap


def get_method(name: str) -> MethodInfo:
    from . import load_all

    load_all()
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def seed_everything(seed: int | None) -> torch.Generator:
    """Seed torch's global RNG and return a CPU generator for method-local noise draws."""
    g = torch.Generator()
    if seed is not None:
        torch.manual_seed(seed)
        g.manual_seed(seed)
    return g
