"""A tiny MP4 writer for the dataset synthesiser (PyAV: lossless H.264, optional AAC).

`humo.media.video.write_video` is the shared writer (provenance tags, PNG frames, trimming to the audio); this one
exists only because the synthesiser writes thousands of tiny clips and needs x264's fast preset on one thread per
worker. Reading goes through the shared reader.

The clips are lossless H.264 of a yuv420p conversion done here in integer arithmetic, so a dataset's decoded pixels
are a function of its seed alone. Lossy x264 output is not: the same frames gave different streams on different
CPUs (their SIMD paths differ) and, on some machines, from call to call within one process.
"""

from __future__ import annotations

import os

import numpy as np

from humo.errors import atomic_path


def rgb_to_yuv420p(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB [T, H, W, 3] (even H, W) -> uint8 yuv420p planes [T, 3H/2, W] (PyAV's layout: Y, then U, then V
    rows packed two to a line): BT.601 limited range (what readers assume of an untagged stream), 8-bit fixed
    point, chroma from the 2x2 mean of RGB."""
    T, H, W, _ = frames.shape
    f = frames.astype(np.int32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16
    q = f.reshape(T, H // 2, 2, W // 2, 2, 3).sum(axis=(2, 4))  # 4x the 2x2 mean
    r, g, b = q[..., 0], q[..., 1], q[..., 2]
    u = ((-38 * r - 74 * g + 112 * b + 512) >> 10) + 128
    v = ((112 * r - 94 * g - 18 * b + 512) >> 10) + 128
    out = np.empty((T, H * 3 // 2, W), np.uint8)
    out[:, :H] = y
    out[:, H:].reshape(T, 2, H // 2, W // 2)[:] = np.stack([u, v], axis=1)
    return out


def write_mp4(
    path: str | os.PathLike, frames: np.ndarray, fps: float, audio: np.ndarray | None = None, sample_rate: int = 16000
) -> None:
    """Write frames uint8 [T, H, W, 3] (even H and W) as lossless H.264 (yuv420p) at `fps`, plus mono AAC if
    `audio` [N]. The decoded yuv420p planes are exactly `rgb_to_yuv420p(frames)`."""
    import av

    planes = rgb_to_yuv420p(np.asarray(frames, np.uint8))
    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format="mp4") as c:
            vs = c.add_stream("libx264", rate=int(round(fps)))
            vs.width, vs.height = frames.shape[2], frames.shape[1]
            vs.pix_fmt = "yuv420p"
            vs.options = {
                "qp": "0",
                "preset": "veryfast",
                "threads": "1",
                "x264-params": "threads=1:lookahead-threads=1:sliced-threads=0",
            }
            if audio is not None:
                aus = c.add_stream("aac", rate=sample_rate)
                aus.layout = "mono"
            for p in planes:
                c.mux(vs.encode(av.VideoFrame.from_ndarray(p, format="yuv420p")))
            c.mux(vs.encode())
            if audio is not None:
                a = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(audio, np.float32)[None], format="fltp", layout="mono"
                )
                a.sample_rate = sample_rate
                c.mux(aus.encode(a))
                c.mux(aus.encode())
