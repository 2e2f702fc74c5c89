"""normalise: every clip as constant 25 fps H.264 video, upright, at most `max_side` pixels, and 16 kHz mono WAV.

Outputs: ``OUT/normalise/<id>.mp4`` (no audio) and ``OUT/normalise/<id>.wav`` (16-bit PCM, exactly 640 samples
per video frame, so the two have the same length), or ``audio: null`` for a video without a sound track (kept:
later stages decide).

Frames are resampled by timestamp: output frame k (at k / 25 s after the first frame) shows the input frame that
is on screen at that instant, as a player would show it. A 30 fps or a variable-rate input so becomes 25 fps
with its duration kept (frames dropped or repeated where the rate differs); a 25 fps input passes frame for frame.
The clip lasts from its first frame to the end of its last (``round(duration * 25)`` frames).

The picture is turned by the display rotation (phone videos), stretched by a non-square pixel aspect, and
scaled down (area filter) so that its longer side is at most `max_side`, keeping its aspect, with even sides
(yuv420p needs them). The audio is the first audio stream, channels averaged, resampled with soxr (as
`humo.media.audio.load_audio` does), placed at its own start time relative to the first video frame (an audio
track that starts late is preceded by silence) and cut or padded with silence to the video's length.

Facts (``record["normalise"]``): ``frames_in`` (decoded), ``frames_lost`` (packets the probe counted that did not
decode: H.264 drops a damaged packet silently, and its time shows the frame before), ``repeated`` / ``skipped``
(input frames shown more than once / never), ``scale``, ``rotation``, ``audio_offset`` (s, audio start minus
video start), and ``audio_error`` when the sound track would not decode (the clip is then kept with ``audio: null``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from humo.constants import SAMPLE_RATE, VIDEO_FPS
from humo.data.pipeline.core import Drop, Record, Settings
from humo.data.pipeline.media import SAMPLES_PER_FRAME, mp4_writer, open_media, wav_writer
from humo.errors import first_line

VERSION = 1
PARAMS = ("max_side",)
REQUIRES = ("av", "soxr", "soundfile")
REASONS = {
    "corrupt": "the video stream failed to decode part way, or its timestamps jump by more than 10 s",
    "no-frames": "no frame decoded, or the clip is shorter than one frame at 25 fps",
    "unreadable": "FFmpeg can no longer open the file",
}

# Timestamps are rounded to their time base; an output instant within this many seconds of a frame's start
# counts as that frame's (so a 25 fps input in a 1/1000 time base maps frame for frame).
TOLERANCE = 1e-3
# The longest gap between two frames taken as real (a still held in a screen recording); a longer one is a broken
# timestamp, and the clip is dropped as corrupt.
MAX_GAP = 10.0


def display_size(width: int, height: int, sar: float, rotation: int, max_side: int) -> tuple[int, int, float]:
    """The output ``(width, height, scale)``: the picture as shown (pixel aspect applied, turned by `rotation`),
    scaled down to fit `max_side` (never up), sides rounded down to even numbers (at least 2)."""
    w, h = width * sar, float(height)
    if rotation % 180:
        w, h = h, w
    scale = min(1.0, max_side / max(w, h))
    return max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2), scale


def process(record: Record, settings: Settings) -> Record:
    src = Path(record["source"])
    probe = record["probe"]
    out_video = settings.out / "normalise" / f"{record['id']}.mp4"
    facts = _video(src, out_video, probe, settings.max_side)
    n, (width, height), t0 = facts.pop("num_frames"), facts.pop("size"), facts.pop("t0")
    record.update(video=f"normalise/{record['id']}.mp4", fps=float(VIDEO_FPS), num_frames=n, width=width, height=height)
    record["audio"] = None
    if probe.get("audio"):
        out_audio = settings.out / "normalise" / f"{record['id']}.wav"
        try:
            facts["audio_offset"] = _audio(src, out_audio, t0, n)
            record["audio"] = f"normalise/{record['id']}.wav"
        except Drop as e:  # a broken sound track does not make the picture useless: keep it without audio
            facts["audio_error"] = e.detail
    record["normalise"] = facts
    return record


def _video(src: Path, out: Path, probe: dict, max_side: int) -> dict:
    """Decode, resample to 25 fps by timestamp, scale, turn and encode; returns the facts (with ``num_frames``,
    ``size`` and ``t0``, the first frame's time, for the caller)."""
    import av

    step = 1.0 / VIDEO_FPS
    sar = _sar(probe.get("sar"))
    with open_media(src) as container:
        vs = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic][0]
        vs.thread_type = "AUTO"
        frames = _timed_frames(container, vs)
        try:
            first = next(frames, None)
        except av.error.FFmpegError as e:
            raise Drop("corrupt", f"the first frame does not decode ({first_line(e)})") from None
        if first is None:
            raise Drop("no-frames", "no frame decodes")
        t0, frame = first
        rotation = int(frame.rotation or 0) % 360
        width, height, scale = display_size(frame.width, frame.height, sar, rotation, max_side)
        # the size swscale produces, before the picture is turned
        sw, sh = (height, width) if rotation % 180 else (width, height)
        emitted = repeated = skipped = decoded = 0
        gaps: list[float] = []
        prev, prev_t, shown, picture = frame, t0, 0, None

        def emit_until(limit: float) -> None:
            """Write `prev` for every output instant before `limit` (seconds from the first frame)."""
            nonlocal emitted, picture, shown
            while emitted * step < limit - TOLERANCE:
                if picture is None:  # convert once, however often the frame is shown
                    picture = _display(prev, sw, sh, rotation)
                write(picture)
                emitted += 1
                shown += 1

        with mp4_writer(out, width, height) as write:
            try:
                for t, frame in frames:
                    decoded += 1
                    if t - prev_t > MAX_GAP:  # a broken timestamp would otherwise repeat one picture for hours
                        raise Drop("corrupt", f"frame timestamps jump by {t - prev_t:.1f} s at {prev_t - t0:.1f} s")
                    emit_until(t - t0)
                    repeated += max(shown - 1, 0)
                    skipped += shown == 0
                    gaps.append(t - prev_t)
                    prev, prev_t, shown, picture = frame, t, 0, None
            except av.error.FFmpegError as e:
                raise Drop("corrupt", f"decoding failed after {decoded + 1} frames ({first_line(e)})") from None
            # the last frame lasts its own duration, else the usual gap, else a frame at the declared rate
            last = float(prev.duration * prev.time_base) if prev.duration and prev.time_base else 0.0
            last = last or (float(np.median(gaps)) if gaps else 0.0) or 1.0 / (probe.get("fps") or VIDEO_FPS)
            emit_until(prev_t - t0 + last)
            repeated += max(shown - 1, 0)
            skipped += shown == 0
            if emitted == 0:
                raise Drop("no-frames", f"the clip lasts {last:.3f} s, less than one frame at 25 fps")
    return {
        "num_frames": emitted,
        "size": (width, height),
        "t0": t0,
        "frames_in": decoded + 1,
        # packets the decoder dropped without an error (damaged ones): their time shows the frame before
        "frames_lost": max(0, int(probe.get("frames") or 0) - (decoded + 1)),
        "repeated": repeated,
        "skipped": skipped,
        "scale": round(scale, 4),
        "rotation": rotation,
    }


def _timed_frames(container, stream):
    """Decoded frames with their start time (s), in presentation order; frames whose timestamp does not
    increase (a broken muxer) are left out, and a frame without one follows its predecessor by the usual gap."""
    last = None
    gap = 1.0 / float(stream.average_rate) if stream.average_rate else 1.0 / VIDEO_FPS
    for frame in container.decode(stream):
        t = frame.time
        if t is None:
            t = 0.0 if last is None else last + gap
        if last is not None and t <= last:
            continue
        last = t
        yield t, frame


def _sar(value) -> float:
    from fractions import Fraction

    try:
        sar = float(Fraction(value)) if value not in (None, "", "0", "0/1") else 1.0
    except (ValueError, ZeroDivisionError):
        sar = 1.0
    return sar if 0.1 < sar < 10 else 1.0


def _display(frame, width: int, height: int, rotation: int) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]`` as shown: scaled by swscale's area filter to ``width x height`` (pre-rotation),
    then turned counter-clockwise by `rotation` degrees."""
    rgb = frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA").to_ndarray()
    if rotation:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=rotation // 90))
    return rgb


def _audio(src: Path, out: Path, t0: float, num_frames: int) -> float:
    """Decode the first audio stream, average its channels, resample to 16 kHz (soxr, streamed) and write exactly
    ``num_frames * 640`` samples aligned to the video's first frame at `t0`. Returns the audio's offset (s)."""
    import av
    import soxr

    total = num_frames * SAMPLES_PER_FRAME
    written = 0
    offset = None
    with open_media(src) as container, wav_writer(out) as write:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp")  # planar float at the stream's own rate and channels
        rs = None
        skip = 0  # output samples still to drop (audio that starts before the video)

        def put(mono: np.ndarray, last: bool = False) -> None:
            nonlocal written, skip
            y = rs.resample_chunk(mono, last=last)
            if skip:
                cut = min(skip, y.shape[0])
                y, skip = y[cut:], skip - cut
            y = y[: total - written]
            if y.size:
                write(y)
                written += y.size

        try:
            for frame in container.decode(stream):
                if offset is None:
                    offset = (frame.time if frame.time is not None else t0) - t0
                    lead = int(round(offset * SAMPLE_RATE))
                    if lead > 0:  # the sound starts after the picture: silence until it does
                        lead = min(lead, total)
                        write(np.zeros(lead, np.float32))
                        written += lead
                    skip = max(-lead, 0)
                for chunk in resampler.resample(frame):
                    if rs is None:
                        rs = soxr.ResampleStream(chunk.sample_rate, SAMPLE_RATE, 1, dtype="float32")
                    put(chunk.to_ndarray().mean(axis=0).astype(np.float32))
                if written >= total:
                    break
            if rs is not None:
                for chunk in resampler.resample(None):
                    put(chunk.to_ndarray().mean(axis=0).astype(np.float32))
                put(np.zeros(0, np.float32), last=True)
        except av.error.FFmpegError as e:
            raise Drop("corrupt-audio", f"the sound track does not decode ({first_line(e)})") from None
        if offset is None:
            raise Drop("corrupt-audio", "the sound track has no samples")
        if written < total:  # the sound ends before the picture: silence to the end
            write(np.zeros(total - written, np.float32))
    return round(offset, 4)
