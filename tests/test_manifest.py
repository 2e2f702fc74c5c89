"""The dataset manifest: round trip, validation messages that name the line and the field, path resolution."""

import json

import pytest

from humo.data.manifest import Sample, read_manifest, sample_from_dict, write_manifest
from humo.errors import HumoError


def _sample(i=0, **kw):
    d = dict(
        id=f"clip-{i}",
        video=f"clips/{i}.mp4",
        caption="A person waves on the beach.",
        ref_images=[f"clips/{i}_ref0.png"],
        audio=f"clips/{i}.wav",
        face_masks=f"clips/{i}.npz",
        split="train",
        fps=25.0,
        num_frames=33,
        height=64,
        width=64,
        meta={"scene": "beach", "mouth_opening": [0.0, 0.5]},
    )
    d.update(kw)
    return Sample(**d)


def test_round_trip_and_paths(tmp_path):
    samples = [_sample(0), _sample(1, audio=None, face_masks=None, split="val", meta={})]
    path = write_manifest(tmp_path / "m.jsonl", samples)
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["audio"] is None
    back = read_manifest(path)
    assert back == samples  # root is not compared
    assert back[0].video_path == tmp_path / "clips/0.mp4"
    assert back[0].ref_image_paths == [tmp_path / "clips/0_ref0.png"]
    assert back[1].audio_path is None
    assert not list(tmp_path.glob(".m.jsonl.*"))  # no temporary file left


def _write_lines(path, records):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.pop("caption"), "line 2: missing field 'caption'"),
        (lambda d: d.update(fps=0), "line 2: field 'fps' must be a positive number"),
        (lambda d: d.update(num_frames=3.5), "line 2: field 'num_frames' must be a positive integer"),
        (lambda d: d.update(split="dev"), "line 2: field 'split' must be one of train, val, test"),
        (lambda d: d.update(ref_images="a.png"), "line 2: field 'ref_images' must be a list"),
        (lambda d: d.update(audio=3), "line 2: field 'audio' must be a path string or null"),
        (lambda d: d.update(meta=[1]), "line 2: field 'meta' must be an object"),
        (lambda d: d.update(extra=1), "line 2: unknown field(s) 'extra'"),
        (lambda d: d.update(id="clip-0"), "line 2: duplicate id 'clip-0' (first on line 1)"),
    ],
)
def test_bad_lines_name_line_and_field(tmp_path, change, message):
    good = _sample(0).to_dict()
    bad = _sample(1).to_dict()
    change(bad)
    path = _write_lines(tmp_path / "m.jsonl", [good, bad])
    with pytest.raises(HumoError) as e:
        read_manifest(path)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_invalid_json_and_missing_files(tmp_path):
    path = _write_lines(tmp_path / "m.jsonl", [_sample(0).to_dict(), "{not json"])
    with pytest.raises(HumoError, match="line 2: invalid JSON"):
        read_manifest(path)
    with pytest.raises(HumoError, match="manifest .*nope.jsonl: file not found"):
        read_manifest(tmp_path / "nope.jsonl")
    path = _write_lines(tmp_path / "m2.jsonl", [_sample(0).to_dict()])
    assert len(read_manifest(path)) == 1
    with pytest.raises(HumoError, match="line 1: field 'video' file .*clips/0.mp4 not found"):
        read_manifest(path, check_files=True)


def test_optional_fields_default_and_blank_lines(tmp_path):
    d = _sample(0).to_dict()
    for k in ("audio", "face_masks", "ref_images", "meta"):
        d.pop(k)
    path = _write_lines(tmp_path / "m.jsonl", ["", json.dumps(d), ""])
    (s,) = read_manifest(path)
    assert s.audio is None and s.face_masks is None and s.ref_images == [] and s.meta == {}


def test_write_validates_before_writing(tmp_path):
    with pytest.raises(HumoError, match="field 'split'"):
        write_manifest(tmp_path / "m.jsonl", [_sample(0, split="bogus")])
    with pytest.raises(HumoError, match="duplicate id"):
        write_manifest(tmp_path / "m.jsonl", [_sample(0), _sample(0)])
    assert not (tmp_path / "m.jsonl").exists()
    with pytest.raises(HumoError, match="expected a JSON object"):
        sample_from_dict([1, 2])


def test_parquet(tmp_path):
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(HumoError, match="need pyarrow"):
            write_manifest(tmp_path / "m.parquet", [_sample(0)])
        return
    samples = [_sample(0), _sample(1)]
    write_manifest(tmp_path / "m.parquet", samples)
    assert read_manifest(tmp_path / "m.parquet") == samples


def test_merge_rebases_paths_to_the_same_files(tmp_path):
    from humo.data.manifest import merge_manifests

    a = write_manifest(tmp_path / "a" / "m.jsonl", [_sample(0), _sample(1, pose=str(tmp_path / "abs.json"))])
    b = write_manifest(
        tmp_path / "b" / "deep" / "m.jsonl",
        [_sample(2, person_audio=["clips/2_c0.wav", "clips/2_c1.wav"], ref_images=["r0.png", "r1.png"])],
    )
    before = (a.read_bytes(), b.read_bytes())
    out = tmp_path / "ab" / "m.jsonl"
    merged = merge_manifests([a, b], out)
    back = read_manifest(out)
    assert [s.id for s in back] == ["clip-0", "clip-1", "clip-2"] == [s.id for s in merged]
    originals = read_manifest(a) + read_manifest(b)
    for s, o in zip(back, originals):
        assert s.video_path.resolve() == o.video_path.resolve() and s.video != o.video  # rebased, same file
        assert [p.resolve() for p in s.ref_image_paths] == [p.resolve() for p in o.ref_image_paths]
        assert [p.resolve() for p in s.person_audio_paths] == [p.resolve() for p in o.person_audio_paths]
        assert s.audio_path.resolve() == o.audio_path.resolve()
        assert s.face_masks_path.resolve() == o.face_masks_path.resolve()
        assert (s.caption, s.meta, s.split) == (o.caption, o.meta, o.split)
    assert back[1].pose == str(tmp_path / "abs.json")  # absolute stays absolute
    assert (a.read_bytes(), b.read_bytes()) == before  # inputs untouched


def test_merge_refuses_a_shared_id_and_writes_nothing(tmp_path, capsys):
    from humo.cli import main

    a = write_manifest(tmp_path / "a" / "m.jsonl", [_sample(0), _sample(1)])
    b = write_manifest(tmp_path / "b" / "m.jsonl", [_sample(1)])
    out = tmp_path / "ab.jsonl"
    assert main(["data", "merge", str(a), str(b), "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'clip-1'" in err[0] and str(a) in err[0] and str(b) in err[0]
    assert not out.exists() and not list(tmp_path.glob(".ab.jsonl*"))
    assert main(["data", "merge", str(a), "--out", str(a)]) != 0
    assert "is one of the inputs" in capsys.readouterr().err
    assert main(["data", "merge", str(a), str(tmp_path / "missing.jsonl"), "--out", str(out)]) != 0
    assert "missing.jsonl" in capsys.readouterr().err and not out.exists()
    assert main(["data", "merge", str(a), "--out", str(out)]) == 0
    assert "2 samples from 1 manifests" in capsys.readouterr().out and len(read_manifest(out)) == 2
