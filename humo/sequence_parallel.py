"""Sequence parallelism (Ulysses, DeepSpeed's form): one video's token sequence split across N processes.

Each rank holds a contiguous slice of the L tokens of the time axis (motion, video and reference frames alike),
`ceil(L / N)` of them, the last slice padded with zeros so any token count works. Only the blocks' token stream is
split; everything else (latents, text and audio tokens, the sampler) is the same on every rank.

- Self-attention: q, k, v are projected, normed and rotated on the local slice (RoPE at each token's global
  (frame, row, column), the slice of the global table), then one all-to-all turns the sequence-sharded
  [B, L/N, H, d] into head-sharded [B, L, H/N, d]; every rank attends over the whole sequence for its H/N heads
  (padding left out), and a second all-to-all brings the result back to the rank's own tokens.
- Text cross-attention: local queries against the whole text; no communication.
- Audio cross-attention: each token attends to its own latent frame's audio tokens; a rank's slice knows its first
  token's global index, hence each token's frame (`AudioCrossAttention`).
- The head's output and the mask heads' per-token logits are gathered, so the caller sees the full tensors; the
  step cache's indicator is summed over ranks (`all_sum`), so every rank takes the same decision.

Inference only: the collectives here carry no gradients. Launched by torchrun (RANK, WORLD_SIZE, LOCAL_RANK in
the environment): NCCL on CUDA, gloo on CPU. Without WORLD_SIZE (or with 1) nothing here is used.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from humo.attention import attention
from humo.errors import HumoError


@dataclass(frozen=True)
class SequenceParallel:
    """This process's place in the sequence-parallel group: `rank` of `world` (group None: the default group)."""

    rank: int
    world: int
    group: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, tokens: int) -> TokenShard:
        """The slice of a `tokens`-long sequence this rank holds."""
        return TokenShard(self, tokens)


@dataclass(frozen=True)
class TokenShard:
    """Tokens start .. start + size - 1 of a sequence of `tokens` (global indices); those from `tokens` on, on the
    last rank(s), are padding."""

    sp: SequenceParallel
    tokens: int

    @property
    def size(self) -> int:
        return math.ceil(self.tokens / self.sp.world)

    @property
    def start(self) -> int:
        return self.sp.rank * self.size

    @property
    def padded(self) -> int:
        """The padded sequence length, world * size."""
        return self.sp.world * self.size


def environment() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun sets them; (0, 1, 0) without it."""
    env = os.environ
    return int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1")), int(env.get("LOCAL_RANK", "0"))


def from_environment(device: str | torch.device) -> SequenceParallel | None:
    """Join the torchrun process group when WORLD_SIZE > 1 (NCCL on CUDA, gloo on CPU); else None."""
    rank, world, _ = environment()
    if world <= 1:
        return None
    if not dist.is_initialized():
        dev = torch.device(device)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return SequenceParallel(rank, world)


def shutdown(together: bool = True) -> None:
    """Leave the process group, if this process joined one. `together` (every rank ended normally): meet at a
    barrier first, since gloo aborts a rank (SIGABRT) whose peer closed its connections while it was still
    finishing; after an error the other ranks may never arrive, so then each leaves alone."""
    if dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()


def broadcast(value, sp: SequenceParallel):
    """Rank 0's `value` (any picklable object) on every rank."""
    box = [value]
    dist.broadcast_object_list(box, src=0, group=sp.group)
    return box[0]


def local_device(name: str, local_rank: int) -> str:
    """The device of this rank (of more than one): "cuda" (no index) becomes the local rank's GPU; a CPU is kept.
    One-line errors: an explicit "cuda:N" (it would put every rank on one GPU) and a local rank without a GPU of
    its own."""
    dev = torch.device(name)
    if dev.type != "cuda":
        return name
    if dev.index is not None:
        raise HumoError(
            f"--device {name}: under sequence parallel each process takes its local rank's GPU; pass --device cuda "
            "(and CUDA_VISIBLE_DEVICES to choose the GPUs)"
        )
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise HumoError(
            f"sequence parallel: local rank {local_rank} has no GPU of its own (this node has {count}); use "
            f"--nproc-per-node {count} or fewer"
        )
    return f"cuda:{local_rank}"


def check_heads(num_heads: int, world: int, what: str = "the DiT") -> None:
    """Ulysses splits the attention heads across the ranks: they must divide evenly (a one-line error if not)."""
    if num_heads % world:
        raise HumoError(
            f"sequence parallel over {world} processes: {what} has {num_heads} attention heads, not divisible by "
            f"{world} (use --nproc-per-node dividing {num_heads})"
        )


def check_device(device: str | torch.device) -> None:
    """The collectives run on CUDA (NCCL) or the CPU (gloo); any other device is a one-line error."""
    if torch.device(device).type not in ("cuda", "cpu"):
        raise HumoError(f"--device {device}: sequence parallel runs on cuda (NCCL) or cpu (gloo)")


def split(x: torch.Tensor, shard: TokenShard, dim: int = 1) -> torch.Tensor:
    """This rank's slice along `dim`: [..., L, ...] -> [..., size, ...], zero past the sequence's end."""
    pad = shard.padded - x.shape[dim]
    if pad:
        x = torch.cat([x, x.new_zeros(*x.shape[:dim], pad, *x.shape[dim + 1 :])], dim=dim)
    return x.narrow(dim, shard.start, shard.size)


def gather(x: torch.Tensor, shard: TokenShard, dim: int = 1) -> torch.Tensor:
    """Every rank's slice, in order, padding dropped: [..., size, ...] -> [..., L, ...] (the same on every rank)."""
    parts = [torch.empty_like(x) for _ in range(shard.sp.world)]
    dist.all_gather(parts, x.contiguous(), group=shard.sp.group)
    return torch.cat(parts, dim=dim).narrow(dim, 0, shard.tokens)


def seq_to_heads(x: torch.Tensor, shard: TokenShard) -> torch.Tensor:
    """All-to-all from sequence- to head-sharded: [B, size, H, d] -> [B, L, H/N, d] (rank r gets heads
    r*H/N .. (r+1)*H/N - 1 of every token; padding dropped)."""
    n = shard.sp.world
    b, size, h, d = x.shape
    send = x.reshape(b, size, n, h // n, d).permute(2, 0, 1, 3, 4).contiguous()  # [N, B, size, H/N, d] by rank
    recv = torch.empty_like(send)  # recv[i]: rank i's tokens, this rank's heads
    dist.all_to_all_single(recv, send, group=shard.sp.group)
    return recv.permute(1, 0, 2, 3, 4).reshape(b, n * size, h // n, d)[:, : shard.tokens]


def heads_to_seq(x: torch.Tensor, shard: TokenShard) -> torch.Tensor:
    """All-to-all back from head- to sequence-sharded: [B, L, H/N, d] -> [B, size, H, d] (padding rows zero)."""
    n = shard.sp.world
    b, _, hn, d = x.shape
    x = torch.cat([x, x.new_zeros(b, shard.padded - shard.tokens, hn, d)], dim=1)
    send = x.reshape(b, n, shard.size, hn, d).transpose(0, 1).contiguous()  # [N, B, size, H/N, d]: rank i's tokens
    recv = torch.empty_like(send)  # recv[i]: this rank's tokens, rank i's heads
    dist.all_to_all_single(recv, send, group=shard.sp.group)
    return recv.permute(1, 2, 0, 3, 4).reshape(b, shard.size, n * hn, d)


def self_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shard: TokenShard) -> torch.Tensor:
    """Attention over the whole sequence from each rank's slice. q, k, v: [B, size, H, d] (rotated) ->
    [B, size, H, d]; the padding's outputs are zeros, and padding is never a key. Inference only: the all-to-alls
    carry no gradients, so inputs that require them are an error rather than a silently wrong backward pass."""
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        raise RuntimeError("sequence_parallel.self_attention: inference only (its collectives carry no gradients); "
                           "run under torch.no_grad()")  # fmt: skip
    out = attention(seq_to_heads(q, shard), seq_to_heads(k, shard), seq_to_heads(v, shard))
    return heads_to_seq(out, shard)


def all_sum(x: torch.Tensor, shard: TokenShard) -> torch.Tensor:
    """The sum of `x` over the ranks (a new tensor, the same on every rank)."""
    out = x.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM, group=shard.sp.group)
    return out


def valid(shard: TokenShard, device: torch.device | str) -> torch.Tensor:
    """[size] bool: which of this rank's tokens are real (not padding)."""
    return torch.arange(shard.start, shard.start + shard.size, device=device) < shard.tokens
