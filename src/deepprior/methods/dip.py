"""Deep Image Prior: fit a randomly initialised generator to the one degraded image.

Ulyanov, Vedaldi & Lempitsky, "Deep Image Prior", IJCV 128:1867–1888, 2020, eq. (2)::

    θ* = argmin_θ ‖A(f_θ(z)) − y‖²,   x* = f_θ*(z)

with ``A`` any operator of :mod:`deepprior.operators` (denoising: identity, eq. 3–4;
super-resolution: Lanczos2 decimation, eq. 5; inpainting: the mask, eq. 6; deblurring and
demosaicking through ``Blur`` and ``Mosaic``). The loop, top to bottom, as in §4:

1. z fixed: U(0, 0.1) noise with C channels, a meshgrid (Fig. 21) or a guide image (§3.7);
   made on a canvas padded to the network's multiple, the output cropped back.
2. Each step: z + σ_p·n (n ~ N(0, I), "noise-based regularization"), forward under the
   compute policy (bf16 autocast + channels_last where the CPU/GPU has bf16 units), the data
   term in fp32 averaged over observed entries, backward, Adam (fp32 state).
3. Backtracking (§4 "the optimization process tends to destabilize…"): when the loss jumps
   by more than ``backtrack_factor`` over the last accepted loss (or is not finite), the
   parameters *and* Adam's state return to that accepted iterate, the step computed at the
   bad parameters is skipped, and the learning rate is multiplied by
   ``backtrack_lr_factor``. (The reference notebook compares on every iteration *except*
   multiples of 100, restores only the weights and then still applies the optimizer step with
   the gradient computed at the bad weights.)
4. Exponential moving average of the outputs (γ = 0.99 for denoising, §4) and averaging of
   several restarts (§3.1: 29.22 → 30.43 → 31.00 dB).
5. Stopping: fixed iterations (paper), the discrepancy principle when σ is known, or the
   windowed-moving-variance rule ES-WMV (Wang et al.) for blind use. Both detectors also run
   in observe mode, so one fixed-iteration run reports where each would have stopped.

References
----------
.. [1] D. Ulyanov, A. Vedaldi and V. Lempitsky, "Deep Image Prior", IJCV 128, 2020, §2–4.
.. [2] H. Wang, T. Li, Z. Zhuang, T. Chen, H. Liang and J. Sun, "Early Stopping for Deep
   Image Prior", arXiv:2112.06074 (2021), TMLR 2023 — ES-WMV, window W = 100, patience
   P = 1000 in the authors' code.
.. [3] V. A. Morozov, "On the solution of functional equations by the method of
   regularization", Soviet Math. Dokl. 7, 1966 — the discrepancy principle.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..compute import get_compute
from ..nets.hourglass import (Preset, build_net, center_crop, get_preset, padded_size, reflect_pad,
                              with_arch)
from ..operators import TASKS, downsample_factor
from .base import Progress, Result, _psnr_float, register, seed_everything
from .checkpoint import DEFAULT_EVERY, FitCheckpoint, tensor_digest

__all__ = ["dip", "DEFAULT_PRESET", "STOP_RULES", "WMV_WINDOW", "WMV_PATIENCE", "BLIND_BUDGET", "replay_wmv"]

# Preset per task (nets/hourglass.PRESETS; §4). Inpainting: 'inpaint-text' (Fig. 11) is the
# default; Bernoulli masks → 'reconstruction' (Table 3), large holes → 'inpaint-hole'.
DEFAULT_PRESET = {"denoise": "denoise", "sr": "sr", "inpaint": "inpaint-text", "deblur": "deblur",
                  "demosaic": "demosaic"}
STOP_RULES = ("auto", "fixed", "discrepancy", "wmv")
# ES-WMV defaults of Wang et al.'s code (buffer_size = 100, patience = 1000).
WMV_WINDOW, WMV_PATIENCE = 100, 1000
# Iteration cap of the automatic (ES-WMV) rule when `iters` is not given: the reference
# denoising notebook's budget for F16 (num_iter = 3000), so the rule, not the cap, decides.
BLIND_BUDGET = 3000
# §4 / reference notebook: backtrack when the PSNR w.r.t. the observation drops by > 5 dB,
# i.e. the data term grows by more than 10^(5/10).
BACKTRACK_FACTOR = 10 ** 0.5


# ----------------------------------------------------------------------------- monitors


class _Discrepancy:
    """Morozov's discrepancy principle: first iterate with ‖Ax − y‖²/M ≤ τσ².

    M counts the observed entries of y; at the true image E‖Ax − y‖²/M = σ² exactly, so
    τ = 1 stops when the fit is as close to y as the clean image is. Checked on the data term
    of the current (perturbed-input) output — the loss the optimiser sees, no extra cost.
    """

    def __init__(self, sigma: float | None, tau: float):
        self.threshold = None if not sigma else float(tau) * float(sigma) ** 2
        self.iter = None

    def update(self, t: int, loss: float) -> bool:
        if self.threshold is None or self.iter is not None:
            return False
        if loss <= self.threshold:
            self.iter = t
            return True
        return False


class _WindowedVariance:
    """ES-WMV: variance of the last W outputs, ``VAR_t = (1/W) Σ_i ‖x_i − x̄‖² / N``.

    Stops when VAR has not reached a new minimum for ``patience`` consecutive iterations;
    the selected iterate is the one at the minimum. Outputs are kept in a float16 ring
    buffer (W·N·2 bytes: 157 MB for W = 100 at 512×512 RGB); the window sum is kept in
    float64 (exact for float16 inputs) and the per-slot squared norms in a list, so one
    update costs O(N) instead of O(W·N).
    """

    def __init__(self, window: int, patience: int):
        if window < 2 or patience < 1:
            raise ValueError(f"wmv_window must be ≥ 2 and wmv_patience ≥ 1, got {window}, {patience}")
        self.window, self.patience = int(window), int(patience)
        self.buffer = None
        self.norms: list[float] = []
        self.total = None
        self.count = 0
        self.best_var, self.best_iter, self.wait = math.inf, None, 0
        self.detect_iter = None
        self.last_var = None

    def update(self, t: int, x: torch.Tensor) -> tuple[bool, bool]:
        """Add output ``x``; returns (new minimum, stop). Frozen once the rule has fired, so
        in observe mode ``best_iter`` is the iterate the rule would have returned."""
        if self.detect_iter is not None:
            return False, False
        xs = x.detach().reshape(-1).to(torch.float16)
        x64 = xs.double()
        if self.buffer is None:
            self.buffer = torch.empty((self.window, xs.numel()), dtype=torch.float16, device=xs.device)
            self.total = torch.zeros(xs.numel(), dtype=torch.float64, device=xs.device)
        slot = self.count % self.window
        if self.count >= self.window:
            self.total -= self.buffer[slot].double()
            self.norms[slot] = float(x64.square().sum())
        else:
            self.norms.append(float(x64.square().sum()))
        self.buffer[slot] = xs
        self.total += x64
        self.count += 1
        if self.count < self.window:
            return False, False
        n = xs.numel()
        var = (sum(self.norms) - float(self.total.square().sum()) / self.window) / (self.window * n)
        self.last_var = var
        if var < self.best_var:
            self.best_var, self.best_iter, self.wait = var, t, 0
            return True, False
        self.wait += 1
        if self.wait >= self.patience and self.detect_iter is None:
            self.detect_iter = t
            return False, True
        return False, False


# ----------------------------------------------------------------------------- helpers


class _Checkpoint:
    """Parameters + optimiser state of the last accepted iterate, in reused buffers."""

    def __init__(self, params: list[torch.Tensor], opt: torch.optim.Optimizer):
        self.params, self.opt = params, opt
        self.keys: list[tuple[int, str]] = []
        self.saved: list[torch.Tensor] = []

    def _live(self) -> tuple[list[tuple[int, str]], list[torch.Tensor]]:
        keys, tensors = [], []
        for i, p in enumerate(self.params):
            keys.append((i, "")), tensors.append(p.detach())
            for k, v in sorted(self.opt.state.get(p, {}).items()):
                if torch.is_tensor(v):
                    keys.append((i, k)), tensors.append(v)
        return keys, tensors

    def save(self) -> None:
        keys, tensors = self._live()
        if keys != self.keys:
            self.keys, self.saved = keys, [t.clone() for t in tensors]
        else:
            torch._foreach_copy_(self.saved, tensors)

    @torch.no_grad()
    def restore(self) -> None:
        keys, tensors = self._live()
        if keys != self.keys:  # the checkpoint predates the optimiser's first step
            for p in self.params:
                self.opt.state.pop(p, None)
            keys, tensors = self._live()
        torch._foreach_copy_(tensors, self.saved)


def _residual_weighting(operator, y_shape, observed: torch.Tensor, whiten: float | None):
    """The data term's weighting of the residual r = A(x) − y, and its noise gain.

    Returns ``(weigh, gain)``: ``weigh(r)`` multiplies r by the observation mask when some
    entries of y are unobserved, or — ``whiten=ε`` with a ``Blur`` — filters it by
    (HHᵀ + εI)^{-1/2} (Fourier-diagonal: exact for a circular blur, the circulant
    approximation on y's grid otherwise), so DIP fits ‖(HHᵀ + εI)^{-1/2}(Hx − y)‖². Same
    minimisers (a positive-definite weighting of the same residual), but plain gradients
    resolve frequency f at a rate ∝ |H(f)|², which leaves the fine detail a blur attenuates to
    the last of tens of thousands of iterations (DeepRED Table 1: 30000); whitening evens the
    rates out. ``gain`` = E‖weigh(n)‖²/(Mσ²) for white noise n of std σ: the discrepancy
    rule's threshold scales by it (1 without whitening).
    """
    if whiten is None:
        if bool(observed.all()):
            return None, 1.0
        mask = observed.float()
        return (lambda r: r * mask), 1.0
    eps = float(whiten)
    if not eps > 0:
        raise ValueError(f"whiten must be a positive ε, got {whiten}")
    if not hasattr(operator, "transfer_function"):
        raise ValueError(f"whiten= is for blur operators (deblurring), not {type(operator).__name__}")
    h, w = y_shape[-2:]
    filt = (operator.transfer_function(h, w).abs().square() + eps).rsqrt().to(torch.float32)
    # E‖F⁻¹[F n · filt]‖² / (Nσ²) = mean of filt² over the full (two-sided) frequency grid
    full = torch.cat((filt, filt[..., 1:(w + 1) // 2].flip(-1)), dim=-1) if w > 1 else filt
    gain = float(full.square().mean())

    def weigh(r: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft2(torch.fft.rfft2(r) * filt.to(r.device), s=(h, w))

    return weigh, gain


def _make_input(kind: str, channels: int, size: tuple[int, int], gen: torch.Generator, device,
                guide: torch.Tensor | None) -> torch.Tensor:
    """The fixed network input z on the padded canvas (§4: noise U(0, 1/10) or meshgrid)."""
    h, w = size
    if kind == "noise":
        return torch.rand((1, channels, h, w), generator=gen, device=device) * 0.1
    if kind == "meshgrid":  # Fig. 21: channel 0 varies along x, channel 1 along y, in [0, 1]
        ys = torch.arange(h, device=device, dtype=torch.float32) / max(h - 1, 1)
        xs = torch.arange(w, device=device, dtype=torch.float32) / max(w - 1, 1)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack((gx, gy))[None]
    if kind == "guide":
        if guide is None:
            raise ValueError("input='guide' needs guide=<image> (e.g. the flash image, §3.7)")
        return reflect_pad(torch.as_tensor(guide, dtype=torch.float32).to(device), h, w)
    raise ValueError(f"input must be 'noise', 'meshgrid' or 'guide', got {kind!r}")


def _resolve_preset(preset, task: str, operator) -> Preset:
    if isinstance(preset, Preset):
        return preset
    if preset is None:
        name = DEFAULT_PRESET[task]
        if task == "sr" and (downsample_factor(operator) or 0) >= 8:
            name = "sr8"  # §4: 8× super-resolution uses σ_p = 1/20 and 4000 iterations
        return get_preset(name)
    return get_preset(str(preset))


def _psnr_summary(trace: list[tuple[int, float, float]], marks: dict[str, int | None]) -> dict:
    """PSNR of the returned estimate along one run: best, last, and at each marked iteration."""
    if not trace:
        return {}
    by_iter = {t: (p, s) for t, p, s in trace}
    best_t, best_p, best_s = max(trace, key=lambda e: e[1])
    out = {"best": best_p, "best_iter": best_t, "best_seconds": best_s, "last": trace[-1][1],
           "last_iter": trace[-1][0]}
    for name, t in marks.items():
        out[name] = by_iter[t][0] if t in by_iter else None
    return out


def replay_wmv(series: dict, patience: int) -> dict | None:
    """ES-WMV replayed with another patience on a recorded ``wmv_series`` (the DIP benchmark
    protocols record one): the first sampled iteration at least ``patience`` after the last
    new variance minimum, the minimum's iteration and the PSNR there (the estimate the rule
    would return). Exact up to the series' sampling step; None when the rule would not have
    fired within the series."""
    best, best_iter = float("inf"), None
    for it, var in zip(series["iter"], series["var"]):
        if var < best:
            best, best_iter = var, it
        elif it - best_iter >= patience:
            return {"stop_iter": it, "min_iter": best_iter,
                    "psnr": series["psnr"][series["iter"].index(best_iter)]}
    return None


@dataclass
class _Config:
    iters: int
    lr: float
    sigma_p: float
    ema: float | None
    stop: str
    sigma: float | None
    tau: float
    wmv_window: int
    wmv_patience: int
    backtrack: bool
    backtrack_factor: float
    backtrack_lr_factor: float
    fused: bool
    noise_gain: float  # E‖weigh(n)‖²/(Mσ²) of the data term's residual weighting
    lr_decay: tuple[float, int] | None = None  # (γ, every): LR × γ every `every` iterations


@dataclass
class _RunState:
    """What survives a Ctrl-C: the current estimate of the current restart."""

    estimates: list[torch.Tensor] = field(default_factory=list)
    current: torch.Tensor | None = None


# ----------------------------------------------------------------------------- one fit


@dataclass
class _Loop:
    """The fitting loop's own variables: what a checkpoint stores besides the modules."""

    lr: float
    t: int = 0
    ema: torch.Tensor | None = None
    selected: torch.Tensor | None = None
    selected_iter: int | None = None
    accepted_loss: float | None = None
    backtracks: int = 0
    trace: list = field(default_factory=list)  # (iteration, PSNR, seconds) of the estimate


_LOOP_SCALARS = ("lr", "t", "selected_iter", "accepted_loss", "backtracks")
_WMV_FIELDS = ("buffer", "norms", "total", "count", "best_var", "best_iter", "wait", "detect_iter",
               "last_var")


def _to_device(obj, device):
    if torch.is_tensor(obj):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


def _fit_state(loop: _Loop, net, opt, ckpt, disc, wmv, gen, coupling, state: _RunState) -> dict:
    """Everything :func:`_fit` needs to continue after iteration ``loop.t`` (checkpoint.py)."""
    return {**{k: getattr(loop, k) for k in _LOOP_SCALARS},
            "trace": [list(e) for e in loop.trace], "ema": loop.ema, "selected": loop.selected,
            "current": state.current, "net": net.state_dict(), "opt": opt.state_dict(),
            "backtrack": None if ckpt is None else {"keys": [list(k) for k in ckpt.keys], "saved": ckpt.saved},
            "disc_iter": disc.iter, "wmv": {k: getattr(wmv, k) for k in _WMV_FIELDS},
            "gen": gen.get_state(), "coupling": None if coupling is None else coupling.state_dict()}


def _load_fit_state(saved: dict, loop: _Loop, net, opt, ckpt, disc, wmv, gen, coupling,
                    state: _RunState, device) -> None:
    saved = _to_device(saved, device)
    for k in _LOOP_SCALARS:
        setattr(loop, k, saved[k])
    loop.trace = [tuple(e) for e in saved["trace"]]
    loop.ema, loop.selected, state.current = saved["ema"], saved["selected"], saved["current"]
    net.load_state_dict(saved["net"])
    opt.load_state_dict(saved["opt"])
    if ckpt is not None and saved["backtrack"] is not None:
        ckpt.keys = [tuple(k) for k in saved["backtrack"]["keys"]]
        ckpt.saved = list(saved["backtrack"]["saved"])
    disc.iter = saved["disc_iter"]
    for k in _WMV_FIELDS:
        setattr(wmv, k, saved["wmv"][k])
    gen.set_state(saved["gen"].cpu())
    if coupling is not None:
        coupling.load_state_dict(saved["coupling"])


def _fit(net, z, y, operator, weigh, n_obs, cfg: _Config, compute, gen, prog: Progress,
         t_offset: int, restart: int | None, reference, step_hook, state: _RunState,
         out_hw: tuple[int, int], coupling=None, saver=None, resume: dict | None = None,
         fit_id: tuple[int, int] = (0, 0)) -> tuple[torch.Tensor, dict]:
    """One DIP run (one restart); returns the selected estimate and its record.

    ``coupling`` (DeepRED's ADMM state, ``methods/deepred.py``) adds ``coupling.loss(x)`` to the
    data term, hears ``coupling.start(t)`` before each forward pass and ``coupling.update(t, x)``
    after each accepted step; its ``record()`` joins this run's record, its ``state_dict()`` /
    ``load_state_dict()`` the checkpoint. ``saver`` (a ``checkpoint.FitCheckpoint``) writes the
    loop's state between iterations when due; ``resume`` is such a state to continue from.
    """
    h, w = out_hw
    params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr, **({"fused": True} if cfg.fused else {"foreach": True}))
    ckpt = _Checkpoint(params, opt) if cfg.backtrack else None
    disc = _Discrepancy(cfg.sigma, cfg.tau * cfg.noise_gain)
    wmv = _WindowedVariance(cfg.wmv_window, cfg.wmv_patience)
    z = compute.prepare_input(z)
    loop = _Loop(lr=cfg.lr)
    if resume is not None:
        _load_fit_state(resume, loop, net, opt, ckpt, disc, wmv, gen, coupling, state, z.device)

    def save() -> None:
        fit = _fit_state(loop, net, opt, ckpt, disc, wmv, gen, coupling, state)
        saver.save(prog.history, prog.elapsed, {"image": fit_id[0], "restart": fit_id[1], **fit})

    reason = "budget"
    for t in range(loop.t + 1, cfg.iters + 1):
        if saver is not None and saver.due():
            save()  # the state after iteration t − 1
            if saver.stop_requested:
                raise KeyboardInterrupt  # a deferred Ctrl-C / SIGTERM, now that the state is saved
        if cfg.lr_decay is not None and t > 1 and (t - 1) % cfg.lr_decay[1] == 0:
            loop.lr *= cfg.lr_decay[0]  # after every `every` iterations, as a StepLR stepped per iteration
            for group in opt.param_groups:
                group["lr"] = loop.lr
        if coupling is not None:
            coupling.start(t)
        zt = z if cfg.sigma_p <= 0 else compute.prepare_input(
            z + cfg.sigma_p * torch.randn(z.shape, generator=gen, device=z.device))
        with compute.autocast():
            out = net(zt)
        x = center_crop(out, h, w).float().contiguous()
        r = operator.forward(x) - y
        if weigh is not None:
            r = weigh(r)
        loss = r.square().sum() / n_obs
        if coupling is None:
            # the one host sync per step: backtracking and the stop rules need it
            value = total_value = float(loss.detach())
        else:
            data_loss = loss
            loss = loss + coupling.loss(x)
            value, total_value = torch.stack((data_loss.detach(), loss.detach())).tolist()
        extra = {} if restart is None else {"restart": restart}
        if ckpt is not None and loop.accepted_loss is not None and not (
                math.isfinite(total_value) and total_value <= cfg.backtrack_factor * loop.accepted_loss):
            ckpt.restore()
            loop.backtracks += 1
            loop.lr *= cfg.backtrack_lr_factor
            for group in opt.param_groups:
                group["lr"] = loop.lr
            loop.t = t
            estimate = loop.ema if loop.ema is not None else state.current
            if prog.log(t_offset + t, estimate, value, backtracked=True, lr=loop.lr, **extra):
                reason = "callback"
                break
            continue
        if ckpt is not None:
            ckpt.save()
            loop.accepted_loss = total_value
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step_hook is not None:
            step_hook(t, net, opt)

        x = x.detach()
        if coupling is not None:
            extra.update(coupling.update(t, x) or {})
        if cfg.ema is None:
            estimate = x
        else:
            loop.ema = x.clone() if loop.ema is None else loop.ema.mul_(cfg.ema).add_(x, alpha=1 - cfg.ema)
            estimate = loop.ema
        state.current = estimate
        if cfg.ema is not None and reference is not None:
            extra["psnr_raw"] = _psnr_float(x, reference)

        disc_hit = disc.update(t, value)
        new_min, wmv_hit = wmv.update(t, x)  # raw outputs, as Wang et al. (on the EMA it only decays)
        if new_min:
            extra["wmv_min"] = True
            if cfg.stop == "wmv":
                loop.selected, loop.selected_iter = estimate.clone(), t
        if wmv.last_var is not None:
            extra["wmv_var"] = wmv.last_var
        loop.t = t
        stop_cb = prog.log(t_offset + t, estimate, value, **extra)
        if "psnr" in prog.history[-1]:
            loop.trace.append((t, prog.history[-1]["psnr"], prog.history[-1]["seconds"]))
        if stop_cb:
            reason = "callback"
            break
        if cfg.stop == "discrepancy" and disc_hit:
            reason = "discrepancy"
            break
        if cfg.stop == "wmv" and wmv_hit:
            reason = "wmv"
            break
    if saver is not None and reason == "callback":
        save()  # a caller's stop: keep the state so a later call can continue

    t = loop.t
    final = state.current if state.current is not None else torch.full_like(y[:, :1], 0.5)
    selected_iter = loop.selected_iter
    if cfg.stop == "wmv" and loop.selected is not None:
        final = loop.selected  # ES-WMV returns the iterate at the variance minimum (also at the cap)
    else:
        selected_iter = t
    record = {"stop_rule": cfg.stop, "stop_reason": reason, "stop_iter": t,
              "selected_iter": selected_iter, "backtracks": loop.backtracks, "final_lr": loop.lr,
              "discrepancy": {"threshold": disc.threshold, "iter": disc.iter},
              "wmv": {"window": wmv.window, "patience": wmv.patience, "best_iter": wmv.best_iter,
                      "best_var": None if wmv.best_iter is None else wmv.best_var,
                      "detect_iter": wmv.detect_iter}}
    if coupling is not None:
        record.update(coupling.record())
    if loop.trace:
        record["psnr"] = _psnr_summary(loop.trace, {"at_selected": selected_iter,
                                                    "at_discrepancy": disc.iter,
                                                    "at_wmv_min": wmv.best_iter})
    return final, record


# ----------------------------------------------------------------------------- method


@register("dip", TASKS, "Deep Image Prior: fit a randomly initialised hourglass network (untrained)",
          kind="untrained")
def dip(y, operator, *, sigma=None, iters=None, callback=None, reference=None, seed=0,
        device="auto", precision="auto", progress=False, preset=None, lr=None, sigma_p=None,
        ema="preset", restarts=1, stop="auto", tau=1.0, wmv_window=WMV_WINDOW,
        wmv_patience=WMV_PATIENCE, backtrack=True, backtrack_factor=BACKTRACK_FACTOR,
        backtrack_lr_factor=0.5, arch=None, net=None, input=None, guide=None, fused=None,
        step_hook: Callable | None = None, return_net=False, coupling: Callable | None = None,
        whiten: float | None = None, lr_decay=None, checkpoint=None,
        checkpoint_every: float = DEFAULT_EVERY, **params) -> Result:
    """Deep Image Prior restoration for any operator (denoise, deblur, sr, inpaint, demosaic).

    Parameters
    ----------
    y : torch.Tensor or numpy.ndarray
        Observation, N×C×h×w float in [0, 1] (operator output space). Each of the N images
        is fitted separately with the same operator.
    operator : Operator
        Degradation ``A``; the data term is ``‖A(f(z)) − y‖²`` averaged over the observed
        entries of y (for a ``Mask``, the known pixels; elsewhere all entries).
    sigma : float, optional
        Noise std in [0, 1] units. Enables the discrepancy rule (and makes it the default
        stop when σ > 0). None: blind.
    iters : int, optional
        Iteration budget. Default: the preset's (paper §4: sr 2000, sr8 4000, denoise 1800,
        jpeg 2400, inpaint-text 6000, inpaint-hole 5000, reconstruction 11000); with the
        ES-WMV rule and no ``iters``, max(preset, 3000).
    preset : str or Preset, optional
        A name of ``nets.hourglass.PRESETS`` (network + z + σ_p + LR + iterations + EMA).
        Default per task: denoise → 'denoise', sr → 'sr' ('sr8' for factors ≥ 8),
        inpaint → 'inpaint-text', deblur/demosaic → the default architecture. JPEG
        artefact removal: task denoise with ``preset='jpeg'``. Bernoulli masks (Table 3):
        ``'reconstruction'``; large holes: ``'inpaint-hole'`` or ``'inpaint-hole-deep'``.
    lr, sigma_p : float, optional
        Adam learning rate and the std of the input perturbation (image units); default
        the preset's.
    ema : float or None
        Weight γ of the exponential moving average of outputs, x̄ ← γx̄ + (1 − γ)x; None
        returns the raw output. Default: the preset's (0.99 for 'denoise' and 'jpeg').
    restarts : int
        Independent fits (seeds ``seed``, ``seed + 1``, …) whose results are averaged (§3.1).
    stop : {'auto', 'fixed', 'discrepancy', 'wmv'}
        'fixed': run ``iters``. 'discrepancy': stop at the first ‖Ax − y‖²/M ≤ τσ² (needs
        σ > 0). 'wmv': ES-WMV — stop when the variance of the last ``wmv_window`` outputs
        has not reached a new minimum for ``wmv_patience`` iterations and return the
        estimate at the minimum (at the budget too). 'auto': 'wmv' for blind denoising
        (σ None), 'discrepancy' when σ > 0, else 'fixed'.
    tau : float
        Discrepancy factor τ (1: the residual of the true image; see Notes).
    whiten : float, optional
        Deblurring only (ours, not in the paper): fit the whitened residual
        ‖(HHᵀ + εI)^{-1/2}(Hx − y)‖² with ε = ``whiten`` instead of ‖Hx − y‖² — the same
        minimisers, but the frequencies the blur attenuates are fitted as fast as the others
        instead of at a rate ∝ |H|², so a deblurring fit needs several times fewer iterations
        (measured in benchmarks/README.md). The discrepancy threshold follows the whitened
        noise level. None: the paper's data term.
    lr_decay : (float, int), optional
        (γ, n): multiply the learning rate by γ after every n iterations — the authors' DeepRED
        deblurring code decays it so, (0.9, 1000), though the paper does not say. Default: none.
    wmv_window, wmv_patience : int
        ES-WMV window W and patience P (Wang et al.'s code: 100, 1000).
    backtrack : bool
        Restore parameters and Adam state, and skip the step, when the loss jumps by more
        than ``backtrack_factor`` (default 10^0.5, the reference's 5 dB) over the last
        accepted loss; the LR is then multiplied by ``backtrack_lr_factor`` (0.5) so a
        deterministic run (σ_p = 0) cannot repeat the same bad step.
    arch : {'skip', 'noskip', 'unet', 'resnet'}, optional
        Architecture variant of §3.1 / Fig. 13 applied to the preset's network.
    net : dict, optional
        Overrides of the preset's ``NetSpec`` fields (e.g. ``{'n_skip': 0, 'upsample':
        'nearest'}``).
    input : {'noise', 'meshgrid', 'guide'}, optional
        The input z (default the preset's); 'guide' uses ``guide`` (an image in x space,
        1×C×H×W, e.g. the flash image of §3.7).
    fused : bool, optional
        Fused Adam instead of the default foreach implementation (no measurable difference on
        our CPU: the optimiser step is < 2 % of a DIP step).
    precision, device : str
        Compute policy (``compute.get_compute``): bf16 autocast + channels_last for the
        network where supported; loss, EMA and Adam state stay fp32.
    seed : int
        Seeds z, the perturbations and the initial weights (restart r uses ``seed + r``).
    reference : torch.Tensor, optional
        Ground truth: adds ``psnr`` (of the returned estimate — the EMA when enabled) and
        ``psnr_raw`` (of the raw output) to every history entry and a PSNR summary to
        ``extras['runs']``.
    callback : callable, optional
        ``callback(t, x, info) -> bool``; True stops.
    step_hook : callable, optional
        ``step_hook(t, net, optimizer)`` after each accepted optimiser step (inspection,
        tests).
    return_net : bool
        Put the last restart's network and input in ``extras['net']``, ``extras['z']``.
    checkpoint : path-like, optional
        Save the fit's state to this file every ``checkpoint_every`` seconds (and on Ctrl-C or
        SIGTERM, deferred to the end of the iteration; after each restart), and continue from
        it when it exists: a call with the same settings and observation resumes where the
        earlier one stopped and gives the same result as one uninterrupted run
        (:mod:`deepprior.methods.checkpoint`). Removed once the result is complete.
    coupling : callable, optional
        ``coupling(y_n, operator) -> term``, called once per fit: ``term.loss(x)`` is added
        to the data term, ``term.start(t)`` runs before and ``term.update(t, x) -> dict``
        after each accepted step (its dict joins the history entry), ``term.record()`` joins
        the run record, ``term.state_dict()`` / ``term.load_state_dict(d)`` its checkpoint.
        DeepRED's ADMM (``methods/deepred.py``) is built on this.

    Returns
    -------
    Result
        ``image``: N×C×H×W estimate in [0, 1]. ``history``: per iteration ``loss`` (the data
        term), ``psnr``/``psnr_raw`` with a reference, ``wmv_var`` once the window is full,
        ``backtracked`` and ``restart`` where relevant. ``extras``: ``stop_iter``,
        ``stop_reason`` ('budget', 'discrepancy', 'wmv', 'callback'), ``selected_iter`` (the
        returned iterate) of the last run, and ``runs`` — one record per (image, restart)
        with the same plus where the discrepancy rule fired and ES-WMV's minimum/detection
        (they are monitored whatever ``stop`` is), backtracks, and with a reference the
        PSNR best/last/at each of those iterations.

    Notes
    -----
    Discrepancy: at the clean image, E‖Ax − y‖²/M = σ² (the noise is added to every entry of
    y). τ = 1 stops once the fit explains the observation as well as the truth does; larger
    τ stops earlier (smoother). It is tested on the loss of the current output, before the
    EMA (the EMA lags behind it by about 1/(1 − γ) iterations).

    ES-WMV is computed on the raw outputs, as Wang et al.; on the EMA the windowed variance
    only decays and never turns. Measured on a 64×64 RGB crop of skimage's astronaut, σ = 25,
    the default architecture at width 64, σ_p = 1/30, γ = 0.99, 1500 iterations: best PSNR
    (of the EMA) 27.90 dB at iteration 825; ES-WMV (W = 100, P = 300) minimum at 809 →
    27.88 dB (detected at 1109); discrepancy (τ = 1) at 698 → 27.67 dB; fixed 1500 → 26.18 dB.
    With tiny networks on 48² images the σ_p jitter dominates the variance and ES-WMV
    misfires; it works there with σ_p = 0 (see the tests).

    References
    ----------
    .. [1] D. Ulyanov, A. Vedaldi and V. Lempitsky, "Deep Image Prior", IJCV 2020, eq. (2), §4.
    .. [2] H. Wang et al., "Early Stopping for Deep Image Prior", arXiv:2112.06074.
    """
    unknown = set(params)
    if unknown:
        raise ValueError(f"dip: unknown parameter(s) {sorted(unknown)}")
    task = getattr(operator, "task", None)
    if task not in TASKS:
        raise ValueError(f"dip needs an operator with a task among {TASKS}, got {task!r}")
    if stop not in STOP_RULES:
        raise ValueError(f"stop must be one of {STOP_RULES}, got {stop!r}")
    restarts = int(restarts)
    if restarts < 1:
        raise ValueError(f"restarts must be ≥ 1, got {restarts}")

    compute = get_compute(device, precision)
    dev = compute.device
    out_device = torch.as_tensor(y).device
    y = torch.as_tensor(y, dtype=torch.float32).to(dev)
    if y.dim() != 4:
        raise ValueError(f"y must be N×C×H×W, got shape {tuple(y.shape)}")
    operator = operator.to(dev) if hasattr(operator, "to") else operator
    ref = None if reference is None else torch.as_tensor(reference, dtype=torch.float32).to(dev)

    pre = _resolve_preset(preset, task, operator)
    spec = with_arch(pre.net.updated(**(net or {})), arch)
    in_kind = input or pre.input
    lr = float(pre.lr if lr is None else lr)
    sigma_p = float(pre.sigma_p if sigma_p is None else sigma_p)
    ema = pre.ema if ema == "preset" else (None if ema is None else float(ema))
    if ema is not None and not 0 <= ema < 1:
        raise ValueError(f"ema must be in [0, 1) or None, got {ema}")
    sigma = None if sigma is None else float(sigma)
    rule = stop
    if rule == "auto":
        rule = "wmv" if sigma is None and task == "denoise" else (
            "discrepancy" if sigma else "fixed")
    if rule == "discrepancy" and not sigma:
        raise ValueError("stop='discrepancy' needs the noise level sigma > 0")
    budget = int(iters) if iters is not None else (
        max(pre.iters, BLIND_BUDGET) if rule == "wmv" else pre.iters)
    if budget < 1:
        raise ValueError(f"iters must be ≥ 1, got {budget}")
    if fused is None:
        # Measured at 256² (default net, 1 thread): fused and foreach Adam within ±3 % of each
        # other (the optimiser is < 2 % of a step), and fused pays a one-off start-up cost.
        fused = False

    x_shape = tuple(operator.input_shape(tuple(y.shape)))
    operator.validate_input_shape(x_shape)
    h, w = x_shape[-2:]
    out_channels = x_shape[1]
    with torch.no_grad():
        observed = operator.forward(torch.ones((1, *x_shape[1:]), device=dev)) != 0
    n_obs = float(observed.sum())
    if n_obs == 0:
        raise ValueError("the operator observes no entry of y")
    weigh, noise_gain = _residual_weighting(operator, y.shape, observed, whiten)
    if lr_decay is not None:
        if not (isinstance(lr_decay, (list, tuple)) and len(lr_decay) == 2 and 0 < float(lr_decay[0]) <= 1
                and int(lr_decay[1]) >= 1):
            raise ValueError(f"lr_decay must be (gamma in (0, 1], every ≥ 1), got {lr_decay!r}")
        lr_decay = (float(lr_decay[0]), int(lr_decay[1]))
    cfg = _Config(iters=budget, lr=lr, sigma_p=sigma_p, ema=ema, stop=rule, sigma=sigma, tau=float(tau),
                  wmv_window=int(wmv_window), wmv_patience=int(wmv_patience), backtrack=bool(backtrack),
                  backtrack_factor=float(backtrack_factor),
                  backtrack_lr_factor=float(backtrack_lr_factor), fused=bool(fused),
                  noise_gain=noise_gain, lr_decay=lr_decay)

    canvas = padded_size(h, w, spec.multiple)  # z lives on the padded canvas; outputs are cropped
    guide_t = None
    if in_kind == "guide":
        if guide is None:
            raise ValueError("input='guide' needs guide=<image> (e.g. the flash image, §3.7)")
        guide_t = torch.as_tensor(guide, dtype=torch.float32)
        if guide_t.dim() == 3:
            guide_t = guide_t[None]
        if tuple(guide_t.shape[-2:]) != (h, w):
            raise ValueError(f"guide is {tuple(guide_t.shape[-2:])} but the image is {(h, w)}")
    in_channels = {"noise": pre.input_channels, "meshgrid": 2}.get(
        in_kind, None if guide_t is None else guide_t.shape[1])

    settings = {"method": "dip", "preset": pre.name, "preset_source": pre.source, "net": spec.to_dict(),
                "input": in_kind, "input_channels": in_channels, "canvas": list(canvas),
                "lr": lr, "sigma_p": sigma_p, "ema": ema, "restarts": restarts, "iters": budget,
                "stop": rule, "stop_requested": stop, "sigma": sigma, "tau": float(tau),
                "wmv_window": int(wmv_window), "wmv_patience": int(wmv_patience),
                "backtrack": bool(backtrack), "backtrack_factor": float(backtrack_factor),
                "backtrack_lr_factor": float(backtrack_lr_factor),
                "whiten": None if whiten is None else float(whiten),
                "optimizer": "adam (fused)" if fused else "adam (foreach)",
                "loss": "mean squared residual over observed entries of y" if whiten is None else
                        "mean squared whitened residual (HH^T + eps I)^(-1/2) (Hx - y)",
                "seed": seed, **compute.to_dict()}
    if lr_decay is not None:  # only when given: checkpoints written before the option still resume
        settings["lr_decay"] = list(lr_decay)
    saver = None
    if checkpoint is not None:
        signature = {"settings": settings, "observation": tensor_digest(y), "x_shape": list(x_shape),
                     "operator": type(operator).__name__, "coupled": coupling is not None,
                     "guide": None if guide_t is None else tensor_digest(guide_t)}
        saver = FitCheckpoint(checkpoint, signature, checkpoint_every)
        saver.load()

    state = _RunState()
    runs: list[dict] = []
    images: list[torch.Tensor] = []
    last_net = last_z = None
    total = budget * restarts * y.shape[0]
    with Progress(total, reference=ref, callback=callback, show=progress,
                  desc="dip" if coupling is None else "deepred") as prog, saver or nullcontext():
        if saver is not None and saver.resumed_from is not None:
            prog.restore(saver.history, saver.elapsed)
        offset = 0
        for n in range(y.shape[0]):
            y_n = y[n:n + 1]
            ref_n = None if ref is None else ref[n:n + 1]
            prog.reference = ref_n
            state.estimates = []
            for r in range(restarts):
                seed_r = None if seed is None else int(seed) + r
                finished = None if saver is None else saver.finished.get((n, r))
                if finished is not None:  # done before the checkpoint was written
                    runs.append(finished["record"])
                    state.estimates.append(finished["estimate"].to(dev))
                    offset = finished["offset"]
                    continue
                seed_everything(seed_r)  # the network's initial weights use the global RNG
                gen = torch.Generator(device=dev)
                gen.manual_seed(seed_r if seed_r is not None else torch.seed())
                model = compute.prepare_module(build_net(spec, in_channels, out_channels)).train()
                z = _make_input(in_kind, in_channels, canvas, gen, dev,
                                None if guide_t is None else guide_t[min(n, guide_t.shape[0] - 1):][:1])
                state.current = None
                est, record = _fit(model, z, y_n, operator, weigh, n_obs, cfg, compute, gen, prog,
                                   offset, r if restarts > 1 else None, ref_n, step_hook, state, (h, w),
                                   None if coupling is None else coupling(y_n, operator), saver,
                                   None if saver is None else saver.take_fit(n, r), (n, r))
                offset = prog.history[-1]["iter"] if prog.history else offset
                record.update(image=n, restart=r, seed=seed_r)
                runs.append(record)
                if saver is not None and record["stop_reason"] != "callback":
                    saver.finish_run(n, r, record, est, offset)
                    saver.save(prog.history, prog.elapsed, None)
                state.estimates.append(est)
                state.current = None
                last_net, last_z = model, z
                if record["stop_reason"] == "callback":
                    break
            images.append(torch.stack(state.estimates).mean(0))
            if runs and runs[-1]["stop_reason"] == "callback":
                break
    if prog.interrupted:
        partial = state.estimates + ([state.current] if state.current is not None else [])
        if partial:
            images.append(torch.stack(partial).mean(0))
    if not images:
        images = [torch.full((1, *x_shape[1:]), 0.5, device=dev)]
    while len(images) < y.shape[0]:  # interrupted before reaching these images
        images.append(images[-1].new_full(images[-1].shape, 0.5))
    image = torch.cat(images[:y.shape[0]]).clamp(0, 1)

    extras: dict = {"runs": runs}
    if saver is not None:
        complete = not prog.interrupted and all(r["stop_reason"] != "callback" for r in runs)
        extras["checkpoint"] = {"path": str(saver.path), "resumed_from": saver.resumed_from,
                                "kept": not complete}
        if complete:
            saver.remove()
    if runs:
        extras.update({k: runs[-1][k] for k in ("stop_iter", "stop_reason", "selected_iter")})
    if ref is not None and image.shape == ref.shape:
        extras["psnr_final"] = _psnr_float(image, ref)
    if return_net:
        extras.update(net=last_net, z=last_z)
    return Result(image.to(out_device), prog.history, settings, extras, interrupted=prog.interrupted)
