"""speech: does someone talk in the segment? webrtcvad's voiced share, and a check for steady sound.

Facts (``record["speech"]``): ``voiced`` (the share of the segment's 30 ms frames that webrtcvad calls speech, at
aggressiveness `vad_mode`), ``modulation_db`` (the standard deviation of the loudness in 10 ms steps, dB) and
``vad_mode``.

webrtcvad's model scores the energy in a few frequency bands; it takes a steady tone, a hum or loud broadband
noise for speech (a 440 Hz tone and white noise both read as 100% voiced). Speech is never steady: syllables
rise and fall 3-8 times a second and words are separated by pauses, so its loudness in 10 ms steps varies by
10-20 dB (still about 3 dB under white noise 10 dB below its peaks), where a tone varies by under 0.1 dB and white
noise by about 0.5 dB.
A segment is kept when both say speech: ``voiced >= speech_min`` and ``modulation_db >= modulation_min``.
Otherwise (and without a sound track) it is dropped, or with ``weak_audio`` ``keep`` goes on without its audio
(`core.without_audio`).
"""

from __future__ import annotations

import numpy as np

from humo.constants import SAMPLE_RATE
from humo.data.pipeline.core import Record, Settings, without_audio
from humo.errors import first_line

VERSION = 1
PARAMS = ("speech_min", "vad_mode", "modulation_min", "weak_audio")
REQUIRES = ("webrtcvad", "soundfile")
REASONS = {
    "no-audio": "the clip has no sound track",
    "corrupt-audio": "it has one, but it failed to decode in normalise (which kept the picture)",
    "no-speech": "webrtcvad finds speech in fewer than speech_min of its 30 ms frames",
    "steady-sound": "the loudness hardly changes (a tone, a hum, noise): not speech, whatever webrtcvad says",
    "corrupt": "the segment's WAV does not read, or is not 16 kHz mono",
}
VAD_FRAME = SAMPLE_RATE * 30 // 1000  # 480 samples: webrtcvad takes 10, 20 or 30 ms frames
LOUDNESS_STEP = SAMPLE_RATE // 100  # 10 ms
FLOOR_DB = -60.0  # loudness below this (dBFS) counts as this: digital silence would otherwise be -inf


def voiced_share(samples: np.ndarray, mode: int = 2) -> float:
    """The share of whole 30 ms frames of 16 kHz mono float `samples` ``[N]`` that webrtcvad calls speech."""
    import webrtcvad

    vad = webrtcvad.Vad(mode)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    n = pcm.shape[0] // VAD_FRAME
    if n == 0:
        return 0.0
    frames = pcm[: n * VAD_FRAME].reshape(n, VAD_FRAME)
    return sum(vad.is_speech(f.tobytes(), SAMPLE_RATE) for f in frames) / n


def modulation_db(samples: np.ndarray) -> float:
    """The standard deviation (dB) of the loudness of 16 kHz float `samples` ``[N]`` in 10 ms steps, each step's
    mean power floored at -60 dBFS. About 0 for a steady tone, 0.5 for white noise, 10-20 for clean speech."""
    n = samples.shape[0] // LOUDNESS_STEP
    if n < 2:
        return 0.0
    power = np.square(samples[: n * LOUDNESS_STEP].astype(np.float64)).reshape(n, LOUDNESS_STEP).mean(axis=1)
    db = 10.0 * np.log10(np.maximum(power, 10.0 ** (FLOOR_DB / 10.0)))
    return float(db.std())


def process(record: Record, settings: Settings) -> Record:
    import soundfile as sf

    if not record.get("audio"):
        error = record.get("normalise", {}).get("audio_error")
        if error:
            return without_audio(record, settings, "speech", "corrupt-audio", error)
        return without_audio(record, settings, "speech", "no-audio", "the video has no sound track")
    try:
        samples, sr = sf.read(str(settings.out / record["audio"]), dtype="float32")
    except Exception as e:  # noqa: BLE001 - libsndfile raises its own error types
        return without_audio(record, settings, "speech", "corrupt", f"the WAV does not read ({first_line(e)})")
    if sr != SAMPLE_RATE or samples.ndim != 1:
        detail = f"the WAV is {sr} Hz with shape {samples.shape}, not 16 kHz mono"
        return without_audio(record, settings, "speech", "corrupt", detail)
    voiced = voiced_share(samples, settings.vad_mode)
    modulation = modulation_db(samples)
    record["speech"] = {"voiced": round(voiced, 3), "modulation_db": round(modulation, 2)}
    record["speech"]["vad_mode"] = settings.vad_mode
    if voiced < settings.speech_min:
        detail = f"{voiced:.0%} of 30 ms frames voiced, fewer than {settings.speech_min:.0%}"
        return without_audio(record, settings, "speech", "no-speech", detail)
    if modulation < settings.modulation_min:
        detail = f"loudness varies by {modulation:.2f} dB (< {settings.modulation_min:g}): a tone or noise, not speech"
        return without_audio(record, settings, "speech", "steady-sound", detail)
    return record
