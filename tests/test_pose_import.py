"""`humo pose convert` (humo.pose_import): OpenPose folders and frame lists (BODY_25, COCO-18), COCO annotation files
and results lists, and proving-ground clips read into the canonical joints, with the size and rate each lacks."""

import json

import numpy as np
import pytest

from humo.cli import main
from humo.errors import HumoError
from humo.pose import CANONICAL, OPENPOSE18, from_proving_ground, load_pose
from humo.pose_import import BODY25, read_pose_source

W, H = 320, 240
# OpenPose's output doc, "Pose Output Format (BODY_25)": written out here, not taken from the module under test
BODY25_DOC = (
    "nose neck right_shoulder right_elbow right_wrist left_shoulder left_elbow left_wrist mid_hip right_hip "
    "right_knee right_ankle left_hip left_knee left_ankle right_eye left_eye right_ear left_ear left_big_toe "
    "left_small_toe left_heel right_big_toe right_small_toe right_heel"
).split()


def _person(names, seed):
    """Every joint of `names` seen at a distinct pixel place: [K, 3]."""
    g = np.random.default_rng(seed)
    kp = np.zeros((len(names), 3), np.float32)
    kp[:, 0] = g.uniform(5, W - 5, len(names)).round(2)
    kp[:, 1] = g.uniform(5, H - 5, len(names)).round(2)
    kp[:, 2] = g.uniform(0.5, 1, len(names)).round(3)
    return kp


def _flat(kp):
    return [float(v) for v in kp.reshape(-1)]


def _joint(track, frame, person, name):
    return track.points[frame, person, CANONICAL.index(name)]


def test_openpose_folder_body25_keeps_each_joint_in_place(tmp_path):
    """BODY_25 per-frame files in name order, two people in frame 1, nobody in frame 2: every joint OpenPose-18 has
    lands on its canonical joint (the person's own sides kept); the mid-hip and feet are dropped."""
    assert len(BODY25) == len(BODY25_DOC) == 25
    people = {0: [_person(BODY25_DOC, 0)], 1: [_person(BODY25_DOC, 1), _person(BODY25_DOC, 2)], 2: []}
    folder = tmp_path / "op"
    folder.mkdir()
    for i, ps in people.items():
        doc = {"version": 1.3, "people": [{"person_id": [-1], "pose_keypoints_2d": _flat(p)} for p in ps]}
        (folder / f"clip_{i:012d}_keypoints.json").write_text(json.dumps(doc))
    track, layout = read_pose_source(folder, fps=30, size=(W, H))
    assert layout == "openpose18" and track.points.shape == (3, 2, 18, 3) and track.fps == 30
    for i, ps in people.items():
        for q, p in enumerate(ps):
            for name in OPENPOSE18:
                np.testing.assert_allclose(_joint(track, i, q, name), p[BODY25_DOC.index(name)], atol=1e-5)
    assert (track.points[2, ..., 2] == 0).all() and (track.points[0, 1, :, 2] == 0).all()
    # the CLI writes it; the file reads back as the same pose (2 decimals)
    out = tmp_path / "pose.json"
    argv = ["pose", "convert", str(folder), "-o", str(out), "--fps", "30", "--size", f"{W}x{H}"]
    assert main(argv) == 0
    back = load_pose(out)
    np.testing.assert_allclose(back.points, track.points, atol=0.006)
    assert (back.width, back.height, back.fps) == (W, H, 30)


def test_dwpose_frame_list_takes_its_canvas_size(tmp_path):
    """A list of COCO-18 frames with canvas sizes (as DWPose nodes save them): no --size needed, a different one is
    refused, and frames mixing layouts are refused."""
    frames = [
        {"people": [{"pose_keypoints_2d": _flat(_person(OPENPOSE18, i))}], "canvas_width": W, "canvas_height": H}
        for i in range(4)
    ]
    src = tmp_path / "dw.json"
    src.write_text(json.dumps(frames))
    track, layout = read_pose_source(src, fps=25)
    assert (track.width, track.height, track.frames, layout) == (W, H, 4, "openpose18")
    np.testing.assert_allclose(
        _joint(track, 3, 0, "left_wrist"), _person(OPENPOSE18, 3)[OPENPOSE18.index("left_wrist")]
    )
    with pytest.raises(HumoError, match=r"--size 640x480, but the file says 320x240"):
        read_pose_source(src, fps=25, size=(640, 480))
    frames[2]["people"][0]["pose_keypoints_2d"] = _flat(_person(BODY25, 9))
    src.write_text(json.dumps(frames))
    with pytest.raises(HumoError, match="frames mix layouts of 18 and 25 keypoints"):
        read_pose_source(src, fps=25)


def test_coco_annotations_in_image_order_with_visibility_flags(tmp_path):
    """A COCO annotation file: frames follow the image ids (not the file's order), a visibility flag 0 is unseen
    and 1 or 2 seen, other categories are not people, and an image without a person is an empty frame."""
    from humo.pose import COCO17

    kps = {img: _person(COCO17, img) for img in (3, 1)}
    kps[3][:, 2] = np.tile([2, 1, 0], 6)[:17]
    anns = [{"image_id": img, "category_id": 1, "keypoints": _flat(kp)} for img, kp in kps.items()]
    anns.append({"image_id": 1, "category_id": 2, "keypoints": _flat(_person(COCO17, 7))})  # not a person
    images = [{"id": i, "width": W, "height": H, "file_name": f"{i}.jpg"} for i in (3, 2, 1)]
    src = tmp_path / "coco.json"
    src.write_text(json.dumps({"images": images, "annotations": anns, "categories": []}))
    track, layout = read_pose_source(src, fps=10)
    assert layout == "coco17" and track.points.shape[:2] == (3, 1)  # images 1, 2, 3; one person at most
    np.testing.assert_allclose(_joint(track, 0, 0, "nose")[:2], kps[1][0, :2])
    assert (track.points[1, ..., 2] == 0).all()  # image 2: nobody
    conf = track.points[2, 0, : len(COCO17), 2]
    assert conf.tolist() == [1.0 if f else 0.0 for f in kps[3][:, 2]]
    # the neck: the shoulders' midpoint where both are seen
    ls, rs = kps[1][COCO17.index("left_shoulder")], kps[1][COCO17.index("right_shoulder")]
    np.testing.assert_allclose(_joint(track, 0, 0, "neck")[:2], (ls[:2] + rs[:2]) / 2, atol=1e-4)


def test_coco_results_list_in_natural_order_needs_a_size(tmp_path):
    from humo.pose import COCO17

    ids = ["frame_10", "frame_2", "frame_1"]
    res = [{"image_id": i, "category_id": 1, "keypoints": _flat(_person(COCO17, n)), "score": 0.9} for n, i in
           enumerate(ids)]  # fmt: skip
    res[0]["keypoints"][2] = 3.5  # AlphaPose's COCO scores run past 1
    src = tmp_path / "res.json"
    src.write_text(json.dumps(res))
    with pytest.raises(HumoError, match="its frame size is not in it: give --size"):
        read_pose_source(src, fps=25)
    track, _ = read_pose_source(src, fps=25, size=(W, H))
    order = [_joint(track, k, 0, "nose")[0] for k in range(3)]
    expected = [_person(COCO17, n)[0, 0] for n in (2, 1, 0)]  # frame_1, frame_2, frame_10
    np.testing.assert_allclose(order, expected, atol=1e-4)
    assert _joint(track, 2, 0, "nose")[2] == 1.0


def test_normalised_coordinates_are_refused_unless_said_and_then_scaled(tmp_path):
    kp = _person(OPENPOSE18, 0)
    kp[:, 0] /= W
    kp[:, 1] /= H
    src = tmp_path / "one.json"
    src.write_text(json.dumps({"people": [{"pose_keypoints_2d": _flat(kp)}]}))
    with pytest.raises(HumoError, match="fractions of the frame\\? Then give --normalised"):
        read_pose_source(src, fps=25, size=(W, H))
    track, _ = read_pose_source(src, fps=25, size=(W, H), normalised=True)
    np.testing.assert_allclose(_joint(track, 0, 0, "nose")[:2], [kp[0, 0] * W, kp[0, 1] * H], rtol=1e-5)


@pytest.mark.parametrize(
    "doc, kwargs, message",
    [
        ({"people": [{"pose_keypoints_2d": [1.0] * 30}]}, {"fps": 25, "size": (W, H)}, "frame 0 person 0: 30 numbers"),
        ({"people": [{"face": []}]}, {"fps": 25, "size": (W, H)}, "no 'pose_keypoints_2d'"),
        ({"people": []}, {"size": (W, H)}, "carries no frame rate: give --fps"),
        ({"people": []}, {"fps": 25}, "give --size WIDTHxHEIGHT"),
        ({"people": [{"pose_keypoints_2d": [5000.0, 10.0, 1.0] * 18}]}, {"fps": 25, "size": (W, H)}, "far outside"),
        ({"nothing": 1}, {"fps": 25, "size": (W, H)}, "not a pose source humo reads"),
    ],
)
def test_bad_sources_are_one_line_errors_naming_the_file(tmp_path, doc, kwargs, message):
    src = tmp_path / "bad.json"
    src.write_text(json.dumps(doc))
    with pytest.raises(HumoError, match=message) as e:
        read_pose_source(src, **kwargs)
    assert str(src) in str(e.value) and "\n" not in str(e.value)


def test_proving_ground_clip_and_the_cli(tmp_path, capsys):
    """A `humo synth` clip's tracks, named by id in its manifest, equal `from_proving_ground`'s; the CLI refuses
    what a manifest does not take, and never touches its input."""
    assert main(["synth", "--out", str(tmp_path / "pg"), "--clips", "2", "--frames", "9:9", "--quiet"]) == 0
    manifest = tmp_path / "pg" / "manifest.jsonl"
    row = json.loads(manifest.read_text().splitlines()[1])
    before = manifest.read_bytes()
    track, layout = read_pose_source(manifest, clip=row["id"])
    with np.load(manifest.parent / row["face_masks"]) as z:
        want = from_proving_ground(z["keypoints"], row["width"], row["height"], row["fps"])
    np.testing.assert_array_equal(track.points, want.points)
    assert (track.fps, track.width, layout) == (row["fps"], row["width"], "openpose18")
    out = tmp_path / "p.json"
    assert main(["pose", "convert", str(manifest), "--clip", row["id"], "-o", str(out)]) == 0
    np.testing.assert_allclose(load_pose(out).points, want.points, atol=0.006)
    capsys.readouterr()
    for extra, message in (
        ([], "name one with --clip ID"),
        (["--clip", "nope"], "no clip 'nope' (it has 2)"),
        (["--clip", row["id"], "--fps", "30"], "no --fps, --size or --normalised"),
    ):
        assert main(["pose", "convert", str(manifest), "-o", str(tmp_path / "q.json"), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert main(["pose", "convert", str(manifest), "--clip", row["id"], "-o", str(out)]) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err
    assert main(["pose", "extract", str(manifest), "-o", str(tmp_path / "e.json"), "--fps", "3"]) == 2
    assert "--fps: for convert, not extract" in capsys.readouterr().err
    assert manifest.read_bytes() == before and not (tmp_path / "q.json").exists()
