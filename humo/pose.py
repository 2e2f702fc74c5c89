"""Driving poses: keypoint layouts, the pose file, and the Gaussian heatmaps the pose guider reads (OmniHuman-1).

**Layouts.** A pose comes in one of a few keypoint layouts: COCO-17 (most detectors), OpenPose-18 (COCO's joints
plus the neck, in OpenPose's order) or the proving ground's 11 tracked points. Each maps to one **canonical** set
of 18 joints the model sees (COCO's 17 in COCO's order, then the neck); a joint a layout lacks is present with
confidence 0. "left" and "right" are the person's own sides (COCO's and OpenPose's convention: a person facing
the camera has their left eye on the image's right); the proving ground names image sides, so its left and
right swap on the way in.

**The pose file** (JSON, ``"format": "humo-pose/1"``): the layout, the frame size in pixels, the frame rate and,
per frame, per person, the keypoints as ``[x, y, confidence]`` in pixels (x right, y down; confidence in [0, 1],
0 = not seen). `load_pose` checks everything and raises a one-line `HumoError` naming the file and the problem;
`save_pose` writes one. docs/data-format.md, "Pose files", has the format.

**Heatmaps.** `PoseTrack.heatmaps` draws each canonical joint as a Gaussian (peak 1, `sigma` heatmap pixels)
on its own channel, the maximum over the people of a frame, and skips joints under `MIN_CONFIDENCE`:
[J, T, H, W], what `humo.pose_guider.PoseGuider` encodes.

    track = load_pose("pose.json")                       # canonical, pixels of the file's frames
    frames = track.at_fps(97, fps=25)                    # the video's 97 frames, nearest pose frame in time
    maps = frames.fit(480, 832).heatmaps(120, 208, 1.0)  # [18, 97, 120, 208]
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from humo.errors import HumoError, atomic_path, require_file

FORMAT = "humo-pose/1"

COCO17 = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
OPENPOSE18 = (
    "nose",
    "neck",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "right_hip",
    "right_knee",
    "right_ankle",
    "left_hip",
    "left_knee",
    "left_ankle",
    "right_eye",
    "left_eye",
    "right_ear",
    "left_ear",
)
#: The joints the model sees, in this order: COCO-17, then the neck (OpenPose's one joint more).
CANONICAL = (*COCO17, "neck")

# The proving ground's tracked points (humo.proving_ground.render.KEYPOINTS, image left/right) -> canonical joints.
# The head's centre stands for the nose (a cartoon face has none; the centre is where a nose would be); head_top,
# chin and mouth have no canonical joint. Left and right swap: the characters face the camera.
PROVING_GROUND = {
    "head": "nose",
    "left_eye": "right_eye",
    "right_eye": "left_eye",
    "neck": "neck",
    "left_shoulder": "right_shoulder",
    "right_shoulder": "left_shoulder",
    "left_hand": "right_wrist",
    "right_hand": "left_wrist",
}

LAYOUTS = {"coco17": COCO17, "openpose18": OPENPOSE18}

# A joint below this confidence is not drawn (detectors report low-confidence guesses for occluded joints).
MIN_CONFIDENCE = 0.3
# Heatmap values below this are set to zero. A Gaussian's far tail (and the product of two tails) falls into
# float32's denormal range, which makes CPU convolutions over the maps several times slower (the pose guider's
# training step about 5x, `humo bench pose`); 1e-8 of the peak is nothing to the model.
HEATMAP_FLOOR = 1e-8
# How far outside the frame a keypoint may lie, as a fraction of the frame's side: detectors place joints just
# beyond the edge (a hand leaving the frame); anything farther is a file in other units (e.g. a size mismatch).
MARGIN = 0.5


def joint_count(layout: str) -> int:
    return len(LAYOUTS[layout])


def to_canonical(points: np.ndarray, layout: str) -> np.ndarray:
    """[..., K, 3] keypoints of `layout` -> [..., 18, 3] canonical (absent joints: zeros). COCO-17 has no neck:
    it is the shoulders' midpoint where both are seen, with the lower of their confidences."""
    names = LAYOUTS[layout]
    out = np.zeros((*points.shape[:-2], len(CANONICAL), 3), np.float32)
    for k, name in enumerate(names):
        out[..., CANONICAL.index(name), :] = points[..., k, :]
    if "neck" not in names:
        ls, rs = out[..., CANONICAL.index("left_shoulder"), :], out[..., CANONICAL.index("right_shoulder"), :]
        seen = (ls[..., 2] > 0) & (rs[..., 2] > 0)
        neck = np.concatenate([(ls[..., :2] + rs[..., :2]) / 2, np.minimum(ls[..., 2:], rs[..., 2:])], -1)
        out[..., CANONICAL.index("neck"), :] = np.where(seen[..., None], neck, 0)
    return out


def from_canonical(points: np.ndarray, layout: str) -> np.ndarray:
    """[..., 18, 3] canonical -> [..., K, 3] of `layout`."""
    return np.ascontiguousarray(points[..., [CANONICAL.index(n) for n in LAYOUTS[layout]], :]).astype(np.float32)


def proving_ground_to_canonical(points: np.ndarray, names) -> np.ndarray:
    """The proving ground's tracks [..., K, 3] (x, y, visible; `names` = `render.KEYPOINTS`) -> [..., 18, 3]."""
    out = np.zeros((*points.shape[:-2], len(CANONICAL), 3), np.float32)
    for k, name in enumerate(names):
        if name in PROVING_GROUND:
            out[..., CANONICAL.index(PROVING_GROUND[name]), :] = points[..., k, :]
    return out


# ---------------------------------------------------------------------------------------------------------------
# A pose track


@dataclass
class PoseTrack:
    """Canonical keypoints of a clip: points [T, P, 18, 3] (x, y in pixels of a `width` x `height` frame, or in
    [0, 1] when `normalised`; confidence), P people per frame (absent people: confidence 0), at `fps`."""

    points: np.ndarray
    width: float
    height: float
    fps: float
    normalised: bool = False

    @property
    def frames(self) -> int:
        return self.points.shape[0]

    @property
    def seconds(self) -> float:
        return self.frames / self.fps

    def at_fps(self, frames: int, fps: float, start: int = 0) -> PoseTrack:
        """`frames` frames at `fps`, from frame `start` of that rate on: each the pose frame nearest in time (a
        pose at another rate is resampled; at the same rate this is a slice). Frames past the pose's end hold its
        last frame (the caller checks the pose is long enough where that matters)."""
        t = (start + np.arange(frames)) / fps
        idx = np.clip(np.floor(t * self.fps + 0.5 + 1e-6).astype(np.int64), 0, self.frames - 1)
        return PoseTrack(self.points[idx], self.width, self.height, fps, self.normalised)

    def frames_at(self, fps: float) -> int:
        """How many frames at `fps` the pose covers."""
        return int(math.floor(self.seconds * fps + 1e-6))

    def normalise(self) -> PoseTrack:
        """Coordinates as fractions of the frame (0 = left/top edge, 1 = right/bottom edge)."""
        if self.normalised:
            return self
        pts = self.points.copy()
        pts[..., 0] /= self.width
        pts[..., 1] /= self.height
        return PoseTrack(pts, 1.0, 1.0, self.fps, True)

    def fit(self, height: int, width: int) -> PoseTrack:
        """The pose placed into a `height` x `width` frame as reference images are (`humo.media.image`: scaled to
        fit, aspect kept, centred) -> normalised coordinates of that frame."""
        if self.normalised:
            raise ValueError("fit() needs pixel coordinates")
        scale = min(width / self.width, height / self.height)
        pts = self.points.copy()
        pts[..., 0] = (pts[..., 0] * scale + (width - self.width * scale) / 2) / width
        pts[..., 1] = (pts[..., 1] * scale + (height - self.height * scale) / 2) / height
        return PoseTrack(pts, 1.0, 1.0, self.fps, True)

    def heatmaps(self, height: int, width: int, sigma: float) -> torch.Tensor:
        """[18, T, height, width] float32 Gaussian heatmaps (see the module docstring)."""
        return render_heatmaps(torch.from_numpy(self.normalise().points), height, width, sigma)


def render_heatmaps(
    points: torch.Tensor, height: int, width: int, sigma: float, floor: float = HEATMAP_FLOOR
) -> torch.Tensor:
    """Normalised keypoints [T, P, J, 3] -> [J, T, height, width] float32: per joint a Gaussian of peak 1 and
    standard deviation `sigma` (heatmap pixels) at the keypoint, the maximum over people, zero where under
    `floor` (`HEATMAP_FLOOR`: about 6 sigma out); joints with confidence under `MIN_CONFIDENCE` are left out. A
    coordinate u in [0, 1] lands at pixel u * size, so pixel i (centre i + 0.5) peaks for keypoints inside
    [i / size, (i + 1) / size).

    Separable: a row profile [T, P, J, H] times a column profile [T, P, J, W], one person at a time."""
    points = points.float()
    t, p, j, _ = points.shape
    rows = torch.arange(height, dtype=torch.float32) + 0.5
    cols = torch.arange(width, dtype=torch.float32) + 0.5
    out = torch.zeros(t, j, height, width)
    for person in range(p):
        pt = points[:, person]  # [T, J, 3]
        on = (pt[..., 2] >= MIN_CONFIDENCE).float()
        gy = torch.exp(-((rows - pt[..., 1:2] * height) ** 2) / (2 * sigma**2)) * on[..., None]  # [T, J, H]
        gx = torch.exp(-((cols - pt[..., 0:1] * width) ** 2) / (2 * sigma**2))  # [T, J, W]
        out = torch.maximum(out, gy[..., :, None] * gx[..., None, :])
    out.masked_fill_(out < floor, 0.0)
    return out.transpose(0, 1).contiguous()


# ---------------------------------------------------------------------------------------------------------------
# The pose file


def _fail(path, message: str) -> HumoError:
    return HumoError(f"pose file {path}: {message}")


def _number(value, path, what: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(path, f"{what} {value!r:.40} is not a finite number")
    if positive and value <= 0:
        raise _fail(path, f"{what} {value!r} must be positive")
    return float(value)


def parse_pose(data, path: str | os.PathLike = "<data>") -> PoseTrack:
    """A parsed pose file (a dict, see the module docstring) -> its canonical `PoseTrack` (pixels), checked."""
    if not isinstance(data, dict):
        raise _fail(path, "the top level must be an object")
    if data.get("format") != FORMAT:
        raise _fail(path, f"format {data.get('format')!r}: expected {FORMAT!r}")
    unknown = sorted(set(data) - {"format", "layout", "width", "height", "fps", "num_frames", "frames"})
    if unknown:
        raise _fail(path, f"unknown key {unknown[0]!r}")
    for key in ("layout", "width", "height", "fps", "num_frames", "frames"):
        if key not in data:
            raise _fail(path, f"missing {key!r}")
    layout = data["layout"]
    if layout not in LAYOUTS:
        raise _fail(path, f"layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    width = _number(data["width"], path, "width", positive=True)
    height = _number(data["height"], path, "height", positive=True)
    fps = _number(data["fps"], path, "fps", positive=True)
    n = data["num_frames"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise _fail(path, f"num_frames {n!r}: must be a positive integer")
    frames = data["frames"]
    if not isinstance(frames, list):
        raise _fail(path, "'frames' must be a list")
    k = joint_count(layout)
    seen: dict[int, list] = {}
    for pos, fr in enumerate(frames):
        if not isinstance(fr, dict) or set(fr) != {"index", "people"}:
            raise _fail(path, f"frames[{pos}]: must be an object with 'index' and 'people'")
        i = fr["index"]
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
            raise _fail(path, f"frames[{pos}]: index {i!r} is not a frame number 0..{n - 1}")
        if i in seen:
            raise _fail(path, f"frame {i} appears twice")
        people = fr["people"]
        if not isinstance(people, list):
            raise _fail(path, f"frame {i}: 'people' must be a list")
        seen[i] = []
        for q, person in enumerate(people):
            where = f"frame {i} person {q}"
            if not isinstance(person, dict) or "keypoints" not in person:
                raise _fail(path, f"{where}: must be an object with 'keypoints'")
            kp = person["keypoints"]
            if not isinstance(kp, list) or len(kp) != k:
                got = len(kp) if isinstance(kp, list) else type(kp).__name__
                raise _fail(path, f"{where}: {got} keypoints, layout {layout} has {k}")
            for j, point in enumerate(kp):
                if not isinstance(point, list) or len(point) != 3:
                    raise _fail(path, f"{where} joint {LAYOUTS[layout][j]}: expected [x, y, confidence]")
                for v, name in zip(point, ("x", "y", "confidence")):
                    _number(v, path, f"{where} joint {LAYOUTS[layout][j]} {name}")
            seen[i].append(kp)
    missing = [i for i in range(n) if i not in seen]
    if missing:
        more = f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""
        raise _fail(path, f"frames missing: {', '.join(map(str, missing[:5]))}{more} of {n}")
    people = max(1, max(len(v) for v in seen.values()))
    pts = np.zeros((n, people, k, 3), np.float32)
    for i, kps in seen.items():
        for q, kp in enumerate(kps):
            pts[i, q] = np.asarray(kp, np.float32)
    conf = pts[..., 2]
    if (conf < 0).any() or (conf > 1).any():
        i, q, j = np.argwhere((conf < 0) | (conf > 1))[0]
        raise _fail(
            path, f"frame {i} person {q} joint {LAYOUTS[layout][j]}: confidence {conf[i, q, j]:g} not in [0, 1]"
        )
    lo = np.array([-MARGIN * width, -MARGIN * height], np.float32)
    hi = np.array([(1 + MARGIN) * width, (1 + MARGIN) * height], np.float32)
    out = ((pts[..., :2] < lo) | (pts[..., :2] > hi)).any(-1) & (conf > 0)  # unseen joints' places mean nothing
    if out.any():
        i, q, j = np.argwhere(out)[0]
        x, y = pts[i, q, j, :2]
        raise _fail(
            path,
            f"frame {i} person {q} joint {LAYOUTS[layout][j]}: ({x:g}, {y:g}) is far outside the "
            f"{width:g}x{height:g} frame (coordinates are pixels of that frame)",
        )
    return PoseTrack(to_canonical(pts, layout), width, height, fps)


def load_pose(path: str | os.PathLike) -> PoseTrack:
    """Read and check a pose file -> its canonical `PoseTrack` (pixels of the file's frame size)."""
    p = require_file(path, "pose file")

    def no_constant(name: str):  # Python's json reads NaN and Infinity, which JSON does not have
        raise _fail(p, f"{name} is not a number (JSON has no {name})")

    try:
        data = json.loads(p.read_text(encoding="utf-8"), parse_constant=no_constant)
    except json.JSONDecodeError as e:
        raise _fail(p, f"not valid JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError:
        raise _fail(p, "not a UTF-8 text file") from None
    return parse_pose(data, p)


def pose_document(track: PoseTrack, layout: str = "coco17", digits: int = 2) -> dict:
    """A pixel `PoseTrack` as a pose file's data, in `layout` (people with no joint seen in a frame are left out)."""
    if track.normalised:
        raise ValueError("a pose file holds pixel coordinates")
    pts = from_canonical(track.points, layout)
    pts[pts[..., 2] <= 0] = 0  # an unseen joint has no place
    frames = []
    for i in range(track.frames):
        people = [
            {"keypoints": [[round(float(x), digits), round(float(y), digits), round(float(c), 3)] for x, y, c in kp]}
            for kp in pts[i]
            if (kp[:, 2] > 0).any()
        ]
        frames.append({"index": i, "people": people})
    return {
        "format": FORMAT,
        "layout": layout,
        "width": track.width,
        "height": track.height,
        "fps": track.fps,
        "num_frames": track.frames,
        "frames": frames,
    }


def save_pose(path: str | os.PathLike, track: PoseTrack, layout: str = "coco17") -> Path:
    """Write `track` as a pose file (atomically) in `layout`."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(pose_document(track, layout), separators=(",", ":")) + "\n", encoding="utf-8")
    return path


def from_proving_ground(keypoints: np.ndarray, width: float, height: float, fps: float, names=None) -> PoseTrack:
    """A proving-ground clip's tracks (`humo synth`'s .npz ``keypoints`` [C, T, K, 3], or `render.keypoints` of
    one character [T, K, 3]) -> a canonical `PoseTrack`, one person per character. `names` defaults to
    `render.KEYPOINTS` (a manifest's ``meta.keypoint_names``)."""
    if names is None:
        from humo.proving_ground.render import KEYPOINTS as names
    kp = np.asarray(keypoints, np.float32)
    if kp.ndim == 3:
        kp = kp[None]
    if kp.ndim != 4 or kp.shape[-1] != 3 or kp.shape[2] != len(names):
        raise HumoError(f"proving-ground keypoints: expected [C, T, {len(names)}, 3], got {list(kp.shape)}")
    return PoseTrack(proving_ground_to_canonical(kp.transpose(1, 0, 2, 3), names), width, height, fps)


# ---------------------------------------------------------------------------------------------------------------
# A pose driving a video


def frames_for_pose(track: PoseTrack, path, fps: float = 25.0) -> int:
    """Video length for ``--frames -1`` without audio: the frames at `fps` the pose covers, rounded down to 4k+1."""
    from humo.constants import round_down_frames

    n = track.frames_at(fps)
    if n < 1:
        raise _fail(path, f"{track.seconds:.3f} s of pose is too short for one video frame")
    return round_down_frames(n)


def check_covers(track: PoseTrack, frames: int, path, fps: float = 25.0, who: str = "") -> None:
    """A one-line HumoError unless the pose lasts at least `frames` video frames at `fps`."""
    n = track.frames_at(fps)
    if n < frames:
        raise HumoError(
            f"{who}pose file {path}: covers {n} frames ({track.seconds:.2f} s at {fps:g} fps), the video has {frames}; "
            "give fewer --frames or a longer pose"
        )
