"""DIP generator networks: any input size for every architecture, and the §4 presets."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from deepprior.nets.hourglass import (PRESETS, NetSpec, build_net, center_crop, get_preset,
                                      padded_size, reflect_pad, with_arch)

pytestmark = pytest.mark.usefixtures("one_thread")


TINY = NetSpec(n_down=(4, 6, 8), n_skip=2)
SHAPES = [(1, 1), (5, 7), (17, 33), (31, 45), (32, 32), (8, 8), (64, 16)]


@pytest.mark.parametrize("arch", ["skip", "noskip", "unet", "resnet"])
def test_output_size_equals_input_size_for_odd_and_small_shapes(arch):
    torch.manual_seed(0)
    spec = with_arch(TINY, arch)
    net = build_net(spec, 3, 2)
    for h, w in SHAPES:
        with torch.no_grad():
            out = net(torch.rand(1, 3, h, w))
        assert out.shape == (1, 2, h, w), (arch, h, w)
        assert torch.isfinite(out).all()
        assert float(out.min()) >= 0 and float(out.max()) <= 1  # sigmoid output


def test_deep_preset_network_on_a_small_odd_image():
    """The 6-level Fig. 13 network (multiple 64) on a 23×9 input: the 1×1 deepest maps need
    the replication fallback of the reflection pad and a two-cell canvas for batch norm."""
    spec = get_preset("inpaint-hole-deep").net.updated(n_down=(4, 4, 4, 4, 4, 4))
    net = build_net(spec, 32, 3)
    assert net.multiple == 64
    assert net(torch.rand(1, 32, 23, 9)).shape == (1, 3, 23, 9)


def test_padded_size():
    assert padded_size(64, 64, 32) == (64, 64)
    assert padded_size(65, 33, 32) == (96, 64)
    assert padded_size(20, 30, 32) == (32, 64)   # one 32×32 cell would leave a 1×1 deepest map
    assert padded_size(40, 10, 32) == (64, 32)
    assert padded_size(1, 1, 1) == (1, 2)


def test_reflect_pad_matches_numpy_reflect_and_crops_back():
    import numpy as np

    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    y = reflect_pad(x, 7, 8)
    ref = np.pad(x[0, 0].numpy(), ((2, 2), (2, 2)), mode="reflect")
    assert torch.equal(y[0, 0], torch.from_numpy(ref))
    assert torch.equal(center_crop(y, 3, 4), x)
    wide = reflect_pad(x, 3, 25)  # pad much wider than the axis: periodic mirror
    assert wide.shape == (1, 1, 3, 25) and torch.equal(center_crop(wide, 3, 4), x)


def test_default_preset_is_the_paper_super_resolution_setup():
    p = get_preset("sr")  # §4 "Super-resolution (default architecture)"
    s = p.net
    assert (p.input, p.input_channels, p.sigma_p, p.iters, p.lr) == ("noise", 32, 1 / 30, 2000, 0.01)
    assert s.n_down == s.n_up == (128,) * 5 and s.n_skip == (4,) * 5
    assert s.k_down == s.k_up == (3,) * 5 and s.k_skip == (1,) * 5
    assert s.upsample == ("bilinear",) * 5 and s.pad == "reflection" and s.multiple == 32
    assert (PRESETS["sr8"].sigma_p, PRESETS["sr8"].iters) == (1 / 20, 4000)
    assert (PRESETS["denoise"].iters, PRESETS["denoise"].ema) == (1800, 0.99)
    j = PRESETS["jpeg"]
    assert (j.input_channels, j.net.n_down, j.net.n_skip, j.iters) == (3, (8, 16, 32, 64, 128),
                                                                     (0, 0, 0, 4, 4), 2400)
    assert PRESETS["inpaint-text"].iters == 6000
    hole = PRESETS["inpaint-hole"]
    assert (hole.input, hole.input_channels, hole.net.n_skip, hole.iters) == ("meshgrid", 2, (0,) * 5, 5000)
    deep = PRESETS["inpaint-hole-deep"]
    assert deep.net.n_down == (16, 32, 64, 128, 128, 128) and deep.net.k_up == (5,) * 6
    assert (deep.sigma_p, deep.lr, deep.net.upsample[0]) == (0.0, 0.1, "nearest")
    assert (PRESETS["reconstruction"].iters, PRESETS["reconstruction"].lr) == (11000, 0.001)
    assert PRESETS["enhance"].sigma_p == 0 and PRESETS["flash"].input == "guide"
    assert PRESETS["preimage"].net.pad == "zero" and PRESETS["actmax"].net.pad == "zero"


def test_default_network_structure():
    net = build_net(get_preset("sr").net, 32, 3)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    # per level: skip 1×1, two strided/3×3 down convs, 3×3 up conv, 1×1 up conv; + output 1×1
    assert len(convs) == 5 * 5 + 1
    assert sum(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.2 for m in net.modules()) == 5 * 5
    assert sum(c.stride == (2, 2) for c in convs) == 5
    n_params = sum(p.numel() for p in net.parameters())
    assert 2.1e6 < n_params < 2.3e6


def test_zero_padding_and_arch_variants():
    net = build_net(TINY.updated(pad="zero"), 3, 3)
    assert all(c.padding in ((1, 1), (0, 0)) for c in net.modules() if isinstance(c, nn.Conv2d))
    assert not any(type(m).__name__ == "_Pad" for m in net.modules())
    noskip = with_arch(TINY, "noskip")
    assert noskip.n_skip == (0, 0, 0) and noskip.arch == "skip"
    assert with_arch(TINY, "unet").multiple == 16 and with_arch(TINY, "resnet").multiple == 1
    with pytest.raises(ValueError):
        NetSpec(n_down=(4, 4), n_up=(4, 4, 4))
    with pytest.raises(ValueError):
        with_arch(TINY, "vgg")


def test_padding_and_upsampling_keep_bf16_under_autocast():
    """No fp32 round trip between bf16 convolutions (CPU autocast upcasts pad/interpolate)."""
    from deepprior.nets.hourglass import _Pad, upsample2

    x = torch.rand(1, 4, 6, 6, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        padded = _Pad(2)(x.bfloat16())
        up = upsample2(x.bfloat16(), "bilinear")
    assert padded.dtype == torch.bfloat16 and up.dtype == torch.bfloat16
    torch.testing.assert_close(padded.float(), F.pad(x.bfloat16().float(), (2,) * 4, mode="reflect"))
    ref = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(up.float(), ref, atol=2e-2, rtol=0)
    torch.testing.assert_close(upsample2(x, "nearest"), F.interpolate(x, scale_factor=2, mode="nearest"))


def test_upsampling_layout_hook_keeps_the_gradient():
    """The layout hook of the ×2 upsampling (a speed fix) leaves its gradient unchanged and
    channels_last."""
    from deepprior.nets.hourglass import upsample2

    x = torch.rand(1, 8, 6, 6).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    out = upsample2(x, "bilinear")
    g = torch.rand(1, 16, 12, 12).contiguous(memory_format=torch.channels_last)[:, 4:12]  # as from cat
    out.backward(g)
    assert x.grad.is_contiguous(memory_format=torch.channels_last)
    ref = x.detach().clone().requires_grad_(True)
    F.interpolate(ref, scale_factor=2, mode="bilinear", align_corners=False).backward(g)
    torch.testing.assert_close(x.grad, ref.grad)
