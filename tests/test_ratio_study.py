"""`humo ratios` (OmniHuman-1's condition-ratio study) end to end on a micro recipe (random toy model)."""

from __future__ import annotations

import json

import pytest

from humo.errors import HumoError
from humo.evaluation.ablation import quantum, verdict
from humo.evaluation.ratio_study import RatioStudyConfig, claims, plan, run_study, training_shares, versus

# training runs on one thread: tiny models are faster so, and the two test workers do not share cores
pytestmark = pytest.mark.usefixtures("one_thread")


def test_plan_trains_each_ratio_from_the_run_before_it():
    cfg = RatioStudyConfig(seeds=[0, 1], s1_steps=3, s2_steps=4, s3_steps=2, curve_points=2)
    runs = {r["name"]: r for r in plan(cfg)}
    names = list(runs)
    assert names[:7] == ["s1-seed0", "audio-10-seed0", "audio-50-seed0", "audio-100-seed0", "pose-20-seed0",
                         "pose-50-seed0", "pose-80-seed0"]  # fmt: skip
    for r in runs.values():  # every run starts from an earlier one (or the backbone)
        start = r["overrides"]["init"].split("/")[-3]
        assert start == "s0" or names.index(start) < names.index(r["name"]), r["name"]
    a10, p80 = runs["audio-10-seed1"]["overrides"], runs["pose-80-seed1"]["overrides"]
    assert a10["stage"] == 2 and a10["condition_ratios"] == {"text": 0.9, "image": 1.0, "audio": 0.1, "pose": 0.0}
    assert a10["init"].endswith("s1-seed1/final/ema.safetensors")
    assert runs["s1-seed0"]["overrides"]["condition_ratios"]["image"] == 0.5  # stage 1 is the schedule's own
    assert p80["condition_ratios"] == {"text": 0.9, "image": 1.0, "audio": 1.0, "pose": 0.8}
    assert p80["init"].endswith("audio-100-seed1/final/ema.safetensors")
    assert p80["model_overrides"] == {"pose_channels": 16}  # the pose stage adds a pose guider
    assert runs["pose-20-seed0"]["offset"] == 7 and runs["audio-100-seed0"]["offset"] == 3
    # the claims and the rows they read
    assert versus(cfg) == {"audio 10%": "audio 50%", "audio 100%": "audio 50%", "pose 50%": "pose 20%",
                           "pose 80%": "pose 20%"}  # fmt: skip
    rows = {(c.row, c.metric, c.sign) for c in claims(cfg)}
    assert rows == {("audio 100% - audio 50%", "text_mean", -1), ("audio 100% - audio 50%", "subject_gain", -1),
                    ("audio 10% - audio 50%", "sync_c", -1), ("pose 80% - pose 20%", "sync_c", -1)}  # fmt: skip


def test_a_ratio_is_the_share_of_the_conditioned_samples_as_in_the_paper():
    # the paper's audio 100% trains every sample with audio; here every one but guidance's null passes (no text)
    shares = training_shares(RatioStudyConfig())
    for row, audio in (("audio 10%", 0.1), ("audio 50%", 0.5), ("audio 100%", 1.0)):
        assert shares[row]["audio"] == pytest.approx(audio * shares[row]["text"]) and "pose" not in shares[row]
        assert shares[row]["image"] == shares[row]["text"] == pytest.approx(0.9)
    for row, pose in (("pose 20%", 0.2), ("pose 50%", 0.5), ("pose 80%", 0.8)):
        assert shares[row]["pose"] == pytest.approx(pose * 0.9) and shares[row]["audio"] == pytest.approx(0.9)
    # the schedule's own stage 2 keeps the reference in half of the samples: its audio 100% would be 45%
    half = training_shares(RatioStudyConfig(image_ratio=0.5))
    assert half["audio 100%"]["audio"] == pytest.approx(0.45)


def test_bad_study_config_is_named():
    with pytest.raises(HumoError, match="pose_audio_ratio 0.3: must be one of audio_ratios"):
        RatioStudyConfig(pose_audio_ratio=0.3)
    with pytest.raises(HumoError, match=r"audio_ratios \[0.1, 1.5\]: need distinct ratios in \[0, 1\]"):
        RatioStudyConfig(audio_ratios=[0.1, 1.5], pose_audio_ratio=0.1)
    with pytest.raises(HumoError, match="pose_ratios: 0 trains no pose stage"):
        RatioStudyConfig(pose_ratios=[0.0, 0.5])
    with pytest.raises(HumoError, match="audio_base 0.3: must be one of audio_ratios"):
        RatioStudyConfig(audio_base=0.3)
    with pytest.raises(HumoError, match=r"image_ratio 0.0: must be in \(0, 1\]"):
        RatioStudyConfig(image_ratio=0.0)


def test_study_runs_end_to_end_and_resumes_without_work(recipe, tmp_path, monkeypatch):
    out = tmp_path / "study"
    cfg = RatioStudyConfig(
        recipe=str(recipe), out=str(out), train_config=str(recipe / "train.json"), seeds=[0, 1],
        audio_ratios=[0.1, 0.5, 1.0], pose_ratios=[0.2, 0.8], s1_steps=1, s2_steps=2, s3_steps=2,
        curve_points=2, eval_clips=2, eval_steps=1, train_overrides={"model_overrides": {"pose_hidden": 8}},
    )  # fmt: skip
    calls = []
    import humo.evaluation.ablation as ablation

    real = ablation.Evaluator.__call__

    def spy(self, dit, guidance=None, params=None, seed=0):
        calls.append(dit.cfg.pose_channels)
        sampled.append(seed)
        return real(self, dit, guidance, params, seed)

    sampled = []

    monkeypatch.setattr(ablation.Evaluator, "__call__", spy)
    messages = []
    results = run_study(cfg, log=messages.append)
    assert set(results["final"]["audio"]) == {"audio 10%", "audio 50%", "audio 100%"}
    assert set(results["final"]["pose"]) == {"pose 20%", "pose 80%"}
    for rows in results["final"].values():
        assert all(set(per_seed) == {0, 1} for per_seed in rows.values())
    # curves on steps after the backbone: stage 2 after 1 stage-1 step, stage 3 after 1 + 2; 2 checkpoints each
    assert set(results["curves"]["audio"]["audio 10%"][0]) == {2, 3}
    assert set(results["curves"]["pose"]["pose 80%"][1]) == {4, 5}
    # the pose runs' models have a guider (merged over the recipe's model fields) and were scored without a pose
    assert calls.count(16) == 8 and calls.count(0) == 12
    # each training seed's models sample the same noise (paired), another seed's other noise
    assert sorted(set(sampled)) == [0, 1000] and sampled.count(0) == sampled.count(1000) == 10
    summary = json.loads((out / "eval" / "audio-10-seed1-step000002.json").read_text())
    assert summary["eval_seed"] == 1000 and summary["eval_clips"] == 2 and summary["eval_steps"] == 1
    export = out / "train" / "pose-80-seed0" / "final" / "ema.safetensors"
    from humo.checkpoint import load_dit

    assert load_dit(export).cfg.pose_hidden == 8
    cfg_used = json.loads((out / "train" / "pose-80-seed0" / "config.json").read_text())
    assert cfg_used["condition_ratios"] == {"text": 0.9, "image": 1.0, "audio": 1.0, "pose": 0.8}
    # a verdict per claim the metrics can test (a random model draws no face: its sync and identity are None)
    assert [c["claim"] for c in results["claims"]] == ["too high an audio ratio hurts text following (Table 3, Fig. 3)"]
    for c in results["claims"]:
        assert len(c["differences"]) == 2
        assert c["verdict"] == verdict(c["differences"], -1, quantum(c["metric"], 2))
    table = (out / "ratios.md").read_text()
    for row in ("| audio 10% |", "| audio 100% - audio 50% |", "| pose 80% - pose 20% |",
                "too high an audio ratio hurts text following", "± ", "audio 10%: text 90%, reference 90%, audio 9%",
                "pose 80%: text 90%, reference 90%, audio 90%, pose 72%"):  # fmt: skip
        assert row in table, row
    for g in ("audio", "pose"):
        assert (out / f"curves-{g}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A second run trains and evaluates nothing, and writes the same tables.
    def boom(*a, **k):
        raise AssertionError("work repeated")

    monkeypatch.setattr(ablation.Evaluator, "__call__", boom)
    monkeypatch.setattr("humo.training.loop.train", boom)
    run_study(cfg, log=lambda m: None)
    assert (out / "ratios.md").read_text() == table


def test_malformed_flags_and_study_fields_are_one_line_errors(tmp_path, capsys):
    from humo.cli import main

    for flag, value in (("--s1-steps", "1.5"), ("--pose-audio-ratio", "x"), ("--audio-ratios", "0.1,y")):
        with pytest.raises(SystemExit):  # argparse's usage error: no traceback
            main(["ratios", flag, value])
        assert f"argument {flag}: " in capsys.readouterr().err
    preset = tmp_path / "study.json"
    preset.write_text(json.dumps({"audio_ratios": [0.1, "a"], "s1_steps": "10"}))
    assert main(["ratios", "--study", str(preset)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "audio_ratios [0.1, 'a']: expected list[float]" in err and "s1_steps '10'" in err


def test_pose_curves_begin_at_the_model_they_start_from():
    from humo.evaluation.ratio_study import _from_start

    cfg = RatioStudyConfig(seeds=[0, 1], s1_steps=1, s2_steps=2, s3_steps=2, curve_points=2, pose_audio_ratio=0.5)
    base = {0: {2: {"sync_c": 0.1}, 3: {"sync_c": 0.2}}, 1: {3: {"sync_c": 0.3}}}
    curves = {
        "audio": {"audio 50%": base, "audio 10%": {0: {3: {"sync_c": 9.0}}}},
        "pose": {"pose 20%": {0: {4: {"sync_c": 0.4}}, 1: {5: {"sync_c": 0.5}}}},
    }
    plotted = _from_start(curves, "pose", cfg)
    # each seed's pose curve starts where that seed's 50% audio run (the pose runs' start) ended, at step 1 + 2
    assert plotted["pose 20%"][0] == {3: {"sync_c": 0.2}, 4: {"sync_c": 0.4}}
    assert plotted["pose 20%"][1] == {3: {"sync_c": 0.3}, 5: {"sync_c": 0.5}}
    assert set(curves["pose"]["pose 20%"][0]) == {4}  # the results keep the runs' own checkpoints only
    assert _from_start(curves, "audio", cfg) is curves["audio"]
