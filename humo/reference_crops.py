"""Reference crops: InterActHuman's remedy for copy-paste (also HuMo's data practice). In training a reference
image is shown whole or cropped to the person's head, upper body or clothing, so the model learns to carry an
identity and an outfit into a new picture rather than to paste the reference's picture.

The references are encoded once, at precompute time, so the crops are cached variants: ``humo precompute
--reference-crops N`` encodes, beside each whole reference, N crops of each kind (the first exactly the rule's
box, the others jittered around it from a seed of the image's bytes); training draws one variant per reference
and sample with the configured probabilities (`draw_crops`, `TrainConfig.reference_crops`).

Where the regions lie (`crop_boxes`, pixels ``x0, y0, x1, y1`` of the reference image, end exclusive) comes from
the reference's face box and person box, in units of the face's height ``fh``:

- head: the face box, ``HEAD_MARGIN`` wider on each side and higher by the hair (always holds the face box);
- upper: from the head's top to ``UPPER_BELOW`` face heights under the chin, within the person box's width;
- clothing: from ``CLOTHING_GAP`` face heights under the chin to the person box's bottom (never reaches the face).

The boxes come from the manifest (`reference_geometry`): the proving ground's ground truth (``meta.characters[k]
.reference_boxes``, written by `humo synth`), the data pipeline's face box in its reference (``meta.reference
.face_box``, written by its references stage), or a manifest's own ``meta.reference_boxes`` (one ``{"face",
"person"}`` per reference). Without a person box it is the whole image (a reference shows one person); without a
face box the face is placed by proportions of the person box (`FALLBACK_FACE`). A crop smaller than `MIN_CROP` of
the image's shorter side (a reference already cut around the face has little clothing) is not made; training then
shows that reference whole for that kind.

A crop is prepared as an inference reference is: `humo.media.image.load_image`, then cut, then
`humo.media.image.prepare_reference` (fit into the frame, white padding), the one function ``humo generate
--image`` uses; the augmentation itself is training-only.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from humo.errors import HumoError

#: the variants a reference can be shown as in training; "whole" is the image as inference takes it
CROPS = ("whole", "head", "upper", "clothing")
CROP_KINDS = CROPS[1:]
HEAD_MARGIN = (0.35, 0.6, 0.15)  # face widths to each side, face heights above (hair) and below
UPPER_BELOW = 2.2  # face heights under the chin where the upper body ends
UPPER_HALF_WIDTH = 2.0  # face heights to each side of the face's centre (within the person box)
CLOTHING_GAP = 0.25  # face heights between the chin and the clothing crop's top (the neck)
#: the face box as fractions of the person box (x0, y0, x1, y1), when no face box is known
FALLBACK_FACE = (0.36, 0.04, 0.64, 0.3)
MIN_CROP = 0.2  # a crop's shorter side at least this share of the image's shorter side (and 8 px)
JITTER = (0.12, 0.08)  # a jittered variant: sides scaled by up to +-12%, the centre moved up to 8% of the side

if TYPE_CHECKING:
    import torch

Box = tuple[int, int, int, int]


def _clip(box, width: int, height: int) -> Box:
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = int(np.floor(max(0.0, min(x0, width)))), int(np.ceil(max(0.0, min(x1, width))))
    y0, y1 = int(np.floor(max(0.0, min(y0, height)))), int(np.ceil(max(0.0, min(y1, height))))
    return x0, y0, x1, y1


def _big_enough(box: Box, width: int, height: int) -> bool:
    side = max(8, MIN_CROP * min(width, height))
    return box[2] - box[0] >= side and box[3] - box[1] >= side


def rule_boxes(face, person, width: int, height: int) -> dict[str, list[float]]:
    """The regions by the rule (unclipped floats): {"head", "upper", "clothing"} -> [x0, y0, x1, y1]."""
    fx0, fy0, fx1, fy1 = (float(v) for v in face)
    px0, py0, px1, py1 = (float(v) for v in person)
    fw, fh, cx = fx1 - fx0, fy1 - fy0, (fx0 + fx1) / 2
    mx, up, down = HEAD_MARGIN
    head = [fx0 - mx * fw, fy0 - up * fh, fx1 + mx * fw, fy1 + down * fh]
    half = UPPER_HALF_WIDTH * fh
    upper = [max(px0, cx - half), head[1], min(px1, cx + half), fy1 + UPPER_BELOW * fh]
    clothing = [px0, fy1 + CLOTHING_GAP * fh, px1, py1]
    return {"head": head, "upper": upper, "clothing": clothing}


def _jitter(box, rng: np.random.Generator) -> list[float]:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2 + rng.uniform(-1, 1) * JITTER[1] * w
    cy = (y0 + y1) / 2 + rng.uniform(-1, 1) * JITTER[1] * h
    w, h = w * (1 + rng.uniform(-1, 1) * JITTER[0]), h * (1 + rng.uniform(-1, 1) * JITTER[0])
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def crop_boxes(face, person, width: int, height: int, variants: int = 1, seed: str = "") -> dict[str, list[Box]]:
    """Each crop kind's boxes in a ``width x height`` reference (`variants` of each: the rule's, then jittered ones
    drawn from `seed`), clipped to the image; a kind whose rule box is too small (`MIN_CROP`) has none. Whatever the
    jitter, a head or upper crop holds the face box and a clothing crop starts under the chin."""
    face = _clip(face, width, height)
    fh = face[3] - face[1]
    rule = rule_boxes(face, person, width, height)
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"crops:{seed}".encode()).digest()[:8], "little"))
    out: dict[str, list[Box]] = {}
    for kind in CROP_KINDS:
        boxes: list[Box] = []
        for j in range(variants):
            b = rule[kind] if j == 0 else _jitter(rule[kind], rng)
            if kind == "clothing":
                b = [b[0], max(b[1], face[3] + CLOTHING_GAP * fh), b[2], b[3]]
            else:  # the head (and the upper body) hold the whole face
                b = [min(b[0], face[0]), min(b[1], face[1]), max(b[2], face[2]), max(b[3], face[3])]
            box = _clip(b, width, height)
            if j == 0 and not _big_enough(box, width, height):
                break
            if _big_enough(box, width, height) and box not in boxes:
                boxes.append(box)
        if boxes:
            out[kind] = boxes
    return out


def fallback_face(person) -> list[float]:
    """The face box placed by `FALLBACK_FACE` proportions of the person box."""
    px0, py0, px1, py1 = (float(v) for v in person)
    w, h = px1 - px0, py1 - py0
    a, b, c, d = FALLBACK_FACE
    return [px0 + a * w, py0 + b * h, px0 + c * w, py0 + d * h]


def _stored_boxes(meta: Mapping, k: int) -> Mapping:
    """The boxes the manifest gives for reference `k` ({"face": ..., "person": ...}, either may be missing)."""
    boxes: Mapping = {}
    chars = meta.get("characters")
    if isinstance(chars, list) and k < len(chars) and isinstance(chars[k], Mapping):
        boxes = chars[k].get("reference_boxes") or {}
    if not boxes and isinstance(meta.get("reference_boxes"), list) and k < len(meta["reference_boxes"]):
        boxes = meta["reference_boxes"][k] or {}
    if not boxes and k == 0 and isinstance(meta.get("reference"), Mapping) and meta["reference"].get("face_box"):
        boxes = {"face": meta["reference"]["face_box"]}
    return boxes


def box_problem(meta: Mapping | None, k: int) -> str | None:
    """What is wrong with the manifest's boxes of reference `k` (None: nothing): each given one must be four
    numbers x0, y0, x1, y1 with x0 < x1 and y0 < y1."""
    boxes = _stored_boxes(meta or {}, k)
    if not isinstance(boxes, Mapping):
        return f"reference {k}: boxes {boxes!r} are not a mapping of 'face' and 'person' boxes"
    for name in ("person", "face"):
        b = boxes.get(name)
        if b is None:
            continue
        numbers = isinstance(b, (list, tuple)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in b
        )
        if not (numbers and len(b) == 4 and b[0] < b[2] and b[1] < b[3]):
            return f"reference {k}: {name} box {b!r} is not x0, y0, x1, y1 with x0 < x1 and y0 < y1"
    return None


def check_manifest_boxes(samples) -> None:
    """A one-line HumoError naming the sample and the box when any manifest sample's reference boxes are malformed
    (`box_problem`): run before any encoding, so that a bad row does not stop a precompute half-way."""
    for s in samples:
        for k in range(len(getattr(s, "ref_images", None) or [])):
            problem = box_problem(getattr(s, "meta", None), k)
            if problem:
                raise HumoError(f"sample {getattr(s, 'id', '')}: {problem}")


def reference_geometry(meta: Mapping | None, k: int, width: int, height: int) -> tuple[list[float], list[float], str]:
    """(face box, person box, where they came from) of reference `k` of a manifest sample with `meta`, in pixels of
    the ``width x height`` reference image (see the module docstring for the sources)."""
    problem = box_problem(meta, k)
    if problem:
        raise HumoError(problem)
    boxes = _stored_boxes(meta or {}, k)
    person = boxes.get("person") or [0, 0, width, height]
    face = boxes.get("face")
    source = "manifest" if face else "proportions"
    return list(face or fallback_face(person)), list(person), source


def load_reference_crop(path: str | os.PathLike, box: Sequence[int], height: int, width: int) -> torch.Tensor:
    """The reference image at `path` cut to `box` (None: whole) and prepared as inference prepares ``--image``
    (`humo.media.image.prepare_reference`) -> float32 [3, height, width] in [-1, 1]."""
    from humo.media.image import load_image, prepare_reference

    img = load_image(path)
    if box is not None:
        img = img.crop(tuple(int(v) for v in box))
    return prepare_reference(img, height, width)


# ----------------------------------------------------------------------------------------------------------------
# Training's draw


def crop_probability_problems(probs: Mapping) -> list[str]:
    """What is wrong with a ``{kind: probability}`` mapping (nothing when empty: crops off)."""
    if not probs:
        return []
    problems = []
    unknown = sorted(set(probs) - set(CROPS))
    if unknown:
        problems.append(f"reference_crops {', '.join(unknown)}: unknown (use {', '.join(CROPS)})")
    for kind, p in probs.items():
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            problems.append(f"reference_crops.{kind} {p!r}: must be a number in [0, 1]")
    if not problems and abs(sum(probs.values()) - 1.0) > 1e-6:
        problems.append(f"reference_crops: the probabilities sum to {sum(probs.values()):g}, not 1")
    return problems


def uses_crops(probs: Mapping | None) -> bool:
    """Whether `probs` ever draws a crop (anything but the whole image)."""
    return bool(probs) and any(probs.get(k, 0) > 0 for k in CROP_KINDS)


def draw_crops(probs: Mapping, seed: int, slot: int, n: int) -> list[tuple[str, float]]:
    """The kinds of `n` references of one sample slot, each with a uniform in [0, 1) that picks among that kind's
    variants: a pure function of (seed, slot), so workers need no seeding and a resumed run draws the same."""
    rng = np.random.default_rng([int(seed), 4, int(slot)])
    p = np.array([float(probs.get(k, 0.0)) for k in CROPS])
    cum = np.cumsum(p / p.sum())
    u = rng.random((n, 2))
    picks = np.minimum(np.searchsorted(cum, u[:, 0], side="right"), len(CROPS) - 1)
    return [(CROPS[i], float(v)) for i, v in zip(picks, u[:, 1])]
