"""The `references` stage of `humo data run`, through whole runs on a talking face (matplotlib's sample photo, its
mouth following speech-like audio; tests/face_media.py): a shot of two segments gives each the other's largest
face, a shot of one segment a frame from its unused ends, a shot with no frame outside its segment none
(`no-reference`, or kept without with `--no-reference keep`); the crops hold the face and reach the manifest."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("mediapipe", reason="needs mediapipe 0.10.21 (make install installs it, --no-deps)")

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
        assert r["ref_images"] == [f"references/{r['id']}.png"] and has_face(out / r["ref_images"][0])
    samples = read_manifest(out / "manifest.jsonl", check_files=True)
    assert [s.ref_images for s in samples] == [r["ref_images"] for r in records]
    assert samples[0].meta["reference"]["segment"] == "talk-shot00-01" and not list(out.rglob(".*"))


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
