"""humo.conditioning: the modality registry, one rule for which inputs a pass sees (training and guidance), and
clean frames (motion frames first, references last) in both layouts."""

import itertools

import pytest
import torch

from humo.conditioning import (
    MODALITIES,
    Conditions,
    Keep,
    Modality,
    check_condition_order,
    dit_inputs,
    keep_for_training,
    pose_kwargs,
    register,
    with_clean_windows,
)
from humo.errors import HumoError
from humo.guidance import Condition
from humo.reference import concat_condition
from humo.training.objective import Draws, build_inputs, compute_loss, flow_loss

B, C, F, H, W, R, M = 2, 4, 3, 2, 2, 1, 2


def test_the_registry_is_what_guidance_reads():
    import humo.guidance as guidance

    assert tuple(MODALITIES) == ("text", "image", "audio", "pose") == guidance.MODALITIES
    assert "".join(m.letter for m in MODALITIES.values()) == "tiap"
    assert Condition.parse("ta").modalities == frozenset({"text", "audio"})
    assert Condition.parse("tip").modalities == frozenset({"text", "image", "pose"})
    with pytest.raises(HumoError, match="already registered"):
        register(Modality("audio", "x", "audio", None, "audio", "-"))
    with pytest.raises(HumoError, match="letter 't' is taken"):
        register(Modality("speaker2", "t", "speaker2", None, "speaker2", "-"))
    assert tuple(MODALITIES) == ("text", "image", "audio", "pose")  # refused registrations leave it as it was


def test_training_and_guidance_keep_the_same_inputs_for_the_same_condition():
    """Every guidance condition is one training situation: a sample that has every input, whose task uses them
    all, with the modalities outside the condition dropped. Both must give the same Keep, hence the same inputs."""
    names = tuple(MODALITIES)
    ones = {m: torch.ones(1, dtype=torch.bool) for m in names}
    for n in range(len(names) + 1):
        for subset in itertools.combinations(names, n):
            c = Condition(frozenset(subset))
            drop = {m: torch.tensor([m not in subset]) for m in names}
            train = keep_for_training(ones, ones, drop)
            infer = Keep.of_conditions([c], 1)
            assert train.text == infer.text
            assert all(torch.equal(train[m], infer[m]) for m in names if m != "text"), c.name
    # a task that does not use a modality, or a sample without it, is the same as dropping it
    none = {m: torch.zeros(1, dtype=torch.bool) for m in names}
    assert keep_for_training(ones, none, none).text == ("negative",)
    assert not keep_for_training({**ones, "image": torch.tensor([False])}, ones, none)["image"].any()


def _conditions(motion=True, layout="replace"):
    g = torch.Generator().manual_seed(0)
    refs = torch.randn(B, C, R, H, W, generator=g)
    mot = torch.randn(B, C, M, H, W, generator=g) if motion else None
    m = M if motion else 0
    windows = with_clean_windows(torch.randn(B, F, 8, 5, 3, generator=g), R, torch.randn(B, m, 8, 5, 3) if m else 0)
    y = y_null = None
    if layout == "concat":
        zv = torch.randn(C, m + F, H, W, generator=g)  # the zero clip of the whole stream, motion frames included
        y, y_null = (concat_condition(refs, zv, keep, motion=mot) for keep in (True, False))
    texts = {"prompt": torch.randn(B, 5, 6, generator=g), "negative": torch.randn(1, 7, 6, generator=g)}
    return Conditions(texts, refs, F, motion=mot, windows=windows, y=y, y_null=y_null)


def test_clean_frames_start_and_end_the_time_axis():
    cond = _conditions()
    assert cond.num_frames == M + F + R and cond.clean().tolist() == [True] * M + [False] * F + [True] * R
    video = torch.randn(B, C, F, H, W)
    x0 = cond.clean_latents(video)
    assert torch.equal(x0[:, :, :M], cond.motion) and torch.equal(x0[:, :, M : M + F], video)
    assert torch.equal(x0[:, :, -R:], cond.refs) and torch.equal(cond.video(x0), video)
    keep = Keep(("prompt", "negative"), {"image": torch.tensor([True, False]), "audio": torch.tensor([True, False])})
    inp = dit_inputs(cond, torch.randn(B, C, M + F + R, H, W), keep, "replace")
    assert torch.equal(inp.x[:, :, :M], cond.motion)  # motion frames are clean, whatever is kept
    assert torch.equal(inp.x[0, :, -R:], cond.refs[0]) and inp.x[1, :, -R:].abs().sum() == 0
    # motion frames carry their own audio, reference frames none; a row without audio gets none anywhere
    assert torch.equal(inp.audio[0], cond.windows[0]) and inp.audio[0, -R:].abs().sum() == 0
    assert inp.audio[0, :M].abs().sum() > 0 and inp.audio[1].abs().sum() == 0
    assert torch.equal(inp.context[0, :5], cond.texts["prompt"][0]) and inp.context[0, 5:].abs().sum() == 0
    assert torch.equal(inp.context[1], cond.texts["negative"][0])


def test_concat_layout_takes_clean_frames_through_y():
    cond = _conditions(layout="concat")
    keep = Keep(("prompt",) * B, {"image": torch.tensor([True, False]), "audio": torch.ones(B, dtype=torch.bool)})
    x = torch.randn(B, C, M + F + R, H, W)
    inp = dit_inputs(cond, x, keep, "concat")
    assert torch.equal(inp.x, x)  # x's clean frames stay noisy, as the release samples its references
    mask = inp.y[:, 0, :, 0, 0]
    assert mask.tolist() == [[1.0] * M + [0.0] * F + [1.0] * R] * B
    assert torch.equal(inp.y[:, 4:, :M], cond.motion)  # motion frames stay when the image is dropped
    # the video frames' condition: the zero clip's latent frames after the motion frames', as in one stream
    zv = torch.randn(C, M + F, H, W, generator=torch.Generator().manual_seed(0))
    y = concat_condition(cond.refs, zv, motion=cond.motion)
    assert y.shape[2] == M + F + R and torch.equal(y[:, 4:, M : M + F], zv[None, :, M:].expand(B, -1, -1, -1, -1))
    assert torch.equal(inp.y[0, 4:, -R:], cond.refs[0]) and not torch.equal(inp.y[1, 4:, -R:], cond.refs[1])


def test_training_with_motion_frames_ignores_them_in_the_loss():
    from humo.data.loader import TrainingBatch

    g = torch.Generator().manual_seed(2)
    batch = TrainingBatch(
        latents=torch.randn(B, C, F, H, W, generator=g),
        refs=torch.randn(B, C, R, H, W, generator=g),
        motion=torch.randn(B, C, M, H, W, generator=g),
        has_ref=torch.ones(B, dtype=torch.bool),
        text=torch.randn(B, 5, 6, generator=g),
        audio=torch.randn(B, F, 8, 5, 3, generator=g),
        has_audio=torch.ones(B, dtype=torch.bool),
        mask=torch.zeros(B, F, H, W),
        has_mask=torch.zeros(B, dtype=torch.bool),
        tasks=("av",) * B,
        index=torch.arange(B),
    )
    off = {m: torch.zeros(B, dtype=torch.bool) for m in MODALITIES}
    draws = Draws(torch.full((B,), 0.5), torch.full((B,), 500.0), torch.randn(B, C, M + F + R, H, W, generator=g), off)
    null = torch.zeros(4, 6)
    inp = build_inputs(batch, draws, null, reference_mode="replace", use_audio=True)
    assert torch.equal(inp.x[:, :, :M], batch.motion) and inp.clean.tolist() == [True] * M + [False] * F + [True]
    assert inp.audio[:, :M].abs().sum() == 0  # no carried-over audio given: zero windows on the motion frames

    class Exact(torch.nn.Module):  # the target on the generated frames, garbage on the clean ones
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, t, context, audio=None, y=None, return_mask=False):
            out = inp.target.clone() + self.w
            out[:, :, :M] = 1e3
            out[:, :, -R:] = -1e3
            return out

    loss, _ = compute_loss(Exact(), batch, draws, null, reference_mode="replace", use_audio=True)
    assert loss.item() == 0.0
    assert flow_loss(inp.target + 1, inp.target, inp.clean).tolist() == [1.0] * B
    carried = batch.replace(motion_audio=torch.ones(B, M, 8, 5, 3))
    assert (build_inputs(carried, draws, null, reference_mode="replace", use_audio=True).audio[:, :M] == 1).all()


def test_audio_windows_can_start_mid_audio():
    from humo.conditions.audio import audio_windows

    feats = torch.arange(1, 41, dtype=torch.float32).view(40, 1, 1).expand(40, 5, 2)
    whole = audio_windows(feats, 9)  # video frames 0..32
    later = audio_windows(feats, 5, start=16)  # windows read from video frame 16 on (any start frame works)
    assert torch.equal(later[1:], whole[5:9])  # its latent frames 1.. read the same frames as the whole video's
    assert later[0, :3].abs().sum() == 0 and later[0, 3:, 0, 0].tolist() == [15.0, 16.0, 17.0, 18.0, 19.0]


def test_pose_rides_on_the_motion_and_generated_frames_and_its_null_is_zero_heatmaps():
    cond = _conditions()
    maps = torch.rand(1, 18, 1 + 4 * (M + F - 1), 2 * H, 2 * W)  # one stream: the motion frames' pose first
    cond.pose = maps
    x = torch.randn(B, C, M + F + R, H, W)
    rows = lambda *kept: Keep(("prompt",) * B, {m: torch.tensor(kept) for m in ("image", "audio", "pose")})  # noqa: E731
    mixed = dit_inputs(cond, x, rows(True, False), "replace")
    # its features start with the motion frames (the DiT's default pose_start) and end before the references
    assert pose_kwargs(mixed.pose).keys() == {"pose"} and mixed.pose.shape[2] == 1 + 4 * (M + F - 1)
    assert torch.equal(mixed.pose[0], maps[0]) and not mixed.pose[1].any()
    everywhere = dit_inputs(cond, x, rows(True, True), "replace")
    assert everywhere.pose is maps  # one pose for every row: passed once, broadcast by the DiT
    assert dit_inputs(cond, x, rows(False, False), "replace").pose is None  # no row sees it: the guider is skipped
    cond.pose = None
    assert dit_inputs(cond, x, rows(True, True), "replace").pose is None  # no pose given


def test_a_condition_comes_with_every_weaker_one():
    for ok in ({"text"}, {"text", "image"}, {"text", "audio"}, {"text", "image", "audio"}, {"text", "image", "pose"},
               {"text", "image", "audio", "pose"}):  # fmt: skip
        check_condition_order(ok)
    with pytest.raises(HumoError, match="pose needs image too"):
        check_condition_order({"text", "audio", "pose"})
    with pytest.raises(HumoError, match="pose needs image too"):
        check_condition_order({"text", "pose"})
    with pytest.raises(HumoError, match="case 'x': image needs text too"):
        check_condition_order({"image"}, "case 'x': ")
