"""Reference injection (minimal-invasive): reference latents sit at the END of the time axis, after the video
(and motion frames, for long video, at its start: `humo.conditioning` treats both as clean frames).

No new modules: the DiT sees references as extra latent frames (RoPE time continues after the video), and only
self-attention has to learn to use them. The two released variants inject them differently:

- 17B, "concat" (Wan I2V layout): the DiT input is `noisy latent (16) ++ y` on channels, with
  `y = mask (4) ++ condition (16)`; condition = the zero-video latent on video frames and the reference latents on
  reference frames; mask = 1 on reference frames. Without the image, condition = zero-video latent everywhere
  (the mask stays). The reference positions of the noisy latent are sampled like the rest and dropped at the end.
- 1.7B, "replace" (Wan T2V layout): before every forward pass the last n_ref latent frames are overwritten by the
  clean reference latents (zeros when the image is not kept).
"""

from __future__ import annotations

import torch

MASK_CHANNELS = 4


def concat_condition(
    refs: torch.Tensor,
    zero_video: torch.Tensor,
    keep_image: bool = True,
    motion: torch.Tensor | None = None,
    num_video: int | None = None,
) -> torch.Tensor:
    """The 17B channel condition `y`.

    refs: [B, C, n_ref, h, w] clean reference latents; zero_video: [C, F_z, h, w] latent of an all-zero clip of
    the whole stream, motion frames included (at least m + `num_video` = F_vid latent frames; default F_vid:
    F_z - m); motion: [B, C, m, h, w] clean motion latents that start the time axis (long video: the same latent
    stream as the video frames after them), or None -> y: [B, 4 + C, m + F_vid + n_ref, h, w]. Clean frames (motion,
    references) have mask 1 and their latents as the condition, as Wan's I2V layout gives its first frame; motion
    frames stay when the image is dropped.
    """
    b, c, n_ref, h, w = refs.shape
    m = 0 if motion is None else motion.shape[2]
    f_vid = zero_video.shape[1] - m if num_video is None else num_video
    zv = zero_video[:, m : m + f_vid].to(refs).unsqueeze(0).expand(b, -1, -1, -1, -1)
    if keep_image:
        cond = torch.cat([zv, refs], dim=2)
    else:
        # The release's null condition takes the zero-video latent over the reference frames too.
        null = zero_video_frames(zero_video, m + f_vid, n_ref).to(refs).expand(b, -1, -1, -1, -1)
        cond = torch.cat([zv, null], dim=2)
    if m:
        cond = torch.cat([motion.to(refs).expand(b, -1, -1, -1, -1), cond], dim=2)
    mask = refs.new_zeros(b, MASK_CHANNELS, m + f_vid + n_ref, h, w)
    mask[:, :, :m] = 1
    mask[:, :, m + f_vid :] = 1
    return torch.cat([mask, cond], dim=1)


def zero_video_frames(zero_video: torch.Tensor, start: int, n: int) -> torch.Tensor:
    """Latent frames start .. start+n of an all-zero clip: the null condition of the reference slots.

    The release slices one precomputed zero-video latent of 129 (480p) or 161 (720p) frames for the whole sequence,
    video and references: give a `zero_video` that long (the latent of ``frames + 4 * n_ref`` zero frames) to match
    it. A causal VAE's latent frames of a zero clip settle after the first few, so when `zero_video` is shorter its
    last frame stands in for the missing ones (a cache written before this rule).
    zero_video: [C, F, h, w] -> [1, C, n, h, w]
    """
    have = zero_video[:, start : start + n]
    if have.shape[1] < n:
        have = torch.cat([have, zero_video[:, -1:].expand(-1, n - have.shape[1], -1, -1)], dim=1)
    return have.unsqueeze(0)


def replace_references(x: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
    """The 1.7B injection: overwrite the last n_ref frames of x with the clean references.

    x: [B, C, F_vid + n_ref, h, w]; refs: [B, C, n_ref, h, w] -> same shape as x (a new tensor)
    """
    n_ref = refs.shape[2]
    return torch.cat([x[:, :, : x.shape[2] - n_ref], refs.to(x)], dim=2)
