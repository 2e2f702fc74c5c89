"""Several people on the proving ground: does each person's audio drive that person? (InterActHuman, issue 19)

Each held-out multi-person clip (`humo synth --multi --split heldout`) is generated from its caption, its
characters' reference images and their own audio tracks, in each of these ways (InterActHuman's Table 4 rows):

- ``predicted``: the model's own person masks, handed from step to step (the mask cache);
- ``no-cache``: the model's own masks, each step predicting its own in an extra pass with the mix everywhere
  before routing its audio (the mask cache ablated: is the one-step lag of the cache a loss?);
- ``strips``: fixed masks, the frame cut into equal vertical strips, one per person left to right (the paper's
  "fixed mask": known to be where each person roughly stands, blind to their shape and motion);
- ``global``: every audio everywhere: the references and the mix, as a one-person model is driven;
- ``baseline``: the same global drive through another model (the one the fine-tune started from), when given;
- ``silence`` (only when asked for): the strips with every track silent, scored against the real tracks: how wide
  the model opens a mouth that no audio drives (its talking prior), beside the strips' openings.

and scored with the per-speaker reader (`metrics.speaker_sync`): each character's mouth against its own track and
the others' (Sync-C), how far it opens while its own track is silent (the silent ratio) and how wide it opens
while speaking and while silent (`metrics.mean_openings`); with predicted masks
(and strips) also their IoU with the true person masks at the last step and how much of its own audio, and of the
others', each character's face hears under them (`metrics.face_audio_share`). The bars (issue 19): own-track
Sync-C >= 2x the other tracks', silent ratio <= 0.2, mask IoU >= 0.5.

    python -m humo.evaluation.persons --model runs/ih/model --baseline humo/assets/toy \\
        --manifest runs/ih/data/heldout/manifest.jsonl --clips 24 --out runs/ih/eval.json

The paper's ablations are claims about differences between modes, so they need replicates: `--model` may be given
once per training seed (the same recipe trained with another seed) and `--seeds` gives sampling seeds; every
(model, seed) pair is one replicate, scored in every mode. The modes' differences from `predicted` are paired by
replicate and each claim of `CLAIMS` gets the ablation study's verdict (`humo.evaluation.ablation.verdict`).
Sampling seeds alone replicate only the sampling noise of one trained model, which the output says. Results written
with `--out` by separate runs join with `--combine` (`combine`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from humo.constants import SAMPLE_RATE, VIDEO_FPS
from humo.evaluation.ablation import Claim, claims_table, number_list, paired_differences, verdicts
from humo.evaluation.heldout import mean_spread
from humo.proving_ground import metrics

MODES = ("predicted", "no-cache", "strips", "global", "baseline", "silence")
DEFAULT_MODES = MODES[:-1]  # what a study scores unless asked: the paper's rows
PREDICTED = ("predicted", "no-cache")  # the modes that need the model's person mask predictor
BARS = {"speaker_sync_ratio": 2.0, "speaker_silent_ratio": 0.2, "person_iou": 0.5}
# What a replicate's summary is compared on: (key, label, higher is better).
METRICS = (
    ("speaker_sync_own", "own-track Sync-C", True),
    ("speaker_sync_other", "other tracks' Sync-C", False),
    ("speaker_sync_ratio", "own / other", True),
    ("speaker_silent_ratio", "silent ratio", False),
    ("person_iou", "mask IoU", True),
    # with the masks that route the audio: how much of its own audio a character's face hears, and of the others'
    ("face_own_audio", "face: own audio", True),
    ("face_other_audio", "face: others' audio", False),
    # how wide the mouths open while their own track speaks, and while it is silent (the silent ratio's parts)
    ("speaker_open_speaking", "opening: speaking", True),
    ("speaker_open_silent", "opening: silent", False),
)
# Every ablated mode is compared with the full method, the model's own masks through the mask cache.
VERSUS = {m: "predicted" for m in MODES if m not in ("predicted", "silence")}
VERSUS["silence"] = "strips"  # the same boxes, without the audio: what the audio adds to the mouths


# InterActHuman (arXiv 2506.09984), its ablation rows (Tables 4 and 12), each read on both per-speaker measures:
# does a voice drive its own speaker, and does a silent speaker keep still.
CLAIMS: tuple[Claim, ...] = (
    Claim("predicted masks bind each voice to its speaker better than global audio", "global - predicted",
          "speaker_sync_ratio", -1),
    Claim("predicted masks keep a silent speaker's mouth shut better than global audio", "global - predicted",
          "speaker_silent_ratio", 1),
    Claim("predicted masks bind each voice to its speaker better than fixed masks (equal vertical strips)",
          "strips - predicted", "speaker_sync_ratio", -1),
    Claim("predicted masks keep a silent speaker's mouth shut better than fixed masks", "strips - predicted",
          "speaker_silent_ratio", 1),
    Claim("the mask cache (each step's masks gate the next) binds better than masks predicted afresh in an "
          "extra pass every step", "no-cache - predicted", "speaker_sync_ratio", -1),
)  # fmt: skip


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


def generate(pipe, sample, mode: str, *, seed: int, steps: int, out=None, guidance_params=None):
    """One clip in one mode -> the pipeline's result. `guidance_params`: the guidance preset's parameters to
    change (`humo generate --scale-a` and the like), in every mode."""
    import contextlib
    import tempfile

    from humo.pipeline import Person

    order = left_to_right(sample)
    refs = [str(sample.ref_image_paths[k]) for k in order]
    tracks = [str(sample.person_audio_paths[k]) for k in order]
    common = dict(out=out, frames=sample.num_frames, segment_frames=max(9, sample.num_frames), steps=steps, seed=seed,
                  guidance_params=dict(guidance_params or {}))  # fmt: skip
    if mode in ("global", "baseline"):
        return pipe(sample.caption, refs, str(sample.audio_path), **common)
    boxes = strip_boxes(len(refs), sample.height, sample.width) if mode in ("strips", "silence") else [None] * len(refs)
    silence = mode == "silence"
    with tempfile.TemporaryDirectory(prefix="humo-silence-") if silence else contextlib.nullcontext() as tmp:
        if silence:  # the silent tracks live as long as the pipeline reads them
            tracks = [_silent_like(t, Path(tmp) / f"{k}.wav") for k, t in enumerate(tracks)]
        persons = [Person(r, a, box) for r, a, box in zip(refs, tracks, boxes)]
        return pipe(sample.caption, persons=persons, mask_cache=mode != "no-cache", **common)


def _silent_like(track: str, path: Path) -> str:
    """A 16 kHz WAV of silence as long as `track` (any format the pipeline reads) -> its path."""
    import soundfile as sf

    from humo.media.audio import load_audio

    sf.write(path, np.zeros_like(load_audio(track, SAMPLE_RATE, min_seconds=0)), SAMPLE_RATE)
    return str(path)


def score(result, sample) -> dict[str, Any]:
    """The per-speaker metrics of a generated clip (and the person-mask IoU when it has masks)."""
    order = left_to_right(sample)
    tracks = [str(sample.person_audio_paths[k]) for k in order]
    row = {k: v for k, v in metrics.speaker_sync(result.frames, result.fps, tracks).items() if k != "details"}
    if result.person_masks is not None:
        with np.load(sample.face_masks_path) as z:
            gt, faces = z["person_masks"][order], z["char_masks"][order]
        row.update(metrics.person_mask_iou(result.person_masks, gt))
        share = metrics.face_audio_share(result.person_masks, faces)
        row.update(face_own_audio=share["face_own_audio"], face_other_audio=share["face_other_audio"])
    return row


def bars(summary: dict[str, Any]) -> dict[str, dict]:
    """Each of `BARS` against a summary's value: {key: {"need", "got", "ok"}} (the silent ratio is a ceiling)."""
    out = {}
    for k, v in BARS.items():
        got = summary.get(k)
        out[k] = {"need": v, "got": got, "ok": got is not None and (got <= v if "silent" in k else got >= v)}
    return out


def summarize(rows: list[dict]) -> dict[str, Any]:
    """Mean and spread over clips of each metric, and the bars. The ratios are ratios of the pooled parts: own /
    other Sync-C of the means, the silent ratio of the summed openings (`metrics.pooled_silent_ratio`); the
    openings are means per character (`metrics.mean_openings`)."""
    out: dict[str, Any] = {"clips": len(rows)}
    for key in ("speaker_sync_own", "speaker_sync_other", "speaker_silent_ratio", "speaker_faces_found", "person_iou",
                "face_own_audio", "face_other_audio"):  # fmt: skip
        out[key], out[key + "_std"], _ = mean_spread(r.get(key) for r in rows)
    own, other = out["speaker_sync_own"], out["speaker_sync_other"]
    out["speaker_sync_ratio"] = own / other if own is not None and other else None
    out["speaker_silent_ratio"] = metrics.pooled_silent_ratio(rows)  # its _std stays the spread of the clips'
    out["speaker_open_speaking"], out["speaker_open_silent"] = metrics.mean_openings(rows)
    out["bars"] = bars(out)
    return out


def evaluate(
    model: str | os.PathLike,
    manifest: str | os.PathLike,
    *,
    clips: int = 24,
    steps: int = 20,
    seed: int = 0,
    baseline: str | os.PathLike | None = None,
    modes: tuple[str, ...] = DEFAULT_MODES,
    videos: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
    pipe=None,
    guidance_params: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Every mode on the first `clips` multi-person clips -> {"modes": {mode: summary}, "rows": {mode: {id: row}}}.
    `pipe`: the model's pipeline when it is already loaded (a training checkpoint's DiT in it), else `model`'s;
    `guidance_params`: see `generate`."""
    from humo.evaluation.heldout import quiet_pipeline

    samples = multi_samples(manifest, clips)
    pipes = {"model": pipe if pipe is not None else quiet_pipeline(model)}
    if baseline is not None and "baseline" in modes:
        pipes["baseline"] = quiet_pipeline(baseline)
    modes = tuple(m for m in modes if m != "baseline" or "baseline" in pipes)
    if not pipes["model"].dit.cfg.person_mask_blocks:
        modes = tuple(m for m in modes if m not in PREDICTED)
    rows: dict[str, dict] = {m: {} for m in modes}
    for i, s in enumerate(samples):
        for m in modes:
            pipe = pipes["baseline" if m == "baseline" else "model"]
            out = None if videos is None else Path(videos) / m / f"{s.id}.mp4"
            if out is not None:
                out.parent.mkdir(parents=True, exist_ok=True)
            result = generate(pipe, s, m, seed=seed + i, steps=steps, out=out, guidance_params=guidance_params)
            rows[m][s.id] = score(result, s)
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
        "guidance_params": dict(guidance_params or {}),
        "silent_ratio": metrics.SILENT_RATIO,
        "modes": {m: summarize(list(rows[m].values())) for m in modes},
        "rows": rows,
    }


# Replicate seed s samples clip i from seed SEED_STRIDE * s + i, so that no two replicates share a clip's noise.
SEED_STRIDE = 1000


def replicate_name(model: str | os.PathLike, seed: int) -> str:
    return f"{model}@seed{seed}"


def replicates(models: list, seeds: list[int]) -> list[tuple[str, Any, int]]:
    """(name, model, sampling seed) of every replicate: each model (one per training seed) with each seed."""
    return [(replicate_name(m, s), m, s) for m in models for s in seeds]


def aggregate(summaries: list[dict]) -> dict[str, Any]:
    """One mode's replicate summaries -> the mean of each metric over the replicates, its spread
    (``<key>_spread``, the sample standard deviation; 0 for one replicate) and the bars on the means."""
    out: dict[str, Any] = {"replicates": len(summaries), "clips": summaries[0]["clips"]}
    for key in [k for k, _, _ in METRICS] + ["speaker_faces_found"]:
        out[key], out[key + "_spread"], _ = mean_spread(s.get(key) for s in summaries)
    out["bars"] = bars(out)
    return out


def study(
    models: list,
    manifest: str | os.PathLike,
    *,
    seeds: list[int] = (0,),
    clips: int = 24,
    steps: int = 20,
    baseline: str | os.PathLike | None = None,
    modes: tuple[str, ...] = DEFAULT_MODES,
    videos: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
    guidance_params: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Every replicate (`replicates`) through `evaluate` -> each mode's `aggregate`, the modes' differences from
    `predicted` paired by replicate, each claim of `CLAIMS` with its verdict, and every replicate's own result.
    The baseline model is the same for every trained model, so it runs once per sampling seed."""
    reps: dict[str, dict] = {}
    baselines: dict[int, tuple[dict, dict]] = {}  # sampling seed -> the baseline mode's summary and rows
    for name, model, seed in replicates(list(models), list(seeds)):
        log(f"replicate {name}: {model}")
        again = seed in baselines
        r = evaluate(
            model, manifest, clips=clips, steps=steps, seed=SEED_STRIDE * seed, baseline=baseline,
            modes=tuple(m for m in modes if not (again and m == "baseline")),
            videos=None if videos is None else Path(videos) / name, log=log, guidance_params=guidance_params,
        )  # fmt: skip
        if again:
            r["modes"]["baseline"], r["rows"]["baseline"] = baselines[seed]
        elif "baseline" in r["modes"]:
            baselines[seed] = (r["modes"]["baseline"], r["rows"]["baseline"])
        reps[name] = {**r, "seed": seed}
    return from_replicates(reps)


def from_replicates(reps: dict[str, dict]) -> dict[str, Any]:
    """{name: a replicate's `evaluate` result with its "seed"} -> `study`'s result (every replicate scored on the
    same clips and steps)."""
    first = next(iter(reps.values()))
    models = sorted({r["model"] for r in reps.values()})
    per_mode: dict[str, dict[str, dict]] = {}
    for name, r in reps.items():
        for m, summary in r["modes"].items():
            per_mode.setdefault(m, {})[name] = summary
    return {
        "models": models,
        "seeds": sorted({r["seed"] for r in reps.values()}),
        "replicated": "training and sampling seeds" if len(models) > 1 else "sampling seeds of one trained model",
        "manifest": first["manifest"],
        "steps": first["steps"],
        "guidance_params": first.get("guidance_params", {}),
        "silent_ratio": first.get("silent_ratio"),
        **judge(per_mode, clips=len(next(iter(first["rows"].values())))),
        "replicates": reps,
    }


def combine(results: list[dict[str, Any]], sources: list[str] | None = None) -> dict[str, Any]:
    """Several `study` results (replicates run apart: another training seed's model, more sampling seeds, or more
    modes of the same replicates) -> one, judged across all their replicates. They must share the clips, steps and
    guidance parameters and silent ratio (`_scored_alike`), and no replicate may be scored twice in one mode."""
    from humo.errors import HumoError

    sources = sources or [f"result {i}" for i in range(len(results))]
    reps: dict[str, dict] = {}
    keys = set()
    for src, res in zip(sources, results):
        for r in res["replicates"].values():
            keys.add(_scored_alike(r))  # every incoming replicate, also one that only adds modes to another
            name = replicate_name(r["model"], r["seed"])
            if name not in reps:
                reps[name] = {**r, "modes": dict(r["modes"]), "rows": dict(r["rows"])}
                continue
            twice = sorted(set(r["modes"]) & set(reps[name]["modes"]))
            if twice:
                raise HumoError(f"{src}: replicate {name} is already scored in mode {twice[0]} by an earlier result")
            reps[name]["modes"].update(r["modes"])
            reps[name]["rows"].update(r["rows"])
    if len(keys) > 1:
        raise HumoError(
            f"{', '.join(sources)}: the results were not scored on the same clips, steps, guidance and silent ratio"
        )
    return from_replicates(reps)


def _scored_alike(r: dict) -> tuple:
    """What replicates judged together must share: the clips, the sampler's steps, the guidance parameters and the
    silent ratio's definition (results from before it was pooled have none)."""
    guidance = {k: float(v) for k, v in (r.get("guidance_params") or {}).items()}
    clips = tuple(sorted(next(iter(r["rows"].values()))))
    return r["manifest"], r["steps"], clips, json.dumps(guidance, sort_keys=True), r.get("silent_ratio")


def judge(per_mode: dict[str, dict[str, dict]], clips: int) -> dict[str, Any]:
    """{mode: {replicate: summary}} -> each mode's `aggregate`, the modes' differences from `predicted` paired by
    replicate, and each claim of `CLAIMS` the modes can test, with its verdict."""
    keys = tuple(k for k, _, _ in METRICS)
    return {
        "modes": {m: aggregate(list(v.values())) for m, v in per_mode.items()},
        "differences": paired_differences(per_mode, VERSUS, keys),
        "claims": verdicts(CLAIMS, per_mode, VERSUS, clips, keys),
    }


def turn_figure(
    model: str | os.PathLike,
    sample,
    path: str | os.PathLike,
    *,
    modes: tuple[str, ...] = ("predicted", "global"),
    frames: int = 10,
    steps: int = 20,
    seed: int = 0,
    guidance_params: dict[str, float] | None = None,
) -> Path:
    """A PNG of people taking turns: the clip itself and each mode's video (rows, `frames` frames across), each
    person's loudness and mouth opening read from the video below its row, and, for predicted masks, the masks of
    the last step as contours (a frame strip for the docs). `guidance_params`: see `generate`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from humo.evaluation.heldout import quiet_pipeline
    from humo.media.image import save_figure
    from humo.media.video import read_video
    from humo.proving_ground import readers, world

    pipe = quiet_pipeline(model)
    order = left_to_right(sample)
    tracks = [str(sample.person_audio_paths[k]) for k in order]
    videos = {"the clip": (read_video(sample.video_path)[0], None)}
    for m in modes:
        r = generate(pipe, sample, m, seed=seed, steps=steps, guidance_params=guidance_params)
        videos[m] = (r.frames, r.person_masks)
    t = min(len(v) for v, _ in videos.values())
    idx = np.linspace(0, t - 1, frames).round().astype(int)
    fig, axes = plt.subplots(2 * len(videos), 1, figsize=(1.1 * frames, 2.0 * len(videos)),
                             gridspec_kw={"height_ratios": [3, 1] * len(videos)})  # fmt: skip
    colours = ("tab:orange", "tab:blue", "tab:green", "tab:red")
    for row, (name, (video, masks)) in enumerate(videos.items()):
        ax = axes[2 * row]
        ax.imshow(np.concatenate([video[i] for i in idx], axis=1), interpolation="nearest")
        if masks is not None:  # [P, F, h, w] on the latent grid: latent frame of video frame i is (i + 3) // 4
            h, w = video.shape[1:3]
            for p, mk in enumerate(masks):
                for j, i in enumerate(idx):
                    m = np.kron(mk[min((i + 3) // 4, mk.shape[0] - 1)], np.ones((h // mk.shape[1], w // mk.shape[2])))
                    ax.contour(np.arange(w) + j * w, np.arange(h), m, levels=[0.5], colors=colours[p], linewidths=0.8)
        ax.set_title(name, fontsize=9, loc="left")
        ax.axis("off")
        ax = axes[2 * row + 1]
        scale = world.MULTI_SCALE.get(len(tracks), 1.0)  # the heads of side-by-side characters are smaller
        faces = readers.faces_left_to_right(readers._as_float(video[:t]), len(tracks), scale)
        for p, (track, face) in enumerate(zip(tracks, faces)):
            env = readers.audio_envelope(*_wave(track), VIDEO_FPS, t)
            ax.fill_between(np.arange(t), env, color=colours[p], alpha=0.2, lw=0)
            if face is not None:
                ax.plot(readers.mouth_opening(readers._as_float(video[:t]), face), color=colours[p], lw=1)
        ax.set_xlim(0, t - 1)
        ax.set_yticks([])
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel("frame (shaded: each person's loudness; line: their mouth read from the video)", fontsize=8)
    return save_figure(fig, path)


def _wave(path: str) -> tuple[np.ndarray, int]:
    from humo.media.audio import load_audio

    return load_audio(path, SAMPLE_RATE, min_seconds=0), SAMPLE_RATE


# The modes a training curve follows: the model's own masks beside the fixed and global drives of the same weights.
CURVE_MODES = ("predicted", "strips", "global")


def curve(
    run: str | os.PathLike,
    encoders: str | os.PathLike,
    manifest: str | os.PathLike,
    *,
    every: int = 1000,
    clips: int = 24,
    steps: int = 20,
    seed: int = 0,
    modes: tuple[str, ...] = CURVE_MODES,
    progress: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The modes scored at a training run's kept checkpoints, every `every` steps and its last -> {"run", ...,
    "points": {step: {mode: summary}}}. The checkpoints' EMA weights run in the pipeline of `encoders` (a toy
    model folder: the recipe's encoders). `progress`: a JSON file rewritten after each checkpoint and read back
    first, so an interrupted curve resumes (points scored with other settings are refused by name)."""
    from humo.errors import HumoError, atomic_path, read_json_file
    from humo.evaluation.ablation import checkpoint_dit, kept_checkpoints
    from humo.evaluation.heldout import quiet_pipeline

    if every < 1:
        raise HumoError(f"--every {every}: must be >= 1")
    kept = kept_checkpoints(Path(run))
    if not kept:
        raise HumoError(f"--curve {run}: no training checkpoints there (checkpoints/step_*)")
    chosen = [(st, folder) for st, folder in kept if st % every == 0 or st == kept[-1][0]]
    settings = {"run": str(run), "manifest": str(manifest), "clips": clips, "steps": steps, "seed": seed,
                "silent_ratio": metrics.SILENT_RATIO}  # fmt: skip
    result = {**settings, "modes": list(modes), "points": {}}
    if progress is not None and Path(progress).is_file():
        done = read_json_file(progress, "curve progress")
        differ = [k for k, v in settings.items() if done.get(k) != v]
        if differ:
            raise HumoError(
                f"curve progress {progress}: scored with other {', '.join(differ)}; remove it or use another"
            )
        result["points"] = {k: v for k, v in done.get("points", {}).items() if all(m in v for m in modes)}
    pipe = None
    for st, folder in chosen:
        if str(st) in result["points"]:
            continue
        if pipe is None:
            pipe = quiet_pipeline(encoders)
        pipe.dit = checkpoint_dit(folder)
        log(f"curve: step {st}")
        r = evaluate(run, manifest, clips=clips, steps=steps, seed=seed, modes=modes, log=log, pipe=pipe)
        result["points"][str(st)] = r["modes"]
        if progress is not None:
            with atomic_path(progress) as tmp:
                Path(tmp).write_text(json.dumps(result, indent=1))
    result["points"] = dict(sorted(result["points"].items(), key=lambda kv: int(kv[0])))
    return result


def plot_curve(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """One panel per measure (own / other, silent ratio, mask IoU, the face's own audio) against training steps, a
    line per mode and the issue's bar dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from humo.media.image import save_figure

    keys = [m for m in METRICS if m[0] in BARS or m[0] == "face_own_audio"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.4))
    steps = [int(k) for k in result["points"]]
    for ax, (key, label, _) in zip(axes, keys, strict=True):
        for mode in result["modes"]:
            pts = [(st, result["points"][str(st)].get(mode, {}).get(key)) for st in steps]
            pts = [(st, v) for st, v in pts if v is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=mode)
        if key in BARS:
            ax.axhline(BARS[key], color="k", linestyle="--", linewidth=0.8)
        ax.set_title(label)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    labelled = [ax for ax in axes if ax.get_legend_handles_labels()[0]]  # a mode may have no value on a measure
    if labelled:
        max(labelled, key=lambda ax: len(ax.get_legend_handles_labels()[0])).legend(fontsize=8)
    return save_figure(fig, path)


def format_curve(result: dict[str, Any]) -> str:
    """A line per scored step: each mode's own / other, silent ratio, mask IoU and the share of its own audio
    each face hears (`metrics.face_audio_share`)."""
    f = lambda v: "  -  " if v is None else f"{v:5.2f}"  # noqa: E731
    lines = [f"{result['clips']} clips, {result['steps']} steps; own/other, silent ratio, mask IoU, the face's own"
             " audio per mode"]  # fmt: skip
    for st, modes in result["points"].items():
        cells = [f"{m} {f(s.get('speaker_sync_ratio'))} {f(s.get('speaker_silent_ratio'))} {f(s.get('person_iou'))}"
                 f" {f(s.get('face_own_audio'))}" for m, s in modes.items()]  # fmt: skip
        lines.append(f"step {int(st):>6}: " + " | ".join(cells))
    return "\n".join(lines)


def format_summary(result: dict[str, Any]) -> str:
    """A table of `study`'s modes (mean ± spread over the replicates when there are several), then the claims."""
    n = len(result["replicates"])
    lines = [f"{n} replicate(s): {result['replicated']}; {next(iter(result['modes'].values()))['clips']} clips each"]
    lines.append("mode        own Sync-C   other Sync-C   ratio        silent ratio  mask IoU     face: own    "
                 "face: other  faces found  open: talk   open: silent")  # fmt: skip

    def f(s, key):  # the spread where the mode has several replicates (a mode may be left out of some runs)
        v, sd = s.get(key), s.get(key + "_spread")  # results written before a metric existed lack it
        return "  -  " if v is None else f"{v:.2f}" + (f"±{sd:.2f}" if s["replicates"] > 1 else "")

    for m, s in result["modes"].items():
        cells = [f(s, k) for k in ("speaker_sync_own", "speaker_sync_other", "speaker_sync_ratio",
                                   "speaker_silent_ratio", "person_iou", "face_own_audio", "face_other_audio",
                                   "speaker_faces_found", "speaker_open_speaking", "speaker_open_silent")]  # fmt: skip
        lines.append(f"{m:<10}  " + "  ".join(f"{c:>11}" for c in cells))
    return "\n".join(lines + claims_table(result["claims"], METRICS))


def main(argv: list[str] | None = None) -> int:
    from humo.errors import HumoError, atomic_path, read_json_file

    ap = argparse.ArgumentParser(prog="python -m humo.evaluation.persons", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append",
                    help="weights folder of a toy-layout model (with a person predictor); repeat it for the same "
                         "recipe trained with other seeds (replicates)")  # fmt: skip
    ap.add_argument("--baseline", help="another model driven globally (the one the fine-tune started from)")
    ap.add_argument("--manifest", help="held-out multi-person clips (humo synth --multi)")
    ap.add_argument("--combine", nargs="+", metavar="JSON",
                    help="instead of scoring: join results written with --out (other training or sampling seeds, "
                         "on the same clips and steps) and judge the claims across all their replicates")  # fmt: skip
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument(
        "--seeds",
        type=number_list(int),
        default=[0],
        help="comma-separated sampling seeds, each a replicate of every model (default 0)",
    )
    ap.add_argument("--modes", help=f"comma-separated, of {', '.join(MODES)} (default: {', '.join(DEFAULT_MODES)}; "
                    f"with --curve {', '.join(CURVE_MODES)})")  # fmt: skip
    ap.add_argument("--scale-a", type=float,
                    help="audio guidance scale in every mode (default: the model's, see `humo presets`)")  # fmt: skip
    ap.add_argument("--videos", help="keep the generated MP4s here (one folder per mode)")
    ap.add_argument("--out", help="write the result as JSON here")
    ap.add_argument("--figure", help="also draw one clip taking turns (predicted masks and global audio) as a PNG")
    ap.add_argument("--figure-clip", type=int, default=0, help="which of the clips the figure shows")
    ap.add_argument("--curve", metavar="RUN",
                    help="instead of --model: score a training run's kept checkpoints (modes "
                         f"{', '.join(CURVE_MODES)} unless --modes says), with --encoders; --figure then plots the "
                         "curve and --out is also the progress an interrupted curve resumes from")  # fmt: skip
    ap.add_argument(
        "--encoders", help="with --curve: the toy model folder whose codec and encoders the checkpoints use"
    )
    ap.add_argument("--every", type=int, default=1000, help="with --curve: score every this many steps (and the last)")
    args = ap.parse_args(argv)
    try:
        if args.curve:
            return _curve(args)
        if args.combine:
            if args.model or args.scale_a is not None:
                raise HumoError("--combine: joins results already scored; give it without --model or --scale-a")
            result = combine([read_json_file(f, "--combine") for f in args.combine], args.combine)
        elif not args.model or not args.manifest:
            raise HumoError("give --model and --manifest (or --combine with earlier results)")
        else:
            result = _score(args)
    except HumoError as e:
        print(f"humo: error: {e}", file=sys.stderr)
        return 2
    print(format_summary(result))
    if args.figure and not args.combine:  # a figure generates a clip: only where this run scores a model
        sample = multi_samples(args.manifest, args.clips)[args.figure_clip]
        seed = SEED_STRIDE * min(args.seeds) + args.figure_clip
        print(
            turn_figure(
                args.model[0], sample, args.figure, steps=args.steps, seed=seed, guidance_params=_guidance(args)
            )
        )
    if args.out:
        with atomic_path(args.out) as tmp:
            Path(tmp).write_text(json.dumps(result, indent=1))
    return 0


def _curve(args: argparse.Namespace) -> int:
    """`curve` as the command line asks for it: its flags checked first, the table printed, the plot drawn."""
    from humo.errors import HumoError

    if args.model or args.combine or args.baseline or args.scale_a is not None:
        raise HumoError("--curve: scores one training run; give it without --model, --combine, --baseline or --scale-a")
    if not args.encoders or not args.manifest:
        raise HumoError("--curve: give --encoders (the recipe's encoders folder) and --manifest")
    modes = CURVE_MODES if args.modes is None else _modes(args.modes)
    if "baseline" in modes:
        raise HumoError("--curve: the baseline mode needs another model; leave it out of --modes")
    if len(set(args.seeds)) != 1:
        raise HumoError(f"--curve: one sampling seed (got --seeds {','.join(map(str, args.seeds))})")
    result = curve(
        args.curve, args.encoders, args.manifest, every=args.every, clips=args.clips, steps=args.steps,
        seed=min(args.seeds), modes=modes, progress=args.out,
    )  # fmt: skip
    print(format_curve(result))
    if args.figure:
        print(plot_curve(result, args.figure))
    return 0


def _modes(text: str) -> tuple[str, ...]:
    from humo.errors import HumoError

    modes = tuple(m.strip() for m in text.split(","))
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise HumoError(f"--modes: unknown {bad[0]!r} (choose from {', '.join(MODES)})")
    return modes


def _score(args: argparse.Namespace) -> dict[str, Any]:
    """`study` as the command line asks for it, its flags checked first."""
    from humo.errors import HumoError

    modes = DEFAULT_MODES if args.modes is None else _modes(args.modes)
    seeds = sorted(set(args.seeds))
    if not seeds or seeds[0] < 0:
        raise HumoError(f"--seeds: {args.seeds} has no seed or a negative one")
    if args.scale_a is not None and not args.scale_a >= 0:
        raise HumoError(f"--scale-a: {args.scale_a} is not a scale (>= 0)")
    return study(
        args.model, args.manifest, seeds=seeds, clips=args.clips, steps=args.steps, baseline=args.baseline,
        modes=modes, videos=args.videos, guidance_params=_guidance(args),
    )  # fmt: skip


def _guidance(args: argparse.Namespace) -> dict[str, float] | None:
    return None if args.scale_a is None else {"scale_a": args.scale_a}


if __name__ == "__main__":
    sys.exit(main())
