"""OmniHuman-1's pose guider in the DiT: Wan's time layout, neighbouring frames, the zero-initialised embedding
(a pretrained model starts unchanged), pose only on the generated frames, and checkpoints with a guider."""

import pytest
import torch

from humo.checkpoint import infer_config, load_dit, read_shapes, save_dit
from humo.dit import HumoDiT
from humo.pose_guider import PoseGuider, fold_time, with_neighbours
from tests.helpers import dit_inputs, randomize, tiny_cfg

POSE = dict(pose_channels=4, pose_hidden=8)
H = W = 8  # the latent grid


def _maps(batch=2, frames=3, seed=0, scale=2):
    """Random heatmaps of the 1 + 4(F-1) video frames of F latent frames, at `scale` x the latent size."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 18, 1 + 4 * (frames - 1), scale * H, scale * W, generator=g)


def _pair(preset="humo-1.7b", seed=0, **extra):
    """A random DiT without a guider, and the same weights in a DiT with a fresh one (randomised encoder)."""
    base = randomize(HumoDiT(tiny_cfg(preset, **extra)), seed).eval()
    posed = HumoDiT(tiny_cfg(preset, **POSE, **extra)).eval()
    missing, unexpected = posed.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("pose_guider.") for k in missing)
    randomize(posed.pose_guider.encoder, seed + 1)
    return base, posed


def test_time_fold_follows_wans_causal_layout():
    t = 1 + 4 * 2
    maps = torch.arange(t, dtype=torch.float32).view(1, 1, t, 1, 1).expand(1, 2, t, 1, 1).clone()
    maps[:, 1] += 100  # joint 1 is frame + 100
    folded = fold_time(maps)  # [1, 4 * 2, 3, 1, 1]
    assert folded.shape == (1, 8, 3, 1, 1)
    # latent frame 0: video frame 0 four times; latent frame i: frames 4i-3 .. 4i; channel s*J + j
    assert folded[0, :, 0, 0, 0].tolist() == [0, 100] * 4
    assert folded[0, :, 1, 0, 0].tolist() == [1, 101, 2, 102, 3, 103, 4, 104]
    assert folded[0, :, 2, 0, 0].tolist() == [5, 105, 6, 106, 7, 107, 8, 108]
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        fold_time(maps[:, :, :4])


def test_each_latent_frame_sees_its_neighbours_with_zeros_at_the_ends():
    f = torch.arange(1.0, 4.0).view(1, 1, 3, 1, 1)  # frames 1, 2, 3
    out = with_neighbours(f)[0, :, :, 0, 0]  # [3 (before, own, after), 3 frames]
    assert out.tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 0]]


def test_a_fresh_guider_leaves_a_pretrained_model_unchanged_whatever_the_pose():
    for preset in ("humo-1.7b", "humo-17b"):
        base, posed = _pair(preset)
        x, t, ctx, audio, y = dit_inputs(base.cfg, frames=4, h=H, w=W)
        with torch.no_grad():
            want = base(x, t, ctx, audio, y)
            for seed in (0, 1):
                got = posed(x, t, ctx, audio, y, pose=_maps(frames=3, seed=seed), pose_start=0)  # 3 video + 1 ref
                assert torch.equal(got, want), preset
            assert torch.equal(posed(x, t, ctx, audio, y), want)  # no pose at all: the guider does not run


def test_pose_changes_the_output_once_the_embedding_has_learned():
    _, posed = _pair()
    randomize(posed.pose_guider.patch_embedding, 3)
    x, t, ctx, audio, _ = dit_inputs(posed.cfg, frames=4, h=H, w=W)
    with torch.no_grad():
        plain = posed(x, t, ctx, audio)
        a = posed(x, t, ctx, audio, pose=_maps(frames=3, seed=0))
        b = posed(x, t, ctx, audio, pose=_maps(frames=3, seed=1))
        zero = posed(x, t, ctx, audio, pose=torch.zeros_like(_maps(frames=3)))
    assert not torch.allclose(a, plain, atol=1e-4) and not torch.allclose(a, b, atol=1e-4)
    assert torch.equal(zero, plain)  # zero heatmaps are no pose: the null is the model without its guider


def test_only_the_generated_frames_get_pose_features():
    cfg = tiny_cfg("humo-1.7b", **POSE)
    guider = randomize(PoseGuider(cfg), 0)
    maps = _maps(frames=3)
    feats = guider.features(maps)
    assert feats.shape == (2, 3 * 4, 3, H, W) and feats.abs().sum() > 0
    # the time axis [motion (2) | video (3) | references (1)]
    placed = guider.on_time_axis(maps, 6, start=2)
    assert torch.equal(placed[:, :, 2:5], feats)
    assert not placed[:, :, :2].any() and not placed[:, :, 5:].any()
    assert not guider.features(torch.zeros_like(maps)).any()  # no bias anywhere: zero heatmaps, zero features
    # a batch-1 pose is the same for every row
    one = guider.on_time_axis(maps[:1], 6, 2)
    assert torch.equal(
        one.expand(2, -1, -1, -1, -1)[1], guider.on_time_axis(maps[:1].expand(2, -1, -1, -1, -1), 6, 2)[1]
    )


def test_motion_and_reference_frames_are_untouched_by_the_pose():
    """With the embedding learned, a pose changes the patch tokens of the video frames only."""
    _, posed = _pair()
    randomize(posed.pose_guider.patch_embedding, 3)
    x, t, ctx, audio, _ = dit_inputs(posed.cfg, frames=6, h=H, w=W)
    with torch.no_grad():
        emb0 = posed.embed(x, t, ctx, audio)
        emb = posed.embed(x, t, ctx, audio, pose=_maps(frames=3), pose_start=2)
    f, h, w = emb.grid
    delta = (emb.tokens - emb0.tokens).view(2, f, h * w, -1).abs().sum(dim=(0, 2, 3))
    assert delta[2:5].min() > 0 and delta[:2].max() == 0 and delta[5:].max() == 0


def test_config_counts_and_checkpoints_carry_the_guider(tmp_path):
    cfg = tiny_cfg("humo-1.7b", **POSE, pose_scale=4, pose_sigma=1.5)
    model = HumoDiT(cfg)
    assert sum(p.numel() for p in model.parameters()) == cfg.num_params()
    assert not model.pose_guider.patch_embedding.weight.any()  # zero-initialised
    path = save_dit(randomize(model), tmp_path / "posed.safetensors")
    assert load_dit(path).cfg == cfg  # our files carry the config (sigma included)
    # without the metadata the shapes tell everything but sigma
    shapes, _ = read_shapes(path)
    inferred = infer_config(shapes)
    assert (inferred.pose_channels, inferred.pose_joints, inferred.pose_hidden, inferred.pose_scale) == (4, 18, 8, 4)
    # a DiT without a guider refuses a pose; a config without one has no guider keys (released files load as before)
    plain = HumoDiT(tiny_cfg("humo-1.7b"))
    assert not any(k.startswith("pose_guider") for k in plain.state_dict())
    x, t, ctx, audio, _ = dit_inputs(plain.cfg, frames=3, h=H, w=W)
    with pytest.raises(ValueError, match="no pose guider"):
        plain(x, t, ctx, audio, pose=_maps(frames=3))
