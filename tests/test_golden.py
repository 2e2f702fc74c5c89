"""Behaviour unchanged: generation and training against outputs recorded before the conditions refactor
(tests/golden.py says how they were made and when they may be re-recorded)."""

import json

import pytest
import torch

from tests import golden


@pytest.fixture(scope="module")
def one_thread():
    """As recorded: one thread, so that every reduction runs in the recorded order."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def generated(tmp_path_factory, one_thread):
    return golden.generate_all(tmp_path_factory.mktemp("golden"))


def _same(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    if golden.recorded_here():
        assert torch.equal(got, want), f"{what}: max difference {(got - want).abs().max().item():.3g}"
    else:
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4, msg=what)


def test_generation_matches_the_recorded_outputs(generated):
    recorded = json.loads((golden.GOLDEN / "bundled.json").read_text())["dit_sha256"]
    assert golden.bundled_digest() == recorded, "humo/assets/toy changed: re-record (python -m tests.golden record)"
    want = golden.load_generation()
    assert set(generated) == set(want)
    for key in sorted(want):
        _same(generated[key], want[key], key)


def test_the_recorded_cases_tell_presets_and_layouts_apart():
    """The golden set can fail: different presets, modes and layouts really gave different latents."""
    want = golden.load_generation()
    toy = [v for k, v in want.items() if k.startswith("toy/tia/") and k.endswith("/latents")]
    assert len(toy) == len(golden.PRESETS)
    distinct = {tuple(v.flatten()[:64].tolist()) for v in toy}
    assert len(distinct) >= len(golden.PRESETS) - 1  # "none" and "static" may share a formula at 3 steps
    assert not torch.equal(want["humo-1.7b/t/default/latents"], want["humo-17b/t/default/latents"])


def test_training_losses_match_the_recorded_ones(tmp_path, one_thread):
    want = json.loads((golden.GOLDEN / "training.json").read_text())["losses"]
    got = golden.train_all(tmp_path)
    assert set(got) == set(want)
    for case in want:
        g, w = torch.tensor(got[case], dtype=torch.float64), torch.tensor(want[case], dtype=torch.float64)
        _same(g, w, case)
