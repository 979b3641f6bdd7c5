"""Deep Image Prior applications beyond restoration: detail enhancement and flash/no-flash.

Both reuse the DIP fitting loop (:func:`deepprior.methods.dip.dip`) with the denoising data
term (eq. 4, ``A = I``):

* :func:`enhance` — §3.6: stop the fit early to get a coarse approximation ``x_c`` of
  ``x₀`` and boost the details, ``x_e = x₀ + (x₀ − x_c)`` (eqs. 10–11).
* :func:`flash_no_flash` — §3.7: fit the *no-flash* image with the *flash* image as the
  network input z (a non-linear guided filter); hyper-parameters of the reference notebook.

Natural pre-image (§3.4) and activation maximisation (§3.5) need a torchvision classifier
and are not implemented (their network presets, 'preimage' and 'actmax', are in
``nets.hourglass.PRESETS``).

From the shell: ``deepprior dip-app enhance IMAGE -o OUT`` and
``deepprior dip-app flash FLASH NOFLASH -o OUT``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..operators import Identity
from .base import Result
from .dip import dip

__all__ = ["enhance", "flash_no_flash", "add_subcommand"]


def enhance(image, *, iters: int | None = None, boost: float = 1.0, preset: str = "enhance",
            seed: int = 0, device: str = "auto", precision: str = "auto", progress: bool = False,
            **params) -> Result:
    """High-frequency enhancement by early-stopped DIP (§3.6, Fig. 18).

    Parameters
    ----------
    image : torch.Tensor or numpy.ndarray
        x₀, 1×C×H×W float in [0, 1].
    iters : int, optional
        Where to stop the fit: fewer iterations give a coarser ``x_c`` and stronger
        enhancement. Default: the 'enhance' preset's 300 (Fig. 18 shows several).
    boost : float
        Detail gain: ``x_e = x₀ + boost·(x₀ − x_c)``; 1 is eq. (11).
    preset : str
        DIP preset; 'enhance' is the default architecture with σ_p = 0 (§4).
    **params
        Passed to :func:`deepprior.methods.dip.dip` (``lr``, ``arch``, ``callback`` ...).

    Returns
    -------
    Result
        ``image`` = x_e clipped to [0, 1]; ``extras['coarse']`` = x_c, ``extras['detail']``
        = x₀ − x_c; the fit's history and settings.
    """
    x0 = torch.as_tensor(image, dtype=torch.float32)
    res = dip(x0, Identity(), iters=iters, preset=preset, stop="fixed", ema=None, seed=seed,
              device=device, precision=precision, progress=progress, **params)
    coarse = res.image.to(x0.device)
    detail = x0 - coarse
    res.extras.update(coarse=coarse, detail=detail)
    res.settings.update(application="enhance (DIP §3.6)", boost=float(boost))
    res.image = (x0 + float(boost) * detail).clamp(0, 1)
    return res


def flash_no_flash(flash, no_flash, *, iters: int | None = None, preset: str = "flash",
                   seed: int = 0, device: str = "auto", precision: str = "auto",
                   progress: bool = False, **params) -> Result:
    """Flash/no-flash reconstruction (§3.7, Fig. 19): the no-flash image's lighting with the
    flash image's low noise.

    Parameters
    ----------
    flash, no_flash : torch.Tensor or numpy.ndarray
        1×C×H×W float images in [0, 1] of the same scene and size.
    iters : int, optional
        Default: the 'flash' preset's 600 (reference notebook: 601, LR 0.1, σ_p = 0).
    **params
        Passed to :func:`deepprior.methods.dip.dip`.

    Returns
    -------
    Result
        The restored image; the reference notes the fit sometimes sticks at a reddish
        image — rerun with another ``seed`` then.
    """
    f = torch.as_tensor(flash, dtype=torch.float32)
    nf = torch.as_tensor(no_flash, dtype=torch.float32)
    if f.shape != nf.shape:
        raise ValueError(f"flash {tuple(f.shape)} and no-flash {tuple(nf.shape)} images differ in shape")
    res = dip(nf, Identity(), iters=iters, preset=preset, input="guide", guide=f, stop="fixed",
              seed=seed, device=device, precision=precision, progress=progress, **params)
    res.settings.update(application="flash/no-flash (DIP §3.7)")
    return res


# ----------------------------------------------------------------------------- CLI


def add_subcommand(sub) -> None:
    """``deepprior dip-app {enhance, flash}`` (called from ``cli.build_parser``)."""
    p = sub.add_parser("dip-app", help="Deep Image Prior applications: detail enhancement, flash/no-flash")
    apps = p.add_subparsers(dest="app", required=True)
    e = apps.add_parser("enhance", help="boost details: x0 + (x0 - coarse DIP fit) (DIP §3.6)")
    e.add_argument("image")
    e.add_argument("-o", "--output", required=True)
    e.add_argument("--coarse", help="also write the coarse approximation here")
    e.add_argument("--boost", type=float, default=1.0, help="detail gain (default 1, eq. 11)")
    f = apps.add_parser("flash", help="flash/no-flash reconstruction (DIP §3.7)")
    f.add_argument("flash", help="flash image (the network input)")
    f.add_argument("no_flash", help="no-flash image (the fitted target)")
    f.add_argument("-o", "--output", required=True)
    for q in (e, f):
        q.add_argument("--iters", type=int, help="iterations (default: enhance 300, flash 600)")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
        q.add_argument("--device", default="auto")
        q.add_argument("--param", action="append", metavar="NAME=VALUE",
                       help="DIP parameter, e.g. lr=0.01 (repeatable)")
        q.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_dip_app)


def _cmd_dip_app(args: argparse.Namespace) -> int:
    from ..cli import CLIError, _parse_params
    from ..io import read_image, to_numpy, to_tensor, write_image

    params = _parse_params(args.param)
    common = dict(iters=args.iters, seed=args.seed, device=args.device, precision=args.precision,
                  progress=not args.quiet, **params)
    out = Path(args.output)
    if args.app == "enhance":
        src = Path(args.image)
        res = enhance(to_tensor(read_image(src).pixels), boost=args.boost, **common)
        if args.coarse:
            write_image(Path(args.coarse), to_numpy(res.extras["coarse"].cpu()).clip(0, 1),
                        overwrite_protect=src)
    else:
        src = Path(args.no_flash)
        fl, nf = read_image(args.flash).pixels, read_image(src).pixels
        if fl.shape != nf.shape:
            raise CLIError(f"flash image is {fl.shape} but the no-flash image is {nf.shape} (H, W, C)")
        res = flash_no_flash(to_tensor(fl), to_tensor(nf), **common)
    write_image(out, to_numpy(res.image.detach().cpu()).clip(0, 1), overwrite_protect=src)
    status = " (interrupted: saved the current estimate)" if res.interrupted else ""
    print(f"dip-app {args.app}: wrote {out} after {res.iters} iterations in {res.seconds:.1f} s{status}")
    return 0
