"""`humo precompute`: cache VAE latents, text embeddings, audio windows and face masks of a manifest.

    humo precompute --manifest data/manifest.jsonl --out cache/ --vae vae/ --text umt5/ --audio whisper/

Objects are keyed by content (input bytes + encoder identity + settings): a second run computes nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", required=True, help="dataset manifest (humo.data.manifest)")
    parser.add_argument("--out", required=True, help="cache folder (created; shared objects are reused)")
    parser.add_argument("--vae", required=True, help="Wan VAE: a diffusers folder or the official Wan2.1_VAE.pth")
    parser.add_argument("--text", required=True, help="umT5 encoder: a transformers folder or the official .pth")
    parser.add_argument("--tokenizer", help="tokenizer folder (needed with an official text encoder .pth)")
    parser.add_argument("--audio", help="Whisper folder (needed when samples have audio)")
    parser.add_argument("--index", default="index.json", help="index file name inside the cache (default index.json)")
    parser.add_argument("--frames", type=int, help="most video frames per clip (rounded down to 4k+1; default all)")
    parser.add_argument("--height", type=int, help="resize frames to this height (multiple of 8)")
    parser.add_argument("--width", type=int, help="resize frames to this width (multiple of 8)")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="stored tensor dtype")
    parser.add_argument("--negative-prompt", help="null text for guidance dropout (default: Wan's negative prompt)")
    parser.add_argument("--split", help="only samples of this split (default: all)")
    parser.add_argument(
        "--reference-crops",
        type=int,
        default=0,
        metavar="N",
        help="also cache N crops of each kind (head, upper body, clothing) of every reference image, for training "
        "with reference_crops (InterActHuman's remedy for copy-paste; default 0: the whole image only)",
    )
    parser.add_argument("--device", default="cpu", help="device for the encoders (default cpu)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar (the cache summary still prints)")


def run(args: argparse.Namespace) -> int:
    from humo.data.manifest import read_manifest
    from humo.data.precompute import DTYPES, load_encoders, precompute
    from humo.errors import HumoError

    samples = read_manifest(args.manifest)
    if args.split is not None:
        samples = [s for s in samples if getattr(s, "split", None) == args.split]
    if not samples:
        raise HumoError(f"manifest {args.manifest}: no samples" + (f" of split '{args.split}'" if args.split else ""))
    for name in ("frames", "height", "width"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise HumoError(f"--{name} {v}: must be positive")
    if args.reference_crops:  # before the encoders load (precompute checks again, for the API)
        from humo.reference_crops import check_manifest_boxes

        check_manifest_boxes(samples)
    encoders = load_encoders(args.vae, args.text, args.audio, tokenizer=args.tokenizer, device=args.device)
    stats = precompute(
        samples,
        args.out,
        encoders,
        index=args.index,
        base_dir=Path(args.manifest).resolve().parent,
        frames=args.frames,
        height=args.height,
        width=args.width,
        dtype=DTYPES[args.dtype],
        negative_prompt=args.negative_prompt,
        progress=not args.quiet,
        reference_crops=args.reference_crops,
    )
    print(f"cache {args.out}: {stats.summary()}")
    return 0
