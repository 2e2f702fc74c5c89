"""Fixtures shared by several test modules: a tiny random toy model and small media files."""

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from humo.toy import toy_components
from tests.helpers import randomize


@pytest.fixture
def one_thread():
    """torch on one thread for the test (a module opts in with `pytestmark = pytest.mark.usefixtures(...)`)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def components():
    dit, vae, text, audio = toy_components(seed=0, num_layers=2, mask_head_blocks=1)
    randomize(dit, seed=1, scale=0.05)
    return dit, vae, text, audio


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    t = np.arange(int(16000 * 0.5)) / 16000
    sf.write(d / "a.wav", (0.3 * np.sin(2 * np.pi * 220 * t) * (t < 0.3)).astype("float32"), 16000)
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 30, 3)) * 255).astype("uint8")).save(d / "r.png")
    Image.fromarray((rng.random((30, 40, 3)) * 255).astype("uint8")).save(d / "r2.png")
    return d
