"""The held-out evaluation (bars, baselines) and `humo ablate` end to end on a micro recipe (random toy model)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch

from humo.errors import HumoError
from humo.evaluation import heldout
from humo.evaluation.ablation import (
    VARIANTS,
    StudyConfig,
    backbone_run,
    checkpoint_dit,
    format_tables,
    mean_spread,
    plan,
    run_study,
)

# training runs on one thread: tiny models are faster so, and the two test workers do not share cores
pytestmark = pytest.mark.usefixtures("one_thread")


def _row(text, subj, subj_mis, sync, sync_shuf, offset, iou=None):
    own = {k: None for k in ("text_scene", "text_action", "text_object", "subject_sim", "sync_d", "face_found")}
    own.update(text_mean=text, subject_acc=subj, sync_c=sync, sync_offset=offset)
    return {"own": own, "mismatched_ref": {"subject_acc": subj_mis}, "shuffled_audio": {"sync_c": sync_shuf},
            "mask_iou": iou, "seconds": 1.0}  # fmt: skip


def test_bars_pass_for_a_good_model_and_miss_for_a_blind_one():
    good = heldout.summarize([_row(0.9, 0.9, 0.3, 0.6, 0.2, 0), _row(0.85, 0.8, 0.4, 0.5, 0.2, 1)])
    assert all(b["ok"] for b in good["bars"].values()), good["bars"]
    assert good["subject_gain"] == pytest.approx(0.5) and good["sync_ratio"] == pytest.approx(2.75)
    # Ignores the reference and the audio: no gain over the baselines, offsets anywhere.
    blind = heldout.summarize([_row(0.9, 0.5, 0.5, 0.3, 0.3, 7), _row(0.9, 0.4, 0.45, 0.2, 0.25, -9)])
    assert blind["bars"]["text_mean"]["ok"]
    for key in ("subject_gain", "sync_ratio", "offset_within_1"):
        assert not blind["bars"][key]["ok"], key


def test_copy_paste_summary_against_the_mismatched_reference():
    def row(scene, dist, scene_mis, dist_mis):
        r = _row(0.9, 0.9, 0.3, 0.6, 0.2, 0)
        r["own"].update(copy_scene=scene, placement_distance=dist)
        r["mismatched_ref"].update(copy_scene=scene_mis, placement_distance=dist_mis)
        return r

    pasted = heldout.summarize([row(0.95, 0.0, 0.1, 0.2), row(None, 0.02, 0.05, 0.2)])
    assert pasted["copy_scene"] == pytest.approx(0.95) and pasted["placement_copy"] == pytest.approx(0.95)
    faithful = heldout.summarize([row(0.05, 0.2, 0.1, 0.2), row(0.01, 0.1, None, 0.1)])
    assert faithful["copy_scene"] == pytest.approx(0.03) and faithful["placement_copy"] == pytest.approx(0.0)
    d = heldout.clip_differences({"rows": {"a": row(0.1, 0.2, 0.1, 0.2)}}, {"rows": {"a": row(0.9, 0.0, 0.1, 0.2)}})
    assert d["copy_scene"]["mean"] == pytest.approx(0.8) and d["placement_margin"]["mean"] == pytest.approx(0.2)
    # placement_copy pairs the clips: a clip whose own reference showed no face (own distance None) does not
    # leave its mismatched distance in the base, which would read copying where there is none
    unpaired = heldout.summarize([row(0.05, 0.2, 0.1, 0.2), row(0.05, None, 0.1, 1.0)])
    assert unpaired["placement_copy"] == pytest.approx(0.0)
    assert unpaired["placement_distance_mismatched"] == pytest.approx(0.6)  # the means themselves keep every clip
    # results scored before copy-paste was measured have none of it
    old = heldout.summarize([_row(0.9, 0.9, 0.3, 0.6, 0.2, 0)])
    assert old["copy_scene"] is None and old["placement_copy"] is None
    assert "copy-paste" not in heldout.format_summary(old) and "copy-paste" in heldout.format_summary(pasted)


def test_partner_has_another_identity():
    class S:
        def __init__(self, key):
            self.meta = {"characters": [{"identity_key": key}]}

    samples = [S("a"), S("a"), S("b")]
    assert heldout._partner(samples, 0) == 2 and heldout._partner(samples, 2) == 0


def test_mean_spread_skips_missing():
    assert mean_spread([1.0, None, 3.0, float("nan")]) == (2.0, pytest.approx(2**0.5), 2)
    assert mean_spread([None]) == (None, None, 0)


def test_paired_differences_pair_runs_by_seed():
    from humo.evaluation.ablation import paired_differences

    full = {0: {"text_mean": 0.5, "mask_iou": 0.2}, 1: {"text_mean": 0.7, "mask_iou": 0.4}}
    rows = {
        "full": full,
        # seeds as strings, as results.json gives them back; seed 2 has no `full` partner and does not count
        "no-mask": {"0": {"text_mean": 0.6, "mask_iou": None}, "1": {"text_mean": 0.8}, "2": {"text_mean": 0.0}},
        "other": {0: {"text_mean": 0.4, "mask_iou": 0.5}},
    }
    d = paired_differences(rows, {"no-mask": "full", "other": "full", "full": "absent"})
    assert set(d) == {"no-mask - full", "other - full"}
    assert d["no-mask - full"]["text_mean"] == pytest.approx([0.1, 0.1])  # the means differ by 0.1 with no spread
    assert "mask_iou" not in d["no-mask - full"]
    assert set(d["other - full"]) == {"text_mean", "mask_iou"}
    other = d["other - full"]
    assert other["text_mean"] == pytest.approx([-0.1]) and other["mask_iou"] == pytest.approx([0.3])


def test_variants_are_trainer_config_only_and_share_stage1():
    from humo.training.config import TrainConfig

    fields = set(TrainConfig.__dataclass_fields__)
    for v in VARIANTS.values():
        assert set(v.stage2) <= fields and set(v.stage1 or {}) <= fields
    runs = plan(StudyConfig(seeds=[0, 1], s1_steps=3, s2_steps=4, curve_points=2))
    names = [r["name"] for r in runs]
    # full and no-mask share stage 1 per seed; single-stage has none; every stage-2 run follows its stage 1.
    assert names.count("s1-minimal-seed0") == 1 and names.count("s1-full-seed1") == 1
    for r in runs:
        if r["variant"] is not None and r["variant"] != "single-stage":
            s1 = r["overrides"]["init"].split("/")[-3]
            assert names.index(s1) < names.index(r["name"])
    single = next(r for r in runs if r["variant"] == "single-stage")
    assert single["overrides"]["init"].endswith("s0/final/ema.safetensors") and single["overrides"]["single_stage"]
    assert next(r for r in runs if r["variant"] == "no-mask")["overrides"]["mask_head"] is False
    assert "minimal-ffn" not in names and "minimal-ffn" in VARIANTS  # a diagnostic: only when asked for


def test_rope_zero_has_its_own_stage1_and_is_paired_with_full_finetune():
    from humo.evaluation.ablation import run_config, variant_versus

    cfg = StudyConfig(seeds=[0], variants=["full-finetune", "rope-zero"], s1_steps=3, s2_steps=4, curve_points=2,
                      train_config=str(Path(__file__).parents[1] / "configs" / "toy.json"),
                      train_overrides={"model_overrides": {"in_dim": 24, "out_dim": 24}})  # fmt: skip
    runs = {r["name"]: r for r in plan(cfg)}
    # Its stage 1 changes the positional encoding, so it cannot share full-finetune's stage-1 run.
    assert set(runs) == {"s1-full-seed0", "full-finetune-seed0", "s1-rope-zero-seed0", "rope-zero-seed0"}
    assert runs["rope-zero-seed0"]["overrides"]["init"].split("/")[-3] == "s1-rope-zero-seed0"
    for name, rope in (("s1-rope-zero-seed0", "zero"), ("rope-zero-seed0", "zero"), ("full-finetune-seed0", None)):
        model = run_config(cfg, runs[name])["model_overrides"]
        assert model.get("reference_rope") == rope and model["in_dim"] == 24, name  # the study's width kept
        assert run_config(cfg, runs[name])["trainable"] == "full"
    assert variant_versus(["full-finetune", "rope-zero"]) == {"rope-zero": "full-finetune"}
    assert variant_versus(["full", "no-mask", "rope-zero"]) == {"no-mask": "full"}  # its peer is not in the study
    rows = {"full-finetune": {s: {"text_mean": 0.6} for s in (0, 1)},
            "rope-zero": {s: {"text_mean": 0.5 + 0.01 * s} for s in (0, 1)}}  # fmt: skip
    table = format_tables({"config": {"seeds": [0, 1], "eval_clips": 4, "eval_steps": 2}, "final": rows})
    assert "| rope-zero - full-finetune | -0.095 ± 0.007 |" in table and " - full |" not in table


def test_a_recipe_stopped_after_stage0_serves_a_study(tmp_path):
    from humo.evaluation.ablation import check_recipe, recipe_backbone, recipe_encoders

    r = tmp_path / "recipe"
    config = tmp_path / "train.json"
    config.write_text("{}")
    for f in ("cache/index.json", "s0/final/ema.safetensors", "data/heldout/manifest.jsonl"):
        (r / f).parent.mkdir(parents=True, exist_ok=True)
        (r / f).write_text("")
    assert recipe_backbone(r) == r / "s0" / "final" / "ema.safetensors"
    with pytest.raises(HumoError, match=r"recipe .* is incomplete: missing toy encoders \(.*model/vae\)"):
        check_recipe(r, str(config))
    (r / "model" / "vae").mkdir(parents=True)  # an older recipe: only the exported model has the codec
    check_recipe(r, str(config))
    assert recipe_encoders(r) == r / "model"
    (r / "encoders" / "vae").mkdir(parents=True)  # what the recipe writes before stage 0
    assert recipe_encoders(r) == r / "encoders"
    (r / "model" / "vae").rmdir()
    check_recipe(r, str(config))


def test_minimal_ffn_trains_the_minimal_set_and_the_ffns_only():
    from humo.toy import toy_components
    from humo.training.trainable import trainable_names

    dit = toy_components(seed=0, num_layers=2, mask_head_blocks=1)[0]
    minimal = set(trainable_names(dit, "minimal", audio=True, mask=True))
    plus = set(trainable_names(dit, "minimal+ffn", audio=True, mask=True))
    everything = set(trainable_names(dit, "full", audio=True, mask=True))
    added = plus - minimal
    assert minimal < plus < everything
    assert added and all(".ffn." in n for n in added) and not any(".ffn." in n for n in minimal)
    assert {n for n in everything if ".ffn." in n} == added
    assert not any("cross_attn.q" in n and "audio" not in n for n in plus)  # text cross-attention stays frozen
    runs = plan(StudyConfig(seeds=[0], variants=["full", "minimal-ffn"], s1_steps=3, s2_steps=4, curve_points=2))
    ffn = next(r for r in runs if r["variant"] == "minimal-ffn")
    assert (
        ffn["overrides"]["trainable"] == "minimal+ffn" and ffn["overrides"]["init"].split("/")[-3] == "s1-minimal-seed0"
    )


def test_a_longer_backbone_is_trained_once_and_every_variant_starts_from_it(tmp_path):
    cfg = StudyConfig(out=str(tmp_path / "study"), seeds=[0, 1], s1_steps=3, s2_steps=4, curve_points=2,
                      backbone_steps=8)  # fmt: skip
    run = backbone_run(cfg)
    assert run["overrides"]["stage"] == 0 and run["overrides"]["steps"] == 8
    assert run["overrides"]["init"].endswith("runs/toy-recipe/s0/final/ema.safetensors")
    starts = {r["overrides"]["init"] for r in plan(cfg) if r["variant"] in (None, "single-stage")}
    assert starts == {str(tmp_path / "study" / "train" / "backbone" / "final" / "ema.safetensors")}
    assert backbone_run(StudyConfig()) is None  # the default: the recipe's backbone as it is
    assert {r["overrides"]["init"] for r in plan(StudyConfig(seeds=[0])) if r["variant"] is None} == {
        "runs/toy-recipe/s0/final/ema.safetensors"
    }
    with pytest.raises(HumoError, match="backbone_steps -1: must be >= 0"):
        StudyConfig(backbone_steps=-1)


def test_bad_study_config_is_named(tmp_path):
    with pytest.raises(HumoError, match="variants"):
        StudyConfig(variants=["full", "nope"])
    with pytest.raises(HumoError, match="eval_clips"):
        StudyConfig(eval_clips=1)
    with pytest.raises(HumoError, match="jobs 0: must be >= 1"):
        StudyConfig(jobs=0)
    with pytest.raises(HumoError, match=r"guidance_variant 'single-stage': not among the variants \['full'\]"):
        StudyConfig(variants=["full"], guidance_variant="single-stage")
    StudyConfig(variants=["full"], guidance_variant="single-stage", guidance=False)  # no guidance study: no matter
    with pytest.raises(HumoError, match=r"guidance_strength 0.0: must be > 0"):
        StudyConfig(guidance_strength=0.0)
    with pytest.raises(HumoError, match="stage-0 backbone"):
        StudyConfig(recipe=str(tmp_path)).check_recipe()


def test_guidance_strength_moves_every_scale_of_a_case_and_leaves_a_switched_off_term_off():
    from humo.evaluation.ablation import GUIDANCE_CASES, case_params

    cases = {c.name: c for c in GUIDANCE_CASES}
    paper, no_text = cases["stage-adaptive (switch 980)"], cases["static, no text term"]
    assert case_params(paper, 1.0) == {} and case_params(no_text, 1.0) == {"scale_t": 1.0}  # the presets' own
    toy = case_params(paper, 1 / 6)  # the paper's text term 7 -> the toy's CFG 2
    assert toy["scale_t"] == pytest.approx(2.0) and toy["early_scale_t"] == pytest.approx(1 + 8 / 6)
    assert toy["scale_i"] == pytest.approx(1.5) and toy["early_scale_a"] == 1.0
    assert case_params(cases["switch 900"], 1 / 6)["switch"] == 900.0  # not a scale
    off = case_params(no_text, 1 / 6)
    assert off["scale_t"] == 1.0 and off["scale_a"] == pytest.approx(1 + 6.5 / 6)


def test_study_runs_end_to_end_and_resumes_without_work(recipe, tmp_path, monkeypatch):
    out = tmp_path / "study"
    cfg = StudyConfig(
        recipe=str(recipe), out=str(out), train_config=str(recipe / "train.json"), seeds=[0, 1],
        variants=["full", "single-stage"], s1_steps=2, s2_steps=2, curve_points=2, eval_clips=2, eval_steps=2,
        backbone_steps=2,
    )  # fmt: skip
    messages = []
    results = run_study(cfg, log=messages.append)
    assert set(results["final"]) == {"full", "single-stage"}
    # The longer backbone: trained once, from the recipe's, scored beside it; stage 1 starts from it.
    assert sum("training backbone" in m for m in messages) == 1
    assert set(results["backbone"]) == {"recipe stage 0", "study backbone"}
    s1_config = json.loads((out / "train" / "s1-minimal-seed0" / "config.json").read_text())
    assert s1_config["init"] == str(out / "train" / "backbone" / "final" / "ema.safetensors")
    for v in ("full", "single-stage"):
        assert set(results["final"][v]) == {0, 1}
    # Curves count steps after the backbone: full's stage 2 starts after its 2 stage-1 steps; single-stage trains
    # the same 4 steps in one run (equal_steps), every kept checkpoint scored.
    assert set(results["curves"]["full"][0]) == {3, 4}
    assert set(results["curves"]["single-stage"][0]) == {1, 2, 3, 4}
    assert len(results["guidance"]) >= 5 and set(results["guidance"]["static"]) == {0, 1}
    assert (out / "train" / "s1-minimal-seed0" / "final" / "ema.safetensors").is_file()
    assert not list((out / "train").glob("s1-*-seed0-single*"))
    table = (out / "ablation.md").read_text()
    assert "| full |" in table and "| single-stage |" in table and "± " in table
    assert "| single-stage - full |" in table and "| static, no text term - static |" in table
    assert "| study backbone (+2 steps) |" in table and "| recipe stage 0 |" in table
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The final checkpoint's EMA weights are the run's export.
    from humo.checkpoint import load_dit

    ck = checkpoint_dit(out / "train" / "full-seed0" / "checkpoints" / "step_00000002")
    ex = load_dit(out / "train" / "full-seed0" / "final" / "ema.safetensors")
    for (k, a), b in zip(ck.state_dict().items(), ex.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    # A second run trains and evaluates nothing.
    import humo.evaluation.ablation as ablation

    def boom(*a, **k):
        raise AssertionError("work repeated")

    monkeypatch.setattr(ablation.Evaluator, "__call__", boom)
    monkeypatch.setattr("humo.training.loop.train", boom)
    again = run_study(cfg, log=lambda m: None)
    assert format_tables(again) == table
    # The guidance study on another variant's model: sampled from that variant's export, cached under its own
    # names beside full's, and the table says whose model it is.
    monkeypatch.undo()
    sampled = []
    real_load = ablation._load_export
    monkeypatch.setattr(ablation, "_load_export", lambda path: sampled.append(Path(path)) or real_load(path))
    other = run_study(dataclasses.replace(cfg, guidance_variant="single-stage"), log=lambda m: None)
    assert sampled == [out / "train" / f"single-stage-seed{s}" / "final" / "ema.safetensors" for s in (0, 1)]
    assert set(other["guidance"]["static"]) == {0, 1}
    assert other["guidance"] != again["guidance"]
    assert len(list((out / "eval").glob("guidance-single-stage-*-seed0.json"))) == len(other["guidance"])
    assert "guidance (single-stage model)" in format_tables(other) and "guidance (full model)" in table
    # ... and at another strength: sampled with the moved scales, cached apart, said in the table.
    asked = []
    monkeypatch.setattr(
        ablation.Evaluator, "__call__", lambda self, dit, preset, params, seed: asked.append(params) or self.scoring
    )
    weak = run_study(dataclasses.replace(cfg, guidance_strength=0.5), log=lambda m: None)
    assert len(asked) == 2 * len(weak["guidance"]) and asked[1] == {"scale_t": 4.0, "scale_i": 2.5, "scale_a": 4.25}
    assert len(list((out / "eval").glob("guidance-*-strength0.5-seed1.json"))) == len(weak["guidance"])
    assert "guidance (full model, strength 0.5)" in format_tables(weak)
    # A report (no ledger: the run folder is what there is) trains and scores nothing and tabulates the runs
    # finished on disk: all of them, then all but one whose export is gone (as if still training).
    monkeypatch.setattr(ablation.Evaluator, "__call__", boom)
    monkeypatch.setattr("humo.training.loop.train", boom)
    monkeypatch.setattr(StudyConfig, "check_recipe", boom)
    whole = run_study(cfg, log=lambda m: None, report=True)
    assert whole["final"] == again["final"] and whole["guidance"] == again["guidance"]
    assert len(whole["runs"]) == whole["planned_runs"] and format_tables(whole) == table
    (out / "train" / "single-stage-seed1" / "final" / "ema.safetensors").unlink()
    part = run_study(cfg, log=lambda m: None, report=True)
    assert set(part["final"]["single-stage"]) == {0} and part["final"]["full"] == again["final"]["full"]
    assert format_tables(part).startswith(f"**In progress: {part['planned_runs'] - 1} of {part['planned_runs']} runs")


def test_jobs_train_the_seeds_in_workers_and_the_parent_only_gathers(recipe, tmp_path, monkeypatch):
    import humo.evaluation.ablation as ablation

    def boom(*a, **k):
        raise AssertionError("the parent process trained or evaluated")

    monkeypatch.setattr(ablation.Evaluator, "__call__", boom)  # the workers are other processes: unaffected
    monkeypatch.setattr("humo.training.loop.train", boom)
    out = tmp_path / "study"
    cfg = StudyConfig(
        recipe=str(recipe), out=str(out), train_config=str(recipe / "train.json"), seeds=[0, 1], variants=["full"],
        s1_steps=1, s2_steps=1, curve_points=1, eval_clips=2, eval_steps=1, guidance=False, jobs=2,
    )  # fmt: skip
    messages = []
    results = run_study(cfg, log=messages.append)
    assert set(results["final"]["full"]) == {0, 1}
    threads = max(1, len(os.sched_getaffinity(0)) // 2)  # the cores split between the 2 workers
    assert sum(f"in a worker on {threads} thread(s)" in m for m in messages) == 2
    for seed in (0, 1):
        log = (out / "workers" / f"seeds-{seed}.log").read_text()
        assert f"trained full-seed{seed}" in log and f"seed{1 - seed}" not in log
    assert json.loads((out / "study.json").read_text())["seeds"] == [0, 1]


def test_a_failing_worker_is_an_error_naming_its_log(recipe, tmp_path):
    cfg = StudyConfig(
        recipe=str(recipe), out=str(tmp_path / "study"), train_config=str(recipe / "train.json"), seeds=[0, 1],
        variants=["full"], s1_steps=1, s2_steps=1, curve_points=1, eval_clips=2, guidance=False, jobs=2,
        train_overrides={"batch_size": 0},
    )  # fmt: skip
    with pytest.raises(HumoError, match=r"worker failed: seeds \[0\] \(exit 1, .*seeds-0.log: .*batch_size"):
        run_study(cfg, log=lambda m: None)


def test_a_missing_train_config_is_named_as_such(tmp_path):
    cfg = StudyConfig(recipe=str(tmp_path), out=str(tmp_path / "out"), train_config=str(tmp_path / "nope.json"))
    with pytest.raises(HumoError, match=r"--config .*nope.json: no such file"):
        cfg.check_recipe()


def test_a_crops_study_needs_a_cache_with_crops_before_anything_runs(recipe, tmp_path):
    cfg = StudyConfig(recipe=str(recipe), out=str(tmp_path / "out"), train_config=str(recipe / "train.json"),
                      variants=["full-finetune", "crops"])  # fmt: skip
    with pytest.raises(HumoError, match=r"variant crops trains with reference crops, .* --reference-crops 2"):
        cfg.check_recipe()
    dataclasses.replace(cfg, variants=["full-finetune"]).check_recipe()  # no crops asked for: no matter
    # the same recipe whose cache has crops passes
    other = tmp_path / "recipe"
    other.mkdir()
    for name in os.listdir(recipe):
        if name != "cache":
            (other / name).symlink_to(recipe / name)
    index = json.loads((recipe / "cache" / "index.json").read_text())
    index["samples"][0]["reference_crops"] = [{"head": ["k"]}]
    (other / "cache").mkdir()
    (other / "cache" / "index.json").write_text(json.dumps(index))
    dataclasses.replace(cfg, recipe=str(other)).check_recipe()
    assert VARIANTS["crops"].versus == "full-finetune"


def test_sample_sheet_shows_reference_samples_and_truth_per_held_out_clip(recipe, tmp_path):
    import numpy as np
    from PIL import Image

    from humo.evaluation.probes import sample_sheet

    ck = recipe / "s0" / "checkpoints" / "step_00000002"
    png = sample_sheet(recipe, ck, tmp_path / "sheet.png", clips=2, steps=2)
    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape == (2 * 2 * 64, 2 * 8 * 64, 3)  # 2 rows; reference + 6 frames + truth; enlarged 2x
    truth = img[:128, -128:][::2, ::2]
    ref = img[:128, :128][::2, ::2]
    assert np.abs(truth.astype(int) - ref.astype(int)).mean() > 5  # the reference is another look, not the frame
    assert not list(tmp_path.glob("*.tmp*"))


def test_study_preset_file_and_flags(tmp_path):
    import argparse

    from humo.commands.ablate import configure, study_config

    parser = argparse.ArgumentParser()
    configure(parser)
    preset = tmp_path / "study.json"
    preset.write_text(json.dumps({"s2_steps": 4000, "train_overrides": {"model_overrides": {"in_dim": 24}}}))
    # a flag given wins, even when it equals the built-in default; --set adds to the preset's overrides
    cfg = study_config(parser.parse_args(["--study", str(preset), "--s2-steps", "600", "--set", "batch_size=4"]))
    assert cfg.s2_steps == 600 and cfg.train_overrides == {"model_overrides": {"in_dim": 24}, "batch_size": 4}
    assert study_config(parser.parse_args(["--study", str(preset)])).s2_steps == 4000
    assert study_config(parser.parse_args([])).s2_steps == StudyConfig().s2_steps
    shipped = study_config(parser.parse_args(["--study", "configs/ablate-v2.json"]))
    assert shipped.s2_steps == 4000 and shipped.stage2_overrides == {"lr": 0.0003} and shipped.equal_steps
    for name in sorted(os.listdir("configs")):  # every shipped study preset reads and checks
        if name.startswith("ablate-"):
            assert study_config(parser.parse_args(["--study", f"configs/{name}"])).seeds, name
    preset.write_text(json.dumps({"s2_step": 1}))
    with pytest.raises(HumoError, match=r"unknown fields \['s2_step'\]"):
        study_config(parser.parse_args(["--study", str(preset)]))
    with pytest.raises(HumoError, match="no such file"):
        study_config(parser.parse_args(["--study", str(tmp_path / "none.json")]))


def test_study_file_of_wrong_types_is_one_line_error(tmp_path):
    import argparse

    from humo.commands.ablate import configure, study_config

    parser = argparse.ArgumentParser()
    configure(parser)
    preset = tmp_path / "study.json"
    for fields, match in (
        ({"seeds": 3}, r"seeds 3: expected list\[int\]"),
        ({"s2_steps": "600"}, "s2_steps '600': expected int"),
        ({"variants": ["full", 2]}, r"variants \['full', 2\]: expected list\[str\]"),
        ({"guidance": 1}, "guidance 1: expected bool"),
        ({"stage2_overrides": [1]}, r"stage2_overrides \[1\]: expected dict"),
    ):
        preset.write_text(json.dumps(fields))
        with pytest.raises(HumoError, match=match):
            study_config(parser.parse_args(["--study", str(preset)]))
    with pytest.raises(SystemExit):  # argparse's one-line usage error names the flag
        parser.parse_args(["--seeds", "0,x"])


def _stale_run(tmp_path, cfg, who):
    """The first stage-2 run of `cfg` as if trained: its export and its config.json as this study would write it."""
    from humo.evaluation.ablation import run_config

    mod = __import__("humo.evaluation." + ("ablation" if who == "ablate" else "ratio_study"), fromlist=["plan"])
    run = next(r for r in mod.plan(cfg) if r["variant"] is not None)
    export = run["out"] / "final" / "ema.safetensors"
    export.parent.mkdir(parents=True)
    export.write_bytes(b"x")
    stored = run_config(cfg, run, who)
    return run, export, stored


@pytest.mark.parametrize("who", ["ablate", "ratios"])
def test_a_run_of_another_configuration_is_not_reused(tmp_path, monkeypatch, who):
    import humo.training.loop
    from humo.evaluation.ablation import train_run
    from humo.evaluation.ratio_study import RatioStudyConfig

    def no_training(cfg):
        raise AssertionError("trained")

    monkeypatch.setattr(humo.training.loop, "train", no_training)
    kind = StudyConfig if who == "ablate" else RatioStudyConfig
    cfg = kind(out=str(tmp_path / "study"), seeds=[0], s1_steps=3, s2_steps=4, curve_points=2)
    run, export, stored = _stale_run(tmp_path, cfg, who)
    config = run["out"] / "config.json"
    # the same configuration, stored from another cwd's relative paths: reused as before
    config.write_text(json.dumps({**stored, "out": "elsewhere", "init": os.path.relpath(stored["init"])}))
    assert train_run(cfg, run, print, who) == export
    # stored at other steps (an earlier study in the same folder): a one-line error naming the run and both values
    config.write_text(json.dumps({**stored, "steps": 9}))
    match = rf"{who}: run {run['name']} .*steps 9 \(stored\) vs 4 \(this study\).*new --out"
    with pytest.raises(HumoError, match=match):
        train_run(cfg, run, print, who)


def _humo_results(direction: float) -> dict:
    """Results of a whole HuMo study (Table 3's variants, every guidance case, 3 seeds) built so that every claim's
    metric moves by `direction` x its claimed sign (+1: the paper is right, -1: it is wrong), well beyond the
    seeds' spread and one clip's worth."""
    from humo.evaluation.ablation import CLAIMS, GUIDANCE_CASES, METRICS

    base = {k: 0.5 for k, _, _ in METRICS} | {"sync_ratio": 2.5}  # every model past the bar of a model that syncs
    rows = {name: {s: dict(base) for s in (0, 1, 2)} for name in ("full", "full-finetune", "single-stage", "no-mask")}
    guidance = {c.name: {s: dict(base) for s in (0, 1, 2)} for c in GUIDANCE_CASES}
    every = {**rows, **guidance}
    for c in CLAIMS:  # a row's base is set before the row (static before the cases that ablate a term of it)
        name, versus = c.row.split(" - ")
        if name in every:
            for s in (0, 1, 2):
                every[name][s][c.metric] = every[versus][s][c.metric] + direction * c.sign * (0.2 + 0.01 * s)
    return {"config": {"seeds": [0, 1, 2], "eval_clips": 16, "eval_steps": 20}, "final": rows, "guidance": guidance}


def test_every_humo_claim_is_tested_with_its_sign():
    """Each of HuMo's claims (Table 3's variants, the guidance cases) finds its row and reads its sign: data built
    for the paper agree with every one, data built against it disagree with every one."""
    from humo.evaluation.ablation import CLAIMS, claim_verdicts

    humo_claims = [c for c in CLAIMS if not c.row.startswith("crops")]
    assert len(humo_claims) == 11
    for direction, expected in ((1.0, "agrees"), (-1.0, "disagrees")):
        found = claim_verdicts(_humo_results(direction))
        assert [f["claim"] for f in found] == [c.text for c in humo_claims]
        assert {f["verdict"] for f in found} == {expected}, found
    # with a seed still to train, no claim is judged yet (the rule is too lenient on two)
    partial = _humo_results(1.0)
    for rows in (partial["final"], partial["guidance"]):
        for per_seed in rows.values():
            del per_seed[2]
    assert {f["verdict"] for f in claim_verdicts(partial)} == {"cannot tell"}
    # a study whose stage 2 has no task ramp tests stage 1 alone, and its claims say so
    flat = _humo_results(1.0)
    flat["runs"] = {"full-seed0": {"config": {"av_fraction_start": 0.5, "av_fraction_end": 0.5}}}
    texts = [f["claim"] for f in claim_verdicts(flat) if f["row"] == "single-stage - full"]
    assert len(texts) == 3 and all(t.endswith("here only its stage 1 (stage 2's audio-visual share is 0.5 "
                                              "throughout)") for t in texts)  # fmt: skip
    flat["runs"]["full-seed0"]["config"]["av_fraction_start"] = 0.2
    assert [f["claim"] for f in claim_verdicts(flat)] == [c.text for c in humo_claims]
    # a claim on a skill the model behind it lacks cannot be told: here `full` does not sync, so neither its sync
    # claims nor the guidance study's (sampled on `full`) are judged; moved to a model that syncs, they are again
    mute = _humo_results(1.0)
    for per_seed in mute["final"]["full"].values():
        per_seed["sync_ratio"] = 1.5
    found = {f["claim"]: f["verdict"] for f in claim_verdicts(mute)}
    sync = [c.text for c in humo_claims if c.metric == "sync_c"]
    assert len(sync) == 4 and {found[t] for t in sync} == {
        "cannot tell (`full` misses the bar: Sync-C / shuffled 1.50 < 2)"
    }
    assert {v for t, v in found.items() if t not in sync} == {"agrees"}
    mute["config"]["guidance_variant"] = "full-finetune"
    found = {f["claim"]: f["verdict"] for f in claim_verdicts(mute)}
    assert [t for t in sync if found[t] == "agrees"] == [t for t in sync if "CFG" in t or "guidance" in t]


def test_tables_put_the_paper_beside_ours_and_say_whether_full_learnt(tmp_path):
    results = _humo_results(1.0)
    for s in (0, 1, 2):
        results["final"]["full"][s].update(sync_ratio=2.4, subject_gain=0.25)
    results["backbone"] = {"recipe stage 0": {"subject_gain": 0.1}, "study backbone": {"subject_gain": 0.2}}
    results["config"].update(s1_steps=1000, s2_steps=4000, backbone_steps=4000, equal_steps=True,
                             stage2_overrides={"av_fraction_start": 0.5})  # fmt: skip
    runs = tmp_path / "runs"
    for name, samples_per_s in (("backbone", 10.0), ("s1-minimal-seed0", 20.0), ("full-seed0", 5.0)):
        (runs / name).mkdir(parents=True)
        lines = [{"step": k * 50, "samples": k * 400, "samples_per_s": samples_per_s} for k in (1, 2)]
        (runs / name / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    from humo.evaluation.ablation import training_seconds

    names = ("backbone", "s1-minimal-seed0", "full-seed0", "no-log")
    results["training_seconds"] = {name: training_seconds(runs / name) for name in names}
    assert results["training_seconds"]["full-seed0"] == pytest.approx(800 / 5.0)
    assert results["training_seconds"]["no-log"] is None
    table = format_tables(results)
    # Table 3's difference beside ours: w/o progressive training lost 0.133 TVA, 0.023 ID-Cur and 0.146 Sync-C.
    row = next(line for line in table.splitlines() if line.startswith("| single-stage - full | -0.133 |"))
    assert "| -0.023 | " in row and "| -0.146 | " in row
    assert "Sync-C / shuffled 2.400 ± 0.000 (passes the bar 2)" in table
    assert "subject gain over the backbone it started from +0.050" in table  # from the study backbone, not stage 0
    assert "stage 2 4000 steps (`single-stage`: 5000 steps in one run" in table and '"av_fraction_start": 0.5' in table
    assert "Training time on this machine, from the runs' logs: 0.08 h (backbone 0.02 h, stage 1 0.01 h, stage 2 " \
           "0.04 h; 3 runs" in table  # fmt: skip


def test_a_resumed_runs_training_time_counts_each_step_once(tmp_path):
    """A run killed after its step-100 checkpoint and resumed: its log keeps the records up to the checkpoint
    (the trainer rewrites it) and adds the resumed part, whose first interval starts at the resume."""
    from humo.evaluation.ablation import training_seconds

    records = [(50, 400, 8.0), (100, 800, 10.0), (150, 1200, 4.0)]  # step, samples, samples/s
    lines = [{"step": st, "samples": n, "samples_per_s": sps, "loss": 0.1} for st, n, sps in records]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert training_seconds(tmp_path) == pytest.approx(400 / 8 + 400 / 10 + 400 / 4)


def test_kept_checkpoints_skip_a_folder_a_kill_left_incomplete(tmp_path):
    from humo.evaluation.ablation import kept_checkpoints
    from humo.training.state import CHECKPOINTS_DIR, STATE_FILE, checkpoint_name

    root = tmp_path / CHECKPOINTS_DIR
    for step, complete in ((100, True), (200, False), (300, True)):
        (root / checkpoint_name(step)).mkdir(parents=True)
        if complete:
            (root / checkpoint_name(step) / STATE_FILE).write_text("{}")
    assert [s for s, _ in kept_checkpoints(tmp_path)] == [100, 300]


def test_curves_plot_every_metric_from_the_backbone(tmp_path, monkeypatch):
    import humo.media.image as image
    from humo.evaluation.ablation import METRICS, plot_curves

    drawn = {}

    def keep(fig, path):
        drawn["titles"] = [ax.get_title() for ax in fig.axes if ax.axison]
        drawn["x"] = sorted({x for ax in fig.axes for line in ax.get_lines() for x in line.get_xdata()})
        return Path(path)

    monkeypatch.setattr(image, "save_figure", keep)
    point = {k: 0.5 for k, _, _ in METRICS}
    plot_curves({"full": {0: {2000: point, 5000: point}}}, tmp_path / "c.png", start={**point, "mask_iou": None})
    assert len(drawn["titles"]) == len(METRICS) and drawn["x"] == [0, 2000, 5000]
    assert "Sync-D (lower is better)" in drawn["titles"]
