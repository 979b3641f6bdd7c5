"""Degradation models ``y = A(x) + n`` for the restoration tasks of the papers.

Every operator maps a batch of images ``x`` (``N×C×H×W`` tensor, any float dtype,
any device) to measurements ``y = A(x)`` and has an *exact* adjoint ``Aᵀ`` (tested
by ``<Ax, y> = <x, Aᵀy>``), which the MAP / Bayes methods (DAEP, DMSP, DeepRED)
need for the gradient ``Aᵀ(Ax − y)`` of their Gaussian data term.

Operators are plain Python objects, not ``nn.Module``: they hold no trainable
state, except that ``Blur.kernel`` is a public tensor so a kernel-blind method
(DMSP §3.3) can differentiate ``forward`` with respect to it.

================  ==========  ==================================================
operator          ``task``    model
================  ==========  ==================================================
``Identity``      denoise     ``y = x``
``Blur``          deblur      ``y = k ∗ x`` (true convolution, MATLAB orientation)
``Downsample``    sr          ``y = R_h X R_wᵀ`` per channel (decimation)
``Mask``          inpaint     ``y = m ⊙ x``
``Mosaic``        demosaic    ``y = Σ_c M_c ⊙ x_c`` (Bayer colour filter array)
``Compose``       (last op)   ``y = A_k(… A_1(x))``
================  ==========  ==================================================
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "Operator", "Identity", "Blur", "Downsample", "Mask", "Mosaic", "Compose",
    "operator_from_dict", "make_operator",
]

TASKS = ("denoise", "deblur", "sr", "inpaint", "demosaic")


def _check_shape(shape) -> tuple[int, int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4:
        raise ValueError(f"expected an N×C×H×W shape, got {shape}")
    return shape


def _as_float_tensor(a, name: str) -> torch.Tensor:
    """Tensor view of an array; keeps float tensors as they are (autograd graph included)."""
    t = a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))
    if t.is_complex():
        raise ValueError(f"{name} must be a real array, got dtype {t.dtype}")
    return t if t.is_floating_point() else t.to(torch.float32)


class Operator:
    """Base class of the linear degradation operators ``A``.

    Subclasses implement ``forward``, ``adjoint``, ``output_shape``,
    ``input_shape``, ``initial_estimate`` and ``to_dict``; ``validate_input_shape``
    defaults to calling ``output_shape`` (which raises ``ValueError``).
    """

    task: str = "denoise"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``AᵀA x``."""
        return self.adjoint(self.forward(x))

    def output_shape(self, input_shape) -> tuple[int, int, int, int]:
        return _check_shape(input_shape)

    def input_shape(self, output_shape) -> tuple[int, int, int, int]:
        return _check_shape(output_shape)

    def validate_input_shape(self, shape) -> None:
        """Raise ``ValueError`` with a one-line message if ``A`` cannot act on ``shape``."""
        self.output_shape(shape)

    def initial_estimate(self, y: torch.Tensor) -> torch.Tensor:
        """A sensible starting image in x-space for iterative solvers."""
        return y

    def to(self, device) -> "Operator":
        """Operator with its tensors on ``device`` (operators without tensors return self)."""
        return self

    def to_dict(self) -> dict:
        """JSON-serialisable spec with a ``"type"`` key; see ``operator_from_dict``."""
        return {"type": type(self).__name__}

    @staticmethod
    def from_dict(d: dict) -> "Operator":
        return operator_from_dict(d)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items()
                         if k != "type" and not isinstance(v, list))
        return f"{type(self).__name__}({args})"


class Identity(Operator):
    """``A = I``: denoising, ``y = x + n``."""

    task = "denoise"

    def forward(self, x):
        _check_shape(x.shape)
        return x

    def adjoint(self, y):
        _check_shape(y.shape)
        return y


# --------------------------------------------------------------------------- Blur
class Blur(Operator):
    """Blur by true 2-D convolution with one kernel applied to every channel.

    Parameters
    ----------
    kernel : array_like or torch.Tensor, shape (kh, kw)
        Blur kernel in MATLAB orientation (the arrays in ``data/kernels``): the
        result equals ``scipy.signal.convolve2d(x, kernel, mode)`` per channel.
        Any size (odd or even). Used as given (not normalised); must be finite.
        A float tensor is kept as is, so ``forward`` is differentiable w.r.t. it.
    boundary : {'circular', 'valid', 'zero'}
        * ``'circular'``: periodic image, output ``H×W`` (DeepRED; the FFT model).
        * ``'valid'``: only fully overlapped positions, output
          ``(H−kh+1)×(W−kw+1)``, as ``convolve2d(..., 'valid')`` (DAEP/DMSP code).
        * ``'zero'``: zero padding, output ``H×W``, as ``convolve2d(..., 'same')``.

        ``'circular'`` and ``'zero'`` share the alignment of ``convolve2d(mode='same')``:
        output pixel ``i`` is full-convolution pixel ``i + (kh−1)//2``. For even
        kernel sizes MATLAB's ``psf2otf`` centres at ``kh//2`` instead (one pixel off).
    method : {'auto', 'direct', 'fft'}
        ``'direct'``: depthwise ``conv2d`` with the flipped kernel; ``'fft'``:
        ``torch.fft.rfft2``; ``'auto'``: FFT when ``kh·kw > 225`` (larger than 15×15).
        Both give the same result to rounding.
    """

    task = "deblur"
    BOUNDARIES = ("circular", "valid", "zero")
    FFT_MIN_AREA = 15 * 15

    def __init__(self, kernel, boundary: str = "circular", method: str = "auto"):
        kernel = _as_float_tensor(kernel, "kernel")
        if kernel.ndim != 2 or kernel.numel() == 0:
            raise ValueError(f"kernel must be a non-empty 2-D array, got shape {tuple(kernel.shape)}")
        if not bool(torch.isfinite(kernel.detach()).all()):
            raise ValueError("kernel contains NaN or infinite values")
        if boundary not in self.BOUNDARIES:
            raise ValueError(f"boundary must be one of {self.BOUNDARIES}, got {boundary!r}")
        if method not in ("auto", "direct", "fft"):
            raise ValueError(f"method must be 'auto', 'direct' or 'fft', got {method!r}")
        self.kernel = kernel
        self.boundary = boundary
        self.method = method

    # -- shapes
    @property
    def _offset(self) -> tuple[int, int]:
        # scipy convolve2d 'same' alignment: same[i] = full[i + (kh-1)//2]
        kh, kw = self.kernel.shape
        return (kh - 1) // 2, (kw - 1) // 2

    def output_shape(self, input_shape):
        n, c, h, w = _check_shape(input_shape)
        kh, kw = self.kernel.shape
        if kh > h or kw > w:
            raise ValueError(f"kernel {kh}×{kw} is larger than the image {h}×{w}")
        if self.boundary == "valid":
            return n, c, h - kh + 1, w - kw + 1
        return n, c, h, w

    def input_shape(self, output_shape):
        n, c, h, w = _check_shape(output_shape)
        if self.boundary == "valid":
            kh, kw = self.kernel.shape
            return n, c, h + kh - 1, w + kw - 1
        return n, c, h, w

    def _use_fft(self) -> bool:
        if self.method != "auto":
            return self.method == "fft"
        return self.kernel.numel() > self.FFT_MIN_AREA

    def _kernel_like(self, x: torch.Tensor) -> torch.Tensor:
        return self.kernel.to(device=x.device, dtype=x.dtype)

    def _pads(self, adjoint: bool) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) padding that turns the boundary into a 'valid' conv."""
        kh, kw = self.kernel.shape
        if self.boundary == "valid":
            return (kw - 1,) * 2 + (kh - 1,) * 2 if adjoint else (0, 0, 0, 0)
        sh, sw = self._offset
        if adjoint:  # correlation: padding mirrored
            return sw, kw - 1 - sw, sh, kh - 1 - sh
        return kw - 1 - sw, sw, kh - 1 - sh, sh

    # -- direct path: pad, then depthwise conv2d (a correlation; flip for convolution)
    def _direct(self, x: torch.Tensor, adjoint: bool) -> torch.Tensor:
        k = self._kernel_like(x)
        if not adjoint:
            k = torch.flip(k, (0, 1))
        mode = "circular" if self.boundary == "circular" else "constant"
        xp = F.pad(x, self._pads(adjoint), mode=mode)
        n, c, h, w = xp.shape
        out = F.conv2d(xp.reshape(n * c, 1, h, w), k[None, None])
        return out.reshape(n, c, out.shape[-2], out.shape[-1])

    # -- FFT path
    def _kernel_fft(self, k: torch.Tensor, h: int, w: int, centred: bool) -> torch.Tensor:
        kh, kw = k.shape
        kp = F.pad(k, (0, w - kw, 0, h - kh))
        if centred:
            kp = torch.roll(kp, shifts=(-self._offset[0], -self._offset[1]), dims=(0, 1))
        return torch.fft.rfft2(kp)

    def transfer_function(self, height: int, width: int) -> torch.Tensor:
        """``rfft2`` of the kernel for an image of ``height × width``: the circular
        convolution is ``irfft2(rfft2(x) · H, s=(height, width))``, with this class's centre."""
        return self._kernel_fft(self.kernel, int(height), int(width), True)

    def _kernel_fft_cached(self, x: torch.Tensor, centred: bool) -> torch.Tensor:
        """The kernel's FFT for x's size, device and dtype, computed once per operator (a fixed
        kernel: iterative methods apply the same blur hundreds of times). A kernel that needs
        gradients (DMSP's kernel estimation) or was modified in place is transformed afresh."""
        h, w = x.shape[-2:]
        k = self._kernel_like(x)
        if k.requires_grad:
            return self._kernel_fft(k, h, w, centred)
        key = (h, w, centred, x.device, x.dtype, self.kernel.data_ptr(), self.kernel._version)
        cache = self.__dict__.setdefault("_kernel_fft_memo", {})
        kf = cache.get(key)
        if kf is None:
            if len(cache) >= 8:
                cache.clear()
            kf = cache[key] = self._kernel_fft(k, h, w, centred)
        return kf

    def _fft_circular(self, x: torch.Tensor, adjoint: bool, centred: bool) -> torch.Tensor:
        h, w = x.shape[-2:]
        kf = self._kernel_fft_cached(x, centred)
        if adjoint:
            kf = kf.conj()
        return torch.fft.irfft2(torch.fft.rfft2(x) * kf, s=(h, w))

    def _fft(self, x: torch.Tensor, adjoint: bool) -> torch.Tensor:
        if self.boundary == "circular":
            return self._fft_circular(x, adjoint, centred=True)
        kh, kw = self.kernel.shape
        if not adjoint:
            if self.boundary == "zero":
                x = F.pad(x, self._pads(False))
            # circular conv with the kernel at the origin: rows ≥ kh−1 never wrap = 'valid'
            return self._fft_circular(x, False, centred=False)[..., kh - 1:, kw - 1:]
        # adjoint of (crop ∘ circular conv) = circular correlation ∘ zero embedding
        y = F.pad(x, (kw - 1, 0, kh - 1, 0))
        z = self._fft_circular(y, True, centred=False)
        if self.boundary == "zero":
            left, right, top, bottom = self._pads(False)
            z = z[..., top:z.shape[-2] - bottom, left:z.shape[-1] - right]
        return z

    def forward(self, x):
        self.validate_input_shape(x.shape)
        return self._fft(x, False) if self._use_fft() else self._direct(x, False)

    def adjoint(self, y):
        self.validate_input_shape(self.input_shape(y.shape))
        return self._fft(y, True) if self._use_fft() else self._direct(y, True)

    def initial_estimate(self, y):
        if self.boundary != "valid":
            return y
        # 'valid' loses a (kh−1)×(kw−1) border: pad it back by edge replication,
        # split so y[i] lands where 'same' puts it (valid[i] = same[i + kh−1−(kh−1)//2]).
        kh, kw = self.kernel.shape
        sh, sw = self._offset
        return F.pad(y, (kw - 1 - sw, sw, kh - 1 - sh, sh), mode="replicate")

    def to(self, device):
        return Blur(self.kernel.to(device), self.boundary, self.method)

    def to_dict(self):
        return {"type": "Blur", "kernel": self.kernel.detach().cpu().tolist(),
                "boundary": self.boundary, "method": self.method}


# --------------------------------------------------------------------- Downsample
def _cubic(t: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel, a = −0.5 (MATLAB imresize 'bicubic')."""
    t = np.abs(t)
    return np.where(t <= 1, 1.5 * t**3 - 2.5 * t**2 + 1,
                    np.where(t < 2, -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2, 0.0))


def _lanczos2(t: np.ndarray) -> np.ndarray:
    """Lanczos kernel with a = 2: sinc(t)·sinc(t/2) on |t| < 2 (np.sinc is normalised)."""
    return np.where(np.abs(t) < 2, np.sinc(t) * np.sinc(t / 2), 0.0)


def _resize_matrix(n_in: int, factor: int, kernel) -> np.ndarray:
    """Decimation matrix (n_in/factor × n_in) of MATLAB ``imresize(x, 1/factor)``.

    Follows imresize's ``contributions()``: antialiasing stretches the kernel by
    ``factor`` (h(t) = k(t/f)/f, width 4·f); output pixel ``i`` (1-based) sits at
    input coordinate ``u = i·f + 0.5·(1 − f)``; weights are normalised to sum 1;
    out-of-range taps are mirrored (symmetric boundary) and accumulated.
    """
    n_out = n_in // factor
    width = 4.0 * factor
    i = np.arange(1, n_out + 1, dtype=np.float64)
    u = i * factor + 0.5 * (1 - factor)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]          # 1-based input indices
    wts = kernel((u[:, None] - idx) / factor) / factor
    wts /= wts.sum(axis=1, keepdims=True)
    # mirror: aux = [1..n, n..1] indexed periodically (imresize's symmetric padding)
    aux = np.concatenate([np.arange(n_in), np.arange(n_in)[::-1]])
    cols = aux[np.mod(idx.astype(np.int64) - 1, 2 * n_in)]
    r = np.zeros((n_out, n_in))
    np.add.at(r, (np.repeat(np.arange(n_out), taps), cols.ravel()), wts.ravel())
    return r


class Downsample(Operator):
    """Decimation by an integer ``factor``: ``y_c = R_h X_c R_wᵀ`` for each channel.

    Parameters
    ----------
    factor : int
        Scale factor ``f ≥ 1``; H and W must be divisible by it.
    filter : {'bicubic', 'point', 'box', 'lanczos2'}
        * ``'point'``: ``y = x[..., ::f, ::f]`` (DAEP eq. 1, offset 0).
        * ``'box'``: mean of each f×f block.
        * ``'bicubic'``: MATLAB ``imresize(x, 1/f)`` (antialiased cubic, a = −0.5,
          symmetric boundary), the SR benchmarks' degradation.
        * ``'lanczos2'``: the same with a Lanczos-2 kernel, the "Lanczos2"
          decimation of Deep Image Prior §4.

    Notes
    -----
    ``R_h`` and ``R_w`` are dense matrices, built once per size, dtype and
    device and cached; the adjoint is the exact transpose ``R_hᵀ Y R_w``.
    """

    task = "sr"
    FILTERS = ("bicubic", "point", "box", "lanczos2")

    def __init__(self, factor: int, filter: str = "bicubic"):
        if int(factor) != factor or factor < 1:
            raise ValueError(f"factor must be a positive integer, got {factor!r}")
        if filter not in self.FILTERS:
            raise ValueError(f"filter must be one of {self.FILTERS}, got {filter!r}")
        self.factor = int(factor)
        self.filter = filter
        self._cache: dict = {}

    def output_shape(self, input_shape):
        n, c, h, w = _check_shape(input_shape)
        f = self.factor
        if h % f or w % f:
            raise ValueError(f"scale {f} does not divide image size {h}×{w}")
        return n, c, h // f, w // f

    def input_shape(self, output_shape):
        n, c, h, w = _check_shape(output_shape)
        return n, c, h * self.factor, w * self.factor

    def matrix(self, n_in: int, dtype=torch.float64, device="cpu") -> torch.Tensor:
        """The (n_in/f × n_in) 1-D decimation matrix ``R`` (rows sum to 1)."""
        key = (n_in, dtype, torch.device(device))
        if key not in self._cache:
            f, n_out = self.factor, n_in // self.factor
            if self.filter == "point":
                r = np.zeros((n_out, n_in))
                r[np.arange(n_out), np.arange(n_out) * f] = 1.0
            elif self.filter == "box":
                r = np.kron(np.eye(n_out), np.full((1, f), 1.0 / f))
            else:
                r = _resize_matrix(n_in, f, _cubic if self.filter == "bicubic" else _lanczos2)
            self._cache[key] = torch.as_tensor(r, dtype=dtype, device=device)
        return self._cache[key]

    def forward(self, x):
        self.validate_input_shape(x.shape)
        rh = self.matrix(x.shape[-2], x.dtype, x.device)
        rw = self.matrix(x.shape[-1], x.dtype, x.device)
        return rh @ x @ rw.T

    def adjoint(self, y):
        _, _, h, w = self.input_shape(y.shape)
        rh = self.matrix(h, y.dtype, y.device)
        rw = self.matrix(w, y.dtype, y.device)
        return rh.T @ y @ rw

    def initial_estimate(self, y):
        _, _, h, w = self.input_shape(y.shape)
        return F.interpolate(y, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)

    def to(self, device):
        return Downsample(self.factor, self.filter)

    def to_dict(self):
        return {"type": "Downsample", "factor": self.factor, "filter": self.filter}


# --------------------------------------------------------------------------- Mask
class Mask(Operator):
    """Pixel mask for inpainting: ``y = m ⊙ x``, self-adjoint.

    Parameters
    ----------
    mask : array_like or torch.Tensor, shape (H, W) or (C, H, W)
        Values in {0, 1}; 1 marks a known pixel. A (H, W) mask applies to every
        channel; a (C, H, W) mask needs C equal to the image's channels (or 1).
    """

    task = "inpaint"

    def __init__(self, mask):
        m = _as_float_tensor(mask, "mask").detach()
        if m.ndim == 2:
            m = m[None]
        if m.ndim != 3:
            raise ValueError(f"mask must be H×W or C×H×W, got shape {tuple(m.shape)}")
        if not bool(((m == 0) | (m == 1)).all()):
            raise ValueError("mask values must be 0 (missing) or 1 (known)")
        self.mask = m

    def output_shape(self, input_shape):
        n, c, h, w = _check_shape(input_shape)
        mc, mh, mw = self.mask.shape
        if (mh, mw) != (h, w):
            raise ValueError(f"mask is {mh}×{mw} but the image is {h}×{w}")
        if mc not in (1, c):
            raise ValueError(f"mask has {mc} channels but the image has {c}")
        return n, c, h, w

    input_shape = output_shape

    def _mask_like(self, x):
        return self.mask.to(device=x.device, dtype=x.dtype)[None]

    def forward(self, x):
        self.validate_input_shape(x.shape)
        return x * self._mask_like(x)

    adjoint = forward

    def initial_estimate(self, y):
        # holes ← per-image, per-channel mean of the known pixels (0.5 if none is known)
        m = self._mask_like(y).expand_as(y)
        known = m.sum(dim=(-2, -1), keepdim=True)
        mean = (y * m).sum(dim=(-2, -1), keepdim=True) / known.clamp(min=1)
        mean = torch.where(known > 0, mean, torch.full_like(mean, 0.5))
        return y * m + mean * (1 - m)

    def to(self, device):
        return Mask(self.mask.to(device))

    def to_dict(self):
        return {"type": "Mask", "mask": self.mask.cpu().to(torch.int64).tolist()}


# ------------------------------------------------------------------------- Mosaic
class Mosaic(Operator):
    """Bayer colour filter array: RGB ``N×3×H×W`` → CFA ``N×1×H×W``.

    Parameters
    ----------
    pattern : {'RGGB', 'BGGR', 'GRBG', 'GBRG'}
        Colours of the top-left 2×2 cell, row by row (``'RGGB'``: R at (0, 0),
        G at (0, 1) and (1, 0), B at (1, 1)). Any H, W (odd too).

    Notes
    -----
    The adjoint puts each CFA sample back into its colour channel, zeros elsewhere.
    """

    task = "demosaic"
    PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")

    def __init__(self, pattern: str = "RGGB"):
        if not isinstance(pattern, str) or pattern.upper() not in self.PATTERNS:
            raise ValueError(f"pattern must be one of {self.PATTERNS}, got {pattern!r}")
        self.pattern = pattern.upper()

    def output_shape(self, input_shape):
        n, c, h, w = _check_shape(input_shape)
        if c != 3:
            raise ValueError(f"mosaicking needs an RGB image (3 channels), got {c}")
        return n, 1, h, w

    def input_shape(self, output_shape):
        n, c, h, w = _check_shape(output_shape)
        if c != 1:
            raise ValueError(f"a CFA image has 1 channel, got {c}")
        return n, 3, h, w

    def sampling_masks(self, h: int, w: int, dtype=torch.float32, device="cpu") -> torch.Tensor:
        """One-hot masks ``M`` (1×3×H×W): ``M[0, c, i, j] = 1`` where colour c is sampled."""
        channel = torch.tensor(["RGB".index(ch) for ch in self.pattern], device=device).view(2, 2)
        rows = torch.arange(h, device=device) % 2
        cols = torch.arange(w, device=device) % 2
        cfa = channel[rows[:, None], cols[None, :]]
        return F.one_hot(cfa, 3).permute(2, 0, 1)[None].to(dtype)

    def forward(self, x):
        self.validate_input_shape(x.shape)
        m = self.sampling_masks(x.shape[-2], x.shape[-1], x.dtype, x.device)
        return (x * m).sum(dim=1, keepdim=True)

    def adjoint(self, y):
        self.input_shape(y.shape)
        return y * self.sampling_masks(y.shape[-2], y.shape[-1], y.dtype, y.device)

    def initial_estimate(self, y):
        # Bilinear demosaicking as normalised convolution of each sparse channel:
        # x̂_c = (g ∗ (M_c ⊙ y)) / (g ∗ M_c), known samples kept as they are.
        m = self.sampling_masks(y.shape[-2], y.shape[-1], y.dtype, y.device)
        sparse = y * m
        g = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]],
                         dtype=y.dtype, device=y.device).expand(3, 1, 3, 3)
        num = F.conv2d(sparse, g, padding=1, groups=3)
        den = F.conv2d(m, g, padding=1, groups=3)
        est = num / den.clamp(min=1e-12)
        return torch.where(m > 0, sparse, est)

    def to_dict(self):
        return {"type": "Mosaic", "pattern": self.pattern}


# ------------------------------------------------------------------------ Compose
class Compose(Operator):
    """``A = A_k ∘ … ∘ A_1``: ``Compose(a, b)(x) = b(a(x))``.

    ``Compose(Blur(k, 'circular'), Downsample(s, 'point'))`` is blur then decimate,
    the SR model of DAEP eq. 1 / DMSP. ``task`` is the task of the last
    non-identity operator.
    """

    def __init__(self, *ops: Operator):
        if not ops or not all(isinstance(op, Operator) for op in ops):
            raise ValueError("Compose needs one or more Operator instances")
        self.ops = tuple(ops)

    @property
    def task(self) -> str:
        tasks = [op.task for op in self.ops if not isinstance(op, Identity)]
        return tasks[-1] if tasks else "denoise"

    def output_shape(self, input_shape):
        shape = _check_shape(input_shape)
        for op in self.ops:
            shape = op.output_shape(shape)
        return shape

    def input_shape(self, output_shape):
        shape = _check_shape(output_shape)
        for op in reversed(self.ops):
            shape = op.input_shape(shape)
        return shape

    def forward(self, x):
        for op in self.ops:
            x = op.forward(x)
        return x

    def adjoint(self, y):
        for op in reversed(self.ops):
            y = op.adjoint(y)
        return y

    def initial_estimate(self, y):
        for op in reversed(self.ops):
            y = op.initial_estimate(y)
        return y

    def to(self, device):
        return Compose(*(op.to(device) for op in self.ops))

    def to_dict(self):
        return {"type": "Compose", "ops": [op.to_dict() for op in self.ops]}

    def __repr__(self):
        return f"Compose({', '.join(map(repr, self.ops))})"


# ------------------------------------------------------------ (de)serialisation
def operator_norm_sq(operator: Operator, shape, generator: torch.Generator | None = None,
                     device="cpu", n: int = 30) -> float:
    """‖A‖² = the largest eigenvalue of AᵀA for inputs of ``shape``, by ``n`` power iterations
    on ``operator.normal`` from a random start drawn from ``generator``."""
    v = torch.randn(tuple(shape), generator=generator).to(device)
    v = v / v.norm()
    lam = 0.0
    for _ in range(n):
        w = operator.normal(v)
        lam = float((v * w).sum())
        v = w / w.norm().clamp_min(1e-12)
    return lam


def downsample_factor(operator: Operator) -> int | None:
    """The super-resolution factor of ``operator`` (a ``Downsample``, or a ``Compose`` holding
    one); None when it does not downsample."""
    for op in getattr(operator, "ops", [operator]):
        if isinstance(op, Downsample):
            return int(op.factor)
    return None


def operator_from_dict(d: dict) -> Operator:
    """Rebuild an operator from ``Operator.to_dict()`` output (e.g. after ``json.loads``)."""
    kind = d.get("type") if isinstance(d, dict) else None
    if kind == "Identity":
        return Identity()
    if kind == "Blur":
        return Blur(np.asarray(d["kernel"], dtype=np.float64), d.get("boundary", "circular"),
                    d.get("method", "auto"))
    if kind == "Downsample":
        return Downsample(d["factor"], d.get("filter", "bicubic"))
    if kind == "Mask":
        return Mask(np.asarray(d["mask"], dtype=np.float32))
    if kind == "Mosaic":
        return Mosaic(d.get("pattern", "RGGB"))
    if kind == "Compose":
        return Compose(*(operator_from_dict(op) for op in d["ops"]))
    raise ValueError(f"unknown operator type {kind!r}")


def make_operator(task: str, *, kernel=None, boundary: str = "circular", scale=None,
                  sr_filter: str = "bicubic", mask=None, pattern: str = "RGGB") -> Operator:
    """Build the operator for a CLI task name.

    Parameters
    ----------
    task : {'denoise', 'deblur', 'sr', 'inpaint', 'demosaic'}
    kernel : array_like, optional
        Blur kernel (MATLAB orientation). Required for 'deblur'; for 'sr' it
        selects blur-then-point-decimation ``Compose(Blur(kernel, boundary),
        Downsample(scale, 'point'))`` (DAEP eq. 1, DMSP SR).
    boundary : {'circular', 'valid', 'zero'}
        Boundary of the blur.
    scale : int, optional
        SR factor, required for 'sr'.
    sr_filter : str
        Decimation filter of 'sr' without a kernel (see ``Downsample``).
    mask : array_like, optional
        Known-pixel mask, required for 'inpaint'.
    pattern : str
        Bayer pattern for 'demosaic'.
    """
    if task == "denoise":
        return Identity()
    if task == "deblur":
        if kernel is None:
            raise ValueError("task 'deblur' needs a blur kernel (kernel=...)")
        return Blur(kernel, boundary)
    if task == "sr":
        if scale is None:
            raise ValueError("task 'sr' needs a scale factor (scale=...)")
        if kernel is not None:
            return Compose(Blur(kernel, boundary), Downsample(scale, "point"))
        return Downsample(scale, sr_filter)
    if task == "inpaint":
        if mask is None:
            raise ValueError("task 'inpaint' needs a mask (mask=...)")
        return Mask(mask)
    if task == "demosaic":
        return Mosaic(pattern)
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
