"""DIP §3.4 natural pre-image and §3.5 activation maximisation with our torchvision-layout
classifiers: layout, state-dict loading, layer cuts, the two fits and the CLI — on a
randomly initialised narrow AlexNet and 67² images (1 thread, seeded)."""

import pytest
import torch
import torch.nn.functional as F

from deepprior.methods.dip_apps import actmax, preimage
from deepprior.nets.classifier import (IMAGENET_MEAN, IMAGENET_STD, build_classifier,
                                       classifier_layers, load_classifier, read_state_dict)

pytestmark = pytest.mark.usefixtures("one_thread")

NET = {"n_down": (8,) * 6, "n_up": (8,) * 6}  # the presets' 6 levels at width 8
NARROW = dict(channels=(8, 16, 16, 16, 16), hidden=32, num_classes=10)


def narrow_alexnet(seed: int = 0):
    """A narrow AlexNet in torchvision's layout, He-initialised so activations keep their scale."""
    torch.manual_seed(seed)
    model = build_classifier("alexnet", **NARROW)
    with torch.no_grad():
        for m in model.net.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                m.bias.zero_()
    return model


@pytest.fixture(scope="module")
def alex():
    return narrow_alexnet()


@pytest.fixture
def weights(tmp_path, alex):
    path = tmp_path / "alexnet.pth"
    torch.save(alex.net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def image67():
    from skimage import data

    img = torch.from_numpy(data.astronaut()[0:256:2, 120:376:2].copy()).float().div(255)
    return F.interpolate(img.permute(2, 0, 1)[None], size=(67, 67), mode="bilinear",
                         antialias=True, align_corners=False).clamp(0, 1)


# ----------------------------------------------------------------------------- layout


TORCHVISION_ALEXNET = {  # torchvision.models.alexnet().state_dict() shapes
    "features.0.weight": (64, 3, 11, 11), "features.3.weight": (192, 64, 5, 5),
    "features.6.weight": (384, 192, 3, 3), "features.8.weight": (256, 384, 3, 3),
    "features.10.weight": (256, 256, 3, 3), "classifier.1.weight": (4096, 9216),
    "classifier.4.weight": (4096, 4096), "classifier.6.weight": (1000, 4096),
}


def test_layouts_match_torchvision():
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        alex = build_classifier("alexnet")
        vgg16, vgg19 = build_classifier("vgg16"), build_classifier("vgg19")
    sd = alex.net.state_dict()
    assert len(sd) == 16 and all(k.endswith((".weight", ".bias")) for k in sd)
    for k, shape in TORCHVISION_ALEXNET.items():
        assert tuple(sd[k].shape) == shape
    # parameter counts of torchvision's alexnet, vgg16, vgg19
    for model, count in ((alex, 61_100_840), (vgg16, 138_357_544), (vgg19, 143_667_240)):
        assert sum(p.numel() for p in model.net.parameters()) == count
        assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert [k for k in vgg16.net.state_dict() if k.startswith("classifier")] == [
        "classifier.0.weight", "classifier.0.bias", "classifier.3.weight", "classifier.3.bias",
        "classifier.6.weight", "classifier.6.bias"]
    assert tuple(vgg16.net.state_dict()["features.28.weight"].shape) == (512, 512, 3, 3)


def test_layer_names_and_cut_shapes():
    layers = classifier_layers("alexnet")
    assert layers["conv1"] == ("features", 1) and layers["conv5"] == ("features", 11)
    assert layers["fc6"] == ("classifier", 2) and layers["fc8"] == ("classifier", 6)
    assert classifier_layers("vgg16")["conv5_3"] == ("features", 29)
    assert classifier_layers("vgg16")["fc7"] == ("classifier", 4)
    expected = {"conv1": (64, 56, 56), "pool1": (64, 27, 27), "conv2": (192, 27, 27),
                "pool2": (192, 13, 13), "conv3": (384, 13, 13), "conv4": (256, 13, 13),
                "conv5": (256, 13, 13), "pool5": (256, 6, 6), "fc6": (4096,), "fc7": (4096,),
                "fc8": (1000,), "features.10": (256, 13, 13), "classifier.4": (4096,)}
    with torch.device("meta"):
        alex = build_classifier("alexnet")
        x = torch.zeros(1, 3, 227, 227)
        for name, shape in expected.items():
            assert tuple(alex.cut(name)(x).shape) == (1, *shape), name
        assert tuple(build_classifier("vgg16").cut("conv5_3")(torch.zeros(1, 3, 224, 224)).shape) == (1, 512, 14, 14)
    with pytest.raises(ValueError, match="unknown layer 'conv6'.*conv1"):
        alex.cut("conv6")
    with pytest.raises(ValueError, match="unknown layer"):
        alex.cut("features.13")


def test_cuts_share_the_weights_and_normalise_the_input(alex):
    x = torch.rand(1, 3, 67, 67, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = alex.net((x - mean) / std)
        torch.testing.assert_close(alex(x), logits)
        torch.testing.assert_close(alex.cut("fc8")(x), logits)
        conv1 = alex.net.features[:2]((x - mean) / std)
        torch.testing.assert_close(alex.cut("conv1")(x), conv1)
    assert alex.cut("conv5").body[0] is alex.net.features[0]  # shared, not copied


# ----------------------------------------------------------------------------- loading


def test_state_dict_round_trip_pth_and_safetensors(tmp_path, alex, weights):
    from safetensors.torch import save_file

    st = tmp_path / "alexnet.safetensors"
    save_file({k: v.contiguous() for k, v in alex.net.state_dict().items()}, str(st))
    x = torch.rand(1, 3, 67, 67, generator=torch.Generator().manual_seed(0))
    for path in (weights, st):
        loaded = load_classifier("alexnet", path)
        assert loaded.name == "alexnet" and not loaded.training
        assert not any(p.requires_grad for p in loaded.parameters())
        ref = alex.net.state_dict()
        got = loaded.net.state_dict()
        assert list(got) == list(ref)
        for k in ref:
            assert torch.equal(got[k], ref[k]), k
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), alex(x), rtol=0, atol=0)


def test_load_errors_are_clear(tmp_path, alex, weights):
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        load_classifier("alexnet", tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="unknown classifier 'resnet50'"):
        load_classifier("resnet50", weights)
    sd = alex.net.state_dict()
    renamed = {("net." + k if k.startswith("features.0") else k): v for k, v in sd.items()}
    torch.save(renamed, tmp_path / "renamed.pth")
    with pytest.raises(ValueError, match=r"not a torchvision-layout alexnet.*2 missing.*features\.0\.weight"
                                         r".*2 unexpected.*net\.features\.0"):
        load_classifier("alexnet", tmp_path / "renamed.pth")
    torch.save({k: v for k, v in sd.items() if k != "classifier.6.bias"}, tmp_path / "short.pth")
    with pytest.raises(ValueError, match=r"1 missing \(e\.g\. classifier\.6\.bias\)"):
        load_classifier("alexnet", tmp_path / "short.pth")
    bad = dict(sd, **{"classifier.1.weight": torch.zeros(32, 17)})
    torch.save(bad, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match=r"classifier\.1\.weight has shape \(32, 17\)"):
        load_classifier("alexnet", tmp_path / "shape.pth")
    with pytest.raises(ValueError, match="vgg16 state_dict"):
        load_classifier("vgg16", weights)
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="does not hold a state_dict"):
        read_state_dict(tmp_path / "list.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot read"):
        load_classifier("alexnet", tmp_path / "junk.pth")


# ----------------------------------------------------------------------------- fits


def test_preimage_decreases_the_feature_loss(alex, image67):
    res = preimage(image67, alex, "conv5", iters=12, lr=0.01, net=NET, precision="fp32", seed=0)
    loss = [h["loss"] for h in res.history]
    assert res.image.shape == (1, 3, 67, 67) and 0 <= float(res.image.min()) <= float(res.image.max()) <= 1
    assert len(loss) == 12 and loss[-1] < 0.5 * loss[0]
    assert res.extras["final_loss"] < 0.5 * res.extras["initial_loss"]
    assert res.extras["feature_shape"] == [1, 16, 3, 3]
    s = res.settings
    assert (s["preset"], s["layer"], s["classifier"], s["sigma_p"], s["lr"]) == ("preimage", "conv5", "alexnet", 0.0, 0.01)
    assert s["net"]["pad"] == "zero" and s["net"]["upsample"] == ["nearest"] * 6
    again = preimage(image67, alex, "conv5", iters=12, lr=0.01, net=NET, precision="fp32", seed=0)
    torch.testing.assert_close(again.image, res.image, rtol=0, atol=0)  # seeded


def test_preimage_defaults_gray_input_and_errors(alex, image67):
    gray = image67.mean(1, keepdim=True)
    res = preimage(gray, alex, "fc6", iters=1, net=NET, precision="fp32", size=64)
    assert res.image.shape == (1, 3, 64, 64) and res.extras["target"].shape == (1, 3, 64, 64)
    assert res.settings["iters"] == 1 and res.settings["lr"] == 0.001  # §4 LR
    with pytest.raises(ValueError, match="at least 63×63"):
        preimage(image67[..., :40, :40], alex, "conv5", iters=1, net=NET)
    with pytest.raises(ValueError, match="name a layer"):
        preimage(image67, alex, None, iters=1, net=NET)


def test_actmax_increases_the_unit(alex):
    res = actmax(alex, 3, size=67, iters=10, lr=0.05, net=NET, precision="fp32", seed=0)
    acts = [h["activation"] for h in res.history]
    assert [h["loss"] for h in res.history] == [-a for a in acts]
    assert res.image.shape == (1, 3, 67, 67)
    assert res.extras["activation"] > res.extras["initial_activation"] + 0.5
    assert max(acts[-3:]) > acts[0]
    s = res.settings
    assert (s["preset"], s["unit"], s["layer"], s["sigma_p"]) == ("actmax", 3, "fc8", 0.03)
    assert s["net"]["upsample"] == ["bilinear"] * 6 and s["net"]["pad"] == "zero"
    # a convolutional neuron: the centre pixel of map 5, before conv5's ReLU
    res = actmax(alex, 5, layer="features.10", size=67, iters=8, lr=0.05, net=NET, precision="fp32")
    assert res.extras["feature_shape"] == [1, 16, 3, 3]
    assert res.extras["activation"] > res.extras["initial_activation"]


def test_actmax_validation(alex):
    with pytest.raises(ValueError, match="unit 10 is out of range.*10 units"):
        actmax(alex, 10, size=67, iters=1, net=NET)
    with pytest.raises(ValueError, match="at least 63×63"):
        actmax(alex, 0, size=32, iters=1, net=NET)
    # a plain callable as Φ
    res = actmax(lambda x: x.mean((2, 3)), 0, layer=None, size=16, iters=2, net=NET, precision="fp32")
    assert res.image.shape == (1, 3, 16, 16) and res.settings["size"] == [16, 16]


# ----------------------------------------------------------------------------- CLI


def test_cli_preimage_actmax_and_errors(tmp_path, weights, image67, monkeypatch, capsys):
    from deepprior.cli import main
    from deepprior.io import read_image, write_image

    monkeypatch.setenv("DEEPPRIOR_THREADS", "1")  # main() sets the thread count
    src = tmp_path / "x.png"
    write_image(src, image67[0].permute(1, 2, 0).numpy())
    net = '{"n_down": [8, 8, 8, 8, 8, 8], "n_up": [8, 8, 8, 8, 8, 8]}'
    out = tmp_path / "pre.png"
    assert main(["dip-app", "preimage", str(src), "-o", str(out), "--weights", str(weights),
                 "--layer", "conv3", "--iters", "2", "--quiet", "--param", f"net={net}"]) == 0
    assert read_image(out).pixels.shape == (67, 67, 3)
    assert "feature loss" in capsys.readouterr().out
    out = tmp_path / "act.png"
    assert main(["dip-app", "actmax", "-o", str(out), "--classifier", "alexnet", "--weights",
                 str(weights), "--unit", "7", "--size", "64", "--iters", "2", "--quiet",
                 "--param", f"net={net}", "--param", "lr=0.01"]) == 0
    assert read_image(out).pixels.shape == (64, 64, 3)
    assert "activation" in capsys.readouterr().out

    bad = tmp_path / "never.png"
    cases = [
        (["preimage", str(src), "--weights", str(tmp_path / "missing.pth")], "weights file not found"),
        (["preimage", str(src), "--weights", str(weights), "--layer", "conv9"], "unknown layer 'conv9'"),
        (["actmax", "--weights", str(weights), "--unit", "1", "--classifier", "resnet"], "unknown classifier"),
        (["actmax", "--weights", str(weights), "--unit", "99", "--size", "64"], "unit 99 is out of range"),
        (["actmax", "--weights", str(weights), "--unit", "1", "--param", "foo=1"], "unknown --param foo"),
    ]
    for argv, msg in cases:
        assert main(["dip-app", *argv, "-o", str(bad), "--iters", "1", "--quiet",
                     "--param", f"net={net}"]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert msg in err and "\n" not in err, err
    assert not bad.exists()
