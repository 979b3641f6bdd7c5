"""DMSP — deep mean-shift priors: Bayes-risk restoration by stochastic gradient descent.

Bigdeli, Jin, Favaro & Zwicker, NIPS 2017 (``papers/dmsp-deep-mean-shift-priors.md``). The
prior is the log of the Gaussian-smoothed image density; its gradient is the DAE's mean-shift
vector (eq. 14), evaluated at a noisy copy of the estimate (eq. 19) — one DAE forward pass per
iteration, no back-propagation. Modes (Table 1):

* **NB** (non-blind, σ_n known), **NA** (noise-adaptive: σ_n re-estimated every step, eq. 21-22),
* **NA+KE** (noise- and kernel-blind, §4: the kernel by the joint descent of Table 1, or — our
  default — estimated first, coarse to fine, see ``kernel_estimation``),
* σ_n = 0 (super-resolution, noise-free data): prior weight decreased towards zero (§5.3),
* demosaicking: two stages with σ_n = 2.5 then 1 (8-bit) and a DAE at σ₁ = 3 (§5.4).

One iteration (the reference ``DMSPDeblur.m``, with the weights written as in the paper)::

    η ~ N(0, σ₁²)                      # σ₁ = σ₂ = σ/√2, the DAE's own σ (§3.3)
    prior_grad = x − r_σ₁(x + η)       # = σ₁²·(−∇prior_sL), eq. 19 with σ² = 2σ₁²
    data_grad  = c·Kᵀ(K x − y)         # c: sampling scale (prior.sampling_scale)
    w = λ / (λ + 1/σ₁²)                # λ = 1/σ_n² (NB) or λ_t (NA, eq. 22)
    g = w·data_grad + (1 − w)·prior_grad
    step = μ·step − α·g ;  x = clip(x + step, 0, 1)     # eq. 20

``g`` is the paper's gradient ``λ·Kᵀ(Kx−y) − ∇prior_sL`` divided by ``λ + 1/σ₁²``: the reference
code's normalisation, which makes α = 0.1 a dimensionless step in any unit system.

Our default ``descent='preconditioned'`` (blur operators) replaces ``g`` by
``(w·c·KᵀK + (1 − w)·I)⁻¹ g`` and draws η in antithetic pairs (η, −η) — ``prior.descent_aids``.
The fixed points are the paper's; the frequencies the blur nearly removes, which eq. 20 moves
at rates ∝ |K̂|², converge as fast as the others. Our default ``symmetrize=True`` (every task)
evaluates the DAE on a random flip/rotation of ``x + η`` each draw (``prior.PriorNoise``), which
averages the prior over the 8 symmetries of the image plane. ``descent='paper',
symmetrize=False`` runs eq. 19–20 as published.
"""
from __future__ import annotations

import math

import torch

from ..compute import get_compute
from .kernel_estimation import estimate_kernel
from .base import Progress, Result, register, seed_everything
from .prior import (PriorNoise, blur_objective_gradient, check_task, data_gradient, descent_aids,
                    estimate_sigma, find_blur, gray_view, initial_estimate, initial_kernel, kernel_noise_trace,
                    lift_gray_to_rgb, linear_sigma_rule, load_prior_network, measurement_count,
                    noise_free_prior_weight, noise_trace, project_kernel, resolve_sigma_dae,
                    sampling_scale, setup)

__all__ = ["dmsp", "mean_shift_gradient", "noise_adaptive_lambda", "kernel_step",
           "deblur_sigma_dae", "DMSP_SIGMA_DAE", "DMSP_DEMOSAIC_SIGMA_DAE", "DMSP_DEMOSAIC_STAGES"]

TASKS = ("denoise", "deblur", "sr", "inpaint", "demosaic")

# §5: "σ₁ = 11 ... for all our deblurring and super-resolution experiments" (8-bit units).
DMSP_SIGMA_DAE = 11 / 255


def deblur_sigma_dae(sigma_n: float) -> float:
    """Our default σ₁ of the DAE for deblurring, from the noise σ_n ([0, 1] units in and out).

    σ₁ = (7 + 0.75·σ_n) / 255 with σ_n in 8-bit units, clipped to [11, 20]/255: the paper's 11
    (§5) up to σ_n ≈ 5.3, then 12.7 at σ_n = 7.65 and 14.7 at 10.2. A larger σ₁ smooths more
    where the noise is strong. Fitted on Levin NA with our gray DAE
    (benchmarks/results/levin-deblur_dmsp-na_im*_sigmadae*.json, 16 cases per value): at σ_n = 10.2,
    σ₁ = 11 / 13 / 15 gave 28.23 / 28.41 / 28.46 dB. Checked on the held-out Berkeley set at
    σ_n = 10.2: 22.31 dB with σ₁ = 11, 22.62 with the rule (better in all 50 cases)
    (berkeley-deblur_dmsp-na_sigmadae-paper_sigma10.2.json →
    berkeley-deblur_dmsp-na_v3_sigma7.65-10.2.json); at σ_n = 7.65 on half of its images, 24.62 →
    24.77 dB (better in all 25 cases, …_sigmadae-paper_sigma7.65_b.json). Below σ_n ≈ 5.3 the
    line would go under 11: that helped Levin (σ₁ = 8.9 at σ_n = 2.55: 32.43 → 32.56 dB, 32 cases,
    levin-deblur_dmsp-na_v2_*.json → levin-deblur_dmsp-na_v3.json) but not the held-out Berkeley
    set (25.54 → 25.45 dB, 50 cases; 7 of 50 better, berkeley-deblur_dmsp-na_v2.json →
    berkeley-deblur_dmsp-na_v3_sigma2.55-5.1.json), so the paper's 11 is the floor.
    """
    return linear_sigma_rule(sigma_n, 7.0, 0.75, 11.0, 20.0)


# §5.4: a DAE "with σ/√2 = 3" for the (down-sampled, smoother) demosaicking data.
DMSP_DEMOSAIC_SIGMA_DAE = 3 / 255
# §5.4: "initial optimization with σ_n = 2.5 and then ... σ_n = 1" (8-bit units); fraction of
# the iterations spent in each stage is ours (the paper gives none): one third, two thirds.
DMSP_DEMOSAIC_STAGES = ((2.5 / 255, 1 / 3), (1.0 / 255, 2 / 3))


def mean_shift_gradient(network, x: torch.Tensor, sigma_dae: float, noise: PriorNoise) -> torch.Tensor:
    """``x − r_σ₁(x + η)`` with ``η ~ N(0, σ₁²)`` drawn by ``noise`` (DMSP eq. 19).

    The stochastic prior gradient scaled by σ₁²: eq. 19 gives ``∇prior_sL = (2/σ²)(r(x+η) − x)``
    for the prior we maximise, and σ² = 2σ₁² (§3.3, σ₁ = σ₂ = σ/√2), so the descent direction's
    prior part ``−∇prior_sL`` is this residual divided by σ₁². One DAE forward pass, no
    gradient through the network.
    """
    with torch.no_grad():
        return x - noise.denoise(network, x + noise(x.shape), sigma_dae)


def noise_adaptive_lambda(residual_sq: float, measurements: int, sigma2: float,
                          trace: float) -> float:
    """λ_t = N / (‖y − K x‖² + σ²·tr(KKᵀ)) — DMSP eq. 21-22 (Table 1, NA).

    ``1/λ_t`` is eq. 21's maximum-likelihood noise variance σ_n². For a blur tr(KKᵀ) = M‖k‖²
    (eq. 9's ``M σ² |k|²``); N = M = the number of measurements (``numel(degraded)`` in the
    reference code); σ² = 2σ₁² is the prior's total smoothing variance.
    """
    return float(measurements) / (float(residual_sq) + sigma2 * float(trace))


def kernel_step(blur, kernel: torch.Tensor, velocity: torch.Tensor, x: torch.Tensor,
                y: torch.Tensor, sigma2: float, alpha_k: float, mu_k: float):
    """One KE update of DMSP Table 1 (steps 4–6) plus the §4 projection.

    Step 4's gradient ``v = λ_t[xᵀ(Kx − y) + Mσ²k]`` (of eq. 22 in k) is preconditioned by the
    mean diagonal of its Hessian, ``λ_t(‖x‖²_valid + Mσ²)`` — our choice: the paper gives no
    scale for v, and with this one the effective step α_k/(1 − μ_k) = 0.005/0.005 = 1 of
    §5.2's parameters is a unit Newton-like step, as α/(1 − μ) = 1 is for the image. The step is
    then projected onto Σk = 0 (the tangent of the constraint ‖k‖₁ = 1), and the new kernel
    onto {k ≥ 0, Σk = 1}.

    Returns ``(kernel, velocity, gradient)``.
    """
    g, _ = blur_objective_gradient(blur, kernel, x, y, sigma2)
    m = math.prod(blur.output_shape(tuple(x.shape)))
    s = float(x.detach().pow(2).sum()) * m / x.numel()
    g = g / (s + m * sigma2)
    g = g - g.mean()
    velocity = mu_k * velocity - alpha_k * g
    return project_kernel(kernel + velocity), velocity, g


def _with_kernel(operator, blur, kernel):
    """The blur ``operator`` with its kernel replaced."""
    from ..operators import Blur

    return Blur(kernel, blur.boundary, blur.method)


@register("dmsp", TASKS, "deep mean-shift prior (Bigdeli et al. NIPS 2017): Bayes risk, "
          "noise- and kernel-blind modes", kind="learned")
def dmsp(y, operator, *, sigma=None, iters=None, callback=None, reference=None, seed=0,
         device="auto", precision="auto", progress=False, weights=None, dae=None, denoiser=None,
         noise_blind=False, kernel_blind=False, kernel_size=None, kernel_init="gaussian",
         kernel_init_std=None, kernel_estimator="l0", kernel_params=None, sigma_dae=None, alpha=None, mu=None, alpha_k=0.005, mu_k=0.995,
         stages=None, data_scale="auto", x0=None, descent="preconditioned", symmetrize=True,
         **params) -> Result:
    """Restore ``y = A x + n`` with the deep mean-shift prior (DMSP).

    Parameters
    ----------
    y : torch.Tensor
        Observation, N×C×h×w float32 in [0, 1] (C = 1 or 3; N×1×H×W for a Bayer CFA).
    operator : Operator
        Any linear degradation (``Identity``, ``Blur``, ``Downsample``, ``Compose``, ``Mask``,
        ``Mosaic``); its exact adjoint gives the data gradient.
    sigma : float, optional
        Noise σ_n in [0, 1] units (8-bit σ / 255). ``> 0``: non-blind (NB); ``0``: noise-free,
        prior weight 1/√t (§5.3); ``None``: noise-adaptive (NA, eq. 21–22), which needs no σ_n —
        except demosaicking, where None and 0 select the two stages of §5.4.
    iters : int, optional
        Iterations; default 300 (§5), 1000 for the joint kernel-blind descent (§5.2).
    weights : path-like, optional
        DAE weights (``.safetensors``); default: the shipped DAE for the image's channels.
    dae : DAE, optional
        A DAE object instead of ``weights`` (e.g. a tiny random one in tests).
    denoiser : callable, optional
        Any ``f(x, sigma) -> x̂`` instead of a DAE (DMSP only evaluates it forward).
    noise_blind : bool
        Noise-adaptive mode (NA) even when ``sigma`` is given (then ``sigma`` is ignored).
    kernel_blind : bool
        Noise- and kernel-blind (NA+KE, §4): the operator must be a ``Blur``; only its kernel's
        size and its boundary are used unless ``kernel_init='operator'``. ``Result.extras['kernel']``
        is the estimate (NumPy 2-D, MATLAB orientation, sums to 1).
    kernel_estimator : {'l0', 'joint'}
        Kernel-blind: ``'l0'`` (default) estimates the kernel first, coarse to fine with an L0
        gradient prior (``kernel_estimation.estimate_kernel``, options in ``kernel_params``),
        then restores the image NA non-blind with it (300 iterations, α = 0.1, μ = 0.9).
        ``'joint'`` is the paper's Table 1 KE descent interleaved with the image steps (1000
        iterations). 'l0' is the default because the joint descent does not recover Levin's
        kernels (see the ``kernel_estimation`` module docstring for the measurements).
    kernel_params : dict, optional
        Keyword options of ``estimate_kernel`` (``lam``, ``gamma``, ``inner``, ...).
    kernel_size : int, optional
        Kernel-blind: size of the estimated kernel (default: the operator's kernel size). With
        a 'valid' blur it must equal the operator's, since it fixes the image size.
    kernel_init : {'gaussian', 'delta', 'operator'}
        Kernel-blind ('joint'; 'operator' also for 'l0', which then skips the estimate) start: a small centred Gaussian (default; std ``kernel_init_std`` or
        max(1, size/10) px), the delta, or the operator's own kernel.
    sigma_dae : float or 'paper', optional
        σ₁ of the DAE = σ₂ of the noise added before it ([0, 1] units). Default for deblurring
        (NB and NA, ours): ``deblur_sigma_dae(σ_n)`` with σ_n given (NB) or estimated from ``y``
        (NA) — 11/255 up to σ_n ≈ 5.3/255, 12.7/255 at 7.65/255, 14.7/255 at 10.2/255. Otherwise, and with
        ``'paper'``: 11/255 (§5), 3/255 for demosaicking (§5.4). A fixed-σ DAE imposes its own σ.
    alpha, mu : float, optional
        Image step size and momentum (eq. 20): 0.1 and 0.9 (§5); 0.3 and 0.7 for the joint
        kernel-blind descent (§5.2).
    alpha_k, mu_k : float
        Joint kernel step size and momentum: 0.005 and 0.995 (§5.2).
    stages : sequence of (sigma_n, fraction), optional
        Run successive NB stages with these σ_n ([0, 1] units) for these fractions of the
        iterations (default for demosaicking: ((2.5/255, 1/3), (1/255, 2/3))).
    data_scale : float or 'auto'
        ``c`` in ``c·Aᵀ(Ax − y)``; 'auto' = pixels per observed sample (see
        ``prior.sampling_scale``; s² for ×s super-resolution, as DMSP-TF2 and DAEPSR.m).
    x0 : torch.Tensor, optional
        Starting image (the operator's input shape); default ``prior.initial_estimate``.
    descent : {'preconditioned', 'paper'}
        ``'preconditioned'`` (default, ours): for a ``Blur`` operator the momentum step uses a
        Fourier preconditioner of the data term and antithetic prior-noise pairs
        (``prior.descent_aids``) — same fixed points, about 3× fewer iterations for the same
        PSNR; other operators run the paper's iteration. ``'paper'``: the published update.
        The joint kernel-blind descent always runs the paper's update (its kernel changes).
    symmetrize : bool
        True (default, ours): each prior gradient evaluates the DAE on one of the 8
        flips/rotations of ``x + η``, drawn at random, and maps the result back; over the
        iterations the prior becomes the DAE's geometric self-ensemble (``prior.PriorNoise``).
        Same cost; +0.2 to +0.6 dB in our benchmarks (Levin, Set5, colour deblurring,
        demosaicking). False: the paper's eq. 19.
    callback, reference, seed, device, precision, progress
        As every method (``methods.base``). ``seed`` seeds the noise draws η; ``precision``
        'auto' runs the DAE in bf16 where the CPU has bf16 units (images stay fp32).

    Returns
    -------
    Result
        The estimate (image space, the operator's input shape), the history (``loss`` =
        mean squared data residual; ``lambda`` = data weight λ_t; ``psnr`` with a reference),
        every setting, and ``extras``: ``sigma_n`` (NA: final √(1/λ_t), [0, 1] units),
        ``kernel`` (KE).

    References
    ----------
    .. [1] S. A. Bigdeli, M. Jin, P. Favaro and M. Zwicker, "Deep mean-shift priors for image
       restoration", NIPS 2017: eq. 19 (prior gradient), eq. 20 (momentum descent), eq. 21–22
       and Table 1 (NA, KE), §5 (parameters).
    .. [2] Reference code: github.com/siavashBigdeli/DMSP ``DMSPDeblur.m``; DMSP-TF2
       ``DMSPRestore.py`` (sub-sampling).
    """
    task = check_task("dmsp", operator, TASKS)
    out_device = torch.as_tensor(y).device
    y, operator, dev = setup(y, operator, device)
    compute = get_compute(dev, precision)
    gen = seed_everything(seed)

    blur = find_blur(operator)
    kernel = None
    if kernel_estimator not in ("l0", "joint"):
        raise ValueError(f"kernel_estimator must be 'l0' or 'joint', got {kernel_estimator!r}")
    estimated = kernel_blind and kernel_estimator == "l0"
    if kernel_blind:
        if blur is None or blur is not operator:
            raise ValueError("kernel_blind needs a Blur operator (task 'deblur')")
        shape = tuple(blur.kernel.shape)
        if kernel_size is not None:
            ks = (int(kernel_size),) * 2 if isinstance(kernel_size, (int, float)) else tuple(kernel_size)
            if ks != shape and blur.boundary == "valid":
                raise ValueError(f"kernel_size {ks} differs from the operator's kernel {shape}; with a "
                                 "'valid' blur the kernel size fixes the image size — build the operator "
                                 "with a kernel of that size")
            shape = ks
        if kernel_init == "operator":
            kernel = project_kernel(blur.kernel.detach().to(dev, torch.float32))
        elif estimated:
            kernel = estimate_kernel(y, shape, **(kernel_params or {})).to(dev)
        else:
            kernel = initial_kernel(shape, kernel_init, kernel_init_std, torch.float32, dev)
        operator = _with_kernel(operator, blur, kernel)
        blur = find_blur(operator)
        noise_blind = True
    joint = kernel_blind and not estimated  # Table 1 KE steps inside the loop

    iters = (1000 if joint else 300) if iters is None else int(iters)
    alpha = (0.3 if joint else 0.1) if alpha is None else float(alpha)
    mu = (0.7 if joint else 0.9) if mu is None else float(mu)

    # --- the noise model: one or several stages of (mode, σ_n)
    if noise_blind:
        plan = [("NA", None, iters)]
    elif stages is not None or (task == "demosaic" and not sigma):
        stages = DMSP_DEMOSAIC_STAGES if stages is None else tuple(tuple(s) for s in stages)
        counts = [int(round(f * iters)) for _, f in stages]
        counts[-1] = iters - sum(counts[:-1])
        plan = [("NB", float(s), n) for (s, _), n in zip(stages, counts) if n > 0]
    elif sigma is None:
        plan = [("NA", None, iters)]
    elif float(sigma) == 0.0:
        plan = [("noise-free", 0.0, iters)]
    else:
        plan = [("NB", float(sigma), iters)]
    modes = [m for m, _, _ in plan]
    mode = "NA+KE" if kernel_blind else ("+".join(dict.fromkeys(modes)))

    c = y.shape[1]
    x_channels = operator.input_shape(tuple(y.shape))[1]
    net = load_prior_network(method="dmsp", channels=x_channels, compute=compute, dae=dae,
                             weights=weights, denoiser=denoiser)
    y, lifted = lift_gray_to_rgb(net, y, operator)
    # our default for deblurring: σ₁ from σ_n (given in NB, estimated from y in NA mode)
    sigma_dae, sigma_dae_rule = resolve_sigma_dae(
        sigma_dae, task == "deblur" and plan[0][0] in ("NA", "NB") and net.conditional,
        lambda: plan[0][1] if plan[0][0] == "NB" else estimate_sigma(y, operator),
        deblur_sigma_dae, "deblur_sigma_dae")
    s1 = net.choose_sigma(sigma_dae, DMSP_DEMOSAIC_SIGMA_DAE if task == "demosaic" else DMSP_SIGMA_DAE,
                          "sigma_dae")
    sigma2 = 2 * s1 * s1  # σ² = σ₁² + σ₂² (§3.3)
    c_scale = sampling_scale(operator) if data_scale == "auto" else float(data_scale)

    if x0 is None:
        x = initial_estimate(operator, y)
    else:
        x = torch.as_tensor(x0, dtype=torch.float32).to(dev).clamp(0, 1)
        if lifted:
            x = x.repeat(1, 3, 1, 1)
        if tuple(x.shape) != tuple(operator.input_shape(tuple(y.shape))):
            raise ValueError(f"x0 has shape {tuple(x.shape)}; the operator needs "
                             f"{operator.input_shape(tuple(y.shape))}")
    x_shape = tuple(x.shape)
    n_meas = measurement_count(operator, y)
    trace = None if "NA" not in modes or joint else noise_trace(operator, x_shape, dev)
    step = torch.zeros_like(x)
    k_vel = torch.zeros_like(kernel) if joint else None
    ref = None if reference is None else torch.as_tensor(reference, dtype=torch.float32).to(dev)
    lam = float("nan")
    schedule = [(m, s) for m, s, n in plan for _ in range(n)]
    noise, precond = descent_aids("paper" if joint else descent, operator, x_shape, c_scale, s1, gen, dev,
                                  symmetrize=bool(symmetrize))

    with Progress(iters, reference=ref, callback=callback, show=progress, desc="dmsp") as prog:
        for t in range(1, iters + 1):
            stage_mode, sigma_n = schedule[t - 1]
            prior_grad = mean_shift_gradient(net, x, s1, noise)
            r = operator.forward(x) - y
            res_sq = float(r.pow(2).sum())
            if stage_mode == "NA":
                tr = float(kernel_noise_trace(blur, kernel, x_shape)) if joint else trace
                lam = noise_adaptive_lambda(res_sq, n_meas, sigma2, tr)
                w = lam / (lam + 1 / (s1 * s1))
            elif stage_mode == "NB":
                lam = 1 / (sigma_n * sigma_n)
                w = lam / (lam + 1 / (s1 * s1))
            else:  # σ_n = 0: relative prior weight 1/√t → 0 (§5.3)
                w = 1.0 - noise_free_prior_weight(t)
                lam = float("inf")
            g = w * data_gradient(operator, r, c_scale) + (1 - w) * prior_grad
            if joint:  # Table 1 KE, from the same x_{t−1}, k_{t−1} as the image step
                kernel, k_vel, _ = kernel_step(blur, kernel, k_vel, x, y, sigma2, alpha_k, mu_k)
            if precond is not None:
                g = precond(g, w, 1 - w)
            step = mu * step - alpha * g
            x = (x + step).clamp(0, 1)
            if joint:
                operator = _with_kernel(operator, blur, kernel)
                blur = find_blur(operator)
            if prog.log(t, gray_view(x, lifted), res_sq / n_meas, **{"lambda": lam}):
                break

    settings = {
        "method": "dmsp", "task": task, "mode": mode, "stages": [[m, s, n] for m, s, n in plan],
        "iters": iters, "alpha": alpha, "mu": mu, "sigma": None if sigma is None else float(sigma),
        "descent": "paper" if precond is None else "preconditioned", "symmetrize": bool(symmetrize),
        "sigma_dae": s1, "sigma_dae_rule": sigma_dae_rule, "sigma_smoothing": math.sqrt(sigma2), "data_scale": c_scale,
        "measurements": n_meas, "noise_trace": trace,
        "init": "prior.initial_estimate" if x0 is None else "x0",
        "prior_network": net.description, "precision": compute.precision, "device": str(dev),
        "seed": seed, "channels": c,
        "units": "sigma values in [0, 1] units (8-bit sigma / 255)",
    }
    extras = {}
    if "NA" in modes:
        extras["sigma_n"] = math.sqrt(1 / lam) if lam > 0 and math.isfinite(lam) else None
    if kernel_blind:
        settings.update(kernel_blind=True, kernel_size=list(kernel.shape),
                        kernel_estimator=kernel_estimator, boundary=blur.boundary)
        if estimated:
            settings["kernel_params"] = dict(kernel_params or {})
        else:
            settings.update(kernel_init=kernel_init, kernel_init_std=kernel_init_std,
                            alpha_k=alpha_k, mu_k=mu_k)
        extras["kernel"] = kernel.detach().cpu().numpy().astype("float64")
    if params:
        settings["ignored_params"] = sorted(params)
    x = gray_view(x, lifted)
    settings["lifted_gray_to_rgb"] = lifted
    return Result(x.to(out_device), prog.history, settings, extras, interrupted=prog.interrupted)
