import json

import pytest

from deepprior.bench.paper_figures import PAPER_FIGURES, paper_table, run_variant
from deepprior.bench.protocols import get_protocol
from deepprior.cli import main
from deepprior.methods import get_method


def _result(protocol, method, rows, task="deblur", **params):
    return {"protocol": protocol, "method": method,
            "settings": {"task": task, "noise_known": True, "method_params": params},
            "results": rows}


def _row(image, psnr, sigma=2.55, kernel="kernel_01", scale=None, **extra):
    return {"image": image, "kernel": kernel, "sigma": sigma, "scale": scale, "psnr": psnr,
            "seconds": 10.0, **extra}


def test_every_figure_names_a_registered_protocol_and_method():
    for fig in PAPER_FIGURES:
        get_protocol(fig.protocol)
        get_method(fig.method)
        assert fig.n >= 1 and fig.source


def test_each_paper_row_appears_once_per_case():
    keys = [(f.protocol, f.method, f.variant, f.where) for f in PAPER_FIGURES]
    assert len(keys) == len(set(keys))


def test_dmsp_variant_follows_the_run_settings():
    assert run_variant(_result("levin-deblur", "dmsp", [])) == "NB"
    assert run_variant(_result("levin-deblur", "dmsp", [], noise_blind=True)) == "NA"
    assert run_variant(_result("levin-blind", "dmsp", [], kernel_blind=True, noise_blind=True)) == "NA+KE"
    assert run_variant(_result("sr-set5", "dmsp", [], task="sr")) is None
    assert run_variant(_result("levin-deblur", "daep", [])) is None


def test_dip_restarts_are_set_beside_the_two_run_average():
    """DIP §3.1 prints 30.43 dB for one run with the average and 31.00 for two runs averaged:
    a run with `restarts=2` is compared with the second, a single run with the first."""
    rows = [_row("image_House256rgb", 31.5, sigma=25.0, kernel=None)]
    assert run_variant(_result("dip-denoise-cbm3d9", "dip", rows, task="denoise", restarts=2)) == "2 restarts"
    assert run_variant(_result("dip-denoise-cbm3d9", "dip", rows, task="denoise")) is None
    (two,) = paper_table({"two.json": _result("dip-denoise-cbm3d9", "dip", rows, task="denoise", restarts=2)})
    (one,) = paper_table({"one.json": _result("dip-denoise-cbm3d9", "dip", rows, task="denoise")})
    assert (two["variant"], two["paper"], one["paper"]) == ("2 restarts", pytest.approx(31.00), pytest.approx(30.43))


def test_table_averages_the_finished_rows_of_the_papers_cases():
    rows = [_row("im_1", 32.0), _row("im_2", 33.0), _row("im_3", 20.0, sigma=10.2),
            _row("im_4", 1.0, interrupted=True)]
    table = paper_table({"na.json": _result("levin-deblur", "dmsp", rows, noise_blind=True),
                         "nb.json": _result("levin-deblur", "dmsp", rows)})
    na = [r for r in table if r["file"] == "na.json"]
    assert [r["cases"] for r in na] == ["sigma 2.55", "sigma 10.2"]
    first = na[0]
    assert first["variant"] == "NA" and first["n"] == 2 and first["partial"]
    assert first["ours"] == pytest.approx(32.5)
    assert first["paper"] == pytest.approx(32.57) and first["delta"] == pytest.approx(32.5 - 32.57)
    nb = [r for r in table if r["file"] == "nb.json"]
    assert nb[0]["variant"] == "NB" and nb[0]["paper"] == pytest.approx(29.68)


def test_kernel_blind_figure_counts_error_ratios_below_3_5():
    rows = [_row(f"im_{i}", 25.0, error_ratio=r) for i, r in enumerate((1.2, 3.4, 3.6, 7.0))]
    (row,) = paper_table({"b.json": _result("levin-blind", "dmsp", rows, kernel_blind=True,
                                            noise_blind=True)})
    assert row["ours"] == 2 and row["paper"] == 32 and row["n"] == 4 and row["partial"]


def test_runs_without_a_published_figure_are_left_out():
    rows = [_row("im_1", 30.0, sigma=12.75)]
    assert paper_table({"x.json": _result("levin-deblur", "dmsp", rows)}) == []
    assert paper_table({"y.json": _result("levin-deblur", "tv", [_row("im_1", 30.0)])}) == []


def test_cli_prints_the_table_and_rejects_unmatched_runs(tmp_path, capsys):
    good = tmp_path / "sr.json"
    good.write_text(json.dumps(_result("sr-set5", "daep", [_row("baby", 35.0, sigma=0.0, kernel=None, scale=2)],
                                       task="sr")))
    out_json = tmp_path / "table.json"
    assert main(["paper-table", str(good), "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "| sr-set5 | daep | scale 2 | 1 of 5 | 35.00 | 35.23 | -0.23 |" in out
    assert json.loads(out_json.read_text())["rows"][0]["paper"] == pytest.approx(35.23)
    bad = tmp_path / "tv.json"
    bad.write_text(json.dumps(_result("sr-set5", "tv", [], task="sr")))
    assert main(["paper-table", str(bad)]) == 2
    assert "matches a published figure" in capsys.readouterr().err


def test_cli_row_selection_keeps_only_the_named_cases(tmp_path, capsys):
    path = tmp_path / "na.json"
    rows = [_row("im_1", 32.0), _row("im_1", 28.0, sigma=10.2)]
    path.write_text(json.dumps(_result("levin-deblur", "dmsp", rows, noise_blind=True)))
    assert main(["paper-table", f"{path}::sigma=10.2"]) == 0
    out = capsys.readouterr().out
    assert "sigma 10.2" in out and "sigma 2.55" not in out and "na.json::sigma=10.2" in out
    assert main(["paper-table", f"{path}::colour=red"]) == 2
    assert "bad row selection" in capsys.readouterr().err


def test_per_image_values_average_to_the_published_average():
    # catches a mistyped per-image value: the tables print averages rounded to 0.01
    with_images = [f for f in PAPER_FIGURES if f.per_image]
    assert len(with_images) >= 20
    for fig in with_images:
        values = [v for _, v in fig.per_image]
        assert len(values) == fig.n, fig
        assert sum(values) / len(values) == pytest.approx(fig.value, abs=0.011), fig


def test_a_subset_run_is_compared_with_the_paper_on_the_same_images():
    rows = [_row("butterfly", 25.5, sigma=0.0, kernel=None, scale=4)]
    (row,) = [r for r in paper_table({"d.json": _result("deepred-sr-set5", "deepred", rows, task="sr")})]
    assert row["partial"] and row["paper"] == pytest.approx(30.72)
    assert row["paper_same_cases"] == pytest.approx(26.33)
    assert row["delta_same_cases"] == pytest.approx(25.5 - 26.33)
    # Set14: the paper's table has 12 of our 14 images; bridge and man are left out
    names = ("baboon", "barbara", "bridge", "coastguard", "comic", "face", "flowers", "foreman", "lenna",
             "man", "monarch", "pepper", "ppt3", "zebra")
    rows = [_row(n, 30.0, sigma=0.0, kernel=None, scale=4) for n in names]
    (row,) = paper_table({"s.json": _result("deepred-sr-set14", "red", rows, task="sr")})
    assert row["n"] == 12 and not row["partial"]
    assert row["paper_same_cases"] == pytest.approx(27.36, abs=0.011)
    # no per-image values: the same-case figure is the average for a complete run, None for a partial one
    full = paper_table({"f.json": _result("dip-denoise-cbm3d9", "bm3d", [_row(f"i{k}", 31.0, sigma=25.0, kernel=None)
                                                                         for k in range(9)], task="denoise")})
    assert full[0]["paper_same_cases"] == pytest.approx(31.42)
    part = paper_table({"p.json": _result("dip-denoise-cbm3d9", "bm3d", [_row("i0", 31.0, sigma=25.0, kernel=None)],
                                          task="denoise")})
    assert part[0]["paper_same_cases"] is None and part[0]["delta_same_cases"] is None


def test_against_sets_a_run_beside_another_methods_published_row(tmp_path, capsys):
    rows = [_row("butterfly", 31.0, sigma=2 ** 0.5, kernel="uniform9"),
            _row("leaves", 30.0, sigma=2 ** 0.5, kernel="uniform9")]
    run = _result("deepred-deblur-color", "dmsp", rows)
    assert paper_table({"d.json": run}) == []  # no DMSP row in the DeepRED paper
    (row,) = paper_table({"d.json": run}, against="deepred")
    assert row["method"] == "deepred" and row["run_method"] == "dmsp" and row["variant"] is None
    assert row["paper"] == pytest.approx(31.43)
    assert row["paper_same_cases"] == pytest.approx((31.44 + 31.21) / 2)
    path = tmp_path / "d.json"
    path.write_text(json.dumps(run))
    assert main(["paper-table", str(path), "--against", "deepred"]) == 0
    assert "| deepred-deblur-color | dmsp vs deepred | kernel uniform9 | 2 of 4 | 30.50 |" in capsys.readouterr().out
