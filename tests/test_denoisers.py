import pytest
import torch

from deepprior.denoisers import DENOISERS, DAEDenoiser, dihedral, dihedral_inverse, get_denoiser
from deepprior.metrics import psnr
from deepprior.methods import get_method
from deepprior.operators import Blur, Identity
from helpers import tiny_dae


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


def test_nlm_options_strength_and_per_channel(astronaut_crop):
    """h_factor sets the filtering strength; per_channel=True equals NLM of each channel alone
    (as a gray image) and differs from the joint colour-patch weights; bad options fail clearly."""
    x = astronaut_crop[..., :32, :32]
    y = x + 20 / 255 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    s = 20 / 255
    weak, strong = get_denoiser("nlm", h_factor=0.3)(y, s), get_denoiser("nlm", h_factor=1.2)(y, s)
    assert (weak - y).abs().mean() < (strong - y).abs().mean()
    per = get_denoiser("nlm", per_channel=True)(y, s)
    gray_nlm = get_denoiser("nlm")
    expected = torch.cat([gray_nlm(y[:, c:c + 1], s) for c in range(3)], dim=1)
    torch.testing.assert_close(per, expected)
    assert not torch.allclose(per, gray_nlm(y, s), atol=1e-3)
    with pytest.raises(ValueError, match="no option"):
        get_denoiser("nlm", h=0.6)
    with pytest.raises(ValueError, match="h_factor"):
        get_denoiser("nlm", h_factor=0)


def test_denoise_method_estimates_sigma_when_blind(camera_crop):
    y = camera_crop + 15 / 255 * torch.randn(camera_crop.shape, generator=torch.Generator().manual_seed(1))
    res = get_method("bm3d").run(y, Identity())
    assert res.settings["sigma_estimated"] and abs(res.settings["sigma"] * 255 - 15) < 3
    assert psnr(res.image, camera_crop) > psnr(y.clamp(0, 1), camera_crop) + 3
    with pytest.raises(ValueError, match="only denoises"):
        get_method("bm3d").run(y, Blur(torch.ones(3, 3) / 9))


def test_dihedral_transforms_are_the_eight_symmetries():
    """The 8 flips/rotations of a non-square image are distinct and each is undone exactly."""
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 5, 7)
    outs = [dihedral(x, k) for k in range(8)]
    assert len({tuple(o.flatten().tolist()) for o in outs}) == 8
    for k, o in enumerate(outs):
        assert o.shape[-2:] == ((5, 7) if k % 2 == 0 else (7, 5))
        assert torch.equal(dihedral_inverse(o, k), x)


def test_dae_self_ensemble_averages_the_eight_symmetries(camera_crop):
    """self_ensemble=True returns the mean of T⁻¹ f(T y) over the 8 flips/rotations T."""
    dae = tiny_dae()
    y = camera_crop[..., :40, :36]
    plain = DAEDenoiser(dae, self_ensemble=False)
    ens = DAEDenoiser(dae, self_ensemble=True)(y, 25 / 255)
    expected = sum(dihedral_inverse(plain(dihedral(y, k), 25 / 255), k) for k in range(8)) / 8
    torch.testing.assert_close(ens, expected)
    assert not torch.allclose(ens, plain(y, 25 / 255))


def test_bm3d_profile_and_threads(astronaut_crop):
    """The low-complexity profile still denoises (and is a different filter than 'np'); the
    binary's threads follow torch's unless given; bad options fail clearly."""
    x = astronaut_crop[..., :48, :48]
    y = x + 25 / 255 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    normal, low = get_denoiser("bm3d")(y, 25 / 255), get_denoiser("bm3d", profile="lc")(y, 25 / 255)
    assert psnr(low.clamp(0, 1), x) > psnr(y.clamp(0, 1), x) + 3
    assert (normal - low).abs().max() > 1e-4
    assert get_denoiser("bm3d")._profile().num_threads == torch.get_num_threads()
    assert get_denoiser("bm3d", threads=1)._profile().num_threads == 1
    with pytest.raises(ValueError, match="unknown BM3D profile"):
        get_denoiser("bm3d", profile="fast")
    with pytest.raises(ValueError, match="positive integer"):
        get_denoiser("bm3d", threads=0)
