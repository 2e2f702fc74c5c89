"""`humo real-metrics`: lip sync and similarity of real videos (docs/evaluation.md): the landmark sync score,
SyncNet's Sync-C/Sync-D with user weights, CLIP-I / DINO-I / text alignment with user weights."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", nargs="+", type=Path, help="real videos at 25 fps (humo data run normalises to it)")
    parser.add_argument("--audio", type=Path, help="score against this audio instead of each video's sound track")
    parser.add_argument("--syncnet", type=Path, metavar="WEIGHTS", help="SyncNet weights: adds Sync-C / Sync-D")
    parser.add_argument("--clip", type=Path, metavar="FOLDER", help="CLIP model folder: CLIP-I and text alignment")
    parser.add_argument("--dino", type=Path, metavar="FOLDER", help="DINOv2 / ViT model folder: DINO-I")
    parser.add_argument("--image", action="append", default=[], type=Path, help="reference image (repeatable)")
    parser.add_argument("--prompt", help="the prompt, for text alignment")
    parser.add_argument("--no-sync", action="store_true", help="skip the lip-sync scores")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")


def run(args: argparse.Namespace) -> int:
    from humo.errors import HumoError, atomic_path, check_output, require_file

    for p in [*args.videos, *args.image, *(x for x in (args.audio, args.syncnet) if x is not None)]:
        require_file(p, "input")
    for name in ("clip", "dino"):
        folder = getattr(args, name)
        if folder is not None and not folder.is_dir():
            raise HumoError(f"--{name} {folder}: not a folder")
    if args.json is not None:
        check_output(args.json, "--json", [*args.videos, *args.image], overwrite=True)
    if args.no_sync and args.clip is None and args.dino is None:
        raise HumoError("--no-sync leaves nothing to score: give --clip or --dino")

    syncnet = None
    if args.syncnet is not None and not args.no_sync:
        from humo.evaluation.syncnet import load_syncnet

        syncnet = load_syncnet(args.syncnet)  # once, before any video: bad weights fail first
    results = []
    for video in args.videos:
        row: dict = {"video": str(video)}
        if not args.no_sync:
            from humo.evaluation.real_sync import evaluate_sync

            row.update(evaluate_sync(video, args.audio, syncnet))
        if args.clip is not None or args.dino is not None:
            from humo.evaluation.similarity import evaluate_similarity

            row.update(evaluate_similarity(video, args.image, args.prompt, args.clip, args.dino))
        results.append(row)
        print(_line(row))
    if args.json is not None:
        with atomic_path(args.json) as tmp:
            Path(tmp).write_text(json.dumps(results, indent=1) + "\n")
    return 0


def _line(row: dict) -> str:
    parts = [row["video"]]
    lm = row.get("landmark")
    if lm is not None:
        c = "n/a" if lm["confidence"] is None else f"{lm['confidence']:.3f}"
        parts.append(f"landmark Sync-C {c} offset {lm['offset']} (face in {row['face_found']:.0%} of frames)")
    if row.get("syncnet"):
        s = row["syncnet"]
        parts.append(f"SyncNet Sync-C {s['syncnet_c']:.3f} Sync-D {s['syncnet_d']:.3f} offset {s['syncnet_offset']}")
    for key, name in (("clip_i", "CLIP-I"), ("dino_i", "DINO-I"), ("text_alignment", "text")):
        if key in row:
            parts.append(f"{name} {row[key]['mean']:.3f}")
    return "  ".join(parts)
