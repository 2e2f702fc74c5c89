"""`humo synth` writes a valid, deterministic dataset; `humo eval` scores its clips from the files alone."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from humo.cli import main
from humo.data.manifest import read_manifest
from humo.errors import HumoError
from humo.media.video import read_video
from humo.pose import from_proving_ground, save_pose
from humo.proving_ground import world
from humo.proving_ground.synth import SynthConfig, synthesize_dataset


def _synth(out, **kw):
    cfg = SynthConfig(out=out, **{"clips": 4, "frames": (9, 13), "seed": 3, "workers": 1, **kw})
    manifest, _ = synthesize_dataset(cfg, progress=False)
    return manifest


def test_dataset_is_valid_and_consistent(tmp_path):
    samples = read_manifest(_synth(tmp_path / "a"), check_files=True)
    assert len(samples) == 4
    for s in samples:
        frames, fps, audio, _ = read_video(s.video_path)
        assert frames.shape == (s.num_frames, s.height, s.width, 3) and fps == s.fps == 25.0
        assert audio is None  # speech lives in the wav unless mux_audio
        wave, sr = sf.read(s.audio_path)
        assert sr == 16000 and abs(len(wave) - s.num_frames / s.fps * sr) <= 1
        z = np.load(s.face_masks_path)
        assert z["masks"].shape == (s.num_frames, s.height, s.width) and z["masks"].any()
        assert z["keypoints"].shape[:2] == (1, s.num_frames)
        person = z["person_masks"]
        assert person.shape == (1, s.num_frames, s.height, s.width) and person.dtype == np.uint8
        assert not (z["masks"] & ~person[0]).any()  # the face is part of the person
        assert np.asarray(Image.open(s.ref_image_paths[0])).shape == (s.height, s.width, 3)
        m = s.meta
        assert len(m["mouth_opening"]) == s.num_frames == len(m["envelope"])
        assert world.parse_caption(s.caption) == {"scene": m["scene"], "action": m["action"], "object": m["object"]}
        assert s.split in ("train", "val")
        assert not world.Identity(**m["identity"]).heldout


def test_same_seed_same_dataset_whatever_the_workers(tmp_path):
    a = read_manifest(_synth(tmp_path / "a", workers=1))
    b = read_manifest(_synth(tmp_path / "b", workers=2))
    assert [s.to_dict() for s in a] == [s.to_dict() for s in b]
    for sa, sb in zip(a, b):
        assert np.array_equal(read_video(sa.video_path)[0], read_video(sb.video_path)[0])
        assert sa.audio_path.read_bytes() == sb.audio_path.read_bytes()
    c = read_manifest(_synth(tmp_path / "c", seed=4))
    assert [s.caption for s in c] != [s.caption for s in a]


def test_the_clip_writer_decodes_to_its_own_conversion_every_time(tmp_path):
    """Lossy x264 gave one of two streams for the same frames, call to call on some machines (CI saw a one-level
    pixel difference between datasets) and different streams on different CPUs; the writer is lossless now, so
    what a reader decodes is the writer's integer yuv420p conversion exactly, whatever the stream's bytes."""
    import av

    from humo.proving_ground import render
    from humo.proving_ground._av import rgb_to_yuv420p, write_mp4
    from humo.proving_ground.synth import clip_content

    cfg = SynthConfig(out=tmp_path, clips=4, frames=(9, 13), seed=3, workers=1)
    for index in (1, 2):
        _, spec, tracks = clip_content(cfg, index)
        frames = render.render_clip(spec, [t.envelope for t in tracks], [t.roundness for t in tracks]).frames
        planes, heap = rgb_to_yuv420p(frames), []
        for k in range(6):
            heap.append(np.empty(7919 * k + 13, np.uint8))  # the lossy stream depended on where buffers landed
            path = tmp_path / f"{index}_{k}.mp4"
            write_mp4(path, frames, spec.fps)
            with av.open(str(path)) as c:
                decoded = np.stack([f.to_ndarray(format="yuv420p") for f in c.decode(video=0)])
            assert np.array_equal(decoded, planes)
            rgb = read_video(path)[0].astype(int)
            assert np.abs(rgb - frames).mean() < 6  # and it is the picture (chroma subsampling aside)


def test_the_yuv_conversion_is_bt601_limited_range():
    """Against PyAV's own conversion (swscale, an independent implementation): luma within one level everywhere,
    chroma within one level inside flat 8x8 blocks (swscale filters chroma across block edges; we average 2x2);
    and a wrong matrix (BT.709) is caught by the same comparison."""
    import av

    from humo.proving_ground._av import rgb_to_yuv420p

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (1, 8, 8, 3), dtype=np.uint8).repeat(8, axis=1).repeat(8, axis=2)  # 64 x 64
    ours = rgb_to_yuv420p(frames)[0].astype(int)

    def error(colorspace):
        vf = av.VideoFrame.from_ndarray(frames[0], format="rgb24")
        theirs = vf.reformat(format="yuv420p", dst_colorspace=colorspace, dst_color_range="MPEG").to_ndarray()
        d = np.abs(ours - theirs.astype(int))
        inner = d[64:].reshape(2, 8, 4, 8, 4)[:, :, 1:3, :, 1:3]  # U and V [32, 32], away from block edges
        return d[:64].max(), inner.max()

    assert max(error("ITU601")) <= 1
    assert min(error("ITU709")) > 5
    assert ours[:64].min() >= 16 and ours[:64].max() <= 235  # limited range


def test_heldout_and_multi(tmp_path):
    held = read_manifest(_synth(tmp_path / "h", split="heldout"))
    assert all(s.split == "test" and world.Identity(**s.meta["identity"]).heldout for s in held)
    multi = read_manifest(_synth(tmp_path / "m", multi=True, clips=2, width=96, height=64), check_files=True)
    for s in multi:
        n = s.meta["num_characters"]
        assert n in (2, 3) and len(s.ref_images) == n
        assert len(world.parse_caption(s.caption)["people"]) == n
        z = np.load(s.face_masks_path)
        assert z["char_masks"].shape == (n, s.num_frames, 64, 96)
        assert z["person_masks"].shape == (n, s.num_frames, 64, 96) and (z["person_masks"].sum(0) <= 1).all()
        assert z["keypoints"].shape[0] == n
        tracks = [sf.read(s.resolve(c["audio"]))[0] for c in s.meta["characters"]]
        mix, _ = sf.read(s.audio_path)
        assert np.allclose(np.sum(tracks, 0), mix, atol=2e-4)  # the mix is the sum of the speakers


def test_same_shot_references_show_the_clip_itself_and_leave_the_clips_unchanged(tmp_path):
    from humo.proving_ground import readers
    from humo.proving_ground.validate import validate_copy

    apart = read_manifest(_synth(tmp_path / "a", clips=6))
    same = read_manifest(_synth(tmp_path / "s", clips=6, references="same-shot"), check_files=True)
    for a, s in zip(apart, same, strict=True):
        assert a.id == s.id and a.caption == s.caption
        for f in ("video_path", "audio_path", "face_masks_path"):  # the clip, its speech and tracks: byte for byte
            assert getattr(a, f).read_bytes() == getattr(s, f).read_bytes(), f
        ref = np.asarray(Image.open(s.ref_image_paths[0]).convert("RGB"))
        assert ref.tobytes() != np.asarray(Image.open(a.ref_image_paths[0]).convert("RGB")).tobytes()
        scene = readers.read_scene(ref[None])
        assert max(scene, key=scene.get) == s.meta["scene"]
        ch = s.meta["characters"][0]
        assert ch["reference"]["x"] == pytest.approx(ch["position"][0], abs=1e-4)
        assert ch["reference_boxes"]["face"][2] > ch["reference_boxes"]["face"][0]
    # what the copy-paste measures read on the truth: drawn apart, nothing copied; same-shot, the reference's place
    # (up to the clip's motion: clips stand near the centre, so the measure reads ~0.5, not 1) and the scene cannot
    # be told (the prompt asks for the reference's own)
    res_a = validate_copy(str(tmp_path / "a" / "manifest.jsonl"), 6)
    res_s = validate_copy(str(tmp_path / "s" / "manifest.jsonl"), 6)
    assert res_a["truth"]["placement_copy"] < 0.2 and res_s["truth"]["placement_copy"] > 0.35
    assert res_s["truth"]["copy_scene"] is None
    with pytest.raises(HumoError, match="--references must be one of apart, same-shot"):
        SynthConfig(out=tmp_path, clips=1, references="crop").validate()


def test_cli_synth_and_eval(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["synth", "--out", str(out), "--clips", "2", "--frames", "41", "--seed", "5", "--workers", "1"]) == 0
    s0, s1 = read_manifest(out / "manifest.jsonl")
    res = tmp_path / "r.json"
    # the clips' pose tracks as pose files (COCO-17), as `humo generate --pose` takes them
    for s in (s0, s1):
        with np.load(s.face_masks_path) as z:
            save_pose(tmp_path / f"{s.id}_pose.json", from_proving_ground(z["keypoints"], 64, 64, s.fps))
    args = ["eval", str(s0.video_path), "--prompt", s0.caption, "--image", str(s0.ref_image_paths[0])]
    pose0 = str(tmp_path / f"{s0.id}_pose.json")
    assert main(args + ["--audio", str(s0.audio_path), "--pose", pose0, "--json", str(res)]) == 0
    row = json.loads(res.read_text())["rows"][s0.id]
    # after H.264 compression the ground-truth clip still scores near perfect
    assert row["text_mean"] == 1.0 and row["subject_acc"] >= 5 / 6 and abs(row["sync_offset"]) <= 1
    assert row["pose_error"] < 0.15 and row["pose_missed"] == 0.0
    out = capsys.readouterr().out
    assert "mean" in out and "pose" in out

    # batch mode: the release's case format, paths relative to the cases file; video DIR/<name>.mp4
    vids = tmp_path / "videos"
    vids.mkdir()
    cases = {}
    for name, s in (("a", s0), ("b", s1)):
        (vids / f"{name}.mp4").write_bytes(s.video_path.read_bytes())
        cases[name] = {
            "img_paths": [str(Path("ds") / s.ref_images[0])],
            "audio_path": f"ds/{s.audio}",
            "prompt": s.caption,
        }
    cases["a"]["pose_path"] = f"{s0.id}_pose.json"  # optional: case b is scored without a pose
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    assert main(["eval", "--cases", str(tmp_path / "cases.json"), "--videos", str(vids), "--json", str(res)]) == 0
    result = json.loads(res.read_text())
    assert set(result["rows"]) == {"a", "b"} and result["means"]["text_mean"] == 1.0
    assert result["rows"]["a"]["pose_error"] < 0.15 and result["rows"]["b"]["pose_error"] is None
    # the other clip's pose: its action and place differ
    cases["a"]["pose_path"] = f"{s1.id}_pose.json"
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    assert main(["eval", "--cases", str(tmp_path / "cases.json"), "--videos", str(vids), "--json", str(res)]) == 0
    assert json.loads(res.read_text())["rows"]["a"]["pose_error"] > 2 * row["pose_error"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["synth", "--out", "x", "--clips", "0"], "--clips must be at least 1"),
        (["synth", "--out", "x", "--clips", "1", "--frames", "10:11"], "no length of the form 4k+1"),
        (["synth", "--out", "x", "--clips", "1", "--size", "63"], "must be even"),
        (["eval"], "give a VIDEO"),
        (["eval", "--cases", "c.json"], "needs both --cases and --videos"),
        (["eval", "missing.mp4"], "missing.mp4"),
        (["eval", "--cases", "c.json", "--videos", "v", "--pose", "p.json"], "pose_path in the cases file"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
