"""DeepRED: Deep Image Prior regularised by any denoiser through RED, solved by ADMM.

Mataev, Elad & Milanfar (2019), eq. (4)::

    min_{x,Θ} ½‖H T_Θ(z) − y‖² + (λ/2)·xᵀ(x − f(x))   s.t.  x = T_Θ(z)

Algorithm 1 (scaled augmented Lagrangian, eq. 6), one round per iteration t:

1. Θ: one Adam step on eq. (7), ``½‖H T_Θ(z) − y‖² + (μ/2)‖x − T_Θ(z) − u‖²`` — the DIP
   fitting loop of :mod:`deepprior.methods.dip` (input noise σ_p, EMA, backtracking) with the
   proximity term added through its ``coupling`` hook;
2. x: J fixed-point steps, eq. (11) ``x ← (λ f(x) + μ(T + u)) / (λ + μ)``, or steepest-descent
   steps, eq. (12) ``x ← x − c[λ(x − f(x)) + μ(x − T − u)]``;
3. u: ``u ← u − x + T``.

The denoiser ``f`` is applied every ``interval`` rounds (paper: 10) and its last output reused
in between (with J = 1, the paper's setting). ``f(x_k)`` depends only on the x of the previous
round, so it can run *while* the network takes its Adam step (the paper's Fig. 1):
``concurrent=True`` submits it to a worker thread at the start of the round and collects it
before the x-update — the same arithmetic as the serial order, so the two modes agree exactly
for a fixed seed.

Normalisation: the data term is DIP's mean over the M observed entries of y. The proximity term
is divided by the N entries of x (``proximity_mean='pixels'``, the default): each term of eq. (7)
a per-entry mean, as in the authors' released code, where Table 1's μ was tuned — it weighs M/N
times eq. (7)'s μ (1/16 for super-resolution ×4, 1/64 for ×8, the fraction of known pixels for
inpainting). ``'observations'`` divides it by M like the data term, so the network minimises
exactly eq. (7) × 2/M; with Table 1's μ that pulled the network 16× harder towards x on ×4
super-resolution and cost ≈ 1 dB on Set5 butterfly (benchmarks/README.md). The two agree when H
keeps every entry (denoising, deblurring). ``T`` in steps 2–3
is the network output of this round's forward pass (before the Adam step; the reference
implementation does the same rather than paying a second forward pass).

References
----------
.. [1] G. Mataev, M. Elad and P. Milanfar, "DeepRED: Deep image prior powered by RED",
   ICCV Workshops 2019 (arXiv:1903.10176), Algorithm 1, eq. (4)–(12), Table 1.
.. [2] Y. Romano, M. Elad and P. Milanfar, "The little engine that could: Regularization by
   denoising (RED)", SIAM J. Imaging Sci. 2017.
"""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from ..compute import get_compute
from ..noise import sigma_to_unit
from ..operators import downsample_factor
from .base import Result, register
from .checkpoint import DEFAULT_EVERY
from .dip import dip
from .prior import check_task, estimate_sigma, initial_estimate
from .red import make_denoiser, red

__all__ = ["deepred", "DEEPRED_PRESETS", "DeepREDPreset", "X_SOLVERS", "PROXIMITY_MEANS", "REG_RAMP_AUTHORS",
           "default_denoiser"]

X_SOLVERS = ("fixed-point", "sd")
# The authors' released denoising code (not the paper): whenever PSNR(H T, y) exceeds
# ``threshold`` dB, λ and μ each grow by ``increment`` and the threshold by ``threshold_step``.
# 20 dB is about the PSNR of σ = 25 noise (20.17 dB): the ramp fires once the network starts
# fitting the noise.
REG_RAMP_AUTHORS = {"threshold": 20.0, "threshold_step": 0.01, "increment": 0.03}
REG_RAMP_AUTHORS_SIGMA = 25 / 255  # the noise level their 20 dB threshold was set for
PROXIMITY_MEANS = ("observations", "pixels")
DEEPRED_TASKS = ("denoise", "deblur", "sr", "inpaint", "demosaic")


@dataclass(frozen=True)
class DeepREDPreset:
    """One row of DeepRED Table 1 (σ_f in 8-bit units) plus the DIP network preset it uses.

    ``ema``: weight of the exponential average of the network outputs. §3.2: of DIP's "smoothing
    applied on the outcome of the last iterations" (and early stopping, run averaging) "our
    tests implement all these as well" — DIP's window, γ = 0.99, for every task.
    ``whiten``: DIP's data term (:func:`deepprior.methods.dip.dip`); Table 1's rows use the
    plain one. Every row runs its fixed budget ``iters`` (``stop=`` of :func:`deepred` changes it).
    ``reg_ramp``: whether ``reg_ramp=None`` of :func:`deepred` means the authors' λ/μ ramp.
    ``stop``: DIP's stopping rule when :func:`deepred` is given none.
    """

    name: str
    dip_preset: str
    sigma_p: float
    lr: float
    denoiser: str
    sigma_f: float
    lam: float
    mu: float
    iters: int
    source: str
    ema: float | None = 0.99
    whiten: float | None = None
    reg_ramp: bool = False
    stop: str = "fixed"


DEEPRED_PRESETS = {p.name: p for p in (
    # the authors' code ramps λ and μ while denoising (REG_RAMP_AUTHORS). CBM3D House, σ = 25:
    # without it the fit overfits the noise (best 31.61 dB at 1798, 24.99 at 6000); with it
    # best 32.24 at 2572, 30.13 at 6000. Ours: stop by DIP's 'auto' rule, the discrepancy rule
    # when σ is given — 31.72 dB at 1607 with the ramp, 31.19 at 1356 without (benchmarks/README.md)
    DeepREDPreset("denoise", "denoise", 0.033, 0.008, "nlm", 3.0, 0.5, 0.5, 6000,
                  "Table 1, denoising, with the authors' code's lambda/mu ramp; automatic stop (ours)",
                  reg_ramp=True, stop="auto"),
    DeepREDPreset("sr4", "sr", 0.02, 0.001, "bm3d", 5.0, 0.05, 0.06, 2000, "Table 1, SISR x4"),
    DeepREDPreset("sr8", "sr8", 0.02, 0.001, "bm3d", 5.0, 0.05, 0.06, 4000, "Table 1, SISR x8"),
    DeepREDPreset("deblur", "deblur", 0.01, 0.004, "nlm", 3.0, 0.02, 0.04, 30000, "Table 1, deblurring"),
    # ours: Table 1's deblurring row at 4000 of its 30000 iterations — the whitened data term
    # fits the detail the blur attenuates as fast as the rest. That term weighs the fit up to 1/ε
    # more than eq. (7)'s, so Table 1's λ, μ are 15× larger here (same ratio): with λ 0.02 gray
    # images overfit the noise after ≈ 1500 iterations, and λ 0.3 gained 0.2–1.1 dB on every
    # measured Table 4/5 image. No discrepancy stop: on gray Set5 it fired at 2830–3650 with the
    # PSNR still rising, and the 4000 budget gained 0.11–0.35 dB over it; bird peaks at ≈ 4400
    # (benchmarks/README.md)
    DeepREDPreset("deblur-cpu", "deblur", 0.01, 0.004, "nlm", 3.0, 0.3, 0.6, 4000,
                  "Table 1, deblurring, whitened data term (eps 0.03), lambda/mu x15, 4000 iterations (ours)",
                  whiten=0.03),
    # not in the paper: the deblurring row for the other masked / mosaicked tasks
    DeepREDPreset("inpaint", "inpaint-text", 0.01, 0.004, "nlm", 3.0, 0.02, 0.04, 6000,
                  "Table 1 deblurring values, DIP's inpainting network (ours)"),
    DeepREDPreset("demosaic", "demosaic", 0.01, 0.004, "nlm", 3.0, 0.02, 0.04, 3000,
                  "Table 1 deblurring values (ours)"),
)}


def _resolve_reg_ramp(reg_ramp, noise_sigma) -> dict | None:
    """False: off; 'authors': :data:`REG_RAMP_AUTHORS`; True: the same with the threshold moved
    by as much as the PSNR of the noise differs from σ = 25's — 20 + 20·log10((25/255)/σ) dB,
    exactly the authors' 20 dB at σ = 25 (ours: their code is for σ = 25 only; σ = 50 noise
    has a PSNR of 14.15 dB, which a fixed 20 dB threshold would never see); a dict: True's
    values with any of its keys replaced. ``noise_sigma()``: the noise level of y in [0, 1]."""
    if reg_ramp is False:
        return None
    if reg_ramp == "authors":
        return dict(REG_RAMP_AUTHORS)
    if reg_ramp is not True and (not isinstance(reg_ramp, dict) or not set(reg_ramp) <= set(REG_RAMP_AUTHORS)):
        raise ValueError(f"reg_ramp must be true, false, 'authors' or a dict with keys among "
                         f"{sorted(REG_RAMP_AUTHORS)}, got {reg_ramp!r}")
    ramp = dict(REG_RAMP_AUTHORS, **(reg_ramp if isinstance(reg_ramp, dict) else {}))
    if not isinstance(reg_ramp, dict) or "threshold" not in reg_ramp:
        ramp["threshold"] += 20 * math.log10(REG_RAMP_AUTHORS_SIGMA / max(noise_sigma(), 1e-4))
    ramp = {k: float(v) for k, v in ramp.items()}
    if ramp["increment"] < 0 or ramp["threshold_step"] < 0:
        raise ValueError(f"reg_ramp increment and threshold_step must be ≥ 0, got {ramp}")
    return ramp


def _default_preset(task: str, operator) -> str:
    if task == "sr":
        return "sr8" if (downsample_factor(operator) or 0) >= 8 else "sr4"
    return task


def _observed_entries(operator, x0: torch.Tensor) -> float:
    """M, the entries of y that observe something (DIP's data-term mean)."""
    with torch.no_grad():
        return float((operator.forward(torch.ones_like(x0)) != 0).sum())


def _proximity_divisor(operator, x0: torch.Tensor, proximity_mean: str) -> float:
    """What the proximity term of eq. (7) is divided by: M, the observed entries, or N, the
    entries of x (module docstring)."""
    return float(x0.numel()) if proximity_mean == "pixels" else _observed_entries(operator, x0)


def default_denoiser(task: str) -> str | None:
    """f when ``denoiser=`` is not given: the task's Table 1 preset's ('sr4' and 'sr8' share BM3D)."""
    name = _default_preset(task, None)
    return DEEPRED_PRESETS[name].denoiser if name in DEEPRED_PRESETS else None


class _ADMM:
    """x, u and the denoiser schedule of Algorithm 1 for one DIP fit (the ``coupling`` of
    :func:`deepprior.methods.dip.dip`)."""

    def __init__(self, x0: torch.Tensor, f, sigma_f: float, lam: float, mu: float, interval: int,
                 solver: str, inner: int, step: float, pool: ThreadPoolExecutor | None,
                 divisor: float | None = None, config: dict | None = None,
                 ramp: dict | None = None, fit=None, clip_x: bool = False):
        self.x = x0.clone()
        self.clip_x = clip_x
        # the authors' λ/μ ramp (REG_RAMP_AUTHORS); fit = (y, operator, observed entries)
        self.ramp, self.fit = ramp, fit
        self.ramp_threshold = None if ramp is None else ramp["threshold"]
        self.ramp_fired = 0
        self.config = dict(config or {})  # what a checkpoint of this state must agree on
        self.divisor = float(x0.numel() if divisor is None else divisor)
        self.u = torch.zeros_like(x0)
        self.f, self.sigma_f = f, sigma_f
        self.lam, self.mu = lam, mu
        self.interval, self.solver, self.inner, self.step = interval, solver, inner, step
        self.pool = pool
        self.fx = None
        self.pending = None
        self.calls = 0
        self.f_seconds = 0.0
        self.wait_seconds = 0.0
        self.gap = None

    def _denoise(self, x: torch.Tensor) -> tuple[torch.Tensor, float]:
        t0 = time.perf_counter()
        out = self.f(x, self.sigma_f).to(x.device, torch.float32)
        return out, time.perf_counter() - t0

    def start(self, t: int) -> None:
        """Round t begins: f(x_{t−1}) is due every ``interval`` rounds (round 1 included)."""
        if (t - 1) % self.interval:
            return
        self.calls += 1
        if self.pool is not None:  # Fig. 1: f runs while the network takes its Adam step
            self.pending = self.pool.submit(self._denoise, self.x.clone())
        else:
            self.fx, sec = self._denoise(self.x)
            self.f_seconds += sec

    def loss(self, out: torch.Tensor) -> torch.Tensor:
        """μ/2‖x − T − u‖² of eq. (7), × 2/``divisor`` (N or M, see the module docstring)."""
        return self.mu * (out - (self.x - self.u)).square().sum() / self.divisor

    def update(self, t: int, out: torch.Tensor) -> dict:
        """x (eq. 11 or 12, J = ``inner`` steps) and u after round t's network step."""
        if self.pending is not None:
            t0 = time.perf_counter()
            self.fx, sec = self.pending.result()
            self.wait_seconds += time.perf_counter() - t0
            self.f_seconds += sec
            self.pending = None
        target = out + self.u
        for j in range(self.inner):
            fx = self.fx if j == 0 else self._denoise(self.x)[0]
            if self.solver == "fixed-point":  # eq. (11)
                self.x = (self.lam * fx + self.mu * target) / (self.lam + self.mu)
            else:  # eq. (12)
                self.x = self.x - self.step * (self.lam * (self.x - fx) + self.mu * (self.x - target))
            if self.clip_x:  # the authors' code keeps x in [0, 1]
                self.x = self.x.clamp(0, 1)
        self.u = self.u - self.x + out
        self.gap = float((self.x - out).square().mean().sqrt())
        if self.ramp is None:
            return {"admm_gap": self.gap}
        y, operator, n_obs = self.fit
        mse = float((operator.forward(out) - y).square().sum()) / n_obs
        if mse <= 0 or 10 * math.log10(1 / mse) > self.ramp_threshold:  # the network fits y too closely
            self.lam += self.ramp["increment"]
            self.mu += self.ramp["increment"]
            self.ramp_threshold += self.ramp["threshold_step"]
            self.ramp_fired += 1
        return {"admm_gap": self.gap, "lam": self.lam, "mu": self.mu}

    _STATE = ("x", "u", "fx", "calls", "f_seconds", "wait_seconds", "gap")
    _RAMP_STATE = ("lam", "mu", "ramp_threshold", "ramp_fired")

    def _state_keys(self) -> tuple[str, ...]:
        return self._STATE + (self._RAMP_STATE if self.ramp is not None else ())

    def state_dict(self) -> dict:
        """x, u, the last f(x) and the counters (and the ramped λ, μ), between rounds
        (``methods/checkpoint.py``)."""
        if self.pending is not None:
            raise RuntimeError("cannot checkpoint DeepRED while the denoiser is running")
        return {"config": self.config, **{k: getattr(self, k) for k in self._state_keys()}}

    def load_state_dict(self, saved: dict) -> None:
        if saved["config"] != self.config:
            raise ValueError(f"the checkpoint's DeepRED settings {saved['config']} differ from {self.config}")
        for k in self._state_keys():
            setattr(self, k, saved[k])

    def record(self) -> dict:
        """The run's ADMM counters, x, and x − u: what the authors' released SR and deblurring code
        returns instead of the network output. At a fixed point of the rounds (T and f(x) steady)
        x = T and u = (λ/μ)(T − f(T)), so x − u = T + (λ/μ)(f(T) − T): a step of λ/μ from the
        network output towards its denoised version."""
        admm = {"denoiser_calls": self.calls, "denoiser_seconds": self.f_seconds,
                "denoiser_wait_seconds": self.wait_seconds, "final_gap": self.gap}
        if self.ramp is not None:
            admm.update(ramp_fired=self.ramp_fired, final_lam=self.lam, final_mu=self.mu)
        return {"admm": admm, "x": self.x, "x_minus_u": self.x - self.u}


@register("deepred", DEEPRED_TASKS,
          "DeepRED: Deep Image Prior + Regularization by Denoising via ADMM (NLM/BM3D/DAE/TV)",
          kind="hybrid")
def deepred(y, operator, *, sigma=None, iters=None, callback=None, reference=None, seed=0,
            device="auto", precision="auto", progress=False, preset=None, denoiser=None,
            sigma_f=None, lam=None, mu=None, interval=10, x_solver="fixed-point", inner=1,
            sd_step=None, concurrent=False, x_init="observation", proximity_mean="pixels", lr=None,
            sigma_p=None, ema="preset", stop=None, whiten="preset", weights=None,
            denoiser_options=None, reg_ramp=None, clip_x=False, checkpoint=None, checkpoint_every=DEFAULT_EVERY,
            **dip_params) -> Result:
    """DeepRED restoration (Algorithm 1 of Mataev et al.) for any operator.

    Parameters
    ----------
    y, operator, sigma, iters, callback, reference, seed, device, precision, progress
        As :func:`deepprior.methods.dip.dip` (σ only enables the discrepancy monitor).
    preset : str, optional
        A row of :data:`DEEPRED_PRESETS` (Table 1): 'denoise', 'sr4', 'sr8', 'deblur' (and
        'inpaint', 'demosaic', ours). Default per task ('sr8' for factors ≥ 8). 'deblur-cpu'
        (ours): the deblurring row with the whitened data term (ε = 0.03) for 4000 iterations
        (Table 1: 30000). Its λ 0.3, μ 0.6 are Table 1's 0.02, 0.04 scaled for the whitened
        term: +0.53 to +0.84 dB on Table 4's Gaussian blur, +0.19 on the uniform one
        (butterfly), +1.1 on gray Set5 bird. The discrepancy rule (``stop='discrepancy'``, σ
        given) stops gray Set5 at 2830–3650 iterations, 0.11–0.35 dB below the 4000 budget
        (benchmarks/README.md).
    denoiser : str or callable, optional
        f of RED: 'nlm' (scikit-image, the paper's for denoising/deblurring), 'bm3d' (the
        ``bm3d`` package, the paper's for SR), 'dae' (our DAE — the paper's "future work
        (ii)"), 'tv', or ``f(x, sigma)``. Default: the preset's.
    weights : path-like, optional
        DAE weights (``.safetensors``) for the 'dae' denoiser; default: the shipped ones.
    denoiser_options : dict, optional
        Constructor options of the named denoiser (:mod:`deepprior.denoisers`), e.g.
        ``{"h_factor": 0.6, "per_channel": True}``: NLM as in the authors' deblurring code;
        ``{"profile": "lc"}``: BM3D's faster low-complexity profile (×4 SR of Set5 bird: 22 % less
        time for −0.04 dB).
    sigma_f : float, optional
        Noise level given to f, in **8-bit units** (Table 1: 3 or 5).
    lam, mu : float, optional
        RED weight λ and ADMM penalty μ (Table 1).
    reg_ramp : bool, 'authors' or dict, optional
        The λ/μ ramp of the authors' released denoising code (not in the paper): after every round
        in which PSNR(H T_Θ(z), y) exceeds a threshold (20 dB for σ = 25), λ and μ both grow by
        0.03 and the threshold by 0.01 — it holds the network back once it starts fitting the
        noise. ``'authors'``: those values (:data:`REG_RAMP_AUTHORS`); ``True``: the threshold
        moved with the PSNR of the noise, 20 + 20·log10((25/255)/σ) dB (σ given, else estimated
        from y); a dict replaces some of True's values; ``False``: off. Default: the preset's —
        on for 'denoise' (CBM3D House: see DEEPRED_PRESETS), off for the rest.
    clip_x : bool
        Clip x to [0, 1] after each x-update, as the authors' code does for every task (the paper
        does not say). Default: off — on Set14 face ×4 SR it changed the PSNR by −0.004 dB
        (benchmarks/README.md). (Their deblurring code also decays the learning rate,
        ``lr_decay=(0.9, 1000)`` of :func:`~deepprior.methods.dip.dip`.)
    interval : int
        Apply f every ``interval`` rounds (paper: 10); 1 = every round.
    x_solver : {'fixed-point', 'sd'}
        x-update, eq. (11) (the paper's choice) or eq. (12).
    inner : int
        J, x-update steps per round (paper: 1). Steps after the first call f again.
    sd_step : float, optional
        c of eq. (12); default 1/(λ + μ), the largest step for which eq. (12) with f frozen
        is a contraction.
    concurrent : bool
        Run f in a worker thread while the network takes its Adam step (Fig. 1). Identical
        results; faster only when f and the network step do not compete for the same cores.
    x_init : {'observation', 'red'} or torch.Tensor
        x₀ of Algorithm 1: the observation (paper: x₀ = y; its x-space version — bicubic,
        edge-padded, … — when H ≠ I), a warm start by RED alone with its own defaults for the
        task (:data:`deepprior.methods.red.RED_PRESETS`; DeepRED's weak λ would let RED alone
        amplify the noise), or a given image.
    proximity_mean : {'pixels', 'observations'}
        Divide eq. (7)'s proximity term by N, the entries of x, as the authors' code does (Table 1's
        μ then weighs M/N times less than eq. 7's when H subsamples), or by M like the data term
        (eq. 7 exactly). No difference for denoising and deblurring.
    checkpoint, checkpoint_every
        Save and resume the fit, network and ADMM state alike (:func:`~deepprior.methods.dip.dip`).
    stop : {'fixed', 'discrepancy', 'wmv', 'auto'}, optional
        DIP's stopping rule (:func:`~deepprior.methods.dip.dip`); default: the preset's — 'auto'
        for 'denoise' (the discrepancy rule when σ is given, ES-WMV when not; ours: CBM3D House
        31.72 dB at iteration 1607 against 30.13 at Table 1's 6000), 'fixed' for the others:
        their iterations (Table 1), or ``iters``.
    lr, sigma_p, ema, whiten, **dip_params
        DIP loop settings (defaults: Table 1's LR and σ_noise, the DeepRED preset's output
        average — γ = 0.99, §3.2 — and data term: ½‖H T_Θ(z) − y‖² of eq. (7) except for
        'deblur-cpu'; ``ema=None`` returns the last
        output, ``whiten=ε`` fits the whitened residual of a blur, ``whiten=None`` the plain
        one); anything else of :func:`~deepprior.methods.dip.dip` (``restarts``, ``arch``,
        ``backtrack`` …).

    Returns
    -------
    Result
        ``image``: the network output (its EMA when the preset averages), as DIP. History:
        DIP's, plus ``admm_gap`` = RMS(x − T_Θ(z)), the constraint gap of eq. (4). Extras:
        DIP's run records with ``admm`` (denoiser calls, seconds spent in f, seconds waited for
        it, final gap), ``x`` (the ADMM image of the last fit) and ``x_minus_u`` (x − u of the
        last fit: the authors' code returns it for SR and deblurring; see ``_ADMM.record``).
    """
    task = check_task("deepred", operator, DEEPRED_TASKS)
    if not (torch.is_tensor(x_init) or x_init in ("observation", "red")):
        raise ValueError(f"x_init must be 'observation', 'red' or an image, got {x_init!r}")
    if x_solver not in X_SOLVERS:
        raise ValueError(f"x_solver must be one of {X_SOLVERS}, got {x_solver!r}")
    if proximity_mean not in PROXIMITY_MEANS:
        raise ValueError(f"proximity_mean must be one of {PROXIMITY_MEANS}, got {proximity_mean!r}")
    interval, inner = int(interval), int(inner)
    if interval < 1 or inner < 1:
        raise ValueError(f"interval and inner must be ≥ 1, got {interval}, {inner}")
    name = preset or _default_preset(task, operator)
    if name not in DEEPRED_PRESETS:
        raise ValueError(f"unknown DeepRED preset {name!r}; choose from {', '.join(DEEPRED_PRESETS)}")
    pre = DEEPRED_PRESETS[name]
    lam = float(pre.lam if lam is None else lam)
    mu = float(pre.mu if mu is None else mu)
    if lam < 0 or mu <= 0:
        raise ValueError(f"need lam ≥ 0 and mu > 0, got lam={lam}, mu={mu}")
    sf8 = float(pre.sigma_f if sigma_f is None else sigma_f)
    if not 0 <= sf8 <= 255:
        raise ValueError(f"sigma_f is in 8-bit units (0–255), got {sf8:g}")
    step = 1.0 / (lam + mu) if sd_step is None else float(sd_step)
    ramp = _resolve_reg_ramp(pre.reg_ramp if reg_ramp is None else reg_ramp,
                             lambda: estimate_sigma(y, operator) if sigma is None else float(sigma))
    compute = get_compute(device, precision)
    f, f_name = make_denoiser(pre.denoiser if denoiser is None else denoiser, compute, weights,
                              denoiser_options)

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepred-f") if concurrent else None
    states: list[_ADMM] = []

    red_seconds = 0.0

    def coupling(y_n, op):
        nonlocal red_seconds
        if torch.is_tensor(x_init):
            x0 = x_init.to(y_n.device, torch.float32)
        elif x_init == "red":  # warm start: RED alone, with its own defaults for the task
            t0 = time.perf_counter()
            x0 = red(y_n, op, sigma=sigma, device=str(y_n.device), precision=precision).image
            red_seconds += time.perf_counter() - t0
        else:  # Algorithm 1: x₀ = y (its x-space version for H ≠ I)
            x0 = initial_estimate(op, y_n)
        divisor = _proximity_divisor(op, x0, proximity_mean)
        observed = _observed_entries(op, x0)
        subsampled = observed != x0.numel()
        config = {"denoiser": f_name, "sigma_f": sf8, "lam": lam, "mu": mu, "interval": interval,
                  "x_solver": x_solver, "inner": inner, "sd_step": step,
                  "x_init": "image" if torch.is_tensor(x_init) else x_init}
        if subsampled:  # only where it matters: older denoising/deblurring checkpoints still resume
            config["proximity_mean"] = proximity_mean
        if denoiser_options:  # likewise only when given
            config["denoiser_options"] = dict(denoiser_options)
        if ramp is not None:
            config["reg_ramp"] = ramp
        if clip_x:
            config["clip_x"] = True
        state = _ADMM(x0, f, sigma_to_unit(sf8), lam, mu, interval, x_solver, inner, step, pool, divisor,
                      config, ramp=ramp, fit=(y_n, op, observed), clip_x=bool(clip_x))
        states.append(state)
        return state

    try:
        res = dip(y, operator, sigma=sigma, iters=pre.iters if iters is None else iters,
                  callback=callback, reference=reference, seed=seed, device=device,
                  precision=precision, progress=progress, preset=pre.dip_preset,
                  lr=pre.lr if lr is None else lr, sigma_p=pre.sigma_p if sigma_p is None else sigma_p,
                  ema=pre.ema if ema == "preset" else ema, stop=pre.stop if stop is None else stop,
                  whiten=pre.whiten if whiten == "preset" else whiten, coupling=coupling,
                  checkpoint=checkpoint, checkpoint_every=checkpoint_every, **dip_params)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    for key in ("x", "x_minus_u"):  # images of the last run, out of the per-run records
        images = [r.pop(key) for r in res.extras.get("runs", []) if key in r]
        if images:
            res.extras[key] = images[-1].to(res.image.device)
    res.settings = {**res.settings, "method": "deepred", "deepred_preset": pre.name,
                    "deepred_source": pre.source, "denoiser": f_name, "sigma_f": sf8,
                    "denoiser_options": denoiser_options, "sigma_f_units": "8-bit", "lam": lam, "mu": mu, "interval": interval,
                    "x_solver": x_solver, "inner": inner,
                    "sd_step": step if x_solver == "sd" else None, "concurrent": bool(concurrent),
                    "x_init": "image" if torch.is_tensor(x_init) else x_init, "x_init_seconds": red_seconds,
                    "proximity_mean": proximity_mean, "reg_ramp": ramp, "clip_x": bool(clip_x)}
    return res
