"""humo.pose: keypoint layouts and their canonical joints, the pose file and its checks, resampling, placement in
the frame, and the Gaussian heatmaps the pose guider reads."""

import json

import numpy as np
import pytest
import torch

from humo.errors import HumoError
from humo.pose import (
    CANONICAL,
    COCO17,
    FORMAT,
    HEATMAP_FLOOR,
    MIN_CONFIDENCE,
    OPENPOSE18,
    PoseTrack,
    check_covers,
    frames_for_pose,
    from_canonical,
    from_proving_ground,
    load_pose,
    pose_document,
    render_heatmaps,
    save_pose,
    to_canonical,
)


def _points(layout, frames=3, people=1, seed=0):
    """Random pixel keypoints of a 200 x 100 frame, every joint seen."""
    g = np.random.default_rng(seed)
    k = len(COCO17 if layout == "coco17" else OPENPOSE18)
    pts = np.zeros((frames, people, k, 3), np.float32)
    pts[..., 0] = g.uniform(0, 200, (frames, people, k))
    pts[..., 1] = g.uniform(0, 100, (frames, people, k))
    pts[..., 2] = g.uniform(0.5, 1, (frames, people, k))
    return pts


def test_layouts_round_trip_through_the_canonical_joints():
    coco, op = _points("coco17"), _points("openpose18", seed=1)
    assert np.array_equal(from_canonical(to_canonical(coco, "coco17"), "coco17"), coco)
    assert np.array_equal(from_canonical(to_canonical(op, "openpose18"), "openpose18"), op)
    # every named joint lands under its own name in the other layout
    as_op = from_canonical(to_canonical(coco, "coco17"), "openpose18")
    for name in ("nose", "left_eye", "right_shoulder", "left_wrist", "right_ankle", "left_ear"):
        assert np.array_equal(as_op[..., OPENPOSE18.index(name), :], coco[..., COCO17.index(name), :]), name
    # COCO has no neck: the shoulders' midpoint, at the lower confidence
    ls, rs = coco[..., COCO17.index("left_shoulder"), :], coco[..., COCO17.index("right_shoulder"), :]
    neck = as_op[..., OPENPOSE18.index("neck"), :]
    assert np.allclose(neck[..., :2], (ls[..., :2] + rs[..., :2]) / 2)
    assert np.array_equal(neck[..., 2], np.minimum(ls[..., 2], rs[..., 2]))
    coco[0, 0, COCO17.index("left_shoulder"), 2] = 0  # one shoulder unseen: no neck
    assert to_canonical(coco, "coco17")[0, 0, CANONICAL.index("neck"), 2] == 0


def test_proving_ground_tracks_map_to_the_persons_own_sides():
    from humo.proving_ground import render

    names = render.KEYPOINTS
    kp = np.zeros((1, 2, len(names), 3), np.float32)
    for k in range(len(names)):
        kp[0, :, k] = [10 + k, 20 + k, 1]
    track = from_proving_ground(kp, 64, 64, 25)
    assert track.points.shape == (2, 1, len(CANONICAL), 3)
    c = lambda name: track.points[0, 0, CANONICAL.index(name)]  # noqa: E731
    pg = lambda name: kp[0, 0, names.index(name)]  # noqa: E731
    # the proving ground names image sides; a character facing the camera has its right side on the image's left
    assert np.array_equal(c("right_eye"), pg("left_eye")) and np.array_equal(c("left_eye"), pg("right_eye"))
    assert np.array_equal(c("right_wrist"), pg("left_hand")) and np.array_equal(
        c("left_shoulder"), pg("right_shoulder")
    )
    assert np.array_equal(c("nose"), pg("head")) and np.array_equal(c("neck"), pg("neck"))
    assert c("left_knee")[2] == 0 and c("left_ear")[2] == 0  # joints the proving ground does not track


def test_pose_file_round_trips_and_is_read_back_canonical(tmp_path):
    pts = _points("coco17", frames=4, people=2)
    pts[1, 1] = 0  # the second person is not seen in frame 1
    track = PoseTrack(to_canonical(pts, "coco17"), 200, 100, 30.0)
    for layout in ("coco17", "openpose18"):
        path = save_pose(tmp_path / f"{layout}.json", track, layout)
        doc = json.loads(path.read_text())
        assert doc["format"] == FORMAT and doc["layout"] == layout and len(doc["frames"][1]["people"]) == 1
        back = load_pose(path)
        assert (back.width, back.height, back.fps, back.frames) == (200, 100, 30.0, 4)
        seen = track.points[..., 2] > 0
        assert np.allclose(back.points[seen], track.points[seen], atol=0.01)
        assert not back.points[~seen].any()


def _doc(**changes):
    track = PoseTrack(to_canonical(_points("coco17", frames=2), "coco17"), 200, 100, 25.0)
    doc = pose_document(track)
    doc.update(changes)
    return doc


def _write(tmp_path, doc, text=None):
    path = tmp_path / "pose.json"
    path.write_text(text if text is not None else json.dumps(doc))
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(layout="halpe26"), "layout 'halpe26': use one of coco17, openpose18"),
        (
            lambda d: d["frames"][0]["people"][0]["keypoints"].pop(),
            "frame 0 person 0: 16 keypoints, layout coco17 has 17",
        ),
        (lambda d: d["frames"].pop(1), "frames missing: 1 of 2"),
        (lambda d: d["frames"][1].update(index=0), "frame 0 appears twice"),
        (lambda d: d["frames"][0]["people"][0]["keypoints"][5].__setitem__(0, 900.0), "far outside the 200x100 frame"),
        (lambda d: d["frames"][0]["people"][0]["keypoints"][5].__setitem__(2, 1.5), "confidence 1.5 not in [0, 1]"),
        (lambda d: d.update(fps=0), "fps 0 must be positive"),
        (lambda d: d.update(format="openpose"), "expected 'humo-pose/1'"),
        (lambda d: d.pop("width"), "missing 'width'"),
        (lambda d: d["frames"][0]["people"][0]["keypoints"][3].__setitem__(1, "12"), "joint left_ear y '12'"),
    ],
)
def test_bad_pose_files_are_one_line_naming_the_file(tmp_path, change, message):
    doc = _doc()
    change(doc)
    path = _write(tmp_path, doc)
    with pytest.raises(HumoError, match="pose file .*pose.json") as e:
        load_pose(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_nan_and_broken_json_are_refused(tmp_path):
    doc = _doc()
    doc["frames"][1]["people"][0]["keypoints"][2][0] = float("nan")
    with pytest.raises(HumoError, match="NaN is not a number"):
        load_pose(_write(tmp_path, None, json.dumps(doc)))
    with pytest.raises(HumoError, match="not valid JSON"):
        load_pose(_write(tmp_path, None, '{"format": '))
    with pytest.raises(HumoError, match="file not found"):
        load_pose(tmp_path / "none.json")


def test_unseen_joints_may_lie_anywhere():
    doc = _doc()
    doc["frames"][0]["people"][0]["keypoints"][4] = [-5000.0, 9000.0, 0.0]
    from humo.pose import parse_pose

    parse_pose(doc)  # a detector's placeholder for a joint it did not see


def test_resampling_to_the_video_rate_and_covering():
    pts = np.zeros((50, 1, len(CANONICAL), 3), np.float32)
    pts[:, 0, 0, 0] = np.arange(50)  # the nose's x numbers the pose frame
    track = PoseTrack(pts, 100, 100, 50.0)  # 1 s at 50 fps
    assert track.frames_at(25) == 25 and frames_for_pose(track, "p", 25) == 25
    at25 = track.at_fps(25, 25)
    assert at25.points[:, 0, 0, 0].tolist() == list(range(0, 50, 2))
    assert track.at_fps(3, 25, start=24).points[:, 0, 0, 0].tolist() == [48, 49, 49]  # past the end: the last
    check_covers(track, 25, "p")
    with pytest.raises(HumoError, match="covers 25 frames .* the video has 29"):
        check_covers(track, 29, "p")
    same = PoseTrack(pts, 100, 100, 25.0)
    assert np.array_equal(same.at_fps(50, 25).points, pts)


def test_fit_places_the_pose_as_reference_images_are():
    pts = np.zeros((1, 1, len(CANONICAL), 3), np.float32)
    pts[0, 0, 0] = [0, 0, 1]  # the top-left corner of a 200 x 100 frame
    pts[0, 0, 1] = [200, 100, 1]  # the bottom-right corner
    fitted = PoseTrack(pts, 200, 100, 25).fit(100, 100)  # scaled by 1/2, centred vertically on the square
    assert np.allclose(fitted.points[0, 0, 0, :2], [0, 0.25]) and np.allclose(fitted.points[0, 0, 1, :2], [1, 0.75])


def test_heatmaps_peak_at_the_keypoint_with_the_given_width():
    pts = torch.zeros(2, 2, 3, 3)
    pts[0, 0, 0] = torch.tensor([0.31, 0.61, 1.0])  # frame 0, person 0, joint 0: in pixel (row 12, column 12)
    pts[0, 1, 0] = torch.tensor([12.5 / 40, 4.5 / 20, 0.9])  # a second person, same joint: at pixel (4, 12)'s centre
    pts[1, 0, 1] = torch.tensor([0.5, 0.5, MIN_CONFIDENCE - 0.01])  # too unsure to draw
    maps = render_heatmaps(pts, 20, 40, sigma=1.5)
    assert maps.shape == (3, 2, 20, 40) and maps.dtype == torch.float32
    first = maps[0, 0]
    assert divmod(int(first[8:].argmax()), 40) == (12 - 8, 12)
    assert divmod(int(first[:8].argmax()), 40) == (4, 12)
    # peak 1 at the keypoint, the maximum over people (not their sum), a Gaussian of the given width around it
    assert float(first[4, 12]) == pytest.approx(1.0) and float(first.max()) <= 1.0
    assert float(first[4, 13]) == pytest.approx(np.exp(-1 / (2 * 1.5**2)), rel=1e-5)
    assert float(first[4, 12 + 3]) == pytest.approx(np.exp(-9 / (2 * 1.5**2)), rel=1e-5)
    assert not maps[1].any() and not maps[2].any()


def test_heatmap_tails_are_zero_not_denormal():
    """Far tails (and a row tail times a column tail) would be denormal floats, which slow CPU convolutions
    several-fold (`humo bench pose`); the floor zeroes them and keeps the Gaussian out to about 6 sigma."""
    pts = torch.tensor([[[[6.5 / 64, 6.5 / 64, 1.0]]]])  # pixel (6, 6)'s centre, near a corner of a 64 x 64 map
    raw = render_heatmaps(pts, 64, 64, sigma=1.0, floor=0.0)[0, 0]
    maps = render_heatmaps(pts, 64, 64, sigma=1.0)[0, 0]
    tiny = torch.finfo(torch.float32).tiny
    assert ((raw > 0) & (raw < tiny)).any()  # without the floor the tails are denormal: the test can fail
    assert not ((maps > 0) & (maps < tiny)).any() and float(maps.min()) == 0.0
    assert torch.equal(maps[raw >= HEATMAP_FLOOR], raw[raw >= HEATMAP_FLOOR])  # nothing above the floor moves
    assert float(maps[6, 6 + 5]) == pytest.approx(np.exp(-25 / 2), rel=1e-5)  # 5 sigma out is still drawn
    assert float(maps[6, 6 + 7]) == 0.0  # 7 sigma out (about 2e-11) is not


def test_track_heatmaps_normalise_pixels():
    pts = np.zeros((1, 1, len(CANONICAL), 3), np.float32)
    pts[0, 0, CANONICAL.index("left_wrist")] = [155, 25, 1]  # in a 200 x 100 frame
    maps = PoseTrack(pts, 200, 100, 25).heatmaps(10, 20, 1.0)
    assert maps.shape == (len(CANONICAL), 1, 10, 20)
    j = CANONICAL.index("left_wrist")
    assert divmod(int(maps[j, 0].argmax()), 20) == (2, 15)
    assert not maps[[i for i in range(len(CANONICAL)) if i != j]].any()  # the other joints are unseen


def test_a_rendered_character_becomes_a_pose_on_its_own_sides():
    """The proving ground's real tracks: a waving character (its wave hand on the image's left) facing the camera
    has its right wrist and right shoulder on the image's left of its nose, as a COCO pose of a person would."""
    from humo.proving_ground import render, world

    ident = world.sample_identity(np.random.default_rng(0), heldout=False)
    ch = world.CharacterSpec(ident, "waving", "none", x=0.5, y=0.45, scale=1.0, phase=0.0, rate=1.0, pitch=120.0)
    pose = render.character_pose(ch, 5, 25.0, 64, 64, np.zeros(5), np.zeros(5))
    track = from_proving_ground(render.keypoints(pose, ident, 64, 64), 64, 64, 25.0)
    assert track.points.shape == (5, 1, len(CANONICAL), 3)
    x = lambda name: track.points[:, 0, CANONICAL.index(name), 0]  # noqa: E731
    seen = lambda name: track.points[:, 0, CANONICAL.index(name), 2]  # noqa: E731
    assert (seen("right_wrist") == 1).all() and (x("right_wrist") < x("nose")).all()
    assert (x("right_shoulder") < x("nose")).all() and (x("nose") < x("left_shoulder")).all()
    assert (x("right_eye") < x("left_eye")).all()
    maps = track.normalise().heatmaps(16, 16, 1.0)
    assert maps[CANONICAL.index("right_wrist")].amax() > 0.5 and not maps[CANONICAL.index("left_knee")].any()
