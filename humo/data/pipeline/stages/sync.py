"""sync: does the tracked mouth move with the sound? The faces stage's mouth opening per frame against the audio's
loudness envelope, with an offset search, as the proving ground's SyncNet-style reader scores it.

The scores are `humo.proving_ground.metrics.sync_scores` (the reader `humo eval` validates on the proving
ground) on `humo.proving_ground.readers.audio_envelope` (RMS per 40 ms video frame, scaled to its 98th
percentile): for each offset k in +-min(15, T // 4) frames, d(k) = 1 - pearson(mouth[t], envelope[t + k]);
``offset`` = argmin d (k > 0: the sound lags the picture), ``confidence`` = median d - min d (SyncNet's Sync-C:
how much the best offset stands out), ``distance`` = min d (Sync-D), ``corr`` = 1 - Sync-D, ``corr0`` the
correlation at offset 0. Frames without the face are interpolated over.

A segment is kept when ``confidence >= sync_min`` and ``|offset| <= sync_offset_max``; otherwise it is dropped
``out-of-sync`` with both recorded (facts ``record["sync"]``). ``sync_min`` 0 turns the filter off: the scores are
recorded (null when they cannot be measured: the mouth never seen, or never moving) and every segment kept.
"""

from __future__ import annotations

import numpy as np

from humo.constants import SAMPLE_RATE, VIDEO_FPS
from humo.data.pipeline.core import Drop, Record, Settings, dropped
from humo.data.pipeline.media import first_line

VERSION = 1
PARAMS = ("sync_min", "sync_offset_max")
REQUIRES = ("soundfile",)
REASONS = {
    "out-of-sync": "the mouth does not follow the sound: confidence under sync_min, or best offset beyond "
    "sync_offset_max frames, or not measurable",
    "corrupt": "the segment's WAV or its faces .npz does not read",
}
MAX_OFFSET = 15  # frames searched each way (0.6 s), as the proving ground's reader


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


def process(record: Record, settings: Settings) -> Record:
    import soundfile as sf

    try:
        samples, sr = sf.read(str(settings.out / record["audio"]), dtype="float32")
        with np.load(settings.out / record["face_masks"]) as z:
            mouth = z["mouth"]
    except Exception as e:  # noqa: BLE001 - libsndfile's and numpy's errors
        raise Drop("corrupt", f"the WAV or the faces .npz does not read ({first_line(e)})") from None
    if sr != SAMPLE_RATE or samples.ndim != 1:
        raise Drop("corrupt", f"the WAV is {sr} Hz with shape {samples.shape}, not 16 kHz mono")
    s = scores(mouth, samples, record.get("fps", VIDEO_FPS))
    record["sync"] = s
    if settings.sync_min <= 0:
        return record
    if s["confidence"] is None:
        return dropped(record, "out-of-sync", "not measurable: the mouth is never seen or never moves")
    if s["confidence"] < settings.sync_min:
        return dropped(record, "out-of-sync", f"confidence {s['confidence']:.3f} under {settings.sync_min:g} "
                       f"(best offset {s['offset']:+d} frames)")  # fmt: skip
    if abs(s["offset"]) > settings.sync_offset_max:
        return dropped(record, "out-of-sync", f"best offset {s['offset']:+d} frames, more than "
                       f"{settings.sync_offset_max} (confidence {s['confidence']:.3f})")  # fmt: skip
    return record
