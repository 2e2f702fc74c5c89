"""The curriculum as data: stages, the audio-visual ramp, task pools, and the resumable sample stream."""

from __future__ import annotations

import itertools

import pytest

from humo.errors import HumoError
from humo.training.config import TrainConfig
from humo.training.curriculum import (
    STAGES,
    TaskBatchSampler,
    av_fraction,
    check_pools,
    task_pools,
    task_probabilities,
)


def test_stages_are_the_recipe():
    assert STAGES[0].tasks == ("t2v",) and STAGES[0].trainable == "full" and not STAGES[0].references
    assert STAGES[1].tasks == ("subject",) and not STAGES[1].audio and STAGES[1].trainable == "minimal"
    assert STAGES[2].tasks == ("subject", "av") and STAGES[2].audio and STAGES[2].mask


def test_audio_visual_share_ramps_then_stays():
    cfg = TrainConfig(stage=2, av_fraction_start=0.2, av_fraction_end=0.5, av_ramp_steps=100)
    assert av_fraction(0, cfg) == pytest.approx(0.2)
    assert av_fraction(50, cfg) == pytest.approx(0.35)
    assert av_fraction(100, cfg) == pytest.approx(0.5)
    assert av_fraction(10_000, cfg) == pytest.approx(0.5)
    single = cfg.replace(single_stage=True)
    assert av_fraction(0, single) == pytest.approx(0.5)
    assert task_probabilities(STAGES[2], 50, cfg) == pytest.approx({"subject": 0.65, "av": 0.35})
    assert task_probabilities(STAGES[1], 50, cfg) == {"subject": 1.0}


AVAIL = [
    {"image": True, "audio": False},
    {"image": False, "audio": True},
    {"image": True, "audio": True},
    {"image": False, "audio": False},
    {"image": True, "audio": True},
]


def test_each_task_draws_only_samples_it_can_use():
    pools = task_pools(AVAIL, ("t2v", "subject", "av"))
    assert pools == {"t2v": [0, 1, 2, 3, 4], "subject": [0, 2, 4], "av": [1, 2, 4]}
    with pytest.raises(HumoError, match="task 'av' needs samples with audio"):
        check_pools({"subject": [0], "av": []}, {"subject": 0.5, "av": 0.5}, STAGES[2])


def _sampler(**kw):
    pools = task_pools(AVAIL, ("subject", "av"))
    cfg = TrainConfig(stage=2, av_fraction_start=0.2, av_fraction_end=0.8, av_ramp_steps=50)
    args = dict(seed=7, batch_size=4, world_size=1, rank=0, grad_accum=1)
    args.update(kw)
    return TaskBatchSampler(pools, lambda s: task_probabilities(STAGES[2], s, cfg), **args)


def test_stream_is_deterministic_resumable_and_split_across_ranks():
    first = list(itertools.islice(iter(_sampler()), 60))
    assert first == list(itertools.islice(iter(_sampler()), 60))
    assert first != list(itertools.islice(iter(_sampler(seed=8)), 60))
    # resuming at micro-batch 23 continues exactly where the uninterrupted stream was
    assert list(itertools.islice(iter(_sampler(start=23)), 37)) == first[23:]
    # two ranks with batch 2 see, together, the global batches of one rank with batch 4
    r0 = list(itertools.islice(iter(_sampler(batch_size=2, world_size=2, rank=0)), 60))
    r1 = list(itertools.islice(iter(_sampler(batch_size=2, world_size=2, rank=1)), 60))
    assert [a + b for a, b in zip(r0, r1)] == first
    for batch in first:
        for idx, task, cont in batch:
            assert cont is False  # no continuation share
            assert (task == "subject" and AVAIL[idx]["image"]) or (task == "av" and AVAIL[idx]["audio"])
    # the audio-visual share follows the ramp: 20% at the start, 80% after step 50
    early = [t for b in first[:10] for _, t, _ in b]
    late = list(itertools.islice(iter(_sampler(start=200)), 100))
    late = [t for b in late for _, t, _ in b]
    assert early.count("av") / len(early) < 0.5 < late.count("av") / len(late)
    assert abs(late.count("av") / len(late) - 0.8) < 0.08


def test_slots_number_the_samples_of_the_stream_on_any_number_of_ranks():
    """slots=True: each item also carries its place in the whole stream (the key of the dataset's crop draw)."""
    plain = list(itertools.islice(iter(_sampler()), 20))
    first = list(itertools.islice(iter(_sampler(slots=True)), 20))
    assert [[it[:3] for it in b] for b in first] == plain
    assert [it[3] for b in first for it in b] == list(range(80))
    r1 = list(itertools.islice(iter(_sampler(batch_size=2, world_size=2, rank=1, slots=True, start=5)), 15))
    assert r1 == [b[2:] for b in first[5:]]


def test_every_sample_of_a_pool_comes_once_per_epoch():
    s = _sampler()
    batches = list(itertools.islice(s.global_batches(), 30))
    subject = [i for b in batches for i, t, _ in b if t == "subject"]
    n = len(s.pools["subject"])
    for e in range(len(subject) // n):
        assert sorted(subject[e * n : (e + 1) * n]) == [0, 2, 4]
