"""segments: each shot cut into training clips of a usable length, each written as its own video and WAV.

A segment has 4k+1 frames (Wan's VAE keeps the first frame alone and folds every 4 after it into one latent
frame) between `min_frames` and `max_frames` (33 and 97 by default: 1.3 to 3.9 s at 25 fps). A shot gives as many
`max_frames` segments as fit, then one more of the longest 4k+1 length that the rest allows if that is at least
`min_frames` (``plan_segments``: a 150-frame shot gives 97 + 53, a 120-frame one 97): longer segments first,
since training can crop a long clip but not lengthen a short one. The segments are contiguous, the block centred
in the shot (the unused frames split between its two ends, away from the cuts). A shot shorter than `min_frames`
gives none and is recorded as a dropped ``<clip>-shotNN`` record.

Outputs: ``OUT/segments/<clip>-shotNN-KK.mp4`` (H.264, 25 fps, re-encoded frame-exactly from the normalised clip)
and ``.wav`` (the matching 16 kHz samples, 640 per frame), or ``audio: null`` when the clip has none. Each output
record is one segment, with its id, its media and ``record["segment"]``: ``shot`` (index), ``shot_frames`` (the
shot's ``[start, end)``), ``start_frame`` (in the normalised clip), ``start`` (s) and ``num_frames``.
"""

from __future__ import annotations

import contextlib

from humo.constants import TEMPORAL_STRIDE, VIDEO_FPS
from humo.data.pipeline.core import Drop, Record, Settings, dropped
from humo.data.pipeline.media import SAMPLES_PER_FRAME, mp4_writer, open_media
from humo.errors import first_line
from humo.media.audio import write_wav

VERSION = 1
PARAMS = ("min_frames", "max_frames")
REQUIRES = ("av", "soundfile")
REASONS = {
    "short-shot": "a shot shorter than min_frames (one dropped record per such shot)",
    "corrupt": "the normalised clip or its WAV failed to decode",
}


def valid_length(n: int) -> bool:
    """Whether `n` frames is a length Wan's VAE takes: 4k+1 (1, 5, 9, ...)."""
    return n >= 1 and (n - 1) % TEMPORAL_STRIDE == 0


def longest_valid(n: int) -> int:
    """The longest 4k+1 length <= `n` (0 when n < 1)."""
    return 0 if n < 1 else (n - 1) // TEMPORAL_STRIDE * TEMPORAL_STRIDE + 1


def plan_segments(start: int, end: int, min_frames: int, max_frames: int) -> list[tuple[int, int]]:
    """Segments ``[(first frame, length)]`` for the shot ``[start, end)`` (`min_frames`, `max_frames` 4k+1): as
    many `max_frames` segments as fit, then one of the longest 4k+1 length the rest allows if that is at least
    `min_frames`; contiguous, the block centred in the shot. [] for a shot shorter than `min_frames`."""
    length = end - start
    full, rest = divmod(length, max_frames)
    lengths = [max_frames] * full
    if longest_valid(rest) >= min_frames:
        lengths.append(longest_valid(rest))
    first = start + (length - sum(lengths)) // 2
    return [(first + sum(lengths[:i]), n) for i, n in enumerate(lengths)]


def process(record: Record, settings: Settings) -> list[Record]:
    clip = record["id"]
    plans, outputs = [], []
    base = {k: v for k, v in record.items() if k != "shots"}
    for j, (a, b) in enumerate(record["shots"]["shots"]):
        segs = plan_segments(a, b, settings.min_frames, settings.max_frames)
        if not segs:
            shot = {**base, "id": f"{clip}-shot{j:02d}", "num_frames": b - a}
            shot["segment"] = {"shot": j, "shot_frames": [a, b]}
            detail = f"shot {j} has {b - a} frames, fewer than {settings.min_frames}"
            outputs.append(dropped(shot, "short-shot", detail))
        for k, (first, n) in enumerate(segs):
            plans.append((f"{clip}-shot{j:02d}-{k:02d}", j, (a, b), first, n))
    if plans:
        outputs = _write(record, base, plans, settings) + outputs
    return outputs


def _write(record: Record, base: Record, plans: list, settings: Settings) -> list[Record]:
    """Cut every planned segment from the normalised clip in one decoding pass (segments are in frame order and
    do not overlap), and its samples from the WAV."""
    src = settings.out / record["video"]
    with contextlib.ExitStack() as stack:
        wav = None
        if record.get("audio"):
            import soundfile as sf

            try:
                wav = stack.enter_context(sf.SoundFile(str(settings.out / record["audio"])))
            except Exception as e:  # noqa: BLE001 - libsndfile raises its own error types
                raise Drop("corrupt", f"the clip's WAV does not open ({first_line(e)})") from None
        return _cut(src, wav, record, base, plans, settings)


def _cut(src, wav, record: Record, base: Record, plans: list, settings: Settings) -> list[Record]:
    import av

    outputs = []
    with open_media(src) as container:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        frames = enumerate(container.decode(vs))  # one pass: segments are in frame order, never overlapping
        done = 0  # frames decoded so far
        try:
            for seg_id, j, shot, first, n in plans:
                path = settings.out / "segments" / f"{seg_id}.mp4"
                with mp4_writer(path, record["width"], record["height"]) as write:
                    for done, frame in frames:
                        if done >= first:
                            write(frame)
                        if done == first + n - 1:
                            break
                    else:
                        raise Drop("corrupt", f"the normalised clip ends at frame {done + 1}, before {first + n}")
                seg = {**base, "id": seg_id, "video": f"segments/{seg_id}.mp4", "audio": None, "num_frames": n}
                if wav is not None:
                    wav.seek(first * SAMPLES_PER_FRAME)
                    samples = wav.read(n * SAMPLES_PER_FRAME, dtype="float32")
                    write_wav(settings.out / "segments" / f"{seg_id}.wav", samples, wav.samplerate)
                    seg["audio"] = f"segments/{seg_id}.wav"
                seg["segment"] = {
                    "shot": j,
                    "shot_frames": list(shot),
                    "start_frame": first,
                    "start": round(first / VIDEO_FPS, 3),
                    "num_frames": n,
                }
                outputs.append(seg)
        except av.error.FFmpegError as e:
            raise Drop("corrupt", f"decoding the normalised clip failed after frame {done} ({first_line(e)})") from None
    return outputs
