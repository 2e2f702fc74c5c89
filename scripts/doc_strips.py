"""Frame strips for the docs' OmniHuman-1 sections: one held-out proving-ground clip generated under each setting
compared, a labelled row of frames per setting (the frames at the same times in every row).

    python scripts/doc_strips.py annealed --out docs/images/annealed-strip.png
    python scripts/doc_strips.py rope --out docs/images/rope-strip.png \\
        --models runs/ablate-rope/train/full-finetune-seed0 runs/ablate-rope/train/rope-zero-seed0
    python scripts/doc_strips.py pose --out docs/images/pose-strip.png --models runs/ratios-v2/train/pose-50-seed0

`annealed`: the bundled model with static guidance at scales 2 and 3 and annealed from 3 to 1 (docs/ablations.md,
"CFG annealing"). `rope`: two trained runs' final EMA weights (HuMo's reference time index against OmniHuman-1's
zero). `pose`: a model with a pose guider on clip i driven by clip i+1's pose track, beside the same model without
the pose and the driving clip itself (the pose drawn over it). Every row uses the same seed. Runs on the CPU in a
minute or two.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LABEL_WIDTH = 150


def labelled(rows: list[tuple[str, np.ndarray]], count: int, scale: int) -> np.ndarray:
    """Rows of frames ([T, H, W, 3] each, the same T) as one image: `count` frames at the same times per row,
    enlarged `scale` times, a label on the left of each."""
    from PIL import Image, ImageDraw

    from humo.commands.demo import strip_image

    t = min(len(f) for _, f in rows)
    h, w = rows[0][1].shape[1:3]
    img = Image.new("RGB", (LABEL_WIDTH + min(count, t) * w * scale, len(rows) * h * scale), "white")
    draw = ImageDraw.Draw(img)
    for r, (label, frames) in enumerate(rows):
        img.paste(strip_image(frames[:t], count, scale), (LABEL_WIDTH, r * h * scale))
        draw.multiline_text((6, r * h * scale + 6), label, fill="black", spacing=3)
    return np.asarray(img)


def draw_pose(frames: np.ndarray, track) -> np.ndarray:
    """The canonical joints of a normalised `PoseTrack` drawn as dots over `frames` (the driving clip)."""
    out = frames.copy()
    h, w = frames.shape[1:3]
    for i in range(min(len(out), track.frames)):
        for x, y, c in track.points[i].reshape(-1, 3):
            if c > 0:
                cx, cy = int(x * w), int(y * h)
                out[i, max(cy - 1, 0) : cy + 1, max(cx - 1, 0) : cx + 1] = (255, 40, 40)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["annealed", "rope", "pose"])
    p.add_argument("--out", required=True)
    p.add_argument("--recipe", default="runs/toy-recipe")
    p.add_argument("--models", nargs="*", default=[], help="training run folders (their final/ema.safetensors)")
    p.add_argument("--clip", type=int, default=0, help="held-out clip index")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=8, help="frames per row")
    p.add_argument("--scale", type=int, default=2)
    args = p.parse_args()

    from humo.checkpoint import load_dit
    from humo.errors import atomic_path
    from humo.evaluation.ablation import recipe_encoders
    from humo.evaluation.heldout import generate_clip, heldout_samples, quiet_pipeline

    recipe = Path(args.recipe)
    samples = heldout_samples(recipe / "data" / "heldout" / "manifest.jsonl", args.clip + 2)
    s = samples[args.clip]
    rows = []
    if args.what == "annealed":
        pipe = quiet_pipeline(ROOT / "humo" / "assets" / "toy")
        for label, preset, scale in (
            ("static 2", "static", 2),
            ("static 3", "static", 3),
            ("annealed 3->1", "annealed", 3),
        ):
            params = {"scale_t": scale, "scale_i": scale, "scale_a": scale}
            res = generate_clip(pipe, s, seed=args.seed, steps=args.steps, guidance=preset, guidance_params=params)
            rows.append((label, res.frames))
    else:
        if not args.models:
            p.error(f"{args.what}: give --models")
        pipe = quiet_pipeline(recipe_encoders(recipe))
        for model in map(Path, args.models):
            pipe.dit = load_dit(model / "final" / "ema.safetensors")
            name = model.name.rsplit("-seed", 1)[0]
            if args.what == "rope":
                res = generate_clip(pipe, s, seed=args.seed, steps=args.steps)
                rows.append((f"{name}\n(reference time\n{pipe.dit.cfg.reference_rope})", res.frames))
                continue
            from humo.pose import from_proving_ground, save_pose

            drive = samples[args.clip + 1]
            with np.load(drive.resolve(drive.face_masks)) as z:
                kp = z["keypoints"]
            track = from_proving_ground(kp, drive.width, drive.height, drive.fps, drive.meta.get("keypoint_names"))
            pose_file = Path(args.out).with_suffix(".pose.json")
            save_pose(pose_file, track)
            common = dict(frames=s.num_frames, steps=args.steps, seed=args.seed)
            with_pose = pipe(s.caption, [str(s.ref_image_paths[0])], str(s.audio_path), pose=str(pose_file), **common)
            without = pipe(s.caption, [str(s.ref_image_paths[0])], str(s.audio_path), **common)
            pose_file.unlink()
            from humo.media.video import read_video

            real, _, _, _ = read_video(drive.video_path)
            rows += [
                ("driving clip\n(its pose in red)", draw_pose(real, track.normalise())),
                (f"{name}\nwith the pose", with_pose.frames),
                (f"{name}\nwithout it", without.frames),
            ]
    image = labelled(rows, args.frames, args.scale)
    from PIL import Image

    with atomic_path(args.out) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    print(json.dumps({"out": args.out, "clip": s.id, "rows": [label.replace("\n", " ") for label, _ in rows]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
