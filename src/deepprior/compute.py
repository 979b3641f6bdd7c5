"""Device, precision and thread policy — the one place that decides how networks run.

Policy (DESIGN.md, "Compute policy"): ``precision='auto'`` runs network evaluations under
bf16 autocast with channels_last memory format when the device has native bf16 matrix
support (AVX512-BF16 / AMX on CPU, Ampere+ on CUDA), and fp32 otherwise. Images, data
terms and optimiser state always stay fp32; only the network's convolutions see bf16.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``'auto'`` → CUDA if available, else CPU; anything else is passed to ``torch.device``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA device is available")
    return dev


def cpu_has_fast_bf16() -> bool:
    """True when oneDNN reports native bf16 support on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str = "auto", device: torch.device | str = "cpu") -> str:
    """Map ``'auto'|'fp32'|'bf16'`` to the concrete ``'fp32'`` or ``'bf16'`` for ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


@dataclass(frozen=True)
class Compute:
    """A resolved (device, precision) pair with helpers used by every network call."""

    device: torch.device
    precision: str  # 'fp32' or 'bf16'

    @property
    def memory_format(self) -> torch.memory_format:
        # channels_last is what makes oneDNN's bf16 convolutions fast; fp32 gains little from it.
        return torch.channels_last if self.precision == "bf16" else torch.contiguous_format

    def autocast(self):
        """Context manager: bf16 autocast when precision is bf16, a no-op otherwise."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare_module(self, module: torch.nn.Module) -> torch.nn.Module:
        return module.to(self.device, memory_format=self.memory_format)

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, torch.float32)
        if x.dim() == 4:
            x = x.contiguous(memory_format=self.memory_format)
        return x

    def to_dict(self) -> dict:
        return {"device": str(self.device), "precision": self.precision}


def get_compute(device: str | torch.device | None = "auto", precision: str = "auto") -> Compute:
    dev = resolve_device(device)
    return Compute(dev, resolve_precision(precision, dev))


def set_threads(threads: int | None = None) -> int:
    """Set torch intra-op threads (default: all cores, ``$DEEPPRIOR_THREADS`` overrides)."""
    if threads is None:
        env = os.environ.get("DEEPPRIOR_THREADS")
        threads = int(env) if env else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, int(threads)))
    return torch.get_num_threads()


def environment() -> dict:
    """What a benchmark JSON records about the machine that produced it."""
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_bf16": cpu_has_fast_bf16(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
