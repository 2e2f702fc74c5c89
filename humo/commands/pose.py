"""`humo pose extract VIDEO -o pose.json`: a driving pose from a video (MediaPipe Pose; the `pose` extra)."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "extract: keypoints of the person in each frame of a video (MediaPipe Pose, whose wheel ships its model), "
        "written as a COCO-17 pose file for `humo generate --pose` (format: docs/data-format.md)"
    )
    parser.add_argument("action", choices=["extract"], help="extract: a pose file from a video")
    parser.add_argument("video", help="the driving video (any format PyAV decodes)")
    parser.add_argument("-o", "--out", required=True, help="the pose file to write (.json)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")


def run(args: argparse.Namespace) -> int:
    import sys

    from humo.errors import HumoError, check_output, require_file
    from humo.pose_extract import extract_to_file, mediapipe_detector

    video = require_file(args.video, "video")
    if not args.out.lower().endswith(".json"):
        raise HumoError(f"-o {args.out}: must end in .json")
    check_output(args.out, "-o", [video], args.overwrite)
    detector = mediapipe_detector()  # a missing extra fails here, before any frame is decoded
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(desc="pose", unit="frame", file=sys.stderr, leave=False)
    try:
        path = extract_to_file(video, args.out, detector, progress=None if bar is None else lambda i: bar.update(1))
    finally:
        if bar is not None:
            bar.close()
        if hasattr(detector, "close"):
            detector.close()
    from humo.pose import load_pose

    track = load_pose(path)
    seen = int((track.points[..., 2] > 0).any(-1).any(-1).sum())
    print(f"wrote {path}: {track.frames} frames at {track.fps:g} fps, a person found in {seen}")
    return 0
