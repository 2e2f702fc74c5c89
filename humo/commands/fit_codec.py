"""`humo fit-codec`: fit the proving ground's linear latent codec to a manifest's clips (seconds, closed form).

    humo fit-codec --manifest data/train/manifest.jsonl --out runs/codec --channels 16

Writes ``OUT/codec.json`` and ``OUT/codec.safetensors`` (a folder that `humo precompute --vae`, `python -m
humo.toy --vae` and the toy pipeline load like a VAE folder) and prints the round trip's quality on the
manifest's held-out clips (split != train): PSNR of the frame and of the face, and the mouth reader's agreement.
See docs/proving-ground.md, "The latent codec".
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", required=True, help="dataset manifest (.jsonl or .parquet)")
    parser.add_argument("--out", required=True, help="codec folder to write")
    parser.add_argument("--channels", type=int, default=16, help="latent channels z_dim (default 16, as Wan's VAE)")
    parser.add_argument("--stride", type=int, default=4, help="pixels per latent pixel, each axis (default 4)")
    parser.add_argument(
        "--scaling",
        default="channel",
        choices=["channel", "global"],
        help="each channel whitened to unit variance (default), or one scale for all, keeping PCA's variance order",
    )
    parser.add_argument("--clips", type=int, default=200, help="training clips to fit on (default 200)")
    parser.add_argument("--eval-clips", type=int, default=20, help="held-out clips to report on (default 20)")


def run(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    from humo.conditions.linear_codec import fit_linear_codec
    from humo.conditions.vae_training import clip_tensor, load_clips
    from humo.errors import HumoError, atomic_path
    from humo.evaluation.codec import evaluate_round_trip

    for name in ("channels", "stride", "clips", "eval_clips"):
        if getattr(args, name) < 1:
            raise HumoError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be >= 1")
    t0 = time.perf_counter()
    train = load_clips(args.manifest, train=True, limit=args.clips)
    clips = (clip_tensor(v) for v in train.videos)
    codec = fit_linear_codec(clips, z_dim=args.channels, stride=args.stride, scaling=args.scaling)
    report = {"fit_clips": len(train), **codec.report}
    try:
        held = load_clips(args.manifest, train=False, limit=args.eval_clips)
    except HumoError:
        held = None  # a manifest without held-out clips: nothing to report on
    if held is not None:
        report.update({k: (None if v != v else round(v, 4)) for k, v in evaluate_round_trip(codec, held).items()})
    report["seconds"] = round(time.perf_counter() - t0, 1)
    codec.report = report
    out = Path(args.out)
    codec.save_pretrained(out)
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1) + "\n")
    quality = (
        f"held-out PSNR {report['psnr']:.1f} dB (face {report['psnr_face']:.1f} dB), mouth reader r = "
        f"{report['mouth_corr']}"
        if held is not None
        else "no held-out clips to report on"
    )
    print(
        f"fitted a {args.channels}-channel linear codec on {len(train)} clips in {report['seconds']:.0f} s "
        f"-> {out}; {quality}; variance kept {report['variance_kept_rest']:.4f}"
    )
    return 0
