"""What DAEP and DMSP share: the DAE prior network, the Gaussian data term of any linear
operator, and the blur-kernel helpers of DMSP's kernel-blind mode.

Both methods descend a data term ``½‖A x − y‖²`` (weighted) plus a prior given by a denoising
autoencoder ``r_σ`` (DAEP eq. 7, DMSP eq. 7), with the reference code's momentum update.
Units: images in [0, 1]; every σ here is in [0, 1] units (8-bit σ / 255). The reference code
works in [0, 255]; all weights below are *ratios* of inverse variances, so the iteration is the
same in either unit system (only σ's unit must match the image's).

References
----------
.. [DAEP] S. A. Bigdeli and M. Zwicker, "Image restoration using autoencoding priors",
   VISAPP 2018 (arXiv:1703.09964); reference code github.com/siavashBigdeli/DAEP.
.. [DMSP] S. A. Bigdeli, M. Jin, P. Favaro and M. Zwicker, "Deep mean-shift priors for image
   restoration", NIPS 2017; reference code github.com/siavashBigdeli/DMSP (MATLAB) and
   github.com/siavashBigdeli/DMSP-TF2 (sub-sampling / super-resolution).
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Callable

import torch

from ..compute import Compute, resolve_device
from ..denoisers import denoise_transformed

# --------------------------------------------------------------------------- set-up


def setup(y, operator, device) -> tuple[torch.Tensor, object, torch.device]:
    """``y`` as an N×C×H×W float32 tensor and the operator, both on the resolved device."""
    y = torch.as_tensor(y, dtype=torch.float32)
    if y.dim() != 4:
        raise ValueError(f"y must be N×C×H×W, got shape {tuple(y.shape)}")
    dev = y.device if device is None else resolve_device(device)
    return y.to(dev), operator.to(dev), dev


def components(operator) -> list:
    """The operator itself, or the flattened ``ops`` of a ``Compose``."""
    if hasattr(operator, "ops"):
        return [leaf for op in operator.ops for leaf in components(op)]
    return [operator]


def find_blur(operator):
    """The first component with a blur ``kernel`` (a ``Blur``), or None."""
    return next((op for op in components(operator) if hasattr(op, "kernel")), None)


def check_task(method: str, operator, tasks: tuple[str, ...]) -> str:
    task = getattr(operator, "task", None)
    if task not in tasks:
        raise ValueError(f"method {method!r} solves task(s) {', '.join(tasks)}; got an operator "
                         f"{type(operator).__name__} with task {task!r}")
    return task


def estimate_sigma(y: torch.Tensor, operator) -> float:
    """Blind noise σ ([0, 1] units) suited to the task's observation (see ``classic._noise_sigma``)."""
    from .classic import _noise_sigma

    return float(_noise_sigma(y, operator, None)[0])


def initial_estimate(operator, y: torch.Tensor) -> torch.Tensor:
    """Starting image: ``operator.initial_estimate(y)`` (edge-replicated padding for a 'valid'
    blur as DAEPDeblur.m/DMSPDeblur.m, bicubic up-sampling as DAEPSR.m, bilinear demosaicking
    for §5.4's "Matlab demosaic"), except for a pixel ``Mask``: its holes are filled by
    normalised Gaussian convolution of the known pixels (std 1, 2, 4, … px until every hole
    has support) — the DMSP-TF2 code's "filling-in the blanks" with a local average, made to
    work for large holes too — instead of the per-channel mean.
    """
    import torch.nn.functional as F

    if type(operator).__name__ != "Mask":
        return operator.initial_estimate(y).clamp(0, 1)
    m = operator.mask.to(y.device, y.dtype)[None].expand_as(y)
    x = y * m
    filled = m.clone()
    n, c, h, w = y.shape
    std = 1.0
    while float(filled.min()) < 0.5 and std <= 2 * max(h, w):
        rad = int(math.ceil(3 * std))
        t = torch.arange(-rad, rad + 1, dtype=y.dtype, device=y.device)
        g1 = torch.exp(-t * t / (2 * std * std))
        g1 = g1 / g1.sum()

        def smooth(z):
            z = z.reshape(n * c, 1, h, w)
            z = F.conv2d(F.pad(z, (rad, rad, 0, 0)), g1.view(1, 1, 1, -1))
            z = F.conv2d(F.pad(z, (0, 0, rad, rad)), g1.view(1, 1, -1, 1))
            return z.reshape(n, c, h, w)

        num, den = smooth(y * m), smooth(m)
        new = (den > 1e-3) & (filled < 0.5)
        x = torch.where(new, num / den.clamp_min(1e-3), x)
        filled = torch.where(new, torch.ones_like(filled), filled)
        std *= 2
    return torch.where(filled > 0.5, x, torch.full_like(x, 0.5)).clamp(0, 1)


# --------------------------------------------------------------------------- the prior network


class PriorNetwork:
    """``A_σ(x)``: a denoiser evaluated on images of any channel count, differentiably.

    Wraps a :class:`~deepprior.nets.dae.FastDAE` (BN folded, bf16 autocast + channels_last per
    the compute policy) or any callable ``f(x, sigma) -> x̂``. A colour network restores a gray
    image through its replication to RGB (output: mean of the three channels); a gray network
    restores a colour image channel by channel. Both adaptations are differentiable, so DAEP
    can back-propagate through them.
    """

    def __init__(self, fn: Callable, channels: int | None, sigma_range=(0.0, 1.0),
                 conditional: bool = True, description: str = ""):
        self.fn, self.channels = fn, channels
        self.sigma_range = (float(sigma_range[0]), float(sigma_range[1]))
        self.conditional = conditional
        self.description = description

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        c = x.shape[1]
        if self.channels is None or c == self.channels:
            return self.fn(x, sigma)
        if self.channels == 3 and c == 1:
            return self.fn(x.expand(-1, 3, -1, -1), sigma).mean(dim=1, keepdim=True)
        if self.channels == 1:
            n, _, h, w = x.shape
            return self.fn(x.reshape(n * c, 1, h, w), sigma).reshape(n, c, h, w)
        raise ValueError(f"a {self.channels}-channel DAE cannot restore {c}-channel images")

    def choose_sigma(self, requested: float | None, paper_default: float, name: str) -> float:
        """The DAE σ to use: ``requested``, else the paper's; a fixed-σ DAE imposes its own σ."""
        lo, hi = self.sigma_range
        if not self.conditional:
            if requested is not None and abs(requested - lo) > 1e-6:
                warnings.warn(f"{name}: this DAE was trained at the single σ = {lo * 255:.3g}/255; "
                              f"using that instead of {requested * 255:.3g}/255", stacklevel=3)
            return lo
        s = float(paper_default if requested is None else requested)
        if not lo - 1e-9 <= s <= hi + 1e-9:
            raise ValueError(f"{name} = {s * 255:.3g}/255 is outside the DAE's training range "
                             f"[{lo * 255:.3g}, {hi * 255:.3g}]/255")
        return s


def linear_sigma_rule(sigma_n: float, offset: float, slope: float, lo: float, hi: float) -> float:
    """``clip(offset + slope·σ_n, lo, hi)`` with σ_n, offset, lo and hi in 8-bit units; σ_n in
    and the result out in [0, 1] units. The form of our noise-dependent DAE σ defaults."""
    return min(max(offset + slope * 255.0 * float(sigma_n), lo), hi) / 255.0


def resolve_sigma_dae(sigma_dae, rule_applies: bool, sigma_n: Callable[[], float],
                      rule: Callable[[float], float], rule_name: str) -> tuple[float | None, str]:
    """A method's ``sigma_dae`` argument → ``(value or None, how it was chosen)``.

    A number is used as given; ``'paper'`` gives None (the caller then takes the paper's value);
    None gives ``rule(sigma_n())`` when ``rule_applies``, else None. ``sigma_n`` is called only
    then (it may estimate the noise from the observation).
    """
    if isinstance(sigma_dae, str):
        if sigma_dae != "paper":
            raise ValueError(f"sigma_dae must be a number in [0, 1] units or 'paper', got {sigma_dae!r}")
        return None, "paper"
    if sigma_dae is not None:
        return float(sigma_dae), "given"
    if not rule_applies:
        return None, "paper"
    s = float(sigma_n())
    return rule(s), f"{rule_name}({s:.5f})"


def lift_gray_to_rgb(network: PriorNetwork, y: torch.Tensor, operator) -> tuple[torch.Tensor, bool]:
    """Run a gray problem in RGB when the prior network is colour: ``(y, lifted)``.

    The reference codes (DAEPDeblur.m, DMSPDeblur.m) feed a 3-channel image to their colour
    DAE, so a gray test image (Levin, Berkeley) is restored as its 3-channel replica: the noise
    added before the DAE is then independent in each channel, as in the DAE's training. (Feeding
    the replicated *noisy* gray image instead gives the DAE identical noise in its three channels,
    which it never saw: 6 dB worse denoising on Levin im_1 at σ = 11.) The iterates are RGB;
    :func:`gray_view` maps them back (for the progress log, callbacks and the result). Works for
    operators that act per channel (blur, down-sampling, masks, identity).
    """
    x_channels = operator.input_shape(tuple(y.shape))[1]
    if network.channels != 3 or x_channels != 1:
        return y, False
    return y.repeat(1, 3, 1, 1), True


def gray_view(x: torch.Tensor, lifted: bool) -> torch.Tensor:
    """The gray image of a lifted RGB iterate (the channel mean); ``x`` itself otherwise."""
    return x.mean(dim=1, keepdim=True) if lifted else x


# Which shipped DAE restores gray images, per method (measured with DAE v2 on Levin, colour vs
# gray DAE on the same cases; JSONs and commands in benchmarks/README.md). DAEP: the colour DAE on
# the RGB replica, as the reference code does — all 32 cases, σ 2.55 / 7.65 / 12.75: 32.50 / 28.68
# / 26.57 vs 32.27 / 27.87 / 25.80 dB (paper 32.69 / 28.95 / 26.87). DMSP keeps the gray DAE: NA
# on im_1 + im_3, colour vs gray, +0.30 dB at σ 10.2 but −0.10 at σ 2.55 (im_3 −0.33).
GRAY_IMAGE_PRIOR = {"daep": "color", "dmsp": "gray"}


def default_prior_weights(method: str, channels: int) -> Path:
    """The shipped DAE weights ``method`` uses for ``channels``-channel images: the gray DAE for
    gray images unless :data:`GRAY_IMAGE_PRIOR` says 'color' (then the image runs as its RGB
    replica, :func:`lift_gray_to_rgb`). Falls back to the other shipped DAE when only one exists."""
    from ..nets.dae import default_weights_path

    wanted = 3 if channels == 3 or GRAY_IMAGE_PRIOR.get(method) == "color" else 1
    path = default_weights_path(wanted)
    return path if path.exists() else default_weights_path(4 - wanted)


# Loaded networks, keyed by (weights path, device, precision): a benchmark restores many images
# with the same DAE, and folding/copying it once per image is wasted work.
_NETWORK_CACHE: dict[tuple, object] = {}


def load_prior_network(*, method: str, channels: int, compute: Compute, dae=None, weights=None,
                       denoiser: Callable | None = None) -> PriorNetwork:
    """The prior network of ``method`` ('daep' or 'dmsp') for ``channels``-channel images.

    Parameters
    ----------
    channels : int
        Channels of the image being restored (1 or 3).
    compute : Compute
        Device and precision policy (bf16 autocast where supported).
    dae : DAE, optional
        A :class:`~deepprior.nets.dae.DAE` object (e.g. a tiny randomly initialised one in tests).
    weights : path-like, optional
        A ``.safetensors`` file written by ``save_dae``. Default (all three None):
        :func:`default_prior_weights` (the shipped DAE for ``method`` and ``channels``).
    denoiser : callable, optional
        Any ``f(x, sigma) -> x̂`` instead of a DAE (must be differentiable for DAEP).
    """
    from ..nets.dae import FastDAE, load_dae

    given = [a is not None for a in (dae, weights, denoiser)]
    if sum(given) > 1:
        raise ValueError("pass at most one of dae=, weights= and denoiser=")
    if denoiser is not None:
        return PriorNetwork(denoiser, getattr(denoiser, "channels", None),
                            getattr(denoiser, "sigma_range", (0.0, 1.0)),
                            getattr(denoiser, "conditional", True),
                            getattr(denoiser, "name", type(denoiser).__name__))
    if dae is not None:
        fast = FastDAE(dae, compute)
        return PriorNetwork(fast, fast.channels, fast.sigma_range, fast.conditional,
                            f"DAE object ({dae.arch}, {dae.channels} channels)")
    path = Path(weights) if weights is not None else default_prior_weights(method, channels)
    if not path.exists():
        raise FileNotFoundError(
            f"no DAE weights for {channels}-channel images ({path}); train one with "
            "`deepprior train-dae` and pass weights=PATH (CLI: --param weights=PATH)")
    key = (str(path.resolve()), path.stat().st_mtime, str(compute.device), compute.precision)
    if key not in _NETWORK_CACHE:
        _NETWORK_CACHE.clear()  # keep at most one network in memory
        _NETWORK_CACHE[key] = FastDAE(load_dae(path), compute)
    fast = _NETWORK_CACHE[key]
    return PriorNetwork(fast, fast.channels, fast.sigma_range, fast.conditional, str(path))


# --------------------------------------------------------------------------- data term


def sampling_scale(operator) -> float:
    """Factor ``c`` on the data gradient ``c·Aᵀ(Ax − y)``: pixels per observed sample.

    The reference codes scale the data term of sub-sampled observations up: DMSP-TF2 multiplies
    the residual by ``mask.size / mask.sum()`` (= s² for ×s point sampling, 1/fraction for a
    pixel mask), and DAEPSR.m uses bicubic *up*-sampling as the adjoint of bicubic
    down-sampling, which is ≈ s²·Rᵀ. We use the same rule for every operator: s² for a
    ``Downsample``, 1/(known fraction) for a ``Mask``, 1 otherwise (blur, identity, and the
    Bayer ``Mosaic``, whose exact adjoint DMSPDemosaic.m uses unscaled).
    """
    c = 1.0
    for op in components(operator):
        if hasattr(op, "factor"):
            c *= float(op.factor) ** 2
        elif hasattr(op, "mask"):
            frac = float(op.mask.float().mean())
            c *= 1.0 / max(frac, 1e-6)
    return c


def measurement_count(operator, y: torch.Tensor) -> int:
    """Number of real measurements in ``y`` (M of DMSP eq. 21): entries with (AAᵀ1) > 0.

    Equals ``y.numel()`` except for a ``Mask``, whose output keeps zeros in the holes.
    """
    with torch.no_grad():
        aat1 = operator.forward(operator.adjoint(torch.ones_like(y)))
    return int((aat1.abs() > 1e-6).sum())


def noise_trace(operator, x_shape, device, generator: torch.Generator | None = None,
                probes: int = 8) -> float:
    """``tr(A Aᵀ)``, so that E_ε‖A ε‖² = σ²·tr(AAᵀ) for ε ~ N(0, σ²I).

    This is DMSP eq. 9's ``M σ² ‖k‖²`` for a blur (``M·‖k‖²`` for 'valid'/'circular'), computed
    exactly for each single operator and by Hutchinson's estimator (``probes`` Gaussian probes,
    mean ‖A z‖²) for compositions.
    """
    ops = components(operator)
    n, c, h, w = (int(s) for s in x_shape)
    if len(ops) == 1:
        op, kind = ops[0], type(ops[0]).__name__
        if hasattr(op, "kernel"):
            return float(kernel_noise_trace(op, op.kernel.to(device), x_shape))
        if hasattr(op, "factor"):
            rh = op.matrix(h, torch.float64, "cpu")
            rw = op.matrix(w, torch.float64, "cpu")
            return float(n * c * rh.pow(2).sum() * rw.pow(2).sum())
        if hasattr(op, "mask"):
            return float(n * op.mask.float().expand(c, h, w).sum())
        if kind == "Identity":
            return float(n * c * h * w)
        if kind == "Mosaic":  # one sample of one channel per output pixel
            return float(n * h * w)
    g = generator or torch.Generator().manual_seed(0)
    total = 0.0
    with torch.no_grad():
        for _ in range(probes):
            z = torch.randn(tuple(x_shape), generator=g).to(device)
            total += float(operator.forward(z).pow(2).sum())
    return total / probes


def kernel_noise_trace(blur, kernel: torch.Tensor, x_shape) -> torch.Tensor:
    """``tr(K Kᵀ) = Σ_outputs Σ_taps inside k²`` for a blur with ``kernel`` (differentiable in it).

    'valid' and 'circular': ``numel(y)·‖k‖²`` exactly; 'zero': fewer taps at the border.
    """
    from ..operators import Blur

    if blur.boundary in ("valid", "circular"):
        m = math.prod(blur.output_shape(tuple(x_shape)))
        return m * kernel.pow(2).sum()
    ones = torch.ones(tuple(x_shape), dtype=kernel.dtype, device=kernel.device)
    return Blur(kernel.pow(2), blur.boundary).forward(ones).sum()


def data_gradient(operator, residual: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``scale·Aᵀ r``: the gradient of ``scale·½‖A x − y‖²`` with ``r = A x − y`` (DAEP Alg. 1,
    DMSP Table 1; the 1/σ² weights are applied by the caller)."""
    g = operator.adjoint(residual)
    return g if scale == 1.0 else scale * g


def draw_noise(shape, sigma: float, generator: torch.Generator, device) -> torch.Tensor:
    """σ·z, z ~ N(0, I), drawn on the CPU from ``generator`` (reproducible on every device)."""
    return (sigma * torch.randn(tuple(shape), generator=generator)).to(device)


class PriorNoise:
    """The randomness of the stochastic prior gradient — DMSP eq. 19's η, DAEP eq. 8's ε —
    drawn as ``σ·z``, z ~ N(0, I), from ``generator`` (reproducible on every device).

    ``antithetic=True`` (ours) pairs the draws: every second call returns the negation of the
    previous draw. Each gradient stays an unbiased sample, but within a pair the part of the
    gradient that is odd in the noise cancels, and the momentum sums consecutive gradients.
    On its own this changes little; with :func:`blur_preconditioner`, whose steps are large
    where the prior alone decides, it removes most of the noise the iterate would carry (in
    our probes preconditioning without it gained speed early but not PSNR at 100 iterations).

    ``dihedral=True`` (ours) also draws, with each fresh η, one of the 8 flips/rotations ``T``
    (kept for its antithetic partner); the methods evaluate the DAE as ``T⁻¹ r(T(x + η))``
    (:meth:`denoise`). A trained DAE is not exactly equivariant to flips and rotations, so
    averaged over the draws — which the momentum does — the prior gradient becomes that of
    the 8-fold geometric self-ensemble of the DAE, at no extra cost. (The explicit 8-fold
    ensemble of our DAE denoises Set12 and CBM3D's nine images at σ = 25 about 0.1 dB better
    than the DAE alone: ``DAEDenoiser(self_ensemble=True)``, benchmarks/README.md.)
    """

    def __init__(self, sigma: float, generator: torch.Generator, device, antithetic: bool = False,
                 dihedral: bool = False):
        self.sigma, self.generator, self.device = float(sigma), generator, device
        self.antithetic, self.dihedral = bool(antithetic), bool(dihedral)
        self.transform = 0  # index of the current flip/rotation (0: identity)
        self._last = None

    def __call__(self, shape) -> torch.Tensor:
        if self.antithetic and self._last is not None:
            eta, self._last = -self._last, None
            return eta
        eta = draw_noise(shape, self.sigma, self.generator, self.device)
        if self.dihedral:
            self.transform = int(torch.randint(8, (1,), generator=self.generator))
        self._last = eta if self.antithetic else None
        return eta

    def denoise(self, network, x_noisy: torch.Tensor, sigma: float) -> torch.Tensor:
        """``T⁻¹ r_σ(T x_noisy)`` with the current transform ``T`` (differentiable)."""
        return denoise_transformed(network, x_noisy, sigma, self.transform)


def blur_preconditioner(operator, x_shape, scale: float = 1.0) -> Callable | None:
    """A Fourier-diagonal preconditioner for a blur's data term and a DAE prior, or None
    when ``operator`` is not a ``Blur``.

    Returns ``P(g, data_weight, prior_weight) = F⁻¹[F g / (data_weight·scale·|H|² + prior_weight)]``,
    the inverse of the circulant approximation of the objective's curvature: ``scale·HᵀH`` for
    the data term (exact for a circular blur, the usual approximation for 'valid') and the
    identity for the prior (the DAE residual ``x − r(x)`` has a Jacobian near I at the
    frequencies the prior alone controls). A positive-definite preconditioner leaves the
    stationary points of the descent unchanged; it equalises the convergence rates of the
    frequencies, which plain gradient descent (DAEP Alg. 1, DMSP eq. 20) resolves at rates
    proportional to |H|² — hence the papers' 300 iterations for the near-zeros of motion blurs.
    The denominator is floored at 1e-2 (a vanishing prior weight, σ_n = 0).

    Not for super-resolution: an exact preconditioner of a ``Downsample`` (Kronecker
    eigendecomposition of R_hᵀR_h ⊗ R_wᵀR_w) converged sooner in our probe on Set5 but to a
    lower PSNR on smooth images: the 1/√t schedule of the noise-free case lets the prior act
    ever more weakly on the sampling's null space, and preconditioning undoes that.
    Nor for a ``Mask`` or ``Mosaic``: their exact diagonal preconditioner ``1/(w·c·AᵀA + (1−w))``
    sped up demosaicking early in a probe on Set14, then kept smoothing the unsampled pixels,
    which it moves by the prior alone at full rate, to below the paper update's PSNR.
    """
    if not (hasattr(operator, "transfer_function") and hasattr(operator, "kernel")):
        return None
    h, w = x_shape[-2:]
    gain = scale * operator.transfer_function(h, w).abs().square()

    def apply(g: torch.Tensor, data_weight: float, prior_weight: float) -> torch.Tensor:
        # in g's dtype: a float64 kernel (e.g. read from a file) must not turn the iterate
        # into float64, which runs the whole descent several times slower
        denom = (data_weight * gain + prior_weight).clamp_min(1e-2).to(g.dtype)
        return torch.fft.irfft2(torch.fft.rfft2(g) / denom, s=(h, w))

    return apply


DESCENTS = ("preconditioned", "paper")


def descent_aids(descent: str, operator, x_shape, scale: float, sigma_dae: float,
                 generator: torch.Generator, device, symmetrize: bool = False
                 ) -> tuple[PriorNoise, Callable | None]:
    """The prior-noise source and the preconditioner of DAEP/DMSP's momentum descent.

    ``'paper'``: fresh noise every iteration, no preconditioner (DAEP Alg. 1, DMSP eq. 20).
    ``'preconditioned'`` (ours): for a ``Blur``, :func:`blur_preconditioner` with antithetic
    noise pairs (:class:`PriorNoise`); the same fixed points, reached in about a third of the
    iterations. Other operators (down-sampling, masks, mosaics, compositions) get the paper's
    iteration unchanged.
    """
    if descent not in DESCENTS:
        raise ValueError(f"descent must be one of {DESCENTS}, got {descent!r}")
    precond = blur_preconditioner(operator, x_shape, scale) if descent == "preconditioned" else None
    return PriorNoise(sigma_dae, generator, device, antithetic=precond is not None,
                      dihedral=symmetrize), precond


def noise_free_prior_weight(t: int) -> float:
    """Relative prior weight at iteration ``t`` (1-based) when σ_n = 0: 1/√t (DAEP §5.1,
    DAEPSR.m ``relative_weight = 1/sqrt(iter)``; DMSP §5.3 "decrease it gradually")."""
    return 1.0 / math.sqrt(t)


# --------------------------------------------------------------------------- blur kernels


def project_kernel(k: torch.Tensor) -> torch.Tensor:
    """DMSP §4 projection after each kernel step: ``k = max(k, 0)``, then ``k = k / ‖k‖₁``.

    Idempotent. A kernel with no positive entry becomes the centred delta.
    """
    k = k.clamp(min=0)
    s = k.sum()
    if float(s) <= 0:
        return delta_kernel(k.shape, k.dtype, k.device)
    return k / s


def delta_kernel(shape, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """The identity blur of ``shape``: 1 at ((kh−1)//2, (kw−1)//2), the ``Blur`` centre."""
    k = torch.zeros(tuple(shape), dtype=dtype, device=device)
    k[(shape[0] - 1) // 2, (shape[1] - 1) // 2] = 1.0
    return k


def gaussian_kernel(shape, std: float, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """Isotropic Gaussian of standard deviation ``std`` pixels, centred as ``Blur`` centres, sum 1."""
    kh, kw = (int(s) for s in shape)
    r = torch.arange(kh, dtype=torch.float64) - (kh - 1) // 2
    c = torch.arange(kw, dtype=torch.float64) - (kw - 1) // 2
    k = torch.exp(-(r[:, None] ** 2 + c[None, :] ** 2) / (2 * std * std))
    return (k / k.sum()).to(dtype=dtype, device=device)


def initial_kernel(size, kind: str = "gaussian", std: float | None = None,
                   dtype=torch.float32, device="cpu") -> torch.Tensor:
    """Starting kernel of the kernel-blind mode (DMSP §5.2 does not say which it used).

    ``'gaussian'`` (default): a small centred Gaussian, std = ``std`` or max(1, size/10) pixels —
    a kernel with a little spread, so that the first image steps already deblur a little and the
    noise-adaptive term ``Mσ²‖k‖²`` does not start at its delta-kernel maximum. ``'delta'``: the
    identity blur. ``size``: an int (square) or (kh, kw).
    """
    shape = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
    if kind == "delta":
        return delta_kernel(shape, dtype, device)
    if kind == "gaussian":
        s = std if std is not None else max(1.0, max(shape) / 10.0)
        return gaussian_kernel(shape, s, dtype, device)
    raise ValueError(f"kernel_init must be 'gaussian', 'delta' or 'operator', got {kind!r}")


def blur_objective_gradient(blur, kernel: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                            sigma2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient in ``k`` of ``F(k) = ½‖k ∗ x − y‖² + ½σ²·tr(KKᵀ)`` and the residual ``k ∗ x − y``.

    ``F`` is (up to the factor λ_t, cancelled by our preconditioner) the kernel part of DMSP's
    noise-adaptive objective eq. 22 with ``tr(KKᵀ) = M‖k‖²``; its gradient is Table 1 (KE)
    step 4, ``xᵀ(K x − y) + M σ² k``. Computed by autograd through ``Blur.forward`` with the
    kernel tensor as the variable.
    """
    from ..operators import Blur

    k = kernel.detach().clone().requires_grad_(True)
    op = Blur(k, blur.boundary, blur.method)
    with torch.enable_grad():
        r = op.forward(x.detach()) - y
        f = 0.5 * r.pow(2).sum() + 0.5 * sigma2 * kernel_noise_trace(op, k, tuple(x.shape))
        (g,) = torch.autograd.grad(f, k)
    return g, r.detach()
