"""sync: does the tracked mouth move with the sound? The faces stage's mouth opening per frame against the audio's
loudness envelope, with an offset search, as the proving ground's SyncNet-style reader scores it.

The scores are `humo.proving_ground.metrics.sync_scores` (the reader `humo eval` validates on the proving
ground) on `humo.proving_ground.readers.audio_envelope` (RMS per 40 ms video frame, scaled to its 98th
percentile): for each offset k in +-min(15, T // 4) frames, d(k) = 1 - pearson(mouth[t], envelope[t + k]);
``offset`` = argmin d (k > 0: the sound lags the picture), ``confidence`` = median d - min d (SyncNet's Sync-C:
how much the best offset stands out), ``distance`` = min d (Sync-D), ``corr`` = 1 - Sync-D, ``corr0`` the
correlation at offset 0. Frames without the face are interpolated over.

**Kept, shifted or dropped.** A segment whose confidence is under ``sync_min`` is dropped ``out-of-sync``. Of the
rest: best offset 0 -> kept; ``0 < |offset| <= sync_shift_max`` -> **shifted**: its audio is cut again from the
clip's normalised WAV (``normalise/<clip>.wav``) ``offset`` frames later (k > 0, the sound lagging, takes the sound
k frames later in the source so that it lines up with the picture; past the clip's ends it is padded with silence),
written to ``OUT/sync/<id>.wav``, which becomes the record's ``audio``; ``sync.shift`` records k and ``sync.after``
the scores of the shifted audio; ``|offset| <= sync_offset_max`` -> kept as it is (a tolerated offset);
otherwise dropped ``out-of-sync``. ``sync_shift_max`` 0 (the default) never shifts. ``sync_min`` 0 turns the
filter off: the scores are recorded (null when they cannot be measured: the mouth never seen, or never moving),
nothing is shifted and every segment kept.

**Weak audio.** With ``weak_audio`` ``keep``, a segment that would be dropped ``out-of-sync`` goes on without its
audio instead (`core.without_audio`: it still trains text and reference); a segment the speech stage kept that
way has no audio to score and passes through.

**SyncNet** (``syncnet``: the path of user-supplied SyncNet weights, `humo.evaluation.syncnet`): the segment's
frames, cropped around the faces stage's boxes as syncnet_python crops them, against its (possibly shifted)
audio; ``sync.syncnet`` records ``c`` (Sync-C), ``d`` (Sync-D) and ``offset``, and a segment under
``syncnet_min`` Sync-C is dropped ``out-of-sync`` as well (0: recorded only). The weights' path, size and
modification time are in the resume key.
"""

from __future__ import annotations

import numpy as np

from humo.constants import SAMPLE_RATE, VIDEO_FPS
from humo.data.pipeline.core import Drop, Record, Settings, without_audio
from humo.data.pipeline.media import SAMPLES_PER_FRAME
from humo.errors import first_line
from humo.media.audio import write_wav

VERSION = 2
PARAMS = ("sync_min", "sync_offset_max", "sync_shift_max", "syncnet", "syncnet_min", "syncnet_id", "weak_audio")
REQUIRES = ("soundfile",)
REASONS = {
    "out-of-sync": "the mouth does not follow the sound: confidence under sync_min, or best offset beyond "
    "sync_offset_max frames, or not measurable",
    "corrupt": "the segment's WAV or its faces .npz does not read",
    "no-syncnet": "the SyncNet weights given with --syncnet do not load",
}
MAX_OFFSET = 15  # frames searched each way (0.6 s), as the proving ground's reader
FOLDER = "sync"
_MODELS: dict = {}  # SyncNet weights loaded in this process, by path


def scores(mouth: np.ndarray, samples: np.ndarray, fps: float = VIDEO_FPS) -> dict:
    """Sync scores of a mouth series [T] (NaN where no face) against 16 kHz mono `samples` [N]: ``confidence``,
    ``distance``, ``offset``, ``corr``, ``corr0`` (None when not measurable)."""
    from humo.proving_ground.metrics import sync_scores
    from humo.proving_ground.readers import audio_envelope

    envelope = audio_envelope(samples, SAMPLE_RATE, fps, len(mouth))
    s = sync_scores(mouth, envelope, MAX_OFFSET)
    r = lambda x, n=3: None if x is None else round(float(x), n)  # noqa: E731
    return {
        "confidence": r(s["sync_c"]),
        "distance": r(s["sync_d"]),
        "offset": s["sync_offset"],
        "corr": r(s["sync_corr"]),
        "corr0": r(s["sync_corr0"]),
    }


def shifted_audio(record: Record, settings: Settings, k: int) -> np.ndarray:
    """The segment's samples taken `k` frames later in its clip (earlier for k < 0): from the clip's normalised
    WAV where the record knows its start frame, else from the segment's own WAV; silence past either end."""
    import soundfile as sf

    n = int(record["num_frames"]) * SAMPLES_PER_FRAME
    source = settings.out / "normalise" / f"{record.get('clip')}.wav"
    start = (record.get("segment") or {}).get("start_frame")
    if start is None or not source.is_file():
        source, start = settings.out / record["audio"], 0
    with sf.SoundFile(str(source)) as f:
        first = (int(start) + k) * SAMPLES_PER_FRAME
        lo, hi = max(first, 0), min(first + n, f.frames)
        out = np.zeros(n, np.float32)
        if hi > lo:
            f.seek(lo)
            got = f.read(hi - lo, dtype="float32")
            out[lo - first : lo - first + len(got)] = got if got.ndim == 1 else got.mean(1)
    return out


def syncnet_model(path: str):
    """SyncNet with the weights at `path`, loaded once per process."""
    from humo.evaluation.syncnet import load_syncnet

    if path not in _MODELS:
        _MODELS[path] = load_syncnet(path)
    return _MODELS[path]


def syncnet_scores(record: Record, settings: Settings, samples: np.ndarray, boxes: np.ndarray) -> dict:
    """SyncNet's Sync-C ``c``, Sync-D ``d`` and ``offset`` of the segment's frames against `samples`."""
    from humo.data.pipeline.stages.faces import _frames
    from humo.evaluation.syncnet import syncnet_scores as score

    try:
        model = syncnet_model(settings.syncnet)
    except Exception as e:  # noqa: BLE001 - HumoError naming the keys, or anything torch raises
        raise Drop("no-syncnet", first_line(e)) from None
    s = score(model, _frames(settings.out / record["video"]), boxes, samples)  # decoded as the crops are cut
    return {"c": round(s["sync_c"], 3), "d": round(s["sync_d"], 3), "offset": s["sync_offset"]}


def process(record: Record, settings: Settings) -> Record:
    import soundfile as sf

    if not record.get("audio") and record.get("audio_dropped"):
        return record  # kept without its audio by the speech stage: nothing to score

    def weak(detail: str) -> Record:
        return without_audio(record, settings, "sync", "out-of-sync", detail)

    try:
        samples, sr = sf.read(str(settings.out / record["audio"]), dtype="float32")
        with np.load(settings.out / record["face_masks"]) as z:
            mouth, boxes = z["mouth"], (z["boxes"] if "boxes" in z.files else None)
    except Exception as e:  # noqa: BLE001 - libsndfile's and numpy's errors
        raise Drop("corrupt", f"the WAV or the faces .npz does not read ({first_line(e)})") from None
    if sr != SAMPLE_RATE or samples.ndim != 1:
        raise Drop("corrupt", f"the WAV is {sr} Hz with shape {samples.shape}, not 16 kHz mono")
    fps = record.get("fps", VIDEO_FPS)
    s = scores(mouth, samples, fps)
    record["sync"] = s
    if settings.sync_min > 0:
        c, k = s["confidence"], s["offset"]
        if c is None:
            return weak("not measurable: the mouth is never seen or never moves")
        if c < settings.sync_min:
            return weak(f"confidence {c:.3f} under {settings.sync_min:g} (best offset {k:+d} frames)")
        if 0 < abs(k) <= settings.sync_shift_max:
            samples = shifted_audio(record, settings, k)
            path = settings.out / FOLDER / f"{record['id']}.wav"
            write_wav(path, samples, SAMPLE_RATE)
            record["audio"] = str(path.relative_to(settings.out))
            after = scores(mouth, samples, fps)
            s["shift"], s["after"] = k, {"confidence": after["confidence"], "offset": after["offset"]}
        elif abs(k) > settings.sync_offset_max:
            most = max(settings.sync_offset_max, settings.sync_shift_max)
            return weak(f"best offset {k:+d} frames, more than {most} (confidence {c:.3f})")
    if settings.syncnet:
        if boxes is None or not np.isfinite(boxes).all(1).any():
            return weak("SyncNet: no face box in the faces .npz")
        s["syncnet"] = net = syncnet_scores(record, settings, samples, boxes)
        if settings.syncnet_min > 0 and net["c"] < settings.syncnet_min:
            return weak(f"SyncNet confidence {net['c']:.3f} under {settings.syncnet_min:g} "
                        f"(its best offset {net['offset']:+d} frames)")  # fmt: skip
    return record
