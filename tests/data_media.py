"""Small real media files for the data pipeline's tests, made with PyAV and numpy (no downloads).

Each builder writes one file and returns what the test needs to know about it (its truth)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from humo.proving_ground.speech import speech_track


def shot_picture(shot: int, i: int, h: int, w: int) -> np.ndarray:
    """Frame `i` of shot `shot`: four looks (colour and pattern) that differ from each other, each moving a
    little from frame to frame (a shot is not a still)."""
    yy, xx = np.mgrid[0:h, 0:w]
    if shot == 0:  # warm stripes drifting right
        v = np.sin((xx - 2 * i) / 6.0) > 0
        img = np.stack([200 + 40 * v, 60 + 40 * v, 40 + 0 * v], -1)
    elif shot == 1:  # cool checkerboard sliding down
        v = (xx // 12 + (yy + i) // 12) % 2
        img = np.stack([30 + 0 * v, 80 + 60 * v, 180 + 60 * v], -1)
    elif shot == 2:  # green disc crossing grey
        v = (xx - 20 - i) ** 2 + (yy - h / 2) ** 2 < 400
        img = np.stack([120 - 80 * v, 120 + 100 * v, 120 - 80 * v], -1)
    else:  # dark purple with bright diagonal bars
        v = ((xx + yy + 3 * i) // 10) % 3 == 0
        img = np.stack([60 + 150 * v, 20 + 200 * v, 80 + 120 * v], -1)
    return img.astype(np.uint8)


def _video_stream(container, width: int, height: int, rate, time_base=None):
    s = container.add_stream("libx264", rate=rate)
    s.width, s.height, s.pix_fmt = width, height, "yuv420p"
    s.options = {"preset": "ultrafast", "crf": "20"}
    if time_base is not None:
        s.time_base = s.codec_context.time_base = time_base
    return s


def _mux_video(container, v, pictures, pts=None, time_base=None) -> None:
    """Encode uint8 [H, W, 3] `pictures` into `container`'s video stream `v` (frame i at pts i, or `pts[i]` in
    `time_base`), then flush the encoder."""
    for i, img in enumerate(pictures):
        f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        f.pts = i if pts is None else int(pts[i])
        if time_base is not None:
            f.time_base = time_base
        for p in v.encode(f):
            container.mux(p)
    for p in v.encode(None):
        container.mux(p)


def _mux_audio(container, a, wave: np.ndarray, rate: int, layout: str = "stereo") -> None:
    """Encode float `wave` [N] (copied to both channels for stereo) as AAC into `container`'s audio stream `a`
    (added before any packet was muxed)."""
    pcm = np.ascontiguousarray(np.tile(wave[None].astype(np.float32), (2 if layout == "stereo" else 1, 1)))
    for pos in range(0, pcm.shape[1], 4096):
        f = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, pos : pos + 4096]), format="fltp", layout=layout)
        f.sample_rate, f.pts, f.time_base = rate, pos, Fraction(1, rate)
        for p in a.encode(f):
            container.mux(p)
    for p in a.encode(None):
        container.mux(p)


def speech_wave(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """Speech-like audio (the proving ground's syllables) at `rate` Hz: talk with pauses between phrases."""
    from humo.constants import SAMPLE_RATE

    rng = np.random.default_rng(seed)
    track = speech_track(rng, [(0.2, 2.4), (2.9, 4.6), (5.0, seconds - 0.1)], seconds, 1, 25, 150.0)
    if rate == SAMPLE_RATE:
        return track.wave
    import soxr

    return soxr.resample(track.wave, SAMPLE_RATE, rate).astype(np.float32)


def make_talk(path: Path, fps: int = 30, cuts_s=(1.6, 3.8, 5.2), seconds: float = 6.0, size=(160, 120)) -> dict:
    """A `fps` video of four shots (hard cuts at `cuts_s` seconds) with speech-like stereo 44.1 kHz AAC audio."""
    w, h = size
    n = int(round(seconds * fps))
    with av.open(str(path), "w") as c:
        v = _video_stream(c, w, h, fps)
        a = c.add_stream("aac", rate=44100, layout="stereo")
        shots = (sum(i >= round(t * fps) for t in cuts_s) for i in range(n))
        _mux_video(c, v, (shot_picture(shot, i, h, w) for i, shot in enumerate(shots)))
        _mux_audio(c, a, speech_wave(seconds, 44100), 44100)
    return {"cuts_s": list(cuts_s), "seconds": seconds, "frames": n}


def make_plain(path: Path, frames: int, size=(64, 48), fps: int = 25, audio: np.ndarray | None = None,
               rotation: int = 0, title: str | None = None) -> None:  # fmt: skip
    """A one-shot video (a slowly moving gradient with a white band on its left edge), optionally with mono
    16 kHz `audio`, a display rotation and a title tag."""
    w, h = size
    xx = np.arange(w)[None, :, None]
    with av.open(str(path), "w") as c:
        if title is not None:
            c.metadata["title"] = title
        v = _video_stream(c, w, h, fps)
        if rotation:
            v.set_display_rotation(rotation)
        a = c.add_stream("aac", rate=16000, layout="mono") if audio is not None else None
        _mux_video(c, v, (_plain_picture(xx, i, h, w) for i in range(frames)))
        if audio is not None:
            _mux_audio(c, a, audio, 16000, layout="mono")


def _plain_picture(xx: np.ndarray, i: int, h: int, w: int) -> np.ndarray:
    """Frame i of `make_plain`: a moving ramp with a white band on the left (orientation shows after rotation)."""
    img = np.broadcast_to((xx * 2 + i) % 200 + 20, (h, w, 3)).astype(np.uint8).copy()
    img[:, : max(2, w // 8)] = 255
    return img


def make_vfr(path: Path, gaps_ms=(20,) * 20 + (60,) * 20, audio: np.ndarray | None = None) -> dict:
    """A variable-frame-rate video: frame i starts at the sum of the gaps before it (ms) and shows grey level
    ``10 + 5 i`` (so a test can tell which input frame an output frame shows)."""
    tb = Fraction(1, 1000)
    starts = np.concatenate([[0], np.cumsum(gaps_ms)[:-1]])
    with av.open(str(path), "w") as c:
        v = _video_stream(c, 64, 48, 25, time_base=tb)
        a = c.add_stream("aac", rate=16000, layout="mono") if audio is not None else None
        _mux_video(c, v, (np.full((48, 64, 3), 10 + 5 * i, np.uint8) for i in range(len(starts))), starts, tb)
        if audio is not None:
            _mux_audio(c, a, audio, 16000, layout="mono")
    return {"starts_ms": starts.tolist(), "seconds": sum(gaps_ms) / 1000}


def make_audio_only(path: Path, seconds: float = 1.0) -> None:
    """An MP4 holding only a sound track (speech-like)."""
    with av.open(str(path), "w") as c:
        a = c.add_stream("aac", rate=16000, layout="mono")
        _mux_audio(c, a, speech_wave(seconds, 16000), 16000, layout="mono")


def make_damaged(path: Path, bad_audio=(), frames: int = 60) -> None:
    """A 25 fps video with speech-like mono AAC whose audio packets number `bad_audio` (in order) are replaced by
    random bytes, which the AAC decoder refuses with an error. (Damaged video packets are no use for a test: the
    mp4 muxer leaves some out of the file, which the probe then calls truncated, and H.264 drops the rest
    silently.)"""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as c:
        v = _video_stream(c, 96, 64, 25)
        a = c.add_stream("aac", rate=16000, layout="mono")
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(shot_picture(0, i, 64, 96), format="rgb24")
            f.pts = i
            for p in v.encode(f):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
        wave = speech_wave(frames / 25, 16000)[None]
        count = 0
        for pos in range(0, wave.shape[1] + 1024, 1024):
            if pos < wave.shape[1]:
                f = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(wave[:, pos : pos + 1024]), format="fltp", layout="mono"
                )
                f.sample_rate, f.pts, f.time_base = 16000, pos, Fraction(1, 16000)
                packets = a.encode(f)
            else:
                packets = a.encode(None)
            for p in packets:
                if count in bad_audio:
                    q = av.Packet(rng.integers(0, 256, max(p.size, 64), dtype=np.uint8).tobytes())
                    q.pts, q.dts, q.time_base, q.stream = p.pts, p.dts, p.time_base, p.stream
                    p = q
                count += 1
                c.mux(p)


def make_truncated(path: Path) -> None:
    """An MP4 cut in half after writing (its index at the front, so FFmpeg opens it and finds frames missing)."""
    full = path.with_name(".full-" + path.name)
    rng = np.random.default_rng(0)
    with av.open(str(full), "w", options={"movflags": "+faststart"}) as c:
        v = _video_stream(c, 96, 64, 25)
        for i in range(50):
            f = av.VideoFrame.from_ndarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8), format="rgb24")
            f.pts = i
            for p in v.encode(f):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
    data = full.read_bytes()
    full.unlink()
    path.write_bytes(data[: len(data) // 2])
