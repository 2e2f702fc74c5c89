"""`humo generate`: one video from --prompt/--image/--audio(/--pose), or a batch from --cases (the release's format,
plus an optional `pose_path` per case)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import time
from pathlib import Path

from humo.cases import check_case
from humo.errors import HumoError


class _PersonAction(argparse.Action):
    """--person IMAGE AUDIO starts a person; a --box or --mask after it says where that person is."""

    def __call__(self, parser, namespace, values, option_string=None):
        persons = getattr(namespace, "persons", None) or []
        if self.dest == "persons":
            persons.append({"image": values[0], "audio": values[1]})
        else:
            if not persons:
                raise HumoError(f"{option_string} {values}: belongs to a --person; give it after that --person")
            if self.dest in persons[-1]:
                raise HumoError(f"{option_string} {values}: person {len(persons)} has a --{self.dest} already")
            persons[-1][self.dest] = values
        namespace.persons = persons


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", help="what happens in the video")
    parser.add_argument(
        "--person",
        nargs=2,
        metavar=("IMAGE", "AUDIO"),
        dest="persons",
        action=_PersonAction,
        default=[],
        help="one person of several, with their reference image and their own audio track (silent outside their "
        "turns); repeat for each person, instead of --image/--audio (InterActHuman: each track drives its person)",
    )
    parser.add_argument(
        "--box",
        metavar="X0,Y0,X1,Y1",
        dest="box",
        action=_PersonAction,
        help="where the --person before it is, in pixels of the output video (needed for a model without a mask "
        "predictor, such as the released HuMo weights; else the model predicts it)",
    )
    parser.add_argument(
        "--mask",
        metavar="IMAGE",
        dest="mask",
        action=_PersonAction,
        help="where the --person before it is, as a mask image of the frame (white = the person), instead of --box",
    )
    parser.add_argument(
        "--mask-warmup",
        type=float,
        metavar="SHARE",
        help="with predicted person masks: the share of the steps that inject the audio mix everywhere before the "
        "masks take over (default 0.2, InterActHuman's 10 of 50)",
    )
    parser.add_argument(
        "--no-mask-cache",
        dest="mask_cache",
        action="store_false",
        help="with predicted person masks: each step predicts its own masks in an extra pass instead of using the "
        "step before's (InterActHuman's mask cache ablated; one more DiT pass per step)",
    )
    parser.add_argument("--image", action="append", default=[], help="reference image (repeat for several)")
    parser.add_argument(
        "--audio",
        action="append",
        default=[],
        help="driving audio (wav, flac, mp3, m4a, or a video's audio track); one per video: several people with "
        "their own tracks are --person IMAGE AUDIO each",
    )
    parser.add_argument(
        "--pose",
        metavar="FILE",
        help="driving pose (a pose JSON: `humo pose extract`, format in docs/data-format.md) for a model with a pose "
        "guider; needs --image; without --audio it is pose-only driving",
    )
    parser.add_argument("--out", help="output .mp4 (single video)")
    parser.add_argument(
        "--cases", help="batch: a JSON {name: {img_paths, audio_path, prompt[, pose_path]}} as in the release"
    )
    parser.add_argument("--out-dir", default="outputs", help="batch output folder (default outputs/)")
    from humo.constants import VIDEO_FPS
    from humo.pipeline import LAYOUTS

    per_model = lambda field: ", ".join(f"{n} {getattr(lay, field)}" for n, lay in LAYOUTS.items())  # noqa: E731
    sizes = ", ".join(f"{n} {lay.height}x{lay.width}" for n, lay in LAYOUTS.items())
    parser.add_argument("--weights", metavar="DIR", help="weights folder (official layout); default: the bundled toy")
    parser.add_argument(
        "--preset", help=f"{', '.join(LAYOUTS)} (default: found from the --weights folder; see `humo presets`)"
    )
    parser.add_argument(
        "--size", help=f"480p, 720p, 480p-portrait or 720p-portrait (sets --height/--width; default: {sizes})"
    )
    parser.add_argument("--height", type=int, help="pixels, a multiple of 16 (default: the model's, see --size)")
    parser.add_argument("--width", type=int, help="pixels, a multiple of 16 (default: the model's, see --size)")
    parser.add_argument(
        "--frames",
        type=int,
        help=f"video frames at {VIDEO_FPS} fps, 4k+1, or -1 for the audio's whole length (without audio, the "
        "pose's); a video longer than a "
        f"segment is made in segments, each continuing from the last 5 frames of the one before "
        f"(default: {per_model('frames')})",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        help=f"video length in seconds instead of --frames: {VIDEO_FPS} fps, rounded down to 4k+1 frames (a "
        "longer video than the model's is made in segments, as with --frames)",
    )
    parser.add_argument(
        "--segment-frames",
        type=int,
        help="frames per segment of a long video, 4k+1, at least 9 "
        f"(default: the model's length, {per_model('frames')})",
    )
    parser.add_argument("--steps", type=int, default=50, help="sampling steps (default 50)")
    parser.add_argument(
        "--shift", type=float, default=None, help=f"sampler timestep shift (default: {per_model('shift')})"
    )
    parser.add_argument("--sampler", default="unipc", choices=["unipc", "euler"], help="(default unipc)")
    parser.add_argument(
        "--seed",
        default="666666",
        help="noise seed, 0..2**63-1; -1 or 'random' draws one and prints it (default: 666666)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out (or case output)")
    parser.add_argument(
        "--allow-large",
        action="store_true",
        help="run a job with segments over 4x the model's frames, over 4x its pixels, over 5 minutes of video, or "
        "estimated at over twice the device's free memory or a day of DiT compute (refused by default)",
    )
    parser.add_argument(
        "--guidance",
        help="guidance preset: release-17b, release-1.7b, paper, static, annealed, "
        "cfg, none (default: the model's release preset; `humo presets` lists their scales)",
    )
    parser.add_argument("--scale-t", type=float, help="text guidance scale (default: the preset's, see `humo presets`)")
    parser.add_argument("--scale-a", type=float, help="audio guidance scale (default: the preset's)")
    parser.add_argument("--scale-i", type=float, help="image guidance scale (default: the preset's)")
    parser.add_argument(
        "--step-change",
        type=float,
        help="timestep (0..1000) of the release-17b guidance switch (paper: --guidance-set switch=T)",
    )
    parser.add_argument(
        "--guidance-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other parameter of the guidance preset",
    )
    parser.add_argument(
        "--guidance-config",
        help="JSON/YAML file with guidance phases (overrides --guidance; format: docs/guidance-config.md)",
    )
    parser.add_argument("--negative-prompt", help="default: Wan's negative prompt")
    parser.add_argument("--max-batch", type=int, help="split the batched guidance passes to at most this many rows")
    parser.add_argument("--sequential-guidance", action="store_true", help="one DiT pass per condition (release)")
    parser.add_argument(
        "--cache",
        type=float,
        metavar="THRESHOLD",
        help="step caching: reuse a guidance branch's last block residual while its input has changed by less than "
        "THRESHOLD (relative, accumulated) since; 0.05 to 0.15 is the useful range (docs/inference.md)",
    )
    parser.add_argument("--png-frames", metavar="DIR", help="also write PNG frames to this (new or empty) folder")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: cuda when available)")
    parser.add_argument(
        "--dtype",
        choices=["bf16", "fp32", "fp8"],
        help="DiT weights dtype (default: the model's); fp8 stores the blocks' weights in float8 with a scale per "
        "channel and computes in the model's dtype (docs/inference.md)",
    )
    parser.add_argument(
        "--fp8-matmul",
        choices=["auto", "upcast", "scaled"],
        default="auto",
        help="how fp8 weights compute: upcast each layer's weight to the model's dtype, or scaled fp8 matmuls with "
        "the activations quantized per token (fp8 tensor cores); auto: scaled on GPUs of compute capability 8.9 "
        "and above, upcast elsewhere (default)",
    )
    parser.add_argument("--no-offload", action="store_true", help="keep encoders and VAE loaded")
    parser.add_argument(
        "--offload",
        metavar="blocks:N",
        help="block swap: keep N DiT blocks on the GPU and stream the others from pinned CPU memory, each copy "
        "overlapping the previous block's compute (default: the whole DiT on the device)",
    )
    parser.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="FILE[:SCALE]",
        help="merge a LoRA file into the DiT (peft/diffusers, kohya/ComfyUI or diffusion_model.* keys; scale "
        "default 1; repeatable)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only warnings and errors")


def bundled_weights() -> Path:
    return Path(__file__).resolve().parent.parent / "assets" / "toy"


def _guidance_params(args) -> dict:
    params = {}
    for key, name in (
        ("scale_t", "scale_t"),
        ("scale_a", "scale_a"),
        ("scale_i", "scale_i"),
        ("step_change", "step_change"),
    ):
        v = getattr(args, key)
        if v is not None:
            if v < 0:
                raise HumoError(f"--{key.replace('_', '-')} {v}: must not be negative")
            params[name] = v
    from humo.guidance.parsing import parse_guidance_set

    return {**params, **parse_guidance_set(args.guidance_set)}


def parse_seed(text: str) -> tuple[int, bool]:
    """--seed as given -> (seed, drawn): an integer in the generator's range, or -1/'random' for a fresh one, which
    the caller prints (without it the video cannot be made again)."""
    import secrets

    from humo.pipeline import MAX_SEED

    if text.strip().lower() in ("random", "-1"):
        return secrets.randbelow(MAX_SEED + 1), True
    try:
        seed = int(text)
    except ValueError:
        raise HumoError(f"--seed {text}: not an integer (0..2**63-1, or -1/random)") from None
    if not 0 <= seed <= MAX_SEED:
        raise HumoError(f"--seed {text}: out of range (0..2**63-1, or -1/random to draw one)")
    return seed, False


def _no_duplicate_keys(pairs: list[tuple]) -> dict:
    """json object hook: a repeated key would silently drop the earlier case, so it is an error."""
    seen = {}
    for k, v in pairs:
        if k in seen:
            raise HumoError(f"duplicate key '{k}'")
        seen[k] = v
    return seen


def check_case_names(names, source: str) -> None:
    """Case names become file names under --out-dir: no paths, and no two that land on one file."""
    import unicodedata

    seen: dict[str, str] = {}
    for name in names:
        if not name.strip() or name in (".", "..") or any(c in name for c in "/\\\0"):
            raise HumoError(f"--cases {source}: case name '{name}' must be a plain file name (no '/', '\\' or '..')")
        # Case-insensitive file systems (macOS, Windows) and Unicode forms would map these to one file.
        key = unicodedata.normalize("NFC", name.strip()).casefold()
        if key in seen:
            raise HumoError(f"--cases {source}: case names '{seen[key]}' and '{name}' would write the same file")
        seen[key] = name


def frames_for_seconds(seconds: float, frames: int | None) -> int:
    """--seconds as a frame count: the longest 4k+1 frames at `VIDEO_FPS` that last at most `seconds`."""
    import math

    from humo.constants import VIDEO_FPS, round_down_frames

    if frames is not None:
        raise HumoError(f"--seconds {seconds:g} and --frames {frames}: give one of them")
    if not math.isfinite(seconds) or seconds * VIDEO_FPS < 1:
        raise HumoError(f"--seconds {seconds:g}: must be at least one frame ({1 / VIDEO_FPS:g} s)")
    return round_down_frames(int(seconds * VIDEO_FPS + 1e-6))


def requests_from_args(args, seed: int) -> list[tuple]:
    """[(request, out_path)] for a single run or a --cases batch; validated before any model is loaded."""
    from humo.pipeline import SIZES, GenerationRequest, Person

    if len(args.audio) > 1:
        raise HumoError(
            f"--audio given {len(args.audio)} times ({', '.join(args.audio)}): one track drives one video; give "
            "several people each with their own track as --person IMAGE AUDIO"
        )
    audio = args.audio[0] if args.audio else None
    frames = args.frames if args.seconds is None else frames_for_seconds(args.seconds, args.frames)
    height, width = args.height, args.width
    if args.size:
        if args.size not in SIZES:
            raise HumoError(f"--size {args.size}: unknown (choose from: {', '.join(SIZES)})")
        height, width = SIZES[args.size]
    common = dict(
        height=height,
        width=width,
        frames=frames,
        steps=args.steps,
        shift=args.shift,
        sampler=args.sampler,
        seed=seed,
        guidance=args.guidance,
        guidance_params=_guidance_params(args),
        guidance_config=args.guidance_config,
        negative_prompt=args.negative_prompt,
        max_batch=args.max_batch,
        sequential_guidance=args.sequential_guidance,
        segment_frames=args.segment_frames,
        cache=args.cache,
        mask_warmup=args.mask_warmup,
        mask_cache=args.mask_cache,
    )
    if args.cases:
        if args.prompt or args.image or audio or args.pose or args.out or args.persons:
            raise HumoError(
                "--cases: give the prompt, images, audio, pose and persons in the cases file, not on the command line"
            )
        path = Path(args.cases)
        if not path.is_file():
            raise HumoError(f"--cases {path}: file not found")
        try:
            cases = json.loads(path.read_text(), object_pairs_hook=_no_duplicate_keys)
        except json.JSONDecodeError as e:
            raise HumoError(f"--cases {path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        except HumoError as e:
            raise HumoError(f"--cases {path}: {e}") from None
        if not isinstance(cases, dict) or not cases:
            raise HumoError(f"--cases {path}: expected a non-empty object {{name: {{img_paths, audio_path, prompt}}}}")
        check_case_names(cases, str(path))
        out = []
        for name, case in cases.items():
            if not isinstance(case, dict) or "prompt" not in case:
                raise HumoError(f"--cases {path}: case '{name}' needs at least a 'prompt'")
            check_case(name, case, f"--cases {path}")
            resolve = lambda p: str(p if Path(p).is_absolute() or Path(p).exists() else path.parent / p)  # noqa: E731
            images = [resolve(p) for p in case.get("img_paths") or []]
            case_audio = resolve(case["audio_path"]) if case.get("audio_path") else None
            pose = resolve(case["pose_path"]) if case.get("pose_path") else None
            persons = case_persons(case.get("persons"), resolve)
            request = GenerationRequest(
                case["prompt"], images, case_audio, name=name, pose=pose, persons=persons, **common
            )
            out.append((request, Path(args.out_dir) / f"{name}.mp4"))
        return out
    if not args.prompt:
        raise HumoError("--prompt is required (or --cases FILE)")
    if not args.out:
        raise HumoError("--out is required (an .mp4 path)")
    if not args.out.lower().endswith(".mp4"):
        raise HumoError(f"--out {args.out}: must end in .mp4")
    persons = [Person(p["image"], p["audio"], p.get("box"), p.get("mask")) for p in args.persons]
    return [
        (
            GenerationRequest(args.prompt, args.image, audio, pose=args.pose, persons=persons, **common),
            Path(args.out),
        )
    ]


def case_persons(entries, resolve) -> list:
    """A case's `persons` (checked by `humo.cases.check_case`): [{"ref_image", "audio"[, "box": "x0,y0,x1,y1" or
    [x0, y0, x1, y1]][, "mask"]}, ...] as `Person`s, their files resolved."""
    from humo.pipeline import Person

    persons = []
    for e in entries or []:
        mask = resolve(e["mask"]) if e.get("mask") else None
        persons.append(Person(resolve(e["ref_image"]), resolve(e["audio"]), e.get("box"), mask))
    return persons


def check_outputs(jobs, png_frames: str | None, overwrite: bool) -> None:
    """Every output is checked before the model loads, so a bad path fails in a second, not after sampling."""
    from humo.errors import check_output

    inputs = [
        p
        for req, _ in jobs
        for p in (*req.images, *req.audio_paths, req.pose, req.guidance_config, *(q.mask for q in req.persons))
        if p
    ]
    for req, out in jobs:
        check_output(out, f"case '{req.name}': output" if req.name else "--out", inputs, overwrite)
    if png_frames is not None:
        if len(jobs) > 1:
            raise HumoError("--png-frames: one folder cannot hold the frames of several cases")
        check_output(png_frames, "--png-frames", inputs + [out for _, out in jobs], overwrite, folder=True)


DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4, "fp8": 1}  # fp8: the block weights, 99% of the DiT


def compute_dtype(dtype: str | None, layout) -> str:
    """The dtype the DiT computes in for a --dtype: the layout's for none and for fp8 weights (upcast per layer)."""
    return layout.dtype if dtype in (None, "fp8") else dtype


LIMIT_SECONDS = 24 * 3600  # beyond a day of estimated sampling, a job needs --allow-large
LIMIT_VIDEO_SECONDS = 300  # and beyond five minutes of video


def size_job(
    req, frames: int, layout, weights: Path, dtype: str | None = None, rate=None, free=None, resident=None, ranks=1
):
    """(video tokens, reference tokens, segments, `sizing.JobEstimate`) of one job, before any model loads: tokens of
    the largest pass (a segment: a continuation's motion and new frames are no more); `dtype` is the DiT's (default the
    layout's; fp8 computes in the layout's), `rate` the device's measured FLOP/s, `free` its free memory in bytes,
    `resident` the blocks kept on the device with block swap, `ranks` the sequence-parallel processes (the estimate
    is then one rank's)."""
    from humo.conditions.vae import folder_spatial_stride
    from humo.configs import dit_preset
    from humo.constants import latent_frames
    from humo.pipeline import plan_segments
    from humo.sampler import flow_schedule
    from humo.sizing import estimate_job

    cfg = dit_preset(layout.dit_preset)
    stride = folder_spatial_stride(weights / layout.vae)
    per_frame = (req.height // stride // cfg.patch[1]) * (req.width // stride // cfg.patch[2])
    segments = plan_segments(frames, req.segment_length(layout))
    # the largest pass: the first segment (a continuation's clip, motion frames included, is at most as long)
    video_frames = latent_frames(segments[0][1])
    ref_frames = max(len(req.images), 1 if req.audio_paths else 0)
    _, timesteps = flow_schedule(req.steps, req.shift)
    schedule = req.schedule(req)
    per_step = [len(schedule.conditions_needed(t)) for t in timesteps.tolist()]
    batch = 1 if req.sequential_guidance else min(max(per_step), req.max_batch or max(per_step))
    tokens = (video_frames + ref_frames) * per_frame
    passes = sum(per_step) * len(segments)
    compute = compute_dtype(dtype, layout)
    est = estimate_job(
        cfg,
        tokens,
        video_frames + ref_frames,
        passes,
        batch,
        DTYPE_BYTES[compute],
        rate,
        free,
        weight_dtype_bytes=DTYPE_BYTES[dtype or layout.dtype],
        resident_blocks=resident,
        ranks=ranks,
    )
    return video_frames * per_frame, ref_frames * per_frame, len(segments), est


def job_summary(req, frames: int, layout, weights: Path, dtype: str | None = None, rate=None, free=None) -> str:
    """One line sizing a job before any model loads: tokens per forward pass, passes, the DiT's weights, and with
    `rate` (FLOP/s) and `free` (bytes) the estimated sampling time and memory against the device's."""
    return _summary_line(
        req, frames, dtype or layout.dtype, rate, *size_job(req, frames, layout, weights, dtype, rate, free)
    )


def _summary_line(req, frames: int, dtype: str, rate, video: int, refs: int, segments: int, est) -> str:
    steps = f"{req.steps} steps" if segments == 1 else f"{segments} segments x {req.steps} steps"
    line = (
        f"job: {frames} frames at {req.height}x{req.width} -> {video} video + {refs} reference tokens "
        f"per pass, {est.passes} DiT passes ({steps}); DiT {est.params / 1e9:.2f}B parameters, "
        f"{est.weight_bytes / 2**30:.2f} GiB in {dtype} on the device"
    )
    if est.seconds is not None:
        line += f"; estimate: DiT compute {_duration(est.seconds)} at {rate / 1e12:.2f} TFLOP/s (measured)"
    line += f", weights + activations {est.memory_bytes / 2**30:.2f} GiB"
    if est.ranks > 1:
        line += f" per process ({est.ranks} split the tokens)"
    if est.free_bytes is not None:
        line += f" of {est.free_bytes / 2**30:.1f} GiB free"
    return line


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def check_job_size(
    jobs,
    layout,
    allow_large: bool,
    weights: Path | None = None,
    say=print,
    device=None,
    dtype: str | None = None,
    resident: int | None = None,
    ranks: int = 1,
) -> None:
    """Size each job from the file headers before loading (per rank under sequence parallelism, `ranks` processes):
    refuse what is far beyond the model's design unless
    --allow-large (segments over 4x the model's length, pixels over 4x its size, a video over `LIMIT_VIDEO_SECONDS`:
    a 10-minute WAV with --frames -1 is 15,000 frames in 155 segments), say when the audio is cut, and print
    `job_summary` (with `weights`). With `device`, a quick matmul measures its rate, and a job estimated at more
    than twice the device's free memory or a day of compute is refused too (a warning beyond the free memory)."""
    import torch

    from humo.conditions.audio import frames_for_audio
    from humo.configs import dit_preset
    from humo.constants import SAMPLE_RATE, VIDEO_FPS
    from humo.errors import warn
    from humo.media.audio import audio_duration
    from humo.sizing import free_memory_bytes, matmul_rate

    rate = free = None
    if device is not None and weights is not None:
        cfg, dev = dit_preset(layout.dit_preset), torch.device(device)
        torch_dtype = torch.bfloat16 if compute_dtype(dtype, layout) == "bf16" else torch.float32
        rate = matmul_rate(dev, torch_dtype, cfg.dim, cfg.ffn_dim, rows=4096)
        free = free_memory_bytes(dev)
    for req, _ in jobs:
        who = f"case '{req.name}': " if req.name else ""
        durations = {p: audio_duration(p) for p in req.audio_paths}  # several people: the longest track counts
        longest = max(durations, key=durations.get) if durations else None
        seconds = durations[longest] if durations else None
        track = None
        if req.pose:
            from humo.pose import load_pose

            track = load_pose(req.pose)  # small; read again by the pipeline
        if req.frames != -1:
            frames = req.frames
        elif seconds is not None:
            try:
                frames = frames_for_audio(round(seconds * SAMPLE_RATE), VIDEO_FPS)
            except HumoError as e:  # its message knows the length, not the file
                raise HumoError(f"{who}audio {longest}: {e}") from None
        else:  # --frames -1 without audio takes the pose's length (`GenerationRequest.resolved` checked one is given)
            from humo.pose import frames_for_pose

            frames = frames_for_pose(track, req.pose, VIDEO_FPS)
        if track is not None:
            from humo.pose import check_covers

            check_covers(track, frames, req.pose, VIDEO_FPS, who)
        video_s = frames / VIDEO_FPS
        if seconds is not None and req.frames != -1 and seconds > video_s + 1 / VIDEO_FPS:
            warn(
                f"{who}audio {longest}: {seconds:.2f} s, but --frames {frames} makes {video_s:.2f} s of video; "
                f"the last {seconds - video_s:.2f} s are cut (--frames -1 keeps it all)"
            )
        large = []
        segment = req.segment_length(layout)
        if segment > 4 * layout.frames:
            large.append(f"segments of {segment} frames ({layout.name} is made for {layout.frames})")
        if video_s > LIMIT_VIDEO_SECONDS:
            large.append(f"{frames} frames ({video_s:.1f} s of video)")
        if req.height * req.width > 4 * layout.height * layout.width:
            large.append(f"{req.height}x{req.width} ({layout.name} is made for {layout.height}x{layout.width})")
        est = None
        if weights is not None:
            video, refs, segments, est = size_job(req, frames, layout, weights, dtype, rate, free, resident, ranks)
            say(f"{who}{_summary_line(req, frames, dtype or layout.dtype, rate, video, refs, segments, est)}")
        if est is not None and est.free_bytes is not None and est.memory_bytes > 2 * est.free_bytes:
            large.append(
                f"an estimated {est.memory_bytes / 2**30:.1f} GiB "
                f"(the device has {est.free_bytes / 2**30:.1f} GiB free)"
            )
        if est is not None and est.seconds is not None and est.seconds > LIMIT_SECONDS:
            large.append(f"an estimated {_duration(est.seconds)} of DiT compute")
        if large and not allow_large:
            raise HumoError(
                f"{who}{' and '.join(large)}: far beyond the model's size, slow and memory-hungry; "
                "pass --allow-large to run it anyway"
            )
        if est is not None and est.free_bytes is not None and est.free_bytes < est.memory_bytes <= 2 * est.free_bytes:
            warn(
                f"{who}the job's estimated {est.memory_bytes / 2**30:.1f} GiB exceeds the device's "
                f"{est.free_bytes / 2**30:.1f} GiB free: it may run out of memory (fewer --frames, a smaller --size)"
            )


def checkpoint_config(weights: Path, layout):
    """The DiT config of the checkpoint under `weights`, read from its header (no weights are loaded)."""
    from humo.checkpoint import infer_config, read_shapes

    return infer_config(*read_shapes(weights / layout.dit))


# Long enough for rank 0 to reach the same check on a loaded machine (every check runs before a model loads).
RANK_ERROR_WAIT_S = 20.0


def run(args: argparse.Namespace) -> int:
    """Under torchrun with N > 1 processes, one video at a time with its token sequence split across them
    (`humo.sequence_parallel`): rank 0 prints and writes; the others stay quiet. A bad input fails on every rank
    alike and rank 0 says it: another rank that fails waits `RANK_ERROR_WAIT_S` first, because torchrun stops
    every process as soon as one exits and rank 0 would often be stopped before its line. An error of that rank
    alone (rank 0 went on) is said by it after the wait."""
    from humo.sequence_parallel import environment

    rank, world, local_rank = environment()
    finished = False
    try:
        if rank == 0:
            code = _run(args, world, local_rank)
        else:
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    code = _run(args, world, local_rank)
            except HumoError as e:
                time.sleep(RANK_ERROR_WAIT_S)
                raise HumoError(f"rank {rank}: {e}") from None
        finished = True
        return code
    finally:
        if world > 1:
            from humo.sequence_parallel import shutdown

            shutdown(together=finished)


def _run(args: argparse.Namespace, world: int = 1, local_rank: int = 0) -> int:
    import torch

    from humo.configs import dit_preset
    from humo.lora_files import parse_lora_arg
    from humo.offload import parse_offload
    from humo.pipeline import LAYOUTS, HumoPipeline, detect_preset, person_layout_line, resolve_device

    weights = Path(args.weights) if args.weights else bundled_weights()
    if not args.weights and not weights.is_dir():
        raise HumoError(f"no --weights given and no bundled model at {weights}: run `make demo` or pass --weights")
    preset = args.preset or (detect_preset(weights) if args.weights else "toy")
    if preset not in LAYOUTS:
        raise HumoError(f"--preset {preset}: unknown (choose from: {', '.join(LAYOUTS)})")
    say = (lambda msg: None) if args.quiet else print
    # Everything is checked before a model is loaded.
    layout = HumoPipeline.check_weights(weights, preset)
    seed, drawn = parse_seed(args.seed)
    requests = requests_from_args(args, seed)
    # A pose needs a pose guider, and persons without boxes a mask predictor, which only the checkpoint's own config
    # tells (its header, not its weights).
    needs_config = any(req.pose or req.persons for req, _ in requests)
    dit_config = checkpoint_config(weights, layout) if needs_config else None
    jobs = [(req.resolved(layout, dit_config), out) for req, out in requests]
    if world > 1:
        from humo.sequence_parallel import check_heads

        check_heads((dit_config or dit_preset(layout.dit_preset)).num_heads, world, f"the {preset} DiT")
    check_outputs(jobs, args.png_frames, args.overwrite)
    resident = parse_offload(args.offload)
    layers = dit_preset(layout.dit_preset).num_layers
    if resident is not None and resident > layers:
        raise HumoError(f"--offload blocks:{resident}: {layout.name} has only {layers} DiT blocks")
    loras = [parse_lora_arg(spec) for spec in args.lora]
    for path, _ in loras:
        if not Path(path).is_file():
            raise HumoError(f"--lora {path}: file not found")
    device = resolve_device(args.device)
    sp = None
    if world > 1:
        from humo.sequence_parallel import broadcast, check_device, from_environment, local_device

        check_device(device)
        device = local_device(device, local_rank)
        sp = from_environment(device)
        if drawn:  # every rank must draw the same noise: rank 0's seed
            seed = broadcast(seed, sp)
            jobs = [(dataclasses.replace(req, seed=seed), out) for req, out in jobs]
        say(f"sequence parallel: each DiT pass's tokens split across {world} processes")
    from humo.fp8 import choose_matmul

    choose_matmul(args.fp8_matmul, device)  # scaled fp8 matmuls need fp8 tensor cores on a GPU
    check_job_size(jobs, layout, args.allow_large, weights, say, device, args.dtype, resident, world)
    if drawn:  # printed even with --quiet: without it the video cannot be made again
        print(f"seed {seed}")
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp8": None, None: None}[args.dtype]
    t0 = time.perf_counter()
    quiet = dict(log=lambda msg: None, progress=False) if args.quiet or (sp and not sp.is_main) else {}
    pipe = HumoPipeline.from_pretrained(
        weights,
        preset,
        device=device,
        dtype=dtype,
        offload=not args.no_offload,
        loras=loras,
        fp8=args.dtype == "fp8",
        fp8_matmul=args.fp8_matmul,
        resident_blocks=resident,
        sequence_parallel=sp,
        **quiet,
    )
    say(f"loaded {preset} from {weights} in {time.perf_counter() - t0:.1f} s")
    for req, out in jobs:
        if req.name:
            say(f"case {req.name}")
        if req.persons and args.quiet and not (sp and not sp.is_main):
            # printed even with --quiet, as the pipeline prints it otherwise: what routes each person's audio (the
            # model's masks or the user's boxes) is never silent
            print(person_layout_line(req, pipe.dit.cfg))
        result = pipe(req, out=out, png_dir=args.png_frames)
        total = sum(result.timings.values())
        say(
            f"done: {out} ({len(result.frames)} frames, {len(result.frames) / result.fps:.2f} s of video) "
            f"in {total:.1f} s"
        )
    return 0
