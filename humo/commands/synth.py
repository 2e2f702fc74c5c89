"""`humo synth`: write a proving-ground dataset of synthetic talking characters (see docs/proving-ground.md)."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    from humo.proving_ground.synth import REFERENCE_KINDS, default_workers

    parser.add_argument("--out", required=True, type=Path, help="output folder (manifest.jsonl + clips/)")
    parser.add_argument("--clips", required=True, type=int, help="number of clips to write")
    parser.add_argument("--size", default="64", help="frame size N or WxH (even; default 64)")
    parser.add_argument("--frames", default="33:97", help="clip length range LO:HI; lengths are 4k+1 (default 33:97)")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate (default 25)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed; the same seed writes the same clips")
    parser.add_argument(
        "--split",
        choices=("train", "heldout"),
        default="train",
        help="'train': training identities (samples split train/val); 'heldout': held-out identities (test)",
    )
    parser.add_argument("--multi", action="store_true", help="scenes with 2-3 characters taking turns to speak")
    parser.add_argument(
        "--references",
        choices=REFERENCE_KINDS,
        default="apart",
        help="'apart': reference images drawn apart from their clip (another scene, place, size, lighting); "
        "'same-shot': each character as it stands in its own clip, the data that teaches copy-paste",
    )
    parser.add_argument("--workers", type=int, default=default_workers(), help="processes (default: up to 2)")
    parser.add_argument("--mux-audio", action="store_true", help="also put the speech in the MP4 as AAC (slower)")


def run(args: argparse.Namespace) -> int:
    from humo.proving_ground.synth import SynthConfig, parse_frames, parse_size, synthesize_dataset

    width, height = parse_size(args.size)
    cfg = SynthConfig(
        out=args.out,
        clips=args.clips,
        width=width,
        height=height,
        frames=parse_frames(args.frames),
        fps=args.fps,
        seed=args.seed,
        split=args.split,
        multi=args.multi,
        workers=args.workers,
        mux_audio=args.mux_audio,
        references=args.references,
    )
    manifest, seconds = synthesize_dataset(cfg)
    print(f"wrote {cfg.clips} clips to {manifest} in {seconds:.1f} s ({cfg.clips / seconds:.1f} clips/s)")
    return 0
