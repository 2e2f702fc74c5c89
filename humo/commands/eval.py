"""`humo eval`: proving-ground metrics (text following, subject consistency, lip sync, pose) for generated videos,
and with `--real` the real-video evaluators (`humo.evaluation.real_video`: identity similarity, landmark sync,
SyncNet's Sync-C/Sync-D, CLIP-I, DINO-I, text alignment; docs/evaluation.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "video", nargs="*", type=Path, help="a generated video (MP4) to evaluate; with --real, one or more videos"
    )
    parser.add_argument("--prompt", help="the prompt it was generated from")
    parser.add_argument(
        "--image", "--reference", action="append", default=[], type=Path, help="reference image (repeatable)"
    )
    parser.add_argument(
        "--audio", type=Path, help="the driving audio file (--real: scored against it instead of the video's sound)"
    )
    parser.add_argument("--pose", type=Path, help="the driving pose file (humo-pose/1): scores the pose followed")
    parser.add_argument(
        "--cases",
        type=Path,
        help="batch mode: cases JSON {name: {img_paths, audio_path, prompt[, pose_path][, persons]}}; persons: "
        "several people, [{ref_image, audio[, box][, mask]}] as humo generate takes them, scored per speaker",
    )
    parser.add_argument("--videos", type=Path, help="batch mode: folder holding <name>.mp4 for every case")
    parser.add_argument("--skip-missing", action="store_true", help="batch mode: skip cases without a video")
    parser.add_argument("--json", type=Path, help="also write the full results as JSON here")
    parser.add_argument(
        "--real",
        action="store_true",
        help="score VIDEO... as real videos (any footage, not the proving ground's): identity similarity to "
        "--reference, lip sync against the video's sound (or --audio), and with your weights SyncNet, CLIP-I, "
        "DINO-I, text alignment; evaluators whose inputs are not given are skipped",
    )
    r = parser.add_argument_group("real-video mode (--real): weights you supply (nothing is downloaded)")
    r.add_argument("--syncnet", type=Path, metavar="WEIGHTS", help="SyncNet weights file: Sync-C / Sync-D")
    r.add_argument("--clip", type=Path, metavar="FOLDER", help="CLIP model folder: CLIP-I, text alignment")
    r.add_argument("--dino", type=Path, metavar="FOLDER", help="DINOv2 / ViT model folder: DINO-I")
    r.add_argument("--only", metavar="NAMES", help="run only these evaluators (comma-separated, e.g. identity,clip_i)")
    g = parser.add_argument_group(
        "held-out mode: generate from held-out clips' inputs with a model, score against the baselines and the bars"
    )
    g.add_argument("--model", type=Path, help="weights folder to generate with (e.g. humo/assets/toy)")
    g.add_argument("--manifest", type=Path, help="held-out manifest (humo synth --split heldout)")
    g.add_argument("--clips", type=int, default=50, help="clips to generate and score (default 50)")
    g.add_argument("--steps", type=int, default=20, help="sampling steps (default 20)")
    g.add_argument("--guidance", help="guidance preset (default: the model's)")
    g.add_argument(
        "--guidance-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter of the guidance preset (e.g. scale_t=2, end_scale_a=1; `humo presets` lists them)",
    )
    g.add_argument("--preset", default="toy", help="model layout of --model (default toy)")
    g.add_argument("--keep-videos", type=Path, help="folder to keep the generated MP4s in")
    g.add_argument("--dtype", choices=["fp8"], help="fp8: the DiT's block weights in fp8 (default: the model's)")
    g.add_argument("--cache", type=float, metavar="THRESHOLD", help="step caching threshold (default: off)")


def run(args: argparse.Namespace) -> int:
    from humo.errors import HumoError, atomic_path, check_output
    from humo.proving_ground import metrics

    if args.json is not None:  # a results file is rewritten on each run, but never in place of an input
        given = (*args.video, args.audio, args.pose, args.cases, args.manifest, args.syncnet, *args.image)
        inputs = [p for p in given if p is not None]
        check_output(args.json, "--json", inputs, overwrite=True)

    if args.real:
        return _run_real(args)
    real_only = [f"--{n}" for n in ("syncnet", "clip", "dino", "only") if getattr(args, n) is not None]
    if real_only:
        raise HumoError(f"{', '.join(real_only)}: real-video options; add --real")
    if len(args.video) > 1:
        raise HumoError("give one VIDEO (several only with --real), or --cases and --videos for a batch")
    args.video = args.video[0] if args.video else None
    if args.pose is not None and (args.cases or args.videos or args.model or args.manifest):
        raise HumoError("--pose scores one VIDEO; in batch mode give each case a pose_path in the cases file")
    if args.model is not None or args.manifest is not None:
        if args.model is None or args.manifest is None:
            raise HumoError("held-out mode needs both --model and --manifest")
        if args.clips < 2:
            raise HumoError(f"--clips {args.clips}: need at least 2 (the baselines pair clips)")
        if args.cache is not None:
            from humo.step_cache import check_threshold

            check_threshold(args.cache)
        from humo.evaluation import heldout
        from humo.guidance.parsing import parse_guidance_set

        result = heldout.evaluate_model(
            args.model,
            args.manifest,
            clips=args.clips,
            steps=args.steps,
            guidance=args.guidance,
            guidance_params=parse_guidance_set(args.guidance_set) or None,
            preset=args.preset,
            videos=args.keep_videos,
            fp8=args.dtype == "fp8",
            cache=args.cache,
        )
        print(heldout.format_summary(result["summary"]))
        if args.json is not None:
            heldout.write_report(result, args.json)
            print(f"wrote {args.json}")
        return 0
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
        row = metrics.evaluate_clip(frames, fps, args.prompt, args.image, args.audio, args.pose)
        rows = {args.video.stem: row}
        means = metrics.summarize(rows.values())
        result = {"rows": rows, "means": means}
    print(metrics.format_table(rows, means))
    if args.json is not None:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(result, indent=1, default=_jsonable) + "\n")
        print(f"wrote {args.json}")
    return 0


def _run_real(args: argparse.Namespace) -> int:
    from humo.errors import HumoError, atomic_path
    from humo.evaluation import real_video

    if args.cases or args.videos or args.model or args.manifest or args.pose:
        raise HumoError("--real scores VIDEO... (with --reference, --audio, --prompt, --syncnet, --clip, --dino); "
                        "not with --cases, --videos, --model, --manifest or --pose")  # fmt: skip
    if not args.video:
        raise HumoError("--real: give a VIDEO to evaluate")
    only = None if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    results = real_video.evaluate_all(
        args.video, args.image, args.audio, args.prompt, only,
        syncnet=args.syncnet, clip=args.clip, dino=args.dino,
        report=lambda result: print(real_video.format_report(result), flush=True),
    )  # fmt: skip
    if args.json is not None:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(results, indent=1, default=_jsonable) + "\n")
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
