"""Tests for deepprior.operators: exact adjoints, conventions, shapes, serialisation, errors."""
import json

import numpy as np
import pytest
import scipy.signal
import torch

from deepprior.operators import (Blur, Compose, Downsample, Identity, Mask, Mosaic,
                                 downsample_factor, make_operator, operator_from_dict,
                                 operator_norm_sq)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _kernel(kh, kw, seed=1):
    return _rng(seed).random((kh, kw))  # asymmetric, not normalised


def _mask(shape, seed=2):
    return (_rng(seed).random(shape) > 0.4).astype(np.float32)


# (operator factory, image shape) pairs; factories so each test gets a fresh operator
GRAY_EVEN, GRAY_ODD, COLOR_EVEN, COLOR_ODD = (1, 1, 16, 12), (1, 1, 17, 15), (2, 3, 14, 18), (2, 3, 13, 11)
CASES = [("identity", lambda: Identity(), s) for s in (GRAY_ODD, COLOR_EVEN)]
for boundary in Blur.BOUNDARIES:
    for method in ("direct", "fft"):
        for ks in ((3, 3), (4, 4), (5, 2)):
            for s in (GRAY_EVEN, COLOR_ODD):
                CASES.append((f"blur-{boundary}-{method}-{ks}",
                              lambda b=boundary, m=method, ks=ks: Blur(_kernel(*ks), b, m), s))
for filt in Downsample.FILTERS:
    for f, shapes in ((2, ((1, 1, 16, 12), (2, 3, 10, 14))), (3, ((1, 1, 15, 21), (2, 3, 9, 12)))):
        for s in shapes:
            CASES.append((f"down-{filt}-{f}", lambda f=f, filt=filt: Downsample(f, filt), s))
CASES += [
    ("mask-2d", lambda: Mask(_mask((17, 15))), GRAY_ODD),
    ("mask-2d-color", lambda: Mask(_mask((14, 18))), COLOR_EVEN),
    ("mask-3d", lambda: Mask(_mask((3, 13, 11))), COLOR_ODD),
]
for pattern in Mosaic.PATTERNS:
    for s in ((1, 3, 8, 8), COLOR_ODD):
        CASES.append((f"mosaic-{pattern}", lambda p=pattern: Mosaic(p), s))
CASES += [
    ("blur+point", lambda: Compose(Blur(_kernel(4, 5), "circular"), Downsample(2, "point")), COLOR_EVEN),
    ("blurvalid+mask", lambda: Compose(Blur(_kernel(3, 3), "valid"), Mask(_mask((15, 13)))), GRAY_ODD),
    ("blurzero+bicubic", lambda: Compose(Blur(_kernel(5, 5), "zero", "fft"), Downsample(2)), COLOR_EVEN),
    ("blur+mosaic", lambda: Compose(Identity(), Blur(_kernel(3, 2)), Mosaic("GRBG")), COLOR_ODD),
]


@pytest.mark.parametrize("name,make,shape", CASES, ids=[c[0] + "-" + "x".join(map(str, c[2])) for c in CASES])
def test_adjoint_and_shapes(name, make, shape):
    op = make()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    ax = op(x)
    assert tuple(ax.shape) == op.output_shape(shape)
    assert op.input_shape(ax.shape) == tuple(shape)
    y = torch.rand(ax.shape, generator=g, dtype=torch.float64)
    aty = op.adjoint(y)
    assert aty.shape == x.shape
    lhs, rhs = (ax * y).sum().item(), (x * aty).sum().item()
    assert abs(lhs - rhs) <= 1e-5 * abs(lhs)
    torch.testing.assert_close(op.normal(x), op.adjoint(ax))
    assert op.initial_estimate(ax).shape == x.shape


# ------------------------------------------------------------------ Blur
@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("ks", [(5, 4), (4, 3), (3, 6)])
def test_blur_is_true_convolution_like_scipy(method, ks):
    img = _rng(3).random((21, 18))
    k = _kernel(*ks)
    x = torch.from_numpy(img)[None, None]
    out_valid = Blur(k, "valid", method)(x)[0, 0].numpy()
    out_zero = Blur(k, "zero", method)(x)[0, 0].numpy()
    np.testing.assert_allclose(out_valid, scipy.signal.convolve2d(img, k, mode="valid"), atol=1e-12)
    np.testing.assert_allclose(out_zero, scipy.signal.convolve2d(img, k, mode="same"), atol=1e-12)


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("ks", [(5, 4), (3, 3)])
def test_blur_circular_matches_wrapped_convolution(method, ks):
    img = _rng(4).random((16, 19))
    k = _kernel(*ks)
    kh, kw = ks
    sh, sw = (kh - 1) // 2, (kw - 1) // 2
    # reference: y[i, j] = Σ_ab k[a, b] x[(i + sh − a) mod H, (j + sw − b) mod W]
    ref = np.zeros_like(img)
    for a in range(kh):
        for b in range(kw):
            ref += k[a, b] * np.roll(img, (a - sh, b - sw), axis=(0, 1))
    out = Blur(k, "circular", method)(torch.from_numpy(img)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(out, ref, atol=1e-12)
    # interior agrees with zero padding (same alignment)
    same = scipy.signal.convolve2d(img, k, mode="same")
    np.testing.assert_allclose(out[kh:-kh, kw:-kw], same[kh:-kh, kw:-kw], atol=1e-12)


@pytest.mark.parametrize("boundary", Blur.BOUNDARIES)
def test_blur_fft_and_direct_agree_with_kernel_gradients(boundary):
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, 23, 20, generator=g, dtype=torch.float64)
    w = torch.rand(Blur(np.ones((7, 6)), boundary).output_shape(x.shape), generator=g, dtype=torch.float64)
    outs, grads = [], []
    for method in ("direct", "fft"):
        k = torch.from_numpy(_kernel(7, 6)).requires_grad_(True)
        op = Blur(k, boundary, method)
        assert op.kernel is k  # public attribute, kept as given, for kernel-blind methods
        out = op(x)
        (out * w).sum().backward()
        outs.append(out.detach())
        grads.append(k.grad)
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-11)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("boundary", Blur.BOUNDARIES)
def test_blur_fft_kernel_memo_follows_the_kernel(boundary):
    """The kernel FFT is computed once per size, and recomputed after an in-place kernel change."""
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 2, 30, 26, generator=g, dtype=torch.float64)
    k = torch.from_numpy(_kernel(7, 5))
    op = Blur(k, boundary, "fft")
    first, again = op(x), op(x)
    y = torch.rand(op.output_shape(x.shape), generator=g, dtype=torch.float64)
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    torch.testing.assert_close(op.adjoint(y), Blur(k.clone(), boundary, "direct").adjoint(y), rtol=0, atol=1e-11)
    k.mul_(0.5)  # the operator's kernel changed in place
    torch.testing.assert_close(op(x), Blur(k.clone(), boundary, "direct")(x), rtol=0, atol=1e-11)
    torch.testing.assert_close(op(x), 0.5 * first, rtol=0, atol=1e-11)


def test_blur_auto_method_and_float32():
    assert not Blur(np.ones((15, 15)))._use_fft()
    assert Blur(np.ones((17, 15)))._use_fft()
    k = _kernel(19, 19).astype(np.float32)
    x = torch.rand(1, 3, 40, 36, generator=torch.Generator().manual_seed(0))
    out = Blur(k, "circular")(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, Blur(k, "circular", "direct")(x), rtol=1e-4, atol=1e-4)


def test_blur_initial_estimate():
    k = _kernel(5, 4)
    x = torch.rand(1, 1, 12, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = Blur(k, "circular")(x)
    assert torch.equal(Blur(k, "circular").initial_estimate(y), y)
    yv = Blur(k, "valid")(x)
    est = Blur(k, "valid").initial_estimate(yv)
    assert est.shape == x.shape
    # y sits where 'same' alignment puts it: rows kh−1−(kh−1)//2 = 2 on, cols kw−1−(kw−1)//2 = 2 on
    assert torch.equal(est[..., 2:2 + 8, 2:2 + 7], yv)
    assert torch.equal(est[..., 0, 2:9], yv[..., 0, :])  # edge replication


# ------------------------------------------------------------ Downsample
@pytest.mark.parametrize("filt", Downsample.FILTERS)
@pytest.mark.parametrize("f", [2, 3, 4])
def test_downsample_rows_sum_to_one_and_constant_preserved(filt, f):
    op = Downsample(f, filt)
    r = op.matrix(24)
    assert r.shape == (24 // f, 24)
    torch.testing.assert_close(r.sum(dim=1), torch.ones(24 // f, dtype=torch.float64))
    x = torch.full((1, 3, 24, 36), 0.37, dtype=torch.float64)
    torch.testing.assert_close(op(x), torch.full((1, 3, 24 // f, 36 // f), 0.37, dtype=torch.float64))


def test_bicubic_factor2_hand_computed_weights():
    # imresize(·, 1/2): h(t) = cubic(t/2)/2, output i (1-based) at u = 2i − 0.5, taps at
    # distances ±0.5, ±1.5, ±2.5, ±3.5 → cubic(0.25, 0.75, 1.25, 1.75)/2 (Keys, a = −0.5).
    half = np.array([0.8671875, 0.2265625, -0.0703125, -0.0234375]) / 2
    expected = np.concatenate([half[::-1], half])
    r = Downsample(2, "bicubic").matrix(32).numpy()
    i = 6  # interior output row (0-based) covers input columns 2i − 3 … 2i + 4
    np.testing.assert_allclose(r[i, 2 * i - 3:2 * i + 5], expected, atol=1e-15)
    assert np.count_nonzero(r[i]) == 8
    # symmetric boundary: output 1 (1-based) has u = 1.5 and taps at 1-based j = −2 … 5;
    # imresize mirrors j ≤ 0 onto 1 − j, so j = 0, −1, −2 add onto j = 1, 2, 3
    e = expected
    np.testing.assert_allclose(r[0, :6], [e[3] + e[2], e[4] + e[1], e[5] + e[0], e[6], e[7], 0.0],
                               atol=1e-15)


@pytest.mark.parametrize("filt", ["bicubic", "lanczos2", "box"])
def test_symmetric_filters_map_a_ramp_to_block_centres(filt):
    # symmetric kernels centred at u = 2i − 0.5 reproduce a linear ramp: interior output
    # o (0-based) of x[j] = j is the block centre 2o + 0.5
    x = torch.arange(40, dtype=torch.float64).view(1, 1, 1, 40).expand(1, 1, 4, 40)
    y = Downsample(2, filt)(x)[0, 0, 0]
    o = torch.arange(20, dtype=torch.float64)
    torch.testing.assert_close(y[3:-3], (2 * o + 0.5)[3:-3], rtol=0, atol=1e-12)


def test_point_and_box_definitions():
    x = torch.rand(2, 3, 12, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(Downsample(3, "point")(x), x[..., ::3, ::3])  # DAEP eq. 1, offset 0
    torch.testing.assert_close(Downsample(3, "box")(x), torch.nn.functional.avg_pool2d(x, 3))


def test_bicubic_loosely_matches_pil_interior():
    from PIL import Image
    from scipy.ndimage import gaussian_filter
    img = gaussian_filter(_rng(6).random((48, 40)), 2).astype(np.float32)
    ours = Downsample(2, "bicubic")(torch.from_numpy(img)[None, None])[0, 0].numpy()
    pil = np.asarray(Image.fromarray(img, mode="F").resize((20, 24), Image.BICUBIC))
    np.testing.assert_allclose(ours[4:-4, 4:-4], pil[4:-4, 4:-4], atol=1e-4)


def test_downsample_initial_estimate_range():
    y = torch.rand(1, 3, 8, 6, generator=torch.Generator().manual_seed(0))
    est = Downsample(4).initial_estimate(y)
    assert est.shape == (1, 3, 32, 24) and est.min() >= 0 and est.max() <= 1


# ---------------------------------------------------------- Mask / Mosaic
def test_mask_initial_estimate_fills_with_known_mean():
    m = _mask((10, 12))
    x = torch.rand(2, 3, 10, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    op = Mask(m)
    y = op(x)
    est = op.initial_estimate(y)
    known = torch.from_numpy(m).bool()
    assert torch.equal(est[..., known], x[..., known])
    means = x[..., known].mean(dim=-1)  # N×C
    torch.testing.assert_close(est[..., ~known], means[..., None].expand(-1, -1, int((~known).sum())))


@pytest.mark.parametrize("pattern", Mosaic.PATTERNS)
def test_mosaic_samples_and_bilinear_estimate(pattern):
    x = torch.rand(1, 3, 7, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = Mosaic(pattern)(x)
    colour = {ch: "RGB".index(ch) for ch in "RGB"}
    for (di, dj), ch in zip([(0, 0), (0, 1), (1, 0), (1, 1)], pattern):
        assert torch.equal(y[0, 0, di::2, dj::2], x[0, colour[ch], di::2, dj::2])
    # a flat colour is demosaicked exactly (normalised convolution), borders included
    flat = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64).view(1, 3, 1, 1).expand(1, 3, 7, 9)
    torch.testing.assert_close(Mosaic(pattern).initial_estimate(Mosaic(pattern)(flat)), flat)


def test_compose_task_and_order():
    k = _kernel(3, 3)
    op = Compose(Blur(k, "circular"), Downsample(2, "point"))
    assert op.task == "sr" and Compose(Identity()).task == "denoise"
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(op(x), Blur(k)(x)[..., ::2, ::2])
    assert op.initial_estimate(op(x)).shape == x.shape


# --------------------------------------------------------- serialisation
ROUND_TRIP = [Identity(), Blur(_kernel(4, 5), "valid"), Blur(_kernel(3, 3).astype(np.float32), "zero"),
              Downsample(3, "lanczos2"), Mask(_mask((3, 12, 9))), Mosaic("gbrg"),
              Compose(Blur(_kernel(3, 2)), Downsample(3, "point"), Identity())]


@pytest.mark.parametrize("op", ROUND_TRIP, ids=lambda op: type(op).__name__)
def test_to_dict_round_trip(op):
    d = json.loads(json.dumps(op.to_dict()))
    op2 = operator_from_dict(d)
    assert type(op2) is type(op) and op2.to_dict() == op.to_dict() and op2.task == op.task
    shape = (2, 3, 12, 9)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(op(x), op2(x))
    assert torch.equal(op.adjoint(op(x)), op2.adjoint(op2(x)))
    assert op.to("cpu")(x).equal(op(x))


# ----------------------------------------------------------------- errors
@pytest.mark.parametrize("op,shape,message", [
    (Blur(np.ones((31, 31))), (1, 1, 20, 20), "kernel 31×31 is larger than the image 20×20"),
    (Mask(np.ones((100, 120))), (1, 3, 100, 100), "mask is 100×120 but the image is 100×100"),
    (Mask(np.ones((3, 10, 10))), (1, 1, 10, 10), "mask has 3 channels but the image has 1"),
    (Downsample(3), (1, 3, 256, 250), "scale 3 does not divide image size 256×250"),
    (Mosaic(), (1, 1, 8, 8), "RGB image"),
    (Identity(), (8, 8), "N×C×H×W"),
])
def test_clear_shape_errors(op, shape, message):
    with pytest.raises(ValueError, match=message):
        op.validate_input_shape(shape)
    if len(shape) == 4:
        with pytest.raises(ValueError, match=message):
            op(torch.zeros(shape))


def test_clear_construction_errors():
    with pytest.raises(ValueError, match="NaN"):
        Blur(np.array([[0.5, np.nan], [0.2, 0.3]]))
    with pytest.raises(ValueError, match="2-D"):
        Blur(np.ones(5))
    with pytest.raises(ValueError, match="boundary"):
        Blur(np.ones((3, 3)), "reflect")
    with pytest.raises(ValueError, match="pattern"):
        Mosaic("RGBG")
    with pytest.raises(ValueError, match="filter"):
        Downsample(2, "gaussian")
    with pytest.raises(ValueError, match="0 .missing. or 1"):
        Mask(np.full((4, 4), 0.5))
    with pytest.raises(ValueError, match="unknown operator type"):
        operator_from_dict({"type": "Warp"})


def test_make_operator():
    k = _kernel(3, 3)
    assert isinstance(make_operator("denoise"), Identity)
    assert make_operator("deblur", kernel=k, boundary="valid").boundary == "valid"
    sr = make_operator("sr", scale=2, kernel=k)
    assert isinstance(sr, Compose) and sr.task == "sr" and sr.ops[1].filter == "point"
    assert make_operator("sr", scale=4, sr_filter="lanczos2").to_dict() == Downsample(4, "lanczos2").to_dict()
    assert make_operator("inpaint", mask=_mask((4, 4))).task == "inpaint"
    assert make_operator("demosaic", pattern="BGGR").pattern == "BGGR"
    for task, missing in [("deblur", "kernel"), ("sr", "scale"), ("inpaint", "mask"), ("warp", "unknown task")]:
        with pytest.raises(ValueError, match=missing):
            make_operator(task)


def test_operator_norm_sq_by_power_iteration():
    g = torch.Generator().manual_seed(0)
    k = torch.rand(5, 5, generator=g)
    op = Blur(k / k.sum(), "circular")  # non-negative, sums to 1: the DC gain 1 is the largest
    assert operator_norm_sq(op, (1, 1, 16, 16), g) == pytest.approx(1.0, rel=1e-3)
    mask = Mask((torch.rand(8, 8, generator=g) > 0.5).float())
    assert operator_norm_sq(mask, (1, 1, 8, 8), g) == pytest.approx(1.0, rel=1e-6)


def test_downsample_factor():
    assert downsample_factor(Downsample(4)) == 4
    assert downsample_factor(Compose(Blur(torch.ones(3, 3) / 9), Downsample(3))) == 3
    assert downsample_factor(Identity()) is None
