"""SyncNet on random weights: the two streams' shapes, the MFCCs, the offset search (a planted offset is found when
the embeddings are made to match), weights that load from safetensors and torch pickles, bad weights refused by key
name, and the whole path from frames and samples to Sync-C/Sync-D (also inside the data pipeline's sync stage)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from humo.errors import HumoError
from humo.evaluation.syncnet import SyncNet, _dct_ortho, embed, face_crops, load_syncnet, mfcc, offset_scores


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A random SyncNet (BatchNorm statistics made non-trivial) saved as safetensors and as a torch pickle."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = SyncNet()
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    d = tmp_path_factory.mktemp("syncnet")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(d / "syncnet.safetensors"))
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, d / "syncnet_v2.model")
    return model.eval(), d


def test_streams_give_1024_d_embeddings():
    model = SyncNet().eval()
    with torch.no_grad():
        assert model.forward_aud(torch.randn(3, 1, 13, 20)).shape == (3, 1024)
        assert model.forward_lip(torch.randn(2, 3, 5, 224, 224)).shape == (2, 1024)
    assert model.netcnnaud[-3].weight.shape == (512, 256, 5, 4) and model.netcnnlip[0].weight.shape == (96, 3, 5, 7, 7)
    assert model.netcnnlip[-3].weight.shape == (512, 256, 1, 6, 6) and model.netfclip[3].weight.shape == (1024, 512)
    assert sum(p.numel() for p in model.parameters()) == 13_631_616


# python_speech_features 0.6's mfcc (syncnet_python's features) of the signal below, scaled to int16 as
# syncnet_python reads WAVs: frames 0, 10 and 23 (computed once with that package; it is not a dependency).
REFERENCE_MFCC = {
    0: [19.5422, 21.6826, 6.1899, -8.7491, -21.8402, -29.4643, -27.9168, -19.6271, -7.0096, 4.4121, 11.665, 12.0919,
        7.4544],
    10: [19.8232, 20.8735, -4.3602, -24.7662, -28.6878, -17.9104, -5.8864, -5.5051, -10.7792, -9.2251, 5.808,
         22.6677, 27.256],
    23: [20.1507, 30.5252, -30.5275, -16.212, 7.3681, -20.1209, -55.0082, -28.2014, 22.1157, 24.5324, -0.0944,
         3.5333, 21.6151],
}  # fmt: skip


def test_mfcc_matches_python_speech_features():
    t = np.arange(4000) / 16000
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * (200 + 3000 * t) * t)).astype(np.float32)
    c = mfcc(x)
    assert c.shape == (24, 13)  # 100 a second: 1 + ceil((4000 - 400) / 160)
    for i, ref in REFERENCE_MFCC.items():
        np.testing.assert_allclose(c[i], ref, atol=1e-3)
    assert mfcc(np.zeros(16000, np.float32)).shape == (99, 13)
    assert np.isfinite(mfcc(np.zeros(3200, np.float32))).all()  # digital silence: eps, not -inf
    basis = _dct_ortho(np.eye(26))
    np.testing.assert_allclose(basis @ basis.T, np.eye(26), atol=1e-10)  # orthonormal DCT-II


@pytest.mark.parametrize("k", [-4, 0, 3, 15])
def test_offset_search_finds_a_planted_offset(k):
    rng = np.random.default_rng(k + 20)
    n, vshift = 40, 15
    lip = rng.standard_normal((n, 64)).astype(np.float32)
    aud = rng.standard_normal((n, 64)).astype(np.float32)
    for t in range(n):  # the sound k frames late: audio row t + k matches lip row t
        if 0 <= t + k < n:
            aud[t + k] = lip[t] + 0.01 * rng.standard_normal(64)
    s = offset_scores(lip, aud, vshift)
    assert s["sync_offset"] == k and len(s["distances"]) == 2 * vshift + 1
    assert s["sync_c"] > 3 and s["sync_d"] == min(s["distances"].values())
    assert offset_scores(lip, rng.standard_normal((n, 64)), vshift)["sync_c"] < s["sync_c"] / 3  # unrelated


def test_weights_load_and_bad_weights_are_refused_by_name(weights, tmp_path):
    model, d = weights
    x = torch.randn(2, 1, 13, 20)
    for name in ("syncnet.safetensors", "syncnet_v2.model"):  # old checkpoints lack num_batches_tracked
        loaded = load_syncnet(d / name)
        assert not loaded.training
        torch.testing.assert_close(loaded.forward_aud(x), model.forward_aud(x))
    state = {k: v for k, v in model.state_dict().items()}
    bad = {**{k: v for k, v in state.items() if k != "netfclip.3.weight"}, "netfclip.3.wieght": torch.zeros(1)}
    bad["netcnnaud.0.weight"] = torch.zeros(64, 1, 5, 5)
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(HumoError) as e:
        load_syncnet(tmp_path / "bad.pt")
    msg = str(e.value)
    assert "netfclip.3.weight" in msg and "netfclip.3.wieght" in msg and "netcnnaud.0.weight" in msg, msg
    torch.save({"model": "not tensors"}, tmp_path / "odd.pt")
    with pytest.raises(HumoError, match="not a state dict"):
        load_syncnet(tmp_path / "odd.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(HumoError, match="does not read"):
        load_syncnet(tmp_path / "junk.safetensors")
    with pytest.raises(HumoError, match="no such file"):
        load_syncnet(tmp_path / "missing.pt")


def test_frames_and_samples_to_scores(weights):
    model, _ = weights
    rng = np.random.default_rng(0)
    t = 12
    frames = rng.integers(0, 255, (t, 120, 100, 3), dtype=np.uint8)
    boxes = np.tile(np.array([30, 20, 70, 70], np.float32), (t, 1))
    boxes[3] = np.nan  # a frame without the face: filled from its neighbours
    crops = face_crops(frames, boxes)
    assert crops.shape == (t, 224, 224, 3) and crops.dtype == np.uint8
    lip, aud = embed(model, crops, rng.standard_normal(t * 640).astype(np.float32) * 0.1)
    assert lip.shape == aud.shape == (t - 5, 1024)  # syncnet_python's count of windows
    with pytest.raises(HumoError, match="no face"):
        face_crops(frames, np.full((t, 4), np.nan))
    with pytest.raises(HumoError, match="at least 6 frames"):
        embed(model, crops[:5], np.zeros(5 * 640, np.float32))
