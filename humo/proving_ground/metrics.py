"""Proving-ground metrics for generated videos, computed from the video and its INPUTS only.

Given the frames and what the generator was asked for (prompt, reference images, audio) — never the
generator's hidden ground truth — the readers in `readers.py` measure:

- text following: scene, action and object read from the video against those parsed from the prompt
  (`world.parse_caption`); per-factor accuracy and their mean. Chance: 1/6, 1/5, 1/6.
- subject consistency: the six identity attributes read from the video's character against those read from
  the reference image: accuracy over attributes, and a similarity in [0, 1] (mean over attributes of the
  Bhattacharyya coefficient sum_c sqrt(p_video(c) p_ref(c)) of the two readers' class probabilities).
- audio-visual sync (SyncNet-style): the mouth opening read from the frames m[t] against the loudness envelope
  e[t] computed from the audio file. For each offset k in [-15, 15] frames, d(k) = 1 - pearson(m[t], e[t + k])
  over the overlapping frames (0 = perfectly in sync, 1 = unrelated, 2 = anti-correlated).
  Sync-D = min_k d(k); Sync-C = median_k d(k) - min_k d(k) (how much the best offset stands out, SyncNet's
  confidence); offset = argmin_k d(k): k > 0 means the audio lags the video by k frames.
- copy-paste (`copy_paste`): whether the video takes the reference image's own scene or face placement, which
  the prompt does not ask for (against another clip's reference as the baseline).
- face localisation: IoU of a predicted face mask against the ground truth (arrays); per character, IoU of
  predicted person masks on the latent grid against the ground truth's `person_masks` (`person_mask_iou`).
- several speakers (`speaker_sync`): each character's mouth against its own audio track and the others', and how
  much it moves while its own track is silent and another speaks (the silent ratio).
- pose following: the head, shoulders and hands read from the frames (`readers.read_pose`) against a driving
  pose file's, in head units (`pose_error`).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from humo.cases import check_case
from humo.constants import SAMPLE_RATE
from humo.errors import HumoError
from humo.proving_ground import readers, render, world

if TYPE_CHECKING:
    from humo.pose import PoseTrack

MAX_OFFSET = 15


# ---------------------------------------------------------------------------------------------------------------
# Single metrics


def text_following(frames: np.ndarray, prompt: str, face: readers.FaceTrack | None = None) -> dict:
    """Scene/action/object read from frames [T, H, W, 3] vs. parsed from `prompt`.

    Returns {"text_scene", "text_action", "text_object": 1.0 / 0.0 (None when the prompt does not name that
    factor), "text_mean": mean of the available ones (None if none), "expected": {...}, "read": {...}}.
    """
    expected = world.parse_caption(prompt)
    img = readers._as_float(frames)
    if face is None:
        face = readers.main_face(img)
    scene_p = readers.read_scene(img)
    read = {"scene": max(scene_p, key=scene_p.get)}
    if face is not None and face.valid.any():
        read["action"], _ = readers.read_action(img, face)
        read["object"], _ = readers.read_object(img, face)
    else:
        read["action"], read["object"] = None, None
    out: dict = {}
    scores = []
    for k in ("scene", "action", "object"):
        if expected.get(k) is None:
            out[f"text_{k}"] = None
            continue
        ok = float(read[k] == expected[k])
        out[f"text_{k}"] = ok
        scores.append(ok)
    out["text_mean"] = float(np.mean(scores)) if scores else None
    out["expected"] = {k: expected.get(k) for k in ("scene", "action", "object")}
    out["read"] = read
    return out


def attribute_similarity(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]]) -> tuple[float, float]:
    """(accuracy, similarity) between two attribute readings {attr: {value: p}}: the fraction of attributes
    whose most likely values agree, and the mean Bhattacharyya coefficient of the distributions (0..1)."""
    acc, sim = [], []
    for k in world.ATTRIBUTES:
        pa, pb = a[k], b[k]
        acc.append(float(max(pa, key=pa.get) == max(pb, key=pb.get)))
        sim.append(sum(math.sqrt(max(pa[v], 0.0) * max(pb[v], 0.0)) for v in pa))
    return float(np.mean(acc)), float(min(1.0, np.mean(sim)))


def subject_consistency(frames: np.ndarray, ref_images: Sequence[np.ndarray]) -> dict:
    """Identity attributes of the video's character(s) vs. the reference image(s).

    With several references (one per character), each is compared with every face found in the video and keeps
    its best match. Returns {"subject_acc", "subject_sim" (means over references; None when no face is found
    in the video or a reference), "ref": [labels per reference], "video": [labels per face]}.
    """
    img = readers._as_float(frames)
    idx = np.unique(np.linspace(0, img.shape[0] - 1, min(12, img.shape[0])).round().astype(int))
    sub = img[idx]
    faces = readers.find_faces(sub, max_faces=max(1, len(ref_images)))
    vid = [p for p in (readers.read_identity(sub, f) for f in faces) if p is not None]
    refs = [readers.read_identity(readers._as_float(r)) for r in ref_images]
    accs, sims = [], []
    for r in refs:
        if r is None or not vid:
            accs.append(None)
            sims.append(None)
            continue
        best = max((attribute_similarity(v, r) for v in vid), key=lambda x: (x[1], x[0]))
        accs.append(best[0])
        sims.append(best[1])
    ok = [a for a in accs if a is not None]
    return {
        "subject_acc": float(np.mean(ok)) if ok else None,
        "subject_sim": float(np.mean([s for s in sims if s is not None])) if ok else None,
        "ref": [readers.argmax_labels(r) if r else None for r in refs],
        "video": [readers.argmax_labels(v) for v in vid],
    }


def face_placement(frames: np.ndarray, face: readers.FaceTrack | None = None) -> np.ndarray | None:
    """Where the face is in frames [T, H, W, 3]: its centre (cx / W, cy / H), the median over the frames where it
    is found; None when no face is found. (Its size is left out: the size read from one still reference image
    varies by about 10% after a codec, as much as the references' sizes differ.)"""
    img = readers._as_float(frames)
    if face is None:
        found = readers.find_faces(img)
        face = found[0] if found else None
    if face is None or not face.valid.any():
        return None
    H, W = img.shape[1:3]
    v = face.valid
    return np.array([np.median(face.cx[v]) / W, np.median(face.cy[v]) / H])


def copy_paste(
    frames: np.ndarray, ref_image: np.ndarray, prompt: str | None, face: readers.FaceTrack | None = None
) -> dict:
    """What a video copies of its reference image beyond the identity (copy-paste), from the video, the reference
    and the prompt. The proving ground's references are drawn apart from their clips by default and always in its
    held-out data (their own scene, placement, size and lighting: `render.render_reference`), so a video that
    follows its inputs shares none of these with the reference except by chance (`humo synth --references
    same-shot` trains on references that do share them).

    Returns {"copy_scene": the probability the scene reader gives the reference's own scene in the video, where
    that scene is not the one the prompt asks for (None where it is, or the prompt names none: then copying and
    following cannot be told apart); "placement_distance": the distance between the video's and the reference's face
    centres (`face_placement`, fractions of the frame), None where a face is missing}. Both mean
    something only against a baseline of the same video with another clip's reference (the held-out evaluation's
    mismatched reference): a video that ignores the reference is as far from its own as from another."""
    img = readers._as_float(frames)
    ref = readers._as_float(np.asarray(ref_image)[None])
    asked = world.parse_caption(prompt)["scene"] if prompt else None
    ref_scene = readers.read_scene(ref)
    ref_scene = max(ref_scene, key=ref_scene.get)
    copy_scene = None
    if asked is not None and ref_scene != asked:
        copy_scene = readers.read_scene(img)[ref_scene]
    fv, fr = face_placement(img, face), face_placement(ref)
    dist = None if fv is None or fr is None else float(np.linalg.norm(fv - fr))
    return {"copy_scene": copy_scene, "placement_distance": dist}


def sync_scores(mouth: np.ndarray, envelope: np.ndarray, max_offset: int = MAX_OFFSET) -> dict:
    """SyncNet-style scores of a mouth signal [T] against an audio envelope [T] (see the module docstring).

    NaN mouth frames (no face) are interpolated. Offsets run over +-min(max_offset, T // 4) so that every
    correlation is taken over at least 3/4 of the clip (a short overlap of smooth envelopes correlates by
    chance). Returns {"sync_c", "sync_d", "sync_offset", "sync_corr" (the peak correlation 1 - Sync-D),
    "sync_corr0" (correlation at offset 0), "distances": {offset: d}}; scores are None when the mouth is never
    seen or either signal is constant.
    """
    m = np.asarray(mouth, np.float64)
    e = np.asarray(envelope, np.float64)
    T = min(len(m), len(e))
    m, e = m[:T], e[:T]
    ok = np.isfinite(m)
    empty = {
        "sync_c": None,
        "sync_d": None,
        "sync_offset": None,
        "sync_corr": None,
        "sync_corr0": None,
        "distances": {},
    }
    if ok.sum() < 4:
        return empty
    m = np.interp(np.arange(T), np.flatnonzero(ok), m[ok])
    K = min(max_offset, T // 4)
    dist = {}
    for k in range(-K, K + 1):
        lo, hi = max(0, -k), min(T, T - k)
        a, b = m[lo:hi], e[lo + k : hi + k]
        sa, sb = a.std(), b.std()
        r = float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb)) if sa > 1e-6 and sb > 1e-6 else 0.0
        dist[k] = 1.0 - r
    if not dist or (m.std() < 1e-6 or e.std() < 1e-6):
        return {**empty, "distances": dist}
    ks = np.array(list(dist))
    ds = np.array(list(dist.values()))
    best = int(ds.argmin())
    return {
        "sync_c": float(np.median(ds) - ds[best]),
        "sync_d": float(ds[best]),
        "sync_offset": int(ks[best]),
        "sync_corr": float(1 - ds[best]),
        "sync_corr0": float(1 - dist[0]) if 0 in dist else None,
        "distances": {int(k): float(d) for k, d in dist.items()},
    }


def av_sync(
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray,
    sample_rate: int,
    face: readers.FaceTrack | None = None,
    max_offset: int = MAX_OFFSET,
) -> dict:
    """Mouth opening read from frames [T, H, W, 3] vs. the envelope of mono `audio` [N] at `sample_rate`."""
    img = readers._as_float(frames)
    mouth = readers.mouth_opening(img, face)
    env = readers.audio_envelope(audio, sample_rate, fps, img.shape[0])
    return sync_scores(mouth, env, max_offset)


def face_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two face masks [T, H, W] or [H, W] (bool, or float thresholded at 0.5) over the whole clip;
    1.0 when both are empty."""
    p, g = np.asarray(pred), np.asarray(gt)
    if p.shape != g.shape:
        raise HumoError(f"face masks: predicted shape {p.shape} differs from ground truth {g.shape}")
    p = p > 0.5 if p.dtype != bool else p
    g = g > 0.5 if g.dtype != bool else g
    union = np.logical_or(p, g).sum()
    return 1.0 if union == 0 else float(np.logical_and(p, g).sum() / union)


#: Speaking and silent frames of a character's own track, by its loudness relative to the loudest track of the
#: clip (the 98th percentile of its per-frame RMS; the tracks of one conversation are recorded at comparable levels,
#: and a relative level per track would blow a track that never speaks up to full scale). Syllables peak at
#: 0.55-1 and a frame that holds one at all averages well above 0.2, so "speaking" is every frame with a syllable in
#: it that the mouth can show; the voice's noise floor is ~0.005, so 0.05 is clearly nothing said.
SPEAKING_LEVEL = 0.2
SILENT_LEVEL = 0.05
#: A silent frame must have silence within this many frames on both sides too: a mouth that closes a frame or two
#: late after a syllable is a lip-sync error, not speaking out of turn (Sync-C measures timing; the silent ratio
#: measures turns). Pauses between words (80-200 ms) then count little; other speakers' turns count whole.
SILENT_MARGIN = 2
#: The percentile of a character's mouth openings taken as its closed mouth (see speaker_sync).
CLOSED_PERCENTILE = 10
#: Fewer speaking (or silent) frames than this: the track gives no envelope to sync on (or no silence to read).
MIN_FRAMES = 3


#: How the silent ratio is summarised (recorded with results that use it, so that results of the mean of
#: per-character ratios used before are not judged with them).
SILENT_RATIO = "pooled"


def silent_ratio(silent_open: float | None, speaking_open: float | None) -> float | None:
    """Opening while silent over opening while speaking (`speaker_sync`); None where either is missing or the
    speaking mouth does not open at all."""
    if silent_open is None or speaking_open is None or speaking_open <= 1e-6:
        return None
    return silent_open / speaking_open


def _summed_openings(items, silent_key: str, speaking_key: str) -> tuple[float | None, float | None]:
    """(silent openings summed, speaking openings summed) over the items (characters or clips) that have both;
    (None, None) if none has. How a clip pools its characters and a summary its clips."""
    both = [x for x in items if x.get(silent_key) is not None and x.get(speaking_key) is not None]
    if not both:
        return None, None
    return float(sum(x[silent_key] for x in both)), float(sum(x[speaking_key] for x in both))


def mean_openings(rows) -> tuple[float | None, float | None]:
    """(mean mouth opening while speaking, mean while silent) per character over several clips' `speaker_sync`
    summaries: how wide the mouths open at all, which their ratio, the silent ratio, does not say. A character
    whose own track never speaks counts with the speakers' mean as its speaking opening, as in its silent ratio."""
    counted = [
        r
        for r in rows
        if r.get("speaker_open_characters")
        and r.get("speaker_silent_open") is not None
        and r.get("speaker_speaking_open") is not None
    ]
    hush, talk = _summed_openings(counted, "speaker_silent_open", "speaker_speaking_open")
    if talk is None:
        return None, None
    n = sum(r["speaker_open_characters"] for r in counted)
    return talk / n, hush / n


def pooled_silent_ratio(rows) -> float | None:
    """The silent ratio of several clips' `speaker_sync` summaries pooled like a clip's characters: the silent
    openings summed over the speaking openings summed (a mean of per-clip ratios is thrown by one clip whose
    speakers hardly open their mouths)."""
    return silent_ratio(*_summed_openings(rows, "speaker_silent_open", "speaker_speaking_open"))


def speaker_sync(
    frames: np.ndarray,
    fps: float,
    tracks: Sequence[np.ndarray | tuple[np.ndarray, int] | str | os.PathLike],
    faces: Sequence[readers.FaceTrack] | None = None,
    max_offset: int = MAX_OFFSET,
    face_scale: float | None = None,
) -> dict:
    """Per-speaker lip sync of a video of several characters side by side, each driven by its own audio track.

    frames: [T, H, W, 3]; tracks: one per character in left-to-right order (what the reference images and the
    caption give), each a path, (wave [N], sample_rate) or a 16 kHz wave [N]. Each character's face is found with
    `readers.faces_left_to_right` (or given as `faces`, left to right), its mouth read per frame, and compared with:

    - its OWN track: Sync-C / Sync-D / offset (`sync_scores`) of its mouth against its track's envelope;
    - every OTHER track: Sync-C of its mouth against that track's envelope (a mouth that follows the mix or the
      wrong speaker scores high here);
    - the silent ratio: its mean mouth opening over frames where its own track is silent (below SILENT_LEVEL, and
      within SILENT_MARGIN frames of it) while another track speaks ("silent_open"), divided by the mean over
      frames where its own track speaks (at least SPEAKING_LEVEL; "speaking_open"); openings are taken above its
      closed mouth (a low percentile of its openings). ~0 for a character that keeps its mouth shut while the
      others talk, ~1 for one that mouths everything said. For a character that never speaks, the denominator
      is the mean over the speaking characters; with a single track, every silent frame counts. The clip's
      ratio is pooled: the silent openings summed over the speaking openings summed, over the characters that
      have a ratio of their own, so that a character whose speaking mouth hardly opens (a denominator near 0)
      cannot blow the clip's ratio up.

    Levels are relative to the loudest track (98th percentile of the per-frame RMS), so a track that never speaks
    stays silent. `face_scale`: the head size passed to the face finder (default: the proving ground's layout for
    that many characters, `world.MULTI_SCALE`).

    A track with fewer than MIN_FRAMES speaking frames has no envelope to sync on: Sync-C against it is None.
    Returns {"characters": [per character: "face_found" (share of frames), "sync_c_own", "sync_d_own",
    "sync_offset_own", "sync_c_other" (mean over the other tracks), "sync_c_tracks" (against every track, own
    included), "silent_ratio", "silent_open", "speaking_open", "speaking_frames", "silent_frames"], and the clip's
    summary: "speaker_sync_own" (mean own Sync-C), "speaker_sync_other" (mean over every character x other track),
    "speaker_sync_ratio" (own / other), "speaker_silent_open" and "speaker_speaking_open" (the sums over the
    "speaker_open_characters" characters that have a silent ratio), "speaker_silent_ratio" (their quotient),
    "speaker_faces_found" (share of frames where every character's face is found)}; each None where nothing
    defines it.
    """
    img = readers._as_float(frames)
    T = img.shape[0]
    C = len(tracks)
    if C == 0:
        raise HumoError("speaker_sync: no audio tracks given")
    if faces is None:
        if face_scale is None:  # the proving ground's layout for that many characters
            face_scale = world.MULTI_SCALE.get(C, min(world.MULTI_SCALE.values()))
        faces = readers.faces_left_to_right(img, C, face_scale)
    elif len(faces) != C:
        raise HumoError(f"speaker_sync: {len(faces)} faces for {C} tracks")
    rms = []
    for tr in tracks:
        wave, rate = _load_audio(tr)
        rms.append(readers.audio_rms(wave, rate, fps, T))
    top = max(float(np.percentile(r, 98)) for r in rms)
    level = np.stack([r / top if top > 1e-5 else np.zeros(T) for r in rms])  # [C, T], loudest track's voice ~1
    speaking = level >= SPEAKING_LEVEL
    quiet = level < SILENT_LEVEL
    silent = quiet.copy()
    for d in range(1, SILENT_MARGIN + 1):  # silence on both sides too
        silent[:, d:] &= quiet[:, :-d]
        silent[:, :-d] &= quiet[:, d:]
    if C > 1:
        # Only while someone else speaks: the failure this catches is a character mouthing another's speech (the
        # mix), and pauses where nobody speaks would dilute it by their share of the clip (a mouth that follows
        # the mix is shut there too). With one track, every silent frame counts.
        others = speaking.sum(0, keepdims=True) - speaking
        silent &= others > 0
    voiced = speaking.sum(1) >= MIN_FRAMES  # tracks with speech to sync on

    mouths = np.stack([readers.mouth_opening(img, f) for f in faces])  # [C, T], NaN where the face is not found
    seen = np.isfinite(mouths)
    # The silent ratio compares openings above each character's closed mouth: a shut mouth is a thin line that
    # the reader sees as 0.1-0.3 on a small face after H.264 (its dark colour bleeds through chroma subsampling),
    # a constant that would otherwise set a floor under the ratio. The closed reading is a low percentile of the
    # character's openings: every mouth closes between words, and a real speaker's turn leaves most frames shut.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a face never found: NaN
        closed = np.nanpercentile(np.where(seen, mouths, np.nan), CLOSED_PERCENTILE, axis=1)  # [C]
    above = mouths - closed[:, None]
    # every character against every track: [k][j] = Sync scores of mouth k against track j
    scores = [[sync_scores(mouths[k], level[j], max_offset) if voiced[j] else None for j in range(C)] for k in range(C)]

    def mean_open(k, frames_mask):
        m = frames_mask & seen[k]
        return float(above[k][m].mean()) if m.sum() >= MIN_FRAMES else None

    talk = [mean_open(k, speaking[k]) for k in range(C)]
    pooled = [x for x in talk if x is not None]
    chars = []
    for k in range(C):
        own = scores[k][k] or {}
        others = [scores[k][j]["sync_c"] for j in range(C) if j != k and scores[k][j] is not None]
        others = [x for x in others if x is not None]
        hush = mean_open(k, silent[k])
        ref = talk[k] if talk[k] is not None else (float(np.mean(pooled)) if pooled else None)
        chars.append(
            {
                "face_found": float(seen[k].mean()),
                "sync_c_own": own.get("sync_c"),
                "sync_d_own": own.get("sync_d"),
                "sync_offset_own": own.get("sync_offset"),
                "sync_c_other": float(np.mean(others)) if others else None,
                "sync_c_tracks": [None if sc is None else sc["sync_c"] for sc in scores[k]],
                "silent_ratio": silent_ratio(hush, ref),
                "silent_open": hush,
                "speaking_open": ref,
                "speaking_frames": int(speaking[k].sum()),
                "silent_frames": int(silent[k].sum()),
            }
        )
    own_c = [c["sync_c_own"] for c in chars if c["sync_c_own"] is not None]
    other_c = [x for k, c in enumerate(chars) for j, x in enumerate(c["sync_c_tracks"]) if j != k and x is not None]
    both = [c for c in chars if c["silent_ratio"] is not None]  # a speaking mouth that opens, and silent frames
    hush_sum, talk_sum = _summed_openings(both, "silent_open", "speaking_open")
    own_m = float(np.mean(own_c)) if own_c else None
    other_m = float(np.mean(other_c)) if other_c else None
    return {
        "characters": chars,
        "speaker_sync_own": own_m,
        "speaker_sync_other": other_m,
        "speaker_sync_ratio": own_m / other_m if own_m is not None and other_m and other_m > 1e-6 else None,
        "speaker_silent_open": hush_sum,
        "speaker_speaking_open": talk_sum,
        "speaker_open_characters": len(both),
        "speaker_silent_ratio": silent_ratio(hush_sum, talk_sum),
        "speaker_faces_found": float(seen.all(0).mean()),
    }


def _on_latent_grid(pred: np.ndarray, masks: np.ndarray, who: str) -> tuple[np.ndarray, int]:
    """Per-character video masks [C, T, H, W] taken to the latent grid of predictions [C, F, h, w] as
    `humo.evaluation.heldout.mask_iou` takes the face there (the first 4k+1 frames, `mask_to_latent_grid`) ->
    (the masks [C, F', h, w] as fractions, the latent frames both have). A one-line error names `who` on shapes
    that do not pair."""
    import torch

    from humo.data.precompute import clip_frames
    from humo.mask_head import mask_to_latent_grid

    g = np.asarray(masks)
    if pred.ndim != 4 or g.ndim != 4 or pred.shape[0] != g.shape[0]:
        raise HumoError(f"{who}: expected [C, F, h, w] and [C, T, H, W], got {pred.shape} and {g.shape}")
    t = clip_frames(g.shape[1], None)
    grid = mask_to_latent_grid(torch.from_numpy(g[:, :t].astype(np.float32)), tuple(pred.shape[-2:])).numpy()
    return grid, min(grid.shape[1], pred.shape[1])


def person_mask_iou(pred: np.ndarray, gt: np.ndarray) -> dict:
    """IoU of predicted per-character masks on the latent grid with the ground-truth person masks.

    pred: [C, F, h, w] probabilities (or bool), character k's mask in the order of the inputs; gt: [C, T, H, W]
    (bool/uint8, the clip's `person_masks`). The ground truth goes to the latent grid the way
    `humo.evaluation.heldout.mask_iou` takes the face there: the first 4k+1 frames (`clip_frames`), then
    `mask_to_latent_grid` (latent frame i covers video frames 4i-3..4i: max over them; area average onto h x w);
    both are thresholded at 1/2 and compared over the latent frames both have. Returns {"person_iou": mean over
    characters, "per_character": [C] IoUs}.
    """
    p = np.asarray(pred)
    grid, f = _on_latent_grid(p, gt, "person masks")
    per = [face_iou(p[k, :f].astype(np.float32) > 0.5, grid[k, :f] > 0.5) for k in range(len(p))]
    return {"person_iou": float(np.mean(per)), "per_character": per}


def face_audio_share(pred: np.ndarray, faces: np.ndarray) -> dict:
    """How much of each character's own audio its face hears under predicted person masks.

    pred: [C, F, h, w] the masks that route the audio (probabilities on the latent grid, the inputs' order); faces:
    [C, T, H, W] the clip's per-character face masks (`char_masks`), taken to the latent grid as `person_mask_iou`
    takes the person masks. The masks become blend weights by the injection's own rule
    (`person_masks.local_audio_weights`, per latent pixel), and each face pixel counts by its face fraction.
    Returns {"face_own_audio": the mean over characters of the weight of the character's own audio on its face,
    "face_other_audio": of the other characters' audio, "per_character": [C] own weights}; a character whose face
    is not in the frame is left out (None when no face is)."""
    import torch

    from humo.person_masks import local_audio_weights

    p = np.asarray(pred, np.float32)
    grid, f = _on_latent_grid(p, faces, "face audio share")
    w = local_audio_weights(torch.from_numpy(p[None, :, :f]), (1, 1, 1), f)[0].numpy()  # [1 + C, f*h*w]
    face = grid[:, :f].reshape(len(p), -1)
    own, other = [], []
    for k in range(len(p)):
        mass = face[k].sum()
        if mass <= 0:
            own.append(None)
            continue
        own.append(float((face[k] * w[1 + k]).sum() / mass))
        other.append(float((face[k] * (w[1:].sum(0) - w[1 + k])).sum() / mass))
    ok = [o for o in own if o is not None]
    return {
        "face_own_audio": float(np.mean(ok)) if ok else None,
        "face_other_audio": float(np.mean(other)) if other else None,
        "per_character": own,
    }


#: The canonical joints (`humo.pose`) the pose metric compares: those the pose reader measures (the head's centre
#: stands for the nose). The eyes only follow the head, and a COCO-17 file's neck is its shoulders' midpoint, not
#: the proving ground's neck (the torso's top): neither adds a measurement.
POSE_JOINTS = ("nose", "left_shoulder", "right_shoulder", "left_wrist", "right_wrist")
#: The error (U) a joint counts where only one of the two poses has it: a raised hand against a lowered one
#: outside the frame, or a frame whose face is not found. More than 3x the bar (0.3 U), and less than the ~3 U
#: between a raised hand and a lowered one, so that one missed hand does not drown the other joints.
POSE_MISS = 1.0


def pose_error(
    frames: np.ndarray, pose: PoseTrack | str | os.PathLike, fps: float, face: readers.FaceTrack | None = None
) -> dict:
    """Keypoints read from frames [T, H, W, 3] against a driving pose: a `humo.pose.PoseTrack` (pixels of its
    own frame, or already normalised to the video's) or a pose file, placed in the video's frame as the generator
    places it (scaled to fit, centred: `PoseTrack.fit`) and taken at the video's frames (`at_fps`).

    Per frame and joint of POSE_JOINTS: where the driving pose sees the joint (confidence >= MIN_CONFIDENCE), the
    distance to the reader's place for it, in U (the video's head half-height; the reader places every joint,
    a hand it does not see at the hip, as the renderer does), or POSE_MISS in a frame without a face; where only
    the reader sees it, POSE_MISS. With several people in the pose, the one nearest the video's head is compared.
    Returns {"pose_error": the mean (None when no face is found or nothing is compared), "pose_missed": the
    fraction counted as POSE_MISS, "joints": {joint: mean}}.
    """
    from humo.pose import CANONICAL, MIN_CONFIDENCE, PoseTrack, load_pose, proving_ground_to_canonical

    img = readers._as_float(frames)
    T, H, W = img.shape[:3]
    track = pose if isinstance(pose, PoseTrack) else load_pose(pose)
    if face is None:
        face = readers.main_face(img)
    if face is None or not face.valid.any():
        return {"pose_error": None, "pose_missed": None, "joints": {}}
    idx = [CANONICAL.index(j) for j in POSE_JOINTS]
    read = proving_ground_to_canonical(readers.read_pose(img, face), render.KEYPOINTS)[:, idx]  # [T, J, 3]
    drive = (track if track.normalised else track.fit(H, W)).at_fps(T, fps).points[:, :, idx]  # [T, P, J, 3]
    drive = drive * np.array([W, H, 1], np.float32)
    dist = np.sqrt(((drive[..., :2] - read[:, None, :, :2]) ** 2).sum(-1)) / face.scale  # [T, P, J]
    seen = (drive[..., 2] >= MIN_CONFIDENCE) & face.valid[:, None, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a person never seen with the face: NaN
        person = int(np.nan_to_num(np.nanmedian(np.where(seen, dist, np.nan), axis=(0, 2)), nan=np.inf).argmin())
    dist, drive_seen = dist[:, person], drive[:, person, :, 2] >= MIN_CONFIDENCE
    read_seen = read[..., 2] >= MIN_CONFIDENCE
    placed = face.valid[:, None]
    cost = np.where(drive_seen & placed, dist, np.where(drive_seen | read_seen, POSE_MISS, np.nan))  # [T, J]
    counted = np.isfinite(cost)
    if not counted.any():
        return {"pose_error": None, "pose_missed": None, "joints": {}}
    missed = counted & ~(drive_seen & placed)
    joints = {j: float(np.mean(cost[counted[:, k], k])) for k, j in enumerate(POSE_JOINTS) if counted[:, k].any()}
    return {
        "pose_error": float(cost[counted].mean()),
        "pose_missed": float(missed.sum() / counted.sum()),
        "joints": joints,
    }


# ---------------------------------------------------------------------------------------------------------------
# Whole clips and batches

#: The per-speaker summary (`speaker_sync`) a case with `persons` adds to its row.
SPEAKER_KEYS = (
    "speaker_sync_own",
    "speaker_sync_other",
    "speaker_sync_ratio",
    "speaker_silent_ratio",
    "speaker_silent_open",
    "speaker_speaking_open",
    "speaker_open_characters",
    "speaker_faces_found",
)
SUMMARY_KEYS = (
    "text_scene",
    "text_action",
    "text_object",
    "text_mean",
    "subject_acc",
    "subject_sim",
    "sync_c",
    "sync_d",
    "sync_offset",
    "face_found",
    "pose_error",
    "pose_missed",
    *SPEAKER_KEYS,
)


def _load_image(x) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    from PIL import Image

    from humo.errors import require_file

    p = require_file(x, "reference image")
    try:
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB"))
    except OSError as e:
        raise HumoError(f"reference image {p}: cannot read ({e})") from None


def _load_audio(audio) -> tuple[np.ndarray, int] | None:
    if audio is None:
        return None
    if isinstance(audio, tuple):
        return np.asarray(audio[0], np.float32), int(audio[1])
    if isinstance(audio, np.ndarray):
        return audio.astype(np.float32), SAMPLE_RATE
    from humo.media.audio import load_audio

    return load_audio(audio, SAMPLE_RATE, min_seconds=0), SAMPLE_RATE


def evaluate_clip(
    frames: np.ndarray,
    fps: float,
    prompt: str | None,
    ref_images: Sequence[np.ndarray | str | os.PathLike] = (),
    audio: np.ndarray | tuple[np.ndarray, int] | str | os.PathLike | None = None,
    pose: PoseTrack | str | os.PathLike | None = None,
    persons: Sequence[dict] | None = None,
    face: readers.FaceTrack | None = None,
) -> dict:
    """All metrics for one generated clip, from frames uint8 [T, H, W, 3] and its inputs.

    ref_images: arrays [H, W, 3] or image paths; audio: a path, (wave [N], sample_rate), a 16 kHz wave [N], or
    None; pose: the driving pose, a pose file or a `humo.pose.PoseTrack`, or None. persons: several people, each
    driven by its own audio: [{"ref_image": ..., "audio": ..., "box": ..., "mask": ...}] (`humo generate`'s case
    shape); their audio gives the per-speaker metrics (`speaker_sync`, with every person's audio; the per-person
    numbers under details["speakers"], left to right, each with its index in `persons`) and their reference images
    stand in for `ref_images` when that is empty. The people are taken left to right in the order of their boxes'
    horizontal centres when every one has a box ("x0,y0,x1,y1" or [x0, y0, x1, y1], any one unit), else in the
    order listed; a mask is not used. face: the clip's face track when the caller has already found it
    (`readers.find_faces(frames)[0]`), else found here. Metrics whose input is missing are None. Returns the flat
    SUMMARY_KEYS plus "sync_corr" and "details".
    """
    img = readers._as_float(frames)
    if img.shape[0] == 0:
        raise HumoError("video has no frames")
    if face is None:
        face = readers.main_face(img)
    out: dict = {"face_found": float(face.valid.mean()) if face is not None else 0.0}
    details: dict = {}
    if prompt:
        tf = text_following(img, prompt, face)
        details["text"] = {"expected": tf.pop("expected"), "read": tf.pop("read")}
        out.update(tf)
    else:
        out.update({"text_scene": None, "text_action": None, "text_object": None, "text_mean": None})
    persons = list(persons or [])
    if not ref_images:
        ref_images = [p["ref_image"] for p in persons if p.get("ref_image") is not None]
    refs = [_load_image(r) for r in ref_images]
    if refs:
        sc = subject_consistency(img, refs)
        details["subject"] = {"ref": sc.pop("ref"), "video": sc.pop("video")}
        out.update(sc)
    else:
        out.update({"subject_acc": None, "subject_sim": None})
    a = _load_audio(audio)
    if a is not None:
        s = av_sync(img, fps, a[0], a[1], face)
        details["sync_distances"] = s.pop("distances")
        out.update(s)
    else:
        out.update({"sync_c": None, "sync_d": None, "sync_offset": None, "sync_corr": None, "sync_corr0": None})
    if pose is not None:
        pe = pose_error(img, pose, fps, face)
        details["pose_joints"] = pe.pop("joints")
        out.update(pe)
    else:
        out.update({"pose_error": None, "pose_missed": None})
    order = left_to_right(persons)
    tracks = [persons[i].get("audio") for i in order]
    if tracks and all(t is not None for t in tracks):
        sp = speaker_sync(img, fps, tracks)
        details["speakers"] = [{"person": i, **c} for i, c in zip(order, sp.pop("characters"))]
        out.update(sp)
    else:
        out.update(dict.fromkeys(SPEAKER_KEYS))
    out["details"] = details
    return out


def left_to_right(persons: Sequence[dict]) -> list[int]:
    """Indices of `persons` from the image left to right: by the horizontal centre of their boxes when every one
    has a box ("x0,y0,x1,y1" or [x0, y0, x1, y1]), else in the order given."""
    from humo.person_masks import parse_box

    centres = []
    for p in persons:
        box = p.get("box")
        if box is None:
            return list(range(len(persons)))
        x0, _, x1, _ = parse_box(box, "person box")
        centres.append((x0 + x1) / 2)
    return sorted(range(len(persons)), key=lambda i: centres[i])


def _resolve(path: str, base: Path) -> Path:
    """A case's path: absolute as is, else relative to the cases file if it exists there, else to the working
    directory (where the release's test_case.json paths point)."""
    p = Path(path)
    if p.is_absolute() or not (base / p).exists():
        return p
    return base / p


def read_cases(cases: dict | str | os.PathLike) -> tuple[dict, Path]:
    """Load cases in the release format {name: {"img_paths": [...], "audio_path": ..., "prompt": ...}}, with
    an optional "pose_path" (the driving pose file) and optional "persons" (several people, each {"ref_image",
    "audio"[, "box"][, "mask"]}, as `humo generate --cases` takes them). Relative paths are taken relative to the
    cases file (else to the working directory)."""
    if isinstance(cases, dict):
        for name, case in cases.items():
            check_case(name, case, "cases")
        return cases, Path.cwd()
    from humo.errors import require_file

    p = require_file(cases, "cases file")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise HumoError(f"cases file {p}: invalid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise HumoError(f"cases file {p}: expected an object {{name: {{img_paths, audio_path, prompt}}}}")
    for name, case in data.items():
        check_case(name, case, f"cases file {p}")
    return data, p.parent


def evaluate_batch(
    cases: dict | str | os.PathLike, videos_dir: str | os.PathLike, *, skip_missing: bool = False
) -> dict:
    """Evaluate `videos_dir/<name>.mp4` for every case; returns {"rows": {name: metrics}, "means": {key: mean}}.

    A missing video is an error unless `skip_missing` (then it is left out and listed under "missing").
    """
    from humo.media.video import read_video

    data, base = read_cases(cases)
    vdir = Path(videos_dir)
    rows, missing = {}, []
    for name, case in data.items():
        video = vdir / f"{name}.mp4"
        if not video.is_file():
            if skip_missing:
                missing.append(name)
                continue
            raise HumoError(f"case '{name}': video {video} not found")
        frames, fps, _, _ = read_video(video)
        imgs = [_resolve(x, base) for x in case.get("img_paths") or []]
        audio, pose = case.get("audio_path"), case.get("pose_path")
        rows[name] = evaluate_clip(
            frames,
            fps,
            case.get("prompt"),
            imgs,
            _resolve(audio, base) if audio else None,
            _resolve(pose, base) if pose else None,
            _case_persons(case.get("persons"), base),
        )
    return {"rows": rows, "means": summarize(rows.values()), "missing": missing}


def _case_persons(persons, base: Path) -> list[dict] | None:
    """A case's "persons" (checked by `humo.cases.check_case`) with their paths resolved (`_resolve`); None when
    the case has none."""
    if persons is None:
        return None
    return [{key: _resolve(v, base) if key != "box" and v else v for key, v in p.items()} for p in persons]


#: A row's opening sums over its characters: a summary gives the openings per character instead, under their own
#: names ("speaker_open_speaking", "speaker_open_silent", as the persons evaluation), not the mean of the sums.
_SUMS = ("speaker_silent_open", "speaker_speaking_open")


def summarize(rows) -> dict:
    """Mean of each SUMMARY_KEYS metric over rows (None values skipped; None if no row has it), but for the
    per-clip opening sums. For sync_offset the mean absolute offset is reported. The silent ratio is pooled
    (`pooled_silent_ratio`) and the openings are per character (`mean_openings`)."""
    rows = list(rows)
    out = {}
    for k in SUMMARY_KEYS:
        if k in _SUMS or k == "speaker_silent_ratio":
            continue
        vals = [r[k] for r in rows if r.get(k) is not None]
        if k == "sync_offset":
            vals = [abs(v) for v in vals]
        out[k] = float(np.mean(vals)) if vals else None
    out["speaker_silent_ratio"] = pooled_silent_ratio(rows)
    out["speaker_open_speaking"], out["speaker_open_silent"] = mean_openings(rows)
    return out


def format_table(rows: dict, means: dict) -> str:
    """A plain-text table: one row per clip, then the means."""
    cols = [("scene", "text_scene"), ("action", "text_action"), ("object", "text_object"), ("text", "text_mean"),
            ("subj_acc", "subject_acc"), ("subj_sim", "subject_sim"), ("sync_c", "sync_c"), ("sync_d", "sync_d"),
            ("offset", "sync_offset"), ("face", "face_found"), ("pose", "pose_error"),
            ("missed", "pose_missed")]  # fmt: skip
    name_w = max([4] + [len(n) for n in rows])

    def fmt(v, key):
        if v is None:
            return "-"
        return f"{v:d}" if key == "sync_offset" and isinstance(v, int) else f"{v:.3f}"

    if any(r.get("speaker_sync_own") is not None or r.get("speaker_silent_ratio") is not None for r in rows.values()):
        cols += [("spk_own", "speaker_sync_own"), ("spk_oth", "speaker_sync_other"),
                 ("silent", "speaker_silent_ratio"), ("faces", "speaker_faces_found")]  # fmt: skip
    lines = ["name".ljust(name_w) + "".join(h.rjust(9) for h, _ in cols)]
    for n, r in rows.items():
        lines.append(n.ljust(name_w) + "".join(fmt(r.get(k), k).rjust(9) for _, k in cols))
    lines.append("mean".ljust(name_w) + "".join(fmt(means.get(k), "").rjust(9) for _, k in cols))
    return "\n".join(lines)


def degrade(
    frames: np.ndarray,
    rng: np.random.Generator,
    *,
    blur: float = 1.0,
    noise: float = 4.0,
    down: int = 2,
    shift: float = 8.0,
) -> np.ndarray:
    """A small VAE's and an imperfect generator's damage, for validating the readers: downsample by `down` and
    back (bilinear), Gaussian blur of sigma `blur` px, a random per-channel colour shift of up to +-`shift` and a
    global gain of +-3%, and Gaussian noise of sigma `noise` (0..255 units). frames: [T, H, W, 3] uint8."""
    x = np.asarray(frames, np.float32)
    T, H, W, _ = x.shape
    if down > 1:
        from PIL import Image

        small = [np.asarray(Image.fromarray(f).resize((W // down, H // down), Image.BILINEAR)) for f in frames]
        x = np.stack([np.asarray(Image.fromarray(s).resize((W, H), Image.BILINEAR), np.float32) for s in small])
    if blur > 0:
        r = int(math.ceil(3 * blur))
        k = np.exp(-0.5 * (np.arange(-r, r + 1) / blur) ** 2)
        k /= k.sum()
        for axis in (1, 2):
            pad = [(0, 0)] * 4
            pad[axis] = (r, r)
            xp = np.pad(x, pad, mode="edge")
            n = x.shape[axis]
            x = sum(w * np.take(xp, np.arange(i, i + n), axis=axis) for i, w in enumerate(k))
    x = x * rng.uniform(0.97, 1.03) + rng.uniform(-shift, shift, size=3)
    x = x + rng.normal(0, noise, size=x.shape)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)
