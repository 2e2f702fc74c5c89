"""Reading a pre-computed cache for training: a Dataset of cached tensors, a collate function, the DataLoader.

The Dataset is indexed by ``(sample index, task)`` pairs (from `humo.training.curriculum.TaskBatchSampler`) and
reads what the sample has (within what the stage runs: references, audio); which of it a task's pass sees is the
curriculum's and `humo.conditioning`'s rule, applied in the objective. The one draw made here, which variant of
each reference a sample shows when training with reference crops (`humo.reference_crops`), is a pure function of
the seed and the sampler's slot number, so DataLoader workers need no seeding and the stream is fixed by the
sampler alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.utils.data

from humo.constants import CONTINUATION_MIN_LATENTS, MOTION_LATENTS
from humo.data.precompute import CACHE_VERSION, DEFAULT_INDEX, ObjectStore
from humo.errors import HumoError


class LatentCache:
    """A cache folder written by `humo precompute` and one of its index files."""

    def __init__(self, root: str | os.PathLike, index: str = DEFAULT_INDEX):
        self.root = Path(root)
        path = self.root / index
        if not path.is_file():
            raise HumoError(f"cache {self.root}: no {index} (run humo precompute first)")
        try:
            self.index = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise HumoError(f"cache index {path}: not valid JSON ({e.msg})") from None
        if self.index.get("version") != CACHE_VERSION:
            raise HumoError(f"cache index {path}: version {self.index.get('version')}, expected {CACHE_VERSION}")
        self.store = ObjectStore(self.root)

    @property
    def samples(self) -> list[dict[str, Any]]:
        return self.index["samples"]

    @property
    def dims(self) -> dict[str, Any]:
        return self.index.get("dims", {})

    def load(self, key: str) -> torch.Tensor:
        return self.store.get(key).float()

    def null_text(self, kind: str = "negative") -> torch.Tensor:
        """The null-text embedding [L, D]: the negative prompt's ("negative") or the empty prompt's ("empty")."""
        return self.load(self.index["null_text"][kind])


class CachedDataset(torch.utils.data.Dataset):
    """Cached samples of one split. ``dataset[(i, task)]`` or ``dataset[(i, task, continuation)]`` -> a dict of
    tensors (see `__getitem__`); with continuation true, the sample as a long video's continuation: the latent
    frames of its first `MOTION_FRAMES` video frames (`MOTION_LATENTS`) become clean motion frames and the rest of
    the same latent stream the segment that carries them on, as `humo.pipeline` makes a long video (any clip of at least
    `CONTINUATION_MIN_LATENTS` latent frames is one; nothing more is cached for it).

    num_refs: reference latents read per sample (the first ones); references / audio / masks / zero_video / pose /
    persons: whether the stage reads them at all (pose: when the DiT has a pose guider; persons: each person's
    audio and region, for InterActHuman's local audio and mask predictor).

    reference_crops: ``{kind: probability}`` over `humo.reference_crops.CROPS` (empty: the whole image only): each
    reference of an item ``(i, task, continuation, slot)`` is shown as the kind drawn from (seed, slot), one of that
    kind's cached variants, or whole where its image has no crop of that kind; an item without a slot shows every
    reference whole. A cache precomputed without crops is an error here when a crop can be drawn.
    """

    def __init__(
        self,
        cache: LatentCache,
        *,
        split: str | None = None,
        num_refs: int = 1,
        references: bool = True,
        audio: bool = True,
        masks: bool = True,
        zero_video: bool = False,
        pose: bool = False,
        persons: bool = False,
        reference_crops: dict | None = None,
        seed: int = 0,
    ):
        from humo.reference_crops import uses_crops

        self.cache = cache
        self.entries = [e for e in cache.samples if split is None or e.get("split") == split]
        if not self.entries:
            where = f" of split '{split}'" if split is not None else ""
            raise HumoError(f"cache {cache.root}: no samples{where}")
        self.num_refs = num_refs
        self.references, self.audio, self.masks, self.zero_video = references, audio, masks, zero_video
        self.pose = pose
        self.persons = persons
        self.crops = dict(reference_crops) if uses_crops(reference_crops) and references and num_refs else None
        self.seed = int(seed)
        if self.crops:
            lacking = [str(e.get("id", i)) for i, e in enumerate(self.entries) if e["references"]
                       and not e.get("reference_crops")]  # fmt: skip
            if lacking:
                raise HumoError(
                    f"cache {cache.root}: reference_crops needs references precomputed with --reference-crops N; "
                    f"{len(lacking)} samples lack them (e.g. {', '.join(lacking[:3])})"
                )

    def __len__(self) -> int:
        return len(self.entries)

    def availability(self) -> list[dict[str, bool]]:
        """Per sample: which optional modalities it has (the registry's: "image", "audio", "pose"), and "mask".
        (A cache written before a modality was registered has no field for it: its samples lack it.)"""
        from humo.conditioning import MODALITIES

        optional = [m for m in MODALITIES.values() if m.has_key is not None]
        return [{**{m.name: bool(e.get(m.cache_key)) for m in optional}, "mask": bool(e["mask"])} for e in self.entries]

    def lacking_continuation(self) -> list[str]:
        """Ids of the samples too short to train as a continuation (motion frames and three latent frames after)."""
        return [str(e.get("id", i)) for i, e in enumerate(self.entries) if e["shape"][1] < CONTINUATION_MIN_LATENTS]

    def reference_keys(self, e: dict[str, Any], slot: int | None) -> tuple[list[str], list[str]]:
        """The cached keys of the references sample `e` shows at `slot` (at most num_refs) and their kinds."""
        from humo.reference_crops import draw_crops

        whole = e["references"][: self.num_refs]
        if not self.crops or slot is None:
            return whole, ["whole"] * len(whole)
        keys, kinds = [], []
        draws = draw_crops(self.crops, self.seed, slot, len(whole))
        for key, (kind, u), variants in zip(whole, draws, e["reference_crops"]):
            options = variants.get(kind, []) if kind != "whole" else []
            if options:  # one of the kind's variants, picked by u
                keys.append(options[min(int(u * len(options)), len(options) - 1)])
                kinds.append(kind)
            else:  # the whole image, drawn or for want of a crop of that kind
                keys.append(key)
                kinds.append("whole")
        return keys, kinds

    def __getitem__(self, item: tuple) -> dict[str, Any]:
        """item: (i, task), (i, task, continuation) or (i, task, continuation, slot) -> {"index", "task",
        "latents" [C, F, h, w], "text" [L, D], "refs" [k, C, h, w] (k <= num_refs), "audio" [F, 8, 5, Ca] or None,
        "mask" [F, h, w] or None, "zero_video" [C, F, h, w] or None,
        "pose" [1 + 4(m + F - 1), P, 18, 3] keypoints (x, y fractions of the frame, confidence) or None,
        "motion" [C, m, h, w] and "motion_audio" [m, 8, 5, Ca] (a continuation, m = 2; None and m = 0 otherwise),
        "person_audio" [P, F, 8, 5, Ca] and "person_masks" [P, F, h, w] (each person's, P <= num_refs; None for a
        sample without persons and for a continuation), "person_valid" [P, F] bool (the frames with a usable mask;
        None: all)}; which crop each reference shows is `reference_keys`'s choice for the slot"""
        i, task = item[:2]
        continuation = len(item) > 2 and bool(item[2])
        slot = item[3] if len(item) > 3 else None
        e = self.entries[i]
        load = self.cache.load
        latents = load(e["video"])
        audio = load(e["audio"]) if self.audio and e["audio"] else None
        mask = load(e["mask"]) if self.masks and e["mask"] else None
        pose = load(e["pose"]) if self.pose and e.get("pose") else None
        motion = motion_audio = None
        if continuation:
            if e["shape"][1] < CONTINUATION_MIN_LATENTS:
                raise HumoError(
                    f"cache sample {e.get('id', i)}: {e['shape'][1]} latent frames, too short for a continuation "
                    f"(at least {CONTINUATION_MIN_LATENTS})"
                )
            # one latent stream: its first m frames are the motion frames (clean), the rest the segment; the pose
            # stays whole (the motion frames carry theirs, as at inference)
            m = MOTION_LATENTS
            motion, latents = latents[:, :m], latents[:, m:]
            if audio is not None:
                motion_audio, audio = audio[:m], audio[m:]
            mask = None if mask is None else mask[m:]
        refs = None
        if self.references and e["references"]:
            keys, _ = self.reference_keys(e, slot)
            refs = torch.cat([load(k) for k in keys], dim=1).transpose(0, 1)
        person_audio = person_masks = person_valid = None
        persons = e.get("persons") if (self.persons and self.audio and not continuation) else None
        if persons and refs is not None:
            n = refs.shape[0]  # the persons whose references the pass sees
            person_audio = torch.stack([load(k) for k in persons["audio"][:n]])
            person_masks = load(persons["masks"])[:n]
            if persons.get("valid"):
                person_valid = load(persons["valid"])[:n] > 0.5
        return {
            "index": i,
            "task": task,
            "latents": latents,
            "text": load(e["text"]),
            "refs": refs,
            "audio": audio,
            "mask": mask,
            "zero_video": load(e["zero_video"]) if self.zero_video else None,
            "pose": pose,
            "motion": motion,
            "motion_audio": motion_audio,
            "person_audio": person_audio,
            "person_masks": person_masks,
            "person_valid": person_valid,
        }


@dataclass
class TrainingBatch:
    """One micro-batch of training samples (all tensors [B, ...] unless said).

    latents [B, C, F, h, w] (F: the shortest clip of the batch; longer ones are cut to their first F latent
    frames); refs [B, C, num_refs, h, w] (zeros where a sample has fewer) and has_ref; text [B, L, D] zero-padded;
    audio [B, F, 8, 5, Ca] (zeros where absent) and has_audio, or audio None when the DiT's audio branch does not
    run; mask [B, F, h, w] face masks and has_mask; tasks: each sample's curriculum task; index [B] long (dataset
    index); zero_video [C, m + F + num_refs, h, w] (17B layout) or None; motion [B, C, m, h, w] and motion_audio
    [B, m, 8, 5, Ca]: the clean frames that start a long video's continuation, or None (m = 0); pose [B, J,
    1 + 4(m + F - 1), s*h, s*w] heatmaps of the motion and video frames (zeros where absent) and has_pose, or both
    None when the DiT has no pose guider; person_audio [B, P, F, 8, 5, Ca] and person_masks [B, P, F, h, w] each
    person's audio windows and region (P = num_refs; person p's reference is reference p), person_valid [B, P, F]
    the slots and frames holding a usable mask of a real person (a sample without persons holds its own audio over
    the whole frame in slot 0, which is the plain global injection), or all None when the stage does not train
    persons.
    """

    latents: torch.Tensor
    refs: torch.Tensor
    has_ref: torch.Tensor
    text: torch.Tensor
    has_audio: torch.Tensor
    mask: torch.Tensor
    has_mask: torch.Tensor
    tasks: tuple[str, ...]
    index: torch.Tensor
    audio: torch.Tensor | None = None
    zero_video: torch.Tensor | None = None
    motion: torch.Tensor | None = None
    motion_audio: torch.Tensor | None = None
    pose: torch.Tensor | None = None
    has_pose: torch.Tensor | None = None
    person_audio: torch.Tensor | None = None
    person_masks: torch.Tensor | None = None
    person_valid: torch.Tensor | None = None

    def has(self, modality: str) -> torch.Tensor:
        """[B] bool: the samples that have `modality` (the registry's presence flag; text: every sample; a flag
        the batch does not carry: none)."""
        from humo.conditioning import MODALITIES

        key = MODALITIES[modality].has_key
        flag = None if key is None else getattr(self, key)
        if flag is None:
            return torch.full((len(self.tasks),), key is None, dtype=torch.bool)
        return flag

    def replace(self, **changes) -> TrainingBatch:
        return dataclasses.replace(self, **changes)

    def to(self, device: torch.device) -> TrainingBatch:
        """Every tensor moved to `device` (non-blocking)."""
        moved = {
            f.name: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for f in dataclasses.fields(self)
            for v in (getattr(self, f.name),)
        }
        return TrainingBatch(**moved)


class Collate:
    """A list of dataset items -> one `TrainingBatch`. `pose`: (scale, sigma) of the DiT's pose guider (heatmaps
    drawn at scale x the latent's size, `humo.pose.render_heatmaps`), or None without one. `persons`: batch each
    person's audio and region (needs `audio_window`)."""

    def __init__(
        self,
        num_refs: int,
        audio_window: list[int] | None = None,
        pose: tuple[int, float] | None = None,
        persons: bool = False,
    ):
        self.num_refs = num_refs
        self.audio_window = list(audio_window) if audio_window else None
        self.pose = pose
        self.persons = persons

    def __call__(self, items: list[dict[str, Any]]) -> TrainingBatch:
        shapes = {tuple(it["latents"].shape[-2:]) for it in items}
        if len(shapes) > 1:
            raise HumoError(
                f"training batch mixes latent sizes {sorted(shapes)}; "
                "precompute with --height/--width or use batch_size 1"
            )
        f = min(it["latents"].shape[1] for it in items)
        latents = torch.stack([it["latents"][:, :f] for it in items])
        b, c, _, h, w = latents.shape
        refs = latents.new_zeros(b, c, self.num_refs, h, w)
        has_ref = torch.zeros(b, dtype=torch.bool)
        for j, it in enumerate(items):
            if it["refs"] is not None and self.num_refs:
                k = min(self.num_refs, it["refs"].shape[0])
                refs[j, :, :k] = it["refs"][:k].transpose(0, 1)
                has_ref[j] = True
        length = max(it["text"].shape[0] for it in items)
        text = latents.new_zeros(b, length, items[0]["text"].shape[1])
        for j, it in enumerate(items):
            text[j, : it["text"].shape[0]] = it["text"]
        audio = None
        if self.audio_window:
            audio = latents.new_zeros(b, f, *self.audio_window)
            for j, it in enumerate(items):
                if it["audio"] is not None:
                    audio[j] = it["audio"][:f]
        mask = latents.new_zeros(b, f, h, w)
        for j, it in enumerate(items):
            if it["mask"] is not None:
                mask[j] = it["mask"][:f]
        motion = motion_audio = None
        if any(it.get("motion") is not None for it in items):
            if not all(it.get("motion") is not None for it in items):
                raise HumoError("training batch mixes continuations and first segments; a batch is one or the other")
            motion = torch.stack([it["motion"] for it in items])
        m = 0 if motion is None else motion.shape[2]  # motion latent frames before the video's
        pose = has_pose = None
        if self.pose is not None:
            from humo.pose import CANONICAL, render_heatmaps

            scale, sigma = self.pose
            frames = 4 * (m + f - 1) + 1  # a continuation's pose covers its motion frames too
            pose = latents.new_zeros(b, len(CANONICAL), frames, h * scale, w * scale)
            has_pose = torch.tensor([it.get("pose") is not None for it in items])
            for j, it in enumerate(items):
                if it.get("pose") is not None:
                    pose[j] = render_heatmaps(it["pose"][:frames], h * scale, w * scale, sigma)
        if motion is not None and self.audio_window:
            motion_audio = latents.new_zeros(b, m, *self.audio_window)
            for j, it in enumerate(items):
                if it.get("motion_audio") is not None:
                    motion_audio[j] = it["motion_audio"][:m]
        person_audio = person_masks = person_valid = None
        if self.persons and self.audio_window and self.num_refs and motion is None:
            person_audio = latents.new_zeros(b, self.num_refs, f, *self.audio_window)
            person_masks = latents.new_zeros(b, self.num_refs, f, h, w)
            person_valid = torch.zeros(b, self.num_refs, f, dtype=torch.bool)
            for j, it in enumerate(items):
                if it.get("person_audio") is not None:
                    k = it["person_audio"].shape[0]
                    person_audio[j, :k] = it["person_audio"][:, :f]
                    person_masks[j, :k] = it["person_masks"][:, :f]
                    valid = it.get("person_valid")
                    person_valid[j, :k] = True if valid is None else valid[:, :f]
                else:  # its own audio over the whole frame: the same as global injection
                    person_audio[j, 0] = audio[j]
                    person_masks[j, 0] = 1.0
        zero_video = items[0]["zero_video"]
        return TrainingBatch(
            latents=latents,
            refs=refs,
            has_ref=has_ref,
            text=text,
            has_audio=torch.tensor([it["audio"] is not None for it in items]),
            mask=mask,
            has_mask=torch.tensor([it["mask"] is not None for it in items]),
            tasks=tuple(it["task"] for it in items),
            index=torch.tensor([it["index"] for it in items]),
            audio=audio,
            # the whole stream's frames (motion, video) and the reference slots after them (reference.concat_condition)
            zero_video=None if zero_video is None else zero_video[:, : m + f + self.num_refs],
            pose=pose,
            has_pose=has_pose,
            motion=motion,
            motion_audio=motion_audio,
            person_audio=person_audio,
            person_masks=person_masks,
            person_valid=person_valid,
        )


def make_loader(dataset, batch_sampler, collate: Collate, num_workers: int = 0, pin_memory: bool = False):
    """A DataLoader over `dataset` following `batch_sampler` (endless). Workers only read files."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        collate_fn=collate,
        num_workers=num_workers,
        pin_memory=pin_memory,
        prefetch_factor=2 if num_workers else None,
        persistent_workers=False,
    )
