"""RED (Regularization by Denoising): the fixed-point and steepest-descent solvers, the CG inner
solver, a PSNR gain on small synthetic cases, and clear errors."""
import pytest
import torch
import torch.nn.functional as F

from deepprior.compute import get_compute
from deepprior.denoisers import DAEDenoiser, dihedral, dihedral_inverse
from deepprior.methods import get_method
from deepprior.methods.red import RED_PRESETS, conjugate_gradient, red
from deepprior.nets.dae import save_dae
from deepprior.operators import Blur, Downsample, Identity, Mask, Mosaic
from helpers import noisy, psnr, tiny_dae

pytestmark = pytest.mark.usefixtures("one_thread")

GAUSS = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
GAUSS = (GAUSS[:, None] * GAUSS[None, :]) / 256


def linear_smoother(x, sigma):
    """A linear, symmetric 'denoiser' W x (circular 5×5 binomial filter): RED's conditions hold
    exactly, so ρ(x) = ½xᵀ(I − W)x and ∇ρ = x − W x."""
    c = x.shape[1]
    k = GAUSS.to(x)[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="circular"), k, groups=c)


def energy(x, y, op, lam):
    return float(0.5 * (op.forward(x) - y).square().sum() + 0.5 * lam * (x * (x - linear_smoother(x, 0))).sum())


def test_registered_for_every_task():
    info = get_method("red")
    assert set(info.tasks) == {"denoise", "deblur", "sr", "inpaint", "demosaic"}
    assert set(RED_PRESETS) == set(info.tasks)


def test_conjugate_gradient_solves_an_spd_system():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64)
    spd = a @ a.T + 6 * torch.eye(6, dtype=torch.float64)
    rhs = torch.randn(2, 1, 1, 6, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: v @ spd, rhs, torch.zeros_like(rhs), 6)  # exact in n steps
    torch.testing.assert_close(x, torch.linalg.solve(spd, rhs.reshape(2, 6).T).T.reshape(2, 1, 1, 6))


def test_one_fixed_point_step_for_denoising_is_eq11(gray):
    y = noisy(gray, 0.1)
    lam = 0.7  # λ_eff = λ·σ₈²: RED's λ, data term divided by σ² in 8-bit units
    res = red(y, Identity(), sigma=0.1, iters=1, denoiser=linear_smoother, sigma_f=10, lam=lam / 25.5 ** 2,
              device="cpu")
    assert res.settings["lam_eff"] == pytest.approx(lam)
    x0 = y.clamp(0, 1)  # the default start: the observation, clipped
    torch.testing.assert_close(res.image, ((y + lam * linear_smoother(x0, 0)) / (1 + lam)).clamp(0, 1))


def test_symmetrize_evaluates_the_denoiser_on_a_random_flip_or_rotation(gray):
    """symmetrize=True: the denoiser sees T x for a T drawn from the seed's generator, and its
    output is mapped back by T⁻¹ (eq. 11 with T⁻¹ f(T x)); symmetrize=False: f(x) as published."""
    def lopsided(x, sigma):  # not equivariant: shifts the image right by one pixel
        return torch.roll(x, 1, dims=-1)

    y = noisy(gray, 0.1)
    lam, kw = 0.7, dict(sigma=0.1, iters=1, denoiser=lopsided, sigma_f=10, lam=0.7 / 25.5 ** 2,
                        device="cpu", seed=1)
    x0 = y.clamp(0, 1)
    k = int(torch.randint(8, (1,), generator=torch.Generator().manual_seed(1)))
    assert k != 0
    fx = dihedral_inverse(lopsided(dihedral(x0, k), 0), k)
    sym = red(y, Identity(), **kw)
    torch.testing.assert_close(sym.image, ((y + lam * fx) / (1 + lam)).clamp(0, 1))
    plain = red(y, Identity(), symmetrize=False, **kw)
    torch.testing.assert_close(plain.image, ((y + lam * lopsided(x0, 0)) / (1 + lam)).clamp(0, 1))
    assert sym.settings["symmetrize"] and not plain.settings["symmetrize"]


@pytest.mark.parametrize("solver", ["fixed-point", "sd"])
def test_energy_descends_and_the_stationarity_residual_vanishes(solver, gray):
    """With a linear symmetric f the RED energy is an exact quadratic: both solvers must descend
    it monotonically and drive ‖Hᵀ(Hx − y) + λ(x − f(x))‖ towards 0."""
    op = Blur(GAUSS, "circular")
    y = noisy(op.forward(gray), 0.02)
    lam = 0.3
    res = red(y, op, sigma=0.02, iters=40, denoiser=linear_smoother, sigma_f=5, lam=lam / 5.1 ** 2,
              solver=solver, inner=3, device="cpu", x0=y)
    losses = [h["loss"] for h in res.history]
    assert all(b <= a + 1e-6 for a, b in zip(losses, losses[1:]))
    assert res.history[-1]["grad_norm"] < 0.05 * res.history[0]["grad_norm"]


def test_deblurring_with_tv_gains_over_the_blurred_image(rgb):
    op = Blur(GAUSS, "circular")
    y = noisy(op.forward(rgb), 2 / 255)
    res = red(y, op, sigma=2 / 255, iters=30, denoiser="tv", sigma_f=3, lam=0.005, device="cpu")
    assert psnr(res.image, rgb) > psnr(y, rgb) + 1.5


def test_denoising_with_the_preset_gains_clearly_and_more_iterations_oversmooth(rgb):
    """The denoise preset stops at RED's first iteration because NLM's iterations drift away
    from the clean image (methods/red.py); both halves of that claim are checked here."""
    y = noisy(rgb, 25 / 255)
    res = red(y, Identity(), sigma=25 / 255, device="cpu")
    assert res.settings["denoiser"] == "nlm" and res.settings["sigma_f"] == pytest.approx(18.75)
    assert res.settings["lam_eff"] == pytest.approx(32.0) and res.settings["iters"] == 1
    assert psnr(res.image, rgb) > psnr(y, rgb) + 2
    longer = red(y, Identity(), sigma=25 / 255, iters=4, device="cpu")
    assert psnr(longer.image, rgb) < psnr(res.image, rgb) - 0.5


@pytest.mark.parametrize("op", [Downsample(2, "bicubic"), Mask(torch.rand(48, 48) > 0.5), Mosaic("RGGB")],
                         ids=["sr", "inpaint", "demosaic"])
def test_every_task_runs(op, rgb):
    y = op.forward(rgb)
    res = red(y, op, iters=2, denoiser="tv", device="cpu")
    assert res.image.shape == rgb.shape and torch.isfinite(res.image).all()


def test_default_iterations_follow_the_denoiser(gray):
    """The SR preset runs BM3D for 300 iterations (still rising at 100 on Set5) and any other
    denoiser for the preset's 100 (our DAE peaks by then); an explicit ``iters`` wins."""
    op = Downsample(2, "bicubic")
    y = op.forward(gray[..., :16, :16])
    assert RED_PRESETS["sr"].iterations("bm3d") == 300
    assert RED_PRESETS["sr"].iterations("dae") == RED_PRESETS["sr"].iters == 100
    assert len(red(y, op, denoiser="tv", device="cpu").history) == 100
    assert len(red(y, op, denoiser="tv", iters=7, device="cpu").history) == 7


def test_lambda_scales_with_the_noise_variance(gray):
    """RED's λ multiplies σ₈² (the data term is divided by σ²): the same λ at twice the noise
    regularises four times as strongly; noise-free data use σ₈ = 1."""
    kw = dict(iters=1, denoiser="tv", lam=0.01, device="cpu")
    assert red(gray, Identity(), sigma=10 / 255, **kw).settings["lam_eff"] == pytest.approx(1.0)
    assert red(gray, Identity(), sigma=20 / 255, **kw).settings["lam_eff"] == pytest.approx(4.0)
    op = Downsample(2, "bicubic")
    assert red(op.forward(gray), op, sigma=0.0, **kw).settings["lam_eff"] == pytest.approx(0.01)


def test_clear_errors(gray):
    with pytest.raises(ValueError, match="unknown denoiser"):
        red(gray, Identity(), denoiser="bm4d", sigma=0.1)
    with pytest.raises(ValueError, match="solver"):
        red(gray, Identity(), solver="newton", sigma=0.1)
    with pytest.raises(ValueError, match="lam"):
        red(gray, Identity(), lam=-1, sigma=0.1)
    with pytest.raises(ValueError, match="unknown parameter"):
        red(gray, Identity(), sigma=0.1, mu=3)
    with pytest.raises(ValueError, match="8-bit"):
        red(gray, Identity(), sigma_f=300)
    with pytest.raises(ValueError, match="weights= is for the 'dae' denoiser"):
        red(gray, Identity(), sigma=0.1, denoiser="nlm", weights="dae.safetensors")
    with pytest.raises(ValueError, match="no option"):
        red(gray, Identity(), sigma=0.1, denoiser="tv", denoiser_options={"h_factor": 0.6})
    with pytest.raises(ValueError, match="callable"):
        red(gray, Identity(), sigma=0.1, denoiser=linear_smoother, denoiser_options={"a": 1})


def test_denoiser_options_reach_the_denoiser(gray):
    """denoiser_options are the named denoiser's constructor options: TV with twice the weight
    factor gives the same result as TV called with twice σ_f's weight (TV's weight = factor·σ)."""
    y = noisy(gray, 0.1, seed=1)
    common = dict(sigma=0.1, iters=3, seed=0, denoiser="tv", symmetrize=False)
    doubled = red(y, Identity(), denoiser_options={"weight_factor": 2.0}, sigma_f=5, **common)
    plain = red(y, Identity(), sigma_f=10, **common)
    torch.testing.assert_close(doubled.image, plain.image)
    assert doubled.settings["denoiser_options"] == {"weight_factor": 2.0}
    assert not torch.allclose(doubled.image, red(y, Identity(), sigma_f=5, **common).image)


def test_dae_denoiser_from_a_weights_file(gray, tmp_path):
    """``weights=`` loads a trained DAE file for the 'dae' denoiser: the same result as passing
    the network itself."""
    path = tmp_path / "tiny.safetensors"
    save_dae(tiny_dae(1, seed=3), path)
    y = noisy(gray, 0.1, seed=1)
    common = dict(sigma=0.1, iters=2, seed=0, device="cpu", precision="fp32")
    from_file = red(y, Identity(), denoiser="dae", weights=path, **common)
    f = DAEDenoiser(tiny_dae(1, seed=3), compute=get_compute("cpu", "fp32"))
    given = red(y, Identity(), denoiser=f, **common)
    assert torch.equal(from_file.image, given.image)
