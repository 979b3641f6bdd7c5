import pytest
import torch

from deepprior.denoisers import DENOISERS, get_denoiser
from deepprior.metrics import psnr
from deepprior.methods import get_method
from deepprior.operators import Blur, Identity


@pytest.mark.parametrize("name", ["nlm", "bm3d", "tv"])
@pytest.mark.parametrize("fixture", ["astronaut_crop", "camera_crop"])
def test_classical_denoisers_gain(name, fixture, request):
    x = request.getfixturevalue(fixture)
    y = x + 25 / 255 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    out = get_denoiser(name)(y, 25 / 255)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert psnr(out.clamp(0, 1), x) > psnr(y.clamp(0, 1), x) + 3


def test_denoiser_errors():
    x = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match="unknown denoiser"):
        get_denoiser("nope")
    with pytest.raises(ValueError, match="8-bit units"):
        get_denoiser("tv")(x, 25)
    with pytest.raises(ValueError, match="non-negative"):
        get_denoiser("tv")(x, -0.1)
    assert set(DENOISERS) == {"dae", "nlm", "bm3d", "tv"}


def test_denoise_method_estimates_sigma_when_blind(camera_crop):
    y = camera_crop + 15 / 255 * torch.randn(camera_crop.shape, generator=torch.Generator().manual_seed(1))
    res = get_method("bm3d").run(y, Identity())
    assert res.settings["sigma_estimated"] and abs(res.settings["sigma"] * 255 - 15) < 3
    assert psnr(res.image, camera_crop) > psnr(y.clamp(0, 1), camera_crop) + 3
    with pytest.raises(ValueError, match="only denoises"):
        get_method("bm3d").run(y, Blur(torch.ones(3, 3) / 9))
