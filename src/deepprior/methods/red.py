"""Regularization by Denoising (RED) for any linear operator, with any denoiser.

Romano, Elad & Milanfar (2017) regularise an inverse problem with a denoiser ``f``::

    E(x) = ½‖Hx − y‖² + (λ/2)·xᵀ(x − f(x)),        ∇ρ(x) = x − f(x)

(the prior's gradient needs no derivative of ``f`` under RED's conditions: local homogeneity,
symmetric Jacobian). This is the DeepRED objective (DeepRED eq. 4) without the network, with
the same unweighted data term, so one λ means the same thing in ``red`` and ``deepred``
(Romano et al. weight the data term by 1/σ²; their λ equals ours divided by σ²).
``½‖Hx − y‖²`` is summed over the observed entries (a ``Mask``'s zeros carry no data).

Solvers (RED §5):

* ``'fixed-point'`` (default): zero the gradient with ``f`` frozen at the current iterate,
  ``(HᵀH + λI)·x_{j+1} = Hᵀy + λ·f(x_j)`` — the x-update of DeepRED eq. (9)–(11) with the
  data term in place of the ADMM penalty — solved by ``inner`` conjugate-gradient steps
  warm-started at ``x_j`` (one exact step when ``H = I``: ``x = (y + λ f(x))/(1 + λ)``).
* ``'sd'``: steepest descent ``x_{j+1} = x_j − c·[Hᵀ(Hx_j − y) + λ(x_j − f(x_j))]``
  (DeepRED eq. 12 with the data term), ``c = 1/(‖H‖² + λ)``.

The denoiser runs once per outer iteration. Its noise level ``σ_f`` is a parameter of the
regulariser, not the noise of ``y`` (DeepRED Table 1: σ_f = 3 or 5 on 8-bit images).

References
----------
.. [1] Y. Romano, M. Elad and P. Milanfar, "The little engine that could: Regularization by
   denoising (RED)", SIAM J. Imaging Sci. 10(4), 2017, §4–5.
.. [2] G. Mataev, M. Elad and P. Milanfar, "DeepRED: Deep image prior powered by RED",
   ICCV Workshops 2019, eq. (4), (9)–(12).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from ..compute import get_compute
from ..denoisers import DENOISERS, get_denoiser
from ..noise import sigma_to_unit
from .base import Progress, Result, register, seed_everything
from .classic import _operator_norm_sq
from .prior import check_task, initial_estimate, setup

__all__ = ["red", "RED_PRESETS", "make_denoiser", "conjugate_gradient", "SOLVERS"]

SOLVERS = ("fixed-point", "sd")
RED_TASKS = ("denoise", "deblur", "sr", "inpaint", "demosaic")


@dataclass(frozen=True)
class REDPreset:
    """Denoiser, its σ_f (8-bit units; None: ``sigma_f_factor`` × the noise level of y), λ and
    outer iterations."""

    denoiser: str
    sigma_f: float | None
    lam: float
    iters: int
    source: str
    sigma_f_factor: float = 1.0


# Per task; ours unless a source is given, chosen by sweeps on small crops (ranges in brackets).
# denoise (128² astronaut crop, σ = 25; σ_f ∈ {σ/3, σ/2, σ}, λ ∈ {0.5 … 16}): NLM at σ_f = σ/2,
#   λ = 2 gave 27.11 dB — below one NLM pass (29.54): RED's fixed point over-smooths with NLM;
#   with our DAE (σ_f = σ/3, λ = 4) 30.14 dB.
# deblur (128² butterfly crop, 9×9 uniform blur, σ = √2, 200 iterations, PSNR on Y; σ_f ∈ {3, 5,
#   10}, λ ∈ {0.005 … 1}): DAE σ_f = 3, λ = 0.05 → 29.41 dB, NLM σ_f = 5, λ = 0.1 → 27.83 dB.
#   DeepRED's own λ = 0.02 with NLM σ_f = 3 is far too weak without the network (19.0 dB: the
#   deconvolution amplifies the noise). inpaint/demosaic reuse the deblurring row.
# sr: DeepRED Table 1's regulariser (BM3D, σ_f = 5, λ = 0.05), as the paper's "RED [FP-BM3D]".
RED_PRESETS = {
    "denoise": REDPreset("nlm", None, 2.0, 30, "ours: sweep on a 128² crop, σ = 25 (see source)",
                         sigma_f_factor=0.5),
    "deblur": REDPreset("dae", 3.0, 0.05, 200, "ours: sweep on a 128² crop (see source)"),
    "sr": REDPreset("bm3d", 5.0, 0.05, 100, "DeepRED Table 1 SISR regulariser (BM3D, σ_f 5, λ 0.05)"),
    "inpaint": REDPreset("dae", 3.0, 0.05, 200, "the deblurring row (ours)"),
    "demosaic": REDPreset("dae", 3.0, 0.05, 200, "the deblurring row (ours)"),
}


def make_denoiser(denoiser, compute) -> tuple[Callable, str]:
    """``(f(x, σ), name)`` for a denoiser name of :mod:`deepprior.denoisers` or a callable."""
    if callable(denoiser):
        return denoiser, getattr(denoiser, "name", getattr(denoiser, "__name__", "callable"))
    if denoiser not in DENOISERS:
        raise ValueError(f"unknown denoiser {denoiser!r}; choose from {', '.join(DENOISERS)} "
                         "or pass a callable f(x, sigma)")
    kwargs = {"compute": compute} if denoiser == "dae" else {}
    return get_denoiser(denoiser, **kwargs), denoiser


def conjugate_gradient(apply, rhs: torch.Tensor, x0: torch.Tensor, iters: int) -> torch.Tensor:
    """``iters`` CG steps on ``apply(x) = rhs`` (``apply`` symmetric positive definite),
    from ``x0``; each image of the batch is solved independently."""
    x = x0.clone()
    r = rhs - apply(x)
    p = r.clone()
    dims = tuple(range(1, r.dim()))
    rs = r.square().sum(dims, keepdim=True)
    for _ in range(iters):
        ap = apply(p)
        curv = (p * ap).sum(dims, keepdim=True)
        alpha = torch.where(curv > 0, rs / curv.clamp_min(1e-30), torch.zeros_like(rs))
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = r.square().sum(dims, keepdim=True)
        p = r + torch.where(rs > 0, rs_new / rs.clamp_min(1e-30), torch.zeros_like(rs)) * p
        rs = rs_new
    return x


@register("red", RED_TASKS, "Regularization by Denoising (Romano et al. 2017) with NLM/BM3D/DAE/TV",
          kind="hybrid")
def red(y, operator, *, sigma=None, iters=None, callback=None, reference=None, seed=0,
        device="auto", precision="auto", progress=False, denoiser=None, sigma_f=None, lam=None,
        solver="fixed-point", inner=5, x0=None, **params) -> Result:
    """RED restoration: minimise ``½‖Hx − y‖² + (λ/2)·xᵀ(x − f(x))``.

    Parameters
    ----------
    y : torch.Tensor
        Observation, N×C×h×w float in [0, 1].
    operator : Operator
        ``H`` (any task of :data:`RED_TASKS`).
    sigma : float, optional
        Noise std of y in [0, 1] units; used only where σ_f defaults to it (denoising).
        Estimated from y when needed and not given.
    iters : int, optional
        Outer iterations = denoiser calls (default per task, :data:`RED_PRESETS`).
    denoiser : str or callable, optional
        'nlm', 'bm3d', 'dae' (our DAE, bf16 fast path), 'tv', or ``f(x, sigma) -> x``.
        Default per task (:data:`RED_PRESETS`).
    sigma_f : float, optional
        The denoiser's noise level in **8-bit units** (as DeepRED Table 1: 3, 5); default
        per task (denoising: half the noise level of y).
    lam : float, optional
        RED weight λ (relative to the unweighted data term); default per task.
    solver : {'fixed-point', 'sd'}
        See the module docstring.
    inner : int
        CG steps per fixed-point iteration (ignored when ``H = I``: solved exactly).
    x0 : torch.Tensor, optional
        Starting image (default ``prior.initial_estimate``: y, bicubic, edge-padded, …).

    Returns
    -------
    Result
        History: ``loss`` = E(x) evaluated with the last f(x) (``½‖Hx − y‖² + λ/2 xᵀ(x − f)``)
        and ``grad_norm`` = ‖Hᵀ(Hx − y) + λ(x − f(x))‖/√N, the RED stationarity residual.
    """
    if params:
        raise ValueError(f"red: unknown parameter(s) {sorted(params)}")
    task = check_task("red", operator, RED_TASKS)
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    out_device = torch.as_tensor(y).device
    compute = get_compute(device, precision)
    y, operator, dev = setup(y, operator, compute.device)
    preset = RED_PRESETS[task]
    iters = preset.iters if iters is None else int(iters)
    if iters < 1:
        raise ValueError(f"iters must be ≥ 1, got {iters}")
    lam = float(preset.lam if lam is None else lam)
    if lam <= 0:
        raise ValueError(f"lam must be positive, got {lam}")
    f, f_name = make_denoiser(preset.denoiser if denoiser is None else denoiser, compute)
    if sigma_f is None and preset.sigma_f is None:
        if sigma is None:
            from .prior import estimate_sigma

            sigma = estimate_sigma(y, operator)
        sf = preset.sigma_f_factor * float(sigma)
    else:
        sf = sigma_to_unit(preset.sigma_f if sigma_f is None else float(sigma_f))
    if not 0 <= sf <= 1:
        raise ValueError(f"sigma_f must be in [0, 255] (8-bit units), got {sf * 255:g}")

    x = initial_estimate(operator, y) if x0 is None else torch.as_tensor(x0, dtype=torch.float32).to(dev)
    operator.validate_input_shape(tuple(x.shape))
    identity = type(operator).__name__ == "Identity"
    hty = operator.adjoint(y)
    step = None
    if solver == "sd":
        step = 1.0 / (_operator_norm_sq(operator, tuple(x.shape), seed_everything(seed), dev) + lam)
    n = x[0].numel()
    f_seconds = 0.0
    with Progress(iters, reference=None if reference is None else torch.as_tensor(reference).to(dev),
                  callback=callback, show=progress, desc="red") as prog:
        for t in range(1, iters + 1):
            t0 = time.perf_counter()
            fx = f(x, sf).to(dev, torch.float32)
            f_seconds += time.perf_counter() - t0
            grad = operator.adjoint(operator.forward(x) - y) + lam * (x - fx)
            if solver == "sd":  # DeepRED eq. (12) with the data term
                x = x - step * grad
            elif identity:  # eq. (11) with H = I: exact
                x = (y + lam * fx) / (1 + lam)
            else:  # (HᵀH + λI) x = Hᵀy + λ f(x_j), warm-started CG
                x = conjugate_gradient(lambda v: operator.normal(v) + lam * v, hty + lam * fx, x, inner)
            residual = operator.forward(x) - y
            loss = 0.5 * residual.square().sum() + 0.5 * lam * (x * (x - fx)).sum()
            if prog.log(t, x.clamp(0, 1), float(loss), grad_norm=float(grad.norm()) / n ** 0.5):
                break
    settings = {"method": "red", "denoiser": f_name, "sigma_f": sf * 255, "sigma_f_units": "8-bit",
                "lam": lam, "solver": solver, "inner": int(inner), "iters": iters, "step": step,
                "preset_source": preset.source, "denoiser_seconds": f_seconds, **compute.to_dict()}
    return Result(x.clamp(0, 1).to(out_device), prog.history, settings, interrupted=prog.interrupted)
