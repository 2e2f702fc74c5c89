"""The training objective: flow matching on the video frames, plus the focus-by-predicting mask loss.

Consistent with the sampler (humo.sampler): for a clean latent x0, noise n and sigma in (0, 1)::

    x_t    = (1 - sigma) * x0 + sigma * n        # add_noise
    target = n - x0                              # velocity_target; what the DiT predicts
    t      = 1000 * sigma                        # the DiT's timestep

sigma is drawn logit-normal (or uniform) with the sampler's shift (sample_timesteps).

References sit after the video frames on the time axis, exactly as at inference: x0 = [video ; refs]. In the
1.7B "replace" layout the reference frames of x_t are overwritten by the clean reference latents (zeros when
the image is null) before the forward pass; in the 17B "concat" layout they are noised like the rest and the
clean references enter through the channel condition y. Either way the reference frames are conditions: the
loss only covers the video frames.

Null inputs (so that classifier-free guidance works at inference): a dropped prompt becomes the null text (the
negative-prompt embedding the guidance passes use); a dropped or missing image becomes zero reference latents
(replace) or the image-free condition (concat, keep_image=False); dropped or missing audio becomes all-zero
Whisper windows; a dropped or missing pose becomes all-zero heatmaps (zero pose-guider features, the model without
its guider). Reference frames always get zero audio windows and no pose. These rules are `humo.conditioning`'s,
which the pipeline applies to its guidance passes too: this module only draws the noise, timesteps and dropout.

Several people (InterActHuman): a batch with each person's audio and region injects each one's audio where their
ground-truth region is (the sampler uses the regions the model predicted at the step before), and the person mask
predictor learns those regions with a focal loss, weighted against the flow loss by `person_mask_weight` (1:1 in
the paper), on the slots that hold a real person.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from humo.conditioning import (
    MODALITIES,
    STRENGTH,
    Conditions,
    Keep,
    PersonConditions,
    dit_inputs,
    keep_for_training,
    person_kwargs,
    pose_kwargs,
    rope_kwargs,
    with_clean_windows,
)
from humo.data.loader import TrainingBatch
from humo.mask_head import size_aware_bce
from humo.person_masks import focal_loss
from humo.reference import concat_condition
from humo.sampler import add_noise, sample_timesteps, velocity_target
from humo.training.curriculum import TASK_USES


@dataclass
class Draws:
    """The random choices of one micro-batch, one row per sample of the *global* batch.

    sigma, timestep: [G]; noise: [G, C, T, h, w] (T: every latent frame of the pass); drop: {modality: [G] bool}.
    """

    sigma: Tensor
    timestep: Tensor
    noise: Tensor
    drop: dict[str, Tensor]
    ordered: bool = False  # omni-condition draws: the keep rule also applies the order of conditions

    def rows(self, lo: int, hi: int) -> Draws:
        """This rank's share of the global batch."""
        return Draws(
            self.sigma[lo:hi],
            self.timestep[lo:hi],
            self.noise[lo:hi],
            {m: d[lo:hi] for m, d in self.drop.items()},
            self.ordered,
        )

    def to(self, device) -> Draws:
        return Draws(
            self.sigma.to(device),
            self.timestep.to(device),
            self.noise.to(device),
            {m: d.to(device) for m, d in self.drop.items()},
            self.ordered,
        )


def keep_ratios(cfg) -> dict[str, float]:
    """Each modality's ratio, the share of the samples that use and have it which keep it.

    HuMo's rule (no ``condition_ratios``): ``1 - cfg.<modality>_dropout``, or ``cfg.<modality>_ratio`` for a
    modality configured by the share that keeps it (pose), each drawn independently. Omni-condition training:
    ``cfg.condition_ratios``, each relative to the next weaker condition (`conditioning.STRENGTH`): its share of
    the samples that keep that one. `nested_thresholds` turns them into one draw.
    """
    if getattr(cfg, "condition_ratios", None):
        return {m: float(cfg.condition_ratios[m]) for m in MODALITIES}
    return {m: 1.0 - drop_probability(cfg, m) for m in MODALITIES}


def nested_thresholds(ratios: dict[str, float]) -> dict[str, float]:
    """Omni-condition ratios (each relative to the next weaker condition) -> the threshold under which one uniform
    keeps each condition: the product of its ratio and every weaker one's. One uniform per sample compared with
    thresholds that never rise along `STRENGTH` keeps a prefix of the conditions (weakest first): the stronger the
    condition, the fewer samples train it, and the ratios halve when each is 0.5 (OmniHuman-1's principles)."""
    out, level = {}, 1.0
    for m in STRENGTH:
        level *= ratios[m]
        out[m] = level
    return out


def drop_probability(cfg, modality: str) -> float:
    """HuMo's rule: the probability a sample's `modality` is dropped: ``cfg.<modality>_dropout``, or
    ``1 - cfg.<modality>_ratio`` for a modality configured by the share that keeps it (pose)."""
    if hasattr(cfg, f"{modality}_dropout"):
        return getattr(cfg, f"{modality}_dropout")
    return 1.0 - getattr(cfg, f"{modality}_ratio")


def draw(generator: torch.Generator, batch: int, shape: tuple[int, ...], cfg) -> Draws:
    """Timesteps, noise [batch, *shape] and dropout decisions from `generator` (CPU), in a fixed order: one
    uniform per sample and registered modality, so registering a modality changes the draws of every modality and
    of later steps (a run resumes exactly; runs from before the registration are not replayed).

    HuMo's rule drops each modality on its own uniform with `drop_probability`. Omni-condition training
    (``cfg.condition_ratios``) compares the sample's first uniform with every `nested_thresholds` entry, so the
    kept conditions are nested, and the keep rule adds the order of conditions (`Draws.ordered`)."""
    sigma, timestep = sample_timesteps(
        batch,
        distribution=cfg.timestep_distribution,
        loc=cfg.timestep_loc,
        scale=cfg.timestep_scale,
        shift=cfg.timestep_shift,
        generator=generator,
    )
    noise = torch.randn((batch, *shape), generator=generator)
    u = torch.rand(batch, len(MODALITIES), generator=generator)
    if getattr(cfg, "condition_ratios", None):
        below = nested_thresholds(keep_ratios(cfg))
        drop = {m: ~(u[:, 0] < below[m]) for m in MODALITIES}
        return Draws(sigma=sigma, timestep=timestep, noise=noise, drop=drop, ordered=True)
    drop = {m: u[:, i] < drop_probability(cfg, m) for i, m in enumerate(MODALITIES)}
    return Draws(sigma=sigma, timestep=timestep, noise=noise, drop=drop)


def row_seed(seed: int, micro: int, row: int) -> int:
    """The seed of one sample's draws: a hash of (run seed, micro-batch number, row of the global batch)."""
    return int(np.random.SeedSequence([seed, micro, row]).generate_state(1, dtype=np.uint64)[0] >> 1)


def draw_rows(seed: int, micro: int, rows: range, shape: tuple[int, ...], cfg) -> Draws:
    """The draws of rows `rows` of global micro-batch `micro`, each from its own seeded generator.

    A pure function of the position: a process draws only its own rows and gets exactly what one process with
    the whole global batch would, and a resumed run needs no generator state.
    """
    parts = [draw(torch.Generator().manual_seed(row_seed(seed, micro, r)), 1, shape, cfg) for r in rows]
    return Draws(
        torch.cat([p.sigma for p in parts]),
        torch.cat([p.timestep for p in parts]),
        torch.cat([p.noise for p in parts]),
        {m: torch.cat([p.drop[m] for p in parts]) for m in parts[0].drop},
        parts[0].ordered,
    )


def keep_flags(batch: TrainingBatch, draws: Draws) -> Keep:
    """Which modalities each sample's pass sees: its task's (curriculum.TASK_USES), what it has (the batch's
    presence flags), and dropout (`conditioning.keep_for_training`, in the order of conditions for omni-condition
    draws)."""
    uses = {m: torch.tensor([m in TASK_USES[task] for task in batch.tasks], dtype=torch.bool) for m in MODALITIES}
    has = {m: batch.has(m).cpu() for m in MODALITIES}
    spared = torch.zeros(len(batch.tasks), dtype=torch.bool)  # draws made without a modality drop none of it
    drop = {m: draws.drop[m].cpu() if m in draws.drop else spared for m in MODALITIES}
    return keep_for_training(uses, has, drop, ordered=draws.ordered)


def training_conditions(batch: TrainingBatch, null_text: Tensor, *, reference_mode: str, use_audio: bool) -> Conditions:
    """The conditions of one micro-batch, as `conditioning.Conditions` (the pipeline builds the same object at
    inference): the prompt and null-text embeddings, the references, the audio windows (zeros on reference frames),
    the pose heatmaps (when the batch carries them: a DiT with a pose guider) and the 17B channel condition. A
    batch with "motion" latents [B, C, m, h, w] (and their audio windows "motion_audio" [B, m, 8, 5, Ca]) trains
    the continuation of a long video: those frames start the time axis clean, as the references end it."""
    refs, motion = batch.refs, batch.motion
    windows = None
    if use_audio:
        carried = batch.motion_audio if batch.motion_audio is not None else (0 if motion is None else motion.shape[2])
        windows = with_clean_windows(batch.audio, refs.shape[2], carried)
    y = y_null = None
    if reference_mode == "concat":
        f = batch.latents.shape[2]
        y = concat_condition(refs, batch.zero_video, keep_image=True, motion=motion, num_video=f)
        y_null = concat_condition(refs, batch.zero_video, keep_image=False, motion=motion, num_video=f)
    persons = None
    if use_audio and batch.person_audio is not None:
        b, p = batch.person_audio.shape[:2]
        own = with_clean_windows(batch.person_audio.flatten(0, 1), refs.shape[2]).unflatten(0, (b, p))
        persons = PersonConditions(own, batch.person_masks)
    return Conditions(
        texts={"prompt": batch.text, "negative": null_text[None]},
        refs=refs,
        num_video=batch.latents.shape[2],
        motion=motion,
        windows=windows,
        y=y,
        y_null=y_null,
        pose=batch.pose,
        persons=persons,
    )


@dataclass
class ModelInputs:
    """What one forward pass gets, and what its output is compared with.

    x: [B, C, T, h, w]; t: [B]; context: [B, L, D]; audio: [B, T, 8, 5, Ca] or None; y: [B, 4 + C, T, h, w]
    (concat layout) or None; target: [B, C, T, h, w]; clean: [T] bool, the frames the loss leaves out
    (T = m + F + n_ref: motion frames, video frames, references); pose: [B or 1, J, 1 + 4(m + F - 1), s*h, s*w]
    heatmaps of the motion and video frames or None; persons: several people's audio and regions
    (`humo.person_masks.PersonAudio`) or None.
    """

    x: Tensor
    t: Tensor
    context: Tensor
    audio: Tensor | None
    y: Tensor | None
    target: Tensor
    clean: Tensor
    frame_times: tuple[int, ...] | None = None
    pose: Tensor | None = None
    persons: object | None = None


def build_inputs(
    batch: TrainingBatch,
    draws: Draws,
    null_text: Tensor,
    *,
    reference_mode: str,
    use_audio: bool,
    reference_rope: str = "continue",
):
    """Assemble the DiT inputs of one micro-batch (see the module docstring; `use_audio` needs batch.audio and
    the concat layout batch.zero_video)."""
    cond = training_conditions(batch, null_text, reference_mode=reference_mode, use_audio=use_audio)
    x0 = cond.clean_latents(batch.latents)
    x = add_noise(x0, draws.noise.to(x0), draws.sigma.to(x0))
    inp = dit_inputs(cond, x, keep_flags(batch, draws), reference_mode, reference_rope)
    return ModelInputs(
        x=inp.x,
        t=draws.timestep.to(x.device),
        context=inp.context,
        audio=inp.audio,
        y=inp.y,
        target=velocity_target(x0, draws.noise.to(x0)),
        clean=cond.clean(x.device),
        frame_times=inp.frame_times,
        pose=inp.pose,
        persons=inp.persons,
    )


def flow_loss(pred: Tensor, target: Tensor, clean: Tensor, weight: Tensor | None = None) -> Tensor:
    """Per-sample mean squared error over the generated frames only (not the `clean` ones [T] bool, the motion and
    reference frames). pred, target: [B, C, T, h, w] -> [B].

    `weight` [B, F, h, w] (optional) weights each latent pixel; the mean is divided by the weight's mean, so a
    uniform weight gives the plain mean and the loss keeps its scale whatever the face's size.
    """
    video = ~clean.to(pred.device)
    diff = pred[:, :, video].float() - target[:, :, video].float()
    if weight is None:
        return diff.square().mean(dim=(1, 2, 3, 4))
    w = weight.float()[:, None]
    return (diff.square() * w).mean(dim=(1, 2, 3, 4)) / w.mean(dim=(1, 2, 3, 4))


def joint_weight(pose: Tensor, joints: list[int], frames: int, size: tuple[int, int]) -> Tensor:
    """Pose heatmaps [B, J, 1 + 4(n - 1), s*h, s*w] of n latent frames (motion, then video) -> [B, frames, h, w]
    for the last `frames` latent frames: per latent pixel, the largest value of the `joints`' heatmaps over the
    pixel frames it stands for (pixel frame 0, then four each) and the s x s pixels it covers."""
    hm = pose[:, joints].amax(dim=1)
    first, rest = hm[:, :1], hm[:, 1:]
    rest = rest.reshape(rest.shape[0], -1, 4, *rest.shape[2:]).amax(dim=2)
    per_frame = torch.cat([first, rest], dim=1)[:, -frames:]
    return torch.nn.functional.adaptive_max_pool2d(per_frame, size)


def loss_weight(
    batch: TrainingBatch,
    frames: int,
    size: tuple[int, int],
    face_loss_weight: float = 0.0,
    pose_loss_weight: float = 0.0,
    pose_loss_joints: tuple[str, ...] = (),
) -> Tensor | None:
    """The flow loss's per-pixel weight [B, F, h, w]: 1 + face_loss_weight * the face-mask fraction (``batch.mask``)
    + pose_loss_weight * `joint_weight` of the clip's own pose (``batch.pose``, zeros where a sample has none),
    whether or not the sample's pose condition was dropped. None when neither applies."""
    from humo.pose import CANONICAL

    w = face_loss_weight * batch.mask if face_loss_weight else None
    if pose_loss_weight and batch.pose is not None:
        j = joint_weight(batch.pose, [CANONICAL.index(n) for n in pose_loss_joints], frames, size)
        w = pose_loss_weight * j if w is None else w + pose_loss_weight * j.to(w)
    return None if w is None else 1.0 + w


def mask_loss(logits: Tensor, target: Tensor, weight: Tensor, clean: Tensor) -> Tensor:
    """Size-aware BCE per sample on the generated frames (not the `clean` ones [T] bool), weighted (0 for samples
    without a face mask), averaged over the batch. logits: [B, T, h, w]; target: [B, F, h, w]; weight: [B] ->
    scalar.

    Averaging over the whole batch (not over the masked samples) keeps the data-parallel mean equal to the mean
    over the global batch.
    """
    video = logits[:, ~clean.to(logits.device)]
    per = torch.stack([size_aware_bce(video[i : i + 1], target[i : i + 1]) for i in range(logits.shape[0])])
    return (per * weight.to(per)).mean()


def compute_loss(
    model,
    batch: TrainingBatch,
    draws: Draws,
    null_text: Tensor,
    *,
    reference_mode: str,
    use_audio: bool,
    reference_rope: str = "continue",
    mask_weight: float = 0.0,
    face_loss_weight: float = 0.0,
    pose_loss_weight: float = 0.0,
    pose_loss_joints: tuple[str, ...] = (),
    person_mask_weight: float = 0.0,
    person_face_weight: float = 0.0,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """One micro-batch: the total loss (scalar, for backward) and detached parts {"flow", "mask", "persons"}.

    face_loss_weight > 0 and pose_loss_weight > 0 weight the flow loss by `loss_weight`: the face mask
    ``batch.mask`` (zeros where a sample has no face mask, so such samples keep the plain mean) and the heatmaps of
    `pose_loss_joints` in ``batch.pose``.

    mask_weight > 0 asks the model for its mask logits (``return_mask=True``) and adds
    ``mask_weight * mask_loss`` against ``batch.mask`` [B, F, h, w] weighted by ``batch.has_mask``.

    person_mask_weight > 0 (a batch with persons) asks for the person mask predictor's logits and adds
    ``person_mask_weight * focal_loss`` against ``batch.person_masks`` on the valid person slots; with
    person_face_weight > 0 each latent pixel of it is weighted 1 + person_face_weight * the face-mask fraction
    (``batch.mask``, every character's face), renormalised per frame.
    """
    inputs = build_inputs(
        batch, draws, null_text, reference_mode=reference_mode, use_audio=use_audio, reference_rope=reference_rope
    )
    device_type = inputs.x.device.type
    want_mask = mask_weight > 0
    want_persons = person_mask_weight > 0 and inputs.persons is not None
    extra = {
        **rope_kwargs(inputs.frame_times),
        **pose_kwargs(inputs.pose),
        **person_kwargs(inputs.persons),
        **({"return_persons": True} if want_persons else {}),
    }
    with torch.autocast(device_type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
        out = model(inputs.x, inputs.t, inputs.context, audio=inputs.audio, y=inputs.y, return_mask=want_mask, **extra)
    person_logits = None
    if want_persons:
        pred, logits, person_logits = out
    else:
        pred, logits = out if want_mask else (out, None)
    frames = int((~inputs.clean).sum())
    weight = loss_weight(
        batch, frames, tuple(pred.shape[-2:]), face_loss_weight, pose_loss_weight, tuple(pose_loss_joints)
    )
    flow = flow_loss(pred, inputs.target, inputs.clean, weight).mean()
    loss = flow
    parts = {"flow": flow.detach()}
    if want_mask:
        m = mask_loss(logits, batch.mask, batch.has_mask, inputs.clean)
        loss = loss + mask_weight * m
        parts["mask"] = m.detach()
    if want_persons:
        face = 1.0 + person_face_weight * batch.mask[:, None] if person_face_weight else None
        p = focal_loss(person_logits, batch.person_masks, batch.person_valid, weight=face)
        loss = loss + person_mask_weight * p
        parts["persons"] = p.detach()
    return loss, parts
