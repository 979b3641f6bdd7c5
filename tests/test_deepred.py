"""DeepRED (DIP + RED by ADMM): the x- and u-updates of Algorithm 1, the denoiser interval, the
concurrent mode against the serial one, the shrinking constraint gap, every task, clear errors —
on 32²–48² images with tiny networks (1 thread)."""
import math

import pytest
import torch

from deepprior.methods import get_method
from deepprior.methods.deepred import DEEPRED_PRESETS, _ADMM, _proximity_divisor, deepred
from deepprior.operators import Blur, Downsample, Identity, Mask, Mosaic
from helpers import TINY_HOURGLASS as TINY, noisy, psnr

pytestmark = pytest.mark.usefixtures("one_thread")


class CountingDenoiser:
    """f(x) = 0.5·x + 0.25 (cheap, deterministic), remembering every input it was given."""

    name = "counting"

    def __init__(self):
        self.inputs = []

    def __call__(self, x, sigma):
        self.inputs.append(x.clone())
        return 0.5 * x + 0.25


def test_registered_and_table1_presets():
    info = get_method("deepred")
    assert set(info.tasks) == {"denoise", "deblur", "sr", "inpaint", "demosaic"}
    p = DEEPRED_PRESETS
    assert (p["denoise"].sigma_p, p["denoise"].lr, p["denoise"].denoiser, p["denoise"].sigma_f,
            p["denoise"].lam, p["denoise"].mu, p["denoise"].iters) == (0.033, 0.008, "nlm", 3.0, 0.5, 0.5, 6000)
    assert (p["sr4"].lam, p["sr4"].mu, p["sr4"].denoiser, p["sr4"].iters, p["sr8"].iters) == (0.05, 0.06, "bm3d", 2000, 4000)
    assert (p["deblur"].lr, p["deblur"].lam, p["deblur"].mu, p["deblur"].iters) == (0.004, 0.02, 0.04, 30000)
    assert {pre.ema for pre in p.values()} == {0.99}


@pytest.mark.parametrize("solver", ["fixed-point", "sd"])
def test_x_and_u_updates_are_eq11_eq12_and_the_multiplier_rule(solver):
    g = torch.Generator().manual_seed(0)
    x0, out = torch.rand(1, 3, 8, 8, generator=g), torch.rand(1, 3, 8, 8, generator=g)
    f = CountingDenoiser()
    lam, mu, c = 0.5, 0.3, 0.9
    admm = _ADMM(x0, f, 3 / 255, lam, mu, interval=1, solver=solver, inner=1, step=c, pool=None)
    admm.u = torch.full_like(x0, 0.1)
    admm.start(1)
    admm.update(1, out)
    fx = 0.5 * x0 + 0.25
    if solver == "fixed-point":   # eq. (11)
        x1 = (lam * fx + mu * (out + 0.1)) / (lam + mu)
    else:                          # eq. (12)
        x1 = x0 - c * (lam * (x0 - fx) + mu * (x0 - out - 0.1))
    torch.testing.assert_close(admm.x, x1)
    torch.testing.assert_close(admm.u, 0.1 - x1 + out)   # u ← u − x + T
    # eq. (7)'s penalty divided by N (default) or by the divisor given (M = N/16 on SR ×4)
    torch.testing.assert_close(admm.loss(out), mu * (out - (x1 - admm.u)).square().sum() / x0.numel())
    admm16 = _ADMM(x0, f, 3 / 255, lam, mu, 1, solver, 1, c, None, divisor=x0.numel() / 16)  # SR ×4
    torch.testing.assert_close(admm16.loss(out), 16 * mu * (out - x0).square().mean())


def test_x_minus_u_is_a_step_of_lambda_over_mu_towards_the_denoised_output():
    """With the network output T held fixed, the rounds converge to x = T and
    u = (λ/μ)(T − f(T)), so the x − u that the authors' SR/deblurring code returns is
    T + (λ/μ)(f(T) − T) — recorded beside x at the end of a fit."""
    g = torch.Generator().manual_seed(1)
    x0, out = torch.rand(1, 3, 8, 8, generator=g), torch.rand(1, 3, 8, 8, generator=g)
    lam, mu = 0.05, 0.06
    admm = _ADMM(x0, CountingDenoiser(), 5 / 255, lam, mu, interval=1, solver="fixed-point", inner=1,
                 step=1.0, pool=None)
    for t in range(1, 400):
        admm.start(t)
        admm.update(t, out)
    fT = 0.5 * out + 0.25
    torch.testing.assert_close(admm.x, out)
    torch.testing.assert_close(admm.u, lam / mu * (out - fT))
    record = admm.record()
    torch.testing.assert_close(record["x_minus_u"], out + lam / mu * (fT - out))
    assert not torch.allclose(record["x_minus_u"], out, atol=1e-2)  # a real step, not the output


def test_reg_ramp_raises_lambda_and_mu_only_while_the_fit_is_above_the_threshold():
    """The authors' denoising-code ramp: a round whose PSNR(H T, y) exceeds the threshold adds
    the increment to λ and μ and the step to the threshold; other rounds change nothing."""
    g = torch.Generator().manual_seed(2)
    y = torch.rand(1, 1, 16, 16, generator=g)
    ramp = {"threshold": 30.0, "threshold_step": 1.0, "increment": 0.25}
    admm = _ADMM(y.clone(), CountingDenoiser(), 3 / 255, 0.5, 0.5, interval=1, solver="fixed-point",
                 inner=1, step=1.0, pool=None, ramp=ramp, fit=(y, Identity(), y.numel()))
    close = y + 0.01 * torch.randn(y.shape, generator=g)   # PSNR ≈ 40 dB > 30, then > 31
    far = y + 0.1 * torch.randn(y.shape, generator=g)      # PSNR ≈ 20 dB
    for t, (out, lam) in enumerate([(close, 0.75), (close, 1.0), (far, 1.0)], start=1):
        admm.start(t)
        info = admm.update(t, out)
        assert info["lam"] == info["mu"] == admm.lam == admm.mu == pytest.approx(lam)
    assert admm.ramp_threshold == 32.0 and admm.ramp_fired == 2
    assert admm.record()["admm"]["final_lam"] == pytest.approx(1.0)


def test_reg_ramp_in_a_denoising_fit_is_recorded_and_checked_on_resume(gray, tmp_path):
    y = noisy(gray[..., :32, :32], 25 / 255)
    base = dict(iters=6, denoiser="tv", interval=2, net=TINY, seed=0, precision="fp32")
    low = {"threshold": 0.0}  # fires every round
    full = deepred(y, Identity(), reg_ramp=low, **base)
    assert full.settings["reg_ramp"] == {"threshold": 0.0, "threshold_step": 0.01, "increment": 0.03}
    assert full.extras["runs"][-1]["admm"]["ramp_fired"] == 6
    assert full.extras["runs"][-1]["admm"]["final_mu"] == pytest.approx(DEEPRED_PRESETS["denoise"].mu + 6 * 0.03)
    assert deepred(y, Identity(), reg_ramp=False, **base).settings["reg_ramp"] is None
    path = tmp_path / "fit.pt"
    deepred(y, Identity(), reg_ramp=low, checkpoint=path, callback=lambda t, x, info: t == 3, **base)
    with pytest.raises(ValueError, match="DeepRED settings"):
        deepred(y, Identity(), checkpoint=path, **base)
    resumed = deepred(y, Identity(), reg_ramp=low, checkpoint=path, **base)
    assert torch.equal(resumed.image, full.image)
    assert resumed.extras["runs"][-1]["admm"]["final_lam"] == full.extras["runs"][-1]["admm"]["final_lam"]
    with pytest.raises(ValueError, match="reg_ramp"):
        deepred(y, Identity(), reg_ramp={"treshold": 20}, **base)


def test_reg_ramp_threshold_follows_the_noise_level_and_is_on_by_default_only_for_denoising(gray):
    """True: the authors' 20 dB at σ = 25, moved with the noise's PSNR (−6.02 dB when σ doubles;
    σ estimated from y when not given); 'authors': 20 dB whatever σ; the 'denoise' preset ramps
    by default, the others do not."""
    clean = gray[..., :32, :32]
    base = dict(iters=1, denoiser="tv", net=TINY, seed=0, precision="fp32")
    y25, y50 = noisy(clean, 25 / 255), noisy(clean, 50 / 255)

    def threshold(y, op=Identity(), **kw):
        ramp = deepred(y, op, **base, **kw).settings["reg_ramp"]
        return None if ramp is None else ramp["threshold"]

    assert threshold(y25, sigma=25 / 255) == 20.0  # the preset's default, exactly the authors'
    assert threshold(y50, sigma=50 / 255) == pytest.approx(20 - 20 * math.log10(2))
    assert threshold(y50, sigma=50 / 255, reg_ramp="authors") == 20.0
    assert threshold(y50, sigma=50 / 255, reg_ramp={"threshold": 15}) == 15.0
    assert threshold(y50) == pytest.approx(20 - 20 * math.log10(2), abs=1.0)  # σ estimated from y
    assert threshold(y25, sigma=25 / 255, reg_ramp=False) is None
    blur = Blur(torch.ones(3, 3) / 9, boundary="circular")
    assert threshold(blur.forward(clean), blur, sigma=0.01) is None  # deblurring: off unless asked


def test_denoising_stops_automatically_by_default_the_other_presets_run_their_budget(gray):
    """The 'denoise' preset's stop is DIP's 'auto' — the discrepancy rule with σ, ES-WMV
    without; an explicit rule wins; the other presets run their iterations."""
    clean = gray[..., :32, :32]
    y = noisy(clean, 25 / 255)
    kw = dict(iters=3, denoiser="tv", net=TINY, seed=0, precision="fp32")
    assert deepred(y, Identity(), sigma=25 / 255, **kw).settings["stop"] == "discrepancy"
    assert deepred(y, Identity(), **kw).settings["stop"] == "wmv"
    assert deepred(y, Identity(), sigma=25 / 255, stop="fixed", **kw).settings["stop"] == "fixed"
    blur = Blur(torch.ones(3, 3) / 9, boundary="circular")
    assert deepred(blur.forward(clean), blur, sigma=0.01, **kw).settings["stop"] == "fixed"


def test_clip_x_keeps_the_admm_image_in_range():
    """The authors' code clips x to [0, 1] after each x-update; ``clip_x`` does the same."""
    x0, out = torch.full((1, 1, 4, 4), 0.9), torch.full((1, 1, 4, 4), 1.6)
    for clip, expected in ((False, 1.15), (True, 1.0)):  # eq. (11): (0.5·f(0.9) + 0.5·1.6) / 1 = 1.15
        admm = _ADMM(x0, CountingDenoiser(), 3 / 255, 0.5, 0.5, interval=1, solver="fixed-point", inner=1,
                     step=1.0, pool=None, clip_x=clip)
        admm.start(1)
        admm.update(1, out)
        torch.testing.assert_close(admm.x, torch.full_like(x0, expected))


def test_proximity_mean_divides_by_observations_or_pixels(rgb):
    x0 = rgb[..., :32, :32]
    sr4, mask = Downsample(4), Mask(((torch.arange(32 * 32).reshape(32, 32) % 4) != 0).float())
    n = x0.numel()
    assert _proximity_divisor(sr4, x0, "observations") == n / 16      # eq. (7) × 2/M
    assert _proximity_divisor(sr4, x0, "pixels") == n                 # the authors' per-pixel mean
    assert _proximity_divisor(mask, x0, "observations") == 3 * n / 4
    assert _proximity_divisor(Identity(), x0, "observations") == _proximity_divisor(Identity(), x0, "pixels")
    y = sr4.forward(x0)
    kw = dict(iters=3, denoiser="tv", net=TINY, seed=0, precision="fp32")
    a, b = deepred(y, sr4, proximity_mean="observations", **kw), deepred(y, sr4, **kw)
    assert b.settings["proximity_mean"] == "pixels" and not torch.equal(a.image, b.image)  # the default
    with pytest.raises(ValueError, match="proximity_mean"):
        deepred(y, sr4, proximity_mean="mean", **kw)


def test_denoiser_runs_every_interval_rounds_on_the_previous_x(gray):
    f = CountingDenoiser()
    seen = []
    res = deepred(noisy(gray, 0.1), Identity(), iters=25, interval=10, denoiser=f, net=TINY, seed=0,
                  callback=lambda t, x, info: seen.append(t) and False)
    assert len(f.inputs) == 3  # rounds 1, 11, 21
    assert res.extras["runs"][0]["admm"]["denoiser_calls"] == 3
    torch.testing.assert_close(f.inputs[0], noisy(gray, 0.1).clamp(0, 1))  # x₀ = y (clipped)
    assert not torch.equal(f.inputs[1], f.inputs[0])
    assert res.settings["interval"] == 10 and res.settings["denoiser"] == "counting"


def test_concurrent_mode_gives_the_serial_result(rgb):
    y = noisy(rgb, 25 / 255)
    kw = dict(iters=12, interval=3, denoiser="tv", net=TINY, seed=3, precision="fp32")
    serial = deepred(y, Identity(), **kw)
    threaded = deepred(y, Identity(), concurrent=True, **kw)
    assert torch.equal(serial.image, threaded.image)
    assert torch.equal(serial.extras["x"], threaded.extras["x"])
    assert threaded.settings["concurrent"] and not serial.settings["concurrent"]


def test_constraint_gap_shrinks(gray):
    y = noisy(gray, 0.05)
    res = deepred(y, Identity(), iters=200, interval=5, denoiser="tv", lr=0.01, sigma_p=0.0,
                  net={"n_down": (16, 32, 64), "n_skip": 4}, seed=0)
    gaps = [h["admm_gap"] for h in res.history if "admm_gap" in h]
    assert len(gaps) == 200
    assert sum(gaps[-10:]) / 10 < 0.3 * sum(gaps[:10]) / 10
    assert res.extras["runs"][0]["admm"]["final_gap"] == gaps[-1]


def test_denoising_gains_clearly_over_the_noisy_image(rgb):
    y = noisy(rgb, 0.1)
    res = deepred(y, Identity(), iters=150, denoiser="tv", sigma_f=10, interval=1, lr=0.01, sigma_p=1 / 30,
                  ema=None, net={"n_down": (16, 32, 64), "n_skip": 4}, seed=0)
    assert psnr(res.image, rgb) > psnr(y, rgb) + 2  # measured 20.81 → 23.32 dB


@pytest.mark.parametrize("case", ["sr4", "sr8", "deblur", "inpaint", "demosaic"])
def test_every_task_runs(case, rgb):
    op = {"sr4": Downsample(4, "lanczos2"), "sr8": Downsample(8, "bicubic"),
          "deblur": Blur(torch.ones(5, 5) / 25, "valid"), "inpaint": Mask(torch.rand(48, 48) > 0.5),
          "demosaic": Mosaic("RGGB")}[case]
    res = deepred(op.forward(rgb), op, iters=3, denoiser="tv", net=TINY, seed=0)
    assert res.image.shape == rgb.shape and torch.isfinite(res.image).all()
    assert res.settings["deepred_preset"] == case
    assert res.settings["ema"] == 0.99  # §3.2: DIP's output smoothing in every DeepRED test
    assert res.extras["x"].shape == rgb.shape


def test_deblur_cpu_preset_is_the_whitened_schedule_with_a_fixed_budget(rgb):
    op = Blur(torch.ones(5, 5) / 25, "circular")
    y = noisy(op.forward(rgb), 2 / 255)
    kw = dict(iters=4, denoiser="tv", interval=2, net=TINY, seed=0)
    cpu = deepred(y, op, sigma=2 / 255, preset="deblur-cpu", **kw)
    assert (cpu.settings["whiten"], cpu.settings["stop"], cpu.settings["ema"]) == (0.03, "fixed", 0.99)
    assert (cpu.settings["lam"], cpu.settings["mu"]) == (0.3, 0.6)  # Table 1's λ, μ × 15
    assert cpu.extras["stop_iter"] == 4
    spelled = deepred(y, op, sigma=2 / 255, preset="deblur", whiten=0.03, lam=0.3, mu=0.6, **kw)
    torch.testing.assert_close(cpu.image, spelled.image, rtol=0, atol=0)
    # the discrepancy rule on request: a threshold every fit passes at once stops at iteration 1
    early = deepred(y, op, sigma=2 / 255, preset="deblur-cpu", stop="discrepancy", tau=1e6, **kw)
    assert (early.settings["stop"], early.extras["stop_iter"]) == ("discrepancy", 1)
    assert DEEPRED_PRESETS["deblur-cpu"].iters == 4000
    paper = deepred(y, op, **kw)  # Table 1's row: plain data term, fixed budget
    assert (paper.settings["deepred_preset"], paper.settings["whiten"], paper.settings["stop"]) == ("deblur", None, "fixed")
    with pytest.raises(ValueError, match="blur operators"):
        deepred(rgb, Identity(), preset="deblur-cpu", iters=1, net=TINY)


def test_clear_errors(gray):
    with pytest.raises(ValueError, match="preset"):
        deepred(gray, Identity(), preset="sr16")
    with pytest.raises(ValueError, match="x_solver"):
        deepred(gray, Identity(), x_solver="newton")
    with pytest.raises(ValueError, match="interval"):
        deepred(gray, Identity(), interval=0)
    with pytest.raises(ValueError, match="mu"):
        deepred(gray, Identity(), mu=0)
    with pytest.raises(ValueError, match="unknown denoiser"):
        deepred(gray, Identity(), denoiser="bm4d")
    with pytest.raises(ValueError, match="8-bit"):
        deepred(gray, Identity(), sigma_f=1000)


def test_x_init_warm_starts_the_admm_image(rgb):
    op = Blur(torch.ones(3, 3) / 9, "circular")
    y = noisy(op.forward(rgb), 2 / 255)
    f = CountingDenoiser()
    given = torch.full_like(rgb, 0.3)
    deepred(y, op, iters=1, denoiser=f, x_init=given, net=TINY, seed=0)
    torch.testing.assert_close(f.inputs[0], given)  # f(x₀) sees the given start
    f.inputs.clear()
    res = deepred(y, op, iters=1, denoiser=f, x_init="red", net=TINY, seed=0)
    assert res.settings["x_init"] == "red" and res.settings["x_init_seconds"] > 0
    assert psnr(f.inputs[0], rgb) > psnr(y, rgb)  # RED's estimate, sharper than y
    with pytest.raises(ValueError, match="x_init"):
        deepred(y, op, x_init="bicubic")
