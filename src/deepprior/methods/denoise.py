"""Plain denoising with any denoiser of :mod:`deepprior.denoisers` (task ``denoise``).

``dae`` is our trained network applied once (the DAE as a denoiser, DAEP eq. 4); ``bm3d`` and
``nlm`` are the classical references of the DnCNN / DIP / DeepRED tables. When σ is not given
it is estimated from the image (:func:`deepprior.noise.estimate_noise_sigma`).
"""
from __future__ import annotations

import time

import torch

from ..compute import get_compute
from ..denoisers import get_denoiser
from ..noise import estimate_noise_sigma
from .base import Result, register


def _denoise(name: str, y: torch.Tensor, operator, sigma, device, precision, **kwargs) -> Result:
    if operator is not None and operator.task != "denoise":
        raise ValueError(f"method {name!r} only denoises; the operator's task is {operator.task!r}")
    blind = sigma is None
    if blind:
        sigma = float(estimate_noise_sigma(y).mean())
    kw = {"compute": get_compute(device, precision)} if name == "dae" else {}
    t0 = time.perf_counter()
    out = get_denoiser(name, **kw, **kwargs)(y, sigma).clamp(0, 1)
    settings = {"method": name, "sigma": float(sigma), "sigma_estimated": blind, **kwargs}
    if name == "dae":
        settings["precision"] = kw["compute"].precision
    return Result(out, [{"iter": 1, "seconds": time.perf_counter() - t0}], settings)


def _make(name: str, description: str):
    @register(name, ("denoise",), description, kind="learned" if name == "dae" else "classic")
    def run(y, operator=None, *, sigma=None, iters=None, callback=None, reference=None, seed=0,
            device="auto", precision="auto", progress=False, **params) -> Result:
        return _denoise(name, y, operator, sigma, device, precision, **params)

    run.__name__ = f"run_{name}"
    run.__doc__ = description
    return run


run_dae = _make("dae", "our trained denoising autoencoder applied once (noise-conditional)")
run_bm3d = _make("bm3d", "BM3D / CBM3D (Dabov et al. 2007), the bm3d package")
run_nlm = _make("nlm", "non-local means (Buades et al. 2005), scikit-image")
