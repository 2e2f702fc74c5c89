"""The DiT's conditioning: one rule for training and inference.

**Modalities** are registered once (`register`): a name, the letter guidance writes it with ("tia"), the flag that
says whether a training sample has it, and what a pass sees without it. Guidance, the curriculum, the objective and
the pipeline read the registry; adding a modality is one registration, its encoder, and its place in `dit_inputs`.

**Conditions** hold what the DiT is conditioned on for one video (inference, batch 1) or one micro-batch (training,
batch B), built once: the text embeddings by source ("prompt", "negative", "empty"), the clean frames, the audio
windows, the pose heatmaps of the generated frames (OmniHuman-1's pose condition) and, in the 17B layout, the
channel condition with and without the image.

**Clean frames** are latent frames the DiT sees clean and the loss ignores: motion frames at the start of the time
axis (the end of a previous segment, for long video) and reference frames at its end (HuMo's minimal-invasive image
injection). The time axis is ``[motion (m) | video (F) | references (n_ref)]``; RoPE numbers the frames in that
order. Motion and video frames are one latent stream (the segment's new frames continue the motion frames' latent
in fours, as in one clip): they carry their own audio windows and their pose; reference frames carry zero audio
windows and zero pose features.

**The inference rule** (OmniHuman-1): conditions are ordered by how strongly they drive motion, text < reference
image < audio < pose, and a condition comes with every weaker one (`check_condition_order`), with two exceptions:
audio without an image (HuMo's text+audio mode, where a zero frame holds the reference slot) and pose without
audio (pose-only driving).

**Keep** says, per batch row, which modalities a pass sees: at inference from the guidance conditions (rows are
condition-major), in training from the task, what each sample has, and dropout (`keep_for_training`).
`dit_inputs(conditions, x, keep)` is the one place a dropped modality becomes its null input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from humo.constants import NULL_TEXTS
from humo.errors import HumoError
from humo.reference import replace_references

# ---------------------------------------------------------------------------------------------------------------
# The modality registry


@dataclass(frozen=True)
class Modality:
    """One input the DiT can be conditioned on.

    name: what guidance conditions, tasks and configs call it; letter: its letter in short condition names
    ("tia"); batch_key: the `TrainingBatch` field holding it; has_key: the batch's [B] bool flag of samples that
    have it (None: every sample has it); cache_key: the field of a cache sample (`humo precompute`) holding it;
    null: what a pass that does not see it gets instead (documentation; `dit_inputs` implements it).
    """

    name: str
    letter: str
    batch_key: str
    has_key: str | None
    cache_key: str
    null: str


MODALITIES: dict[str, Modality] = {}


def register(modality: Modality) -> Modality:
    """Add a modality to the registry (names and letters are unique)."""
    if modality.name in MODALITIES:
        raise HumoError(f"modality {modality.name!r}: already registered")
    if any(m.letter == modality.letter for m in MODALITIES.values()):
        raise HumoError(f"modality {modality.name!r}: letter {modality.letter!r} is taken")
    MODALITIES[modality.name] = modality
    return modality


register(Modality("text", "t", "text", None, "text", "the negative prompt's embedding (or the empty string's)"))
register(
    Modality(
        "image",
        "i",
        "refs",
        "has_ref",
        "references",
        "zero reference latents (1.7B, replace) / the image-free channel condition (17B, concat)",
    )
)
register(
    Modality("audio", "a", "audio", "has_audio", "audio", "all-zero Whisper windows (zeros before the audio projector)")
)
register(
    Modality(
        "pose",
        "p",
        "pose",
        "has_pose",
        "pose",
        "all-zero heatmaps, which the pose guider turns into zero features: the model without its guider",
    )
)

TEXT_SOURCES = ("prompt", *NULL_TEXTS)


def modality_names() -> tuple[str, ...]:
    """Registered modality names in registration order (text, image, audio, pose)."""
    return tuple(MODALITIES)


# OmniHuman-1's order of conditions, from the weakest driver of motion to the strongest, and the pairs (stronger,
# weaker) where the stronger may come without the weaker.
STRENGTH = ("text", "image", "audio", "pose")
MAY_COME_WITHOUT = {
    ("audio", "image"): "HuMo's text+audio mode",
    ("pose", "audio"): "pose-only driving",
}


def check_condition_order(present, who: str = "") -> None:
    """OmniHuman-1's inference rule on the inputs given (modality names): every condition comes with the weaker
    ones, except where `MAY_COME_WITHOUT` allows a gap. A one-line HumoError says what is missing."""
    present = set(present)
    for k, strong in enumerate(STRENGTH):
        if strong not in present:
            continue
        for weak in STRENGTH[:k]:
            if weak not in present and (strong, weak) not in MAY_COME_WITHOUT:
                allowed = "; ".join(f"{s} without {w} ({why})" for (s, w), why in MAY_COME_WITHOUT.items())
                raise HumoError(
                    f"{who}{strong} needs {weak} too: a condition comes with every weaker one "
                    f"(OmniHuman-1's rule, weakest first: {' < '.join(STRENGTH)}; allowed: {allowed})"
                )


# ---------------------------------------------------------------------------------------------------------------
# Conditions


@dataclass
class Conditions:
    """What the DiT is conditioned on, for a batch of 1 (inference: broadcast over guidance rows) or B (training).

    texts: {source: [1 or B, L, D]} for the text sources the passes use, all padded to one length L;
    refs: [1 or B, C, n_ref, h, w] clean reference latents (the image; their frames end the time axis);
    motion: [1 or B, C, m, h, w] clean motion latents (their frames start the time axis), or None;
    windows: [1 or B, m + F + n_ref, window, groups, Ca] audio windows (zeros on reference frames), or None when
        the DiT's audio branch does not run;
    y, y_null: [1 or B, 4 + C, m + F + n_ref, h, w] the 17B channel condition with and without the image, or None;
    num_video: F, the latent frames the DiT generates;
    pose: [1 or B, J, 1 + 4(m + F - 1), s*h, s*w] pose heatmaps of the motion and generated frames (one stream),
        or None when the DiT's pose guider does not run (no pose given, or a model without one);
    persons: several people, each with their own audio and reference frame (InterActHuman), or None.
    """

    texts: dict[str, Tensor]
    refs: Tensor
    num_video: int
    motion: Tensor | None = None
    windows: Tensor | None = None
    y: Tensor | None = None
    y_null: Tensor | None = None
    pose: Tensor | None = None
    persons: PersonConditions | None = None

    @property
    def n_ref(self) -> int:
        return self.refs.shape[2]

    @property
    def n_motion(self) -> int:
        return 0 if self.motion is None else self.motion.shape[2]

    @property
    def num_frames(self) -> int:
        """Latent frames of one DiT pass: motion + video + references."""
        return self.n_motion + self.num_video + self.n_ref

    def clean(self, device=None) -> Tensor:
        """[m + F + n_ref] bool: the frames the DiT sees clean (motion and reference frames)."""
        out = torch.ones(self.num_frames, dtype=torch.bool, device=device)
        out[self.n_motion : self.n_motion + self.num_video] = False
        return out

    def frame_times(self, reference_rope: str = "continue") -> tuple[int, ...] | None:
        """Each latent frame's RoPE time index: motion and video frames in order, reference frames after them
        ("continue", HuMo) or at index 0 ("zero", OmniHuman-1's reference positional encoding). None stands for
        the plain order 0 .. T-1."""
        if reference_rope == "continue" or not self.n_ref:
            return None
        return tuple(range(self.n_motion + self.num_video)) + (0,) * self.n_ref

    def video(self, x: Tensor) -> Tensor:
        """The generated frames of a full latent [B, C, m + F + n_ref, ...] -> [B, C, F, ...]."""
        return x[:, :, self.n_motion : self.n_motion + self.num_video]

    def clean_latents(self, x0_video: Tensor) -> Tensor:
        """The clean latent of the whole time axis: [B, C, F, h, w] video -> [B, C, m + F + n_ref, h, w]."""
        parts = [p.to(x0_video).expand(x0_video.shape[0], -1, -1, -1, -1) for p in (self.motion,) if p is not None]
        parts.append(x0_video)
        if self.n_ref:
            parts.append(self.refs.to(x0_video))
        return torch.cat(parts, dim=2) if len(parts) > 1 else x0_video


@dataclass
class PersonConditions:
    """Several people in one video (InterActHuman; `humo.person_masks`), person p's reference being reference
    frame p.

    windows: [1 or B, P, m + F + n_ref, window, groups, Ca] each person's own audio windows on the time axis (as
        `Conditions.windows` holds the mix's);
    masks: [1 or B, P, m + F, h, w] where each person is on the motion and generated frames, when known before
        sampling (boxes or mask images the user gives; the ground truth in training), else None: the model predicts
        them and the sampler hands each step's prediction to the next.
    """

    windows: Tensor
    masks: Tensor | None = None

    @property
    def count(self) -> int:
        return self.windows.shape[1]


def pad_tokens(x: Tensor, length: int) -> Tensor:
    """[..., L, D] -> [..., length, D] with zeros after L (Wan pads text with zeros)."""
    pad = length - x.shape[-2]
    return x if pad <= 0 else torch.cat([x, x.new_zeros(*x.shape[:-2], pad, x.shape[-1])], dim=-2)


def with_clean_windows(windows: Tensor, n_ref: int, motion: Tensor | int = 0) -> Tensor:
    """Audio windows of the video frames [B, F, ...] -> of the whole time axis [B, m + F + n_ref, ...]: the motion
    frames' own windows before (`motion` [B or 1, m, ...], carried over from the segment that made them; an int m
    gives m zero windows), zero windows for the reference frames after."""
    if isinstance(motion, int):
        motion = windows.new_zeros(windows.shape[0], motion, *windows.shape[2:]) if motion else None
    parts = (
        [windows] if motion is None else [motion.to(windows).expand(windows.shape[0], -1, *windows.shape[2:]), windows]
    )
    if n_ref:
        parts.append(windows.new_zeros(windows.shape[0], n_ref, *windows.shape[2:]))
    return torch.cat(parts, dim=1) if len(parts) > 1 else windows


# ---------------------------------------------------------------------------------------------------------------
# Which modalities a pass sees


@dataclass(frozen=True)
class Keep:
    """Per batch row: the text source ("prompt", "negative" or "empty") and, per other modality, whether it is
    kept ([B] bool each)."""

    text: tuple[str, ...]
    kept: Mapping[str, Tensor]

    def __post_init__(self) -> None:
        bad = sorted(set(self.text) - set(TEXT_SOURCES))
        if bad:
            raise HumoError(f"text source {bad[0]!r}: use one of {', '.join(TEXT_SOURCES)}")

    def __getitem__(self, modality: str) -> Tensor:
        return self.kept[modality]

    @property
    def rows(self) -> int:
        return len(self.text)

    @classmethod
    def of_conditions(cls, conditions: Sequence, rows_each: int) -> Keep:
        """Guidance passes stacked condition-major: rows j*b .. (j+1)*b - 1 see ``conditions[j]``."""
        text = tuple(c.text_source for c in conditions for _ in range(rows_each))
        kept = {
            m: torch.tensor([c.has(m) for c in conditions for _ in range(rows_each)], dtype=torch.bool)
            for m in MODALITIES
            if m != "text"
        }
        return cls(text, kept)


def keep_in_order(kept: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """`check_condition_order` applied per row: a condition whose row lacks a weaker one it may not come without
    (`MAY_COME_WITHOUT`) is dropped too, weakest first. kept: {modality: [B] bool} for every `STRENGTH` entry."""
    out = dict(kept)
    for k, strong in enumerate(STRENGTH):
        for weak in STRENGTH[:k]:
            if (strong, weak) not in MAY_COME_WITHOUT:
                out[strong] = out[strong] & out[weak]
    return out


def keep_for_training(
    uses: Mapping[str, Tensor], has: Mapping[str, Tensor], drop: Mapping[str, Tensor], ordered: bool = False
) -> Keep:
    """Training's rule, per sample: a modality is kept when the sample's task uses it, the sample has it and
    dropout spared it; a text not kept is the negative prompt's embedding (the guidance passes' null text).
    `ordered` (OmniHuman-1's omni-condition training) also applies the inference rule (`keep_in_order`), so every
    row is a set of conditions `check_condition_order` accepts. uses, has, drop: {modality: [B] bool}."""
    kept = {m: uses[m] & has[m] & ~drop[m] for m in MODALITIES}
    if ordered:
        kept = keep_in_order(kept)
    text = tuple("prompt" if k else "negative" for k in kept["text"].tolist())
    return Keep(text, {m: v for m, v in kept.items() if m != "text"})


# ---------------------------------------------------------------------------------------------------------------
# The DiT's inputs


@dataclass
class DiTInputs:
    """One forward pass's inputs: x [B, C, T, h, w]; context [B, L, D]; audio [B, T, window, groups, Ca] or None;
    y [B, 4 + C, T, h, w] or None (T = m + F + n_ref); frame_times: the RoPE time index of each latent frame, or
    None for 0 .. T-1; pose: [B or 1, J, 1 + 4(m + F - 1), s*h, s*w] heatmaps (zeros on rows without pose; 1 row:
    the same for all) or None (no row sees a pose), covering the time axis from its first frame (the DiT's
    default pose_start); persons: several people's audio and masks (`humo.person_masks.PersonAudio`) or None."""

    x: Tensor
    context: Tensor
    audio: Tensor | None
    y: Tensor | None
    frame_times: tuple[int, ...] | None = None
    pose: Tensor | None = None
    persons: object | None = None


def rope_kwargs(frame_times: tuple[int, ...] | None) -> dict:
    """The DiT call's ``frame_times`` argument, given only when the frames are not numbered in order (so a model
    without the argument, a stand-in in a test, keeps working on the default layout)."""
    return {} if frame_times is None else {"frame_times": frame_times}


def pose_kwargs(pose: Tensor | None) -> dict:
    """The DiT call's ``pose`` argument, given only with a pose (as `rope_kwargs`). The heatmaps cover the motion
    and video frames from the time axis's first, where the DiT's ``pose_start`` defaults."""
    return {} if pose is None else {"pose": pose}


def person_kwargs(persons) -> dict:
    """The DiT call's ``persons`` argument, given only with several people (as `rope_kwargs`)."""
    return {} if persons is None else {"persons": persons}


def _rows(t: Tensor, n: int) -> Tensor:
    return t.expand(n, *t.shape[1:]) if t.shape[0] == 1 else t


def _select(keep: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Per row: `a` where `keep`, else `b` (values taken as they are, so a kept row is bit-identical to `a`)."""
    return torch.where(keep.to(a.device).view(-1, *([1] * (a.ndim - 1))), a, b)


def dit_inputs(
    cond: Conditions,
    x: Tensor,
    keep: Keep,
    reference_mode: str,
    reference_rope: str = "continue",
    person_masks: Tensor | None = None,
):
    """The DiT inputs (`DiTInputs`) of noisy latents `x` [B, C, m + F + n_ref, h, w] under `keep` (B rows), for a
    DiT of `reference_mode` and `reference_rope` (its config's). With several people, `person_masks` [1 or B, P,
    m + F, h, w] gate their audio (default `cond.persons.masks`; None there too: the mix everywhere, as the sampler's
    first steps before any prediction); every pass that keeps the audio injects it so, and one that drops it hears
    muted audio everywhere.

    Clean frames, "replace" layout (1.7B): x's motion frames become the clean motion latents, its reference frames
    the clean references when the image is kept, else zeros. "concat" layout (17B): both come in through y (see
    `reference.concat_condition`), and x's clean frames stay noisy, as the release samples its references. The
    null of each modality is written here and nowhere else.
    """
    b = x.shape[0]
    if keep.rows != b:
        raise ValueError(f"keep has {keep.rows} rows, x has {b}")
    if reference_mode == "replace" and cond.motion is not None:
        x = torch.cat([_rows(cond.motion, b).to(x), x[:, :, cond.n_motion :]], dim=2)
    if reference_mode == "replace" and cond.n_ref:
        refs = _rows(cond.refs, b)
        x = replace_references(x, _select(keep["image"], refs, torch.zeros_like(refs)))
    y = None
    if reference_mode == "concat":
        y = _select(keep["image"], _rows(cond.y, b), _rows(cond.y_null, b))
    audio = None
    if cond.windows is not None:
        w = _rows(cond.windows, b)
        audio = _select(keep["audio"], w, torch.zeros_like(w))
    pose = None
    if cond.pose is not None:
        # zero heatmaps give zero guider features, so a batch that keeps the pose nowhere skips the guider (None) and
        # one that keeps a batch-1 pose everywhere passes it once (the DiT broadcasts it): same result, less work
        kept = keep["pose"]
        if bool(kept.all()) and cond.pose.shape[0] == 1:
            pose = cond.pose
        elif bool(kept.any()):
            p = _rows(cond.pose, b)
            pose = _select(kept, p, torch.zeros_like(p))
    persons = None
    if cond.persons is not None:
        from humo.person_masks import PersonAudio

        pw = _rows(cond.persons.windows, b)
        first_ref = cond.n_motion + cond.num_video
        masks = cond.persons.masks if person_masks is None else person_masks
        persons = PersonAudio(
            windows=_select(keep["audio"], pw, torch.zeros_like(pw)),
            masks=masks,
            ref_frames=tuple(range(first_ref, first_ref + cond.persons.count)),
        )
    sources = [s for s in TEXT_SOURCES if s in keep.text]
    missing = [s for s in sources if s not in cond.texts]
    if missing:
        raise ValueError(f"no {missing[0]!r} text embedding in these conditions")
    length = max(cond.texts[s].shape[-2] for s in sources)
    context = None
    for s in sources:
        emb = _rows(pad_tokens(cond.texts[s], length), b)
        rows = torch.tensor([src == s for src in keep.text], dtype=torch.bool)
        context = emb if context is None else _select(rows, emb, context)
    return DiTInputs(
        x=x,
        context=context,
        audio=audio,
        y=y,
        frame_times=cond.frame_times(reference_rope),
        pose=pose,
        persons=persons,
    )
