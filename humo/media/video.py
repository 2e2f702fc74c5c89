"""Writing the result: MP4 (H.264 yuv420p + AAC driving audio) with provenance metadata; reading it back.

Everything goes through PyAV (FFmpeg's libx264 and native AAC encoder, bundled in the wheel). The file is written
to a temporary name beside the target and renamed when complete (`humo.errors.atomic_path`), so a failure never
leaves a half-written video at the target path.

Length: the video is trimmed to the shorter of video and audio, as the release does (``min(video, audio)``):
``n = min(T, floor(N * fps / sample_rate))`` frames and exactly ``n * sample_rate / fps`` audio samples (rounded
down), so both streams end together (the AAC stream's last packet is padded by the encoder; the container's edit
list records the exact sample count).

Provenance. What FFmpeg's mp4 muxer writes as ordinary (iTunes-style) tags, checked with PyAV 18: ``title``,
``artist``, ``album``, ``comment``, ``description``, ``synopsis``, ``copyright``, ``date``, ``genre``,
``composer``; ``encoder`` is always replaced by the library's own ("Lavf..."), and other keys (``software``,
``model``, ...) are silently dropped unless ``movflags=use_metadata_tags`` is set, which in turn stops writing the
iTunes atoms most players read. So we write the statement "AI-generated ... by humo <version> with model <name>"
into ``comment`` and ``description``; extra metadata entries that are not standard tags are appended to
``description`` as ``key=value`` pairs. PNG frames carry the same statement in ``tEXt`` chunks (``Software``,
``Comment``, ``Description``, ``AI-Generated``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from humo.constants import SAMPLE_RATE
from humo.errors import HumoError, atomic_path, first_line, require_file, usual_mode

#: Tags the mp4 muxer stores as-is (see the module docstring); anything else goes into ``description``.
MP4_TAGS = ("title", "artist", "album", "comment", "description", "synopsis", "copyright", "date", "genre", "composer")
CRF = 17  # visually lossless for H.264; the generated frames deserve it and the files stay small at 25 fps
AUDIO_BITRATE = 128_000
AUDIO_CHUNK = 8192  # samples per AudioFrame handed to the encoder (PyAV re-chunks to AAC's 1024)


def provenance(model: str | None = None) -> str:
    """The one-sentence AI-generation statement stored in every output."""
    from humo import __version__

    with_model = f" with model {model}" if model else ""
    return f"AI-generated video: synthesised by humo {__version__}{with_model} (HuMo, human-centric video generation)"


def _metadata_tags(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    meta = {str(k).lower(): str(v) for k, v in (metadata or {}).items() if v is not None}
    statement = provenance(meta.get("model"))
    tags = {k: meta[k] for k in MP4_TAGS if k in meta and k not in ("comment", "description")}
    extra = [f"{k}={v}" for k, v in meta.items() if k not in MP4_TAGS]
    user_desc = meta.get("description")
    tags["comment"] = statement + (f" {meta['comment']}" if meta.get("comment") else "")
    tags["description"] = "; ".join([statement] + ([user_desc] if user_desc else []) + extra)
    return tags


def _tensor_frames(x: torch.Tensor) -> Iterator[np.ndarray]:
    """float ``[3, T, H, W]`` in [-1, 1] (or uint8 ``[T, H, W, 3]``) -> uint8 ``[H, W, 3]`` frames."""
    if x.dtype == torch.uint8:
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"uint8 frames must be [T, H, W, 3], got {tuple(x.shape)}")
        for t in range(x.shape[0]):
            yield x[t].cpu().numpy()
        return
    if x.ndim == 5 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 4 or x.shape[0] != 3:
        raise ValueError(f"float frames must be [3, T, H, W] in [-1, 1], got {tuple(x.shape)}")
    for t in range(x.shape[1]):
        f = ((x[:, t].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        yield f.permute(1, 2, 0).cpu().numpy()


def _frame_source(frames) -> tuple[Iterator[np.ndarray], int | None]:
    """Normalise the accepted frame inputs to an iterator of uint8 ``[H, W, 3]`` and the count if known."""
    if isinstance(frames, torch.Tensor):
        count = frames.shape[0] if frames.dtype == torch.uint8 else frames.shape[-3]
        return _tensor_frames(frames), int(count)
    if isinstance(frames, np.ndarray):
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"numpy frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
        return iter(frames), frames.shape[0]
    if isinstance(frames, Iterable):
        return iter(frames), None
    raise TypeError(f"frames must be a numpy array, a tensor or an iterable of frames, got {type(frames).__name__}")


def _even(frame: np.ndarray) -> np.ndarray:
    """yuv420p needs even sizes: replicate the last row/column once when a side is odd."""
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return frame


def _prepare_audio(audio, sample_rate: int) -> np.ndarray:
    """``[N]`` or ``[N, C]`` (C in 1, 2) float audio -> float32 ``[C, N]`` clipped to +-1."""
    a = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    if a.dtype.kind in "iu":  # integer PCM -> float full scale
        a = a.astype(np.float32) / float(np.iinfo(a.dtype).max)
    a = a.astype(np.float32, copy=False)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] not in (1, 2):
        raise ValueError(f"audio must be [N] or [N, C] with C = 1 or 2, got shape {a.shape}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    return np.ascontiguousarray(np.clip(a, -1.0, 1.0).T)


def write_video(
    path: str | os.PathLike,
    frames,
    fps: float = 25,
    audio: np.ndarray | torch.Tensor | None = None,
    sample_rate: int = SAMPLE_RATE,
    metadata: Mapping[str, Any] | None = None,
    png_dir: str | os.PathLike | None = None,
) -> Path:
    """Write `frames` as an MP4 at `path` (H.264 yuv420p, BT.709; driving `audio` muxed as AAC).

    frames: uint8 numpy ``[T, H, W, 3]``, float tensor ``[3, T, H, W]`` in [-1, 1] (the decoder's output), uint8
    tensor ``[T, H, W, 3]``, or any iterable of uint8 ``[H, W, 3]`` frames (streamed). Odd heights/widths are
    padded by one replicated row/column (yuv420p needs even sizes).
    audio: float ``[N]`` or ``[N, C]`` at `sample_rate` (C = 1 or 2), or None for a silent video. Both streams are
    trimmed to the shorter of the two (see the module docstring).
    metadata: extra tags; ``model`` names the model in the provenance statement; standard mp4 tags (``title``,
    ``artist``, ...) are written as such, anything else is appended to ``description``.
    png_dir: also write each kept frame as ``000000.png``, ``000001.png``, ... there, with provenance text chunks.

    Returns the final path. On any failure nothing is left at `path` (nor new files in `png_dir`).
    """
    import av

    path = Path(path)
    fps_q = Fraction(fps).limit_denominator(1001) if not isinstance(fps, Fraction) else fps
    if fps_q <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    source, _ = _frame_source(frames)
    pcm = _prepare_audio(audio, sample_rate) if audio is not None else None
    max_frames = None
    if pcm is not None:
        max_frames = int(pcm.shape[1] * fps_q // sample_rate)
        if max_frames < 1:
            raise HumoError(f"video {path}: the audio ({pcm.shape[1] / sample_rate:.3f} s) is shorter than one frame")
    tags = _metadata_tags(metadata)

    def audio_end(n: int) -> int:  # sample index where video frame n starts: floor(n * sr / fps)
        return int(n * sample_rate / fps_q)

    png_tmp = None
    if png_dir is not None:
        png_dir = Path(png_dir)
        png_dir.parent.mkdir(parents=True, exist_ok=True)
        png_tmp = Path(tempfile.mkdtemp(prefix=f".{png_dir.name}.", dir=png_dir.parent))
    try:
        with atomic_path(path, suffix=".mp4") as tmp:
            container = av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
            try:
                for k, v in tags.items():
                    container.metadata[k] = v
                first = next(source, None)
                if first is None:
                    raise HumoError(f"video {path}: no frames to write")
                first = np.asarray(first)
                if first.dtype != np.uint8 or first.ndim != 3 or first.shape[2] != 3:
                    raise ValueError(f"frames must be uint8 [H, W, 3], got {first.dtype} {first.shape}")
                shape = first.shape
                h2, w2 = _even(first).shape[:2]
                vstream = container.add_stream("libx264", rate=fps_q)
                vstream.width, vstream.height, vstream.pix_fmt = w2, h2, "yuv420p"
                vstream.options = {"crf": str(CRF)}
                cc = vstream.codec_context
                # Tag BT.709 limited range and convert with the same matrix, so players show the right colours.
                cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc = 1, 1, 1, 1
                astream = None
                if pcm is not None:
                    layout = "mono" if pcm.shape[0] == 1 else "stereo"
                    astream = container.add_stream("aac", rate=sample_rate, layout=layout)
                    astream.bit_rate = AUDIO_BITRATE

                written = 0
                audio_pos = 0
                frame_iter = _chain_first(first, source)
                for frame in frame_iter:
                    if max_frames is not None and written >= max_frames:
                        break
                    frame = np.asarray(frame)
                    if frame.shape != shape or frame.dtype != np.uint8:
                        raise ValueError(
                            f"frame {written} is {frame.dtype} {frame.shape}, expected uint8 {shape} like frame 0"
                        )
                    vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(_even(frame)), format="rgb24")
                    vf = vf.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
                    vf.pts = written
                    for packet in vstream.encode(vf):
                        container.mux(packet)
                    if png_tmp is not None:
                        _write_png(png_tmp / f"{written:06d}.png", frame, tags)
                    written += 1
                    if astream is not None:  # interleave: the audio of this frame right after it
                        audio_pos = _encode_audio(container, astream, pcm, audio_pos, audio_end(written), sample_rate)
                for packet in vstream.encode(None):
                    container.mux(packet)
                if astream is not None:
                    for packet in astream.encode(None):
                        container.mux(packet)
            finally:
                container.close()
            # Frames are put in place before the video is renamed, so a failure here leaves no video behind either.
            if png_tmp is not None:
                if not png_dir.exists():
                    os.chmod(png_tmp, usual_mode(0o777))
                    os.replace(png_tmp, png_dir)  # one rename: the folder appears complete or not at all
                else:
                    for f in sorted(png_tmp.iterdir()):
                        os.replace(f, png_dir / f.name)
    finally:
        if png_tmp is not None:
            shutil.rmtree(png_tmp, ignore_errors=True)
    return path


def _chain_first(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def _encode_audio(container, astream, pcm: np.ndarray, start: int, end: int, sample_rate: int) -> int:
    """Encode ``pcm[:, start:end]`` (clamped to the audio) in chunks; returns the new position."""
    import av

    end = min(end, pcm.shape[1])
    layout = "mono" if pcm.shape[0] == 1 else "stereo"
    pos = start
    while pos < end:
        stop = min(end, pos + AUDIO_CHUNK)
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, pos:stop]), format="fltp", layout=layout)
        af.sample_rate = sample_rate
        af.pts = pos
        af.time_base = Fraction(1, sample_rate)
        for packet in astream.encode(af):
            container.mux(packet)
        pos = stop
    return pos


def _write_png(path: Path, frame: np.ndarray, tags: Mapping[str, str]) -> None:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from humo import __version__

    info = PngInfo()
    info.add_text("Software", f"humo {__version__}")
    info.add_text("AI-Generated", "true")
    info.add_text("Comment", tags["comment"])
    info.add_text("Description", tags["description"])
    if "title" in tags:
        info.add_text("Title", tags["title"])
    Image.fromarray(frame, "RGB").save(path, pnginfo=info, compress_level=3)


def read_video(path: str | os.PathLike) -> tuple[np.ndarray, float, np.ndarray | None, int | None]:
    """Decode a video -> ``(frames uint8 [T, H, W, 3], fps, audio float32 [N] (mono) or None, sample_rate or None)``.

    Audio channels are averaged; the decoded audio is cut to the stream's recorded duration (dropping the AAC
    encoder's end padding).
    """
    import av

    p = require_file(path, "video")
    try:
        container = av.open(str(p))
    except av.error.FFmpegError as e:
        raise HumoError(f"video {p}: cannot open ({first_line(e)})") from None
    try:
        with container:
            if not container.streams.video:
                raise HumoError(f"video {p}: has no video stream")
            vs = container.streams.video[0]
            rate = vs.average_rate or vs.guessed_rate or vs.base_rate
            fps = float(rate) if rate else 0.0
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(vs)]
        audio, sr = None, None
        with av.open(str(p)) as container:
            if container.streams.audio:
                st = container.streams.audio[0]
                resampler = av.AudioResampler(format="fltp")
                chunks = []
                for f in container.decode(st):
                    for out in resampler.resample(f):
                        chunks.append(out.to_ndarray())
                        sr = out.sample_rate
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray())
                sr = sr or st.sample_rate
                audio = (
                    np.concatenate(chunks, axis=1).mean(axis=0).astype(np.float32)
                    if chunks
                    else np.zeros(0, np.float32)
                )
                if st.duration is not None and st.time_base is not None:
                    audio = audio[: int(round(float(st.duration * st.time_base) * sr))]
    except av.error.FFmpegError as e:  # a truncated or corrupt file fails mid-decode, not at open
        raise HumoError(f"video {p}: cannot decode ({first_line(e)})") from None
    video = np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)
    return video, fps, audio, sr


def stream_video(path: str | os.PathLike) -> tuple[float, Iterator[np.ndarray]]:
    """A video's frames one at a time, for work over videos too long to hold decoded: ``(fps, iterator of uint8
    [H, W, 3])``. The file closes when the iterator is exhausted or dropped."""
    import av

    p = require_file(path, "video")
    try:
        container = av.open(str(p))
    except av.error.FFmpegError as e:
        raise HumoError(f"video {p}: cannot open ({first_line(e)})") from None
    if not container.streams.video:
        container.close()
        raise HumoError(f"video {p}: has no video stream")
    vs = container.streams.video[0]
    rate = vs.average_rate or vs.guessed_rate or vs.base_rate

    def frames() -> Iterator[np.ndarray]:
        with container:
            try:
                for frame in container.decode(vs):
                    yield frame.to_ndarray(format="rgb24")
            except av.error.FFmpegError as e:
                raise HumoError(f"video {p}: cannot decode ({first_line(e)})") from None

    return (float(rate) if rate else 0.0), frames()


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The container-level tags of a video (``comment``, ``description``, ``title``, ``encoder``, ...)."""
    import av

    p = require_file(path, "video")
    try:
        with av.open(str(p)) as container:
            return dict(container.metadata)
    except av.error.FFmpegError as e:
        raise HumoError(f"video {p}: cannot open ({first_line(e)})") from None
