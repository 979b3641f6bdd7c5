"""Generator networks of Deep Image Prior: the "skip" hourglass of Fig. 20 and its variants.

Ulyanov, Vedaldi & Lempitsky, "Deep Image Prior", IJCV 128:1867–1888, 2020 — §4 and Fig. 20
give the architecture, §4 "Technical details" every hyper-parameter (reproduced in
:data:`PRESETS`). Architectures:

* ``'skip'`` (Fig. 20, the paper's default): an encoder–decoder. Level ``i`` has

  - a skip branch ``conv(k_s[i]) → BN → LeakyReLU`` with ``n_s[i]`` channels (absent when
    ``n_s[i] = 0``),
  - a down branch ``conv(k_d[i], stride 2) → BN → act → conv(k_d[i]) → BN → act`` with
    ``n_d[i]`` channels, then level ``i + 1``, then ×2 bilinear/nearest upsampling,
  - ``concat(skip, down) → BN → conv(k_u[i]) → BN → act`` with ``n_u[i]`` channels, then
    (reference code's ``need1x1_up``) ``conv1×1 → BN → act``;

  a final ``conv1×1 → sigmoid``. Downsampling is the stride of the convolution (§4: "we
  simply use strides"); LeakyReLU has slope 0.2; padding is reflection (§4), or zero for the
  inversion / activation-maximisation presets. ``n_s = 0`` everywhere gives the **no-skip
  hourglass** of Fig. 5 a–c / Fig. 13.
* ``'unet'``: the U-Net compared in §3.1 (real-noise 35.05 dB) and Fig. 13 f, as the
  reference code's ``UNet``: full-width skips (the encoder features themselves, no 1×1
  bottleneck, no BN before concatenation), max-pool downsampling, two 3×3 conv + BN + ReLU
  per encoder level, upsample + 3×3 conv, concat, two 3×3 conv + ReLU per decoder level;
  channels ``n_d`` per level (default 16, 32, 64, 128, 256 — ``feature_scale=4``).
* ``'resnet'``: the ResNet of §3.1 (31.95 dB) and Fig. 13 e — no down/upsampling:
  ``conv3×3 → act``, ``blocks`` residual blocks ``(conv → BN → act → conv → BN) + identity``,
  ``conv → BN``, ``conv3×3 → sigmoid``, all with ``width`` channels (reference: 10×16; the
  Fig. 13 inpainting network is 8×32).

Any input size: a network needs its input divisible by :attr:`multiple` (2**levels); other
sizes are reflect-padded up to it and the output is cropped back (:meth:`Generator.forward`).
Reflection padding inside the network falls back to edge replication where a feature map is
smaller than the pad (the 1×1 and 2×2 maps of the deepest levels of small inputs), so inputs
smaller than 64 pixels work too — the reference code fails there.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["NetSpec", "Preset", "PRESETS", "Generator", "SkipHourglass", "UNet", "ResNet",
           "build_net", "get_preset", "with_arch", "ARCH_VARIANTS", "padded_size", "reflect_pad",
           "center_crop"]

ARCHS = ("skip", "unet", "resnet")
PADS = ("reflection", "zero")
UPSAMPLING = ("bilinear", "nearest")


# ----------------------------------------------------------------------------- sizes


def padded_size(h: int, w: int, multiple: int) -> tuple[int, int]:
    """Smallest (H, W) ≥ (h, w) divisible by ``multiple`` whose deepest feature map has at
    least two pixels (batch norm in training mode needs more than one value per channel; the
    longer side is doubled when the image fits in a single ``multiple × multiple`` cell)."""
    m = max(1, int(multiple))
    hp, wp = -(-int(h) // m) * m, -(-int(w) // m) * m
    if hp * wp < 2 * m * m:
        if w >= h:
            wp *= 2
        else:
            hp *= 2
    return hp, wp


def _reflect_index(n: int, before: int, after: int, device) -> torch.Tensor:
    """Indices of a length-``n`` axis extended by mirror reflection (edge not repeated, as
    ``numpy.pad(mode='reflect')``), for any pad width — also wider than the axis."""
    i = torch.arange(-before, n + after, device=device)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = torch.remainder(i, period)
    return torch.where(i >= n, period - i, i)


def reflect_pad(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Mirror-pad ``x`` (…×h×w) to ``height × width``, centred (extra row/column at the end)."""
    h, w = x.shape[-2:]
    top, left = (height - h) // 2, (width - w) // 2
    rows = _reflect_index(h, top, height - h - top, x.device)
    cols = _reflect_index(w, left, width - w - left, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def center_crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The inverse of :func:`reflect_pad`'s placement: the centred h×w window."""
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top:top + h, left:left + w]


# ----------------------------------------------------------------------------- layers


def _in_own_dtype(x: torch.Tensor):
    """Context in which an op runs in ``x``'s dtype: CPU autocast would cast the bf16 feature
    maps to fp32 for padding and interpolation and back to bf16 for the next convolution — two
    copies per layer and their backward (measured: ~6 % of a DIP step, #7's profile)."""
    return torch.autocast(x.device.type, enabled=False)


class _Pad(nn.Module):
    """Reflection padding that degrades to replication on maps not larger than the pad."""

    def __init__(self, p: int):
        super().__init__()
        self.p = int(p)

    def forward(self, x):
        mode = "reflect" if min(x.shape[-2:]) > self.p else "replicate"
        with _in_own_dtype(x):
            return F.pad(x, (self.p,) * 4, mode=mode)


def upsample2(x: torch.Tensor, mode: str) -> torch.Tensor:
    """×2 upsampling ('bilinear' with align_corners=False, or 'nearest') in ``x``'s dtype."""
    with _in_own_dtype(x):
        out = F.interpolate(x, scale_factor=2, mode=mode,
                            align_corners=False if mode == "bilinear" else None)
    if out.requires_grad and x.is_contiguous(memory_format=torch.channels_last):
        # The gradient arrives as a channel slice of the concatenation's gradient; the CPU
        # backward kernel would make it NCHW-contiguous and return an NCHW gradient.
        out.register_hook(lambda g: g.contiguous(memory_format=torch.channels_last))
    return out


def _conv(c_in: int, c_out: int, k: int, stride: int = 1, pad: str = "reflection",
          bias: bool = True) -> nn.Module:
    p = (k - 1) // 2
    if pad == "reflection" and p > 0:
        return nn.Sequential(_Pad(p), nn.Conv2d(c_in, c_out, k, stride, 0, bias=bias))
    return nn.Conv2d(c_in, c_out, k, stride, p, bias=bias)


def _act(kind: str) -> nn.Module:
    # LeakyReLU(0.2) everywhere (§4, He et al. 2015); the reference U-Net uses ReLU.
    return nn.LeakyReLU(0.2, inplace=True) if kind == "leaky" else nn.ReLU(inplace=True)


def _cba(c_in, c_out, k, stride=1, pad="reflection", act="leaky", bn=True) -> list[nn.Module]:
    """conv → BN → activation."""
    layers = [_conv(c_in, c_out, k, stride, pad)]
    if bn:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(_act(act))
    return layers


# ----------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class NetSpec:
    """Architecture hyper-parameters in the notation of Fig. 20.

    Attributes
    ----------
    arch : {'skip', 'unet', 'resnet'}
        ``'skip'`` with ``n_skip`` all zero is the no-skip hourglass.
    n_down, n_up, n_skip : tuple of int
        Channels per level ``n_d[i]``, ``n_u[i]`` (default: ``n_d``), ``n_s[i]`` (level 0 =
        full resolution); an int means the same at every level. ``'unet'`` uses ``n_down``
        as its per-level widths.
    k_down, k_up, k_skip : int or tuple of int
        Kernel sizes ``k_d[i]``, ``k_u[i]``, ``k_s[i]`` (default 3, 3, 1).
    upsample : str or tuple of str
        ``'bilinear'`` or ``'nearest'``, or one per level.
    pad : {'reflection', 'zero'}
    conv1x1_up : bool
        The extra 1×1 conv + BN + act closing each decoder level (reference ``need1x1_up``).
    sigmoid : bool
        Sigmoid output (images in (0, 1)).
    blocks, width : int
        ResNet depth and width.
    """

    arch: str = "skip"
    n_down: tuple = (128, 128, 128, 128, 128)
    n_up: tuple | None = None
    n_skip: int | tuple = 4
    k_down: int | tuple = 3
    k_up: int | tuple = 3
    k_skip: int | tuple = 1
    upsample: str | tuple = "bilinear"
    pad: str = "reflection"
    conv1x1_up: bool = True
    sigmoid: bool = True
    blocks: int = 10
    width: int = 16

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.pad not in PADS:
            raise ValueError(f"pad must be one of {PADS}, got {self.pad!r}")
        object.__setattr__(self, "n_down", tuple(int(a) for a in self.n_down))
        if self.n_up is None:
            object.__setattr__(self, "n_up", self.n_down)
        for name in ("n_up", "n_skip", "k_down", "k_up", "k_skip"):
            v = getattr(self, name)
            object.__setattr__(self, name, (int(v),) * len(self.n_down) if isinstance(v, int)
                               else tuple(int(a) for a in v))
        ups = self.upsample
        ups = (ups,) * len(self.n_down) if isinstance(ups, str) else tuple(ups)
        if any(u not in UPSAMPLING for u in ups):
            raise ValueError(f"upsample must be among {UPSAMPLING}, got {self.upsample!r}")
        object.__setattr__(self, "upsample", ups)
        if self.arch == "skip":
            n = len(self.n_down)
            for name in ("n_up", "n_skip", "k_down", "k_up", "k_skip", "upsample"):
                if len(getattr(self, name)) != n:
                    raise ValueError(f"{name} has {len(getattr(self, name))} levels, n_down has {n}")

    def updated(self, **changes) -> "NetSpec":
        """A copy with ``changes``; when the number of levels changes, per-level fields not
        given keep their value if it was the same at every level (and ``n_up`` follows
        ``n_down`` if it did)."""
        if "n_down" in changes and len(tuple(changes["n_down"])) != len(self.n_down):
            if "n_up" not in changes and self.n_up == self.n_down:
                changes["n_up"] = None
            for name in ("n_up", "n_skip", "k_down", "k_up", "k_skip", "upsample"):
                v = getattr(self, name)
                if name not in changes and len(set(v)) == 1:
                    changes[name] = v[0]
        return replace(self, **changes)

    @property
    def multiple(self) -> int:
        """Input sides must be divisible by this (the total downsampling)."""
        if self.arch == "skip":
            return 2 ** len(self.n_down)
        if self.arch == "unet":
            return 2 ** (len(self.n_down) - 1)
        return 1

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


# ----------------------------------------------------------------------------- networks


class Generator(nn.Module):
    """Base class: makes any input size work (reflect-pad to :attr:`multiple`, crop back)."""

    multiple: int = 1

    def body(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h, w = z.shape[-2:]
        hp, wp = padded_size(h, w, self.multiple)
        if (hp, wp) == (h, w):
            return self.body(z)
        return center_crop(self.body(reflect_pad(z, hp, wp)), h, w)


class _SkipLevel(nn.Module):
    def __init__(self, spec: NetSpec, i: int, c_in: int, deeper: nn.Module | None):
        super().__init__()
        pad = spec.pad
        n_d, n_s = spec.n_down[i], spec.n_skip[i]
        self.skip = nn.Sequential(*_cba(c_in, n_s, spec.k_skip[i], pad=pad)) if n_s else None
        self.down = nn.Sequential(*_cba(c_in, n_d, spec.k_down[i], 2, pad=pad),
                                  *_cba(n_d, n_d, spec.k_down[i], pad=pad))
        self.deeper = deeper
        self.mode = spec.upsample[i]
        c_cat = n_s + (spec.n_up[i + 1] if deeper is not None else n_d)
        # §3.1: "additional BatchNorms before concatenation" — the reference applies it to the
        # concatenated tensor (also when there is no skip).
        up = [nn.BatchNorm2d(c_cat), *_cba(c_cat, spec.n_up[i], spec.k_up[i], pad=pad)]
        if spec.conv1x1_up:
            up += _cba(spec.n_up[i], spec.n_up[i], 1, pad=pad)
        self.up = nn.Sequential(*up)

    def forward(self, x):
        d = self.down(x)
        if self.deeper is not None:
            d = self.deeper(d)
        d = upsample2(d, self.mode)
        if self.skip is not None:
            d = torch.cat((self.skip(x), d), dim=1)
        return self.up(d)


class SkipHourglass(Generator):
    """The encoder–decoder of Fig. 20 (with skips, or without when ``n_skip`` is all 0)."""

    def __init__(self, spec: NetSpec, in_channels: int, out_channels: int):
        super().__init__()
        self.multiple = spec.multiple
        levels = len(spec.n_down)
        deeper = None
        for i in reversed(range(levels)):
            c_in = in_channels if i == 0 else spec.n_down[i - 1]
            deeper = _SkipLevel(spec, i, c_in, deeper)
        self.levels = deeper
        head = [_conv(spec.n_up[0], out_channels, 1, pad=spec.pad)]
        if spec.sigmoid:
            head.append(nn.Sigmoid())
        self.head = nn.Sequential(*head)

    def body(self, z):
        return self.head(self.levels(z))


class UNet(Generator):
    """U-Net of the reference code (``models/unet.py``), compact form; see module docstring."""

    def __init__(self, spec: NetSpec, in_channels: int, out_channels: int):
        super().__init__()
        self.multiple = spec.multiple
        f, pad = spec.n_down, spec.pad
        self.enc = nn.ModuleList()
        for i, c in enumerate(f):
            c_in = in_channels if i == 0 else f[i - 1]
            self.enc.append(nn.Sequential(*_cba(c_in, c, 3, pad=pad, act="relu"),
                                          *_cba(c, c, 3, pad=pad, act="relu")))
        self.up_conv = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(len(f) - 1):
            self.up_conv.append(_conv(f[i + 1], f[i], 3, pad=pad))
            self.dec.append(nn.Sequential(*_cba(2 * f[i], f[i], 3, pad=pad, act="relu", bn=False),
                                          *_cba(f[i], f[i], 3, pad=pad, act="relu", bn=False)))
        self.modes = spec.upsample
        head = [_conv(f[0], out_channels, 1, pad=pad)]
        if spec.sigmoid:
            head.append(nn.Sigmoid())
        self.head = nn.Sequential(*head)

    def body(self, z):
        feats = []
        x = z
        for i, block in enumerate(self.enc):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = block(x)
            feats.append(x)
        for i in reversed(range(len(self.dec))):
            x = upsample2(x, self.modes[i])
            x = self.dec[i](torch.cat((self.up_conv[i](x), feats[i]), dim=1))
        return self.head(x)


class _Residual(nn.Sequential):
    def forward(self, x):
        return x + super().forward(x)


class ResNet(Generator):
    """The ResNet generator of §3.1 / Fig. 13 e (reference ``models/resnet.py``)."""

    def __init__(self, spec: NetSpec, in_channels: int, out_channels: int):
        super().__init__()
        c, pad = spec.width, spec.pad
        layers = [_conv(in_channels, c, 3, pad=pad), _act("leaky")]
        for _ in range(spec.blocks):
            layers.append(_Residual(_conv(c, c, 3, pad=pad), nn.BatchNorm2d(c), _act("leaky"),
                                    _conv(c, c, 3, pad=pad), nn.BatchNorm2d(c)))
        layers += [_conv(c, c, 3, pad=pad), nn.BatchNorm2d(c), _conv(c, out_channels, 3, pad=pad)]
        if spec.sigmoid:
            layers.append(nn.Sigmoid())
        self.net = nn.Sequential(*layers)

    def body(self, z):
        return self.net(z)


def build_net(spec: NetSpec, in_channels: int, out_channels: int) -> Generator:
    """The generator described by ``spec`` (PyTorch default initialisation, as the paper)."""
    cls = {"skip": SkipHourglass, "unet": UNet, "resnet": ResNet}[spec.arch]
    return cls(spec, in_channels, out_channels)


# ----------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class Preset:
    """Network + fitting hyper-parameters of one DIP experiment (paper §4).

    ``input``: ``'noise'`` (z ~ U(0, 0.1), ``input_channels`` channels), ``'meshgrid'`` (2
    channels, Fig. 21) or ``'guide'`` (an image given by the caller, e.g. the flash image).
    ``sigma_p``: std of the Gaussian perturbation added to z at every step. ``ema``: weight of
    the exponential moving average of outputs (None: return the last output).
    """

    name: str
    net: NetSpec = field(default_factory=NetSpec)
    input: str = "noise"
    input_channels: int = 32
    sigma_p: float = 1 / 30
    lr: float = 0.01
    iters: int = 2000
    ema: float | None = None
    source: str = ""

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "net"}
        d["net"] = self.net.to_dict()
        return d


_DEFAULT = Preset("sr", source="§4 'Super-resolution (default architecture)': z ∈ R^32 ~ U(0, 1/10), "
                              "n_u = n_d = [128]*5, k = 3, n_s = [4]*5, k_s = 1, σ_p = 1/30, "
                              "2000 iterations, LR 0.01, bilinear; Lanczos2 decimation")
_SIX = (16, 32, 64, 128, 128, 128)

PRESETS: dict[str, Preset] = {p.name: p for p in (
    _DEFAULT,
    replace(_DEFAULT, name="sr8", sigma_p=1 / 20, iters=4000,
            source="§4: for 8× super-resolution σ_p = 1/20 and 4000 iterations"),
    replace(_DEFAULT, name="denoise", iters=1800, ema=0.99,
            source="§4 'Denoising (Fig. 7)': as super-resolution, 1800 iterations, exponential "
                   "sliding window γ = 0.99 (§3.1: 29.22 dB single run, 30.43 with the average)"),
    Preset("jpeg", NetSpec(n_down=(8, 16, 32, 64, 128), n_up=(8, 16, 32, 64, 128),
                           n_skip=(0, 0, 0, 4, 4)),
           input_channels=3, sigma_p=1 / 30, lr=0.01, iters=2400, ema=0.99,
           source="§4 'JPEG artifacts removal (Fig. 6)': z ∈ R^3, n = [8, 16, 32, 64, 128], "
                  "n_s = [0, 0, 0, 4, 4], σ_p = 1/30, 2400 iterations, LR 0.01, bilinear "
                  "(averaging 0.99 as the reference notebook)"),
    replace(_DEFAULT, name="inpaint-text", iters=6000,
            source="§4 'Text inpainting (Fig. 11)': as super-resolution, 6000 iterations "
                   "(the reference notebook uses n_s = 128 and nearest upsampling instead)"),
    replace(_DEFAULT, name="inpaint-hole", net=replace(_DEFAULT.net, n_skip=(0,) * 5),
            input="meshgrid", input_channels=2, iters=5000,
            source="§4 'Large hole inpainting (Fig. 10)': as super-resolution, meshgrid input, "
                   "no skip connections, 5000 iterations"),
    Preset("inpaint-hole-deep", NetSpec(n_down=_SIX, n_up=_SIX, n_skip=(0,) * 6, k_down=3, k_up=5,
                                        k_skip=1, upsample="nearest"),
           sigma_p=0.0, lr=0.1, iters=5000,
           source="§4 'Large hole inpainting (Fig. 13)': n = [16, 32, 64, 128, 128, 128], "
                  "k_d = 3, k_u = 5, n_s = 0, σ_p = 0, 5000 iterations, LR 0.1, nearest "
                  "(the reference notebook: k_d = 5, k_u = 3, no 1×1 up-convs, LR 0.01)"),
    replace(_DEFAULT, name="reconstruction", iters=11000, lr=0.001,
            source="§4 'Image reconstruction (Fig. 12)' = 50 % Bernoulli inpainting of Table 3: "
                   "as super-resolution and denoising, 11000 iterations, LR 0.001"),
    replace(_DEFAULT, name="deblur",
            source="not in the paper: the default (super-resolution) setup through the Blur operator"),
    replace(_DEFAULT, name="demosaic",
            source="not in the paper: the default (super-resolution) setup through the Mosaic operator"),
    replace(_DEFAULT, name="enhance", sigma_p=0.0, iters=300,
            source="§4 'Image enhancement (Fig. 18)': as super-resolution and denoising, σ_p = 0; "
                   "the stopping point sets the coarseness (Fig. 18 shows several; ours: 300)"),
    replace(_DEFAULT, name="flash", net=replace(_DEFAULT.net, upsample=("nearest", "nearest", "bilinear",
                                                                        "bilinear", "bilinear")),
            input="guide", input_channels=3, sigma_p=0.0, lr=0.1, iters=600,
            source="§3.7 (flash image as the input z); hyper-parameters not in §4 — the reference "
                   "notebook's: n = 128, n_s = 4, nearest-nearest-bilinear×3, LR 0.1, σ_p = 0, 600 it"),
    Preset("preimage", NetSpec(n_down=_SIX, n_up=_SIX, n_skip=(4,) * 6, k_down=(7, 7, 5, 5, 3, 3),
                               k_up=(7, 7, 5, 5, 3, 3), k_skip=1, upsample="nearest", pad="zero"),
           sigma_p=0.0, lr=0.001, iters=3100,
           source="§4 'Natural pre-image (Figs. 14, 15)' (n_s, k_s listed with 5 entries for 6 "
                  "levels: extended with 4 and 1); zero padding (§4). Network preset only"),
    Preset("actmax", NetSpec(n_down=_SIX, n_up=_SIX, n_skip=(0, 4, 4, 4, 4, 4), k_down=(5, 3, 5, 5, 3, 5),
                             k_up=(5, 3, 5, 5, 3, 5), k_skip=1, upsample="bilinear", pad="zero"),
           sigma_p=0.03, lr=0.001, iters=3100,
           source="§4 'Activation maximization (Figs. 16, 17)' (n_s = [0, 4, 4, 4, 4] extended to 6 "
                  "levels); zero padding. Network preset only"),
)}

# The architectures compared in §3.1 (real-noise denoising) and Fig. 13, usable with any preset
# through ``arch=`` in the DIP method.
ARCH_VARIANTS = {
    "skip": None,
    "noskip": lambda s: replace(s, n_skip=(0,) * len(s.n_down)),
    "unet": lambda s: replace(s, arch="unet", n_down=(16, 32, 64, 128, 256), n_up=(16, 32, 64, 128, 256),
                              n_skip=(0,) * 5, k_down=3, k_up=3, k_skip=1,
                              upsample=s.upsample[0] if len(set(s.upsample)) == 1 else "bilinear"),
    "resnet": lambda s: replace(s, arch="resnet", blocks=10, width=16),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown DIP preset {name!r}; available: {', '.join(PRESETS)}")
    return PRESETS[name]


def with_arch(spec: NetSpec, arch: str | None) -> NetSpec:
    """``spec`` turned into the variant ``arch`` ('skip' keeps it; see :data:`ARCH_VARIANTS`)."""
    if arch is None or arch == "skip":
        return spec
    if arch not in ARCH_VARIANTS:
        raise ValueError(f"arch must be one of {tuple(ARCH_VARIANTS)}, got {arch!r}")
    return ARCH_VARIANTS[arch](spec)
