"""Images, blur kernels and inpainting masks in and out.

Conventions
-----------
* In memory an image is float32, H×W×C, values in [0, 1], C = 1 (gray) or 3 (RGB).
  An alpha channel never enters restoration: :func:`read_image` returns it separately
  and :func:`write_image` re-attaches it.
* Integer files map linearly to [0, 1]: 8-bit by ``/255``, 16-bit by ``/65535``.
* Every file this module writes is written atomically: the bytes go to a temporary file
  in the destination directory, which then replaces the destination with ``os.replace``;
  after any failure the destination is unchanged and no temporary file remains.
* Kernels are kept in the orientation they are stored in (MATLAB orientation for the
  standard data sets); ``operators.Blur`` applies them by true convolution, not correlation.

Pillow truncates 16-bit colour PNGs to 8 bits, both ways, so those are encoded and decoded
here with ``zlib`` (PNG specification, ISO/IEC 15948, §§ 9, 11); everything else goes
through Pillow, and TIFF through tifffile.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageOps
import tifffile
import torch

__all__ = [
    "Image", "ImageError", "read_image", "write_image", "to_tensor", "to_numpy",
    "read_kernel", "read_mask", "write_json_atomic",
]

_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
            ".bmp": "BMP"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (gray, GA, RGB, RGBA)
_UMASK = os.umask(0)  # read once, at import, to give new files the usual permissions
os.umask(_UMASK)


class ImageError(ValueError):
    """An image, kernel or mask file that cannot be read or written; the message is one line."""


@dataclass
class Image:
    """A decoded image file.

    Attributes
    ----------
    pixels : np.ndarray
        float32, H×W×C, values in [0, 1]; C = 1 (gray, also for gray+alpha files) or 3.
    alpha : np.ndarray or None
        float32 H×W in [0, 1] when the file has an alpha channel, else None.
    bit_depth : int
        8 or 16: bits per sample in the file (16 for float TIFFs, the deepest depth
        :func:`write_image` stores), so that the image can be written back at its depth.
    path : pathlib.Path
        The file that was read.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int
    path: Path


# --------------------------------------------------------------------------- reading

def read_image(path) -> Image:
    """Read a PNG, JPEG, TIFF or BMP (or any other format Pillow opens) as floats in [0, 1].

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    Image
        8- and 16-bit samples are divided by 255 and 65535. Gray and gray+alpha files give
        one channel; palette files are expanded to RGB (RGBA when the palette has
        transparency); CMYK and YCbCr JPEGs are converted to RGB; the EXIF orientation
        tag is applied. Float TIFFs must be finite; values outside [0, 1] are clipped with
        a warning. Multi-page TIFFs give their first page.

    Raises
    ------
    ImageError
        Missing file, unreadable or corrupt file, unsupported sample type or channel count
        (only 1 to 4 channels), NaN or inf samples. The message names the path.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image file not found: {path}")
    try:
        data = path.read_bytes()
        if data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
            array = _decode_tiff(data)
        elif data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" and data[24] == 16 \
                and data[25] in (2, 4, 6):
            array = _decode_png16(data)
        else:
            array = _decode_pillow(data)
        samples, bit_depth = _to_unit_range(array, path)
        pixels, alpha = _split_alpha(samples)
    except Exception as exc:
        raise ImageError(f"cannot read image {path}: {_one_line(exc)}") from exc
    return Image(pixels, alpha, bit_depth, path)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _decode_pillow(data: bytes) -> np.ndarray:
    with PIL.Image.open(io.BytesIO(data)) as im:
        im.load()
        im = PIL.ImageOps.exif_transpose(im)
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
    elif im.mode == "1":
        im = im.convert("L")
    elif im.mode in ("La", "RGBa"):  # premultiplied alpha
        im = im.convert(im.mode.upper())
    elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    array = np.asarray(im)
    if im.mode == "I":  # 32-bit integer mode: older Pillow opens 16-bit gray PNGs this way
        if array.min() < 0 or array.max() > 65535:
            raise ValueError("32-bit integer samples are not supported")
        array = array.astype(np.uint16)
    return array


def _decode_tiff(data: bytes) -> np.ndarray:
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages[0]
        if page.photometric == tifffile.PHOTOMETRIC.PALETTE:
            return _decode_pillow(data)
        array = page.asarray()
        if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and array.ndim == 3:
            array = np.moveaxis(array, 0, -1)
    return array


def _to_unit_range(array: np.ndarray, path: Path) -> tuple[np.ndarray, int]:
    if array.dtype == np.uint8 or array.dtype == bool:
        return (array / np.float32(255 if array.dtype == np.uint8 else 1)).astype(np.float32), 8
    if array.dtype == np.uint16:
        return (array / np.float32(65535)).astype(np.float32), 16
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise ValueError("float samples contain NaN or inf")
        if array.min() < 0 or array.max() > 1:
            warnings.warn(f"{path}: float samples span [{array.min():.4g}, {array.max():.4g}]; "
                          "clipped to [0, 1]", stacklevel=3)
        return np.clip(array, 0, 1).astype(np.float32), 16
    raise ValueError(f"unsupported sample type {array.dtype}")


def _split_alpha(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    if samples.ndim == 2:
        samples = samples[:, :, None]
    if samples.ndim != 3:
        raise ValueError(f"unsupported array shape {samples.shape}")
    channels = samples.shape[2]
    if channels in (1, 3):
        return np.ascontiguousarray(samples), None
    if channels in (2, 4):  # gray+alpha, RGBA: alpha is the last channel
        return np.ascontiguousarray(samples[:, :, :-1]), np.ascontiguousarray(samples[:, :, -1])
    raise ValueError(f"unsupported channel count {channels} (expected 1 to 4)")


def _png_chunks(data: bytes):
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        yield kind, data[pos + 8:pos + 8 + length]
        pos += length + 12  # length, type, data, CRC


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _decode_png16(data: bytes) -> np.ndarray:
    """Decode a non-interlaced 16-bit PNG of any colour type to uint16 H×W×C."""
    chunks = list(_png_chunks(data))
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    if interlace:
        raise ValueError("interlaced 16-bit colour PNGs are not supported")
    channels = {v: k for k, v in _PNG_COLOUR_TYPE.items()}[colour_type]
    bpp, stride = 2 * channels, 2 * channels * width  # bytes per pixel, per row
    raw = np.frombuffer(zlib.decompress(b"".join(p for k, p in chunks if k == b"IDAT")), np.uint8)
    if raw.size != height * (stride + 1):
        raise ValueError("PNG image data is truncated")
    raw = raw.reshape(height, stride + 1)
    rows = np.zeros((height + 1, stride), np.uint8)  # row 0: the zero row above the image
    for y in range(height):
        kind, line, above = raw[y, 0], raw[y, 1:], rows[y]
        if kind == 0:
            rows[y + 1] = line
        elif kind == 1:  # Sub: running sum, per byte position of the pixel, modulo 256
            rows[y + 1] = np.cumsum(line.reshape(width, bpp), axis=0, dtype=np.uint8).ravel()
        elif kind == 2:  # Up
            rows[y + 1] = line + above
        elif kind in (3, 4):
            rows[y + 1] = _unfilter_average_paeth(kind, line, above, bpp)
        else:
            raise ValueError(f"invalid PNG filter type {kind}")
    return rows[1:].view(">u2").reshape(height, width, channels).astype(np.uint16)


def _unfilter_average_paeth(kind: int, line: np.ndarray, above: np.ndarray, bpp: int) -> np.ndarray:
    # Each byte depends on the byte just reconstructed to its left: a plain loop is clearest.
    cur, up = bytearray(line.tobytes()), above.tobytes()
    for i in range(len(cur)):
        left = cur[i - bpp] if i >= bpp else 0
        if kind == 3:
            predicted = (left + up[i]) >> 1
        else:
            corner = up[i - bpp] if i >= bpp else 0
            p = left + up[i] - corner
            pa, pb, pc = abs(p - left), abs(p - up[i]), abs(p - corner)
            predicted = left if pa <= pb and pa <= pc else (up[i] if pb <= pc else corner)
        cur[i] = (cur[i] + predicted) & 0xFF
    return np.frombuffer(bytes(cur), np.uint8)


# --------------------------------------------------------------------------- writing

def write_image(path, pixels, *, bit_depth: int = 8, alpha=None, overwrite_protect=None,
                jpeg_quality: int = 95) -> None:
    """Write an image atomically; the format follows the file extension.

    Parameters
    ----------
    path : str or path-like
        Destination: ``.png``, ``.jpg``/``.jpeg``, ``.tif``/``.tiff`` or ``.bmp``.
    pixels : array-like or torch.Tensor
        H×W or H×W×C with C = 1 or 3 (a tensor: 1×C×H×W or C×H×W), values in [0, 1].
        Values are clipped to [0, 1] and rounded half up to the nearest level,
        ``floor(x * (2**bit_depth - 1) + 0.5)``, as MATLAB's ``im2uint8`` does.
    bit_depth : {8, 16}
        Bits per sample; 16 only for PNG and TIFF.
    alpha : array-like, optional
        H×W in [0, 1], written as the last channel (not for JPEG or BMP).
    overwrite_protect : str or path-like, optional
        The input file: if ``path`` is that same file (also through a link), refuse.
    jpeg_quality : int
        JPEG quality, 1 to 100; chroma is not subsampled (4:4:4).

    Raises
    ------
    ImageError
        Unsupported extension, bit depth or shape, NaN samples, refusal to overwrite the
        input, or an OS error while writing (the destination is then left unchanged).
    """
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"cannot write {path}: unsupported extension {path.suffix!r} "
                         f"(use one of {', '.join(sorted(_FORMATS))})")
    if bit_depth not in (8, 16) or (bit_depth == 16 and fmt not in ("PNG", "TIFF")):
        raise ImageError(f"cannot write {path}: {bit_depth}-bit {fmt} is not supported "
                         "(8-bit everywhere, 16-bit for PNG and TIFF)")
    if alpha is not None and fmt in ("JPEG", "BMP"):
        raise ImageError(f"cannot write {path}: {fmt} has no alpha channel")
    if overwrite_protect is not None and path.exists() and Path(overwrite_protect).exists() \
            and os.path.samefile(path, overwrite_protect):
        raise ImageError(f"refusing to overwrite the input {overwrite_protect} with the output {path}")
    samples = _quantize(pixels, alpha, bit_depth, path)
    try:
        _atomic_write_bytes(path, _encode(samples, fmt, jpeg_quality))
    except OSError as exc:
        raise ImageError(f"cannot write {path}: {_one_line(exc)}") from exc


def _quantize(pixels, alpha, bit_depth: int, path: Path) -> np.ndarray:
    array = to_numpy(pixels) if isinstance(pixels, torch.Tensor) else np.asarray(pixels, np.float64)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise ImageError(f"cannot write {path}: pixels must be H×W, H×W×1 or H×W×3, got shape "
                         f"{array.shape} (pass alpha separately)")
    if alpha is not None:
        alpha = np.asarray(alpha, np.float64)
        if alpha.shape != array.shape[:2]:
            raise ImageError(f"cannot write {path}: alpha is {alpha.shape}, pixels are {array.shape}")
        array = np.concatenate([array, alpha[:, :, None]], axis=2)
    if np.isnan(array).any():
        raise ImageError(f"cannot write {path}: pixels contain NaN")
    levels = 2 ** bit_depth - 1
    return np.floor(np.clip(array.astype(np.float64), 0, 1) * levels + 0.5).astype(
        np.uint8 if bit_depth == 8 else np.uint16)


def _encode(samples: np.ndarray, fmt: str, jpeg_quality: int) -> bytes:
    channels = samples.shape[2]
    if fmt == "PNG" and samples.dtype == np.uint16:
        return _encode_png16(samples)
    buffer = io.BytesIO()
    if fmt == "TIFF":
        tifffile.imwrite(buffer, samples if channels > 1 else samples[:, :, 0],
                         photometric="rgb" if channels >= 3 else "minisblack",
                         extrasamples=["unassalpha"] if channels in (2, 4) else None,
                         compression="zlib")
    else:
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
        image = PIL.Image.fromarray(samples if channels > 1 else samples[:, :, 0], mode)
        options = {"quality": jpeg_quality, "subsampling": 0} if fmt == "JPEG" else {}
        image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _encode_png16(samples: np.ndarray) -> bytes:
    height, width, channels = samples.shape
    bpp = 2 * channels
    rows = samples.astype(">u2").view(np.uint8).reshape(height, width * bpp)
    filtered = rows.copy()
    filtered[:, bpp:] -= rows[:, :-bpp]  # Sub filter (type 1), modulo 256 by uint8 wrap-around
    raw = np.concatenate([np.ones((height, 1), np.uint8), filtered], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 16, _PNG_COLOUR_TYPE[channels], 0, 0, 0)
    return (_PNG_SIGNATURE + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + _png_chunk(b"IEND", b""))


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_UMASK
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json_atomic(path, obj) -> None:
    """Write ``obj`` as JSON (indent 2, trailing newline) atomically.

    NumPy scalars and arrays are converted to Python numbers and lists, paths to strings.
    Infinite and NaN floats are written as ``Infinity`` / ``NaN`` (Python's JSON dialect),
    e.g. the PSNR of a perfect reconstruction.
    """
    def default(value):
        if isinstance(value, (np.generic, np.ndarray)):
            return value.tolist()
        if isinstance(value, Path):
            return str(value)
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")

    _atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, default=default) + "\n").encode())


# --------------------------------------------------------------------------- tensors

def to_tensor(pixels) -> torch.Tensor:
    """H×W or H×W×C array -> new float32 tensor 1×C×H×W (no memory shared)."""
    array = np.asarray(pixels, np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"expected an H×W or H×W×C array, got shape {array.shape}")
    return torch.tensor(array.transpose(2, 0, 1))[None]


def to_numpy(t: torch.Tensor, dtype=np.float32) -> np.ndarray:
    """1×C×H×W or C×H×W tensor (any dtype or device) -> new array H×W×C of ``dtype``."""
    t = t.detach().to("cpu")
    if t.dtype not in (torch.float32, torch.float64):  # bf16 / fp16 / integers: NumPy-readable
        t = t.to(torch.float32)
    array = t.numpy()
    if array.ndim == 4:
        if array.shape[0] != 1:
            raise ValueError(f"expected a batch of one image, got shape {tuple(array.shape)}")
        array = array[0]
    if array.ndim != 3:
        raise ValueError(f"expected a 1×C×H×W or C×H×W tensor, got shape {tuple(array.shape)}")
    return array.transpose(1, 2, 0).astype(dtype)  # a copy, never a view of the tensor


# --------------------------------------------------------------------------- kernels, masks

def read_kernel(path, *, variable: str | None = None) -> np.ndarray:
    """Read a blur kernel, validated and normalised to sum 1.

    Parameters
    ----------
    path : str or path-like
        ``.npy``; ``.mat`` (the single 2-D numeric variable with more than one entry, or
        ``variable``); ``.txt`` / ``.csv`` (whitespace- or comma-separated rows); or a
        gray image (``.png``, ``.bmp``, ``.tif``, ...; RGB is averaged over channels).
    variable : str, optional
        Name of the variable to take from a ``.mat`` file.

    Returns
    -------
    np.ndarray
        float32, 2-D, non-negative, sum 1, in the orientation stored in the file (MATLAB
        orientation for the standard data sets: ``operators.Blur`` applies it by true
        convolution, so it is not flipped here).

    Raises
    ------
    ImageError
        Unreadable file, ambiguous ``.mat`` file, kernel not 2-D, empty, not finite, or
        with no positive mass.

    Warns
    -----
    UserWarning
        When entries are negative (how much mass), before they are clipped to 0.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"kernel file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            kernel = np.load(path, allow_pickle=False)
        elif suffix == ".mat":
            kernel = _kernel_from_mat(path, variable)
        elif suffix in (".txt", ".csv"):
            text = path.read_text()
            kernel = np.loadtxt(io.StringIO(text), delimiter="," if "," in text else None, ndmin=2)
        else:
            kernel = read_image(path).pixels.mean(axis=2)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"cannot read kernel {path}: {_one_line(exc)}") from exc
    return _validate_kernel(np.asarray(kernel), path)


def _kernel_from_mat(path: Path, variable: str | None) -> np.ndarray:
    import scipy.io

    contents = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    if variable is not None:
        if variable not in contents:
            raise ImageError(f"kernel {path} has no variable {variable!r} (has {', '.join(contents)})")
        return contents[variable]
    candidates = [k for k, v in contents.items() if isinstance(v, np.ndarray) and v.ndim == 2
                  and v.size > 1 and v.dtype.kind in "biuf"]
    if len(candidates) != 1:
        listing = ", ".join(f"{k} {getattr(v, 'shape', '')}" for k, v in contents.items()) or "none"
        raise ImageError(f"kernel {path}: expected exactly one 2-D numeric variable, found "
                         f"{len(candidates)} (variables: {listing}); pass variable=...")
    return contents[candidates[0]]


def _validate_kernel(kernel: np.ndarray, path: Path) -> np.ndarray:
    if kernel.dtype.kind not in "biuf":
        raise ImageError(f"kernel {path} is not numeric (dtype {kernel.dtype})")
    kernel = kernel.astype(np.float64)
    if kernel.ndim != 2 or kernel.size == 0:
        raise ImageError(f"kernel {path} must be a non-empty 2-D array, got shape {kernel.shape}")
    if not np.all(np.isfinite(kernel)):
        raise ImageError(f"kernel {path} contains NaN or inf")
    negative = -kernel[kernel < 0].sum()
    if negative > 0:
        warnings.warn(f"kernel {path}: negative entries sum to -{negative:.4g} "
                      f"({100 * negative / np.abs(kernel).sum():.2f}% of the absolute mass); "
                      "clipped to 0", stacklevel=3)
        kernel = np.clip(kernel, 0, None)
    total = kernel.sum()
    if not total > 0:
        raise ImageError(f"kernel {path} has no positive mass (sum {total:.4g})")
    return (kernel / total).astype(np.float32)


def read_mask(path, shape=None) -> np.ndarray:
    """Read an inpainting mask: float32 H×W of {0, 1}, 1 = known pixel.

    Any image file works: it is averaged over colour channels (alpha is ignored) and
    thresholded, ``gray >= 0.5`` -> 1.

    Parameters
    ----------
    path : str or path-like
    shape : tuple, optional
        Shape of the image the mask belongs to; its first two entries (H, W) must match.

    Raises
    ------
    ImageError
        Unreadable file or a size that does not match ``shape``.
    """
    mask = (read_image(path).pixels.mean(axis=2) >= 0.5).astype(np.float32)
    if shape is not None and mask.shape != tuple(shape[:2]):
        raise ImageError(f"mask {path} is {mask.shape[0]}x{mask.shape[1]} but the image is "
                         f"{shape[0]}x{shape[1]}")
    return mask
