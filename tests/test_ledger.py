"""A study's ledger (`humo.evaluation.ledger`): a study resumes on another machine from its committed records."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from humo.errors import HumoError
from humo.evaluation.ledger import Ledger, provenance_lines, runs_to_train

pytestmark = pytest.mark.usefixtures("one_thread")


def _runs(root):
    """a from the backbone; b and d from a; c from b (training order)."""

    def run(name, parent):
        init = str(root / parent / "final" / "ema.safetensors") if parent else str(root / "s0.safetensors")
        return {"name": name, "out": root / name, "overrides": {"init": init}}

    return [run("a", None), run("b", "a"), run("c", "b"), run("d", "a")]


def test_only_unrecorded_runs_and_the_parents_they_need_are_trained(tmp_path):
    runs = _runs(tmp_path)
    assert runs_to_train(runs, set()) == {"a", "b", "c", "d"}
    assert runs_to_train(runs, {"a", "b", "c", "d"}) == set()
    # d is to train: it needs a's weights, which are not on disk; b and c are recorded and nobody needs them
    assert runs_to_train(runs, {"a", "b", "c"}) == {"a", "d"}
    # an evaluation still to do on c's weights needs c, so b, so a
    c_export = runs[2]["out"] / "final" / "ema.safetensors"
    assert runs_to_train(runs, {"a", "b", "c", "d"}, needed=[str(c_export)]) == {"a", "b", "c"}
    # weights on disk are used as they are
    a_export = runs[0]["out"] / "final" / "ema.safetensors"
    a_export.parent.mkdir(parents=True)
    a_export.write_bytes(b"w")
    assert runs_to_train(runs, {"a", "b", "c"}) == {"d"}


def test_provenance_names_machines_outside_starts_and_runs_whose_parent_was_trained_again(tmp_path):
    def rec(name, init, init_sha, export_sha, cpu="AVX2"):
        return {"name": name, "init": init, "init_sha256": init_sha, "export": f"OUT/{name}/final/ema.safetensors",
                "export_sha256": export_sha, "machine": {"cpu": cpu}}  # fmt: skip

    records = {
        "a": rec("a", "runs/recipe/s0.safetensors", "b" * 64, "1" * 64, "AVX512"),
        "b": rec("b", "OUT/a/final/ema.safetensors", "1" * 64, "2" * 64, "AVX512"),
        "d": rec("d", "OUT/a/final/ema.safetensors", "9" * 64, "3" * 64),  # a's weights were not the recorded ones
    }
    text = "\n".join(provenance_lines(records))
    assert "Runs recorded in the ledger: 3, trained on AVX2 (1), AVX512 (2)" in text
    assert "1 distinct (bbbbbbbbbbbb x1)" in text
    assert "trained again on another machine" in text and "d (from a)" in text and "b (from a)" not in text
    records["d"]["init_sha256"] = "1" * 64
    assert "trained again" not in "\n".join(provenance_lines(records))
    assert provenance_lines({}) == []


def test_an_evaluation_is_read_from_the_run_folder_or_the_ledger_and_written_to_both(tmp_path):
    ledger = Ledger(tmp_path / "ledger", tmp_path / "out")
    assert ledger.evaluation("x.json", lambda: {"v": 1}) == {"v": 1}
    assert json.loads((tmp_path / "ledger" / "eval" / "x.json").read_text()) == {"v": 1}
    assert json.loads((tmp_path / "out" / "eval" / "x.json").read_text()) == {"v": 1}
    elsewhere = Ledger(tmp_path / "ledger", tmp_path / "out2")  # another machine: the ledger only
    assert elsewhere.has_evaluation("x.json") and not elsewhere.has_evaluation("y.json")
    assert elsewhere.evaluation("x.json", lambda: pytest.fail("computed again")) == {"v": 1}
    with pytest.raises(HumoError, match="evaluation y.json is in neither"):
        elsewhere.evaluation("y.json")
    # a summary scored with other settings than the study's is refused, wherever it is read from
    scored = Ledger(tmp_path / "ledger", tmp_path / "out3", scoring={"eval_clips": 16, "eval_steps": 20})
    assert scored.evaluation("z.json", lambda: {"v": 2, "eval_clips": 16, "eval_steps": 20})["v"] == 2
    for out in ("out3", "out4"):  # the run folder's copy, then the ledger's
        other = Ledger(tmp_path / "ledger", tmp_path / out, scoring={"eval_clips": 16, "eval_steps": 10})
        with pytest.raises(HumoError, match=r"z.json was scored with other settings: eval_steps 20 \(stored\) vs 10"):
            other.evaluation("z.json", lambda: pytest.fail("computed again"))
    with pytest.raises(HumoError, match=r"x.json was scored with other settings: eval_clips None \(stored\) vs 16"):
        scored.evaluation("x.json")


def test_a_study_resumes_on_another_machine_from_its_ledger(recipe, tmp_path, monkeypatch):
    import humo.evaluation.ablation as ablation
    from humo.evaluation.ratio_study import RatioStudyConfig, run_study

    ledger = tmp_path / "ledger"
    cfg = RatioStudyConfig(
        recipe=str(recipe), out=str(tmp_path / "machine1"), train_config=str(recipe / "train.json"), seeds=[0],
        audio_ratios=[0.5, 1.0], pose_ratios=[0.2, 0.8], s1_steps=1, s2_steps=2, s3_steps=2, curve_points=2,
        eval_clips=2, eval_steps=1, train_overrides={"model_overrides": {"pose_hidden": 8}}, ledger=str(ledger),
    )  # fmt: skip
    first = run_study(cfg, log=lambda m: None)
    names = {"s1-seed0", "audio-50-seed0", "audio-100-seed0", "pose-20-seed0", "pose-80-seed0"}
    assert {p.stem for p in (ledger / "runs").glob("*.json")} == names
    pose = json.loads((ledger / "runs" / "pose-80-seed0.json").read_text())
    base = json.loads((ledger / "runs" / "audio-100-seed0.json").read_text())
    assert pose["eval_steps"] == [1, 2] and base["export_sha256"] == pose["init_sha256"]
    assert pose["config"]["condition_ratios"]["pose"] == 0.8 and "out" not in pose["config"]
    assert pose["init"] == "OUT/train/audio-100-seed0/final/ema.safetensors" == pose["config"]["init"]
    assert pose["machine"]["cpu"] and pose["training_seconds"] > 0
    table = (tmp_path / "machine1" / "ratios.md").read_text()
    assert "Runs recorded in the ledger: 5" in table

    # Another machine (a new run folder): everything is read from the ledger, nothing trained or scored.
    def boom(*a, **k):
        raise AssertionError("work repeated")

    with monkeypatch.context() as m:
        m.setattr(ablation.Evaluator, "__call__", boom)
        m.setattr("humo.training.loop.train", boom)
        again = run_study(dataclasses.replace(cfg, out=str(tmp_path / "machine2")), log=lambda m: None)
    assert again["final"] == first["final"] and again["claims"] == first["claims"]
    assert (tmp_path / "machine2" / "ratios.md").read_text() == table

    # A report of a study in progress, from a ledger that lacks a run: the tables of the runs finished, saying how
    # many, and nothing trained, scored or written to the ledger.
    partial = tmp_path / "ledger-partial"
    shutil.copytree(ledger, partial)
    (partial / "runs" / "pose-80-seed0.json").unlink()
    before = sorted(p.relative_to(partial) for p in partial.rglob("*"))
    with monkeypatch.context() as m:
        m.setattr(ablation.Evaluator, "__call__", boom)
        m.setattr("humo.training.loop.train", boom)
        m.setattr("humo.evaluation.ratio_study.check_recipe", boom)
        report = run_study(dataclasses.replace(cfg, out=str(tmp_path / "report"), ledger=str(partial)),
                           log=lambda m: None, report=True)  # fmt: skip
    assert set(report["final"]["pose"]) == {"pose 20%"} and report["final"]["audio"] == first["final"]["audio"]
    assert len(report["runs"]) == 4 and report["planned_runs"] == 5
    assert sorted(p.relative_to(partial) for p in partial.rglob("*")) == before
    partial_table = (tmp_path / "report" / "ratios.md").read_text()
    assert partial_table.startswith("**In progress: 4 of 5 runs finished.**")
    assert "| pose 20% |" in partial_table and "| pose 80% |" not in partial_table
    assert "(1 seed)" in partial_table and "In progress" not in table
    # A run finished in the run folder (machine 1's) but not in the ledger counts, and is still not written to it.
    for q in (partial / "eval").glob("pose-80-seed0-*.json"):
        q.unlink()
    before = sorted(p.relative_to(partial) for p in partial.rglob("*"))
    with monkeypatch.context() as m:
        m.setattr(ablation.Evaluator, "__call__", boom)
        m.setattr("humo.training.loop.train", boom)
        on_disk = run_study(dataclasses.replace(cfg, ledger=str(partial)), log=lambda m: None, report=True)
    assert on_disk["final"] == first["final"] and len(on_disk["runs"]) == 5
    assert sorted(p.relative_to(partial) for p in partial.rglob("*")) == before
    # ... and of the whole ledger: the study's own tables
    full = run_study(dataclasses.replace(cfg, out=str(tmp_path / "report2")), log=lambda m: None, report=True)
    assert full["final"] == first["final"] and (tmp_path / "report2" / "ratios.md").read_text() == table

    # A run the ledger lacks: its parents are trained again (they are not on this machine), the other runs not.
    (ledger / "runs" / "pose-80-seed0.json").unlink()
    for p in (ledger / "eval").glob("pose-80-seed0-*.json"):
        p.unlink()
    messages = []
    third = run_study(dataclasses.replace(cfg, out=str(tmp_path / "machine3")), log=messages.append)
    trained = {m.split()[2] for m in messages if m.startswith("ratios: training ")}
    assert trained == {"s1-seed0", "audio-100-seed0", "pose-80-seed0"}
    assert any("audio-100-seed0 is in the ledger; training it again" in m for m in messages)
    assert third["final"]["audio"] == first["final"]["audio"]  # the recorded runs keep their first scores
    moved = json.loads((ledger / "runs" / "pose-80-seed0.json").read_text())["init_sha256"] != base["export_sha256"]
    assert ("pose-80-seed0 (from audio-100-seed0)" in (tmp_path / "machine3" / "ratios.md").read_text()) == moved

    # Scores of other scoring settings are refused, not mixed into the tables.
    with pytest.raises(HumoError, match=r"scored with other settings: eval_steps 1 \(stored\) vs 2"):
        run_study(dataclasses.replace(cfg, out=str(tmp_path / "machine2"), eval_steps=2), log=lambda m: None)

    # A ledger of another study is refused, naming the field that differs.
    with pytest.raises(HumoError, match=r"s1-seed0 in the ledger .* another configuration: steps 1 \(stored\) vs 3"):
        run_study(dataclasses.replace(cfg, out=str(tmp_path / "machine4"), s1_steps=3), log=lambda m: None)


def test_the_presets_ledgers_are_not_ignored_by_git():
    import pathlib
    import subprocess

    root = pathlib.Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    ledgers = [json.loads(p.read_text()).get("ledger") for p in sorted((root / "configs").glob("*.json"))]
    ledgers = [d for d in ledgers if d]
    assert "results/ratios-v2" in ledgers and "results/ablate-v4" in ledgers
    for d in ledgers:
        for kind in ("runs", "eval"):
            path = f"{d}/{kind}/x.json"
            ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=root).returncode == 0
            assert not ignored, f"{path} is ignored by git: the ledger would not be committed"
