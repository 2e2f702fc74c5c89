"""HumoPipeline: inputs -> conditions -> DiT -> sampler -> decode -> file.

>>> pipe = HumoPipeline.from_pretrained("weights", preset="humo-17b")
>>> result = pipe("a man talks", images=["ref.png"], audio="speech.wav", out="video.mp4")

Modes follow from the inputs: text+image+audio, text+audio, text+image, and text only; with a model that has a
pose guider, a driving pose (OmniHuman-1) on top of text+image(+audio). Every guidance branch of
one step runs as ONE batched DiT forward (the release runs 3-4 passes one after another); `max_batch` splits it
when memory is short. Encoders and the VAE are loaded only while needed (`offload=True`).

With `sequence_parallel` (under torchrun, `humo.sequence_parallel`) every rank runs this same flow on the same
inputs and noise; only the DiT's token stream is split, and only rank 0 decodes the last segment and writes.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from humo.conditioning import Conditions, modality_names
from humo.configs import dit_preset
from humo.constants import (
    MOTION_FRAMES,
    SAMPLE_RATE,
    TEMPORAL_STRIDE,
    VIDEO_FPS,
    latent_frames,
    valid_frames,
)
from humo.errors import HumoError, warn
from humo.guidance import GuidanceSchedule
from humo.step_cache import BranchCache, StepCacheInput, check_threshold, must_compute

SIZES = {"480p": (480, 832), "720p": (720, 1280), "480p-portrait": (832, 480), "720p-portrait": (1280, 720)}


@dataclass(frozen=True)
class ModelLayout:
    """Where each component of a model family lives under a weights folder, and its generation defaults.

    Paths are relative to the weights folder. `*_format` says how the file is read: "official" (the Wan/HuMo
    release's own key layout, mapped by us) or "pretrained" (a transformers/diffusers folder).
    """

    name: str
    dit_preset: str
    dit: str
    vae: str
    vae_format: str
    text: str
    text_format: str
    tokenizer: str | None
    audio: str
    height: int
    width: int
    guidance: str
    dtype: str = "bf16"
    frames: int = 97
    shift: float = 5.0  # the sampler's timestep shift (the release's sample_shift)
    # The guidance preset's parameters for this model where they differ from the preset's own, as (name, value)
    # pairs; a request that names its own --guidance does not get them, one that only sets a scale keeps the rest.
    guidance_params: tuple[tuple[str, float], ...] = ()


LAYOUTS: dict[str, ModelLayout] = {
    "humo-17b": ModelLayout(
        "humo-17b",
        "humo-17b",
        "HuMo/HuMo-17B",
        "Wan2.1-T2V-1.3B/Wan2.1_VAE.pth",
        "official",
        "Wan2.1-T2V-1.3B/models_t5_umt5-xxl-enc-bf16.pth",
        "official",
        "Wan2.1-T2V-1.3B/google/umt5-xxl",
        "whisper-large-v3",
        720,
        1280,
        "release-17b",
    ),
    "humo-1.7b": ModelLayout(
        "humo-1.7b",
        "humo-1.7b",
        "HuMo/HuMo-1.7B/ema.pth",
        "Wan2.1-T2V-1.3B/Wan2.1_VAE.pth",
        "official",
        "Wan2.1-T2V-1.3B/models_t5_umt5-xxl-enc-bf16.pth",
        "official",
        "Wan2.1-T2V-1.3B/google/umt5-xxl",
        "whisper-large-v3",
        480,
        832,
        "release-1.7b",
    ),
    # The proving-ground model bundled with humo (see `humo demo`): every component in its pretrained format.
    "toy": ModelLayout(
        "toy",
        "toy",
        "dit.safetensors",
        "vae",
        "pretrained",
        "text",
        "pretrained",
        None,
        "whisper",
        64,
        64,
        "release-1.7b",
        dtype="fp32",
        frames=49,
        # Trained with the same shift (configs/toy.json): the sampler's steps land where training put its samples.
        shift=6.0,
        # The release's scales (7, 7.5, 4) multiply a small model's errors into block noise; with the three scales
        # equal, the release formula is plain CFG null + s (full - null). s chosen on held-out clips
        # (docs/training.md, "Guidance for the toy model").
        guidance_params=(("scale_t", 2.0), ("scale_a", 2.0), ("scale_i", 2.0)),
    ),
}


# At most this many people in one video (InterActHuman shows up to 5; each adds an audio pass to every block).
MAX_PERSONS = 4


@dataclass(frozen=True)
class Person:
    """One person of a video with several (InterActHuman): their reference image, their own audio track (silent
    outside their turns, or overlapping the others'), and, for a model without a mask predictor (the released
    weights), where they are: a box x0,y0,x1,y1 in pixels of the output video, or a mask image of the frame."""

    image: str
    audio: str
    box: tuple[float, float, float, float] | str | None = None
    mask: str | None = None


@dataclass
class GenerationRequest:
    """One video to generate. `frames=-1` takes the length from the audio, or without audio from the pose (rounded
    down to 4k+1). `pose`: a pose file (`humo.pose`) driving the motion, for a model with a pose guider.
    `persons`: several people, each with their own image and audio (`Person`; instead of `images` and `audio`);
    `mask_warmup`: the share of the steps that inject their audio mix everywhere before the predicted masks route
    it (default `humo.person_masks.GLOBAL_AUDIO_SHARE`). `mask_cache`: each step's audio is routed by the masks
    predicted at the step before (InterActHuman's mask cache); False: each step first predicts its own masks in an
    extra pass that hears the mix everywhere (the cache's ablation: one more DiT pass per step)."""

    prompt: str
    images: Sequence[str] = ()
    audio: str | None = None
    height: int | None = None
    width: int | None = None
    frames: int | None = None
    steps: int = 50
    shift: float | None = None  # None: the layout's
    sampler: str = "unipc"
    seed: int = 666666
    guidance: str | None = None
    guidance_params: dict[str, Any] = field(default_factory=dict)
    guidance_config: str | None = None
    negative_prompt: str | None = None
    max_batch: int | None = None
    sequential_guidance: bool = False
    name: str | None = None
    segment_frames: int | None = None  # None: the model's length; longer videos are made in segments of this many
    cache: float | None = None  # step-caching threshold (humo.step_cache); None: every step runs the blocks
    pose: str | None = None
    persons: Sequence[Person] = ()
    mask_warmup: float | None = None
    mask_cache: bool = True

    @property
    def audio_paths(self) -> tuple[str, ...]:
        """Every audio file the request reads: the one audio, or each person's track."""
        return tuple(p.audio for p in self.persons) if self.persons else ((self.audio,) if self.audio else ())

    def segment_length(self, layout: ModelLayout) -> int:
        """Frames per segment of a long video (`segment_frames`, or the model's trained length)."""
        return layout.frames if self.segment_frames is None else self.segment_frames

    def resolved(self, layout: ModelLayout, dit_config=None) -> GenerationRequest:
        """Fill defaults from the layout and validate everything that can be checked without loading a model.
        `dit_config`: the DiT's config when known (a checkpoint's may differ from its layout's preset, e.g. one
        trained with a pose guider); default the layout's preset."""
        r = dataclasses.replace(self, images=list(self.images), persons=tuple(self.persons))
        r.height = layout.height if r.height is None else r.height
        r.width = layout.width if r.width is None else r.width
        r.frames = layout.frames if r.frames is None else r.frames
        if r.guidance is None:
            r.guidance = layout.guidance
            r.guidance_params = {**dict(layout.guidance_params), **r.guidance_params}
        r.shift = layout.shift if r.shift is None else r.shift
        who = f"case '{r.name}': " if r.name else ""
        if not isinstance(r.prompt, str) or not r.prompt.strip():
            raise HumoError(f"{who}--prompt: an empty prompt (text is needed in every mode)")
        for what, v in (("--height", r.height), ("--width", r.width)):
            if not isinstance(v, int) or v < 16 or v % 16:
                raise HumoError(f"{who}{what} {v}: must be a positive multiple of 16")
        if r.frames != -1 and not valid_frames(r.frames):
            raise HumoError(
                f"{who}--frames {r.frames}: must be 4k+1 (1, 5, ..., 97) or -1 for the audio's (or pose's) length"
            )
        if r.segment_frames is not None and (not valid_frames(r.segment_frames) or r.segment_frames < 9):
            raise HumoError(f"{who}--segment-frames {r.segment_frames}: must be 4k+1 and at least 9")
        if r.persons:
            r = r._resolved_persons(layout, dit_config, who)
        if not r.mask_cache and r.person_layout != "predicted":
            raise HumoError(f"{who}--no-mask-cache: only for persons whose masks the model predicts (no --box/--mask)")
        if r.frames == -1 and not r.audio_paths and r.pose is None:
            raise HumoError(f"{who}--frames -1 takes the length from the audio (or the pose), but neither was given")
        if isinstance(r.seed, bool) or not isinstance(r.seed, int) or not 0 <= r.seed <= MAX_SEED:
            raise HumoError(f"{who}--seed {r.seed}: must be an integer from 0 to 2**63-1 (or -1/random to draw one)")
        if not isinstance(r.steps, int) or r.steps < 1:
            raise HumoError(f"{who}--steps {r.steps}: must be at least 1")
        if r.cache is not None:
            check_threshold(r.cache, f"{who}--cache")
        if not (isinstance(r.shift, (int, float)) and r.shift > 0):
            raise HumoError(f"{who}--shift {r.shift}: must be positive")
        if r.max_batch is not None and r.max_batch < 1:
            raise HumoError(f"{who}--max-batch {r.max_batch}: must be at least 1")
        for p in r.images:
            _require_input(p, "reference image", who)
        if r.audio is not None:
            _require_input(r.audio, "audio", who)
        cfg = dit_preset(layout.dit_preset) if dit_config is None else dit_config
        if not cfg.audio and (r.images or r.audio):
            raise HumoError(f"{who}preset {layout.name} is plain Wan text-to-video: it takes no --image or --audio")
        if r.pose is not None:
            from humo.pose import check_covers, load_pose

            if not cfg.pose_channels:
                raise HumoError(
                    f"{who}--pose {r.pose}: the {cfg.name} DiT has no pose guider (pose_channels 0); pose driving "
                    "needs a model trained with one (the released HuMo weights have none)"
                )
            _require_input(r.pose, "pose file", who)
            track = load_pose(r.pose)
            if r.frames != -1:
                check_covers(track, r.frames, r.pose, VIDEO_FPS, who)
        from humo.conditioning import check_condition_order

        check_condition_order(r.inputs_present(), who)
        self.schedule(r)  # validates scales and phases now, before any model is loaded
        return r

    def _resolved_persons(self, layout: ModelLayout, dit_config, who: str) -> GenerationRequest:
        """Check the persons (files, boxes, masks, what the model can do with them) and take their images as the
        reference images, in order (person p's reference is reference frame p)."""
        from humo.person_masks import GLOBAL_AUDIO_SHARE, check_box, mask_from_image, parse_box

        images = [p.image for p in self.persons]
        if self.audio is not None or (self.images and list(self.images) != images):
            raise HumoError(f"{who}--person gives each person's image and audio: leave out --image and --audio")
        if self.pose is not None:
            raise HumoError(f"{who}--pose with --person: a pose drives one person; use one or the other")
        if len(self.persons) > MAX_PERSONS:
            raise HumoError(f"{who}{len(self.persons)} persons: at most {MAX_PERSONS}")
        cfg = dit_preset(layout.dit_preset) if dit_config is None else dit_config
        if not cfg.audio:
            raise HumoError(f"{who}preset {layout.name} is plain Wan text-to-video: it takes no --person")
        persons = []
        for k, p in enumerate(self.persons):
            if not isinstance(p, Person) or not p.image or not p.audio:
                raise HumoError(f"{who}person {k + 1}: expected an image and an audio file")
            _require_input(p.image, f"person {k + 1}'s image", who)
            _require_input(p.audio, f"person {k + 1}'s audio", who)
            if p.box is not None and p.mask is not None:
                raise HumoError(f"{who}person {k + 1}: give a --box or a --mask, not both")
            box = p.box
            if box is not None:
                box = parse_box(box, f"{who}person {k + 1}'s --box")
                box = check_box(box, self.height, self.width, f"{who}person {k + 1}'s --box")
            if p.mask is not None:
                _require_input(p.mask, f"person {k + 1}'s mask", who)
                mask_from_image(p.mask, self.height, self.width, f"{who}person {k + 1}'s --mask")
            persons.append(dataclasses.replace(p, box=box))
        placed = [p.box is not None or p.mask is not None for p in persons]
        if any(placed) and not all(placed):
            raise HumoError(f"{who}--box/--mask: give one for every --person or for none")
        if not any(placed) and not cfg.person_mask_blocks:
            raise HumoError(
                f"{who}the {cfg.name} DiT has no person mask predictor (the released HuMo weights ship none): "
                "give a --box or --mask for every --person"
            )
        warmup = GLOBAL_AUDIO_SHARE if self.mask_warmup is None else self.mask_warmup
        if not (isinstance(warmup, (int, float)) and 0 <= warmup <= 1):
            raise HumoError(f"{who}--mask-warmup {warmup}: must be a share of the steps, from 0 to 1")
        return dataclasses.replace(self, images=images, persons=tuple(persons), mask_warmup=float(warmup))

    @property
    def person_layout(self) -> str | None:
        """How the persons' regions are found: "predicted", "given" (boxes or masks), or None without persons."""
        if not self.persons:
            return None
        return "given" if any(p.box is not None or p.mask is not None for p in self.persons) else "predicted"

    def inputs_present(self) -> frozenset[str]:
        given = {"image": bool(self.images), "audio": bool(self.audio_paths), "pose": bool(self.pose)}
        return frozenset({"text"} | {m for m, on in given.items() if on})

    @staticmethod
    def schedule(r: GenerationRequest):
        from humo.guidance import load_schedule, schedule_from_spec

        if r.guidance_config:
            return load_schedule(r.guidance_config, r.inputs_present())
        return schedule_from_spec(r.guidance, r.inputs_present(), **r.guidance_params)


def detect_preset(weights_dir: str | Path) -> str:
    """The model preset whose DiT is in `weights_dir` (each layout keeps its DiT at its own path)."""
    root = Path(weights_dir)
    if not root.is_dir():
        raise HumoError(f"--weights {root}: not a folder")
    found = [name for name, layout in LAYOUTS.items() if (root / layout.dit).exists()]
    if not found:
        expected = ", ".join(f"{layout.dit} ({name})" for name, layout in LAYOUTS.items())
        raise HumoError(f"--weights {root}: no known model in it (expected one of: {expected})")
    if len(found) > 1:
        raise HumoError(f"--weights {root}: holds several models ({', '.join(found)}); choose one with --preset")
    return found[0]


MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes at most a signed 64-bit integer


def resolve_device(name: str | None) -> str:
    """`name` (cpu, cuda, cuda:N, mps; None: cuda when available) checked against what this torch build has."""
    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise HumoError(f"--device {name}: unknown (use cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise HumoError(f"--device {name}: this torch build has no usable CUDA device (use --device cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise HumoError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise HumoError(f"--device {name}: MPS is not available in this torch build (use --device cpu)")
    elif dev.type != "cpu":
        raise HumoError(f"--device {name}: not supported (use cpu, cuda, cuda:N or mps)")
    return name


def _require_input(path: str, what: str, who: str) -> None:
    p = Path(path)
    if not p.is_file():
        raise HumoError(f"{who}{what} {p}: file not found")
    if p.stat().st_size == 0:
        raise HumoError(f"{who}{what} {p}: file is empty")


@dataclass
class GenerationResult:
    """frames: uint8 [T, H, W, 3]; audio: float32 [N] at `sample_rate` (None without audio);
    mask: predicted face-mask probabilities [F, h, w] of the last step (None without a mask head);
    person_masks: with several people, each one's mask [P, F, h, w] (predicted at the last step, or given)."""

    frames: np.ndarray
    fps: int
    audio: np.ndarray | None
    sample_rate: int
    path: Path | None
    timings: dict[str, float]
    mask: np.ndarray | None = None
    person_masks: np.ndarray | None = None


class _Lazy:
    """A component loaded on first use; with offload, dropped again after each use."""

    def __init__(self, loader: Callable[[], Any], offload: bool):
        self.loader, self.offload, self.obj = loader, offload, None

    def __enter__(self):
        if self.obj is None:
            self.obj = self.loader()
        return self.obj

    def __exit__(self, *exc):
        if self.offload:
            self.obj = None


class HumoPipeline:
    """The whole generation flow. Build it with `from_pretrained` (or from components, for tests)."""

    def __init__(
        self,
        layout: ModelLayout,
        dit,
        vae,
        text_encoder,
        audio_encoder,
        *,
        device="cpu",
        offload: bool = True,
        log: Callable[[str], None] | None = None,
        progress: bool = True,
        sequence_parallel=None,
    ):
        self.layout = layout
        self.dit = dit
        self.sequence_parallel = sequence_parallel  # humo.sequence_parallel.SequenceParallel, or None
        if sequence_parallel is not None:
            from humo.sequence_parallel import check_heads

            check_heads(dit.cfg.num_heads, sequence_parallel.world)
        wrap = lambda c: c if isinstance(c, _Lazy) else _Lazy(lambda: c, offload=False)  # noqa: E731
        self.vae, self.text_encoder, self.audio_encoder = wrap(vae), wrap(text_encoder), wrap(audio_encoder)
        self.device = torch.device(device)
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.progress = progress
        self._vae_stride: int | None = None

    # ------------------------------------------------------------------------------------------------------------
    @classmethod
    def check_weights(cls, weights_dir: str | Path, preset: str) -> ModelLayout:
        """The layout for `preset`, after checking every component exists under `weights_dir` (no loading)."""
        if preset not in LAYOUTS:
            raise HumoError(f"--preset {preset}: unknown (choose from: {', '.join(LAYOUTS)})")
        layout = LAYOUTS[preset]
        root = Path(weights_dir)
        if not root.is_dir():
            raise HumoError(f"--weights {root}: not a folder")
        for what, rel in (
            ("DiT", layout.dit),
            ("VAE", layout.vae),
            ("text encoder", layout.text),
            ("tokenizer", layout.tokenizer),
            ("audio encoder", layout.audio),
        ):
            if rel is not None and not (root / rel).exists():
                raise HumoError(f"--weights {root}: the {what} is missing (expected {rel})")
        return layout

    @classmethod
    def from_pretrained(
        cls,
        weights_dir: str | Path,
        preset: str = "humo-17b",
        *,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        offload: bool = True,
        loras: Sequence[tuple[str, float]] = (),
        fp8: bool = False,
        fp8_matmul: str = "auto",
        resident_blocks: int | None = None,
        **kwargs,
    ) -> HumoPipeline:
        """Load a model from a weights folder laid out as the official release (see `LAYOUTS`), with LoRA files
        ``(path, scale)`` merged into the DiT (`humo.lora_files`). `fp8`: store the DiT's block weights in fp8
        (`humo.fp8`; quantized on the CPU after the LoRAs are merged, then moved); `dtype` stays the compute dtype.
        A DiT file saved in fp8 loads as fp8 either way; `fp8_matmul` says how its layers compute (`humo.fp8`:
        ``auto`` = scaled fp8 matmuls on GPUs with fp8 tensor cores, upcast elsewhere). `resident_blocks`: block
        swap (`humo.offload`), keeping that many DiT blocks on the device and streaming the others from pinned CPU
        memory."""
        from humo.checkpoint import load_dit
        from humo.conditions.audio import AudioEncoder
        from humo.conditions.text import TextEncoder
        from humo.conditions.vae import WanVAE, load_vae_folder
        from humo.fp8 import Fp8Linear, choose_matmul, quantize_dit, set_matmul

        layout = cls.check_weights(weights_dir, preset)
        root = Path(weights_dir)
        device = resolve_device(device)
        matmul = choose_matmul(fp8_matmul, device)  # before loading: scaled needs fp8 tensor cores on a GPU
        if dtype is None:
            dtype = torch.bfloat16 if layout.dtype == "bf16" else torch.float32
        # The config comes from the checkpoint (our files carry it; released ones match their preset by shape), so a
        # fine-tuned or resized model of the same family loads too.
        on_cpu_first = fp8 or resident_blocks is not None  # a large DiT is made small before it moves
        dit = load_dit(root / layout.dit, None, dtype=dtype, device="cpu" if on_cpu_first else device)
        stored_fp8 = any(isinstance(m, Fp8Linear) for m in dit.modules())
        if loras:
            from humo.lora_files import apply_lora_files

            if stored_fp8:
                raise HumoError(
                    f"--lora: {root / layout.dit} is stored in fp8; merge LoRAs into the bf16 checkpoint and "
                    "quantize on loading (--dtype fp8) instead"
                )
            apply_lora_files(dit, loras, kwargs.get("log"))
        if fp8 and not stored_fp8:
            quantize_dit(dit)
        if not set_matmul(dit, matmul) and fp8_matmul == "scaled":
            warn("--fp8-matmul scaled: the DiT has no fp8 layers (pass --dtype fp8); it computes as loaded")
        if resident_blocks is None:
            dit.to(device)
        else:
            from humo.offload import BlockSwap

            if torch.device(device).type == "cpu":
                warn("--offload: block swap on the CPU copies each streamed block for nothing (it is for GPUs)")
            if resident_blocks > len(dit.blocks):
                raise HumoError(f"--offload blocks:{resident_blocks}: the DiT has only {len(dit.blocks)} blocks")
            for name, child in dit.named_children():
                if name != "blocks":
                    child.to(device)
            dit.block_swap = BlockSwap(dit, device, resident_blocks)
        if layout.vae_format == "official":
            vae_loader = lambda: WanVAE.from_official(root / layout.vae, device=device)  # noqa: E731
        else:
            vae_loader = lambda: load_vae_folder(root / layout.vae, device=device)  # noqa: E731
        if layout.text_format == "official":
            text_loader = lambda: TextEncoder.from_official(  # noqa: E731
                root / layout.text, root / layout.tokenizer, dtype=torch.bfloat16, device=device
            )
        else:
            text_loader = lambda: TextEncoder.from_pretrained(root / layout.text, device=device)  # noqa: E731
        audio_loader = lambda: AudioEncoder.from_pretrained(root / layout.audio, device=device)  # noqa: E731
        return cls(
            layout,
            dit,
            _Lazy(vae_loader, offload),
            _Lazy(text_loader, offload),
            _Lazy(audio_loader, offload),
            device=device,
            offload=offload,
            **kwargs,
        )

    # ------------------------------------------------------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        """Whether this process decodes and writes the video (rank 0, or the only process)."""
        return self.sequence_parallel is None or self.sequence_parallel.is_main

    def __call__(
        self,
        prompt: str | GenerationRequest,
        images: Sequence[str] = (),
        audio: str | None = None,
        *,
        out: str | Path | None = None,
        png_dir: str | Path | None = None,
        **options,
    ) -> GenerationResult:
        """Generate one video. `options` are GenerationRequest fields (height, width, frames, steps, seed, ...).
        With sequence parallel, the ranks other than 0 decode only what a next segment continues from and write
        nothing; their result has no frames."""
        req = prompt if isinstance(prompt, GenerationRequest) else GenerationRequest(prompt, images, audio, **options)
        req = req.resolved(self.layout, self.dit.cfg)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        cond = self.encode_conditions(req)
        timings["encode"] = time.perf_counter() - t0
        self.log(
            f"encode  {timings['encode']:6.2f} s  ({cond.mode}, {cond.frames} frames "
            f"{req.height}x{req.width}, {cond.conditions.n_ref} reference frame(s), "
            f"{self.tokens(cond)} tokens per pass)"
        )
        if req.persons:
            self.log(person_layout_line(req, self.dit.cfg))

        plan = plan_segments(cond.frames, req.segment_length(self.layout))
        timings["sample"] = timings["decode"] = 0.0
        pieces, masks, person_pieces, video = [], [], [], None
        for k, (start, length, keep) in enumerate(plan):
            seg, seg_req = cond, req
            label = f"segment {k + 1}/{len(plan)}" if len(plan) > 1 else "sampling"
            if len(plan) > 1:
                self.log(f"{label}: frames {start}..{start + keep - 1}")
            if k:  # a continuation: the last frames made so far start its time axis as motion frames
                t0 = time.perf_counter()
                seg = self.continue_conditions(cond, start, length, video)
                seg_req = dataclasses.replace(req, seed=(req.seed + k) % (MAX_SEED + 1))
                timings["encode"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            latents, mask, person_masks = self.sample(seg_req, seg, label)
            timings["sample"] += time.perf_counter() - t0
            if not (self.is_main or k + 1 < len(plan)):
                continue
            t0 = time.perf_counter()
            motion = seg.conditions.motion
            if motion is not None:  # the segment's stream is decoded whole, as it was made
                latents = torch.cat([motion.to(latents), latents], dim=2)
            with self.vae as vae:
                video = vae.decode(latents.float())[0].clamp(-1, 1)  # [3, T, H, W] in [-1, 1]
            timings["decode"] += time.perf_counter() - t0
            # the motion frames were kept with the segment before
            pieces.append(video[:, (0 if motion is None else MOTION_FRAMES) :][:, :keep])
            first_alone = motion is None
            masks.append(mask if mask is None or len(plan) == 1 else video_frame_mask(mask, keep, first_alone))
            if person_masks is not None:
                person_pieces.append(
                    person_masks
                    if len(plan) == 1
                    else np.stack([video_frame_mask(m, keep, first_alone) for m in person_masks])
                )
        self.log(f"sample  {timings['sample']:6.2f} s  ({req.steps} steps, {req.sampler}, guidance {req.guidance})")
        if not self.is_main:
            empty = np.zeros((0, req.height, req.width, 3), np.uint8)
            return GenerationResult(empty, VIDEO_FPS, cond.samples, SAMPLE_RATE, None, timings)
        video = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
        mask = masks[0]
        if mask is not None and len(masks) > 1:  # per-frame masks of the segments -> the whole video's latent grid
            mask = latent_frame_mask(np.concatenate(masks))
        person_masks = person_pieces[0] if person_pieces else None
        if len(person_pieces) > 1:
            person_masks = np.stack([latent_frame_mask(m) for m in np.concatenate(person_pieces, axis=1)])
        frames = ((video + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()
        self.log(f"decode  {timings['decode']:6.2f} s  ({frames.shape[0]} frames)")

        path = None
        if out is not None:
            from humo.media.video import write_video

            t0 = time.perf_counter()
            meta = {"title": req.prompt[:200], **self.provenance(req)}
            if req.persons:  # the mix the model heard, at its 16 kHz
                sound, rate = cond.samples[:, None], SAMPLE_RATE
            else:
                sound, rate = output_audio(req.audio) if req.audio else (None, SAMPLE_RATE)
            path = write_video(
                out,
                frames,
                fps=VIDEO_FPS,
                audio=sound,
                sample_rate=rate,
                metadata=meta,
                png_dir=png_dir,
            )
            timings["write"] = time.perf_counter() - t0
            self.log(f"write   {timings['write']:6.2f} s  -> {path}")
        if cond.samples is not None:  # the result, like the file, ends with the shorter of video and audio
            frames = frames[: max(1, min(len(frames), len(cond.samples) * VIDEO_FPS // SAMPLE_RATE))]
        return GenerationResult(frames, VIDEO_FPS, cond.samples, SAMPLE_RATE, path, timings, mask, person_masks)

    def provenance(self, req: GenerationRequest) -> dict[str, Any]:
        """What made a video, for its metadata: the model, seed, steps and guidance, and how the DiT computed
        (its dtype, fp8 weights and their matmul, the step-cache threshold, block swap, the sequence-parallel
        world); entries that do not apply are None (left out of the file)."""
        from humo.fp8 import Fp8Linear

        fp8 = [m for m in self.dit.modules() if isinstance(m, Fp8Linear)]
        swap = getattr(self.dit, "block_swap", None)
        return {
            "model": self.layout.name,
            "seed": req.seed,
            "steps": req.steps,
            "guidance": req.guidance,
            "dit_dtype": str(self.dit.dtype).removeprefix("torch."),
            "fp8": bool(fp8),
            "fp8_matmul": fp8[0].matmul if fp8 else None,
            "step_cache": req.cache,
            "block_swap": None if swap is None else f"{len(self.dit.blocks) - len(swap.streamed)} resident blocks",
            "sequence_parallel": None if self.sequence_parallel is None else self.sequence_parallel.world,
        }

    def tokens(self, cond: EncodedRequest) -> int:
        """Tokens of one video in one DiT pass: latent frames (clean frames included) x patches per frame."""
        _, f, h, w = cond.latent_shape
        pf, ph, pw = self.dit.cfg.patch
        return (f // pf) * (h // ph) * (w // pw)

    def vae_stride(self) -> int:
        """Pixels per latent pixel of the VAE (read once: with offload, asking again would reload it)."""
        if self._vae_stride is None:
            with self.vae as vae:
                self._vae_stride = vae.spatial_stride
        return self._vae_stride

    # ------------------------------------------------------------------------------------------------------------
    def encode_conditions(self, req: GenerationRequest) -> EncodedRequest:
        """Everything the DiT needs that does not change over the sampling steps."""
        from humo.conditioning import with_clean_windows
        from humo.conditions.audio import audio_windows, frames_for_audio
        from humo.media.audio import load_audio
        from humo.media.image import load_references
        from humo.reference import concat_condition

        cfg = self.dit.cfg
        present = req.inputs_present()
        tracks = person_tracks(req.persons) if req.persons else None
        if tracks is not None:  # the video hears the mix
            samples = np.sum(tracks, axis=0).astype(np.float32)
        else:
            samples = load_audio(req.audio, SAMPLE_RATE) if req.audio else None
        track = None
        if req.pose:
            from humo.pose import check_covers, frames_for_pose, load_pose

            track = load_pose(req.pose)
        if req.frames != -1:
            frames = req.frames
        elif samples is not None:
            frames = frames_for_audio(len(samples), VIDEO_FPS)
        else:
            frames = frames_for_pose(track, req.pose, VIDEO_FPS)
        if track is not None:
            check_covers(track, frames, req.pose, VIDEO_FPS)
            track = track.fit(req.height, req.width)  # placed in the frame as the reference images are
        first = plan_segments(frames, req.segment_length(self.layout))[0][1]  # the first segment's frames
        stride = self.vae_stride()
        f_lat, h, w = latent_frames(first), req.height // stride, req.width // stride
        for what, v, n, p in (("--height", req.height, h, cfg.patch[1]), ("--width", req.width, w, cfg.patch[2])):
            if v % stride or n % p:
                raise HumoError(f"{what} {v}: must be a multiple of {stride * p} for this model")

        schedule = req.schedule(req)
        text_sources = {c.text_source for c in schedule_conditions(schedule)}
        negative = req.negative_prompt
        if negative is None:
            from humo.conditions.text import WAN_NEGATIVE_PROMPT

            negative = WAN_NEGATIVE_PROMPT
        with self.text_encoder as te:
            n_tokens = te.token_count(req.prompt)
            if n_tokens > te.text_len:
                warn(f"prompt: {n_tokens} tokens, over the text encoder's limit of {te.text_len}; the rest is ignored")
            texts = {"prompt": req.prompt, "negative": negative, "empty": ""}
            wanted = ["prompt"] + sorted(text_sources - {"prompt"})
            embs = te.encode([texts[k] for k in wanted])
            context = {k: embs[i : i + 1] for i, k in enumerate(wanted)}

        # References: the images, or one zero latent frame standing in for them in text+audio mode (as released).
        n_images = len(req.images)
        n_ref = n_images if n_images else (1 if (cfg.audio and req.audio_paths) else 0)
        refs = torch.zeros(1, cfg.out_dim, n_ref, h, w)
        y = y_null = None
        with self.vae as vae:
            if n_images:
                pixels = load_references(req.images, req.height, req.width)
                refs = vae.encode_images(pixels).permute(1, 2, 0, 3, 4).reshape(1, cfg.out_dim, n_images, h, w)
            if cfg.reference_mode == "concat":
                # long enough for the reference slots too, as the release's precomputed zero latent is
                zero_video = vae.zero_video_latent(first + TEMPORAL_STRIDE * n_ref, req.height, req.width)[0]
                y = concat_condition(refs, zero_video, keep_image=True, num_video=f_lat)
                y_null = concat_condition(refs, zero_video, keep_image=False, num_video=f_lat)

        windows = feats = None
        if cfg.audio:
            if samples is not None:
                with self.audio_encoder as ae:
                    feats = ae.features(samples, fps=VIDEO_FPS, frames=frames)
                windows = with_clean_windows(audio_windows(feats, f_lat).unsqueeze(0), n_ref)
            else:
                windows = torch.zeros(1, f_lat + n_ref, cfg.audio_window, cfg.audio_groups, cfg.audio_feat_dim)
        persons = person_feats = person_masks = None
        if tracks is not None:
            with self.audio_encoder as ae:
                person_feats = [ae.features(t, fps=VIDEO_FPS, frames=frames) for t in tracks]
            person_masks = given_person_masks(req, (h, w))
            persons = self.person_conditions(person_feats, person_masks, 0, f_lat, n_ref)
        pose = None if track is None else self.pose_heatmaps(track, 0, first, (h, w))
        conditions = Conditions(
            texts=context, refs=refs, num_video=f_lat, windows=windows, y=y, y_null=y_null, pose=pose,
            persons=persons,
        )  # fmt: skip
        return EncodedRequest(
            conditions=conditions,
            schedule=schedule,
            samples=samples,
            frames=frames,
            latent_shape=(cfg.out_dim, conditions.num_frames, h, w),
            mode="+".join(m for m in modality_names() if m in present),
            features=feats,
            size=(req.height, req.width),
            pose=track,
            person_features=person_feats,
            person_masks=person_masks,
        )

    @staticmethod
    def stream_windows(features: torch.Tensor, start: int, f_lat: int, n_ref: int, motion: int = 0) -> torch.Tensor:
        """The audio windows [1, m + F + n_ref, ...] of a segment's time axis: its `motion` latent frames (the
        `MOTION_FRAMES` frames before video frame `start`, or none) and `f_lat` new ones are one latent stream,
        read as one clip from its first frame; the reference frames hear nothing."""
        from humo.conditioning import with_clean_windows
        from humo.conditions.audio import audio_windows

        first = start - MOTION_FRAMES if motion else start
        return with_clean_windows(audio_windows(features, motion + f_lat, start=first).unsqueeze(0), n_ref)

    @classmethod
    def person_conditions(cls, features, masks, start: int, f_lat: int, n_ref: int, motion: int = 0):
        """Each person's audio windows for a segment of `f_lat` latent frames from video frame `start` (with
        `motion` motion latent frames before it: `stream_windows`) and their given masks ([P, h, w] on every frame,
        or None: predicted) -> `conditioning.PersonConditions` (batch 1)."""
        from humo.conditioning import PersonConditions

        windows = [cls.stream_windows(feats, start, f_lat, n_ref, motion) for feats in features]
        fixed = None
        if masks is not None:
            fixed = torch.as_tensor(masks)[None, :, None].expand(1, -1, motion + f_lat, -1, -1).contiguous()
        return PersonConditions(torch.stack(windows, dim=1), fixed)

    def pose_heatmaps(self, track, start: int, length: int, latent_hw: tuple[int, int]) -> torch.Tensor:
        """The heatmaps of video frames start .. start + length - 1 of a fitted pose (`humo.pose.PoseTrack`) for the
        DiT's pose guider: [1, J, length, s*h, s*w] (s = its pose_scale; past the pose's end, its last frame)."""
        cfg = self.dit.cfg
        grid = (latent_hw[0] * cfg.pose_scale, latent_hw[1] * cfg.pose_scale)
        return track.at_fps(length, VIDEO_FPS, start).heatmaps(*grid, cfg.pose_sigma)[None]

    def continue_conditions(self, enc: EncodedRequest, start: int, length: int, previous: torch.Tensor):
        """The conditions of a long video's segment of `length` new frames (4k) from video frame `start`: the last
        `MOTION_FRAMES` frames of `previous` (the segment before, decoded, its motion frames included: [3, T, H, W]
        in [-1, 1]) encoded and placed as clean motion frames at the start of its time axis, the new frames carrying
        on their latent stream in fours (so the segment is one 1 + 4k-frame clip from frame `start - MOTION_FRAMES`
        whose first two latent frames are known: no second "first frame" at the join); the audio windows and the
        pose of that clip; the text and references as before."""
        from humo.conditioning import Conditions
        from humo.reference import concat_condition

        if length % TEMPORAL_STRIDE:
            raise ValueError(f"a continuation makes 4k new frames, not {length}")
        cfg, first = self.dit.cfg, enc.conditions
        height, width = enc.size
        stream = MOTION_FRAMES + length  # 1 + 4k frames
        with self.vae as vae:
            motion = vae.encode(previous[:, -MOTION_FRAMES:].unsqueeze(0).float()).float()  # [1, C, m, h, w]
            zero_video = None
            if cfg.reference_mode == "concat":
                zero_video = vae.zero_video_latent(stream + TEMPORAL_STRIDE * first.n_ref, height, width)[0]
        f_lat, m = length // TEMPORAL_STRIDE, motion.shape[2]
        windows = None
        if cfg.audio:
            if enc.features is not None:
                windows = self.stream_windows(enc.features, start, f_lat, first.n_ref, m)
            else:
                windows = torch.zeros(1, m + f_lat + first.n_ref, *first.windows.shape[2:])
        y = y_null = None
        if zero_video is not None:
            y = concat_condition(first.refs, zero_video, keep_image=True, motion=motion, num_video=f_lat)
            y_null = concat_condition(first.refs, zero_video, keep_image=False, motion=motion, num_video=f_lat)
        pose = None
        if enc.pose is not None:
            pose = self.pose_heatmaps(enc.pose, start - MOTION_FRAMES, stream, enc.latent_shape[2:])
        persons = None
        if enc.person_features is not None:
            persons = self.person_conditions(enc.person_features, enc.person_masks, start, f_lat, first.n_ref, m)
        conditions = Conditions(
            texts=first.texts, refs=first.refs, num_video=f_lat, motion=motion, windows=windows, y=y, y_null=y_null,
            pose=pose, persons=persons,
        )  # fmt: skip
        shape = (enc.latent_shape[0], conditions.num_frames, *enc.latent_shape[2:])
        return dataclasses.replace(enc, conditions=conditions, latent_shape=shape)

    def model_fn(
        self,
        enc: EncodedRequest,
        cache: StepCacheInput | None = None,
        person_masks: torch.Tensor | None = None,
        predict_persons: bool = False,
    ):
        """The batched DiT call the guidance needs: (x [k*B, ...], t [k*B], conditions) -> (velocity [k*B, ...],
        `PassAux` of the rows). Each guidance condition's inputs come from `conditioning.dit_inputs`, the rule
        training uses too. `cache`: this step's step-caching input (None: caching off). With several people:
        `person_masks` [1, P, m + F, h, w] gate their audio this step (None: the given masks, or the mix everywhere)
        and `predict_persons` returns the mask predictor's logits."""
        from humo.conditioning import Keep, dit_inputs, person_kwargs, pose_kwargs, rope_kwargs
        from humo.step_cache import cached_forward

        cfg, dit = self.dit.cfg, self.dit
        dtype = dit.dtype
        with_mask = cfg.mask_head_blocks > 0
        predict_persons = predict_persons and cfg.person_mask_blocks > 0

        def fn(x: torch.Tensor, t: torch.Tensor, conditions):
            keep = Keep.of_conditions(conditions, x.shape[0] // len(conditions))
            inp = dit_inputs(enc.conditions, x, keep, cfg.reference_mode, cfg.reference_rope, person_masks)
            persons = inp.persons
            if persons is not None:
                move = lambda v: None if v is None else v.to(self.device, dtype)  # noqa: E731
                persons = dataclasses.replace(persons, windows=move(persons.windows), masks=move(persons.masks))
            inputs = dict(
                x=inp.x.to(self.device, dtype),
                t=t.to(self.device),
                context=inp.context.to(self.device, dtype),
                audio=inp.audio.to(self.device, dtype) if inp.audio is not None else None,
                y=inp.y.to(self.device, dtype) if inp.y is not None else None,
                **rope_kwargs(inp.frame_times),
                **pose_kwargs(None if inp.pose is None else inp.pose.to(self.device, dtype)),
                **person_kwargs(persons),
            )
            if self.sequence_parallel is not None:
                inputs["sequence_parallel"] = self.sequence_parallel
            with torch.no_grad():
                if cache is not None:
                    prev = [cache.branches.get(c) for c in conditions]
                    prev = None if any(p is None for p in prev) else BranchCache.cat(prev)
                    out, mask, branch = cached_forward(
                        dit, inputs, prev, cache.threshold, force=cache.force, return_mask=with_mask,
                        return_persons=predict_persons,
                    )  # fmt: skip
                    return out.float(), PassAux(mask, branch, branch.person_logits)
                if with_mask or predict_persons:
                    out, mask, person_logits = dit(**inputs, return_mask=with_mask, return_persons=True)
                    return out.float(), PassAux(mask, None, person_logits if predict_persons else None)
                return dit(**inputs).float(), None

        return fn

    def sample(self, req: GenerationRequest, enc: EncodedRequest, label: str = "sampling"):
        """Flow-matching sampling with guidance. Returns the generated latents [1, C, F, h, w] (clean frames
        dropped), the face mask [F, h, w] predicted at the last step (None without a mask head) and, with several
        people, their masks [P, F, h, w] (predicted at the last step, or the given ones; else None). `label`
        names the progress bar (a long video's segment).

        With predicted person masks (InterActHuman's mask cache), the masks the fullest pass predicts at one step
        gate the persons' audio at the next; the first `req.mask_warmup` of the steps hear the mix everywhere."""
        from humo.guidance import guided_prediction
        from humo.sampler import make_sampler

        shift = self.layout.shift if req.shift is None else req.shift
        sampler = make_sampler(req.sampler, steps=req.steps, shift=shift)  # fresh state for every video
        generator = torch.Generator().manual_seed(req.seed)
        caching = req.cache is not None
        state = SamplingState(
            torch.randn((1, *enc.latent_shape), generator=generator, dtype=torch.float32), cache={} if caching else None
        )
        steps = sampler.timesteps
        persons = enc.conditions.persons
        predicted = persons is not None and persons.masks is None
        warmup = math.ceil((req.mask_warmup or 0.0) * len(steps)) if predicted else 0
        passes = computed = 0
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=len(steps), desc=label, unit="step", file=sys.stderr, leave=False)
        t0 = time.perf_counter()
        for i, t in enumerate(steps):
            cache = None
            if caching:
                cache = StepCacheInput(state.cache, req.cache, force=must_compute(i, len(steps)))
            gate = None
            if predicted and i >= warmup:
                gate = state.person_masks if req.mask_cache else self.same_step_person_masks(enc, state.x, t)
            v, aux = guided_prediction(
                self.model_fn(enc, cache, gate, predict_persons=predicted), state.x, t, enc.schedule,
                max_batch=req.max_batch, sequential=req.sequential_guidance, return_aux=True,
            )  # fmt: skip
            state = state.next(sampler.step(v, t, state.x), aux)
            if caching:
                passes += sum(a.cache.computed.numel() for a in aux.values())
                computed += sum(int(a.cache.computed.sum()) for a in aux.values())
            if bar is not None:
                bar.update(1)
            if i == 0 and len(steps) > 1:  # the first step measures the job: say what the whole will take
                first = time.perf_counter() - t0
                self.log(
                    f"sample  first step {first:.2f} s: about {first * len(steps):.0f} s for {len(steps)} steps, "
                    f"peak memory {peak_memory_gb(self.device):.1f} GB"
                )
        if bar is not None:
            bar.close()
        if caching:
            self.log(f"step cache: the blocks ran on {computed} of {passes} branch passes (threshold {req.cache:g})")
        mask = person_masks = None
        if state.mask is not None:
            mask = enc.conditions.video(state.mask.unsqueeze(1))[0, 0].numpy()
        final = state.person_masks if predicted else (None if persons is None else persons.masks)
        if final is not None:  # [1, P, m + F, h, w] -> the generated frames [P, F, h, w]
            person_masks = final[0, :, enc.conditions.n_motion :].float().numpy()
        return enc.conditions.video(state.x), mask, person_masks

    def same_step_person_masks(self, enc: EncodedRequest, x: torch.Tensor, t) -> torch.Tensor:
        """The person masks [1, P, m + F, h, w] predicted at this step by one extra pass of the fullest guidance
        condition with every person's audio everywhere (no mask cache: what the cache saves)."""
        phase = enc.schedule.phase_at(float(t))
        fullest = fullest_condition(phase.conditions_needed())
        t_vec = torch.full((x.shape[0],), float(t), dtype=torch.float32)
        _, aux = self.model_fn(enc, None, None, predict_persons=True)(x, t_vec, [fullest])
        return torch.sigmoid(aux.persons).float().cpu()


def fullest_condition(conditions):
    """The guidance condition with the most modalities: the pass whose masks a step keeps."""
    return max(conditions, key=lambda c: len(c.modalities))


def person_layout_line(req: GenerationRequest, cfg) -> str:
    """What routes each person's audio, said before sampling (never silent): the model's predicted masks, with
    how many steps hear the mix first, or the given boxes and masks."""
    n = len(req.persons)
    if req.person_layout == "given":
        unused = " (the model's own mask predictor is not used)" if cfg.person_mask_blocks else ""
        return f"persons: {n}, each one's audio where their --box/--mask is, the same on every frame{unused}"
    warm = math.ceil((req.mask_warmup or 0.0) * req.steps)
    timing = "each step's masks gate the next" if req.mask_cache else "each step predicts its own in an extra pass"
    return (
        f"persons: {n}, each one's audio where the model's predicted mask puts them ({timing}; the first {warm} of "
        f"{req.steps} steps hear the mix everywhere)"
    )


def person_tracks(persons: Sequence[Person]) -> list[np.ndarray]:
    """Each person's audio at 16 kHz mono, padded with silence to the longest track (with a warning: that person
    is silent after their track ends)."""
    from humo.media.audio import load_audio

    tracks = [load_audio(p.audio, SAMPLE_RATE) for p in persons]
    n = max(len(t) for t in tracks)
    for k, (p, t) in enumerate(zip(persons, tracks)):
        if len(t) < n:
            warn(
                f"person {k + 1}'s audio {p.audio}: {len(t) / SAMPLE_RATE:.2f} s, shorter than the longest track "
                f"({n / SAMPLE_RATE:.2f} s); padded with silence"
            )
    return [np.pad(t, (0, n - len(t))).astype(np.float32) for t in tracks]


def given_person_masks(req: GenerationRequest, latent_hw: tuple[int, int]) -> np.ndarray | None:
    """The persons' boxes or mask images on the latent grid, feathered at the edges: [P, h, w] (None when the
    model predicts them)."""
    from humo.person_masks import box_mask, feather, mask_from_image

    if req.person_layout != "given":
        return None
    masks = []
    for p in req.persons:
        if p.box is not None:
            pixels = box_mask(p.box, req.height, req.width)
        else:
            pixels = mask_from_image(p.mask, req.height, req.width)
        masks.append(feather(pixels, latent_hw))
    return np.stack(masks)


def video_frame_mask(mask: np.ndarray, frames: int, first_alone: bool = True) -> np.ndarray:
    """A segment's predicted mask on its latent frames [F, h, w] -> one per video frame [frames, h, w]: latent
    frame 0 is video frame 0, latent frame i >= 1 covers video frames 4i-3 .. 4i (Wan's layout); without
    `first_alone` (a continuation's new frames, which carry on a stream) latent frame i covers 4i .. 4i+3."""
    counts = ([1] if first_alone else [TEMPORAL_STRIDE]) + [TEMPORAL_STRIDE] * (mask.shape[0] - 1)
    return np.repeat(mask, counts, axis=0)[:frames]


def latent_frame_mask(mask: np.ndarray) -> np.ndarray:
    """Per-video-frame masks [T, h, w] (T = 1 + 4k) -> per latent frame [1 + k, h, w]: each latent frame's mean
    over the video frames it covers."""
    rest = mask[1:].reshape(-1, TEMPORAL_STRIDE, *mask.shape[1:]).mean(axis=1)
    return np.concatenate([mask[:1], rest]).astype(mask.dtype)


def plan_segments(frames: int, segment: int) -> list[tuple[int, int, int]]:
    """How a `frames`-frame video (1 + 4k) is made in segments of at most `segment` frames: (start frame, frames
    generated, frames kept) each. The first starts at 0 and generates 1 + 4k frames; each next one starts where
    the kept frames end and generates 4k new frames after the last `MOTION_FRAMES` frames before it, which start
    its clip (so it is `MOTION_FRAMES` + 4k <= `segment` frames long). The last may generate a few frames more
    than it keeps."""
    plan = [(0, min(frames, segment), min(frames, segment))]
    start, most = plan[0][2], segment - MOTION_FRAMES
    while start < frames:
        rest = frames - start
        length = TEMPORAL_STRIDE * -(-min(most, rest) // TEMPORAL_STRIDE)
        plan.append((start, length, min(length, rest)))
        start += plan[-1][2]
    return plan


@dataclass
class EncodedRequest:
    """A request's conditions and everything else fixed over the sampling steps.

    conditions: what the DiT is conditioned on (`conditioning.Conditions`, batch 1); schedule: the guidance;
    samples: the driving audio (16 kHz mono) or None; frames: video frames of the whole video (a long one is made in
    segments; `conditions` and `latent_shape` [C, T, h, w] are the first segment's, T counting its clean frames);
    mode: the inputs given, e.g. "text+image+audio".
    """

    conditions: Conditions
    schedule: GuidanceSchedule
    samples: np.ndarray | None
    frames: int
    latent_shape: tuple[int, int, int, int]
    mode: str
    features: torch.Tensor | None = None  # per-video-frame audio features of the whole audio (long video)
    size: tuple[int, int] = (0, 0)  # video height, width
    pose: Any = None  # the driving pose fitted to the frame (`humo.pose.PoseTrack`, normalised), or None
    person_features: list | None = None  # each person's per-video-frame audio features (several people)
    person_masks: np.ndarray | None = None  # [P, h, w] the persons' given masks on the latent grid, or None


@dataclass(frozen=True)
class PassAux:
    """What a guidance pass returns besides the velocity, rows along the batch: the mask head's logits
    [B, T, h, w] (None without a head) and, with step caching, the rows' `BranchCache` for the next step."""

    mask: torch.Tensor | None = None
    cache: BranchCache | None = None
    persons: torch.Tensor | None = None  # [B, P, m + F, h, w] the person mask predictor's logits, or None

    def __getitem__(self, rows: slice) -> PassAux:
        pick = lambda v: None if v is None else v[rows]  # noqa: E731
        return PassAux(pick(self.mask), pick(self.cache), pick(self.persons))


@dataclass(frozen=True)
class SamplingState:
    """What one sampling step hands the next: the latents x [B, C, T, h, w], the face mask (probabilities
    [B, T, h, w]) the fullest guidance pass of the latest step predicted (None without a mask head), and with step
    caching each guidance condition's `BranchCache` (None: caching off), and with several people the masks
    (probabilities [B, P, m + F, h, w]) the fullest pass's person mask predictor gave, which gate their audio at
    the next step (InterActHuman's mask cache). (The sampler's multistep history is the sampler's own, made fresh
    for each video.)"""

    x: torch.Tensor
    mask: torch.Tensor | None = None
    cache: dict | None = None
    person_masks: torch.Tensor | None = None

    def next(self, x: torch.Tensor, aux: dict[Any, PassAux]) -> SamplingState:
        """The state after a step: new latents, the mask of the step's fullest condition (the guidance orders
        and may split its passes, so it is looked up by condition, not by position), and the conditions' caches
        (a condition the step did not run keeps its old one)."""

        def fullest(field: str, old):
            found = {c: getattr(a, field) for c, a in aux.items() if getattr(a, field) is not None}
            if not found:
                return old
            return torch.sigmoid(found[fullest_condition(found)]).float().cpu()

        cache = self.cache
        if cache is not None:
            cache = {**cache, **{c: a.cache for c, a in aux.items() if a.cache is not None}}
        return SamplingState(x, fullest("mask", self.mask), cache, fullest("persons", self.person_masks))


# Rates the AAC encoder takes (MPEG-4 sampling frequency table); others are resampled to 48 kHz.
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)


def output_audio(path: str) -> tuple[np.ndarray, int]:
    """The driving audio for the output video at the source's own rate and channels (mono or stereo): the model
    hears 16 kHz mono, but the viewer should hear what the user gave. Warns about samples the file cannot hold."""
    from humo.media.audio import load_audio_native

    data, rate = load_audio_native(path)
    if data.shape[1] > 2:  # the MP4 writer takes mono or stereo; a surround mix is folded down evenly
        data = data.mean(axis=1, keepdims=True)
    if rate not in AAC_RATES:
        import soxr

        data, rate = soxr.resample(data, rate, 48000).astype(np.float32), 48000
    over = int((np.abs(data) > 1).sum())
    if over:
        warn(f"audio {path}: {over} sample(s) beyond full scale [-1, 1] are clipped in the output video")
    return data, rate


def peak_memory_gb(device: torch.device) -> float:
    """The most memory this process has held so far on `device` (CUDA allocations, else the process's RSS)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kilobytes on Linux


def schedule_conditions(schedule) -> set:
    """Every condition any phase of the schedule uses."""
    return {c for phase in schedule.phases for c in phase.chain}
