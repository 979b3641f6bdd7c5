"""Benchmark protocols of the two DAE-prior papers: DAEP (Bigdeli & Zwicker 2018) and DMSP
(Bigdeli, Jin, Favaro & Zwicker, NIPS 2017).

Imported at the bottom of :mod:`deepprior.bench.protocols`, so ``deepprior bench --list`` shows
them. σ in 8-bit units throughout, as in the papers' tables.

PSNR conventions (from the papers and their reference code):

* **Deblurring** (Levin, Berkeley; DAEP Table 3, DMSP Table 2 and Fig. 3): the reference code
  (``DAEPDeblur.m``/``DMSPDeblur.m`` + ``computePSNR.m``) blurs with a 'valid' convolution,
  restores an image of the original size, and scores it with ``computePSNR(gt, res, pad)``,
  ``pad = floor(size(kernel)/2)``: both images rounded to uint8, a border of ``pad(1)`` =
  floor(kh/2) pixels removed on *every* side (MATLAB's colon operator takes the first element of
  the vector ``pad``), PSNR over what is left. We do exactly that (``crop='kernel'``).
* **Super-resolution** (DAEP Tables 1–2, DMSP Table 3): "PSNR values over cropped RGB images
  (where the crop size in pixels corresponds to the scale factor)" (DAEP §5.1), uint8 rounding
  as ``computePSNR.m``. Degradation as the reference demo: MATLAB ``imresize(gt, 1/s,
  'bicubic')`` of the modcropped ground truth, not rounded, noise-free.
* **Demosaicking** (DMSP Table 4 is linear RGB on the Panasonic set of Khashabi et al., which we
  do not have): RGB, float, 2-pixel border removed, the convention of ``classic-demosaic-set14``;
  the bilinear (classical) demosaic is scored in the same run.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..metrics import psnr, ssim
from . import data as bench_data
from .protocols import Case, Protocol, register_protocol

# PSNR (protocol convention) along each run: time-to-quality of the 300-iteration schedule
TRACE_ITERS = (10, 25, 50, 100, 150, 200, 250, 300, 500, 1000)

__all__ = ["KernelCropProtocol", "blind_error_ratio", "classical_demosaic_scores", "aligned_ssd"]

# Kernel heights (floor(kh/2) is the crop) of the sets used here, for ``crop_for(case)`` called
# without the kernel array (the runner passes it); read from the default data root when it exists.
_KERNEL_HEIGHTS = {
    "levin": {"kernel_01": 19, "kernel_02": 17, "kernel_03": 15, "kernel_04": 27, "kernel_05": 13,
              "kernel_06": 21, "kernel_07": 23, "kernel_08": 23},
    "schelten_dmsp5": {"schelten_01": 35, "schelten_02": 29, "schelten_03": 33, "schelten_04": 31,
                       "schelten_05": 29},
}
_HEIGHT_CACHE: dict[str, dict[str, int]] = {}


def _kernel_heights(kernel_set: str) -> dict[str, int]:
    if kernel_set not in _HEIGHT_CACHE:
        try:
            kernels = bench_data.load_kernels(kernel_set)
            _HEIGHT_CACHE[kernel_set] = {name: int(k.shape[0]) for name, k in kernels.items()}
        except FileNotFoundError:
            _HEIGHT_CACHE[kernel_set] = dict(_KERNEL_HEIGHTS.get(kernel_set, {}))
    return _HEIGHT_CACHE[kernel_set]


@dataclass(frozen=True)
class KernelCropProtocol(Protocol):
    """A protocol whose PSNR crop may be ``'kernel'``: floor(kh/2) pixels of the case's kernel
    from every border, as the DAEP/DMSP ``computePSNR(gt, res, floor(size(kernel)/2))``."""

    def __post_init__(self):
        if self.crop == "kernel":
            Protocol.__post_init__(dataclasses.replace(self, crop=0))
        else:
            super().__post_init__()

    def crop_for(self, case: Case, kernel=None) -> int:
        if self.crop != "kernel":
            return super().crop_for(case, kernel)
        if kernel is not None:
            return int(np.shape(kernel)[0]) // 2
        if case.kernel is None:
            return 0
        heights = _kernel_heights(self.kernels)
        if case.kernel not in heights:
            raise ValueError(f"protocol {self.name!r}: no size known for kernel {case.kernel!r}")
        return heights[case.kernel] // 2


# --------------------------------------------------------------------------- extra metrics


def aligned_ssd(estimate: torch.Tensor, reference: torch.Tensor, crop: int, max_shift: int = 3) -> float:
    """Sum of squared differences over the image minus a ``crop + max_shift`` border, minimised
    over integer shifts of ``estimate`` by up to ``max_shift`` pixels (blind estimates may come
    out translated: a kernel estimated off-centre shifts the image the other way; Levin et al.'s
    error ratio is likewise computed up to a shift). Images in [0, 1]."""
    e = estimate.detach().double().clamp(0, 1)
    r = reference.detach().double()
    b = crop + max_shift
    h, w = r.shape[-2:]
    if 2 * b >= min(h, w):
        raise ValueError(f"crop {crop} + shift {max_shift} leaves nothing of a {h}×{w} image")
    ref = r[..., b:h - b, b:w - b]
    best = math.inf
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            est = e[..., b + dy:h - b + dy, b + dx:w - b + dx]
            best = min(best, float((est - ref).pow(2).sum()))
    return best


def blind_error_ratio(protocol, case, prep, estimate, result, context) -> dict:
    """Levin et al.'s error ratio for the kernel-blind run (DMSP Fig. 3):
    SSD(blind estimate, truth) / SSD(non-blind estimate with the true kernel, truth).

    The non-blind estimate is the same method in the same noise mode with the true kernel
    (``prep.operator``) and the paper's non-blind defaults (§5: 300 iterations, α = 0.1,
    μ = 0.9) — or the blind run's iteration count when that is smaller (quick runs). Both SSDs
    are taken over the image minus the PSNR crop, each minimised over integer shifts of ≤ 3 px.
    Also reported: the non-blind PSNR; ``psnr_aligned`` and ``psnr_nonblind_aligned``, the PSNR
    (float, not quantised) over the same region at the best shift — the protocol's ``psnr``
    is not shift-aligned, and a blind estimate is only defined up to a shift; the kernel's
    relative L2 error (after the best integer
    shift of ≤ 3 px), and the NA noise estimate σ_n (8-bit).
    """
    blind_only = {"kernel_blind", "kernel_size", "kernel_init", "kernel_init_std", "alpha", "mu",
                  "alpha_k", "mu_k", "kernel_estimator", "kernel_params"}
    params = {k: v for k, v in context["params"].items() if k not in blind_only}
    iters = context["iters"]
    nb_iters = 300 if iters is None or iters >= 300 else int(iters)
    sigma = None if not protocol.noise_known else case.sigma / 255
    nb = context["run"](prep.y, prep.operator, sigma=sigma, iters=nb_iters, seed=prep.seed,
                        device=context["device"], precision=context["precision"], **params)
    nb_est = nb.image.detach().to("cpu", torch.float32).clamp(0, 1)
    conv = context["convention"]
    ssd_blind = aligned_ssd(estimate, prep.x, conv["crop"])
    ssd_nb = aligned_ssd(nb_est, prep.x, conv["crop"])
    b = conv["crop"] + 3
    n_region = prep.x[..., b:prep.x.shape[-2] - b, b:prep.x.shape[-1] - b].numel()
    row = {"error_ratio": ssd_blind / max(ssd_nb, 1e-12), "psnr_nonblind": psnr(nb_est, prep.x, **conv),
           "psnr_aligned": 10 * math.log10(n_region / max(ssd_blind, 1e-12)),
           "psnr_nonblind_aligned": 10 * math.log10(n_region / max(ssd_nb, 1e-12)),
           "nonblind_iters": nb_iters}
    k_est = result.extras.get("kernel")
    k_true = context.get("kernel")
    if k_est is not None and k_true is not None and np.shape(k_est) == np.shape(k_true):
        row["kernel_error"] = _aligned_kernel_error(np.asarray(k_est), np.asarray(k_true))
    if result.extras.get("sigma_n") is not None:
        row["sigma_n_estimate"] = float(result.extras["sigma_n"]) * 255
    return row


def _aligned_kernel_error(k_est: np.ndarray, k_true: np.ndarray, max_shift: int = 3) -> float:
    """‖k_est − k_true‖₂ / ‖k_true‖₂, minimised over integer shifts (zero-filled) of k_est."""
    best = math.inf
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            s = np.roll(k_est, (dy, dx), axis=(0, 1))
            if dy > 0:
                s[:dy] = 0
            elif dy < 0:
                s[dy:] = 0
            if dx > 0:
                s[:, :dx] = 0
            elif dx < 0:
                s[:, dx:] = 0
            best = min(best, float(np.linalg.norm(s - k_true) / np.linalg.norm(k_true)))
    return best


def classical_demosaic_scores(protocol, case, prep, estimate, result, context) -> dict:
    """The classical (bilinear) demosaic of the same CFA image, same PSNR/SSIM convention."""
    conv = context["convention"]
    bilinear = prep.operator.initial_estimate(prep.y).clamp(0, 1)
    return {"psnr_bilinear": psnr(bilinear, prep.x, **conv), "ssim_bilinear": ssim(bilinear, prep.x, **conv)}


# --------------------------------------------------------------------------- protocols

_DEBLUR_CONVENTION = """Blur: true convolution with the MATLAB-oriented kernels, 'valid' boundary as in the
DAEP/DMSP reference code (the observation is smaller than the image by kernel size − 1); white
Gaussian noise added in float, unclipped; the method restores the full-size image (initialised
by edge-replicated padding of y, as the reference code).
PSNR/SSIM (reference computePSNR.m): both images rounded to uint8, floor(kh/2) pixels removed
from every border (kh = the kernel's height), gray."""

register_protocol(KernelCropProtocol(
    name="levin-deblur", task="deblur", dataset="levin", color="gray", kernels="levin",
    sigmas=(2.55, 5.10, 7.65, 10.2, 12.75), boundary="valid", crop="kernel", quantize=True,
    method="dmsp", iters=300, trace_iters=TRACE_ITERS,
    description=f"""Levin et al. 4 images × 8 kernels, σ_n ∈ {{2.55, …, 12.75}}; DMSP non-blind.
Grid σ_n ∈ {2.55, 5.10, 7.65, 10.2, 12.75}. DAEP Table 3 (σ 2.55/7.65/12.75): DAEP 32.69 /
28.95 / 26.87 dB. DMSP Table 2 (σ 2.55/5.10/7.65/10.2): NB 29.68 (sic) / 29.45 / 28.95 /
28.29, NA 32.57 / 30.21 / 29.00 / 28.23 dB.
Default: dmsp non-blind (σ_n given), 300 iterations (§5). Noise-adaptive: --param noise_blind=true;
DAEP: --method daep.
{_DEBLUR_CONVENTION}""",
))

register_protocol(KernelCropProtocol(
    name="berkeley-deblur", task="deblur", dataset="deblur_berkeley", color="gray",
    kernels="schelten_dmsp5", sigmas=(2.55, 5.10, 7.65, 10.2), boundary="valid", crop="kernel",
    quantize=True, method="dmsp", iters=300, trace_iters=TRACE_ITERS,
    description=f"""Berkeley 10 images × 5 Schelten kernels, σ_n ∈ {{2.55, 5.10, 7.65, 10.2}}; DMSP non-blind.
DMSP Table 2, Berkeley (50 blurred images, the noise-blind setting of Jin et al. CVPR 2017):
NB 25.69 / 24.45 / 23.60 / 22.99, NA 26.00 / 24.47 / 23.61 / 22.97 dB; DAEP 25.42 / 23.67 /
22.78 / 22.21. Gray (MATLAB rgb2gray): the table's other methods (EPLL, RTF, CSF, GradNet) are
gray-image methods. Default: dmsp non-blind, 300 iterations; NA: --param noise_blind=true.
{_DEBLUR_CONVENTION}""",
))

register_protocol(KernelCropProtocol(
    name="levin-blind", task="deblur", dataset="levin", color="gray", kernels="levin",
    sigmas=(2.55,), boundary="valid", crop="kernel", quantize=True, noise_known=False,
    method="dmsp", iters=None, method_params={"kernel_blind": True, "noise_blind": True},
    extra_metrics=blind_error_ratio,
    description=f"""Levin et al. 32 images, noise- and kernel-blind (NA+KE), σ_n = 2.55 (1 %); error ratios.
DMSP Fig. 3 / §5.2 claims "all 32 error ratios below 3.5". The method gets only the kernel's size
(and the 'valid' boundary) and no σ_n. Default: our coarse-to-fine L0 kernel estimate, then DMSP
NA non-blind with it (300 iterations). The paper's joint descent (1000 iterations, image μ = 0.7,
α = 0.3, kernel μ_k = 0.995, α_k = 0.005, from a small centred Gaussian):
--param kernel_estimator=joint. Extra per-image numbers:
error_ratio = SSD(blind) / SSD(non-blind DMSP-NA with the true kernel, 300 iterations), both
over the PSNR region and minimised over integer shifts ≤ 3 px; psnr_nonblind; kernel_error
(relative L2, best shift); sigma_n_estimate (8-bit); psnr_aligned and psnr_nonblind_aligned
(float PSNR over the region at the best shift: the blind image is only defined up to a shift, so
the plain psnr column understates it). summary.extra gives their mean/min/max.
{_DEBLUR_CONVENTION}""",
))

_SR_CONVENTION = """HR images modcropped to a multiple of the scale; LR = MATLAB-compatible imresize(HR, 1/s,
'bicubic') (antialiased, a = −0.5), kept in float (not rounded), noise-free, as the DAEP demo.
The method starts from bicubic up-sampling; σ_n = 0 selects the 1/√t prior-weight schedule.
PSNR/SSIM (DAEP §5.1 + computePSNR.m): RGB, both images rounded to uint8, a border of `scale`
pixels removed. Gray images of the set are replicated to RGB."""

register_protocol(Protocol(
    name="sr-set5", task="sr", dataset="set5", color="rgb", scales=(2, 3, 4, 5), sr_filter="bicubic",
    crop="scale", quantize=True, method="daep", iters=300, trace_iters=TRACE_ITERS,
    description=f"""Set5 super-resolution ×2…×5 (bicubic degradation); DAEP (also --method dmsp).
DAEP Table 1: 35.23 / 31.44 / 29.01 / 27.19 dB (bicubic 31.80 / 28.67 / 26.73 / 25.32).
DMSP Table 3: 35.16 / 31.38 / 29.16 / 27.38 dB. Default: daep, 300 iterations (§5).
{_SR_CONVENTION}""",
))

register_protocol(Protocol(
    name="sr-set14", task="sr", dataset="set14", color="rgb", scales=(2, 3, 4, 5), sr_filter="bicubic",
    crop="scale", quantize=True, method="daep", iters=300, trace_iters=TRACE_ITERS,
    description=f"""Set14 super-resolution ×2…×5 (bicubic degradation); DAEP (also --method dmsp).
DAEP Table 2: 31.07 / 27.93 / 26.13 / 24.88 dB (bicubic 28.53 / 25.92 / 24.44 / 23.46).
DMSP Table 3: 30.99 / 27.90 / 26.22 / 25.01 dB. Default: daep, 300 iterations (§5).
{_SR_CONVENTION}""",
))

register_protocol(Protocol(
    name="demosaic", task="demosaic", dataset="set14", color="rgb", gray_images="skip",
    pattern="RGGB", crop=2, method="dmsp", iters=300, trace_iters=TRACE_ITERS, extra_metrics=classical_demosaic_scores,
    description="""Bayer RGGB demosaicking, noise-free, Set14 colour (or --images DIR); DMSP + bilinear.
DMSP §5.4 / Table 4 (38.7 dB, linear RGB, Panasonic set of Khashabi et al. — not available
here): initialised by a classical demosaic (bilinear), two stages σ_n = 2.5 then 1 (8-bit), DAE
σ₁ = 3 (σ = 3√2), 300 iterations. The bilinear demosaic of the same CFA image is scored in the
same run (psnr_bilinear, ssim_bilinear). The gray 'bridge' is skipped.
PSNR/SSIM: RGB, float (no 8-bit rounding), 2-pixel border removed (as classic-demosaic-set14).""",
))
