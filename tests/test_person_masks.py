"""InterActHuman in the DiT: local audio injection, the person mask predictor, focal loss, user boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from humo.errors import HumoError
from humo.person_masks import (
    PersonAudio,
    box_mask,
    check_box,
    feather,
    focal_loss,
    local_audio_weights,
    parse_box,
)
from tests.helpers import dit_inputs, tiny_cfg, tiny_model

# The tiny 1.7B layout: 3 video latent frames then 2 reference frames (one per person), 8x8 latents, 2x2 patches.
FRAMES, REFS = 3, 2


def _model(**kw):
    return tiny_model("humo-1.7b", person_mask_blocks=2, person_mask_dim=32, **kw)


def _inputs(cfg, batch=1, seed=1):
    x, t, ctx, audio, _ = dit_inputs(cfg, batch=batch, frames=FRAMES + REFS, seed=seed)
    audio[:, FRAMES:] = 0  # reference frames carry zero windows
    return x, t, ctx, audio


def _persons(cfg, batch, masks, seed=2, ref_frames=(FRAMES, FRAMES + 1)):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(batch, len(ref_frames), FRAMES + REFS, cfg.audio_window, cfg.audio_groups, cfg.audio_feat_dim,
                    generator=g)  # fmt: skip
    w[:, :, FRAMES:] = 0
    return PersonAudio(windows=w, masks=masks, ref_frames=ref_frames)


def test_one_persons_full_mask_is_that_persons_audio_everywhere():
    dit = _model()
    cfg = dit.cfg
    x, t, ctx, _ = _inputs(cfg)
    persons = _persons(cfg, 1, torch.ones(1, 1, FRAMES, 8, 8), ref_frames=(FRAMES,))
    own = persons.windows[:, 0]
    with torch.no_grad():
        local = dit(x, t, ctx, audio=torch.zeros_like(own), persons=persons)
        plain = dit(x, t, ctx, audio=own)
    assert torch.allclose(local, plain, atol=1e-5 * plain.abs().max())


def test_empty_masks_are_muted_audio_and_differ_from_the_mix():
    dit = _model()
    cfg = dit.cfg
    x, t, ctx, mix = _inputs(cfg)
    persons = _persons(cfg, 1, torch.zeros(1, 2, FRAMES, 8, 8))
    with torch.no_grad():
        local = dit(x, t, ctx, audio=mix, persons=persons)
        muted = dit(x, t, ctx, audio=torch.zeros_like(mix))
        global_mix = dit(x, t, ctx, audio=mix)
        no_masks = dit(x, t, ctx, audio=mix, persons=PersonAudio(persons.windows, None, persons.ref_frames))
    assert torch.allclose(local, muted, atol=1e-5 * muted.abs().max())
    assert not torch.allclose(local, global_mix, atol=1e-3)
    assert torch.equal(no_masks, global_mix)  # no masks given: the mix everywhere, as before persons existed


def test_each_persons_audio_reaches_only_their_region_in_the_audio_branch():
    """At the audio cross-attention itself (before self-attention mixes tokens): changing person 1's audio moves
    the tokens of person 1's region and leaves person 0's untouched."""
    dit = _model()
    cfg = dit.cfg
    masks = torch.zeros(1, 2, FRAMES, 8, 8)
    masks[:, 0, :, :, :4] = 1  # person 0 on the left half, person 1 on the right half
    masks[:, 1, :, :, 4:] = 1
    x, t, ctx, mix = _inputs(cfg)
    persons = _persons(cfg, 1, masks)
    other = _persons(cfg, 1, masks, seed=7)
    other.windows[:, 0] = persons.windows[:, 0]  # person 0 keeps their audio, person 1 gets another
    branch = dit.blocks[0].audio_cross_attn_wrapper
    h = torch.randn(1, (FRAMES + REFS) * 16, cfg.dim)
    outs = []
    with torch.no_grad():
        for p in (persons, other):
            emb = dit.embed(x, t, ctx, audio=mix, persons=p)
            outs.append(branch(h, emb.audio_tokens, emb.audio_weights).reshape(FRAMES + REFS, 4, 4, cfg.dim))
    left, right = (slice(0, 2), slice(2, 4))
    assert torch.equal(outs[0][:FRAMES, :, left], outs[1][:FRAMES, :, left])
    assert not torch.allclose(outs[0][:FRAMES, :, right], outs[1][:FRAMES, :, right], atol=1e-4)


def test_local_audio_weights_sum_to_one_and_scale_down_overlaps():
    masks = torch.zeros(1, 2, 2, 4, 4)
    masks[:, 0, :, :, :3] = 1
    masks[:, 1, :, :, 1:] = 0.5  # overlaps person 0 on columns 1-2
    w = local_audio_weights(masks, (1, 1, 1), num_frames=3)  # 2 masked frames + 1 reference frame
    assert w.shape == (1, 3, 3 * 16)
    assert torch.allclose(w.sum(1), torch.ones(1, 48))
    grid = w.reshape(1, 3, 3, 4, 4)
    assert torch.allclose(grid[0, 0, 2], torch.ones(4, 4))  # the reference frame hears muted audio
    assert torch.allclose(grid[0, 1, 0, :, 1], torch.full((4,), 1 / 1.5))  # overlap: 1 and 0.5 scaled to sum 1
    assert torch.allclose(grid[0, 0, 0, :, 3], torch.full((4,), 0.5))  # outside person 0: half muted
    pooled = local_audio_weights(masks, (1, 2, 2), num_frames=2)  # patches: the mean over each 2x2 patch
    assert pooled.shape == (1, 3, 2 * 4)


def test_predictor_gives_a_mask_per_person_and_trains_into_the_backbone():
    dit = _model()
    cfg = dit.cfg
    x, t, ctx, mix = _inputs(cfg, batch=2)
    persons = _persons(cfg, 2, None)
    out, face, logits = dit(x, t, ctx, audio=mix, persons=persons, return_persons=True)
    assert face is None and out.shape == x.shape
    assert logits.shape == (2, 2, FRAMES, 8, 8)
    target = torch.zeros_like(logits)
    target[:, 0, :, :, :4] = 1
    focal_loss(logits, target).backward()
    assert dit.person_masks.taps[0].qkv.weight.grad.abs().sum() > 0
    assert dit.blocks[-1].self_attn.q.weight.grad.abs().sum() > 0  # the joint objective reaches the backbone


def test_predictor_parameters_are_shared_across_persons():
    """Swapping the persons' references swaps their masks: one set of weights, applied per reference."""
    dit = _model()
    cfg = dit.cfg
    x, t, ctx, mix = _inputs(cfg)
    with torch.no_grad():
        _, _, a = dit(x, t, ctx, audio=mix, persons=_persons(cfg, 1, None), return_persons=True)
        _, _, b = dit(x, t, ctx, audio=mix, persons=_persons(cfg, 1, None, ref_frames=(FRAMES + 1, FRAMES)),
                      return_persons=True)  # fmt: skip
    assert torch.allclose(a[:, 0], b[:, 1]) and torch.allclose(a[:, 1], b[:, 0])
    assert not torch.allclose(a[:, 0], a[:, 1])


def test_model_without_persons_is_unchanged_by_the_predictor():
    """A predictor is built last: the other modules' random initialisation and outputs are as without it."""
    from humo.dit import HumoDiT

    torch.manual_seed(3)
    plain = HumoDiT(tiny_cfg("humo-1.7b")).eval()
    torch.manual_seed(3)
    with_pred = HumoDiT(tiny_cfg("humo-1.7b", person_mask_blocks=1)).eval()
    sd = with_pred.state_dict()
    assert all(torch.equal(v, sd[k]) for k, v in plain.state_dict().items())
    x, t, ctx, mix = _inputs(plain.cfg)
    with torch.no_grad():
        assert torch.equal(plain(x, t, ctx, audio=mix), with_pred(x, t, ctx, audio=mix))


def test_config_counts_and_checkpoints_carry_the_predictor(tmp_path):
    from humo.checkpoint import infer_config, load_dit, read_shapes, save_dit

    dit = _model()
    assert sum(p.numel() for p in dit.parameters()) == dit.cfg.num_params()
    path = save_dit(dit, tmp_path / "persons.safetensors")
    loaded = load_dit(path)
    assert loaded.cfg == dit.cfg
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in dit.state_dict().items())
    inferred = infer_config(read_shapes(path)[0])  # without the metadata, the shapes tell it
    assert (inferred.person_mask_blocks, inferred.person_mask_dim) == (2, 32)
    assert not any(k.startswith("person_masks") for k in tiny_model("humo-1.7b").state_dict())


def test_step_cache_keeps_the_person_masks_of_skipped_rows():
    from humo.step_cache import cached_forward

    dit = _model()
    cfg = dit.cfg
    x, t, ctx, mix = _inputs(cfg)
    inputs = dict(x=x, t=t, context=ctx, audio=mix, persons=_persons(cfg, 1, None))
    with torch.no_grad():
        _, _, first = cached_forward(dit, inputs, None, 0.5, return_persons=True)
        _, _, again = cached_forward(dit, {**inputs, "x": x * 1.0001}, first, 0.5, return_persons=True)
        _, _, full = dit(**inputs, return_persons=True)
    assert torch.allclose(first.person_logits, full)
    assert not bool(again.computed.any()) and torch.equal(again.person_logits, first.person_logits)


def test_focal_loss_is_low_for_right_masks_high_for_wrong_ones_and_skips_invalid_frames():
    target = torch.zeros(1, 2, 3, 8, 8)
    target[:, 0, :, :, :4] = 1
    target[:, 1, :, :, 4:] = 1
    right = (target * 2 - 1) * 6
    wrong = -right
    assert focal_loss(right, target) < 1e-3 < 0.1 < focal_loss(wrong, target)
    valid = torch.ones(1, 2, 3, dtype=torch.bool)
    valid[:, :, 1] = False
    mixed = right.clone()
    mixed[:, :, 1] = wrong[:, :, 1]  # wrong only on a frame without a usable mask
    assert focal_loss(mixed, target, valid) == pytest.approx(float(focal_loss(right, target)), abs=1e-6)
    assert float(focal_loss(wrong, target, torch.zeros_like(valid))) == 0.0


def test_face_weighted_focal_loss_counts_the_faces_more_and_a_uniform_weight_changes_nothing():
    target = torch.zeros(1, 2, 3, 8, 8)
    target[:, 0, :, :, :4] = 1
    target[:, 1, :, :, 4:] = 1
    face = torch.zeros(1, 1, 3, 8, 8)
    face[..., 1:3, 1:3] = 1  # person 0's face: 4 of the 64 pixels
    right = (target * 2 - 1) * 6
    soft_face = torch.where(face.expand_as(right) > 0, torch.zeros_like(right), right)  # unsure (0.5) on the face
    plain = float(focal_loss(soft_face, target))
    assert float(focal_loss(soft_face, target, weight=torch.full_like(face, 3.0))) == pytest.approx(plain, rel=1e-6)
    weighted = [float(focal_loss(soft_face, target, weight=1 + w * face)) for w in (0.0, 4.0, 16.0)]
    assert weighted[0] == pytest.approx(plain, rel=1e-6) and weighted[0] * 3 < weighted[1] < weighted[2]
    # Right on the faces and unsure elsewhere: the face weight lowers the loss instead.
    soft_body = torch.where(face.expand_as(right) > 0, right, torch.zeros_like(right))
    assert float(focal_loss(soft_body, target, weight=1 + 16 * face)) < float(focal_loss(soft_body, target))
    assert float(focal_loss(right, target, weight=1 + 16 * face)) < 1e-3


def test_boxes_feathered_on_the_latent_grid_and_bad_boxes_named(capsys):
    m = box_mask(parse_box("0,0,32,64"), 64, 64)  # the left half of a 64x64 frame
    assert m[:, :32].min() == 1 and m[:, 32:].max() == 0
    soft = feather(m, (16, 16))
    assert soft[:, :6].min() > 0.95 and soft[:, 10:].max() < 0.05
    assert 0.2 < soft[8, 7] < 0.8 and 0.2 < soft[8, 8] < 0.8  # a soft edge, not a cut
    half = box_mask((0.5, 0, 2, 1), 4, 4)  # fractional pixels count by their covered area
    assert np.allclose(half[0], [0.5, 1, 0, 0])
    for bad, why in (("1,2,3", "four numbers"), ("a,b,c,d", "four numbers"), ("5,0,2,4", "x1 > x0")):
        with pytest.raises(HumoError, match=why):
            parse_box(bad)
    with pytest.raises(HumoError, match="outside the 64x64 frame"):
        check_box((70, 0, 90, 10), 64, 64)
    assert check_box((0, 0, 64, 32), 64, 64) == (0, 0, 64, 32)  # inside: as given, nothing said
    assert capsys.readouterr().err == ""
    assert check_box((-10, -10, 5, 5), 64, 64) == (0, 0, 5, 5)  # partly inside: clipped, and said
    assert "--box -10,-10,5,5: reaches beyond the 64x64 frame; clipped to 0,0,5,5" in capsys.readouterr().err


def test_a_pass_that_drops_the_audio_hears_muted_audio_everywhere_with_persons():
    """Masked injection only where guidance keeps the audio: the pass that drops it (`conditioning.dit_inputs`, as
    every guidance branch and training sample builds its inputs) gets each person's windows as zeros, so every blend
    is the muted audio and the pass equals the same pass without persons; the pass that keeps it is routed."""
    from humo.conditioning import Conditions, Keep, PersonConditions, dit_inputs, with_clean_windows

    dit = _model()
    cfg = dit.cfg
    x, t, ctx, mix = _inputs(cfg, batch=2)
    left = torch.zeros(1, 2, FRAMES, 8, 8)
    left[:, 0, :, :, :4], left[:, 1, :, :, 4:] = 1, 1
    persons = _persons(cfg, 1, left)
    cond = Conditions(
        {"prompt": ctx[:1], "negative": ctx[1:]},
        x[:1, :, FRAMES:],
        FRAMES,
        windows=with_clean_windows(mix[:1, :FRAMES], REFS),
        persons=PersonConditions(persons.windows, left),
    )
    keep = Keep(("prompt", "prompt"), {"image": torch.tensor([True, True]), "audio": torch.tensor([True, False])})
    inp = dit_inputs(cond, x, keep, "replace")
    assert torch.equal(inp.persons.windows[0], persons.windows[0]) and not inp.persons.windows[1].any()
    assert not inp.audio[1].any()
    with torch.no_grad():
        routed = dit(inp.x, t, inp.context, audio=inp.audio, persons=inp.persons)
        plain = dit(inp.x, t, inp.context, audio=inp.audio)  # the mix where kept, no audio where dropped
    assert torch.allclose(routed[1], plain[1], atol=1e-5 * plain.abs().max())
    assert not torch.allclose(routed[0], plain[0], atol=1e-3)
