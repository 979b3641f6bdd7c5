import json
import subprocess
import sys

import numpy as np
import pytest

from deepprior.cli import main
from deepprior.io import read_image, write_image
from deepprior.metrics import psnr
from helpers import TINY_HOURGLASS


@pytest.fixture
def clean_png(tmp_path, astronaut_crop):
    path = tmp_path / "clean.png"
    write_image(path, astronaut_crop[0].permute(1, 2, 0).numpy())
    return path


def _run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_degrade_then_restore_from_sidecar(tmp_path, clean_png, capsys):
    deg = tmp_path / "noisy.png"
    code, out, _ = _run(["degrade", clean_png, "-o", deg, "--task", "denoise", "--sigma", 25, "--seed", 3], capsys)
    assert code == 0 and deg.exists()
    spec = json.loads((tmp_path / "noisy.json").read_text())
    assert spec["sigma"] == 25 and spec["operator"]["type"] == "Identity"
    res = tmp_path / "restored.png"
    code, out, _ = _run(["restore", deg, "-o", res, "--method", "tv", "--reference", clean_png, "--quiet"], capsys)
    assert code == 0 and "PSNR" in out
    clean = read_image(clean_png).pixels
    assert psnr(read_image(res).pixels, clean) > psnr(read_image(deg).pixels, clean) + 3


def test_deblur_valid_boundary_round_trip(tmp_path, clean_png, capsys):
    k = np.zeros((7, 7), np.float32)
    k[3, :] = 1 / 7  # horizontal motion blur
    np.save(tmp_path / "k.npy", k)
    deg = tmp_path / "blurred.png"
    assert _run(["degrade", clean_png, "-o", deg, "--task", "deblur", "--kernel", tmp_path / "k.npy",
                 "--boundary", "valid", "--sigma", 1], capsys)[0] == 0
    assert read_image(deg).pixels.shape[:2] == (58, 58)  # 64 − 7 + 1
    res = tmp_path / "sharp.png"
    code, out, _ = _run(["restore", deg, "-o", res, "--method", "wiener", "--reference", clean_png, "--quiet"],
                        capsys)
    assert code == 0 and read_image(res).pixels.shape[:2] == (64, 64)


def test_sr_and_demosaic_shapes(tmp_path, clean_png, capsys):
    lr = tmp_path / "lr.png"
    assert _run(["degrade", clean_png, "-o", lr, "--task", "sr", "--scale", 4], capsys)[0] == 0
    assert read_image(lr).pixels.shape[:2] == (16, 16)
    assert _run(["restore", lr, "-o", tmp_path / "sr.png", "--method", "bicubic", "--quiet"], capsys)[0] == 0
    assert read_image(tmp_path / "sr.png").pixels.shape == (64, 64, 3)
    cfa = tmp_path / "cfa.png"
    assert _run(["degrade", clean_png, "-o", cfa, "--task", "demosaic"], capsys)[0] == 0
    assert read_image(cfa).pixels.shape == (64, 64, 1)
    assert _run(["restore", cfa, "-o", tmp_path / "rgb.png", "--quiet"], capsys)[0] == 0
    assert read_image(tmp_path / "rgb.png").pixels.shape == (64, 64, 3)


def _expect_error(args, capsys, match, tmp_path):
    before = set(tmp_path.iterdir())
    code, out, err = _run(args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and match in lines[0] and "Traceback" not in err, err
    assert set(tmp_path.iterdir()) == before  # no partial output


def test_bad_input_one_line_errors(tmp_path, clean_png, capsys):
    out = tmp_path / "out.png"
    _expect_error(["restore", tmp_path / "missing.png", "-o", out, "--task", "denoise"], capsys,
                  "missing.png", tmp_path)
    (tmp_path / "corrupt.png").write_bytes(b"not an image")
    _expect_error(["restore", tmp_path / "corrupt.png", "-o", out, "--task", "denoise"], capsys,
                  "corrupt.png", tmp_path)
    np.save(tmp_path / "big.npy", np.ones((99, 99), np.float32))
    _expect_error(["degrade", clean_png, "-o", out, "--task", "deblur", "--kernel", tmp_path / "big.npy"],
                  capsys, "larger than the image", tmp_path)
    nan = np.ones((3, 3), np.float32)
    nan[1, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    _expect_error(["degrade", clean_png, "-o", out, "--task", "deblur", "--kernel", tmp_path / "nan.npy"],
                  capsys, "nan.npy", tmp_path)
    _expect_error(["degrade", clean_png, "-o", out, "--task", "sr", "--scale", 5], capsys, "does not divide",
                  tmp_path)
    write_image(tmp_path / "mask.png", np.ones((10, 12), np.float32))
    _expect_error(["degrade", clean_png, "-o", out, "--task", "inpaint", "--mask", tmp_path / "mask.png"],
                  capsys, "but the image is 64x64", tmp_path)
    _expect_error(["restore", clean_png, "-o", out, "--task", "denoise", "--method", "wiener"], capsys,
                  "does not support task 'denoise'", tmp_path)
    _expect_error(["restore", clean_png, "-o", out, "--task", "denoise", "--method", "nosuch"], capsys,
                  "unknown method", tmp_path)
    _expect_error(["restore", clean_png, "-o", clean_png, "--task", "denoise", "--method", "tv"], capsys,
                  "overwrite", tmp_path)
    _expect_error(["restore", clean_png, "-o", out], capsys, "no spec", tmp_path)


def test_ctrl_c_saves_current_estimate(tmp_path, clean_png, capsys, monkeypatch):
    from deepprior.methods import base

    deg = tmp_path / "noisy.png"
    _run(["degrade", clean_png, "-o", deg, "--task", "denoise", "--sigma", 25], capsys)
    real_log = base.Progress.log

    def interrupting_log(self, t, *a, **k):
        if t == 5:
            raise KeyboardInterrupt
        return real_log(self, t, *a, **k)

    monkeypatch.setattr(base.Progress, "log", interrupting_log)
    res = tmp_path / "partial.png"
    code, out, _ = _run(["restore", deg, "-o", res, "--method", "tv", "--quiet"], capsys)
    assert code == 0 and res.exists() and "interrupted" in out


def test_ctrl_c_with_checkpoint_then_the_same_command_continues(tmp_path, clean_png, capsys, monkeypatch):
    """restore --checkpoint: Ctrl-C waits for the iteration to end, saves the fit and the
    current estimate; the same command again finishes the fit and removes the file."""
    import os
    import signal

    from deepprior.methods import base

    deg = tmp_path / "noisy.png"
    _run(["degrade", clean_png, "-o", deg, "--task", "denoise", "--sigma", 25], capsys)
    real_log = base.Progress.log

    def ctrl_c_at_4(self, t, *a, **k):
        if t == 4:
            os.kill(os.getpid(), signal.SIGINT)
        return real_log(self, t, *a, **k)

    monkeypatch.setattr(base.Progress, "log", ctrl_c_at_4)
    ckpt, res = tmp_path / "fit.pt", tmp_path / "restored.png"
    cmd = ["restore", deg, "-o", res, "--method", "dip", "--iters", 8, "--param",
           "net=" + json.dumps(TINY_HOURGLASS), "--checkpoint", ckpt, "--quiet"]
    code, out, _ = _run(cmd, capsys)
    assert code == 0 and "after 4 iterations" in out and "interrupted" in out and ckpt.exists()
    monkeypatch.setattr(base.Progress, "log", real_log)
    code, out, _ = _run(cmd, capsys)
    assert code == 0 and "after 8 iterations" in out and "interrupted" not in out and not ckpt.exists()
    _expect_error(["restore", deg, "-o", res, "--method", "tv", "--checkpoint", ckpt], capsys,
                  "does not checkpoint", tmp_path)


def test_methods_listing_and_console_script(capsys):
    code, out, _ = _run(["methods"], capsys)
    assert code == 0 and "wiener" in out and "demosaic" in out
    done = subprocess.run([sys.executable, "-m", "deepprior.cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and "deepprior" in done.stdout


def test_restore_with_dae_any_size(tmp_path, capsys, astronaut_crop):
    clean = tmp_path / "odd.png"
    write_image(clean, astronaut_crop[0, :, :37, :53].permute(1, 2, 0).numpy())
    deg = tmp_path / "odd_noisy.png"
    assert _run(["degrade", clean, "-o", deg, "--task", "denoise", "--sigma", 25], capsys)[0] == 0
    res = tmp_path / "odd_restored.png"
    code, out, _ = _run(["restore", deg, "-o", res, "--method", "dae", "--reference", clean, "--quiet"], capsys)
    assert code == 0 and read_image(res).pixels.shape == (37, 53, 3)
    c = read_image(clean).pixels
    assert psnr(read_image(res).pixels, c) > psnr(read_image(deg).pixels, c) + 5


def test_kernel_blind_restore_writes_the_kernel(tmp_path, clean_png, capsys):
    k = np.zeros((7, 7), np.float32)
    k[3, 1:6] = 1 / 5
    np.save(tmp_path / "k.npy", k)
    deg = tmp_path / "blurred.png"
    assert _run(["degrade", clean_png, "-o", deg, "--task", "deblur", "--kernel", tmp_path / "k.npy",
                 "--boundary", "valid", "--sigma", 2], capsys)[0] == 0
    (tmp_path / "blurred.json").unlink()  # blind: nothing known but the task and the kernel size
    res = tmp_path / "sharp.png"
    code, out, _ = _run(["restore", deg, "-o", res, "--task", "deblur", "--boundary", "valid",
                         "--method", "dmsp", "--kernel-blind", "--kernel-size", 7, "--iters", 5, "--quiet"],
                        capsys)
    assert code == 0 and read_image(res).pixels.shape[:2] == (64, 64)
    est = np.load(tmp_path / "sharp_kernel.npy")
    assert est.shape == (7, 7) and est.min() >= 0 and est.sum() == pytest.approx(1.0, abs=1e-5)
    assert (tmp_path / "sharp_kernel.png").exists()
