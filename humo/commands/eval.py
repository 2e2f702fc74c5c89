"""`humo eval`: proving-ground metrics (text following, subject consistency, lip sync) for generated videos."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", nargs="?", type=Path, help="a generated video (MP4) to evaluate")
    parser.add_argument("--prompt", help="the prompt it was generated from")
    parser.add_argument("--image", action="append", default=[], type=Path, help="reference image (repeatable)")
    parser.add_argument("--audio", type=Path, help="the driving audio file")
    parser.add_argument("--cases", type=Path, help="batch mode: cases JSON {name: {img_paths, audio_path, prompt}}")
    parser.add_argument("--videos", type=Path, help="batch mode: folder holding <name>.mp4 for every case")
    parser.add_argument("--skip-missing", action="store_true", help="batch mode: skip cases without a video")
    parser.add_argument("--json", type=Path, help="also write the full results as JSON here")


def run(args: argparse.Namespace) -> int:
    from humo.errors import HumoError, atomic_path
    from humo.proving_ground import metrics

    if args.cases is not None or args.videos is not None:
        if args.video is not None:
            raise HumoError("give either VIDEO or --cases/--videos, not both")
        if args.cases is None or args.videos is None:
            raise HumoError("batch mode needs both --cases and --videos")
        result = metrics.evaluate_batch(args.cases, args.videos, skip_missing=args.skip_missing)
        rows, means = result["rows"], result["means"]
        if result["missing"]:
            print(f"skipped {len(result['missing'])} case(s) without a video: {', '.join(result['missing'])}")
    else:
        if args.video is None:
            raise HumoError("give a VIDEO to evaluate, or --cases and --videos for a batch")
        from humo.media.video import read_video

        frames, fps, _, _ = read_video(args.video)
        row = metrics.evaluate_clip(frames, fps, args.prompt, args.image, args.audio)
        rows = {args.video.stem: row}
        means = metrics.summarize(rows.values())
        result = {"rows": rows, "means": means}
    print(metrics.format_table(rows, means))
    if args.json is not None:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(result, indent=1, default=_jsonable) + "\n")
        print(f"wrote {args.json}")
    return 0


def _jsonable(x):
    import numpy as np

    if isinstance(x, (np.integer, np.floating)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
