"""shots: where the camera cuts, by PySceneDetect's ContentDetector (or AdaptiveDetector) on the normalised clip.

Facts (``record["shots"]``): ``cuts`` (the frames that start a new shot, in the normalised clip's 25 fps frames),
``shots`` (``[start, end)`` frame ranges covering the clip) and ``detector``.

We decode the clip ourselves (PyAV, downscaled by swscale to about 256 pixels wide, the width PySceneDetect's
SceneManager would scale to) and hand each frame to the detector's ``process_frame``: PySceneDetect's own PyAV
backend re-enables FFmpeg's console logging for the whole process, and its OpenCV backend would decode with a
second FFmpeg build. ContentDetector scores each frame by its change in hue, saturation and luma from the one
before and cuts where the score passes its threshold (27 by default), at most once per 15 frames; AdaptiveDetector
compares the score with its rolling average, which keeps fast camera motion from reading as cuts.
"""

from __future__ import annotations

from fractions import Fraction

from humo.constants import VIDEO_FPS
from humo.data.pipeline.core import Drop, Record, Settings
from humo.data.pipeline.media import open_media
from humo.errors import first_line

VERSION = 1
PARAMS = ("detector",)
REQUIRES = ("scenedetect", "cv2")
REASONS = {"corrupt": "the normalised clip failed to decode (it was deleted or damaged after normalise)"}
DETECTORS = ("content", "adaptive")
DETECT_WIDTH = 256  # pixels: detection runs on frames about this wide


def process(record: Record, settings: Settings) -> Record:
    cuts = detect_cuts(settings.out / record["video"], settings.detector)
    n = record["num_frames"]
    bounds = [0] + [c for c in cuts if 0 < c < n] + [n]
    record["shots"] = {
        "detector": settings.detector,
        "cuts": bounds[1:-1],
        "shots": [[a, b] for a, b in zip(bounds[:-1], bounds[1:])],
    }
    return record


def detect_cuts(path, detector: str = "content") -> list[int]:
    """The frame indices at which new shots start in the video at `path` (0-based, sorted, without 0)."""
    import av
    from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode

    det = ContentDetector() if detector == "content" else AdaptiveDetector()
    rate = Fraction(VIDEO_FPS)
    found = []
    i = -1
    with open_media(path) as container:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        factor = max(1.0, vs.width / DETECT_WIDTH)
        w, h = max(2, round(vs.width / factor)), max(2, round(vs.height / factor))
        try:
            for i, frame in enumerate(container.decode(vs)):
                bgr = frame.reformat(width=w, height=h, format="bgr24", interpolation="AREA").to_ndarray()
                found += det.process_frame(FrameTimecode(i, rate), bgr)
        except av.error.FFmpegError as e:
            raise Drop("corrupt", f"decoding failed at frame {i + 1} ({first_line(e)})") from None
    if i >= 0:
        found += det.post_process(FrameTimecode(i, rate))
    return sorted({int(tc.frame_num) for tc in found if tc.frame_num > 0})
