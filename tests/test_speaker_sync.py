"""The per-speaker reader and metric (`metrics.speaker_sync`) on real `humo synth --multi` clips, both ways: high
where it should be (each mouth follows its own track, shut while the others talk) and low where it should not be
(tracks swapped between the characters; every mouth following the mix). Also the per-character mask IoU.

The thresholds leave margin under the numbers measured with `python -m humo.proving_ground.validate MANIFEST
--speakers` (docs/proving-ground.md, "Several speakers: the per-speaker reader"); x264 does not always encode the
same frames to the same bytes, so the clips read back differ slightly from run to run.
"""

import numpy as np
import pytest
import soundfile as sf

from humo.data.manifest import read_manifest
from humo.errors import HumoError
from humo.media.video import read_video
from humo.proving_ground import metrics, readers
from humo.proving_ground.synth import SynthConfig, synthesize_dataset
from humo.proving_ground.validate import mix_mouth_frames

CLIPS = 6


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("multi")
    cfg = SynthConfig(out=out, clips=CLIPS, frames=(49, 49), seed=0, multi=True, workers=1)
    manifest, _ = synthesize_dataset(cfg, progress=False)
    return manifest, read_manifest(manifest)


def _tracks(s):
    return [sf.read(s.resolve(c["audio"]), dtype="float32") for c in s.meta["characters"]]


@pytest.fixture(scope="module")
def results(dataset):
    """speaker_sync per clip: with its own tracks, with the tracks rotated by one, on the mix-mouthed render."""
    manifest, samples = dataset
    out = {"truth": [], "swapped": [], "mix": []}
    for s in samples:
        frames, fps, _, _ = read_video(s.video_path)
        tracks = _tracks(s)
        out["truth"].append(metrics.speaker_sync(frames, fps, tracks))
        out["swapped"].append(metrics.speaker_sync(frames, fps, tracks[1:] + tracks[:1]))
        out["mix"].append(metrics.speaker_sync(mix_mouth_frames(manifest, s), fps, tracks))
    return out


def _values(rows, key):
    return np.array([r[key] for r in rows if r[key] is not None])


def test_faces_are_found_left_to_right(dataset):
    _, samples = dataset
    for s in samples:
        frames = read_video(s.video_path)[0]
        faces = readers.faces_left_to_right(frames, s.meta["num_characters"], scale=0.5)
        with np.load(s.face_masks_path) as z:
            heads = z["keypoints"][:, :, 0, :2]  # [C, T, 2]: the renderer's head centres
        for f, head in zip(faces, heads):
            assert f.valid.mean() > 0.9
            # each character's face, not a neighbour's (they stand 21-32 px apart), and its own skin tone
            assert np.nanmedian(np.abs(f.cx - head[:, 0])) < 1.0
            assert np.nanmedian(np.abs(f.cy - head[:, 1])) < 1.5


def test_own_track_beats_the_others_and_silent_mouths_stay_shut(results):
    truth = results["truth"]
    own, other = _values(truth, "speaker_sync_own"), _values(truth, "speaker_sync_other")
    # measured on these clips: own 0.70-1.10 (mean 0.86), other 0.13-0.51 (mean 0.31)
    assert len(own) == CLIPS and own.mean() > 0.65 and other.mean() < 0.5
    assert own.mean() > other.mean() + 0.3
    assert all(r["speaker_sync_own"] > r["speaker_sync_other"] for r in truth if r["speaker_sync_other"] is not None)
    silent = _values(truth, "speaker_silent_ratio")  # measured 0.03-0.14 (mean 0.09; pooled over clips 0.09)
    assert len(silent) == CLIPS and silent.mean() < 0.2 and silent.max() < 0.4
    assert metrics.pooled_silent_ratio(truth) < 0.2
    assert _values(truth, "speaker_faces_found").mean() > 0.95


def test_swapped_tracks_score_low(results):
    swapped = results["swapped"]
    own, other = _values(swapped, "speaker_sync_own"), _values(swapped, "speaker_sync_other")
    # measured on these clips: own 0.10-0.59 (mean 0.34), other 0.50-1.10 (mean 0.68); own < other on all six,
    # by 0.004 on one
    assert own.mean() < other.mean() - 0.15
    assert np.mean([r["speaker_sync_own"] < r["speaker_sync_other"] for r in swapped]) >= 5 / 6
    # a character's mouth now moves while "its" track is silent: measured 3.3-32 (pooled over clips 6.2)
    assert _values(swapped, "speaker_silent_ratio").min() > 0.8
    assert metrics.pooled_silent_ratio(swapped) > 2


def test_mouths_following_the_mix_score_low(results):
    mix = results["mix"]
    # measured on these clips: silent ratio 0.95-1.09 (mean 1.02, pooled 1.02); own / other Sync-C 0.92-1.11 (mean
    # 1.04, against 3.4 with the truth): no preference for its own track
    silent = _values(mix, "speaker_silent_ratio")
    assert len(silent) == CLIPS and silent.min() > 0.6 and silent.mean() > 0.8
    assert metrics.pooled_silent_ratio(mix) > 0.8
    ratio = _values(mix, "speaker_sync_ratio")
    assert 0.8 < ratio.mean() < 1.25
    assert ratio.mean() < 0.5 * _values(results["truth"], "speaker_sync_ratio").mean()


def test_speaker_sync_shapes_and_edge_cases(dataset):
    _, samples = dataset
    s = samples[0]
    frames, fps, _, _ = read_video(s.video_path)
    tracks = _tracks(s)
    r = metrics.speaker_sync(frames, fps, tracks)
    assert len(r["characters"]) == len(tracks)
    for k, c in enumerate(r["characters"]):
        assert len(c["sync_c_tracks"]) == len(tracks)
        assert c["sync_c_own"] == c["sync_c_tracks"][k]
    # a track that never speaks gives nothing to sync on, but its character's silent mouth is still scored
    silent = [(np.zeros_like(w), sr) for w, sr in tracks[:1]] + tracks[1:]
    r = metrics.speaker_sync(frames, fps, silent)
    assert r["characters"][0]["sync_c_own"] is None and r["characters"][0]["silent_ratio"] is not None
    assert all(c["sync_c_tracks"][0] is None for c in r["characters"])
    with pytest.raises(HumoError, match="no audio tracks"):
        metrics.speaker_sync(frames, fps, [])


def test_silent_ratio_is_pooled_over_characters_and_clips(results):
    """A clip's ratio is its characters' silent openings over their speaking openings, summed; a summary pools
    clips alike, so one character (or clip) whose speaking mouth hardly opens cannot blow the ratio up."""
    for r in results["truth"] + results["mix"]:
        both = [c for c in r["characters"] if c["silent_open"] is not None and c["speaking_open"] is not None]
        hush, talk = sum(c["silent_open"] for c in both), sum(c["speaking_open"] for c in both)
        assert r["speaker_silent_open"] == pytest.approx(hush) and r["speaker_speaking_open"] == pytest.approx(talk)
        assert r["speaker_silent_ratio"] == pytest.approx(hush / talk)
        for c in both:
            assert c["silent_ratio"] == pytest.approx(c["silent_open"] / c["speaking_open"])
    rows = [{"speaker_silent_open": 0.1, "speaker_speaking_open": 1.0}] * 9
    mumbler = {"speaker_silent_open": 0.05, "speaker_speaking_open": 0.001}  # its own ratio: 50
    assert metrics.pooled_silent_ratio(rows + [mumbler]) == pytest.approx(0.95 / 9.001)  # the mean of ratios: 5.1
    # clips without the parts (no silent frames; no face) are left out; nothing at all gives None
    assert metrics.pooled_silent_ratio(rows + [{"speaker_silent_open": None, "speaker_speaking_open": 1.0}, {}]) == (
        pytest.approx(0.1)
    )
    assert metrics.pooled_silent_ratio([]) is None
    assert metrics.silent_ratio(0.1, 0.0) is None and metrics.silent_ratio(None, 1.0) is None


def test_mean_openings_per_character(results):
    """How wide the mouths open while speaking and while silent, per character: the truth opens wide to speak and
    stays near shut otherwise; the mix render opens alike in both."""
    talk, hush = metrics.mean_openings(results["truth"])
    assert talk > 0.3 and hush < 0.2 * talk  # measured on these clips: 0.44 and 0.04 (the mix: 0.44 and 0.45)
    talk, hush = metrics.mean_openings(results["mix"])
    assert 0.8 < hush / talk < 1.25
    rows = [{"speaker_speaking_open": 1.2, "speaker_silent_open": 0.3, "speaker_open_characters": 3},
            {"speaker_speaking_open": 0.8, "speaker_silent_open": 0.1, "speaker_open_characters": 2},
            {"speaker_speaking_open": None, "speaker_silent_open": None, "speaker_open_characters": 0}]  # fmt: skip
    assert metrics.mean_openings(rows) == pytest.approx((2.0 / 5, 0.4 / 5))
    assert metrics.mean_openings(rows[2:]) == (None, None)
    # `humo eval`'s summary reports the same per-character openings and the pooled ratio, not means of the sums
    means = metrics.summarize(rows)
    assert (means["speaker_open_speaking"], means["speaker_open_silent"]) == pytest.approx((2.0 / 5, 0.4 / 5))
    assert "speaker_speaking_open" not in means and "speaker_silent_open" not in means  # a row's sums, not a mean
    assert means["speaker_silent_ratio"] == pytest.approx(0.4 / 2.0)
    assert means["speaker_open_characters"] == pytest.approx(5 / 3)
    # a row with characters but no openings (written by hand, merged) counts neither its openings nor its characters
    odd = {"speaker_speaking_open": None, "speaker_silent_open": None, "speaker_open_characters": 4}
    assert metrics.mean_openings([*rows, odd]) == pytest.approx((2.0 / 5, 0.4 / 5))


def test_persons_left_to_right():
    assert metrics.left_to_right([{"box": "0.6,0,0.9,1"}, {"box": [0.1, 0, 0.4, 1]}]) == [1, 0]
    assert metrics.left_to_right([{"box": "0.6,0,0.9,1"}, {"mask": "m.png"}]) == [0, 1]  # not every one has a box
    with pytest.raises(HumoError, match="expected x0,y0,x1,y1"):
        metrics.left_to_right([{"box": "1,2,3"}])


def test_person_mask_iou(dataset):
    import torch

    from humo.mask_head import mask_to_latent_grid

    _, samples = dataset
    with np.load(samples[0].face_masks_path) as z:
        gt = z["person_masks"]  # [C, T, H, W]
    C = len(gt)
    perfect = mask_to_latent_grid(torch.from_numpy(gt.astype(np.float32)), (16, 16)).numpy()  # [C, F, 16, 16]
    r = metrics.person_mask_iou(perfect, gt)
    assert r["person_iou"] == pytest.approx(1.0) and len(r["per_character"]) == C
    # the masks given to the wrong characters: the characters do not overlap
    assert metrics.person_mask_iou(np.roll(perfect, 1, axis=0), gt)["person_iou"] < 0.05
    # one character's mask for everyone: right for one
    assert metrics.person_mask_iou(np.repeat(perfect[:1], C, 0), gt)["person_iou"] == pytest.approx(1 / C, abs=0.02)
    with pytest.raises(HumoError, match="person masks"):
        metrics.person_mask_iou(perfect[:1], gt)


def test_face_audio_share(dataset):
    """Masks that cover each person whole give every face its own audio; swapped, the neighbour's; half-hearted
    masks half; a mask on one person only leaves the other faces muted."""
    import torch

    from humo.mask_head import mask_to_latent_grid

    _, samples = dataset
    with np.load(samples[0].face_masks_path) as z:
        people, faces = z["person_masks"], z["char_masks"]
    C = len(people)
    whole = mask_to_latent_grid(torch.from_numpy(people.astype(np.float32)), (16, 16)).numpy()
    whole = (whole > 0.05).astype(np.float32)  # every latent pixel a person touches: the faces wholly inside
    r = metrics.face_audio_share(whole, faces)
    assert r["face_own_audio"] > 0.95 and r["face_other_audio"] < 0.05 and len(r["per_character"]) == C
    swapped = metrics.face_audio_share(np.roll(whole, 1, axis=0), faces)
    assert swapped["face_own_audio"] < 0.05 and swapped["face_other_audio"] > 0.9
    half = metrics.face_audio_share(0.5 * whole, faces)
    assert half["face_own_audio"] == pytest.approx(0.5 * r["face_own_audio"], abs=0.01)
    one = whole.copy()
    one[1:] = 0
    r1 = metrics.face_audio_share(one, faces)
    assert r1["per_character"][0] > 0.95 and max(r1["per_character"][1:]) < 0.01
    with pytest.raises(HumoError, match="face audio share"):
        metrics.face_audio_share(whole[:1], faces)


def test_eval_scores_each_person_of_a_case(dataset, tmp_path, capsys):
    import json

    from humo.cli import main

    _, samples = dataset
    vids = tmp_path / "videos"
    vids.mkdir()
    cases = {}
    for name, s in (("two", samples[0]), ("plain", samples[1])):
        (vids / f"{name}.mp4").write_bytes(s.video_path.read_bytes())
        cases[name] = {"prompt": s.caption, "audio_path": str(s.audio_path)}
    s = samples[0]
    # humo generate's shape: each person's reference image, own audio and box; listed right to left here, the
    # boxes put them in order
    n = len(s.meta["characters"])
    cases["two"]["persons"] = [
        {"ref_image": str(s.resolve(c["ref_image"])), "audio": str(s.resolve(c["audio"])), "box": f"{k},0,{k + 1},1"}
        for k, c in enumerate(s.meta["characters"])
    ][::-1]
    cases["two"]["persons"][0]["mask"] = "unused.png"  # a person's mask is accepted (humo generate takes one)
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    res = tmp_path / "r.json"
    assert main(["eval", "--cases", str(tmp_path / "cases.json"), "--videos", str(vids), "--json", str(res)]) == 0
    rows = json.loads(res.read_text())["rows"]
    two, plain = rows["two"], rows["plain"]
    assert two["speaker_sync_own"] > two["speaker_sync_other"] and two["speaker_silent_ratio"] < 0.4
    assert [p["person"] for p in two["details"]["speakers"]] == list(range(n))[::-1]
    assert two["subject_acc"] is not None  # the persons' reference images stand in for img_paths
    assert plain["speaker_sync_own"] is None and plain["subject_acc"] is None
    assert "spk_own" in capsys.readouterr().out

    cases["two"]["persons"][0]["voice"] = "x"
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    assert main(["eval", "--cases", str(tmp_path / "cases.json"), "--videos", str(vids)]) != 0
    assert "case 'two': person 1: unknown key 'voice'" in capsys.readouterr().err
    # the same rule as humo generate --cases: a list of tracks is refused in one line, not a traceback
    del cases["two"]["persons"][0]["voice"]
    cases["two"]["persons"][0]["audio"] = [cases["two"]["persons"][0]["audio"]] * 2
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    assert main(["eval", "--cases", str(tmp_path / "cases.json"), "--videos", str(vids)]) == 2
    err = capsys.readouterr().err
    assert "person 1: 'audio' must be one file, not list" in err and "Traceback" not in err


def test_codec_round_trip_condition(dataset, tmp_path, capsys):
    """`validate --speakers --vae CODEC` adds the truth through a codec's round trip: the floor a model decoding
    through that codec can reach. A codec that keeps the mouths keeps the measures; one that loses them reads
    as no sync and silent mouths as open as speaking ones (relative to their tiny openings)."""
    from humo.cli import main as humo_main
    from humo.proving_ground.validate import _round_trip
    from humo.proving_ground.validate import main as validate_main

    manifest, samples = dataset
    got = {}
    for ch in (24, 1):
        folder = tmp_path / f"codec{ch}"
        argv = ["fit-codec", "--manifest", str(manifest), "--out", str(folder), "--clips", str(CLIPS)]
        assert humo_main([*argv, "--channels", str(ch), "--scaling", "global"]) == 0
        trip, rows = _round_trip(str(folder)), []
        for s in samples:
            frames, fps, _, _ = read_video(s.video_path)
            rows.append(metrics.speaker_sync(trip(frames), fps, _tracks(s)))
        got[ch] = (np.mean(_values(rows, "speaker_sync_ratio")), metrics.pooled_silent_ratio(rows))
    # measured on these clips: 24 channels own / other 3.1, pooled silent 0.15 (the truth: 3.4, 0.09);
    # 1 channel 0.99 and 0.66
    assert got[24][0] > 2 and got[24][1] < 0.25
    assert got[1][0] < 1.3 and got[1][1] > 0.4
    capsys.readouterr()
    validate_main([str(manifest), "--speakers", "--clips", "2", "--vae", str(tmp_path / "codec24")])
    assert "truth-codec " in capsys.readouterr().out
    with pytest.raises(SystemExit, match="missing: not a directory"):
        validate_main([str(manifest), "--speakers", "--clips", "2", "--vae", str(tmp_path / "missing")])
