"""Comparison of two benchmark runs and time-to-quality from a PSNR trace."""
import json

import pytest

from deepprior.bench.compare import compare_results, time_to_quality
from deepprior.cli import main


def _row(image, psnr, seconds, trace=None, kernel="k1", sigma=2.55, **extra):
    row = {"image": image, "kernel": kernel, "sigma": sigma, "scale": None, "psnr": psnr, "seconds": seconds}
    if trace:
        row["trace"] = {str(t): {"psnr": p, "seconds": s} for t, (p, s) in trace.items()}
    row.update(extra)
    return row


def _result(rows, precision="fp32", trace=None):
    res = {"protocol": "p", "method": "m", "settings": {"protocol": "p", "method": "m", "precision": precision},
           "results": rows, "summary": {}}
    if trace:
        res["summary"]["trace"] = {str(t): {"mean_psnr": p, "mean_seconds": s, "n": len(rows)}
                                   for t, (p, s) in trace.items()}
    return res


def test_compare_matches_cases_and_reports_differences():
    a = _result([_row("x", 30.0, 40.0, {10: (25.0, 4.0)}), _row("y", 28.0, 40.0, {10: (24.0, 4.0)}),
                 _row("only_a", 20.0, 1.0)])
    b = _result([_row("y", 28.3, 10.0, {10: (24.5, 1.0)}), _row("x", 29.9, 10.0, {10: (25.1, 1.0)}),
                 _row("z", 99.0, 1.0, interrupted=True)], precision="bf16")
    cmp = compare_results(a, b)
    assert cmp["settings_differing"] == {"precision": ["fp32", "bf16"]}
    s = cmp["summary"]
    assert s["n"] == 2  # only_a and the interrupted row are not compared
    assert s["mean_delta"] == pytest.approx(0.1)
    assert s["max_abs_delta"] == pytest.approx(0.3)
    assert s["seconds_ratio_a_over_b"] == pytest.approx(4.0)
    assert s["trace_mean_delta"]["10"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="no finished case"):
        compare_results(a, _result([_row("w", 1.0, 1.0)]))


def test_time_to_quality_first_iteration_within_tolerance():
    res = _result([], trace={10: (20.0, 1.0), 100: (29.85, 10.0), 200: (30.1, 20.0), 300: (29.95, 30.0)})
    ttq = time_to_quality(res, tolerance=0.1)
    assert (ttq["final_iter"], ttq["reached_iter"], ttq["best_iter"]) == (300, 100, 200)
    assert ttq["time_fraction"] == pytest.approx(1 / 3)
    assert time_to_quality(res, tolerance=0.05)["reached_iter"] == 200
    with pytest.raises(ValueError, match="no PSNR trace"):
        time_to_quality(_result([]))


def test_cli_compare_and_plot_trace_tables(tmp_path, capsys):
    a = _result([_row("x", 30.0, 40.0)], trace={10: (25.0, 4.0), 20: (30.0, 40.0)})
    b = _result([_row("x", 30.02, 8.0)], precision="bf16", trace={10: (25.0, 1.0), 20: (30.0, 8.0)})
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(a))
    pb.write_text(json.dumps(b))
    out = tmp_path / "cmp.json"
    assert main(["compare", str(pa), str(pb), "--json", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["summary"]["mean_delta"] == pytest.approx(0.02) and saved["files"]["a"] == str(pa)
    assert "5.00× B's time" in capsys.readouterr().out
    ttq = tmp_path / "ttq.json"
    assert main(["plot-trace", str(pa), str(pb), "-o", str(tmp_path / "t.png"), "--label", "A",
                 "--json", str(ttq)]) == 0
    runs = json.loads(ttq.read_text())["runs"]
    assert runs[0]["label"] == "A" and runs[1]["file"] == "b.json" and runs[0]["reached_iter"] == 20
    assert main(["compare", str(pa), str(tmp_path / "missing.json")]) != 0
