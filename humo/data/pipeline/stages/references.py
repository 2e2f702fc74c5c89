"""references: for each segment, a reference image of its speaker taken outside the segment, cropped around the
face, as HuMo trains with (a reference drawn away from the training clip, so the model cannot copy it frame for
frame).

The stage maps over input videos (``GROUP``): it sees all kept segments of one video at once. For a segment, the
reference comes from, in this order:

1. a segment of **another shot** of the same video showing the same person, by face embedding (the paper's
   cross-pair retrieval; `humo.face_identity`, with the ``identity`` extra): each segment's identity is the mean
   embedding of its tracked face in `SAMPLES` frames (the one where the face is largest and others spread over the
   segment, the tracked box picking the face); the other-shot segment whose identity lies nearest, if within
   ``reference_distance_max`` (Euclidean, dlib's scale, where 0.6 parts people), gives the frame where its face is
   largest. Without the extra, or with ``reference_distance_max`` 0, this step is skipped.
2. another segment of the **same shot** whose tracked face is the same person: segments of a shot are contiguous,
   and two neighbours are the same person when the face's last box in the one and its first box in the next
   overlap (IoU at least `TRACK_IOU`, the faces stage's tracking rule); a chain of such neighbours links farther
   ones. The farthest linked segment wins; in it, the frame where the face is largest.
3. a frame of the normalised clip in the same shot but **outside the segment** (the frames a shot's segments leave
   unused at its two ends): the middle of the longer unused stretch first, Face Mesh on that frame, the face
   overlapping the segment's nearest box (IoU at least `TRACK_IOU`).

The crop is a square around the face box, `MARGIN` times its height on a side (head, hair and a little of the
shoulders), moved inside the picture (and smaller when the picture is). Written as
``OUT/references/<segment id>.png``; ``record["ref_images"]`` is ``[that path]`` (the manifest's ``ref_images``).
Facts (``record["reference"]``): ``source`` (``shot``, ``segment`` or ``clip``), ``segment`` (the segment it came
from, or null), ``frame`` (its index in the normalised clip), ``gap`` (frames between it and the segment),
``crop`` (x0, y0, x1, y1 in pixels), ``face_box`` (the face's box in the reference image's pixels, whence
training's reference crops, `humo.reference_crops`), and with the identity model ``distance`` and ``similarity``
(Euclidean and cosine) between the segment's identity and the reference's face (the other segment's identity for
``shot``), else null.
"""

from __future__ import annotations

import numpy as np

from humo.data.pipeline.core import Drop, Record, Settings, dropped
from humo.data.pipeline.media import open_media
from humo.data.pipeline.stages.faces import TRACK_IOU, box_of, face_mesh
from humo.errors import atomic_path, first_line
from humo.face_identity import iou

VERSION = 3
PARAMS = ("no_reference", "reference_distance_max", "identity_model")
REQUIRES = ("mediapipe", "cv2", "PIL")
GROUP = True
REASONS = {
    "no-reference": "no frame outside the segment shows its speaker (a shot with one segment and no unused frames)",
    "corrupt": "a segment's faces .npz, or the video a reference frame comes from, does not read",
}
MARGIN = 2.0  # the crop's side over the face box's height
SAMPLES = 3  # frames of a segment whose face embeddings make its identity
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


def face_in_crop(box: np.ndarray, crop: tuple[int, int, int, int]) -> list[float]:
    """The face box in the reference image's pixels (x0, y0, x1, y1, inside it): where training's head, upper
    body and clothing crops are cut from (`humo.reference_crops`)."""
    x0, y0, x1, y1 = crop
    return [round(float(np.clip(v - o, 0, s)), 1) for v, o, s in zip(box, (x0, y0, x0, y0), (x1 - x0, y1 - y0) * 2)]


def read_frame(path, index: int) -> np.ndarray:
    """Frame `index` of a video, RGB uint8 [H, W, 3]."""
    with open_media(path) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i == index:
                return f.to_ndarray(format="rgb24")
    raise Drop("corrupt", f"{path.name} has no frame {index}")


def read_frames(path, indices) -> dict[int, np.ndarray]:
    """Frames `indices` of a video (one pass), RGB uint8 [H, W, 3] by index."""
    want, frames = set(indices), {}
    with open_media(path) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i in want:
                frames[i] = f.to_ndarray(format="rgb24")
            if len(frames) == len(want):
                break
    return frames


def identity(out, r: Record, track) -> tuple[np.ndarray | None, dict | None]:
    """A segment's identity, the mean face embedding over `SAMPLES` of its frames with the tracked face (picked by
    its box), and its largest face as a reference candidate ``{index, box, image}`` (None, None without a face)."""
    from humo import face_identity

    found, boxes = track
    idx = np.flatnonzero(found)
    if idx.size == 0:
        return None, None
    largest = int(idx[np.argmax(boxes[idx, 3] - boxes[idx, 1])])
    picks = sorted({largest, *(int(idx[k]) for k in np.linspace(0, idx.size - 1, SAMPLES).round().astype(int))})
    picks = sorted(picks, key=lambda k: (k != largest, k))[:SAMPLES]
    try:
        frames = read_frames(out / r["video"], picks)
    except Drop:
        raise
    except Exception as e:  # noqa: BLE001 - FFmpeg's errors
        raise Drop("corrupt", f"segment {r['id']} does not decode ({first_line(e)})") from None
    if largest not in frames:
        raise Drop("corrupt", f"segment {r['id']} has no frame {largest}")
    # the boxes are Face Mesh's: a face dlib's frontal detector misses (a profile) is still embedded from its box
    emb = face_identity.mean_embedding([face_identity.embed(frames[k], boxes[k], fallback=True) for k in frames])
    return emb, {"index": largest, "box": boxes[largest], "image": frames[largest]}


def from_other_shots(r: Record, records: list[Record], ids: dict, limit: float) -> dict | None:
    """The reference from the segment of another shot whose identity is nearest `r`'s, within `limit`, or None."""
    from humo import face_identity

    own = ids[r["id"]][0]
    if own is None:
        return None
    near = [(face_identity.distance(own, ids[s["id"]][0]), s) for s in records
            if s["segment"]["shot"] != r["segment"]["shot"] and ids[s["id"]][0] is not None]  # fmt: skip
    near = [(d, s) for d, s in near if d <= limit]
    if not near:
        return None
    d, s = min(near, key=lambda x: x[0])
    emb, face = ids[s["id"]]
    seg, mine = s["segment"], r["segment"]
    frame = seg["start_frame"] + face["index"]
    after = frame > mine["start_frame"]
    gap = frame - (mine["start_frame"] + mine["num_frames"] - 1) if after else mine["start_frame"] - frame
    return {"source": "shot", "segment": s["id"], "frame": frame, "gap": int(gap), "box": face["box"],
            "image": face["image"], "distance": round(d, 4),
            "similarity": round(face_identity.similarity(own, emb), 4)}  # fmt: skip


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


def _compare(own: np.ndarray | None, img: np.ndarray, box: np.ndarray) -> dict:
    """The distance and similarity of the face in `img` at `box` to the identity `own` (null without either)."""
    if own is None:
        return {"distance": None, "similarity": None}
    from humo import face_identity

    emb = face_identity.embed(img, box)
    if emb is None:
        return {"distance": None, "similarity": None}
    return {"distance": round(face_identity.distance(own, emb), 4),
            "similarity": round(face_identity.similarity(own, emb), 4)}  # fmt: skip


def process(group: Record, settings: Settings) -> list[Record]:
    from PIL import Image

    out = settings.out
    records = group["records"]
    tracks = _tracks(out, records)
    ids = {r["id"]: identity(out, r, tracks[r["id"]]) for r in records} if settings.identity_model else {}
    shots: dict[int, list[Record]] = {}
    for r in sorted(records, key=lambda r: r["segment"]["start_frame"]):
        shots.setdefault(r["segment"]["shot"], []).append(r)
    links = {k: linked(v, tracks) for k, v in shots.items()}
    outputs = []
    for r in records:
        shot = r["segment"]["shot"]
        ref = None
        if ids and settings.reference_distance_max > 0:
            ref = from_other_shots(r, records, ids, settings.reference_distance_max)
        ref = ref or from_segments(r, shots[shot], tracks, links[shot]) or from_clip(r, tracks, out)
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
        box = ref.pop("box")
        if "distance" not in ref:
            ref.update(_compare(ids.get(r["id"], (None,))[0], img, box))
        x0, y0, x1, y1 = crop_box(box, img.shape[1], img.shape[0])
        path = out / FOLDER / f"{r['id']}.png"
        with atomic_path(path, suffix=".png") as tmp:
            Image.fromarray(np.ascontiguousarray(img[y0:y1, x0:x1])).save(tmp, format="PNG")
        r["ref_images"] = [str(path.relative_to(out))]
        r["reference"] = {**ref, "crop": [x0, y0, x1, y1], "face_box": face_in_crop(box, (x0, y0, x1, y1))}
        outputs.append(r)
    return outputs
