"""`humo bench dit`: forward time of our DiT vs diffusers' WanTransformer3DModel, same weights, same input.

Default: a humo-1.7b-shaped model cut to 4 blocks at full width (1536), 4 latent frames of 64x64 (4096 tokens),
512 text tokens, in fp32 and bf16. Prints each time, the ratio ours/diffusers (<= 1.0 means we are no slower),
achieved TFLOP/s and the fraction of this machine's measured bf16/fp32 matmul peak.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import torch


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="humo-1.7b", help="layout to take the width from (default humo-1.7b)")
    parser.add_argument("--blocks", type=int, default=4, help="number of blocks (default 4)")
    parser.add_argument("--frames", type=int, default=4, help="latent frames (default 4)")
    parser.add_argument("--size", type=int, default=64, help="latent height = width (default 64 -> 1024 tokens/frame)")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per model and dtype (best is kept)")
    parser.add_argument(
        "--dtypes",
        help="comma list of fp32, bf16 (default both; on a CPU whose bf16 matmuls run at under a quarter of its fp32 "
        "rate, bf16 is skipped with a note unless named here)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")


def bf16_is_slow() -> str | None:
    """On a CPU without fast bf16 matmuls (no AMX or AVX512-BF16), why bf16 forwards are not worth timing; else
    None. A GPU is never slow here."""
    from humo.sizing import matmul_rate

    if torch.cuda.is_available():
        return None
    cpu = torch.device("cpu")
    fp32 = matmul_rate(cpu, torch.float32, 1024, 1024, rows=256, budget_s=0.1)
    bf16 = matmul_rate(cpu, torch.bfloat16, 1024, 1024, rows=256, budget_s=0.1)
    if bf16 >= fp32 / 4:
        return None
    return (
        f"this CPU ({torch.backends.cpu.get_cpu_capability()}) runs bf16 matmuls at {bf16 / 1e9:.0f} GFLOP/s "
        f"against {fp32 / 1e9:.0f} in fp32"
    )


def matmul_peak(dtype: torch.dtype, n: int = 4096) -> float:
    """Measured dense matmul TFLOP/s on this machine for `dtype`: n x n products (rows cut to 2e10 FLOPs a product
    on a CPU) for half a second."""
    from humo.sizing import matmul_rate

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    max_flops = 2 * n**3 if device.type == "cuda" else 2e10
    return matmul_rate(device, dtype, n, n, rows=n, budget_s=0.5, max_flops=max_flops) / 1e12


def _best_time(fn, repeats: int) -> float:
    with torch.inference_mode():
        fn()  # warm-up: caches (RoPE tables), allocator, oneDNN kernels
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
    return best


def run(args: argparse.Namespace) -> int:
    from diffusers import WanTransformer3DModel

    from humo.checkpoint import diffusers_config, to_diffusers_keys
    from humo.configs import dit_preset
    from humo.dit import HumoDiT
    from humo.sizing import forward_flops

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = dit_preset(args.preset, num_layers=args.blocks, mask_head_blocks=0)
    torch.manual_seed(0)
    ours = HumoDiT(cfg).eval()
    theirs = WanTransformer3DModel(**diffusers_config(cfg)).eval()
    theirs.load_state_dict(
        to_diffusers_keys(
            {k: v for k, v in ours.state_dict().items() if not k.startswith("audio") and "audio_cross" not in k}
        ),
        strict=True,
    )
    tokens = args.frames * (args.size // 2) ** 2
    x = torch.randn(1, cfg.out_dim, args.frames, args.size, args.size)
    t = torch.tensor([500.0])
    ctx = torch.randn(1, cfg.text_len, cfg.text_dim)
    flops = forward_flops(cfg, tokens, cfg.text_len)
    print(
        f"DiT forward: {args.preset} layout, {args.blocks} blocks, width {cfg.dim}, {tokens} video tokens, "
        f"{cfg.text_len} text tokens, {torch.get_num_threads()} threads; {flops / 1e12:.2f} TFLOP per forward"
    )
    print(
        f"{'dtype':6} {'humo s':>8} {'diffusers s':>12} {'ratio':>7} {'humo TFLOP/s':>13} {'peak TFLOP/s':>13} "
        f"{'of peak':>8} {'humo+audio s':>13}"
    )
    for name in (args.dtypes or "fp32,bf16").split(","):
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[name.strip()]
        slow = args.dtypes is None and dtype == torch.bfloat16 and bf16_is_slow()
        if slow:
            print(f"{name:6} skipped: {slow} (--dtypes bf16 times it anyway)")
            continue
        ours.to(dtype)
        theirs.to(dtype)
        xd, ctxd = x.to(dtype), ctx.to(dtype)
        audio = torch.randn(1, args.frames, cfg.audio_window, cfg.audio_groups, cfg.audio_feat_dim).to(dtype)
        t_ours = _best_time(partial(ours, xd, t, ctxd), args.repeats)
        t_theirs = _best_time(partial(theirs, xd, t, ctxd, return_dict=False), args.repeats)
        t_audio = _best_time(partial(ours, xd, t, ctxd, audio=audio), 1) if cfg.audio else float("nan")
        peak = matmul_peak(dtype)
        achieved = flops / t_ours / 1e12
        print(
            f"{name:6} {t_ours:8.3f} {t_theirs:12.3f} {t_ours / t_theirs:7.3f} {achieved:13.3f} {peak:13.3f} "
            f"{achieved / peak:8.1%} {t_audio:13.3f}"
        )
    print("ratio = humo / diffusers forward time (<= 1.0: humo is no slower). 'humo+audio' adds HuMo's audio path.")
    return 0
