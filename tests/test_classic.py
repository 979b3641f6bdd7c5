"""Classical baselines: each beats the naive estimate of its task on small synthetic cases."""

import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from deepprior.methods import METHODS, load_all
from deepprior.methods import classic
from deepprior.operators import Blur, Compose, Downsample, Identity, Mask, Mosaic
from helpers import psnr, noisy

pytestmark = pytest.mark.usefixtures("one_thread")


def gaussian_kernel(size=7, s=1.6):
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    k = torch.exp(-r**2 / (2 * s * s))
    k = k[:, None] * k[None, :]
    return k / k.sum()


def random_mask(shape, keep=0.5, seed=1):
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < keep).float()


def nearest_fill(y_sparse, known):
    """Copy every missing pixel from the nearest known pixel of the same channel."""
    out = y_sparse.clone()
    for n in range(out.shape[0]):
        for c in range(out.shape[1]):
            m = known[n, c].numpy() > 0.5
            _, (i, j) = ndimage.distance_transform_edt(~m, return_indices=True)
            out[n, c] = y_sparse[n, c][torch.from_numpy(i), torch.from_numpy(j)]
    return out


def test_registry_lists_every_method_with_its_tasks():
    load_all()
    expected = {"observation": ("denoise", "deblur"), "bicubic": ("sr",), "wiener": ("deblur",), "bilinear": ("demosaic",),
                "biharmonic": ("inpaint",), "tv": ("denoise", "deblur", "sr", "inpaint", "demosaic")}
    for name, tasks in expected.items():
        assert METHODS[name].tasks == tasks
        assert METHODS[name].kind == "classic"
        assert METHODS[name].description


@pytest.mark.parametrize("boundary, gain_db", [("circular", 3.0), ("valid", 1.0), ("zero", 4.0)])
def test_wiener_deblurs(rgb, boundary, gain_db):
    op = Blur(gaussian_kernel(), boundary)
    y = noisy(op.forward(rgb), 0.01)
    res = classic.wiener(y, op, reference=rgb)
    blurred = psnr(op.initial_estimate(y), rgb)
    assert res.image.shape == rgb.shape
    assert psnr(res.image, rgb) > blurred + gain_db
    assert len(res.history) == 1 and res.history[0]["psnr"] == pytest.approx(psnr(res.image, rgb), abs=1e-3)
    assert res.settings["sigma_source"] == "estimated"
    assert res.settings["sigma"] == pytest.approx(0.01, rel=0.3)
    assert res.settings["boundary"] == boundary


def test_wiener_spectral_model_beats_a_constant_nsr(rgb):
    op = Blur(gaussian_kernel(), "circular")
    y = noisy(op.forward(rgb), 0.03)
    spectral = psnr(classic.wiener(y, op, sigma=0.03).image, rgb)
    for nsr in (1e-3, 1e-2, 1e-1):
        constant = classic.wiener(y, op, sigma=0.03, nsr=nsr)
        assert constant.settings["spectrum"] == "constant"
        assert spectral > psnr(constant.image, rgb)


def test_tv_deblurs_and_decreases_its_objective(rgb):
    op = Blur(gaussian_kernel(), "circular")
    y = noisy(op.forward(rgb), 0.01)
    res = classic.tv(y, op, sigma=0.01, iters=150, reference=rgb)
    assert psnr(res.image, rgb) > psnr(y, rgb) + 3.0
    losses = [h["loss"] for h in res.history]
    assert len(losses) == 150 and res.iters == 150
    assert losses[-1] < 0.5 * losses[0]
    assert losses[-1] <= min(losses) * 1.001  # PDHG is not monotone, but it ends at its best
    assert res.history[-1]["psnr"] == pytest.approx(psnr(res.image, rgb), abs=1e-3)
    s = res.settings
    assert s["lam"] == pytest.approx(classic.TV_LAMBDA_PER_SIGMA["deblur"] * 0.01 + classic.TV_LAMBDA_FLOOR)
    assert s["iters"] == 150 and s["sigma_source"] == "given" and s["operator_norm_sq"] == pytest.approx(1.0, abs=0.05)


def test_tv_denoises(rgb, gray):
    for x in (rgb, gray):
        y = noisy(x, 0.1)
        res = classic.tv(y, Identity(), iters=100)
        assert psnr(res.image, x) > psnr(y, x) + 3.5
        assert res.settings["sigma"] == pytest.approx(0.1, rel=0.2)  # estimated


@pytest.mark.parametrize("task", ["sr", "inpaint", "demosaic", "deblur-valid"])
def test_tv_improves_on_the_operators_initial_estimate(rgb, task):
    op, sigma = {
        "sr": (Downsample(2, "bicubic"), 0.0),
        "inpaint": (Mask(random_mask((1, 48, 48))), 0.0),
        "demosaic": (Mosaic("RGGB"), 0.0),
        "deblur-valid": (Blur(gaussian_kernel(), "valid"), 0.01),
    }[task]
    y = op.forward(rgb)
    y = noisy(y, sigma) if sigma else y
    res = classic.tv(y, op, iters=150)
    assert res.image.shape == rgb.shape
    assert res.settings["lam"] > 0
    assert psnr(res.image, rgb) > psnr(op.initial_estimate(y), rgb) + 0.5


@pytest.mark.parametrize("boundary", ["circular", "valid"])
def test_observation_returns_the_degraded_image(rgb, boundary):
    op = Blur(gaussian_kernel(), boundary)
    y = noisy(op.forward(rgb), 0.05)
    res = classic.observation(y, op, reference=rgb)
    assert res.image.shape == rgb.shape
    torch.testing.assert_close(res.image, op.initial_estimate(y).clamp(0, 1))
    assert res.history[0]["psnr"] == pytest.approx(psnr(res.image, rgb), abs=1e-3)
    with pytest.raises(ValueError, match="observation"):
        classic.observation(y[..., ::2, ::2], Downsample(2, "bicubic"))


def test_bicubic_beats_nearest(rgb):
    op = Downsample(2, "bicubic")
    y = op.forward(rgb)
    res = classic.bicubic(y, op)
    nearest = F.interpolate(y, scale_factor=2, mode="nearest")
    assert res.image.shape == rgb.shape
    assert psnr(res.image, rgb) > psnr(nearest, rgb) + 2.0
    assert res.settings["factor"] == 2 and len(res.history) == 1
    # blur-then-decimate: only the factor is used
    comp = Compose(Blur(gaussian_kernel(5, 1.0), "circular"), Downsample(4, "point"))
    assert classic.bicubic(comp.forward(rgb), comp).image.shape == rgb.shape


def test_bilinear_demosaic_beats_nearest(rgb):
    op = Mosaic("GRBG")
    y = op.forward(rgb)
    res = classic.bilinear(y, op)
    known = op.adjoint(torch.ones_like(y))
    nearest = nearest_fill(op.adjoint(y), known)
    assert psnr(res.image, rgb) > psnr(nearest, rgb) + 3.0
    assert torch.equal(op.forward(res.image), y.clamp(0, 1))  # samples kept
    torch.testing.assert_close(res.image, op.initial_estimate(y).clamp(0, 1))


def test_biharmonic_beats_mean_fill(rgb, gray):
    for x, mask in ((rgb, random_mask((1, 48, 48))), (gray, random_mask((1, 48, 48), seed=2)),
                    (rgb, random_mask((3, 48, 48), seed=3))):  # per-channel holes
        op = Mask(mask)
        y = op.forward(x)
        res = classic.biharmonic(y, op)
        mean_filled = op.initial_estimate(y)
        assert psnr(res.image, x) > psnr(mean_filled, x) + 8.0
        assert torch.allclose(res.image * op.mask, y, atol=1e-6)


@pytest.mark.parametrize("method, op", [
    ("wiener", Mask(torch.ones(48, 48))), ("bicubic", Identity()), ("bilinear", Blur(torch.ones(3, 3) / 9)),
    ("biharmonic", Mosaic()), ("wiener", Downsample(2)),
])
def test_wrong_task_raises_a_clear_error(rgb, method, op):
    with pytest.raises(ValueError, match=f"{method}.*task"):
        getattr(classic, method)(rgb, op)


def test_ctrl_c_returns_the_current_estimate(rgb):
    y = noisy(rgb, 0.1)

    def interrupt_at_5(t, x, info):
        if t == 5:
            raise KeyboardInterrupt

    res = classic.tv(y, Identity(), callback=interrupt_at_5)
    assert res.interrupted and len(res.history) == 5 and res.iters == 5
    assert res.image.shape == rgb.shape and bool(torch.isfinite(res.image).all())
    assert psnr(res.image, rgb) > psnr(y, rgb)

    stopped = classic.tv(y, Identity(), callback=lambda t, x, info: t == 3)
    assert not stopped.interrupted and len(stopped.history) == 3


def test_unused_parameters_are_recorded_and_runs_are_deterministic(rgb):
    op = Blur(gaussian_kernel(), "circular")
    y = noisy(op.forward(rgb), 0.01)
    a = classic.tv(y, op, iters=20, seed=3, not_a_param=1)
    b = classic.tv(y, op, iters=20, seed=3)
    assert a.settings["ignored_params"] == ["not_a_param"]
    assert torch.equal(a.image, b.image)


def test_progress_writes_status_lines_when_stderr_is_not_a_terminal(monkeypatch, capsys):
    """A long fit run under nohup reports in its log: iteration, speed, PSNR and ETA lines at
    the set interval (here every iteration), none when progress is off."""
    from deepprior.methods import base

    torch.manual_seed(0)
    x = torch.rand(1, 1, 24, 24)
    y = x + 0.05 * torch.randn_like(x)
    monkeypatch.setattr(base.Progress, "LINE_EVERY_SECONDS", 0.0)
    classic.tv(y, Identity(), sigma=0.05, iters=4, reference=x, device="cpu", progress=False)
    assert capsys.readouterr().err == ""
    classic.tv(y, Identity(), sigma=0.05, iters=4, reference=x, device="cpu", progress=True)
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(",")[0] for line in lines] == [f"tv: iteration {t}/4" for t in range(1, 5)]
    assert all(" s/it" in line and " dB" in line and "ETA" in line for line in lines)
    assert lines[-1].endswith("ETA 0.0 min")
