"""The flow-matching objective: inputs as at inference, references as clean conditions, nulls for guidance."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from humo.data.loader import TrainingBatch
from humo.sampler import velocity_to_x0
from humo.training.config import TrainConfig
from humo.training.objective import Draws, build_inputs, compute_loss, draw, draw_rows, flow_loss, mask_loss

B, C, F, R, H, W = 3, 4, 3, 1, 2, 2


def _batch(tasks=("av", "av", "subject"), has_ref=(True, True, True), has_audio=(True, True, True)):
    g = torch.Generator().manual_seed(0)
    return TrainingBatch(
        latents=torch.randn(B, C, F, H, W, generator=g),
        refs=torch.randn(B, C, R, H, W, generator=g),
        has_ref=torch.tensor(has_ref),
        text=torch.randn(B, 5, 6, generator=g),
        audio=torch.randn(B, F, 8, 5, 2, generator=g),
        has_audio=torch.tensor(has_audio),
        mask=(torch.rand(B, F, H, W, generator=g) > 0.5).float(),
        has_mask=torch.tensor([True, False, True]),
        zero_video=torch.randn(C, F, H, W, generator=g),
        tasks=tuple(tasks),
        index=torch.arange(B),
    )


def _draws(drop_text=(False,) * B, drop_image=(False,) * B, drop_audio=(False,) * B):
    g = torch.Generator().manual_seed(1)
    sigma = torch.tensor([0.1, 0.5, 0.9])
    return Draws(
        sigma=sigma,
        timestep=sigma * 1000,
        noise=torch.randn(B, C, F + R, H, W, generator=g),
        drop={"text": torch.tensor(drop_text), "image": torch.tensor(drop_image), "audio": torch.tensor(drop_audio)},
    )


NULL = torch.full((7, 6), 0.5)


def test_inputs_follow_the_sampler_and_references_are_clean_in_replace_mode():
    batch, d = _batch(), _draws()
    inp = build_inputs(batch, d, NULL, reference_mode="replace", use_audio=True)
    x0 = torch.cat([batch.latents, batch.refs], dim=2)
    s = d.sigma.view(-1, 1, 1, 1, 1)
    assert torch.allclose(inp.x[:, :, :F], ((1 - s) * x0 + s * d.noise)[:, :, :F])
    assert torch.equal(inp.x[:, :, F:], batch.refs)  # overwritten by the clean references, as at inference
    assert torch.equal(inp.target, d.noise - x0)
    assert torch.equal(inp.t, d.sigma * 1000)
    # One exact step along the target velocity lands on the clean latent (the sampler's x0 preview).
    assert torch.allclose(velocity_to_x0(inp.x, inp.target, d.sigma)[:, :, :F], batch.latents, atol=1e-6)
    assert inp.y is None and inp.clean.tolist() == [False] * F + [True] * R
    # Reference frames get zero audio windows; the video frames carry the sample's audio (tasks av, av).
    assert inp.audio.shape == (B, F + R, 8, 5, 2)
    assert inp.audio[:, F:].abs().sum() == 0
    assert torch.equal(inp.audio[:2, :F], batch.audio[:2])
    assert inp.audio[2].abs().sum() == 0  # the subject task has null audio
    assert torch.equal(inp.context[:, :5], batch.text) and inp.context[:, 5:].abs().sum() == 0


def test_dropout_and_missing_modalities_become_the_null_inputs():
    batch = _batch(has_ref=(True, False, True), has_audio=(True, True, False))
    d = _draws(drop_text=(True, False, False), drop_image=(False, False, True), drop_audio=(False, True, False))
    inp = build_inputs(batch, d, NULL, reference_mode="replace", use_audio=True)
    assert torch.equal(inp.context[0], NULL)  # dropped prompt -> the negative-prompt embedding
    assert torch.equal(inp.context[1, :5], batch.text[1])
    assert torch.equal(inp.x[0, :, F:], batch.refs[0])
    assert inp.x[1, :, F:].abs().sum() == 0  # sample without references: zero reference latent
    assert inp.x[2, :, F:].abs().sum() == 0  # image dropped
    assert torch.equal(inp.audio[0, :F], batch.audio[0])
    assert inp.audio[1].abs().sum() == 0  # audio dropped
    # the target still asks for the real video (references and audio are conditions, not outputs)
    assert torch.equal(inp.target[:, :, :F], d.noise[:, :, :F] - batch.latents)


def test_concat_mode_noises_references_and_passes_them_in_y():
    batch = _batch()
    d = _draws(drop_image=(False, True, False))
    inp = build_inputs(batch, d, NULL, reference_mode="concat", use_audio=False)
    x0 = torch.cat([batch.latents, batch.refs], dim=2)
    s = d.sigma.view(-1, 1, 1, 1, 1)
    assert torch.allclose(inp.x, (1 - s) * x0 + s * d.noise)  # references sampled like the rest
    assert inp.y.shape == (B, 4 + C, F + R, H, W)
    assert (inp.y[:, :4, F:] == 1).all() and (inp.y[:, :4, :F] == 0).all()
    assert torch.equal(inp.y[0, 4:, F:], batch.refs[0])
    assert torch.equal(inp.y[0, 4:, :F], batch.zero_video)
    assert torch.equal(inp.y[1, 4:, F:, :, :], batch.zero_video[:, -1:])  # image dropped: zero-video frame
    assert inp.audio is None


class Oracle(torch.nn.Module):
    """Returns the exact target on the video frames plus `error`; garbage on the reference frames."""

    def __init__(self, target, error=0.0, logits=None):
        super().__init__()
        self.target, self.error, self.logits = target, error, logits
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, context, audio=None, y=None, return_mask=False):
        out = self.target.clone() + self.w
        out[:, :, :F] += self.error
        out[:, :, F:] = 1e3
        return (out, self.logits) if return_mask else out


def test_loss_covers_the_video_frames_only():
    batch, d = _batch(), _draws()
    inp = build_inputs(batch, d, NULL, reference_mode="replace", use_audio=True)
    loss, parts = compute_loss(Oracle(inp.target), batch, d, NULL, reference_mode="replace", use_audio=True)
    assert loss.item() == 0.0 and "mask" not in parts
    loss, _ = compute_loss(Oracle(inp.target, 0.5), batch, d, NULL, reference_mode="replace", use_audio=True)
    assert loss.item() == pytest.approx(0.25)
    assert flow_loss(inp.target + 1, inp.target, inp.clean).tolist() == [1.0, 1.0, 1.0]


def test_mask_loss_uses_video_frames_and_ignores_samples_without_masks():
    batch, d = _batch(), _draws()
    target = batch.mask
    good = torch.where(target > 0.5, 20.0, -20.0)
    logits = torch.cat([good, torch.full((B, R, H, W), 50.0)], dim=1)  # wrong on the reference frame: ignored
    clean = torch.tensor([False] * F + [True] * R)
    assert mask_loss(logits, target, batch.has_mask, clean).item() < 1e-6
    bad = logits.clone()
    bad[1, :F] = -good[1]  # wrong on sample 1, which has no mask: still ignored
    assert mask_loss(bad, target, batch.has_mask, clean).item() < 1e-6
    bad[0, :F] = -good[0]
    assert mask_loss(bad, target, batch.has_mask, clean).item() > 1.0
    inp = build_inputs(batch, d, NULL, reference_mode="replace", use_audio=True)
    loss, parts = compute_loss(
        Oracle(inp.target, 0.0, bad), batch, d, NULL, reference_mode="replace", use_audio=True, mask_weight=0.5
    )
    assert loss.item() == pytest.approx(0.5 * parts["mask"].item())


def test_draws_are_seeded_and_dropout_rates_are_as_configured():
    cfg = TrainConfig(text_dropout=0.3, image_dropout=0.0, audio_dropout=1.0)
    a = draw(torch.Generator().manual_seed(5), 4000, (2, 1, 1, 1), cfg)
    b = draw(torch.Generator().manual_seed(5), 4000, (2, 1, 1, 1), cfg)
    assert torch.equal(a.noise, b.noise) and torch.equal(a.sigma, b.sigma)
    assert abs(a.drop["text"].float().mean().item() - 0.3) < 0.03
    assert not a.drop["image"].any() and a.drop["audio"].all()
    assert torch.equal(a.timestep, a.sigma * 1000)
    assert 0 < a.sigma.min() and a.sigma.max() < 1
    # logit-normal: the median sigma is sigmoid(loc) = 0.5; a shift moves mass to high noise
    assert abs(a.sigma.median().item() - 0.5) < 0.03
    shifted = draw(
        torch.Generator().manual_seed(5), 4000, (1,), SimpleNamespace(**{**cfg.to_dict(), "timestep_shift": 3.0})
    )
    assert shifted.sigma.median().item() > 0.7
    part = a.rows(10, 12)
    assert torch.equal(part.noise, a.noise[10:12]) and part.drop["text"].shape == (2,)


def test_row_draws_depend_only_on_their_position():
    cfg = TrainConfig(text_dropout=0.5)
    whole = draw_rows(3, 7, range(0, 4), (2, 3), cfg)
    halves = [draw_rows(3, 7, range(0, 2), (2, 3), cfg), draw_rows(3, 7, range(2, 4), (2, 3), cfg)]
    for name in ("sigma", "noise"):
        assert torch.equal(getattr(whole, name), torch.cat([getattr(h, name) for h in halves]))
    for m in ("text", "image", "audio"):
        assert torch.equal(whole.drop[m], torch.cat([h.drop[m] for h in halves]))
    assert not torch.equal(draw_rows(3, 8, range(0, 4), (2, 3), cfg).noise, whole.noise)  # next micro-batch
    assert not torch.equal(draw_rows(4, 7, range(0, 4), (2, 3), cfg).noise, whole.noise)  # another seed
    assert not torch.equal(whole.noise[0], whole.noise[1])


def test_face_weighted_flow_loss_keeps_the_plain_mean_when_uniform_and_follows_the_face():
    from humo.training.objective import flow_loss, loss_weight

    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 4, 3, 5, 5, generator=g), torch.randn(2, 4, 3, 5, 5, generator=g)
    video2 = torch.tensor([False, False, True])  # two video frames, then a clean one

    def face_weight(mask, w):
        return loss_weight(SimpleNamespace(mask=mask, pose=None), 2, (5, 5), face_loss_weight=w)

    plain = flow_loss(pred, target, video2)
    assert face_weight(torch.ones(2, 2, 5, 5), 0.0) is None
    assert torch.allclose(flow_loss(pred, target, video2, face_weight(torch.zeros(2, 2, 5, 5), 4.0)), plain)
    assert torch.allclose(flow_loss(pred, target, video2, face_weight(torch.ones(2, 2, 5, 5), 4.0)), plain)
    # An error only inside the face weighs more with the face weight; one only outside weighs less.
    mask = torch.zeros(2, 2, 5, 5)
    mask[:, :, 1:3, 1:3] = 1
    inside = torch.zeros_like(pred)
    inside[:, :, :2, 1:3, 1:3] = 1
    outside = torch.ones_like(pred)
    outside[:, :, :2, 1:3, 1:3] = 0
    w = face_weight(mask, 4.0)
    assert (flow_loss(inside, target * 0, video2, w) > flow_loss(inside, target * 0, video2) * 2).all()
    assert (flow_loss(outside, target * 0, video2, w) < flow_loss(outside, target * 0, video2)).all()


def test_the_joint_weight_lands_on_the_joint_in_its_latent_frame():
    """Heatmaps of 3 latent frames (9 pixel frames: 0, then 1-4, 5-8) at 2x the latent's 4 x 4: a left-wrist peak
    in pixel frame 5 at pixel (3, 6) weighs latent frame 2's pixel (1, 3) only; a nose peak and one in the motion
    frame (latent frame 0, not among the 2 video frames) weigh nothing."""
    from humo.pose import CANONICAL
    from humo.training.objective import joint_weight, loss_weight

    pose = torch.zeros(1, len(CANONICAL), 9, 8, 8)
    pose[0, CANONICAL.index("left_wrist"), 5, 3, 6] = 1.0
    pose[0, CANONICAL.index("nose"), 6, 0, 0] = 1.0
    pose[0, CANONICAL.index("right_wrist"), 0, 7, 7] = 1.0
    wrists = [CANONICAL.index("left_wrist"), CANONICAL.index("right_wrist")]
    w = joint_weight(pose, wrists, 2, (4, 4))
    assert w.shape == (1, 2, 4, 4) and w[0, 1, 1, 3] == 1.0 and w.sum() == 1.0
    assert joint_weight(pose, wrists, 3, (4, 4))[0, 0, 3, 3] == 1.0  # the motion frame, when asked for
    batch = SimpleNamespace(mask=torch.zeros(1, 2, 4, 4), pose=pose)
    both = loss_weight(batch, 2, (4, 4), 4.0, 2.0, ("left_wrist", "right_wrist"))
    assert both[0, 1, 1, 3] == 3.0 and both.min() == 1.0 and both.sum() == 32 + 2
    assert loss_weight(SimpleNamespace(mask=None, pose=None), 2, (4, 4), 0.0, 2.0, ("left_wrist",)) is None
