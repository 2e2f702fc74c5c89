"""probe: what an input file is, read from its container without decoding more than one frame.

Facts (``record["probe"]``): ``format`` (container), ``codec``, ``width`` / ``height`` (coded pixels),
``rotation`` (degrees counter-clockwise the player turns the picture, from the display matrix), ``sar`` (pixel
aspect), ``frames`` (video packets), ``duration`` (s, first frame to the end of the last), ``fps`` (frames per
second over that span), ``fps_declared`` (the stream's own average rate), ``vfr`` and ``spacing_ms`` (the
smallest and largest gap between frame timestamps: a variable frame rate is a spread of gaps), ``audio``
(``{codec, sample_rate, channels, duration}`` or null) and ``bytes``.

The whole video stream is demuxed (packets only, no decoding): that is how a truncated file is found (fewer
packets than its index declares) and how the frame spacing is measured.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from humo.data.pipeline.core import Drop, Record, Settings
from humo.data.pipeline.media import open_media
from humo.errors import first_line

VERSION = 1
PARAMS: tuple[str, ...] = ()
REQUIRES = ("av",)
REASONS = {
    "missing": "the input file does not exist (a stale line of a list file)",
    "empty": "the file has 0 bytes",
    "unreadable": "FFmpeg cannot open it: not a media file, or a truncated MP4 whose index was at its end",
    "no-video": "no video stream (an audio file, a cover image only)",
    "no-frames": "a video stream without frames",
    "truncated": "fewer video packets than the container's index declares (cut short, or a damaged index)",
    "corrupt": "demuxing or decoding the first frame failed",
}

# A gap between frame timestamps counts as irregular when it is off the median gap by more than this share and by
# more than two ticks of the stream's time base (a 29.97 fps stream in milliseconds alternates 33/34 ms).
VFR_TOLERANCE = 0.1


def process(record: Record, settings: Settings) -> Record:
    import av

    src = Path(record["source"])
    if not src.exists():
        raise Drop("missing", "file not found")
    if not src.is_file():
        raise Drop("missing", "not a regular file")
    size = src.stat().st_size
    if size == 0:
        raise Drop("empty", "the file is empty (0 bytes)")
    container = open_media(src)
    with container:
        video = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        if not video:
            raise Drop("no-video", "no video stream" + (" (audio only)" if container.streams.audio else ""))
        vs = video[0]
        facts = {"format": container.format.name, "codec": vs.codec_context.name, "bytes": size}
        try:
            pts, last_duration = [], 0
            for packet in container.demux(vs):
                if packet.size == 0:  # the demuxer's end-of-stream marker
                    continue
                if packet.pts is not None:
                    pts.append(packet.pts)
                    last_duration = packet.duration or 0
        except av.error.FFmpegError as e:
            raise Drop("corrupt", f"demuxing failed after {len(pts)} packets ({first_line(e)})") from None
        declared = vs.frames or 0
        if not pts:
            raise Drop("no-frames", "the video stream has no frames")
        if declared and len(pts) < declared:
            raise Drop("truncated", f"{len(pts)} of the {declared} frames its index declares are in the file")
        tb = float(vs.time_base)
        facts.update(_timing(np.sort(np.asarray(pts, np.int64)), last_duration, tb, vs.average_rate))
        facts["sar"] = str(vs.sample_aspect_ratio) if vs.sample_aspect_ratio else "1"
        audio = container.streams.audio[0] if container.streams.audio else None
        facts["audio"] = None
        if audio is not None:
            dur = float(audio.duration * audio.time_base) if audio.duration and audio.time_base else None
            facts["audio"] = {
                "codec": audio.codec_context.name,
                "sample_rate": audio.sample_rate,
                "channels": audio.channels,
                "duration": None if dur is None else round(dur, 3),
            }
    facts.update(_first_frame(src))
    record["probe"] = facts
    return record


def _timing(pts: np.ndarray, last_duration: int, tb: float, declared_rate) -> dict:
    """Duration, average rate and regularity from the sorted packet timestamps (in ticks of `tb` seconds)."""
    gaps = np.diff(pts)
    gaps = gaps[gaps > 0]  # duplicate timestamps (a broken muxer) say nothing about spacing
    median = float(np.median(gaps)) if gaps.size else 0.0
    last = last_duration or median or (1 / float(declared_rate) / tb if declared_rate else 0.0)
    duration = (int(pts[-1] - pts[0]) + last) * tb
    irregular = np.abs(gaps - median) > np.maximum(VFR_TOLERANCE * median, 2)
    return {
        "frames": int(pts.size),
        "duration": round(duration, 4),
        "fps": round(pts.size / duration, 3) if duration > 0 else None,
        "fps_declared": round(float(declared_rate), 3) if declared_rate else None,
        "vfr": bool(irregular.any()),
        "spacing_ms": [round(float(gaps.min()) * tb * 1000, 2), round(float(gaps.max()) * tb * 1000, 2)]
        if gaps.size
        else None,
    }


def _first_frame(src: Path) -> dict:
    """Decode the first frame: proof that the stream decodes, its size and its display rotation."""
    import av

    with open_media(src) as container:
        vs = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic][0]
        try:
            frame = next(container.decode(vs), None)
        except av.error.FFmpegError as e:
            raise Drop("corrupt", f"the first frame does not decode ({first_line(e)})") from None
        if frame is None:
            raise Drop("no-frames", "no frame decodes")
        return {"width": frame.width, "height": frame.height, "rotation": int(frame.rotation or 0)}
