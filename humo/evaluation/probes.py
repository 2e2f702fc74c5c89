"""Capability probes: does each of HuMo's mechanisms learn its capability on its own, before the joint recipe?

- ``audio``: do the (frozen) audio features carry what lip sync needs? A ridge regression from each video frame's
  audio features to the mouth opening drawn in that frame, fitted on some training clips and scored (Pearson r)
  on others. If this fails, no amount of DiT training gives sync.
- ``curve``: a training run's kept checkpoints scored on held-out clips (text, subject accuracy against a
  mismatched reference, Sync-C against shuffled audio, face-mask IoU), giving the curve of each capability
  against steps: stage 1 for identity (subject gain), stage 2 for sync and the mask head.

    python -m humo.evaluation.probes audio --recipe runs/toy-recipe
    python -m humo.evaluation.probes curve --recipe runs/toy-recipe --run runs/toy-recipe/s2 --clips 12
- ``gap``: the same checkpoints' conditioning gaps (`conditioning_gap`): how much the denoising error on the face
  drops with the clip's own reference / audio against another clip's. It reads whether the mechanism is used
  before the samples are good enough for the readers.

    python -m humo.evaluation.probes gap --run runs/toy-recipe/s2 --cache runs/toy-recipe/cache-heldout

Each checkpoint's scores are cached beside it (``probe-<clips>.json``, ``gap-<clips>.json``), so a curve grows
as a run goes on.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from humo.constants import SAMPLE_RATE
from humo.errors import HumoError, atomic_path


def audio_mouth_probe(
    manifest: str | os.PathLike, audio_encoder: str | os.PathLike, clips: int = 60, fit_share: float = 0.75
) -> dict[str, Any]:
    """Pearson r on held-back clips of a ridge regression from per-frame audio features to the mouth opening.

    Features: `AudioEncoder.features` (one row of 5 groups x C per video frame, what the DiT's audio windows are
    cut from), standardised on the fitting clips. Target: the drawn mouth opening of the clip's (first)
    character, from its ground-truth ``.npz``. Also reported: the same probe from the loudness envelope alone
    (the world's mouth follows it, so that r is the probe's ceiling) and from features of another clip's audio
    (chance), and the features' content share (see the return value).
    """
    from humo.conditions.audio import AudioEncoder
    from humo.data.manifest import read_manifest
    from humo.media.audio import load_audio

    samples = [s for s in read_manifest(manifest) if s.audio_path is not None and s.face_masks_path is not None]
    samples = samples[:clips]
    if len(samples) < 4:
        raise HumoError(f"audio probe: {manifest} has {len(samples)} clips with audio and ground truth; need 4")
    enc = AudioEncoder.from_pretrained(audio_encoder)
    feats, mouth, env = [], [], []
    for s in samples:
        wave = load_audio(s.audio_path, SAMPLE_RATE, min_seconds=0)
        f = enc.features(wave).reshape(-1, enc.dim * 5).numpy()
        with np.load(s.face_masks_path) as gt:
            m, e = gt["mouth"][0], gt["envelope"][0]
        t = min(len(f), len(m))
        feats.append(f[:t])
        mouth.append(m[:t])
        env.append(e[:t, None])
    n_fit = max(2, int(round(len(samples) * fit_share)))
    shuffled = feats[1:] + feats[:1]  # each clip's mouth against the next clip's audio features
    fit, held = slice(0, n_fit), slice(n_fit, None)

    def probe(x: list[np.ndarray]) -> float:
        # Each clip's rows of x beside its mouth, cut to the shorter (another clip's audio may differ in length).
        n = [min(len(a), len(m)) for a, m in zip(x, mouth, strict=True)]
        xf, xt = (np.concatenate([a[:k] for a, k in zip(x[sl], n[sl], strict=True)]) for sl in (fit, held))
        yf, yt = (np.concatenate([m[:k] for m, k in zip(mouth[sl], n[sl], strict=True)]) for sl in (fit, held))
        mu, sd = xf.mean(0), xf.std(0) + 1e-6
        a = np.c_[(xf - mu) / sd, np.ones(len(xf))]
        b = np.c_[(xt - mu) / sd, np.ones(len(xt))]
        w = np.linalg.solve(a.T @ a + np.eye(a.shape[1]), a.T @ yf)
        return float(np.corrcoef(b @ w, yt)[0, 1])

    t_min = min(len(f) for f in feats)
    stack = np.stack([f[:t_min] for f in feats])  # [clips, T, D]
    return {
        # The between-clip variance of the features at equal frames over their mean square: how much of what the
        # DiT is given comes from the sound. The ridge probe standardises its inputs, so it finds a signal however
        # small; the DiT sees the features as they are, and a share near 0 means they are the same for every clip.
        "content_share": float(stack.var(0).mean() / np.square(stack).mean()),
        "r": probe(feats),
        "r_envelope": probe(env),
        "r_other_audio": probe(shuffled),
        "clips_fit": n_fit,
        "clips_scored": len(samples) - n_fit,
        "feature_dim": int(feats[0].shape[1]),
    }


def checkpoint_curve(
    recipe: str | os.PathLike,
    run_out: str | os.PathLike,
    clips: int = 12,
    steps: int = 20,
    log: Callable[[str], None] | None = print,
) -> dict[int, dict[str, Any]]:
    """{step: held-out summary} for every checkpoint `run_out` kept, scored with the recipe's codec and encoders
    (`recipe`/model must exist: the recipe's assembled folder)."""
    from humo.evaluation.ablation import Evaluator, checkpoint_dit, kept_checkpoints
    from humo.evaluation.heldout import _fmt
    from humo.evaluation.ledger import json_memo

    run_out = Path(run_out)
    points = kept_checkpoints(run_out)
    if not points:
        raise HumoError(f"probe curve: {run_out} has no kept checkpoints")
    evaluate = Evaluator(recipe, clips=clips, steps=steps)
    curve: dict[int, dict[str, Any]] = {}
    for step, folder in points:
        curve[step] = json_memo(folder / f"probe-{clips}.json", lambda folder=folder: evaluate(checkpoint_dit(folder)))
        if log is not None:
            s = curve[step]
            log(
                f"{run_out.name} step {step}: text {_fmt(s.get('text_mean'))} subject {_fmt(s.get('subject_acc'))} "
                f"(mismatched {_fmt(s.get('subject_acc_mismatched'))}) sync_c {_fmt(s.get('sync_c'))} "
                f"(shuffled {_fmt(s.get('sync_c_shuffled'))}) mask IoU {_fmt(s.get('mask_iou'))}"
            )
    return curve


GAP_SIGMAS = (0.3, 0.5, 0.7, 0.9)


def conditioning_gap(
    model, cache: str | os.PathLike, *, split: str = "val", sigmas=GAP_SIGMAS, clips: int = 24, seed: int = 0
) -> dict[str, Any]:
    """How much a DiT's denoising error drops when it gets a clip's own reference image or audio.

    On cached clips of `split` (all conditions on: the "av" task), at fixed sigmas and fixed noise, the flow loss
    is measured with the clip's own condition and with another clip's (rolled by one in the batch), on the face
    region (the cached face masks as weights) and on the whole frame. gap = 1 - own / other: 0 when the model
    ignores the condition, > 0 when it uses it. This reads the mechanism itself, before the model draws well
    enough for the sample readers to see it. -> {"image": {...}, "audio": {...}} with per-sigma and mean gaps, and
    for a DiT with an audio projector "audio_tokens": `audio_token_dependence` on these clips.
    """
    import torch

    from humo.conditioning import MODALITIES, rope_kwargs
    from humo.data.loader import CachedDataset, Collate, LatentCache
    from humo.training.objective import Draws, build_inputs

    cfg = model.cfg
    lc = LatentCache(cache)
    ds = CachedDataset(lc, split=split, num_refs=1, masks=True, zero_video=cfg.reference_mode == "concat")
    items = [ds[(i, "av")] for i in range(min(clips, len(ds)))]
    items = [it for it in items if it["refs"] is not None and it["audio"] is not None and it["mask"] is not None]
    if len(items) < 2:
        raise HumoError(f"conditioning gap: cache {cache} split {split} has {len(items)} clips with all conditions")
    batch = Collate(1, [cfg.audio_window, cfg.audio_groups, cfg.audio_feat_dim])(items)
    null_text = lc.null_text()
    lat = batch.latents
    b = lat.shape[0]
    shape = (lat.shape[1], lat.shape[2] + 1, *lat.shape[3:])
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((b, *shape), generator=gen)
    face = batch.mask.float()[:, None]
    rolled = {m: MODALITIES[m].batch_key for m in ("image", "audio")}  # the condition and the batch field holding it
    out: dict[str, Any] = {}

    def losses(bt, sigma: float) -> tuple[np.ndarray, np.ndarray]:
        off = {m: torch.zeros(b, dtype=torch.bool) for m in MODALITIES}
        draws = Draws(torch.full((b,), sigma), torch.full((b,), 1000 * sigma), noise, off)
        inp = build_inputs(
            bt, draws, null_text, reference_mode=cfg.reference_mode, use_audio=cfg.audio,
            reference_rope=cfg.reference_rope,
        )  # fmt: skip
        times = rope_kwargs(inp.frame_times)
        with torch.no_grad():
            pred = model(inp.x, inp.t, inp.context, audio=inp.audio, y=inp.y, **times)
        err = (pred[:, :, ~inp.clean] - inp.target[:, :, ~inp.clean]).float().square()
        whole = err.mean(dim=(1, 2, 3, 4))
        on_face = (err * face).sum(dim=(1, 2, 3, 4)) / (face.sum(dim=(1, 2, 3, 4)) * err.shape[1]).clamp_min(1e-6)
        return whole.numpy(), on_face.numpy()

    own = {sigma: losses(batch, sigma) for sigma in sigmas}  # the same for both conditions
    if cfg.audio and hasattr(model, "audio_proj"):
        out["audio_tokens"] = audio_token_dependence(model, batch.audio)
    for kind, key in rolled.items():
        if kind == "audio" and not cfg.audio:
            continue
        other = batch.replace(**{key: getattr(batch, key).roll(1, dims=0)})
        rows = {}
        for sigma in sigmas:
            (w_own, f_own), (w_other, f_other) = own[sigma], losses(other, sigma)
            rows[f"{sigma:g}"] = {
                "face_own": float(f_own.mean()),
                "face_other": float(f_other.mean()),
                "face_gap": float(1 - f_own.mean() / f_other.mean()),
                "whole_gap": float(1 - w_own.mean() / w_other.mean()),
                "face_better_share": float((f_own < f_other).mean()),
            }
        out[kind] = {
            "per_sigma": rows,
            "face_gap": float(np.mean([r["face_gap"] for r in rows.values()])),
            "whole_gap": float(np.mean([r["whole_gap"] for r in rows.values()])),
            "clips": b,
        }
    return out


def audio_token_dependence(model, windows) -> float:
    """How much the audio projector's tokens change when each clip's audio windows [B, F, window, groups, C] are
    replaced by another clip's (rolled by one): ||tokens(own) - tokens(other)|| / ||tokens(own)||. About 0.7 for a
    random projector; near 0 for one that has collapsed to the same tokens whatever the audio, which turns the audio
    branch into a learned bias that no audio can move (the conditioning gap then reads 0 too)."""
    import torch

    with torch.no_grad():
        own = model.audio_proj(windows).float()
        other = model.audio_proj(windows.roll(1, dims=0)).float()
    return float((own - other).norm() / own.norm().clamp_min(1e-12))


def gap_curve(
    run_out: str | os.PathLike, cache: str | os.PathLike, split: str = "test", clips: int = 24, log=print
) -> dict[int, dict[str, Any]]:
    """{step: {"image_gap", "audio_gap", ...}} for every checkpoint `run_out` kept (see `conditioning_gap`)."""
    from humo.evaluation.ablation import checkpoint_dit, kept_checkpoints
    from humo.evaluation.ledger import json_memo

    run_out = Path(run_out)
    points = kept_checkpoints(run_out)
    if not points:
        raise HumoError(f"probe gap: {run_out} has no kept checkpoints")

    def one(folder: Path) -> dict[str, Any]:
        g = conditioning_gap(checkpoint_dit(folder), cache, split=split, clips=clips)
        tokens = {"audio_tokens": g.pop("audio_tokens")} if "audio_tokens" in g else {}
        return {f"{k}_gap": v["face_gap"] for k, v in g.items()} | tokens | {"detail": g}

    curve = {}
    for step, folder in points:
        curve[step] = json_memo(folder / f"gap-{clips}.json", lambda folder=folder: one(folder))
        if log is not None:
            log(
                f"{run_out.name} step {step}: "
                + " ".join(f"{k} {v:.3f}" for k, v in curve[step].items() if k != "detail")
            )
    return curve


# (panel title, the metric, its baseline or None)
PANELS = (
    ("text following", "text_mean", None),
    ("subject accuracy (dashed: mismatched reference)", "subject_acc", "subject_acc_mismatched"),
    ("Sync-C (dashed: shuffled audio)", "sync_c", "sync_c_shuffled"),
    ("face-mask IoU", "mask_iou", None),
    ("face-loss gap: own vs another reference", "image_gap", None),
    ("face-loss gap: own vs another audio", "audio_gap", None),
)


def plot_curves(curves: dict[str, dict[int, dict[str, Any]]], path: str | os.PathLike) -> Path:
    """One panel per capability: each run's metric against its training steps, the baseline dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from humo.media.image import save_figure

    panels = [p for p in PANELS if any(p[1] in point for c in curves.values() for point in c.values())]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.3), squeeze=False)
    axes = axes[0]
    for ax, (title, key, base) in zip(axes, panels, strict=True):
        for name, curve in curves.items():
            steps = sorted(curve)
            ys = [curve[s].get(key) for s in steps]
            if all(y is None for y in ys):
                continue
            (line,) = ax.plot(steps, [np.nan if y is None else y for y in ys], marker="o", label=name)
            if base is not None:
                b = [curve[s].get(base) for s in steps]
                ax.plot(steps, [np.nan if y is None else y for y in b], ls="--", color=line.get_color(), alpha=0.7)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return save_figure(fig, path)


def sample_sheet(
    recipe: str | os.PathLike,
    checkpoint: str | os.PathLike,
    path: str | os.PathLike,
    clips: int = 4,
    steps: int = 20,
    guidance: str | None = None,
    guidance_params: dict | None = None,
) -> Path:
    """A PNG of what a checkpoint draws for the first `clips` held-out clips: per row the reference image, six
    frames of the sample and the clip's own middle frame (the truth), each enlarged 2x."""
    from PIL import Image

    from humo.evaluation.ablation import checkpoint_dit, recipe_encoders
    from humo.evaluation.heldout import generate_clip, heldout_samples, quiet_pipeline
    from humo.media.image import load_references
    from humo.media.video import read_video

    recipe = Path(recipe)
    pipe = quiet_pipeline(recipe_encoders(recipe))
    pipe.dit = checkpoint_dit(checkpoint)
    rows = []
    for i, s in enumerate(heldout_samples(recipe / "data" / "heldout" / "manifest.jsonl", clips)):
        res = generate_clip(pipe, s, seed=i, steps=steps, guidance=guidance, guidance_params=guidance_params)
        h, w = res.frames.shape[1:3]
        ref = load_references([str(s.ref_image_paths[0])], h, w)[0]
        ref = ((ref.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        truth = read_video(s.video_path)[0]
        picks = np.linspace(0, len(res.frames) - 1, 6).round().astype(int)
        rows.append(np.concatenate([ref, *res.frames[picks], truth[len(truth) // 2]], axis=1))
    grid = np.concatenate(rows, axis=0)
    out = Path(path)
    with atomic_path(out) as tmp:
        img = Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST)
        img.save(tmp, format="PNG")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m humo.evaluation.probes", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="probe", required=True)
    a = sub.add_parser("audio", help="ridge probe from audio features to the mouth opening")
    a.add_argument("--recipe", required=True, type=Path, help="toy recipe folder (data/, encoders/)")
    a.add_argument("--clips", type=int, default=60)
    c = sub.add_parser("curve", help="score every kept checkpoint of a training run on held-out clips")
    c.add_argument("--recipe", required=True, type=Path, help="toy recipe folder (model/, data/heldout/)")
    c.add_argument("--run", required=True, type=Path, help="training run folder (checkpoints/)")
    c.add_argument("--clips", type=int, default=12)
    g = sub.add_parser("gap", help="face-loss gap, own vs another clip's reference and audio, per kept checkpoint")
    g.add_argument("--run", required=True, type=Path, help="training run folder (checkpoints/)")
    g.add_argument("--cache", required=True, type=Path, help="cache of held-out clips (humo precompute)")
    g.add_argument("--split", default="test", help="split of the cache to use (default test: held-out clips)")
    g.add_argument("--clips", type=int, default=24)
    sh = sub.add_parser("sheet", help="PNG of a checkpoint's samples for the first held-out clips")
    sh.add_argument("--recipe", required=True, type=Path, help="toy recipe folder (model/, data/heldout/)")
    sh.add_argument("--checkpoint", required=True, type=Path, help="checkpoint folder (model + ema safetensors)")
    sh.add_argument("--out", required=True, type=Path, help="PNG to write")
    sh.add_argument("--clips", type=int, default=4)
    sh.add_argument("--guidance", help="guidance preset (default: the toy layout's)")
    sh.add_argument("--scale", type=float, help="one scale for text, image and audio (release formula)")
    for q in (a, c, g):
        q.add_argument("--json", type=Path, help="write the result here too")
    pl = sub.add_parser("plot", help="plot curves written by `curve --json` (one line per file)")
    pl.add_argument("--json", nargs="+", required=True, type=Path, help="curve files; each run is named by its stem")
    pl.add_argument("--out", required=True, type=Path, help="PNG to write")
    args = p.parse_args(argv)
    try:
        if args.probe == "sheet":
            params = {} if args.scale is None else {f"scale_{m}": args.scale for m in "tai"}
            print(sample_sheet(args.recipe, args.checkpoint, args.out, args.clips, 20, args.guidance, params))
            return 0
        if args.probe == "plot":
            curves = {f.stem: {int(k): v for k, v in json.loads(f.read_text()).items()} for f in args.json}
            print(plot_curves(curves, args.out))
            return 0
        if args.probe == "audio":
            result = audio_mouth_probe(
                args.recipe / "data" / "train" / "manifest.jsonl", args.recipe / "encoders" / "whisper", args.clips
            )
            print(json.dumps(result, indent=1))
        elif args.probe == "gap":
            result = {str(k): v for k, v in gap_curve(args.run, args.cache, args.split, args.clips).items()}
        else:
            result = {str(k): v for k, v in checkpoint_curve(args.recipe, args.run, args.clips).items()}
    except HumoError as e:
        raise SystemExit(f"error: {e}") from None
    if args.json is not None:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(result, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
