"""faces: per segment, the speaker's face mask and mouth opening per frame, from MediaPipe's legacy Face Mesh.

MediaPipe 0.10.x's cp311 wheels ship the face detector and the 468-landmark face mesh as .tflite files inside the
wheel, so nothing is downloaded at run time (installed as `make pose-extra` does: ``--no-deps``, since its metadata
pins numpy<2 and pulls jax, neither needed). Face Mesh runs in video mode (tracking between frames) over the
segment's frames, up to `MAX_FACES` faces a frame.

Per frame the **largest** face (its landmarks' bounding-box height) is the speaker (one person per segment, as
HuMo's single-person data wants). Its **mask** is the filled convex hull of its 468 landmarks (forehead to chin,
ear to ear; not the hair or neck), at the frame's resolution. Its **mouth opening** is the gap between the inner
lips (landmarks 13 and 14) over the face's height (landmark 10, top of the forehead, to 152, the chin): about 0
shut, 0.1-0.2 wide open, independent of the picture's size. A frame without a face has an empty mask and mouth NaN.

Written per kept segment: ``OUT/faces/<id>.npz`` with ``masks`` uint8 [T, H, W] (1 = face), ``mouth`` float32 [T]
and ``found`` bool [T]; ``record["face_masks"]`` is its path (the manifest's ``face_masks``). Facts
(``record["faces"]``): ``found`` (share of frames with a face), ``faces`` (how many large faces the segment shows:
the most seen together in at least 10% of its frames, a face being large at half the largest one's height or
more), ``face_height`` (median height of the speaker's face over the frame height), ``mouth_mean``,
``mouth_std``, ``mask``: ``"mesh-hull"``.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from humo.data.pipeline.core import Drop, Record, Settings, dropped
from humo.data.pipeline.media import first_line
from humo.errors import atomic_path

VERSION = 1
PARAMS = ("face_missing_max", "several_faces")
REQUIRES = ("mediapipe", "cv2")
REASONS = {
    "no-face": "no face in more than face_missing_max of the segment's frames",
    "several-faces": "two or more large faces (half the largest one's height or more) in 10% of its frames or more",
    "corrupt": "the segment's video does not decode",
}
MAX_FACES = 4
LARGE = 0.5  # a face at least this share of the largest face's height counts as a person in the picture
SEVERAL_SHARE = 0.1  # ... seen together with another in at least this share of frames: several faces
UPPER_LIP, LOWER_LIP, FOREHEAD, CHIN = 13, 14, 10, 152  # Face Mesh landmarks: inner lips, face top and bottom
FOLDER = "faces"


def face_mesh():
    """MediaPipe's legacy Face Mesh in video mode with the model its wheel ships."""
    os.environ.setdefault("GLOG_minloglevel", "2")  # its C++ logging writes to the terminal, past Python's stderr
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import mediapipe as mp

    with warnings.catch_warnings():  # protobuf 6 deprecates FieldDescriptor.label, which its graph set-up reads
        warnings.simplefilter("ignore", DeprecationWarning)
        return mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False, max_num_faces=MAX_FACES, refine_landmarks=False, min_detection_confidence=0.5
        )


def analyse(frames, height: int, width: int) -> dict:
    """Face Mesh over `frames` (an iterable of RGB uint8 [H, W, 3]) -> ``masks`` uint8 [T, H, W], ``mouth``
    float32 [T] (NaN without a face), ``found`` bool [T], ``counts`` int [T] (large faces per frame), ``heights``
    float32 [T] (the speaker's face height over the frame height, 0 without a face)."""
    import cv2

    masks, mouth, found, counts, heights = [], [], [], [], []
    scale = np.array([width, height], np.float32)
    with face_mesh() as mesh:
        for frame in frames:
            result = mesh.process(np.ascontiguousarray(frame))
            m = np.zeros((height, width), np.uint8)
            faces = [
                np.array([(p.x, p.y) for p in f.landmark], np.float32) * scale
                for f in (result.multi_face_landmarks or [])
            ]
            if not faces:
                masks.append(m), mouth.append(np.nan), found.append(False), counts.append(0), heights.append(0.0)
                continue
            sizes = [float(f[:, 1].max() - f[:, 1].min()) for f in faces]
            pts = faces[int(np.argmax(sizes))]
            hull = cv2.convexHull(np.round(pts).astype(np.int32))
            cv2.fillConvexPoly(m, hull, 1)
            face_h = float(np.linalg.norm(pts[CHIN] - pts[FOREHEAD]))
            gap = float(np.linalg.norm(pts[LOWER_LIP] - pts[UPPER_LIP]))
            masks.append(m)
            mouth.append(gap / max(face_h, 1e-6))
            found.append(True)
            counts.append(sum(s >= LARGE * max(sizes) for s in sizes))
            heights.append(max(sizes) / height)
    t = len(masks)
    return {
        "masks": np.stack(masks) if t else np.zeros((0, height, width), np.uint8),
        "mouth": np.asarray(mouth, np.float32),
        "found": np.asarray(found, bool),
        "counts": np.asarray(counts, np.int64),
        "heights": np.asarray(heights, np.float32),
    }


def several(counts: np.ndarray) -> int:
    """How many large faces a segment shows: the most seen together in at least `SEVERAL_SHARE` of its frames (a
    stray detection in a frame or two does not count)."""
    n = max(len(counts), 1)
    return max([k for k in range(1, MAX_FACES + 1) if (counts >= k).sum() >= SEVERAL_SHARE * n], default=0)


def _frames(path):
    from humo.data.pipeline.media import open_media

    with open_media(path) as c:
        for f in c.decode(video=0):
            yield f.to_ndarray(format="rgb24")


def process(record: Record, settings: Settings) -> Record:
    out = settings.out
    try:
        a = analyse(_frames(out / record["video"]), record["height"], record["width"])
    except Exception as e:  # noqa: BLE001 - FFmpeg's and MediaPipe's errors
        raise Drop("corrupt", f"the segment does not decode ({first_line(e)})") from None
    if a["masks"].shape[0] == 0:
        raise Drop("corrupt", "the segment has no frames")
    found = float(a["found"].mean())
    n = several(a["counts"])
    mouth = a["mouth"][a["found"]]
    record["faces"] = {
        "found": round(found, 3),
        "faces": n,
        "face_height": round(float(np.median(a["heights"][a["found"]])), 3) if n else 0.0,
        "mouth_mean": round(float(mouth.mean()), 4) if mouth.size else None,
        "mouth_std": round(float(mouth.std()), 4) if mouth.size else None,
        "mask": "mesh-hull",
    }
    if 1.0 - found > settings.face_missing_max:
        return dropped(record, "no-face", f"a face in {found:.0%} of frames, missing in more than "
                       f"{settings.face_missing_max:.0%}")  # fmt: skip
    if n >= 2 and settings.several_faces == "drop":
        return dropped(record, "several-faces", f"{n} large faces together in {SEVERAL_SHARE:.0%} of frames or more")
    path = out / FOLDER / f"{record['id']}.npz"
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, masks=a["masks"], mouth=a["mouth"], found=a["found"])
    record["face_masks"] = str(path.relative_to(out))
    return record
