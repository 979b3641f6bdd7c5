import numpy as np
import pytest
import torch

from deepprior.metrics import psnr, rgb_to_y, ssim


def _image(shape=(32, 40, 3), seed=0):
    return np.random.default_rng(seed).random(shape)


def test_psnr_constant_offset_is_20_db():
    ref = np.full((8, 9), 0.4)
    assert psnr(ref + 0.1, ref) == pytest.approx(20.0, abs=1e-9)


def test_psnr_hand_computed_mse():
    x = np.array([[0.0, 0.5], [1.0, 0.25]])
    ref = np.array([[0.0, 0.0], [0.5, 0.25]])
    mse = (0 + 0.25 + 0.25 + 0) / 4  # 0.125
    assert psnr(x, ref) == pytest.approx(10 * np.log10(1 / mse), abs=1e-12)
    assert psnr(255 * x, 255 * ref, data_range=255) == pytest.approx(psnr(x, ref), abs=1e-9)


def test_psnr_identical_is_inf():
    x = _image()
    assert psnr(x, x) == float("inf")


def test_crop_excludes_the_border():
    ref = _image((20, 20, 1))
    x = ref.copy()
    x[:3], x[-3:], x[:, :3], x[:, -3:] = 0, 0, 0, 0  # error only in a 3-pixel border
    assert np.isfinite(psnr(x, ref, crop=2))
    assert psnr(x, ref, crop=3) == float("inf")
    assert ssim(x, ref, crop=3) == pytest.approx(1.0)


def test_rgb_to_y_primaries():
    for channel, weight in enumerate([65.481, 128.553, 24.966]):
        pure = np.zeros((2, 2, 3))
        pure[..., channel] = 1
        assert np.allclose(rgb_to_y(pure), (16 + weight) / 255)
    assert np.allclose(rgb_to_y(np.zeros((1, 1, 3))), 16 / 255)
    assert np.allclose(rgb_to_y(np.ones((1, 1, 3))), 235 / 255)


def test_y_channel_psnr_uses_luma_and_is_noop_for_gray():
    red, green = np.zeros((4, 4, 3)), np.zeros((4, 4, 3))
    red[..., 0], green[..., 1] = 1, 1
    expected = 10 * np.log10(1 / ((128.553 - 65.481) / 255) ** 2)
    assert psnr(red, green, y_channel=True) == pytest.approx(expected, abs=1e-9)
    gray, other = _image((16, 16)), _image((16, 16), seed=1)
    assert psnr(gray, other, y_channel=True) == psnr(gray, other)


def test_quantize_moves_values_by_less_than_half_a_level():
    ref = _image((16, 16))
    x = ref + 0.3 / 255
    # exact PSNR of the offset vs. quantised images whose per-pixel error is below 1/255
    assert psnr(x, ref) == pytest.approx(20 * np.log10(255 / 0.3), abs=1e-6)
    q_ref, q_x = (np.floor(np.clip(a, 0, 1) * 255 + 0.5) / 255 for a in (ref, x))
    assert np.max(np.abs(q_ref - ref)) <= 0.5 / 255 + 1e-12
    assert psnr(x, ref, quantize=True) == pytest.approx(psnr(q_x, q_ref), abs=1e-12)
    levels = (np.arange(256) / 255.0).reshape(16, 16)  # already quantised: unchanged
    assert psnr(levels + 0.2 / 255, levels, quantize=True) == float("inf")


def test_ssim_identical_is_one_and_decreases_with_noise():
    ref = _image()
    assert ssim(ref, ref) == pytest.approx(1.0, abs=1e-12)
    rng = np.random.default_rng(1)
    noise = rng.standard_normal(ref.shape)
    scores = [ssim(ref + s * noise, ref) for s in (0.01, 0.05, 0.1, 0.2)]
    assert all(a > b for a, b in zip(scores, scores[1:]))


def test_ssim_constant_shift_is_luminance_term():
    a, b = 0.6, 0.4
    c1 = 0.01 ** 2
    expected = (2 * a * b + c1) / (a ** 2 + b ** 2 + c1)  # no variance: contrast-structure term = 1
    assert ssim(np.full((15, 17), a), np.full((15, 17), b)) == pytest.approx(expected, abs=1e-9)


def test_ssim_on_11x11_is_one_window_computed_by_hand():
    # The 'valid' map of an 11x11 image has a single entry: one Gaussian-weighted window.
    a, b = _image((11, 11), seed=4), _image((11, 11), seed=5)
    g = np.exp(-np.arange(-5, 6) ** 2 / (2 * 1.5 ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    mu_a, mu_b = (w * a).sum(), (w * b).sum()
    var_a, var_b = (w * a * a).sum() - mu_a ** 2, (w * b * b).sum() - mu_b ** 2
    cov = (w * a * b).sum() - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    expected = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)
                / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)))
    assert ssim(a, b) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="11x11"):
        ssim(a[:10], b[:10])


def test_torch_and_numpy_agree():
    ref = _image((24, 20, 3))
    x = np.clip(ref + 0.05 * np.random.default_rng(3).standard_normal(ref.shape), 0, 1)
    t_x, t_ref = (torch.from_numpy(a.transpose(2, 0, 1).copy()) for a in (x, ref))
    for metric in (psnr, ssim):
        kwargs = dict(crop=2, y_channel=True)
        assert metric(t_x[None], t_ref[None], **kwargs) == pytest.approx(metric(x, ref, **kwargs), abs=1e-12)
        assert metric(t_x, ref, **kwargs) == pytest.approx(metric(x, ref, **kwargs), abs=1e-12)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="shape mismatch"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="crop"):
        psnr(np.zeros((4, 4)), np.zeros((4, 4)), crop=2)
