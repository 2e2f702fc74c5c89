"""`humo pose extract`: MediaPipe's 33 landmarks mapped to COCO-17 and written as a pose file, tested with a stand-in
detector (MediaPipe is an optional extra); the real detector runs only where the extra is installed."""

import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from humo.cli import main
from humo.pose import COCO17, load_pose
from humo.pose_extract import MEDIAPIPE_TO_COCO, extract_pose, landmarks_to_coco

# MediaPipe Pose's landmark names (its PoseLandmark enum), for the joints COCO has
MEDIAPIPE_NAMES = {0: "nose", 2: "left_eye", 5: "right_eye", 7: "left_ear", 8: "right_ear", 11: "left_shoulder",
                   12: "right_shoulder", 13: "left_elbow", 14: "right_elbow", 15: "left_wrist", 16: "right_wrist",
                   23: "left_hip", 24: "right_hip", 25: "left_knee", 26: "right_knee", 27: "left_ankle",
                   28: "right_ankle"}  # fmt: skip


def _landmarks(shift=0.0):
    """33 landmarks: landmark k at x = (k + 1) / 40 + shift, y = 1 - (k + 1) / 40, visibility 0.9; landmark 16 (the
    right wrist) outside the frame."""
    lms = [SimpleNamespace(x=(k + 1) / 40 + shift, y=1 - (k + 1) / 40, z=0.0, visibility=0.9) for k in range(33)]
    lms[16].x = 1.2
    return lms


class FakePose:
    """MediaPipe's `process` interface: a person in every frame but the second."""

    def __init__(self):
        self.calls = 0

    def process(self, rgb):
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        self.calls += 1
        if self.calls == 2:
            return SimpleNamespace(pose_landmarks=None)
        return SimpleNamespace(pose_landmarks=SimpleNamespace(landmark=_landmarks(0.01 * self.calls)))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from humo.media.video import write_video

    path = tmp_path_factory.mktemp("v") / "drive.mp4"
    write_video(path, (np.random.default_rng(0).random((4, 24, 40, 3)) * 255).astype(np.uint8), fps=25)
    return path


def test_mediapipe_landmarks_map_to_coco_by_name():
    assert [MEDIAPIPE_NAMES[k] for k in MEDIAPIPE_TO_COCO] == list(COCO17)
    coco = landmarks_to_coco(_landmarks(), width=40, height=24)
    nose, lwrist = coco[COCO17.index("nose")], coco[COCO17.index("left_wrist")]
    assert np.allclose(nose, [1 / 40 * 40, (1 - 1 / 40) * 24, 0.9])
    assert np.allclose(lwrist, [16 / 40 * 40, (1 - 16 / 40) * 24, 0.9])  # landmark 15
    assert not coco[COCO17.index("right_wrist")].any()  # outside the frame: not seen
    assert not landmarks_to_coco(None, 40, 24).any()  # nobody found


def test_extract_writes_a_pose_file_frame_by_frame(video, tmp_path):
    detector = FakePose()
    track = extract_pose(video, detector)
    assert detector.calls == 4 and track.frames == 4 and track.fps == 25
    assert (track.width, track.height) == (40, 24)
    from humo.pose_extract import extract_to_file

    path = extract_to_file(video, tmp_path / "p.json", FakePose())
    doc = json.loads(path.read_text())
    assert doc["layout"] == "coco17" and doc["num_frames"] == 4 and [len(f["people"]) for f in doc["frames"]] == [
        1, 0, 1, 1
    ]  # fmt: skip
    back = load_pose(path)
    assert np.allclose(back.points[:, 0, :17], track.points[:, 0, :17], atol=0.01)


def test_cli_extract_and_its_errors(video, tmp_path, capsys, monkeypatch):
    out = tmp_path / "pose.json"
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # the extra is not installed: import fails
    assert main(["pose", "extract", str(video), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs mediapipe, the 'pose' extra" in err[0] and "make pose-extra" in err[0]
    assert not out.exists()
    monkeypatch.setattr("humo.pose_extract.mediapipe_detector", FakePose)
    assert main(["pose", "extract", str(video), "-o", str(out), "-q"]) == 0
    assert capsys.readouterr().out == "" and load_pose(out).frames == 4
    assert main(["pose", "extract", str(video), "-o", str(out)]) == 2  # exists
    assert "already exists" in capsys.readouterr().err
    assert main(["pose", "extract", str(video), "-o", str(video)]) == 2
    assert "-o" in capsys.readouterr().err
    assert main(["pose", "extract", str(video), "-o", str(out), "--overwrite"]) == 0
    assert "4 frames at 25 fps, a person found in 3" in capsys.readouterr().out


def test_mediapipe_runs_offline_where_the_extra_is_installed(tmp_path):
    """The real detector loads the model its wheel ships (no download) and writes a valid file for a blank clip,
    where it finds nobody."""
    from tests.face_media import require

    require("mediapipe")
    from humo.media.video import write_video
    from humo.pose_extract import extract_to_file

    frames = np.full((3, 64, 64, 3), 200, np.uint8)
    write_video(tmp_path / "v.mp4", frames, fps=25)
    track = load_pose(extract_to_file(tmp_path / "v.mp4", tmp_path / "p.json"))
    assert track.frames == 3 and not track.points[..., 2].any()
