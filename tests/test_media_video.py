"""MP4 writing: H.264 + AAC, trimming to the shorter stream, provenance tags, PNG frames, atomic failure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import humo
from humo.errors import HumoError
from humo.media.video import read_metadata, read_video, write_video

SR = 16000
AAC_FRAME = 1024


def ramp_frames(t: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Frame i is a flat grey of level 10 * i + 10, with a white square top-left (to check orientation)."""
    f = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        f[i] = 10 * i + 10
    f[:, :16, :16] = 255
    return f


def tone(seconds: float, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    x = 0.5 * np.sin(2 * np.pi * freq * np.arange(int(round(seconds * SR))) / SR).astype(np.float32)
    return x if channels == 1 else np.stack([x, 0.5 * x], axis=1)


def test_playable_mp4_with_audio_longer_than_video(tmp_path):
    frames = ramp_frames(10)  # 0.4 s at 25 fps
    audio = tone(1.0)  # trimmed to 0.4 s
    out = write_video(tmp_path / "a.mp4", frames, fps=25, audio=audio, sample_rate=SR)
    assert out == tmp_path / "a.mp4"
    v, fps, a, sr = read_video(out)
    assert v.shape == (10, 48, 64, 3) and v.dtype == np.uint8 and fps == 25
    levels = v[:, 40, 40].mean(axis=1)
    assert np.abs(levels - (10 * np.arange(10) + 10)).max() <= 3  # order and content survive H.264
    assert v[0, 4, 4].min() >= 250 and v[0, 40, 60].max() < 20  # not flipped
    assert sr == SR and a is not None
    assert abs(len(a) - 6400) <= AAC_FRAME  # 0.4 s, within one AAC frame
    # It is the driving tone (lossy, so compare by correlation on the middle part).
    mid = slice(1024, 5000)
    corr = np.corrcoef(a[mid], audio[mid])[0, 1]
    assert corr > 0.95


def test_audio_shorter_than_video_trims_video(tmp_path):
    frames = ramp_frames(20)  # 0.8 s
    audio = tone(0.5)  # 12.5 frames -> 12 frames, audio cut to 0.48 s
    write_video(tmp_path / "b.mp4", frames, audio=audio)
    v, _, a, _ = read_video(tmp_path / "b.mp4")
    assert v.shape[0] == 12
    assert abs(len(a) - 12 * 640) <= AAC_FRAME
    assert np.abs(v[:, 40, 40, 0].astype(int) - (10 * np.arange(12) + 10)).max() <= 3  # the first 12 kept


def test_float_tensor_odd_size_stereo_no_audio(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 5, 47, 63, generator=g) * 0.2 - 0.6  # [3, T, H, W] in [-1, 1], odd sizes
    x[0] = 0.8  # strong red
    write_video(tmp_path / "c.mp4", x, fps=24)
    v, fps, a, sr = read_video(tmp_path / "c.mp4")
    assert v.shape == (5, 48, 64, 3) and fps == 24  # padded to even by one replicated row/column
    assert a is None and sr is None
    expect_r = round((0.8 + 1) * 127.5)
    assert abs(int(np.median(v[..., 0])) - expect_r) <= 4
    write_video(tmp_path / "d.mp4", ramp_frames(8), audio=tone(2.0, channels=2), sample_rate=SR)
    v, _, a, sr = read_video(tmp_path / "d.mp4")
    assert v.shape[0] == 8 and sr == SR and abs(len(a) - 8 * 640) <= AAC_FRAME


def test_provenance_metadata_reads_back(tmp_path):
    meta = {"model": "humo-17b", "title": "talking test", "seed": 666666, "prompt": "a man talks"}
    write_video(tmp_path / "m.mp4", ramp_frames(3), audio=tone(1.0), metadata=meta)
    tags = read_metadata(tmp_path / "m.mp4")
    for key in ("comment", "description"):
        assert "AI-generated" in tags[key]
        assert f"humo {humo.__version__}" in tags[key] and "humo-17b" in tags[key]
    assert tags["title"] == "talking test"
    assert "seed=666666" in tags["description"] and "prompt=a man talks" in tags["description"]
    # Without a model name the statement is still there.
    write_video(tmp_path / "n.mp4", ramp_frames(3))
    assert "AI-generated" in read_metadata(tmp_path / "n.mp4")["comment"]


def test_png_frames_with_provenance(tmp_path):
    frames = ramp_frames(6)
    write_video(tmp_path / "p.mp4", frames, audio=tone(0.2), png_dir=tmp_path / "png", metadata={"model": "toy"})
    files = sorted((tmp_path / "png").iterdir())
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(5)]  # 0.2 s of audio = 5 frames kept
    with Image.open(files[3]) as im:
        assert np.array_equal(np.asarray(im), frames[3])  # lossless
        assert im.text["AI-Generated"] == "true" and "toy" in im.text["Comment"]
        assert im.text["Software"] == f"humo {humo.__version__}"


def test_failure_midway_leaves_nothing(tmp_path):
    target = tmp_path / "f.mp4"
    target.write_bytes(b"previous result")

    def frames():
        yield from ramp_frames(3)
        yield np.zeros((10, 10, 3), np.uint8)  # wrong shape after frames were already encoded

    with pytest.raises(ValueError, match="frame 3"):
        write_video(target, frames(), audio=tone(1.0), png_dir=tmp_path / "png")
    assert target.read_bytes() == b"previous result"  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.mp4"]  # no temporary files, no png dir
    with pytest.raises(ValueError):
        write_video(tmp_path / "g.mp4", np.zeros((3, 8, 8), np.uint8))
    assert not (tmp_path / "g.mp4").exists()
    with pytest.raises(HumoError, match="shorter than one frame"):
        write_video(tmp_path / "h.mp4", ramp_frames(3), audio=np.zeros(100, np.float32))
    assert not (tmp_path / "h.mp4").exists()


def test_read_errors(tmp_path):
    with pytest.raises(HumoError, match="file not found"):
        read_video(tmp_path / "none.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"\x00junk" * 50)
    with pytest.raises(HumoError, match=r"junk\.mp4: cannot open"):
        read_metadata(tmp_path / "junk.mp4")
