"""Lip sync of real talking videos: the landmark sync score and, with user-supplied SyncNet weights, Sync-C/Sync-D.

**Landmark sync** (`landmark_sync`): MediaPipe Face Mesh tracks the speaker (`humo.data.pipeline.stages.faces`,
the data pipeline's faces stage: the largest face, then the one matching its last position) and reads its mouth
opening per frame (inner-lip gap over face height); `humo.data.pipeline.stages.sync.scores` compares it with the
audio's loudness envelope at offsets -15..15 frames (within a quarter of the clip) exactly as the proving ground's
reader does (`humo.proving_ground.metrics.sync_scores`): ``confidence`` (Sync-C analogue: median distance - least,
distance = 1 - Pearson correlation), ``distance`` (Sync-D analogue), ``offset`` (k > 0: the sound lags the picture).

**SyncNet** (`syncnet_sync`, `humo.evaluation.syncnet`): the same face track's boxes give syncnet_python's face
crops; Sync-C (``syncnet_c``), Sync-D (``syncnet_d``) and ``syncnet_offset`` over -15..15 frames.

Plain functions over arrays, called by the `landmark_sync` and `syncnet` evaluators of `humo eval --real`
(`humo.evaluation.real_video`, which reads the video, its sound and the face track once for both).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from humo.constants import SAMPLE_RATE, VIDEO_FPS


def face_track(frames) -> dict:
    """The data pipeline's face tracking of RGB frames (an array [T, H, W, 3] or any iterable of [H, W, 3], read
    one at a time: a stream of decoded frames never holds the video): ``mouth`` [T] (NaN without the tracked face),
    ``boxes`` [T, 4], ``found`` [T] (see `humo.data.pipeline.stages.faces.analyse`). Landmarks only: the sync
    scores need no face or person masks, so Selfie Segmentation does not run."""
    import itertools

    from humo.data.pipeline.stages.faces import analyse

    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        return analyse(iter(()), 0, 0, masks=False)
    return analyse(itertools.chain([first], frames), first.shape[0], first.shape[1], masks=False)


def landmark_sync(mouth: np.ndarray, samples: np.ndarray, fps: float = VIDEO_FPS) -> dict:
    """The landmark sync score of a mouth series [T] against 16 kHz mono samples: ``confidence``, ``distance``,
    ``offset``, ``corr``, ``corr0`` (None when not measurable: the mouth never seen or never moving)."""
    from humo.data.pipeline.stages.sync import scores

    return scores(np.asarray(mouth, np.float32), np.asarray(samples, np.float32), fps)


def syncnet_sync(model, frames, boxes: np.ndarray, samples: np.ndarray) -> dict:
    """SyncNet's ``syncnet_c``, ``syncnet_d``, ``syncnet_offset`` of RGB frames [T, H, W, 3] (or a stream of them)
    at 25 fps with the
    tracked face's boxes [T, 4] against 16 kHz mono samples; `model` a loaded `humo.evaluation.syncnet.SyncNet`."""
    from humo.evaluation.syncnet import syncnet_scores

    s = syncnet_scores(model, frames, boxes, samples)
    return {"syncnet_c": round(s["sync_c"], 3), "syncnet_d": round(s["sync_d"], 3), "syncnet_offset": s["sync_offset"]}


# ---------------------------------------------------------------------------------------------------------------
# Validation on the proving ground: the landmark score against the proving ground's exact reader


def shift_audio(samples: np.ndarray, k: int, fps: float = VIDEO_FPS) -> np.ndarray:
    """`samples` (16 kHz) delayed by `k` frames (k > 0: the sound lags the picture; silence fills the gap)."""
    n = int(round(abs(k) * SAMPLE_RATE / fps))
    x = np.asarray(samples, np.float32)
    if k == 0 or n >= len(x):
        return x.copy() if k == 0 else np.zeros_like(x)
    return np.concatenate([np.zeros(n, np.float32), x[:-n]]) if k > 0 else np.concatenate([x[n:], np.zeros(n, x.dtype)])


def proving_ground_agreement(clips: int = 8, size: int = 256, frames: int = 49, seed: int = 0) -> dict:
    """Score the same proving-ground clips (rendered at `size` pixels so that Face Mesh finds the cartoon face) two
    ways: the landmark score (Face Mesh mouth) and the proving ground's exact reader (`readers.mouth_opening`),
    each against the clip's own speech, the speech delayed by a planted offset (+-2..6 frames, alternating sign)
    and another clip's speech. Returns per-clip rows and a summary: offsets agreeing (per condition), the
    correlation of the two confidences over all scored pairs, mean confidences per condition and way."""
    from humo.proving_ground import metrics, readers, render
    from humo.proving_ground.synth import SynthConfig, clip_content

    cfg = SynthConfig(out=Path("."), clips=clips, width=size, height=size, frames=(frames, frames), seed=seed)
    rendered = []
    for i in range(clips):
        _, spec, tracks = clip_content(cfg, i)
        clip = render.render_clip(spec, [t.envelope for t in tracks], [t.roundness for t in tracks])
        rendered.append((clip.frames, tracks[0].wave))
    rows = []
    for i, (video, wave) in enumerate(rendered):
        k = (2 + i % 5) * (1 if i % 2 == 0 else -1)
        audios = {"own": wave, "shifted": shift_audio(wave, k), "other": rendered[(i + 1) % clips][1]}
        track = face_track(video)
        exact_mouth = readers.mouth_opening(readers._as_float(video))
        row = {"clip": i, "planted": k, "face_found": round(float(track["found"].mean()), 3)}
        for name, audio in audios.items():
            env = readers.audio_envelope(audio, SAMPLE_RATE, VIDEO_FPS, len(video))
            ex = metrics.sync_scores(exact_mouth, env)
            lm = landmark_sync(track["mouth"], audio)
            row[name] = {
                "landmark": {"confidence": lm["confidence"], "offset": lm["offset"]},
                "exact": {"confidence": None if ex["sync_c"] is None else round(ex["sync_c"], 3),
                          "offset": ex["sync_offset"]},
            }  # fmt: skip
        rows.append(row)

    def conf(cond, way):
        return [r[cond][way]["confidence"] for r in rows if r[cond][way]["confidence"] is not None]

    pairs = [
        (r[c]["landmark"]["confidence"], r[c]["exact"]["confidence"])
        for r in rows
        for c in ("own", "shifted", "other")
        if None not in (r[c]["landmark"]["confidence"], r[c]["exact"]["confidence"])
    ]
    a, b = np.array(pairs).T if pairs else (np.zeros(0), np.zeros(0))
    summary = {
        "clips": clips,
        **{
            f"offsets_agree_{c}": float(np.mean([r[c]["landmark"]["offset"] == r[c]["exact"]["offset"] for r in rows]))
            for c in ("own", "shifted", "other")
        },
        "planted_found_landmark": float(np.mean([r["shifted"]["landmark"]["offset"] == r["planted"] for r in rows])),
        "planted_found_exact": float(np.mean([r["shifted"]["exact"]["offset"] == r["planted"] for r in rows])),
        "confidence_corr": float(np.corrcoef(a, b)[0, 1]) if len(a) > 2 else None,
        **{f"{way}_{cond}": round(float(np.mean(conf(cond, way))), 3) for way in ("landmark", "exact")
           for cond in ("own", "shifted", "other")},
    }  # fmt: skip
    return {"rows": rows, "summary": summary}
