"""Noise models and blind noise-level estimation.

Units: the Python API takes σ in [0, 1] image units (σ = 25/255 for the papers'
"σ = 25"); the CLI and benchmark tables use 8-bit units. Convert with
``sigma_to_unit`` / ``sigma_to_8bit``.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["add_gaussian_noise", "estimate_noise_sigma", "sigma_to_unit", "sigma_to_8bit"]

# median(|z|) of z ~ N(0, 1): the MAD-to-σ constant of Donoho & Johnstone (1994)
_MAD_TO_SIGMA = 0.6745


def sigma_to_unit(s8):
    """σ in 8-bit units (0–255 scale, as on the CLI and in tables) → [0, 1] units."""
    return s8 / 255.0


def sigma_to_8bit(s):
    """σ in [0, 1] units (the Python API) → 8-bit units."""
    return s * 255.0


def add_gaussian_noise(x, sigma: float, generator: torch.Generator | None = None):
    """Return ``x + σ·z`` with ``z ~ N(0, I)`` — additive white Gaussian noise.

    Parameters
    ----------
    x : torch.Tensor or numpy.ndarray
        Clean image(s), range [0, 1]. A NumPy array gives a NumPy array back.
    sigma : float
        Noise standard deviation in [0, 1] units (``25/255`` for "σ = 25").
    generator : torch.Generator, optional
        Source of randomness for reproducible noise (on ``x``'s device).

    Returns
    -------
    Same type, shape and dtype as ``x``. The result is **not clipped** to [0, 1]:
    the papers' protocols model ``y = A(x) + n`` with ``n ~ N(0, σ²I)`` and add
    the noise unclipped. Clipping would make the noise non-Gaussian and biased
    near 0 and 1, breaking the Gaussian likelihood every method assumes.
    """
    sigma = float(sigma)
    if not 0.0 <= sigma <= 1.0:
        raise ValueError(f"sigma={sigma} is outside [0, 1]; sigma is in [0, 1] units "
                         f"(for 8-bit σ=25 pass sigma_to_unit(25) = 25/255)")
    if isinstance(x, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(x))
        return add_gaussian_noise(t, sigma, generator).numpy()
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return x + sigma * noise


def estimate_noise_sigma(y):
    """Blind estimate of the white-Gaussian-noise σ, in [0, 1] units.

    Robust median estimator on the finest-scale diagonal (HH) Haar wavelet
    coefficients, σ̂ = median(|d|) / 0.6745 (Donoho & Johnstone 1994, §4.2),
    computed per channel and averaged over channels. On natural images HH
    coefficients are mostly noise, so σ̂ is slightly high on textured images.

    Parameters
    ----------
    y : torch.Tensor (N×C×H×W) or numpy.ndarray (H×W or H×W×C)
        Noisy image(s). An odd last row/column is ignored.

    Returns
    -------
    torch.Tensor of shape (N,) for a tensor input (one σ̂ per image);
    float for a NumPy input.
    """
    if isinstance(y, np.ndarray):
        if y.ndim not in (2, 3):
            raise ValueError(f"expected an H×W or H×W×C array, got shape {y.shape}")
        a = y[..., None] if y.ndim == 2 else y
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).permute(2, 0, 1)[None]
        return float(estimate_noise_sigma(t)[0])
    if y.ndim != 4:
        raise ValueError(f"expected an N×C×H×W tensor, got shape {tuple(y.shape)}")
    h, w = (y.shape[-2] // 2) * 2, (y.shape[-1] // 2) * 2
    if h == 0 or w == 0:
        raise ValueError(f"image {y.shape[-2]}×{y.shape[-1]} is too small (needs ≥ 2×2)")
    y = y[..., :h, :w]
    # orthonormal Haar HH: (a − b − c + d)/2 keeps white noise at variance σ²
    d = (y[..., 0::2, 0::2] - y[..., 0::2, 1::2] - y[..., 1::2, 0::2] + y[..., 1::2, 1::2]) / 2
    mad = d.abs().flatten(2).median(dim=-1).values
    return (mad / _MAD_TO_SIGMA).mean(dim=1)
