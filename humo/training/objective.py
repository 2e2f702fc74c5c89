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
Whisper windows. Reference frames always get zero audio windows.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

from humo.mask_head import size_aware_bce
from humo.reference import concat_condition, replace_references
from humo.sampler import add_noise, sample_timesteps, velocity_target
from humo.training.curriculum import TASK_ID


@dataclass
class Draws:
    """The random choices of one micro-batch, one row per sample of the *global* batch.

    sigma, timestep: [G]; noise: [G, C, F + n_ref, h, w]; drop_text, drop_image, drop_audio: [G] bool.
    """

    sigma: Tensor
    timestep: Tensor
    noise: Tensor
    drop_text: Tensor
    drop_image: Tensor
    drop_audio: Tensor

    def rows(self, lo: int, hi: int) -> Draws:
        """This rank's share of the global batch."""
        return Draws(**{f.name: getattr(self, f.name)[lo:hi] for f in fields(self)})

    def to(self, device) -> Draws:
        return Draws(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def draw(generator: torch.Generator, batch: int, shape: tuple[int, ...], cfg) -> Draws:
    """Timesteps, noise [batch, *shape] and dropout decisions from `generator` (CPU), in a fixed order."""
    sigma, timestep = sample_timesteps(
        batch,
        distribution=cfg.timestep_distribution,
        loc=cfg.timestep_loc,
        scale=cfg.timestep_scale,
        shift=cfg.timestep_shift,
        generator=generator,
    )
    noise = torch.randn((batch, *shape), generator=generator)
    u = torch.rand(batch, 3, generator=generator)
    return Draws(
        sigma=sigma,
        timestep=timestep,
        noise=noise,
        drop_text=u[:, 0] < cfg.text_dropout,
        drop_image=u[:, 1] < cfg.image_dropout,
        drop_audio=u[:, 2] < cfg.audio_dropout,
    )


def row_seed(seed: int, micro: int, row: int) -> int:
    """The seed of one sample's draws: a hash of (run seed, micro-batch number, row of the global batch)."""
    return int(np.random.SeedSequence([seed, micro, row]).generate_state(1, dtype=np.uint64)[0] >> 1)


def draw_rows(seed: int, micro: int, rows: range, shape: tuple[int, ...], cfg) -> Draws:
    """The draws of rows `rows` of global micro-batch `micro`, each from its own seeded generator.

    A pure function of the position: a process draws only its own rows and gets exactly what one process with
    the whole global batch would, and a resumed run needs no generator state.
    """
    parts = [draw(torch.Generator().manual_seed(row_seed(seed, micro, r)), 1, shape, cfg) for r in rows]
    return Draws(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(Draws)})


def keep_flags(batch: dict, draws: Draws) -> tuple[Tensor, Tensor, Tensor]:
    """Per sample: (keep_text, keep_image, keep_audio) [B] bool from the task, what the sample has, and dropout."""
    task = batch["task"]
    keep_text = ~draws.drop_text
    uses_image = (task == TASK_ID["subject"]) | (task == TASK_ID["av"])
    keep_image = uses_image & batch["has_ref"] & ~draws.drop_image
    keep_audio = (task == TASK_ID["av"]) & batch["has_audio"] & ~draws.drop_audio
    return keep_text, keep_image, keep_audio


def _pad_tokens(x: Tensor, length: int) -> Tensor:
    """[..., L, D] -> [..., length, D] with zeros after L (Wan pads text with zeros)."""
    pad = length - x.shape[-2]
    return x if pad <= 0 else torch.cat([x, x.new_zeros(*x.shape[:-2], pad, x.shape[-1])], dim=-2)


def mix_context(text: Tensor, null_text: Tensor, keep_text: Tensor) -> Tensor:
    """text: [B, L, D]; null_text: [Ln, D]; keep_text: [B] -> [B, max(L, Ln), D] (prompt or null text per row)."""
    length = max(text.shape[1], null_text.shape[0])
    text = _pad_tokens(text, length)
    null = _pad_tokens(null_text.to(text), length).expand_as(text)
    return torch.where(keep_text[:, None, None], text, null)


@dataclass
class ModelInputs:
    """What one forward pass gets, and what its output is compared with.

    x: [B, C, F + n_ref, h, w]; t: [B]; context: [B, L, D]; audio: [B, F + n_ref, 8, 5, Ca] or None;
    y: [B, 4 + C, F + n_ref, h, w] (concat layout) or None; target: [B, C, F + n_ref, h, w]; num_video: F.
    """

    x: Tensor
    t: Tensor
    context: Tensor
    audio: Tensor | None
    y: Tensor | None
    target: Tensor
    num_video: int


def build_inputs(batch: dict, draws: Draws, null_text: Tensor, *, reference_mode: str, use_audio: bool):
    """Assemble the DiT inputs of one micro-batch (see the module docstring).

    batch: latents [B, C, F, h, w]; refs [B, C, n_ref, h, w]; has_ref, has_audio [B] bool; text [B, L, D];
    audio [B, F, 8, 5, Ca] (when use_audio); zero_video [C, F, h, w] (concat layout); task [B] long.
    """
    latents, refs = batch["latents"], batch["refs"]
    num_video, n_ref = latents.shape[2], refs.shape[2]
    keep_text, keep_image, keep_audio = keep_flags(batch, draws)
    x0 = torch.cat([latents, refs.to(latents)], dim=2) if n_ref else latents
    x = add_noise(x0, draws.noise.to(x0), draws.sigma.to(x0))
    y = None
    if reference_mode == "replace" and n_ref:
        x = replace_references(x, refs * keep_image[:, None, None, None, None].to(refs))
    elif reference_mode == "concat":
        zv = batch["zero_video"]
        y_kept = concat_condition(refs, zv, keep_image=True)
        y_null = concat_condition(refs, zv, keep_image=False)
        y = torch.where(keep_image[:, None, None, None, None], y_kept, y_null)
    audio = None
    if use_audio:
        a = batch["audio"] * keep_audio[:, None, None, None, None].to(batch["audio"])
        audio = torch.cat([a, a.new_zeros(a.shape[0], n_ref, *a.shape[2:])], dim=1) if n_ref else a
    return ModelInputs(
        x=x,
        t=draws.timestep.to(x.device),
        context=mix_context(batch["text"], null_text, keep_text),
        audio=audio,
        y=y,
        target=velocity_target(x0, draws.noise.to(x0)),
        num_video=num_video,
    )


def flow_loss(pred: Tensor, target: Tensor, num_video: int, weight: Tensor | None = None) -> Tensor:
    """Per-sample mean squared error over the video frames only. pred, target: [B, C, F + n_ref, h, w] -> [B].

    `weight` [B, F, h, w] (optional) weights each latent pixel; the mean is divided by the weight's mean, so a
    uniform weight gives the plain mean and the loss keeps its scale whatever the face's size.
    """
    diff = pred[:, :, :num_video].float() - target[:, :, :num_video].float()
    if weight is None:
        return diff.square().mean(dim=(1, 2, 3, 4))
    w = weight.float()[:, None]
    return (diff.square() * w).mean(dim=(1, 2, 3, 4)) / w.mean(dim=(1, 2, 3, 4))


def face_weight(mask: Tensor, face_loss_weight: float) -> Tensor | None:
    """[B, F, h, w] face-mask fractions -> the flow loss's per-pixel weight 1 + w * mask (None when w is 0)."""
    return None if face_loss_weight == 0 else 1.0 + face_loss_weight * mask


def mask_loss(logits: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Size-aware BCE per sample on the video frames, weighted (0 for samples without a face mask), averaged over
    the batch. logits: [B, F + n_ref, h, w]; target: [B, F, h, w]; weight: [B] -> scalar.

    Averaging over the whole batch (not over the masked samples) keeps the data-parallel mean equal to the mean
    over the global batch.
    """
    f = target.shape[1]
    per = torch.stack([size_aware_bce(logits[i : i + 1, :f], target[i : i + 1]) for i in range(logits.shape[0])])
    return (per * weight.to(per)).mean()


def compute_loss(
    model,
    batch: dict,
    draws: Draws,
    null_text: Tensor,
    *,
    reference_mode: str,
    use_audio: bool,
    mask_weight: float = 0.0,
    face_loss_weight: float = 0.0,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """One micro-batch: the total loss (scalar, for backward) and detached parts {"flow", "mask"}.

    face_loss_weight > 0 weights the flow loss by `face_weight` of ``batch["mask"]`` (zeros where a sample has
    no face mask, so such samples keep the plain mean).

    mask_weight > 0 asks the model for its mask logits (``return_mask=True``) and adds
    ``mask_weight * mask_loss`` against ``batch["mask"]`` [B, F, h, w] weighted by ``batch["has_mask"]``.
    """
    inputs = build_inputs(batch, draws, null_text, reference_mode=reference_mode, use_audio=use_audio)
    device_type = inputs.x.device.type
    want_mask = mask_weight > 0
    with torch.autocast(device_type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
        out = model(inputs.x, inputs.t, inputs.context, audio=inputs.audio, y=inputs.y, return_mask=want_mask)
    pred, logits = out if want_mask else (out, None)
    weight = face_weight(batch["mask"], face_loss_weight) if face_loss_weight else None
    flow = flow_loss(pred, inputs.target, inputs.num_video, weight).mean()
    loss = flow
    parts = {"flow": flow.detach()}
    if want_mask:
        m = mask_loss(logits, batch["mask"], batch["has_mask"])
        loss = loss + mask_weight * m
        parts["mask"] = m.detach()
    return loss, parts
