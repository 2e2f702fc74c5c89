"""Pose-driven generation (OmniHuman-1): the pipeline with a pose, the guidance passes that keep it, the inference
rule, long videos, and `humo generate --pose` with its one-line errors before any model loads."""

import json

import numpy as np
import pytest

from humo.cli import main
from humo.dit import HumoDiT
from humo.errors import HumoError
from humo.pipeline import LAYOUTS, GenerationRequest, HumoPipeline
from humo.pose import CANONICAL, PoseTrack, save_pose
from humo.toy import toy_components, write_toy_weights
from tests.helpers import randomize

SMALL = dict(height=32, width=32, frames=9, steps=2)
POSE = dict(pose_channels=4, pose_hidden=8)


def _track(frames=20, seed=0, fps=25.0):
    """One person in a 64 x 64 frame whose head, shoulders and hands move."""
    g = np.random.default_rng(seed)
    pts = np.zeros((frames, 1, len(CANONICAL), 3), np.float32)
    for name in ("nose", "left_eye", "right_eye", "left_shoulder", "right_shoulder", "left_wrist", "right_wrist"):
        start, end = g.uniform(8, 56, 2), g.uniform(8, 56, 2)
        w = np.linspace(0, 1, frames)[:, None]
        pts[:, 0, CANONICAL.index(name), :2] = start + (end - start) * w
        pts[:, 0, CANONICAL.index(name), 2] = 1.0
    return PoseTrack(pts, 64, 64, fps)


@pytest.fixture(scope="module")
def poses(tmp_path_factory):
    d = tmp_path_factory.mktemp("poses")
    save_pose(d / "a.json", _track(seed=0))
    save_pose(d / "b.json", _track(seed=1))
    save_pose(d / "short.json", _track(frames=6))
    save_pose(d / "long.json", _track(frames=40, seed=2))
    return d


@pytest.fixture(scope="module")
def models():
    """The conftest's random toy model, the same weights with a fresh pose guider, and one whose guider learned."""
    dit, vae, text, audio = toy_components(seed=0, num_layers=2, mask_head_blocks=1)
    randomize(dit, seed=1, scale=0.05)
    fresh = HumoDiT(dit.cfg.replace(**POSE)).eval()
    fresh.load_state_dict(dit.state_dict(), strict=False)
    randomize(fresh.pose_guider.encoder, seed=2)
    learned = HumoDiT(fresh.cfg).eval()
    learned.load_state_dict(fresh.state_dict())
    randomize(learned.pose_guider.patch_embedding, seed=3, scale=0.05)
    return {"plain": dit, "fresh": fresh, "learned": learned, "rest": (vae, text, audio)}


def _pipe(models, which):
    return HumoPipeline(LAYOUTS["toy"], models[which], *models["rest"], progress=False, log=lambda m: None)


def test_a_fresh_guider_generates_what_the_model_without_it_does(models, media, poses):
    args = ("a man talks", [str(media / "r.png")], str(media / "a.wav"))
    plain = _pipe(models, "plain")(*args, **SMALL).frames
    fresh = _pipe(models, "fresh")(*args, pose=str(poses / "a.json"), **SMALL).frames
    assert np.array_equal(plain, fresh)


def test_the_pose_drives_the_video_and_every_guidance_pass_keeps_it(models, media, poses):
    pipe = _pipe(models, "learned")
    calls = []
    inner = pipe.model_fn

    def spy(enc, cache=None, *rest, **kw):
        fn = inner(enc, cache, *rest, **kw)

        def wrapped(x, t, conditions):
            calls.append(tuple(c.name for c in conditions))
            return fn(x, t, conditions)

        return wrapped

    pipe.model_fn = spy
    args = ("a man talks", [str(media / "r.png")], str(media / "a.wav"))
    a = pipe(*args, pose=str(poses / "a.json"), **SMALL).frames
    assert calls and all(name.endswith("p") for names in calls for name in names)  # e.g. p, tp, tap, tiap
    b = pipe(*args, pose=str(poses / "b.json"), **SMALL).frames
    none = pipe(*args, **SMALL).frames
    assert not np.array_equal(a, b) and not np.array_equal(a, none)


def test_pose_only_driving_takes_its_length_from_the_pose_and_long_videos_follow_it(models, media, poses):
    pipe = _pipe(models, "learned")
    only = pipe("a man waves", [str(media / "r.png")], None, pose=str(poses / "a.json"), **{**SMALL, "frames": -1})
    assert only.frames.shape[0] == 17 and only.audio is None  # 20 pose frames -> 4k+1
    long = pipe(
        "a man waves", [str(media / "r.png")], None, pose=str(poses / "long.json"), segment_frames=9,
        **{**SMALL, "frames": 25},
    )  # fmt: skip
    assert long.frames.shape[0] == 25


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(pose="short.json"), "covers 6 frames .* the video has 9"),
        (dict(pose="a.json", images=[]), "pose needs image too"),
        (dict(pose="missing.json"), "pose file .*missing.json: file not found"),
    ],
)
def test_bad_pose_requests_are_refused_before_sampling(models, media, poses, kw, message):
    kw = {"images": [str(media / "r.png")], **kw}
    kw["pose"] = str(poses / kw["pose"])
    req = GenerationRequest("a man talks", **kw, **SMALL)
    with pytest.raises(HumoError, match=message):
        req.resolved(LAYOUTS["toy"], models["learned"].cfg)
    with pytest.raises(HumoError, match="the toy DiT has no pose guider"):
        GenerationRequest("a man", [str(media / "r.png")], pose=str(poses / "a.json"), **SMALL).resolved(LAYOUTS["toy"])


# ---------------------------------------------------------------------------------------------------------------
# humo generate --pose


@pytest.fixture
def no_loading(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the input was refused")

    monkeypatch.setattr(HumoPipeline, "from_pretrained", refuse)


def _refused(capsys, argv, message):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("humo: error:"), err
    assert message in err[0], err[0]


def test_cli_refuses_a_pose_the_model_cannot_take_before_loading(media, poses, tmp_path, capsys, no_loading):
    base = ["generate", "--prompt", "a man", "--image", media / "r.png", "--out", tmp_path / "o.mp4"]
    # the bundled model has no pose guider: its checkpoint's header says so
    _refused(capsys, [*base, "--pose", poses / "a.json"], "the toy DiT has no pose guider")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "humo-pose/1"}))
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps({"c": {"prompt": "a", "img_paths": [str(media / "r.png")], "pose_path": str(bad)}}))
    _refused(capsys, ["generate", "--cases", cases, "--out-dir", tmp_path / "out"], "has no pose guider")
    _refused(capsys, ["generate", "--cases", cases, "--pose", bad], "--cases: give the prompt")


@pytest.fixture(scope="module")
def pose_weights(tmp_path_factory, models):
    return write_toy_weights(tmp_path_factory.mktemp("w"), components=(models["learned"], *models["rest"]))


def test_cli_generates_from_a_pose(pose_weights, media, poses, tmp_path, capsys):
    from humo.media.video import read_video

    common = ["--weights", pose_weights, "--preset", "toy", "--height", 32, "--width", 32, "--steps", 1, "-q"]
    out = tmp_path / "o.mp4"
    argv = ["generate", "--prompt", "a man waves", "--image", media / "r.png", "--pose", poses / "a.json"]
    _refused(
        capsys, [*argv[:3], "--pose", poses / "a.json", "--frames", 9, "--out", out, *common], "pose needs image too"
    )
    _refused(capsys, [*argv, "--pose", poses / "short.json", "--frames", 9, "--out", out, *common], "covers 6")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "humo-pose/1", "layout": "coco17"}')
    _refused(capsys, [*argv[:5], "--pose", bad, "--out", out, *common], "bad.json: missing 'width'")
    assert not out.exists()
    assert main([str(a) for a in [*argv, "--frames", -1, "--out", out, *common]]) == 0
    assert read_video(out)[0].shape == (17, 32, 32, 3)  # pose-only driving: the pose's 20 frames -> 17
