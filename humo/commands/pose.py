"""`humo pose extract VIDEO -o pose.json`: a driving pose from a video (MediaPipe Pose; the `pose` extra).
`humo pose convert SOURCE -o pose.json`: another tool's keypoints (OpenPose, COCO, a proving-ground clip) as a pose
file (`humo.pose_import`)."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "extract: keypoints of the person in each frame of a video (MediaPipe Pose, whose wheel ships its model); "
        "convert: OpenPose --write_json output (a folder of per-frame files, or a list of frames as DWPose saves "
        "them; BODY_25 or COCO-18), COCO keypoints (an annotation file or a results list) or a proving-ground "
        "clip (manifest.jsonl with --clip). Either writes a pose file for `humo generate --pose` (format: "
        "docs/data-format.md)"
    )
    parser.add_argument("action", choices=["extract", "convert"], help="extract from a video, or convert keypoints")
    parser.add_argument("source", metavar="SOURCE", help="extract: the driving video; convert: the keypoints")
    parser.add_argument("-o", "--out", required=True, help="the pose file to write (.json)")
    parser.add_argument("--fps", type=float, help="convert: the frame rate of the keypoints' frames")
    parser.add_argument("--size", metavar="WxH", help="convert: the frames' size in pixels, e.g. 1280x720")
    parser.add_argument(
        "--normalised", action="store_true", help="convert: coordinates are fractions of the frame, not pixels"
    )
    parser.add_argument("--clip", metavar="ID", help="convert: the clip of a proving-ground manifest")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")


def _size(text: str | None):
    from humo.errors import HumoError

    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        w, h = (float(p) for p in parts)
    except ValueError:
        raise HumoError(f"--size {text}: expected WIDTHxHEIGHT in pixels, e.g. 1280x720") from None
    if not (w > 0 and h > 0):
        raise HumoError(f"--size {text}: width and height must be positive")
    return w, h


def run(args: argparse.Namespace) -> int:
    from humo.errors import HumoError, check_output, require_file

    if not args.out.lower().endswith(".json"):
        raise HumoError(f"-o {args.out}: must end in .json")
    if args.action == "convert":
        return _convert(args)
    given = [f"--{k}" for k in ("fps", "size", "clip") if getattr(args, k) is not None]
    if given or args.normalised:
        raise HumoError(f"{', '.join(given + ['--normalised'] * args.normalised)}: for convert, not extract")
    video = require_file(args.source, "video")
    check_output(args.out, "-o", [video], args.overwrite)
    return _extract(args, video)


def _people_seen(track) -> tuple[int, int]:
    """(frames of a `PoseTrack` with at least one joint seen, the most people seen in one frame)."""
    seen = (track.points[..., 2] > 0).any(-1)  # (frames, people)
    return int(seen.any(-1).sum()), int(seen.sum(-1).max())


def _convert(args) -> int:
    from pathlib import Path

    from humo.errors import check_output
    from humo.pose import save_pose
    from humo.pose_import import read_pose_source

    source = Path(args.source)
    inputs = sorted(source.glob("*.json")) if source.is_dir() else [source]
    check_output(args.out, "-o", inputs, args.overwrite)
    track, layout = read_pose_source(source, args.fps, _size(args.size), args.normalised, args.clip)
    path = save_pose(args.out, track, layout)
    seen, people = _people_seen(track)
    print(
        f"wrote {path}: {track.frames} frames at {track.fps:g} fps, {track.width:g}x{track.height:g}, {layout}, "
        f"a person in {seen} frames, at most {people} in one"
    )
    return 0


def _extract(args, video) -> int:
    import sys

    from humo.pose_extract import extract_to_file, mediapipe_detector

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
    seen, _ = _people_seen(track)
    print(f"wrote {path}: {track.frames} frames at {track.fps:g} fps, a person found in {seen}")
    return 0
