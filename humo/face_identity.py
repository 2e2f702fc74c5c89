"""Face identity: who a face is, as a 128-d embedding from dlib's face-recognition ResNet.

The weights ship in a pip package, so nothing is downloaded at run time: `face-recognition-models` 0.3.0 (an sdist
of about 100 MB) holds dlib's models as ``face_recognition_models/models/*.dat``, and `dlib-bin` (a binary cp311
wheel of dlib 20, no dependencies of its own, so no numpy pin) runs them. We use two of its four files:

- ``dlib_face_recognition_resnet_model_v1.dat``: the ResNet (29 conv layers) mapping an aligned 150x150 face chip
  to 128 numbers, trained by dlib's author with a metric loss so that two faces of the same person lie within
  Euclidean distance `SAME_PERSON` (0.6; 99.38% on LFW by its author's measure);
- ``shape_predictor_5_face_landmarks.dat``: the 5-point landmarks (eye corners, nose) that align the chip;

and dlib's own HOG face detector (built into dlib, no file). Not used: the 68-point predictor (its iBUG 300-W
training data forbids commercial use) and the CNN (MMOD) detector. The package's ``__init__`` imports
``pkg_resources``, which recent setuptools no longer has, so we find its folder without importing it.

Faces are RGB uint8 [H, W, 3] images; boxes are (x0, y0, x1, y1) pixels. `embed` picks the face (the largest, or
the one overlapping a given box, e.g. the MediaPipe box the data pipeline tracks), aligns and embeds it. Compare
embeddings with `distance` (Euclidean, the scale the network was trained on: under `SAME_PERSON` is the same
person) or `similarity` (cosine, the form papers report; with these embeddings two different people still score
about 0.85-0.9, the same person 0.95 and up).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from humo.errors import HumoError

MODEL = "dlib-resnet-v1"  # the name runs record
SAME_PERSON = 0.6  # dlib's threshold: two embeddings closer than this are the same person
PACKAGES = "dlib-bin and face-recognition-models (pip install -e '.[identity]')"
RESNET = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARKS = "shape_predictor_5_face_landmarks.dat"
MATCH_IOU = 0.2  # a detection overlapping a given box this much is that face (mesh and HOG boxes differ in shape)


def models_folder() -> Path | None:
    """The folder of face-recognition-models' ``.dat`` files, or None when it is not installed."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    return folder if (folder / RESNET).is_file() and (folder / LANDMARKS).is_file() else None


def available() -> bool:
    """Whether dlib and the model files are installed."""
    return importlib.util.find_spec("dlib") is not None and models_folder() is not None


@functools.cache
def _models():
    if not available():
        raise HumoError(f"face identity needs {PACKAGES}")
    import dlib

    folder = models_folder()
    return (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(str(folder / LANDMARKS)),
        dlib.face_recognition_model_v1(str(folder / RESNET)),
    )


def iou(a, b) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1); 0 for boxes without area. The one box IoU of the
    project (the data pipeline's face tracker uses it too)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return float(w * h / union) if union > 0 else 0.0


def detect(image: np.ndarray) -> list[np.ndarray]:
    """dlib's HOG detector on an RGB image: face boxes (x0, y0, x1, y1) float32, best score first. Pictures under
    800 pixels a side are looked at twice as large (the detector's smallest face is 80 pixels)."""
    detector = _models()[0]
    image = np.ascontiguousarray(image)
    upsample = 1 if max(image.shape[:2]) < 800 else 0
    rects, scores, _ = detector.run(image, upsample, 0.0)
    order = np.argsort(scores)[::-1]
    return [np.array([rects[i].left(), rects[i].top(), rects[i].right(), rects[i].bottom()], np.float32) for i in order]


def embed(image: np.ndarray, box: np.ndarray | None = None, fallback: bool = False) -> np.ndarray | None:
    """The 128-d embedding (float32) of a face in an RGB image: the detected face overlapping `box` most (IoU at
    least `MATCH_IOU`); without `box`, the largest detected face. None when dlib finds no such face, unless
    `fallback` (with a `box` another detector vouches for, e.g. a profile face that dlib's frontal detector
    misses): then `box` itself is aligned and embedded."""
    import dlib

    faces = detect(image)
    if box is not None:
        best = max(faces, key=lambda f: iou(f, box), default=None)
        if best is not None and iou(best, box) >= MATCH_IOU:
            face = best
        elif fallback:
            face = np.asarray(box, np.float32)
        else:
            return None
    elif faces:
        face = max(faces, key=lambda f: (f[2] - f[0]) * (f[3] - f[1]))
    else:
        return None
    _, landmarks, resnet = _models()
    image = np.ascontiguousarray(image)
    x0, y0, x1, y1 = (int(round(float(v))) for v in face)
    shape = landmarks(image, dlib.rectangle(x0, y0, x1, y1))
    return np.asarray(resnet.compute_face_descriptor(image, shape), np.float32)


def mean_embedding(embeddings: list[np.ndarray]) -> np.ndarray | None:
    """One embedding for several views of a face (their mean), or None for none."""
    embeddings = [e for e in embeddings if e is not None]
    return np.mean(embeddings, axis=0).astype(np.float32) if embeddings else None


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance of two embeddings: under `SAME_PERSON` (0.6) is the same person."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
