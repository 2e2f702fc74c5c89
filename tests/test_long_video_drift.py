"""The long-video drift measurement (humo.evaluation.long_video): its colour and join bars pass on a steady video
and fail on one whose colour jumps at a join."""

import numpy as np

from humo.evaluation.long_video import bars, segment_metrics
from humo.pipeline import plan_segments


def _rows(frames, plan):
    t = np.arange(len(frames)) / 25
    audio = (0.3 * np.sin(2 * np.pi * 3 * np.repeat(t, 640))).astype(np.float32)
    ref = frames[0]
    return segment_metrics(frames, 25, plan, ref, audio, audio[::-1].copy(), 16000)


def test_join_and_colour_bars_see_a_seam():
    rng = np.random.default_rng(0)
    base = rng.integers(60, 200, size=(1, 64, 64, 3)).astype(np.uint8)
    noise = rng.integers(-2, 3, size=(97, 64, 64, 3))
    steady = np.clip(base + noise, 0, 255).astype(np.uint8)
    plan = plan_segments(97, 49)
    ok = bars(_rows(steady, plan))
    assert ok["colour_ok"] and ok["colour_max_shift"] < 1 and ok["join_ok"]
    jump = steady.copy()
    jump[plan[1][0] :] = np.clip(jump[plan[1][0] :].astype(int) + 20, 0, 255).astype(np.uint8)
    bad = bars(_rows(jump, plan))
    assert not bad["colour_ok"] and bad["colour_max_shift"] > 15
    assert not bad["join_ok"] and bad["join_ratio"] > 5


def test_the_codec_ceiling_codes_each_segment_as_the_generator_does():
    from humo.evaluation.long_video import through_codec_in_segments

    class FirstFrameSeam:
        """A stand-in codec that is exact except on a clip's first frame, which it brightens by 10."""

        def encode(self, x):
            return x.clone()

        def decode(self, z):
            z = z.clone()
            z[:, :, 0] += 10 / 127.5
            return z

    rng = np.random.default_rng(1)
    frames = rng.integers(60, 200, size=(109, 16, 16, 3)).astype(np.uint8)
    plan = plan_segments(109, 49)  # the last segment generates past the clip's end
    out = through_codec_in_segments(FirstFrameSeam(), frames, plan)
    diff = out.astype(int) - frames
    # only the video's first frame is a clip's first frame: each continuation's clip starts with the motion frames
    assert np.all(np.abs(diff[0] - 10) <= 1) and np.abs(diff[1:]).max() <= 1 and out.shape == frames.shape


def test_joins_are_compared_with_the_codec_group_boundaries():
    from humo.evaluation.long_video import group_boundary_change

    plan = plan_segments(97, 49)  # 49 frames, then 5 + 44 and 5 + 4
    t = np.arange(97)
    # a step of 4 at every 4-frame group boundary of the stream (frame 1, 5, ..., and each continuation's fours)
    boundaries = {1} | {s + 4 * j for s, _, k in plan[1:] for j in range(k // 4 + 1)} | set(range(1, 49, 4))
    level = np.cumsum([4 if i in boundaries else 0 for i in t])
    frames = np.broadcast_to((level % 200)[:, None, None, None], (97, 8, 8, 3)).astype(np.uint8)
    joins = np.mean([np.abs(frames[s].astype(float) - frames[s - 1]).mean() for s, _, _ in plan[1:]])
    assert abs(joins / group_boundary_change(frames, plan) - 1) < 0.05  # a join is a boundary like the others
    smooth = np.broadcast_to(((t + 20 * (t >= plan[1][0])) % 200)[:, None, None, None], (97, 8, 8, 3)).astype(np.uint8)
    joins = np.mean([np.abs(smooth[s].astype(float) - smooth[s - 1]).mean() for s, _, _ in plan[1:]])
    assert joins / group_boundary_change(smooth, plan) > 5  # a seam only at the joins
