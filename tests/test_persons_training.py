"""Training with several people (InterActHuman): the manifest's person tracks, the cached person regions, the
batch's person slots, the objective's local audio and focal loss, and a few training steps."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from humo.data.loader import CachedDataset, Collate, LatentCache
from humo.data.manifest import Sample, sample_from_dict
from humo.data.precompute import Encoders, precompute
from humo.errors import HumoError
from tests.helpers import TINY, TINY_AUDIO, tiny_train_config

# training runs on one thread: tiny models are faster so, and the two test workers do not share cores
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    import soundfile
    from PIL import Image

    from humo.media.video import write_video

    root = tmp_path_factory.mktemp("duo")
    g = np.random.default_rng(0)
    write_video(root / "duo.mp4", (g.random((9, 32, 32, 3)) * 255).astype(np.uint8), fps=25)
    write_video(root / "solo.mp4", (g.random((9, 32, 32, 3)) * 255).astype(np.uint8), fps=25)
    for name in ("a", "b", "mix"):
        soundfile.write(root / f"{name}.wav", (0.1 * g.standard_normal(8000)).astype(np.float32), 16000)
    for name in ("ra", "rb"):
        Image.fromarray((g.random((32, 32, 3)) * 255).astype(np.uint8)).save(root / f"{name}.png")
    person = np.zeros((2, 9, 32, 32), np.uint8)
    person[0, :, :, :16] = 1  # a on the left, b on the right
    person[1, :, :, 16:] = 1
    np.savez(root / "duo.npz", masks=person[:, :, 4:12].any(0).astype(np.uint8), person_masks=person)
    np.savez(root / "solo.npz", masks=np.ones((9, 32, 32), np.uint8), person_masks=np.ones((1, 9, 32, 32), np.uint8))
    return root


def _samples():
    return [
        Sample("duo", "duo.mp4", "a person talks", ["ra.png", "rb.png"], "mix.wav", "duo.npz",
               person_audio=["a.wav", "b.wav"], height=32, width=32),
        Sample("solo", "solo.mp4", "a person talks", ["ra.png"], "a.wav", "solo.npz", height=32, width=32),
    ]  # fmt: skip


def _encoders():
    from humo.conditions.audio import AudioEncoder
    from humo.conditions.text import TextEncoder
    from humo.conditions.vae import WanVAE

    return Encoders(
        vae=WanVAE.toy(seed=0),
        text=TextEncoder.toy(["a", "person", "talks"], text_len=8, dim=32, num_layers=1),
        audio=AudioEncoder.toy(seed=0, num_layers=4, d_model=8, num_mel_bins=16, heads=2, chunk_seconds=1),
    )


@pytest.fixture(scope="module")
def cache(media, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache")
    precompute(_samples(), out, _encoders(), base_dir=media)
    return out


def test_manifest_person_audio_is_one_track_per_reference():
    d = {"id": "x", "video": "v.mp4", "caption": "c", "ref_images": ["a.png", "b.png"], "person_audio": ["a.wav"],
         "split": "train", "fps": 25, "num_frames": 9, "height": 32, "width": 32}  # fmt: skip
    with pytest.raises(HumoError, match="'person_audio' has 1 tracks for 2 reference images"):
        sample_from_dict(d)
    with pytest.raises(HumoError, match="'person_audio' has 3 tracks for 2 reference images"):
        sample_from_dict({**d, "person_audio": ["a.wav", "b.wav", "c.wav"]})
    assert sample_from_dict({**d, "person_audio": ["a.wav", "b.wav"]}).person_audio == ["a.wav", "b.wav"]


def test_precompute_caches_each_persons_track_and_region(cache, media):
    from humo.conditions.audio import audio_windows
    from humo.media.audio import load_audio

    c = LatentCache(cache)
    duo, solo = c.samples
    enc = _encoders()
    assert len(duo["persons"]["audio"]) == 2 and duo["persons"]["audio"][0] != duo["audio"]
    feats = enc.audio.features(load_audio(media / "b.wav", min_seconds=0), fps=25.0)
    assert torch.allclose(c.load(duo["persons"]["audio"][1]), audio_windows(feats, 3).float())
    masks = c.load(duo["persons"]["masks"])  # [2, 3, 8, 8]: the latent grid
    assert masks.shape == (2, 3, 8, 8)
    assert masks[0, :, :, :4].min() == 1 and masks[0, :, :, 4:].max() == 0 and masks[1, :, :, 4:].min() == 1
    assert solo["persons"]["audio"] == [solo["audio"]]  # one person: the clip's own audio


def test_batch_person_slots_and_a_sample_without_persons_hears_its_audio_everywhere(cache):
    c = LatentCache(cache)
    ds = CachedDataset(c, num_refs=3, persons=True)
    items = [ds[(0, "av")], ds[(1, "av")]]
    items[1] = {**items[1], "person_audio": None, "person_masks": None}  # as a clip without person masks
    batch = Collate(3, [8, 5, 8], persons=True)(items)
    assert batch.person_audio.shape == (2, 3, 3, 8, 5, 8) and batch.person_masks.shape == (2, 3, 3, 8, 8)
    assert batch.person_valid.shape == (2, 3, 3)  # per slot and latent frame
    assert batch.person_valid.all(-1).tolist() == [[True, True, False], [False, False, False]]
    assert batch.person_valid.any(-1).tolist() == [[True, True, False], [False, False, False]]
    assert torch.equal(batch.person_audio[1, 0], batch.audio[1]) and batch.person_masks[1, 0].min() == 1
    assert batch.person_audio[0, 2].abs().max() == 0


def test_objective_injects_by_the_true_regions_and_learns_them(cache):
    from humo.dit import HumoDiT
    from humo.training.objective import build_inputs, compute_loss, draw_rows
    from tests.helpers import tiny_cfg

    c = LatentCache(cache)
    ds = CachedDataset(c, num_refs=2, persons=True)
    batch = Collate(2, [8, 5, 8], persons=True)([ds[(0, "av")], ds[(1, "av")]])
    cfg = tiny_train_config(cache, "unused", model_overrides={**TINY, **TINY_AUDIO, "person_mask_blocks": 1})
    draws = draw_rows(0, 0, range(2), (16, 5, 8, 8), cfg)
    inputs = build_inputs(batch, draws, c.null_text(), reference_mode="replace", use_audio=True)
    assert inputs.persons.masks is batch.person_masks and inputs.persons.ref_frames == (3, 4)
    model = HumoDiT(tiny_cfg("humo-1.7b", person_mask_blocks=1))
    loss, parts = compute_loss(model, batch, draws, c.null_text(), reference_mode="replace", use_audio=True,
                               person_mask_weight=1.0)  # fmt: skip
    assert set(parts) == {"flow", "persons"} and parts["persons"] > 0
    loss.backward()
    assert model.person_masks.taps[0].qkv.weight.grad.abs().sum() > 0


def test_the_face_weight_moves_only_the_focal_loss_and_only_where_there_are_faces(cache):
    import dataclasses

    from humo.dit import HumoDiT
    from humo.training.objective import compute_loss, draw_rows
    from tests.helpers import tiny_cfg

    c = LatentCache(cache)
    ds = CachedDataset(c, num_refs=2, persons=True, masks=True)
    batch = Collate(2, [8, 5, 8], persons=True)([ds[(0, "av")], ds[(1, "av")]])
    face = torch.zeros_like(batch.mask)
    face[..., 1:3, 1:3] = 1.0  # a face of a few latent pixels, as on the proving ground
    batch = dataclasses.replace(batch, mask=face)
    cfg = tiny_train_config(cache, "unused", model_overrides={**TINY, **TINY_AUDIO, "person_mask_blocks": 1})
    draws = draw_rows(0, 0, range(2), (16, 5, 8, 8), cfg)
    torch.manual_seed(0)
    model = HumoDiT(tiny_cfg("humo-1.7b", person_mask_blocks=1))

    def parts(batch, w):
        return compute_loss(model, batch, draws, c.null_text(), reference_mode="replace", use_audio=True,
                            person_mask_weight=1.0, person_face_weight=w)[1]  # fmt: skip

    plain, weighted = parts(batch, 0.0), parts(batch, 8.0)
    assert torch.equal(plain["flow"], weighted["flow"])
    assert abs(float(weighted["persons"]) - float(plain["persons"])) > 1e-4 * float(plain["persons"])
    faceless = dataclasses.replace(batch, mask=torch.zeros_like(batch.mask))
    assert float(parts(faceless, 8.0)["persons"]) == pytest.approx(float(plain["persons"]), rel=1e-6)
    with pytest.raises(HumoError, match="person_face_weight -1.0: must be >= 0"):
        tiny_train_config(cache, "unused", persons=True, person_face_weight=-1.0)


def test_a_few_training_steps_with_persons(cache, tmp_path):
    from humo.training.loop import Trainer

    cfg = tiny_train_config(
        cache, tmp_path / "run", stage=2, steps=3, num_refs=2, persons=True,
        model_overrides={**TINY, **TINY_AUDIO, "mask_head_blocks": 2, "person_mask_blocks": 1},
    )  # fmt: skip
    result = Trainer(cfg).run()
    assert result["steps"] == 3
    log = [json.loads(line) for line in open(tmp_path / "run" / "log.jsonl")]
    assert all("person_masks" in r and r["person_masks"] > 0 for r in log if "step" in r)
    with pytest.raises(HumoError, match="persons: not with continuation_share"):
        tiny_train_config(cache, tmp_path / "bad", stage=2, persons=True, continuation_share=0.5)


def test_persons_evaluation_scores_every_mode(tmp_path):
    """`python -m humo.evaluation.persons` on a random model: every mode generates and is scored per speaker."""
    from humo.evaluation.persons import evaluate, left_to_right, multi_samples, strip_boxes, study, turn_figure
    from humo.proving_ground.synth import SynthConfig, synthesize_dataset
    from humo.toy import toy_components, write_toy_weights

    assert strip_boxes(3, 64, 64) == ["0,0,21,64", "21,0,43,64", "43,0,64,64"]
    synthesize_dataset(SynthConfig(tmp_path / "d", 1, frames=(9, 9), multi=True, split="heldout", seed=5), False)
    (s,) = multi_samples(tmp_path / "d" / "manifest.jsonl", 4)
    xs = [s.meta["characters"][k]["position"][0] for k in left_to_right(s)]
    assert xs == sorted(xs)
    for name, blocks in (("model", 1), ("plain", 0)):
        write_toy_weights(tmp_path / name, components=toy_components(seed=0, person_mask_blocks=blocks))
    result = evaluate(tmp_path / "model", tmp_path / "d" / "manifest.jsonl", clips=1, steps=1,
                      baseline=tmp_path / "plain", log=lambda m: None)  # fmt: skip
    assert set(result["modes"]) == {"predicted", "no-cache", "strips", "global", "baseline"}
    for mode in ("predicted", "no-cache"):
        row = result["rows"][mode][s.id]
        assert 0 <= row["person_iou"] <= 1 and row["speaker_faces_found"] is not None
        assert 0 <= row["face_own_audio"] <= 1 and 0 <= row["face_other_audio"] <= 1
    assert "person_iou" not in result["rows"]["global"][s.id]
    # the strips route by fixed boxes: whoever stands in a strip hears that strip's audio
    assert result["modes"]["strips"]["face_own_audio"] is not None
    # replicates: two sampling seeds of one model, every mode; the claims read differences paired by replicate
    result = study([tmp_path / "model"], tmp_path / "d" / "manifest.jsonl", seeds=[0, 1], clips=1, steps=1,
                   modes=("predicted", "global"), log=lambda m: None)  # fmt: skip
    assert list(result["replicates"]) == [f"{tmp_path / 'model'}@seed{k}" for k in (0, 1)]
    assert result["replicated"].startswith("sampling seeds")
    ious = [r["modes"]["predicted"]["person_iou"] for r in result["replicates"].values()]
    assert result["modes"]["predicted"]["replicates"] == 2 and ious[0] != ious[1]  # the seeds' noise differs
    assert result["modes"]["predicted"]["person_iou"] == pytest.approx(np.mean(ious))
    assert "global - predicted" in result["differences"]  # empty here: a random model draws no face to read
    # the silence mode and another audio scale through the real pipeline: recorded with the result
    result = evaluate(tmp_path / "model", tmp_path / "d" / "manifest.jsonl", clips=1, steps=1, modes=("silence",),
                      guidance_params={"scale_a": 3.0}, log=lambda m: None)  # fmt: skip
    assert list(result["modes"]) == ["silence"] and result["guidance_params"] == {"scale_a": 3.0}
    assert result["silent_ratio"] == "pooled" and result["rows"]["silence"][s.id]["face_own_audio"] is not None
    png = turn_figure(tmp_path / "model", s, tmp_path / "turns.png", frames=4, steps=1)
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


def test_persons_silence_mode_drives_the_strips_with_silent_tracks(tmp_path):
    """The silence mode (the model's talking prior): the strips' boxes, each track replaced by silence of its own
    length and rate; the guidance parameters reach the pipeline in every mode."""
    import soundfile as sf

    from humo.evaluation.persons import generate, left_to_right, multi_samples, strip_boxes
    from humo.proving_ground.synth import SynthConfig, synthesize_dataset

    synthesize_dataset(SynthConfig(tmp_path / "d", 1, frames=(9, 9), multi=True, split="heldout", seed=5), False)
    (s,) = multi_samples(tmp_path / "d" / "manifest.jsonl", 1)
    seen = []

    def pipe(caption, *args, **kw):  # what the pipeline is asked, with the tracks read while they exist
        persons = kw.get("persons") or []
        seen.append((kw, persons, [sf.read(p.audio, dtype="float32") for p in persons]))

    order = left_to_right(s)
    for mode in ("strips", "silence", "global"):
        generate(pipe, s, mode, seed=3, steps=1, guidance_params={"scale_a": 4.0})
    (strips, strip_persons, real), (silence, silent_persons, quiet), (glob, _, _) = seen
    assert strips["guidance_params"] == silence["guidance_params"] == glob["guidance_params"] == {"scale_a": 4.0}
    boxes = strip_boxes(len(order), s.height, s.width)
    assert [p.box for p in strip_persons] == [p.box for p in silent_persons] == boxes
    assert [p.audio for p in strip_persons] == [str(s.person_audio_paths[k]) for k in order]
    for (wave, rate), (hush, hush_rate) in zip(real, quiet):
        assert wave.any() and not hush.any()  # a 9-frame clip may hold only a track's noise floor
        assert hush.shape == wave.shape and hush_rate == rate
    assert all(not Path(p.audio).exists() for p in silent_persons)  # the silent tracks were temporary


def test_persons_curve_scores_kept_checkpoints_resumes_and_plots(tmp_path, capsys, monkeypatch):
    """`--curve RUN`: the modes at every `every`-th kept checkpoint and the last, each checkpoint's own weights in
    the encoders' pipeline; a second call scores nothing; other settings and bad flags are one-line errors."""
    import json

    import humo.evaluation.persons as persons
    from humo.proving_ground.synth import SynthConfig, synthesize_dataset
    from humo.toy import toy_components, write_toy_weights
    from humo.training.state import save_checkpoint

    synthesize_dataset(SynthConfig(tmp_path / "d", 1, frames=(9, 9), multi=True, split="heldout", seed=5), False)
    manifest = tmp_path / "d" / "manifest.jsonl"
    write_toy_weights(tmp_path / "enc", components=toy_components(seed=0, person_mask_blocks=1))
    run = tmp_path / "run"
    for step, seed in ((1, 0), (2, 1), (3, 2)):  # another model at each checkpoint
        dit = toy_components(seed=seed, person_mask_blocks=1)[0]
        sd = dit.state_dict()
        save_checkpoint(run, step, model=sd, ema=sd, optimizer={}, rng={}, state={},
                        metadata={"humo_config": json.dumps(dit.cfg.to_dict())})  # fmt: skip
    progress, png = tmp_path / "curve.json", tmp_path / "curve.png"
    argv = [
        "--curve",
        str(run),
        "--encoders",
        str(tmp_path / "enc"),
        "--manifest",
        str(manifest),
        "--clips",
        "1",
        "--steps",
        "1",
        "--every",
        "2",
        "--modes",
        "predicted,global",
        "--out",
        str(progress),
        "--figure",
        str(png),
    ]
    assert persons.main(argv) == 0
    result = json.loads(progress.read_text())
    assert list(result["points"]) == ["2", "3"] and set(result["points"]["2"]) == {"predicted", "global"}
    ious = [result["points"][k]["predicted"]["person_iou"] for k in ("2", "3")]
    assert None not in ious and ious[0] != ious[1]  # each point is its own checkpoint's model
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "step      2:" in capsys.readouterr().out

    def boom(*a, **k):
        raise AssertionError("scored again")

    monkeypatch.setattr(persons, "evaluate", boom)
    assert persons.main(argv) == 0  # resumed from the progress file: nothing scored
    monkeypatch.undo()
    capsys.readouterr()
    for bad, message in (
        (["--clips", "2"], "scored with other clips"),
        (["--model", "x"], "--curve: scores one training run"),
        (["--modes", "baseline"], "the baseline mode needs another model"),
        (["--seeds", "0,1"], "--curve: one sampling seed"),
    ):
        assert persons.main(argv + bad) == 2
        assert message in capsys.readouterr().err
    assert persons.main(["--curve", str(tmp_path), "--encoders", "e", "--manifest", str(manifest)]) == 2
    assert "no training checkpoints there" in capsys.readouterr().err
    assert persons.main(["--curve", str(run), "--manifest", str(manifest)]) == 2
    assert "give --encoders" in capsys.readouterr().err


def _summary(ratio, silent):
    return {"clips": 24, "speaker_sync_own": ratio * 0.4, "speaker_sync_other": 0.4, "speaker_sync_ratio": ratio,
            "speaker_silent_ratio": silent, "speaker_faces_found": 1.0, "person_iou": None}  # fmt: skip


def test_persons_claims_are_judged_both_ways_by_replicate():
    """Predicted masks clearly better than global audio in every replicate -> "agrees"; clearly worse -> "disagrees";
    a difference inside the replicates' spread -> "cannot tell". The silent ratio is better when lower."""
    from humo.evaluation.persons import judge, replicates

    assert [n for n, _, _ in replicates(["a", "b"], [0, 1])] == ["a@seed0", "a@seed1", "b@seed0", "b@seed1"]
    reps = ("r0", "r1", "r2")

    def verdicts(predicted, global_):
        per_mode = {"predicted": dict(zip(reps, predicted)), "global": dict(zip(reps, global_))}
        out = judge(per_mode, 24)
        return {(c["row"], c["metric"]): c["verdict"] for c in out["claims"]}, out

    good = [_summary(2.0 + 0.1 * k, 0.3) for k in range(3)]
    bad = [_summary(1.0 + 0.1 * k, 1.2) for k in range(3)]
    found, out = verdicts(good, bad)
    assert found == {("global - predicted", "speaker_sync_ratio"): "agrees",
                     ("global - predicted", "speaker_silent_ratio"): "agrees"}  # fmt: skip
    assert out["differences"]["global - predicted"]["speaker_sync_ratio"] == pytest.approx([-1.0, -1.0, -1.0])
    assert out["modes"]["predicted"]["speaker_sync_ratio"] == pytest.approx(2.1)
    assert out["modes"]["predicted"]["speaker_sync_ratio_spread"] == pytest.approx(0.1)
    assert out["modes"]["predicted"]["bars"]["speaker_sync_ratio"]["ok"]
    assert not out["modes"]["global"]["bars"]["speaker_silent_ratio"]["ok"]
    found, _ = verdicts(bad, good)
    assert set(found.values()) == {"disagrees"}
    noisy = [_summary(r, s) for r, s in ((2.0, 0.3), (1.0, 1.2), (1.6, 0.5))]
    found, _ = verdicts(good, noisy)
    assert set(found.values()) == {"cannot tell"}


def test_persons_results_run_apart_combine_into_one_judgement(tmp_path, capsys):
    """Replicates scored in separate runs (another training seed's model, more sampling seeds) are judged together;
    a replicate given twice, or results on other clips or steps, are refused by name."""
    from humo.evaluation.persons import combine

    def result(model, seed, ratio, steps=20, clip="c0"):
        modes = {"predicted": _summary(ratio, 0.3), "global": _summary(1.0, 1.1)}
        rep = {"model": model, "seed": seed, "manifest": "held.jsonl", "steps": steps, "modes": modes,
               "rows": {m: {clip: {}} for m in modes}}  # fmt: skip
        return {"replicates": {"any name": rep}}

    out = combine([result("m0", 0, 2.0), result("m1", 0, 2.2), result("m0", 1, 1.9)])
    assert out["replicated"] == "training and sampling seeds" and out["models"] == ["m0", "m1"]
    assert set(out["replicates"]) == {"m0@seed0", "m1@seed0", "m0@seed1"}
    (c,) = [c for c in out["claims"] if c["metric"] == "speaker_sync_ratio"]
    assert sorted(c["differences"]) == pytest.approx([-1.2, -1.0, -0.9]) and c["verdict"] == "agrees"
    with pytest.raises(HumoError, match="b.json: replicate m0@seed0 is already scored in mode global"):
        combine([result("m0", 0, 2.0), result("m0", 0, 2.1)], ["a.json", "b.json"])
    # the same replicates scored in another mode by a later run join them
    more = result("m0", 0, 2.0)
    rep = more["replicates"]["any name"]
    rep["modes"] = {"strips": _summary(2.5, 0.2)}
    rep["rows"] = {"strips": {"c0": {}}}
    out = combine([result("m0", 0, 2.0), result("m0", 1, 1.8), more])
    assert set(out["replicates"]["m0@seed0"]["modes"]) == {"predicted", "global", "strips"}
    assert out["differences"]["strips - predicted"]["speaker_sync_ratio"] == pytest.approx([0.5])
    alike = "same clips, steps, guidance and silent ratio"
    with pytest.raises(HumoError, match=alike):
        combine([result("m0", 0, 2.0), result("m0", 1, 2.0, steps=10)])
    with pytest.raises(HumoError, match=alike):
        combine([result("m0", 0, 2.0), result("m0", 1, 2.0, clip="c1")])
    # another audio scale, or the silent ratio's old definition, is refused even where it only adds modes to the
    # same replicate; the same scale written as an int or a float is the same
    for seed in (1, 0):
        louder = result("m0", seed, 2.0)
        louder["replicates"]["any name"].update(modes={"silence": _summary(1.0, 1.0)}, rows={"silence": {"c0": {}}},
                                                 guidance_params={"scale_a": 4.0})  # fmt: skip
        with pytest.raises(HumoError, match=alike):
            combine([result("m0", 0, 2.0), louder])
        older = result("m0", seed, 2.0)
        older["replicates"]["any name"].update(modes={"silence": _summary(1.0, 1.0)}, rows={"silence": {"c0": {}}},
                                               silent_ratio="pooled")  # fmt: skip
        with pytest.raises(HumoError, match=alike):
            combine([result("m0", 0, 2.0), older])
    a, b = result("m0", 0, 2.0), result("m0", 1, 2.0)
    a["replicates"]["any name"]["guidance_params"] = {"scale_a": 4}
    b["replicates"]["any name"]["guidance_params"] = {"scale_a": 4.0}
    assert len(combine([a, b])["replicates"]) == 2
    from humo.evaluation.persons import main

    (tmp_path / "a.json").write_text(json.dumps(result("m0", 0, 2.0)))
    (tmp_path / "b.json").write_text(json.dumps(result("m1", 0, 2.3)))
    assert (
        main(["--combine", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(tmp_path / "c.json")]) == 0
    )
    assert len(json.loads((tmp_path / "c.json").read_text())["replicates"]) == 2
    capsys.readouterr()
    for argv, said in ((["--combine", str(tmp_path / "none.json")], "none.json: no such file"),
                       (["--combine", str(tmp_path / "a.json"), "--model", "m"], "without --model"),
                       (["--combine", str(tmp_path / "a.json"), "--scale-a", "4"], "without --model or --scale-a"),
                       (["--curve", "run", "--scale-a", "4"], "or --scale-a"),
                       (["--model", "m", "--manifest", "x.jsonl", "--scale-a", "-1"], "--scale-a: -1.0 is not a scale"),
                       (["--model", "m"], "give --model and --manifest")):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1


def test_frames_without_a_usable_mask_are_left_out_of_the_mask_loss(media, tmp_path, monkeypatch):
    """The .npz's per-frame `person_valid` [P, T]: a latent frame counts when every video frame it encodes is valid,
    the batch carries it per slot and frame, and the focal loss ignores the person's mask in the frames it drops."""
    from humo.dit import HumoDiT
    from humo.training.objective import compute_loss, draw_rows
    from tests.helpers import tiny_cfg

    with np.load(media / "duo.npz") as z:
        arrays = dict(z)
    valid = np.ones((2, 9), np.uint8)
    valid[0, 6] = 0  # person a's track lost in video frame 6: latent frame 2 (video frames 5-8)
    valid[1, 4] = 0  # b's in frame 4: latent frame 1 (video frames 1-4), not 2
    root = tmp_path / "media"
    root.mkdir()
    for f in media.iterdir():
        (root / f.name).symlink_to(f)
    (root / "duo.npz").unlink()
    np.savez(root / "duo.npz", **arrays, person_valid=valid)
    precompute(_samples(), tmp_path / "cache", _encoders(), base_dir=root)
    c = LatentCache(tmp_path / "cache")
    duo, solo = c.samples
    assert c.load(duo["persons"]["valid"]).tolist() == [[1, 1, 0], [1, 0, 1]] and "valid" not in solo["persons"]
    ds = CachedDataset(c, num_refs=2, persons=True)
    collate = Collate(2, [8, 5, 8], persons=True)
    batch = collate([ds[(0, "av")], ds[(1, "av")]])
    assert batch.person_valid.tolist() == [[[True, True, False], [True, False, True]], [[True] * 3, [False] * 3]]

    cfg = tiny_train_config(
        tmp_path / "cache", "unused", model_overrides={**TINY, **TINY_AUDIO, "person_mask_blocks": 1}
    )
    draws = draw_rows(0, 0, range(2), (16, 5, 8, 8), cfg)
    model = HumoDiT(tiny_cfg("humo-1.7b", person_mask_blocks=1))

    seen = []

    def persons_loss(valid):
        import humo.training.objective as objective

        real = objective.focal_loss
        with monkeypatch.context() as m:
            m.setattr(objective, "focal_loss", lambda *a, **k: seen.append(a[2]) or real(*a, **k))
            with torch.no_grad():
                _, parts = compute_loss(model, dataclasses.replace(batch, person_valid=valid), draws, c.null_text(),
                                        reference_mode="replace", use_audio=True, person_mask_weight=1.0)  # fmt: skip
        return float(parts["persons"])

    # the loss reads the batch's per-frame flags, and counting the dropped frame changes it
    base = persons_loss(batch.person_valid)
    assert torch.equal(seen[-1], batch.person_valid)
    every = batch.person_valid.clone()
    every[0, 0, 2] = True
    assert abs(persons_loss(every) - base) > 1e-5

    # a flag array of the wrong shape is named before anything is cached
    np.savez(root / "bad.npz", **arrays, person_valid=valid[:1])
    bad = dataclasses.replace(_samples()[0], face_masks="bad.npz")
    with pytest.raises(HumoError, match=r"person_valid in .*bad.npz has shape \[1, 9\]; expected \[2, >= 9\]"):
        precompute([bad], tmp_path / "cache2", _encoders(), base_dir=root)
