"""Evaluators for real videos: `humo eval --real VIDEO --reference IMAGE [--audio AUDIO] [--prompt TEXT]`.

The proving-ground metrics (`humo.proving_ground.metrics`) read the synthetic world's exact signals; these read
what any video has, through models whose weights ship in pip packages. Each evaluator is one function
``name(inputs: RealInputs) -> dict | None``: the numbers it measures, or None when the inputs it needs were not
given (no reference image, no audio). `EVALUATORS` lists them in the order they are reported; a new metric is a
function added there (and a line in docs/evaluation.md).

- `identity`: identity similarity of the video's face to the reference image (`humo.face_identity`, dlib's 128-d
  face embedding), over `SAMPLES` frames spread over the video.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np

from humo.errors import HumoError, require_file

SAMPLES = 16  # frames spread evenly over the video that the per-frame evaluators look at


@dataclasses.dataclass(frozen=True)
class RealInputs:
    """What a real video is evaluated against. ``sample(n)`` gives `n` frames spread over the video (RGB uint8
    [n, H, W, 3]) and their indices; ``frames()`` all of them; ``fps`` and ``num_frames`` its rate and length."""

    video: Path
    references: tuple[Path, ...] = ()
    audio: Path | None = None
    prompt: str | None = None

    @functools.cached_property
    def _info(self) -> tuple[int, float]:
        import av

        try:
            with av.open(str(self.video)) as c:
                stream = c.streams.video[0]
                count = sum(1 for p in c.demux(stream) if p.size)
                fps = float(stream.average_rate or stream.guessed_rate or 25)
        except (av.error.FFmpegError, IndexError) as e:
            raise HumoError(f"video {self.video}: cannot read it ({str(e).splitlines()[0] if str(e) else e})") from None
        if count == 0:
            raise HumoError(f"video {self.video}: no frames")
        return count, fps

    @property
    def num_frames(self) -> int:
        return self._info[0]

    @property
    def fps(self) -> float:
        return self._info[1]

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """`n` frames spread evenly from the first to the last (fewer when the video is shorter) and their indices."""
        idx = np.unique(np.linspace(0, self.num_frames - 1, max(1, n)).round().astype(int))
        frames = self._decode(set(idx.tolist()))
        keep = [i for i in idx if i in frames]
        return np.stack([frames[i] for i in keep]), np.array(keep)

    def frames(self) -> np.ndarray:
        """Every frame, RGB uint8 [T, H, W, 3]."""
        frames = self._decode(None)
        return np.stack([frames[i] for i in sorted(frames)])

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
            raise HumoError(f"video {self.video}: does not decode ({e})") from None
        return out


def identity(inputs: RealInputs) -> dict | None:
    """Identity similarity to the reference: in each of `SAMPLES` frames, the largest face (dlib's detector) is
    embedded and compared with the reference's face (the best of several references). ``id_sim``: mean cosine
    similarity over the frames with a face (the form papers report; with dlib's embedding, different people
    still score about 0.85-0.9); ``id_dist``: mean Euclidean distance (dlib's scale: under 0.6 is the same
    person); ``id_match``: share of those frames under 0.6; ``id_found``: share of the sampled frames with a face."""
    if not inputs.references:
        return None
    from PIL import Image

    from humo import face_identity

    refs = []
    for path in inputs.references:
        emb = face_identity.embed(np.asarray(Image.open(path).convert("RGB")))
        if emb is None:
            raise HumoError(f"reference {path}: no face found in it")
        refs.append(emb)
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


#: The evaluators, in report order: name -> function(RealInputs) -> {metric: value} or None (inputs not given).
EVALUATORS: dict[str, Callable[[RealInputs], dict | None]] = {"identity": identity}


def evaluate(
    video: str | Path,
    references=(),
    audio: str | Path | None = None,
    prompt: str | None = None,
    only: list[str] | None = None,
) -> dict:
    """Run every evaluator (or those named in `only`) on `video`: ``{"video", "frames", "fps", "metrics":
    {evaluator: {metric: value}}, "skipped": {evaluator: why}}``."""
    video = require_file(video, "video")
    refs = tuple(require_file(p, "reference") for p in references)
    audio = require_file(audio, "audio") if audio is not None else None
    names = list(EVALUATORS) if only is None else only
    for name in names:
        if name not in EVALUATORS:
            raise HumoError(f"unknown real-video evaluator {name!r} (known: {', '.join(EVALUATORS)})")
    inputs = RealInputs(video, refs, audio, prompt)
    result = {"video": str(video), "frames": inputs.num_frames, "fps": inputs.fps, "metrics": {}, "skipped": {}}
    for name in names:
        got = EVALUATORS[name](inputs)
        if got is None:
            result["skipped"][name] = "its inputs were not given"
        else:
            result["metrics"][name] = got
    return result


def format_report(result: dict) -> str:
    """The result as lines: one per metric, then what was skipped."""
    lines = [f"{result['video']}: {result['frames']} frames at {result['fps']:g} fps"]
    for name, values in result["metrics"].items():
        for k, v in values.items():
            lines.append(f"  {name:10s} {k:10s} {'-' if v is None else f'{v:.3f}'}")
    for name, why in result["skipped"].items():
        lines.append(f"  {name:10s} skipped: {why}")
    return "\n".join(lines)
