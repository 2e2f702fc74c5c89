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


def test_the_codec_ceiling_codes_each_segment_from_its_start_frame():
    from humo.evaluation.long_video import through_codec_in_segments

    class FirstFrameSeam:
        """A stand-in codec that is exact except on a segment's first frame, which it brightens by 10."""

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
    starts = [s for s, _, _ in plan]
    diff = out.astype(int) - frames
    assert np.all(np.abs(diff[starts] - 10) <= 1)  # every segment's first frame carries the seam
    others = np.setdiff1d(np.arange(109), starts)
    assert np.abs(diff[others]).max() <= 1 and out.shape == frames.shape
