"""One interface over the denoisers the methods and benchmarks swap:
``denoiser(x, sigma) -> x̂`` with ``x`` an N×C×H×W float32 tensor in [0, 1] and σ in [0, 1] units.

* ``dae``  — our trained denoising autoencoder (the DAEP/DMSP prior), bf16 fast path.
* ``nlm``  — non-local means (scikit-image), DeepRED's choice for denoising/deblurring.
* ``bm3d`` — BM3D / CBM3D (the ``bm3d`` package), DeepRED's choice for super-resolution.
* ``tv``   — total-variation denoising (Chambolle's algorithm, scikit-image).
"""
from __future__ import annotations

import inspect

import numpy as np
import torch

from .compute import Compute, get_compute


def _per_image(x: torch.Tensor, fn) -> torch.Tensor:
    """Apply a NumPy H×W×C function to each image of a batch."""
    out = []
    for img in x.detach().cpu().float().numpy():
        res = fn(np.ascontiguousarray(img.transpose(1, 2, 0)))
        res = res.reshape(img.shape[1], img.shape[2], img.shape[0])
        out.append(torch.from_numpy(np.ascontiguousarray(res.transpose(2, 0, 1), dtype=np.float32)))
    return torch.stack(out).to(x.device)


def _check_sigma(sigma) -> float:
    s = float(sigma)
    if not np.isfinite(s) or s < 0:
        raise ValueError(f"sigma must be a finite non-negative number in [0, 1] units, got {sigma}")
    if s > 1:
        raise ValueError(f"sigma {s:g} is in 8-bit units? The Python API takes [0, 1] units (25/255)")
    return s


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k``-th of the 8 flips/rotations of the image plane (0 = identity): a rotation by
    ``k mod 4`` quarter turns, then a left–right flip when ``k ≥ 4``."""
    x = torch.rot90(x, k % 4, (-2, -1)) if k % 4 else x
    return x.flip(-1) if k >= 4 else x


def dihedral_inverse(x: torch.Tensor, k: int) -> torch.Tensor:
    """Undo :func:`dihedral` ``k``."""
    x = x.flip(-1) if k >= 4 else x
    return torch.rot90(x, -(k % 4), (-2, -1)) if k % 4 else x


def denoise_transformed(f, x: torch.Tensor, sigma, k: int) -> torch.Tensor:
    """``T⁻¹ f(T x, σ)`` for the flip/rotation ``T`` = :func:`dihedral` ``k`` (differentiable)."""
    return dihedral_inverse(f(dihedral(x, k), sigma), k)


class RandomSymmetry:
    """A denoiser evaluated on a random one of the 8 flips/rotations of its input at each call,
    drawn from ``generator`` (ours). Iterative methods that call a denoiser many times (RED)
    thereby average it over the symmetries of the image plane — the self-ensemble of
    ``DAEDenoiser(self_ensemble=True)`` at the cost of one call."""

    def __init__(self, denoiser, generator: torch.Generator):
        self.denoiser, self.generator = denoiser, generator
        self.name = getattr(denoiser, "name", getattr(denoiser, "__name__", "callable"))

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        k = int(torch.randint(8, (1,), generator=self.generator))
        return denoise_transformed(self.denoiser, x, sigma, k)


class DAEDenoiser:
    """Our DAE as a plain denoiser: ``dae`` (a network) or ``weights`` (a ``.safetensors`` file
    of ``deepprior train-dae``), by default the shipped weights for the image's channel count
    (loaded on first use); σ outside the training range is clamped.
    ``self_ensemble=True`` averages the DAE over the 8 flips/rotations of the image
    (:func:`dihedral`): 8× the time, a slightly better estimate."""

    name = "dae"

    def __init__(self, dae=None, compute: Compute | None = None, tile: int | None = 1024,
                 self_ensemble: bool = False, weights=None):
        if dae is not None and weights is not None:
            raise ValueError("pass dae= or weights=, not both")
        if weights is not None:
            from .nets.dae import load_dae

            dae = load_dae(weights)
        self.compute = compute or get_compute()
        self.tile = tile
        self.self_ensemble = bool(self_ensemble)
        self._fast = {}
        if dae is not None:
            self._fast[dae.channels] = self._wrap(dae)

    def _wrap(self, dae):
        from .nets.dae import FastDAE

        return FastDAE(dae, self.compute, tile=self.tile)

    def network(self, channels: int):
        """The inference network (:class:`~deepprior.nets.dae.FastDAE`) for ``channels``."""
        if channels not in self._fast:
            from .nets.dae import load_default_dae

            self._fast[channels] = self._wrap(load_default_dae(channels))
        return self._fast[channels]

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        s = _check_sigma(sigma)
        net = self.network(x.shape[1])
        lo, hi = net.sigma_range
        s = min(max(s, lo), hi)
        with torch.no_grad():
            if not self.self_ensemble:
                return net(x, s)
            return sum(denoise_transformed(net, x, s, k) for k in range(8)) / 8


class NLMDenoiser:
    """Non-local means (Buades et al. 2005) via ``skimage.restoration.denoise_nl_means``.
    ``h = h_factor·σ`` with the noise σ passed to the estimator (scikit-image's recommendation
    of h ≈ 0.8σ for ``fast_mode``). Colour patches are compared over all channels jointly;
    ``per_channel=True`` denoises each channel on its own instead (as DeepRED's released
    deblurring code does, with h = 0.6σ)."""

    name = "nlm"

    def __init__(self, patch_size: int = 5, patch_distance: int = 6, h_factor: float = 0.8,
                 per_channel: bool = False):
        if h_factor <= 0:
            raise ValueError(f"h_factor must be positive, got {h_factor}")
        self.patch_size, self.patch_distance, self.h_factor = patch_size, patch_distance, h_factor
        self.per_channel = bool(per_channel)

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        from skimage.restoration import denoise_nl_means

        s = _check_sigma(sigma)
        if s == 0:
            return x.clone()

        def one(img):  # H×W×C
            def nlm(a, axis):
                return denoise_nl_means(a, h=self.h_factor * s, sigma=s, patch_size=self.patch_size,
                                        patch_distance=self.patch_distance, fast_mode=True,
                                        channel_axis=axis)
            if self.per_channel:
                return np.stack([nlm(img[..., c], None) for c in range(img.shape[2])], axis=-1)
            return nlm(img, -1)

        return _per_image(x, one)


class BM3DDenoiser:
    """BM3D for gray and CBM3D for colour images (Dabov et al. 2007), ``bm3d`` package.

    ``profile``: the package's parameter set — ``'np'`` (its default, the normal profile) or
    ``'lc'``, its low-complexity one (sparser reference blocks and smaller search windows:
    2.5× faster on one thread for −0.23 dB on the 9 colour images of ``dip-denoise-cbm3d9``,
    benchmarks/README.md), or another of the package's (``'refilter'``, ``'vn'``, ``'high'``,
    ``'vn_old'``, ``'deb'``). ``threads``: threads of the BM3D binary; default torch's
    (``$DEEPPRIOR_THREADS`` on the CLI), so one-thread jobs stay on one core — left alone the
    binary takes every core."""

    name = "bm3d"
    PROFILES = {"np": "BM3DProfile", "lc": "BM3DProfileLC", "refilter": "BM3DProfileRefilter",
                "vn": "BM3DProfileVN", "high": "BM3DProfileHigh", "vn_old": "BM3DProfileVNOld",
                "deb": "BM3DProfileDeb"}

    def __init__(self, profile: str = "np", threads: int | None = None):
        if profile not in self.PROFILES:
            raise ValueError(f"unknown BM3D profile {profile!r}; choose from {', '.join(self.PROFILES)}")
        if threads is not None and (int(threads) != threads or threads < 1):
            raise ValueError(f"threads must be a positive integer, got {threads}")
        self.profile, self.threads = profile, threads

    def _profile(self):
        import bm3d

        prof = getattr(bm3d, self.PROFILES[self.profile])()
        prof.num_threads = int(self.threads or torch.get_num_threads())
        return prof

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        import bm3d

        s = _check_sigma(sigma)
        if s == 0:
            return x.clone()
        prof = self._profile()

        def one(img):
            if img.shape[2] == 3:
                return bm3d.bm3d_rgb(img, sigma_psd=s, profile=prof)
            return bm3d.bm3d(img[..., 0], sigma_psd=s, profile=prof)

        return _per_image(x, one)


class TVDenoiser:
    """Isotropic TV denoising (Chambolle 2004), ``skimage.restoration.denoise_tv_chambolle``,
    with the regularisation weight proportional to σ (``weight = weight_factor·σ``)."""

    name = "tv"

    def __init__(self, weight_factor: float = 1.0):
        self.weight_factor = weight_factor

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        from skimage.restoration import denoise_tv_chambolle

        s = _check_sigma(sigma)
        if s == 0:
            return x.clone()
        return _per_image(x, lambda img: denoise_tv_chambolle(
            img, weight=self.weight_factor * s, channel_axis=-1))


DENOISERS = {"dae": DAEDenoiser, "nlm": NLMDenoiser, "bm3d": BM3DDenoiser, "tv": TVDenoiser}


def get_denoiser(name: str, **kwargs):
    """Instantiate a denoiser by name (``dae``, ``nlm``, ``bm3d``, ``tv``); ``kwargs`` are its
    constructor's options (e.g. ``h_factor`` of NLM)."""
    if name not in DENOISERS:
        raise ValueError(f"unknown denoiser {name!r}; choose from {', '.join(DENOISERS)}")
    cls = DENOISERS[name]
    accepted = list(inspect.signature(cls).parameters)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"denoiser {name!r} has no option(s) {unknown}; it takes "
                         f"{', '.join(accepted) or 'none'}")
    return cls(**kwargs)
