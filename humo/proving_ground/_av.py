"""A tiny MP4 writer for the dataset synthesiser (PyAV: H.264, optional AAC).

`humo.media.video.write_video` is the shared writer (provenance tags, PNG frames, trimming to the audio); this one
exists only because the synthesiser writes thousands of tiny clips and needs x264's fast preset on one thread per
worker (about 20 ms per 64 x 64 clip, against ~0.3 s at the default preset). Reading goes through the shared reader.
"""

from __future__ import annotations

import os

import numpy as np

from humo.errors import atomic_path


def write_mp4(
    path: str | os.PathLike, frames: np.ndarray, fps: float, audio: np.ndarray | None = None, sample_rate: int = 16000
) -> None:
    """Write frames uint8 [T, H, W, 3] (even H and W) as H.264 yuv420p at `fps`, plus mono AAC if `audio` [N]."""
    import av

    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format="mp4") as c:
            vs = c.add_stream("libx264", rate=int(round(fps)))
            vs.width, vs.height = frames.shape[2], frames.shape[1]
            vs.pix_fmt = "yuv420p"
            # x264 on one thread in every part: with the generic `threads` option alone its lookahead still ran
            # threads of its own, and the same frames gave one of two streams from call to call
            vs.options = {
                "crf": "12",
                "preset": "veryfast",
                "threads": "1",
                "x264-params": "threads=1:lookahead-threads=1:sliced-threads=0",
            }
            if audio is not None:
                aus = c.add_stream("aac", rate=sample_rate)
                aus.layout = "mono"
            for f in frames:
                # converted here, not by the encoder (one conversion for every clip)
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24").reformat(format="yuv420p")
                c.mux(vs.encode(vf))
            c.mux(vs.encode())
            if audio is not None:
                a = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(audio, np.float32)[None], format="fltp", layout="mono"
                )
                a.sample_rate = sample_rate
                c.mux(aus.encode(a))
                c.mux(aus.encode())
