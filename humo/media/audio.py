"""Reading the driving audio: any common audio file or a video's audio track -> mono float32 at 16 kHz.

Decoding goes through soundfile (libsndfile: wav, flac, ogg, mp3) where it can and PyAV (FFmpeg: m4a, aac, mp4,
mov, webm, ...) otherwise; channels are averaged to mono and the result is resampled with soxr at its default
("HQ") quality. That is the same down-mix and the same resampler as ``librosa.load(path, sr=16000)``, which the
HuMo release uses, so features computed from our samples match the release's.

Silence is not an error: a silent clip yields the Whisper features of silence and the model renders a still
mouth. Audio shorter than one latent frame's worth of video (5 frames at 25 fps = 0.2 s) is an error, because
there is nothing to condition on.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from humo.constants import SAMPLE_RATE
from humo.errors import HumoError, first_line, require_file

#: The shortest audio accepted by default: 5 video frames at 25 fps (the first latent frame plus one group of 4).
MIN_SECONDS = 5 / 25

# Extensions we expect to decode; anything else that fails to decode is reported as unsupported rather than corrupt.
AUDIO_EXTENSIONS = {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".wma", ".aif", ".aiff"}
VIDEO_EXTENSIONS = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"}


def load_audio(
    path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, *, min_seconds: float = MIN_SECONDS
) -> np.ndarray:
    """Decode `path` (audio file or video with an audio track) to mono float32 samples at `sample_rate`.

    Returns a 1-D float32 array ``[N]`` (full scale +-1). Raises a one-line HumoError naming the file when it is
    missing, empty, corrupt, of an unsupported format, without an audio stream, without samples, with non-finite
    samples, or shorter than `min_seconds` (pass 0 to accept any length).
    """
    data, sr = load_audio_native(path)
    p = Path(path)
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if sr != sample_rate:
        import soxr

        mono = soxr.resample(mono, sr, sample_rate)  # default quality "HQ" = librosa's res_type "soxr_hq"
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    duration = mono.shape[0] / sample_rate
    if mono.shape[0] < round(min_seconds * sample_rate):
        raise HumoError(
            f"audio {p}: too short ({duration:.3f} s; need at least {min_seconds:.2f} s, one latent frame of video)"
        )
    return mono


def load_audio_native(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode `path` as it is: ``(float32 [N, C], sample rate)``, the file's own channels and rate (for the output
    video's sound, which should not be the 16 kHz mono the model hears). Same one-line errors as `load_audio`."""
    p = require_file(path, "audio")
    data, sr = _decode_soundfile(p)
    if data is None:
        data, sr = _decode_pyav(p)
    if data.shape[0] == 0:
        raise HumoError(f"audio {p}: contains no audio samples")
    if not np.isfinite(data).all():
        raise HumoError(f"audio {p}: contains NaN or infinite samples")
    return data, sr


def audio_duration(audio: str | os.PathLike | np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Duration in seconds of a sample array ``[N]`` / ``[N, C]`` at `sample_rate`, or of an audio/video file.

    For a file the duration comes from the container header (soundfile, else PyAV) without decoding when the
    header has it, else by decoding.
    """
    if isinstance(audio, np.ndarray):
        return audio.shape[0] / sample_rate
    p = require_file(audio, "audio")
    try:
        import soundfile as sf

        info = sf.info(str(p))
        if info.frames > 0 and info.samplerate > 0:
            return info.frames / info.samplerate
    except Exception:  # libsndfile cannot read this container; PyAV below can say why
        pass
    import av

    try:
        with av.open(str(p)) as container:
            if not container.streams.audio:
                raise HumoError(f"audio {p}: has no audio stream")
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
    except av.error.FFmpegError as e:
        raise HumoError(_decode_failure(p, e)) from None
    return load_audio(p, sample_rate, min_seconds=0).shape[0] / sample_rate


def is_silent(samples: np.ndarray, threshold: float = 1e-3) -> bool:
    """True when the RMS of `samples` (``[N]`` or ``[N, C]``, full scale +-1) is at most `threshold`.

    The default 1e-3 is -60 dBFS. Silence is allowed as input (it gives a still mouth); callers use this only
    to warn.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return True
    return float(np.sqrt(np.mean(x * x))) <= threshold


def _decode_soundfile(p: Path) -> tuple[np.ndarray | None, int]:
    """Decode with libsndfile; (None, 0) when it cannot read the container (PyAV gets a try)."""
    import soundfile as sf

    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception:  # any libsndfile failure means "try FFmpeg", which reports the real problem
        return None, 0
    return data, int(sr)


def _decode_pyav(p: Path) -> tuple[np.ndarray, int]:
    """Decode the first audio stream with FFmpeg through PyAV -> ``([N, C] float32, sample rate)``."""
    import av

    try:
        container = av.open(str(p))
    except av.error.FFmpegError as e:
        raise HumoError(_decode_failure(p, e)) from None
    with container:
        if not container.streams.audio:
            raise HumoError(f"audio {p}: has no audio stream")
        stream = container.streams.audio[0]
        # Planar float keeps the channels apart whatever the codec's native sample format is.
        resampler = av.AudioResampler(format="fltp")
        chunks: list[np.ndarray] = []
        sr = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())  # [C, n]
                    sr = out.sample_rate
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
                sr = out.sample_rate
        except av.error.FFmpegError as e:
            raise HumoError(_decode_failure(p, e)) from None
    if not chunks:
        raise HumoError(f"audio {p}: contains no audio samples")
    data = np.concatenate(chunks, axis=1).T.astype(np.float32, copy=False)
    return np.ascontiguousarray(data), int(sr or stream.sample_rate)


def _decode_failure(p: Path, e: Exception) -> str:
    ext = p.suffix.lower()
    reason = first_line(e)
    if ext in AUDIO_EXTENSIONS or ext in VIDEO_EXTENSIONS:
        return f"audio {p}: cannot decode, the file is corrupt or truncated ({reason})"
    return f"audio {p}: unsupported format {ext or '(no extension)'} (cannot decode: {reason})"


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write float mono samples ``[N]`` (full scale +-1, clipped beyond) as 16-bit PCM WAV, atomically."""
    import soundfile as sf

    from humo.errors import atomic_path

    with atomic_path(path, suffix=".wav") as tmp:
        sf.write(str(tmp), np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
