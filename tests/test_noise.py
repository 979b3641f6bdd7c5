"""Tests for deepprior.noise: seeded unclipped AWGN, blind σ estimation, unit conversion."""
import numpy as np
import pytest
import torch

from deepprior.noise import add_gaussian_noise, estimate_noise_sigma, sigma_to_8bit, sigma_to_unit


def _smooth_image(h=256, w=256, channels=3):
    """Smooth synthetic colour image in [0.1, 0.9] (low-frequency sinusoids and a ramp)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h, dtype=torch.float64),
                            torch.linspace(0, 1, w, dtype=torch.float64), indexing="ij")
    chans = [0.5 + 0.2 * torch.sin(2 * torch.pi * (c + 1) * xx) * torch.cos(3 * torch.pi * yy)
             + 0.15 * (xx - yy) for c in range(channels)]
    return torch.stack(chans)[None]


def test_unit_conversion():
    assert sigma_to_unit(25) == pytest.approx(25 / 255)
    assert sigma_to_8bit(sigma_to_unit(15.0)) == pytest.approx(15.0)
    np.testing.assert_allclose(sigma_to_8bit(np.array([0.1, 0.2])), [25.5, 51.0])


def test_gaussian_noise_is_seeded_unclipped_and_has_sigma():
    x = torch.full((1, 3, 128, 128), 0.98)
    sigma = sigma_to_unit(50)
    y1 = add_gaussian_noise(x, sigma, torch.Generator().manual_seed(7))
    y2 = add_gaussian_noise(x, sigma, torch.Generator().manual_seed(7))
    assert torch.equal(y1, y2) and y1.dtype == x.dtype
    assert y1.max() > 1.0  # not clipped
    n = (y1 - x).double()
    assert abs(n.mean().item()) < 3 * sigma / 128  # zero mean (3 standard errors)
    assert n.std().item() == pytest.approx(sigma, rel=0.02)
    assert torch.equal(add_gaussian_noise(x, 0.0), x)


def test_gaussian_noise_numpy_in_numpy_out():
    x = np.zeros((8, 8), dtype=np.float32)
    y = add_gaussian_noise(x, 0.1, torch.Generator().manual_seed(0))
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.shape == x.shape


def test_gaussian_noise_rejects_8bit_sigma():
    with pytest.raises(ValueError, match=r"\[0, 1\] units"):
        add_gaussian_noise(torch.zeros(1, 1, 4, 4), 25)


@pytest.mark.parametrize("s8", [5, 15, 25, 50])
def test_estimate_noise_sigma_within_10_percent(s8):
    x = _smooth_image()
    sigma = sigma_to_unit(s8)
    y = add_gaussian_noise(x, sigma, torch.Generator().manual_seed(s8))
    est = estimate_noise_sigma(y)
    assert est.shape == (1,)
    assert est.item() == pytest.approx(sigma, rel=0.10)


def test_estimate_noise_sigma_numpy_layouts_and_batch():
    x = _smooth_image(64, 66)
    y = add_gaussian_noise(x, 0.1, torch.Generator().manual_seed(1))
    from_tensor = estimate_noise_sigma(y).item()
    hwc = y[0].permute(1, 2, 0).numpy()
    assert estimate_noise_sigma(hwc) == pytest.approx(from_tensor, rel=1e-12)
    gray = estimate_noise_sigma(hwc[..., 0])
    assert isinstance(gray, float) and gray == pytest.approx(0.1, rel=0.15)
    batch = torch.cat([y, x])  # second image noise-free → estimate near 0
    est = estimate_noise_sigma(batch)
    assert est.shape == (2,) and est[0].item() == pytest.approx(from_tensor) and est[1].item() < 0.005
    with pytest.raises(ValueError, match="N×C×H×W"):
        estimate_noise_sigma(torch.zeros(4, 4))
