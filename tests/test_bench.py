"""Tests for deepprior.bench: data-root rule, protocols, runner JSON, report.

Everything runs on two synthetic 48×48 images (crops of skimage.data) and a temporary data
root with synthetic kernels, so no test needs the shared data sets.
"""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch

from deepprior.bench import data as bench_data
from deepprior.bench.protocols import (Case, get_protocol, list_protocols, modcrop, prepare_case)
from deepprior.bench.report import write_report
from deepprior.bench.runner import merge_results, run_protocol
from deepprior.cli import main
from deepprior.io import read_image, write_image
from deepprior.methods import get_method
from deepprior.metrics import psnr
from deepprior.nets.dae import default_weights_path, save_dae, weights_digest
from helpers import TINY_HOURGLASS, tiny_dae

SIZE = 48  # divisible by 2, 3 and 4


@pytest.fixture
def images(tmp_path):
    """A folder with a gray and a colour 48×48 image (and a non-image file to skip)."""
    folder = tmp_path / "images"
    folder.mkdir()
    write_image(folder / "a_camera.png", skimage.data.camera()[100:100 + SIZE, 220:220 + SIZE] / 255.0)
    write_image(folder / "b_astronaut.png", skimage.data.astronaut()[60:60 + SIZE, 180:180 + SIZE] / 255.0)
    (folder / "SOURCES.md").write_text("synthetic test images\n")
    return folder


@pytest.fixture
def root(tmp_path):
    """A data root with two (unnormalised, asymmetric) Levin-style kernels and a bicubic set."""
    r = tmp_path / "data"
    (r / "levin" / "kernels").mkdir(parents=True)
    k1 = np.outer([1.0, 2.0, 3.0, 2.0, 1.0], [1.0, 1.0, 2.0, 1.0, 1.0])  # sums to 54
    k2 = np.zeros((3, 7))
    k2[1, :5] = 1.0
    k2[0, 5] = 2.0  # asymmetric motion-like kernel, sum 7
    np.save(r / "levin" / "kernels" / "kernel_01.npy", k1.astype(np.float32))
    np.save(r / "levin" / "kernels" / "kernel_02.npy", k2.astype(np.float32))
    (r / "kernels" / "bicubic_x234").mkdir(parents=True)
    np.save(r / "kernels" / "bicubic_x234" / "bicubic_x2.npy",
            np.array([[-0.1, 0.3], [0.5, 0.2]], np.float32))  # sums to 0.9: kept as stored
    (r / "kernels" / "lobed").mkdir()
    np.save(r / "kernels" / "lobed" / "k.npy", np.array([[-1.0, 2.0], [3.0, 0.0]], np.float32))
    return r


# ----------------------------------------------------------------------------- data root


def test_data_root_rule(tmp_path, monkeypatch):
    cwd, explicit, env, pkg = (tmp_path / n for n in ("work", "explicit", "env", "pkg"))
    shared = tmp_path / "shared" / "data"
    for d in (cwd, explicit, env, shared):
        d.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(bench_data, "PACKAGE_DATA_ROOT", tmp_path / "missing")
    monkeypatch.setenv("DEEPPRIOR_DATA", str(env))

    assert bench_data.data_root(explicit) == explicit.resolve()     # explicit first
    assert bench_data.data_root() == shared.resolve()               # then ../shared/data of cwd
    shared.rmdir()
    assert bench_data.data_root() == env.resolve()                  # then $DEEPPRIOR_DATA
    pkg.mkdir()
    monkeypatch.setattr(bench_data, "PACKAGE_DATA_ROOT", pkg)
    assert bench_data.data_root() == pkg.resolve()                  # repository sibling beats env
    monkeypatch.setattr(bench_data, "PACKAGE_DATA_ROOT", tmp_path / "missing")
    monkeypatch.delenv("DEEPPRIOR_DATA")
    with pytest.raises(FileNotFoundError, match=r"--data-root.*DEEPPRIOR_DATA") as err:
        bench_data.data_root()
    assert "\n" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        bench_data.data_root(tmp_path / "nope")
    monkeypatch.setenv("DEEPPRIOR_DATA", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="DEEPPRIOR_DATA"):
        bench_data.data_root()


def test_list_images_and_kernels(images, root):
    assert [p.name for p in bench_data.list_images(images)] == ["a_camera.png", "b_astronaut.png"]
    with pytest.raises(FileNotFoundError):
        bench_data.list_images(root / "levin")  # only a kernels/ subfolder: no image

    kernels = bench_data.load_kernels("levin", root)
    assert list(kernels) == ["kernel_01", "kernel_02"]
    raw = np.load(root / "levin" / "kernels" / "kernel_02.npy")
    np.testing.assert_allclose(kernels["kernel_02"], raw / raw.sum())  # same orientation, sum 1
    lobed = bench_data.load_kernels("lobed", root)["k"]
    assert lobed.sum() == pytest.approx(1.0) and lobed[0, 0] == pytest.approx(-0.25)  # not clipped
    bicubic = bench_data.load_kernels("bicubic_x234", root)["bicubic_x2"]
    np.testing.assert_allclose(bicubic, [[-0.1, 0.3], [0.5, 0.2]], rtol=1e-6)  # not renormalised
    with pytest.raises(FileNotFoundError, match="kernel set"):
        bench_data.load_kernels("absent", root)


def test_load_image_colour_conversion(images):
    gray = bench_data.load_image(images / "b_astronaut.png", "gray")
    rgb = bench_data.load_image(images / "b_astronaut.png", "keep")
    assert gray.shape == (SIZE, SIZE, 1)
    np.testing.assert_allclose(gray[..., 0], rgb @ np.array([0.2989, 0.5870, 0.1140]), atol=1e-5)
    assert bench_data.load_image(images / "a_camera.png", "rgb").shape == (SIZE, SIZE, 3)


# ----------------------------------------------------------------------------- protocols


def test_protocol_registry():
    listed = {name: task for name, task, _ in list_protocols()}
    expected = {"classic-denoise-set12": "denoise", "classic-deblur-levin": "deblur",
                "classic-sr-set5": "sr", "classic-inpaint-set12": "inpaint",
                "classic-demosaic-set14": "demosaic", "denoise-bsd68": "denoise", "denoise-cbsd68": "denoise"}
    assert expected.items() <= listed.items()
    for name, _, desc in list_protocols():
        assert desc and "\n" not in desc
        assert "PSNR" in get_protocol(name).description  # every protocol states its convention
    assert get_protocol("classic-deblur-levin").boundary == "valid"
    with pytest.raises(ValueError, match="unknown protocol"):
        get_protocol("nope")


def test_modcrop():
    assert modcrop(np.zeros((50, 49, 3)), 4).shape == (48, 48, 3)
    assert modcrop(np.zeros((48, 48, 1)), 3).shape == (48, 48, 1)


def test_prepare_case_is_seeded_per_image_and_case(images, root):
    protocol = get_protocol("classic-deblur-levin")
    kernel = bench_data.load_kernels("levin", root)["kernel_02"]
    clean = bench_data.load_image(images / "a_camera.png", "gray")
    case = Case("kernel_02", 7.65)
    a = prepare_case(protocol, "a_camera", clean, case, kernel)
    b = prepare_case(protocol, "a_camera", clean, case, kernel)
    assert a.seed == b.seed and torch.equal(a.y, b.y)
    assert a.y.shape == (1, 1, SIZE - 2, SIZE - 6)  # 'valid' blur: smaller by kernel − 1
    other_image = prepare_case(protocol, "other", clean, case, kernel)
    other_sigma = prepare_case(protocol, "a_camera", clean, Case("kernel_02", 2.55), kernel)
    assert other_image.seed != a.seed and not torch.equal(other_image.y, a.y)
    noise = (a.y - a.operator.forward(a.x)).std().item() * 255
    assert noise == pytest.approx(7.65, rel=0.15)  # σ in 8-bit units, unclipped noise
    assert not torch.equal(other_sigma.y, a.y)

    mask = prepare_case(get_protocol("classic-inpaint-set12"), "a_camera", clean, Case()).operator.mask
    assert 0.4 < mask.mean().item() < 0.6  # 50 % Bernoulli


# ----------------------------------------------------------------------------- runner


def test_run_protocol_json(images, capsys):
    res = run_protocol("classic-denoise-set12", images=images, limit=1, iters=3,
                       cases={"sigma": [15, 50]}, device="cpu", precision="fp32")
    assert list(res) == ["protocol", "method", "settings", "environment", "results", "summary"]
    assert res["protocol"] == "classic-denoise-set12" and res["method"] == "tv"
    s = res["settings"]
    assert s["iters"] == 3 and s["limit"] == 1 and s["image_names"] == ["a_camera"]
    assert s["images"] == str(images.resolve()) and s["data_root"] is None
    assert s["psnr"]["crop"] == 0 and s["psnr"]["y_channel"] is False
    assert res["environment"]["precision"] == "fp32" and "torch" in res["environment"]
    assert len(res["results"]) == 2
    for r, sigma in zip(res["results"], (15.0, 50.0)):
        assert r["image"] == "a_camera" and r["kernel"] is None and r["scale"] is None
        assert r["sigma"] == sigma and r["iters"] == 3
        assert isinstance(r["psnr"], float) and isinstance(r["ssim"], float)
        assert r["seconds"] >= 0 and isinstance(r["seed"], int)
    assert res["results"][0]["psnr"] > res["results"][1]["psnr"]  # more noise, lower PSNR
    summ = res["summary"]
    assert summ["n"] == 2
    for key, field in (("mean_psnr", "psnr"), ("mean_ssim", "ssim"), ("mean_seconds", "seconds")):
        assert summ[key] == pytest.approx(np.mean([r[field] for r in res["results"]]))
    assert set(summ["groups"]) == {"sigma=15", "sigma=50"}
    assert summ["groups"]["sigma=15"]["mean_psnr"] == res["results"][0]["psnr"]
    json.dumps(res)  # serialisable as is
    printed = [ln for ln in capsys.readouterr().out.splitlines() if "PSNR" in ln]
    assert len(printed) == 2 and "a_camera" in printed[0]


def test_methods_see_identical_inputs(images, root, tmp_path):
    common = dict(data_root=root, images=images, limit=1, cases={"sigma": 7.65}, progress=False,
                  device="cpu")
    w1 = run_protocol("classic-deblur-levin", save_images=tmp_path / "w", **common)
    w2 = run_protocol("classic-deblur-levin", **common)
    tv = run_protocol("classic-deblur-levin", method="tv", iters=2, save_images=tmp_path / "t", **common)
    assert [r["psnr"] for r in w1["results"]] == [r["psnr"] for r in w2["results"]]
    assert [r["seed"] for r in w1["results"]] == [r["seed"] for r in tv["results"]]
    assert [r["kernel"] for r in w1["results"]] == ["kernel_01", "kernel_02"]
    for r in w1["results"]:
        name = f"a_camera_{r['kernel']}_s7.65_degraded.png"
        np.testing.assert_array_equal(read_image(tmp_path / "w" / name).pixels,
                                      read_image(tmp_path / "t" / name).pixels)
    assert w1["settings"]["data_root"] == str(root.resolve())
    assert set(w1["summary"]["groups"]) == {"kernel=kernel_01", "kernel=kernel_02", "sigma=7.65"}


def test_sr_protocol_applies_its_convention(images):
    res = run_protocol("classic-sr-set5", images=images, progress=False, device="cpu")
    assert res["summary"]["n"] == 6
    assert {g: m["n"] for g, m in res["summary"]["groups"].items()} == {"scale=2": 2, "scale=3": 2,
                                                                         "scale=4": 2}
    # recompute one case by hand: Y channel, crop = scale, 8-bit rounding
    protocol = get_protocol("classic-sr-set5")
    row = next(r for r in res["results"] if r["image"] == "b_astronaut" and r["scale"] == 3)
    prep = prepare_case(protocol, "b_astronaut",
                        bench_data.load_image(images / "b_astronaut.png", "rgb"), Case(None, 0.0, 3))
    assert prep.y.shape == (1, 3, SIZE // 3, SIZE // 3)
    assert torch.equal(prep.y, torch.round(prep.y * 255) / 255)  # stored-uint8 LR image
    est = get_method("bicubic").run(prep.y, prep.operator, device="cpu").image.clamp(0, 1)
    assert row["psnr"] == pytest.approx(psnr(est, prep.x, crop=3, y_channel=True, quantize=True))
    assert row["psnr"] != pytest.approx(psnr(est, prep.x))


def test_progress_says_how_the_protocol_scores_when_it_is_not_the_plain_psnr(images, capsys):
    run_protocol("classic-sr-set5", images=images, limit=1, cases={"scale": 3}, device="cpu")
    notes = [ln for ln in capsys.readouterr().out.splitlines() if "progress lines" in ln]
    assert notes == ["a_camera ×3: progress lines give the plain PSNR (all channels, whole image); the "
                     "protocol's PSNR (Y channel, 3-pixel border cropped, output rounded to 8 bits) is "
                     "printed when the case ends"]
    run_protocol("classic-denoise-set12", images=images, limit=1, iters=2, cases={"sigma": 15}, device="cpu")
    assert "progress lines" not in capsys.readouterr().out  # plain PSNR: nothing to say


def test_demosaic_skips_gray_and_inpaint_runs(images):
    dm = run_protocol("classic-demosaic-set14", images=images, progress=False, device="cpu")
    assert dm["settings"]["image_names"] == ["b_astronaut"] and dm["summary"]["n"] == 1
    assert dm["results"][0]["psnr"] > 20
    inp = run_protocol("classic-inpaint-set12", images=images, progress=False, device="cpu")
    assert inp["summary"]["n"] == 2 and inp["summary"]["groups"] == {}
    assert all(r["psnr"] > 20 for r in inp["results"])


def test_errors(images, root):
    with pytest.raises(ValueError, match="does not solve task 'sr'"):
        run_protocol("classic-sr-set5", method="wiener", images=images)
    with pytest.raises(ValueError, match="unknown method"):
        run_protocol("classic-sr-set5", method="nope", images=images)
    with pytest.raises(ValueError, match="selects none"):
        run_protocol("classic-sr-set5", images=images, cases={"scale": 5}, progress=False)
    with pytest.raises(ValueError, match="filter keys"):
        run_protocol("classic-sr-set5", images=images, cases={"noise": 5}, progress=False)
    with pytest.raises(FileNotFoundError, match="levin"):
        run_protocol("classic-deblur-levin", data_root=root / "kernels", images=images)


# ----------------------------------------------------------------------------- report


def test_report(images, tmp_path):
    out = tmp_path / "out"
    res = run_protocol("classic-sr-set5", images=images, progress=False, device="cpu",
                       save_images=out / "sr_images")
    md = write_report(res, out / "sr.md", image_dir=out / "sr_images")
    text = md.read_text()
    rows = [ln for ln in text.splitlines() if re.match(r"\| (a_camera|b_astronaut) \|", ln)]
    assert len(rows) == len(res["results"]) == 6
    assert "## Summary" in text and "scale=4" in text and f"{res['summary']['mean_psnr']:.2f}" in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == 6
    for link in links:
        assert not Path(link).is_absolute()
        strip = read_image(md.parent / link).pixels
        assert strip.shape == (SIZE, 3 * SIZE + 8, 3)  # clean | degraded | restored (48 < 128)
    # without saved images: tables only
    plain = write_report(run_protocol("classic-sr-set5", images=images, progress=False,
                                      cases={"scale": 2}, device="cpu"), tmp_path / "plain.md")
    assert "![" not in plain.read_text()


def test_checkpoint_and_resume(images, tmp_path):
    ckpt = tmp_path / "run.json"
    common = dict(images=images, iters=3, device="cpu", precision="fp32", progress=False)
    first = run_protocol("classic-denoise-set12", limit=1, cases={"sigma": [15]}, checkpoint=ckpt, **common)
    assert json.loads(ckpt.read_text())["results"] == first["results"]
    assert "partial" not in first["summary"]
    # the same run widened to two noise levels: the finished case is kept (bit for bit, its time
    # included), only the new one runs
    full = run_protocol("classic-denoise-set12", limit=1, cases={"sigma": [15, 50]}, checkpoint=ckpt,
                        resume=True, **common)
    assert len(full["results"]) == 2 and full["results"][0] == first["results"][0]
    assert full["results"][1]["sigma"] == 50.0
    fresh = run_protocol("classic-denoise-set12", limit=1, cases={"sigma": [50]}, **common)
    assert full["results"][1]["psnr"] == fresh["results"][0]["psnr"]
    # a narrower selection would drop finished cases from the rewritten file: refused, not dropped
    with pytest.raises(ValueError, match=r"does not select \(\S+ σ=15\)"):
        run_protocol("classic-denoise-set12", limit=1, cases={"sigma": [50]}, checkpoint=ckpt, resume=True,
                     **common)
    assert len(json.loads(ckpt.read_text())["results"]) == 2
    # a checkpoint of other settings is refused, not silently mixed in
    with pytest.raises(ValueError, match="different iters"):
        run_protocol("classic-denoise-set12", limit=1, cases={"sigma": [15]}, checkpoint=ckpt, resume=True,
                     **{**common, "iters": 4})


def test_merge_results_equals_one_run_of_all_cases(images, tmp_path):
    """Two jobs on different images and noise levels merge into what one run of every case gives
    (rows, means, groups); overlapping cases and other settings are refused."""
    common = dict(images=images, iters=3, device="cpu", precision="fp32", progress=False)
    whole = run_protocol("classic-denoise-set12", cases={"sigma": [15, 50]}, **common)
    camera = run_protocol("classic-denoise-set12", image_names=["a_camera"], cases={"sigma": [15, 50]}, **common)
    astro = run_protocol("classic-denoise-set12", image_names=["b_astronaut"], cases={"sigma": [15]}, **common)
    astro50 = run_protocol("classic-denoise-set12", image_names=["b_astronaut"], cases={"sigma": [50]}, **common)
    merged = merge_results({"camera.json": camera, "astro.json": astro, "astro50.json": astro50})
    strip = lambda rows: sorted(((r["image"], r["sigma"], r["psnr"]) for r in rows))  # noqa: E731
    assert strip(merged["results"]) == strip(whole["results"])
    for key in ("n", "mean_psnr", "mean_ssim"):
        assert merged["summary"][key] == pytest.approx(whole["summary"][key], abs=1e-12)
    assert merged["summary"]["groups"].keys() == whole["summary"]["groups"].keys()
    assert merged["settings"]["image_names"] == ["a_camera", "b_astronaut"]
    assert [m["file"] for m in merged["settings"]["merged_from"]] == ["camera.json", "astro.json", "astro50.json"]
    # a merged file resumes like a run: nothing left to do
    out = tmp_path / "merged.json"
    out.write_text(json.dumps(merged))
    again = run_protocol("classic-denoise-set12", cases={"sigma": [15, 50]}, checkpoint=out, resume=True, **common)
    assert strip(again["results"]) == strip(whole["results"])
    with pytest.raises(ValueError, match="is in both"):
        merge_results({"camera.json": camera, "whole.json": whole})
    other = run_protocol("classic-denoise-set12", image_names=["b_astronaut"], cases={"sigma": [15]},
                         **{**common, "iters": 4})
    with pytest.raises(ValueError, match="different iters"):
        merge_results({"camera.json": camera, "other.json": other})
    with pytest.raises(ValueError, match="at least two"):
        merge_results({"camera.json": camera})
    # the command line: the same merge, and a clear error (exit 2) for overlapping runs
    paths = {}
    for name, run in (("camera", camera), ("astro", astro), ("astro50", astro50), ("whole", whole)):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(run))
    cli_out = tmp_path / "cli.json"
    assert main(["merge-results", str(paths["camera"]), str(paths["astro"]), str(paths["astro50"]),
                 "--json", str(cli_out)]) == 0
    assert json.loads(cli_out.read_text())["summary"]["mean_psnr"] == pytest.approx(merged["summary"]["mean_psnr"])
    assert main(["merge-results", str(paths["camera"]), str(paths["whole"]), "--json", str(cli_out)]) == 2


def test_rows_record_resolved_settings_and_merge_can_assume_a_default(images, tmp_path):
    """Each row keeps the method's resolved settings; a run that passed a parameter at its
    default merges with one that did not only when the value is declared (`--assume`), and a
    declaration its rows contradict is refused."""
    common = dict(images=images, iters=3, device="cpu", precision="fp32", progress=False, cases={"sigma": [15]})
    explicit = run_protocol("classic-denoise-set12", image_names=["a_camera"], method_params={"step_ratio": 0.1}, **common)
    implicit = run_protocol("classic-denoise-set12", image_names=["b_astronaut"], **common)
    settings = implicit["results"][0]["method_settings"]
    assert settings["method"] == "tv" and settings["step_ratio"] == 0.1 and settings["iters"] == 3
    json.dumps(explicit)  # what the row records is plain JSON
    runs = {"explicit.json": explicit, "implicit.json": implicit}
    with pytest.raises(ValueError, match="different method_params"):
        merge_results(runs)
    merged = merge_results(runs, assume={"step_ratio": 0.1})
    assert merged["settings"]["method_params"] == {"step_ratio": 0.1}
    assert merged["settings"]["merge_assumed"] == {"params": {"step_ratio": 0.1}, "applied_to": ["implicit.json"]}
    assert merged["summary"]["n"] == 2
    with pytest.raises(ValueError, match="records step_ratio=0.1"):
        merge_results(runs, assume={"step_ratio": 0.2})
    paths = {}
    for name, run in runs.items():
        paths[name] = tmp_path / name
        paths[name].write_text(json.dumps(run))
    out = tmp_path / "merged.json"
    assert main(["merge-results", *map(str, paths.values()), "--assume", "step_ratio=0.1", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["settings"]["merge_assumed"]["params"] == {"step_ratio": 0.1}
    assert main(["merge-results", *map(str, paths.values()), "--assume", "step_ratio", "--json", str(out)]) == 2


def test_results_record_the_dae_weights_and_resume_checks_them(images, tmp_path):
    """A learned method's JSON names the DAE weights it ran with (file and SHA-256 prefix); a
    checkpoint written with other weights is refused; classical methods record none."""
    w1, w2 = tmp_path / "w1.safetensors", tmp_path / "w2.safetensors"
    save_dae(tiny_dae(1, seed=0), w1)
    save_dae(tiny_dae(1, seed=1), w2)
    assert weights_digest(w1) != weights_digest(w2)
    ckpt = tmp_path / "run.json"
    common = dict(images=images, limit=1, cases={"sigma": [25]}, method="dae", device="cpu", precision="fp32",
                  progress=False, checkpoint=ckpt)
    run = run_protocol("denoise-set12", method_params={"weights": str(w1)}, **common)
    assert run["settings"]["dae_weights"] == {"file": "w1.safetensors", "sha256": weights_digest(w1),
                                              "shipped": False}
    w2.replace(w1)  # same path, other weights
    with pytest.raises(ValueError, match="different dae_weights"):
        run_protocol("denoise-set12", method_params={"weights": str(w1)}, resume=True, **common)
    shipped = run_protocol("denoise-set12", images=images, limit=1, cases={"sigma": [25]}, method="dae",
                           device="cpu", progress=False)["settings"]["dae_weights"]
    assert shipped == {"file": "dae_gray.safetensors", "sha256": weights_digest(default_weights_path(1)),
                       "shipped": True}
    classic = run_protocol("classic-denoise-set12", images=images, limit=1, iters=2, cases={"sigma": [25]},
                           device="cpu", progress=False)
    assert classic["settings"]["dae_weights"] is None


def test_gray_images_record_the_dae_their_method_loads():
    """DAEP restores gray images with the colour DAE (methods.prior.GRAY_IMAGE_PRIOR), DMSP and
    the plain DAE with the gray one: the JSON names the file the method really loads."""
    from deepprior.bench.runner import _dae_weights
    from deepprior.methods.prior import default_prior_weights

    color, gray = default_weights_path(3), default_weights_path(1)
    assert default_prior_weights("daep", 1) == color
    assert default_prior_weights("dmsp", 1) == gray
    assert default_prior_weights("dmsp", 3) == color
    recorded = {m: _dae_weights(get_method(m), {}, 1, "deblur")["file"] for m in ("daep", "dmsp", "dae")}
    assert recorded == {"daep": color.name, "dmsp": gray.name, "dae": gray.name}


def test_red_and_deepred_record_dae_weights_only_when_the_dae_is_their_denoiser():
    from deepprior.bench.runner import _dae_weights

    red, deepred = get_method("red"), get_method("deepred")
    assert _dae_weights(red, {}, 3, "deblur")["file"] == default_weights_path(3).name  # RED's deblur preset: DAE
    assert _dae_weights(red, {}, 3, "sr") is None  # BM3D
    assert _dae_weights(red, {"denoiser": "nlm"}, 3, "deblur") is None
    assert _dae_weights(deepred, {}, 3, "deblur") is None  # Table 1: NLM
    assert _dae_weights(deepred, {}, 3, "sr") is None  # Table 1: BM3D
    assert _dae_weights(deepred, {"denoiser": "dae"}, 1, "sr")["file"] == default_weights_path(1).name


def test_dip_protocol_records_where_its_stopping_rules_fired(images):
    """fit_metrics of the DIP protocols: the stop rule and iteration, and the ES-WMV variance
    series every 10 iterations up to the stop."""
    from deepprior.bench.protocols_dip import WMV_SERIES_EVERY
    from deepprior.methods.dip import replay_wmv

    window, patience = 10, 20
    run = run_protocol("dip-denoise-cbm3d9-auto", images=images, limit=1, iters=300, device="cpu",
                       progress=False, method_params={"net": TINY_HOURGLASS, "wmv_window": window,
                                                      "wmv_patience": patience})
    row = run["results"][0]
    assert row["stop_reason"] == "wmv" and row["stop_iter"] < 300
    assert row["wmv_detect_iter"] == row["wmv_min_iter"] + patience == row["stop_iter"]
    series = row["wmv_series"]
    assert series["every"] == WMV_SERIES_EVERY
    assert series["iter"][0] == window and all(b - a == WMV_SERIES_EVERY for a, b in
                                               zip(series["iter"], series["iter"][1:]))
    assert len(series["var"]) == len(series["psnr"]) == len(series["iter"])
    assert all(v >= 0 for v in series["var"]) and all(p is not None for p in series["psnr"])
    assert series["iter"][-1] == row["stop_iter"] // WMV_SERIES_EVERY * WMV_SERIES_EVERY
    # the series can be replayed with a shorter patience: it fires no later than the run did
    replay = replay_wmv(series, WMV_SERIES_EVERY)
    assert replay is not None and replay["stop_iter"] <= row["stop_iter"]


def test_deepred_rows_score_the_authors_x_minus_u_beside_the_output(images):
    """A DeepRED row records the PSNR (protocol convention) of x − u, the image the authors'
    SR/deblurring code returns, beside that of the network output it reports."""
    run = run_protocol("deepred-sr-set5", images=images, limit=1, iters=20, cases={"scale": [4]},
                       device="cpu", precision="fp32", progress=False,
                       method_params={"net": TINY_HOURGLASS, "denoiser": "tv"})
    row = run["results"][0]
    assert 5 < row["psnr_x_minus_u"] < 60 and row["psnr_x_minus_u"] != row["psnr"]
    assert "ramp_fired" not in row  # the SR presets do not ramp λ and μ


def test_deepred_denoising_rows_record_the_ramp(images):
    """The 'denoise' preset ramps λ and μ (the authors' code): the row says how often and where
    they ended; with a threshold of 0 dB every round fires."""
    run = run_protocol("deepred-denoise-cbm3d9", images=images, limit=1, iters=4, device="cpu",
                       precision="fp32", progress=False,
                       method_params={"net": TINY_HOURGLASS, "denoiser": "tv", "reg_ramp": {"threshold": 0}})
    row = run["results"][0]
    assert row["stop_reason"] == "budget" and row["iters"] == 4  # Table 1's fixed schedule, not the preset's stop
    assert row["ramp_fired"] == 4
    assert row["final_lam"] == pytest.approx(0.5 + 4 * 0.03) and row["final_mu"] == pytest.approx(0.5 + 4 * 0.03)


def test_seed_offset_changes_only_the_method_seed(images, tmp_path):
    """--seed-offset K: same observation, method seed + K, recorded; a checkpoint with another
    offset is refused, and one written before the setting existed counts as offset 0."""
    ckpt = tmp_path / "run.json"
    common = dict(images=images, limit=1, iters=2, cases={"sigma": [25]}, device="cpu", precision="fp32",
                  progress=False)
    base = run_protocol("classic-denoise-set12", checkpoint=ckpt, **common)
    other = run_protocol("classic-denoise-set12", seed_offset=5, **common)
    assert other["results"][0]["seed"] == base["results"][0]["seed"] + 5
    assert other["settings"]["seed_offset"] == 5 and base["settings"]["seed_offset"] == 0
    assert other["results"][0]["psnr"] == base["results"][0]["psnr"]  # TV is deterministic
    with pytest.raises(ValueError, match="different seed_offset"):
        run_protocol("classic-denoise-set12", checkpoint=ckpt, resume=True, seed_offset=1, **common)
    old = json.loads(ckpt.read_text())
    del old["settings"]["seed_offset"]
    ckpt.write_text(json.dumps(old))
    resumed = run_protocol("classic-denoise-set12", checkpoint=ckpt, resume=True, **common)
    assert resumed["results"] == base["results"]


def test_partial_checkpoint_marks_summary(images, tmp_path, monkeypatch):
    ckpt = tmp_path / "run.json"
    info = get_method("tv")
    calls = []

    def run_then_stop(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return info.run(*args, **kwargs)

    import dataclasses

    import deepprior.bench.runner as runner
    monkeypatch.setattr(runner, "get_method", lambda name: dataclasses.replace(info, run=run_then_stop))
    res = run_protocol("classic-denoise-set12", images=images, limit=1, iters=3, cases={"sigma": [15, 50]},
                       checkpoint=ckpt, device="cpu", precision="fp32", progress=False)
    saved = json.loads(ckpt.read_text())
    assert len(saved["results"]) == 1 and saved["summary"]["partial"] is True
    assert res["summary"]["interrupted"] is True and res["summary"]["partial"] is True


def test_trace_rows_and_psnr_vs_seconds_plot(images, tmp_path):
    """A protocol with trace_iters scores the running estimate at those iterations in its own
    convention; the plot draws the summary trace and refuses results without one."""
    import dataclasses

    from deepprior.bench import protocols as P
    from deepprior.bench.report import plot_psnr_vs_seconds

    traced = dataclasses.replace(get_protocol("classic-denoise-set12"), name="traced-tv", trace_iters=(1, 3, 99))
    P.register_protocol(traced)
    try:
        res = run_protocol("traced-tv", images=images, limit=1, iters=4, cases={"sigma": [25]},
                           device="cpu", precision="fp32", progress=False)
    finally:
        P.PROTOCOLS.pop("traced-tv")
    row = res["results"][0]
    assert set(row["trace"]) == {"1", "3"}  # 99 is never reached
    assert row["trace"]["3"]["psnr"] > row["trace"]["1"]["psnr"]
    assert res["summary"]["trace"]["3"]["mean_psnr"] == row["trace"]["3"]["psnr"]
    png = plot_psnr_vs_seconds([res], tmp_path / "t.png")
    assert png.stat().st_size > 1000
    with pytest.raises(ValueError, match="trace"):
        plot_psnr_vs_seconds([{"summary": {}}], tmp_path / "none.png")


def test_a_dip_case_stopped_mid_fit_resumes_from_its_fit_checkpoint(images, tmp_path, monkeypatch):
    """SIGTERM in the middle of a DIP case: the fit saves its state; --resume finishes the case
    from there with the row (PSNR, iterations, trace, stop-rule metrics) of an uninterrupted run."""
    import os
    import signal

    from deepprior.bench.runner import fit_checkpoint_dir
    from deepprior.methods import base

    common = dict(images=images, limit=1, iters=60, device="cpu", precision="fp32", progress=False,
                  method_params={"net": TINY_HOURGLASS, "wmv_window": 10})
    full = run_protocol("dip-denoise-cbm3d9", **common)["results"][0]
    real_log = base.Progress.log
    sent = []

    def terminating_log(self, t, *a, **k):
        if t == 55 and not sent:
            sent.append(t)
            os.kill(os.getpid(), signal.SIGTERM)  # deferred to the end of the iteration
        return real_log(self, t, *a, **k)

    monkeypatch.setattr(base.Progress, "log", terminating_log)
    out = tmp_path / "run.json"
    stopped = run_protocol("dip-denoise-cbm3d9", checkpoint=out, **common)
    assert stopped["summary"]["interrupted"] and stopped["results"][0]["interrupted"]
    # the stopped case keeps its row but enters no mean
    assert stopped["summary"]["n"] == 0 and stopped["summary"]["interrupted_cases"] == 1
    assert stopped["summary"]["partial"] is True  # its only case has no result yet
    from deepprior.bench.report import render_report
    assert "No case completed" in render_report(stopped) and "stopped mid-fit" in render_report(stopped)
    saved = sorted(p.name for p in fit_checkpoint_dir(out).iterdir())
    assert len(saved) == 2 and any(n.endswith(".snapshots.pt") for n in saved)
    monkeypatch.setattr(base.Progress, "log", real_log)
    resumed = run_protocol("dip-denoise-cbm3d9", checkpoint=out, resume=True, **common)["results"][0]
    assert resumed["resumed_from"]["iter"] == 55
    for key in ("psnr", "iters", "wmv_min_iter", "psnr_float_best", "wmv_series"):
        assert resumed[key] == full[key], key
    assert {t: v["psnr"] for t, v in resumed["trace"].items()} == {t: v["psnr"] for t, v in full["trace"].items()}
    assert not fit_checkpoint_dir(out).exists()
