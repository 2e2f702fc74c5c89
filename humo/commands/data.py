"""`humo data run|status|import-humoset|merge`: build a training manifest from real talking videos, in resumable stages
(docs/data-pipeline.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

# The Python package that provides each module a stage needs (what to pip install when it is missing).
PACKAGES = {
    "scenedetect": "scenedetect-headless",
    "cv2": "opencv-python-headless<5",
    "webrtcvad": "webrtcvad-wheels",
    "av": "av",
    "soxr": "soxr",
    "soundfile": "soundfile",
    "mediapipe": "mediapipe==0.10.21",
}
DEFAULTS = dict(min_frames=33, max_frames=97, max_side=1280, detector="content", speech_min=0.3, vad_mode=2,
                modulation_min=1.5, val_share=0.0, face_missing_max=0.5, several_faces="drop", face_min_height=0.1,
                face_lost_max=12, sync_min=0.6, sync_offset_max=3, sync_shift_max=0, syncnet=None, syncnet_min=3.0,
                weak_audio="drop", no_reference="drop", reference_distance_max=0.5, caption_model=None,
                caption_frames=4, caption_tokens=120)  # fmt: skip


def configure(parser: argparse.ArgumentParser) -> None:
    from humo.data.pipeline.core import STAGES

    parser.description = (
        "run: probe, normalise (25 fps, 16 kHz mono), shot cuts, segments of 4k+1 frames, speech, faces, lip sync, "
        "references and a manifest, over a folder or list of videos into a run folder; a rerun resumes. "
        "status: what a run folder holds. import-humoset: HuMoSet's release as a manifest. merge: several "
        "manifests as one."
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="run the stages over videos into a run folder (resumable)")
    run.add_argument(
        "--input",
        nargs="+",
        action="extend",
        metavar="DIR|LIST.txt|VIDEO",
        help="a folder (scanned for videos, recursively), a .txt list (one video per line, relative to the list) "
        "or video files; default: the inputs of the run folder's last run",
    )
    run.add_argument("--out", required=True, type=Path, help="the run folder (new, empty, or from an earlier run)")
    run.add_argument("--stages", default=",".join(STAGES), help=f"stages to run (default all: {','.join(STAGES)})")
    run.add_argument(
        "--force", action="append", default=[], metavar="STAGE", help="redo this stage for every clip (repeatable)"
    )
    d = DEFAULTS
    run.add_argument("--min-frames", type=int, help=f"shortest segment, 4k+1 frames (default {d['min_frames']})")
    run.add_argument("--max-frames", type=int, help=f"longest segment, 4k+1 frames (default {d['max_frames']})")
    run.add_argument("--max-side", type=int, help=f"longest side of normalised video, pixels (default {d['max_side']})")
    run.add_argument("--detector", choices=("content", "adaptive"), help="PySceneDetect detector (default content)")
    run.add_argument(
        "--speech-min", type=float, help=f"least share of voiced 30 ms frames to keep (default {d['speech_min']})"
    )
    run.add_argument("--vad-mode", type=int, help=f"webrtcvad aggressiveness 0..3 (default {d['vad_mode']})")
    run.add_argument(
        "--modulation-min",
        type=float,
        help=f"least loudness modulation, dB, to keep; a tone or noise has almost none (default {d['modulation_min']})",
    )
    run.add_argument(
        "--val-share", type=float, help="share of input videos whose segments go to the val split (default 0)"
    )
    run.add_argument(
        "--face-missing-max",
        type=float,
        help=f"largest share of a segment's frames without a face to keep it (default {d['face_missing_max']})",
    )
    run.add_argument(
        "--several-faces",
        choices=("drop", "keep"),
        help="segments with two or more large faces: drop (default) or keep (flagged in the record)",
    )
    run.add_argument(
        "--face-min-height",
        type=float,
        help=f"least median face height, share of the frame's height, to keep (default {d['face_min_height']})",
    )
    run.add_argument(
        "--face-lost-max",
        type=int,
        help=f"most frames in a row without the tracked face to keep a segment (default {d['face_lost_max']})",
    )
    run.add_argument(
        "--sync-min",
        type=float,
        help=f"least lip-sync confidence (Sync-C of mouth against loudness) to keep; 0: no filter "
        f"(default {d['sync_min']})",
    )
    run.add_argument(
        "--sync-offset-max",
        type=int,
        help=f"largest best audio-video offset, frames, to keep (default {d['sync_offset_max']})",
    )
    run.add_argument(
        "--sync-shift-max",
        type=int,
        help="largest non-zero best offset, frames, by which a segment's audio is shifted into sync (re-cut from the "
        f"clip's WAV) instead of kept as it is or dropped; 0: never (default {d['sync_shift_max']})",
    )
    run.add_argument(
        "--syncnet",
        metavar="WEIGHTS",
        help="SyncNet weights (syncnet_python's syncnet_v2 state dict: .safetensors or a torch pickle): record "
        "SyncNet's Sync-C/Sync-D/offset per segment and drop those under --syncnet-min; 'none': off",
    )
    run.add_argument(
        "--syncnet-min",
        type=float,
        help=f"least SyncNet Sync-C to keep a segment when --syncnet is given; 0: record only "
        f"(default {d['syncnet_min']})",
    )
    run.add_argument(
        "--weak-audio",
        choices=("drop", "keep"),
        help="segments whose sound fails the speech or sync filters: drop (default) or keep without their audio, "
        "to train text and reference (OmniHuman-1's first principle)",
    )
    run.add_argument(
        "--no-reference",
        choices=("drop", "keep"),
        help="segments without a reference image from outside them: drop (default) or keep (no ref_images)",
    )
    run.add_argument(
        "--reference-distance-max",
        type=float,
        help="largest face-embedding distance at which another shot's segment is the same person and gives the "
        f"reference (dlib's scale: 0.6 = same person); 0: same shot only (default {d['reference_distance_max']})",
    )
    run.add_argument(
        "--caption-model",
        metavar="FOLDER",
        help="Qwen2-VL / Qwen2.5-VL weights (transformers layout) that caption each segment; without it, captions "
        "come from OUT/captions/<id>.txt files (editable; an edited file always wins); none: no model",
    )
    run.add_argument(
        "--caption-frames",
        type=int,
        help=f"frames of a segment shown to the caption model (default {d['caption_frames']})",
    )
    run.add_argument("--caption-tokens", type=int, help=f"most tokens of a caption (default {d['caption_tokens']})")
    run.add_argument("--workers", type=int, default=1, help="processes (or Ray actors) per stage (default 1)")
    run.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="map the stages here (default) or with Ray Data (pip install -e '.[ray]')",
    )
    run.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="with --executor ray: the cluster to use (e.g. ray://head:10001 or auto); default a local one. "
        "OUT and the inputs must be at the same path on every node",
    )
    run.add_argument("-q", "--quiet", action="store_true", help="no progress, no summary; warnings and errors only")
    run.set_defaults(_quiet_here=True)
    status = sub.add_parser("status", help="per stage: clips done, kept, dropped by reason")
    status.add_argument("out", type=Path, help="a run folder")
    merge = sub.add_parser(
        "merge",
        help="several manifests into one (paths rebased, ids must be unique)",
        description="Write OUT with every sample of the given manifests, in order, each file path rewritten "
        "relative to OUT's folder so it names the same files (e.g. one-person and multi-person proving-ground "
        "clips in one training set). The inputs are not modified.",
    )
    merge.add_argument("manifests", nargs="+", type=Path, help="manifests to merge (.jsonl or .parquet)")
    merge.add_argument("--out", required=True, type=Path, help="the merged manifest (.jsonl or .parquet)")
    imp = sub.add_parser(
        "import-humoset",
        help="HuMoSet (video/, reference_image/, video_caption.parquet) into a manifest",
        description="Write OUT/manifest.jsonl from a HuMoSet tree: each row of video_caption.parquet a sample with "
        "its video (and its sound), reference image(s) and caption; rows that cannot be used are listed in "
        "OUT/skipped.jsonl (docs/data-pipeline.md, 'HuMoSet').",
    )
    imp.add_argument("root", type=Path, help="the HuMoSet folder (video/, reference_image/, video_caption.parquet)")
    imp.add_argument("--out", required=True, type=Path, help="folder for manifest.jsonl and skipped.jsonl")
    imp.add_argument("--video-column", help="the Parquet's column naming each video (default: found by name)")
    imp.add_argument("--caption-column", help="the Parquet's caption column (default: found by name)")
    imp.add_argument(
        "--reference-column",
        help="the Parquet's reference image column (default: one found by name, else by file name)",
    )
    imp.add_argument("--val-share", type=float, default=0.0, help="share of samples put in the val split (default 0)")
    imp.add_argument(
        "--no-reference",
        choices=("drop", "keep"),
        default="drop",
        help="rows without a reference image: skip them (default) or keep them (no ref_images)",
    )
    imp.add_argument("--workers", type=int, default=1, help="processes reading video headers (default 1)")
    imp.add_argument("-q", "--quiet", action="store_true", help="no summary; errors only")
    imp.set_defaults(_quiet_here=True)


def run(args: argparse.Namespace) -> int:
    from humo.data.pipeline.core import run_pipeline, run_status

    if args.action == "status":
        print(status_text(args.out, run_status(args.out)))
        return 0
    if args.action == "merge":
        from humo.data.manifest import merge_manifests

        merged = merge_manifests(args.manifests, args.out)
        print(f"{args.out}: {len(merged)} samples from {len(args.manifests)} manifests")
        return 0
    if args.action == "import-humoset":
        from humo.data.humoset import import_humoset
        from humo.errors import HumoError

        if not 0.0 <= args.val_share <= 1.0:
            raise HumoError(f"--val-share {args.val_share}: must be between 0 and 1")
        if args.workers < 1:
            raise HumoError(f"--workers {args.workers}: must be at least 1")
        text = import_humoset(
            args.root,
            args.out,
            video_column=args.video_column,
            caption_column=args.caption_column,
            reference_column=args.reference_column,
            val_share=args.val_share,
            keep_without_reference=args.no_reference == "keep",
            workers=args.workers,
        )
        if not args.quiet:
            print(text)
        return 0
    inputs, settings, stages, force = check_run(args)
    summary = run_pipeline(
        inputs,
        settings,
        stages,
        force,
        workers=args.workers,
        progress=not args.quiet,
        executor=args.executor,
        ray_address=args.ray_address,
    )
    print(summary.text())
    return 0


def check_run(args: argparse.Namespace):
    """Every argument checked before any work: ``(inputs, settings, stages, force)``; HumoError otherwise."""
    import importlib.util

    from humo.data.pipeline.core import STAGES, Journal, Settings, check_out, load_run, stage_module
    from humo.data.pipeline.inputs import find_inputs
    from humo.data.pipeline.stages.segments import valid_length
    from humo.errors import HumoError, warn

    out = args.out
    check_out(out)
    previous = load_run(out)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    force = [s.strip() for f in args.force for s in f.split(",") if s.strip()]
    for name in stages + force:
        if name not in STAGES:
            raise HumoError(f"unknown stage {name!r} (stages: {', '.join(STAGES)})")
    if not stages:
        raise HumoError("--stages: no stage given")
    for name in force:
        if name not in stages:
            raise HumoError(f"--force {name}: not among --stages ({','.join(stages)})")
    for name in stages:
        i = STAGES.index(name)
        if i and STAGES[i - 1] not in stages and not Journal(out, STAGES[i - 1]).path.exists():
            raise HumoError(f"--stages: {name} needs the results of {STAGES[i - 1]}, which {out} does not have yet")
        for module in stage_module(name).REQUIRES:
            if importlib.util.find_spec(module) is None:
                raise HumoError(
                    f"stage {name} needs the Python package {PACKAGES.get(module, module)!r}: "
                    + (
                        "pip install --no-deps mediapipe==0.10.21 && pip install -e '.[data,pose]' (make install does)"
                        if module == "mediapipe"
                        else "pip install -e '.[data]' (make install does)"
                    )
                )

    if args.input:
        inputs = find_inputs(args.input)
    elif previous is not None:
        inputs = previous["inputs"]
    else:
        raise HumoError("--input: required for a new run folder")
    _check_not_inside(out, args.input or [])

    # Settings: given here, else the folder's last run, else the defaults (a bare rerun resumes the same run).
    before = (previous or {}).get("settings", {})
    values = {k: getattr(args, k) if getattr(args, k) is not None else before.get(k, d) for k, d in DEFAULTS.items()}
    for name in ("min_frames", "max_frames"):
        n = values[name]
        if not valid_length(n):
            opt = "--" + name.replace("_", "-")
            raise HumoError(f"{opt} {n}: must be 4k+1 frames, as Wan's VAE needs (e.g. 33, 49, 81, 97)")
    if values["min_frames"] > values["max_frames"]:
        raise HumoError(f"--min-frames {values['min_frames']} is more than --max-frames {values['max_frames']}")
    if values["max_side"] < 16:
        raise HumoError(f"--max-side {values['max_side']}: must be at least 16 pixels")
    for name in ("speech_min", "val_share", "face_missing_max", "face_min_height"):
        if not 0.0 <= values[name] <= 1.0:
            raise HumoError(f"--{name.replace('_', '-')} {values[name]}: must be between 0 and 1")
    if values["vad_mode"] not in (0, 1, 2, 3):
        raise HumoError(f"--vad-mode {values['vad_mode']}: must be 0, 1, 2 or 3")
    if not values["modulation_min"] >= 0:
        raise HumoError(f"--modulation-min {values['modulation_min']}: must be 0 or more")
    if values["syncnet"] in ("none", ""):
        values["syncnet"] = None
    syncnet_id = ""
    if values["syncnet"] is not None:
        weights = Path(values["syncnet"]).absolute()
        if not weights.is_file():
            raise HumoError(f"--syncnet {values['syncnet']}: no such file")
        values["syncnet"] = str(weights)
        st = weights.stat()
        syncnet_id = f"{st.st_size}-{st.st_mtime_ns}"
        if "sync" in stages:  # weights that do not load would drop every segment `no-syncnet`: refuse them now
            from humo.data.pipeline.stages.sync import syncnet_model

            syncnet_model(values["syncnet"])  # a one-line HumoError naming the file and its bad keys; kept loaded
    for name in ("face_lost_max", "sync_min", "sync_offset_max", "sync_shift_max", "syncnet_min",
                 "reference_distance_max"):  # fmt: skip
        if not values[name] >= 0:
            raise HumoError(f"--{name.replace('_', '-')} {values[name]}: must be 0 or more")
    if args.workers < 1:
        raise HumoError(f"--workers {args.workers}: must be at least 1")
    identity = ""
    if "references" in stages and values["reference_distance_max"] > 0:
        from humo import face_identity

        if face_identity.available():
            identity = face_identity.MODEL
        else:
            warn(f"references from other shots need {face_identity.PACKAGES}; this run takes them from the same shot")
    for name in ("caption_frames", "caption_tokens"):
        if values[name] < 1:
            raise HumoError(f"--{name.replace('_', '-')} {values[name]}: must be at least 1")
    if values["caption_model"] == "none":
        values["caption_model"] = None  # an earlier run's model given up
    if values["caption_model"] is not None:
        from humo.data.pipeline.stages.captions import check_model

        values["caption_model"] = str(Path(values["caption_model"]).absolute())
        if "captions" in stages:
            check_model(values["caption_model"])
    if args.ray_address is not None and args.executor != "ray":
        raise HumoError("--ray-address: only with --executor ray")
    if args.executor == "ray":
        from humo.data.pipeline.ray_executor import require_ray

        require_ray()
    settings = Settings(out=out.absolute(), identity_model=identity, syncnet_id=syncnet_id, **values)
    return inputs, settings, stages, force


def _check_not_inside(out: Path, items: list[str]) -> None:
    """OUT inside an input folder would make its outputs inputs of the next run; an input inside OUT could be
    overwritten by the run."""
    from humo.errors import HumoError

    o = out.resolve()
    for item in items:
        p = Path(item).resolve()
        if Path(item).is_dir() and (o == p or p in o.parents):
            raise HumoError(f"--out {out}: is inside the input folder {item}; its outputs would become inputs")
        if o in p.parents or o == p:
            raise HumoError(f"--input {item}: is inside the run folder {out}")


def status_text(out: Path, summary) -> str:
    rows = [("stage", "inputs", "done", "kept", "dropped")]
    for s in summary.stages:
        rows.append((s.name, str(s.inputs), str(s.reused), str(s.kept), s.dropped_text()))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"{out}: {summary.inputs} input videos (done: journal results valid for the last run's settings)"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows]
    manifest = out / "manifest.jsonl"
    if manifest.is_file():
        with open(manifest, encoding="utf-8") as f:
            lines.append(f"{manifest}: {sum(1 for line in f if line.strip())} samples")
    return "\n".join(lines)
