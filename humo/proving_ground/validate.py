"""Validate the metrics on a proving-ground dataset, both ways: `python -m humo.proving_ground.validate MANIFEST`.

For N clips of a manifest written by `humo synth` (read back from their MP4/WAV/PNG files, so after H.264), it
reports the metrics in four conditions:
  truth      the clip with its own prompt, reference, audio and pose track: should be near perfect;
  degraded   the clip after `metrics.degrade` (downsample x2 + blur + colour shift + noise) and the reference
             likewise: should stay near perfect;
  mismatch   the clip with the NEXT clip's prompt, reference, audio and pose track: should sit near chance (the
             pose error far above the truth's);
  shifted    the clip with its own audio delayed by 5 frames: the best sync offset should read +5.
The numbers in docs/proving-ground.md come from this script.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from humo.constants import SAMPLE_RATE, VIDEO_FPS
from humo.data.manifest import read_manifest
from humo.proving_ground import metrics

SHIFT = 5


def _load(s):
    from PIL import Image

    from humo.media.audio import load_audio
    from humo.media.video import read_video
    from humo.pose import from_proving_ground

    frames, fps, _, _ = read_video(s.video_path)
    ref = np.asarray(Image.open(s.ref_image_paths[0]).convert("RGB"))
    with np.load(s.face_masks_path) as z:
        track = from_proving_ground(z["keypoints"], s.width, s.height, s.fps, s.meta.get("keypoint_names"))
    return frames, fps, ref, load_audio(s.audio_path, SAMPLE_RATE, min_seconds=0), track


def validate(manifest: str, n: int = 50, seed: int = 0) -> dict:
    samples = [s for s in read_manifest(manifest) if s.meta.get("num_characters", 1) == 1][:n]
    data = [_load(s) for s in samples]
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {"truth": [], "degraded": [], "mismatch": [], "shifted": []}
    t0 = time.perf_counter()
    for i, (s, (frames, fps, ref, audio, track)) in enumerate(zip(samples, data)):
        o, (_, _, oref, oaudio, otrack) = samples[(i + 1) % len(samples)], data[(i + 1) % len(samples)]
        rows["truth"].append(metrics.evaluate_clip(frames, fps, s.caption, [ref], (audio, SAMPLE_RATE), track))
        kw = dict(blur=0.8, noise=3.0, down=2, shift=6.0)
        dframes = metrics.degrade(frames, rng, **kw)
        dref = metrics.degrade(ref[None], rng, **kw)[0]
        rows["degraded"].append(metrics.evaluate_clip(dframes, fps, s.caption, [dref], (audio, SAMPLE_RATE), track))
        rows["mismatch"].append(metrics.evaluate_clip(frames, fps, o.caption, [oref], (oaudio, SAMPLE_RATE), otrack))
        delayed = np.concatenate([np.zeros(SHIFT * SAMPLE_RATE // VIDEO_FPS, np.float32), audio])[: len(audio)]
        rows["shifted"].append(metrics.av_sync(frames, fps, delayed, SAMPLE_RATE))
    per_clip = (time.perf_counter() - t0) / max(1, len(samples)) / 3
    out = {k: metrics.summarize(v) for k, v in rows.items() if k != "shifted"}
    for k in ("truth", "degraded", "mismatch"):  # the pose error per joint (U), mean over the clips that have it
        per = [r["details"].get("pose_joints", {}) for r in rows[k]]
        out[f"{k}_joints"] = {j: float(np.mean(v)) for j in metrics.POSE_JOINTS if (v := [p[j] for p in per if j in p])}
    offsets = [r["sync_offset"] for r in rows["shifted"] if r["sync_offset"] is not None]
    out["shifted"] = {
        "offset_mean": float(np.mean(offsets)),
        "offset_exact": float(np.mean([o == SHIFT for o in offsets])),
        "offset_within_1": float(np.mean([abs(o - SHIFT) <= 1 for o in offsets])),
    }
    out["clips"] = len(samples)
    out["seconds_per_evaluate_clip"] = per_clip
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("manifest")
    p.add_argument("--clips", type=int, default=50)
    args = p.parse_args(argv)
    res = validate(args.manifest, args.clips)
    for k, v in res.items():
        if isinstance(v, dict):
            print(
                f"{k:9s} "
                + "  ".join(f"{kk}={vv:.3f}" if isinstance(vv, float) else f"{kk}={vv}" for kk, vv in v.items())
            )
    print(json.dumps({"clips": res["clips"], "seconds_per_evaluate_clip": round(res["seconds_per_evaluate_clip"], 3)}))


if __name__ == "__main__":
    main()
