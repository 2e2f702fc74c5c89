import pytest
import torch
from diffusers import WanTransformer3DModel

from humo.checkpoint import diffusers_config, to_diffusers_keys
from humo.configs import DIT_PRESETS, dit_preset
from humo.dit import HumoDiT, rope_split, rope_table, sinusoidal_embedding
from humo.errors import HumoError
from humo.reference import concat_condition, replace_references
from tests.helpers import dit_inputs, tiny_cfg, tiny_model


@pytest.mark.parametrize("preset", ["wan2.1-t2v-1.3b", "wan2.1-t2v-14b"])
def test_backbone_matches_diffusers(preset):
    """Same random weights: our backbone equals diffusers' WanTransformer3DModel in fp32."""
    cfg = tiny_cfg(preset)
    ours = tiny_model(preset, seed=3)
    theirs = WanTransformer3DModel(**diffusers_config(cfg)).eval()
    theirs.load_state_dict(to_diffusers_keys(ours.state_dict()), strict=True)
    x, t, ctx, _, _ = dit_inputs(cfg, frames=3, h=6, w=10)
    ctx = torch.cat([ctx, ctx.new_zeros(ctx.shape[0], cfg.text_len - ctx.shape[1], ctx.shape[2])], dim=1)
    with torch.no_grad():
        a = ours(x, t, ctx)
        b = theirs(x, t, ctx, return_dict=False)[0]
    assert a.shape == b.shape == x.shape
    assert (a - b).abs().max() <= 1e-5 * b.abs().max()


def test_17b_layout_matches_diffusers_i2v_channels():
    """The 17B input is noisy latent ++ y on channels: diffusers with in_channels=36 sees the same tensor."""
    cfg = tiny_cfg("humo-17b", audio=False, reference_mode="concat")
    ours = tiny_model("humo-17b", seed=4, audio=False)
    theirs = WanTransformer3DModel(**diffusers_config(cfg)).eval()
    theirs.load_state_dict(to_diffusers_keys(ours.state_dict()), strict=True)
    x, t, ctx, _, y = dit_inputs(cfg)
    ctx = torch.cat([ctx, ctx.new_zeros(ctx.shape[0], cfg.text_len - ctx.shape[1], ctx.shape[2])], dim=1)
    with torch.no_grad():
        a = ours(x, t, ctx, y=y)
        b = theirs(torch.cat([x, y], 1), t, ctx, return_dict=False)[0]
    assert (a - b).abs().max() <= 1e-5 * b.abs().max()


def test_param_count_matches_config_and_release():
    for name in ["humo-17b", "humo-1.7b"]:
        cfg = tiny_cfg(name, mask_head_blocks=2)
        assert sum(p.numel() for p in HumoDiT(cfg).parameters()) == cfg.num_params()
    assert abs(DIT_PRESETS["humo-17b"].num_params() / 1e9 - 17.06) < 0.01
    assert abs(DIT_PRESETS["humo-1.7b"].num_params() / 1e9 - 1.74) < 0.01


def test_preset_override_and_validation():
    cfg = dit_preset("humo-17b", dim=64, num_heads=4, num_layers=2)
    assert (cfg.dim, cfg.num_layers, cfg.in_dim, cfg.reference_mode) == (64, 2, 36, "concat")
    with pytest.raises(HumoError, match="divisible"):
        dit_preset("humo-1.7b", dim=100, num_heads=3)
    with pytest.raises(HumoError, match="unknown DiT config field"):
        dit_preset("toy", widht=3)
    with pytest.raises(HumoError, match="unknown preset"):
        dit_preset("humo-99b")


def test_audio_locality():
    """Changing the audio window of latent frame i changes the audio branch output only for frame i."""
    model = tiny_model("humo-1.7b", seed=5)
    cfg = model.cfg
    f, h, w = 4, 3, 5
    x = torch.randn(1, f * h * w, cfg.dim)
    windows = torch.randn(1, f, 8, 5, cfg.audio_feat_dim)
    branch = model.blocks[0].audio_cross_attn_wrapper
    with torch.no_grad():
        base = branch(x, model.audio_proj(windows)) - x
        for i in range(f):
            changed = windows.clone()
            changed[:, i] += torch.randn_like(changed[:, i])
            diff = (branch(x, model.audio_proj(changed)) - x - base).abs().reshape(f, h * w, -1).amax((1, 2))
            assert diff[i] > 1e-3
            assert torch.all(diff[torch.arange(f) != i] == 0)


def test_audio_none_skips_branch_and_audio_changes_output():
    model = tiny_model("humo-1.7b", seed=6)
    x, t, ctx, audio, _ = dit_inputs(model.cfg)
    with torch.no_grad():
        with_audio = model(x, t, ctx, audio=audio)
        other = model(x, t, ctx, audio=audio + 1)
        without = model(x, t, ctx, audio=None)
    assert not torch.allclose(with_audio, other)
    assert not torch.allclose(with_audio, without)


def test_rope_time_index_continues_through_reference_frames():
    d = 64
    f_vid, n_ref, h, w = 3, 2, 2, 3
    cos, sin = rope_table(d, (f_vid + n_ref, h, w), 10000.0, torch.device("cpu"))
    t_dim = rope_split(d)[0]
    inv = 1.0 / 10000 ** (torch.arange(0, t_dim, 2, dtype=torch.float64) / t_dim)
    for j in range(n_ref):
        token = (f_vid + j) * h * w + 4  # some token of reference frame j
        expected = torch.cos((f_vid + j) * inv).float()
        assert torch.allclose(cos[token, 0, : t_dim // 2], expected, atol=1e-6)
    assert cos.shape == (5 * h * w, 1, d // 2)


def test_references_sit_last_and_matter_1_7b():
    """1.7B: the clean reference replaces the last frame; video frames react to it through self-attention."""
    model = tiny_model("humo-1.7b", seed=7)
    x, t, ctx, audio, _ = dit_inputs(model.cfg, frames=4)
    ref = torch.randn(2, 16, 1, 8, 8)
    xin = replace_references(x, ref)
    assert torch.equal(xin[:, :, -1:], ref) and torch.equal(xin[:, :, :-1], x[:, :, :-1])
    with torch.no_grad():
        a = model(xin, t, ctx, audio=audio)[:, :, :-1]
        b = model(replace_references(x, torch.zeros_like(ref)), t, ctx, audio=audio)[:, :, :-1]
    assert a.shape[2] == 3 and not torch.allclose(a, b)


def test_concat_condition_17b():
    refs = torch.randn(2, 16, 2, 4, 4)
    zero_video = torch.randn(16, 3, 4, 4)
    y = concat_condition(refs, zero_video)
    assert y.shape == (2, 20, 5, 4, 4)
    assert torch.all(y[:, :4, :3] == 0) and torch.all(y[:, :4, 3:] == 1)
    assert torch.equal(y[0, 4:, :3], zero_video) and torch.equal(y[:, 4:, 3:], refs)
    y_null = concat_condition(refs, zero_video, keep_image=False)
    assert torch.equal(y_null[:, :4], y[:, :4])  # the release keeps the mask in the null condition
    assert torch.equal(y_null[1, 4:, 3:], zero_video[:, -1:].expand(-1, 2, -1, -1))
    model = tiny_model("humo-17b", seed=8)
    x, t, ctx, audio, _ = dit_inputs(model.cfg, frames=5, h=4, w=4)
    with torch.no_grad():
        out = model(x, t, ctx, audio=audio, y=y)
    assert out.shape == x.shape


def test_gradient_checkpointing_same_grads():
    model = tiny_model("toy", seed=9)
    x, t, ctx, audio, _ = dit_inputs(model.cfg, frames=2, h=4, w=4)
    model.train()

    def grads():
        model.zero_grad()
        out, mask = model(x, t, ctx, audio=audio, return_mask=True)
        (out.square().mean() + mask.square().mean()).backward()
        return [p.grad.clone() for p in model.parameters()]

    model.gradient_checkpointing = False
    g1 = grads()
    model.gradient_checkpointing = True
    g2 = grads()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g1, g2))


def test_mask_head_reads_post_audio_features():
    model = tiny_model("toy", seed=10)
    x, t, ctx, audio, _ = dit_inputs(model.cfg, frames=3, h=8, w=8)
    with torch.no_grad():
        out, mask = model(x, t, ctx, audio=audio, return_mask=True)
        _, mask2 = model(x, t, ctx, audio=audio + 0.5, return_mask=True)
        plain = model(x, t, ctx, audio=audio)
    assert mask.shape == (2, 3, 8, 8)
    assert torch.equal(out, plain)
    assert not torch.allclose(mask, mask2)


def test_bf16_close_to_fp32():
    model = tiny_model("humo-1.7b", seed=11)
    x, t, ctx, audio, _ = dit_inputs(model.cfg)
    with torch.no_grad():
        ref = model(x, t, ctx, audio=audio)
        out = model.to(torch.bfloat16)(x, t, ctx, audio=audio)
    assert out.dtype == torch.bfloat16
    rel = (out.float() - ref).norm() / ref.norm()
    assert rel < 0.05


def test_time_embedding_is_cos_then_sin():
    e = sinusoidal_embedding(8, torch.tensor([0.0, 3.0]))
    assert torch.allclose(e[0], torch.tensor([1.0] * 4 + [0.0] * 4, dtype=torch.float64))
    assert torch.isclose(e[1, 0], torch.cos(torch.tensor(3.0, dtype=torch.float64)))
    assert torch.isclose(e[1, 4], torch.sin(torch.tensor(3.0, dtype=torch.float64)))


@pytest.mark.parametrize("preset", ["humo-1.7b", "humo-17b"])
def test_sample_prediction_turns_the_heads_x0_into_a_velocity(preset):
    """prediction="sample": same weights, the head's output is x0 and forward returns (x - x0) / max(sigma, 0.05)."""
    vel = tiny_model(preset)
    smp = HumoDiT(vel.cfg.replace(prediction="sample")).eval()
    smp.load_state_dict(vel.state_dict())
    x, _, ctx, a, y = dit_inputs(vel.cfg, batch=3)
    t = torch.tensor([900.0, 300.0, 10.0])  # the last one is below the clip: divided by 0.05, not 0.01
    with torch.no_grad():
        x0 = vel(x, t, ctx, a, y)  # the raw head output
        v, mask = smp(x, t, ctx, a, y, return_mask=True)
    sigma = torch.tensor([0.9, 0.3, 0.05]).view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(v, (x - x0) / sigma)
    # x = (1 - sigma) x0 + sigma n and v = n - x0: stepping x by -sigma * v lands on the predicted x0
    torch.testing.assert_close(x[:2] - sigma[:2] * v[:2], x0[:2])
    with pytest.raises(HumoError, match="prediction 'noise'"):
        dit_preset("toy", prediction="noise")


def test_17b_null_reference_slot_comes_from_a_longer_zero_clip_as_released():
    """The release slices its precomputed zero latent (129 / 161 frames) at the reference slot; a zero clip's
    latent frames differ near the start, so a 1-frame video's null reference is not its video frame repeated."""
    from humo.conditions.vae import WanVAE

    vae = WanVAE.toy(seed=0)
    refs = torch.randn(1, 16, 1, 4, 4)
    long = vae.zero_video_latent(1 + 4, 16, 16)[0]  # the video's 1 frame and one reference slot
    y_null = concat_condition(refs, long, keep_image=False, num_video=1)
    assert y_null.shape[2] == 2
    assert torch.equal(y_null[0, 4:, 1], long[:, 1])  # the slot's own latent, not frame 0 repeated
    assert not torch.equal(long[:, 0], long[:, 1])  # the two differ, so the old rule would have been wrong
    short = vae.zero_video_latent(1, 16, 16)[0]
    assert torch.equal(long[:, :1], short)  # causal: the video frames are the short clip's
    assert torch.equal(concat_condition(refs, long, keep_image=True, num_video=1)[0, 4:, 0], short[:, 0])
