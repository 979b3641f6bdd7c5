"""Checkpoint/resume inside a DIP or DeepRED fit (methods/checkpoint.py): a fit stopped and
resumed from its checkpoint gives exactly the uninterrupted result; mismatched settings are
refused; the file goes once the result is complete."""

import os
import signal

import pytest
import torch

from deepprior.methods.deepred import deepred
from deepprior.methods.dip import dip
from deepprior.operators import Downsample, Identity
from helpers import noisy, TINY_HOURGLASS

pytestmark = pytest.mark.usefixtures("one_thread")


def _stop_at(n):
    return lambda t, x, info: t == n


def _corrupt_at(*steps):
    """A step hook that ruins the parameters after the given steps: the next loss jumps and
    the fit backtracks (restoring the checkpointed copy the resumed run must also hold)."""
    def hook(t, net, opt):
        if t in steps:
            with torch.no_grad():
                for p in net.parameters():
                    p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(t)) * 5)
    return hook


def _same_history(a, b):
    drop = ("seconds",)
    return [{k: v for k, v in h.items() if k not in drop} for h in a] == \
           [{k: v for k, v in h.items() if k not in drop} for h in b]


@pytest.mark.parametrize("kw", [
    dict(stop="wmv", wmv_window=3, wmv_patience=50),  # EMA, ES-WMV window, σ_p noise generator
    dict(stop="fixed", ema=None, restarts=2, step_hook=_corrupt_at(5, 11)),  # backtracks, restarts
])
def test_dip_resumed_fit_equals_uninterrupted(kw, gray, tmp_path):
    y = noisy(gray[..., :24, :24], 0.1)
    ref = gray[..., :24, :24]
    base = dict(iters=14, net=TINY_HOURGLASS, seed=3, reference=ref, precision="fp32", **kw)
    full = dip(y, Identity(), **base)
    path = tmp_path / "fit.pt"
    first = dip(y, Identity(), checkpoint=path, callback=_stop_at(9), **base)
    assert first.extras["checkpoint"]["kept"] and path.exists()
    assert first.iters == 9
    second = dip(y, Identity(), checkpoint=path, **base)
    assert second.extras["checkpoint"]["resumed_from"]["iter"] == 9
    assert torch.equal(second.image, full.image)
    assert _same_history(second.history, full.history)
    assert [r["backtracks"] for r in second.extras["runs"]] == [r["backtracks"] for r in full.extras["runs"]]
    assert second.extras["runs"][-1]["wmv"] == full.extras["runs"][-1]["wmv"]
    assert not path.exists()  # complete: removed
    if "step_hook" in kw:  # backtracked before and after the resume point, in both restarts
        assert [r["backtracks"] for r in full.extras["runs"]] == [2, 2]


def test_dip_resumes_after_a_finished_restart(gray, tmp_path):
    y = noisy(gray[..., :24, :24], 0.1)
    base = dict(iters=6, net=TINY_HOURGLASS, seed=0, restarts=2, stop="fixed", precision="fp32")
    full = dip(y, Identity(), **base)
    path = tmp_path / "fit.pt"
    # stop in the second restart (history iterations run on across restarts: 6 + 2)
    first = dip(y, Identity(), checkpoint=path, callback=_stop_at(8), **base)
    assert len(first.extras["runs"]) == 2 and first.extras["runs"][-1]["stop_reason"] == "callback"
    second = dip(y, Identity(), checkpoint=path, **base)
    assert torch.equal(second.image, full.image)
    assert [h["iter"] for h in second.history] == list(range(1, 13))


def test_checkpoint_with_other_settings_is_refused(gray, tmp_path):
    y = noisy(gray[..., :24, :24], 0.1)
    path = tmp_path / "fit.pt"
    dip(y, Identity(), iters=6, net=TINY_HOURGLASS, stop="fixed", checkpoint=path, callback=_stop_at(3))
    with pytest.raises(ValueError, match="settings"):
        dip(y, Identity(), iters=6, net=TINY_HOURGLASS, stop="fixed", lr=0.02, checkpoint=path)
    with pytest.raises(ValueError, match="observation"):
        dip(y.flip(-1), Identity(), iters=6, net=TINY_HOURGLASS, stop="fixed", checkpoint=path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a fit checkpoint"):
        dip(y, Identity(), iters=6, net=TINY_HOURGLASS, stop="fixed", checkpoint=path)


def test_sigterm_is_deferred_saved_and_reported_as_interrupted(gray, tmp_path):
    y = noisy(gray[..., :24, :24], 0.1)
    base = dict(iters=10, net=TINY_HOURGLASS, seed=1, stop="fixed", precision="fp32")
    full = dip(y, Identity(), **base)
    path = tmp_path / "fit.pt"

    def kill_at_4(t, x, info):
        if t == 4:
            os.kill(os.getpid(), signal.SIGTERM)
        return False

    first = dip(y, Identity(), checkpoint=path, checkpoint_every=1e9, callback=kill_at_4, **base)
    assert first.interrupted and path.exists() and first.iters == 4
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored
    second = dip(y, Identity(), checkpoint=path, **base)
    assert torch.equal(second.image, full.image) and not path.exists()


def test_deepred_resumed_fit_equals_uninterrupted(rgb, tmp_path):
    x = rgb[..., :32, :32]
    op = Downsample(4, "lanczos2")
    y = op.forward(x)
    base = dict(iters=8, denoiser="tv", interval=3, net=TINY_HOURGLASS, seed=0, precision="fp32",
                reference=x)
    full = deepred(y, op, **base)
    path = tmp_path / "fit.pt"
    deepred(y, op, checkpoint=path, callback=_stop_at(5), **base)
    with pytest.raises(ValueError, match="DeepRED settings"):
        deepred(y, op, checkpoint=path, **{**base, "lam": 0.5})
    with pytest.raises(ValueError, match="DeepRED settings"):
        deepred(y, op, checkpoint=path, **{**base, "denoiser_options": {"weight_factor": 2.0}})
    second = deepred(y, op, checkpoint=path, **base)
    assert torch.equal(second.image, full.image) and torch.equal(second.extras["x"], full.extras["x"])
    assert second.extras["runs"][-1]["admm"]["denoiser_calls"] == full.extras["runs"][-1]["admm"]["denoiser_calls"]


def test_periodic_saves_survive_a_hard_stop(gray, tmp_path):
    """A stop the loop does not see coming (an exception mid-iteration, as a killed process):
    the last periodic save (every iteration here) is where the next call resumes, exactly."""
    y = noisy(gray[..., :24, :24], 0.1)
    base = dict(iters=10, net=TINY_HOURGLASS, seed=2, stop="fixed", precision="fp32")
    full = dip(y, Identity(), **base)
    path = tmp_path / "fit.pt"

    def crash_at_7(t, x, info):
        if t == 7:
            raise RuntimeError("killed")
        return False

    with pytest.raises(RuntimeError, match="killed"):
        dip(y, Identity(), checkpoint=path, checkpoint_every=0, callback=crash_at_7, **base)
    second = dip(y, Identity(), checkpoint=path, **base)
    assert second.extras["checkpoint"]["resumed_from"]["iter"] == 6
    assert torch.equal(second.image, full.image) and not path.exists()
