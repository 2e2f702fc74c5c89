"""Typed configs and presets. Presets are data: a name maps to a frozen dataclass, overridable field by field.

>>> cfg = dit_preset("humo-17b", dim=64, ffn_dim=128, num_heads=4, num_layers=2)   # the 17B layout, tiny
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal, get_args

from humo.errors import HumoError

ReferenceMode = Literal["concat", "replace", "none"]
Prediction = Literal["velocity", "sample"]
ReferenceRope = Literal["continue", "zero"]


@dataclass(frozen=True)
class DiTConfig:
    """The HuMo DiT: a Wan2.1 backbone plus HuMo's audio path and reference injection.

    reference_mode:
      - "concat":  17B (Wan I2V layout). Input channels = latent (16) + mask (4) + condition latent (16) = 36.
      - "replace": 1.7B (Wan T2V layout). The last latent frames are overwritten by the clean reference latents.
      - "none":    plain Wan text-to-video (no references).
    """

    name: str = "custom"
    dim: int = 1536
    ffn_dim: int = 8960
    num_heads: int = 12
    num_layers: int = 30
    in_dim: int = 16
    out_dim: int = 16
    text_dim: int = 4096
    text_len: int = 512
    freq_dim: int = 256
    patch: tuple[int, int, int] = (1, 2, 2)
    eps: float = 1e-6
    qk_norm: bool = True
    cross_attn_norm: bool = True
    rope_theta: float = 10000.0
    rope_max_len: int = 1024
    reference_mode: ReferenceMode = "replace"
    # The RoPE time index of reference frames: "continue" after the last video frame (HuMo, both releases) or "zero",
    # the first frame's (OmniHuman-1's reference positional encoding).
    reference_rope: ReferenceRope = "continue"
    # Audio path (HuMo). audio=False gives the plain Wan2.1 backbone (no audio keys at all).
    audio: bool = True
    audio_window: int = 8  # video frames per latent-frame window
    audio_groups: int = 5  # Whisper hidden-state groups
    audio_feat_dim: int = 1280  # Whisper width
    audio_hidden: int = 512  # projector hidden width
    audio_tokens: int = 16  # tokens per latent frame
    audio_token_dim: int = 1536  # width of an audio token (1536 in both releases)
    # Focus-by-predicting mask head over the last `mask_head_blocks` blocks (0 = absent, as in the release).
    mask_head_blocks: int = 0
    # What the head's output means. "velocity" (Wan, both releases): it is the flow velocity n - x0. "sample": it is
    # the clean latent x0, turned into a velocity inside forward, so training, guidance and samplers see velocities
    # either way. A network narrower than its patch (dim <= out_dim * prod(patch)) cannot carry a full-rank noise
    # through to the output, but clean latents lie near a low-dimensional set it can reach (Li & He 2025, "Back to
    # Basics: Let Denoising Generative Models Denoise"); the toy model with 4x4 patches of a 4x latent is such a net.
    prediction: Prediction = "velocity"
    # OmniHuman-1's pose guider (humo/pose_guider.py): pose_channels features per latent frame from Gaussian heatmaps
    # of pose_joints joints (the canonical set of humo.pose), drawn at pose_scale x the latent's height and width
    # with a standard deviation of pose_sigma heatmap pixels. pose_channels=0: no pose guider (both releases).
    pose_channels: int = 0
    pose_joints: int = 18
    pose_hidden: int = 64
    pose_scale: int = 2
    pose_sigma: float = 1.0
    # InterActHuman's per-person mask predictor (humo/person_masks.py) over the last `person_mask_blocks` blocks, its
    # queries, keys and values `person_mask_dim` wide (0: the model's width). 0 blocks: none (both releases; a
    # request with several persons then needs a box or mask per person).
    person_mask_blocks: int = 0
    person_mask_dim: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.dim % self.num_heads:
            problems.append(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        elif (self.dim // self.num_heads) % 2:
            problems.append(f"head dim {self.dim // self.num_heads} must be even for RoPE")
        if self.reference_mode == "concat" and self.in_dim != 2 * self.out_dim + 4:
            problems.append(f"reference_mode 'concat' needs in_dim = 2*out_dim+4 = {2 * self.out_dim + 4}")
        if self.reference_mode != "concat" and self.in_dim != self.out_dim:
            problems.append(f"reference_mode '{self.reference_mode}' needs in_dim == out_dim")
        if self.mask_head_blocks > self.num_layers:
            problems.append(f"mask_head_blocks {self.mask_head_blocks} > num_layers {self.num_layers}")
        if self.mask_head_blocks and not self.audio:
            problems.append("the mask head sits after the audio cross-attention: it needs audio=True")
        if self.reference_rope not in get_args(ReferenceRope):
            problems.append(
                f"reference_rope '{self.reference_rope}' is not one of {', '.join(get_args(ReferenceRope))}"
            )
        if self.pose_channels < 0:
            problems.append(f"pose_channels {self.pose_channels} must be >= 0 (0: no pose guider)")
        if self.pose_channels and (self.pose_joints < 1 or self.pose_hidden < 1 or not self.pose_sigma > 0):
            problems.append("the pose guider needs pose_joints >= 1, pose_hidden >= 1 and pose_sigma > 0")
        if self.pose_scale < 1 or self.pose_scale & (self.pose_scale - 1):
            problems.append(f"pose_scale {self.pose_scale} must be a power of 2 (heatmap pixels per latent pixel)")
        if not 0 <= self.person_mask_blocks <= self.num_layers:
            problems.append(f"person_mask_blocks {self.person_mask_blocks} must be from 0 to {self.num_layers}")
        if self.person_mask_blocks and not self.audio:
            problems.append("the person mask predictor routes the audio: it needs audio=True")
        if self.person_mask_dim < 0 or (self.person_mask_dim % max(1, self.dim // self.num_heads)):
            problems.append(f"person_mask_dim {self.person_mask_dim} must be a multiple of the head size (0: dim)")
        if self.prediction not in get_args(Prediction):
            problems.append(f"prediction '{self.prediction}' is not one of {', '.join(get_args(Prediction))}")
        if problems:
            raise HumoError(f"invalid DiT config '{self.name}': " + "; ".join(problems))

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def latent_channels(self) -> int:
        """Channels of the VAE latent the DiT denoises (the output channels)."""
        return self.out_dim

    @property
    def audio_window_dim(self) -> int:
        """Flattened input width of the audio projector: window x groups x Whisper width (8*5*1280 = 51200)."""
        return self.audio_window * self.audio_groups * self.audio_feat_dim

    def replace(self, **overrides) -> DiTConfig:
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise HumoError(f"unknown DiT config field(s): {', '.join(sorted(unknown))}")
        if "patch" in overrides:
            overrides["patch"] = tuple(overrides["patch"])
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DiTConfig:
        d = dict(d)
        if "patch" in d:
            d["patch"] = tuple(d["patch"])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise HumoError(f"unknown DiT config field(s): {', '.join(sorted(unknown))}")
        return cls(**d)

    def num_params(self) -> int:
        """Parameter count computed from the config alone (matches `sum(p.numel())` of the built model)."""
        d, f, p = self.dim, self.ffn_dim, math.prod(self.patch)
        n = self.in_dim * p * d + d  # patch embedding
        n += self.text_dim * d + d + d * d + d  # text embedding
        n += self.freq_dim * d + d + d * d + d + d * 6 * d + 6 * d  # time embedding + projection
        attn = 4 * (d * d + d) + (2 * d if self.qk_norm else 0)
        block = 2 * attn + 6 * d + (2 * d if self.cross_attn_norm else 0) + d * f + f + f * d + d
        if self.audio:
            a = self.audio_token_dim
            block += 2 * d  # norm1_audio
            block += 2 * (d * d + d) + 2 * (a * d + d) + 2 * d  # q,o + k,v + norm_q,norm_k
        n += self.num_layers * block
        n += 2 * d + d * self.out_dim * p + self.out_dim * p  # head
        if self.audio:
            h, a = self.audio_hidden, self.audio_token_dim
            n += self.audio_window_dim * h + h + h * h + h + h * self.audio_tokens * a + self.audio_tokens * a + 2 * a
        if self.mask_head_blocks:
            n += self.mask_head_blocks * (2 * d + d * p + p)  # per tapped block: LayerNorm + Linear(dim, prod(patch))
        if self.pose_channels:  # bias-free convolutions (humo.pose_guider.PoseGuider)
            h, c = self.pose_hidden, self.pose_channels
            n += 4 * self.pose_joints * h * 9 + (self.pose_scale.bit_length() - 1) * h * h * 9 + h * c
            n += 3 * c * d * p  # the zero-initialised patch embedding of the features
        if self.person_mask_blocks:  # per tapped block: qkv, LayerNorms of q and k, the two-layer MLP
            i = self.person_mask_dim or d
            n += self.person_mask_blocks * (d * 3 * i + 3 * i + 4 * i + 2 * i * i + i + i * p + p)
        return n


_HUMO_17B = DiTConfig(
    name="humo-17b",
    dim=5120,
    ffn_dim=13824,
    num_heads=40,
    num_layers=40,
    in_dim=36,
    out_dim=16,
    reference_mode="concat",
)
_HUMO_1_7B = DiTConfig(
    name="humo-1.7b",
    dim=1536,
    ffn_dim=8960,
    num_heads=12,
    num_layers=30,
    in_dim=16,
    out_dim=16,
    reference_mode="replace",
)

DIT_PRESETS: dict[str, DiTConfig] = {
    "humo-17b": _HUMO_17B,
    "humo-1.7b": _HUMO_1_7B,
    "wan2.1-t2v-14b": _HUMO_17B.replace(name="wan2.1-t2v-14b", in_dim=16, reference_mode="none", audio=False),
    "wan2.1-t2v-1.3b": _HUMO_1_7B.replace(name="wan2.1-t2v-1.3b", reference_mode="none", audio=False),
    # The proving-ground model: same classes and code paths, tiny widths (toy umT5 width 128, toy Whisper width 64).
    # Its VAE has a 4x spatial stride (TOY_VAE_CONFIG), so it patches 4 x 4 latent pixels: one token per 16 x 16
    # pixels, as with Wan's 8x VAE and 2 x 2 patches. A token then holds 256 latent values and the width is 256, so
    # the head predicts the clean latent, not the velocity (see DiTConfig.prediction; docs/training.md, "Sample
    # prediction", has the comparison). The latent width here is the random toy VAE's 16; the bundled model's DiT
    # is 24 wide, its linear codec's (the recipe sets model_overrides; the checkpoint carries its config).
    "toy": DiTConfig(
        name="toy",
        patch=(1, 4, 4),
        prediction="sample",
        dim=256,
        ffn_dim=1024,
        num_heads=4,
        num_layers=6,
        in_dim=16,
        out_dim=16,
        text_dim=128,
        text_len=64,
        freq_dim=64,
        reference_mode="replace",
        audio_feat_dim=64,
        audio_groups=5,
        audio_hidden=256,
        audio_tokens=4,
        audio_token_dim=128,
        mask_head_blocks=4,
    ),
}


def dit_preset(name: str, **overrides) -> DiTConfig:
    """The preset `name`, with fields overridden (for example a humo-17b layout at width 64 for tests)."""
    if name not in DIT_PRESETS:
        raise HumoError(f"unknown preset '{name}' (choose from: {', '.join(DIT_PRESETS)})")
    cfg = DIT_PRESETS[name]
    return cfg.replace(**overrides) if overrides else cfg
