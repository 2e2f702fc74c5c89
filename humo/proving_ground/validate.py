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

With --speakers it validates the per-speaker metric (`metrics.speaker_sync`) on the manifest's multi-person clips
instead, given each character's own track (its WAV) in left-to-right order:
  truth      the clip with its tracks: own-track Sync-C well above other-track Sync-C, a low silent ratio;
  degraded   the clip after `metrics.degrade`: the same, a little worse;
  swapped    the tracks rotated by one (character k gets character k+1's): own below other, a high silent ratio;
  mix        the clip rendered again with every character's mouth following the mix (the dataset's synth.json
             and the clip's index give its content), through the same H.264 writer: own ~ other, a silent
             ratio near 1.
With --vae FOLDER also "truth-codec": the clip through that codec's round trip, the best a model decoding through
it can read (a codec that blurs shut mouths open raises the silent ratio's floor).

With --copy it validates the copy-paste measures (`metrics.copy_paste`, summarised as the held-out evaluation
does: against the next clip's reference) on the single-person clips:
  truth      the clip (drawn apart from its reference): the reference's own scene near 0, placement copied near 0;
  degraded   the clip after `metrics.degrade`: the same;
  pasted     the reference itself as every frame, after `metrics.degrade`: the reference's scene near 1, its
             placement copied;
  blend      half the clip and half the pasted reference, pixel by pixel: in between.
With --vae FOLDER (a codec, e.g. the recipe's encoders/vae) also "truth-codec" and "pasted-codec": the clip and the
pasted reference through that codec's round trip (what a model that copies would decode to) instead of `degrade`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from humo.constants import SAMPLE_RATE, VIDEO_FPS
from humo.data.manifest import read_manifest
from humo.errors import HumoError
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


def _round_trip(vae: str | None):
    """frames -> frames through the round trip of the codec folder `vae` (`humo.evaluation.codec.round_trip`), or
    None without one."""
    if vae is None:
        return None
    from humo.conditions.vae import load_vae_folder
    from humo.evaluation.codec import round_trip

    codec = load_vae_folder(vae)
    return lambda frames: round_trip(codec, frames)


def validate_copy(manifest: str, n: int = 50, seed: int = 0, vae: str | None = None) -> dict:
    """The copy-paste measures on the first `n` single-person clips in the conditions of the module docstring
    (the codec ones with `vae`, a codec folder): per condition `heldout.copy_paste_summary`."""
    from humo.evaluation.heldout import copy_paste_summary

    samples = [s for s in read_manifest(manifest) if s.meta.get("num_characters", 1) == 1][:n]
    if len(samples) < 2:
        # the mismatched reference is the next clip's: one clip would be its own mismatch
        raise HumoError(f"{manifest}: {len(samples)} one-person clips; the copy-paste check needs at least 2")
    codec = _round_trip(vae)
    data = [_load(s) for s in samples]
    rng = np.random.default_rng(seed)
    kw = dict(blur=0.8, noise=3.0, down=2, shift=6.0)
    rows: dict[str, list] = {}
    for i, (s, (frames, _, ref, _, _)) in enumerate(zip(samples, data)):
        other = data[(i + 1) % len(samples)][2]
        pasted = metrics.degrade(np.repeat(ref[None], len(frames), 0), rng, **kw)
        blend = ((frames.astype(np.float32) + pasted) / 2).round().astype(np.uint8)
        videos = {"truth": frames, "degraded": metrics.degrade(frames, rng, **kw), "pasted": pasted, "blend": blend}
        if codec is not None:
            videos["truth-codec"] = codec(frames)
            videos["pasted-codec"] = codec(np.repeat(ref[None], len(frames), 0))
        for cond, video in videos.items():
            rows.setdefault(cond, []).append({
                "own": metrics.copy_paste(video, ref, s.caption),
                "mismatched_ref": metrics.copy_paste(video, other, s.caption),
            })  # fmt: skip
    return {**{cond: copy_paste_summary(rs) for cond, rs in rows.items()}, "clips": len(samples)}


def mix_mouth_frames(manifest: str | Path, sample) -> np.ndarray:
    """A dataset clip rendered again with every character's mouth following the mix (the loudest envelope per
    frame), written and read back through the synthesiser's H.264 writer: frames [T, H, W, 3] uint8."""
    from humo.media.video import read_video
    from humo.proving_ground import render, synth
    from humo.proving_ground._av import write_mp4

    settings = json.loads((Path(manifest).parent / "synth.json").read_text())
    fields = {k: v for k, v in settings.items() if k in synth.SynthConfig.__dataclass_fields__}
    cfg = synth.SynthConfig(**{**fields, "frames": tuple(fields["frames"])})
    _, spec, tracks = synth.clip_content(cfg, sample.meta["index"])
    mix = np.max([t.envelope for t in tracks], axis=0)
    clip = render.render_clip(spec, [mix] * len(tracks), [t.roundness for t in tracks])
    with tempfile.TemporaryDirectory() as d:
        write_mp4(Path(d) / "mix.mp4", clip.frames, spec.fps)
        return read_video(Path(d) / "mix.mp4")[0]


def validate_speakers(manifest: str, n: int = 50, seed: int = 0, vae: str | None = None) -> dict:
    """The per-speaker metric on the first `n` multi-person clips of `manifest` in the conditions of the module
    docstring ("truth-codec" with `vae`, a codec folder). Returns per condition the mean, min and max of
    metrics.SPEAKER_KEYS over the clips that have them, the share of clips whose own-track Sync-C beats the other
    tracks', the silent ratio pooled over the clips, and the same split by character count."""
    from humo.media.audio import load_audio
    from humo.media.video import read_video

    samples = [s for s in read_manifest(manifest) if s.meta.get("num_characters", 1) > 1][:n]
    codec = _round_trip(vae)
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {"truth": [], "degraded": [], "swapped": [], "mix": []}
    if codec is not None:
        rows["truth-codec"] = []
    counts = []
    t0 = time.perf_counter()
    for s in samples:
        frames, fps, _, _ = read_video(s.video_path)
        waves = [load_audio(s.resolve(c["audio"]), SAMPLE_RATE, min_seconds=0) for c in s.meta["characters"]]
        tracks = [(w, SAMPLE_RATE) for w in waves]
        counts.append(len(tracks))
        rows["truth"].append(metrics.speaker_sync(frames, fps, tracks))
        dframes = metrics.degrade(frames, rng, blur=0.8, noise=3.0, down=2, shift=6.0)
        rows["degraded"].append(metrics.speaker_sync(dframes, fps, tracks))
        rows["swapped"].append(metrics.speaker_sync(frames, fps, tracks[1:] + tracks[:1]))
        rows["mix"].append(metrics.speaker_sync(mix_mouth_frames(manifest, s), fps, tracks))
        if codec is not None:
            rows["truth-codec"].append(metrics.speaker_sync(codec(frames), fps, tracks))
    per_clip = (time.perf_counter() - t0) / max(1, len(samples)) / len(rows)

    def stats(rs) -> dict:
        out = {}
        for k in metrics.SPEAKER_KEYS:
            v = [r[k] for r in rs if r[k] is not None]
            out[k] = (float(np.mean(v)), float(np.min(v)), float(np.max(v)), len(v)) if v else None
        both = [r for r in rs if r["speaker_sync_own"] is not None and r["speaker_sync_other"] is not None]
        out["own_above_other"] = float(np.mean([r["speaker_sync_own"] > r["speaker_sync_other"] for r in both]))
        out["all_faces_every_frame"] = float(np.mean([r["speaker_faces_found"] == 1.0 for r in rs]))
        out["silent_pooled"] = metrics.pooled_silent_ratio(rs)  # what an evaluation's summary reports
        return out

    res: dict = {}
    for cond, rs in rows.items():
        res[cond] = stats(rs)
        for c in sorted(set(counts)):
            res[f"{cond}_{c}p"] = stats([r for r, n_ in zip(rs, counts) if n_ == c])
    res["clips"] = {c: counts.count(c) for c in sorted(set(counts))}
    res["seconds_per_speaker_sync"] = per_clip
    return res


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("manifest")
    p.add_argument("--clips", type=int, default=50)
    p.add_argument("--speakers", action="store_true", help="validate the per-speaker metric on multi-person clips")
    p.add_argument("--copy", action="store_true", help="validate the copy-paste measures")
    p.add_argument("--vae", help="with --copy or --speakers: also through this codec's round trip")
    args = p.parse_args(argv)
    if args.vae is not None and not (args.copy or args.speakers):
        p.error("--vae goes with --copy or --speakers")
    if args.copy:
        try:
            res = validate_copy(args.manifest, args.clips, vae=args.vae)
        except (HumoError, OSError) as e:
            raise SystemExit(f"validate: error: {e}") from None
        for cond, v in res.items():
            if isinstance(v, dict):
                print(f"{cond:9s} " + "  ".join(f"{k}={'-' if x is None else f'{x:.3f}'}" for k, x in v.items()))
        print(json.dumps({"clips": res["clips"]}))
        return
    if args.speakers:
        try:
            res = validate_speakers(args.manifest, args.clips, vae=args.vae)
        except (HumoError, OSError) as e:
            raise SystemExit(f"validate: error: {e}") from None
        for cond, v in res.items():
            if not isinstance(v, dict) or cond == "clips":
                continue
            parts = []
            for k, x in v.items():
                if isinstance(x, tuple):
                    parts.append(f"{k.removeprefix('speaker_')}={x[0]:.3f} [{x[1]:.3f}, {x[2]:.3f}] n={x[3]}")
                elif x is not None:
                    parts.append(f"{k}={x:.3f}")
            print(f"{cond:11s} " + "  ".join(parts))
        print(json.dumps({"clips": res["clips"], "seconds_per_call": round(res["seconds_per_speaker_sync"], 3)}))
        return
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
