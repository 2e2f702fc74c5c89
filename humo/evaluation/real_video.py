"""Evaluators for real videos: `humo eval --real VIDEO... [--reference IMAGE] [--audio AUDIO] [--prompt TEXT]
[--syncnet WEIGHTS] [--clip FOLDER] [--dino FOLDER]` (docs/evaluation.md).

The proving-ground metrics (`humo.proving_ground.metrics`) read the synthetic world's exact signals; these read
what any video has. Each evaluator is one function ``name(inputs: RealInputs) -> dict | None``: the numbers it
measures, or None when the inputs it needs were not given (no reference image, no sound, no weights); it raises
`Skipped` with the reason when it cannot run on this video (a frame rate other than 25 fps for the sync scores, a
package not installed). `EVALUATORS` lists them in the order they are reported; a new metric is a function added
there (and a row in docs/evaluation.md).

- `identity`: identity similarity of the video's face to the reference image (`humo.face_identity`, dlib's 128-d
  face embedding), over `SAMPLES` frames spread over the video;
- `landmark_sync`: the landmark sync score (MediaPipe Face Mesh mouth against the sound's loudness,
  `humo.evaluation.real_sync`) of the video against its own sound track or `audio`;
- `syncnet`: SyncNet's Sync-C / Sync-D with the user's weights (`humo.evaluation.syncnet`);
- `clip_i`, `dino_i`, `text_alignment`: CLIP-I, DINO-I and the CLIP score with the user's transformers folders
  (`humo.evaluation.similarity`), over `similarity.FRAMES` frames.

`evaluate_all` checks every input first (files, weight folders, every video readable) and loads the weights once,
so bad input is a one-line HumoError before any video is scored.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np

from humo.constants import SAMPLE_RATE, VIDEO_FPS
from humo.errors import HumoError, first_line, require_file

SAMPLES = 16  # frames spread evenly over the video that the per-frame evaluators look at


class Skipped(Exception):
    """An evaluator cannot run on this video although its inputs were given; the message says why."""


@dataclasses.dataclass(frozen=True)
class RealInputs:
    """What a real video is evaluated against: reference images, an audio file (else the video's own sound track),
    a prompt and the weights the user gave (SyncNet file, CLIP and DINO folders). ``sample(n)`` gives `n` frames
    spread over the video (RGB uint8 [n, H, W, 3]) and their indices; ``frames()`` all of them; ``samples()`` the
    sound at 16 kHz mono (None without one); ``fps``, ``num_frames`` and ``has_sound`` describe the video."""

    video: Path
    references: tuple[Path, ...] = ()
    audio: Path | None = None
    prompt: str | None = None
    syncnet: Path | None = None
    clip: Path | None = None
    dino: Path | None = None

    @functools.cached_property
    def _info(self) -> tuple[int, float, bool]:
        import av

        try:
            with av.open(str(self.video)) as c:
                stream = c.streams.video[0]
                sound = bool(c.streams.audio)
                count = sum(1 for p in c.demux(stream) if p.size)
                fps = float(stream.average_rate or stream.guessed_rate or 25)
        except (av.error.FFmpegError, IndexError) as e:
            raise HumoError(f"video {self.video}: cannot read it ({first_line(e)})") from None
        if count == 0:
            raise HumoError(f"video {self.video}: no frames")
        return count, fps, sound

    @property
    def num_frames(self) -> int:
        return self._info[0]

    @property
    def fps(self) -> float:
        return self._info[1]

    @property
    def has_sound(self) -> bool:
        """Whether there is a sound to score against: `audio` or the video's own sound track."""
        return self.audio is not None or self._info[2]

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """`n` frames spread evenly from the first to the last (fewer when the video is shorter) and their indices."""
        idx = np.unique(np.linspace(0, self.num_frames - 1, max(1, n)).round().astype(int))
        if "_all_frames" in self.__dict__:  # already decoded for another evaluator
            every = self._all_frames
            keep = idx[idx < len(every)]
            return every[keep], keep
        frames = self._decode(set(idx.tolist()))
        keep = [i for i in idx if i in frames]
        return np.stack([frames[i] for i in keep]), np.array(keep)

    def frames(self) -> np.ndarray:
        """Every frame, RGB uint8 [T, H, W, 3] (decoded once)."""
        return self._all_frames

    @functools.cached_property
    def _all_frames(self) -> np.ndarray:
        frames = self._decode(None)
        return np.stack([frames[i] for i in sorted(frames)])

    def samples(self) -> np.ndarray | None:
        """The sound, 16 kHz mono float32: `audio`, else the video's own sound track; None without either."""
        return self._samples

    @functools.cached_property
    def _samples(self) -> np.ndarray | None:
        if not self.has_sound:
            return None
        from humo.media.audio import load_audio

        return load_audio(self.audio if self.audio is not None else self.video, SAMPLE_RATE, min_seconds=0)

    def reference_images(self) -> list[np.ndarray]:
        """The reference images, RGB uint8 [H, W, 3] each."""
        from humo.media.image import load_image

        return [np.asarray(load_image(p)) for p in self.references]

    @functools.cached_property
    def face_track(self) -> dict:
        """The data pipeline's face track over every frame (`real_sync.face_track`): ``mouth``, ``boxes``,
        ``found``; shared by the sync evaluators."""
        from humo.evaluation.real_sync import face_track

        return face_track(self.stream())

    def stream(self):
        """Every frame, RGB uint8 [H, W, 3], one at a time (decoded as read; the video is never held whole)."""
        import av

        if "_all_frames" in self.__dict__:
            yield from self._all_frames
            return
        try:
            with av.open(str(self.video)) as c:
                for f in c.decode(video=0):
                    yield f.to_ndarray(format="rgb24")
        except av.error.FFmpegError as e:
            raise HumoError(f"video {self.video}: does not decode ({first_line(e)})") from None

    def _decode(self, want: set[int] | None) -> dict[int, np.ndarray]:
        import av

        out = {}
        try:
            with av.open(str(self.video)) as c:
                for i, f in enumerate(c.decode(video=0)):
                    if want is None or i in want:
                        out[i] = f.to_ndarray(format="rgb24")
                    if want is not None and len(out) == len(want):
                        break
        except av.error.FFmpegError as e:
            raise HumoError(f"video {self.video}: does not decode ({first_line(e)})") from None
        return out


def identity(inputs: RealInputs) -> dict | None:
    """Identity similarity to the reference: in each of `SAMPLES` frames, the largest face (dlib's detector) is
    embedded and compared with the reference's face (the best of several references). ``id_sim``: mean cosine
    similarity over the frames with a face (the form papers report; with dlib's embedding, different people
    still score about 0.85-0.9); ``id_dist``: mean Euclidean distance (dlib's scale: under 0.6 is the same
    person); ``id_match``: share of those frames under 0.6; ``id_found``: share of the sampled frames with a face."""
    if not inputs.references:
        return None
    from humo import face_identity

    if not face_identity.available():
        raise Skipped(f"needs {face_identity.PACKAGES}")
    refs = _reference_embeddings(inputs.references)
    frames, _ = inputs.sample(SAMPLES)
    sims, dists = [], []
    for frame in frames:
        emb = face_identity.embed(frame)
        if emb is None:
            continue
        best = min(refs, key=lambda r: face_identity.distance(emb, r))
        dists.append(face_identity.distance(emb, best))
        sims.append(face_identity.similarity(emb, best))
    found = len(dists) / len(frames)
    if not dists:
        return {"id_sim": None, "id_dist": None, "id_match": None, "id_found": 0.0}
    return {
        "id_sim": float(np.mean(sims)),
        "id_dist": float(np.mean(dists)),
        "id_match": float(np.mean(np.array(dists) < face_identity.SAME_PERSON)),
        "id_found": found,
    }


def _sync_ready(inputs: RealInputs, least_frames: int = 1) -> None:
    """The sync evaluators read 25 fps video through MediaPipe's Face Mesh; `Skipped` otherwise."""
    if abs(inputs.fps - VIDEO_FPS) > 0.01:
        raise Skipped(f"reads 25 fps video, this is {inputs.fps:g} fps (humo data run normalises to it)")
    if inputs.num_frames < least_frames:
        raise Skipped(f"needs at least {least_frames} frames, the video has {inputs.num_frames}")
    if importlib.util.find_spec("mediapipe") is None:
        raise Skipped("needs mediapipe 0.10.21 (make install installs it)")


def landmark_sync(inputs: RealInputs) -> dict | None:
    """The landmark sync score (`real_sync.landmark_sync`: Face Mesh mouth opening against the loudness envelope at
    offsets -15..15) of the video against `audio` or its own sound track: ``confidence`` (Sync-C analogue),
    ``distance`` (Sync-D analogue), ``offset`` (k > 0: the sound lags), ``corr``, ``corr0`` (None when not
    measurable), ``face_found`` (share of frames with the tracked face)."""
    if not inputs.has_sound:
        return None
    _sync_ready(inputs)
    from humo.evaluation import real_sync

    track = inputs.face_track
    return {**real_sync.landmark_sync(track["mouth"], inputs.samples()), "face_found": _share(track["found"])}


def syncnet(inputs: RealInputs) -> dict | None:
    """SyncNet's ``syncnet_c`` (Sync-C), ``syncnet_d`` (Sync-D) and ``syncnet_offset`` over -15..15 frames, face
    crops around the same face track as `landmark_sync` (None values when no frame has the face)."""
    if inputs.syncnet is None or not inputs.has_sound:
        return None
    from humo.evaluation import real_sync
    from humo.evaluation.syncnet import FRAMES_PER_WINDOW

    _sync_ready(inputs, FRAMES_PER_WINDOW + 1)
    track = inputs.face_track
    if not track["found"].any():
        return {"syncnet_c": None, "syncnet_d": None, "syncnet_offset": None}
    return real_sync.syncnet_sync(_syncnet_model(inputs.syncnet), inputs.stream(), track["boxes"], inputs.samples())


def clip_i(inputs: RealInputs) -> dict | None:
    """CLIP-I (`similarity.clip_i`): ``mean`` cosine of the CLIP image embeddings of `similarity.FRAMES` frames
    and of the references, ``per_reference``, ``frames``."""
    if inputs.clip is None or not inputs.references:
        return None
    from humo.evaluation import similarity

    frames, _ = inputs.sample(similarity.FRAMES)
    return similarity.clip_i(*_clip_model(inputs.clip), frames, inputs.reference_images())


def dino_i(inputs: RealInputs) -> dict | None:
    """DINO-I (`similarity.dino_i`): as `clip_i` with a DINOv2 / ViT model's CLS token."""
    if inputs.dino is None or not inputs.references:
        return None
    from humo.evaluation import similarity

    frames, _ = inputs.sample(similarity.FRAMES)
    return similarity.dino_i(*_dino_model(inputs.dino), frames, inputs.reference_images())


def text_alignment(inputs: RealInputs) -> dict | None:
    """The CLIP score (`similarity.text_alignment`): ``mean`` cosine of the frames' CLIP image embeddings with the
    prompt's text embedding, ``per_frame``."""
    if inputs.clip is None or not (inputs.prompt and inputs.prompt.strip()):
        return None
    from humo.evaluation import similarity

    frames, _ = inputs.sample(similarity.FRAMES)
    return similarity.text_alignment(*_clip_model(inputs.clip), frames, inputs.prompt)


def _share(found: np.ndarray) -> float:
    return round(float(np.asarray(found).mean()), 3)


@functools.lru_cache(maxsize=2)
def _reference_embeddings(paths: tuple[Path, ...]) -> list[np.ndarray]:
    """The face embedding of each reference image (once per run: `evaluate_all` computes them before any video is
    scored); a one-line HumoError for an image with no face."""
    from humo import face_identity
    from humo.media.image import load_image

    refs = []
    for path in paths:
        emb = face_identity.embed(np.asarray(load_image(path)))
        if emb is None:
            raise HumoError(f"reference {path}: no face found in it (the identity evaluator needs one)")
        refs.append(emb)
    return refs


# Weights are loaded once per path in a process (every video of a run shares them).
@functools.lru_cache(maxsize=2)
def _syncnet_model(path: Path):
    from humo.evaluation.syncnet import load_syncnet

    return load_syncnet(path)


@functools.lru_cache(maxsize=2)
def _clip_model(path: Path):
    from humo.evaluation.similarity import load_clip

    return load_clip(path)


@functools.lru_cache(maxsize=2)
def _dino_model(path: Path):
    from humo.evaluation.similarity import load_dino

    return load_dino(path)


#: The evaluators, in report order: name -> function(RealInputs) -> {metric: value} or None (inputs not given).
EVALUATORS: dict[str, Callable[[RealInputs], dict | None]] = {
    "identity": identity,
    "landmark_sync": landmark_sync,
    "syncnet": syncnet,
    "clip_i": clip_i,
    "dino_i": dino_i,
    "text_alignment": text_alignment,
}


def evaluate_all(
    videos,
    references=(),
    audio: str | Path | None = None,
    prompt: str | None = None,
    only: list[str] | None = None,
    *,
    syncnet: str | Path | None = None,
    clip: str | Path | None = None,
    dino: str | Path | None = None,
    report: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Run every evaluator (or those named in `only`) on each of `videos`, one result per video (`evaluate`'s),
    each passed to `report` as it is done. First, before any video is scored: every file and folder checked,
    every video opened and its frames counted, the reference images and `audio` decoded, and the weights of the
    evaluators that will run loaded (each once); any problem is a one-line HumoError."""
    names = list(EVALUATORS) if only is None else list(only)
    for name in names:
        if name not in EVALUATORS:
            raise HumoError(f"unknown real-video evaluator {name!r} (known: {', '.join(EVALUATORS)})")
    if not videos:
        raise HumoError("give a video to evaluate")
    refs = tuple(require_file(p, "reference") for p in references)
    audio = require_file(audio, "audio") if audio is not None else None
    syncnet = require_file(syncnet, "--syncnet weights") if syncnet is not None else None
    clip, dino = (_model_folder(p, flag) for p, flag in ((clip, "--clip"), (dino, "--dino")))
    inputs = [RealInputs(require_file(v, "video"), refs, audio, prompt, syncnet, clip, dino) for v in videos]
    for one in inputs:
        one.num_frames  # noqa: B018 - every video opens and has frames before any is scored
    if inputs[0].references:
        inputs[0].reference_images()
        from humo import face_identity

        if "identity" in names and face_identity.available():  # without the extra the evaluator is `Skipped`
            _reference_embeddings(refs)
    if audio is not None:
        from humo.media.audio import load_audio

        load_audio(audio, SAMPLE_RATE, min_seconds=0)
    if syncnet is not None and "syncnet" in names:
        _syncnet_model(syncnet)
    if clip is not None and {"clip_i", "text_alignment"} & set(names):
        _clip_model(clip)
    if dino is not None and "dino_i" in names:
        _dino_model(dino)
    results = []
    for one in inputs:
        results.append(_evaluate(one, names))
        if report is not None:
            report(results[-1])
    return results


def evaluate(video: str | Path, references=(), audio=None, prompt=None, only=None, **weights) -> dict:
    """Run every evaluator (or those named in `only`) on `video`: ``{"video", "frames", "fps", "metrics":
    {evaluator: {metric: value}}, "skipped": {evaluator: why}}``; `weights`: ``syncnet``, ``clip``, ``dino``."""
    return evaluate_all([video], references, audio, prompt, only, **weights)[0]


def _model_folder(path, flag: str) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    if not p.is_dir():
        raise HumoError(f"{flag} {p}: not a folder")
    if not (p / "config.json").is_file():
        raise HumoError(f"{flag} {p}: not a transformers model folder (no config.json)")
    return p


def _evaluate(inputs: RealInputs, names: list[str]) -> dict:
    result = {"video": str(inputs.video), "frames": inputs.num_frames, "fps": inputs.fps, "metrics": {}, "skipped": {}}
    for name in names:
        try:
            got = EVALUATORS[name](inputs)
        except Skipped as e:
            result["skipped"][name] = str(e)
            continue
        if got is None:
            result["skipped"][name] = "its inputs were not given"
        else:
            result["metrics"][name] = got
    return result


def _value(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    return f"{v:.3f}"


def format_report(result: dict) -> str:
    """The result as lines: one per metric, then what was skipped."""
    lines = [f"{result['video']}: {result['frames']} frames at {result['fps']:g} fps"]
    for name, values in result["metrics"].items():
        for k, v in values.items():
            lines.append(f"  {name:14s} {k:14s} {_value(v)}")
    for name, why in result["skipped"].items():
        lines.append(f"  {name:14s} skipped: {why}")
    return "\n".join(lines)
