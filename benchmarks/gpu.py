"""The GPU benchmark of issue 18, at real sizes with random weights: DiT sampling time (all guidance branches) and
peak memory, written as JSON.

    python -m benchmarks.gpu --out gpu.json           # on a GPU (benchmarks/gpu.sh runs it with a time limit)
    python -m benchmarks.gpu --out gpu.json --tiny    # the same code at tiny widths and sizes, on the CPU (tests)

Cases:
  1.7b-480p: humo-1.7b at 480x832, 97 frames, text+image+audio, release guidance, 50 steps, batched and with step
             caching at 0.1; target <= 60 s on one H200.
  1.7b-fp8:  humo-1.7b at 480x832, 97 frames, 10 steps with fp8 block weights, upcast per layer against scaled
             fp8 matmuls (`--fp8-matmul`), beside bf16 weights.
  17b-480p-24gb: humo-17b at 480x832, 97 frames, under a 24 GB memory limit, fp8 weights (the matmul `auto`
             picks) and block swap with the resident blocks `humo plan`'s estimate allows, one guidance pass at a
             time; target: it fits.
Encoders and VAE are not run (their cost is small beside the DiT's and they leave the GPU when done): the
conditions are random tensors of the right shapes, built once per case.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch


def random_dit(preset: str, device, dtype, tiny: bool, **overrides):
    """A HumoDiT of `preset` with random weights, made without materialising fp32 copies (fast at 17B)."""
    from humo.configs import dit_preset
    from humo.dit import HumoDiT

    if tiny:
        overrides = dict(
            dim=64, ffn_dim=128, num_heads=4, num_layers=4, text_dim=32, text_len=16, freq_dim=32,
            audio_feat_dim=16, audio_hidden=16, audio_tokens=2, audio_token_dim=16, **overrides,
        )  # fmt: skip
    cfg = dit_preset(preset, **overrides)
    with torch.device("meta"):
        dit = HumoDiT(cfg)
    dit = dit.to_empty(device=device).to(dtype)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, p in dit.named_parameters():
            if "norm" in name and p.ndim == 1:
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.uniform_(-0.02, 0.02, generator=gen)
    return dit.eval()


def random_request(pipe, height: int, width: int, frames: int, steps: int, cache=None, max_batch=None):
    """(request, EncodedRequest) of a text+image+audio job with random conditions of the right shapes."""
    from humo.conditioning import Conditions
    from humo.constants import latent_frames
    from humo.pipeline import EncodedRequest, GenerationRequest, schedule_conditions
    from humo.reference import concat_condition

    cfg = pipe.dit.cfg
    req = GenerationRequest(
        "benchmark", height=height, width=width, frames=frames, steps=steps, cache=cache, max_batch=max_batch
    ).resolved(pipe.layout)
    req = dataclasses.replace(req, images=["ref.png"], audio="speech.wav")
    schedule = req.schedule(req)
    gen = torch.Generator().manual_seed(1)
    f, h, w = latent_frames(frames), height // 8, width // 8
    sources = {"prompt"} | {c.text_source for c in schedule_conditions(schedule)}
    texts = {k: torch.randn(1, min(64, cfg.text_len), cfg.text_dim, generator=gen) for k in sources}
    refs = torch.randn(1, cfg.out_dim, 1, h, w, generator=gen)
    windows = torch.randn(1, f + 1, cfg.audio_window, cfg.audio_groups, cfg.audio_feat_dim, generator=gen)
    y = y_null = None
    if cfg.reference_mode == "concat":
        zero = torch.randn(cfg.out_dim, f + 1, h, w, generator=gen)
        y = concat_condition(refs, zero, keep_image=True, num_video=f)
        y_null = concat_condition(refs, zero, keep_image=False, num_video=f)
    cond = Conditions(texts=texts, refs=refs, num_video=f, windows=windows, y=y, y_null=y_null)
    enc = EncodedRequest(
        conditions=cond,
        schedule=schedule,
        samples=None,
        frames=frames,
        latent_shape=(cfg.out_dim, cond.num_frames, h, w),
        mode="text+image+audio",
        size=(height, width),
    )
    return req, enc


def timed_sample(pipe, req, enc) -> dict:
    sync = torch.cuda.synchronize if pipe.device.type == "cuda" else (lambda: None)
    if pipe.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(pipe.device)
    sync()
    t0 = time.perf_counter()
    latents, _, _ = pipe.sample(req, enc)
    sync()
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(pipe.device) / 2**30 if pipe.device.type == "cuda" else None
    return {"seconds": seconds, "peak_gib": peak, "finite": bool(torch.isfinite(latents).all())}


def main(argv=None) -> int:
    from humo.commands.plan import RESERVE, estimates, sized_request
    from humo.fp8 import choose_matmul, quantize_dit, set_matmul
    from humo.offload import BlockSwap
    from humo.pipeline import LAYOUTS, HumoPipeline

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="JSON results")
    p.add_argument("--tiny", action="store_true", help="tiny widths and sizes (CPU check of the script)")
    p.add_argument("--cases", nargs="+", default=["1.7b-480p", "1.7b-fp8", "17b-480p-24gb"])
    args = p.parse_args(argv)
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    height, width, frames, steps = (32, 48, 9, 3) if args.tiny else (480, 832, 97, 50)
    results = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "tiny": args.tiny}
    log = lambda m: print(m, flush=True)  # noqa: E731

    if "1.7b-480p" in args.cases:
        dtype = torch.float32 if args.tiny else torch.bfloat16
        dit = random_dit("humo-1.7b", device, dtype, args.tiny)
        pipe = HumoPipeline(LAYOUTS["humo-1.7b"], dit, None, None, None, device=device, progress=False, log=log)
        case = {}
        for name, cache in (("batched", None), ("cache-0.1", 0.1)):
            req, enc = random_request(pipe, height, width, frames, steps, cache=cache)
            timed_sample(pipe, *random_request(pipe, height, width, frames, 2))  # warm-up
            case[name] = timed_sample(pipe, req, enc)
            log(f"1.7b-480p {name}: {case[name]}")
        results["1.7b-480p"] = case
        del dit, pipe
        if device.type == "cuda":
            torch.cuda.empty_cache()

    if "1.7b-fp8" in args.cases:
        dtype = torch.float32 if args.tiny else torch.bfloat16
        dit = random_dit("humo-1.7b", "cpu", dtype, args.tiny)
        pipe = HumoPipeline(LAYOUTS["humo-1.7b"], dit, None, None, None, device=device, progress=False, log=log)
        case = {}
        short = max(2, steps // 5)
        for name in ("bf16", "upcast", "scaled"):
            if name == "upcast":
                quantize_dit(dit.cpu())
            if name != "bf16":
                set_matmul(dit, name)
            dit.to(device)
            req, enc = random_request(pipe, height, width, frames, short)
            timed_sample(pipe, *random_request(pipe, height, width, frames, 2))  # warm-up
            case[name] = timed_sample(pipe, req, enc)
            log(f"1.7b-fp8 {name}: {case[name]}")
        results["1.7b-fp8"] = case
        del dit, pipe
        if device.type == "cuda":
            torch.cuda.empty_cache()

    if "17b-480p-24gb" in args.cases:
        limit_gib = 24
        layout = LAYOUTS["humo-17b"]
        dtype = torch.float32 if args.tiny else torch.bfloat16
        dit = random_dit("humo-17b", "cpu", dtype, args.tiny)
        quantize_dit(dit)
        matmul = choose_matmul("auto", device)
        set_matmul(dit, matmul)
        # the most blocks `humo plan`'s estimate lets stay resident under the limit (the tiny model has only 4)
        sized = sized_request(layout, height, width, frames, steps)
        swaps = [s for s in estimates(sized, layout, (1 - RESERVE) * limit_gib * 2**30) if s.resident is not None]
        resident = next((s.resident for s in swaps if s.fits), 0)
        if args.tiny:
            resident = len(dit.blocks) // 2
        if device.type == "cuda":
            total = torch.cuda.get_device_properties(device).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, limit_gib * 2**30 / total), device)
        for name, child in dit.named_children():
            if name != "blocks":
                child.to(device)
        swap = BlockSwap(dit, device, resident)
        pipe = HumoPipeline(layout, dit, None, None, None, device=device, progress=False, log=log)
        req, enc = random_request(pipe, height, width, frames, steps, max_batch=1)
        try:
            res = timed_sample(pipe, req, enc)
            res["fits"] = True
        except torch.OutOfMemoryError as e:
            res = {"fits": False, "error": str(e).splitlines()[0]}
        res.update(resident_blocks=resident, peak_streamed=swap.peak_loaded, limit_gib=limit_gib, fp8_matmul=matmul)
        log(f"17b-480p-24gb: {res}")
        results["17b-480p-24gb"] = res

    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
