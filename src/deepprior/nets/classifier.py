"""ImageNet classifiers for the DIP visualisations (§3.4 natural pre-image, §3.5 activation
maximisation), written here without torchvision.

The modules are laid out exactly as torchvision's ``alexnet``, ``vgg16`` and ``vgg19``
(same module names and indices, same shapes), so a torchvision-format ``state_dict`` file
loads with strict key matching:

* ``.pth`` / ``.pt``: read with ``torch.load(path, map_location='cpu', weights_only=True)``
  (no arbitrary code runs); the file must hold the state dict itself (an ``OrderedDict`` of
  tensors), as torchvision's downloads do.
* ``.safetensors``: read with ``safetensors.torch.load_file``.

AlexNet (torchvision layout; the one-tower variant, without the local response
normalisation of Krizhevsky et al.)::

    features.0   Conv2d(3, 64, 11, stride 4, pad 2)     conv1 (before its ReLU)
    features.1   ReLU                                   -> 'conv1'
    features.2   MaxPool2d(3, 2)                        -> 'pool1'
    features.3   Conv2d(64, 192, 5, pad 2)
    features.4   ReLU                                   -> 'conv2'
    features.5   MaxPool2d(3, 2)                        -> 'pool2'
    features.6   Conv2d(192, 384, 3, pad 1)
    features.7   ReLU                                   -> 'conv3'
    features.8   Conv2d(384, 256, 3, pad 1)
    features.9   ReLU                                   -> 'conv4'
    features.10  Conv2d(256, 256, 3, pad 1)
    features.11  ReLU                                   -> 'conv5'
    features.12  MaxPool2d(3, 2)                        -> 'pool5'
    avgpool      AdaptiveAvgPool2d(6, 6), then flatten (9216 values)
    classifier.0 Dropout(0.5)
    classifier.1 Linear(9216, 4096)
    classifier.2 ReLU                                   -> 'fc6'
    classifier.3 Dropout(0.5)
    classifier.4 Linear(4096, 4096)
    classifier.5 ReLU                                   -> 'fc7'
    classifier.6 Linear(4096, 1000)                     -> 'fc8' (class scores before softmax)

The named layers follow Caffe's blobs, where the ReLUs work in place: ``'convK'``, ``'fc6'``
and ``'fc7'`` are *rectified* activations; ``'fc8'`` are the logits. Any module can also be
named directly — ``'features.N'`` or ``'classifier.N'`` cuts the network right after that
module (e.g. ``'features.10'`` = conv5 before its ReLU).

VGG-16 / VGG-19 (torchvision layout, no batch norm): ``features`` is the sequence of
``Conv2d(3×3, pad 1) → ReLU`` pairs with a ``MaxPool2d(2, 2)`` closing each of the five
blocks; ``avgpool`` is ``AdaptiveAvgPool2d(7, 7)``; ``classifier`` is ``Linear(25088, 4096),
ReLU, Dropout, Linear(4096, 4096), ReLU, Dropout, Linear(4096, 1000)``. Named layers:
``'convB_J'`` (block B, convolution J, after its ReLU), ``'poolB'``, ``'fc6'`` (classifier.1,
before its ReLU), ``'fc7'`` (classifier.4, before its ReLU) and ``'fc8'`` (classifier.6). (In
the VGG layouts the fc ReLUs are followed by a dropout, not a cut point; name
``'classifier.2'`` / ``'classifier.5'`` for the rectified values.)

Input: RGB in [0, 1], 1×3×H×W. :class:`ImageClassifier` applies torchvision's ImageNet
normalisation, ``(x − mean) / std`` with mean = (0.485, 0.456, 0.406) and std = (0.229, 0.224,
0.225) per channel, before the network, and so does every cut (:meth:`ImageClassifier.cut`).
The adaptive average pool makes any input size work from a minimum (AlexNet: 63 pixels, VGG:
32); the conventional sizes are 227 (AlexNet, as in Caffe and the DIP paper) and 224 (VGG).

Widths (channels of each convolution, the hidden fc width and the number of classes) are
read from the weights file, so narrower networks in the same layout (tests) load too; the
torchvision files give the shapes above.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

__all__ = ["AlexNet", "VGG", "ImageClassifier", "FeatureCut", "CLASSIFIERS", "IMAGENET_MEAN",
           "IMAGENET_STD", "build_classifier", "load_classifier", "classifier_layers",
           "cut_classifier", "read_state_dict", "resolve_layer"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_VGG_CONFIGS = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"),
}
# name -> (default input size, minimum input size)
CLASSIFIERS = {"alexnet": (227, 63), "vgg16": (224, 32), "vgg19": (224, 32)}
_ALEXNET_CONVS = (0, 3, 6, 8, 10)  # indices of the convolutions in features


# ----------------------------------------------------------------------------- networks


class AlexNet(nn.Module):
    """AlexNet in torchvision's layout (see the module docstring for the indices)."""

    def __init__(self, num_classes: int = 1000, channels=(64, 192, 384, 256, 256),
                 hidden: int = 4096, dropout: float = 0.5):
        super().__init__()
        c1, c2, c3, c4, c5 = (int(c) for c in channels)
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(c5 * 6 * 6, hidden), nn.ReLU(inplace=True),
            nn.Dropout(p=dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class VGG(nn.Module):
    """VGG without batch norm in torchvision's layout; ``config`` lists the convolution
    widths with ``'M'`` for each max-pool."""

    def __init__(self, config, num_classes: int = 1000, hidden: int = 4096, dropout: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in config:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(c, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                c = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(c * 7 * 7, hidden), nn.ReLU(inplace=True), nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(p=dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# ----------------------------------------------------------------------------- layer names


def _check_name(name: str) -> str:
    key = str(name).lower()
    if key not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; available: {', '.join(CLASSIFIERS)}")
    return key


def classifier_layers(name: str) -> dict[str, tuple[str, int]]:
    """Named cut points of classifier ``name``: layer → (``'features'`` or ``'classifier'``,
    index of the last module run). See the module docstring."""
    key = _check_name(name)
    if key == "alexnet":
        return {"conv1": ("features", 1), "pool1": ("features", 2), "conv2": ("features", 4),
                "pool2": ("features", 5), "conv3": ("features", 7), "conv4": ("features", 9),
                "conv5": ("features", 11), "pool5": ("features", 12), "fc6": ("classifier", 2),
                "fc7": ("classifier", 5), "fc8": ("classifier", 6)}
    layers: dict[str, tuple[str, int]] = {}
    block, conv, i = 1, 1, 0
    for v in _VGG_CONFIGS[key]:
        if v == "M":
            layers[f"pool{block}"] = ("features", i)
            block, conv, i = block + 1, 1, i + 1
        else:
            layers[f"conv{block}_{conv}"] = ("features", i + 1)
            conv, i = conv + 1, i + 2
    layers.update(fc6=("classifier", 1), fc7=("classifier", 4), fc8=("classifier", 6))
    return layers


def _module_count(name: str) -> tuple[int, int]:
    key = _check_name(name)
    n_features = 13 if key == "alexnet" else sum(1 if v == "M" else 2 for v in _VGG_CONFIGS[key])
    return n_features, 7


def resolve_layer(name: str, layer: str) -> tuple[str, int]:
    """(part, index) of ``layer`` — a named layer or 'features.N' / 'classifier.N' — in
    classifier ``name``; ValueError listing the names when unknown."""
    layers = classifier_layers(name)
    if layer in layers:
        return layers[layer]
    n_features, n_classifier = _module_count(name)
    part, _, index = str(layer).partition(".")
    if part in ("features", "classifier") and index.isdigit():
        idx = int(index)
        if idx < (n_features if part == "features" else n_classifier):
            return part, idx
    raise ValueError(f"unknown layer {layer!r} for {name}; use one of {', '.join(layers)} "
                     f"or features.N (N < {n_features}) / classifier.N (N < {n_classifier})")


# ----------------------------------------------------------------------------- wrappers


def _norm_buffers(module: nn.Module) -> None:
    module.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
    module.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)


class FeatureCut(nn.Module):
    """Φ(x): ImageNet normalisation and the classifier's modules up to a cut point. The
    modules are shared with the classifier (no copy)."""

    def __init__(self, body: nn.Sequential, layer: str):
        super().__init__()
        _norm_buffers(self)
        self.body = body
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: N×3×H×W RGB in [0, 1]."""
        return self.body((x - self.mean) / self.std)


class ImageClassifier(nn.Module):
    """An ImageNet classifier taking RGB in [0, 1]: normalises, then runs :attr:`net` (the
    torchvision-layout module, whose ``state_dict`` is the file's)."""

    def __init__(self, name: str, net: nn.Module):
        super().__init__()
        self.name = _check_name(name)
        self.net = net
        _norm_buffers(self)

    @property
    def default_size(self) -> int:
        """Conventional input side: 227 for AlexNet, 224 for VGG."""
        return CLASSIFIERS[self.name][0]

    @property
    def min_size(self) -> int:
        """Smallest input side the network accepts (AlexNet 63, VGG 32)."""
        return CLASSIFIERS[self.name][1]

    @property
    def layers(self) -> dict[str, tuple[str, int]]:
        return classifier_layers(self.name)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x − mean) / std`` with ImageNet's per-channel statistics."""
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores before softmax for N×3×H×W RGB in [0, 1]."""
        return self.net(self.normalize(x))

    def cut(self, layer: str) -> FeatureCut:
        """Φ up to ``layer`` (see :func:`cut_classifier`)."""
        return cut_classifier(self, layer)


def cut_classifier(classifier: ImageClassifier, layer: str) -> FeatureCut:
    """The network cut right after ``layer`` ('conv1' … 'conv5', 'pool5', 'fc6' … 'fc8' for
    AlexNet, 'conv5_3', 'fc7' … for VGG, or 'features.N' / 'classifier.N'), input
    normalisation included. Convolutional cuts return N×C×h×w maps, fully connected ones N×D
    vectors (after the average pool and flatten)."""
    part, idx = resolve_layer(classifier.name, layer)
    net = classifier.net
    if part == "features":
        body = nn.Sequential(*list(net.features)[:idx + 1])
    else:
        body = nn.Sequential(*net.features, net.avgpool, nn.Flatten(1), *list(net.classifier)[:idx + 1])
    cut = FeatureCut(body, str(layer)).to(classifier.mean.device)
    return cut.train(classifier.training)


# ----------------------------------------------------------------------------- build / load


def build_classifier(name: str, *, num_classes: int = 1000, channels=None, hidden: int = 4096) -> ImageClassifier:
    """A randomly initialised classifier (PyTorch default initialisation) in eval mode, with
    frozen parameters. ``channels``: widths of the convolutions (AlexNet: 5 values; VGG: one
    per convolution), default torchvision's."""
    key = _check_name(name)
    return _wrap(key, _build_net(key, num_classes=num_classes, channels=channels, hidden=hidden))


def _build_net(key: str, *, num_classes: int = 1000, channels=None, hidden: int = 4096) -> nn.Module:
    if key == "alexnet":
        return AlexNet(num_classes, channels or (64, 192, 384, 256, 256), hidden)
    config = _VGG_CONFIGS[key]
    if channels is not None:
        widths = iter(channels)
        config = tuple(v if v == "M" else int(next(widths)) for v in config)
    return VGG(config, num_classes, hidden)


def _wrap(key: str, net: nn.Module) -> ImageClassifier:
    model = ImageClassifier(key, net).eval()
    model.requires_grad_(False)
    return model


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of a ``.pth``/``.pt`` state dict (loaded with
    ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except Exception as exc:  # SafetensorError and OS errors: one clear message
            raise ValueError(f"cannot read {path} as safetensors: {_first_line(exc)}") from None
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # not a torch file, or pickled objects other than tensors
            raise ValueError(f"cannot read {path} as a PyTorch state_dict "
                             f"(torch.load, weights_only=True): {_first_line(exc)}") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return dict(state)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _shape0(state: dict, key: str, ndim: int) -> int | None:
    v = state.get(key)
    return int(v.shape[0]) if torch.is_tensor(v) and v.dim() == ndim else None


def _widths_from(key: str, state: dict) -> dict:
    """Widths of the file's network, where the keys say so (else torchvision's)."""
    out: dict = {}
    hidden = _shape0(state, "classifier.4.weight" if key == "alexnet" else "classifier.3.weight", 2)
    classes = _shape0(state, "classifier.6.weight", 2)
    if hidden:
        out["hidden"] = hidden
    if classes:
        out["num_classes"] = classes
    if key == "alexnet":
        convs = [f"features.{i}.weight" for i in _ALEXNET_CONVS]
    else:
        convs, i = [], 0
        for v in _VGG_CONFIGS[key]:
            if v == "M":
                i += 1
            else:
                convs.append(f"features.{i}.weight")
                i += 2
    widths = [_shape0(state, k, 4) for k in convs]
    if all(widths):
        out["channels"] = tuple(widths)
    return out


def load_classifier(name: str, weights_path, *, device: str | torch.device = "cpu") -> ImageClassifier:
    """Build classifier ``name`` ('alexnet', 'vgg16', 'vgg19') and load a torchvision-format
    state dict (``.pth``/``.pt`` or ``.safetensors``) with strict key matching.

    Returns the :class:`ImageClassifier` in eval mode with frozen parameters (only the input
    receives gradients), on ``device``.

    Raises
    ------
    FileNotFoundError
        ``weights_path`` does not exist.
    ValueError
        Unknown ``name``; unreadable file; missing, unexpected or mis-shaped keys.
    """
    key = _check_name(name)
    state = read_state_dict(weights_path)
    with torch.device("meta"):  # the layout without allocating or initialising weights
        net = _build_net(key, **_widths_from(key, state))
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        raise ValueError(f"{weights_path} is not a torchvision-layout {key} state_dict: keys "
                         f"{'; '.join(parts)}")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ValueError(f"{weights_path}: {k} has shape {tuple(state[k].shape)}, the {key} "
                             f"layout needs {tuple(v.shape)}")
    # Allocate (uninitialised) and copy: fresh, aligned storage gives the same bits whatever the
    # file format (safetensors tensors may sit at unaligned offsets, which changes SIMD sums).
    net = net.to_empty(device="cpu")
    net.load_state_dict(state, strict=True)
    return _wrap(key, net).to(device)
