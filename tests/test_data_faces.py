"""The `faces` stage of `humo data run` on a real face (matplotlib's sample photo, tests/face_media.py): the face
found with its mask over it, the person mask over head and body, the mouth opening following a synthetic open/shut
schedule (and not a shuffled one), one face tracked while another appears, faceless, two-face, small, lost and
switched faces dropped, the .npz reaching the manifest and `humo precompute`'s reader."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.face_media import require  # noqa: E402

require("mediapipe")  # fails, naming `make install`, when it is missing

from humo.data.pipeline.core import Settings, apply_stage  # noqa: E402
from humo.data.pipeline.stages import faces, manifest  # noqa: E402
from humo.data.precompute import read_face_masks  # noqa: E402
from tests.face_media import (  # noqa: E402
    SIZE,
    face_photo,
    make_face,
    mouth_schedule,
    open_mouth,
    speech_and_mouth,
    two_faces,
    write_frames,
)

W, H = SIZE


def record(name: str, frames: int, size=SIZE) -> dict:
    return {"id": name, "clip": name, "source": f"/x/{name}.mp4", "status": "kept", "video": f"{name}.mp4",
            "audio": None, "fps": 25.0, "num_frames": frames, "width": size[0], "height": size[1]}  # fmt: skip


@pytest.fixture(scope="module")
def talking(tmp_path_factory):
    out = tmp_path_factory.mktemp("faces")
    schedule = make_face(out / "talk.mp4", frames=49)
    r = faces.process(record("talk", 49), Settings(out=out))
    return out, schedule, r


def test_face_found_mask_over_it_and_npz_written(talking):
    out, schedule, r = talking
    assert r["status"] == "kept" and r["faces"]["found"] == 1.0 and r["faces"]["faces"] == 1
    assert r["face_masks"] == "faces/talk.npz" and not list(out.rglob(".*"))
    with np.load(out / r["face_masks"]) as z:
        masks, mouth, found = z["masks"], z["mouth"], z["found"]
    assert masks.shape == (49, H, W) and masks.dtype == np.uint8 and mouth.shape == (49,) and found.all()
    # the hull covers the face (forehead to chin, between the cheeks), not the background or the uniform
    assert masks[:, 110, 128].all() and masks[:, 80, 128].all() and masks[:, 160, 135].all()
    assert not masks[:, 10, 10].any() and not masks[:, 280, 128].any() and not masks[:, 150, 20].any()
    share = masks.mean()
    assert 0.05 < share < 0.25, share


def test_person_mask_covers_head_and_body_not_background(talking):
    out, _, r = talking
    with np.load(out / r["face_masks"]) as z:
        face, person = z["masks"], z["person_masks"]
    assert person.shape == (1, 49, H, W) and person.dtype == np.uint8
    person = person[0]
    assert (person >= face).all()  # the face is inside the person
    assert person[:, 280, 20:240].mean() > 0.9 and person[:, 60, 128].all()  # shoulders and jacket, hair
    assert not person[:, 5, :40].any() and not person[:, 5, -40:].any()  # the background's top corners
    assert 0.4 < person.mean() < 0.8 and 0.4 < r["faces"]["person"] < 0.8
    assert r["faces"]["lost_run"] == 0 and r["faces"]["switch_run"] == 0


def test_mouth_opening_follows_the_schedule_both_ways(talking):
    out, schedule, r = talking
    with np.load(out / r["face_masks"]) as z:
        mouth = z["mouth"]
    right = np.corrcoef(mouth, schedule)[0, 1]
    shuffled = [np.corrcoef(mouth, np.random.default_rng(s).permutation(schedule))[0, 1] for s in range(20)]
    print(f"mouth vs schedule r={right:.3f}, vs shuffled max |r|={max(abs(c) for c in shuffled):.3f}")
    assert right > 0.8, right
    assert max(abs(c) for c in shuffled) < 0.6 and abs(np.mean(shuffled)) < 0.2, shuffled
    assert 0.0 <= mouth.min() < 0.02 and mouth.max() > 0.05  # shut reads near 0, wide open as a share of the face


def test_no_face_is_dropped(tmp_path):
    rng = np.random.default_rng(0)
    write_frames(tmp_path / "noise.mp4", (rng.integers(0, 255, (96, 128, 3), np.uint8) for _ in range(9)))
    write_frames(tmp_path / "plain.mp4", (np.full((96, 128, 3), (40, 120, 200), np.uint8) for _ in range(9)))
    for name in ("noise", "plain"):
        [r], _ = apply_stage("faces", record(name, 9, (128, 96)), Settings(out=tmp_path))
        assert (r["status"], r["reason"], r["stage"]) == ("dropped", "no-face", "faces")
        assert r["faces"]["found"] == 0.0 and "face_masks" not in r
    assert not (tmp_path / "faces").exists()


def test_face_missing_share_is_configurable(tmp_path):
    img = face_photo()
    blank = np.full_like(img, 128)
    write_frames(tmp_path / "half.mp4", [img] * 4 + [blank] * 5)  # a face in 4 of 9 frames
    [r], _ = apply_stage("faces", record("half", 9), Settings(out=tmp_path))
    assert r["reason"] == "no-face" and r["faces"]["found"] == pytest.approx(4 / 9, abs=1e-3)
    [r], _ = apply_stage("faces", record("half", 9), Settings(out=tmp_path, face_missing_max=0.6))
    assert r["status"] == "kept"
    with np.load(tmp_path / r["face_masks"]) as z:
        assert z["found"].tolist() == [True] * 4 + [False] * 5 and np.isnan(z["mouth"][4:]).all()
        assert z["masks"][:4].any(axis=(1, 2)).all() and not z["masks"][4:].any()


def test_two_faces_flagged_and_dropped_by_default(tmp_path):
    img = face_photo()
    two = np.concatenate([img, img[:, ::-1]], axis=1)  # side by side, the same size
    write_frames(tmp_path / "two.mp4", [two] * 9)
    [r], _ = apply_stage("faces", record("two", 9, (2 * W, H)), Settings(out=tmp_path))
    assert (r["status"], r["reason"], r["faces"]["faces"]) == ("dropped", "several-faces", 2)
    [r], _ = apply_stage("faces", record("two", 9, (2 * W, H)), Settings(out=tmp_path, several_faces="keep"))
    assert r["status"] == "kept" and r["faces"]["faces"] == 2


def test_face_too_small_is_settable(talking, tmp_path):
    out, _, r = talking
    assert 0.3 < r["faces"]["face_height"] < 0.4  # the photo's face: a third of the frame's height
    shutil.copy(out / "talk.mp4", tmp_path / "talk.mp4")
    [r], _ = apply_stage("faces", record("talk", 49), Settings(out=tmp_path, face_min_height=0.4))
    assert (r["status"], r["reason"]) == ("dropped", "face-too-small") and "under 40%" in r["detail"]
    assert not (tmp_path / "faces").exists()


def test_tracking_follows_the_first_face_when_a_larger_one_comes(tmp_path):
    schedule = mouth_schedule(33, seed=3)
    frames = two_faces(schedule, second_from=6)  # the photo left (its mouth by the schedule), a larger one right
    write_frames(tmp_path / "pair.mp4", frames)
    h, w = frames[0].shape[:2]
    [r], _ = apply_stage("faces", record("pair", 33, (w, h)), Settings(out=tmp_path, several_faces="keep"))
    assert r["status"] == "kept" and r["faces"]["faces"] == 2 and r["faces"]["found"] == 1.0
    with np.load(tmp_path / r["face_masks"]) as z:
        masks, person, mouth, boxes = z["masks"], z["person_masks"][0], z["mouth"], z["boxes"]
    assert masks[:, :, : w // 2].sum() > 0 and masks[:, :, w // 2 :].sum() == 0  # every frame: the left face
    assert person[6:, :, w // 2 + 20 :].sum() < 0.01 * person[6:].sum()  # the right person is not in its region
    assert (boxes[:, 2] < w // 2).all()
    assert np.corrcoef(mouth, schedule)[0, 1] > 0.8


def test_face_lost_and_face_switch(tmp_path):
    img = face_photo()
    blank = np.full_like(img, 128)
    write_frames(tmp_path / "gap.mp4", [img] * 5 + [blank] * 16 + [img] * 12)  # gone 16 frames in a row
    [r], _ = apply_stage("faces", record("gap", 33), Settings(out=tmp_path, face_missing_max=0.9))
    assert (r["status"], r["reason"], r["faces"]["lost_run"]) == ("dropped", "face-lost", 16)
    [r], _ = apply_stage("faces", record("gap", 33), Settings(out=tmp_path, face_missing_max=0.9, face_lost_max=16))
    assert r["status"] == "kept"
    left = np.concatenate([img, blank], axis=1)
    right = np.concatenate([blank, img[:, ::-1]], axis=1)
    write_frames(tmp_path / "switch.mp4", [left] * 20 + [right] * 13)  # another person from frame 20
    [r], _ = apply_stage("faces", record("switch", 33, (2 * W, H)), Settings(out=tmp_path))
    assert (r["status"], r["reason"], r["faces"]["switch_run"]) == ("dropped", "face-switch", 13)


def test_manifest_carries_face_masks_for_precompute(talking):
    out, _, r = talking
    sample = manifest.process(dict(r), Settings(out=out))["sample"]
    assert sample["face_masks"] == "faces/talk.npz" and sample["meta"]["faces"]["faces"] == 1
    m = read_face_masks(out / sample["face_masks"])
    assert m.shape == (49, H, W) and m.any()


def test_open_mouth_helper_is_monotone():
    img = face_photo()
    assert (open_mouth(img, 0) == img).all()
    dark = [(open_mouth(img, g)[130:160, 120:150].mean(axis=2) < 70).sum() for g in (0, 4, 8, 12)]
    assert dark == sorted(dark) and dark[-1] > dark[0]
    assert mouth_schedule(49).min() == 0 and mouth_schedule(49).max() == 12


def test_the_whole_run_writes_face_masks_to_the_manifest(tmp_path):
    from humo.cli import main
    from humo.data.manifest import read_manifest

    wave, schedule = speech_and_mouth(50)  # the mouth follows the speech: the lip-sync filter keeps it
    make_face(tmp_path / "hopper.mp4", frames=50, schedule=schedule, audio=wave)
    out = tmp_path / "out"
    assert main(["data", "run", "--input", str(tmp_path / "hopper.mp4"), "--out", str(out), "-q"]) == 0
    [s] = read_manifest(out / "manifest.jsonl", check_files=True)
    assert s.id == "hopper-shot00-00" and s.num_frames == 49 and s.meta["faces"]["found"] == 1.0
    assert s.face_masks == "faces/hopper-shot00-00.npz" and read_face_masks(s.face_masks_path).shape == (49, H, W)
    assert s.meta["sync"]["offset"] == 0 and s.meta["sync"]["confidence"] > 0.6


def test_eval_real_tracks_landmarks_only_from_a_stream(talking, monkeypatch):
    """`humo eval --real`'s face track (`real_sync.face_track`) reads the video as a stream and runs no Selfie
    Segmentation (the sync scores need the landmarks only), and its mouth, boxes and found are the faces stage's."""
    from humo.evaluation.real_sync import face_track
    from humo.evaluation.real_video import RealInputs

    out, _, r = talking
    with np.load(out / r["face_masks"]) as z:
        mouth, boxes, found = z["mouth"], z["boxes"], z["found"]

    def no_segmentation():
        raise AssertionError("Selfie Segmentation ran for landmarks only")

    monkeypatch.setattr(faces, "selfie_segmentation", no_segmentation)
    inputs = RealInputs(out / "talk.mp4")
    track = inputs.face_track
    assert "_all_frames" not in inputs.__dict__  # streamed: the whole video was never decoded into memory
    assert np.array_equal(track["found"], found) and np.array_equal(track["boxes"], boxes, equal_nan=True)
    assert np.array_equal(track["mouth"], mouth, equal_nan=True)
    assert track["masks"] is None and track["person_masks"] is None
    assert face_track(iter(()))["found"].shape == (0,)
