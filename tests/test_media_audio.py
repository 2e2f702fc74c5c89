"""Audio input: formats (wav, flac, mp3, m4a, mp4 track), down-mix, resampling, silence, and every user error."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
import soundfile as sf
import soxr

from humo.errors import HumoError
from humo.media.audio import MIN_SECONDS, audio_duration, is_silent, load_audio
from humo.media.video import write_video

SR = 16000


def tone(seconds: float, sr: int = SR, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(round(seconds * sr))) / sr)).astype(np.float32)


def write_aac(path, x: np.ndarray, sr: int) -> None:
    """An AAC track in an .m4a container, written with PyAV (soundfile cannot read it)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=sr, layout="mono")
        f = av.AudioFrame.from_ndarray(x[None, :].astype(np.float32), format="fltp", layout="mono")
        f.sample_rate, f.pts, f.time_base = sr, 0, Fraction(1, sr)
        for p in s.encode(f):
            c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    sl = slice(n // 8, n - n // 8)  # away from codec edges
    return float(np.corrcoef(a[sl], b[sl])[0, 1])


def test_wav_stereo_44k_downmixed_and_resampled(tmp_path):
    left, right = tone(1.0, 44100, 440.0), tone(1.0, 44100, 660.0, 0.25)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 44100, subtype="FLOAT")
    x = load_audio(tmp_path / "s.wav")
    assert x.dtype == np.float32 and x.ndim == 1 and len(x) == SR
    # Mean of the channels, then soxr at its default quality (what librosa.load(sr=16000) does).
    expected = soxr.resample((left + right) / 2, 44100, SR)
    np.testing.assert_allclose(x, expected, atol=1e-6)
    # A different rate request resamples accordingly.
    assert len(load_audio(tmp_path / "s.wav", sample_rate=24000)) == 24000


def test_flac_mp3_m4a_and_video_track(tmp_path):
    x = tone(1.0)
    sf.write(tmp_path / "a.flac", x, SR)
    np.testing.assert_allclose(load_audio(tmp_path / "a.flac"), x, atol=1 / 32768 + 1e-7)  # 16-bit FLAC
    sf.write(tmp_path / "a.mp3", x, SR)
    y = load_audio(tmp_path / "a.mp3")
    assert len(y) == SR and corr(y, x) > 0.99  # libsndfile removes the encoder delay
    write_aac(tmp_path / "a.m4a", tone(1.0, 22050), 22050)  # PyAV path, resampled from 22.05 kHz
    z = load_audio(tmp_path / "a.m4a")
    assert abs(len(z) - SR) <= 2048 * SR // 22050 + 1
    assert np.abs(z).max() > 0.3  # the tone, not silence
    frames = np.zeros((25, 32, 32, 3), np.uint8)
    write_video(tmp_path / "v.mp4", frames, audio=x, sample_rate=SR)
    w = load_audio(tmp_path / "v.mp4")
    assert abs(len(w) - SR) <= 1024 and corr(w, x) > 0.95


def test_silence_is_not_an_error(tmp_path):
    sf.write(tmp_path / "quiet.wav", np.zeros(SR, np.float32), SR)
    x = load_audio(tmp_path / "quiet.wav")
    assert len(x) == SR and is_silent(x)
    assert not is_silent(tone(0.5))
    assert is_silent(tone(0.5, amp=1e-4)) and not is_silent(tone(0.5, amp=1e-2))
    assert is_silent(np.zeros(0))


def test_duration(tmp_path):
    sf.write(tmp_path / "d.wav", tone(1.5, 8000), 8000)
    assert audio_duration(tmp_path / "d.wav") == pytest.approx(1.5)
    assert audio_duration(tone(2.0)) == pytest.approx(2.0)
    assert audio_duration(np.zeros((22050, 2)), 44100) == pytest.approx(0.5)
    write_video(tmp_path / "v.mp4", np.zeros((10, 16, 16, 3), np.uint8), audio=tone(1.0))
    assert audio_duration(tmp_path / "v.mp4") == pytest.approx(0.4, abs=1024 / SR)


def test_too_short_is_an_error_naming_file_and_duration(tmp_path):
    sf.write(tmp_path / "blip.wav", tone(0.1), SR)
    with pytest.raises(HumoError, match=r"blip\.wav: too short \(0\.100 s"):
        load_audio(tmp_path / "blip.wav")
    assert len(load_audio(tmp_path / "blip.wav", min_seconds=0)) == 1600
    sf.write(tmp_path / "ok.wav", tone(MIN_SECONDS), SR)  # exactly 5 frames at 25 fps is enough
    assert len(load_audio(tmp_path / "ok.wav")) == 3200


def test_errors_name_the_file(tmp_path):
    with pytest.raises(HumoError, match=r"nope\.wav: file not found"):
        load_audio(tmp_path / "nope.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(HumoError, match=r"empty\.wav: file is empty"):
        load_audio(tmp_path / "empty.wav")
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunk" + bytes(range(256)) * 4)
    with pytest.raises(HumoError, match=r"bad\.wav: cannot decode, the file is corrupt"):
        load_audio(tmp_path / "bad.wav")
    (tmp_path / "notes.xyz").write_text("just some text, not audio\n" * 20)
    with pytest.raises(HumoError, match=r"notes\.xyz: unsupported format \.xyz"):
        load_audio(tmp_path / "notes.xyz")
    write_video(tmp_path / "mute.mp4", np.zeros((5, 16, 16, 3), np.uint8))
    with pytest.raises(HumoError, match=r"mute\.mp4: has no audio stream"):
        load_audio(tmp_path / "mute.mp4")
    bad = tone(0.5)
    bad[100] = np.nan
    sf.write(tmp_path / "nan.wav", bad, SR, subtype="FLOAT")
    with pytest.raises(HumoError, match=r"nan\.wav: contains NaN"):
        load_audio(tmp_path / "nan.wav")
    with pytest.raises(HumoError) as err:
        load_audio(tmp_path / "bad.wav")
    assert "\n" not in str(err.value)
