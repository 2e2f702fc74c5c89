"""The `sync` stage of `humo data run`: the tracked mouth (Face Mesh on matplotlib's sample photo, its mouth opened
by the loudness of speech-like audio; tests/face_media.py) against the audio's loudness envelope. Both ways: the
audio it was made from passes at offset 0; the same audio shifted by 6 frames is found at +6 and dropped; other
speech and a shuffled mouth score low confidence; an unmeasurable mouth is dropped unless the filter is off."""

from __future__ import annotations

import numpy as np
import pytest

from tests.face_media import require  # noqa: E402

require("mediapipe")  # fails, naming `make install`, when it is missing

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
    # --weak-audio keep: the segment goes on without its sound (text and reference), the reason kept with it
    s = with_audio(talking, "late", late, weak_audio="keep")
    assert (s["status"], s["audio"], s["audio_dropped"]["reason"]) == ("kept", None, "out-of-sync"), s
    assert s["audio_dropped"]["stage"] == "sync" and "best offset +6 frames" in s["audio_dropped"]["detail"]
    [again], _ = apply_stage("sync", s, Settings(out=talking[0], weak_audio="keep"))  # nothing left to score
    assert again == s


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


def _segment_cut_from(talking, name: str, start: int) -> dict:
    """A record whose segment audio is cut from a longer normalised WAV (10 frames of other speech, the talking
    face's own speech, 10 more) at `start`: 10 is in sync, 8 puts the sound 2 frames late, 12 two frames early."""
    out, r, wave, _ = talking
    other = speech_and_mouth(T, seed=7)[0]
    clip = np.concatenate([other[: 10 * 640], wave, other[-10 * 640 :]])
    (out / "normalise").mkdir(exist_ok=True)
    write_wav(out / "normalise" / f"{name}.wav", clip, 16000)
    write_wav(out / f"{name}-seg.wav", clip[start * 640 : (start + T) * 640], 16000)
    return {**r, "id": f"{name}-s", "clip": name, "audio": f"{name}-seg.wav", "segment": {"start_frame": start}}


@pytest.mark.parametrize("start, k", [(8, 2), (12, -2)])
def test_an_offset_within_the_shift_range_is_shifted_into_sync(talking, start, k):
    out, _, wave, _ = talking
    rec = _segment_cut_from(talking, f"cut{start}", start)
    [s], _ = apply_stage("sync", rec, Settings(out=out, sync_shift_max=3))
    assert s["status"] == "kept" and s["sync"]["offset"] == k and s["sync"]["shift"] == k, s
    assert s["audio"] == f"sync/{rec['id']}.wav" and s["sync"]["after"]["offset"] == 0
    assert s["sync"]["after"]["confidence"] > 0.8
    import soundfile as sf

    fixed, _ = sf.read(str(out / s["audio"]), dtype="float32")
    assert len(fixed) == T * 640 and np.abs(fixed - wave).max() < 1e-3  # re-cut from the clip: its own speech
    # the other way: shifting off, the offset tolerated (kept as it is) or not (dropped)
    [s], _ = apply_stage("sync", rec, Settings(out=out, sync_shift_max=0, sync_offset_max=2))
    assert s["status"] == "kept" and "shift" not in s["sync"] and s["audio"] == rec["audio"]
    [s], _ = apply_stage("sync", rec, Settings(out=out, sync_shift_max=0, sync_offset_max=1))
    assert (s["status"], s["reason"]) == ("dropped", "out-of-sync")
    # shifting never rescues a segment whose offset is past the range, nor one out of sync
    [s], _ = apply_stage("sync", rec, Settings(out=out, sync_shift_max=1, sync_offset_max=1))
    assert s["status"] == "dropped" and "more than 1" in s["detail"]


def test_a_shift_past_the_clip_pads_with_silence(talking):
    """Without the clip's WAV (or at its ends) the shifted audio is the segment's own, silence where it ran out."""
    out, r, wave, _ = talking
    late = np.concatenate([np.zeros(2 * 640, np.float32), wave[: -2 * 640]])
    write_wav(out / "late2.wav", late, 16000)
    [s], _ = apply_stage("sync", {**r, "audio": "late2.wav"}, Settings(out=out, sync_shift_max=3))
    assert s["status"] == "kept" and s["sync"]["shift"] == 2 and s["sync"]["after"]["offset"] == 0
    import soundfile as sf

    fixed, _ = sf.read(str(out / s["audio"]), dtype="float32")
    assert np.abs(fixed[: -2 * 640] - wave[: -2 * 640]).max() < 1e-3 and not fixed[-2 * 640 :].any()


def test_syncnet_is_recorded_and_thresholded(talking, tmp_path):
    """With --syncnet WEIGHTS (random weights here: the numbers mean nothing, the mechanics are tested) SyncNet's
    Sync-C, Sync-D and offset are recorded beside the landmark score, and a segment under --syncnet-min dropped;
    weights that do not fit the architecture drop the segment `no-syncnet`, naming the keys."""
    import torch

    from humo.evaluation.syncnet import SyncNet

    out, r, wave, _ = talking
    write_wav(out / "synced.wav", wave, 16000)
    torch.manual_seed(0)
    state = SyncNet().state_dict()
    torch.save(state, tmp_path / "syncnet.pt")
    rec = {**r, "audio": "synced.wav"}
    [s], _ = apply_stage("sync", rec, Settings(out=out, syncnet=str(tmp_path / "syncnet.pt"), syncnet_min=0))
    net = s["sync"]["syncnet"]
    assert s["status"] == "kept" and set(net) == {"c", "d", "offset"} and abs(net["offset"]) <= 15 and net["c"] >= 0
    [s], _ = apply_stage("sync", rec, Settings(out=out, syncnet=str(tmp_path / "syncnet.pt"), syncnet_min=1e6))
    assert (s["status"], s["reason"]) == ("dropped", "out-of-sync") and "SyncNet confidence" in s["detail"]
    torch.save({k.replace("netfcaud", "audio_fc"): v for k, v in state.items()}, tmp_path / "other.pt")
    [s], _ = apply_stage("sync", rec, Settings(out=out, syncnet=str(tmp_path / "other.pt")))
    assert (s["status"], s["reason"]) == ("dropped", "no-syncnet") and "netfcaud.0.weight" in s["detail"], s


def test_syncnet_and_shift_arguments_are_checked(talking, tmp_path, capsys):
    from humo.cli import main

    out = talking[0]
    base = ["data", "run", "--input", str(out / "talk.mp4"), "--out"]
    assert main([*base, str(tmp_path / "a"), "--syncnet", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert "--syncnet" in err and "no such file" in err, err
    assert main([*base, str(tmp_path / "b"), "--sync-shift-max", "-1"]) == 2
    assert "--sync-shift-max -1: must be 0 or more" in capsys.readouterr().err
    import torch

    from humo.cli import build_parser
    from humo.commands.data import check_run
    from humo.evaluation.syncnet import SyncNet

    state = SyncNet().state_dict()
    torch.save(state, tmp_path / "w.pt")
    size = (tmp_path / "w.pt").stat().st_size
    args = build_parser("data").parse_args([*base, str(tmp_path / "c"), "--syncnet", str(tmp_path / "w.pt")])
    settings = check_run(args)[1]
    assert settings.syncnet == str((tmp_path / "w.pt").absolute()) and settings.syncnet_id.startswith(f"{size}-")
    # weights that do not load are refused before any stage runs (they would drop every segment `no-syncnet`)
    torch.save({k.replace("netfcaud", "audio_fc"): v for k, v in state.items()}, tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"x")
    for name, problem in (("other.pt", "netfcaud.0.weight"), ("junk.pt", "does not read")):
        assert main([*base, str(tmp_path / f"run-{name}"), "--syncnet", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(tmp_path / name) in err and problem in err, err
        assert not (tmp_path / f"run-{name}" / "stages").exists()  # nothing ran
