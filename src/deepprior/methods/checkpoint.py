"""Checkpoint and resume *inside* one long fit (DIP, DeepRED).

A DIP fit of the paper's schedules runs for hours on a CPU (inpainting: 11000 iterations, DeepRED
deblurring: 30000), longer than a process may live. :class:`FitCheckpoint` writes everything
the fitting loop needs to continue exactly where it stopped — network weights and buffers,
Adam's state, the backtracking copy, the exponential average, the stop rules' monitors, the
noise generator's state, DeepRED's ADMM variables, the history so far and the elapsed time —
every ``every`` seconds, when the loop is asked to stop (Ctrl-C / SIGTERM: the signal is
deferred to the end of the current iteration, a second Ctrl-C interrupts at once) and after each
finished restart. A resumed fit reproduces the uninterrupted run bit for bit (same seed, same
device and precision); the file is removed when the method returns its final result.

The file is a ``torch.save`` dict of tensors, numbers, strings and lists, loaded with
``weights_only=True``; its ``signature`` (the method's settings and a digest of the
observation) must match the call that resumes it, otherwise the method refuses it.
"""
from __future__ import annotations

import hashlib
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import torch

__all__ = ["FitCheckpoint", "tensor_digest", "DEFAULT_EVERY"]

# seconds between periodic saves: a 512² DIP fit state is ~170 MB (mostly ES-WMV's window of
# 100 float16 outputs), written in well under a second, so a 5-minute period costs < 0.3 %
DEFAULT_EVERY = 300.0
FORMAT = 1


def tensor_digest(x: torch.Tensor) -> str:
    """SHA-256 prefix of a tensor's shape and float32 values (identifies the observation)."""
    data = x.detach().to("cpu", torch.float32).contiguous()
    h = hashlib.sha256(str(tuple(data.shape)).encode())
    h.update(data.numpy().tobytes())
    return h.hexdigest()[:16]


def _atomic_save(obj, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FitCheckpoint:
    """One method call's checkpoint file: finished restarts plus the fit in progress.

    Parameters
    ----------
    path : path-like
        The file (its folder is created). When it exists, :meth:`load` reads it.
    signature : dict
        What the call must agree on to reuse the file (JSON-like values).
    every : float
        Seconds between periodic saves (≤ 0: at every iteration, for tests).
    """

    def __init__(self, path, signature: dict, every: float = DEFAULT_EVERY):
        self.path = Path(path)
        self.signature = signature
        self.every = float(every)
        self.finished: dict[tuple[int, int], dict] = {}
        self.history: list[dict] = []
        self.elapsed = 0.0
        self.fit: dict | None = None
        self.resumed_from: dict | None = None
        self._last_save = time.monotonic()
        self._stop_requested = False
        self._old_handlers: dict = {}

    # ------------------------------------------------------------------ reading
    def load(self) -> bool:
        """Read the file if there is one; True when something was resumed."""
        if not self.path.exists():
            return False
        try:
            data = torch.load(self.path, map_location="cpu", weights_only=True)
            saved_signature = data["signature"]
        except Exception as exc:  # a truncated or foreign file
            raise ValueError(f"cannot resume from {self.path}: not a fit checkpoint ({exc})") from exc
        if data.get("format") != FORMAT or saved_signature != self.signature:
            differing = sorted(k for k in set(saved_signature) | set(self.signature)
                               if saved_signature.get(k) != self.signature.get(k))
            raise ValueError(f"cannot resume from {self.path}: it was written with different "
                             f"{', '.join(differing) or 'format'}; delete it or pass another checkpoint path")
        self.finished = {(int(n), int(r)): run for n, r, run in data["finished"]}
        self.history = list(data["history"])
        self.elapsed = float(data["elapsed"])
        self.fit = data["fit"]
        self.resumed_from = {"iter": self.history[-1]["iter"] if self.history else 0,
                             "seconds": self.elapsed}
        return True

    def take_fit(self, n: int, r: int) -> dict | None:
        """The saved state of fit (image n, restart r) if that is the one in progress."""
        fit, self.fit = self.fit, None
        if fit is not None and (int(fit["image"]), int(fit["restart"])) == (n, r):
            return fit
        return None

    # ------------------------------------------------------------------ writing
    def due(self) -> bool:
        return self._stop_requested or time.monotonic() - self._last_save >= self.every

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    def save(self, history: list[dict], elapsed: float, fit: dict | None) -> None:
        """Write the file: finished restarts, the history so far and the fit in progress."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_save({"format": FORMAT, "signature": self.signature,
                      "finished": [[n, r, run] for (n, r), run in sorted(self.finished.items())],
                      "history": history, "elapsed": float(elapsed), "fit": fit}, self.path)
        self._last_save = time.monotonic()

    def finish_run(self, n: int, r: int, record: dict, estimate: torch.Tensor, offset: int) -> None:
        """Fit (image n, restart r) is complete: its record, estimate and last history iteration."""
        self.finished[(n, r)] = {"record": record, "estimate": estimate.detach().cpu(), "offset": int(offset)}

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ signals
    def _request_stop(self, signum, frame) -> None:
        if self._stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: do not wait for the iteration to end
        self._stop_requested = True

    def __enter__(self) -> "FitCheckpoint":
        """Defer SIGINT/SIGTERM to the end of the iteration (main thread only)."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old_handlers[sig] = signal.signal(sig, self._request_stop)
        return self

    def __exit__(self, *exc) -> bool:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()
        return False
