"""The `sync` stage of `humo data run`: the tracked mouth (Face Mesh on matplotlib's sample photo, its mouth opened
by the loudness of speech-like audio; tests/face_media.py) against the audio's loudness envelope. Both ways: the
audio it was made from passes at offset 0; the same audio shifted by 6 frames is found at +6 and dropped; other
speech and a shuffled mouth score low confidence; an unmeasurable mouth is dropped unless the filter is off."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mediapipe", reason="needs mediapipe 0.10.21 (make install installs it, --no-deps)")

from humo.data.pipeline.core import Settings, apply_stage  # noqa: E402
from humo.data.pipeline.stages import faces, sync  # noqa: E402
from humo.media.audio import write_wav  # noqa: E402
from tests.face_media import SIZE, make_face, speech_and_mouth  # noqa: E402

W, H = SIZE
T = 49


@pytest.fixture(scope="module")
def talking(tmp_path_factory):
    """A 49-frame talking face whose mouth follows its speech; the faces stage's record of it."""
    out = tmp_path_factory.mktemp("sync")
    wave, schedule = speech_and_mouth(T, seed=0)
    make_face(out / "talk.mp4", frames=T, schedule=schedule)
    record = {"id": "talk", "clip": "talk", "source": "/x/talk.mp4", "status": "kept", "video": "talk.mp4",
              "audio": "talk.wav", "fps": 25.0, "num_frames": T, "width": W, "height": H}  # fmt: skip
    r = faces.process(record, Settings(out=out))
    with np.load(out / r["face_masks"]) as z:
        mouth = z["mouth"]
    return out, r, wave, mouth


def with_audio(talking, name: str, wave: np.ndarray, **settings) -> dict:
    out, r, _, _ = talking
    write_wav(out / f"{name}.wav", wave, 16000)
    [s], _ = apply_stage("sync", {**r, "audio": f"{name}.wav"}, Settings(out=out, **settings))
    return s


def test_synced_mouth_passes_at_offset_zero(talking):
    s = with_audio(talking, "synced", talking[2])
    assert s["status"] == "kept" and s["sync"]["offset"] == 0, s["sync"]
    assert s["sync"]["confidence"] > 0.8 and s["sync"]["corr"] > 0.8 and s["sync"]["corr0"] == s["sync"]["corr"]


def test_shifted_audio_is_found_and_dropped(talking):
    wave = talking[2]
    late = np.concatenate([np.zeros(6 * 640, np.float32), wave[: -6 * 640]])  # the sound 6 frames after the mouth
    s = with_audio(talking, "late", late)
    assert (s["status"], s["reason"], s["sync"]["offset"]) == ("dropped", "out-of-sync", 6), s
    assert s["sync"]["confidence"] > 0.8 and "best offset +6 frames" in s["detail"]
    assert with_audio(talking, "late", late, sync_offset_max=6)["status"] == "kept"


def test_other_speech_and_shuffled_mouths_score_low(talking):
    _, _, wave, mouth = talking
    right = sync.scores(mouth, wave)["confidence"]
    others = [sync.scores(mouth, speech_and_mouth(T, seed)[0]) for seed in range(1, 21)]
    shuffled = [sync.scores(np.random.default_rng(k).permutation(mouth), wave) for k in range(20)]
    passed = [s for s in others + shuffled if s["confidence"] >= 0.6 and abs(s["offset"]) <= 3]
    conf_o, conf_s = [s["confidence"] for s in others], [s["confidence"] for s in shuffled]
    print(f"confidence: synced {right:.3f}; other speech mean {np.mean(conf_o):.3f} max {max(conf_o):.3f}; "
          f"shuffled mean {np.mean(conf_s):.3f} max {max(conf_s):.3f}; {len(passed)} of 40 pass")  # fmt: skip
    assert right > max(conf_o + conf_s) and np.mean(conf_o + conf_s) < 0.5
    assert len(passed) <= 3
    s = with_audio(talking, "other", speech_and_mouth(T, 2)[0])
    assert s["status"] == "dropped" and s["reason"] == "out-of-sync"


def test_unmeasurable_is_dropped_unless_the_filter_is_off(talking):
    out, r, wave, _ = talking
    np.savez(out / "still.npz", mouth=np.full(T, 0.01, np.float32))  # a mouth that never moves
    write_wav(out / "synced.wav", wave, 16000)
    still = {**r, "audio": "synced.wav", "face_masks": "still.npz"}
    [s], _ = apply_stage("sync", still, Settings(out=out))
    assert (s["status"], s["reason"], s["sync"]["confidence"]) == ("dropped", "out-of-sync", None)
    [s], _ = apply_stage("sync", still, Settings(out=out, sync_min=0))
    assert s["status"] == "kept" and s["sync"]["confidence"] is None
    [s], _ = apply_stage("sync", {**r, "audio": "gone.wav"}, Settings(out=out))
    assert (s["status"], s["reason"]) == ("dropped", "corrupt")
