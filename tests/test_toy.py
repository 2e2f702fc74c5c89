"""The toy weights folder: assembled from trained parts, loadable by the pipeline, replaced whole."""

from __future__ import annotations

import torch

from humo.checkpoint import load_dit, save_dit
from humo.pipeline import HumoPipeline
from humo.toy import assemble_weights, toy_components


def test_assemble_uses_the_given_dit_in_bf16_and_replaces_the_folder(tmp_path):
    dit = toy_components(seed=3)[0]
    with torch.no_grad():
        for p in dit.parameters():
            p.add_(0.01)  # not the seed-0 toy DiT the folder would otherwise get
    save_dit(dit, tmp_path / "trained.safetensors")
    out = tmp_path / "model"
    (out / "stale").mkdir(parents=True)
    assemble_weights(out, dit=tmp_path / "trained.safetensors", dit_dtype="bf16")
    assert not (out / "stale").exists()
    assert sorted(p.name for p in out.iterdir()) == ["dit.safetensors", "text", "vae", "whisper"]
    stored = load_dit(out / "dit.safetensors")
    for (k, a), b in zip(dit.state_dict().items(), stored.state_dict().values(), strict=True):
        assert b.dtype == torch.bfloat16 and torch.equal(a.to(torch.bfloat16), b), k
    pipe = HumoPipeline.from_pretrained(out, "toy", device="cpu", offload=False, progress=False)
    assert next(pipe.dit.parameters()).dtype == torch.float32  # the toy layout computes in fp32
    assert not list(tmp_path.glob(".model.*"))  # no temporary folder left behind
