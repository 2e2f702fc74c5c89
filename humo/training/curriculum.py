"""The progressive curriculum as data: stages, their tasks, the task mix, and the sample stream that feeds them.

Tasks (what one training sample asks the DiT to do):
  - ``t2v``:     text -> video, no reference frames, no audio (stage 0, the backbone pre-training).
  - ``subject``: text + reference images -> video (subject preservation); the audio is null.
  - ``av``:      text + audio (+ the references when the sample has them) -> video (audio-visual sync).

Stages (one run trains one stage; the next stage starts from the previous one's export via ``init``):
  - 0 ``backbone``: ``t2v`` on every sample, all parameters (a model trained from scratch needs a backbone).
  - 1 ``subject``:  ``subject`` on samples with references; the DiT runs without its audio branch (audio=None);
    minimal-invasive: only the self-attention learns.
  - 2 ``audio``:    ``subject`` and ``av`` mixed; the audio-visual share ramps from ``av_fraction_start`` to
    ``av_fraction_end`` over ``av_ramp_steps`` (``single_stage``: ``av_fraction_end`` from step 0). Self-attention,
    the audio modules and the mask head learn.

Each task draws only the samples it can use (incomplete-yet-complementary data): ``subject`` needs references,
``av`` needs audio, ``t2v`` needs neither. A modality a sample lacks becomes the null input.

Omni-condition training (OmniHuman-1; a config with ``condition_ratios``): stages 1 and 2 train one task,
``omni``, on every sample, with every condition the stage runs and the sample has, each kept at its ratio
(`objective.keep_ratios`): a sample too weak for a strong condition still trains the weaker ones. The paper's three
stages (text + reference; + audio; + pose) are stage 1, stage 2, and stage 2 with a pose ratio above 0
(``configs/omnihuman.json``, `humo.training.omni`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch.utils.data

from humo.errors import HumoError

TASKS = ("t2v", "subject", "av", "omni")
TASK_ID = {name: i for i, name in enumerate(TASKS)}

# Which inputs each task conditions on (before dropout); a sample lacking one gets the null input. The tasks with a
# reference also use a pose where the sample has one and the DiT has a pose guider (OmniHuman-1: a pose comes with
# the reference; `conditioning.check_condition_order`), kept at the config's pose_ratio.
TASK_USES = {
    "t2v": frozenset({"text"}),
    "subject": frozenset({"text", "image", "pose"}),
    "av": frozenset({"text", "image", "audio", "pose"}),
    "omni": frozenset({"text", "image", "audio", "pose"}),
}
# What a sample must have for a task to draw it.
TASK_REQUIRES = {"t2v": frozenset(), "subject": frozenset({"image"}), "av": frozenset({"audio"}), "omni": frozenset()}


@dataclass(frozen=True)
class Stage:
    """One curriculum stage.

    tasks: the tasks mixed in this stage; trainable: the default trainable set ("full" or "minimal");
    audio: whether the DiT's audio branch runs (audio windows are passed; zeros when null) or is skipped
    (audio=None); references: whether reference frames are appended; mask: whether the mask head is trained.
    """

    index: int
    name: str
    tasks: tuple[str, ...]
    trainable: str
    audio: bool
    references: bool
    mask: bool


STAGES: dict[int, Stage] = {
    0: Stage(0, "backbone", ("t2v",), "full", audio=False, references=False, mask=False),
    1: Stage(1, "subject", ("subject",), "minimal", audio=False, references=True, mask=False),
    2: Stage(2, "audio", ("subject", "av"), "minimal", audio=True, references=True, mask=True),
}


def stage_for(cfg) -> Stage:
    """The Stage a TrainConfig runs (with the one task ``omni`` under `condition_ratios`)."""
    stage = STAGES[cfg.stage]
    if getattr(cfg, "condition_ratios", None):
        return dataclasses.replace(stage, tasks=("omni",))
    return stage


def av_fraction(step: int, cfg) -> float:
    """Share of audio-visual samples at optimiser step `step` of a stage-2 run (linear ramp, then flat)."""
    if cfg.single_stage or cfg.av_ramp_steps == 0:
        return float(cfg.av_fraction_end)
    r = min(max(step, 0) / cfg.av_ramp_steps, 1.0)
    return float(cfg.av_fraction_start + r * (cfg.av_fraction_end - cfg.av_fraction_start))


def task_probabilities(stage: Stage, step: int, cfg) -> dict[str, float]:
    """task -> probability for a sample drawn at optimiser step `step`."""
    if stage.tasks == ("subject", "av"):
        p = av_fraction(step, cfg)
        return {"subject": 1.0 - p, "av": p}
    return {t: 1.0 / len(stage.tasks) for t in stage.tasks}


def task_pools(availability: Sequence[Mapping[str, bool]], tasks: Sequence[str]) -> dict[str, list[int]]:
    """Dataset indices each task may draw: ``availability[i]`` says whether sample i has "image" and "audio"."""
    pools = {}
    for task in tasks:
        need = TASK_REQUIRES[task]
        pools[task] = [i for i, have in enumerate(availability) if all(have.get(m, False) for m in need)]
    return pools


def check_pools(pools: Mapping[str, list[int]], probabilities: Mapping[str, float], stage: Stage) -> None:
    """A task that can be drawn needs samples; otherwise a one-line HumoError saying what is missing."""
    for task, pool in pools.items():
        if not pool and probabilities.get(task, 0.0) > 0:
            what = {"subject": "reference images", "av": "audio", "t2v": "video", "omni": "video"}[task]
            raise HumoError(f"training data: stage {stage.index} task '{task}' needs samples with {what}; none found")


class TaskBatchSampler(torch.utils.data.Sampler):
    """An endless, deterministic stream of micro-batches of ``(dataset index, task, continuation)`` for one rank.

    Micro-batch m of the *global* batch (``batch_size * world_size`` samples) is a pure function of the seed,
    m and everything drawn before it: each slot picks a task with the probabilities of its optimiser step
    (``m // grad_accum``), then takes the next index of that task's pool, which is walked through a fresh seeded
    permutation each epoch. Rank r gets slots ``[r * batch_size, (r + 1) * batch_size)`` of the global batch, so
    any number of processes sees the same global batches as one process with the combined batch.

    Continuations (OmniHuman-1's long video): each micro-batch is, with probability `continuation`, made of the
    samples' continuations (a segment that starts from motion frames) instead of their first segments; the whole
    micro-batch is one or the other, as its time axis is. The draw is seeded by m alone, so it does not move the
    task choices or the pools.

    slots: yield ``(dataset index, task, continuation, slot)``, slot being the sample's place in the whole stream
    (``micro * global batch + its place in the global batch``): the key of the per-sample draws the dataset makes
    (reference crops), the same on any number of ranks and after a resume.

    Resuming: ``start`` is the number of micro-batches already consumed; the pool positions at `start` are
    recomputed by replaying the task choices (cheap: no data is loaded).
    """

    def __init__(
        self,
        pools: Mapping[str, Sequence[int]],
        probabilities,
        *,
        seed: int,
        batch_size: int,
        world_size: int = 1,
        rank: int = 0,
        grad_accum: int = 1,
        start: int = 0,
        continuation: float = 0.0,
        slots: bool = False,
    ):
        self.slots = bool(slots)
        self.pools = {t: np.asarray(p, dtype=np.int64) for t, p in pools.items()}
        self.tasks = [t for t in TASKS if t in self.pools]
        self.probabilities = probabilities  # step -> {task: p}
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.world_size = int(world_size)
        self.rank = int(rank)
        self.grad_accum = int(grad_accum)
        self.start = int(start)
        self.continuation = float(continuation)

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def _choose_tasks(self, micro: int) -> list[str]:
        probs = self.probabilities(micro // self.grad_accum)
        p = np.array([probs.get(t, 0.0) for t in self.tasks], dtype=np.float64)
        cum = np.cumsum(p / p.sum())
        u = np.random.default_rng([self.seed, 1, micro]).random(self.global_batch)
        picks = np.minimum(np.searchsorted(cum, u, side="right"), len(self.tasks) - 1)
        return [self.tasks[i] for i in picks]

    def _is_continuation(self, micro: int) -> bool:
        return self.continuation > 0 and np.random.default_rng([self.seed, 3, micro]).random() < self.continuation

    def _permutation(self, task: str, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, 2, TASK_ID[task], epoch]).permutation(self.pools[task])

    def positions_at(self, micro: int) -> dict[str, int]:
        """How many samples each task pool has handed out before micro-batch `micro`."""
        pos = dict.fromkeys(self.tasks, 0)
        for m in range(micro):
            for t in self._choose_tasks(m):
                pos[t] += 1
        return pos

    def global_batches(self, start: int | None = None) -> Iterator[list[tuple]]:
        """The global micro-batches from `start` on (every rank's slots)."""
        start = self.start if start is None else start
        pos = self.positions_at(start)
        cache: dict[tuple[str, int], np.ndarray] = {}
        micro = start
        while True:
            batch = []
            cont = self._is_continuation(micro)
            for j, t in enumerate(self._choose_tasks(micro)):
                n = len(self.pools[t])
                epoch, k = divmod(pos[t], n)
                if (t, epoch) not in cache:
                    cache = {key: v for key, v in cache.items() if key[0] != t}  # keep one epoch per pool
                    cache[(t, epoch)] = self._permutation(t, epoch)
                item = (int(cache[(t, epoch)][k]), t, cont)
                batch.append((*item, micro * self.global_batch + j) if self.slots else item)
                pos[t] += 1
            yield batch
            micro += 1

    def __iter__(self) -> Iterator[list[tuple]]:
        lo = self.rank * self.batch_size
        for batch in self.global_batches():
            yield batch[lo : lo + self.batch_size]

    def __len__(self) -> int:  # endless; DataLoader only needs this for len(loader), which we never call
        raise TypeError("TaskBatchSampler is endless")
