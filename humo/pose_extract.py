"""Driving poses from a video: MediaPipe's legacy Pose solution, per frame, as a COCO-17 pose file (`humo.pose`).

MediaPipe 0.10.x wheels (cp311) ship the pose detector and the "full" landmark model as .tflite files inside the
wheel (``mediapipe/modules/pose_detection/pose_detection.tflite``, ``pose_landmark/pose_landmark_full.tflite``),
so nothing is downloaded at run time; model complexity 1 is the one whose model is in the wheel (0 and 2 would
fetch theirs). It tracks one person. Its wheel pins numpy<2 and pulls jax and OpenCV; the pose solution needs
neither jax nor the numpy pin, so it installs without its dependencies plus the `pose` extra's (`make
pose-extra`; docs/inference.md, "Pose").

MediaPipe's 33 landmarks are normalised to the image (x right, y down) with a visibility in [0, 1]; left and
right are the person's own, as in COCO. A landmark outside the frame is recorded as not seen.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from humo.errors import HumoError
from humo.pose import COCO17, PoseTrack, to_canonical

#: MediaPipe Pose landmark index of each COCO-17 joint (its landmarks 0 nose, 2/5 eyes, 7/8 ears, 11-16 arms,
#: 23-28 legs; the others, inner/outer eye corners, mouth, hands' fingers, heels and feet, have no COCO joint).
MEDIAPIPE_TO_COCO = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
MEDIAPIPE_LANDMARKS = 33
EXTRA = "pose"
INSTALL = "pip install --no-deps mediapipe==0.10.21 && pip install 'humo[pose]' (or: make pose-extra)"


def landmarks_to_coco(landmarks: Sequence | None, width: int, height: int) -> np.ndarray:
    """MediaPipe's 33 landmarks of one person (objects with x, y in [0, 1] of the image and a visibility), or None
    when nobody was found -> COCO-17 keypoints [17, 3] in pixels (x, y, confidence); a landmark outside the frame
    has confidence 0 and no place."""
    out = np.zeros((len(COCO17), 3), np.float32)
    if landmarks is None:
        return out
    if len(landmarks) != MEDIAPIPE_LANDMARKS:
        raise ValueError(f"{len(landmarks)} landmarks, MediaPipe Pose gives {MEDIAPIPE_LANDMARKS}")
    for j, k in enumerate(MEDIAPIPE_TO_COCO):
        lm = landmarks[k]
        x, y, vis = float(lm.x), float(lm.y), float(getattr(lm, "visibility", 1.0))
        if 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0:
            out[j] = (x * width, y * height, min(max(vis, 0.0), 1.0))
    return out


def mediapipe_detector():
    """MediaPipe's legacy Pose solution in video mode (tracking between frames) with the model its wheel ships."""
    os.environ.setdefault("GLOG_minloglevel", "2")  # its C++ logging writes to the terminal, past Python's stderr
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import mediapipe as mp
    except ImportError as e:
        missing = f" (missing: {e.name})" if getattr(e, "name", None) else ""
        raise HumoError(f"humo pose extract needs mediapipe, the '{EXTRA}' extra{missing}: {INSTALL}") from None
    return mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1, smooth_landmarks=True)


def extract_pose(
    video: str | os.PathLike,
    detector=None,
    progress: Callable[[int], None] | None = None,
) -> PoseTrack:
    """Keypoints of the person in each frame of `video` -> a canonical `PoseTrack` (pixels, the video's rate).

    `detector`: anything with MediaPipe's ``process(rgb uint8 [H, W, 3]) -> result`` (``result.pose_landmarks``
    None or with a ``landmark`` list); default `mediapipe_detector()`. `progress` is called with each frame's
    number."""
    from humo.media.video import stream_video

    fps, frames = stream_video(video)
    own = detector is None
    detector = mediapipe_detector() if own else detector
    points, size = [], None
    try:
        for i, frame in enumerate(frames):
            size = frame.shape[:2]
            found = detector.process(np.ascontiguousarray(frame)).pose_landmarks
            points.append(landmarks_to_coco(None if found is None else found.landmark, size[1], size[0]))
            if progress is not None:
                progress(i)
    finally:
        if own and hasattr(detector, "close"):
            detector.close()
    if not points:
        raise HumoError(f"video {video}: has no frames")
    if not fps > 0:
        raise HumoError(f"video {video}: its frame rate is unknown")
    coco = np.stack(points)[:, None]  # [T, 1, 17, 3]
    return PoseTrack(to_canonical(coco, "coco17"), float(size[1]), float(size[0]), fps)


def extract_to_file(video: str | os.PathLike, out: str | os.PathLike, detector=None, progress=None) -> Path:
    """`extract_pose` written as a COCO-17 pose file at `out` (atomically)."""
    from humo.pose import save_pose

    return save_pose(out, extract_pose(video, detector, progress), "coco17")
