"""Step caching: skip the DiT's blocks at a sampling step whose input has barely changed since the last full pass.

Between two nearby sampling steps the blocks mostly add the same thing to the token stream. TeaCache (Liu et al.
2024, "Timestep Embedding Tells: It's Time to Cache for Video Diffusion Model") measures how much the first block's
timestep-modulated input has moved since the previous step (relative L1), accumulates it over the skipped steps,
and while the sum stays under a threshold reuses the residual (blocks' output minus their input) of the last step
that ran them. We do the same per guidance branch (each condition of the guidance keeps its own residual, since
the conditions change what the blocks add) and without TeaCache's per-model polynomial rescaling of the distance,
so the threshold is in units of the raw relative change: `humo bench cache` and docs/inference.md give the
speed and quality it buys on the proving-ground model.

The first `warmup_steps(n)` steps and the last step always run the blocks: the early steps move the latents most,
and the last one draws the finest detail.

What passes from one step to the next is explicit: `SamplingState.cache` holds a `BranchCache` per guidance
condition, and `cached_forward` returns the next one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from humo.errors import HumoError
from humo.sequence_parallel import TokenShard, all_sum, valid

# The share of the steps that always run the blocks at the start (TeaCache's Wan setting: 5 of 50).
WARMUP_SHARE = 0.1


def check_threshold(value, what: str = "--cache") -> None:
    """Refuse a threshold that is not a positive finite number, naming the input."""
    if not (isinstance(value, (int, float)) and 0 < value < float("inf")):
        raise HumoError(f"{what} {value}: must be a positive threshold (e.g. 0.05), or left out")


def warmup_steps(steps: int) -> int:
    """Sampling steps at the start that always run the blocks (at least one: there is nothing to reuse before)."""
    return max(1, math.ceil(WARMUP_SHARE * steps))


def must_compute(step: int, steps: int) -> bool:
    """Whether step `step` (0-based) of `steps` runs the blocks whatever the distance: warm-up and the last step."""
    return step < warmup_steps(steps) or step == steps - 1


@dataclass(frozen=True)
class BranchCache:
    """What one guidance branch (rows of one condition) keeps from a step for the next.

    indicator:   [B, L, D] the first block's modulated input at this step
    residual:    [B, L, D] the blocks' output minus their input, from the latest step that ran them
    (with sequence parallel, both this rank's slice of the tokens [B, size, D]; the rest is whole)
    mask_logits: [B, F, H, W] the mask head's logits from that step, or None without a head
    distance:    [B] relative change of the indicator accumulated since that step (0 after a full pass)
    computed:    [B] bool, whether this step ran the blocks (for the count of passes saved)
    person_logits: [B, P, Fm, H, W] the person mask predictor's logits from that step, or None
    """

    indicator: torch.Tensor
    residual: torch.Tensor
    mask_logits: torch.Tensor | None
    distance: torch.Tensor
    computed: torch.Tensor
    person_logits: torch.Tensor | None = None

    def __getitem__(self, rows: slice) -> BranchCache:
        pick = lambda v: None if v is None else v[rows]  # noqa: E731
        return BranchCache(
            self.indicator[rows],
            self.residual[rows],
            pick(self.mask_logits),
            self.distance[rows],
            self.computed[rows],
            pick(self.person_logits),
        )

    @staticmethod
    def cat(caches: list[BranchCache]) -> BranchCache:
        """The caches of several branches stacked along the batch, in order."""

        def cat(vs):
            return None if any(v is None for v in vs) else torch.cat(vs)

        return BranchCache(
            torch.cat([c.indicator for c in caches]),
            torch.cat([c.residual for c in caches]),
            cat([c.mask_logits for c in caches]),
            torch.cat([c.distance for c in caches]),
            torch.cat([c.computed for c in caches]),
            cat([c.person_logits for c in caches]),
        )


def relative_change(new: torch.Tensor, old: torch.Tensor, shard: TokenShard | None = None) -> torch.Tensor:
    """Per row: mean |new - old| / mean |old| over all but the batch dimension -> [B]. With a shard (new, old:
    this rank's slice [B, size, ...] of the tokens, `humo.sequence_parallel`), the means are of the whole
    sequence's real tokens, summed over the ranks: every rank gets the same distance, so the same decision."""
    dims = tuple(range(1, new.dim()))
    if shard is None:
        return (new - old).abs().mean(dims) / old.abs().mean(dims).clamp_min(1e-12)
    real = valid(shard, new.device).view(1, -1, *([1] * (new.dim() - 2)))
    sums = torch.stack([((new - old).abs() * real).sum(dims), (old.abs() * real).sum(dims)])
    count = shard.tokens * new[0, 0].numel()
    changed, size = all_sum(sums.double(), shard) / count
    return (changed / size.clamp_min(1e-12)).to(new.dtype)


def cached_forward(
    dit,
    inputs: dict,
    prev: BranchCache | None,
    threshold: float,
    *,
    force: bool = False,
    return_mask: bool = False,
    return_persons: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, BranchCache]:
    """`dit(**inputs)` with the blocks skipped on the rows whose accumulated change stays under `threshold`.

    inputs: HumoDiT.forward's arguments (x, t, context, audio, y, frame_times, ...); prev: the rows' caches from
    the previous step (None: run every row); force: run every row (warm-up, last step).
    Returns (velocities [B, ...], mask logits or None, the rows' caches for the next step); the per-person mask
    logits (return_persons) are the cache's `person_logits`. A skipped row keeps its masks of the step that ran.
    """
    emb = dit.embed(**inputs)
    indicator = dit.blocks[0].modulated_input(emb.tokens, emb.e6)
    b = indicator.shape[0]
    if prev is None or force:
        compute = torch.ones(b, dtype=torch.bool, device=indicator.device)
        distance = torch.zeros(b, device=indicator.device)
    else:
        accumulated = prev.distance.to(indicator.device) + relative_change(indicator, prev.indicator, emb.shard)
        compute = accumulated >= threshold
        distance = torch.where(compute, torch.zeros_like(accumulated), accumulated)
    tokens = emb.tokens
    clone = lambda v: None if v is None else v.clone()  # noqa: E731
    if prev is not None:
        residual = prev.residual.to(tokens).clone()
        masks = [clone(prev.mask_logits), clone(prev.person_logits)]
        out_tokens = tokens + residual
    else:
        residual, masks, out_tokens = torch.zeros_like(tokens), [None, None], tokens.clone()
    rows = compute.nonzero().flatten()
    if rows.numel():
        sub = emb.rows(rows) if rows.numel() < b else emb
        done, tapped = dit.run_blocks(sub, sub.tokens, return_mask, return_persons)
        out_tokens[rows] = done
        residual[rows] = done - sub.tokens
        for k, new in enumerate(dit.mask_logits(sub, tapped, return_mask, return_persons)):
            if new is not None:
                if masks[k] is None:
                    masks[k] = new.new_zeros((b, *new.shape[1:]))
                masks[k][rows] = new.to(masks[k])
    out = dit.finish(emb, out_tokens)
    return out, masks[0], BranchCache(indicator, residual, masks[0], distance, compute, masks[1])


@dataclass(frozen=True)
class StepCacheInput:
    """One sampling step's step-caching input: the guidance conditions' caches from the step before, the
    threshold, and whether this step runs the blocks on every row regardless (`must_compute`)."""

    branches: dict
    threshold: float
    force: bool = False
