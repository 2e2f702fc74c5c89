"""PyAV and soundfile helpers the stages share: opening a clip (failures as `Drop` reasons), writing 25 fps H.264
and 16 kHz WAV atomically.

We do not use `humo.media.video.write_video` here: it stamps every file "AI-generated ... by humo", which is
right for what the model makes and wrong for real footage, and it wants the audio in the MP4 while the manifest
keeps it beside the video as WAV.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import numpy as np

from humo.constants import SAMPLE_RATE, VIDEO_FPS
from humo.data.pipeline.core import Drop
from humo.errors import atomic_path, first_line

CRF = 18  # visually near-lossless: these files are training data, encoded twice (normalise, segments)
PRESET = "veryfast"  # x264's speed/size trade-off; the quality is set by CRF, a faster preset only costs bytes
SAMPLES_PER_FRAME = SAMPLE_RATE // VIDEO_FPS  # 640 audio samples per video frame


def open_media(path: str | os.PathLike):
    """``av.open(path)``, or `Drop` ``unreadable`` when FFmpeg cannot open it (not a media file, a truncated MP4
    whose index was at the end, ...)."""
    import av

    try:
        # metadata that is not UTF-8 (a damaged header, an old encoder) must not make the picture unreadable
        return av.open(str(path), metadata_errors="replace")
    except av.error.FFmpegError as e:
        raise Drop("unreadable", f"FFmpeg cannot open it ({first_line(e)})") from None


@contextmanager
def mp4_writer(path: Path, width: int, height: int, fps: int = VIDEO_FPS) -> Iterator[Callable]:
    """Yield ``write(frame)`` that appends one frame (uint8 RGB ``[height, width, 3]`` or an ``av.VideoFrame`` of
    that size) to a constant-rate H.264 MP4 (yuv420p, BT.709 limited range, no audio). The file appears at `path`
    only when the block completes; on any error nothing is left there. `width` and `height` must be even."""
    import av

    with atomic_path(path, suffix=".mp4") as tmp:
        container = av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
        try:
            stream = container.add_stream("libx264", rate=Fraction(fps))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": str(CRF), "preset": PRESET}
            cc = stream.codec_context
            cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc = 1, 1, 1, 1  # BT.709, limited
            count = 0

            def write(frame) -> int:
                nonlocal count
                if isinstance(frame, np.ndarray):
                    vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                    vf = vf.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
                else:
                    vf = frame
                    vf.pict_type = 0  # a decoded frame's I/P/B type would force the encoder's frame types
                vf.pts = count
                for packet in stream.encode(vf):
                    container.mux(packet)
                count += 1
                return count

            yield write
            for packet in stream.encode(None):
                container.mux(packet)
        finally:
            container.close()


@contextmanager
def wav_writer(path: Path, sample_rate: int = SAMPLE_RATE) -> Iterator[Callable[[np.ndarray], None]]:
    """Yield ``write(samples)`` that appends float mono samples ``[n]`` to a 16-bit PCM WAV (streamed, for audio
    too long to hold); the file appears at `path` only when the block completes."""
    import soundfile as sf

    with atomic_path(path, suffix=".wav") as tmp:
        with sf.SoundFile(str(tmp), "w", samplerate=sample_rate, channels=1, subtype="PCM_16", format="WAV") as f:
            yield lambda samples: f.write(np.clip(np.asarray(samples, np.float32), -1.0, 1.0))
