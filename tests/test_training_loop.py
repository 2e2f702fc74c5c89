"""The trainer end to end on tiny synthetic caches: stages, trainable sets, LoRA, exports, init chaining."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from humo.checkpoint import load_dit, save_dit
from humo.dit import HumoDiT
from humo.errors import HumoError
from humo.training.loop import Trainer, load_init, train
from humo.training.objective import compute_loss, draw
from tests.helpers import TINY, TINY_AUDIO, synthetic_cache, tiny_cfg, tiny_train_config

MODEL = {**TINY, **TINY_AUDIO, "mask_head_blocks": 2}


# training runs on one thread: tiny models are faster so, and the two test workers do not share cores
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def cache(tmp_path):
    synthetic_cache(
        tmp_path / "cache",
        samples=4,
        text_dim=MODEL["text_dim"],
        audio_window=(8, 5, MODEL["audio_feat_dim"]),
        with_refs=[True, False, True, True],
        with_audio=[True, True, False, True],
    )
    return tmp_path / "cache"


def _cfg(cache, out, **kw):
    return tiny_train_config(cache, out, **kw)


def _log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_stage1_moves_only_self_attention_and_exports_the_ema(cache, tmp_path):
    trainer = Trainer(_cfg(cache, tmp_path / "run", stage=1, steps=3))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    summary = trainer.run()
    after = trainer.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".self_attn." in k for k in changed)
    assert [r["step"] for r in _log(tmp_path / "run")] == [1, 2, 3]
    assert _log(tmp_path / "run")[-1]["samples"] == 6

    exported = load_dit(summary["export"])  # a plain HumoDiT checkpoint, strict
    assert exported.cfg == trainer.dit_cfg
    sd = exported.state_dict()
    for k, v in sd.items():
        want = trainer.ema.shadow[k] if k in trainer.ema.shadow else after[k]
        assert torch.equal(v, want), k
    assert any(not torch.equal(sd[k], after[k]) for k in trainer.ema.shadow)  # the EMA, not the last weights
    assert (tmp_path / "run" / "checkpoints" / "step_00000003" / "state.json").is_file()


def test_stage2_with_lora_trains_adapters_audio_and_mask_head(cache, tmp_path):
    trainer = Trainer(_cfg(cache, tmp_path / "run", stage=2, lora_rank=2))
    names = set(trainer.params)
    assert any(".lora_A." in n for n in names) and any(n.startswith("audio_proj.") for n in names)
    assert any(n.startswith("mask_head.") for n in names)
    assert not any(".base_layer." in n for n in names)
    summary = trainer.run()
    log = _log(tmp_path / "run")
    assert all(r["mask"] > 0 for r in log) and log[0]["av_fraction"] == pytest.approx(0.2)
    plain = HumoDiT(trainer.dit_cfg)
    plain.load_state_dict(load_file(summary["export"]), strict=True)
    adapters = load_file(str(tmp_path / "run" / "final" / "lora_adapter.safetensors"))
    assert adapters and all(".lora_" in k for k in adapters)


def test_without_the_mask_head_the_model_has_none(cache, tmp_path):
    summary = train(_cfg(cache, tmp_path / "run", stage=2, mask_head=False, grad_accum=2, batch_size=1))
    assert not any(k.startswith("mask_head.") for k in load_file(summary["export"]))
    assert all(r["mask"] == 0 for r in _log(tmp_path / "run"))
    with pytest.raises(HumoError, match="no mask head"):
        Trainer(_cfg(cache, tmp_path / "x", stage=2, model_overrides={**MODEL, "mask_head_blocks": 0}))


def test_stages_chain_through_init_and_concat_layout_trains(cache, tmp_path):
    s0 = train(_cfg(cache, tmp_path / "s0", stage=0))
    s0_sd = load_file(s0["export"])
    assert all(v.abs().sum() == 0 for k, v in s0_sd.items() if "audio_cross_attn.o." in k)  # untrained: zero
    trainer = Trainer(_cfg(cache, tmp_path / "s1", stage=1, init=s0["export"]))
    sd = trainer.model.state_dict()
    assert all(torch.equal(sd[k], s0_sd[k]) for k in s0_sd)
    trainer.run()
    concat = {**MODEL, "in_dim": 36}
    train(_cfg(cache, tmp_path / "c", stage=2, model="humo-17b", model_overrides=concat, steps=1))


def test_init_from_a_backbone_without_audio_and_bad_inits(tmp_path):
    backbone = HumoDiT(tiny_cfg("humo-1.7b", audio=False, mask_head_blocks=0))
    save_dit(backbone, tmp_path / "wan.safetensors")
    model = HumoDiT(tiny_cfg("humo-1.7b", mask_head_blocks=2))
    fresh = load_init(model, tmp_path / "wan.safetensors")
    assert fresh and all("audio" in k or k.startswith("mask_head.") for k in fresh)
    assert torch.equal(model.state_dict()["blocks.0.ffn.0.weight"], backbone.state_dict()["blocks.0.ffn.0.weight"])
    other = HumoDiT(tiny_cfg("humo-1.7b", mask_head_blocks=2, dim=32, num_heads=2))
    save_dit(other, tmp_path / "other.safetensors")
    with pytest.raises(HumoError, match="wrong shapes"):
        load_init(model, tmp_path / "other.safetensors")


def test_training_lowers_the_loss_on_fixed_draws(cache, tmp_path):
    cfg = _cfg(cache, tmp_path / "run", stage=0, steps=25, lr=3e-3, text_dropout=0.0, log_every=25)
    trainer = Trainer(cfg)
    from humo.data.loader import Collate

    batch = Collate(0)([trainer.dataset[(i, "t2v")] for i in range(4)])
    draws = draw(torch.Generator().manual_seed(0), 4, (16, 2, 4, 4), cfg)

    def loss():
        with torch.no_grad():
            return compute_loss(
                trainer.model, batch, draws, trainer.null_text, reference_mode="replace", use_audio=False
            )[0]

    start = loss().item()
    trainer.run()
    assert loss().item() < 0.8 * start


def test_a_stage_without_usable_samples_is_an_error(tmp_path):
    synthetic_cache(tmp_path / "c", samples=2, text_dim=MODEL["text_dim"], with_refs=[False, False])
    with pytest.raises(HumoError, match="task 'subject' needs samples with reference images"):
        Trainer(_cfg(tmp_path / "c", tmp_path / "run", stage=1))
    with pytest.raises(HumoError, match="text embeddings are 32 wide"):
        Trainer(_cfg(tmp_path / "c", tmp_path / "run", stage=0, model_overrides={**MODEL, "text_dim": 16}))


def test_gradient_checkpointing_gives_the_same_gradients(cache, tmp_path):
    grads = []
    for ckpt in (False, True):
        trainer = Trainer(_cfg(cache, tmp_path / f"run{ckpt}", stage=2, gradient_checkpointing=ckpt))
        from humo.data.loader import Collate

        batch = Collate(1, [8, 5, MODEL["audio_feat_dim"]])([trainer.dataset[(i, "av")] for i in (0, 1)])
        draws = draw(torch.Generator().manual_seed(0), 2, (16, 3, 4, 4), trainer.cfg)
        loss, _ = compute_loss(
            trainer.model, batch, draws, trainer.null_text, reference_mode="replace", use_audio=True, mask_weight=0.1
        )
        loss.backward()
        grads.append({k: p.grad.clone() for k, p in trainer.params.items()})
    assert grads[0].keys() == grads[1].keys()
    assert all(torch.allclose(grads[0][k], grads[1][k], atol=1e-6) for k in grads[0])


def test_tensorboard_progress_and_the_bench(cache, tmp_path, capsys):
    from humo.cli import main

    train(_cfg(cache, tmp_path / "run", stage=1, steps=1, tensorboard=True, progress=True))
    assert any((tmp_path / "run" / "tensorboard").iterdir())
    bench = ["bench", "train", "--steps", "1", "--warmup", "0", "--size", "4", "--frames", "1", "--batch", "1"]
    assert main(bench) == 0
    out = capsys.readouterr().out
    assert "fp32" in out and "bf16" in out and "ratio bf16/fp32 = " in out


def _posed(tmp_path, with_pose, **kw):
    """A synthetic cache at tmp_path/c whose samples have a pose where `with_pose`, a HuMo export without a guider,
    and the stage-2 settings that give the DiT one (with `kw`)."""
    synthetic_cache(
        tmp_path / "c", samples=len(with_pose), text_dim=MODEL["text_dim"],
        audio_window=(8, 5, MODEL["audio_feat_dim"]), with_pose=with_pose,
    )  # fmt: skip
    base = tmp_path / "humo.safetensors"
    save_dit(HumoDiT(tiny_cfg("humo-1.7b", **MODEL)), base)
    return dict(stage=2, model_overrides={**MODEL, "pose_channels": 4, "pose_hidden": 8}, init=str(base), **kw)


def test_a_dit_with_a_pose_guider_trains_on_the_samples_that_have_a_pose(tmp_path):
    """OmniHuman-1's pose condition in the one trainer: from a HuMo export without a guider, a fresh (zero
    embedding) guider learns from the samples with keypoints, kept at pose_ratio; at ratio 0 it never sees one."""
    kw = _posed(tmp_path, [True, True, False, True], steps=3, weight_decay=0.0, pose_ratio=1.0)
    trainer = Trainer(_cfg(tmp_path / "c", tmp_path / "run", **kw))
    assert trainer.dataset.pose and any(n.startswith("pose_guider.") for n in trainer.params)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items() if k.startswith("pose_guider.")}
    assert not before["pose_guider.patch_embedding.weight"].any()  # zero-initialised: the export is unchanged
    summary = trainer.run()
    after = load_file(summary["export"])
    assert after["pose_guider.patch_embedding.weight"].abs().sum() > 0  # learned (no weight decay to move it)
    assert not torch.equal(after["pose_guider.encoder.0.weight"], before["pose_guider.encoder.0.weight"])
    assert load_dit(summary["export"]).cfg.pose_channels == 4
    # pose_ratio 0: every pose is dropped, the guider gets no gradient and its embedding stays zero
    none = train(_cfg(tmp_path / "c", tmp_path / "none", **{**kw, "pose_ratio": 0.0, "steps": 2}))
    assert not load_file(none["export"])["pose_guider.patch_embedding.weight"].any()


def test_a_pose_guider_on_a_cache_without_poses_is_refused_before_training(tmp_path):
    """A cache written before precompute kept keypoints (or of clips without tracks) would train a guider that never
    sees a pose: refused with a one-line error, unless the pose ratio is 0."""
    kw = _posed(tmp_path, [False, False], steps=1, pose_ratio=0.5)
    with pytest.raises(HumoError, match="no sample of .* has pose keypoints"):
        Trainer(_cfg(tmp_path / "c", tmp_path / "run", **kw))
    Trainer(_cfg(tmp_path / "c", tmp_path / "zero", **{**kw, "pose_ratio": 0.0}))  # no pose trained: allowed


def test_the_pose_loss_weight_weighs_the_hands_and_needs_the_poses(tmp_path):
    """pose_loss_weight changes the first step's loss on samples with a pose (the same draws otherwise), and asks
    for a stage that reads the poses: refused with a one-line error without a pose guider."""
    kw = _posed(tmp_path, [True, True], steps=1, pose_ratio=1.0, batch_size=2, log_every=1)
    losses = []
    for name, weight in (("plain", 0.0), ("hands", 8.0)):
        run = tmp_path / name
        train(_cfg(tmp_path / "c", run, **kw, pose_loss_weight=weight, pose_loss_joints=["nose", "left_wrist"]))
        losses.append([json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()][-1]["loss"])
    assert losses[0] != losses[1]
    with pytest.raises(HumoError, match="pose_loss_weight 8: needs the clips' poses"):
        Trainer(_cfg(tmp_path / "c", tmp_path / "x", **{**kw, "model_overrides": MODEL}, pose_loss_weight=8.0))
    with pytest.raises(HumoError, match="pose_loss_joints \\['wrist'\\]: unknown"):
        Trainer(_cfg(tmp_path / "c", tmp_path / "y", **kw, pose_loss_weight=8.0, pose_loss_joints=["wrist"]))
