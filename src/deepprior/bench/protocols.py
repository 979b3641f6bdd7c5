"""Benchmark protocols: which images, which degradations, which PSNR convention.

A :class:`Protocol` names a test set, a task and a grid of *cases* per image (kernel ×
σ × scale); :func:`prepare_case` turns (image, case) into the clean reference ``x``, the
operator ``A`` and the observation ``y = A(x) + n``. The noise (and the inpainting mask)
is drawn from a generator seeded by :func:`case_seed`, a hash of the task, the image name
and the case, so every method — and every protocol sharing that task, image and case —
sees bit-identical inputs.

Adding a protocol is one :func:`register_protocol` call, e.g.::

    register_protocol(Protocol(
        name="daep-deblur-levin", task="deblur", dataset="levin", color="gray",
        kernels="levin", sigmas=(2.55, 7.65, 12.75), boundary="valid",
        method="daep", iters=300,
        description="DAEP Table 3: ... PSNR: full image, float, no crop."))

Units: σ is in 8-bit units everywhere here (σ = 25 means 25/255), as in the papers' tables.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..io import to_tensor
from ..noise import add_gaussian_noise, sigma_to_unit
from ..operators import TASKS, Blur, Compose, Downsample, Identity, Mask, Mosaic, Operator

__all__ = ["Case", "Protocol", "PreparedCase", "PROTOCOLS", "register_protocol", "get_protocol",
           "list_protocols", "protocol_cases", "case_seed", "modcrop", "prepare_case"]


@dataclass(frozen=True)
class Case:
    """One degradation applied to every image: a kernel name, σ (8-bit units), a scale."""

    kernel: str | None = None
    sigma: float = 0.0
    scale: int | None = None

    def key(self) -> str:
        """Canonical text of the case (part of the seed; stable across versions)."""
        return f"kernel={self.kernel}|sigma={self.sigma:g}|scale={self.scale}"

    def label(self) -> str:
        """Short human-readable form, e.g. ``'kernel_01 σ=2.55'`` or ``'×4'``."""
        parts = []
        if self.kernel is not None:
            parts.append(self.kernel)
        if self.sigma:
            parts.append(f"σ={self.sigma:g}")
        if self.scale is not None:
            parts.append(f"×{self.scale}")
        return " ".join(parts) or "-"


@dataclass(frozen=True)
class Protocol:
    """A benchmark: test set × degradation grid × PSNR convention × default method.

    Attributes
    ----------
    name, task : str
        Registry name; one of ``operators.TASKS``.
    dataset : str
        Folder of the data root holding the clean images (``'set12'``, ``'levin'``, ...).
    description : str
        First line: one-line summary (``deepprior bench --list``). Then the paper table it
        reproduces and the PSNR convention, in words.
    color : {'gray', 'rgb'}
        ``'gray'`` converts colour images with MATLAB ``rgb2gray`` weights; ``'rgb'`` keeps
        colour and handles gray images per ``gray_images``.
    gray_images : {'replicate', 'skip'}
        For ``color='rgb'``: replicate a gray image to three channels, or leave it out.
    sigmas : tuple of float
        Noise levels in 8-bit units (0: noise-free).
    kernels : str, optional
        Kernel set (``data.load_kernels``); cases are kernels × sigmas × scales.
    scales : tuple of int or None
        Super-resolution factors (``(None,)`` for the other tasks).
    boundary : str
        Blur boundary (``operators.Blur``): ``'valid'`` is the DAEP/DMSP reference code.
    sr_filter : str
        Decimation filter of ``Downsample`` when there is no kernel.
    missing : float
        Inpainting: probability that a pixel is missing (i.i.d. Bernoulli, seeded).
    pattern : str
        Demosaicking: Bayer pattern.
    quantize_observation : bool
        Round ``y`` to 8-bit levels (an observation stored as a uint8 image).
    noise_known : bool
        Pass the true σ to the method (non-blind); False lets it estimate σ.
    crop : int or 'scale'
        Border removed before PSNR/SSIM; ``'scale'`` means the case's scale factor.
    y_channel, quantize : bool
        PSNR/SSIM on BT.601 luma; on 8-bit-rounded images (see ``metrics.psnr``).
    method, iters, method_params
        Default method, and its iterations / parameters when that default is used
        (``iters=None``: the method's own paper default).
    operator_fn : callable, optional
        ``operator_fn(protocol, case, kernel, shape, generator) -> Operator`` replacing the
        built-in operator construction (e.g. a protocol with mask files).
    image_names : tuple of str, optional
        Only these images (file stems) of the test set, e.g. the ones a paper's table lists.
    trace_iters : tuple of int
        Iterations at which the runner scores the method's current estimate (through its
        ``callback``) with the protocol's convention: rows get ``trace = {iter: {psnr,
        seconds}}`` and the summary the means — PSNR against time along one run.
    extra_metrics : callable, optional
        ``extra_metrics(protocol, case, prepared, estimate, result, context) -> dict`` of extra
        per-case numbers added to each results row (e.g. an error ratio); ``context`` holds
        ``run`` (the method's run function), ``iters``, ``params``, ``device``, ``precision``,
        ``convention`` (PSNR crop/Y/quantize of the case) and ``kernel``. The runner adds their
        mean/min/max to ``summary["extra"]``.
    """

    name: str
    task: str
    dataset: str
    description: str
    color: str = "gray"
    gray_images: str = "replicate"
    sigmas: tuple = (0.0,)
    kernels: str | None = None
    scales: tuple = (None,)
    boundary: str = "circular"
    sr_filter: str = "bicubic"
    missing: float = 0.5
    pattern: str = "RGGB"
    quantize_observation: bool = False
    noise_known: bool = True
    crop: int | str = 0
    y_channel: bool = False
    quantize: bool = False
    method: str = "tv"
    iters: int | None = None
    method_params: dict = field(default_factory=dict)
    operator_fn: Callable | None = None
    extra_metrics: Callable | None = None
    image_names: tuple | None = None
    trace_iters: tuple = ()

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"protocol {self.name!r}: unknown task {self.task!r}")
        if self.color not in ("gray", "rgb"):
            raise ValueError(f"protocol {self.name!r}: color must be 'gray' or 'rgb'")
        if self.gray_images not in ("replicate", "skip"):
            raise ValueError(f"protocol {self.name!r}: gray_images must be 'replicate' or 'skip'")
        if not (self.crop == "scale" or (isinstance(self.crop, int) and self.crop >= 0)):
            raise ValueError(f"protocol {self.name!r}: crop must be a non-negative int or 'scale'")

    @property
    def title(self) -> str:
        return self.description.strip().splitlines()[0]

    def crop_for(self, case: Case, kernel=None) -> int:
        """Border removed before PSNR/SSIM for ``case`` (``kernel``: the case's kernel array,
        for protocols whose crop depends on it)."""
        if self.crop == "scale":
            return int(case.scale or 0)
        return int(self.crop)

    def psnr_convention(self) -> dict:
        """The metric convention, as recorded in every results JSON."""
        return {"crop": self.crop, "y_channel": self.y_channel, "quantize": self.quantize,
                "clip": True, "ssim": "Wang et al. 2004, 11x11 Gaussian σ=1.5, same convention"}


PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(protocol: Protocol) -> Protocol:
    PROTOCOLS[protocol.name] = protocol
    return protocol


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; available: {', '.join(sorted(PROTOCOLS))}")
    return PROTOCOLS[name]


def list_protocols() -> list[tuple[str, str, str]]:
    """``(name, task, one-line description)`` of every protocol, sorted by name."""
    return [(p.name, p.task, p.title) for p in sorted(PROTOCOLS.values(), key=lambda p: p.name)]


def protocol_cases(protocol: Protocol, kernel_names=None) -> list[Case]:
    """The case grid: kernels × sigmas × scales, in that nesting order."""
    kernels = list(kernel_names) if protocol.kernels else [None]
    return [Case(k, float(s), None if sc is None else int(sc))
            for k in kernels for s in protocol.sigmas for sc in protocol.scales]


def case_seed(task: str, image: str, case: Case) -> int:
    """Deterministic 31-bit seed from the task, the image name (file stem) and the case."""
    digest = hashlib.sha256(f"{task}|{image}|{case.key()}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def modcrop(pixels: np.ndarray, scale: int) -> np.ndarray:
    """Crop H×W(×C) to multiples of ``scale`` from the bottom/right, as MATLAB ``modcrop``."""
    h, w = pixels.shape[0], pixels.shape[1]
    return pixels[: h - h % scale, : w - w % scale]


def _default_operator(protocol: Protocol, case: Case, kernel, shape, generator) -> Operator:
    task = protocol.task
    if task == "denoise":
        return Identity()
    if task == "deblur":
        return Blur(kernel, protocol.boundary)
    if task == "sr":
        if kernel is not None:  # blur then point decimation (DAEP eq. 1)
            return Compose(Blur(kernel, protocol.boundary), Downsample(case.scale, "point"))
        return Downsample(case.scale, protocol.sr_filter)
    if task == "inpaint":
        keep = torch.rand(shape[-2:], generator=generator, dtype=torch.float64) >= protocol.missing
        return Mask(keep.to(torch.float32))
    if task == "demosaic":
        return Mosaic(protocol.pattern)
    raise ValueError(f"no default operator for task {task!r}")


@dataclass
class PreparedCase:
    """The inputs of one benchmark case: what every method receives, bit for bit."""

    x: torch.Tensor          # clean reference, 1×C×H×W float32
    y: torch.Tensor          # observation
    operator: Operator
    seed: int


def prepare_case(protocol: Protocol, image: str, pixels: np.ndarray, case: Case,
                 kernel=None) -> PreparedCase:
    """Degrade one clean image for one case.

    Parameters
    ----------
    protocol : Protocol
    image : str
        Image name (file stem); part of the seed.
    pixels : np.ndarray
        Clean image H×W×C float32 in [0, 1], already gray/colour-converted.
    case : Case
    kernel : np.ndarray, optional
        The case's kernel (MATLAB orientation).

    Returns
    -------
    PreparedCase
        ``y = A(x) + n`` with ``n ~ N(0, (σ/255)²)`` unclipped; for SR ``x`` is modcropped
        to a multiple of the scale. Generated on the CPU in float32 from a generator seeded
        with :func:`case_seed`; the mask (inpainting) is drawn before the noise.
    """
    if case.scale:
        pixels = modcrop(pixels, case.scale)
    x = to_tensor(pixels)
    seed = case_seed(protocol.task, image, case)
    gen = torch.Generator().manual_seed(seed)
    build = protocol.operator_fn or _default_operator
    operator = build(protocol, case, kernel, tuple(x.shape), gen)
    with torch.no_grad():
        y = operator.forward(x).to(torch.float32)
        if case.sigma > 0:
            y = add_gaussian_noise(y, sigma_to_unit(case.sigma), generator=gen)
    if protocol.quantize_observation:
        y = torch.floor(y.clamp(0, 1) * 255 + 0.5) / 255
    return PreparedCase(x, y.contiguous(), operator, seed)


# ============================================================================ protocols
# Classical baselines. The paper protocols added later reuse the same test sets, case
# grids and seeds, so the numbers here are directly the "classical" rows of those tables.

register_protocol(Protocol(
    name="classic-denoise-set12", task="denoise", dataset="set12", color="gray",
    sigmas=(15.0, 25.0, 50.0), method="tv",
    description="""Set12 gray denoising, AWGN σ ∈ {15, 25, 50}; classical TV baseline.
Layout of the standard Set12 gray denoising table (DnCNN, Zhang et al. TIP 2017,
Table III): 12 gray images, white Gaussian noise added in float, unclipped.
PSNR/SSIM: gray, float (no 8-bit rounding), no border crop; estimate clipped to [0, 1].""",
))

register_protocol(Protocol(
    name="classic-deblur-levin", task="deblur", dataset="levin", color="gray",
    kernels="levin", sigmas=(2.55, 7.65, 12.75), boundary="valid", method="wiener",
    description="""Levin et al. 4 images × 8 kernels, σ_n ∈ {2.55, 7.65, 12.75}; Wiener baseline.
The grid of DAEP Table 3 and DMSP Table 2 (Levin, 32 blurred images per noise level).
Blur: 'valid' boundary as in the DAEP/DMSP reference code (the observation is smaller than
the image by kernel size − 1), true convolution with the MATLAB-oriented kernels.
PSNR/SSIM (DAEP/DMSP convention): full-size estimate vs the clean image, gray, float
(no 8-bit rounding), no border crop; estimate clipped to [0, 1].""",
))

register_protocol(Protocol(
    name="classic-sr-set5", task="sr", dataset="set5", color="rgb",
    scales=(2, 3, 4), sr_filter="bicubic", quantize_observation=True,
    crop="scale", y_channel=True, quantize=True, method="bicubic",
    description="""Set5 colour super-resolution ×2, ×3, ×4 (MATLAB imresize bicubic); bicubic baseline.
The Set5 ×2-×4 'Bicubic' setting of DAEP Table 1 / DMSP Table 3 (the papers' own
degradation models are separate protocols). HR images modcropped to a multiple of the scale; LR =
MATLAB-compatible imresize(HR, 1/s, 'bicubic'), rounded to 8 bits (a stored uint8 LR
image), noise-free.
PSNR/SSIM: the common SR convention — estimate rounded to 8 bits, BT.601 Y channel
(rgb2ycbcr), border of `scale` pixels cropped. (DAEP Tables 1-2 instead use RGB with
crop = scale.)""",
))

register_protocol(Protocol(
    name="classic-inpaint-set12", task="inpaint", dataset="set12", color="gray",
    missing=0.5, method="biharmonic",
    description="""Set12 gray inpainting, 50% pixels missing (i.i.d. Bernoulli); biharmonic baseline.
Each pixel is missing with probability 0.5, the mask drawn per image from the case seed
(identical for every method); noise-free. `tv` also solves it.
PSNR/SSIM: gray, float (no 8-bit rounding), no border crop; estimate clipped to [0, 1].""",
))

register_protocol(Protocol(
    name="classic-demosaic-set14", task="demosaic", dataset="set14", color="rgb",
    gray_images="skip", pattern="RGGB", crop=2, method="bilinear",
    description="""Set14 colour demosaicking, Bayer RGGB, noise-free; bilinear baseline.
The 13 colour images of Set14 (the gray 'bridge' is skipped: a gray image replicated to
RGB has no chroma to demosaic and would flatter every method).
PSNR/SSIM: RGB, float (no 8-bit rounding), 2-pixel border cropped (where bilinear
interpolation has one-sided support); estimate clipped to [0, 1].""",
))

# --- denoising with the DAE (issue "learned prior"); BM3D / NLM run through --method -------------
_DENOISE_CONVENTION = """AWGN added in float, unclipped, one fixed noise draw per image and σ
(identical for every method). PSNR/SSIM as in the DnCNN tables: float images, no 8-bit
rounding, no border crop, on all channels; estimate clipped to [0, 1]."""
for _name, _dataset, _color, _table in (
        ("denoise-bsd68", "bsd68", "gray", "DnCNN (Zhang et al. TIP 2017) Table II: BM3D 31.07/28.57/25.62, "
                                           "DnCNN-S 31.73/29.23/26.23 dB"),
        ("denoise-cbsd68", "cbsd68", "rgb", "DnCNN Table V: CBM3D 30.70 (σ=25) / 27.38 (σ=50), "
                                            "CDnCNN-B 31.23 / 27.97 dB"),
        ("denoise-set12", "set12", "gray", "DnCNN Table III (Set12 averages)")):
    register_protocol(Protocol(
        name=_name, task="denoise", dataset=_dataset, color=_color, sigmas=(15.0, 25.0, 50.0),
        method="dae",
        description=f"{_dataset} {_color} denoising, σ ∈ {{15, 25, 50}}; our DAE (also --method bm3d|nlm).\n"
                    f"Reference figures: {_table}.\n{_DENOISE_CONVENTION}"))

from . import protocols_dip  # noqa: E402,F401  (DIP protocols register on import)

# Protocols of the DAEP / DMSP papers (issue 4), in their own module.
from . import protocols_meanshift  # noqa: E402,F401

# Protocols of DeepRED (issue 6).
from . import protocols_deepred  # noqa: E402,F401
