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
