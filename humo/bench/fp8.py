"""`humo bench fp8`: the DiT's output error with fp8 block weights (humo.fp8) against bf16 weights, both against
fp32, on the full-width layouts (random weights, a few blocks), and the weights' memory of each. Both fp8 paths:
weights upcast per layer, and scaled fp8 matmuls with the activations quantized per token (on a CPU through torch's
reference kernel: the error is the GPU's, the speed is not)."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--presets", nargs="+", default=["humo-1.7b", "humo-17b"], help="(default both releases)")
    parser.add_argument("--blocks", type=int, default=2, help="DiT blocks at full width (default 2)")
    parser.add_argument("--tokens", type=int, default=1024, help="video tokens per pass, about (default 1024)")
    parser.add_argument("--seed", type=int, default=0)


def relative_error(out, ref) -> float:
    return float((out.float() - ref.float()).norm() / ref.float().norm())


def run(args: argparse.Namespace) -> int:
    import copy
    import math

    import torch

    from humo.configs import dit_preset
    from humo.dit import HumoDiT
    from humo.errors import HumoError
    from humo.fp8 import quantize_dit, set_matmul, weight_bytes

    if args.blocks < 1 or args.tokens < 4:
        raise HumoError(f"--blocks {args.blocks} --tokens {args.tokens}: need at least 1 block and 4 tokens")
    print(f"fp8 block weights vs bf16, against fp32; random weights, {torch.get_num_threads()} threads")
    print(
        f"{'preset':>10} {'blocks':>6} {'tokens':>6}  {'bf16 err':>9} {'fp8 err':>9} {'fp8 vs bf16':>11}"
        f" {'scaled err':>10} {'scaled vs bf16':>14}  weights"
    )
    for name in args.presets:
        cfg = dit_preset(name, num_layers=args.blocks, mask_head_blocks=0)
        torch.manual_seed(args.seed)
        model = HumoDiT(cfg).eval()
        g = torch.Generator().manual_seed(args.seed)
        side = max(1, round(math.sqrt(args.tokens / 4)))  # 4 latent frames of side x side tokens
        ph, pw = cfg.patch[1:]
        x = torch.randn(1, cfg.out_dim, 4, side * ph, side * pw, generator=g)
        y = None
        if cfg.reference_mode == "concat":
            y = torch.randn(1, cfg.in_dim - cfg.out_dim, 4, side * ph, side * pw, generator=g)
        inputs = dict(
            x=x,
            t=torch.tensor([500.0]),
            context=torch.randn(1, 64, cfg.text_dim, generator=g),
            audio=torch.randn(1, 4, cfg.audio_window, cfg.audio_groups, cfg.audio_feat_dim, generator=g),
            y=y,
        )
        with torch.no_grad():
            ref = model(**inputs)
            bf16 = copy.deepcopy(model).to(torch.bfloat16)
            out_bf16 = bf16(**inputs)
            quantize_dit(bf16)  # from the bf16 weights, as a user's bf16 checkpoint would be
            out_fp8 = bf16(**inputs)
            set_matmul(bf16, "scaled")
            out_scaled = bf16(**inputs)
        sizes = {k: weight_bytes(m) / 2**30 for k, m in (("fp32", model), ("fp8", bf16))}
        bf16_gib = sizes["fp32"] / 2
        print(
            f"{name:>10} {args.blocks:>6} {4 * side * side:>6}  {relative_error(out_bf16, ref):9.4f}"
            f" {relative_error(out_fp8, ref):9.4f} {relative_error(out_fp8, out_bf16):11.4f}"
            f" {relative_error(out_scaled, ref):10.4f} {relative_error(out_scaled, out_bf16):14.4f}"
            f"  {bf16_gib:.2f} GiB bf16 -> {sizes['fp8']:.2f} GiB fp8"
        )
        del model, bf16
    return 0
