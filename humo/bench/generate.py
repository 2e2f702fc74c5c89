"""`humo bench generate`: time per sampling step with all guidance branches in one batched DiT forward vs one
forward per branch (as the release does), on the toy model (random weights; speed does not depend on them)."""

from __future__ import annotations

import argparse
import dataclasses
import time


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=64, help="height = width in pixels (default 64)")
    parser.add_argument("--frames", type=int, default=49, help="video frames, 4k+1 (default 49)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant (default 6)")
    parser.add_argument("--guidance", default="release-1.7b", help="guidance preset (default release-1.7b: 4 passes)")


def run(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    import numpy as np
    import soundfile as sf
    import torch
    from PIL import Image

    from humo.pipeline import LAYOUTS, GenerationRequest, HumoPipeline
    from humo.toy import toy_components

    tmp = Path(tempfile.mkdtemp(prefix="humo-bench-"))
    t = np.arange(int(16000 * args.frames / 25)) / 16000
    sf.write(tmp / "a.wav", (0.3 * np.sin(2 * np.pi * 200 * t)).astype("float32"), 16000)
    Image.fromarray(np.full((args.size, args.size, 3), 128, np.uint8)).save(tmp / "r.png")
    dit, vae, text, audio = toy_components(seed=0)
    pipe = HumoPipeline(LAYOUTS["toy"], dit, vae, text, audio, progress=False, log=lambda m: None)
    req = GenerationRequest(
        "a man talks",
        [str(tmp / "r.png")],
        str(tmp / "a.wav"),
        height=args.size,
        width=args.size,
        frames=args.frames,
        steps=args.steps,
        guidance=args.guidance,
    )
    req = req.resolved(pipe.layout)
    cond = pipe.encode_conditions(req)
    passes = len(cond.schedule.conditions_needed(500.0))
    times = {}
    for name, r in (("batched", req), ("sequential", dataclasses.replace(req, sequential_guidance=True))):
        pipe.sample(dataclasses.replace(r, steps=1), cond)  # warm-up
        t0 = time.perf_counter()
        pipe.sample(r, cond)
        times[name] = (time.perf_counter() - t0) / args.steps
    print(
        f"toy DiT, {args.frames} frames {args.size}x{args.size}, guidance {args.guidance} ({passes} passes a step), "
        f"{torch.get_num_threads()} threads"
    )
    print(f"batched     {times['batched'] * 1000:8.1f} ms/step")
    print(f"sequential  {times['sequential'] * 1000:8.1f} ms/step")
    print(f"ratio batched/sequential {times['batched'] / times['sequential']:.3f} (< 1: batching is faster)")
    return 0
