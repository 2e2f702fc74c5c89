"""Several people in one video through the pipeline: predicted masks and their cache, given boxes and masks, the
released layouts with boxes, and every bad input named before any model work."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from humo.checkpoint import load_dit
from humo.configs import dit_preset
from humo.errors import HumoError
from humo.pipeline import LAYOUTS, GenerationRequest, HumoPipeline, Person
from humo.toy import toy_components
from tests.helpers import randomize

SMALL = dict(height=32, width=32, frames=9, steps=4)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("persons")
    t = np.arange(int(16000 * 0.5)) / 16000
    tone = lambda f, on: (0.3 * np.sin(2 * np.pi * f * t) * on).astype("float32")  # noqa: E731
    sf.write(d / "a.wav", tone(220, t < 0.25), 16000)  # person a speaks first, then b
    sf.write(d / "b.wav", tone(330, t >= 0.25), 16000)
    sf.write(d / "short.wav", tone(440, 1.0)[:4000], 16000)
    rng = np.random.default_rng(0)
    for name in ("ra", "rb"):
        Image.fromarray((rng.random((40, 30, 3)) * 255).astype("uint8")).save(d / f"{name}.png")
    mask = np.zeros((32, 32), np.uint8)
    mask[:, 16:] = 255
    Image.fromarray(mask).save(d / "right.png")
    Image.fromarray(np.zeros((20, 80), np.uint8)).save(d / "wide.png")
    return d


def _pipe(predictor: bool, logs=None):
    dit, vae, text, audio = toy_components(seed=0, num_layers=2, mask_head_blocks=1,
                                           person_mask_blocks=1 if predictor else 0)  # fmt: skip
    randomize(dit, seed=1, scale=0.05)
    log = (lambda m: logs.append(m)) if logs is not None else (lambda m: None)
    return HumoPipeline(LAYOUTS["toy"], dit, vae, text, audio, progress=False, log=log)


def _two(media, **boxes):
    return [Person(str(media / "ra.png"), str(media / "a.wav"), boxes.get("a")),
            Person(str(media / "rb.png"), str(media / "b.wav"), boxes.get("b"))]  # fmt: skip


def test_predicted_masks_gate_the_next_step_after_the_warmup(media):
    logs = []
    pipe = _pipe(True, logs)
    gates = []
    inner = pipe.model_fn

    def spy(enc, cache=None, person_masks=None, predict_persons=False):
        gates.append((None if person_masks is None else person_masks.clone(), predict_persons))
        return inner(enc, cache, person_masks, predict_persons=predict_persons)

    pipe.model_fn = spy
    r = pipe("two people talk", persons=_two(media), mask_warmup=0.5, **SMALL)
    assert r.person_masks.shape == (2, 3, 8, 8) and 0 <= r.person_masks.min() and r.person_masks.max() <= 1
    assert all(predict for _, predict in gates)
    assert [g is None for g, _ in gates] == [True, True, False, False]  # 2 of 4 steps hear the mix
    assert not torch.equal(gates[2][0], gates[3][0])  # each step's prediction, handed to the next
    assert any("predicted mask" in m and "first 2 of 4 steps" in m for m in logs)
    assert r.frames.shape == (9, 32, 32, 3) and r.audio.shape == (8000,)


def test_without_the_mask_cache_each_step_routes_by_its_own_extra_pass(media):
    logs = []
    pipe = _pipe(True, logs)
    calls = []
    inner = pipe.model_fn

    def spy(enc, cache=None, person_masks=None, predict_persons=False):
        fn = inner(enc, cache, person_masks, predict_persons=predict_persons)

        def run(x, t, conditions):
            out, aux = fn(x, t, conditions)
            calls.append((None if person_masks is None else person_masks.clone(), len(conditions), aux.persons))
            return out, aux

        return run

    pipe.model_fn = spy
    r = pipe("two people talk", persons=_two(media), mask_warmup=0.5, mask_cache=False, **SMALL)
    # steps 0-1 hear the mix (one guidance call each); steps 2-3 first predict their masks in one extra
    # single-condition pass with the mix, then route this step's audio by exactly those masks
    gated = [g is not None for g, _, _ in calls]
    assert gated == [False, False, False, True, False, True]
    for pre, routed in ((2, 3), (4, 5)):
        assert calls[pre][1] == 1 and calls[routed][1] > 1
        assert torch.equal(calls[routed][0], torch.sigmoid(calls[pre][2]).float())
    assert any("extra pass" in m for m in logs)
    assert r.person_masks.shape == (2, 3, 8, 8)
    cached = pipe("two people talk", persons=_two(media), mask_warmup=0.5, **SMALL)
    assert not np.array_equal(r.frames, cached.frames)  # the routing masks differ, so does the video
    with pytest.raises(HumoError, match="--no-mask-cache: only for persons whose masks the model predicts"):
        pipe("two people talk", persons=_two(media, a="0,0,16,32", b="16,0,32,32"), mask_cache=False, **SMALL)


def test_given_boxes_and_masks_route_the_audio_on_a_model_without_a_predictor(media):
    logs = []
    pipe = _pipe(False, logs)
    persons = [Person(str(media / "ra.png"), str(media / "a.wav"), box="0,0,16,32"),
               Person(str(media / "rb.png"), str(media / "b.wav"), mask=str(media / "right.png"))]  # fmt: skip
    r = pipe("two people talk", persons=persons, **SMALL)
    left, right = r.person_masks[0], r.person_masks[1]
    assert left.shape == (3, 8, 8) and left[:, :, 0].min() > 0.95 and left[:, :, -1].max() < 0.05
    assert right[:, :, -1].min() > 0.95 and right[:, :, 0].max() < 0.05
    assert any("--box/--mask" in m for m in logs)
    # the persons' audio matters: another track for person b changes the video
    other = [persons[0], Person(str(media / "rb.png"), str(media / "a.wav"), mask=str(media / "right.png"))]
    assert not np.array_equal(r.frames, pipe("two people talk", persons=other, **SMALL).frames)


@pytest.mark.parametrize("preset", ["humo-17b", "humo-1.7b"])
def test_released_layouts_with_boxes(media, tmp_path, preset):
    """The released weights' path: tiny DiT weights written in the official key layout (the spec sheet's keys, not
    our model's; the 17B as sharded safetensors, the 1.7B as a .pth) load strictly and run two people from boxes."""
    from tests.test_checkpoint import official_layout, random_state, write_sharded

    dims = dict(dim=64, ffn_dim=128, num_heads=4, num_layers=2, text_dim=128, text_len=32, freq_dim=32,
                audio_feat_dim=64, audio_hidden=32, audio_tokens=4, audio_token_dim=32)  # fmt: skip
    cfg = dit_preset(preset, **dims)
    sd = random_state(official_layout(64, 128, 2, cfg.in_dim, 128, 32, 64, token_dim=32, tokens=4, hidden=32))
    if preset == "humo-17b":
        write_sharded(sd, tmp_path)
    else:
        torch.save(sd, tmp_path / "ema.pth")
    dit = load_dit(tmp_path if preset == "humo-17b" else tmp_path / "ema.pth", cfg, dtype=torch.float32).eval()
    assert not hasattr(dit, "person_masks")  # the releases ship no mask predictor
    _, vae, text, audio = toy_components(seed=0, num_layers=2, mask_head_blocks=0)
    pipe = HumoPipeline(LAYOUTS[preset], dit, vae, text, audio, progress=False, log=lambda m: None)
    r = pipe("two people talk", persons=_two(media, a="0,0,16,32", b="16,0,32,32"), **SMALL)
    assert r.frames.shape == (9, 32, 32, 3) and r.person_masks.shape == (2, 3, 8, 8)
    assert np.isfinite(r.frames.astype(np.float32)).all() and r.frames.std() > 0
    with pytest.raises(HumoError, match="no person mask predictor.*--box or --mask for every --person"):
        pipe("two people talk", persons=_two(media), **SMALL)


def test_a_long_video_with_persons_continues_their_tracks(media):
    pipe = _pipe(False)
    persons = _two(media, a="0,0,16,32", b="16,0,32,32")
    r = pipe("two people talk", persons=persons, height=32, width=32, frames=13, segment_frames=9, steps=2)
    assert r.frames.shape == (12, 32, 32, 3)  # the video ends with the 0.5 s audio
    assert r.person_masks.shape == (2, 4, 8, 8)


def test_shorter_tracks_are_padded_with_silence_and_said(media, capsys):
    pipe = _pipe(False)
    persons = [Person(str(media / "ra.png"), str(media / "a.wav"), box="0,0,16,32"),
               Person(str(media / "rb.png"), str(media / "short.wav"), box="16,0,32,32")]  # fmt: skip
    r = pipe("two people talk", persons=persons, **{**SMALL, "frames": -1})
    err = capsys.readouterr().err
    assert "person 2's audio" in err and "padded with silence" in err
    assert r.audio.shape == (8000,) and r.frames.shape[0] == 9  # the longest track sets the length


@pytest.mark.parametrize(
    "persons, extra, message",
    [
        (lambda m: [Person(str(m / "ra.png"), None)], {}, "person 1: expected an image and an audio file"),
        (lambda m: [Person(str(m / "ra.png"), str(m / "nope.wav"))], {}, "person 1's audio .*file not found"),
        (lambda m: [Person(str(m / "nope.png"), str(m / "a.wav"))], {}, "person 1's image .*file not found"),
        (lambda m: _two(m, a="40,0,50,10", b="0,0,8,8"), {}, "person 1's --box 40,0,50,10: outside the 32x32 frame"),
        (lambda m: _two(m, a="0,0,8"), {}, "four numbers"),
        (lambda m: _two(m, a="0,0,8,8"), {}, "for every --person or for none"),
        (lambda m: [Person(str(m / "ra.png"), str(m / "a.wav"), "0,0,8,8", str(m / "right.png"))], {}, "not both"),
        (lambda m: [Person(str(m / "ra.png"), str(m / "a.wav"), mask=str(m / "wide.png"))], {}, "aspect ratio"),
        (lambda m: _two(m), {"audio": "a.wav"}, "leave out --image and --audio"),
        (lambda m: _two(m), {"mask_warmup": 1.5}, "--mask-warmup 1.5"),
        (lambda m: _two(m) * 3, {}, "6 persons: at most 4"),
    ],
)
def test_bad_persons_are_named_before_any_model_work(media, persons, extra, message):
    if "audio" in extra:
        extra = {"audio": str(media / extra["audio"])}
    req = GenerationRequest("two people talk", persons=persons(media), **extra, **SMALL)
    with pytest.raises(HumoError, match=message):
        req.resolved(LAYOUTS["toy"], dit_preset("toy", person_mask_blocks=1))


# ---------------------------------------------------------------------------------------------------------------
# Through the CLI, on the bundled toy model (which has no mask predictor)


def _refused(capsys, argv, message):
    from humo.cli import main

    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in err[-1], err
    assert not any("Traceback" in line for line in err)


def test_cli_persons_with_boxes_and_cases(media, tmp_path, capsys):
    import json

    from humo.cli import main
    from humo.media.video import read_video

    out = tmp_path / "two.mp4"
    argv = ["generate", "--prompt", "two people talk", "--frames", "9", "--steps", "2", "--out", out, "-q",
            "--person", media / "ra.png", media / "a.wav", "--box=-8,0,32,64",
            "--person", media / "rb.png", media / "b.wav", "--box", "32,0,64,64"]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    frames, _, sound, rate = read_video(out)
    assert frames.shape[0] == 9 and sound is not None and rate == 16000  # the mix of the tracks
    # what routes the audio is said even with -q, and only that and nothing else
    said = capsys.readouterr()
    printed = said.out.strip().splitlines()
    assert printed == ["persons: 2, each one's audio where their --box/--mask is, the same on every frame"], printed
    assert said.err.count("reaches beyond the 64x64 frame; clipped to 0,0,32,64") == 1  # said once, not per check
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps({"duo": {"prompt": "two people talk", "persons": [
        {"ref_image": str(media / "ra.png"), "audio": str(media / "a.wav"), "box": [0, 0, 32, 64]},
        {"ref_image": str(media / "rb.png"), "audio": str(media / "b.wav"), "box": "32,0,64,64"}]}}))  # fmt: skip
    argv = ["generate", "--cases", cases, "--out-dir", tmp_path / "o", "--frames", "9", "--steps", "2", "-q"]
    assert main([str(a) for a in argv]) == 0 and (tmp_path / "o" / "duo.mp4").is_file()


def test_cli_bad_persons(media, tmp_path, capsys, monkeypatch):
    import json

    monkeypatch.setattr(HumoPipeline, "from_pretrained", lambda *a, **k: (_ for _ in ()).throw(AssertionError()))
    out = tmp_path / "x.mp4"
    base = ["generate", "--prompt", "two people talk", "--frames", "9", "--out", out]
    a, b = ["--person", media / "ra.png", media / "a.wav"], ["--person", media / "rb.png", media / "b.wav"]
    _refused(capsys, base + a + b, "no person mask predictor")
    _refused(capsys, base + ["--box", "0,0,8,8"] + a, "belongs to a --person")
    _refused(capsys, base + a + ["--box", "0,0,8,8", "--box", "1,1,9,9"], "has a --box already")
    _refused(capsys, base + a + ["--box", "70,0,90,8"], "outside the 64x64 frame")
    _refused(capsys, base + a + ["--box", "0,0,8,8"] + b, "for every --person or for none")
    _refused(capsys, base + a + ["--box", "0,0,8,8", "--audio", media / "a.wav"], "leave out --image and --audio")
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps({"duo": {"prompt": "p", "persons": [{"ref_image": str(media / "ra.png")}]}}))
    _refused(capsys, ["generate", "--cases", cases], "person 1 needs a 'ref_image' and an 'audio'")
    # more audio tracks than references: each person is a reference with its own track, never a list of tracks
    two = ["--audio", media / "a.wav", "--audio", media / "b.wav"]
    _refused(capsys, base + ["--image", media / "ra.png", *two], "--audio given 2 times")
    tracks = [str(media / "a.wav"), str(media / "b.wav")]
    cases.write_text(json.dumps({"duo": {"prompt": "p", "img_paths": [str(media / "ra.png")], "audio_path": tracks}}))
    _refused(capsys, ["generate", "--cases", cases], "case 'duo': 'audio_path' must be one file, not list")
    person = {"ref_image": str(media / "ra.png"), "audio": tracks}
    cases.write_text(json.dumps({"duo": {"prompt": "p", "persons": [person]}}))
    _refused(capsys, ["generate", "--cases", cases], "person 1: 'audio' must be one file, not list")
    cases.write_text(json.dumps({"duo": {"prompt": "p", "img_paths": str(media / "ra.png")}}))
    _refused(capsys, ["generate", "--cases", cases], "case 'duo': 'img_paths' must be a list of image files")
    assert not out.exists()
