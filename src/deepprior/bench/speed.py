"""``deepprior bench speed``: how fast every method runs on this machine, fp32 vs bf16.

Measures, for 256² and 512² gray and colour images: the matmul throughput of the machine in
fp32 and bf16 (the practical ceiling), the DAE forward pass (megapixels/s and achieved
TFLOP/s), one DIP step of every distinct preset network (colour, the smallest size) and where
its time goes (:func:`dip_step_profile`), and the
per-iteration time of every registered iterative method (timed as
``(t(iters = 1 + n) − t(iters = 1)) / n`` so set-up cost is excluded). Every timing is the
fastest of several repeats after warm-up calls: on a shared 2-core machine other work only ever
adds time, and the median of three let one slow spell skew a whole fp32/bf16 ratio. The JSON
records threads and the CPU.
"""
from __future__ import annotations

import math
import resource
import time

import torch

from ..compute import environment, get_compute
from ..nets.dae import DAE, FastDAE, conv_flops

SIZES = (256, 512)


def _best_time(fn, repeats: int = 5, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_throughput(dtype: torch.dtype, n: int = 2048) -> float:
    """TFLOP/s of an n×n matmul in ``dtype`` (bf16 uses the CPU's bf16 units when present)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    t = _best_time(lambda: torch.mm(a, b), repeats=10)
    return 2 * n ** 3 / t / 1e12


def dae_forward(dae: DAE, size: int, precision: str) -> dict:
    comp = get_compute("cpu", precision)
    fast = FastDAE(dae, comp, tile=None)
    x = torch.rand(1, dae.channels, size, size)
    with torch.no_grad():
        t = _best_time(lambda: fast(x, 25 / 255))
    flops = conv_flops(dae.net, (1, dae.channels + int(dae.conditional), size, size))
    return {"seconds": t, "megapixels_per_s": size * size / t / 1e6, "tflops": flops / t / 1e12}


def method_iteration(name: str, task_problem, size: int, channels: int, precision: str, n: int = 4,
                     **params) -> dict:
    """Seconds per iteration of method ``name`` on a synthetic problem of the given size
    (``params``: extra method parameters)."""
    from ..methods import get_method

    op, y, sigma = task_problem(size, channels)
    run = get_method(name).run

    def timed(iters):
        t0 = time.perf_counter()
        run(y, op, sigma=sigma, iters=iters, seed=0, device="cpu", precision=precision, **params)
        return time.perf_counter() - t0

    timed(1)  # warm-up (weights load, oneDNN kernel selection)
    t1 = min(timed(1) for _ in range(3))
    tn = min(timed(1 + n) for _ in range(3))
    return {"seconds_per_iter": max(tn - t1, 0.0) / n, "setup_seconds": t1}


# One network per entry (the other presets share the default 'sr' network and differ only in
# σ_p, learning rate and iterations): ``nets.hourglass.PRESETS``.
DIP_NETWORK_PRESETS = ("sr", "jpeg", "inpaint-hole", "inpaint-hole-deep", "flash", "preimage", "actmax")


def dip_preset_steps(size: int, channels: int = 3, log=print) -> list[dict]:
    """Seconds per DIP fitting step (forward, backward, Adam) of every distinct preset network,
    fp32 and bf16, on the deblurring problem (the flash preset gets the observation as guide)."""
    rows = []
    for preset in DIP_NETWORK_PRESETS:
        extra = {"guide": _deblur_problem(size, channels)[1]} if preset == "flash" else {}
        for precision in ("fp32", "bf16"):
            r = {"preset": preset, "channels": channels, "size": size, "precision": precision,
                 **method_iteration("dip", _deblur_problem, size, channels, precision, preset=preset, **extra)}
            rows.append(r)
            log(f"dip preset {preset} {channels}ch {size}² {precision}: {r['seconds_per_iter'] * 1000:.1f} ms/step")
    return rows


# Top-level op names → category of the DIP step profile. Inclusive times of these ops do not
# nest in one another (a convolution's own reorders count as convolution); the rest of the step
# (loss, operator, EMA, Python) is "other".
_PROFILE_CATEGORIES = (
    ("convolution", ("aten::convolution", "aten::convolution_backward")),
    ("batch norm", ("aten::batch_norm", "aten::native_batch_norm_backward")),
    ("padding", ("aten::pad", "aten::reflection_pad2d_backward", "aten::replication_pad2d_backward")),
    ("upsampling", ("aten::upsample_bilinear2d", "aten::upsample_bilinear2d_backward",
                    "aten::upsample_nearest2d", "aten::upsample_nearest2d_backward")),
    ("concatenation", ("aten::cat",)),
    ("optimizer (Adam)", ("Optimizer.step#Adam.step", "Optimizer.zero_grad#Adam.zero_grad")),
    ("activations", ("aten::leaky_relu", "aten::leaky_relu_backward", "aten::sigmoid",
                     "aten::sigmoid_backward")),
    ("dtype casts", ("aten::_to_copy",)),
)


def dip_step_profile(size: int = 256, channels: int = 3, precision: str = "bf16", steps: int = 4,
                     preset: str = "sr", warmup: int = 2, log=print) -> dict:
    """Where one DIP fitting step's time goes: ``torch.profiler`` records ``steps`` whole steps
    (forward, backward, Adam; after ``warmup`` steps), started and stopped at step boundaries;
    the wall time of those steps is split by the inclusive time of the top-level ops of
    :data:`_PROFILE_CATEGORIES` — convolutions (forward and backward) and the overheads #7 asks
    about (batch norm, padding, upsampling, concatenation, Adam, activations, casts); "other" is
    the remainder (loss, operator, EMA, autograd bookkeeping, Python)."""
    from torch.profiler import ProfilerActivity, profile

    from ..methods import get_method

    op, y, sigma = _deblur_problem(size, channels)
    prof = profile(activities=[ProfilerActivity.CPU])
    wall = {}

    def hook(t, net, opt):  # after step t's optimiser step
        if t == warmup:
            prof.start()
            wall["t0"] = time.perf_counter()
        elif t == warmup + steps:
            wall["seconds"] = time.perf_counter() - wall["t0"]
            prof.stop()

    get_method("dip").run(y, op, sigma=sigma, iters=warmup + steps, seed=0, device="cpu", precision=precision,
                          preset=preset, stop="fixed", backtrack=False, step_hook=hook)
    step_ms = wall["seconds"] * 1e3 / steps
    inclusive = {e.key: e.cpu_time_total / 1e3 / steps for e in prof.key_averages()}  # ms per step
    groups = {name: sum(inclusive.get(k, 0.0) for k in keys) for name, keys in _PROFILE_CATEGORIES}
    groups["other"] = max(step_ms - sum(groups.values()), 0.0)
    total = sum(groups.values())
    out = {"preset": preset, "size": size, "channels": channels, "precision": precision, "steps": steps,
           "ms_per_step": step_ms, "fraction": {k: v / total for k, v in groups.items()},
           "ms_per_step_by_category": groups}
    log(f"DIP step profile ({preset}, {channels}ch {size}² {precision}): {step_ms:.0f} ms per step "
        "(profiled); " + ", ".join(f"{k} {v / total:.0%}" for k, v in groups.items()))
    return out


def deepred_concurrency(size: int, channels: int = 3, precision: str = "auto", n: int = 20,
                        log=print) -> dict:
    """DeepRED with the denoiser (NLM, every 10 rounds) run serially vs in a worker thread
    during the network's Adam step (``concurrent=True``, the paper's Fig. 1). ``n`` rounds
    cover n/10 denoiser calls; the worker only helps when a core is free for it."""
    out = {"size": size, "channels": channels, "rounds": n}
    for mode in (False, True):
        r = method_iteration("deepred", _deblur_problem, size, channels, precision, n=n, concurrent=mode)
        out["concurrent" if mode else "serial"] = r["seconds_per_iter"]
    out["speedup"] = out["serial"] / max(out["concurrent"], 1e-12)
    log(f"deepred {channels}ch {size}² serial {out['serial'] * 1000:.1f} ms/round, concurrent "
        f"{out['concurrent'] * 1000:.1f} ms/round ({out['speedup']:.2f}×)")
    return out


def _deblur_problem(size: int, channels: int):
    from ..noise import add_gaussian_noise
    from ..operators import Blur

    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, channels, size, size, generator=g)
    k = torch.ones(9, 9) / 81
    op = Blur(k, "circular")
    return op, add_gaussian_noise(op(x), 2.55 / 255, generator=g), 2.55 / 255


def _photo(height: int, width: int) -> torch.Tensor:
    """A clean colour 'photo' of any size: scikit-image's astronaut resized (bicubic) to it."""
    import numpy as np
    import torch.nn.functional as F
    from skimage import data

    x = torch.from_numpy(np.ascontiguousarray(data.astronaut().transpose(2, 0, 1))).float()[None] / 255
    return F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)


def large_image_denoise(megapixels: float = 12.0, tile: int = 1024, weights: dict | None = None,
                        seam_size: int = 1536, seam_tile: int = 512, log=print) -> dict:
    """DAE denoising (σ = 25) of a ``megapixels`` 4:3 colour photo with overlapping tiles, and
    the seam check: PSNR of tiled (``seam_tile``) vs untiled inference on a ``seam_size``² image
    that fits both ways. Peak memory is the process's resident high-water mark."""
    from ..denoisers import DAEDenoiser
    from ..metrics import psnr
    from ..noise import add_gaussian_noise

    comp = get_compute("cpu", "auto")
    sigma = 25 / 255
    w = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    h = int(round(megapixels * 1e6 / w))
    g = torch.Generator().manual_seed(0)
    dae = _dae_for(3, weights)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    clean = _photo(h, w)
    noisy = add_gaussian_noise(clean, sigma, generator=g)
    den = DAEDenoiser(dae, compute=comp, tile=tile)
    t0 = time.perf_counter()
    out = den(noisy, sigma).clamp(0, 1)
    seconds = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    image_mb = clean.numel() * 4 / 2 ** 20
    big = {"height": h, "width": w, "megapixels": h * w / 1e6, "tile": tile, "seconds": seconds,
           "megapixels_per_s": h * w / 1e6 / seconds, "psnr_noisy": psnr(noisy.clamp(0, 1), clean),
           "psnr_denoised": psnr(out, clean), "image_mb_fp32": image_mb,
           "peak_rss_mb_before": rss0, "peak_rss_mb_after": rss1, "precision": comp.precision}
    log(f"DAE denoise {h}×{w} ({big['megapixels']:.1f} MP) tile {tile}: {seconds:.1f} s, "
        f"{big['psnr_noisy']:.2f} → {big['psnr_denoised']:.2f} dB, peak RSS {rss1:.0f} MB "
        f"(one fp32 copy of the image: {image_mb:.0f} MB)")
    del clean, noisy, out
    clean = _photo(seam_size, seam_size)
    noisy = add_gaussian_noise(clean, sigma, generator=g)
    untiled = DAEDenoiser(dae, compute=comp, tile=None)(noisy, sigma).clamp(0, 1)
    tiled = DAEDenoiser(dae, compute=comp, tile=seam_tile)(noisy, sigma).clamp(0, 1)
    seam = {"size": seam_size, "tile": seam_tile, "psnr_untiled": psnr(untiled, clean),
            "psnr_tiled": psnr(tiled, clean), "max_abs_difference": float((tiled - untiled).abs().max())}
    seam["psnr_difference"] = seam["psnr_tiled"] - seam["psnr_untiled"]
    log(f"seams: {seam_size}² tiled ({seam_tile}) vs untiled: {seam['psnr_tiled']:.4f} vs "
        f"{seam['psnr_untiled']:.4f} dB, max |Δ| {seam['max_abs_difference']:.2e}")
    return {"large": big, "seams": seam}


def run_speed(sizes=SIZES, methods: tuple[str, ...] | None = None, weights: dict | None = None,
              large_megapixels: float | None = 12.0, log=print) -> dict:
    """The speed benchmark; ``methods`` defaults to every registered iterative network method;
    ``large_megapixels`` adds :func:`large_image_denoise` (None skips it)."""
    from ..methods import METHODS, load_all

    load_all()
    if methods is None:
        methods = tuple(m for m in ("daep", "dmsp", "dip", "deepred") if m in METHODS)
    results: dict = {"matmul_tflops": {}, "dae_forward": [], "method_iteration": []}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        results["matmul_tflops"][name] = matmul_throughput(dtype)
        log(f"matmul {name}: {results['matmul_tflops'][name]:.3f} TFLOP/s")
    for channels in (1, 3):
        dae = _dae_for(channels, weights)
        for size in sizes:
            for precision in ("fp32", "bf16"):
                r = {"channels": channels, "size": size, "precision": precision, **dae_forward(dae, size, precision)}
                r["fraction_of_matmul_peak"] = r["tflops"] / results["matmul_tflops"][precision]
                results["dae_forward"].append(r)
                log(f"DAE forward {channels}ch {size}² {precision}: {r['seconds'] * 1000:.1f} ms, "
                    f"{r['megapixels_per_s']:.2f} MP/s, {r['tflops']:.3f} TFLOP/s")
            for name in methods:
                for precision in ("fp32", "bf16"):
                    r = {"method": name, "channels": channels, "size": size, "precision": precision,
                         **method_iteration(name, _deblur_problem, size, channels, precision)}
                    results["method_iteration"].append(r)
                    log(f"{name} {channels}ch {size}² {precision}: {r['seconds_per_iter'] * 1000:.1f} ms/iter")
    if "dip" in methods:
        results["dip_preset_step"] = dip_preset_steps(min(sizes), log=log)
        results["dip_step_profile"] = [dip_step_profile(min(sizes), precision=p, log=log)
                                       for p in ("fp32", "bf16")]
    speedups = {}
    for group, key in (("dae_forward", "seconds"), ("method_iteration", "seconds_per_iter"),
                       ("dip_preset_step", "seconds_per_iter")):
        rows = results.get(group, [])
        for r in rows:
            if r["precision"] != "bf16":
                continue
            ident = {k: r[k] for k in ("method", "preset", "channels", "size") if k in r}
            fp = next(q for q in rows if q["precision"] == "fp32" and all(q.get(k) == v for k, v in ident.items()))
            label = "/".join(str(v) for v in ident.values())
            speedups[f"{group}:{label}"] = fp[key] / max(r[key], 1e-12)
    results["bf16_speedup"] = speedups
    if "deepred" in methods:
        results["deepred_concurrent"] = deepred_concurrency(max(sizes), log=log)
    if large_megapixels:
        results["large_image"] = large_image_denoise(large_megapixels, weights=weights, log=log)
    env = environment()
    env["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"protocol": "speed", "method": "all", "settings": {"sizes": list(sizes), "methods": list(methods),
            "large_megapixels": large_megapixels,
            "task": "deblur 9×9 box blur, circular, σ = 2.55", "timing": "fastest of repeats after warm-up"},
            "environment": env, "results": results}


def _dae_for(channels: int, weights: dict | None) -> DAE:
    from ..nets.dae import default_weights_path, load_dae

    path = (weights or {}).get(channels) or default_weights_path(channels)
    try:
        return load_dae(path)
    except FileNotFoundError:
        # Timing does not depend on the weights: an untrained net of the shipped architecture.
        return DAE("unet", channels, (0, 55 / 255)).eval()
