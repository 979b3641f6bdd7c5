"""Regularization by Denoising (RED) for any linear operator, with any denoiser.

Romano, Elad & Milanfar (2017) regularise an inverse problem with a denoiser ``f``::

    E(x) = ‖Hx − y‖² / (2σ²) + (λ/2)·xᵀ(x − f(x)),        ∇ρ(x) = x − f(x)

(the prior's gradient needs no derivative of ``f`` under RED's conditions: local homogeneity,
symmetric Jacobian). λ is RED's, in its units: σ in 8-bit units (images in [0, 255]), so the
iteration solves ``½‖Hx − y‖² + (λ_eff/2)·xᵀ(x − f(x))`` with ``λ_eff = λ·σ₈²`` — the
DeepRED objective (eq. 4) without the network, whose λ is this λ_eff. The noise level σ₈ of y
is given or estimated; noise-free data (super-resolution) use σ₈ = 1 (:data:`SIGMA8_FLOOR`).
Weighting by σ² is what makes one λ work at every noise level: with a fixed unweighted λ,
RED with our DAE fell to 20–22 dB on Levin at σ = 2.55 (noise amplified by the near-zeros
of motion blurs) where λ·σ² gives the data term its proper weight.
``‖Hx − y‖²`` is summed over the observed entries (a ``Mask``'s zeros carry no data).

Solvers (RED §5):

* ``'fixed-point'`` (default): zero the gradient with ``f`` frozen at the current iterate,
  ``(HᵀH + λ_eff·I)·x_{j+1} = Hᵀy + λ_eff·f(x_j)`` — the x-update of DeepRED eq. (9)–(11)
  with the data term in place of the ADMM penalty — solved by ``inner`` conjugate-gradient
  steps warm-started at ``x_j`` (one exact step when ``H = I``).
* ``'sd'``: steepest descent ``x_{j+1} = x_j − c·[Hᵀ(Hx_j − y) + λ_eff(x_j − f(x_j))]``
  (DeepRED eq. 12 with the data term), ``c = 1/(‖H‖² + λ_eff)``.

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
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..compute import get_compute
from ..denoisers import DENOISERS, RandomSymmetry, get_denoiser
from ..noise import sigma_to_unit
from ..operators import operator_norm_sq
from .base import Progress, Result, register, seed_everything
from .prior import check_task, initial_estimate, setup

__all__ = ["red", "RED_PRESETS", "make_denoiser", "conjugate_gradient", "SOLVERS", "default_denoiser"]

SOLVERS = ("fixed-point", "sd")
RED_TASKS = ("denoise", "deblur", "sr", "inpaint", "demosaic")


@dataclass(frozen=True)
class REDPreset:
    """Denoiser, its σ_f (8-bit units; None: ``sigma_f_factor`` × the noise level of y), λ and
    outer iterations (``denoiser_iters``: a different count for the named denoisers)."""

    denoiser: str
    sigma_f: float | None
    lam: float
    iters: int
    source: str
    sigma_f_factor: float = 1.0
    denoiser_iters: dict[str, int] = field(default_factory=dict)

    def iterations(self, denoiser_name: str) -> int:
        """Outer iterations for this denoiser."""
        return self.denoiser_iters.get(denoiser_name, self.iters)


# Per task, λ in RED's units (data term / σ₈²); ours unless a source is given, chosen by sweeps
# on small crops (the values below are λ_eff = λ·σ₈² of those sweeps, converted).
# denoise (σ = 25; 128² crops of skimage's astronaut, coffee and chelsea): RED's iterations move
#   *away* from its denoiser. For every σ_f ∈ {σ/2, 3σ/4, σ} and λ_eff ∈ {0.5 … 32} the crops'
#   PSNR peaked within the first iterations and fell steadily after, with or without skimage's
#   variance subtraction, symmetrized or not; λ_eff = 32 at σ_f = 3σ/4 was best, at iteration 1.
#   NLM's fixed points are over-smoothed (on CBM3D with λ_eff = 16: 29.32 / 27.33 / 22.98 dB at
#   1 / 3 / 30 iterations, deepred-denoise-cbm3d9_red-sf18.75-lam0.0256_*it.json). So the preset
#   stops at the first iteration, x₁ = (y + λ_eff·f(y))/(1 + λ_eff) with σ_f = 3σ/4 and
#   λ_eff = 32 (λ = 32/25²): on CBM3D that gives 29.49 dB, above one NLM pass at σ (29.34)
#   and the paper's RED (29.3) (deepred-denoise-cbm3d9_red.json); run to its fixed point, the
#   old preset (σ_f = σ/2, λ_eff = 2, 30 iterations) gave 26.97. A near-MMSE denoiser gains
#   nothing: with our DAE 29.10 against 30.93 for the DAE alone.
# deblur (128² butterfly crop, 9×9 uniform blur, σ = √2, 200 iterations, PSNR on Y; σ_f ∈ {3, 5,
#   10}, λ_eff ∈ {0.005 … 1}): DAE σ_f = 3, λ_eff = 0.05 (λ = 0.025) → 29.41 dB; NLM σ_f = 5,
#   λ_eff = 0.1 → 27.83 dB. (RED's own deblurring λ is 0.02, with TNRD.) On the 8 cases of
#   deepred-deblur-color the DAE row without symmetrization peaked near 100 iterations (30.21 dB
#   mean at 100, 30.11 at 200: the CG steps slowly amplified the DAE's orientation-specific
#   artefacts). With symmetrize=True it keeps improving: 30.77 at 100, 31.19 at 200, 31.22 at
#   300 (deepred-deblur-color_red-dae_symmetrized_300it.json), hence 200 iterations.
#   On Levin (gray, 'valid' boundary, motion blurs) this preset peaks early: 32.25 dB at 50
#   iterations, 32.03 at 200 (σ = 2.55, levin-deblur_red_sigma2.55_v2.json). A sharper denoiser
#   with the same λ·σ_f² (σ_f = 1.5, λ = 0.1) does not decay there: 32.54 at 200 (…_sf1.5-lam0.1
#   .json), but it fills in what the blur removed more slowly and loses on the circular box and
#   Gaussian blurs (colour 29.86 vs 31.36; Set5 gray uniform 31.07 vs 31.43) — hence a
#   documented option, not the default.
#   inpaint/demosaic reuse λ and σ_f with 100 iterations.
# sr: DeepRED Table 1's regulariser (BM3D, σ_f = 5, λ = 0.05) on noise-free data (σ₈ = 1), as
#   the paper's "RED [FP-BM3D]"; the paper gives no iteration count. At 100 iterations the PSNR
#   was still rising on every Set5 case (deepred-sr-set5_red-bm3dlc.json: +0.05 to +0.22 dB from
#   50 to 100); on butterfly 300 iterations add 0.39 dB at ×4 and 0.15 at ×8
#   (deepred-sr-set5_red-bm3dlc-300it_butterfly.json: 23.56 → 23.95, 18.58 → 18.73), hence 300
#   with BM3D: Set5 ×4 / ×8 30.21 / 25.42 dB against the paper's 30.23 / 25.56
#   (deepred-sr-set5_red-bm3dlc-300it.json). Our DAE instead peaks by 50–100 iterations and
#   then declines slowly (deepred-sr-set5_red-dae-300it.json), so other denoisers keep 100.
RED_PRESETS = {
    "denoise": REDPreset("nlm", None, 32 / 25 ** 2, 1, "ours: sweep on three 128² crops, σ = 25 (see source)",
                         sigma_f_factor=0.75),
    "deblur": REDPreset("dae", 3.0, 0.025, 200, "ours: sweep on a 128² crop (see source)"),
    "sr": REDPreset("bm3d", 5.0, 0.05, 100, "DeepRED Table 1 SISR regulariser (BM3D, σ_f 5, λ 0.05)",
                     denoiser_iters={"bm3d": 300}),
    "inpaint": REDPreset("dae", 3.0, 0.025, 100, "the deblurring row (ours)"),
    "demosaic": REDPreset("dae", 3.0, 0.025, 100, "the deblurring row (ours)"),
}
# σ₈ used in λ_eff = λ·σ₈² for noise-free observations (σ = 0)
SIGMA8_FLOOR = 1.0


def make_denoiser(denoiser, compute, weights=None, options=None) -> tuple[Callable, str]:
    """``(f(x, σ), name)`` for a denoiser name of :mod:`deepprior.denoisers` or a callable;
    ``weights``: DAE weights file for the 'dae' denoiser (default: the shipped ones);
    ``options``: the named denoiser's constructor options (e.g. ``{"h_factor": 0.6}`` for NLM)."""
    if weights is not None and denoiser != "dae":
        raise ValueError(f"weights= is for the 'dae' denoiser, not {denoiser!r}")
    if options is not None and not isinstance(options, dict):
        raise ValueError(f"denoiser_options must be a dict of option → value, got {options!r}")
    if callable(denoiser):
        if options:
            raise ValueError("denoiser_options are for a named denoiser, not a callable")
        return denoiser, getattr(denoiser, "name", getattr(denoiser, "__name__", "callable"))
    if denoiser not in DENOISERS:
        raise ValueError(f"unknown denoiser {denoiser!r}; choose from {', '.join(DENOISERS)} "
                         "or pass a callable f(x, sigma)")
    kwargs = {"compute": compute, "weights": weights} if denoiser == "dae" else {}
    return get_denoiser(denoiser, **kwargs, **(options or {})), denoiser


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


def default_denoiser(task: str) -> str | None:
    """f when ``denoiser=`` is not given: the task's preset's (:data:`RED_PRESETS`)."""
    return RED_PRESETS[task].denoiser if task in RED_PRESETS else None


@register("red", RED_TASKS, "Regularization by Denoising (Romano et al. 2017) with NLM/BM3D/DAE/TV",
          kind="hybrid")
def red(y, operator, *, sigma=None, iters=None, callback=None, reference=None, seed=0,
        device="auto", precision="auto", progress=False, denoiser=None, sigma_f=None, lam=None,
        solver="fixed-point", inner=5, x0=None, symmetrize=True, weights=None,
        denoiser_options=None, **params) -> Result:
    """RED restoration: minimise ``‖Hx − y‖²/(2σ²) + (λ/2)·xᵀ(x − f(x))`` (σ in 8-bit units).

    Parameters
    ----------
    y : torch.Tensor
        Observation, N×C×h×w float in [0, 1].
    operator : Operator
        ``H`` (any task of :data:`RED_TASKS`).
    sigma : float, optional
        Noise std of y in [0, 1] units: sets λ_eff = λ·(255σ)² (and σ_f when denoising).
        Estimated from y when not given; 0 (noise-free) uses σ₈ = :data:`SIGMA8_FLOOR`.
    iters : int, optional
        Outer iterations = denoiser calls (default per task and denoiser, :data:`RED_PRESETS`).
    denoiser : str or callable, optional
        'nlm', 'bm3d', 'dae' (our DAE, bf16 fast path), 'tv', or ``f(x, sigma) -> x``.
        Default per task (:data:`RED_PRESETS`).
    weights : path-like, optional
        DAE weights (``.safetensors``) for the 'dae' denoiser; default: the shipped ones.
    denoiser_options : dict, optional
        Constructor options of the named denoiser (:mod:`deepprior.denoisers`), e.g.
        ``{"h_factor": 0.6, "per_channel": True}`` for NLM (CLI: ``--param
        denoiser_options='{"h_factor": 0.6}'``).
    sigma_f : float, optional
        The denoiser's noise level in **8-bit units** (as DeepRED Table 1: 3, 5); default
        per task (denoising: ¾ of the noise level of y).
    lam : float, optional
        RED weight λ in RED's units (data term divided by σ₈²); default per task.
    solver : {'fixed-point', 'sd'}
        See the module docstring.
    inner : int
        CG steps per fixed-point iteration (ignored when ``H = I``: solved exactly).
    x0 : torch.Tensor, optional
        Starting image (default ``prior.initial_estimate``: y, bicubic, edge-padded, …).
    symmetrize : bool
        True (default, ours): each call evaluates the denoiser on a random flip/rotation of x
        and maps the result back (``denoisers.RandomSymmetry``, seeded by ``seed``), so over
        the iterations f becomes its 8-fold self-ensemble at no extra cost. False: RED as
        published (one fixed orientation).

    Returns
    -------
    Result
        History: ``loss`` = ½‖Hx − y‖² + λ_eff/2·xᵀ(x − f) with the last f(x) (E(x)·σ₈²/255²),
        and ``grad_norm`` = ‖Hᵀ(Hx − y) + λ_eff(x − f(x))‖/√N, the RED stationarity residual.
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
    lam = float(preset.lam if lam is None else lam)
    if lam <= 0:
        raise ValueError(f"lam must be positive, got {lam}")
    f, f_name = make_denoiser(preset.denoiser if denoiser is None else denoiser, compute, weights,
                              denoiser_options)
    iters = preset.iterations(f_name) if iters is None else int(iters)
    if iters < 1:
        raise ValueError(f"iters must be ≥ 1, got {iters}")
    if symmetrize:
        f = RandomSymmetry(f, seed_everything(seed))
    sigma_source = "given"
    if sigma is None:
        from .prior import estimate_sigma

        sigma, sigma_source = estimate_sigma(y, operator), "estimated"
    sigma = float(sigma)
    if not 0 <= sigma <= 1:
        raise ValueError(f"sigma must be in [0, 1] units, got {sigma:g}")
    sigma8 = max(255 * sigma, SIGMA8_FLOOR)
    lam_eff = lam * sigma8 ** 2
    if sigma_f is None and preset.sigma_f is None:
        sf = preset.sigma_f_factor * sigma
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
        step = 1.0 / (operator_norm_sq(operator, tuple(x.shape), seed_everything(seed), dev) + lam_eff)
    n = x[0].numel()
    f_seconds = 0.0
    with Progress(iters, reference=None if reference is None else torch.as_tensor(reference).to(dev),
                  callback=callback, show=progress, desc="red") as prog:
        for t in range(1, iters + 1):
            t0 = time.perf_counter()
            fx = f(x, sf).to(dev, torch.float32)
            f_seconds += time.perf_counter() - t0
            grad = operator.adjoint(operator.forward(x) - y) + lam_eff * (x - fx)
            if solver == "sd":  # DeepRED eq. (12) with the data term
                x = x - step * grad
            elif identity:  # eq. (11) with H = I: exact
                x = (y + lam_eff * fx) / (1 + lam_eff)
            else:  # (HᵀH + λI) x = Hᵀy + λ f(x_j), warm-started CG
                x = conjugate_gradient(lambda v: operator.normal(v) + lam_eff * v, hty + lam_eff * fx, x, inner)
            residual = operator.forward(x) - y
            loss = 0.5 * residual.square().sum() + 0.5 * lam_eff * (x * (x - fx)).sum()
            if prog.log(t, x.clamp(0, 1), float(loss), grad_norm=float(grad.norm()) / n ** 0.5):
                break
    settings = {"method": "red", "denoiser": f_name, "denoiser_options": denoiser_options, "sigma_f": sf * 255, "sigma_f_units": "8-bit",
                "lam": lam, "lam_eff": lam_eff, "sigma": sigma, "sigma_source": sigma_source,
                "sigma8_for_lambda": sigma8, "solver": solver, "inner": int(inner), "iters": iters, "step": step,
                "preset_source": preset.source, "denoiser_seconds": f_seconds,
                "symmetrize": bool(symmetrize), "seed": seed, **compute.to_dict()}
    return Result(x.clamp(0, 1).to(out_device), prog.history, settings, interrupted=prog.interrupted)
