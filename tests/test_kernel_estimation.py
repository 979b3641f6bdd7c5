"""Kernel estimation of the kernel-blind mode (methods/kernel_estimation.py)."""
import numpy as np
import pytest
import torch

from deepprior.methods import kernel_estimation as ke
from deepprior.methods import prior
from deepprior.operators import Blur

pytestmark = pytest.mark.usefixtures("one_thread")


def motion_kernel(n=9):
    """A bent motion trail (sums to 1)."""
    k = torch.zeros(n, n)
    for i in range(n):
        k[n // 2 + (i - n // 2) // 3, i] = 1.0
    k[n // 2 - 2:n // 2 + 1, n - 3] = 0.5
    return k / k.sum()


def shifted_error(k, k_true, r=2):
    """Relative L2 error, minimised over integer shifts ≤ r (the blind-deblurring ambiguity)."""
    return min(float((torch.roll(k, (a, b), (0, 1)) - k_true).norm() / k_true.norm())
               for a in range(-r, r + 1) for b in range(-r, r + 1))


def cartoon(size=96, seed=0):
    """Random overlapping rectangles: strong edges in every direction."""
    g = np.random.default_rng(seed)
    x = np.full((size, size), 0.5)
    for _ in range(24):
        i, j = g.integers(0, size - 8, 2)
        h, w = g.integers(6, size // 3, 2)
        x[i:i + h, j:j + w] = g.uniform(0, 1)
    return torch.tensor(x, dtype=torch.float64)


def circular_blur(x, k):
    return Blur(k, "circular").forward(x[None, None])[0, 0]


def test_transfer_function_is_the_blur_operators_circular_convolution():
    k = motion_kernel(7).double()
    x = torch.rand(20, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    fft = torch.fft.irfft2(torch.fft.rfft2(x) * Blur(k).transfer_function(20, 24), s=(20, 24))
    direct = Blur(k, "circular", method="direct").forward(x[None, None])[0, 0]
    torch.testing.assert_close(fft, direct, atol=1e-10, rtol=0)


def test_kernel_least_squares_recovers_the_kernel_from_the_sharp_image():
    x = cartoon()
    k_true = motion_kernel().double()
    y = circular_blur(x, k_true)
    k = ke.kernel_least_squares(x, y, (9, 9), gamma=1e-6, iters=2000)
    assert float(k.min()) >= 0
    assert float((k / k.sum() - k_true).norm() / k_true.norm()) < 0.05


def test_l0_deconvolution_sharpens():
    x = cartoon()
    k = motion_kernel().double()
    y = circular_blur(x, k)
    est = ke.l0_deconvolve(y, k, lam=1e-3)
    assert float((est - x).pow(2).mean()) < 0.25 * float((y - x).pow(2).mean())


def test_centre_kernel_moves_the_centre_of_mass_to_the_blur_centre():
    k = torch.zeros(9, 9, dtype=torch.float64)
    k[1, 1], k[1, 2] = 0.5, 0.5
    c = ke._centre_kernel(k)
    assert float(c.sum()) == pytest.approx(1.0)
    assert float(c[4, 4] + c[4, 5]) == pytest.approx(1.0) or float(c[4, 3] + c[4, 4]) == pytest.approx(1.0)


def test_centre_kernel_ignores_an_isolated_speck():
    """A stray speck (here at 8 % of the peak, far from the trail) must not shift the centring."""
    k = torch.zeros(15, 15, dtype=torch.float64)
    k[7, 2:9] = 1.0        # a 7-px horizontal trail, bounding box columns 2..8
    k[7, 14] = 0.08        # lone speck at the right edge
    c = ke._centre_kernel(k, ignore_specks=True)
    trail_cols = torch.nonzero(c[7] >= 0.5 * float(c.max())).reshape(-1)
    assert (int(trail_cols[0]), int(trail_cols[-1])) == (4, 10)  # centred: 4 + 10 = 14
    assert ke._main_support(k).sum() == 7


def test_estimate_kernel_from_a_blurred_noisy_image():
    x = cartoon(128)
    k_true = motion_kernel(11)
    y = Blur(k_true, "valid").forward(x[None, None].float())
    y = y + 0.01 * torch.randn(y.shape, generator=torch.Generator().manual_seed(0))
    k = ke.estimate_kernel(y, (11, 11))
    assert k.shape == (11, 11) and float(k.min()) >= 0 and float(k.sum()) == pytest.approx(1.0, abs=1e-5)
    baseline = min(shifted_error(prior.initial_kernel(11, "gaussian"), k_true),
                   shifted_error(prior.delta_kernel((11, 11)), k_true))
    err = shifted_error(k, k_true)
    assert err < 0.5 * baseline, (err, baseline)


def test_estimate_kernel_rejects_bad_input():
    with pytest.raises(ValueError, match="too small"):
        ke.estimate_kernel(torch.rand(1, 1, 20, 20), 15)
    with pytest.raises(ValueError, match="image"):
        ke.estimate_kernel(torch.rand(5), 3)
