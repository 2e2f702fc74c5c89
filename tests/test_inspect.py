"""`humo inspect`: what a checkpoint is, and a named error when it lacks keys of the layout its shapes point to."""

import json

from safetensors.torch import save_file

from humo.checkpoint import save_dit
from humo.cli import main
from tests.helpers import tiny_model


def test_inspect_names_missing_keys_and_does_not_invent_a_head_count(tmp_path, capsys):
    model = tiny_model("humo-1.7b", seed=0)  # width 64, 4 heads: no preset has this structure
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(tmp_path / "bare.safetensors"))  # no config metadata: the shapes must speak
    assert main(["inspect", str(tmp_path / "bare.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "heads unknown" in out and "heads 1," not in out
    assert "parameters" in out and "audio yes" in out

    save_dit(model, tmp_path / "ours.safetensors")  # our files carry the config: 4 heads are known
    assert main(["inspect", str(tmp_path / "ours.safetensors"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["heads_known"] and info["config"]["num_heads"] == 4

    del sd["blocks.1.ffn.0.bias"]
    save_file(sd, str(tmp_path / "broken.safetensors"))
    assert main(["inspect", str(tmp_path / "broken.safetensors")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing keys: blocks.1.ffn.0.bias" in err[0]


def test_inspect_reads_a_training_checkpoint_folder(tmp_path, capsys):
    from humo.checkpoint import save_state_dict

    model = tiny_model("humo-1.7b", seed=0)
    folder = tmp_path / "step_00000010"
    folder.mkdir()
    save_dit(model, folder / "model.safetensors")
    save_state_dict(
        {k: v for k, v in model.state_dict().items() if k.startswith("blocks.0.")}, folder / "ema.safetensors"
    )
    assert main(["inspect", str(folder)]) == 0
    assert "heads 4" in capsys.readouterr().out
