"""Denoising autoencoders (DAEs): the learned prior of DAEP and DMSP.

A DAE ``A_σ`` trained to minimise E‖I − A_σ(I + η)‖², η ~ N(0, σ²) (DAEP eq. 4) satisfies
``A_σ(I) − I = σ² ∇ log [g_σ * p](I)`` (DAEP eq. 6, DMSP eq. 11): its residual is the
mean-shift vector of the Gaussian-smoothed image density. Both architectures here learn the
residual (the noise) and return the denoised image ``x − net(x)``.

Two architectures share one wrapper, :class:`DAE`:

* ``dncnn`` — DAEP §4.3: 20 conv 3×3 layers, 64 channels, batch norm between all but the first
  and last, ReLU, no bottleneck, residual learning.
* ``unet`` — a 3-level U-Net (32/64/128 channels, two 3×3 convs per level, average-pool down,
  nearest up, skip concatenation, residual output, no normalisation). DESIGN.md's probe found it a
  far better denoiser per CPU-hour than DnCNN-20; the methods do not care which one they get.

Both optionally take σ as an extra constant input channel (noise-level conditioning), so one
network provides ``A_σ`` for every σ in its training range.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..compute import Compute, get_compute


class DnCNN(nn.Module):
    """DnCNN-style residual denoiser (DAEP §4.3; Zhang et al. 2017)."""

    def __init__(self, channels: int = 3, depth: int = 20, width: int = 64, cond: bool = True):
        super().__init__()
        cin = channels + int(cond)
        layers: list[nn.Module] = [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.multiple = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted noise for input ``x`` (with the σ channel appended when conditional)."""
        return self.body(x)


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """Small multi-scale residual denoiser (DESIGN.md "Training the DAE on this CPU")."""

    def __init__(self, channels: int = 3, widths: tuple[int, ...] = (32, 64, 128), cond: bool = True):
        super().__init__()
        cin = channels + int(cond)
        self.down = nn.ModuleList()
        for w in widths:
            self.down.append(_double_conv(cin, w))
            cin = w
        self.up = nn.ModuleList()
        for w_skip, w in zip(reversed(widths[:-1]), reversed(widths[1:])):
            self.up.append(_double_conv(w + w_skip, w_skip))
        self.head = nn.Conv2d(widths[0], channels, 3, padding=1)
        self.multiple = 2 ** (len(widths) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.avg_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)


ARCHITECTURES = {"dncnn": DnCNN, "unet": UNet}


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """Copy of ``net`` (in eval mode) with every Conv2d→BatchNorm2d pair fused into one Conv2d.

    BN(conv(x)) = γ (W*x + b − μ)/√(v+ε) + β  =  (γW/√(v+ε)) * x + (γ(b − μ)/√(v+ε) + β).
    """
    net = copy.deepcopy(net).eval()

    def fuse(seq: nn.Sequential) -> nn.Sequential:
        out: list[nn.Module] = []
        mods = list(seq)
        i = 0
        while i < len(mods):
            m = mods[i]
            if isinstance(m, nn.Conv2d) and i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d):
                bn = mods[i + 1]
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                conv = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                                 m.dilation, m.groups, bias=True)
                bias = m.bias if m.bias is not None else torch.zeros_like(bn.running_mean)
                with torch.no_grad():
                    conv.weight.copy_(m.weight * scale.reshape(-1, 1, 1, 1))
                    conv.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
                out.append(conv)
                i += 2
            else:
                out.append(fuse(m) if isinstance(m, nn.Sequential) else m)
                i += 1
        return nn.Sequential(*out)

    for name, child in list(net.named_children()):
        if isinstance(child, nn.Sequential):
            setattr(net, name, fuse(child))
    return net


class DAE(nn.Module):
    """A trained denoiser ``A_σ(x)`` with everything a restoration method needs.

    Parameters
    ----------
    arch : 'dncnn' or 'unet'
    channels : 1 (gray) or 3 (RGB)
    sigma_range : (lo, hi) in [0, 1] units — σ values seen in training (equal for a fixed-σ net).
    arch_kwargs : passed to the architecture (e.g. ``depth``, ``width``, ``widths``).

    ``forward(x, sigma)`` maps N×C×H×W images in [0, 1] (any H, W) to denoised images; σ is a
    float or an N-vector in [0, 1] units and is ignored by a non-conditional network.
    """

    def __init__(self, arch: str = "unet", channels: int = 3, sigma_range=(25 / 255, 25 / 255),
                 **arch_kwargs):
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown DAE architecture {arch!r}; choose from {sorted(ARCHITECTURES)}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.arch, self.channels = arch, channels
        self.sigma_range = (float(sigma_range[0]), float(sigma_range[1]))
        self.conditional = self.sigma_range[0] != self.sigma_range[1]
        self.arch_kwargs = dict(arch_kwargs)
        self.net = ARCHITECTURES[arch](channels=channels, cond=self.conditional, **arch_kwargs)
        self.card: dict = {}

    def config(self) -> dict:
        """JSON-compatible constructor arguments (tuples become lists)."""
        kw = {k: list(v) if isinstance(v, tuple) else v for k, v in self.arch_kwargs.items()}
        return {"arch": self.arch, "channels": self.channels, "sigma_range": list(self.sigma_range), **kw}

    def _with_sigma(self, x: torch.Tensor, sigma) -> torch.Tensor:
        if not self.conditional:
            return x
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
        return torch.cat([x, s.expand(x.shape[0], 1, *x.shape[2:])], dim=1)

    def pad_to_multiple(self, x: torch.Tensor) -> torch.Tensor:
        """Reflect-pad bottom/right so H and W are multiples of the network's downsampling."""
        m = self.net.multiple
        h, w = x.shape[-2:]
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            mode = "reflect" if (ph < h and pw < w) else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        return x

    def noise(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """Predicted noise ``x − A_σ(x)`` for any H, W."""
        if x.shape[1] != self.channels:
            raise ValueError(f"this DAE expects {self.channels}-channel images, got {x.shape[1]}")
        h, w = x.shape[-2:]
        return self.net(self._with_sigma(self.pad_to_multiple(x), sigma))[..., :h, :w]

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        if sigma is None:
            if self.conditional:
                raise ValueError("this DAE is noise-conditional: pass sigma")
            sigma = self.sigma_range[0]
        return x - self.noise(x, sigma).to(x.dtype)


class FastDAE:
    """Inference wrapper: BN folded, eval mode, channels_last + bf16 autocast per the compute
    policy, optional tiling with overlap for images too large for memory.

    Call as ``fast(x, sigma)``; gradients flow through it (DAEP back-propagates the DAE error),
    so use ``torch.no_grad()`` at the call site when they are not needed.
    """

    def __init__(self, dae: DAE, compute: Compute | None = None, tile: int | None = None,
                 overlap: int = 32):
        self.compute = compute or get_compute()
        folded = copy.deepcopy(dae)
        folded.net = fold_batchnorm(dae.net)
        for p in folded.parameters():
            p.requires_grad_(False)
        self.dae = self.compute.prepare_module(folded.eval())
        self.tile, self.overlap = tile, overlap
        self.channels, self.sigma_range, self.conditional = dae.channels, dae.sigma_range, dae.conditional

    def _run(self, x: torch.Tensor, sigma) -> torch.Tensor:
        dtype, dev = x.dtype, x.device
        x = self.compute.prepare_input(x)
        with self.compute.autocast():
            out = self.dae(x, sigma)
        return out.to(dev, dtype).contiguous()

    def __call__(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.tile is None or (h <= self.tile and w <= self.tile):
            return self._run(x, sigma)
        return self._tiled(x, sigma)

    def _tiled(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """Denoise overlapping tiles of the padded image and keep each tile's centre, so every
        output pixel sees ``overlap`` pixels of context on all sides. Tiles start on the network's
        downsampling grid, so the result matches untiled inference up to the context cut-off."""
        m = self.dae.net.multiple
        t = self.tile // m * m
        o = -(-self.overlap // m) * m
        step = t - 2 * o
        if step <= 0:
            raise ValueError("tile must exceed twice the overlap")
        h, w = x.shape[-2:]
        xp = self.dae.pad_to_multiple(x)
        hp, wp = xp.shape[-2:]
        out = torch.empty_like(xp)

        def starts(n: int) -> list[int]:
            if n <= t:
                return [0]
            return sorted(set(list(range(0, n - t, step)) + [n - t]))

        for i in starts(hp):
            for j in starts(wp):
                tile = self._run(xp[..., i:i + t, j:j + t], sigma)
                th, tw = tile.shape[-2:]
                r0, c0 = (0 if i == 0 else o), (0 if j == 0 else o)
                r1, c1 = (th if i + th >= hp else th - o), (tw if j + tw >= wp else tw - o)
                out[..., i + r0:i + r1, j + c0:j + c1] = tile[..., r0:r1, c0:c1]
        return out[..., :h, :w]


# --- weights: safetensors (no pickle) + JSON model card -------------------------------------

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def save_dae(dae: DAE, path: str | Path, card: dict | None = None) -> None:
    """Write ``path`` (.safetensors) and ``path`` with suffix .json (config + model card)."""
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in dae.state_dict().items()}
    meta = {"config": dae.config(), "card": card or dae.card}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"deepprior": json.dumps(meta)})
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")


def load_dae(path: str | Path) -> DAE:
    """Load a DAE saved by :func:`save_dae` (never executes pickled code)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"DAE weights not found: {path}")
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["deepprior"])
    cfg = dict(meta["config"])
    dae = DAE(**cfg)
    dae.load_state_dict(load_file(str(path)))
    dae.card = meta.get("card", {})
    return dae.eval()


def default_weights_path(channels: int) -> Path:
    return WEIGHTS_DIR / f"dae_{'gray' if channels == 1 else 'color'}.safetensors"


def weights_digest(path) -> str:
    """First 16 hex digits of the SHA-256 of a weights file: which DAE a result used."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def load_default_dae(channels: int) -> DAE:
    """The shipped DAE for gray (1) or colour (3) images."""
    path = default_weights_path(channels)
    if not path.exists():
        raise FileNotFoundError(
            f"no shipped DAE weights for {channels}-channel images ({path.name}); "
            "train one with `deepprior train-dae` and pass --weights")
    return load_dae(path)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv_flops(net: nn.Module, shape: tuple[int, int, int, int]) -> float:
    """Multiply–add FLOPs (×2) of every Conv2d in ``net`` for an input of ``shape``."""
    total = 0.0

    def hook(mod, inp, out):
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
        total += 2.0 * k * out.numel()

    hs = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        net(torch.zeros(shape))
    for h in hs:
        h.remove()
    return total


__all__ = ["DAE", "DnCNN", "UNet", "FastDAE", "fold_batchnorm", "save_dae", "load_dae",
           "load_default_dae", "default_weights_path", "count_parameters", "conv_flops"]
