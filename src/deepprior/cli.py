"""The ``deepprior`` command line.

Noise levels on the command line are in 8-bit units (``--sigma 25`` means σ = 25/255), as in
the papers' tables; the Python API takes σ in [0, 1] units. Every user error prints one line
naming the problem and exits with code 2, before any output file is written.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

import numpy as np

SIGMA_HELP = "noise standard deviation in 8-bit units (25 means 25/255)"


class CLIError(Exception):
    """A user-facing problem: printed as one line, exit code 2."""


# --------------------------------------------------------------------------- helpers

def _parse_params(items: list[str] | None) -> dict:
    """``--param name=value`` pairs; values are parsed as JSON when possible (numbers, true)."""
    params = {}
    for item in items or []:
        if "=" not in item:
            raise CLIError(f"expected name=value (as --param takes), got {item!r}")
        key, value = item.split("=", 1)
        try:
            params[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            params[key.replace("-", "_")] = value
    return params


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _add_operator_args(p: argparse.ArgumentParser, task_required: bool) -> None:
    from .operators import TASKS

    p.add_argument("--task", choices=TASKS, required=task_required, help="degradation / restoration task")
    p.add_argument("--kernel", help="blur kernel file (.npy, .png, .mat, .txt; MATLAB orientation, true convolution)")
    p.add_argument("--boundary", choices=("circular", "valid", "zero"), default="circular",
                   help="blur boundary: circular (periodic, DeepRED), valid (observation smaller by "
                        "kernel−1, DAEP/DMSP code), zero (zero padding)")
    p.add_argument("--scale", type=int, help="super-resolution factor")
    p.add_argument("--sr-filter", choices=("bicubic", "lanczos2", "box", "point"), default="bicubic",
                   help="decimation filter for sr without --kernel (default: MATLAB-compatible bicubic)")
    p.add_argument("--mask", help="inpainting mask image (white = known pixel)")
    p.add_argument("--pattern", choices=("RGGB", "BGGR", "GRBG", "GBRG"), default="RGGB", help="Bayer pattern")
    p.add_argument("--sigma", type=float, help=SIGMA_HELP)


def _build_operator(args, image_hw: tuple[int, int]):
    from .io import read_kernel, read_mask
    from .operators import make_operator

    kernel = read_kernel(args.kernel) if args.kernel else None
    mask = read_mask(args.mask, shape=image_hw) if args.mask else None
    return make_operator(args.task, kernel=kernel, boundary=args.boundary, scale=args.scale,
                         sr_filter=args.sr_filter, mask=mask, pattern=args.pattern)


def _check_sigma_8bit(sigma):
    if sigma is not None and not (0 <= sigma <= 255):
        raise CLIError(f"--sigma {sigma:g} is outside [0, 255] ({SIGMA_HELP})")
    return sigma


# --------------------------------------------------------------------------- degrade

def _add_degrade(sub):
    p = sub.add_parser("degrade", help="simulate a degradation: blur, downsample, mask, mosaic, noise")
    p.add_argument("clean", help="clean input image")
    p.add_argument("-o", "--output", required=True, help="degraded image to write (a .json spec is written beside it)")
    _add_operator_args(p, task_required=True)
    p.add_argument("--drop", type=float, default=0.5,
                   help="inpaint without --mask: fraction of pixels removed at random (default 0.5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bit-depth", type=int, choices=(8, 16), default=8)
    p.set_defaults(func=_cmd_degrade)


def _cmd_degrade(args) -> int:
    import torch

    from .io import read_image, to_numpy, to_tensor, write_image, write_json_atomic
    from .noise import add_gaussian_noise, sigma_to_unit

    sigma = _check_sigma_8bit(args.sigma) or 0.0
    img = read_image(args.clean)
    h, w = img.pixels.shape[:2]
    if args.task == "inpaint" and not args.mask:
        if not 0 < args.drop < 1:
            raise CLIError(f"--drop must be in (0, 1), got {args.drop}")
        rng = np.random.default_rng(args.seed)
        mask_arr = (rng.random((h, w)) >= args.drop).astype(np.float32)
        from .operators import Mask

        op = Mask(mask_arr)
    else:
        if args.task == "demosaic" and img.pixels.shape[2] != 3:
            raise CLIError("demosaic needs a colour (RGB) clean image")
        op = _build_operator(args, (h, w))
    x = to_tensor(img.pixels)
    op.validate_input_shape(tuple(x.shape))
    g = torch.Generator().manual_seed(args.seed)
    y = add_gaussian_noise(op.forward(x), sigma_to_unit(sigma), generator=g)
    out = Path(args.output)
    alpha = img.alpha if tuple(y.shape[-2:]) == (h, w) else None
    write_image(out, to_numpy(y).clip(0, 1), bit_depth=args.bit_depth, alpha=alpha,
                overwrite_protect=args.clean)
    write_json_atomic(_sidecar(out), {"task": op.task, "operator": op.to_dict(), "sigma": sigma,
                                      "clean_shape": [h, w, int(img.pixels.shape[2])], "seed": args.seed,
                                      "source": str(args.clean)})
    print(f"wrote {out} ({op.task}, σ={sigma:g}) and {_sidecar(out)}")
    return 0


# --------------------------------------------------------------------------- restore

def _add_restore(sub):
    p = sub.add_parser("restore", help="restore a degraded image")
    p.add_argument("degraded", help="degraded image")
    p.add_argument("-o", "--output", required=True, help="restored image to write")
    p.add_argument("--method", "-m", help="restoration method (see `deepprior methods`; default: best available)")
    p.add_argument("--spec", help="operator spec written by `deepprior degrade` (default: DEGRADED.json if present)")
    _add_operator_args(p, task_required=False)
    p.add_argument("--iters", type=int, help="iterations (default: the method's paper default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="network precision: auto = bf16 where the CPU/GPU has bf16 units")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--reference", help="clean image: print PSNR/SSIM (and PSNR in the progress bar)")
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="method-specific parameter (repeatable)")
    p.add_argument("--noise-blind", action="store_true",
                   help="noise-adaptive restoration, no --sigma needed (dmsp: DMSP eq. 21-22)")
    p.add_argument("--kernel-blind", action="store_true",
                   help="estimate the blur kernel as well (dmsp NA+KE, DMSP §4): coarse-to-fine estimate, then "
                        "noise-adaptive DMSP (--param kernel_estimator=joint: the paper's joint descent); "
                        "give --kernel-size N (or --kernel for the size); writes OUTPUT_kernel.npy/.png")
    p.add_argument("--kernel-size", type=int, metavar="N", help="--kernel-blind: size N of the N×N kernel")
    p.add_argument("--bit-depth", type=int, choices=(8, 16), default=8)
    p.add_argument("--checkpoint", metavar="FILE",
                   help="dip, deepred: save the fit's state to FILE every 5 minutes and on Ctrl-C; "
                        "run the same command again to continue where it stopped")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_restore)


def _load_spec(args, degraded: Path):
    """Operator and σ (8-bit) from --spec, the sidecar, or the --task arguments."""
    from .operators import operator_from_dict

    spec_path = Path(args.spec) if args.spec else None
    if spec_path is None and not args.task and _sidecar(degraded).exists():
        spec_path = _sidecar(degraded)
    if spec_path is not None:
        if not spec_path.exists():
            raise CLIError(f"spec file not found: {spec_path}")
        try:
            spec = json.loads(spec_path.read_text())
            op = operator_from_dict(spec["operator"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CLIError(f"{spec_path} is not a deepprior spec ({exc})") from None
        sigma = args.sigma if args.sigma is not None else spec.get("sigma")
        return op, sigma
    return None, args.sigma


def _cmd_restore(args) -> int:
    import torch

    from .io import read_image, to_numpy, to_tensor, write_image
    from .methods import best_method, get_method
    from .metrics import psnr, ssim

    degraded = Path(args.degraded)
    img = read_image(degraded)
    op, sigma8 = _load_spec(args, degraded)
    if op is None:
        if not args.task:
            raise CLIError(f"no spec: pass --task (or --spec, or keep {_sidecar(degraded).name} beside the image)")
        if args.kernel_blind and args.task == "deblur" and not args.kernel:
            if not args.kernel_size or args.kernel_size < 1:
                raise CLIError("--kernel-blind without --kernel needs --kernel-size N")
            from .methods.prior import initial_kernel
            from .operators import Blur

            op = Blur(initial_kernel(args.kernel_size), args.boundary)
        else:
            op = _build_operator(args, img.pixels.shape[:2])
    _check_sigma_8bit(sigma8)
    y = to_tensor(img.pixels)
    if op.task == "demosaic" and y.shape[1] == 3:
        y = y[:, :1]  # a CFA image saved as RGB carries the same value in every channel
    try:
        x_shape = op.input_shape(tuple(y.shape))
        op.validate_input_shape(x_shape)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    name = args.method or best_method(op.task)
    info = get_method(name)
    if op.task not in info.tasks:
        from .methods import METHODS

        able = sorted(n for n, m in METHODS.items() if op.task in m.tasks)
        raise CLIError(f"method {name!r} does not support task {op.task!r}; use one of: {', '.join(able)}")
    reference = None
    if args.reference:
        ref_img = read_image(args.reference)
        reference = to_tensor(ref_img.pixels)
        if tuple(reference.shape[-2:]) != tuple(x_shape[-2:]) or reference.shape[1] != x_shape[1]:
            raise CLIError(f"reference is {tuple(reference.shape[1:])} (C,H,W) but the restored image "
                           f"will be {tuple(x_shape[1:])}")
    out = Path(args.output)
    if out.resolve() == degraded.resolve():
        raise CLIError(f"refusing to overwrite the input {degraded}")
    params = _parse_params(args.param)
    params.update({k: v for k, v in (("noise_blind", args.noise_blind), ("kernel_blind", args.kernel_blind),
                                     ("kernel_size", args.kernel_size)) if v})
    if args.checkpoint:
        import inspect

        if "checkpoint" not in inspect.signature(info.run).parameters:
            raise CLIError(f"method {name!r} does not checkpoint its fit (dip and deepred do)")
        params["checkpoint"] = Path(args.checkpoint)
    sigma = None if sigma8 is None else sigma8 / 255
    result = info.run(y, op, sigma=sigma, iters=args.iters, reference=reference, seed=args.seed,
                      device=args.device, precision=args.precision, progress=not args.quiet, **params)
    x = result.image.detach().cpu().clamp(0, 1)
    alpha = img.alpha
    if alpha is not None and alpha.shape != tuple(x.shape[-2:]):
        alpha = torch.nn.functional.interpolate(torch.from_numpy(alpha)[None, None], size=x.shape[-2:],
                                                mode="bilinear", align_corners=False)[0, 0].numpy()
    write_image(out, to_numpy(x), bit_depth=args.bit_depth, alpha=alpha, overwrite_protect=degraded)
    if "kernel" in result.extras:
        from .io import write_json_atomic

        k = np.asarray(result.extras["kernel"], dtype=np.float32)
        np.save(out.with_name(out.stem + "_kernel.npy"), k)
        write_image(out.with_name(out.stem + "_kernel.png"), k / max(k.max(), 1e-12))
        write_json_atomic(out.with_name(out.stem + "_kernel.json"), {"note": "estimated kernel, MATLAB orientation"})
    status = " (interrupted: saved the current estimate)" if result.interrupted else ""
    if result.interrupted and args.checkpoint:
        status += f"; run the same command to continue from {args.checkpoint}"
    line = f"{name}: wrote {out} after {result.iters} iterations in {result.seconds:.1f} s{status}"
    if reference is not None:
        line += f"; PSNR {psnr(x, reference):.2f} dB, SSIM {ssim(x, reference):.4f}"
    print(line)
    return 0


# --------------------------------------------------------------------------- methods, demo

def _add_methods(sub):
    p = sub.add_parser("methods", help="list restoration methods and the tasks each supports")
    p.set_defaults(func=_cmd_methods)


def _cmd_methods(args) -> int:
    from .methods import load_all
    from .operators import TASKS

    methods = load_all()
    width = max(len(n) for n in methods)
    print(f"{'method':<{width}}  " + " ".join(f"{t:<8}" for t in TASKS) + "  description")
    for name in sorted(methods):
        m = methods[name]
        marks = " ".join(f"{'yes' if t in m.tasks else '-':<8}" for t in TASKS)
        print(f"{name:<{width}}  {marks}  {m.description}")
    return 0


def _add_demo(sub):
    p = sub.add_parser("demo", help="degrade and restore a built-in image (scikit-image's astronaut)")
    p.add_argument("--out", default="deepprior-demo", help="output folder (default ./deepprior-demo)")
    p.add_argument("--task", default="denoise", choices=("denoise", "deblur", "sr", "inpaint", "demosaic"))
    p.add_argument("--method", help="default: the best available method for the task")
    p.add_argument("--size", type=int, default=256, help="crop size of the demo image")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(Path(args.out), task=args.task, method=args.method, size=args.size, progress=not args.quiet)
    return 0


# --------------------------------------------------------------------------- bench

def _add_bench(sub):
    p = sub.add_parser("bench", help="run a benchmark protocol that reproduces a paper table")
    p.add_argument("protocol", nargs="?", help="protocol name (see --list)")
    p.add_argument("--list", action="store_true", help="list protocols")
    p.add_argument("--method", "-m")
    p.add_argument("--data-root", help="folder holding the test sets (default ../shared/data, or $DEEPPRIOR_DATA)")
    p.add_argument("--images", help="folder of clean images to use instead of the protocol's test set")
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--image", action="append", help="only this image (file stem; repeatable)")
    p.add_argument("--kernel", action="append", help="only the cases with this kernel (repeatable)")
    p.add_argument("--iters", type=int)
    p.add_argument("--sigma", type=float, action="append",
                   help="only the cases with this noise level (8-bit units; repeatable)")
    p.add_argument("--scale", type=int, action="append", help="only the cases with this scale (repeatable)")
    p.add_argument("--size", type=int, action="append", help="speed: image sizes to time (default 256 and 512)")
    p.add_argument("--large-mp", type=float, default=12.0,
                   help="speed: megapixels of the large-image DAE denoising test (0 skips it)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="method parameter (repeatable)")
    p.add_argument("--json", help="write the results JSON here (default benchmarks/results/PROTOCOL_METHOD.json)")
    p.add_argument("--report", help="write a Markdown report (with side-by-side crops) here")
    p.add_argument("--resume", action="store_true",
                   help="keep the finished cases of the JSON at the output path (written after every case) "
                        "and run only the missing ones")
    p.add_argument("--seed-offset", type=int, default=0,
                   help="add this to the method's seed (same degraded data): another run of a stochastic "
                        "method, to measure run-to-run spread")
    p.set_defaults(func=_cmd_bench)


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def _cmd_bench(args) -> int:
    from .bench.protocols import get_protocol, list_protocols
    from .bench.report import write_report
    from .bench.runner import run_protocol
    from .io import write_json_atomic

    if args.list or not args.protocol:
        for name, task, desc in list_protocols():
            print(f"{name:<28} {task:<9} {desc}")
        print(f"{'speed':<28} {'all':<9} per-iteration times of every method, fp32 vs bf16, at 256² and 512²")
        return 0
    if args.protocol == "speed":
        from .bench.speed import SIZES, run_speed

        res = run_speed(sizes=tuple(args.size) if args.size else SIZES, large_megapixels=args.large_mp or None,
                        methods=(args.method,) if args.method else None)
        out = Path(args.json or "benchmarks/results/speed.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out, res)
        print(f"wrote {out}")
        return 0
    image_dir = None
    if args.report:
        image_dir = Path(args.report).with_suffix("")
        image_dir = image_dir.parent / (image_dir.name + "_images")
    cases = {k: v for k, v in (("sigma", args.sigma), ("scale", args.scale), ("kernel", args.kernel)) if v}
    method = args.method or get_protocol(args.protocol).method
    out = Path(args.json or f"benchmarks/results/{args.protocol}_{method}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    # a `kill` (e.g. the end of a session) stops like Ctrl-C: the finished cases are kept
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    res = run_protocol(args.protocol, method=method, data_root=args.data_root, images=args.images,
                       limit=args.limit, iters=args.iters, cases=cases or None, device=args.device,
                       precision=args.precision,
                       method_params=_parse_params(args.param), save_images=image_dir,
                       checkpoint=out, resume=args.resume, image_names=args.image,
                       seed_offset=args.seed_offset)
    write_json_atomic(out, res)
    if args.report:
        write_report(res, args.report, image_dir=image_dir)
    s = res["summary"]
    if not s["n"]:
        print(f"{args.protocol} / {res['method']}: no case completed → {out}")
        return 0
    print(f"{args.protocol} / {res['method']}: mean PSNR {s['mean_psnr']:.2f} dB, SSIM {s['mean_ssim']:.4f}, "
          f"{s['mean_seconds']:.2f} s/image over {s['n']} cases → {out}")
    return 0


# --------------------------------------------------------------------------- train-dae

def _add_train_dae(sub):
    p = sub.add_parser("train-dae", help="train a denoising autoencoder (the DAEP/DMSP prior)")
    p.add_argument("--data", required=True, help="folder of clean training images")
    p.add_argument("--val", help="folder of validation images (default: hold aside --val-count images of --data)")
    p.add_argument("--val-count", type=int, default=8)
    p.add_argument("--channels", type=int, choices=(1, 3), default=3)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--sigma", type=float, help="train at one noise level (8-bit units)")
    g.add_argument("--sigma-range", type=float, nargs=2, metavar=("LO", "HI"), default=(0.0, 55.0),
                   help="noise-conditional training over [LO, HI] (8-bit units; default 0 55)")
    p.add_argument("--arch", choices=("unet", "dncnn"), default="unet",
                   help="unet (default, better per CPU-hour) or dncnn (DAEP §4.3: 20 layers, 64 channels)")
    p.add_argument("--steps", type=int, default=10000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--patch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="output weights (.safetensors); a .json model card is written beside it")
    p.add_argument("--resume", help="checkpoint (.ckpt) to continue from")
    p.add_argument("--init", help="start from these DAE weights (.safetensors) with a fresh optimiser and "
                                  "schedule (fine-tuning; use another --seed for new patches)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_train_dae)


def _cmd_train_dae(args) -> int:
    from .train import TrainConfig, train_dae

    rng = (args.sigma, args.sigma) if args.sigma is not None else tuple(args.sigma_range)
    cfg = TrainConfig(data=args.data, val=args.val, val_count=args.val_count, channels=args.channels,
                      sigma_range=(rng[0] / 255, rng[1] / 255), arch=args.arch, steps=args.steps,
                      batch=args.batch, patch=args.patch, lr=args.lr, val_every=args.val_every,
                      ckpt_every=args.val_every, seed=args.seed, precision=args.precision,
                      device=args.device)
    train_dae(cfg, args.out, resume=args.resume, init=args.init, progress=not args.quiet)
    print(f"wrote {args.out}")
    return 0


def _add_eval_dae(sub):
    p = sub.add_parser("eval-dae", help="validation PSNR of DAE weight files on the images train-dae "
                                        "holds aside (compare DAEs on the same images)")
    p.add_argument("weights", nargs="+", help="DAE weights (.safetensors)")
    p.add_argument("--data", required=True, help="training folder whose held-aside images to use")
    p.add_argument("--val", help="folder of validation images instead")
    p.add_argument("--val-count", type=int, default=8)
    p.add_argument("--crop", type=int, default=192, help="centre crop of each image (train-dae's default)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", help="write the results here")
    p.set_defaults(func=_cmd_eval_dae)


def _cmd_eval_dae(args) -> int:
    from .io import write_json_atomic
    from .train import evaluate_dae

    out = evaluate_dae(args.weights, args.data, val=args.val, val_count=args.val_count, crop=args.crop,
                       device=args.device, precision=args.precision)
    for row in out["results"]:
        psnrs = " / ".join(f"{v:.2f}" for v in row["val_psnr"].values())
        print(f"{row['weights']} ({row['sha256']}): σ = {' / '.join(row['val_psnr'])}: {psnrs} dB")
    if args.json:
        write_json_atomic(args.json, out)
        print(f"wrote {args.json}")
    return 0


# --------------------------------------------------------------------------- explain

def _add_explain(sub):
    p = sub.add_parser("explain", help="numerical demonstrations of the papers' claims")
    p.add_argument("topic", choices=("mean-shift",),
                   help="mean-shift: a DAE's residual equals the mean-shift vector (DAEP eq. 6, Fig. 2)")
    p.add_argument("--out", default="mean_shift.png", help="PNG to write")
    p.add_argument("--sigma", type=float, default=0.3, help="DAE noise level (spiral radius is ~3)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_explain)


def _cmd_explain(args) -> int:
    from .explain import check_mean_shift

    res = check_mean_shift(sigma=args.sigma, steps=args.steps, seed=args.seed, png=args.out)
    print(f"DAE residual vs exact kernel-density mean shift (σ = {res.sigma:g}, {res.steps} steps): "
          f"density-weighted cosine similarity {res.cosine:.3f}, relative error {res.relative_error:.3f}; "
          f"wrote {args.out}")
    return 0


# --------------------------------------------------------------------------- plot-trace

def _add_plot_trace(sub):
    p = sub.add_parser("plot-trace", help="PSNR against seconds along the runs of benchmark JSONs (PNG), "
                       "and how soon each run came within --tolerance dB of its final PSNR")
    p.add_argument("results", nargs="+", help="results JSONs written by `deepprior bench`")
    p.add_argument("-o", "--output", required=True, help="PNG to write")
    p.add_argument("--label", action="append", help="legend label per JSON, in order (repeatable)")
    p.add_argument("--title", default="")
    p.add_argument("--tolerance", type=float, default=0.1, help="dB below the final PSNR (default 0.1)")
    p.add_argument("--json", help="also write the time-to-quality table here")
    p.set_defaults(func=_cmd_plot_trace)


def _read_results(path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CLIError(f"cannot read results JSON {path}: {exc}") from exc


def _cmd_plot_trace(args) -> int:
    from .bench.compare import time_to_quality
    from .bench.report import plot_psnr_vs_seconds
    from .io import write_json_atomic

    results = [_read_results(path) for path in args.results]
    try:
        out = plot_psnr_vs_seconds(results, args.output, labels=args.label, title=args.title)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    print(f"wrote {out}")
    table = []
    print(f"time to within {args.tolerance:g} dB of the final PSNR (first traced iteration; an upper bound):")
    for i, (path, res) in enumerate(zip(args.results, results)):
        if not res.get("summary", {}).get("trace"):
            continue
        ttq = time_to_quality(res, args.tolerance)
        ttq["file"] = Path(path).name
        if args.label and i < len(args.label):
            ttq["label"] = args.label[i]
        table.append(ttq)
        print(f"  {ttq.get('label', ttq['file'])}: final {ttq['final_psnr']:.2f} dB at it {ttq['final_iter']} "
              f"({ttq['final_seconds']:.1f} s); {ttq['reached_psnr']:.2f} dB at it {ttq['reached_iter']} "
              f"({ttq['reached_seconds']:.1f} s, {ttq['time_fraction']:.0%} of the time); "
              f"best {ttq['best_psnr']:.2f} dB at it {ttq['best_iter']}")
    if args.json:
        write_json_atomic(args.json, {"tolerance_db": args.tolerance, "runs": table})
        print(f"wrote {args.json}")
    return 0


# --------------------------------------------------------------------------- compare

def _add_compare(sub):
    p = sub.add_parser("compare", help="two benchmark runs of the same cases side by side "
                       "(e.g. bf16 against fp32): PSNR difference per case and time ratio")
    p.add_argument("a", help="results JSON A (the reference, e.g. fp32)")
    p.add_argument("b", help="results JSON B (e.g. bf16); differences are B − A")
    p.add_argument("--json", help="write the comparison here")
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args) -> int:
    from .bench.compare import compare_results
    from .io import write_json_atomic

    a, b = _read_results(args.a), _read_results(args.b)
    try:
        cmp = compare_results(a, b)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    for key, (va, vb) in cmp["settings_differing"].items():
        print(f"  {key}: A {va!r}  B {vb!r}")
    for c in cmp["cases"]:
        print(f"  {c['case']:32s} A {c['psnr_a']:6.2f}  B {c['psnr_b']:6.2f}  B−A {c['delta']:+.3f} dB   "
              f"{c['seconds_a']:8.1f} s / {c['seconds_b']:8.1f} s")
    s = cmp["summary"]
    ratio = s["seconds_ratio_a_over_b"]
    print(f"{s['n']} cases: mean A {s['mean_psnr_a']:.3f} dB, B {s['mean_psnr_b']:.3f} dB; B − A mean "
          f"{s['mean_delta']:+.3f} dB, largest |B − A| {s['max_abs_delta']:.3f} dB"
          + (f"; A took {ratio:.2f}× B's time" if ratio else ""))
    if args.json:
        cmp["files"] = {"a": args.a, "b": args.b}
        write_json_atomic(args.json, cmp)
        print(f"wrote {args.json}")
    return 0


# --------------------------------------------------------------------------- merge-results

def _add_merge_results(sub):
    p = sub.add_parser("merge-results", help="one results JSON from runs of the same settings on other "
                       "images or cases (e.g. one job per core), summarised as one run")
    p.add_argument("results", nargs="+", help="results JSONs written by `deepprior bench`")
    p.add_argument("--json", required=True, help="write the merged JSON here")
    p.add_argument("--assume", action="append", metavar="NAME=VALUE",
                   help="declare that runs which did not pass method parameter NAME ran with VALUE (its "
                        "default when they ran), so they merge with runs that passed it; checked against "
                        "the rows' recorded method settings and kept in the merged JSON (repeatable)")
    p.set_defaults(func=_cmd_merge_results)


def _cmd_merge_results(args) -> int:
    from .bench.runner import merge_results
    from .io import write_json_atomic

    merged = merge_results({Path(path).name: _read_results(path) for path in args.results},
                           assume=_parse_params(args.assume))
    s = merged["summary"]
    mean = f"mean PSNR {s['mean_psnr']:.2f} dB over {s['n']} finished cases" if s["n"] else "no finished case"
    write_json_atomic(args.json, merged)
    print(f"{merged['protocol']} / {merged['method']}: {len(merged['results'])} rows from "
          f"{len(args.results)} files, {mean} → {args.json}")
    return 0


# --------------------------------------------------------------------------- paper-table

def _add_paper_table(sub):
    p = sub.add_parser("paper-table", help="benchmark JSONs beside the papers' published figures "
                       "(ours, paper, difference; same cases, same PSNR convention)")
    p.add_argument("results", nargs="*", help="results JSONs written by `deepprior bench` "
                   "(default: every JSON in benchmarks/results); `FILE::sigma=2.55,5.1` keeps only "
                   "the rows whose field (sigma, scale, kernel, image) has one of these values")
    p.add_argument("--against", metavar="METHOD",
                   help="set the runs beside this method's published rows instead of their own "
                        "(e.g. DMSP or RED+DAE runs on a DeepRED protocol against `--against deepred`)")
    p.add_argument("--json", help="also write the table here")
    p.set_defaults(func=_cmd_paper_table)


def _select_rows(spec: str) -> tuple[str, dict]:
    """``FILE`` or ``FILE::field=v1,v2`` → (the file's name as given, the JSON with only those rows)."""
    from .bench.paper_figures import select_rows

    path, _, selection = spec.partition("::")
    result = _read_results(path)
    if selection:
        result = select_rows(result, selection)
    return Path(path).name + (f"::{selection}" if selection else ""), result


def _cmd_paper_table(args) -> int:
    from .bench.paper_figures import paper_table
    from .io import write_json_atomic

    specs = args.results or [str(p) for p in sorted(Path("benchmarks/results").glob("*.json"))]
    if not specs:
        raise CLIError("no results JSONs given and none in benchmarks/results")
    table = paper_table(dict(_select_rows(spec) for spec in specs), against=args.against)
    if not table:
        raise CLIError("none of these runs matches a published figure (protocol, method and mode)")
    print("| protocol | method | cases | n | ours | paper | ours − paper | paper, same cases | "
          "ours − paper, same cases | s / case | source | file |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in table:
        method = row["method"] + (f" {row['variant']}" if row["variant"] else "")
        if row["run_method"] != row["method"]:
            method = f"{row['run_method']} vs {method}"
        fmt = "{:.2f}" if row["metric"] == "psnr" else "{:.0f}"
        n = f"{row['n']}" + (f" of {row['n_paper']}" if row["partial"] else "")
        unit = "" if row["metric"] == "psnr" else f" ({row['metric']})"
        same = "—" if row["paper_same_cases"] is None else fmt.format(row["paper_same_cases"])
        delta_same = "—" if row["delta_same_cases"] is None else f"{row['delta_same_cases']:+.2f}"
        print(f"| {row['protocol']} | {method} | {row['cases']}{unit} | {n} | {fmt.format(row['ours'])} | "
              f"{fmt.format(row['paper'])} | {row['delta']:+.2f} | {same} | {delta_same} | "
              f"{row['seconds']:.1f} | {row['source']} | {row['file']} |")
    if args.json:
        write_json_atomic(args.json, {"rows": table})
        print(f"wrote {args.json}")
    return 0


# --------------------------------------------------------------------------- dip-app

def _add_dip_app(sub):
    from .methods.dip_apps import add_subcommand  # DIP §3.4 pre-image, §3.5 actmax, §3.6, §3.7

    add_subcommand(sub)


# --------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="deepprior", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"deepprior {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_demo, _add_degrade, _add_restore, _add_methods, _add_bench, _add_train_dae,
                _add_eval_dae, _add_explain, _add_dip_app, _add_plot_trace, _add_compare, _add_merge_results,
                _add_paper_table):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .compute import set_threads

    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads()  # all cores, or $DEEPPRIOR_THREADS
    try:
        return int(args.func(args) or 0)
    except (CLIError, ValueError, FileNotFoundError, OSError) as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"deepprior {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
