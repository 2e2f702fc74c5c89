"""`humo data run|status` on real media made on the fly (tests/data_media.py): each stage's facts and drops, the
files it writes, resume and --force, a killed run, the CLI's argument checks, and the speech metric both ways."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from humo.cli import main
from humo.data.manifest import read_manifest
from humo.data.pipeline import core
from humo.data.pipeline.core import STAGES, Settings, run_pipeline
from humo.data.pipeline.inputs import find_inputs
from humo.data.pipeline.stages.normalise import display_size
from humo.data.pipeline.stages.segments import plan_segments, valid_length
from humo.data.pipeline.stages.shots import detect_cuts
from humo.data.pipeline.stages.speech import modulation_db, voiced_share
from humo.media.video import read_video
from tests.data_media import (
    make_audio_only,
    make_damaged,
    make_plain,
    make_talk,
    make_truncated,
    make_vfr,
    speech_wave,
)

FACELESS = (
    "--face-missing-max",
    "1",
    "--sync-min",
    "0",
    "--no-reference",
    "keep",
)  # keep segments without a face through every stage
TONE = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(1.6 * 16000)) / 16000)).astype(np.float32)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A folder of the inputs every stage must survive, and a list file naming one more (missing) video."""
    d = tmp_path_factory.mktemp("inputs")
    src = d / "videos"
    src.mkdir()
    truth = {"talk": make_talk(src / "talk.mp4")}  # 30 fps, cuts at 1.6, 3.8, 5.2 s, speech with pauses
    make_plain(src / "silent.mp4", 60, title="QQQQQQQQ")  # no audio; a title that is not UTF-8:
    data = (src / "silent.mp4").read_bytes()
    (src / "silent.mp4").write_bytes(data.replace(b"QQQQQQQQ", b"\xff\xfe" * 4))
    truth["vfr"] = make_vfr(src / "vfr.mp4", audio=TONE)  # 20 frames 20 ms apart, 20 frames 60 ms apart; a tone
    (src / "more").mkdir()
    make_plain(src / "more" / "huge.mp4", 10, size=(2000, 1200))  # in a subfolder: id "more_huge"
    make_plain(src / "rotated.mp4", 40, size=(64, 32), rotation=90)  # shown turned 90 degrees counter-clockwise
    make_plain(src / "quiet.mp4", 50, audio=np.zeros(2 * 16000, np.float32))  # digital silence
    make_truncated(src / "cut.mp4")
    make_audio_only(src / "voice.mp4")
    make_damaged(src / "glitch.mp4", bad_audio=range(10, 14))  # 4 AAC packets of random bytes
    (src / "notes.mp4").write_text("not a video\n" * 20)
    (src / "empty.mov").write_bytes(b"")
    (src / "readme.txt").write_text("not scanned: no video extension\n")
    (d / "more.txt").write_text("# one stale line\ngone.mp4\n")
    return d, truth


@pytest.fixture(scope="module")
def run(inputs):
    """One full run through the CLI (quiet), shared by the tests that only read its results."""
    d, truth = inputs
    out = d / "out"
    # the pictures are gradients and bands, no face: keep faceless segments here, so no lip-sync filter either
    # (tests/test_data_faces.py and test_data_sync.py test those stages)
    args = ["--input", str(d / "videos"), str(d / "more.txt"), "--out", str(out), *FACELESS, "-q"]
    assert main(["data", "run", *args]) == 0
    return out, truth


def records(out: Path, stage: str) -> dict[str, dict]:
    """The output records of one stage's journal, by id (the latest line of each input)."""
    lines = core.Journal(out, stage).load()
    return {r["id"]: r for line in lines.values() for r in line["records"]}


def mean_grey(path: Path) -> np.ndarray:
    frames, fps, _, _ = read_video(path)
    assert fps == 25
    return frames.reshape(frames.shape[0], -1).mean(axis=1)


# ---------------------------------------------------------------------------------------------------------------
# Stages


def test_probe_facts_and_drop_reasons(run):
    out, _ = run
    probe = records(out, "probe")
    kept = {"talk", "silent", "vfr", "more_huge", "rotated", "quiet", "glitch"}
    assert set(probe) == kept | {"cut", "notes", "empty", "voice", "gone"}
    reasons = {k: r["reason"] for k, r in probe.items() if r["status"] == "dropped"}
    assert reasons == {
        "cut": "truncated",
        "notes": "unreadable",
        "empty": "empty",
        "voice": "no-video",
        "gone": "missing",
    }
    assert "25 of the 50 frames" in probe["cut"]["detail"]
    talk = probe["talk"]["probe"]
    assert (talk["fps"], talk["vfr"], talk["width"], talk["height"]) == (30.0, False, 160, 120)
    assert talk["audio"]["sample_rate"] == 44100 and talk["audio"]["channels"] == 2
    vfr = probe["vfr"]["probe"]
    assert vfr["vfr"] is True and vfr["spacing_ms"] == [20.0, 60.0]
    assert probe["rotated"]["probe"]["rotation"] == 90
    assert probe["more_huge"]["probe"]["width"] == 2000 and probe["silent"]["probe"]["audio"] is None


def test_normalise_rate_size_rotation_audio(run):
    out, truth = run
    norm = records(out, "normalise")
    talk = norm["talk"]
    assert (talk["fps"], talk["num_frames"], talk["width"], talk["height"]) == (25.0, 150, 160, 120)
    wav, sr = sf.read(out / talk["audio"])
    assert sr == 16000 and wav.ndim == 1 and wav.shape[0] == 150 * 640
    assert np.abs(wav).max() > 0.1  # the speech came through the downmix and resampling
    assert talk["normalise"]["skipped"] == 30  # 180 frames at 30 fps shown as 150 at 25 fps

    # variable frame rate -> 25 fps with the same duration, each output frame the input frame on screen then
    vfr = norm["vfr"]
    assert vfr["num_frames"] == round(truth["vfr"]["seconds"] * 25)
    starts = np.array(truth["vfr"]["starts_ms"])
    shown = [np.searchsorted(starts, k * 40, side="right") - 1 for k in range(vfr["num_frames"])]
    np.testing.assert_allclose(mean_grey(out / vfr["video"]), 10 + 5 * np.array(shown), atol=3)
    assert sf.info(str(out / vfr["audio"])).frames == vfr["num_frames"] * 640

    huge = norm["more_huge"]
    assert (huge["width"], huge["height"]) == (1280, 768) and huge["normalise"]["scale"] == 0.64
    rot = norm["rotated"]
    assert (rot["width"], rot["height"]) == (32, 64)
    frame = read_video(out / rot["video"])[0][0].mean(axis=(1, 2))  # per row
    assert frame[-4:].mean() > 200 > frame[:32].mean()  # the white band on the left edge is at the bottom now
    assert norm["silent"]["audio"] is None and "silent" in records(out, "shots")
    glitch = norm["glitch"]  # a damaged sound track: the picture kept, the sound given up
    assert glitch["normalise"]["frames_lost"] == 0 and glitch["num_frames"] == 60
    assert glitch["audio"] is None and "does not decode" in glitch["normalise"]["audio_error"]


def test_a_timestamp_jump_drops_the_clip_and_leaves_no_file(tmp_path):
    make_vfr(tmp_path / "jump.mp4", gaps_ms=(40,) * 10 + (15000,) + (40,) * 10)  # 15 s between frames 10 and 11
    settings = Settings(out=tmp_path / "out")
    record = core.input_records(find_inputs([str(tmp_path / "jump.mp4")]))[0]
    [probed], _ = core.apply_stage("probe", record, settings)
    assert probed["status"] == "kept" and probed["probe"]["vfr"]
    [out], _ = core.apply_stage("normalise", probed, settings)
    assert (out["status"], out["reason"], out["stage"]) == ("dropped", "corrupt", "normalise")
    assert "jump by 15.0 s" in out["detail"] and list((tmp_path / "out").rglob("*.*")) == []


def test_display_size():
    assert display_size(2000, 1200, 1.0, 0, 1280) == (1280, 768, 0.64)
    assert display_size(1920, 1080, 1.0, 90, 1280)[:2] == (720, 1280)  # turned, then fitted
    assert display_size(641, 361, 1.0, 0, 1280)[:2] == (640, 360)  # never up, even sides
    assert display_size(720, 576, 16 / 15, 0, 1280)[:2] == (768, 576)  # non-square pixels stretched


def test_shot_cuts_where_they_are(run):
    out, truth = run
    shots = records(out, "shots")
    found = shots["talk"]["shots"]["cuts"]
    expected = [round(t * 25) for t in truth["talk"]["cuts_s"]]  # [40, 95, 130]
    assert len(found) == len(expected) and all(abs(f - e) <= 1 for f, e in zip(found, expected))
    assert shots["talk"]["shots"]["shots"][0][0] == 0 and shots["talk"]["shots"]["shots"][-1][1] == 150
    assert shots["silent"]["shots"]["cuts"] == [] and shots["vfr"]["shots"]["cuts"] == []
    adaptive = detect_cuts(out / shots["talk"]["video"], "adaptive")
    assert len(adaptive) == 3 and all(abs(f - e) <= 2 for f, e in zip(adaptive, expected))


def test_plan_segments():
    assert plan_segments(0, 40, 33, 97) == [(1, 37)]
    assert plan_segments(0, 97, 33, 97) == [(0, 97)]
    assert plan_segments(10, 160, 33, 97) == [(10, 97), (107, 53)]  # 150 frames: 97 then the longest rest
    assert plan_segments(0, 120, 33, 97) == [(11, 97)]  # the 23 left over are too few
    assert plan_segments(0, 32, 33, 97) == []
    for length in range(1, 400):
        segs = plan_segments(100, 100 + length, 33, 97)
        assert all(valid_length(n) and 33 <= n <= 97 for _, n in segs)
        assert all(a + n <= b for (a, n), (b, _) in zip(segs, segs[1:]))  # in order, no overlap
        assert not segs or (segs[0][0] >= 100 and segs[-1][0] + segs[-1][1] <= 100 + length)
        assert bool(segs) == (length >= 33)


def test_segments_lengths_bounds_and_content(run):
    out, _ = run
    segs = records(out, "segments")
    kept = {k: r for k, r in segs.items() if r["status"] == "kept"}
    assert sorted(k for k in kept if k.startswith("talk")) == ["talk-shot00-00", "talk-shot01-00", "talk-shot02-00"]
    dropped = {k: r["reason"] for k, r in segs.items() if r["status"] == "dropped"}
    assert dropped == {"talk-shot03": "short-shot", "more_huge-shot00": "short-shot"}  # 20 and 10 frames
    norm = records(out, "normalise")
    for seg in kept.values():
        n, s = seg["num_frames"], seg["segment"]
        assert valid_length(n) and 33 <= n <= 97 and seg["fps"] == 25.0
        a, b = s["shot_frames"]
        assert a <= s["start_frame"] and s["start_frame"] + n <= b  # inside its shot: no cut inside a segment
        frames = read_video(out / seg["video"])[0]
        assert frames.shape[0] == n
        whole = read_video(out / norm[seg["clip"]]["video"])[0]
        assert np.abs(frames[[0, -1]].astype(int) - whole[[s["start_frame"], s["start_frame"] + n - 1]]).mean() < 4
        if seg["audio"]:
            assert sf.info(str(out / seg["audio"])).frames == n * 640


def test_speech_metric_both_ways():
    speech = speech_wave(6.0, 16000)
    t = np.arange(6 * 16000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    noise = (0.1 * np.random.default_rng(0).standard_normal(t.shape[0])).astype(np.float32)
    silence = np.zeros_like(tone)
    assert voiced_share(speech) > 0.5 and voiced_share(silence) == 0.0
    # webrtcvad's known false positives, which the modulation check is there for:
    assert voiced_share(tone) > 0.9 and voiced_share(noise) > 0.9
    assert modulation_db(speech) > 10
    assert modulation_db(tone) < 0.5 and modulation_db(noise) < 1.0 and modulation_db(silence) == 0.0
    noisy = speech + (0.2 / np.sqrt(10) * np.random.default_rng(1).standard_normal(t.shape[0])).astype(np.float32)
    assert modulation_db(noisy) > 1.5  # speech under white noise 10 dB below its peaks still passes


def test_speech_stage_keeps_and_drops(run):
    out, _ = run
    sp = records(out, "speech")
    for k in ("talk-shot00-00", "talk-shot01-00", "talk-shot02-00"):
        assert sp[k]["status"] == "kept" and sp[k]["speech"]["voiced"] > 0.4 and sp[k]["speech"]["modulation_db"] > 10
    reasons = {k: r["reason"] for k, r in sp.items() if r["status"] == "dropped"}
    assert reasons == {
        "silent-shot00-00": "no-audio",
        "rotated-shot00-00": "no-audio",
        "quiet-shot00-00": "no-speech",
        "vfr-shot00-00": "steady-sound",  # webrtcvad calls the tone voiced
        "glitch-shot00-00": "corrupt-audio",
    }
    assert sp["vfr-shot00-00"]["speech"]["voiced"] > 0.9


def test_manifest_reads_back(run):
    out, _ = run
    samples = read_manifest(out / "manifest.jsonl", check_files=True)
    assert [s.id for s in samples] == ["talk-shot00-00", "talk-shot01-00", "talk-shot02-00"]
    for s in samples:
        assert (s.caption, s.split, s.fps, s.width, s.height) == ("", "train", 25.0, 160, 120)
        frames, _, _, _ = read_video(s.video_path)
        assert frames.shape[0] == s.num_frames and sf.info(str(s.audio_path)).frames == s.num_frames * 640
        assert s.meta["clip"] == "talk" and s.meta["source"].endswith("talk.mp4")
        assert {"probe", "normalise", "segment", "speech"} <= set(s.meta)


def test_nothing_temporary_left(run):
    out, _ = run
    assert [p for p in out.rglob(".*")] == []
    assert sorted(p.name for p in (out / "stages").iterdir()) == sorted(f"{s}.jsonl" for s in STAGES)


def test_status(run, capsys):
    out, _ = run
    assert main(["data", "status", str(out)]) == 0
    text = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in text.splitlines()[2:] if line.split()[0] in STAGES}
    assert rows["probe"][:5] == ["probe", "12", "12", "7", "5"]  # inputs, done, kept, dropped
    assert "(empty 1, missing 1, no-video 1, truncated 1, unreadable 1)" in text and rows["manifest"][:4] == [
        "manifest",
        "3",
        "3",
        "3",
    ]
    assert "steady-sound 1" in text and "manifest.jsonl: 3 samples" in text


# ---------------------------------------------------------------------------------------------------------------
# Resume, --force, a killed run, workers


def settings_of(out: Path) -> Settings:
    return Settings(out=out, **json.loads((out / "run.json").read_text())["settings"])


def test_resume_force_and_changed_settings(run, tmp_path):
    src, _ = run
    out = tmp_path / "out"
    shutil.copytree(src, out)  # paths in the records are relative to OUT, so a copy is a run folder too
    inputs = json.loads((out / "run.json").read_text())["inputs"]
    files = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.suffix in (".mp4", ".wav")}
    manifest = (out / "manifest.jsonl").read_text()

    again = run_pipeline(inputs, settings_of(out), progress=False)
    assert [s.ran for s in again.stages] == [0] * len(STAGES)
    assert {p: p.stat().st_mtime_ns for p in files} == files and (out / "manifest.jsonl").read_text() == manifest

    forced = run_pipeline(inputs, settings_of(out), force=["shots"], progress=False)
    by = {s.name: s for s in forced.stages}
    assert by["shots"].ran == by["shots"].inputs == 7 and by["segments"].ran == 0  # same cuts: nothing after redone
    assert (out / "manifest.jsonl").read_text() == manifest

    settings = settings_of(out)
    stricter = Settings(**{**settings.__dict__, "speech_min": 0.9})  # a changed setting redoes its stage on
    by = {s.name: s for s in run_pipeline(inputs, stricter, progress=False).stages}
    assert by["segments"].ran == 0 and by["speech"].ran == by["speech"].inputs == 8
    assert by["speech"].dropped["no-speech"] == 4  # the three talk segments and the silent one
    assert by["manifest"].kept == 0 and not (out / "manifest.jsonl").exists()
    (out / "segments" / "talk-shot00-00.wav").unlink()  # a deleted output file: its clip is redone
    by = {s.name: s for s in run_pipeline(inputs, settings, progress=False).stages}
    assert by["segments"].ran == 1 and (out / "segments" / "talk-shot00-00.wav").is_file()
    assert (out / "manifest.jsonl").read_text() == manifest


def test_weak_audio_keep_trains_text_and_reference(run, tmp_path, capsys):
    """OmniHuman-1's first principle: with --weak-audio keep, the segments the speech filter drops go on without
    their audio (null in the manifest, the reason in its meta) instead of being lost; the speech ones keep theirs."""
    src, _ = run
    out = tmp_path / "out"
    shutil.copytree(src, out)
    inputs = json.loads((out / "run.json").read_text())["inputs"]
    keep = Settings(**{**settings_of(out).__dict__, "weak_audio": "keep"})
    by = {s.name: s for s in run_pipeline(inputs, keep, progress=False).stages}
    dropped = {"no-audio": 2, "no-speech": 1, "steady-sound": 1, "corrupt-audio": 1}  # test_speech_stage_keeps...
    assert by["speech"].dropped == {} and by["speech"].audio_dropped == dropped and by["speech"].kept == 8
    samples = {s.id: s for s in read_manifest(out / "manifest.jsonl", check_files=True)}
    assert len(samples) == 8
    for k in ("talk-shot00-00", "talk-shot01-00", "talk-shot02-00"):
        assert samples[k].audio is not None and "audio_dropped" not in samples[k].meta
    assert samples["quiet-shot00-00"].audio is None
    assert samples["quiet-shot00-00"].meta["audio_dropped"]["reason"] == "no-speech"
    assert samples["vfr-shot00-00"].meta["audio_dropped"] == {
        "stage": "speech", "reason": "steady-sound", "detail": samples["vfr-shot00-00"].meta["audio_dropped"]["detail"]
    }  # fmt: skip
    assert main(["data", "status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "kept without audio 5 (no-audio 2, corrupt-audio 1, no-speech 1, steady-sound 1)" in text, text
    # and the default drops them again, the same manifest as the run's
    drop = Settings(**{**keep.__dict__, "weak_audio": "drop"})
    by = {s.name: s for s in run_pipeline(inputs, drop, progress=False).stages}
    assert (
        by["speech"].dropped == dropped and (out / "manifest.jsonl").read_text() == (src / "manifest.jsonl").read_text()
    )


def test_killed_run_resumes(inputs, tmp_path, capsys):
    d, _ = inputs
    out = tmp_path / "out"
    videos = [str(d / "videos" / n) for n in ("talk.mp4", "quiet.mp4", "notes.mp4")]
    args = ["--input", *videos, "--out", str(out), "--stages", "probe,normalise", *FACELESS, "-q"]
    assert main(["data", "run", *args]) == 0
    assert capsys.readouterr() == ("", "")  # -q: no progress, no summary
    # what a kill leaves: a temporary file of a write in progress and a torn journal line
    (out / "normalise" / ".talk.mp4.k1ll3d00.mp4").write_bytes(b"half")
    with open(out / "stages" / "normalise.jsonl", "ab") as f:
        f.write(b'{"input": "quiet", "key": "0123')
    summary = run_pipeline(json.loads((out / "run.json").read_text())["inputs"], settings_of(out), progress=False)
    by = {s.name: s for s in summary.stages}
    assert by["probe"].ran == 0 and by["normalise"].ran == 0 and by["manifest"].kept == 3
    assert list(out.rglob(".*")) == [] and (out / "stages" / "normalise.jsonl").read_bytes().endswith(b"}\n")
    assert len(read_manifest(out / "manifest.jsonl", check_files=True)) == 3


def test_workers_give_the_same_records(inputs, tmp_path):
    d, _ = inputs
    videos = [d / "videos" / n for n in ("talk.mp4", "quiet.mp4", "notes.mp4", "vfr.mp4")]
    found = find_inputs([str(v) for v in videos])
    results = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        run_pipeline(found, Settings(out=out), workers=workers, progress=False)
        results.append({k: (r["status"], r.get("reason"), r.get("speech")) for k, r in records(out, "speech").items()})
        # faces runs MediaPipe, which aborts in a worker forked after the parent ran it: its pool spawns instead
        results.append({k: (r["status"], r.get("reason")) for k, r in records(out, "faces").items()})
    assert results[0] == results[2] and results[1] == results[3] and "crashed" not in str(results)


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="patches the stage in forked workers")
def test_a_worker_that_dies_drops_only_its_clip(inputs, tmp_path, monkeypatch):
    d, _ = inputs
    found = find_inputs([str(d / "videos" / n) for n in ("notes.mp4", "empty.mov", "cut.mp4")])
    from humo.data.pipeline.stages import probe

    real = probe.process

    def dies_on_empty(record, settings):
        if record["id"] == "empty":
            os._exit(1)  # what a segfault in a decoder looks like to the pool
        return real(record, settings)

    monkeypatch.setattr(probe, "process", dies_on_empty)  # forked workers inherit the patch
    summary = run_pipeline(found, Settings(out=tmp_path / "out"), stages=["probe"], workers=2, progress=False)
    assert summary.stages[0].dropped == {"crashed": 1, "unreadable": 1, "truncated": 1}


# ---------------------------------------------------------------------------------------------------------------
# Inputs and arguments


def test_input_ids(tmp_path):
    for rel in ("a/x.mp4", "b/x.mp4", "b/Y Z.MOV", "b/notes.txt"):
        (tmp_path / "in" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / rel).write_bytes(b"x")
    found = find_inputs([str(tmp_path / "in")])
    assert [f["id"] for f in found] == ["a_x", "b_Y_Z", "b_x"]
    (tmp_path / "x.mov").write_bytes(b"x")
    twice = find_inputs([str(tmp_path / "in" / "a" / "x.mp4"), str(tmp_path / "x.mov"), str(tmp_path / "in/a/x.mp4")])
    assert len(twice) == 2 and twice[0]["id"] != twice[1]["id"] and all(f["id"].startswith("x-") for f in twice)
    assert twice == find_inputs([str(tmp_path / "in" / "a" / "x.mp4"), str(tmp_path / "x.mov")])  # stable


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--max-frames", "96"], "--max-frames 96: must be 4k+1"),
        (["--min-frames", "97", "--max-frames", "33"], "is more than --max-frames"),
        (["--speech-min", "2"], "--speech-min 2.0: must be between 0 and 1"),
        (["--stages", "probe,subtitles"], "unknown stage 'subtitles'"),
        (["--force", "shots", "--stages", "probe"], "--force shots: not among --stages"),
        (["--stages", "segments"], "segments needs the results of shots"),
        (["--workers", "0"], "--workers 0: must be at least 1"),
    ],
)
def test_bad_arguments_are_one_line_errors_before_work(inputs, tmp_path, capsys, extra, message):
    d, _ = inputs
    out = tmp_path / "out"
    assert main(["data", "run", "--input", str(d / "videos" / "talk.mp4"), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("humo: error: ") and message in err and "\n" not in err
    assert not out.exists()


def test_bad_inputs_and_run_folders(inputs, tmp_path, capsys):
    d, _ = inputs
    (tmp_path / "novideo").mkdir()
    (tmp_path / "novideo" / "a.txt").write_text("x")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.me").write_text("x")
    cases = [
        (["--input", str(tmp_path / "nope"), "--out", str(tmp_path / "o")], "not found"),
        (["--input", str(tmp_path / "novideo"), "--out", str(tmp_path / "o")], "no video files in this folder"),
        (["--input", str(d / "videos"), "--out", str(tmp_path / "busy")], "holds no run.json"),
        (["--input", str(d / "videos"), "--out", str(d / "videos" / "out")], "inside the input folder"),
        (["--out", str(tmp_path / "o")], "--input: required for a new run folder"),
    ]
    for args, message in cases:
        assert main(["data", "run", *args]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (d / "videos" / "out").exists()


def test_every_stage_module_and_its_drop_reasons_are_documented():
    doc = (Path(__file__).parents[1] / "docs" / "data-pipeline.md").read_text()
    for name in STAGES:
        module = core.stage_module(name)
        assert isinstance(module.VERSION, int) and callable(module.process)
        assert set(module.PARAMS) <= set(Settings.__dataclass_fields__)
        assert f"### {name}" in doc
        for reason in module.REASONS:
            assert f"| `{reason}` |" in doc, (name, reason)
