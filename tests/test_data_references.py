"""The `references` stage of `humo data run`, through whole runs on a talking face (matplotlib's sample photo, its
mouth following speech-like audio; tests/face_media.py): a shot of two segments gives each the other's largest
face, a shot of one segment a frame from its unused ends, a shot with no frame outside its segment none
(`no-reference`, or kept without with `--no-reference keep`); the crops hold the face and reach the manifest."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tests.face_media import require  # noqa: E402

require("mediapipe")  # fails, naming `make install`, when it is missing

from humo.cli import main  # noqa: E402
from humo.data.manifest import read_manifest  # noqa: E402
from humo.data.pipeline import core  # noqa: E402
from humo.data.pipeline.stages.faces import face_mesh  # noqa: E402
from humo.data.pipeline.stages.references import crop_box  # noqa: E402
from tests.face_media import make_face, speech_and_mouth  # noqa: E402


def talking_run(tmp_path, frames: int, *extra: str) -> list:
    wave, schedule = speech_and_mouth(frames, seed=1)
    make_face(tmp_path / "talk.mp4", frames=frames, schedule=schedule, audio=wave)
    out = tmp_path / "out"
    assert main(["data", "run", "--input", str(tmp_path / "talk.mp4"), "--out", str(out), "-q", *extra]) == 0
    lines = core.Journal(out, "references").load()
    return out, [r for line in lines.values() for r in line["records"]]


def has_face(path) -> bool:
    img = np.asarray(Image.open(path).convert("RGB"))
    with face_mesh(static=True) as mesh:
        return bool(mesh.process(img).multi_face_landmarks)


def test_two_segments_of_a_shot_reference_each_other(tmp_path):
    out, records = talking_run(tmp_path, 150)  # one shot: segments of 97 and 53 frames
    assert [r["id"] for r in records] == ["talk-shot00-00", "talk-shot00-01"]
    a, b = records
    assert a["status"] == b["status"] == "kept", records
    assert a["reference"]["segment"] == b["id"] and b["reference"]["segment"] == a["id"]
    for r in records:
        ref, seg = r["reference"], r["segment"]
        assert ref["source"] == "segment" and ref["gap"] > 0
        assert not seg["start_frame"] <= ref["frame"] < seg["start_frame"] + seg["num_frames"]  # outside the clip
        x0, y0, x1, y1 = ref["crop"]
        assert x1 - x0 == y1 - y0 and 0 <= x0 and 0 <= y0 and x1 <= r["width"] and y1 <= r["height"]
        # the face's box inside the reference (training's crops are cut around it): about half its side, central
        fx0, fy0, fx1, fy1 = ref["face_box"]
        assert 0 <= fx0 < fx1 <= x1 - x0 and 0 <= fy0 < fy1 <= y1 - y0 and 0.3 < (fy1 - fy0) / (y1 - y0) < 0.7
        assert r["ref_images"] == [f"references/{r['id']}.png"] and has_face(out / r["ref_images"][0])
    samples = read_manifest(out / "manifest.jsonl", check_files=True)
    assert [s.ref_images for s in samples] == [r["ref_images"] for r in records]
    assert samples[0].meta["reference"]["segment"] == "talk-shot00-01" and not list(out.rglob(".*"))
    assert samples[0].meta["reference"]["face_box"] == records[0]["reference"]["face_box"]


def test_one_segment_takes_a_frame_from_the_shots_unused_ends(tmp_path):
    out, [r] = talking_run(tmp_path, 120)  # one 97-frame segment, frames 11..107: 11 unused before, 12 after (108..119)
    assert r["status"] == "kept" and r["segment"]["start_frame"] == 11
    ref = r["reference"]
    assert ref["source"] == "clip" and ref["segment"] is None and ref["frame"] == 114 and ref["gap"] == 7
    assert has_face(out / r["ref_images"][0])


def test_no_frame_outside_the_segment_no_reference(tmp_path):
    out, [r] = talking_run(tmp_path, 97)
    assert (r["status"], r["reason"], r["stage"]) == ("dropped", "no-reference", "references")
    assert not (out / "manifest.jsonl").exists() and not (out / "references").exists()
    assert main(["data", "run", "--out", str(out), "-q", "--no-reference", "keep"]) == 0
    [s] = read_manifest(out / "manifest.jsonl", check_files=True)
    assert s.ref_images == [] and s.id == "talk-shot00-00"


def test_crop_box_is_a_square_inside_the_picture():
    assert crop_box(np.array([100, 100, 140, 150]), 400, 300) == (70, 75, 170, 175)
    assert crop_box(np.array([0, 0, 40, 50]), 400, 300) == (0, 0, 100, 100)  # moved inside
    assert crop_box(np.array([10, 10, 200, 290]), 256, 300) == (0, 22, 256, 278)  # no larger than the picture


def two_people_run(tmp_path, *extra: str) -> tuple:
    """One video of four 41-frame shots cut between two people, A B A' B' (matplotlib's Grace Hopper, her mouth
    following the speech, then mirrored; scikit-image's astronaut, then 40 pixels to the right), speech throughout.
    A 41-frame shot is one segment with no frame outside it, so its reference can only come from another shot."""
    require("dlib")
    from tests.face_media import astronaut_photo, face_photo, open_mouth, write_frames

    shot = 41
    wave, schedule = speech_and_mouth(4 * shot, seed=2)
    hopper, astronaut, moved = face_photo(), astronaut_photo(), astronaut_photo(x=20)
    shots = [
        lambda g: open_mouth(hopper, g),
        lambda g: astronaut,
        lambda g: open_mouth(hopper, g)[:, ::-1],
        lambda g: moved,
    ]
    frames = [np.ascontiguousarray(shots[k // shot](int(g))) for k, g in enumerate(schedule)]
    write_frames(tmp_path / "talk.mp4", frames, audio=wave)
    out = tmp_path / "out"
    args = ["data", "run", "--input", str(tmp_path / "talk.mp4"), "--out", str(out), "-q", "--sync-min", "0"]
    assert main([*args, *extra]) == 0
    lines = core.Journal(out, "references").load()
    return out, [r for line in lines.values() for r in line["records"]]


def test_references_from_other_shots_keep_to_the_same_person(tmp_path):
    from humo import face_identity
    from tests.face_media import astronaut_photo, face_photo

    out, records = two_people_run(tmp_path)
    assert [r["id"] for r in records] == [f"talk-shot0{k}-00" for k in range(4)], records
    assert all(r["status"] == "kept" for r in records), records
    people = {"hopper": face_identity.embed(face_photo()), "astronaut": face_identity.embed(astronaut_photo())}
    for k, r in enumerate(records):
        ref = r["reference"]
        partner = f"talk-shot0{(k + 2) % 4}-00"  # the other shot of the same person, never the one in between
        assert ref["source"] == "shot" and ref["segment"] == partner, (r["id"], ref)
        assert ref["distance"] < 0.3 and ref["similarity"] > 0.97, ref
        crop = np.asarray(Image.open(out / r["ref_images"][0]).convert("RGB"))
        who = min(people, key=lambda p: face_identity.distance(face_identity.embed(crop), people[p]))
        assert who == ("hopper" if k % 2 == 0 else "astronaut"), (r["id"], who)
    samples = read_manifest(out / "manifest.jsonl", check_files=True)
    assert [s.meta["reference"]["segment"] for s in samples] == [r["reference"]["segment"] for r in records]


def test_a_strict_threshold_or_none_falls_back_to_the_same_shot(tmp_path):
    out, records = two_people_run(tmp_path, "--reference-distance-max", "0", "--no-reference", "keep")
    assert all(r["status"] == "kept" and r["ref_images"] == [] for r in records), records
    # a threshold under the same person's distance in two shots: no pair either (and the run redoes the stage)
    assert main(["data", "run", "--out", str(out), "-q", "--reference-distance-max", "0.01"]) == 0
    lines = core.Journal(out, "references").load()
    records = [r for line in lines.values() for r in line["records"]]
    assert all(r["status"] == "kept" and r["ref_images"] == [] for r in records), records


def test_without_the_identity_extra_a_warning_and_the_same_shot_only(tmp_path, monkeypatch, capsys):
    from humo import face_identity

    monkeypatch.setattr(face_identity, "available", lambda: False)
    out, records = two_people_run(tmp_path, "--no-reference", "keep")
    assert "references from other shots need dlib-bin" in capsys.readouterr().err
    assert all(r["status"] == "kept" and r["ref_images"] == [] for r in records), records
    assert core.load_run(out)["settings"]["identity_model"] == ""
