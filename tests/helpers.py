"""Small helpers shared by the test modules (fixtures live in ``conftest.py``)."""
import math

import torch

from deepprior.nets.dae import DAE
from deepprior.noise import add_gaussian_noise


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR (dB) of ``x`` clipped to [0, 1] against ``ref``, float, no crop."""
    return 10 * math.log10(1.0 / float(((x.clamp(0, 1) - ref) ** 2).mean()))


def noisy(x: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """``x`` plus white Gaussian noise of std ``sigma`` ([0, 1] units) from a seeded generator."""
    return add_gaussian_noise(x, sigma, generator=torch.Generator().manual_seed(seed))


def tiny_dae(channels: int = 1, seed: int = 0) -> DAE:
    """A randomly initialised 3-level U-Net DAE (widths 4, 8, 16) standing in for the trained one."""
    torch.manual_seed(seed)
    return DAE("unet", channels, (0.0, 55 / 255), widths=(4, 8, 16)).eval()


# a 3-level DIP hourglass for the mechanics tests (overrides of the preset's NetSpec)
TINY_HOURGLASS = {"n_down": (8, 8, 8), "n_skip": 2}
