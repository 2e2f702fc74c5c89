"""`humo eval --real` (humo.evaluation.real_video): identity similarity of a video's face to a reference image,
validated both ways on videos built from real photos that packages ship: matplotlib's Grace Hopper (her mouth
moving) and scikit-image's astronaut (the picture drifting sideways); each video scores high against its own
person's photo (the whole photo, not the video's crop) and low against the other's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.face_media import require  # noqa: E402

require("dlib")  # fails, naming `make install`, when it is missing

from humo.cli import main  # noqa: E402
from humo.errors import HumoError  # noqa: E402
from humo.evaluation import real_video  # noqa: E402
from tests.face_media import astronaut_photo, make_face, write_frames  # noqa: E402


def photos() -> dict[str, Path]:
    import importlib.util

    import matplotlib

    sk = Path(next(iter(importlib.util.find_spec("skimage").submodule_search_locations))) / "data"
    return {
        "hopper": Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
        "astronaut": sk / "astronaut.png",
    }


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("real")
    make_face(d / "hopper.mp4", frames=49)
    write_frames(d / "astronaut.mp4", [astronaut_photo(x=60 - k) for k in range(0, 49)])
    write_frames(d / "noise.mp4", list(np.random.default_rng(0).integers(0, 256, (9, 64, 64, 3), dtype=np.uint8)))
    return {"hopper": d / "hopper.mp4", "astronaut": d / "astronaut.mp4", "noise": d / "noise.mp4"}


def test_identity_is_high_for_the_same_person_and_low_for_another(videos):
    refs = photos()
    scores = {}
    for who in ("hopper", "astronaut"):
        for ref in ("hopper", "astronaut"):
            r = real_video.evaluate(videos[who], [refs[ref]])
            assert r["frames"] == 49 and r["fps"] == 25 and list(r["metrics"]) == ["identity"]
            assert set(r["skipped"]) == {"landmark_sync", "syncnet", "clip_i", "dino_i", "text_alignment"}  # no sound
            scores[who, ref] = s = r["metrics"]["identity"]
            assert s["id_found"] == 1.0, s
    for who, other in (("hopper", "astronaut"), ("astronaut", "hopper")):
        same, diff = scores[who, who], scores[who, other]
        assert same["id_match"] == 1.0 and same["id_dist"] < 0.4, same
        assert diff["id_match"] == 0.0 and diff["id_dist"] > 0.6, diff
        assert same["id_sim"] > 0.95 > 0.9 > diff["id_sim"], (same, diff)


def test_no_face_and_missing_inputs(videos):
    r = real_video.evaluate(videos["noise"], [photos()["hopper"]])
    assert r["metrics"]["identity"] == {"id_sim": None, "id_dist": None, "id_match": None, "id_found": 0.0}
    r = real_video.evaluate(videos["hopper"])
    assert r["metrics"] == {} and "identity" in r["skipped"]
    with pytest.raises(HumoError, match="no face found"):
        real_video.evaluate(videos["hopper"], [_noise_png(videos)])
    with pytest.raises(HumoError, match="unknown real-video evaluator"):
        real_video.evaluate(videos["hopper"], only=["nope"])


def test_a_reference_without_a_face_is_refused_before_any_video_is_scored(videos, monkeypatch):
    scored = []
    monkeypatch.setattr(real_video, "_evaluate", lambda inputs, names: scored.append(inputs.video))
    with pytest.raises(HumoError, match=r"^reference .*noise\.png: no face found in it") as e:
        real_video.evaluate_all([videos["hopper"], videos["astronaut"]], [_noise_png(videos)])
    assert "\n" not in str(e.value) and scored == []


def test_without_the_identity_extra_identity_is_skipped_and_the_others_run(videos, monkeypatch):
    from humo import face_identity

    monkeypatch.setattr(face_identity, "available", lambda: False)
    r = real_video.evaluate(videos["hopper"], [_noise_png(videos)], only=["identity", "landmark_sync"])
    assert r["metrics"] == {} and "dlib-bin" in r["skipped"]["identity"], r  # no error, not even for the reference
    assert r["skipped"]["landmark_sync"] == "its inputs were not given"  # the next evaluator still ran


def _noise_png(videos) -> Path:
    from PIL import Image

    path = videos["noise"].with_suffix(".png")
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(path)
    return path


def test_cli(videos, tmp_path, capsys):
    """Several videos in one run, one report and one JSON object each; bad input refused before any is scored."""
    out = tmp_path / "r.json"
    ref = str(photos()["hopper"])
    hopper, astronaut = str(videos["hopper"]), str(videos["astronaut"])
    assert main(["eval", "--real", hopper, astronaut, "--reference", ref, "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.count("identity       id_sim") == 2 and "landmark_sync  skipped: its inputs were not given" in text
    same, other = json.loads(out.read_text())
    assert same["video"] == hopper and same["metrics"]["identity"]["id_match"] == 1.0
    assert other["video"] == astronaut and other["metrics"]["identity"]["id_match"] == 0.0
    assert main(["eval", "--real", hopper, "--reference", ref, "--cases", "x.json"]) == 2
    assert "--real scores VIDEO..." in capsys.readouterr().err
    for argv, msg in (
        ([hopper, str(tmp_path / "missing.mp4")], "missing.mp4: file not found"),
        ([hopper, "--clip", str(tmp_path)], f"--clip {tmp_path}: not a transformers model folder"),
        ([hopper, "--only", "identity,nope"], "unknown real-video evaluator 'nope'"),
        ([hopper, "--audio", ref], "has no audio stream"),
    ):
        assert main(["eval", "--real", *argv, "--reference", ref]) == 2
        captured = capsys.readouterr()
        assert msg in captured.err and captured.out == "", (argv, captured)
    assert main(["eval", hopper, astronaut]) == 2
    assert "give one VIDEO (several only with --real)" in capsys.readouterr().err
