"""The captions stage with a tiny random Qwen2.5-VL built from a config (tests/tiny_vlm.py; no download): the
segment's frames reach the model, its caption lands in OUT/captions/<id>.txt and the manifest, it is the same on
every run, a rerun reuses it, and a person's edit of the file wins over the model from then on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from humo.cli import main
from humo.data.manifest import read_manifest
from humo.data.pipeline.core import STAGES, Settings, run_pipeline
from humo.data.pipeline.inputs import find_inputs
from humo.data.pipeline.stages import captions
from tests.data_media import make_talk
from tests.tiny_vlm import make_tiny_qwen25_vl

KEEP_FACELESS = dict(face_missing_max=1.0, sync_min=0.0, no_reference="keep")  # the test video has no face


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("captions")
    make_talk(d / "talk.mp4")  # four shots: segments of 33 and 49 frames at 160x120
    return d, make_tiny_qwen25_vl(d / "vlm")


def run(out: Path, video: Path, **settings):
    return run_pipeline(find_inputs([str(video)]), Settings(out=out, **KEEP_FACELESS, **settings), progress=False)


def stage(summary, name: str):
    return summary.stages[STAGES.index(name)]


def manifest_captions(out: Path) -> dict[str, str]:
    return {s.id: s.caption for s in read_manifest(out / "manifest.jsonl", check_files=True)}


def test_model_captions_stored_deterministic_resumable_and_editable(media, tmp_path, monkeypatch):
    d, model = media
    seen = []
    generate = captions.generate_caption

    def spy(folder, frames, max_tokens):
        seen.append([f.size for f in frames])
        return generate(folder, frames, max_tokens)

    monkeypatch.setattr(captions, "generate_caption", spy)
    out = tmp_path / "out"
    summary = run(out, d / "talk.mp4", caption_model=str(model), caption_tokens=24)
    texts = manifest_captions(out)
    assert len(texts) >= 3 and stage(summary, "captions").ran == len(texts)
    # the segment's frames reached the model: 4 of them, first and last included, at the segment's size
    assert seen and all(sizes == [(160, 120)] * 4 for sizes in seen)
    journal = [json.loads(line) for line in (out / "stages" / "captions.jsonl").read_text().splitlines()]
    for line in journal:
        r = line["records"][0]
        assert r["captions"]["source"] == "model" and r["captions"]["frames"][0] == 0
        assert r["captions"]["frames"][-1] == r["num_frames"] - 1 and len(r["captions"]["frames"]) == 4
    for sid, text in texts.items():
        assert text and (out / "captions" / f"{sid}.txt").read_text(encoding="utf-8") == text  # the editable file
        assert json.loads((out / "captions" / f"{sid}.model.json").read_text())["caption"] == text
    assert len(set(texts.values())) > 1  # gibberish, but each from its own frames

    # resumable: nothing redone; deterministic: --force gives the same text
    again = run(out, d / "talk.mp4", caption_model=str(model), caption_tokens=24)
    assert stage(again, "captions").ran == 0 and manifest_captions(out) == texts
    forced = run_pipeline(
        find_inputs([str(d / "talk.mp4")]),
        Settings(out=out, caption_model=str(model), caption_tokens=24, **KEEP_FACELESS),
        stages=["captions", "manifest"],
        force=["captions"],
        progress=False,
    )
    assert stage(forced, "captions").ran == len(texts) and manifest_captions(out) == texts

    # a person edits one caption file: it wins on the next run, which redoes only that clip
    edited = sorted(texts)[1]
    (out / "captions" / f"{edited}.txt").write_text("A woman in a red coat talks to the camera.\n", encoding="utf-8")
    after = run(out, d / "talk.mp4", caption_model=str(model), caption_tokens=24)
    assert stage(after, "captions").ran == 1 and stage(after, "manifest").ran == 1
    want = {**texts, edited: "A woman in a red coat talks to the camera."}
    assert manifest_captions(out) == want
    assert run(out, d / "talk.mp4", caption_model=str(model), caption_tokens=24).stages[-1].ran == 0
    # ... survives --force captions and a run without the model (the others keep the model's captions)
    run_pipeline(
        find_inputs([str(d / "talk.mp4")]),
        Settings(out=out, caption_model=str(model), caption_tokens=24, **KEEP_FACELESS),
        stages=["captions", "manifest"],
        force=["captions"],
        progress=False,
    )
    assert manifest_captions(out) == want
    run(out, d / "talk.mp4")
    assert manifest_captions(out) == want
    records = [json.loads(line)["records"][0] for line in (out / "stages" / "captions.jsonl").read_text().splitlines()]
    latest = {r["id"]: r["captions"]["source"] for r in records}
    assert latest[edited] == "edited" and set(latest.values()) == {"edited", "model"}


def test_without_a_model_captions_are_empty_files_to_fill_in(media, tmp_path):
    d, _ = media
    out = tmp_path / "out"
    run(out, d / "talk.mp4")
    texts = manifest_captions(out)
    assert texts and set(texts.values()) == {""}
    assert all((out / "captions" / f"{sid}.txt").read_text() == "" for sid in texts)
    first = sorted(texts)[0]
    (out / "captions" / f"{first}.txt").write_text("Someone speaks.", encoding="utf-8")
    summary = run(out, d / "talk.mp4")
    assert stage(summary, "captions").ran == 1 and manifest_captions(out)[first] == "Someone speaks."
    assert stage(run(out, d / "talk.mp4"), "captions").ran == 0
    # a caption file deleted is redone (an empty one again)
    (out / "captions" / f"{sorted(texts)[-1]}.txt").unlink()
    assert stage(run(out, d / "talk.mp4"), "captions").ran == 1
    assert (out / "captions" / f"{sorted(texts)[-1]}.txt").read_text() == ""


def test_generation_is_deterministic_and_sees_the_frames(media):
    import numpy as np
    from PIL import Image

    _, model = media
    frames = [Image.fromarray(np.random.default_rng(i).integers(0, 255, (120, 160, 3), np.uint8)) for i in range(4)]
    a = captions.generate_caption(str(model), frames, 20)
    assert a and a == captions.generate_caption(str(model), frames, 20)
    assert captions.generate_caption(str(model), frames[::-1], 20) != a
    assert captions.frame_indices(49, 4) == [0, 16, 32, 48] and captions.frame_indices(2, 4) == [0, 1]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.mkdir(), "no config.json there"),
        (lambda p: (p.mkdir(), (p / "config.json").write_text('{"model_type": "llava"}')), "'llava' is not supported"),
        (lambda p: (p.mkdir(), (p / "config.json").write_text("{")), "config.json does not read"),
    ],
)
def test_bad_caption_model_is_a_one_line_error(media, tmp_path, capsys, make, message):
    d, _ = media
    make(tmp_path / "m")
    args = ["data", "run", "--input", str(d / "talk.mp4"), "--out", str(tmp_path / "out"), "-q"]
    assert main([*args, "--caption-model", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_workers_caption_as_one_process_does(media, tmp_path):
    d, model = media
    found = find_inputs([str(d / "talk.mp4")])
    texts = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        settings = Settings(out=out, caption_model=str(model), caption_tokens=16, **KEEP_FACELESS)
        run_pipeline(found, settings, workers=workers, progress=False)
        texts.append(manifest_captions(out))
    assert texts[0] == texts[1] and all(texts[0].values())


def test_a_kill_between_the_two_writes_leaves_no_false_edit(tmp_path, monkeypatch):
    """The model file is written, the process dies before the caption file is rewritten: the rerun must take the
    model's caption (the old file is no person's edit), while a real edit made afterwards still wins."""
    settings = Settings(out=tmp_path, caption_model="vlm", caption_frames=2)
    record = {"id": "clip-0001", "num_frames": 10, "video": "segments/clip-0001.mp4"}
    text_path, model_path = captions.caption_paths(tmp_path, record["id"])
    monkeypatch.setattr(captions, "read_frames", lambda path, indices: [])
    replies = iter(["the first caption", "the second caption", "the third caption"])
    monkeypatch.setattr(captions, "generate_caption", lambda folder, frames, tokens: next(replies))
    assert captions.process(dict(record), settings)["caption"] == "the first caption"

    write = captions._write

    def killed(path, text):
        write(path, text)
        if path == model_path:
            raise KeyboardInterrupt  # the kill, right after the model file

    monkeypatch.setattr(captions, "_write", killed)
    with pytest.raises(KeyboardInterrupt):
        captions.process(dict(record), settings)
    monkeypatch.setattr(captions, "_write", write)
    assert text_path.read_text(encoding="utf-8") == "the first caption"  # the old file, beside the new model file
    assert json.loads(model_path.read_text(encoding="utf-8"))["caption"] == "the second caption"
    assert captions.person_caption(record, settings) is None
    # the rerun without a model takes the model's caption and rewrites the file ...
    rerun = captions.process(dict(record), Settings(out=tmp_path))
    assert rerun["caption"] == "the second caption" and rerun["captions"]["source"] == "model"
    assert text_path.read_text(encoding="utf-8") == "the second caption"
    # ... and so does one with the model (a fresh caption, no "edited")
    again = captions.process(dict(record), settings)
    assert again["caption"] == "the third caption" and again["captions"]["source"] == "model"
    # a real edit still wins
    text_path.write_text("A man in a blue shirt talks.", encoding="utf-8")
    assert captions.person_caption(record, settings) == "A man in a blue shirt talks."
    edited = captions.process(dict(record), settings)
    assert edited["caption"] == "A man in a blue shirt talks." and edited["captions"]["source"] == "edited"
