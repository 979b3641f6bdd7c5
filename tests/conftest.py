import numpy as np
import pytest
import torch


@pytest.fixture
def astronaut_crop():
    """A 64×64 RGB crop of scikit-image's astronaut as a 1×3×64×64 tensor in [0, 1]."""
    from skimage import data

    img = data.astronaut()[80:208:2, 180:308:2].astype(np.float32) / 255
    return torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()


@pytest.fixture
def camera_crop():
    """A 64×64 gray crop of scikit-image's cameraman as a 1×1×64×64 tensor in [0, 1]."""
    from skimage import data

    img = data.camera()[100:228:2, 200:328:2].astype(np.float32) / 255
    return torch.from_numpy(img)[None, None].contiguous()


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors gain nothing from 2 threads, lose a lot on a shared CPU, and 1 thread makes
    runs bit-reproducible; modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    The caller's setting is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _rescaled(image, crop_rows, crop_cols):
    from skimage import transform

    channel_axis = -1 if image.ndim == 3 else None
    im = transform.rescale(image, 0.25, channel_axis=channel_axis, anti_aliasing=True)
    im = np.ascontiguousarray(im[crop_rows, crop_cols])
    t = torch.from_numpy(im).float()
    return t.permute(2, 0, 1)[None].contiguous() if t.dim() == 3 else t[None, None]


@pytest.fixture(scope="session")
def gray():
    """48×48 crop of skimage's camera downscaled 4×, 1×1×48×48 in [0, 1]."""
    from skimage import data

    return _rescaled(data.camera(), slice(30, 78), slice(40, 88))


@pytest.fixture(scope="session")
def gray64():
    """64×64 crop of skimage's camera downscaled 4×."""
    from skimage import data

    return _rescaled(data.camera(), slice(30, 94), slice(40, 104))


@pytest.fixture(scope="session")
def rgb():
    """48×48 crop (face and hair) of skimage's astronaut downscaled 4×, 1×3×48×48."""
    from skimage import data

    return _rescaled(data.astronaut(), slice(20, 68), slice(40, 88))


@pytest.fixture(scope="session")
def rgb32():
    """32×32 crop of skimage's astronaut downscaled 4×."""
    from skimage import data

    return _rescaled(data.astronaut(), slice(20, 52), slice(40, 72))
