import json

import numpy as np
import pytest
import torch

from deepprior.compute import get_compute
from deepprior.metrics import psnr
from deepprior.nets.dae import DAE, FastDAE, fold_batchnorm, load_dae, save_dae, default_weights_path
from deepprior.train import TrainConfig, train_dae


def _randomise_bn(net):
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def test_batchnorm_folding_is_exact():
    torch.manual_seed(0)
    dae = DAE("dncnn", 3, (0, 50 / 255), depth=6, width=16).eval()
    _randomise_bn(dae.net)
    x = torch.rand(2, 3, 23, 17)
    folded = fold_batchnorm(dae.net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    xin = dae._with_sigma(x, 0.1)
    with torch.no_grad():
        assert torch.allclose(dae.net(xin), folded(xin), atol=1e-5)


@pytest.mark.parametrize("arch", ["dncnn", "unet"])
def test_any_size_and_gray(arch):
    kw = {"depth": 4, "width": 8} if arch == "dncnn" else {"widths": (8, 16, 32)}
    dae = DAE(arch, 1, (0, 50 / 255), **kw).eval()
    for h, w in [(1, 1), (7, 13), (33, 64)]:
        x = torch.rand(1, 1, h, w)
        with torch.no_grad():
            assert dae(x, 0.1).shape == x.shape


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    dae = DAE("unet", 3, (0, 55 / 255), widths=(8, 16, 32)).eval()
    save_dae(dae, tmp_path / "w.safetensors", {"note": "test"})
    back = load_dae(tmp_path / "w.safetensors")
    assert back.config() == dae.config() and back.card == {"note": "test"}
    x = torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        assert torch.equal(dae(x, 0.1), back(x, 0.1))
    assert (tmp_path / "w.json").exists()


def test_tiled_inference_matches_untiled():
    torch.manual_seed(0)
    dae = DAE("unet", 3, (0, 55 / 255), widths=(8, 16, 32)).eval()
    comp = get_compute("cpu", "fp32")
    x = torch.rand(1, 3, 150, 130)
    whole = FastDAE(dae, comp)(x, 0.1)
    tiled = FastDAE(dae, comp, tile=96, overlap=32)(x, 0.1)
    # tiles on the network's pooling grid with 32 pixels of context reproduce the whole-image output
    assert (tiled - whole).abs().max() < 1e-5


def _write_training_images(folder, n=10, size=72):
    from skimage import data

    from deepprior.io import write_image

    folder.mkdir()
    img = data.astronaut().astype(np.float32) / 255
    rng = np.random.default_rng(0)
    for i in range(n):
        r, c = rng.integers(0, 512 - size, 2)
        write_image(folder / f"im{i:02d}.png", img[r:r + size, c:c + size])
    return folder


def _tiny_config(folder, steps, **kw):
    return TrainConfig(data=str(folder), channels=3, arch="unet", arch_kwargs={"widths": (8, 16, 32)},
                       steps=steps, batch=4, patch=32, val_count=2, val_crop=48, val_every=10,
                       ckpt_every=10, precision="fp32", device="cpu", seed=3, **kw)


def test_tiny_training_improves_and_resumes_exactly(tmp_path):
    folder = _write_training_images(tmp_path / "data")
    quiet = dict(progress=False, log=lambda *a: None)
    full = train_dae(_tiny_config(folder, 40), tmp_path / "full.safetensors", **quiet)
    curve = full.card["curve"]
    assert curve[-1]["val_psnr"]["25"] > curve[0]["val_psnr"]["25"] + 0.5
    # an interrupted run (stopped at step 20) resumed from its checkpoint is bit-identical
    ck = tmp_path / "run.ckpt"
    train_dae(_tiny_config(folder, 40), tmp_path / "run.safetensors", checkpoint=ck, stop_at=20, **quiet)
    assert not (tmp_path / "run.safetensors").exists()
    resumed = train_dae(_tiny_config(folder, 40), tmp_path / "run.safetensors", checkpoint=ck, resume=ck,
                        **quiet)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_init_continues_from_weights(tmp_path):
    folder = _write_training_images(tmp_path / "data")
    quiet = dict(progress=False, log=lambda *a: None)
    parent = train_dae(_tiny_config(folder, 20), tmp_path / "parent.safetensors", **quiet)
    fresh = train_dae(_tiny_config(folder, 5), tmp_path / "fresh.safetensors", **quiet)
    tuned = train_dae(_tiny_config(folder, 5, lr=3e-4), tmp_path / "tuned.safetensors",
                      init=tmp_path / "parent.safetensors", **quiet)
    # starting from the parent's weights, 5 steps end far above 5 steps from scratch
    assert tuned.card["curve"][-1]["val_psnr"]["25"] > fresh.card["curve"][-1]["val_psnr"]["25"] + 0.5
    assert tuned.card["init"]["steps"] == 20 and tuned.card["total_steps"] == 25
    assert tuned.card["init"]["validation_psnr"] == parent.card["validation_psnr"]
    assert tuned.card["init"]["data"] == parent.card["data"]["train"] and tuned.card["init"]["init"] is None
    assert tuned.card["init"]["stage_steps"] == 20
    # eval-dae scores weight files on the same held-aside images and noise as training did
    from deepprior.cli import main

    out = tmp_path / "eval.json"
    assert main(["eval-dae", str(tmp_path / "parent.safetensors"), str(tmp_path / "tuned.safetensors"),
                 "--data", str(folder), "--val-count", "2", "--crop", "48", "--precision", "fp32", "--device", "cpu",
                 "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    for row, card in zip(rows, (parent.card, tuned.card)):
        assert row["val_psnr"].keys() == card["validation_psnr"].keys()
        for sigma, value in card["validation_psnr"].items():
            assert abs(row["val_psnr"][sigma] - value) < 1e-3, sigma
    other = _tiny_config(folder, 5)
    other.arch_kwargs = {"widths": (4, 8, 16)}
    with pytest.raises(ValueError, match="must match"):
        train_dae(other, tmp_path / "bad.safetensors", init=tmp_path / "parent.safetensors", **quiet)


@pytest.mark.skipif(not default_weights_path(3).exists(), reason="colour DAE weights not shipped yet")
@pytest.mark.parametrize("channels", [1, 3])
def test_shipped_dae_uses_sigma(channels, astronaut_crop, camera_crop):
    """Conditional σ: denoising at σ=25 works best when the network is told σ=25."""
    from deepprior.denoisers import DAEDenoiser

    if not default_weights_path(channels).exists():
        pytest.skip("weights not shipped")
    x = astronaut_crop if channels == 3 else camera_crop
    y = x + 25 / 255 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    den = DAEDenoiser(compute=get_compute("cpu", "fp32"))
    right = psnr(den(y, 25 / 255).clamp(0, 1), x)
    assert right > psnr(y.clamp(0, 1), x) + 6
    assert right > psnr(den(y, 10 / 255).clamp(0, 1), x) + 1
    assert right > psnr(den(y, 50 / 255).clamp(0, 1), x) + 0.5


@pytest.mark.parametrize("channels", [1, 3])
def test_bf16_matches_fp32_denoising(channels, astronaut_crop, camera_crop):
    """Compute policy: the bf16 fast path loses < 0.05 dB against fp32 (DESIGN.md)."""
    from deepprior.compute import cpu_has_fast_bf16
    from deepprior.denoisers import DAEDenoiser

    if not cpu_has_fast_bf16():
        pytest.skip("no bf16 units on this CPU")
    x = astronaut_crop if channels == 3 else camera_crop
    y = x + 25 / 255 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    p32 = psnr(DAEDenoiser(compute=get_compute("cpu", "fp32"))(y, 25 / 255).clamp(0, 1), x)
    p16 = psnr(DAEDenoiser(compute=get_compute("cpu", "bf16"))(y, 25 / 255).clamp(0, 1), x)
    assert abs(p32 - p16) < 0.05, (p32, p16)
