"""Benchmark protocols of DeepRED (Mataev, Elad & Milanfar, ICCV-W 2019) and its RED baseline.

Each protocol is one table of the paper with its degradation and PSNR convention. The default
method is ``deepred`` with the Table 1 preset of the task; ``--method dip`` and ``--method red``
give "DIP alone" and "RED alone" on identical inputs (same seeds), ``--iters`` a shorter budget
and ``--param denoiser=dae`` our DAE in place of NLM/BM3D. Every row records the PSNR (in the
protocol's convention) at :data:`protocols_dip.TRACE_ITERS` along the run, with the seconds to
get there, and the fit's stop / ADMM records (:func:`protocols_dip.fit_metrics`).
σ is in 8-bit units.
"""
from __future__ import annotations

import math

from .protocols import Protocol, register_protocol
from .protocols_dip import TRACE_ITERS, fit_metrics

__all__ = ["TABLE4_IMAGES"]

# DeepRED Table 4 (the NCSR colour deblurring images); deblur_color also holds 'monarch'.
TABLE4_IMAGES = ("butterfly", "leaves", "parrots", "starfish")
_TRACE = dict(trace_iters=TRACE_ITERS, extra_metrics=fit_metrics)

register_protocol(Protocol(
    name="deepred-denoise-cbm3d9", task="denoise", dataset="cbm3d9", color="rgb", sigmas=(25.0,),
    method="deepred", method_params={"stop": "fixed"}, **_TRACE,
    description="""CBM3D 9-image colour denoising σ = 25 with DeepRED (§4.1: 31.24 dB).
§4.1: DeepRED 31.24, DIP 30.53 (their run, EMA + two-run average), RED 29.3, NLM 29.13 dB.
Preset 'denoise' (Table 1): σ_noise 0.033, LR 0.008, NLM σ_f = 3, λ = 0.5, μ = 0.5, 6000
iterations, the denoiser every 10 (J = 1, fixed point); DIP's denoising network and EMA; λ and μ
ramped as in the authors' released code (+0.03 whenever PSNR(T, y) > 20 dB, +0.01 dB per
firing; `--param reg_ramp=false`: the paper's fixed λ, μ, which overfit the noise). The
protocol runs Table 1's 6000 iterations (`stop: fixed`); the preset alone stops by the
discrepancy rule when σ is given (`--param stop=auto` here; the row records where it fires).
Degradation and PSNR exactly as dip-denoise-cbm3d9: AWGN added in float, unclipped; PSNR on RGB,
float, no crop, estimate clipped to [0, 1] (§4: "denoising results are evaluated with all
three channels").""",
))

_SR = """HR modcropped to a multiple of the scale; LR = Lanczos2 decimation (DIP's §4 operator, which
DeepRED's code reuses), rounded to 8 bits; noise-free. Preset 'sr4' / 'sr8' (Table 1): σ_noise
0.02, LR 0.001, BM3D σ_f = 5, λ = 0.05, μ = 0.06, 2000 / 4000 iterations; DIP's SR networks.
PSNR as dip-sr-*: 8-bit rounded, BT.601 Y, 4-pixel border cropped (§4: SR "compared on the
luminance channel")."""

register_protocol(Protocol(
    name="deepred-sr-set5", task="sr", dataset="set5", color="rgb", scales=(4, 8),
    sr_filter="lanczos2", quantize_observation=True, crop=4, y_channel=True, quantize=True,
    method="deepred", **_TRACE,
    description=f"""Set5 ×4 / ×8 super-resolution with DeepRED (Table 2: 30.72 / 26.04 dB).
Table 2 ×4 / ×8 averages: DeepRED 30.72 / 26.04, RED [FP-BM3D] 30.23 / 25.56, DIP (their run)
29.95 / 25.84 dB.
{_SR}""",
))

register_protocol(Protocol(
    name="deepred-sr-set14", task="sr", dataset="set14", color="rgb", gray_images="replicate",
    scales=(4, 8), sr_filter="lanczos2", quantize_observation=True, crop=4, y_channel=True,
    quantize=True, method="deepred", **_TRACE,
    description=f"""Set14 ×4 / ×8 super-resolution with DeepRED (Table 3: 27.63 / 24.28 dB).
Table 3 ×4 / ×8 averages: DeepRED 27.63 / 24.28, RED [FP-BM3D] 27.36 / 23.89, DIP (their run)
27.16 / 24.10 dB. (Table 3 lists 12 images; Set14 here has 14: compare per image.)
{_SR}""",
))

_DEBLUR = """Blur (§4.3, after RED and NCSR): 9×9 uniform ('uniform9') and 25×25 Gaussian of std 1.6
('gauss25_s1.6'), built in code; circular boundary; white Gaussian noise σ = √2 ≈ 1.414 added in
float, unclipped. Preset 'deblur' (Table 1): σ_noise 0.01, LR 0.004, NLM σ_f = 3, λ = 0.02,
μ = 0.04, 30000 iterations (--iters for a shorter budget), denoiser every 10.
PSNR (§4: deblurring "compared on the luminance channel"): 8-bit rounded, BT.601 Y for colour
(gray images as they are), no border crop (the blur is circular)."""

register_protocol(Protocol(
    name="deepred-deblur-color", task="deblur", dataset="deblur_color", color="rgb",
    image_names=TABLE4_IMAGES, kernels="deepred", sigmas=(math.sqrt(2) * 1.0,), boundary="circular",
    y_channel=True, quantize=True, method="deepred", **_TRACE,
    description=f"""Colour deblurring (Table 4: DeepRED 31.43 uniform / 32.51 Gaussian dB).
Table 4 averages (butterfly, leaves, parrots, starfish), uniform / Gaussian: DeepRED 31.43 /
32.51, DIP 30.51 / 31.62, RED FP-TNRD 30.74 / 32.35, NCSR 30.47 / 32.02 dB.
{_DEBLUR}""",
))

register_protocol(Protocol(
    name="deepred-deblur-set5-gray", task="deblur", dataset="set5", color="gray",
    kernels="deepred", sigmas=(math.sqrt(2) * 1.0,), boundary="circular", quantize=True,
    method="deepred", **_TRACE,
    description=f"""Set5 as gray, deblurring (Table 5: DeepRED 32.07 uniform / 33.81 Gaussian dB).
Table 5 averages, uniform / Gaussian: DeepRED 32.07 / 33.81, MSWNN 31.83 / 33.54, IRCNN 31.70 /
33.30, IDD-BM3D 31.29 / 33.27, EPLL 30.34 / 32.89 dB. Gray = MATLAB rgb2gray of the Set5 images.
{_DEBLUR}""",
))
