"""The ``deepprior`` command line. Noise levels on the command line are in 8-bit units
(``--sigma 25`` means σ = 25/255), as in the papers' tables."""
from __future__ import annotations

import argparse
import sys


class CLIError(Exception):
    """A user-facing problem: printed as one line, exit code 2."""


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
    p.set_defaults(func=_cmd_train_dae)


def _cmd_train_dae(args) -> int:
    from .train import TrainConfig, train_dae

    rng = (args.sigma, args.sigma) if args.sigma is not None else tuple(args.sigma_range)
    cfg = TrainConfig(data=args.data, val=args.val, val_count=args.val_count, channels=args.channels,
                      sigma_range=(rng[0] / 255, rng[1] / 255), arch=args.arch, steps=args.steps,
                      batch=args.batch, patch=args.patch, lr=args.lr, val_every=args.val_every,
                      ckpt_every=args.val_every, seed=args.seed, precision=args.precision,
                      device=args.device)
    train_dae(cfg, args.out, resume=args.resume)
    print(f"wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepprior", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train_dae(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CLIError, ValueError, FileNotFoundError, OSError) as exc:
        print(f"deepprior {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
