"""HuMo's Whisper audio features: grouping, 50 Hz -> 25 fps, windows, long audio, loading (tiny random Whisper)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from humo.conditioning import with_clean_windows
from humo.conditions.audio import (
    AudioEncoder,
    audio_windows,
    blend_weights,
    frames_for_audio,
    num_latent_frames,
    num_video_frames,
    window_starts,
)
from humo.errors import HumoError

SR = 16000


def tone(seconds: float, freq: float = 220.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * SR))) / SR
    # A little amplitude modulation so the features change over time.
    return (amp * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 1.3 * t))).astype(np.float32)


def speechy(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = tone(seconds, 180.0) + tone(seconds, 523.0, 0.1) + 0.02 * rng.standard_normal(int(round(seconds * SR)))
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def enc4():
    return AudioEncoder.toy(0, num_layers=4)


@pytest.fixture(scope="module")
def enc_short():
    # 2 s windows (max_source_positions 100) so "long" audio is a few seconds.
    return AudioEncoder.toy(3, num_layers=4, chunk_seconds=2)


# ------------------------------------------------------------------------------------------------ windows
def feats_from_values(values) -> torch.Tensor:
    """[T, 5, C=2] features whose every entry is the given per-frame value."""
    v = torch.tensor(values, dtype=torch.float32)
    return v[:, None, None].expand(len(values), 5, 2).clone()


def window_values(w: torch.Tensor) -> list[list[int]]:
    # Every slot is constant over groups and channels; read one entry per slot.
    assert torch.equal(w, w[..., :1, :1].expand_as(w))
    return w[:, :, 0, 0].round().long().tolist()


def test_windows_9_frames_hand_computed():
    t = 9
    feats = feats_from_values([i + 1 for i in range(t)])  # value = frame index + 1, 0 = zero frame
    f_lat = num_latent_frames(t)
    assert f_lat == 3
    w = audio_windows(feats, f_lat)
    assert w.shape == (3, 8, 5, 2)
    assert window_values(w) == [
        [0, 0, 0, 0, 0, 1, 2, 3],  # latent 0: 3 zeros + frames -2, -1 (absent), 0, 1, 2
        [0, 1, 2, 3, 4, 5, 6, 7],  # latent 1: frames -1 .. 6
        [4, 5, 6, 7, 8, 9, 0, 0],  # latent 2: frames 3 .. 10 (9, 10 absent)
    ]


def test_windows_13_frames_hand_computed_with_refs():
    t = 13
    feats = feats_from_values([i + 1 for i in range(t)])
    w = with_clean_windows(audio_windows(feats, num_latent_frames(t))[None], 2)[0]
    assert w.shape == (4 + 2, 8, 5, 2)
    assert window_values(w) == [
        [0, 0, 0, 0, 0, 1, 2, 3],
        [0, 1, 2, 3, 4, 5, 6, 7],
        [4, 5, 6, 7, 8, 9, 10, 11],  # frames 3 .. 10
        [8, 9, 10, 11, 12, 13, 0, 0],  # frames 7 .. 14 (13, 14 absent)
        [0] * 8,  # reference latent frames carry zero audio
        [0] * 8,
    ]


def test_windows_audio_shorter_than_video():
    feats = feats_from_values([1, 2, 3, 4, 5])  # 5 frames of audio, 9 frames of video
    assert window_values(audio_windows(feats, 3)) == [
        [0, 0, 0, 0, 0, 1, 2, 3],
        [0, 1, 2, 3, 4, 5, 0, 0],
        [4, 5, 0, 0, 0, 0, 0, 0],
    ]


def test_windows_keep_groups_and_channels_apart():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(9, 5, 3, generator=g)
    w = audio_windows(feats, 3)
    assert torch.equal(w[1, 3], feats[2])  # latent 1 slot 3 = frame 4*1-5+3 = 2
    assert torch.equal(w[2, 0], feats[3])
    assert torch.equal(w[0, 5], feats[0])


def test_frames_for_audio():
    assert num_video_frames(97 * 640) == 97
    assert frames_for_audio(97 * 640) == 97
    assert frames_for_audio(100 * 640 + 639) == 97  # 100 frames -> 4k+1 = 97
    assert frames_for_audio(5 * 640) == 5
    # The release's int(T50 / 50.0 * 25) rounds 58 / 50 * 25 = 28.999... down: 29 frames of audio give 28.
    assert num_video_frames(29 * 640) == 28
    assert frames_for_audio(29 * 640) == 25
    with pytest.raises(HumoError):
        frames_for_audio(100)


# ------------------------------------------------------------------------------------------------ features
def release_reference(enc: AudioEncoder, x: np.ndarray, groups: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The release computation for audio within one window, written out with explicit state indices:
    mel of the padded window, all hidden states, trim to 2 * (N // 640), group means, 25 fps by np.interp."""
    mel = enc.feature_extractor(x, sampling_rate=SR, return_tensors="pt").input_features
    with torch.no_grad():
        hs = enc.encoder(mel, output_hidden_states=True).hidden_states
    assert len(hs) == enc.num_layers + 1
    t50 = 2 * (len(x) // 640)
    g50 = torch.stack([sum(hs[i][0, :t50] for i in grp) / len(grp) for grp in groups], dim=1)  # [T50, 5, C]
    out_len = int(t50 / 50.0 * 25)
    pos = np.arange(out_len) * (t50 - 1) / (out_len - 1)  # align_corners=True sample positions
    a = g50.numpy().reshape(t50, -1)
    g25 = np.stack([np.interp(pos, np.arange(t50), a[:, c]) for c in range(a.shape[1])], axis=1)
    return g50, torch.from_numpy(g25.reshape(out_len, 5, -1)).float()


def test_features_4_layers_match_release_by_hand(enc4):
    x = speechy(2.3)
    g50, g25 = release_reference(enc4, x, [[0], [1], [2], [3], [4]])
    ours50 = enc4.features_50hz(x)
    ours = enc4.features(x)
    assert ours50.shape == (2 * (len(x) // 640), 5, 64)
    # 2.3 s = 57 frames at 25 fps, but the release formula gives 56 (int(114 / 50.0 * 25) = 56).
    assert ours.shape == (num_video_frames(len(x)), 5, 64) == (56, 5, 64)
    torch.testing.assert_close(ours50, g50, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours, g25, rtol=1e-5, atol=1e-5)
    # The five groups are different things (not one state repeated).
    assert (ours[:, 0] - ours[:, 4]).abs().mean() > 1e-2


def test_features_8_layers_groups_are_pairs():
    enc8 = AudioEncoder.toy(1, num_layers=8, d_model=32, num_mel_bins=80, chunk_seconds=4)
    x = tone(1.0)
    g50, g25 = release_reference(enc8, x, [[0, 1], [2, 3], [4, 5], [6, 7], [8]])
    torch.testing.assert_close(enc8.features_50hz(x), g50, rtol=0, atol=1e-6)
    torch.testing.assert_close(enc8.features(x), g25, rtol=1e-5, atol=1e-5)
    # Grouping by single states instead would be different: the check can fail.
    wrong, _ = release_reference(enc8, x, [[0], [2], [4], [6], [8]])
    assert (wrong - g50).abs().max() > 1e-3


def test_tiny_whisper_end_to_end_128_mel_and_silence():
    enc = AudioEncoder.toy(2, num_mel_bins=128, chunk_seconds=4)
    x = tone(0.6, 440.0)
    f = enc.features(x)
    assert f.shape == (15, 5, 64) and f.dtype == torch.float32 and torch.isfinite(f).all()
    s = enc.features(np.zeros(SR, np.float32))  # silence is valid input: the features of silence
    assert s.shape == (25, 5, 64) and torch.isfinite(s).all()
    assert torch.equal(s, enc.features(np.zeros(SR, np.float32)))  # deterministic
    assert (f[:10] - s[:10]).abs().max() > 1e-3  # a tone is not silence
    w = audio_windows(f, num_latent_frames(frames_for_audio(len(x))))
    assert w.shape == (4, 8, 5, 64)  # 15 frames -> 13 = 4k+1 -> 4 latent frames


def test_toy_features_follow_the_sound_not_the_frame_position():
    # Per group of layers: the between-clip variance at equal frames over the mean square, i.e. how much of what
    # the DiT is given tells one clip's sound from another's.
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    rng = np.random.default_rng(0)
    t = np.arange(32000) / 16000
    waves = []
    for _ in range(6):  # bursts of tones at random times, like syllables
        env = np.convolve(rng.random(len(t)) < 4e-4, np.hanning(3000), mode="same").clip(0, 1)
        waves.append((0.5 * env * np.sin(2 * np.pi * rng.uniform(100, 300) * t)).astype(np.float32))

    def content_share(enc):
        x = np.stack([enc.features(w).numpy() for w in waves])  # [clips, T, 5, C]
        return x.var(0).mean(axis=(0, 2)) / np.square(x).mean(axis=(0, 1, 3))

    toy = AudioEncoder.toy(0)
    assert not toy.encoder.embed_positions.weight.any()
    torch.manual_seed(0)
    plain = AudioEncoder(WhisperEncoder(toy.encoder.config), toy.feature_extractor)  # a plain random Whisper
    assert plain.encoder.embed_positions.weight.abs().max() > 0.5  # its sinusoid
    assert content_share(toy).min() > 0.1, content_share(toy)  # these clips are mostly silence
    assert content_share(plain)[:4].max() < 0.05, content_share(plain)


def test_toy_is_deterministic_per_seed():
    a, b, c = AudioEncoder.toy(7), AudioEncoder.toy(7), AudioEncoder.toy(8)
    for (k, va), vb in zip(a.encoder.state_dict().items(), b.encoder.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.encoder.layers[0].fc1.weight, c.encoder.layers[0].fc1.weight)


# ------------------------------------------------------------------------------------------------ long audio
def test_window_layout():
    assert window_starts(100, 100) == [0]
    assert window_starts(250, 100) == [0, 66, 132, 150]  # hop 66, the last window ends at frame 250
    assert window_starts(101, 100) == [0, 1]
    w = blend_weights(3, 1, 100)
    assert w[0] == 0 and w[99] == 0 and w[10] == 10 and w[90] == 9
    assert blend_weights(3, 0, 100)[0] > 0 and blend_weights(3, 2, 100)[99] > 0
    assert torch.equal(blend_weights(1, 0, 100), torch.ones(100, dtype=torch.float64))


def test_long_audio_has_no_seam(enc_short):
    enc = enc_short
    win_frames, win = 100, 100 * 320  # 2 s windows
    x = speechy(5.0, seed=1)  # 250 frames at 50 Hz -> windows at 0, 66, 132, 150
    ours = enc.features_50hz(x)
    assert ours.shape == (250, 5, 64)

    def window(start_frame):  # the encoder output of one full window, computed on its own
        s = start_frame * 320
        return enc.features_50hz(x[s : s + win])

    w0, w1, w3 = window(0), window(66), window(150)
    # Around the release's chunk boundary (frame 100 = 2 s): frames 100..131 lie inside window 1 only, so they
    # are the features of the 2 s clip around them, computed with overlap, not of a clip cut at the boundary.
    torch.testing.assert_close(ours[100:132], w1[34:66], rtol=1e-5, atol=1e-5)
    # Frames before the overlap come from window 0 alone.
    torch.testing.assert_close(ours[:66], w0[:66], rtol=1e-5, atol=1e-5)
    # Continuity where windows hand over: window 1 enters with weight 0, window 0 leaves with weight 0.
    torch.testing.assert_close(ours[66], w0[66], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[99], w1[33], rtol=1e-5, atol=1e-5)
    # In between, a linear cross-fade: frame 80 is 19 frames from window 0's end and 14 into window 1.
    torch.testing.assert_close(ours[80], (19 * w0[80] + 14 * w1[14]) / 33, rtol=1e-5, atol=1e-5)
    # The end comes from the last window, which is full (not padded with silence).
    torch.testing.assert_close(ours[-10:], w3[-10:], rtol=1e-5, atol=1e-5)

    # The release's back-to-back chunks put a seam at frame 100: the chunk after it restarts from scratch.
    naive = torch.cat([enc.features_50hz(x[i : i + win])[:win_frames] for i in range(0, len(x), win)])[:250]
    seam = (naive[100] - ours[100]).abs().max()
    assert seam > 1e-2  # so the comparison above can fail
    # The step across the boundary: the release's jumps well beyond the usual frame-to-frame step; ours does not.
    # (The clip's own first and last frames are left out: the convolutions' zero padding makes a step there too.)
    steps = (ours[1:] - ours[:-1]).flatten(1).norm(dim=-1)[2:-2]
    naive_step = (naive[100] - naive[99]).norm()
    assert steps.max() < naive_step / 2

    # 25 fps output over the long clip: the same interpolation as short clips, length from the release formula.
    f = enc.features(x)
    assert f.shape == (num_video_frames(len(x)), 5, 64)


@pytest.mark.parametrize("frames", [1, 20, 49, 130])
def test_a_video_shorter_than_its_audio_encodes_only_the_windows_it_needs(enc_short, frames):
    # 8 s of audio in 2 s windows: 6 windows; the first `frames` rows equal the whole result's.
    rng = np.random.default_rng(4)
    wave = (0.3 * rng.standard_normal(8 * 16000)).astype(np.float32)
    calls = []
    encode = enc_short._encode_window
    enc_short._encode_window = lambda x: calls.append(1) or encode(x)
    try:
        whole = enc_short.features(wave)
        n_whole = len(calls)
        calls.clear()
        part = enc_short.features(wave, frames=frames)
    finally:
        del enc_short._encode_window
    assert part.shape == (frames, 5, enc_short.dim)
    torch.testing.assert_close(part, whole[:frames], rtol=1e-4, atol=2e-5)  # float32 vs float64 positions
    assert n_whole == 6 and len(calls) == {1: 1, 20: 1, 49: 2, 130: 4}[frames], len(calls)
    assert torch.equal(enc_short.features(wave, frames=10_000), whole)  # more than the audio: all of it


def test_long_audio_with_30s_windows(enc4):
    # 40 s with the release's 30 s window: windows at 0 s and 10 s (the last one ends at the end of the audio).
    x = speechy(40.0, seed=2)
    ours = enc4.features_50hz(x)
    assert ours.shape == (2000, 5, 64) and window_starts(2000, 1500) == [0, 500]
    w1 = enc4.features_50hz(x[500 * 320 : 500 * 320 + 480000])
    # At and after the release's boundary (30 s = frame 1500) the features are those of the 10..40 s window.
    torch.testing.assert_close(ours[1500:1520], w1[1000:1020], rtol=1e-5, atol=1e-5)
    release_next_chunk = enc4.features_50hz(x[480000:])
    assert (release_next_chunk[0] - ours[1500]).abs().max() > 1e-2
    assert enc4.features(x).shape == (1000, 5, 64)


# ------------------------------------------------------------------------------------------------ loading
def test_save_and_load_round_trip(tmp_path, enc4):
    enc4.save_pretrained(tmp_path / "w")
    back = AudioEncoder.from_pretrained(tmp_path / "w")
    x = tone(0.5)
    torch.testing.assert_close(back.features(x), enc4.features(x), rtol=0, atol=0)


@pytest.mark.parametrize("cls_name", ["WhisperModel", "WhisperForConditionalGeneration"])
def test_loads_transformers_whisper_folders(tmp_path, cls_name):
    import transformers
    from transformers import WhisperFeatureExtractor

    cfg = AudioEncoder.toy_config(num_layers=4, d_model=32, num_mel_bins=80)
    torch.manual_seed(5)
    model = getattr(transformers, cls_name)(cfg).eval()
    model.save_pretrained(tmp_path / "m")
    WhisperFeatureExtractor(feature_size=80).save_pretrained(tmp_path / "m")
    enc = AudioEncoder.from_pretrained(tmp_path / "m")
    ref_encoder = model.get_encoder()
    x = tone(0.4)
    mel = enc.feature_extractor(x, sampling_rate=SR, return_tensors="pt").input_features
    with torch.no_grad():
        ref = ref_encoder(mel, output_hidden_states=True).hidden_states[-1][0, : 2 * (len(x) // 640)]
    torch.testing.assert_close(enc.features_50hz(x)[:, 4], ref, rtol=1e-5, atol=1e-5)


def test_incomplete_or_wrong_folders(tmp_path, enc4):
    with pytest.raises(HumoError, match="not found"):
        AudioEncoder.from_pretrained(tmp_path / "nope")
    d = tmp_path / "w"
    enc4.save_pretrained(d)
    (d / "preprocessor_config.json").rename(tmp_path / "pp.json")
    with pytest.raises(HumoError, match="preprocessor_config.json is missing"):
        AudioEncoder.from_pretrained(d)
    (tmp_path / "pp.json").rename(d / "preprocessor_config.json")
    (d / "model.safetensors").rename(tmp_path / "m.safetensors")
    with pytest.raises(HumoError, match="no model.safetensors"):
        AudioEncoder.from_pretrained(d)
    # A weight file missing one encoder tensor: the error lists it.
    from safetensors.torch import load_file, save_file

    sd = load_file(tmp_path / "m.safetensors")
    del sd["model.encoder.layers.2.fc1.weight"]
    save_file(sd, d / "model.safetensors")
    with pytest.raises(HumoError, match=r"missing keys: layers\.2\.fc1\.weight"):
        AudioEncoder.from_pretrained(d)
    # Mel bins of the extractor and the encoder disagree.
    pp = json.loads((d / "preprocessor_config.json").read_text())
    pp["feature_size"] = 80
    (d / "preprocessor_config.json").write_text(json.dumps(pp))
    save_file(load_file(tmp_path / "m.safetensors"), d / "model.safetensors")
    with pytest.raises(HumoError, match="mel bins"):
        AudioEncoder.from_pretrained(d)


def test_bad_inputs(enc4):
    with pytest.raises(HumoError, match="multiple of 4"):
        AudioEncoder.toy(0, num_layers=6)
    with pytest.raises(HumoError, match="too short"):
        enc4.features(np.zeros(500, np.float32))
    with pytest.raises(ValueError, match="mono"):
        enc4.features(np.zeros((SR, 2), np.float32))
    with pytest.raises(ValueError):
        audio_windows(torch.zeros(9, 64), 3)
