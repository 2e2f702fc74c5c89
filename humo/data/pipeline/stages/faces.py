"""faces: per segment, one tracked speaker's face mask, person mask and mouth opening per frame, from MediaPipe's
legacy Face Mesh and Selfie Segmentation.

MediaPipe 0.10.x's cp311 wheels ship the face detector, the 468-landmark face mesh and the selfie segmentation
model as .tflite files inside the wheel (``mediapipe/modules/{face_detection,face_landmark,selfie_segmentation}``),
so nothing is downloaded at run time (installed as `make pose-extra` does: ``--no-deps``, since its metadata pins
numpy<2 and pulls jax, neither needed). Face Mesh runs in video mode over the segment's frames, up to `MAX_FACES`
faces a frame.

**Tracking.** The speaker is the largest face (its landmarks' bounding-box height) of the first frame with a face;
in each later frame it is the face that overlaps its last box most (IoU at least `TRACK_IOU`) or, for a fast
move, whose landmarks lie within `TRACK_DISTANCE` face heights of its last ones on average. A frame without it
counts as missing even when other faces are there, so the masks and the mouth series follow one person. A segment
where it is missing for more than `face_lost_max` frames in a row is dropped ``face-lost``; one where, while it is
missing, another large face is seen for `SWITCH_FRAMES` frames in a row (the picture has gone to someone else) is
dropped ``face-switch``.

Per frame, the tracked face's **mask** is the filled convex hull of its 468 landmarks (forehead to chin, ear to
ear; not the hair or neck); its **person mask** is Selfie Segmentation's person probability above 0.5, kept where
its connected regions touch the face (a second person standing apart is left out; where two people touch, a pixel
goes to the face nearer it, in face heights), joined with the face mask; its **mouth opening** is the gap between
the inner lips (landmarks 13 and 14) over the face's height (landmark 10, top of the forehead, to 152, the chin):
about 0 shut, 0.1-0.2 wide open, independent of the picture's size. A frame without the face has empty masks,
mouth NaN and box NaN.

Written per kept segment: ``OUT/faces/<id>.npz`` with ``masks`` uint8 [T, H, W] (1 = face), ``person_masks``
uint8 [1, T, H, W] (one person: the manifest's one reference image), ``mouth`` float32 [T], ``found`` bool [T]
and ``boxes`` float32 [T, 4] (the face's x0, y0, x1, y1 in pixels); ``record["face_masks"]`` is its path (the
manifest's ``face_masks``). Facts (``record["faces"]``): ``found`` (share of frames with the tracked face),
``faces`` (how many large faces the segment shows: the most seen together in at least 10% of its frames, a face
being large at half the largest one's height or more), ``face_height`` (median height of the tracked face over
the frame height), ``lost_run`` (the longest run of frames without it), ``switch_run`` (the longest run of those
with another large face seen), ``person`` (mean share of the frame in the person mask), ``mouth_mean``,
``mouth_std``, ``mask``: ``"mesh-hull"``.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from humo.data.pipeline.core import Drop, Record, Settings, dropped
from humo.errors import atomic_path, first_line
from humo.face_identity import iou

VERSION = 2
PARAMS = ("face_missing_max", "several_faces", "face_min_height", "face_lost_max")
REQUIRES = ("mediapipe", "cv2")
REASONS = {
    "no-face": "no tracked face in more than face_missing_max of the segment's frames",
    "face-lost": "the tracked face is missing for more than face_lost_max frames in a row",
    "face-switch": "while the tracked face is missing, another large face is seen for SWITCH_FRAMES frames in a row",
    "several-faces": "two or more large faces (half the largest one's height or more) in 10% of its frames or more",
    "face-too-small": "the tracked face's median height is under face_min_height of the frame's height",
    "corrupt": "the segment's video does not decode",
}
MAX_FACES = 4
LARGE = 0.5  # a face at least this share of the largest face's height counts as a person in the picture
SEVERAL_SHARE = 0.1  # ... seen together with another in at least this share of frames: several faces
TRACK_IOU = 0.3  # a face overlapping the tracked face's last box this much is the tracked face
TRACK_DISTANCE = 0.25  # ... or one whose landmarks are this close (mean distance over the face's height)
SWITCH_FRAMES = 3  # frames in a row with the tracked face gone and another large face seen: a switch
PERSON_THRESHOLD = 0.5  # Selfie Segmentation's person probability from which a pixel is the person's
UPPER_LIP, LOWER_LIP, FOREHEAD, CHIN = 13, 14, 10, 152  # Face Mesh landmarks: inner lips, face top and bottom
FOLDER = "faces"


def _quiet_mediapipe():
    os.environ.setdefault("GLOG_minloglevel", "2")  # its C++ logging writes to the terminal, past Python's stderr
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import mediapipe as mp

    return mp


def face_mesh(static: bool = False):
    """MediaPipe's legacy Face Mesh (video mode, or `static` for single images) with the model its wheel ships."""
    mp = _quiet_mediapipe()
    with warnings.catch_warnings():  # protobuf 6 deprecates FieldDescriptor.label, which its graph set-up reads
        warnings.simplefilter("ignore", DeprecationWarning)
        return mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static, max_num_faces=MAX_FACES, refine_landmarks=False, min_detection_confidence=0.5
        )


def selfie_segmentation():
    """MediaPipe's legacy Selfie Segmentation (the general 256x256 model its wheel ships)."""
    mp = _quiet_mediapipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)


def box_of(points: np.ndarray) -> np.ndarray:
    """The bounding box (x0, y0, x1, y1) of landmarks [N, 2]."""
    return np.concatenate([points.min(axis=0), points.max(axis=0)]).astype(np.float32)


def track(faces: list[list[np.ndarray]]) -> list[int | None]:
    """The tracked face's index in each frame's faces (landmarks [468, 2] in pixels), or None where it is missing:
    the largest face of the first frame with one, then the face matching its last position (`TRACK_IOU`,
    `TRACK_DISTANCE`)."""
    chosen: list[int | None] = []
    last = None  # the tracked face's landmarks where it was last seen
    for fs in faces:
        if not fs:
            chosen.append(None)
            continue
        if last is None:
            i = int(np.argmax([np.ptp(f[:, 1]) for f in fs]))
        else:
            box, height = box_of(last), max(float(np.ptp(last[:, 1])), 1e-6)
            scores = [(iou(box, box_of(f)), float(np.linalg.norm(f - last, axis=1).mean()) / height) for f in fs]
            i = int(np.argmax([s[0] - s[1] for s in scores]))
            if scores[i][0] < TRACK_IOU and scores[i][1] > TRACK_DISTANCE:
                chosen.append(None)
                continue
        chosen.append(i)
        last = fs[i]
    return chosen


def longest_run(flags: np.ndarray) -> int:
    """The longest run of True in a bool array."""
    best = run = 0
    for f in flags:
        run = run + 1 if f else 0
        best = max(best, run)
    return best


def person_region(people: np.ndarray, face: np.ndarray, boxes: list[np.ndarray] = (), own: int = 0) -> np.ndarray:
    """The person mask uint8 [H, W]: the regions of `people` (bool [H, W], Selfie Segmentation's probability over
    `PERSON_THRESHOLD`) that touch the face mask `face` [H, W], joined with it. With the boxes of every face in the
    frame (`own` the tracked one's index), a pixel nearer another face (distance to its box centre over its height)
    is that person's: two people side by side make one region in Selfie Segmentation, split between them here."""
    import cv2

    n, labels = cv2.connectedComponents(people.astype(np.uint8), connectivity=8)
    keep = np.unique(labels[(face > 0) & (labels > 0)])
    person = np.isin(labels, keep) if keep.size else np.zeros(face.shape, bool)
    if len(boxes) > 1:
        ys, xs = np.mgrid[0 : face.shape[0], 0 : face.shape[1]].astype(np.float32)
        dist = [np.hypot(xs - (b[0] + b[2]) / 2, ys - (b[1] + b[3]) / 2) / max(float(b[3] - b[1]), 1.0) for b in boxes]
        person &= np.argmin(np.stack(dist), axis=0) == own
    return (person | (face > 0)).astype(np.uint8)


def analyse(frames, height: int, width: int, masks: bool = True) -> dict:
    """Face Mesh and Selfie Segmentation over `frames` (an iterable of RGB uint8 [H, W, 3], read one at a time) ->
    ``masks`` uint8 [T, H, W], ``person_masks`` uint8 [T, H, W], ``mouth`` float32 [T] (NaN without the tracked
    face), ``found`` bool [T], ``boxes`` float32 [T, 4], ``counts`` int [T] (large faces per frame), ``heights``
    float32 [T] (the tracked face's height over the frame height, 0 without it), ``others`` bool [T] (the tracked
    face missing and another large face seen). ``masks=False``: landmarks only (no Selfie Segmentation; ``masks``
    and ``person_masks`` None), for the sync scores of `humo eval --real`.

    Until the track is known, each frame's segmentation is kept as one bit a pixel (its probability over
    `PERSON_THRESHOLD`, all `person_region` reads), not Selfie Segmentation's float32 map: 32 times less."""
    import contextlib

    import cv2

    scale = np.array([width, height], np.float32)
    faces, people = [], []
    with face_mesh() as mesh, selfie_segmentation() if masks else contextlib.nullcontext() as seg:
        for frame in frames:
            frame = np.ascontiguousarray(frame)
            result = mesh.process(frame)
            faces.append(
                [
                    np.array([(p.x, p.y) for p in f.landmark], np.float32) * scale
                    for f in (result.multi_face_landmarks or [])
                ]
            )
            if masks:
                people.append(np.packbits(seg.process(frame).segmentation_mask > PERSON_THRESHOLD, axis=-1))
    chosen = track(faces)
    t = len(faces)
    face_masks = np.zeros((t, height, width), np.uint8) if masks else None
    persons = np.zeros((t, height, width), np.uint8) if masks else None
    mouth = np.full(t, np.nan, np.float32)
    boxes = np.full((t, 4), np.nan, np.float32)
    counts, heights = np.zeros(t, np.int64), np.zeros(t, np.float32)
    sizes_seen = [[float(np.ptp(f[:, 1])) for f in fs] for fs in faces]
    for k, (fs, i) in enumerate(zip(faces, chosen)):
        sizes = sizes_seen[k]
        counts[k] = sum(s >= LARGE * max(sizes) for s in sizes) if sizes else 0
        if i is None:
            continue
        pts = fs[i]
        if masks:
            cv2.fillConvexPoly(face_masks[k], cv2.convexHull(np.round(pts).astype(np.int32)), 1)
            seen = np.unpackbits(people[k], axis=-1, count=width).astype(bool)
            persons[k] = person_region(seen, face_masks[k], [box_of(f) for f in fs], i)
        face_h = float(np.linalg.norm(pts[CHIN] - pts[FOREHEAD]))
        mouth[k] = float(np.linalg.norm(pts[LOWER_LIP] - pts[UPPER_LIP])) / max(face_h, 1e-6)
        boxes[k] = box_of(pts)
        heights[k] = sizes[i] / height
    found = np.array([i is not None for i in chosen], bool)
    typical = float(np.median(heights[found])) * height if found.any() else 0.0
    others = np.array(
        [not ok and any(s >= LARGE * typical for s in sizes) for ok, sizes in zip(found, sizes_seen)], bool
    )
    return {"masks": face_masks, "person_masks": persons, "mouth": mouth, "found": found, "boxes": boxes,
            "counts": counts, "heights": heights, "others": others}  # fmt: skip


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
    if a["found"].shape[0] == 0:
        raise Drop("corrupt", "the segment has no frames")
    found = float(a["found"].mean())
    n = several(a["counts"])
    mouth = a["mouth"][a["found"]]
    lost, switch = longest_run(~a["found"]), longest_run(a["others"])
    height = float(np.median(a["heights"][a["found"]])) if a["found"].any() else 0.0
    record["faces"] = {
        "found": round(found, 3),
        "faces": n,
        "face_height": round(height, 3),
        "lost_run": lost,
        "switch_run": switch,
        "person": round(float(a["person_masks"].mean()), 3),
        "mouth_mean": round(float(mouth.mean()), 4) if mouth.size else None,
        "mouth_std": round(float(mouth.std()), 4) if mouth.size else None,
        "mask": "mesh-hull",
    }
    if 1.0 - found > settings.face_missing_max:
        return dropped(record, "no-face", f"a face in {found:.0%} of frames, missing in more than "
                       f"{settings.face_missing_max:.0%}")  # fmt: skip
    if found and switch >= SWITCH_FRAMES:
        return dropped(record, "face-switch", f"another face instead of the tracked one for {switch} frames in a row")
    if found and lost > settings.face_lost_max:
        return dropped(record, "face-lost", f"the tracked face is missing for {lost} frames in a row "
                       f"(more than {settings.face_lost_max})")  # fmt: skip
    if n >= 2 and settings.several_faces == "drop":
        return dropped(record, "several-faces", f"{n} large faces together in {SEVERAL_SHARE:.0%} of frames or more")
    if found and height < settings.face_min_height:
        return dropped(record, "face-too-small", f"the face's median height is {height:.1%} of the frame's, under "
                       f"{settings.face_min_height:.0%}")  # fmt: skip
    path = out / FOLDER / f"{record['id']}.npz"
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, masks=a["masks"], person_masks=a["person_masks"][None], mouth=a["mouth"],
                                found=a["found"], boxes=a["boxes"])  # fmt: skip
    record["face_masks"] = str(path.relative_to(out))
    return record
