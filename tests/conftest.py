"""Fixtures shared by several test modules: a tiny random toy model and small media files."""

import json

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


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """A micro toy recipe (tests/test_ablation.py, tests/test_ratio_study.py): 8 training clips + 4 held-out clips
    of 9 frames (with the proving ground's pose tracks), random toy encoders, a 2-step stage 0."""
    from humo.data.manifest import read_manifest
    from humo.data.precompute import load_encoders, precompute
    from humo.proving_ground.synth import SynthConfig, synthesize_dataset
    from humo.toy import write_toy_weights
    from humo.training.config import TrainConfig
    from humo.training.loop import train

    root = tmp_path_factory.mktemp("recipe")
    train_manifest, _ = synthesize_dataset(
        SynthConfig(out=root / "data" / "train", clips=8, frames=(9, 9), seed=1, workers=1), progress=False
    )
    synthesize_dataset(
        SynthConfig(out=root / "data" / "heldout", clips=4, frames=(9, 9), seed=2, split="heldout", workers=1),
        progress=False,
    )
    write_toy_weights(root / "model", seed=0)
    enc = load_encoders(str(root / "model" / "vae"), str(root / "model" / "text"), str(root / "model" / "whisper"))
    precompute(read_manifest(train_manifest), root / "cache", enc, base_dir=train_manifest.parent)
    cfg = root / "train.json"
    cfg.write_text(json.dumps({"precision": "fp32", "batch_size": 2, "log_every": 1, "progress": False,
                               "tensorboard": False, "split": None}))  # fmt: skip
    train(TrainConfig.from_dict({**json.loads(cfg.read_text()), "cache": str(root / "cache"),
                                 "out": str(root / "s0"), "stage": 0, "steps": 2}))  # fmt: skip
    return root
