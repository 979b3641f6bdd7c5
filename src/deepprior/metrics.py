"""PSNR and SSIM with the evaluation conventions of the papers' tables.

The papers evaluate in MATLAB, and their tables differ in three choices, each a keyword here:

* ``crop``: pixels removed from every border before comparing (super-resolution tables crop
  by the scale factor, deblurring tables often by the kernel radius);
* ``y_channel``: compare only the BT.601 luma of ``rgb2ycbcr`` (super-resolution tables);
* ``quantize``: round both images to 8-bit levels first, as when the result is saved to a
  PNG and evaluated from the file.

They are applied in that order of data flow: quantise, then convert to Y, then crop.
Inputs are NumPy arrays H×W or H×W×C, or tensors C×H×W or 1×C×H×W; values are in
[0, ``data_range``]. Everything is computed in float64.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["rgb_to_y", "psnr", "ssim"]

# BT.601 luma as MATLAB's rgb2ycbcr, for R, G, B in [0, 1]: Y = 16/255 + (65.481 R + 128.553 G
# + 24.966 B) / 255, so Y spans [16/255, 235/255].
_Y_OFFSET = 16.0 / 255.0
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0


def rgb_to_y(x: np.ndarray) -> np.ndarray:
    """BT.601 luma of an RGB image in [0, 1], exactly as MATLAB ``rgb2ycbcr`` on double input.

    Parameters
    ----------
    x : np.ndarray
        H×W×3, values in [0, 1].

    Returns
    -------
    np.ndarray
        H×W×1 float64, ``Y = 16/255 + (65.481 R + 128.553 G + 24.966 B) / 255``, in
        [16/255, 235/255] (not rescaled to [0, 1]).
    """
    x = np.asarray(x, np.float64)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"rgb_to_y expects an H×W×3 array, got shape {x.shape}")
    return (_Y_OFFSET + x @ _Y_WEIGHTS)[:, :, None]


def _as_hwc(x) -> np.ndarray:
    """NumPy H×W(×C) or torch (1×)C×H×W -> float64 NumPy H×W×C."""
    if type(x).__module__.startswith("torch"):
        from .io import to_numpy  # imported here: this module does not need torch otherwise

        return to_numpy(x, np.float64)
    x = np.asarray(x, np.float64)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise ValueError(f"expected an H×W or H×W×C array, got shape {x.shape}")
    return x


def _prepare(x, ref, crop: int, y_channel: bool, quantize: bool, data_range: float):
    x, ref = _as_hwc(x), _as_hwc(ref)
    if x.shape != ref.shape:
        raise ValueError(f"shape mismatch: image is {x.shape} (H×W×C) but reference is {ref.shape}")
    if crop < 0 or 2 * crop >= min(x.shape[:2]):
        raise ValueError(f"crop={crop} leaves nothing of a {x.shape[0]}x{x.shape[1]} image")
    images = []
    for image in (x, ref):
        if quantize:  # 8-bit levels, rounding half up as MATLAB's im2uint8
            image = np.floor(np.clip(image / data_range, 0, 1) * 255 + 0.5) / 255 * data_range
        if y_channel and image.shape[2] == 3:
            image = rgb_to_y(image / data_range) * data_range
        images.append(image[crop:image.shape[0] - crop, crop:image.shape[1] - crop])
    return images


def psnr(x, ref, *, crop: int = 0, y_channel: bool = False, quantize: bool = False,
         data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range**2 / MSE)``.

    Parameters
    ----------
    x, ref : np.ndarray or torch.Tensor
        Estimate and reference, same shape; NumPy H×W(×C), torch C×H×W or 1×C×H×W.
    crop : int
        Pixels removed from each border before comparing.
    y_channel : bool
        Compare the BT.601 luma (:func:`rgb_to_y`) of RGB images; no-op for gray.
    quantize : bool
        Round both to 8-bit levels first, ``floor(clip(x, 0, 1) * 255 + 0.5) / 255``
        (in units of ``data_range``).
    data_range : float
        Peak value: 1.0 for [0, 1] images, 255 for 8-bit units.

    Returns
    -------
    float
        PSNR in dB, averaged MSE over all pixels and channels; ``inf`` for identical images.
    """
    x, ref = _prepare(x, ref, crop, y_channel, quantize, data_range)
    mse = np.mean((x - ref) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(data_range ** 2 / mse))


def _gaussian_window_1d(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    # fspecial('gaussian', 11, 1.5) is the outer product of this normalised 1-D window.
    offsets = np.arange(size) - (size - 1) / 2
    window = np.exp(-offsets ** 2 / (2 * sigma ** 2))
    return window / window.sum()


def _filter_valid(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """2-D separable filtering keeping only the 'valid' region (no padded pixel contributes)."""
    out = ndimage.correlate1d(image, window, axis=0, mode="constant")
    out = ndimage.correlate1d(out, window, axis=1, mode="constant")
    r = len(window) // 2
    return out[r:out.shape[0] - r, r:out.shape[1] - r]


def ssim(x, ref, *, crop: int = 0, y_channel: bool = False, quantize: bool = False,
         data_range: float = 1.0) -> float:
    """Structural similarity index (Wang et al. 2004), as the authors' ``ssim_index.m``.

    Local statistics use an 11×11 Gaussian window with σ = 1.5 (``fspecial``), constants
    ``C1 = (0.01 L)**2`` and ``C2 = (0.03 L)**2`` with ``L = data_range``. The SSIM map is
    computed on the 'valid' region only (no padding; the map is 10 pixels smaller in each
    dimension) and averaged; multi-channel images average the per-channel means. No
    automatic downsampling (that belongs to the later ``ssim.m``).

    Parameters
    ----------
    x, ref, crop, y_channel, quantize, data_range
        As in :func:`psnr`. After cropping the image must be at least 11×11.

    Returns
    -------
    float
        Mean SSIM, 1.0 for identical images.

    References
    ----------
    Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality assessment: from
    error visibility to structural similarity", IEEE TIP 13(4), 2004, eq. (13).
    """
    x, ref = _prepare(x, ref, crop, y_channel, quantize, data_range)
    if min(x.shape[:2]) < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels, got {x.shape[0]}x{x.shape[1]}")
    window = _gaussian_window_1d()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    means = []
    for a, b in zip(np.moveaxis(x, 2, 0), np.moveaxis(ref, 2, 0)):
        mu_a, mu_b = _filter_valid(a, window), _filter_valid(b, window)
        var_a = _filter_valid(a * a, window) - mu_a ** 2
        var_b = _filter_valid(b * b, window) - mu_b ** 2
        cov = _filter_valid(a * b, window) - mu_a * mu_b
        ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)
                    / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)))
        means.append(ssim_map.mean())
    return float(np.mean(means))
