"""A model's quality on held-out identities: generate from held-out clips' inputs, score, compare with baselines.

For each of the first N single-character clips of a held-out manifest (``humo synth --split heldout``), the model
generates a video from the clip's caption, reference image and audio (never its frames). The video is then scored
(`metrics.evaluate_clip`) against

- its own inputs: text following, subject consistency, Sync-C / Sync-D / offset;
- another clip's reference (the next clip whose identity differs): the mismatched-reference baseline of subject
  consistency;
- another clip's audio (the same shuffle): the shuffled-audio baseline of Sync-C;
- copy-paste (`metrics.copy_paste`): the video's background read as its reference image's own scene where the
  prompt asks for another, and how close its face's centre is to the reference's, against the other clip's
  reference (`placement_copy` = 1 - own distance / mismatched distance: 0 when the reference's placement is not
  copied);

and, when the model has a mask head, the IoU of its predicted face mask (last sampling step, on the latent grid)
against the face found in the generated frames, resized to the same grid.

The issue's quality bars are checked in `bars`: text following >= 0.8; subject accuracy >= 0.3 above the
mismatched baseline; Sync-C >= 2x the shuffled baseline; |best offset| <= 1 frame for >= 80% of clips.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from humo.constants import SAMPLE_RATE
from humo.errors import HumoError, atomic_path
from humo.proving_ground import metrics, readers

BARS = {
    "text_mean": 0.8,  # at least
    "subject_gain": 0.3,  # subject_acc - mismatched subject_acc, at least
    "sync_ratio": 2.0,  # sync_c / shuffled sync_c, at least
    "offset_within_1": 0.8,  # share of clips with |offset| <= 1, at least
}


def heldout_samples(manifest: str | os.PathLike, clips: int) -> list:
    """The first `clips` single-character samples of `manifest` that have a reference image and audio."""
    from humo.data.manifest import read_manifest

    samples = [
        s
        for s in read_manifest(manifest)
        if s.meta.get("num_characters", 1) == 1 and s.ref_images and s.audio is not None
    ]
    if len(samples) < 2:
        raise HumoError(f"manifest {manifest}: need at least 2 single-character clips with reference and audio")
    return samples[:clips]


def _partner(samples: list, i: int) -> int:
    """The next sample (cyclically) whose identity differs from sample i's (for the mismatched baselines)."""
    key = samples[i].meta.get("characters", [{}])[0].get("identity_key")
    for k in range(1, len(samples)):
        j = (i + k) % len(samples)
        if key is None or samples[j].meta.get("characters", [{}])[0].get("identity_key") != key:
            return j
    return (i + 1) % len(samples)


def mask_iou(pred: np.ndarray | None, frames: np.ndarray) -> float | None:
    """IoU of a predicted latent-grid mask [F, h, w] (probabilities) with the face read from `frames` on that grid."""
    if pred is None:
        return None
    import torch

    from humo.data.precompute import clip_frames
    from humo.mask_head import mask_to_latent_grid

    face = readers.face_mask(frames)
    t = clip_frames(len(face), None)
    grid = mask_to_latent_grid(torch.from_numpy(face[:t]).unsqueeze(0), tuple(pred.shape[-2:]))[0].numpy()
    f = min(len(grid), len(pred))
    return metrics.face_iou(pred[:f] > 0.5, grid[:f] > 0.5)


def mean_spread(values) -> tuple[float | None, float | None, int]:
    """Mean and sample standard deviation of the values that exist (None/NaN skipped), and how many there were."""
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None, None, 0
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, len(vals)


def _mean(values) -> float | None:
    return mean_spread(values)[0]


def copy_paste_summary(rows: list[dict]) -> dict[str, float | None]:
    """The copy-paste measures over clips (`metrics.copy_paste` in each row's "own" and "mismatched_ref"): the
    means of both, and placement_copy = 1 - own / mismatched placement distance (0: the video's face is as far
    from its reference's as from another's; 1: where its reference's is), over the clips where both distances were
    read (a reference without a face has none). None where results predate them."""
    out: dict[str, float | None] = {}
    for k in ("copy_scene", "placement_distance"):
        out[k] = _mean(r["own"].get(k) for r in rows)
        out[f"{k}_mismatched"] = _mean(r["mismatched_ref"].get(k) for r in rows)
    pairs = [(r["own"].get("placement_distance"), r["mismatched_ref"].get("placement_distance")) for r in rows]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    d, base = _mean(a for a, _ in pairs), _mean(b for _, b in pairs)
    out["placement_copy"] = None if d is None or not base else 1.0 - d / base
    return out


def summarize(rows: list[dict]) -> dict[str, Any]:
    """Means over clips, the baselines, the bars and whether each is reached."""
    own = metrics.summarize([r["own"] for r in rows])
    base_subject = _mean(r["mismatched_ref"]["subject_acc"] for r in rows)
    base_sync = _mean(r["shuffled_audio"]["sync_c"] for r in rows)
    offsets = [r["own"]["sync_offset"] for r in rows if r["own"]["sync_offset"] is not None]
    out: dict[str, Any] = {
        "clips": len(rows),
        **{k: own[k] for k in ("text_scene", "text_action", "text_object", "text_mean", "subject_acc")},
        **{k: own[k] for k in ("subject_sim", "sync_c", "sync_d", "face_found")},
        "subject_acc_mismatched": base_subject,
        "sync_c_shuffled": base_sync,
        # over all clips: a clip whose mouth cannot be read counts as out of sync
        "offset_within_1": sum(abs(o) <= 1 for o in offsets) / len(rows) if rows else None,
        "offset_abs_mean": float(np.mean(np.abs(offsets))) if offsets else None,
        "mask_iou": _mean(r.get("mask_iou") for r in rows),
        "seconds_per_clip": _mean(r.get("seconds") for r in rows),
    }
    gain = None if out["subject_acc"] is None or base_subject is None else out["subject_acc"] - base_subject
    ratio = None
    if out["sync_c"] is not None and base_sync:
        ratio = out["sync_c"] / base_sync
    out["subject_gain"], out["sync_ratio"] = gain, ratio
    out.update(copy_paste_summary(rows))
    out["bars"] = {k: {"need": v, "got": out[k], "ok": out[k] is not None and out[k] >= v} for k, v in BARS.items()}
    return out


def quiet_pipeline(weights: str | os.PathLike, preset: str = "toy", fp8: bool = False):
    """A CPU `HumoPipeline` that keeps every component loaded and prints nothing (for scoring many clips);
    `fp8`: the DiT's block weights in fp8 (humo.fp8)."""
    from humo.pipeline import HumoPipeline

    return HumoPipeline.from_pretrained(
        weights, preset, device="cpu", offload=False, log=lambda *_: None, progress=False, fp8=fp8
    )


def generate_clip(pipe, sample, *, seed: int, steps: int, guidance=None, guidance_params=None, out=None, cache=None):
    """The pipeline's result for one held-out sample: its caption, first reference image, audio and length, in one
    pass whatever its length (the bars are for what the model makes of a clip, not for long-video continuation)."""
    return pipe(
        sample.caption,
        [str(sample.ref_image_paths[0])],
        str(sample.audio_path),
        out=out,
        frames=sample.num_frames or None,
        segment_frames=max(9, sample.num_frames) if sample.num_frames else None,
        steps=steps,
        seed=seed,
        guidance=guidance,
        guidance_params=dict(guidance_params or {}),
        cache=cache,
    )


def evaluate_model(
    weights: str | os.PathLike,
    manifest: str | os.PathLike,
    *,
    clips: int = 50,
    steps: int = 20,
    guidance: str | None = None,
    guidance_params: dict | None = None,
    seed: int = 0,
    preset: str = "toy",
    videos: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = print,
    pipe=None,
    fp8: bool = False,
    cache: float | None = None,
) -> dict[str, Any]:
    """Generate and score `clips` held-out clips with the model at `weights` (a weights folder of `preset`).

    `videos`: a folder to keep the generated MP4s in (named by sample id). `pipe`: an already loaded
    `HumoPipeline` (then `weights` only labels the result). `fp8`: block weights in fp8; `cache`: the step-caching
    threshold. Returns {"summary": ..., "rows": {id: ...}}.
    """
    from PIL import Image

    from humo.media.audio import load_audio

    samples = heldout_samples(manifest, clips)
    if pipe is None:
        pipe = quiet_pipeline(weights, preset, fp8=fp8)
    refs = [np.asarray(Image.open(s.ref_image_paths[0]).convert("RGB")) for s in samples]
    audios = [load_audio(s.audio_path, SAMPLE_RATE, min_seconds=0) for s in samples]
    vdir = Path(videos) if videos is not None else None
    rows: dict[str, dict] = {}
    for i, s in enumerate(samples):
        j = _partner(samples, i)
        t0 = time.perf_counter()
        out = vdir / f"{s.id}.mp4" if vdir is not None else None
        res = generate_clip(
            pipe,
            s,
            seed=seed + i,
            steps=steps,
            guidance=guidance,
            guidance_params=guidance_params,
            out=out,
            cache=cache,
        )
        seconds = time.perf_counter() - t0
        face = readers.main_face(res.frames)
        own = metrics.evaluate_clip(res.frames, res.fps, s.caption, [refs[i]], (audios[i], SAMPLE_RATE), face=face)
        own.pop("details", None)
        own.update(metrics.copy_paste(res.frames, refs[i], s.caption, face))
        row = {
            "own": own,
            "mismatched_ref": {
                **{
                    k: v
                    for k, v in metrics.subject_consistency(res.frames, [refs[j]]).items()
                    if k in ("subject_acc", "subject_sim")
                },
                **metrics.copy_paste(res.frames, refs[j], s.caption, face),
            },  # fmt: skip
            "shuffled_audio": {
                k: v
                for k, v in metrics.av_sync(res.frames, res.fps, audios[j], SAMPLE_RATE, face).items()
                if k != "distances"
            },  # fmt: skip
            "mask_iou": mask_iou(res.mask, res.frames),
            "seconds": seconds,
            "partner": samples[j].id,
        }
        rows[s.id] = row
        if log is not None:
            o = row["own"]
            log(
                f"heldout {i + 1}/{len(samples)} {s.id}: text {_fmt(o['text_mean'])} subject {_fmt(o['subject_acc'])}"
                f" (vs {_fmt(row['mismatched_ref']['subject_acc'])}) sync_c {_fmt(o['sync_c'])}"
                f" (vs {_fmt(row['shuffled_audio']['sync_c'])}) offset {o['sync_offset']} {seconds:.1f} s"
            )
    return {"weights": str(weights), "manifest": str(manifest), "summary": summarize(list(rows.values())), "rows": rows}


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a few readable lines, with the bars."""
    s = summary
    lines = [
        f"held-out clips: {s['clips']}",
        f"text following: {_fmt(s['text_mean'])} (scene {_fmt(s['text_scene'])}, action {_fmt(s['text_action'])},"
        f" object {_fmt(s['text_object'])})",
        f"subject accuracy: {_fmt(s['subject_acc'])} vs mismatched reference {_fmt(s['subject_acc_mismatched'])}"
        f" (similarity {_fmt(s['subject_sim'])})",
        f"Sync-C: {_fmt(s['sync_c'])} vs shuffled audio {_fmt(s['sync_c_shuffled'])}; Sync-D {_fmt(s['sync_d'])};"
        f" |offset| <= 1 on {_fmt(s['offset_within_1'])} of clips",
        f"face-mask IoU: {_fmt(s['mask_iou'])}; faces found in {_fmt(s['face_found'])} of frames",
    ]
    if s.get("copy_scene") is not None or s.get("placement_copy") is not None:
        lines.append(
            f"copy-paste: the reference's own scene {_fmt(s['copy_scene'])} vs another reference's"
            f" {_fmt(s['copy_scene_mismatched'])}; face placement copied {_fmt(s['placement_copy'])}"
            " (0: as far from its reference's as from another's, 1: the reference's)"
        )
    for k, b in s["bars"].items():
        lines.append(f"bar {k}: need >= {b['need']}, got {_fmt(b['got'])} -> {'PASS' if b['ok'] else 'MISS'}")
    return "\n".join(lines)


def write_report(result: dict[str, Any], path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=1, default=float) + "\n")
    return Path(path)


# What `clip_differences` compares per clip: (name, the clip row's value). The gains are the clip's own score
# minus its mismatched-reference / shuffled-audio baseline, so that a clip's difficulty cancels out.
CLIP_MEASURES: tuple[tuple[str, Callable[[dict], Any]], ...] = (
    ("text_mean", lambda r: r["own"]["text_mean"]),
    ("subject_acc", lambda r: r["own"]["subject_acc"]),
    ("subject_gain", lambda r: _minus(r["own"]["subject_acc"], r["mismatched_ref"]["subject_acc"])),
    ("sync_c", lambda r: r["own"]["sync_c"]),
    ("sync_margin", lambda r: _minus(r["own"]["sync_c"], r["shuffled_audio"]["sync_c"])),
    ("copy_scene", lambda r: r["own"].get("copy_scene")),
    # how much nearer the face is to its own reference's place than to the other reference's (> 0: copied)
    (
        "placement_margin",
        lambda r: _minus(r["mismatched_ref"].get("placement_distance"), r["own"].get("placement_distance")),
    ),
)


def _minus(a, b):
    return None if a is None or b is None else a - b


def clip_differences(a: dict[str, Any], b: dict[str, Any], boot: int = 2000, seed: int = 0) -> dict[str, dict]:
    """Two `evaluate_model` results on the same clips -> per measure of `CLIP_MEASURES` the differences b - a paired
    clip by clip: their mean, a bootstrap 95% interval over clips, how many clips are higher / lower in b and how
    many were paired (clips both scored, and where both have the value)."""
    shared = [k for k in a["rows"] if k in b["rows"]]
    if not shared:
        raise HumoError("compare: the two results share no clip (score the same manifest)")
    g = np.random.default_rng(seed)
    out = {}
    for name, value in CLIP_MEASURES:
        pairs = [(value(a["rows"][k]), value(b["rows"][k])) for k in shared]
        d = np.array([y - x for x, y in pairs if x is not None and y is not None], dtype=np.float64)
        if not len(d):
            out[name] = {"clips": 0, "mean": None, "lo": None, "hi": None, "higher": 0, "lower": 0}
            continue
        means = d[g.integers(0, len(d), (boot, len(d)))].mean(axis=1)
        lo, hi = np.quantile(means, [0.025, 0.975])
        out[name] = {"clips": len(d), "mean": float(d.mean()), "lo": float(lo), "hi": float(hi),
                     "higher": int((d > 0).sum()), "lower": int((d < 0).sum())}  # fmt: skip
    return out


def format_differences(diffs: dict[str, dict], a: str, b: str) -> str:
    lines = [f"{b} - {a}, paired by clip (mean, bootstrap 95% interval; clips higher / lower in b)"]
    w = max((len(name) for name in diffs), default=0)
    for name, d in diffs.items():
        if d["mean"] is None:
            lines.append(f"{name:<{w}} -")
        else:
            lines.append(f"{name:<{w}} {d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]  "
                         f"{d['higher']} / {d['lower']} of {d['clips']}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """python -m humo.evaluation.heldout compare A.json B.json: two `humo eval --json` results of one manifest,
    paired clip by clip."""
    import argparse
    import sys

    from humo.errors import read_json_file

    ap = argparse.ArgumentParser(
        prog="python -m humo.evaluation.heldout", description="Compare two held-out evaluations clip by clip."
    )
    sub = ap.add_subparsers(dest="command", required=True)
    cmp = sub.add_parser("compare", help="B - A per clip, for results of `humo eval --json` on the same clips")
    cmp.add_argument("a")
    cmp.add_argument("b")
    args = ap.parse_args(argv)
    try:
        results = [read_json_file(p, "compare") for p in (args.a, args.b)]
        for p, r in zip((args.a, args.b), results, strict=True):
            if not isinstance(r, dict) or not isinstance(r.get("rows"), dict):
                raise HumoError(f"compare: {p} is not a `humo eval --json` result (no per-clip rows)")
        print(format_differences(clip_differences(*results), args.a, args.b))
    except HumoError as e:
        print(f"humo: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
