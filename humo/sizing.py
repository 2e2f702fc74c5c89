"""Sizing a generation job before any weights load: the DiT's FLOPs and activation memory per pass (from its
config alone), a quick measurement of this device's matmul rate, and the device's free memory.

`humo generate` prints the estimate and refuses a job far beyond the device unless --allow-large; `humo bench dit`
uses the same FLOP count for its achieved TFLOP/s. The first sampling step still prints the measured time and
peak memory: this module's numbers are estimates (compute only; a small model is bound by overheads instead).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import torch

from humo.configs import DiTConfig

# One measured matmul should take a fraction of the time budget even on a CPU: its rows are cut to this many FLOPs.
_PROBE_FLOPS = {"cpu": 2e9, "cuda": 2e11}


def forward_flops(cfg: DiTConfig, tokens: int, text_len: int, audio_frames: int = 0) -> float:
    """FLOPs (2 per multiply-add) of one DiT forward of one sample: the patch and text embeddings, the audio
    projector, the blocks (self-attention, text cross-attention, FFN, and the audio cross-attention of
    `audio_frames` latent frames when the model has the audio path) and the head. Elementwise work (norms, RoPE,
    modulation) and the time embedding are left out."""
    d, f, p = cfg.dim, cfg.ffn_dim, math.prod(cfg.patch)
    per_block = (
        2 * tokens * d * d * 4  # self-attention q, k, v, o
        + 2 * 2 * tokens * tokens * d  # self-attention scores and values
        + 2 * tokens * d * d * 2  # cross-attention q, o
        + 2 * text_len * d * d * 2  # cross-attention k, v
        + 2 * 2 * tokens * text_len * d  # cross-attention scores and values
        + 2 * tokens * d * f * 2  # FFN
    )
    if cfg.audio and audio_frames:
        audio_tokens = audio_frames * cfg.audio_tokens
        per_block += (
            2 * tokens * d * d * 2  # audio cross-attention q, o
            + 2 * audio_tokens * cfg.audio_token_dim * d * 2  # k, v
            + 2 * 2 * tokens * cfg.audio_tokens * d  # each frame's tokens against its own audio tokens
        )
    embed_and_head = 2 * tokens * cfg.in_dim * p * d + 2 * text_len * (cfg.text_dim + d) * d
    embed_and_head += 2 * tokens * d * cfg.out_dim * p
    if cfg.audio and audio_frames:
        h = cfg.audio_hidden
        embed_and_head += (
            2 * audio_frames * (cfg.audio_window_dim * h + h * h + h * cfg.audio_tokens * cfg.audio_token_dim)
        )
    return cfg.num_layers * per_block + embed_and_head


def activation_bytes(cfg: DiTConfig, tokens: int, batch: int, dtype_bytes: int) -> int:
    """Peak activation memory of a no-grad forward of `batch` samples, at the FFN (the widest point of a block): the
    residual stream and its modulated copy (float32), the normed input and the block's output, and the FFN's hidden
    layer twice (the Linear's output and the GELU's); attention runs in fused kernels whose workspace is small
    beside them. Checked against the peak resident memory of a CPU forward (tests/test_sizing.py)."""
    per_token = 4 * cfg.dim * 2 + dtype_bytes * (cfg.dim * 2 + 2 * cfg.ffn_dim)
    return batch * tokens * per_token


def matmul_rate(
    device: torch.device,
    dtype: torch.dtype,
    inner: int,
    cols: int,
    rows: int,
    budget_s: float = 0.2,
    max_flops: float | None = None,
):
    """FLOP/s of a ``[rows, inner] @ [inner, cols]`` matmul (the DiT's FFN shape) measured on `device` for about
    `budget_s` seconds; `rows` is cut so that one product stays under `max_flops` (default: small on the device)."""
    probe = max_flops or _PROBE_FLOPS.get(device.type, _PROBE_FLOPS["cpu"])
    rows = max(64, min(rows, int(probe // (2 * inner * cols))))
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(rows, inner, device=device, dtype=dtype, generator=gen)
    b = torch.randn(inner, cols, device=device, dtype=dtype, generator=gen)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a @ b  # warm-up: kernel selection, allocator
    sync()
    n, t0 = 0, time.perf_counter()
    while True:
        a @ b
        n += 1
        sync()
        elapsed = time.perf_counter() - t0
        if elapsed >= budget_s:
            return 2 * rows * inner * cols * n / elapsed


def free_memory_bytes(device: torch.device) -> int | None:
    """Memory free for this job on `device`: the CUDA device's free memory, else the machine's available RAM
    (None where neither can be read)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


@dataclass(frozen=True)
class JobEstimate:
    """What one generation job costs, estimated before any weights load."""

    passes: int  # DiT forwards over the whole sampling run
    batch: int  # the largest number of forwards batched in one step
    flops: float  # over the whole sampling run
    params: int  # the DiT's
    weight_bytes: int  # the DiT's weights in their dtype
    activation_bytes: int  # peak, one batched step
    seconds: float | None  # at the measured matmul rate (None: not measured)
    free_bytes: int | None  # on the device
    ranks: int = 1  # sequence-parallel processes: every number above but `passes` and `params` is one rank's

    @property
    def memory_bytes(self) -> int:
        return self.weight_bytes + self.activation_bytes


def estimate_job(
    cfg: DiTConfig,
    tokens: int,
    latent_frames: int,
    passes: int,
    batch: int,
    dtype_bytes: int,
    rate: float | None = None,
    free_bytes: int | None = None,
    weight_dtype_bytes: int | None = None,
    resident_blocks: int | None = None,
    ranks: int = 1,
) -> JobEstimate:
    """The estimate for `passes` forwards of `tokens` tokens (`latent_frames` of them carry audio windows), batched
    `batch` at a time, at `rate` FLOP/s. `dtype_bytes`: the compute dtype's; `weight_dtype_bytes`: the weights'
    where they differ (fp8: 1); `resident_blocks`: with block swap, the blocks kept on the device (two more are
    there while streaming); `ranks`: processes splitting each pass's tokens (sequence parallel): the estimate is one
    rank's, with the weights whole on every rank, its share of the tokens' activations and of the compute (the
    all-to-all's traffic is not counted)."""
    flops = passes * forward_flops(cfg, tokens, cfg.text_len, latent_frames if cfg.audio else 0) / ranks
    on_device = cfg.num_params()
    if resident_blocks is not None:
        one_block = cfg.replace(num_layers=2, mask_head_blocks=0).num_params()
        one_block -= cfg.replace(num_layers=1, mask_head_blocks=0).num_params()
        on_device -= max(0, cfg.num_layers - resident_blocks - 2) * one_block
    return JobEstimate(
        passes=passes,
        batch=batch,
        flops=flops,
        params=cfg.num_params(),
        weight_bytes=on_device * (weight_dtype_bytes or dtype_bytes),
        activation_bytes=activation_bytes(cfg, -(-tokens // ranks), batch, dtype_bytes),
        seconds=None if rate is None else flops / rate,
        free_bytes=free_bytes,
        ranks=ranks,
    )
