"""Where the benchmark test sets live, and how their images and kernels are read.

The standard test sets (set5, set12, set14, levin, kernels/, ...) are read in place from a
*data root*, never copied into the project (DESIGN.md, "Data and benchmarks"). The data
root is found by :func:`data_root`:

1. the folder passed explicitly (``--data-root`` on the CLI);
2. ``../shared/data`` relative to the current working directory, if it exists;
3. ``../shared/data`` next to the repository this package is installed from
   (``src/deepprior/../../../shared/data``), if it exists;
4. ``$DEEPPRIOR_DATA``;
5. otherwise :class:`FileNotFoundError` saying how to set it.

Kernels are kept in the orientation they are stored in (MATLAB orientation for every
``.npy`` in the data root); ``operators.Blur`` applies them by true convolution.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..io import read_image

__all__ = ["data_root", "dataset_dir", "list_images", "load_image", "kernel_dir", "load_kernels",
           "IMAGE_SUFFIXES", "NON_BLUR_KERNEL_SETS"]

ENV_VAR = "DEEPPRIOR_DATA"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# Kernel sets that are not blur kernels (the bicubic downsampling kernels of USRNet/DPIR
# sum to ≈ 1 with negative lobes by design): loaded as stored, never renormalised.
NON_BLUR_KERNEL_SETS = frozenset({"bicubic_x234"})

# The repository's sibling data folder: src/deepprior/bench/data.py -> parents[4] is the
# folder that holds the repository. A module attribute so tests can point it elsewhere.
PACKAGE_DATA_ROOT = Path(__file__).resolve().parents[4] / "shared" / "data"


def data_root(explicit=None) -> Path:
    """The folder holding the benchmark test sets (see the module docstring for the rule).

    Parameters
    ----------
    explicit : str or path-like, optional
        Use this folder; it must exist.

    Returns
    -------
    pathlib.Path
        An existing directory (absolute).

    Raises
    ------
    FileNotFoundError
        ``explicit`` or ``$DEEPPRIOR_DATA`` names a missing folder, or no rule applies.
    """
    if explicit is not None:
        root = Path(explicit).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"data root {root} does not exist")
        return root.resolve()
    for candidate in (Path.cwd() / ".." / "shared" / "data", PACKAGE_DATA_ROOT):
        if candidate.is_dir():
            return candidate.resolve()
    env = os.environ.get(ENV_VAR)
    if env:
        root = Path(env).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"${ENV_VAR}={env} is not a directory")
        return root.resolve()
    raise FileNotFoundError(
        f"benchmark data not found: pass --data-root DIR (data_root=...) or set ${ENV_VAR} "
        f"to the folder holding set5/, set12/, levin/, kernels/ ... (default ../shared/data)")


def dataset_dir(name: str, root=None) -> Path:
    """``<data root>/<name>``, which must exist (e.g. ``'set12'``, ``'levin'``)."""
    folder = data_root(root) / name
    if not folder.is_dir():
        raise FileNotFoundError(f"test set {name!r} not found: {folder} does not exist")
    return folder


def list_images(folder) -> list[Path]:
    """Image files directly in ``folder`` (png/jpg/bmp/tif), sorted by name.

    Subfolders (e.g. ``levin/kernels``) and other files (``SOURCES.md``) are skipped.

    Raises
    ------
    FileNotFoundError
        The folder does not exist or holds no image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


# MATLAB rgb2gray weights (BT.601 luma without offset), as the gray test sets were made.
_GRAY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], np.float64)


def load_image(path, color: str) -> np.ndarray:
    """Read a clean test image as float32 H×W×C in [0, 1].

    Parameters
    ----------
    path : str or path-like
    color : {'gray', 'rgb', 'keep'}
        ``'gray'``: RGB files are converted with MATLAB ``rgb2gray`` weights
        (0.2989 R + 0.5870 G + 0.1140 B). ``'rgb'``: gray files are replicated to three
        channels. ``'keep'``: as stored.
    """
    pixels = read_image(path).pixels
    if color == "gray" and pixels.shape[2] == 3:
        pixels = (pixels.astype(np.float64) @ _GRAY_WEIGHTS)[:, :, None].astype(np.float32)
    elif color == "rgb" and pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    elif color not in ("gray", "rgb", "keep"):
        raise ValueError(f"color must be 'gray', 'rgb' or 'keep', got {color!r}")
    return np.clip(pixels, 0, 1)


def kernel_dir(name: str, root=None) -> Path:
    """Folder of kernel set ``name``: ``levin`` → ``levin/kernels``, else ``kernels/<name>``."""
    base = data_root(root)
    folder = base / "levin" / "kernels" if name == "levin" else base / "kernels" / name
    if not folder.is_dir():
        raise FileNotFoundError(f"kernel set {name!r} not found: {folder} does not exist")
    return folder


def load_kernels(name: str, root=None, normalize: bool | None = None) -> dict[str, np.ndarray]:
    """All ``.npy`` kernels of a set, ``{file stem: float64 array}`` in name order.

    Parameters
    ----------
    name : str
        ``'levin'`` (the 8 kernels in ``levin/kernels``), a folder of ``kernels/``
        (``'levin09'``, ``'kernels_12'``, ``'schelten_dmsp5'``, ``'lai2016'``,
        ``'bicubic_x234'``), or a set made in code (:data:`BUILTIN_KERNEL_SETS`, no files).
    root : path-like, optional
        Data root (default: :func:`data_root`).
    normalize : bool, optional
        Divide each kernel by its sum. Default: True for blur-kernel sets, False for
        :data:`NON_BLUR_KERNEL_SETS`. Negative entries are kept (never clipped): the
        bicubic kernels need their negative lobes.

    Notes
    -----
    Loaded with ``np.load`` as stored: MATLAB orientation, to be applied by true
    convolution (``operators.Blur``), not flipped.
    """
    if name in BUILTIN_KERNEL_SETS:
        return BUILTIN_KERNEL_SETS[name]()
    folder = kernel_dir(name, root)
    files = sorted(folder.glob("*.npy"))
    if not files:
        raise FileNotFoundError(f"kernel set {name!r}: no .npy kernels in {folder}")
    if normalize is None:
        normalize = name not in NON_BLUR_KERNEL_SETS
    kernels = {}
    for f in files:
        k = np.load(f, allow_pickle=False).astype(np.float64)
        if k.ndim != 2 or not np.all(np.isfinite(k)):
            raise ValueError(f"kernel {f} must be a finite 2-D array, got shape {k.shape}")
        if normalize:
            total = k.sum()
            if not total > 0:
                raise ValueError(f"kernel {f} sums to {total:.4g}; cannot normalise")
            k = k / total
        kernels[f.stem] = k
    return kernels


def _deepred_kernels() -> dict[str, np.ndarray]:
    """DeepRED §4.3 (after RED and NCSR): a 9×9 uniform blur and a 25×25 Gaussian of std 1.6."""
    r = np.arange(25, dtype=np.float64) - 12
    g = np.exp(-r ** 2 / (2 * 1.6 ** 2))
    gauss = np.outer(g, g)
    return {"uniform9": np.full((9, 9), 1 / 81), "gauss25_s1.6": gauss / gauss.sum()}


# kernel sets defined by a formula in a paper, made here rather than read from the data root
BUILTIN_KERNEL_SETS = {"deepred": _deepred_kernels}
