"""Several people on the proving ground: does each person's audio drive that person? (InterActHuman, issue 19)

Each held-out multi-person clip (`humo synth --multi --split heldout`) is generated from its caption, its
characters' reference images and their own audio tracks, in each of these ways (InterActHuman's Table 4 rows):

- ``predicted``: the model's own person masks, handed from step to step (the mask cache);
- ``strips``: fixed masks, the frame cut into equal vertical strips, one per person left to right (the paper's
  "fixed mask": known to be where each person roughly stands, blind to their shape and motion);
- ``global``: every audio everywhere: the references and the mix, as a one-person model is driven;
- ``baseline``: the same global drive through another model (the one the fine-tune started from), when given.

and scored with the per-speaker reader (`metrics.speaker_sync`): each character's mouth against its own track and
the others' (Sync-C), and how far it opens while its own track is silent (the silent ratio); with predicted masks
also their IoU with the true person masks at the last step. The bars (issue 19): own-track Sync-C >= 2x the other
tracks', silent ratio <= 0.2, mask IoU >= 0.5.

    python -m humo.evaluation.persons --model runs/ih/model --baseline humo/assets/toy \\
        --manifest runs/ih/data/heldout/manifest.jsonl --clips 24 --out runs/ih/eval.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

MODES = ("predicted", "strips", "global", "baseline")
BARS = {"speaker_sync_ratio": 2.0, "speaker_silent_ratio": 0.2, "person_iou": 0.5}


def multi_samples(manifest: str | os.PathLike, clips: int) -> list:
    """The first `clips` samples of a manifest that have several people with their own tracks."""
    from humo.data.manifest import read_manifest

    found = [s for s in read_manifest(manifest) if len(s.person_audio) > 1]
    if not found:
        from humo.errors import HumoError

        raise HumoError(f"manifest {manifest}: no multi-person clips (humo synth --multi)")
    return found[:clips]


def left_to_right(sample) -> list[int]:
    """The sample's persons ordered from the left of the frame (by each character's position)."""
    chars = sample.meta.get("characters") or []
    if len(chars) != len(sample.ref_images):
        return list(range(len(sample.ref_images)))
    return sorted(range(len(chars)), key=lambda k: chars[k]["position"][0])


def strip_boxes(n: int, height: int, width: int) -> list[str]:
    """n equal vertical strips of a height x width frame, left to right, as --box strings."""
    edges = [round(k * width / n) for k in range(n + 1)]
    return [f"{edges[k]},0,{edges[k + 1]},{height}" for k in range(n)]


def generate(pipe, sample, mode: str, *, seed: int, steps: int, out=None):
    """One clip in one mode -> the pipeline's result."""
    from humo.pipeline import Person

    order = left_to_right(sample)
    refs = [str(sample.ref_image_paths[k]) for k in order]
    tracks = [str(sample.person_audio_paths[k]) for k in order]
    common = dict(out=out, frames=sample.num_frames, segment_frames=max(9, sample.num_frames), steps=steps, seed=seed)
    if mode in ("global", "baseline"):
        return pipe(sample.caption, refs, str(sample.audio_path), **common)
    boxes = strip_boxes(len(refs), sample.height, sample.width) if mode == "strips" else [None] * len(refs)
    persons = [Person(r, a, box) for r, a, box in zip(refs, tracks, boxes)]
    return pipe(sample.caption, persons=persons, **common)


def score(result, sample) -> dict[str, Any]:
    """The per-speaker metrics of a generated clip (and the person-mask IoU when it has masks)."""
    from humo.proving_ground import metrics

    order = left_to_right(sample)
    tracks = [str(sample.person_audio_paths[k]) for k in order]
    row = {k: v for k, v in metrics.speaker_sync(result.frames, result.fps, tracks).items() if k != "details"}
    if result.person_masks is not None:
        with np.load(sample.face_masks_path) as z:
            gt = z["person_masks"][order]
        row.update(metrics.person_mask_iou(result.person_masks, gt))
    return row


def summarize(rows: list[dict]) -> dict[str, Any]:
    """Mean and spread over clips of each metric, and the bars."""
    out: dict[str, Any] = {"clips": len(rows)}
    for key in ("speaker_sync_own", "speaker_sync_other", "speaker_silent_ratio", "speaker_faces_found", "person_iou"):
        vals = [r[key] for r in rows if r.get(key) is not None and math.isfinite(r[key])]
        out[key] = float(np.mean(vals)) if vals else None
        out[key + "_std"] = float(np.std(vals)) if vals else None
    own, other = out["speaker_sync_own"], out["speaker_sync_other"]
    out["speaker_sync_ratio"] = own / other if own is not None and other else None
    out["bars"] = {
        k: {
            "need": v,
            "got": out.get(k),
            "ok": out.get(k) is not None and (out[k] <= v if "silent" in k else out[k] >= v),
        }
        for k, v in BARS.items()
    }
    return out


def evaluate(
    model: str | os.PathLike,
    manifest: str | os.PathLike,
    *,
    clips: int = 24,
    steps: int = 20,
    seed: int = 0,
    baseline: str | os.PathLike | None = None,
    modes: tuple[str, ...] = MODES,
    videos: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every mode on the first `clips` multi-person clips -> {"modes": {mode: summary}, "rows": {mode: {id: row}}}."""
    from humo.evaluation.heldout import quiet_pipeline

    samples = multi_samples(manifest, clips)
    pipes = {"model": quiet_pipeline(model)}
    if baseline is not None and "baseline" in modes:
        pipes["baseline"] = quiet_pipeline(baseline)
    modes = tuple(m for m in modes if m != "baseline" or "baseline" in pipes)
    if not pipes["model"].dit.cfg.person_mask_blocks:
        modes = tuple(m for m in modes if m != "predicted")
    rows: dict[str, dict] = {m: {} for m in modes}
    for i, s in enumerate(samples):
        for m in modes:
            pipe = pipes["baseline" if m == "baseline" else "model"]
            out = None if videos is None else Path(videos) / m / f"{s.id}.mp4"
            if out is not None:
                out.parent.mkdir(parents=True, exist_ok=True)
            rows[m][s.id] = score(generate(pipe, s, m, seed=seed + i, steps=steps, out=out), s)
        f = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731 - a random model may find no face
        log(f"{i + 1}/{len(samples)} {s.id}: " + "; ".join(
            f"{m} own {f(rows[m][s.id]['speaker_sync_own'])} other {f(rows[m][s.id]['speaker_sync_other'])} "
            f"silent {f(rows[m][s.id]['speaker_silent_ratio'])}" for m in modes
        ))  # fmt: skip
    return {
        "model": str(model),
        "baseline": None if baseline is None else str(baseline),
        "manifest": str(manifest),
        "steps": steps,
        "modes": {m: summarize(list(rows[m].values())) for m in modes},
        "rows": rows,
    }


def format_summary(result: dict[str, Any]) -> str:
    lines = ["mode        own Sync-C  other Sync-C  ratio  silent ratio  mask IoU  faces found"]
    f = lambda v, p=2: "  -  " if v is None else f"{v:.{p}f}"  # noqa: E731
    for m, s in result["modes"].items():
        own, other, ratio = f(s["speaker_sync_own"]), f(s["speaker_sync_other"]), f(s["speaker_sync_ratio"])
        silent, iou, found = f(s["speaker_silent_ratio"]), f(s["person_iou"]), f(s["speaker_faces_found"])
        lines.append(f"{m:<10}  {own:>10}  {other:>12}  {ratio:>5}  {silent:>12}  {iou:>8}  {found:>11}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from humo.errors import HumoError, atomic_path

    ap = argparse.ArgumentParser(prog="python -m humo.evaluation.persons", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="weights folder of a toy-layout model (with a person predictor)")
    ap.add_argument("--baseline", help="another model driven globally (the one the fine-tune started from)")
    ap.add_argument("--manifest", required=True, help="held-out multi-person clips (humo synth --multi)")
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    ap.add_argument("--videos", help="keep the generated MP4s here (one folder per mode)")
    ap.add_argument("--out", help="write the result as JSON here")
    args = ap.parse_args(argv)
    try:
        modes = tuple(m.strip() for m in args.modes.split(","))
        bad = [m for m in modes if m not in MODES]
        if bad:
            raise HumoError(f"--modes: unknown {bad[0]!r} (choose from {', '.join(MODES)})")
        result = evaluate(
            args.model, args.manifest, clips=args.clips, steps=args.steps, seed=args.seed, baseline=args.baseline,
            modes=modes, videos=args.videos,
        )  # fmt: skip
    except HumoError as e:
        print(f"humo: error: {e}", file=sys.stderr)
        return 2
    print(format_summary(result))
    if args.out:
        with atomic_path(args.out) as tmp:
            Path(tmp).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
