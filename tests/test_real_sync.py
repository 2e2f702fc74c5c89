"""The lip-sync evaluators of `humo eval --real` (`landmark_sync`, `syncnet` in humo.evaluation.real_video) on real
inputs, both ways.

- Real synthetic speech (espeak-ng) and matplotlib's sample photo of a real face whose mouth opens with the
  speech's loudness (tests/face_media.py): the landmark sync score (MediaPipe Face Mesh mouth against the loudness
  envelope) is high at offset 0 with the sentence it was made from and low with other sentences.
- The proving ground: the same clips scored by the landmark score and by the proving ground's exact reader agree in
  offset (own speech, speech delayed by a planted offset) and correlate in confidence; another clip's speech scores
  low both ways.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.face_media import require  # noqa: E402

require("mediapipe")  # fails, naming `make install`, when it is missing

from humo.evaluation.real_sync import face_track, landmark_sync, proving_ground_agreement  # noqa: E402
from humo.evaluation.real_video import RealInputs, evaluate  # noqa: E402
from humo.media.audio import write_wav  # noqa: E402
from tests.face_media import SENTENCES, espeak, face_photo, mouth_from_speech, open_mouth, write_frames  # noqa: E402


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """Each sentence spoken by espeak-ng (16 kHz samples) and the talking-photo video made for the first three."""
    d = tmp_path_factory.mktemp("speech")
    waves = [espeak(text, d / f"s{i}.wav") for i, text in enumerate(SENTENCES)]
    videos = []
    img = face_photo()
    for i, wave in enumerate(waves[:3]):
        frames = int(len(wave) // 640)
        mouth = mouth_from_speech(wave, frames)
        path = d / f"talk{i}.mp4"
        write_frames(path, (open_mouth(img, int(g)) for g in mouth), audio=wave[: frames * 640])
        videos.append((path, frames))
    return d, waves, videos


def test_espeak_speech_is_speech(speech):
    _, waves, _ = speech
    for w in waves:
        assert 3.0 < len(w) / 16000 < 7.0 and np.abs(w).max() > 0.1
        frames = np.abs(w[: len(w) // 640 * 640].reshape(-1, 640)).mean(1)
        assert (frames < 0.05 * frames.max()).mean() > 0.05  # pauses between words: loudness rises and falls


def test_landmark_sync_is_high_for_matched_and_low_for_other_speech(speech):
    d, waves, videos = speech
    own, other = [], []
    for i, (path, frames) in enumerate(videos):
        r = evaluate(path)  # the video's own sound track (AAC); no reference, no weights: only the landmark score
        lm = r["metrics"]["landmark_sync"]
        assert (
            lm["face_found"] == 1.0
            and r["frames"] == frames
            and r["fps"] == 25
            and list(r["metrics"]) == ["landmark_sync"]
        )
        assert set(r["skipped"]) == {"identity", "syncnet", "clip_i", "dino_i", "text_alignment"}
        assert lm["offset"] == 0, r
        own.append(lm["confidence"])
        mouth = face_track(RealInputs(path).frames())["mouth"]  # the face track does not depend on the audio
        other += [landmark_sync(mouth, wave)["confidence"] for j, wave in enumerate(waves) if j != i]
    write_wav(d / "other.wav", waves[4], 16000)  # the same through a separate audio file
    assert evaluate(videos[0][0], audio=d / "other.wav")["metrics"]["landmark_sync"]["confidence"] in other
    print(f"espeak-ng: own speech Sync-C {np.round(own, 3).tolist()}; other sentences mean {np.mean(other):.3f}, "
          f"max {max(other):.3f} ({len(other)} pairs)")  # fmt: skip
    assert min(own) > 0.8 and np.mean(other) < 0.5 and min(own) > max(other)


def test_landmark_score_agrees_with_the_proving_grounds_exact_reader():
    r = proving_ground_agreement(clips=4, size=256, frames=49)
    s = r["summary"]
    print(s)
    assert s["offsets_agree_own"] == s["offsets_agree_shifted"] == 1.0
    assert s["planted_found_landmark"] == s["planted_found_exact"] == 1.0
    assert s["confidence_corr"] > 0.7
    assert s["landmark_own"] > 1.5 * s["landmark_other"] and s["exact_own"] > 1.5 * s["exact_other"]


def test_eval_real_command_with_syncnet(speech, tmp_path, capsys):
    """`humo eval --real VIDEO VIDEO --syncnet WEIGHTS --json OUT` (random SyncNet weights: the mechanics); bad
    weights refused naming the keys before any video is read; a video without sound skips the sync evaluators."""
    import json

    import torch

    from humo.cli import main
    from humo.evaluation.syncnet import SyncNet
    from tests.face_media import face_photo, write_frames

    _, _, videos = speech
    torch.save(SyncNet().state_dict(), tmp_path / "syncnet.pt")
    silent = tmp_path / "silent.mp4"
    write_frames(silent, [face_photo()] * 8)
    assert main(["eval", "--real", str(videos[0][0]), str(silent), "--syncnet", str(tmp_path / "syncnet.pt"),
                 "--json", str(tmp_path / "r.json")]) == 0  # fmt: skip
    talk, quiet = json.loads((tmp_path / "r.json").read_text())
    assert talk["metrics"]["landmark_sync"]["offset"] == 0
    assert set(talk["metrics"]["syncnet"]) == {"syncnet_c", "syncnet_d", "syncnet_offset"}
    assert quiet["metrics"] == {} and quiet["skipped"]["landmark_sync"] == "its inputs were not given"
    out = capsys.readouterr().out
    assert "landmark_sync  confidence" in out and "syncnet        syncnet_c" in out, out
    torch.save({"netcnnaud.0.weight": torch.zeros(1)}, tmp_path / "bad.pt")
    assert main(["eval", "--real", str(videos[0][0]), "--syncnet", str(tmp_path / "bad.pt")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "", captured.out  # refused before any video was scored
    assert "missing keys: netcnnaud.0.bias" in captured.err and "wrong shapes: netcnnaud.0.weight (1,)" in captured.err
    assert main(["eval", "--real", str(videos[0][0]), "--only", "landmark_sync", "--syncnet", "none.pt"]) == 2
    assert "--syncnet weights none.pt: file not found" in capsys.readouterr().err
