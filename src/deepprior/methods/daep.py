"""DAEP — denoising-autoencoder priors: MAP restoration by back-propagating the DAE error.

Bigdeli & Zwicker, VISAPP 2018 (``papers/daep-autoencoding-priors.md``). The prior energy is
the squared length of the DAE's mean-shift vector, ``‖A_ση(I) − I‖²`` (§4.2), and the MAP
estimate minimises eq. 7::

    ‖B − A(I)‖²/σ_d² + γ‖A_ση(I) − I‖²

for any linear degradation ``A`` (eq. 1 with blur, down-sampling, masking or a CFA). Eq. 8
replaces the DAE at σ_η by one at σ_ε = σ_η/√2 fed with a noisy input:
``A_ση(I) − I ≈ 2(A_σε(I + ε) − I)``, ε ~ N(0, σ_ε²), one sample per iteration, so the prior
term is ``4γ‖A_σε(I + ε) − I‖²``. One iteration (Algorithm 1, as in the reference
``DAEPDeblur.m``)::

    ε ~ N(0, σ_ε²);  e = A_σε(I + ε) − I
    prior_grad = J_Aᵀ e − e            # ½∇_I‖e‖², J_A the DAE's Jacobian (one VJP, no matrix)
    data_grad  = c·Aᵀ(A I − B)         # c: sampling scale (prior.sampling_scale)
    w = (4γ/σ_η²) / (4γ/σ_η² + 1/σ_d²)
    g = w·prior_grad + (1 − w)·data_grad
    step = μ·step − α·g ;  I = clip(I + step, 0, 1)

``g`` is Algorithm 1's gradient ``Aᵀ(AI − B)/σ_d² + 4γ(J_Aᵀe − e)`` divided by
``1/σ_d² + 4γ/σ_η²``: the reference code's normalisation (``relative_weight``), which makes
α = 0.1 dimensionless. γ = 6.875/σ_η² (§5), σ_ε = 25, σ_η = 25√2, μ = 0.9, α = 0.1, 300
iterations. When σ_d = 0 (super-resolution) the relative prior weight is w = 1/√t (§5.1).

Our default ``descent='preconditioned'`` (blur operators) replaces ``g`` by
``((1 − w)·c·AᵀA + w·I)⁻¹ g`` and draws ε in antithetic pairs (ε, −ε) — ``prior.descent_aids``;
the fixed points are eq. 7's. Our default ``symmetrize=True`` (every task) evaluates the DAE
on a random flip/rotation of ``I + ε`` each draw (``prior.PriorNoise``): the prior becomes the
DAE's geometric self-ensemble. ``descent='paper', symmetrize=False`` runs Algorithm 1 as published.
"""
from __future__ import annotations

import math

import torch

from ..compute import get_compute
from .base import Progress, Result, register, seed_everything
from .prior import (PriorNoise, check_task, descent_aids, data_gradient, estimate_sigma,
                    gray_view, initial_estimate, lift_gray_to_rgb, linear_sigma_rule,
                    load_prior_network, measurement_count, noise_free_prior_weight,
                    resolve_sigma_dae, sampling_scale, setup)

__all__ = ["daep", "autoencoder_error_gradient", "daep_prior_weight", "deblur_sigma_eps", "DAEP_SIGMA_DAE",
           "DAEP_GAMMA"]

TASKS = ("denoise", "deblur", "sr", "inpaint", "demosaic")

# §4.3/§5: "we trained the autoencoder with σ_ε = 25 (σ_η = 25√2)" (8-bit units).
DAEP_SIGMA_DAE = 25 / 255


def deblur_sigma_eps(sigma_d: float) -> float:
    """Our default σ_ε of the DAE for deblurring, from the noise σ_d ([0, 1] units in and out).

    σ_ε = (16 + 1.5·σ_d) / 255 with σ_d in 8-bit units, clipped to [25, 45]/255: the paper's 25
    (§5) up to σ_d = 6, then 27.5 at 7.65 and 35.1 at 12.75. σ_ε sets both the DAE's smoothing and
    the prior weight (4γ/σ_η², eq. 7–8): a stronger, smoother prior at high noise. Fitted on Levin
    (colour DAE; benchmarks/results/levin-deblur_daep_im1-im3_*_sigmadae*.json, 16 cases each:
    σ_ε = 35 instead of 25 at σ_d = 12.75 gave 27.08 → 27.29 dB); all 32 Levin cases at σ_d =
    7.65 / 12.75: 28.68 / 26.57 → 28.74 / 26.83 dB (levin-deblur_daep_sigma*_colordae.json →
    levin-deblur_daep_v3_sigma*.json; paper 28.95 / 26.87). Below σ_d = 6 the line would go under
    25: that helped Levin at σ_d = 2.55 (σ_ε = 19.8: 32.50 → 32.63 dB, 32 cases) but not the
    held-out colour deblurring set at σ_d = √2 (σ_ε = 18.1: 30.45 → 30.38 dB, 1 of 8 cases better;
    deepred-deblur-color_daep_sigmadae-paper.json → deepred-deblur-color_daep_v3.json), so the
    paper's 25 is the floor. The high-noise part has no held-out check yet.
    """
    return linear_sigma_rule(sigma_d, 16.0, 1.5, 25.0, 45.0)


# §5: "γ = 6.875/σ_η²"; this constant is γ·σ_η² (reference code: params.gamma = 6.875).
DAEP_GAMMA = 6.875
# Below this σ_d an observation counts as noise-free and the 1/√t schedule is used (σ = None).
NOISE_FREE_BELOW = 0.5 / 255


def autoencoder_error_gradient(network, x: torch.Tensor, sigma_dae: float,
                               noise: PriorNoise) -> tuple[torch.Tensor, torch.Tensor]:
    """DAEP Algorithm 1's prior gradient with eq. 8's noisy input, by one vector–Jacobian product.

    With ``ε ~ N(0, σ_ε²)`` drawn by ``noise`` and ``e = A(x + ε) − x``, returns
    ``(J_Aᵀ e − e, e)`` where ``J_A`` is the DAE's Jacobian at ``x + ε``: the gradient of
    ``½‖A(x + ε) − x‖²`` in ``x``. ``J_Aᵀ e`` is one backward pass through the network
    (``torch.autograd.grad`` with ``grad_outputs = e``); the Jacobian is never formed.
    """
    eps = noise(x.shape)
    xin = (x.detach() + eps).requires_grad_(True)
    with torch.enable_grad():
        out = noise.denoise(network, xin, sigma_dae)
        e = (out - x).detach()
        (jte,) = torch.autograd.grad(out, xin, grad_outputs=e)
    return jte - e, e


def daep_prior_weight(sigma_d: float, sigma_dae: float = DAEP_SIGMA_DAE,
                      gamma: float = DAEP_GAMMA) -> float:
    """Relative prior weight ``w = (4γ/σ_η²) / (4γ/σ_η² + 1/σ_d²)`` with σ_η = √2·σ_ε.

    4γ/σ_η² is eq. 7's γ (= ``gamma``/σ_η²) times the 2² of eq. 8; the reference code computes
    ``relative_weight`` exactly so (``params.gamma * 4``). ``sigma_d`` and ``sigma_dae`` in the
    same units.
    """
    sigma_eta2 = 2 * sigma_dae * sigma_dae
    p = 4 * gamma / sigma_eta2
    return p / (p + 1 / (sigma_d * sigma_d))


@register("daep", TASKS, "denoising-autoencoder prior (Bigdeli & Zwicker 2018): MAP by "
          "back-propagating the DAE error", kind="learned")
def daep(y, operator, *, sigma=None, iters=None, callback=None, reference=None, seed=0,
         device="auto", precision="auto", progress=False, weights=None, dae=None, denoiser=None,
         sigma_dae=None, gamma=DAEP_GAMMA, alpha=0.1, mu=0.9, data_scale="auto",
         descent="preconditioned", symmetrize=True, **params) -> Result:
    """Restore ``y = A x + n`` by MAP with the autoencoding prior (DAEP).

    Parameters
    ----------
    y : torch.Tensor
        Observation, N×C×h×w float32 in [0, 1] (C = 1 or 3; N×1×H×W for a Bayer CFA).
    operator : Operator
        Any linear degradation; its exact adjoint gives the data gradient.
    sigma : float, optional
        Degradation noise σ_d in [0, 1] units (8-bit σ / 255). ``0`` (noise-free, e.g.
        super-resolution): relative prior weight 1/√t (§5.1). ``None``: estimated from ``y``
        (``classic._noise_sigma``); an estimate below 0.5/255 counts as noise-free.
    iters : int, optional
        Gradient-descent iterations, default 300 (§5).
    weights : path-like, optional
        DAE weights (``.safetensors``); default: the shipped colour DAE, for gray images too (run
        on the RGB replica, as DAEPDeblur.m; ``prior.GRAY_IMAGE_PRIOR``).
    dae : DAE, optional
        A DAE object instead of ``weights`` (e.g. a tiny random one in tests).
    denoiser : callable, optional
        Any differentiable ``f(x, sigma) -> x̂`` instead of a DAE.
    sigma_dae : float or 'paper', optional
        σ_ε, the DAE's σ and the std of the noise added to its input ([0, 1] units), so σ_η =
        √2·σ_ε. Default for (noisy) deblurring, ours: ``deblur_sigma_eps(σ_d)`` — the paper's
        25/255 up to σ_d = 6/255, 27.5/255 at 7.65/255, 35.1/255 at 12.75/255. Otherwise, and with ``'paper'``: 25/255
        (§5). A fixed-σ DAE imposes its own σ.
    gamma : float
        γ·σ_η², default 6.875 (§5: γ = 6.875/σ_η²).
    alpha, mu : float
        Step size 0.1 and momentum 0.9 (§4.2).
    data_scale : float or 'auto'
        ``c`` in ``c·Aᵀ(Ax − y)``; 'auto': pixels per observed sample (s² for ×s
        super-resolution: DAEPSR.m uses bicubic up-sampling, ≈ s²·Aᵀ, as the adjoint).
    descent : {'preconditioned', 'paper'}
        ``'preconditioned'`` (default, ours): for a ``Blur`` operator the momentum step uses a
        Fourier preconditioner of the data term and antithetic prior-noise pairs
        (``prior.descent_aids``) — same fixed points, about 3× fewer iterations for the same
        PSNR; other operators run the paper's iteration. ``'paper'``: the published update.
    symmetrize : bool
        True (default, ours): each prior gradient evaluates the DAE (and its vector–Jacobian
        product) on one of the 8 flips/rotations of ``I + ε``, drawn at random, mapped back
        (``prior.PriorNoise``). Same cost. False: Algorithm 1 as published.
    callback, reference, seed, device, precision, progress
        As every method (``methods.base``). ``seed`` seeds ε; ``precision`` 'auto' runs the DAE
        forward and its vector–Jacobian product under bf16 autocast where the CPU has bf16
        units (image, momentum and data term stay fp32).

    Returns
    -------
    Result
        The estimate (the operator's input shape) and per-iteration history: ``loss`` = mean
        squared data residual ‖A x − y‖²/M, ``prior`` = mean squared DAE error ‖e‖²/numel(x),
        ``prior_weight`` = w, ``psnr`` with a reference. Settings record every parameter.

    References
    ----------
    .. [1] S. A. Bigdeli and M. Zwicker, "Image restoration using autoencoding priors",
       VISAPP 2018 (arXiv:1703.09964): eq. 7, eq. 8, Algorithm 1, §5, §5.1.
    .. [2] Reference code: github.com/siavashBigdeli/DAEP ``DAEPDeblur.m``, ``DAEPSR.m``.
    """
    task = check_task("daep", operator, TASKS)
    out_device = torch.as_tensor(y).device
    y, operator, dev = setup(y, operator, device)
    compute = get_compute(dev, precision)
    gen = seed_everything(seed)
    iters = 300 if iters is None else int(iters)

    sigma_source = "given"
    if sigma is None:
        sigma, sigma_source = estimate_sigma(y, operator), "estimated"
    sigma = float(sigma)
    noise_free = sigma < NOISE_FREE_BELOW if sigma_source == "estimated" else sigma == 0.0

    x_channels = operator.input_shape(tuple(y.shape))[1]
    net = load_prior_network(method="daep", channels=x_channels, compute=compute, dae=dae,
                             weights=weights, denoiser=denoiser)
    y, lifted = lift_gray_to_rgb(net, y, operator)
    sigma_dae, sigma_dae_rule = resolve_sigma_dae(
        sigma_dae, task == "deblur" and not noise_free and net.conditional, lambda: sigma,
        deblur_sigma_eps, "deblur_sigma_eps")
    s_eps = net.choose_sigma(sigma_dae, DAEP_SIGMA_DAE, "sigma_dae")
    w_fixed = None if noise_free else daep_prior_weight(sigma, s_eps, gamma)
    c_scale = sampling_scale(operator) if data_scale == "auto" else float(data_scale)

    x = initial_estimate(operator, y)
    n_meas = measurement_count(operator, y)
    step = torch.zeros_like(x)
    noise, precond = descent_aids(descent, operator, tuple(x.shape), c_scale, s_eps, gen, dev,
                                  symmetrize=bool(symmetrize))
    ref = None if reference is None else torch.as_tensor(reference, dtype=torch.float32).to(dev)

    with Progress(iters, reference=ref, callback=callback, show=progress, desc="daep") as prog:
        for t in range(1, iters + 1):
            prior_grad, e = autoencoder_error_gradient(net, x, s_eps, noise)
            r = operator.forward(x) - y
            w = noise_free_prior_weight(t) if noise_free else w_fixed
            g = w * prior_grad + (1 - w) * data_gradient(operator, r, c_scale)
            if precond is not None:
                g = precond(g, 1 - w, w)
            step = mu * step - alpha * g
            x = (x + step).clamp(0, 1)
            if prog.log(t, gray_view(x, lifted), float(r.pow(2).sum()) / n_meas,
                        prior=float(e.pow(2).mean()), prior_weight=w):
                break

    settings = {
        "method": "daep", "task": task, "iters": iters, "alpha": float(alpha), "mu": float(mu),
        "descent": "paper" if precond is None else "preconditioned", "symmetrize": bool(symmetrize),
        "sigma": sigma, "sigma_source": sigma_source, "noise_free": noise_free,
        "prior_weight": "1/sqrt(t)" if noise_free else w_fixed,
        "sigma_dae": s_eps, "sigma_dae_rule": sigma_dae_rule, "sigma_eta": math.sqrt(2) * s_eps, "gamma": float(gamma),
        "gamma_definition": "gamma / sigma_eta^2 is eq. 7's γ; the prior term carries 4γ (eq. 8)",
        "data_scale": c_scale, "measurements": n_meas, "init": "prior.initial_estimate",
        "prior_network": net.description, "precision": compute.precision, "device": str(dev),
        "seed": seed, "units": "sigma values in [0, 1] units (8-bit sigma / 255)",
    }
    if params:
        settings["ignored_params"] = sorted(params)
    x = gray_view(x, lifted)
    settings["lifted_gray_to_rgb"] = lifted
    return Result(x.to(out_device), prog.history, settings, interrupted=prog.interrupted)
