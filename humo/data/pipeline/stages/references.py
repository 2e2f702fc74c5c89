"""references: for each segment, a reference image of its speaker taken outside the segment, cropped around the
face, as HuMo trains with (a reference drawn away from the training clip, so the model cannot copy it frame for
frame).

The stage maps over input videos (``GROUP``): it sees all kept segments of one video at once. For a segment, the
reference comes from, in this order:

1. another segment of the **same shot** whose tracked face is the same person: segments of a shot are contiguous,
   and two neighbours are the same person when the face's last box in the one and its first box in the next
   overlap (IoU at least `TRACK_IOU`, the faces stage's tracking rule); a chain of such neighbours links farther
   ones. The farthest linked segment wins; in it, the frame where the face is largest.
2. a frame of the normalised clip in the same shot but **outside the segment** (the frames a shot's segments leave
   unused at its two ends): the middle of the longer unused stretch first, Face Mesh on that frame, the face
   overlapping the segment's nearest box (IoU at least `TRACK_IOU`).

Other shots are not used: without a face-embedding model we cannot tell whether the face after a cut is the same
person (an interview cuts between two). The crop is a square around the face box, `MARGIN` times its height on a
side (head, hair and a little of the shoulders), moved inside the picture (and smaller when the picture is).
Written as ``OUT/references/<segment id>.png``; ``record["ref_images"]`` is ``[that path]`` (the manifest's
``ref_images``). Facts (``record["reference"]``): ``source`` (``segment`` or ``clip``), ``segment`` (the
segment it came from, or null), ``frame`` (its index in the normalised clip), ``gap`` (frames between it and the
segment), ``crop`` (x0, y0, x1, y1 in pixels).
"""

from __future__ import annotations

import numpy as np

from humo.data.pipeline.core import Drop, Record, Settings, dropped
from humo.data.pipeline.media import first_line, open_media
from humo.data.pipeline.stages.faces import TRACK_IOU, box_of, face_mesh, iou
from humo.errors import atomic_path

VERSION = 1
PARAMS = ("no_reference",)
REQUIRES = ("mediapipe", "cv2", "PIL")
GROUP = True
REASONS = {
    "no-reference": "no frame outside the segment shows its speaker (a shot with one segment and no unused frames)",
    "corrupt": "a segment's faces .npz, or the video a reference frame comes from, does not read",
}
MARGIN = 2.0  # the crop's side over the face box's height
FOLDER = "references"


def _tracks(out, records: list[Record]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    tracks = {}
    for r in records:
        try:
            with np.load(out / r["face_masks"]) as z:
                tracks[r["id"]] = (z["found"], z["boxes"])
        except Exception as e:  # noqa: BLE001 - numpy's and zipfile's errors
            raise Drop("corrupt", f"{r['face_masks']} does not read ({first_line(e)})") from None
    return tracks


def _end_box(track, last: bool) -> np.ndarray | None:
    found, boxes = track
    idx = np.flatnonzero(found)
    return None if idx.size == 0 else boxes[idx[-1] if last else idx[0]]


def linked(shot: list[Record], tracks) -> list[bool]:
    """For a shot's segments in order: whether each one's face continues into the next (the same person)."""
    links = []
    for a, b in zip(shot, shot[1:]):
        end, start = _end_box(tracks[a["id"]], True), _end_box(tracks[b["id"]], False)
        links.append(end is not None and start is not None and iou(end, start) >= TRACK_IOU)
    return links


def crop_box(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """A square of `MARGIN` face heights around `box`, inside the picture (x0, y0, x1, y1)."""
    side = min(int(round(MARGIN * float(box[3] - box[1]))), width, height)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0 = int(np.clip(round(cx - side / 2), 0, width - side))
    y0 = int(np.clip(round(cy - side / 2), 0, height - side))
    return x0, y0, x0 + side, y0 + side


def read_frame(path, index: int) -> np.ndarray:
    """Frame `index` of a video, RGB uint8 [H, W, 3]."""
    with open_media(path) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i == index:
                return f.to_ndarray(format="rgb24")
    raise Drop("corrupt", f"{path.name} has no frame {index}")


def from_segments(r: Record, shot: list[Record], tracks, links: list[bool]) -> dict | None:
    """The reference from the farthest segment of the same shot linked to `r` (same person), or None."""
    i = next(k for k, s in enumerate(shot) if s["id"] == r["id"])
    reach = [k for k in range(len(shot)) if k != i and all(links[min(i, k) : max(i, k)])]
    if not reach:
        return None
    k = max(reach, key=lambda k: abs(k - i))
    found, boxes = tracks[shot[k]["id"]]
    heights = np.where(found, boxes[:, 3] - boxes[:, 1], -1.0)
    j = int(np.argmax(heights))
    if heights[j] <= 0:
        return None
    seg, own = shot[k]["segment"], r["segment"]
    frame = seg["start_frame"] + j
    gap = frame - (own["start_frame"] + own["num_frames"] - 1) if k > i else own["start_frame"] - frame
    return {"source": "segment", "segment": shot[k]["id"], "frame": frame, "gap": int(gap), "box": boxes[j],
            "video": shot[k]["video"], "index": j}  # fmt: skip


def from_clip(r: Record, tracks, out) -> dict | None:
    """The reference from a frame of the normalised clip in `r`'s shot outside every segment, or None."""
    seg = r["segment"]
    a, b = seg["shot_frames"]
    start, end = seg["start_frame"], seg["start_frame"] + seg["num_frames"]
    found = tracks[r["id"]]
    stretches = [(a, start, _end_box(found, False)), (end, b, _end_box(found, True))]  # unused frames, nearest box
    stretches = sorted([s for s in stretches if s[1] > s[0] and s[2] is not None], key=lambda s: s[0] - s[1])
    path = out / "normalise" / f"{r['clip']}.mp4"
    for lo, hi, near in stretches:
        frame = (lo + hi) // 2
        try:
            img = read_frame(path, frame)
        except Drop:
            raise
        except Exception as e:  # noqa: BLE001 - FFmpeg's errors
            raise Drop("corrupt", f"{path.name} does not decode ({first_line(e)})") from None
        h, w = img.shape[:2]
        with face_mesh(static=True) as mesh:
            result = mesh.process(np.ascontiguousarray(img))
        scale = np.array([w, h], np.float32)
        boxes = [box_of(np.array([(p.x, p.y) for p in f.landmark], np.float32) * scale)
                 for f in (result.multi_face_landmarks or [])]  # fmt: skip
        best = max(boxes, key=lambda x: iou(x, near), default=None)
        if best is not None and iou(best, near) >= TRACK_IOU:
            gap = start - frame if frame < start else frame - (end - 1)
            return {"source": "clip", "segment": None, "frame": frame, "gap": int(gap), "box": best, "image": img}
    return None


def process(group: Record, settings: Settings) -> list[Record]:
    from PIL import Image

    out = settings.out
    records = group["records"]
    tracks = _tracks(out, records)
    shots: dict[int, list[Record]] = {}
    for r in sorted(records, key=lambda r: r["segment"]["start_frame"]):
        shots.setdefault(r["segment"]["shot"], []).append(r)
    links = {k: linked(v, tracks) for k, v in shots.items()}
    outputs = []
    for r in records:
        shot = r["segment"]["shot"]
        ref = from_segments(r, shots[shot], tracks, links[shot]) or from_clip(r, tracks, out)
        if ref is None:
            r["ref_images"] = []
            if settings.no_reference == "drop":
                outputs.append(dropped(r, "no-reference", "no frame outside the segment in its shot shows its face"))
            else:
                outputs.append(r)
            continue
        img = ref.pop("image", None)
        if img is None:
            try:
                img = read_frame(out / ref.pop("video"), ref.pop("index"))
            except Drop:
                raise
            except Exception as e:  # noqa: BLE001 - FFmpeg's errors
                raise Drop("corrupt", f"segment {ref['segment']} does not decode ({first_line(e)})") from None
        x0, y0, x1, y1 = crop_box(ref.pop("box"), img.shape[1], img.shape[0])
        path = out / FOLDER / f"{r['id']}.png"
        with atomic_path(path, suffix=".png") as tmp:
            Image.fromarray(np.ascontiguousarray(img[y0:y1, x0:x1])).save(tmp, format="PNG")
        r["ref_images"] = [str(path.relative_to(out))]
        r["reference"] = {**ref, "crop": [x0, y0, x1, y1]}
        outputs.append(r)
    return outputs
