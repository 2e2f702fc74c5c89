"""Pre-computation: every expensive encoder output a training run needs, computed once and cached by content.

For each manifest sample: the VAE latent of the video, the VAE latent of each reference image, the text
embedding of the caption, the audio windows (Whisper features per latent frame), the face masks on the latent
grid and the pose keypoints (from the sample's pose file, or the proving ground's tracks in its face-mask .npz);
once per cache: the null texts (the negative prompt and the empty prompt) and the latent of an all-zero
video per clip shape (the 17B condition).

Cache layout::

    CACHE/objects/ab/abcdef...0123.safetensors   one tensor ("data") per object, named by its content key
    CACHE/index.json                             the samples of one manifest -> object keys (see `build_index`)

An object's key is the SHA-256 of the input's bytes (video, image, audio, mask file; the caption text), the
encoder's identity (a fingerprint of its weights and config) and every setting that changes the result
(frames, size, fps, dtype). A rerun, or a run over another manifest sharing files, finds the object and computes
nothing; changing an encoder or a setting changes the key, so stale results are never reused.

Shapes stored: video latent [16, F, h, w]; reference latent [16, 1, h, w]; text [L, D] (L = the prompt's token
count, the zeros beyond it are not stored); audio windows [F, 8, 5, C]; face mask [F, h, w] in [0, 1]; pose
[1 + 4(F-1), P, 18, 3] float32, the canonical joints (`humo.pose`) of the clip's video frames, x and y as fractions
of the frame (heatmaps are drawn at training time, at the size the DiT's pose guider takes); zero-video latent
[16, F, h, w].

**Continuations**: a long video is made in segments, each after the first a clip whose first `MOTION_FRAMES`
frames are the last ones of the segment before (`humo.pipeline`). Every cached clip trains that as it is: its
first two latent frames read as the motion frames (`humo.data.loader.CachedDataset`), nothing more is cached.

**Reference crops** (`reference_crops=N`, `humo precompute --reference-crops N`): beside each whole reference, N
variants of each crop kind of `humo.reference_crops` (head, upper body, clothing; the first the rule's box, the
others jittered), each prepared as an inference reference and encoded [16, 1, h, w]. The sample's entry lists
them per reference, ``reference_crops: [{kind: [key, ...]}, ...]`` (null when not asked for); training draws one
variant per reference (`humo.data.loader.CachedDataset`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from humo.constants import round_down_frames
from humo.errors import HumoError, atomic_path, require_file

CACHE_VERSION = 1
OBJECTS_DIR = "objects"
DEFAULT_INDEX = "index.json"
DEFAULT_FPS = 25.0
# Latent frames of room after a clip in its zero-video latent: the 17B's null reference slots (at most this many).
ZERO_VIDEO_REFERENCE_SLOTS = 4
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# ----------------------------------------------------------------------------------------------------------------
# Content keys


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def module_fingerprint(module, config: Any = None, samples_per_tensor: int = 4096) -> str:
    """A short identity of a network (anything with a `state_dict()`): its config, every tensor's name, shape and
    dtype, and a strided sample of its values. Cheap on billion-parameter encoders, and any retraining or swap of
    weights changes it."""
    h = hashlib.sha256()
    h.update(repr(config).encode())
    for name, t in sorted(module.state_dict().items()):
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        flat = t.detach().reshape(-1)
        step = max(1, flat.numel() // samples_per_tensor)
        h.update(flat[::step].float().cpu().numpy().tobytes())
    return h.hexdigest()[:32]


def _config_dict(config) -> dict:
    """A transformers config as a dict without the folder it was read from (`_name_or_path`): the same encoder
    named by a relative or an absolute path, or copied elsewhere, has one identity."""
    return {k: v for k, v in config.to_dict().items() if k != "_name_or_path"}


def content_key(*parts: Any) -> str:
    """SHA-256 of the JSON of `parts` (strings, numbers, lists): an object's name in the cache."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


# ----------------------------------------------------------------------------------------------------------------
# The object store


class ObjectStore:
    """Content-addressed tensors: ``root/objects/<key[:2]>/<key>.safetensors`` holding one tensor named "data"."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / OBJECTS_DIR / key[:2] / f"{key}.safetensors"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def put(self, key: str, tensor: torch.Tensor, meta: dict[str, str] | None = None) -> None:
        from safetensors.torch import save_file

        with atomic_path(self.path(key)) as tmp:
            save_file({"data": tensor.detach().cpu().contiguous()}, str(tmp), metadata={"format": "pt", **(meta or {})})

    def get(self, key: str) -> torch.Tensor:
        from safetensors.torch import load_file

        path = self.path(key)
        if not path.is_file():
            raise HumoError(f"cache {self.root}: object {key} is missing (rerun humo precompute)")
        return load_file(str(path))["data"]

    def shape(self, key: str) -> list[int]:
        """The stored tensor's shape, read from the file header only."""
        from safetensors import safe_open

        with safe_open(str(self.path(key)), framework="pt") as f:
            return list(f.get_slice("data").get_shape())


# ----------------------------------------------------------------------------------------------------------------
# Encoders


@dataclass
class Encoders:
    """The three frozen encoders. `audio` may be None when no sample has audio."""

    vae: Any  # humo.conditions.vae.WanVAE
    text: Any  # humo.conditions.text.TextEncoder
    audio: Any = None  # humo.conditions.audio.AudioEncoder
    _ids: dict[str, str] = field(default_factory=dict, repr=False)

    def identity(self, which: str) -> str:
        if which not in self._ids:
            enc = getattr(self, which)
            if which == "vae":
                # A WanVAE fingerprints its diffusers module; the linear codec is its own state dict.
                self._ids[which] = module_fingerprint(getattr(enc, "model", enc), enc.config)
            elif which == "text":
                self._ids[which] = module_fingerprint(enc.model, (_config_dict(enc.model.config), enc.text_len))
            else:
                cfg = _config_dict(enc.encoder.config)
                self._ids[which] = module_fingerprint(enc.encoder, (cfg, enc.feature_extractor.to_json_string()))
        return self._ids[which]


# ----------------------------------------------------------------------------------------------------------------
# Per-input computations


def clip_frames(available: int, limit: int | None) -> int:
    """The longest 4k+1 frame count <= min(available, limit)."""
    n = min(available, limit) if limit else available
    if n < 1:
        raise ValueError("no frames")
    return round_down_frames(n)


def prepare_video(frames: np.ndarray, num: int, height: int | None, width: int | None, what: str) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float [1, 3, num, H', W'] in [-1, 1]: the first `num` frames, resized (bilinear,
    antialiased) when a size is given. H', W' must be multiples of 8 (every VAE's spatial stride divides 8)."""
    x = torch.from_numpy(np.ascontiguousarray(frames[:num])).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    h, w = height or x.shape[2], width or x.shape[3]
    if h % 8 or w % 8:
        raise HumoError(f"{what}: frame size {w}x{h} is not a multiple of 8; pass --height and --width")
    if (h, w) != tuple(x.shape[2:]):
        x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False).clamp(-1, 1)
    return x.permute(1, 0, 2, 3).unsqueeze(0)


def read_face_masks(path: Path) -> np.ndarray:
    """A face-mask ``.npz`` -> [T, H, W] (the array named "masks" or "mask", else the only array)."""
    with np.load(path) as z:
        names = list(z.keys())
        name = next((n for n in ("masks", "mask", "face_masks") if n in names), names[0] if len(names) == 1 else None)
        if name is None:
            raise HumoError(f"face masks {path}: several arrays ({', '.join(names)}) and none is named 'masks'")
        m = z[name]
    if m.ndim != 3:
        raise HumoError(f"face masks {path}: expected [T, H, W], got shape {list(m.shape)}")
    return m


@dataclass
class PrecomputeStats:
    """Counts per object kind of what was computed now and what the cache already held."""

    samples: int = 0
    computed: Counter = field(default_factory=Counter)
    reused: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        kinds = sorted(set(self.computed) | set(self.reused))
        parts = [f"{k}: {self.computed[k]} computed, {self.reused[k]} reused" for k in kinds]
        return f"{self.samples} samples; " + "; ".join(parts)


class Precomputer:
    """Fill a cache for a list of manifest samples (see the module docstring)."""

    def __init__(
        self,
        out: str | os.PathLike,
        encoders: Encoders,
        *,
        frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        dtype: torch.dtype = torch.float32,
        negative_prompt: str | None = None,
        reference_crops: int = 0,
    ):
        if (height is None) != (width is None):
            raise HumoError("precompute: give both --height and --width, or neither")
        self.store = ObjectStore(out)
        self.enc = encoders
        self.frames, self.height, self.width = frames, height, width
        self.dtype = dtype
        self.dtype_name = str(dtype).removeprefix("torch.")
        if negative_prompt is None:
            from humo.conditions.text import WAN_NEGATIVE_PROMPT

            negative_prompt = WAN_NEGATIVE_PROMPT
        self.negative_prompt = negative_prompt
        if reference_crops < 0:
            raise HumoError(f"precompute: --reference-crops {reference_crops}: must be >= 0")
        self.crops = reference_crops
        self.stats = PrecomputeStats()
        # The last clip's decoded frames and audio features, decoded and encoded once for the calls that read them.
        self._last_frames: tuple[Path, np.ndarray] | None = None
        self._last_features: tuple[Path, float, torch.Tensor] | None = None
        # Each input's SHA-256, read once: one clip's files feed several keys (a face-mask file: the mask, the
        # pose tracks, the person masks).
        self._digests: dict[Path, str] = {}

    # -- helpers -------------------------------------------------------------------------------------------
    def _frames(self, path: Path) -> np.ndarray:
        """The video's frames uint8 [T, H, W, 3], decoded once for consecutive calls on the same file."""
        if self._last_frames is None or self._last_frames[0] != path:
            from humo.media.video import read_video

            self._last_frames = (path, read_video(path)[0])
        return self._last_frames[1]

    def _digest(self, path: Path) -> str:
        """`file_digest` of an input, computed once per precompute run."""
        if path not in self._digests:
            self._digests[path] = file_digest(path)
        return self._digests[path]

    def _features(self, path: Path, fps: float) -> torch.Tensor:
        """The audio encoder's per-video-frame features of the file, encoded once for consecutive calls."""
        if self._last_features is None or self._last_features[:2] != (path, fps):
            from humo.media.audio import load_audio

            samples = load_audio(path, min_seconds=0)
            self._last_features = (path, fps, self.enc.audio.features(samples, fps=fps))
        return self._last_features[2]

    def _cached(self, kind: str, key: str, compute, dtype: torch.dtype | None = None) -> str:
        if self.store.has(key):
            self.stats.reused[kind] += 1
        else:
            self.store.put(key, compute().to(dtype or self.dtype), {"kind": kind})
            self.stats.computed[kind] += 1
        return key

    def text(self, caption: str) -> str:
        key = content_key("text", caption, self.enc.identity("text"), self.enc.text.text_len, self.dtype_name)

        def compute():
            emb, lengths = self.enc.text.encode([caption], return_lengths=True)
            return emb[0, : int(lengths[0])].float()

        return self._cached("text", key, compute)

    def video(self, path: Path, what: str) -> str:
        """The latent of the clip's first frames (1 + 4k: as many as the clip and the `frames` limit allow), the
        first encoded alone as a VAE's first frame."""
        settings = [self.frames, self.height, self.width, self.dtype_name]
        key = content_key("video", self._digest(path), self.enc.identity("vae"), settings)

        def compute():
            frames = self._frames(path)
            if frames.shape[0] == 0:
                raise HumoError(f"{what}: video {path} has no frames")
            num = clip_frames(frames.shape[0], self.frames)
            video = prepare_video(frames, num, self.height, self.width, f"{what}: video {path}")
            return self.enc.vae.encode(video)[0].float()

        return self._cached("video", key, compute)

    def reference(self, path: Path, height: int, width: int) -> str:
        key = content_key("reference", self._digest(path), self.enc.identity("vae"), height, width, self.dtype_name)

        def compute():
            from humo.media.image import load_references

            return self.enc.vae.encode_images(load_references([path], height, width))[0].float()

        return self._cached("reference", key, compute)

    def reference_crops(self, path: Path, meta, k: int, height: int, width: int) -> dict[str, list[str]]:
        """The cached crops of reference `k` (`humo.reference_crops`): {kind: [key of each variant]}, the kinds too
        small in this image left out. Each crop is prepared as an inference reference is, then encoded."""
        from humo.media.image import load_image
        from humo.reference_crops import crop_boxes, load_reference_crop, reference_geometry

        digest = self._digest(path)
        w, h = load_image(path).size
        face, person, _ = reference_geometry(meta, k, w, h)
        boxes = crop_boxes(face, person, w, h, self.crops, seed=digest)
        out: dict[str, list[str]] = {}
        for kind, variants in boxes.items():
            out[kind] = []
            for box in variants:
                settings = [height, width, self.dtype_name, kind, list(box)]
                key = content_key("reference-crop", digest, self.enc.identity("vae"), *settings)

                def compute(box=box):
                    pixels = load_reference_crop(path, box, height, width)[None]
                    return self.enc.vae.encode_images(pixels)[0].float()

                out[kind].append(self._cached("reference_crop", key, compute))
        return out

    def audio(self, path: Path, fps: float, num_latent: int, what: str) -> str:
        """Audio windows of the clip's first `num_latent` latent frames (`audio_windows`)."""
        if self.enc.audio is None:
            raise HumoError(f"{what}: has audio {path} but no audio encoder was given (--audio)")
        key = content_key("audio", self._digest(path), self.enc.identity("audio"), fps, num_latent, self.dtype_name)

        def compute():
            from humo.conditions.audio import audio_windows

            return audio_windows(self._features(path, fps), num_latent).float()

        return self._cached("audio", key, compute)

    def mask(self, path: Path, grid: tuple[int, int, int], what: str) -> str:
        """Face masks of the clip's video frames on the latent grid (f, h, w)."""
        f, h, w = grid
        key = content_key("mask", self._digest(path), f, h, w, self.dtype_name)

        def compute():
            from humo.mask_head import mask_to_latent_grid

            m = read_face_masks(path)
            need = 4 * (f - 1) + 1
            if m.shape[0] < need:
                raise HumoError(f"{what}: face masks {path} cover {m.shape[0]} frames, the clip has {need}")
            return mask_to_latent_grid(torch.from_numpy(m[:need].astype(np.float32))[None], (h, w))[0]

        return self._cached("mask", key, compute)

    def person_masks(self, path: Path, grid: tuple[int, int, int], persons: int, what: str) -> str | None:
        """Each person's whole region (the face-mask .npz's ``person_masks`` [P, T, H, W], InterActHuman's target)
        on the latent grid (f, h, w): [P, f, h, w] in [0, 1], or None when the file has none."""
        with np.load(path) as z:
            if "person_masks" not in z:
                return None
        f, h, w = grid
        key = content_key("person-masks", self._digest(path), f, h, w, self.dtype_name)

        def compute():
            from humo.mask_head import mask_to_latent_grid

            with np.load(path) as z:
                m = z["person_masks"]
            need = 4 * (f - 1) + 1
            if m.ndim != 4 or m.shape[0] != persons or m.shape[1] < need:
                raise HumoError(
                    f"{what}: person masks {path} have shape {list(m.shape)}; expected [{persons}, >= {need}, H, W] "
                    "(one per reference image, every frame of the clip)"
                )
            return mask_to_latent_grid(torch.from_numpy(m[:, :need].astype(np.float32)), (h, w))

        return self._cached("person-masks", key, compute)

    def person_valid(self, path: Path, frames: int, persons: int, what: str) -> str | None:
        """Which latent frames of each person have a usable mask: the face-mask .npz's optional ``person_valid``
        [P, T] (a video frame where a person's region could not be told, e.g. a lost track) on the `frames` latent
        frames, a latent frame valid when every video frame it encodes is: [P, frames] bool stored as 0/1, or None
        when the file has none (every frame valid). InterActHuman drops the invalid frames from the mask loss."""
        with np.load(path) as z:
            if "person_valid" not in z:
                return None
        key = content_key("person-valid", self._digest(path), frames)

        def compute():
            with np.load(path) as z:
                v = np.asarray(z["person_valid"]).astype(bool)
            need = 4 * (frames - 1) + 1
            if v.ndim != 2 or v.shape[0] != persons or v.shape[1] < need:
                raise HumoError(
                    f"{what}: person_valid in {path} has shape {list(v.shape)}; expected [{persons}, >= {need}] "
                    "(one row per reference image, a flag per frame of the clip)"
                )
            first, rest = v[:, :1], v[:, 1:need].reshape(persons, frames - 1, 4).all(-1)  # the VAE's 1 + 4k frames
            return torch.from_numpy(np.concatenate([first, rest], axis=1)).float()

        return self._cached("person-valid", key, compute, torch.float32)

    def pose(self, s, resolve, frames: int, fps: float, size: tuple[int, int], what: str) -> str | None:
        """The sample's pose keypoints for its first `frames` video frames, or None when it has none: its pose file
        (placed into the clip's `size` (height, width) frame as `humo generate` places one), else the ``keypoints``
        of the proving ground's face-mask .npz (pixels of the clip). Kept in float32 whatever the cache's dtype: a
        bf16 coordinate would be off by up to 1/256 of the frame."""
        from humo.pose import check_covers, from_proving_ground, load_pose

        if getattr(s, "pose", None):
            path = require_file(resolve(s.pose), f"{what}: pose file")
            key = content_key("pose", self._digest(path), frames, fps, size)

            def compute():
                track = load_pose(path)
                check_covers(track, frames, path, fps, f"{what}: ")
                return torch.from_numpy(track.fit(*size).at_fps(frames, fps).points)

            return self._cached("pose", key, compute, torch.float32)
        masks = getattr(s, "face_masks", None)
        if not masks:
            return None
        path = resolve(masks)
        with np.load(path) as z:
            if "keypoints" not in z:
                return None
        key = content_key("pose-tracks", self._digest(path), frames, fps, size)

        def compute():
            with np.load(path) as z:
                kp = z["keypoints"]
            names = (getattr(s, "meta", None) or {}).get("keypoint_names")
            track = from_proving_ground(kp, size[1], size[0], fps, names)
            if track.frames < frames:
                raise HumoError(f"{what}: pose tracks in {path} cover {track.frames} frames, the clip has {frames}")
            return torch.from_numpy(track.normalise().points[:frames])

        return self._cached("pose", key, compute, torch.float32)

    def persons(self, s, resolve, refs, audio_key, masks, fps: float, grid, what: str) -> dict | None:
        """The sample's persons (InterActHuman): each one's audio windows and their regions on the latent grid, when
        its face-mask .npz has ``person_masks`` (one per reference image), and which of their latent frames have a
        usable mask when it has ``person_valid``. Each person's audio is their own track (`person_audio`), or, for
        one person, the clip's audio. None without person masks."""
        masks_path = resolve(masks) if masks else None
        if masks_path is None or not refs:
            return None
        mask_key = self.person_masks(masks_path, grid, len(refs), what)
        if mask_key is None:
            return None
        tracks = list(getattr(s, "person_audio", None) or [])
        if tracks:
            audio = [self.audio(require_file(resolve(t), f"{what}: person audio"), fps, grid[0], what) for t in tracks]
        elif len(refs) == 1:
            audio = [audio_key]
        else:
            raise HumoError(f"{what}: {len(refs)} persons but no 'person_audio' (each one's own track)")
        valid = self.person_valid(masks_path, grid[0], len(refs), what)
        return {"audio": audio, "masks": mask_key, **({"valid": valid} if valid else {})}

    def zero_video(self, frames: int, height: int, width: int) -> str:
        key = content_key("zero_video", self.enc.identity("vae"), frames, height, width, self.dtype_name)
        return self._cached("zero_video", key, lambda: self.enc.vae.zero_video_latent(frames, height, width)[0])

    # -- one sample ----------------------------------------------------------------------------------------
    def sample(self, s, base: Path | None) -> dict[str, Any]:
        """One manifest sample -> its index entry."""

        def resolve(p) -> Path:
            # Manifest paths are relative to the manifest's folder: `base`, else the sample's own root.
            p = Path(p)
            root = base if base is not None else getattr(s, "root", None)
            return p if p.is_absolute() or root is None else root / p

        sid = str(getattr(s, "id", ""))
        what = f"sample {sid}"
        video_path = require_file(resolve(s.video), f"{what}: video")
        video_key = self.video(video_path, what)
        c, f, h, w = self.store.shape(video_key)
        stride = self.enc.vae.spatial_stride
        height, width = stride * h, stride * w
        fps = float(getattr(s, "fps", None) or DEFAULT_FPS)
        ref_paths = [require_file(resolve(r), f"{what}: reference") for r in (getattr(s, "ref_images", None) or [])]
        refs = [self.reference(p, height, width) for p in ref_paths]
        meta = getattr(s, "meta", None)
        crops = None
        if self.crops:
            crops = [self.reference_crops(p, meta, k, height, width) for k, p in enumerate(ref_paths)]
        audio = getattr(s, "audio", None)
        audio_key = self.audio(require_file(resolve(audio), f"{what}: audio"), fps, f, what) if audio else None
        masks = getattr(s, "face_masks", None)
        mask_key = self.mask(require_file(resolve(masks), f"{what}: face masks"), (f, h, w), what) if masks else None
        # the clip's own frame size (the manifest's, else the encoded one: a resize keeps fractions of the frame)
        size = (s.height, s.width) if getattr(s, "height", 0) and getattr(s, "width", 0) else (height, width)
        pose_key = self.pose(s, resolve, 4 * (f - 1) + 1, fps, size, what)
        persons = self.persons(s, resolve, refs, audio_key, masks, fps, (f, h, w), what)
        self.stats.samples += 1
        return {
            "id": sid,
            "split": getattr(s, "split", None),
            "caption": s.caption,
            "fps": fps,
            "shape": [c, f, h, w],
            "video": video_key,
            "text": self.text(s.caption),
            "references": refs,
            "reference_crops": crops,
            "audio": audio_key,
            "mask": mask_key,
            "pose": pose_key,
            "persons": persons,
            # the latent of a zero clip with room for the reference slots, as the release's precomputed one has
            "zero_video": self.zero_video(4 * (f - 1) + 1 + 4 * ZERO_VIDEO_REFERENCE_SLOTS, height, width),
        }

    def run(self, samples: Sequence, base: Path | None = None, progress: bool = False) -> dict[str, Any]:
        """All samples -> the index (a dict, see `build_index`)."""
        from tqdm import tqdm

        entries = [self.sample(s, base) for s in tqdm(samples, desc="precompute", disable=not progress)]
        null = {"negative": self.text(self.negative_prompt), "empty": self.text("")}
        return build_index(entries, null, self)


def build_index(entries: list[dict], null_text: dict[str, str], pre: Precomputer) -> dict[str, Any]:
    """The index: version, encoder identities, settings, the null-text keys, tensor dims and the samples."""
    dims: dict[str, Any] = {}
    if entries:
        dims["latent_channels"] = entries[0]["shape"][0]
    dims["text_dim"] = pre.store.shape(null_text["negative"])[-1]
    audio_key = next((e["audio"] for e in entries if e["audio"]), None)
    if audio_key:
        dims["audio_window"] = pre.store.shape(audio_key)[1:]  # [8, 5, C]
    return {
        "version": CACHE_VERSION,
        "encoders": {k: pre.enc.identity(k) for k in ("vae", "text", "audio") if getattr(pre.enc, k) is not None},
        "settings": {
            "frames": pre.frames,
            "height": pre.height,
            "width": pre.width,
            "dtype": pre.dtype_name,
            "reference_crops": pre.crops,
        },  # fmt: skip
        "negative_prompt": pre.negative_prompt,
        "null_text": null_text,
        "dims": dims,
        "samples": entries,
    }


def precompute(
    samples: Sequence,
    out: str | os.PathLike,
    encoders: Encoders,
    *,
    index: str = DEFAULT_INDEX,
    base_dir: str | os.PathLike | None = None,
    frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    dtype: torch.dtype = torch.float32,
    negative_prompt: str | None = None,
    progress: bool = False,
    reference_crops: int = 0,
) -> PrecomputeStats:
    """Encode `samples` (manifest Samples) into the cache at `out` and write its index (atomically).

    `samples`: `humo.data.manifest.Sample`s; relative paths are taken from `base_dir`, else from each sample's
    `root` (the manifest's folder, set by `read_manifest`). frames: the most video
    frames per clip (rounded down to 4k+1; default all); height/width: resize the frames (default: as stored);
    reference_crops: N crops of
    each kind (head, upper body, clothing) per reference beside the whole image (module docstring).
    """
    ids = [str(getattr(s, "id", "")) for s in samples]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise HumoError(f"manifest: sample id(s) repeated: {', '.join(dup[:8])}")
    if reference_crops:  # every row's boxes before the first encoding
        from humo.reference_crops import check_manifest_boxes

        check_manifest_boxes(samples)
    pre = Precomputer(
        out,
        encoders,
        frames=frames,
        height=height,
        width=width,
        dtype=dtype,
        negative_prompt=negative_prompt,
        reference_crops=reference_crops,
    )
    with torch.inference_mode():
        idx = pre.run(samples, Path(base_dir) if base_dir is not None else None, progress=progress)
    with atomic_path(Path(out) / index) as tmp:
        tmp.write_text(json.dumps(idx, indent=1, ensure_ascii=False))
    return pre.stats


# ----------------------------------------------------------------------------------------------------------------
# Loading encoders from paths (the CLI)


def load_encoders(
    vae: str,
    text: str,
    audio: str | None = None,
    *,
    tokenizer: str | None = None,
    device: str = "cpu",
    text_dtype: torch.dtype = torch.float32,
) -> Encoders:
    """Encoders from local files: the VAE as a diffusers folder, a linear codec folder (the proving ground's) or
    an official ``Wan2.1_VAE.pth``; the text encoder as a transformers folder or the official ``.pth``
    (+ `tokenizer` folder); Whisper as a HF folder."""
    from humo.conditions.audio import AudioEncoder
    from humo.conditions.text import TextEncoder
    from humo.conditions.vae import WanVAE, load_vae_folder

    vp = Path(vae)
    if vp.is_dir():
        v = load_vae_folder(vp, device=device)
    else:
        v = WanVAE.from_official(require_file(vp, "VAE weights"), device=device)
    tp = Path(text)
    if tp.is_dir():
        t = TextEncoder.from_pretrained(tp, dtype=text_dtype, device=device, tokenizer_dir=tokenizer)
    else:
        if tokenizer is None:
            raise HumoError(f"text encoder {tp}: an official .pth needs --tokenizer (the umt5-xxl tokenizer folder)")
        t = TextEncoder.from_official(
            require_file(tp, "text encoder weights"), tokenizer, dtype=text_dtype, device=device
        )
    a = AudioEncoder.from_pretrained(audio, device=device) if audio else None
    return Encoders(vae=v, text=t, audio=a)
