"""The training config: file + KEY=VALUE overrides, typed and checked."""

from __future__ import annotations

import json

import pytest

from humo.cli import main
from humo.errors import HumoError
from humo.training.config import TrainConfig, load_config


def test_file_then_overrides(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"stage": 1, "lr": 0.001, "model_overrides": {"dim": 64}, "cache": "c"}))
    cfg = load_config(path, ["stage=2", "lr=1e-4", "model_overrides.num_layers=4", "split=null", "precision=fp32"])
    assert cfg.stage == 2 and cfg.lr == 1e-4 and cfg.split is None and cfg.precision == "fp32"
    assert cfg.model_overrides == {"dim": 64, "num_layers": 4}
    assert cfg.cache == "c" and cfg.batch_size == TrainConfig().batch_size  # untouched fields keep defaults
    assert load_config(None, ["adam_betas=[0.9, 0.95]", "trainable=all", "ema_decay=0"]).adam_betas == [0.9, 0.95]
    assert load_config(None, ["trainable=all"]).trainable == "full"
    assert isinstance(load_config(None, ["lr=1"]).lr, float)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_toml(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text("stage = 0\nsteps = 3\n[model_overrides]\nnum_layers = 2\n")
    cfg = load_config(path)
    assert cfg.stage == 0 and cfg.steps == 3 and cfg.model_overrides == {"num_layers": 2}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["stge=2"], "unknown field.*stge"),
        (["stage=two"], "stage: expected an integer"),
        (["stage=3"], "stage 3: must be 0, 1 or 2"),
        (["single_stage=true"], "single_stage: set stage=2"),
        (["text_dropout=1.5"], "text_dropout 1.5"),
        (["precision=fp8"], "precision 'fp8'"),
        (["trainable=some"], "trainable 'some'"),
        (["lr"], "expected KEY=VALUE"),
        (["lr.x=1"], "only dict fields"),
        (["progress=maybe"], "expected true or false"),
    ],
)
def test_bad_values_are_one_line_errors(overrides, message):
    with pytest.raises(HumoError, match=message) as e:
        load_config(None, overrides)
    assert "\n" not in str(e.value)


def test_bad_files(tmp_path):
    with pytest.raises(HumoError, match="file not found"):
        load_config(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(HumoError, match="not valid JSON"):
        load_config(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(HumoError, match="top level must be an object"):
        load_config(tmp_path / "list.json")


def test_cli_prints_the_resolved_config(capsys):
    assert main(["train", "--set", "stage=2", "--set", "lr=3e-4", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["stage"] == 2 and printed["lr"] == 3e-4
    assert main(["train", "--set", "stage=9"]) == 2
    assert "stage 9" in capsys.readouterr().err
