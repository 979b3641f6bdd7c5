"""Deep Image Prior applications beyond restoration: network visualisation (natural
pre-image, activation maximisation), detail enhancement and flash/no-flash.

* :func:`preimage` — §3.4: invert a classifier's representation Φ(x₀) at a layer by fitting a
  randomly initialised generator, ``θ* = argmin_θ ‖Φ(f_θ(z)) − Φ(x₀)‖² / ‖Φ(x₀)‖²`` (eq. 8 with
  the deep image prior as the regulariser; normalised as Mahendran & Vedaldi), 'preimage'
  preset network (§4: 3100 iterations, LR 0.001, σ_p = 0, nearest upsampling, zero padding).
* :func:`actmax` — §3.5: ``θ* = argmax_θ Φ(f_θ(z))_m`` (eq. 9), a class score before softmax
  (AlexNet's fc8) or, for a layer with spatial maps, the centre pixel of map m; 'actmax'
  preset network (§4: 3100 iterations, LR 0.001, σ_p = 0.03, bilinear upsampling, zero
  padding).
* :func:`enhance` — §3.6: stop the fit early to get a coarse approximation ``x_c`` of
  ``x₀`` and boost the details, ``x_e = x₀ + (x₀ − x_c)`` (eqs. 10–11).
* :func:`flash_no_flash` — §3.7: fit the *no-flash* image with the *flash* image as the
  network input z (a non-linear guided filter); hyper-parameters of the reference notebook.

The first two need ImageNet classifier weights: torchvision-format AlexNet / VGG state-dict
files loaded by our own implementation (:mod:`deepprior.nets.classifier`; torchvision is not
used). The last two reuse the DIP fitting loop (:func:`deepprior.methods.dip.dip`) with the
denoising data term (eq. 4, ``A = I``).

From the shell::

    deepprior dip-app preimage IMAGE -o OUT --weights alexnet.pth --layer conv5
    deepprior dip-app actmax -o OUT --weights alexnet.pth --unit 130 [--size 227]
    deepprior dip-app enhance IMAGE -o OUT
    deepprior dip-app flash FLASH NOFLASH -o OUT
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..compute import get_compute
from ..nets.hourglass import build_net, center_crop, get_preset, padded_size
from ..operators import Identity
from .base import Progress, Result, seed_everything
from .dip import dip

__all__ = ["preimage", "actmax", "enhance", "flash_no_flash", "add_subcommand"]


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


# ----------------------------------------------------------------------------- visualisation


def _feature_map(classifier, layer):
    """Φ: ``classifier.cut(layer)`` for a :class:`~deepprior.nets.classifier.ImageClassifier`;
    any other callable is Φ itself (then ``layer`` must be None)."""
    if hasattr(classifier, "cut"):
        if layer is None:
            raise ValueError(f"name a layer of {getattr(classifier, 'name', 'the classifier')} "
                             f"({', '.join(classifier.layers)})")
        return classifier.cut(layer)
    if layer is not None:
        raise ValueError("layer= needs a classifier from nets.classifier.load_classifier; "
                         "a plain callable is used as Φ itself (pass layer=None)")
    if not callable(classifier):
        raise ValueError(f"classifier must be an ImageClassifier or a callable, got {type(classifier).__name__}")
    return classifier


def _check_size(classifier, h: int, w: int) -> None:
    least = getattr(classifier, "min_size", None)
    if least is not None and min(h, w) < least:
        raise ValueError(f"{classifier.name} needs images of at least {least}×{least} pixels, got {h}×{w}")


def _square(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to ``size`` (bilinear, antialiased) and centre-crop size×size."""
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    return center_crop(x, size, size).clamp(0, 1).contiguous()


def _fit_generator(objective: Callable, out_hw: tuple[int, int], *, preset: str, net: dict | None,
                   iters: int | None, lr: float | None, sigma_p: float | None,
                   input_channels: int | None, seed: int | None, compute, progress: bool,
                   callback: Callable | None, desc: str):
    """Adam on the weights of a randomly initialised DIP generator for ``objective(x) ->
    (loss, info)``, x = f_θ(z + σ_p·n) cropped to ``out_hw`` (1×3×h×w, fp32); returns the
    clean outputs f_θ*(z) and f_θ0(z) (before training), the Progress and the settings."""
    pre = get_preset(preset)
    spec = pre.net.updated(**(net or {}))
    budget = int(pre.iters if iters is None else iters)
    if budget < 1:
        raise ValueError(f"iters must be ≥ 1, got {budget}")
    lr = float(pre.lr if lr is None else lr)
    sigma_p = float(pre.sigma_p if sigma_p is None else sigma_p)
    in_ch = int(pre.input_channels if input_channels is None else input_channels)
    h, w = out_hw
    dev = compute.device
    seed_everything(seed)  # the generator's initial weights use the global RNG
    gen = torch.Generator(device=dev)
    gen.manual_seed(int(seed) if seed is not None else torch.seed())
    model = compute.prepare_module(build_net(spec, in_ch, 3)).train()
    canvas = padded_size(h, w, spec.multiple)  # z on the padded canvas, outputs cropped (as dip)
    z = compute.prepare_input(torch.rand((1, in_ch, *canvas), generator=gen, device=dev) * 0.1)
    opt = torch.optim.Adam(model.parameters(), lr=lr, foreach=True)
    with torch.no_grad(), compute.autocast():
        initial = center_crop(model(z), h, w).float()  # f_θ0(z), for the before/after record
    with Progress(budget, callback=callback, show=progress, desc=desc) as prog:
        for t in range(1, budget + 1):
            zt = z if sigma_p <= 0 else compute.prepare_input(
                z + sigma_p * torch.randn(z.shape, generator=gen, device=dev))
            with compute.autocast():
                out = model(zt)
            x = center_crop(out, h, w).float()
            loss, info = objective(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if prog.log(t, x.detach(), float(loss.detach()), **info):
                break
    with torch.no_grad(), compute.autocast():
        final = center_crop(model(z), h, w).float().clamp(0, 1)
    settings = {"preset": pre.name, "preset_source": pre.source, "net": spec.to_dict(),
                "input": "noise", "input_channels": in_ch, "canvas": list(canvas), "lr": lr,
                "sigma_p": sigma_p, "iters": budget, "optimizer": "adam (foreach)",
                "seed": seed, **compute.to_dict()}
    return final, initial, prog, settings


def _prepare_classifier(phi, compute):
    if isinstance(phi, torch.nn.Module):
        phi = compute.prepare_module(phi).eval()
    return phi


def preimage(image, classifier, layer: str | None, *, size: int | None = None,
             iters: int | None = None, lr: float | None = None, sigma_p: float | None = None,
             net: dict | None = None, input_channels: int | None = None, preset: str = "preimage",
             seed: int | None = 0, device: str = "auto", precision: str = "auto",
             progress: bool = False, callback: Callable | None = None) -> Result:
    """Natural pre-image (§3.4, Figs. 14–15): an image whose representation at ``layer``
    matches that of ``image``, regularised by the deep image prior.

    Minimises ``‖Φ(f_θ(z)) − Φ(x₀)‖² / ‖Φ(x₀)‖²`` over the generator weights θ (eq. 8
    normalised by the target's energy, so losses compare across layers; 0 is a perfect match,
    1 is the loss of Φ = 0).

    Parameters
    ----------
    image : torch.Tensor or numpy.ndarray
        x₀, 1×C×H×W in [0, 1], RGB (a gray image is replicated to 3 channels).
    classifier : ImageClassifier or callable
        From :func:`deepprior.nets.classifier.load_classifier` (input normalisation included),
        or any callable Φ on 1×3×H×W RGB in [0, 1] (then ``layer=None``).
    layer : str or None
        Where Φ ends: AlexNet 'conv1' … 'conv5', 'pool5', 'fc6', 'fc7', 'fc8' (Fig. 14), VGG
        'conv5_3' etc., or 'features.N' / 'classifier.N' (see ``nets.classifier``).
    size : int, optional
        Resize x₀'s shorter side to ``size`` and centre-crop size×size first (AlexNet: 227
        as in the paper). Default: use the image as given.
    iters, lr, sigma_p : optional
        Default the preset's: 3100 iterations, LR 0.001, σ_p = 0 (§4; the paper used 10000
        iterations to invert VGG-19, Fig. 15).
    net : dict, optional
        Overrides of the preset's ``NetSpec`` (e.g. ``{'n_down': (8,) * 6, 'n_up': (8,) * 6}``).
    input_channels : int, optional
        Channels of z ~ U(0, 1/10); default the preset's 32.
    precision, device : str
        Compute policy (``compute.get_compute``): bf16 autocast + channels_last for the
        generator *and* the classifier where supported; the loss is computed in fp32. The
        classifier is moved to the compute device in place.
    seed : int
        Seeds z, the perturbations and the generator's initial weights.
    callback : callable, optional
        ``callback(t, x, info) -> bool``; True stops.

    Returns
    -------
    Result
        ``image``: f_θ*(z), 1×3×H×W in [0, 1]. ``history``: the normalised feature loss per
        iteration. ``extras``: ``final_loss`` (of the returned image), ``initial_loss`` (of
        the untrained generator's output f_θ0(z)), ``feature_shape``,
        ``target_norm`` (‖Φ(x₀)‖²) and ``target`` (x₀ as inverted, after resizing).
    """
    compute = get_compute(device, precision)
    x0 = torch.as_tensor(image, dtype=torch.float32)
    out_device = x0.device
    if x0.dim() == 3:
        x0 = x0[None]
    if x0.dim() != 4 or x0.shape[0] != 1 or x0.shape[1] not in (1, 3):
        raise ValueError(f"image must be 1×C×H×W with C = 1 or 3, got shape {tuple(x0.shape)}")
    x0 = x0.expand(1, 3, *x0.shape[-2:]).to(compute.device).contiguous()
    if size is not None:
        x0 = _square(x0, int(size))
    h, w = x0.shape[-2:]
    _check_size(classifier, h, w)
    phi = _prepare_classifier(_feature_map(classifier, layer), compute)
    with torch.no_grad(), compute.autocast():
        target = phi(compute.prepare_input(x0)).float()
    norm = target.square().sum()
    if not float(norm) > 0:
        raise ValueError(f"Φ(x₀) is zero at layer {layer!r}: there is nothing to invert")

    def objective(x):
        with compute.autocast():
            feat = phi(compute.prepare_input(x))
        return (feat.float() - target).square().sum() / norm, {}

    final, initial, prog, settings = _fit_generator(
        objective, (h, w), preset=preset, net=net, iters=iters, lr=lr, sigma_p=sigma_p,
        input_channels=input_channels, seed=seed, compute=compute, progress=progress,
        callback=callback, desc="preimage")
    with torch.no_grad():
        final_loss, initial_loss = float(objective(final)[0]), float(objective(initial)[0])
    settings.update(method="dip", application="natural pre-image (DIP §3.4)",
                    classifier=getattr(classifier, "name", type(classifier).__name__), layer=layer,
                    size=None if size is None else int(size),
                    loss="‖Φ(x) − Φ(x0)‖² / ‖Φ(x0)‖²")
    extras = {"final_loss": final_loss, "initial_loss": initial_loss, "feature_shape": list(target.shape),
              "target_norm": float(norm), "target": x0.detach()}
    return Result(final.to(out_device), prog.history, settings, extras, interrupted=prog.interrupted)


def actmax(classifier, unit: int, *, layer: str | None = "fc8", size: int | tuple | None = None,
           iters: int | None = None, lr: float | None = None, sigma_p: float | None = None,
           net: dict | None = None, input_channels: int | None = None, preset: str = "actmax",
           seed: int | None = 0, device: str = "auto", precision: str = "auto",
           progress: bool = False, callback: Callable | None = None) -> Result:
    """Activation maximisation (§3.5, Figs. 16–17): an image that drives one neuron high,
    regularised by the deep image prior.

    Maximises ``Φ(f_θ(z))_m`` over the generator weights θ (eq. 9): with the default layer
    'fc8' the class score before softmax (``unit`` = ImageNet class index, e.g. 130 =
    flamingo); for a layer with spatial maps, the centre pixel of map ``unit``.

    Parameters
    ----------
    classifier : ImageClassifier or callable
        As :func:`preimage`; a callable Φ needs ``layer=None``.
    unit : int
        Neuron index m (class or channel).
    layer : str or None
        Where Φ ends (default 'fc8'). For convolutional neurons note that 'convK' is rectified
        (zero gradient while the unit is negative); 'features.N' names the conv before its ReLU.
    size : int or (int, int), optional
        Output size; default the classifier's conventional input (227 for AlexNet, 224 for
        VGG; 227 for a plain callable).
    iters, lr, sigma_p, net, input_channels, seed, device, precision, callback
        As :func:`preimage`; defaults from the 'actmax' preset (3100 iterations, LR 0.001,
        σ_p = 0.03).

    Returns
    -------
    Result
        ``image``: f_θ*(z), 1×3×H×W in [0, 1]. ``history``: ``loss`` = −activation and
        ``activation`` per iteration (of the perturbed-input output). ``extras``:
        ``activation`` of the returned image, ``initial_activation`` (of the untrained
        generator's output f_θ0(z)) and ``feature_shape``.
    """
    compute = get_compute(device, precision)
    if size is None:
        size = getattr(classifier, "default_size", 227)
    h, w = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    _check_size(classifier, h, w)
    phi = _prepare_classifier(_feature_map(classifier, layer), compute)
    with torch.no_grad(), compute.autocast():
        probe = phi(compute.prepare_input(torch.full((1, 3, h, w), 0.5, device=compute.device)))
    shape = tuple(probe.shape)
    if len(shape) not in (2, 4):
        raise ValueError(f"Φ must return N×D or N×C×H×W features, got shape {shape}")
    unit = int(unit)
    if not 0 <= unit < shape[1]:
        raise ValueError(f"unit {unit} is out of range: layer {layer!r} has {shape[1]} "
                         f"{'units' if len(shape) == 2 else 'channels'} (0 … {shape[1] - 1})")

    def activation(x):
        with compute.autocast():
            feat = phi(compute.prepare_input(x))
        a = feat[0, unit] if feat.dim() == 2 else feat[0, unit, feat.shape[2] // 2, feat.shape[3] // 2]
        return a.float()

    def objective(x):
        a = activation(x)
        return -a, {"activation": float(a.detach())}

    final, initial, prog, settings = _fit_generator(
        objective, (h, w), preset=preset, net=net, iters=iters, lr=lr, sigma_p=sigma_p,
        input_channels=input_channels, seed=seed, compute=compute, progress=progress,
        callback=callback, desc="actmax")
    with torch.no_grad():
        final_act, initial_act = float(activation(final)), float(activation(initial))
    settings.update(method="dip", application="activation maximisation (DIP §3.5)",
                    classifier=getattr(classifier, "name", type(classifier).__name__), layer=layer,
                    unit=unit, size=[h, w],
                    loss="−Φ(x)_m (m-th output, or the centre pixel of map m)")
    extras = {"activation": final_act, "initial_activation": initial_act, "feature_shape": list(shape)}
    return Result(final, prog.history, settings, extras, interrupted=prog.interrupted)


# ----------------------------------------------------------------------------- CLI


def add_subcommand(sub) -> None:
    """``deepprior dip-app {preimage, actmax, enhance, flash}`` (called from ``cli.build_parser``)."""
    p = sub.add_parser("dip-app", help="Deep Image Prior applications: natural pre-image, activation "
                                       "maximisation, detail enhancement, flash/no-flash")
    apps = p.add_subparsers(dest="app", required=True)
    pi = apps.add_parser("preimage", help="invert a classifier layer with the deep image prior (DIP §3.4)")
    pi.add_argument("image")
    pi.add_argument("-o", "--output", required=True)
    pi.add_argument("--layer", default="conv5",
                    help="layer to invert: conv1..conv5, pool5, fc6, fc7, fc8 for AlexNet (default conv5)")
    pi.add_argument("--size", type=int,
                    help="resize the shorter side to SIZE and centre-crop SIZE×SIZE first (paper: 227)")
    am = apps.add_parser("actmax", help="synthesise an image maximising a neuron (DIP §3.5)")
    am.add_argument("-o", "--output", required=True)
    am.add_argument("--unit", type=int, required=True, help="class index (fc8) or channel")
    am.add_argument("--layer", default="fc8", help="layer of the neuron (default fc8: class scores)")
    am.add_argument("--size", type=int, help="output side (default 227 for AlexNet, 224 for VGG)")
    for q in (pi, am):
        q.add_argument("--classifier", default="alexnet", help="alexnet (default), vgg16 or vgg19")
        q.add_argument("--weights", required=True,
                       help="torchvision-format state_dict of the classifier (.pth or .safetensors)")
    e = apps.add_parser("enhance", help="boost details: x0 + (x0 - coarse DIP fit) (DIP §3.6)")
    e.add_argument("image")
    e.add_argument("-o", "--output", required=True)
    e.add_argument("--coarse", help="also write the coarse approximation here")
    e.add_argument("--boost", type=float, default=1.0, help="detail gain (default 1, eq. 11)")
    f = apps.add_parser("flash", help="flash/no-flash reconstruction (DIP §3.7)")
    f.add_argument("flash", help="flash image (the network input)")
    f.add_argument("no_flash", help="no-flash image (the fitted target)")
    f.add_argument("-o", "--output", required=True)
    for q in (pi, am, e, f):
        q.add_argument("--iters", type=int,
                       help="iterations (default: preimage/actmax 3100, enhance 300, flash 600)")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
        q.add_argument("--device", default="auto")
        q.add_argument("--param", action="append", metavar="NAME=VALUE",
                       help="DIP parameter, e.g. lr=0.01 (repeatable)")
        q.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_dip_app)


def _load_for_cli(args):
    """Validate classifier, layer and weights file (one-line errors), then load."""
    from ..cli import CLIError
    from ..nets.classifier import CLASSIFIERS, load_classifier, resolve_layer

    name = str(args.classifier).lower()
    if name not in CLASSIFIERS:
        raise CLIError(f"unknown classifier {args.classifier!r}; use one of {', '.join(CLASSIFIERS)}")
    try:
        resolve_layer(name, args.layer)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    weights = Path(args.weights)
    if not weights.is_file():
        raise CLIError(f"weights file not found: {weights} (a torchvision-format {name} "
                       "state_dict, .pth or .safetensors)")
    try:
        return load_classifier(name, weights)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _cmd_dip_app(args: argparse.Namespace) -> int:
    from ..cli import CLIError, _parse_params
    from ..io import read_image, to_numpy, to_tensor, write_image

    params = _parse_params(args.param)
    common = dict(iters=args.iters, seed=args.seed, device=args.device, precision=args.precision,
                  progress=not args.quiet, **params)
    out = Path(args.output)
    detail = ""
    if args.app in ("preimage", "actmax"):
        src = Path(args.image) if args.app == "preimage" else Path(args.weights)
        pixels = read_image(src).pixels if args.app == "preimage" else None
        fn = preimage if args.app == "preimage" else actmax
        allowed = {"lr", "sigma_p", "net", "input_channels", "preset"}
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise CLIError(f"unknown --param {', '.join(unknown)} for {args.app}; "
                           f"use {', '.join(sorted(allowed))}")
        model = _load_for_cli(args)
        if fn is preimage:
            res = preimage(to_tensor(pixels), model, args.layer, size=args.size, **common)
            detail = f", feature loss {res.extras['final_loss']:.4g}"
        else:
            res = actmax(model, args.unit, layer=args.layer, size=args.size, **common)
            detail = f", activation {res.extras['activation']:.4g}"
    elif args.app == "enhance":
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
    print(f"dip-app {args.app}: wrote {out} after {res.iters} iterations in {res.seconds:.1f} s"
          f"{detail}{status}")
    return 0
