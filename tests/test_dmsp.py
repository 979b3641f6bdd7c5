"""DMSP (deep mean-shift priors): data-term and kernel gradients, the mean-shift prior gradient,
the noise-adaptive λ, kernel projection and kernel-blind recovery, the method contract.

Everything runs on a tiny randomly initialised DAE or an oracle denoiser, except the tests marked
``shipped weights``, which skip until ``src/deepprior/weights/dae_color.safetensors`` exists.
"""
import math

import numpy as np
import pytest
import torch
from skimage import data

from deepprior.compute import get_compute
from deepprior.denoisers import dihedral, dihedral_inverse
from deepprior.methods import METHODS, get_method
from deepprior.methods import dmsp as dmsp_mod
from deepprior.methods import prior
from deepprior.nets.dae import default_weights_path
from deepprior.operators import Blur, Compose, Downsample, Identity, Mask, Mosaic
from helpers import psnr, tiny_dae

pytestmark = pytest.mark.usefixtures("one_thread")


SHIPPED_COLOR = default_weights_path(3)
needs_weights = pytest.mark.skipif(not SHIPPED_COLOR.exists(),
                                   reason="shipped weights: dae_color.safetensors not trained yet")


def motion_kernel():
    """A 9×9 bent motion-blur kernel (sums to 1)."""
    k = torch.zeros(9, 9)
    for i in range(9):
        k[4 + (i - 4) // 3, i] = 1.0
    k[2:5, 6] = 0.5
    return k / k.sum()


class Oracle:
    """A perfect denoiser for one image: r(x) = x_true. It isolates the solver from the prior.
    It ignores its input, so it is not equivariant: use it with ``symmetrize=False``."""

    channels, sigma_range, conditional, name = None, (0.0, 1.0), True, "oracle"

    def __init__(self, truth):
        self.truth = truth

    def __call__(self, x, sigma):
        return self.truth.expand_as(x)


# --------------------------------------------------------------------------- data term

OPERATORS = {
    "blur-valid": lambda: Blur(torch.rand(5, 4, dtype=torch.float64), "valid"),
    "blur-circular": lambda: Blur(torch.rand(3, 3, dtype=torch.float64), "circular"),
    "blur-zero": lambda: Blur(torch.rand(3, 5, dtype=torch.float64), "zero"),
    "downsample-bicubic": lambda: Downsample(2, "bicubic"),
    "mask": lambda: Mask((torch.rand(12, 12, generator=torch.Generator().manual_seed(3)) > 0.5).float()),
    "mosaic": lambda: Mosaic("RGGB"),
    "blur+point": lambda: Compose(Blur(torch.rand(3, 3, dtype=torch.float64), "circular"),
                                  Downsample(3, "point")),
}


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_data_gradient_matches_finite_differences(name):
    op = OPERATORS[name]()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 12, 12, generator=g, dtype=torch.float64)
    y = torch.rand(op.output_shape(x.shape), generator=g, dtype=torch.float64)
    c = prior.sampling_scale(op)
    grad = prior.data_gradient(op, op.forward(x) - y, c)

    def f(z):
        return c * 0.5 * float((op.forward(z) - y).pow(2).sum())

    idx = torch.randint(0, x.numel(), (12,), generator=g)
    h = 1e-6
    for i in idx.tolist():
        e = torch.zeros_like(x).view(-1)
        e[i] = h
        fd = (f(x + e.view_as(x)) - f(x - e.view_as(x))) / (2 * h)
        assert abs(fd - float(grad.reshape(-1)[i])) < 1e-6 * max(1.0, abs(fd))


def test_sampling_scale_follows_the_reference_codes():
    assert prior.sampling_scale(Blur(torch.ones(3, 3) / 9, "valid")) == 1.0
    assert prior.sampling_scale(Downsample(3)) == 9.0  # DMSP-TF2 mask.size/mask.sum(), DAEPSR.m
    assert prior.sampling_scale(Mask(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))) == 4.0
    assert prior.sampling_scale(Mosaic()) == 1.0  # DMSPDemosaic.m: exact adjoint, unscaled


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_noise_trace_is_trace_of_a_at(name):
    """tr(AAᵀ) = Σ_j ‖A e_j‖², checked by brute force over the basis."""
    op = OPERATORS[name]()
    shape = (1, 3, 12, 12)
    eye = torch.eye(math.prod(shape), dtype=torch.float64).view(-1, *shape[1:])
    brute = float(op.forward(eye).pow(2).sum())
    est = prior.noise_trace(op, shape, "cpu", probes=400)
    tol = 0.1 if name == "blur+point" else 1e-6  # Hutchinson for compositions
    assert abs(est - brute) <= tol * brute


# --------------------------------------------------------------------------- prior gradient, λ


def test_mean_shift_gradient_is_the_noisy_dae_residual(gray64):
    net = prior.load_prior_network(method="dmsp", channels=1, compute=get_compute("cpu", "fp32"), dae=tiny_dae())
    s = 11 / 255
    g = dmsp_mod.mean_shift_gradient(net, gray64, s, prior.PriorNoise(s, torch.Generator().manual_seed(7), "cpu"))
    eta = s * torch.randn(gray64.shape, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = gray64 - net(gray64 + eta, s)
    torch.testing.assert_close(g, expected)
    assert not g.requires_grad


def test_noise_adaptive_lambda_by_hand():
    """Identity on 2×2: y = 0, x = diag(0.1, 0, 0, 0.2) → ‖r‖² = 0.05, N = M = 4, tr = 4."""
    op, s1 = Identity(), 11 / 255
    x = torch.tensor([[[[0.1, 0.0], [0.0, 0.2]]]])
    y = torch.zeros_like(x)
    sigma2 = 2 * s1 ** 2
    expected = 4 / (0.05 + sigma2 * 4)
    lam = dmsp_mod.noise_adaptive_lambda(float((x - y).pow(2).sum()), prior.measurement_count(op, y),
                                         sigma2, prior.noise_trace(op, x.shape, "cpu"))
    assert lam == pytest.approx(expected, rel=1e-6)
    # 1/λ is eq. 21's σ_n² estimate: for a residual of pure noise and no smoothing it is the noise variance
    r = 0.05 * torch.randn(1, 1, 200, 200, generator=torch.Generator().manual_seed(0))
    lam0 = dmsp_mod.noise_adaptive_lambda(float(r.pow(2).sum()), r.numel(), 0.0, 0.0)
    assert math.sqrt(1 / lam0) == pytest.approx(0.05, rel=0.01)


def test_noise_adaptive_lambda_in_the_loop(gray64):
    """The first NA iteration's λ is eq. 22 with M‖k‖² for a 'valid' blur and x₀ = padded y."""
    k = torch.ones(5, 5) / 25
    op = Blur(k, "valid")
    y = op.forward(gray64)
    res = dmsp_mod.dmsp(y, op, sigma=None, iters=1, dae=tiny_dae(), device="cpu", precision="fp32")
    x0 = op.initial_estimate(y)
    s1 = res.settings["sigma_dae"]
    res_sq = float((op.forward(x0) - y).pow(2).sum())
    expected = y.numel() / (res_sq + 2 * s1 ** 2 * y.numel() * float(k.pow(2).sum()))
    assert res.settings["mode"] == "NA"
    assert res.history[0]["lambda"] == pytest.approx(expected, rel=1e-5)


# --------------------------------------------------------------------------- kernels


def test_kernel_projection():
    k = torch.tensor([[0.5, -0.2, 0.1], [0.0, 2.0, -1.0], [0.3, 0.0, 0.1]])
    p = prior.project_kernel(k)
    assert float(p.min()) >= 0 and float(p.sum()) == pytest.approx(1.0)
    torch.testing.assert_close(prior.project_kernel(p), p)          # idempotent
    torch.testing.assert_close(p, k.clamp(min=0) / k.clamp(min=0).sum())
    d = prior.project_kernel(-torch.ones(3, 3))                     # nothing positive: the delta
    assert float(d[1, 1]) == 1.0 and float(d.sum()) == 1.0
    for kind in ("gaussian", "delta"):
        k0 = prior.initial_kernel(9, kind)
        torch.testing.assert_close(prior.project_kernel(k0), k0)
        assert int(k0.argmax()) == 4 * 9 + 4  # centred where Blur centres


@pytest.mark.parametrize("boundary", ["valid", "circular", "zero"])
def test_kernel_gradient_matches_finite_differences(boundary):
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 2, 14, 13, generator=g, dtype=torch.float64)
    k = torch.rand(5, 3, generator=g, dtype=torch.float64)
    k = k / k.sum()
    blur = Blur(k, boundary)
    y = torch.rand(blur.output_shape(x.shape), generator=g, dtype=torch.float64)
    sigma2 = 0.01
    grad, r = prior.blur_objective_gradient(blur, k, x, y, sigma2)
    torch.testing.assert_close(r, blur.forward(x) - y)

    def f(kk):
        b = Blur(kk, boundary)
        return 0.5 * float((b.forward(x) - y).pow(2).sum()) + 0.5 * sigma2 * float(
            prior.kernel_noise_trace(b, kk, x.shape))

    h = 1e-6
    for i in range(k.numel()):
        e = torch.zeros_like(k).view(-1)
        e[i] = h
        fd = (f(k + e.view_as(k)) - f(k - e.view_as(k))) / (2 * h)
        assert abs(fd - float(grad.reshape(-1)[i])) < 1e-6 * max(1.0, abs(fd))
    if boundary != "zero":  # Table 1 KE step 4: xᵀ(Kx − y) + Mσ²k
        m = math.prod(blur.output_shape(x.shape))
        k2 = k.detach().clone().requires_grad_(True)
        rr = (Blur(k2, boundary).forward(x) - y)
        (xtr,) = torch.autograd.grad(0.5 * rr.pow(2).sum(), k2)
        torch.testing.assert_close(grad, xtr + m * sigma2 * k)


def test_kernel_blind_recovers_the_kernel_with_an_oracle_prior(gray64):
    """With a perfect prior the joint NA+KE descent must move the kernel towards the truth."""
    k_true = motion_kernel()
    op = Blur(k_true, "valid")
    y = op.forward(gray64) + 0.01 * torch.randn(op.output_shape(gray64.shape),
                                                  generator=torch.Generator().manual_seed(0))
    placeholder = Blur(prior.delta_kernel((9, 9)), "valid")  # only its size and boundary are used
    res = dmsp_mod.dmsp(y, placeholder, sigma=None, iters=600, kernel_blind=True,
                        kernel_estimator="joint", denoiser=Oracle(gray64), device="cpu",
                        symmetrize=False)
    k_est = torch.from_numpy(res.extras["kernel"]).float()
    k_init = prior.initial_kernel(9, "gaussian")
    assert res.settings["mode"] == "NA+KE" and res.settings["kernel_size"] == [9, 9]
    assert float(k_est.min()) >= 0 and float(k_est.sum()) == pytest.approx(1.0, abs=1e-5)
    err_init, err_est = float((k_init - k_true).norm()), float((k_est - k_true).norm())
    assert err_est < 0.7 * err_init, (err_init, err_est)


def test_kernel_blind_l0_estimates_first_then_restores_non_blind(gray64):
    """Default kernel-blind path: the kernel estimate is used unchanged by an NA restoration."""
    k_true = motion_kernel()
    op = Blur(k_true, "valid")
    y = op.forward(gray64) + 0.01 * torch.randn(op.output_shape(gray64.shape),
                                                  generator=torch.Generator().manual_seed(0))
    res = dmsp_mod.dmsp(y, Blur(prior.delta_kernel((9, 9)), "valid"), iters=5, kernel_blind=True,
                        denoiser=Oracle(gray64), device="cpu", kernel_params={"inner": 4},
                        symmetrize=False)
    expected = dmsp_mod.estimate_kernel(y, (9, 9), inner=4)
    torch.testing.assert_close(torch.from_numpy(res.extras["kernel"]).float(), expected)
    s = res.settings
    assert s["mode"] == "NA+KE" and s["iters"] == 5 and s["alpha"] == 0.1 and s["mu"] == 0.9
    assert s["kernel_estimator"] == "l0" and s["kernel_params"] == {"inner": 4}
    with pytest.raises(ValueError, match="kernel_estimator"):
        dmsp_mod.dmsp(y, op, iters=1, kernel_blind=True, kernel_estimator="magic", dae=tiny_dae())


@needs_weights
def test_kernel_blind_with_shipped_weights_improves_kernel(gray64):
    """shipped weights: NA+KE with the real DAE on a 64² crop and a 9×9 motion blur."""
    k_true = motion_kernel()
    x = gray64.expand(-1, 3, -1, -1).contiguous()
    op = Blur(k_true, "valid")
    noise = torch.randn(op.output_shape(x.shape), generator=torch.Generator().manual_seed(0))
    y = op.forward(x) + 0.01 * noise
    res = dmsp_mod.dmsp(y, Blur(prior.delta_kernel((9, 9)), "valid"), iters=300, kernel_blind=True,
                        device="cpu", seed=0)
    k_est = torch.from_numpy(res.extras["kernel"]).float()
    k_init = prior.initial_kernel(9, "gaussian")
    assert float((k_est - k_true).norm()) < float((k_init - k_true).norm())


# --------------------------------------------------------------------------- the method contract


def test_registered_for_every_task():
    info = get_method("dmsp")
    assert info is METHODS["dmsp"] and info.kind == "learned"
    assert set(info.tasks) == {"denoise", "deblur", "sr", "inpaint", "demosaic"}


@pytest.mark.parametrize("task", ["denoise", "deblur", "sr", "inpaint", "demosaic"])
def test_every_task_runs(task, rgb32):
    g = torch.Generator().manual_seed(4)
    op = {"denoise": Identity(), "deblur": Blur(torch.ones(3, 3) / 9, "valid"), "sr": Downsample(2),
          "inpaint": Mask((torch.rand(32, 32, generator=g) > 0.5).float()), "demosaic": Mosaic()}[task]
    y = op.forward(rgb32)
    res = dmsp_mod.dmsp(y, op, sigma=0.01, iters=3, dae=tiny_dae(3), device="cpu", precision="fp32")
    assert res.image.shape == rgb32.shape and torch.isfinite(res.image).all()
    assert 0 <= float(res.image.min()) and float(res.image.max()) <= 1
    expected = {"demosaic": 3 / 255, "deblur": dmsp_mod.deblur_sigma_dae(0.01)}.get(task, 11 / 255)
    assert len(res.history) == 3 and res.settings["sigma_dae"] == pytest.approx(expected)


def test_deblur_sigma_dae_rule(gray64):
    """σ₁ = (7 + 0.75·σ_n)/255 (8-bit σ_n), clipped to [11, 20]/255; NA takes σ_n from y; 'paper'
    and an explicit value override it; other tasks keep the paper's 11/255."""
    rule = dmsp_mod.deblur_sigma_dae
    assert rule(2.55 / 255) * 255 == pytest.approx(11.0)
    assert rule(7.65 / 255) * 255 == pytest.approx(12.7375)
    assert rule(10.2 / 255) * 255 == pytest.approx(14.65)
    assert rule(0.0) * 255 == pytest.approx(11.0) and rule(50 / 255) * 255 == pytest.approx(20.0)
    op = Blur(motion_kernel(), "valid")
    s_n = 10 / 255
    y = op.forward(gray64) + s_n * torch.randn(op.forward(gray64).shape,
                                               generator=torch.Generator().manual_seed(0))
    run = lambda **kw: dmsp_mod.dmsp(y, op, iters=1, dae=tiny_dae(), device="cpu",
                                     precision="fp32", **kw).settings
    na = run(sigma=None)
    assert na["sigma_dae"] == pytest.approx(rule(s_n), abs=1.5 / 255)  # σ_n estimated from y
    assert na["sigma_dae_rule"].startswith("deblur_sigma_dae(")
    assert run(sigma=s_n)["sigma_dae"] == pytest.approx(rule(s_n))
    paper = run(sigma=s_n, sigma_dae="paper")
    assert paper["sigma_dae"] == pytest.approx(11 / 255) and paper["sigma_dae_rule"] == "paper"
    assert run(sigma=None, sigma_dae=5 / 255)["sigma_dae"] == pytest.approx(5 / 255)
    with pytest.raises(ValueError, match="'paper'"):
        run(sigma=None, sigma_dae="auto")
    den = dmsp_mod.dmsp(y, Identity(), sigma=s_n, iters=1, dae=tiny_dae(), device="cpu",
                        precision="fp32").settings
    assert den["sigma_dae"] == pytest.approx(11 / 255) and den["sigma_dae_rule"] == "paper"


def test_modes_follow_sigma(gray64):
    op, y, dae = Identity(), gray64, tiny_dae()
    run = lambda **kw: dmsp_mod.dmsp(y, op, iters=2, dae=dae, device="cpu", precision="fp32", **kw)
    assert run(sigma=0.02).settings["mode"] == "NB"
    assert run(sigma=None).settings["mode"] == "NA"
    assert run(sigma=0.02, noise_blind=True).settings["mode"] == "NA"
    nf = run(sigma=0.0)
    assert nf.settings["mode"] == "noise-free" and math.isinf(nf.history[0]["lambda"])
    st = dmsp_mod.dmsp(Mosaic().forward(gray64.expand(-1, 3, -1, -1)), Mosaic(), sigma=None, iters=6,
                       dae=tiny_dae(3), device="cpu", precision="fp32")
    assert st.settings["stages"] == [["NB", 2.5 / 255, 2], ["NB", 1 / 255, 4]]  # §5.4
    lams = [h["lambda"] for h in st.history]
    assert lams[0] == pytest.approx(255 ** 2 / 2.5 ** 2) and lams[-1] == pytest.approx(255 ** 2)


@pytest.mark.parametrize("descent,symmetrize", [("paper", False), ("preconditioned", False),
                                                ("preconditioned", True)])
def test_nb_step_is_the_reference_update(gray64, descent, symmetrize):
    """One NB iteration with μ = 0: x₁ = clip(x₀ − α·P[w·Kᵀ(Kx₀ − y) + (1 − w)(x₀ − r(x₀ + η))]),
    P = I for the paper's update, the blur preconditioner (weights w, 1 − w) otherwise; with
    ``symmetrize`` r is evaluated as T⁻¹ r(T ·) for the flip/rotation T drawn after η."""
    k = torch.ones(3, 3) / 9
    op = Blur(k, "circular")
    y = op.forward(gray64) * 0.9 + 0.05
    dae, s_n, alpha = tiny_dae(), 5 / 255, 0.1
    res = dmsp_mod.dmsp(y, op, sigma=s_n, iters=1, mu=0.0, alpha=alpha, dae=dae, seed=3,
                        device="cpu", precision="fp32", descent=descent, symmetrize=symmetrize)
    net = prior.load_prior_network(method="dmsp", channels=1, compute=get_compute("cpu", "fp32"), dae=dae)
    s1 = dmsp_mod.deblur_sigma_dae(s_n)
    assert res.settings["sigma_dae"] == pytest.approx(s1)
    gen = torch.Generator().manual_seed(3)
    eta = s1 * torch.randn(y.shape, generator=gen)
    t = int(torch.randint(8, (1,), generator=gen)) if symmetrize else 0
    assert t != 0 or not symmetrize  # the seed draws a real flip/rotation
    with torch.no_grad():
        pg = y - dihedral_inverse(net(dihedral(y + eta, t), s1), t)
    lam = 1 / s_n ** 2
    w = lam / (lam + 1 / s1 ** 2)
    g = w * op.adjoint(op.forward(y) - y) + (1 - w) * pg
    if descent == "preconditioned":
        g = prior.blur_preconditioner(op, y.shape)(g, w, 1 - w)
    expected = (y - alpha * g).clamp(0, 1)
    torch.testing.assert_close(res.image, expected, rtol=1e-5, atol=1e-6)
    assert res.settings["descent"] == descent and res.settings["symmetrize"] == symmetrize


def test_ctrl_c_returns_the_current_estimate(gray64):
    def interrupt(t, x, info):
        if t == 3:
            raise KeyboardInterrupt

    op = Blur(torch.ones(3, 3) / 9, "valid")
    res = dmsp_mod.dmsp(op.forward(gray64), op, sigma=0.01, iters=50, callback=interrupt,
                        reference=gray64, dae=tiny_dae(), device="cpu", precision="fp32")
    assert res.interrupted and res.iters == 3 and "psnr" in res.history[-1]
    assert res.image.shape == gray64.shape
    for key in ("mode", "iters", "alpha", "mu", "sigma_dae", "data_scale", "precision", "seed"):
        assert key in res.settings
    stop = dmsp_mod.dmsp(op.forward(gray64), op, sigma=0.01, iters=50, callback=lambda t, x, i: t == 2,
                         dae=tiny_dae(), device="cpu", precision="fp32")
    assert not stop.interrupted and stop.iters == 2


def test_weights_path_and_gray_image_with_colour_net(tmp_path, gray64):
    from deepprior.nets.dae import save_dae

    path = tmp_path / "tiny.safetensors"
    save_dae(tiny_dae(3), path)
    res = dmsp_mod.dmsp(gray64, Identity(), sigma=0.05, iters=2, weights=str(path), device="cpu")
    assert res.image.shape == gray64.shape and str(path) in res.settings["prior_network"]
    with pytest.raises(FileNotFoundError):
        dmsp_mod.dmsp(gray64, Identity(), sigma=0.05, iters=1, weights=str(tmp_path / "none.safetensors"))
    with pytest.raises(ValueError, match="kernel_blind"):
        dmsp_mod.dmsp(gray64, Identity(), iters=1, kernel_blind=True, dae=tiny_dae())


def test_bf16_and_fp32_agree(gray64):
    """bf16 autocast of the DAE vs fp32: final PSNR within 0.05 dB (tiny random DAE, 9×9 Gaussian
    blur, σ_n = 2.55, 40 iterations, same seed). The tiny net keeps the test independent of
    trained weights; its mean-shift vectors are not natural-image ones, so this checks numerics
    (autocast, channels_last, casting back to fp32), not restoration quality."""
    k = prior.gaussian_kernel((9, 9), 1.6)
    op = Blur(k, "valid")
    y = op.forward(gray64) + 0.01 * torch.randn(op.output_shape(gray64.shape),
                                                  generator=torch.Generator().manual_seed(5))
    dae = tiny_dae()
    out = {p: dmsp_mod.dmsp(y, op, sigma=2.55 / 255, iters=40, dae=dae, device="cpu", precision=p).image
           for p in ("fp32", "bf16")}
    assert abs(psnr(out["bf16"], gray64) - psnr(out["fp32"], gray64)) < 0.05


@needs_weights
def test_dmsp_beats_wiener_on_a_small_deblurring_case():
    """shipped weights: DMSP (NB, 150 iterations) beats the Wiener filter by ≥ 1 dB on a 96² colour
    crop blurred by a 9×9 motion kernel ('valid' boundary), σ_n = 2.55."""
    im = data.astronaut()[60:252:2, 160:352:2].astype(np.float32) / 255
    x = torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1)))[None]
    op = Blur(motion_kernel(), "valid")
    noise = torch.randn(op.output_shape(x.shape), generator=torch.Generator().manual_seed(0))
    y = op.forward(x) + 0.01 * noise
    ours = dmsp_mod.dmsp(y, op, sigma=0.01, iters=150, device="cpu", seed=0).image
    wiener = get_method("wiener").run(y, op, sigma=0.01).image
    assert psnr(ours, x) > psnr(wiener, x) + 1.0


def test_prior_noise_antithetic_pairs():
    """antithetic: draws come in pairs (η, −η), each η a fresh N(0, σ²) sample from the
    generator; without it every draw is fresh and equals draw_noise's sequence."""
    shape, s = (1, 1, 8, 8), 0.1
    anti = prior.PriorNoise(s, torch.Generator().manual_seed(3), "cpu", antithetic=True)
    a1, a2, a3 = anti(shape), anti(shape), anti(shape)
    plain = prior.PriorNoise(s, torch.Generator().manual_seed(3), "cpu")
    p1, p2 = plain(shape), plain(shape)
    torch.testing.assert_close(a2, -a1)
    torch.testing.assert_close(a1, p1)
    torch.testing.assert_close(a3, p2)  # the pair used one draw; the next pair takes the next
    assert not torch.allclose(p1, p2)


def test_prior_noise_dihedral_transforms():
    """dihedral: each fresh η comes with a flip/rotation index in 0..7, kept by its antithetic
    partner and varying between pairs; off, the index stays 0 and the noise sequence is the
    plain one (the generator is not consumed)."""
    shape, s = (1, 1, 8, 8), 0.1
    sym = prior.PriorNoise(s, torch.Generator().manual_seed(5), "cpu", antithetic=True, dihedral=True)
    pairs = []
    for _ in range(16):
        sym(shape)
        first = sym.transform
        sym(shape)
        assert sym.transform == first
        pairs.append(first)
    assert set(pairs) <= set(range(8)) and len(set(pairs)) >= 4
    off = prior.PriorNoise(s, torch.Generator().manual_seed(5), "cpu")
    plain = [off(shape) for _ in range(3)]
    assert off.transform == 0
    ref = torch.Generator().manual_seed(5)
    for p_ in plain:
        torch.testing.assert_close(p_, prior.draw_noise(shape, s, ref, "cpu"))


@pytest.mark.parametrize("name", ["circular", "valid"])
def test_blur_preconditioner_inverts_the_data_curvature(name):
    """P(g) = (d·c·HᵀH + p·I)⁻¹ g: exact for a circular blur; for a 'valid' blur the circulant
    approximation at the input size. Other operators (down-sampling, masks): None."""
    op, x_shape = Blur(motion_kernel(), name), (1, 1, 40, 36)
    pre = prior.blur_preconditioner(op, x_shape, scale=2.0)
    g = torch.randn(x_shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    if name != "valid":
        curv = 0.9 * 2.0 * op.adjoint(op.forward(g)) + 0.1 * g
        torch.testing.assert_close(pre(curv, 0.9, 0.1), g, atol=1e-6, rtol=1e-6)
    assert pre(g.float(), 0.9, 0.1).shape == g.shape
    k64 = Blur(motion_kernel().double(), name)  # a float64 kernel keeps a float32 iterate float32
    assert prior.blur_preconditioner(k64, x_shape)(g.float(), 0.9, 0.1).dtype == torch.float32
    assert prior.blur_preconditioner(Identity(), x_shape) is None
    assert prior.blur_preconditioner(Downsample(4), x_shape) is None
    assert prior.blur_preconditioner(Mask(torch.ones(x_shape[-2:])), x_shape) is None


@needs_weights
def test_preconditioned_antithetic_dmsp_converges_sooner():
    """shipped weights: on the 96² motion-blur case of the Wiener test, the preconditioned,
    antithetic descent after 40 iterations beats the paper's update (eq. 20) after 40 by
    ≥ 0.5 dB, and is not worse than the paper's after 120."""
    im = data.astronaut()[60:252:2, 160:352:2].astype(np.float32) / 255
    x = torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1)))[None]
    op = Blur(motion_kernel(), "valid")
    y = op.forward(x) + 0.01 * torch.randn(op.output_shape(x.shape), generator=torch.Generator().manual_seed(0))
    run = lambda n, **kw: psnr(dmsp_mod.dmsp(y, op, sigma=0.01, iters=n, device="cpu", seed=0, **kw).image, x)
    fast = run(40)  # the default descent
    assert fast > run(40, descent="paper") + 0.5
    assert fast > run(120, descent="paper") - 0.05
    with pytest.raises(ValueError, match="descent"):
        dmsp_mod.dmsp(y, op, sigma=0.01, iters=1, descent="fast")


# --------------------------------------------------------------------------- benchmark protocols


def test_meanshift_protocols_registered_with_their_conventions():
    from deepprior.bench.protocols import Case, get_protocol

    levin = get_protocol("levin-deblur")
    assert (levin.boundary, levin.quantize, levin.method, levin.iters) == ("valid", True, "dmsp", 300)
    # computePSNR.m: floor(kh/2) border, from the kernel array when the runner passes it
    assert levin.crop_for(Case("kernel_04", 2.55), np.ones((27, 27))) == 13
    assert levin.crop_for(Case("kernel_04", 2.55)) == 13  # known sizes of the Levin set
    sr = get_protocol("sr-set5")
    assert (sr.crop_for(Case(scale=3)), sr.y_channel, sr.quantize, sr.method) == (3, False, True, "daep")
    blind = get_protocol("levin-blind")
    assert blind.method_params == {"kernel_blind": True, "noise_blind": True} and blind.iters is None
    assert not blind.noise_known and blind.extra_metrics is not None
    assert get_protocol("demosaic").extra_metrics is not None
    assert get_protocol("berkeley-deblur").kernels == "schelten_dmsp5"


def test_aligned_ssd_forgives_small_shifts():
    from deepprior.bench.protocols_meanshift import aligned_ssd

    x = 0.5 * torch.rand(1, 1, 40, 40, generator=torch.Generator().manual_seed(0))
    shifted = torch.roll(x, (2, -1), dims=(-2, -1))
    assert aligned_ssd(shifted, x, crop=2) == pytest.approx(0.0, abs=1e-12)
    assert aligned_ssd(x + 0.1, x, crop=2) == pytest.approx(0.01 * (40 - 10) ** 2, rel=1e-6)


def _write_png(path, pixels):
    from deepprior.io import write_image

    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, pixels)


def test_levin_blind_protocol_end_to_end(tmp_path, gray64):
    """The runner's extra-metrics hook: error ratio, non-blind PSNR and kernel error per image."""
    from deepprior.bench.runner import run_protocol

    _write_png(tmp_path / "levin" / "im_1.png", gray64[0, 0, :40, :40].numpy()[..., None])
    (tmp_path / "levin" / "kernels").mkdir()
    np.save(tmp_path / "levin" / "kernels" / "kernel_01.npy", prior.gaussian_kernel((5, 5), 1.0).numpy())
    res = run_protocol("levin-blind", data_root=tmp_path, iters=3, progress=False, device="cpu",
                       method_params={"dae": tiny_dae(1)})
    row = res["results"][0]
    assert res["settings"]["method_params"]["kernel_blind"] and row["iters"] == 3
    for key in ("error_ratio", "psnr_nonblind", "kernel_error", "sigma_n_estimate"):
        assert math.isfinite(row[key])
    assert row["nonblind_iters"] == 3 and res["summary"]["extra"]["error_ratio"]["n"] == 1


def test_demosaic_protocol_scores_bilinear_in_the_same_run(tmp_path, rgb32):
    from deepprior.bench.runner import run_protocol

    _write_png(tmp_path / "a.png", rgb32[0].permute(1, 2, 0).numpy())
    res = run_protocol("demosaic", images=tmp_path, iters=2, progress=False, device="cpu",
                       method_params={"dae": tiny_dae(3)})
    row = res["results"][0]
    assert row["psnr"] > 0 and row["psnr_bilinear"] > 0 and "ssim_bilinear" in row
    assert res["summary"]["extra"]["psnr_bilinear"]["mean"] == pytest.approx(row["psnr_bilinear"])


def test_x0_is_the_starting_image(gray64):
    op = Blur(torch.ones(3, 3) / 9, "valid")
    y = op.forward(gray64)
    start = torch.full_like(gray64, 0.3)
    res = dmsp_mod.dmsp(y, op, sigma=0.01, iters=2, alpha=0.0, x0=start, dae=tiny_dae(), device="cpu")
    torch.testing.assert_close(res.image, start)
    assert res.settings["init"] == "x0"
    with pytest.raises(ValueError, match="x0 has shape"):
        dmsp_mod.dmsp(y, op, sigma=0.01, iters=1, x0=y, dae=tiny_dae(), device="cpu")


@pytest.mark.parametrize("method", ["dmsp", "daep"])
def test_gray_image_with_a_colour_dae_reports_gray_iterates(method):
    """A gray problem restored with a colour DAE runs on the RGB replica (prior.lift_gray_to_rgb),
    but the callback, the PSNR history and the result are gray, of the reference's shape."""
    truth = torch.as_tensor(data.camera()[200:232, 200:232] / 255.0, dtype=torch.float32)[None, None]
    op = Blur(motion_kernel(), "valid")
    noise = torch.randn(op.output_shape(truth.shape), generator=torch.Generator().manual_seed(0))
    y = op.forward(truth) + 0.01 * noise
    seen = []

    def callback(t, x, info):
        seen.append(tuple(x.shape))
        return False

    res = get_method(method).run(y, op, sigma=0.01, iters=3, dae=tiny_dae(3), reference=truth,
                                 callback=callback, precision="fp32")
    assert res.settings["lifted_gray_to_rgb"] is True
    assert seen == [tuple(truth.shape)] * 3
    assert tuple(res.image.shape) == tuple(truth.shape)
    psnr_logged = res.history[-1]["psnr"]
    assert psnr_logged == pytest.approx(psnr(res.image, truth), abs=1e-3)
