"""DAEP (autoencoding priors): the vector–Jacobian prior gradient against full autograd of the
energy, the prior weights of §5 / §5.1, and the method contract.

A tiny randomly initialised DAE stands in for the trained one; the test marked ``shipped weights``
skips until ``src/deepprior/weights/dae_color.safetensors`` exists.
"""
import math

import numpy as np
import pytest
import torch
from skimage import data

from deepprior.compute import get_compute
from deepprior.denoisers import dihedral, dihedral_inverse
from deepprior.methods import METHODS, get_method
from deepprior.methods import daep as daep_mod
from deepprior.methods import prior
from deepprior.nets.dae import default_weights_path
from deepprior.operators import Blur, Compose, Downsample, Identity, Mask, Mosaic
from helpers import psnr, tiny_dae

pytestmark = pytest.mark.usefixtures("one_thread")

needs_weights = pytest.mark.skipif(not default_weights_path(3).exists(),
                                   reason="shipped weights: dae_color.safetensors not trained yet")


def tiny_net(channels=1, precision="fp32"):
    return prior.load_prior_network(method="daep", channels=channels,
                                    compute=get_compute("cpu", precision), dae=tiny_dae(channels))


# --------------------------------------------------------------------------- the prior gradient


@pytest.mark.parametrize("channels", [1, 3])
def test_vjp_prior_gradient_equals_autograd_of_the_prior_energy(channels, rgb32):
    """J_Aᵀe − e (one VJP) = ∇_x ½‖A(x + ε) − x‖² by full autograd, with the same seeded ε."""
    x = rgb32[:, :channels].contiguous()
    net, s = tiny_net(3), 25 / 255  # channels=1 also exercises the gray-through-colour adapter
    g, e = daep_mod.autoencoder_error_gradient(net, x, s, prior.PriorNoise(s, torch.Generator().manual_seed(11), "cpu"))
    eps = s * torch.randn(x.shape, generator=torch.Generator().manual_seed(11))
    xv = x.clone().requires_grad_(True)
    energy = 0.5 * (net(xv + eps, s) - xv).pow(2).sum()
    (expected,) = torch.autograd.grad(energy, xv)
    torch.testing.assert_close(g, expected, rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        torch.testing.assert_close(e, net(x + eps, s) - x)


@pytest.mark.parametrize("descent,symmetrize", [("paper", False), ("preconditioned", False),
                                                ("preconditioned", True)])
def test_one_iteration_descends_the_normalised_energy_of_eq7(gray, descent, symmetrize):
    """With μ = 0 one DAEP step is x₁ = x₀ − α·P[∇E / (1/σ_d² + 4γ/σ_η²)] for the energy
    E = ½‖Ax − y‖²/σ_d² + ½·4γ/σ_η²·‖A_σε(x + ε) − x‖² (eq. 7 with eq. 8), by full autograd;
    P = I (paper) or the blur preconditioner with data weight 1 − w and prior weight w; with
    ``symmetrize`` A is evaluated as T⁻¹ A(T ·) for the flip/rotation T drawn after ε."""
    op = Blur(torch.ones(3, 3) / 9, "circular")
    y = (op.forward(gray) * 0.8 + 0.1)  # keeps x₀ = y and x₁ inside (0, 1): no clipping
    s_d, gamma, alpha, dae = 5 / 255, 6.875, 0.1, tiny_dae()
    s_e = daep_mod.deblur_sigma_eps(s_d)  # 23.5/255
    res = daep_mod.daep(y, op, sigma=s_d, iters=1, mu=0.0, alpha=alpha, dae=dae, seed=4,
                        device="cpu", precision="fp32", descent=descent, symmetrize=symmetrize)
    assert res.settings["sigma_dae"] == pytest.approx(s_e)
    net = prior.load_prior_network(method="daep", channels=1, compute=get_compute("cpu", "fp32"), dae=dae)
    gen = torch.Generator().manual_seed(4)
    eps = s_e * torch.randn(y.shape, generator=gen)
    t = int(torch.randint(8, (1,), generator=gen)) if symmetrize else 0
    assert t != 0 or not symmetrize  # the seed draws a real flip/rotation
    p = 4 * gamma / (2 * s_e ** 2)
    xv = y.clone().requires_grad_(True)
    denoised = dihedral_inverse(net(dihedral(xv + eps, t), s_e), t)
    energy = 0.5 * (op.forward(xv) - y).pow(2).sum() / s_d ** 2 + 0.5 * p * (denoised - xv).pow(2).sum()
    (grad,) = torch.autograd.grad(energy, xv)
    g = grad / (1 / s_d ** 2 + p)
    if descent == "preconditioned":
        w = daep_mod.daep_prior_weight(s_d, s_e, gamma)
        g = prior.blur_preconditioner(op, y.shape)(g, 1 - w, w)
    expected = y - alpha * g
    assert 0 < float(expected.min()) and float(expected.max()) < 1
    torch.testing.assert_close(res.image, expected, rtol=1e-5, atol=1e-6)


def test_deblur_sigma_eps_rule(gray):
    """σ_ε = (16 + 1.5·σ_d)/255 (8-bit σ_d), clipped to [25, 45]/255, for noisy deblurring only;
    'paper' and an explicit value override it."""
    rule = daep_mod.deblur_sigma_eps
    assert rule(2.55 / 255) * 255 == pytest.approx(25.0)
    assert rule(7.65 / 255) * 255 == pytest.approx(27.475)
    assert rule(12.75 / 255) * 255 == pytest.approx(35.125)
    assert rule(0.0) * 255 == pytest.approx(25.0) and rule(40 / 255) * 255 == pytest.approx(45.0)
    op, dae = Blur(torch.ones(3, 3) / 9, "circular"), tiny_dae()
    run = lambda o, **kw: daep_mod.daep(o.forward(gray), o, iters=1, dae=dae, device="cpu",
                                        precision="fp32", **kw).settings
    got = run(op, sigma=7.65 / 255)
    assert got["sigma_dae"] == pytest.approx(rule(7.65 / 255)) and got["sigma_dae_rule"].startswith("deblur_sigma_eps(")
    assert run(op, sigma=7.65 / 255, sigma_dae="paper")["sigma_dae"] == pytest.approx(25 / 255)
    assert run(op, sigma=7.65 / 255, sigma_dae=30 / 255)["sigma_dae"] == pytest.approx(30 / 255)
    assert run(op, sigma=0.0)["sigma_dae"] == pytest.approx(25 / 255)  # noise-free: the paper's
    assert run(Identity(), sigma=7.65 / 255)["sigma_dae"] == pytest.approx(25 / 255)  # not deblurring
    with pytest.raises(ValueError, match="'paper'"):
        run(op, sigma=7.65 / 255, sigma_dae="auto")


def test_prior_weight_of_section5():
    """σ_ε = 25, σ_η = 25√2, γ = 6.875/σ_η², ×4 from eq. 8: 4γ = 27.5/1250 = 0.022 (8-bit)."""
    w = daep_mod.daep_prior_weight(2.55, 25.0)
    assert w == pytest.approx(0.022 / (0.022 + 1 / 2.55 ** 2))
    assert daep_mod.daep_prior_weight(2.55 / 255, 25 / 255) == pytest.approx(w)  # unit-free


def test_noise_free_uses_inverse_sqrt_schedule(rgb32):
    """σ_d = 0 (super-resolution): relative prior weight 1/√t (§5.1, DAEPSR.m)."""
    op = Downsample(2)
    res = daep_mod.daep(op.forward(rgb32), op, sigma=0.0, iters=4, dae=tiny_dae(3), device="cpu",
                        precision="fp32")
    assert res.settings["noise_free"] and res.settings["data_scale"] == 4.0
    assert [h["prior_weight"] for h in res.history] == pytest.approx([1 / math.sqrt(t) for t in (1, 2, 3, 4)])
    assert res.image.shape == rgb32.shape


def test_sigma_none_is_estimated(gray):
    y = gray + 0.05 * torch.randn(gray.shape, generator=torch.Generator().manual_seed(0))
    res = daep_mod.daep(y, Identity(), iters=1, dae=tiny_dae(), device="cpu", precision="fp32")
    assert res.settings["sigma_source"] == "estimated"
    assert res.settings["sigma"] == pytest.approx(0.05, rel=0.2) and not res.settings["noise_free"]


# --------------------------------------------------------------------------- the method contract


def test_registered_for_every_task():
    info = get_method("daep")
    assert info is METHODS["daep"] and info.kind == "learned"
    assert set(info.tasks) == {"denoise", "deblur", "sr", "inpaint", "demosaic"}


@pytest.mark.parametrize("task", ["denoise", "deblur", "sr", "inpaint", "demosaic"])
def test_every_task_runs(task, rgb32):
    g = torch.Generator().manual_seed(4)
    op = {"denoise": Identity(), "deblur": Blur(torch.ones(3, 3) / 9, "valid"),
          "sr": Compose(Blur(torch.ones(3, 3) / 9, "circular"), Downsample(2, "point")),
          "inpaint": Mask((torch.rand(32, 32, generator=g) > 0.5).float()), "demosaic": Mosaic()}[task]
    y = op.forward(rgb32)
    res = daep_mod.daep(y, op, sigma=0.01, iters=3, dae=tiny_dae(3), device="cpu", precision="fp32")
    assert res.image.shape == rgb32.shape and torch.isfinite(res.image).all()
    assert 0 <= float(res.image.min()) and float(res.image.max()) <= 1
    assert len(res.history) == 3
    for key in ("iters", "alpha", "mu", "sigma", "sigma_dae", "sigma_eta", "gamma", "prior_weight",
                "data_scale", "precision", "seed", "prior_network"):
        assert key in res.settings


def test_ctrl_c_returns_the_current_estimate(gray):
    def interrupt(t, x, info):
        if t == 2:
            raise KeyboardInterrupt

    res = daep_mod.daep(gray, Identity(), sigma=0.02, iters=40, callback=interrupt, reference=gray,
                        dae=tiny_dae(), device="cpu", precision="fp32")
    assert res.interrupted and res.iters == 2 and "psnr" in res.history[-1]
    assert res.image.shape == gray.shape


def test_bf16_vjp_close_to_fp32(gray):
    """The bf16 autocast VJP (compute policy) stays close to fp32 on the tiny net."""
    g = {}
    for p in ("fp32", "bf16"):
        noise = prior.PriorNoise(25 / 255, torch.Generator().manual_seed(0), "cpu")
        g[p], _ = daep_mod.autoencoder_error_gradient(tiny_net(1, p), gray, 25 / 255, noise)
    rel = float((g["bf16"] - g["fp32"]).norm() / g["fp32"].norm())
    assert rel < 0.05


@needs_weights
def test_daep_improves_a_small_deblurring_case():
    """shipped weights: DAEP (100 iterations) beats the blurred input by ≥ 2 dB on a 64² colour crop."""
    im = data.astronaut()[60:188:2, 160:288:2].astype(np.float32) / 255
    x = torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1)))[None]
    op = Blur(prior.gaussian_kernel((9, 9), 1.6), "circular")
    y = op.forward(x) + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    out = daep_mod.daep(y, op, sigma=0.01, iters=100, device="cpu").image
    assert psnr(out, x) > psnr(y, x) + 2.0
