"""OmniHuman-1's pose guider: driving-pose heatmaps -> features stacked with the noisy latents, zero-initialised.

The heatmap sequence (`humo.pose`: one Gaussian channel per joint, per video frame) is folded onto the DiT's latent
grid the way Wan's causal VAE folds video: the first frame alone, then groups of 4 (1 + 4k frames -> 1 + k latent
frames; the first frame is repeated to fill its group, so every latent frame sees 4 heatmaps stacked on channels).
Bias-free 3x3 convolutions with SiLU bring each latent frame's heatmaps down from `pose_scale` x the latent's
height and width to the latent's, as `pose_channels` features. Each latent frame's features are then
concatenated with those of the frames before and after it (zeros past the ends), for the motion around it.

The paper stacks these features with the noisy latents along the channels before the patch embedding. A
convolution over concatenated channels is the sum of a convolution over each part, so that is done here as a
second, bias-free patch embedding of the features whose output is added to the patch tokens; its weights start
at zero, the weights a widened patch embedding would give its new channels, so a pretrained model with a fresh
guider computes exactly what it did without one. The motion and video frames of a segment carry pose (they are
one latent stream, so the heatmaps of its 1 + 4k frames fold as one clip's); reference frames get zero features.

Zero heatmaps give zero features (no bias anywhere, SiLU(0) = 0): a pass without pose (a dropped or absent pose)
is the model without a guider, bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from humo.configs import DiTConfig
from humo.constants import TEMPORAL_STRIDE


def fold_time(maps: torch.Tensor) -> torch.Tensor:
    """[B, J, 1 + 4k, H, W] per video frame -> [B, 4J, 1 + k, H, W] per latent frame (Wan's causal layout: latent
    frame 0 holds video frame 0 four times, latent frame i >= 1 video frames 4i-3 .. 4i; channel s*J + j is joint
    j of the group's s-th frame)."""
    b, j, t, h, w = maps.shape
    if (t - 1) % TEMPORAL_STRIDE:
        raise ValueError(f"pose heatmaps of {t} frames: Wan's layout needs 1 + 4k")
    pad = maps[:, :, :1].expand(b, j, TEMPORAL_STRIDE - 1, h, w)
    x = torch.cat([pad, maps], dim=2).reshape(b, j, -1, TEMPORAL_STRIDE, h, w)
    return x.permute(0, 3, 1, 2, 4, 5).reshape(b, TEMPORAL_STRIDE * j, -1, h, w)


def with_neighbours(features: torch.Tensor) -> torch.Tensor:
    """[B, C, F, h, w] -> [B, 3C, F, h, w]: each latent frame's features after those of the frame before it and
    before those of the frame after it (zeros at the two ends)."""
    zero = torch.zeros_like(features[:, :, :1])
    before = torch.cat([zero, features[:, :, :-1]], dim=2)
    after = torch.cat([features[:, :, 1:], zero], dim=2)
    return torch.cat([before, features, after], dim=1)


class PoseGuider(nn.Module):
    """Heatmaps [B, J, 1 + 4(F-1), s*h, s*w] -> features [B, 3 * pose_channels, F, h, w] (`features`), and those
    placed on the DiT's time axis and patch-embedded into tokens (`tokens`, added to the latent's patch tokens)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        j, hidden, c = cfg.pose_joints, cfg.pose_hidden, cfg.pose_channels
        layers: list[nn.Module] = [nn.Conv2d(TEMPORAL_STRIDE * j, hidden, 3, padding=1, bias=False), nn.SiLU()]
        for _ in range(cfg.pose_scale.bit_length() - 1):  # one stride-2 convolution per halving of the size
            layers += [nn.Conv2d(hidden, hidden, 3, stride=2, padding=1, bias=False), nn.SiLU()]
        layers.append(nn.Conv2d(hidden, c, 1, bias=False))
        self.encoder = nn.Sequential(*layers)
        self.patch_embedding = nn.Conv3d(3 * c, cfg.dim, kernel_size=cfg.patch, stride=cfg.patch, bias=False)
        nn.init.zeros_(self.patch_embedding.weight)

    def features(self, maps: torch.Tensor) -> torch.Tensor:
        """maps: [B, J, 1 + 4(F-1), H, W] -> [B, 3C, F, H / pose_scale, W / pose_scale]. The convolutions run per
        latent frame as 2D ones (Conv3d with a time kernel of 1 is the same and much slower on CPUs)."""
        x = fold_time(maps.to(self.patch_embedding.weight.dtype))
        b, cin, f, h, w = x.shape
        y = self.encoder(x.transpose(1, 2).reshape(b * f, cin, h, w))
        return with_neighbours(y.reshape(b, f, *y.shape[1:]).transpose(1, 2))

    def on_time_axis(self, maps: torch.Tensor, frames: int, start: int) -> torch.Tensor:
        """The features of the video frames at latent frames start .. start + F - 1 of a `frames`-frame time axis,
        zeros on the others (motion frames before, references after) -> [B, 3C, frames, h, w]."""
        feats = self.features(maps)
        f = feats.shape[2]
        if start < 0 or start + f > frames:
            raise ValueError(f"pose features of {f} latent frames from frame {start} do not fit {frames} frames")
        zeros = lambda n: feats.new_zeros(*feats.shape[:2], n, *feats.shape[3:])  # noqa: E731
        return torch.cat([zeros(start), feats, zeros(frames - start - f)], dim=2)
