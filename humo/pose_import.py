"""Other tools' keypoint files read as a driving pose (`humo pose convert`): each becomes a canonical `PoseTrack`
that `humo.pose.save_pose` writes as a ``humo-pose/1`` file.

What is read, found from the source itself:

- **OpenPose** ``--write_json`` output: a folder of one JSON per frame (``*_keypoints.json``, in name order: OpenPose
  pads the frame number), each ``{"people": [{"pose_keypoints_2d": [x0, y0, c0, ...]}, ...]}`` in the BODY_25
  (OpenPose's default model) or COCO-18 layout; or one JSON holding a list of such frames, as DWPose nodes save
  them (a frame's ``canvas_width`` / ``canvas_height``, when there, give the frame size).
- **COCO** person keypoints, 17 joints: an annotation file (``images`` with sizes, ``annotations`` with
  ``image_id`` and ``keypoints`` whose third value is a visibility flag 0/1/2, read as confidence 0 or 1), or a
  results list (``[{"image_id", "keypoints", "score"}, ...]`` as mmpose and AlphaPose write, confidences clipped to
  [0, 1]). Frames follow the image ids.
- **The proving ground**: a clip of a ``humo synth`` manifest (``manifest.jsonl`` and the clip's id); its size and
  frame rate are the manifest's.
- A ``humo-pose/1`` file (checked and written again).

OpenPose and COCO results carry no frame rate and (outside DWPose's frames) no frame size: the caller gives
them. Coordinates are pixels of that frame; ``normalised=True`` reads them as fractions of it (OpenPose's
``--keypoint_scale 3``), and coordinates that all lie within [0, 1] of a larger frame are refused as probably
normalised. Every problem is a one-line `HumoError` naming the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from humo.errors import HumoError, read_json_file
from humo.pose import COCO17, FORMAT, OPENPOSE18, PoseTrack, parse_pose, pose_document, to_canonical

#: OpenPose's BODY_25 model: OpenPose-18's joints with the mid-hip after the wrists, then six foot points; the
#: mid-hip and the feet have no canonical joint.
BODY25 = (
    *OPENPOSE18[:8],
    "mid_hip",
    *OPENPOSE18[8:],
    "left_big_toe",
    "left_small_toe",
    "left_heel",
    "right_big_toe",
    "right_small_toe",
    "right_heel",
)
# keypoints per person -> the pose-file layout that keeps every canonical joint the source has
_LAYOUT_OF = {25: "openpose18", 18: "openpose18", 17: "coco17"}


def _fail(path, message: str) -> HumoError:
    return HumoError(f"pose source {path}: {message}")


def _person(flat, path, where: str, counts=(25, 18)) -> tuple[np.ndarray, int]:
    """A flat [x0, y0, c0, ...] list -> ([K, 3], K), K one of `counts`."""
    if not isinstance(flat, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in flat
    ):
        raise _fail(path, f"{where}: keypoints must be a list of numbers")
    if len(flat) % 3 or len(flat) // 3 not in counts:
        allowed = " or ".join(f"{k} ({k * 3} numbers)" for k in counts)
        raise _fail(path, f"{where}: {len(flat)} numbers; expected {allowed} keypoints of x, y, confidence")
    kp = np.asarray(flat, np.float32).reshape(-1, 3)
    kp[:, 2] = np.clip(kp[:, 2], 0.0, 1.0)  # detectors' scores, read as confidences
    return kp, len(flat) // 3


def _canonical(frames: list[list[np.ndarray]], count: int) -> np.ndarray:
    """Per frame, per person [K, 3] keypoints of the layout with `count` joints -> canonical [T, P, 18, 3] (absent
    people: zeros)."""
    people = max(1, max((len(f) for f in frames), default=1))
    pts = np.zeros((len(frames), people, count, 3), np.float32)
    for i, f in enumerate(frames):
        for q, kp in enumerate(f):
            pts[i, q] = kp
    if count == len(BODY25):  # BODY_25 has every joint of OpenPose-18
        pts = pts[..., [BODY25.index(n) for n in OPENPOSE18], :]
    return to_canonical(pts, _LAYOUT_OF[count])


def _openpose_frames(items: list, paths: list, source) -> tuple[list[list[np.ndarray]], int, tuple | None]:
    """OpenPose frame objects -> (per frame, per person [K, 3]; K; the canvas size if given)."""
    frames, counts, canvas = [], set(), None
    for item, where in zip(items, paths, strict=True):
        if not isinstance(item, dict) or not isinstance(item.get("people"), list):
            raise _fail(source, f"{where}: expected an OpenPose frame, an object with a 'people' list")
        people = []
        for q, person in enumerate(item["people"]):
            if not isinstance(person, dict) or "pose_keypoints_2d" not in person:
                raise _fail(source, f"{where} person {q}: no 'pose_keypoints_2d'")
            kp, k = _person(person["pose_keypoints_2d"], source, f"{where} person {q}")
            people.append(kp)
            counts.add(k)
        if "canvas_width" in item and "canvas_height" in item:
            size = (item["canvas_width"], item["canvas_height"])
            if canvas is not None and size != canvas:
                raise _fail(source, f"{where}: canvas {size[0]}x{size[1]}, the frames before {canvas[0]}x{canvas[1]}")
            canvas = size
        frames.append(people)
    if len(counts) > 1:
        raise _fail(source, f"frames mix layouts of {' and '.join(map(str, sorted(counts)))} keypoints")
    return frames, counts.pop() if counts else len(BODY25), canvas


def _image_key(image_id):
    """Image ids in frame order: numbers by value, strings with their digits read as numbers (f_12 < f_100)."""
    if isinstance(image_id, (int, float)):
        return (0, image_id, "")
    s = str(image_id)
    return (1, 0, [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)])


def _coco_frames(data, source) -> tuple[list[list[np.ndarray]], tuple | None]:
    """A COCO annotation file or results list -> (per frame, per person [17, 3]; the images' size if given)."""
    if isinstance(data, dict):
        images, annotations, visibility = data.get("images"), data["annotations"], True
        if not isinstance(images, list) or not all(isinstance(im, dict) and "id" in im for im in images):
            raise _fail(source, "a COCO annotation file needs 'images', each with an 'id'")
        order = sorted((im["id"] for im in images), key=_image_key)
        sizes = {(im.get("width"), im.get("height")) for im in images}
        if len(sizes) > 1:
            raise _fail(source, "images of different sizes: one pose drives one video")
        w, h = sizes.pop() if sizes else (None, None)
        size = None if w is None or h is None else (w, h)
    else:
        annotations, visibility, size = data, False, None
        order = None
    if not isinstance(annotations, list):
        raise _fail(source, "'annotations' must be a list")
    by_image: dict = {}
    for a, ann in enumerate(annotations):
        if not isinstance(ann, dict) or "image_id" not in ann or "keypoints" not in ann:
            raise _fail(source, f"annotation {a}: needs 'image_id' and 'keypoints'")
        if ann.get("category_id", 1) != 1:
            continue  # not a person
        kp, _ = _person(ann["keypoints"], source, f"annotation {a}", counts=(17,))
        if visibility:  # an annotation's flag (0 not labelled, 1 labelled but hidden, 2 visible), not a score
            kp[:, 2] = kp[:, 2] > 0
        by_image.setdefault(ann["image_id"], []).append(kp)
    if order is None:
        order = sorted(by_image, key=_image_key)
    else:
        listed = set(order)
        stray = [i for i in by_image if i not in listed]
        if stray:
            raise _fail(source, f"annotation for image {stray[0]!r}, which 'images' does not list")
    if not order:
        raise _fail(source, "no images and no person keypoints")
    return [by_image.get(i, []) for i in order], size


def _check_size(size, source) -> tuple[float, float]:
    if size is None:
        raise _fail(source, "its frame size is not in it: give --size WIDTHxHEIGHT (pixels of the frames it was "
                            "made from)")  # fmt: skip
    w, h = size
    for v, what in ((w, "width"), (h, "height")):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v <= 0:
            raise _fail(source, f"frame {what} {v!r}: must be a positive number")
    return float(w), float(h)


def _placed(pts: np.ndarray, width: float, height: float, normalised: bool, source) -> np.ndarray:
    """Canonical keypoints in pixels: normalised ones scaled; pixel ones that all lie in [0, 1] of a frame of more
    than 4 pixels refused (probably normalised)."""
    pts = pts.copy()
    seen = pts[..., 2] > 0
    if normalised:
        pts[..., 0] *= width
        pts[..., 1] *= height
    elif seen.any() and min(width, height) > 4 and (np.abs(pts[..., :2][seen]) <= 1.0).all():
        raise _fail(
            source,
            f"every keypoint lies within 1 pixel of the corner of the {width:g}x{height:g} frame: are the "
            "coordinates fractions of the frame? Then give --normalised",
        )
    pts[~seen] = 0
    return pts


def _from_proving_ground(manifest: Path, clip: str | None) -> tuple[PoseTrack, str]:
    from humo.data.manifest import read_manifest
    from humo.pose import from_proving_ground

    if not clip:
        raise _fail(manifest, "a proving-ground manifest holds many clips: name one with --clip ID")
    samples = read_manifest(manifest)
    sample = next((s for s in samples if s.id == clip), None)
    if sample is None:
        raise _fail(manifest, f"no clip {clip!r} (it has {len(samples)})")
    if not sample.face_masks:
        raise _fail(manifest, f"clip {clip!r} has no 'face_masks' file, where its tracks are")
    npz = sample.resolve(sample.face_masks)
    if not npz.is_file():
        raise _fail(manifest, f"clip {clip!r}: {npz} not found")
    with np.load(npz) as z:
        if "keypoints" not in z.files:
            raise _fail(npz, "no 'keypoints' (not a proving-ground clip's file)")
        kp = z["keypoints"]
    names = sample.meta.get("keypoint_names")
    return from_proving_ground(kp, sample.width, sample.height, sample.fps, names), "openpose18"


def read_pose_source(
    source: str | os.PathLike,
    fps: float | None = None,
    size: tuple[float, float] | None = None,
    normalised: bool = False,
    clip: str | None = None,
) -> tuple[PoseTrack, str]:
    """Any source of the module docstring -> (canonical `PoseTrack` in pixels, the pose-file layout that keeps
    its joints). `fps` and `size` are needed where the source lacks them, and refused where it has its own."""
    src = Path(source)
    if not src.exists():
        raise _fail(src, "not found")
    if src.suffix == ".jsonl":
        if fps is not None or size is not None or normalised:
            raise _fail(src, "a proving-ground manifest has its clips' size and frame rate: no --fps, --size or "
                             "--normalised")  # fmt: skip
        return _from_proving_ground(src, clip)
    if clip is not None:
        raise _fail(src, "--clip names a clip of a proving-ground manifest (.jsonl)")
    if src.is_dir():
        files = sorted(src.glob("*.json"))
        if not files:
            raise _fail(src, "a folder without .json files (OpenPose's --write_json writes one per frame)")
        frames, count, canvas = _openpose_frames(
            [read_json_file(f, "pose source") for f in files], [f.name for f in files], src
        )
    else:
        data = read_json_file(src, "pose source")
        if isinstance(data, dict) and data.get("format") == FORMAT:
            if fps is not None or size is not None or normalised:
                raise _fail(src, f"a {FORMAT} file has its own size and frame rate: no --fps, --size or --normalised")
            track = parse_pose(data, src)
            return track, data["layout"]
        if (
            isinstance(data, dict)
            and "annotations" in data
            or (isinstance(data, list) and data and isinstance(data[0], dict) and "image_id" in data[0])
        ):
            frames, canvas = _coco_frames(data, src)
            count = len(COCO17)
        elif isinstance(data, dict) and "people" in data:
            frames, count, canvas = _openpose_frames([data], ["frame 0"], src)
        elif isinstance(data, list) and data:
            frames, count, canvas = _openpose_frames(data, [f"frame {i}" for i in range(len(data))], src)
        else:
            raise _fail(src, f"not a pose source humo reads ({FORMAT}, OpenPose frames, COCO keypoints)")
    if canvas is not None and size is not None and tuple(map(float, canvas)) != tuple(map(float, size)):
        raise _fail(src, f"--size {size[0]:g}x{size[1]:g}, but the file says {canvas[0]}x{canvas[1]}")
    width, height = _check_size(size if size is not None else canvas, src)
    if fps is None:
        raise _fail(src, "it carries no frame rate: give --fps (the driving video's, e.g. 25)")
    if isinstance(fps, bool) or not np.isfinite(fps) or fps <= 0:
        raise _fail(src, f"--fps {fps!r}: must be a positive number")
    pts = _placed(_canonical(frames, count), width, height, normalised, src)
    track, layout = PoseTrack(pts, width, height, float(fps)), _LAYOUT_OF[count]
    parse_pose(pose_document(track, layout), src)  # the checks every pose file gets (places, confidences)
    return track, layout
