"""Benchmark protocols of Deep Image Prior (Ulyanov, Vedaldi & Lempitsky, IJCV 2020).

Each protocol reproduces one table or figure of the paper with the paper's iteration
counts (the method's presets, ``nets.hourglass.PRESETS``), and states the PSNR convention
of the paper next to the one used here. σ is in 8-bit units (σ = 25 means 25/255).

The DIP runs record, per case, where the discrepancy rule and ES-WMV would have stopped and
the PSNR there, the best PSNR along the run and the fixed-iteration PSNR
(``Result.extras['runs']``; the history holds the PSNR of every iteration), so one
fixed-iteration run answers "PSNR at stop vs best vs fixed".

Paper SR evaluation (``super-resolution_eval_script.py`` of the reference repository,
"the script used to get the numbers in the paper"): the HR image is centre-cropped to a
multiple of 32 (``load_LR_HR_imgs_sr(..., enforse_div32='CROP')``), the LR image is PIL's
antialiased resize of it, saved results are 8-bit PNGs; PSNR on the luma
``Y = (219·Y' + 16)/255`` with ``Y' = 0.299 R + 0.587 G + 0.114 B`` (OpenCV's YCrCb rescaled
to [16, 235] — the same as MATLAB ``rgb2ycbcr``), on the centre-cropped region minus 4 pixels
at the top/left and 5 at the bottom/right (``t[0] + 4 : t[-1] - 4`` with exclusive ends).
The "Bicubic" rows are LapSRN's bicubic upsamplings (of MATLAB-bicubic LR images).
"""
from __future__ import annotations

import torch

from ..metrics import psnr
from .protocols import Protocol, register_protocol

__all__ = ["TABLE3_SET12", "TRACE_ITERS", "fit_metrics"]

# iterations at which the runner scores the running estimate (PSNR against time, every protocol
# of an iterative network method); the paper schedules end at 1800, 2000, 4000, 6000, 11000, 30000
TRACE_ITERS = (50, 100, 200, 300, 500, 750, 1000, 1500, 1800, 2000, 3000, 4000, 6000, 8000, 11000,
               20000, 30000)


WMV_SERIES_EVERY = 10


def fit_metrics(protocol, case, prep, estimate, result, context) -> dict:
    """Where the DIP/DeepRED fit stopped and what its monitors saw (last run of the case):
    stop rule and iteration, the iterate returned, backtracks, where the discrepancy rule and
    ES-WMV fired, and — from the per-iteration PSNR of the returned estimate (float, all
    channels, no crop: the method's own history, not the protocol's convention) — the best
    PSNR along the run, its iteration and seconds, and the PSNR where each rule fired.
    DeepRED adds its denoiser calls, seconds in the denoiser, the final ADMM gap, with the λ/μ
    ramp how often it fired and the final λ, μ, and
    ``psnr_x_minus_u``: this protocol's PSNR of x − u, the image the authors' SR/deblurring code returns.
    ``wmv_series``: every :data:`WMV_SERIES_EVERY` iterations, ES-WMV's windowed variance and
    the PSNR of the estimate — enough to replay the rule offline with another patience
    (:func:`deepprior.methods.dip.replay_wmv`)."""
    runs = result.extras.get("runs") or []
    if not runs:
        return {}
    r = runs[-1]
    out = {"stop_reason": r["stop_reason"], "stop_iter": r["stop_iter"],
           "selected_iter": r["selected_iter"], "backtracks": r["backtracks"],
           "discrepancy_iter": r["discrepancy"]["iter"], "wmv_min_iter": r["wmv"]["best_iter"],
           "wmv_detect_iter": r["wmv"]["detect_iter"]}
    p = r.get("psnr")
    if p:
        out.update(psnr_float_best=p["best"], psnr_float_best_iter=p["best_iter"],
                   seconds_to_best=p["best_seconds"], psnr_float_last=p["last"],
                   psnr_float_at_discrepancy=p["at_discrepancy"], psnr_float_at_wmv_min=p["at_wmv_min"])
    series = [h for h in result.history if "wmv_var" in h and h["iter"] % WMV_SERIES_EVERY == 0]
    if series:
        out["wmv_series"] = {"every": WMV_SERIES_EVERY, "iter": [h["iter"] for h in series],
                             "var": [h["wmv_var"] for h in series],
                             "psnr": [h.get("psnr") for h in series]}
    admm = r.get("admm")
    if admm:
        out.update(denoiser_calls=admm["denoiser_calls"], denoiser_seconds=admm["denoiser_seconds"],
                   admm_final_gap=admm["final_gap"])
        out.update({k: admm[k] for k in ("ramp_fired", "final_lam", "final_mu") if k in admm})
    x_minus_u = result.extras.get("x_minus_u")
    if x_minus_u is not None:  # DeepRED: what the authors' SR/deblurring code returns, in this protocol's PSNR
        out["psnr_x_minus_u"] = psnr(x_minus_u.detach().to("cpu", torch.float32).clamp(0, 1), prep.x,
                                     **context["convention"])
    return out

# Table 3 images present in Set12 (file stem → the paper's name). Finger, Hill and Montage
# are not in Set12; Starfish (04), Monarch (05), Airplane (06), Parrot (07) are not in Table 3.
TABLE3_SET12 = {"09": "Barbara", "10": "Boat", "02": "House", "08": "Lena", "03": "Peppers",
                "01": "C.man", "12": "Couple", "11": "Man"}

_SR_CONVENTION = """Degradation: HR modcropped to a multiple of the scale (bottom/right); LR = Lanczos2
decimation (operators.Downsample(s, 'lanczos2'), MATLAB-imresize-style antialiased kernel) —
the decimation operator of DIP §4 — rounded to 8 bits; noise-free. The same operator is the
DIP data term. Presets: ×4 'sr' (2000 it, σ_p = 1/30), ×8 'sr8' (4000 it, σ_p = 1/20), §4.
PSNR: 8-bit rounded, BT.601 Y (rgb2ycbcr), 4-pixel border cropped. Paper: the same Y and
8-bit rounding, 4 px top/left + 5 px bottom/right of the HR centre-cropped to a multiple of
32 (identical region up to one row/column for sides that are multiples of 32); its LR came
from PIL's Lanczos-3 antialiased resize, and its bicubic row from LapSRN's MATLAB-bicubic LR.
`--method bicubic` on this protocol gives the bicubic reference on the same LR images."""

register_protocol(Protocol(
    name="dip-sr-set5", task="sr", dataset="set5", color="rgb", scales=(4, 8),
    sr_filter="lanczos2", quantize_observation=True, crop=4, y_channel=True, quantize=True,
    method="dip", method_params={"stop": "fixed"}, trace_iters=TRACE_ITERS, extra_metrics=fit_metrics,
    description=f"""Set5 ×4 / ×8 super-resolution with DIP (Table 2: 29.89 / 25.88 dB; bicubic 28.44 / 24.37).
DIP Table 2, "Ours" row: baby 31.49/28.28, bird 31.80/27.09, butterfly 26.23/20.02,
head 31.04/29.55, woman 28.93/24.50 (×4/×8).
{_SR_CONVENTION}""",
))

register_protocol(Protocol(
    name="dip-sr-set14", task="sr", dataset="set14", color="rgb", gray_images="replicate",
    scales=(4, 8), sr_filter="lanczos2", quantize_observation=True, crop=4, y_channel=True,
    quantize=True, method="dip", method_params={"stop": "fixed"}, trace_iters=TRACE_ITERS,
    extra_metrics=fit_metrics,
    description=f"""Set14 ×4 / ×8 super-resolution with DIP (Table 1: 27.00 / 24.15 dB; bicubic 26.05 / 23.09).
DIP Table 1, "Ours" row, 14 images (the gray 'bridge' replicated to RGB, as the paper's
evaluation, which converts every image to 3 channels).
{_SR_CONVENTION}""",
))

_DENOISE_CONVENTION = """AWGN σ = 25 added in float, unclipped (the reference notebook clips the noisy image to
[0, 1]), one fixed draw per image. Preset 'denoise' (§4): default architecture, σ_p = 1/30,
LR 0.01, 1800 iterations, exponential average γ = 0.99 (§3.1: 29.22 dB for the raw output —
history 'psnr_raw' — and 30.43 with the average; `--param restarts=2` averages two runs: 31.00).
PSNR (reference notebook: skimage compare_psnr on float images): RGB, float, no 8-bit
rounding, no border crop; estimate clipped to [0, 1]. All nine images are 256² / 512² /
768×512, multiples of 32, so the notebook's centre crop is the identity."""

register_protocol(Protocol(
    name="dip-denoise-cbm3d9", task="denoise", dataset="cbm3d9", color="rgb", sigmas=(25.0,),
    noise_known=True, method="dip", method_params={"stop": "fixed"}, trace_iters=TRACE_ITERS,
    extra_metrics=fit_metrics,
    description=f"""CBM3D 9-image colour denoising σ = 25, DIP fixed 1800 iterations (§3.1: 30.43 dB with EMA).
§3.1 references: CBM3D 31.42, NLM 30.26 (`--method bm3d` / `nlm` on this protocol).
σ is passed to DIP only to monitor the discrepancy rule (extras); the stop is fixed.
{_DENOISE_CONVENTION}""",
))

register_protocol(Protocol(
    name="dip-denoise-cbm3d9-auto", task="denoise", dataset="cbm3d9", color="rgb", sigmas=(25.0,),
    noise_known=False, method="dip", trace_iters=TRACE_ITERS, extra_metrics=fit_metrics,
    description=f"""CBM3D 9-image denoising σ = 25, blind DIP with automatic stopping (ES-WMV).
Same images and noise as dip-denoise-cbm3d9; σ is not given to the method, which stops by
the windowed moving variance of its outputs (W = 100, P = 1000; budget 3000 iterations) and
returns the estimate at the variance minimum. Compare PSNR and seconds with the fixed run.
{_DENOISE_CONVENTION}""",
))

register_protocol(Protocol(
    name="dip-inpaint-set12", task="inpaint", dataset="set12", color="gray", missing=0.5,
    method="dip", method_params={"preset": "reconstruction", "stop": "fixed"},
    image_names=tuple(TABLE3_SET12), trace_iters=TRACE_ITERS, extra_metrics=fit_metrics,
    description="""Set12 gray inpainting, 50 % i.i.d. Bernoulli mask, DIP 'reconstruction' preset (Table 3).
DIP Table 3 "Ours" on the images also in Set12: Barbara (09) 32.22, Boat (10) 33.06,
House (02) 39.16, Lena (08) 36.16, Peppers (03) 33.05, C.man (01) 29.8, Couple (12) 32.52,
Man (11) 32.20 — mean 33.52 over these eight (bench/protocols_dip.TABLE3_SET12); Papyan et
al. 28.14 / 31.44 / 34.58 / 35.04 / 31.11 / 27.90 / 31.18 / 31.92. Only these eight run
(Set12's 04-07 are not in Table 3). Preset (§4 'Image reconstruction (Fig. 12)'): default
architecture, 11000 iterations, LR 0.001, σ_p = 1/30. Mask drawn per image from the case
seed (identical for every method, as classic-inpaint-set12); noise-free.
PSNR: gray, float (no 8-bit rounding), no border crop; estimate clipped to [0, 1]
(the paper does not state its convention; its images come from Heide et al. 2015).""",
))
