"""Drift of long videos made in segments from motion frames (OmniHuman-1's scheme; `HumoPipeline` with
`segment_frames`), measured per segment on held-out proving-ground inputs against issue 20's bars:

- identity: subject accuracy of the last segment within 0.05 of the first;
- colour: the background's mean colour (the top rows of the frame, above the head) per segment within 3 RGB units
  of the first segment's;
- sync: Sync-C at least 2x its shuffled-audio value in every segment;
- joins: the mean frame-to-frame change across a join at most 1.5x the mean change within segments; reported
  beside it, the joins against the change across the latent codec's own frame-group boundaries inside segments
  (a join always falls on one; the proving ground's linear codec shows a step at every boundary).

    python -m humo.evaluation.long_video --model humo/assets/toy --manifest LONG/manifest.jsonl --clips 4 \
        --json drift.json --plot drift.png

(LONG: `humo synth --frames 749:749 --split heldout`, 30 s clips.)
"""

from __future__ import annotations

import argparse
import json

import numpy as np

BACKGROUND_ROWS = 6  # rows at the top of a 64x64 frame that show the scene, not the character


def segment_metrics(frames, fps, plan, ref, audio, other_audio, sample_rate) -> list[dict]:
    """Per segment of `plan` ([(start, generated, kept)], `humo.pipeline.plan_segments`): subject accuracy,
    background colour, Sync-C with its own and with another clip's audio, mean frame-to-frame change."""
    from humo.proving_ground import metrics

    rows = []
    for start, _, keep in plan:
        seg = frames[start : start + keep]
        a0, a1 = round(start / fps * sample_rate), round((start + keep) / fps * sample_rate)
        own = metrics.av_sync(seg, fps, audio[a0:a1], sample_rate)
        other = metrics.av_sync(seg, fps, other_audio[a0:a1], sample_rate)
        diffs = np.abs(np.diff(seg.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
        rows.append(
            {
                "start": start,
                "frames": keep,
                "subject_acc": metrics.subject_consistency(seg, [ref])["subject_acc"],
                "background_rgb": seg[:, :BACKGROUND_ROWS].reshape(-1, 3).mean(axis=0).tolist(),
                "sync_c": own["sync_c"],
                "sync_c_shuffled": other["sync_c"],
                "within_change": float(diffs.mean()) if len(diffs) else None,
                "join_change": None
                if start == 0
                else float(np.abs(frames[start].astype(np.float32) - frames[start - 1]).mean()),
            }
        )
    return rows


def join_and_within(rows: list[dict]) -> tuple[list[float], list[float]]:
    """The frame-to-frame changes across the joins and within the segments of one video's rows (where measured)."""
    joins = [r["join_change"] for r in rows if r["join_change"] is not None]
    within = [r["within_change"] for r in rows if r["within_change"] is not None]
    return joins, within


def bars(rows: list[dict]) -> dict:
    """Issue 20's drift bars from one video's segment rows (None where a reader found nothing)."""
    first, last = rows[0], rows[-1]
    subj = None
    if first["subject_acc"] is not None and last["subject_acc"] is not None:
        subj = first["subject_acc"] - last["subject_acc"]
    colour = max(float(np.abs(np.subtract(r["background_rgb"], first["background_rgb"])).max()) for r in rows)
    ratios = [r["sync_c"] / r["sync_c_shuffled"] for r in rows if r["sync_c"] and r["sync_c_shuffled"]]
    joins, within = join_and_within(rows)
    join_ratio = float(np.mean(joins) / np.mean(within)) if joins and within and np.mean(within) > 0 else None
    return {
        "subject_drop": subj,
        "subject_ok": subj is not None and subj <= 0.05,
        "colour_max_shift": colour,
        "colour_ok": colour <= 3,
        "sync_min_ratio": min(ratios) if ratios else None,
        "sync_ok": len(ratios) == len(rows) and min(ratios) >= 2,
        "join_ratio": join_ratio,
        "join_ok": join_ratio is not None and join_ratio <= 1.5,
    }


def plot(results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
    for res in results:
        rows = res["segments"]
        x = np.arange(1, len(rows) + 1)
        axes[0].plot(x, [r["subject_acc"] for r in rows], marker=".")
        bg = np.array([r["background_rgb"] for r in rows])
        axes[1].plot(x, np.abs(bg - bg[0]).max(axis=1), marker=".")
        axes[2].plot(x, [(r["sync_c"] or 0) / (r["sync_c_shuffled"] or np.nan) for r in rows], marker=".")
        axes[3].plot(x[1:], [r["join_change"] / res["mean_within"] for r in rows[1:]], marker=".")
    for ax, title, bar in zip(
        axes,
        ("subject accuracy", "background colour shift (RGB units)", "Sync-C / shuffled", "join change / within"),
        (None, 3, 2, 1.5),
    ):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("segment")
        ax.grid(alpha=0.3)
        if bar is not None:
            ax.axhline(bar, color="k", ls="--", lw=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def through_codec_in_segments(vae, frames: np.ndarray, plan) -> np.ndarray:
    """Real frames uint8 [T, H, W, 3] as a perfect generator would leave them: the first segment of `plan` encoded
    and decoded; each next one, as the generator makes it, the last `MOTION_FRAMES` frames of the result so far and
    its new frames encoded as one clip and decoded, its kept new frames put back. The joins of the result are the
    latent codec's own: the ceiling of the join bar for that codec."""
    from humo.constants import MOTION_FRAMES
    from humo.evaluation.codec import round_trip

    out = np.empty_like(frames)
    for k, (start, length, keep) in enumerate(plan):
        seg = frames[start : start + length]
        seg = np.concatenate([seg, np.repeat(seg[-1:], length - len(seg), 0)])  # the last may run past the end
        lead = out[start - MOTION_FRAMES : start] if k else seg[:0]
        out[start : start + keep] = round_trip(vae, np.concatenate([lead, seg]))[len(lead) :][:keep]
    return out


def group_boundary_change(frames: np.ndarray, plan) -> float:
    """The mean frame-to-frame change across the latent codec's own frame-group boundaries inside segments (the
    first segment's video frame 0 | 1, 4 | 5, ...; a continuation's new frames come in fours from its start): the
    like-for-like reference for a join, which always falls on such a boundary."""
    from humo.constants import TEMPORAL_STRIDE

    changes = []
    for k, (start, _, keep) in enumerate(plan):
        first = start + (1 if k == 0 else TEMPORAL_STRIDE)  # the first frame after a boundary inside the segment
        for t in range(first, start + keep, TEMPORAL_STRIDE):
            changes.append(np.abs(frames[t].astype(np.float32) - frames[t - 1]).mean())
    return float(np.mean(changes)) if changes else float("nan")


def main(argv=None) -> int:
    from PIL import Image

    from humo.constants import SAMPLE_RATE
    from humo.errors import HumoError, atomic_path
    from humo.evaluation.heldout import heldout_samples, quiet_pipeline
    from humo.media.audio import load_audio
    from humo.media.video import read_video
    from humo.pipeline import plan_segments

    p = argparse.ArgumentParser(description="drift of long videos made in segments, per segment")
    p.add_argument("--model", required=True)
    p.add_argument("--manifest", required=True, help="held-out manifest of long clips (humo synth --frames 749:749)")
    p.add_argument("--clips", type=int, default=4)
    p.add_argument("--segment-frames", type=int, default=49)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--json", required=True)
    p.add_argument("--plot")
    p.add_argument(
        "--ceiling",
        action="store_true",
        help="score the real clips passed through the model's latent codec segment by segment instead of generating "
        "(what a perfect generator would reach on that codec)",
    )
    args = p.parse_args(argv)
    samples = heldout_samples(args.manifest, max(2, args.clips))
    if samples[0].num_frames <= args.segment_frames:
        raise HumoError(f"--manifest {args.manifest}: clips of {samples[0].num_frames} frames are not long videos")
    pipe = quiet_pipeline(args.model)
    audios = [load_audio(s.audio_path, SAMPLE_RATE) for s in samples]
    results = []
    for i, s in enumerate(samples[: args.clips]):
        if args.ceiling:
            frames, fps = read_video(s.video_path)[:2]
            with pipe.vae as vae:
                frames = through_codec_in_segments(vae, frames, plan_segments(len(frames), args.segment_frames))
        else:
            res = pipe(
                s.caption,
                [str(s.ref_image_paths[0])],
                str(s.audio_path),
                frames=s.num_frames,
                segment_frames=args.segment_frames,
                steps=args.steps,
                seed=i,
            )
            frames, fps = res.frames, res.fps
        plan = plan_segments(len(frames), args.segment_frames)
        ref = np.asarray(Image.open(s.ref_image_paths[0]).convert("RGB"))
        other = audios[(i + 1) % len(audios)]
        rows = segment_metrics(frames, fps, plan, ref, audios[i], other, SAMPLE_RATE)
        joins, within = join_and_within(rows)
        result = {
            "id": s.id,
            "segments": rows,
            "mean_within": float(np.mean(within)),
            "bars": bars(rows),
            # beside the bar: joins against the codec's own frame-group boundaries inside segments (like for like)
            "join_vs_group_boundaries": float(np.mean(joins) / group_boundary_change(frames, plan)),
        }
        results.append(result)
        extra = f"join / group boundaries {result['join_vs_group_boundaries']:.2f}"
        print(f"{s.id}: {len(rows)} segments, {json.dumps(result['bars'])}, {extra}", flush=True)
    with atomic_path(args.json) as tmp:
        tmp.write_text(json.dumps(results, indent=1) + "\n")
    if args.plot:
        with atomic_path(args.plot) as tmp:
            plot(results, str(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
