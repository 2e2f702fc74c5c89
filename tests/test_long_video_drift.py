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
