"""Write a proving-ground dataset: clips (MP4), speech (WAV), reference images (PNG), face masks and pose tracks
(NPZ), and the manifest (`humo.data.manifest`) that ties them together with every factor's ground truth.

Each clip is drawn from its own RNG seeded by (seed, split, multi, index), so a dataset is the same whatever the
number of workers, and clip i of a seed is the same clip in a 100-clip and a 5000-clip dataset.

Layout of OUT:
    manifest.jsonl         one sample per clip (see docs/data-format.md)
    synth.json             the settings that wrote it
    clips/<id>.mp4         lossless H.264 video (AAC audio too with mux_audio)
    clips/<id>.wav         16 kHz mono speech (the mix of all speakers)
    clips/<id>_c<k>.wav    each speaker's own track (multi-person clips)
    clips/<id>_ref<k>.png  reference image of character k (drawn apart from the clip, or with references="same-shot"
                           the character as it stands in the clip)
    clips/<id>.npz         masks [T, H, W] uint8 (union of faces), char_masks [C, T, H, W] uint8 (multi-person),
                           keypoints [C, T, K, 3] float32 (x, y, visible), mouth / roundness / envelope [C, T],
                           person_masks [C, T, H, W] uint8 (each character's whole drawn region, occlusion-aware)
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from humo.data.manifest import Sample, write_manifest
from humo.errors import HumoError, atomic_path
from humo.media.audio import write_wav
from humo.proving_ground import render, speech, world

WORLD_VERSION = "humo-proving-ground/1"
VAL_MODULUS = 20  # one training clip in 20 goes to the val split


REFERENCE_KINDS = ("apart", "same-shot")


def same_shot_reference(spec, ch, width: int, height: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Character `ch` of clip `spec` still in its own clip (scene, background pattern, place and size), facing the
    camera with its mouth shut, without action or object: (image, face mask, the `render_reference` parameters
    that draw it)."""
    params = {"scene": spec.scene, "scale": float(ch.scale), "x": float(ch.x), "y": float(ch.y), "yaw": 0.0,
              "opening": 0.0, "roundness": 0.0, "gain": 1.0, "gx": 0.0, "gy": 0.0,
              "pattern_seed": int(spec.pattern_seed)}  # fmt: skip
    return (*render.render_still(ch.identity, width=width, height=height, **params), params)


@dataclass
class SynthConfig:
    out: Path
    clips: int
    width: int = 64
    height: int = 64
    frames: tuple[int, int] = (33, 97)
    fps: float = 25.0
    seed: int = 0
    split: str = "train"  # "train" (train + val samples, training identities) or "heldout" (test, held-out ids)
    multi: bool = False
    workers: int = 2
    mux_audio: bool = False
    # "apart": each reference drawn apart from its clip (another scene, place, size, head turn, lighting: copying it
    # cannot satisfy the prompt, the paper's cross-pair references); "same-shot": the character as it stands in
    # its own clip (its scene, place and size, facing the camera, mouth shut, no action or object), as references
    # cut from the training video itself are, the data that teaches a model to copy-paste. The clips themselves
    # are the same either way (the same random stream).
    references: str = "apart"

    def validate(self) -> None:
        if self.clips < 1:
            raise HumoError(f"--clips must be at least 1, got {self.clips}")
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise HumoError(f"--size {self.width}x{self.height}: width and height must be even and at least 16")
        lo, hi = self.frames
        if not world.frame_lengths(lo, hi):
            raise HumoError(f"--frames {lo}:{hi}: no length of the form 4k+1 in that range")
        if self.split not in ("train", "heldout"):
            raise HumoError(f"--split must be 'train' or 'heldout', got {self.split!r}")
        if self.workers < 1:
            raise HumoError(f"--workers must be at least 1, got {self.workers}")
        if self.references not in REFERENCE_KINDS:
            raise HumoError(f"--references must be one of {', '.join(REFERENCE_KINDS)}, got {self.references!r}")


def clip_rng(cfg: SynthConfig, index: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, 1 if cfg.split == "heldout" else 0, int(cfg.multi), index])


def sample_id(cfg: SynthConfig, index: int) -> str:
    return f"pg{'m' if cfg.multi else ''}-{'heldout' if cfg.split == 'heldout' else 'train'}-s{cfg.seed}-{index:06d}"


def _split_of(cfg: SynthConfig, sid: str) -> str:
    if cfg.split == "heldout":
        return "test"
    h = int.from_bytes(hashlib.sha256(sid.encode()).digest()[:4], "little")
    return "val" if h % VAL_MODULUS == 0 else "train"


def _r(x: np.ndarray, nd: int = 4) -> list[float]:
    return [round(float(v), nd) for v in np.asarray(x).ravel()]


def clip_content(cfg: SynthConfig, index: int) -> tuple[np.random.Generator, world.ClipSpec, list[speech.SpeechTrack]]:
    """What clip `index` shows, drawn from its RNG: (the RNG, which draws the reference images next; the clip's
    spec; one speech track per character). Rendering it with other mouth openings gives controlled variants of a
    dataset's clip (the per-speaker metric's validation renders every mouth to the mix)."""
    rng = clip_rng(cfg, index)
    n_chars = int(rng.integers(2, 4)) if cfg.multi else 1
    spec = world.sample_clip_spec(
        rng,
        width=cfg.width,
        height=cfg.height,
        frames=cfg.frames,
        fps=cfg.fps,
        heldout=cfg.split == "heldout",
        num_characters=n_chars,
    )
    T = spec.num_frames
    tracks = [speech.speech_track(rng, ch.speaking, spec.duration, T, spec.fps, ch.pitch) for ch in spec.characters]
    return rng, spec, tracks


def make_sample(cfg: SynthConfig, index: int) -> Sample:
    """Generate clip `index`, write its files under cfg.out/clips and return its manifest entry."""
    rng, spec, tracks = clip_content(cfg, index)
    n_chars, T = len(spec.characters), spec.num_frames
    clip = render.render_clip(spec, [t.envelope for t in tracks], [t.roundness for t in tracks])
    mix = np.clip(np.sum([t.wave for t in tracks], axis=0), -1, 1).astype(np.float32)
    refs = [render.render_reference(ch.identity, rng, cfg.width, cfg.height) for ch in spec.characters]
    if cfg.references == "same-shot":  # drawn after the apart ones, so the rest of the stream is unchanged
        refs = [same_shot_reference(spec, ch, cfg.width, cfg.height) for ch in spec.characters]

    sid = sample_id(cfg, index)
    d = Path(cfg.out) / "clips"
    rel = lambda name: f"clips/{name}"
    _write_mp4(d / f"{sid}.mp4", clip.frames, spec.fps, mix if cfg.mux_audio else None)
    write_wav(d / f"{sid}.wav", mix, speech.SAMPLE_RATE)
    char_audio = [None] * n_chars
    if n_chars > 1:
        for k, t in enumerate(tracks):
            write_wav(d / f"{sid}_c{k}.wav", t.wave, speech.SAMPLE_RATE)
            char_audio[k] = rel(f"{sid}_c{k}.wav")
    ref_paths = []
    for k, (img, _, _) in enumerate(refs):
        _write_png(d / f"{sid}_ref{k}.png", img)
        ref_paths.append(rel(f"{sid}_ref{k}.png"))
    masks = clip.face_masks.any(0)
    arrays = {
        "masks": masks.astype(np.uint8),
        "keypoints": clip.keypoints,
        "mouth": np.stack([t.envelope for t in tracks]).astype(np.float32),
        "roundness": np.stack([t.roundness for t in tracks]).astype(np.float32),
        "envelope": np.stack([t.envelope for t in tracks]).astype(np.float32),
    }
    if n_chars > 1:
        arrays["char_masks"] = clip.face_masks.astype(np.uint8)
    # written last so that the arrays before it keep their bytes and order in the archive
    arrays["person_masks"] = clip.person_masks.astype(np.uint8)
    _write_npz(d / f"{sid}.npz", arrays)

    chars = []
    for k, (ch, tr, (_, ref_face, ref_params)) in enumerate(zip(spec.characters, tracks, refs)):
        chars.append(
            {
                "identity": ch.identity.as_dict(),
                "identity_key": ch.identity.key(),
                "action": ch.action,
                "object": ch.object,
                "position": [round(ch.x, 4), round(ch.y, 4)],
                "scale": round(ch.scale, 4),
                "pitch": round(ch.pitch, 2),
                "speaking": [[round(a, 3), round(b, 3)] for a, b in ch.speaking],
                "syllables": [
                    [round(s.start, 4), round(s.duration, 4), s.vowel, round(s.peak, 4)] for s in tr.syllables
                ],
                # the mouth opening IS the per-frame envelope (the renderer draws it so)
                "mouth_opening": _r(tr.envelope),
                "roundness": _r(tr.roundness),
                "audio": char_audio[k],
                "ref_image": ref_paths[k],
                "reference": ref_params,
                # the reference image's face and person boxes (pixels), where training's reference crops come from
                "reference_boxes": render.reference_boxes(ch.identity, ref_params, ref_face),
            }
        )
    first = spec.characters[0]
    meta = {
        "world": WORLD_VERSION,
        "seed": cfg.seed,
        "index": index,
        "heldout": cfg.split == "heldout",
        "scene": spec.scene,
        "action": first.action,
        "object": first.object,
        "identity": first.identity.as_dict(),
        "num_characters": n_chars,
        "envelope": _r(np.max([t.envelope for t in tracks], axis=0)),
        "mouth_opening": _r(tracks[0].envelope),
        "characters": chars,
        "tracks": rel(f"{sid}.npz"),
        "keypoint_names": list(render.KEYPOINTS),
        "pattern_seed": spec.pattern_seed,
    }
    return Sample(
        id=sid,
        video=rel(f"{sid}.mp4"),
        caption=spec.caption,
        ref_images=ref_paths,
        audio=rel(f"{sid}.wav"),
        face_masks=rel(f"{sid}.npz"),
        split=_split_of(cfg, sid),
        fps=spec.fps,
        num_frames=T,
        height=cfg.height,
        width=cfg.width,
        meta=meta,
        # several speakers: each one's own track, in the order of ref_images (training's per-person audio)
        person_audio=[a for a in char_audio if a is not None],
    )


def _write_mp4(path: Path, frames: np.ndarray, fps: float, audio: np.ndarray | None) -> None:
    from humo.proving_ground._av import write_mp4

    write_mp4(path, frames, fps, audio, speech.SAMPLE_RATE)


def _write_png(path: Path, img: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def _worker(args: tuple[SynthConfig, int]) -> Sample:
    return make_sample(*args)


def synthesize_dataset(cfg: SynthConfig, progress: bool = True) -> tuple[Path, float]:
    """Write cfg.clips clips and the manifest under cfg.out; returns (manifest path, seconds taken)."""
    cfg.validate()
    out = Path(cfg.out)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    jobs = [(cfg, i) for i in range(cfg.clips)]
    samples: list[Sample] = []
    step = max(1, cfg.clips // 10)
    if cfg.workers == 1 or cfg.clips == 1:
        it = map(_worker, jobs)
        pool = None
    else:
        # fork where available: the workers inherit the imported modules instead of re-importing them
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        pool = ctx.Pool(min(cfg.workers, cfg.clips))
        it = pool.imap(_worker, jobs, chunksize=4)
    try:
        for n, s in enumerate(it, 1):
            samples.append(s)
            if progress and (n % step == 0 or n == cfg.clips):
                print(f"synth: {n}/{cfg.clips} clips, {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    manifest = write_manifest(out / "manifest.jsonl", samples)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    settings["world"] = WORLD_VERSION
    with atomic_path(out / "synth.json") as tmp:
        tmp.write_text(json.dumps(settings, indent=1) + "\n")
    return manifest, time.perf_counter() - t0


def parse_size(text: str) -> tuple[int, int]:
    """'64' -> (64, 64); '96x64' -> (96, 64) as (width, height)."""
    try:
        if "x" in text.lower():
            w, h = text.lower().split("x")
            return int(w), int(h)
        return int(text), int(text)
    except ValueError:
        raise HumoError(f"--size {text!r}: expected N or WxH (e.g. 64 or 96x64)") from None


def parse_frames(text: str) -> tuple[int, int]:
    """'33:97' -> (33, 97); '49' -> (49, 49)."""
    try:
        if ":" in text:
            a, b = text.split(":")
            lo, hi = int(a), int(b)
        else:
            lo = hi = int(text)
    except ValueError:
        raise HumoError(f"--frames {text!r}: expected N or LO:HI (e.g. 33:97)") from None
    if lo < 1 or hi < lo:
        raise HumoError(f"--frames {text!r}: need 1 <= LO <= HI")
    return lo, hi


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))
