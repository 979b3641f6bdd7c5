"""Figures derived from committed benchmark JSONs: two runs of the same cases side by side
(``deepprior compare``), and time-to-quality along a run's PSNR trace (``deepprior plot-trace``).

Both read only what ``runner.run_protocol`` wrote, so every derived figure can be re-computed
from the JSONs under ``benchmarks/results/``.
"""
from __future__ import annotations

import numpy as np

from .runner import case_id, row_key

__all__ = ["compare_results", "time_to_quality", "SETTINGS_COMPARED"]

# settings whose differences a comparison lists (what the two runs varied)
SETTINGS_COMPARED = ("protocol", "method", "iters", "method_params", "precision", "device", "task",
                     "psnr", "boundary", "sr_filter", "color", "noise_known")


def _rows(result: dict) -> dict:
    rows = {}
    for r in result.get("results", []):
        if not r.get("interrupted"):
            rows[row_key(r)] = r
    return rows


def compare_results(a: dict, b: dict) -> dict:
    """Per-case PSNR and seconds of two results JSONs over the cases both finished.

    Returns ``{"settings_differing": {key: [a, b]}, "cases": [...], "summary": {...}}``; the
    summary has the mean PSNR of each run, the mean and largest absolute difference
    ``psnr_b − psnr_a``, the ratio of total seconds ``a / b`` (how much faster ``b`` ran), and
    the mean difference at each traced iteration both runs recorded.
    Raises ``ValueError`` when the runs share no case.
    """
    sa, sb = a.get("settings", {}), b.get("settings", {})
    differing = {k: [sa.get(k), sb.get(k)] for k in SETTINGS_COMPARED if sa.get(k) != sb.get(k)}
    ra, rb = _rows(a), _rows(b)
    common = [k for k in ra if k in rb]
    if not common:
        raise ValueError("the two results share no finished case (same image, kernel, σ and scale)")
    cases, trace_deltas = [], {}
    for key in common:
        x, y = ra[key], rb[key]
        cases.append({"case": case_id(*key), "psnr_a": x["psnr"], "psnr_b": y["psnr"],
                      "delta": y["psnr"] - x["psnr"], "seconds_a": x["seconds"], "seconds_b": y["seconds"]})
        for t in set(x.get("trace") or {}) & set(y.get("trace") or {}):
            trace_deltas.setdefault(t, []).append(y["trace"][t]["psnr"] - x["trace"][t]["psnr"])
    deltas = np.array([c["delta"] for c in cases])
    secs_a = sum(c["seconds_a"] for c in cases)
    secs_b = sum(c["seconds_b"] for c in cases)
    summary = {
        "n": len(cases),
        "mean_psnr_a": float(np.mean([c["psnr_a"] for c in cases])),
        "mean_psnr_b": float(np.mean([c["psnr_b"] for c in cases])),
        "mean_delta": float(deltas.mean()),
        "max_abs_delta": float(np.abs(deltas).max()),
        "seconds_ratio_a_over_b": secs_a / secs_b if secs_b > 0 else None,
        "trace_mean_delta": {t: float(np.mean(v)) for t, v in sorted(trace_deltas.items(), key=lambda kv: int(kv[0]))
                             if len(v) == len(cases)},
    }
    return {"settings_differing": differing, "cases": cases, "summary": summary}


def time_to_quality(result: dict, tolerance: float = 0.1) -> dict:
    """How soon a run came within ``tolerance`` dB of its final PSNR, from ``summary['trace']``
    (mean over the rows at fixed iterations; the last traced iteration is the full schedule).

    Returns the final iteration, PSNR and seconds, the first traced iteration whose mean PSNR is
    at least ``final − tolerance`` with its seconds, and ``time_fraction`` = those seconds / the
    final seconds (issue #7's target: ≤ 1/3) — an upper bound, since the trace is sampled at a
    few iterations. Also the best traced PSNR and where it was.
    Raises ``ValueError`` without a trace.
    """
    trace = result.get("summary", {}).get("trace")
    if not trace:
        raise ValueError(f"{result.get('protocol')}/{result.get('method')}: no PSNR trace in the summary")
    its = sorted(trace, key=int)
    final = trace[its[-1]]
    target = final["mean_psnr"] - tolerance
    reached = next(t for t in its if trace[t]["mean_psnr"] >= target)
    best = max(its, key=lambda t: trace[t]["mean_psnr"])
    return {
        "protocol": result.get("protocol"), "method": result.get("method"), "n": final["n"],
        "tolerance_db": tolerance,
        "final_iter": int(its[-1]), "final_psnr": final["mean_psnr"], "final_seconds": final["mean_seconds"],
        "reached_iter": int(reached), "reached_psnr": trace[reached]["mean_psnr"],
        "reached_seconds": trace[reached]["mean_seconds"],
        "time_fraction": trace[reached]["mean_seconds"] / final["mean_seconds"] if final["mean_seconds"] > 0 else None,
        "best_iter": int(best), "best_psnr": trace[best]["mean_psnr"],
    }
