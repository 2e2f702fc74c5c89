"""Speech-like audio for the proving ground: syllables with a loudness envelope and vowel formants.

A voice is a harmonic series of a pitch f0 (with slow intonation) shaped by two formant peaks per vowel, so
vowels differ in spectrum the way real ones do (and so Whisper features tell them apart). Each syllable has a
smooth loudness bump; syllables group into words and phrases separated by silences. The harmonic amplitudes are
normalised to unit power at every instant, so the audio's short-time RMS follows the envelope whatever the vowel:
that is what lets `readers.audio_envelope` recover the envelope from the audio file alone.

The mouth follows the audio exactly: opening(frame) = mean envelope over the frame's 1/fps window, and its shape
is that of the frame's vowel ("wide" for a/i, "round" for o/u).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from humo.constants import SAMPLE_RATE

#: vowel -> (F1 Hz, F2 Hz, mouth shape: 0 wide, 1 round)
VOWELS: dict[str, tuple[float, float, float]] = {
    "a": (750.0, 1250.0, 0.0),
    "i": (300.0, 2250.0, 0.0),
    "o": (500.0, 900.0, 1.0),
    "u": (320.0, 780.0, 1.0),
}
_FORMANT_GAIN = (1.0, 0.55)
_FORMANT_BW = (90.0, 130.0)
_RMS = 0.2  # RMS of the voiced signal at envelope 1 (peaks stay below full scale)
_MAX_HZ = 4800.0


@dataclass
class Syllable:
    start: float  # seconds
    duration: float
    vowel: str
    peak: float  # envelope maximum in (0, 1]


@dataclass
class SpeechTrack:
    """One speaker's audio and its per-frame ground truth.

    wave: [N] float32 at SAMPLE_RATE; envelope: [T] mean loudness envelope per video frame (0..1);
    roundness: [T] 0 = wide vowel, 1 = round vowel (0 in silence); syllables: the schedule.
    """

    wave: np.ndarray
    envelope: np.ndarray
    roundness: np.ndarray
    syllables: list[Syllable]


def syllable_schedule(
    rng: np.random.Generator, intervals: list[tuple[float, float]], duration: float
) -> list[Syllable]:
    """Syllables filling each (start, end) speaking interval: words of 1-3 syllables, short gaps inside words,
    longer ones between words and phrase pauses, so the envelope has closed-mouth stretches to sync on."""
    out: list[Syllable] = []
    for a, b in intervals:
        b = min(b, duration)
        t = a + rng.uniform(0.0, 0.25)
        while True:
            n_syl = int(rng.integers(1, 4))
            for _ in range(n_syl):
                d = rng.uniform(0.12, 0.24)
                if t + d > b - 0.03:
                    break
                out.append(Syllable(float(t), float(d), str(rng.choice(list(VOWELS))), float(rng.uniform(0.55, 1.0))))
                t += d + rng.uniform(0.0, 0.04)
            else:
                t += rng.uniform(0.08, 0.2) if rng.uniform() > 0.25 else rng.uniform(0.3, 0.6)
                if t < b - 0.15:
                    continue
            break
    return out


def envelope_samples(syllables: list[Syllable], n: int, sr: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """Sample-rate envelope [n] and syllable index per sample [n] (-1 in silence)."""
    env = np.zeros(n, np.float32)
    idx = np.full(n, -1, np.int32)
    for k, s in enumerate(syllables):
        i0, i1 = int(round(s.start * sr)), min(n, int(round((s.start + s.duration) * sr)))
        if i1 <= i0:
            continue
        x = (np.arange(i0, i1) - i0 + 0.5) / (i1 - i0)
        env[i0:i1] = s.peak * np.sin(np.pi * x) ** 0.8
        idx[i0:i1] = k
    return env, idx


def frame_means(x: np.ndarray, num_frames: int, fps: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Mean of a sample-rate signal over each video frame's window [i/fps, (i+1)/fps): [N] -> [num_frames]."""
    edges = np.round(np.arange(num_frames + 1) * sr / fps).astype(np.int64)
    edges = np.clip(edges, 0, len(x))
    c = np.concatenate([[0.0], np.cumsum(x, dtype=np.float64)])
    widths = np.maximum(edges[1:] - edges[:-1], 1)
    return ((c[edges[1:]] - c[edges[:-1]]) / widths).astype(np.float32)


def synthesize(
    rng: np.random.Generator,
    syllables: list[Syllable],
    duration: float,
    num_frames: int,
    fps: float,
    pitch: float,
    sr: int = SAMPLE_RATE,
) -> SpeechTrack:
    """Render a syllable schedule with a voice of f0 `pitch` Hz; returns the wave and per-frame ground truth."""
    n = int(round(duration * sr))
    env, syl_idx = envelope_samples(syllables, n, sr)
    t = np.arange(n, dtype=np.float64) / sr
    f0 = pitch * (1.0 + 0.06 * np.sin(2 * np.pi * 0.6 * t + rng.uniform(0, 2 * np.pi)))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    n_harm = int(_MAX_HZ // (pitch * 1.07))
    k = np.arange(1, n_harm + 1, dtype=np.float64)[:, None]

    # Formant amplitudes change only at syllable boundaries and with the slow pitch drift: compute them on a
    # 10 ms grid and hold them, which keeps synthesis cheap ([n_harm, n/160] instead of [n_harm, n]).
    hop = sr // 100
    grid = np.arange(0, n, hop)
    vowel_of = np.array([VOWELS[s.vowel][:2] for s in syllables] + [(500.0, 1500.0)], np.float64)
    f1f2 = vowel_of[syl_idx[grid]]  # index -1 -> the neutral row
    fk = k * f0[grid][None]  # [H, G]
    amp = sum(
        g / (1 + ((fk - f1f2[:, j][None]) / bw) ** 2) for j, (g, bw) in enumerate(zip(_FORMANT_GAIN, _FORMANT_BW))
    )
    amp = amp / (k**0.3)
    amp = amp / np.sqrt((amp**2).sum(0, keepdims=True) / 2)  # unit RMS at every instant
    amp = np.repeat(amp.astype(np.float32), hop, axis=1)[:, :n]
    # float32 from here: the phase is reduced modulo 2 pi first, so k * phase stays small and precise
    ph = np.mod(phase, 2 * np.pi).astype(np.float32)
    voiced = np.einsum("hn,hn->n", amp, np.sin(k.astype(np.float32) * ph[None]))

    wave = _RMS * env * voiced
    # consonant-like noise bursts at syllable onsets: speech has them, and they keep the audio from being a
    # pure tone; they are short and quiet so the RMS envelope is still the loudness envelope
    for s in syllables:
        i0 = int(round(s.start * sr))
        m = min(int(0.02 * sr), n - i0)
        if m > 0:
            burst = np.diff(rng.standard_normal(m + 1)) * np.hanning(m)
            wave[i0 : i0 + m] += 0.03 * s.peak * burst
    wave += 0.001 * rng.standard_normal(n)
    wave = np.clip(wave, -1.0, 1.0).astype(np.float32)

    envelope = frame_means(env, num_frames, fps, sr)
    round_of = np.array([VOWELS[s.vowel][2] for s in syllables] + [0.0], np.float32)
    roundness = frame_means(env * round_of[syl_idx], num_frames, fps, sr) / np.maximum(envelope, 1e-6)
    roundness = np.where(envelope > 1e-3, roundness, 0.0).astype(np.float32)
    return SpeechTrack(wave=wave, envelope=np.clip(envelope, 0, 1), roundness=roundness, syllables=syllables)


def speech_track(
    rng: np.random.Generator,
    intervals: list[tuple[float, float]],
    duration: float,
    num_frames: int,
    fps: float,
    pitch: float,
    sr: int = SAMPLE_RATE,
) -> SpeechTrack:
    """Schedule + synthesis for one speaker who talks during `intervals` and is silent elsewhere."""
    return synthesize(rng, syllable_schedule(rng, intervals, duration), duration, num_frames, fps, pitch, sr)
