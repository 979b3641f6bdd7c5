"""The large-image part of `deepprior bench speed`: tiled DAE denoising gains and has no seams."""
import pytest

from deepprior.bench.speed import large_image_denoise

pytestmark = pytest.mark.usefixtures("one_thread")


def test_tiled_denoising_of_a_large_image_has_no_seams():
    res = large_image_denoise(megapixels=0.03, tile=128, seam_size=200, seam_tile=128, log=lambda *a: None)
    big, seams = res["large"], res["seams"]
    assert big["height"] * big["width"] == pytest.approx(30000, rel=0.02)
    assert big["psnr_denoised"] > big["psnr_noisy"] + 5
    assert abs(seams["psnr_difference"]) < 0.01 and seams["max_abs_difference"] < 1e-2


def test_deepred_concurrency_times_both_modes():
    from deepprior.bench.speed import deepred_concurrency

    r = deepred_concurrency(32, channels=1, precision="fp32", n=10, log=lambda *_: None)
    assert r["serial"] > 0 and r["concurrent"] > 0
    assert r["speedup"] == pytest.approx(r["serial"] / r["concurrent"])


def test_dip_preset_steps_time_every_distinct_network():
    from deepprior.bench.speed import DIP_NETWORK_PRESETS, dip_preset_steps
    from deepprior.nets.hourglass import PRESETS

    rows = dip_preset_steps(32, channels=1, log=lambda *_: None)
    assert set(DIP_NETWORK_PRESETS) <= set(PRESETS)
    assert [(r["preset"], r["precision"]) for r in rows] == [
        (p, q) for p in DIP_NETWORK_PRESETS for q in ("fp32", "bf16")]
    assert all(r["seconds_per_iter"] >= 0 and r["setup_seconds"] > 0 for r in rows)


def test_dip_step_profile_splits_the_step_into_convolutions_and_overheads():
    from deepprior.bench.speed import _PROFILE_CATEGORIES, dip_step_profile

    r = dip_step_profile(32, channels=1, precision="fp32", steps=2, log=lambda *_: None)
    assert set(r["fraction"]) == {name for name, _ in _PROFILE_CATEGORIES} | {"other"}
    assert sum(r["fraction"].values()) == pytest.approx(1.0)
    # the categories are disjoint top-level ops inside the profiled steps' wall time
    assert sum(v for k, v in r["ms_per_step_by_category"].items() if k != "other") <= r["ms_per_step"] * 1.02
    assert r["fraction"]["convolution"] > 0.1  # the network's convolutions ran and were seen
    assert r["fraction"]["optimizer (Adam)"] > 0 and r["fraction"]["batch norm"] > 0
