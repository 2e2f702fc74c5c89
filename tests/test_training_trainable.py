"""Trainable sets: minimal-invasive (self-attention [+ audio, mask head]), full, LoRA; merged exports."""

from __future__ import annotations

import re

import pytest
import torch

from humo.dit import HumoDiT
from humo.training.trainable import (
    apply_lora,
    lora_state_dict,
    merged_state_dict,
    set_trainable,
    trainable_names,
    zero_audio_output,
)
from tests.helpers import dit_inputs, randomize, tiny_cfg

# training runs on one thread: tiny models are faster so, and the two test workers do not share cores
pytestmark = pytest.mark.usefixtures("one_thread")


def _model(**kw):
    return randomize(HumoDiT(tiny_cfg("humo-1.7b", mask_head_blocks=2, **kw)), seed=3)


def test_minimal_set_is_self_attention_then_audio_and_mask_head():
    model = _model()
    stage1 = trainable_names(model, "minimal", audio=False, mask=False)
    assert stage1 and all(re.match(r"blocks\.\d+\.self_attn\.", n) for n in stage1)
    attn = [n for n, _ in model.named_parameters() if ".self_attn." in n]
    assert sorted(stage1) == sorted(attn)
    stage2 = set(trainable_names(model, "minimal", audio=True, mask=True)) - set(stage1)
    assert any(n.startswith("audio_proj.") for n in stage2)
    assert any(".audio_cross_attn_wrapper." in n for n in stage2)
    assert any(n.startswith("mask_head.") for n in stage2)
    assert all(n.startswith(("audio_proj.", "mask_head.")) or ".audio_cross_attn_wrapper." in n for n in stage2)


def test_full_set_skips_only_what_the_stage_never_runs():
    model = _model()
    everything = {n for n, _ in model.named_parameters()}
    full0 = set(trainable_names(model, "full", audio=False, mask=False))
    assert everything - full0 == {n for n in everything if "audio" in n or n.startswith("mask_head.")}
    assert set(trainable_names(model, "full", audio=True, mask=True)) == everything
    params = set_trainable(model, sorted(full0))
    assert {n for n, p in model.named_parameters() if p.requires_grad} == full0 == set(params)


def test_lora_trains_adapters_and_the_merged_export_is_a_plain_model():
    model = _model()
    x, t, ctx, audio, y = dit_inputs(model.cfg, batch=1, frames=2, h=4, w=4)
    before = model(x, t, ctx, audio=audio)
    apply_lora(model, rank=2, alpha=4)
    assert torch.allclose(model(x, t, ctx, audio=audio), before, atol=1e-6)  # lora_B starts at zero
    names = trainable_names(model, "minimal", audio=True, mask=True)
    assert any(".lora_A." in n for n in names) and any(".lora_B." in n for n in names)
    assert not any(".base_layer." in n for n in names)
    assert not any(re.search(r"self_attn\.(q|k|v|o)\.(weight|bias)$", n) for n in names)
    assert any(n.endswith("self_attn.norm_q.weight") for n in names)
    with torch.no_grad():  # pretend training happened
        for n, p in model.named_parameters():
            if ".lora_B." in n:
                p.normal_(0, 0.2)
    tuned = model(x, t, ctx, audio=audio)
    assert not torch.allclose(tuned, before, atol=1e-3)

    plain = HumoDiT(model.cfg)
    plain.load_state_dict(merged_state_dict(model), strict=True)
    assert torch.allclose(plain(x, t, ctx, audio=audio), tuned, atol=1e-4)
    adapters = lora_state_dict(model)
    assert adapters and all(".lora_" in k for k in adapters)
    assert len(adapters) == 2 * 4 * model.cfg.num_layers  # A and B for q, k, v, o of every block


def test_zero_audio_output_makes_an_untrained_audio_branch_the_identity():
    model = _model()
    x, t, ctx, audio, _ = dit_inputs(model.cfg, batch=1, frames=2, h=4, w=4)
    assert not torch.allclose(model(x, t, ctx, audio=audio), model(x, t, ctx))
    assert zero_audio_output(model) == model.cfg.num_layers
    assert torch.allclose(model(x, t, ctx, audio=audio), model(x, t, ctx), atol=1e-6)
