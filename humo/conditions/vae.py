"""The Wan2.1 3D causal VAE through diffusers' `AutoencoderKLWan`.

What lives here (the network itself is diffusers'):
- our key mapping from the official `Wan2.1_VAE.pth` layout (`encoder.downsamples.N...`, `residual.0/2/3/6`,
  `conv1`/`conv2`, ...) to diffusers' names, parameterised by the architecture, loaded strictly;
- per-channel latent normalisation with the Wan latent mean/std: ``z = (mu - mean) / std``;
- causal decoding one latent frame at a time into a preallocated output buffer (memory does not grow with the
  video length), with optional spatial tiling with overlap blending for large frames;
- the cached latent of an all-zero (mid-grey) video that the 17B condition path uses.

Shapes: videos are ``[B, 3, T, H, W]`` in [-1, 1] with ``T = 4k + 1`` and H, W multiples of the spatial stride s;
latents are ``[B, 16, 1 + (T - 1) // 4, H / s, W / s]``. s is 8 for Wan2.1 (4 stages, 3 downsamples) and 4 for
the 3-stage proving-ground VAE (`TOY_VAE_CONFIG`). The temporal stride is 4 in every supported config.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from humo.constants import TEMPORAL_STRIDE
from humo.errors import HumoError, atomic_path, check_keys, first_line

# Per-channel statistics of the Wan2.1 VAE latent (16 channels), used as z = (mu - mean) / std.
WAN_LATENT_MEAN: tuple[float, ...] = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
WAN_LATENT_STD: tuple[float, ...] = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip

SPATIAL_STRIDE = 8  # Wan2.1's; a WanVAE reads its own from its config (`WanVAE.spatial_stride`)

# `AutoencoderKLWan` keyword arguments of the released Wan2.1 VAE (base dim 96, 4 stages, 2 residual blocks).
WAN21_VAE_CONFIG: dict[str, Any] = {
    "base_dim": 96,
    "z_dim": 16,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_scales": [],
    "temperal_downsample": [False, True, True],
    "dropout": 0.0,
    "latents_mean": list(WAN_LATENT_MEAN),
    "latents_std": list(WAN_LATENT_STD),
}

# The proving-ground VAE: the same classes and code paths (2 temporal downsamples -> 4x time, 16 latent channels),
# narrow widths (8 -> 32 channels, 0.49M parameters) and one residual block per stage, but 3 stages: 4x space, not
# 8x. At 64 x 64 an 8x latent puts the whole mouth (at most 10 x 6 px) inside one latent pixel, which a CPU-sized VAE
# cannot keep; at 4x it spans 2-3 latent pixels, as a mouth does in a 480p frame under the real 8x VAE
# (docs/proving-ground.md, "The toy VAE", has the measurement). The toy DiT patches 4 x 4 latent pixels, so its
# token grid is what 8x with 2 x 2 patches gives. Its latent statistics start at 0/1; `humo train-vae` measures and
# stores real ones.
TOY_VAE_CONFIG: dict[str, Any] = {
    "base_dim": 8,
    "z_dim": 16,
    "dim_mult": [1, 2, 4],
    "num_res_blocks": 1,
    "attn_scales": [],
    "temperal_downsample": [True, True],
    "dropout": 0.0,
    "latents_mean": [0.0] * 16,
    "latents_std": [1.0] * 16,
}

_ZERO_CACHE_SIZE = 8


# ----------------------------------------------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------------------------------------------


def latent_shape(
    frames: int, height: int, width: int, z_dim: int = 16, spatial_stride: int = SPATIAL_STRIDE
) -> tuple[int, int, int, int]:
    """``(z_dim, 1 + (frames - 1) // 4, height / s, width / s)`` for a video of that size (s = `spatial_stride`);
    HumoError if invalid."""
    check_video_size(frames, height, width, spatial_stride)
    return (z_dim, 1 + (frames - 1) // TEMPORAL_STRIDE, height // spatial_stride, width // spatial_stride)


def check_video_size(frames: int, height: int, width: int, spatial_stride: int = SPATIAL_STRIDE) -> None:
    """Frames must be 4k + 1 (k >= 0); height and width positive multiples of `spatial_stride`."""
    if int(frames) != frames or frames < 1 or (frames - 1) % TEMPORAL_STRIDE:
        raise HumoError(f"video frames {frames}: must be 4k+1 (1, 5, 9, ..., 97)")
    for name, v in (("height", height), ("width", width)):
        if int(v) != v or v < spatial_stride or v % spatial_stride:
            raise HumoError(f"video {name} {v}: must be a positive multiple of {spatial_stride}")


def check_video_tensor(video: torch.Tensor, spatial_stride: int) -> None:
    """A codec's input: ``[B, 3, T, H, W]`` with T = 4k + 1 and H, W multiples of `spatial_stride`."""
    if not isinstance(video, torch.Tensor) or video.dim() != 5 or video.shape[1] != 3:
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise HumoError(f"video tensor {shape}: expected [B, 3, T, H, W]")
    check_video_size(video.shape[2], video.shape[3], video.shape[4], spatial_stride)


def check_latent_tensor(latents: torch.Tensor, z_dim: int) -> None:
    """A codec's decode input: a non-empty ``[B, z_dim, F, h, w]``."""
    if not isinstance(latents, torch.Tensor) or latents.dim() != 5 or latents.shape[1] != z_dim:
        shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
        raise HumoError(f"latent tensor {shape}: expected [B, {z_dim}, F, h, w]")
    if min(latents.shape[2:]) < 1:
        raise HumoError(f"latent tensor {tuple(latents.shape)}: empty")


def images_as_videos(images: torch.Tensor) -> torch.Tensor:
    """``[N, 3, H, W]`` -> one-frame videos ``[N, 3, 1, H, W]`` (how a codec encodes reference images)."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise HumoError(f"image tensor {shape}: expected [N, 3, H, W]")
    return images.unsqueeze(2)


def strides_of(config: Mapping[str, Any]) -> tuple[int, int]:
    """(temporal, spatial) stride of an `AutoencoderKLWan` config: one spatial halving per stage but the last, one
    temporal halving per True in `temperal_downsample` (diffusers' defaults where a key is absent)."""
    temporal = config.get("temperal_downsample", [False, True, True])
    return 2 ** sum(bool(t) for t in temporal), 2 ** (len(config.get("dim_mult", [1, 2, 4, 4])) - 1)


# ----------------------------------------------------------------------------------------------------------------
# Official <-> diffusers key mapping
# ----------------------------------------------------------------------------------------------------------------

# Inside one residual block: the official block is Sequential(RMS_norm, SiLU, conv, RMS_norm, SiLU, Dropout, conv)
# plus a 1x1x1 `shortcut` conv when the width changes; diffusers names the same layers.
_RESBLOCK_TO_OFFICIAL = {
    "norm1.gamma": "residual.0.gamma",
    "conv1.weight": "residual.2.weight",
    "conv1.bias": "residual.2.bias",
    "norm2.gamma": "residual.3.gamma",
    "conv2.weight": "residual.6.weight",
    "conv2.bias": "residual.6.bias",
    "conv_shortcut.weight": "shortcut.weight",
    "conv_shortcut.bias": "shortcut.bias",
}
# The output head is Sequential(RMS_norm, SiLU, conv).
_HEAD_TO_OFFICIAL = {
    "norm_out.gamma": "head.0.gamma",
    "conv_out.weight": "head.2.weight",
    "conv_out.bias": "head.2.bias",
}
_TOP_TO_OFFICIAL = {
    "quant_conv.weight": "conv1.weight",
    "quant_conv.bias": "conv1.bias",
    "post_quant_conv.weight": "conv2.weight",
    "post_quant_conv.bias": "conv2.bias",
}


def _resblock_leaf(leaf: str, key: str) -> str:
    if leaf not in _RESBLOCK_TO_OFFICIAL:
        raise KeyError(f"unknown residual-block parameter in {key}")
    return _RESBLOCK_TO_OFFICIAL[leaf]


def diffusers_key_to_official(key: str, config: Mapping[str, Any]) -> str:
    """The official Wan2.1 name of one `AutoencoderKLWan` state-dict key for the architecture in `config`.

    The official decoder keeps its stages in one flat `upsamples` Sequential: stage i holds ``num_res_blocks + 1``
    residual blocks followed by one Resample (all stages but the last), so diffusers'
    ``up_blocks.{i}.resnets.{r}`` is flat index ``i * (num_res_blocks + 2) + r`` and ``up_blocks.{i}.upsamplers.0``
    is ``i * (num_res_blocks + 2) + num_res_blocks + 1``. The encoder's `downsamples` is already flat in both.
    """
    if key in _TOP_TO_OFFICIAL:
        return _TOP_TO_OFFICIAL[key]
    side, _, rest = key.partition(".")
    if side not in ("encoder", "decoder"):
        raise KeyError(f"unknown VAE key {key}")
    if rest.startswith("conv_in."):
        return f"{side}.conv1.{rest[len('conv_in.') :]}"
    if rest in _HEAD_TO_OFFICIAL:
        return f"{side}.{_HEAD_TO_OFFICIAL[rest]}"
    m = re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", rest)
    if m:
        kind, idx, leaf = m.group(1), int(m.group(2)), m.group(3)
        if kind == "attentions":
            # middle = Sequential(ResidualBlock, AttentionBlock, ResidualBlock); attention names are shared.
            return f"{side}.middle.{2 * idx + 1}.{leaf}"
        return f"{side}.middle.{2 * idx}.{_resblock_leaf(leaf, key)}"
    m = re.fullmatch(r"down_blocks\.(\d+)\.(.+)", rest)
    if m and side == "encoder":
        idx, leaf = int(m.group(1)), m.group(2)
        if leaf.startswith(("resample.", "time_conv.")):
            return f"encoder.downsamples.{idx}.{leaf}"
        return f"encoder.downsamples.{idx}.{_resblock_leaf(leaf, key)}"
    m = re.fullmatch(r"up_blocks\.(\d+)\.(resnets|upsamplers)\.(\d+)\.(.+)", rest)
    if m and side == "decoder":
        stage, kind, idx, leaf = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
        per_stage = int(config["num_res_blocks"]) + 2
        if kind == "upsamplers":
            return f"decoder.upsamples.{stage * per_stage + per_stage - 1}.{leaf}"
        return f"decoder.upsamples.{stage * per_stage + idx}.{_resblock_leaf(leaf, key)}"
    raise KeyError(f"unknown VAE key {key}")


def _check_supported(config: Mapping[str, Any]) -> None:
    # The official layout interleaves attention blocks with residual blocks when attn_scales is non-empty; Wan2.1
    # never does that, and diffusers' Wan decoder has no slot for them, so refuse rather than mis-map.
    if list(config.get("attn_scales", [])):
        raise HumoError(f"VAE config attn_scales {config['attn_scales']}: only [] (the Wan2.1 layout) is supported")
    if config.get("is_residual", False) or config.get("patch_size") is not None:
        raise HumoError("VAE config: the Wan2.2 residual/patchified VAE is not the Wan2.1 layout")
    # Frame counts (4k + 1) and the audio windows assume 4 frames per latent frame; only space may vary.
    temporal = strides_of(config)[0]
    if temporal != TEMPORAL_STRIDE:
        halvings = temporal.bit_length() - 1
        raise HumoError(
            f"VAE config temperal_downsample {config.get('temperal_downsample')}: halves time {halvings} times;"
            f" only {TEMPORAL_STRIDE}x in time (two halvings) is supported"
        )


def official_key_map(model: torch.nn.Module, config: Mapping[str, Any]) -> dict[str, str]:
    """``{official name: diffusers name}`` for every parameter of `model` (an `AutoencoderKLWan`)."""
    _check_supported(config)
    mapping: dict[str, str] = {}
    for key in model.state_dict():
        official = diffusers_key_to_official(key, config)
        if official in mapping:  # would mean two diffusers tensors land on one official name: a mapping bug
            raise RuntimeError(f"VAE key map collision on {official}")
        mapping[official] = key
    return mapping


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a `.safetensors` (also sharded) or `.pth` state dict through the project's safe checkpoint reader
    (safetensors, or ``torch.load(weights_only=True, mmap=True)``)."""
    from humo.checkpoint import read_state_dict

    return read_state_dict(path)[0]


def map_official_state_dict(
    official: Mapping[str, torch.Tensor], model: torch.nn.Module, config: Mapping[str, Any], source: str
) -> dict[str, torch.Tensor]:
    """Rename an official-layout state dict to `model`'s names; HumoError listing missing/unexpected/misshaped."""
    mapping = official_key_map(model, config)
    expected = model.state_dict()
    check_keys(
        f"VAE weights {source}: do not match the Wan2.1 VAE layout",
        official,
        {k: expected[mapping[k]] for k in mapping},
    )
    return {mapping[k]: official[k] for k in mapping}


# ----------------------------------------------------------------------------------------------------------------
# The VAE
# ----------------------------------------------------------------------------------------------------------------


def _tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of length `tile` covering [0, size), `stride` apart, the last flush with the end."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride))
    starts.append(size - tile)
    return starts


def _ramp(length: int, overlap: int, ramp_start: bool, ramp_end: bool) -> torch.Tensor:
    """1D blending weight: rises over `overlap` samples at a shared start edge, falls at a shared end edge.

    Weights stay strictly positive so every pixel has a non-zero total weight.
    """
    w = torch.ones(length)
    n = min(overlap, length)
    if n > 0:
        up = (torch.arange(n, dtype=torch.float32) + 0.5) / n
        if ramp_start:
            w[:n] = torch.minimum(w[:n], up)
        if ramp_end:
            w[length - n :] = torch.minimum(w[length - n :], up.flip(0))
    return w


class WanVAE:
    """The Wan2.1 VAE (diffusers' `AutoencoderKLWan`) with Wan's latent normalisation and memory-bounded decoding.

    `model` is the diffusers module (train it directly; `encode`/`decode` here run without gradients).
    """

    def __init__(self, model: torch.nn.Module):
        from diffusers import AutoencoderKLWan

        if not isinstance(model, AutoencoderKLWan):
            raise TypeError("WanVAE wraps a diffusers AutoencoderKLWan")
        _check_supported(model.config)
        self.model = model.eval().requires_grad_(False)
        self._zero_cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self.tile_latent: int | None = None
        self.tile_overlap_latent = 0

    # -- construction ----------------------------------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        """The `AutoencoderKLWan` keyword arguments of this VAE (plain data)."""
        return {k: v for k, v in dict(self.model.config).items() if not k.startswith("_")}

    @property
    def z_dim(self) -> int:
        return int(self.model.config.z_dim)

    @property
    def spatial_stride(self) -> int:
        """Pixels per latent pixel along height and width (8 for Wan2.1, 4 for the toy VAE)."""
        return strides_of(self.model.config)[1]

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @staticmethod
    def _build(config: Mapping[str, Any], meta: bool = False) -> torch.nn.Module:
        from diffusers import AutoencoderKLWan

        _check_supported(config)
        if meta:
            with torch.device("meta"):
                return AutoencoderKLWan(**config)
        return AutoencoderKLWan(**config)

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], seed: int = 0, dtype: torch.dtype = torch.float32, device: str = "cpu"
    ) -> WanVAE:
        """A randomly initialised VAE (seeded) for the `AutoencoderKLWan` keyword arguments in `config`."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls._build(dict(config))
        # nn.Module.to, not ModelMixin.to: the latter warns about fp32-kept modules this model does not have.
        return cls(torch.nn.Module.to(model, device=device, dtype=dtype))

    @classmethod
    def toy(cls, seed: int = 0, dtype: torch.dtype = torch.float32, device: str = "cpu") -> WanVAE:
        """The untrained proving-ground VAE (`TOY_VAE_CONFIG`), seeded."""
        return cls.from_config(TOY_VAE_CONFIG, seed=seed, dtype=dtype, device=device)

    @classmethod
    def from_official(
        cls,
        path: str | os.PathLike,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        config: Mapping[str, Any] | None = None,
    ) -> WanVAE:
        """Load official-layout weights (`Wan2.1_VAE.pth` or a `.safetensors` with the same keys), strictly.

        `config` overrides entries of `WAN21_VAE_CONFIG` (base_dim, dim_mult, num_res_blocks, z_dim, latent stats).
        """
        cfg = {**WAN21_VAE_CONFIG, **(dict(config) if config else {})}
        official = load_state_dict_file(path)
        model = cls._build(cfg, meta=True)
        state = map_official_state_dict(official, model, cfg, str(path))
        state = {k: v.to(device=device, dtype=dtype) for k, v in state.items()}
        model.load_state_dict(state, strict=True, assign=True)
        return cls(model)

    @classmethod
    def from_pretrained(
        cls, folder: str | os.PathLike, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
    ) -> WanVAE:
        """Load a diffusers-format folder (`config.json` + `diffusion_pytorch_model.safetensors`)."""
        from diffusers import AutoencoderKLWan

        folder = Path(folder)
        if not folder.is_dir():
            raise HumoError(f"VAE folder {folder}: not a directory")
        if not (folder / "config.json").is_file():
            raise HumoError(f"VAE folder {folder}: config.json is missing")
        weights = list(folder.glob("diffusion_pytorch_model*.safetensors")) + list(folder.glob("*.bin"))
        if not weights:
            raise HumoError(f"VAE folder {folder}: no diffusion_pytorch_model*.safetensors weights")
        try:
            model = AutoencoderKLWan.from_pretrained(str(folder), torch_dtype=dtype, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as e:
            raise HumoError(f"VAE folder {folder}: cannot load ({type(e).__name__}: {first_line(e)})") from None
        return cls(torch.nn.Module.to(model, device=device))

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write a diffusers-format folder; each file appears complete or not at all."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".vae-save.", dir=folder))
        try:
            self.model.save_pretrained(str(tmp), safe_serialization=True)
            for f in sorted(tmp.iterdir()):
                os.replace(f, folder / f.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """This VAE's weights under the official Wan2.1 key names."""
        mapping = official_key_map(self.model, self.model.config)
        sd = self.model.state_dict()
        return {official: sd[ours] for official, ours in mapping.items()}

    def save_official(self, path: str | os.PathLike) -> None:
        """Write the weights in the official layout (`.safetensors`, or `.pth` via torch.save), atomically."""
        sd = {k: v.detach().contiguous().cpu() for k, v in self.official_state_dict().items()}
        with atomic_path(path) as tmp:
            if Path(path).suffix == ".safetensors":
                from safetensors.torch import save_file

                save_file(sd, str(tmp), metadata={"format": "pt", "config": json.dumps(self.config)})
            else:
                torch.save(sd, str(tmp))

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> WanVAE:
        torch.nn.Module.to(self.model, device=device, dtype=dtype)
        self._zero_cache.clear()
        return self

    # -- latent statistics -----------------------------------------------------------------------------------

    def _stats(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, self.z_dim, 1, 1, 1)
        mean = torch.tensor(self.model.config.latents_mean, dtype=dtype, device=device).view(shape)
        std = torch.tensor(self.model.config.latents_std, dtype=dtype, device=device).view(shape)
        return mean, std

    def set_latent_stats(self, mean: list[float] | torch.Tensor, std: list[float] | torch.Tensor) -> None:
        """Replace the per-channel latent mean/std (e.g. measured by `humo train-vae`); they are saved with the VAE."""
        mean = [float(x) for x in torch.as_tensor(mean, dtype=torch.float64).flatten()]
        std = [float(x) for x in torch.as_tensor(std, dtype=torch.float64).flatten()]
        if len(mean) != self.z_dim or len(std) != self.z_dim:
            raise HumoError(f"VAE latent stats: need {self.z_dim} means and stds, got {len(mean)} and {len(std)}")
        if min(std) <= 0:
            raise HumoError("VAE latent stats: every std must be positive")
        self.model.register_to_config(latents_mean=mean, latents_std=std)
        self._zero_cache.clear()

    # -- encode ----------------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, H, W]`` in [-1, 1] -> normalised latent mean ``[B, 16, 1 + (T-1)//4, H/s, W/s]`` (float32)."""
        check_video_tensor(video, self.spatial_stride)
        mean, std = self._stats(torch.float32, self.device)
        outs = []
        # One video at a time: the encoder's causal cache is sized for one clip at full resolution.
        for clip in video.split(1):
            mu = self.model.encode(clip.to(device=self.device, dtype=self.dtype)).latent_dist.mode()
            outs.append((mu.float() - mean) / std)
        return torch.cat(outs)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in [-1, 1] -> ``[N, 16, 1, H/s, W/s]``: each image encoded as a one-frame video."""
        return self.encode(images_as_videos(images))

    def zero_video_latent(self, frames: int, height: int, width: int, dtype: torch.dtype = torch.float32):
        """Normalised latent ``[1, 16, 1 + (frames-1)//4, height/s, width/s]`` of an all-zero (mid-grey) video.

        Computed once per (frames, height, width, dtype) and kept in a small LRU; the returned tensor is shared,
        so callers must not modify it in place.
        """
        check_video_size(frames, height, width, self.spatial_stride)
        key = (int(frames), int(height), int(width), dtype)
        hit = self._zero_cache.get(key)
        if hit is not None:
            self._zero_cache.move_to_end(key)
            return hit
        video = torch.zeros(1, 3, frames, height, width, dtype=self.dtype, device=self.device)
        latent = self.encode(video).to(dtype)
        self._zero_cache[key] = latent
        while len(self._zero_cache) > _ZERO_CACHE_SIZE:
            self._zero_cache.popitem(last=False)
        return latent

    # -- decode ----------------------------------------------------------------------------------------------

    def enable_tiling(self, tile_px: int = 256, overlap_px: int = 64) -> None:
        """Decode large frames in overlapping spatial tiles of `tile_px` pixels, blended over `overlap_px`."""
        s = self.spatial_stride
        if tile_px % s or overlap_px % s or not 0 <= overlap_px < tile_px:
            raise HumoError(
                f"VAE tiling {tile_px}/{overlap_px}: tile and overlap must be multiples of {s}, overlap < tile"
            )
        self.tile_latent = tile_px // s
        self.tile_overlap_latent = overlap_px // s

    def disable_tiling(self) -> None:
        self.tile_latent = None
        self.tile_overlap_latent = 0

    def _count_decoder_convs(self) -> int:
        from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

        return sum(isinstance(m, WanCausalConv3d) for m in self.model.decoder.modules())

    def _decode_chunks(self, latents: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(first_frame, frames [B, 3, n, H, W])`` decoding one latent frame at a time.

        `latents` are normalised ``[B, 16, F, h, w]``. The causal feature cache carries the last frames of every
        causal conv from one chunk to the next, so the result equals a full decode; only one chunk's activations
        are alive at a time. Latent frame 0 gives 1 frame, every later one gives 4.
        """
        mean, std = self._stats(self.dtype, self.device)
        cache: list = [None] * self._count_decoder_convs()
        t = 0
        for i in range(latents.shape[2]):
            z = latents[:, :, i : i + 1].to(device=self.device, dtype=self.dtype) * std + mean
            x = self.model.post_quant_conv(z)  # 1x1x1: frame-local, so applying it per chunk is exact
            out = self.model.decoder(x, feat_cache=cache, feat_idx=[0], first_chunk=(i == 0))
            yield t, out
            t += out.shape[2]

    @torch.no_grad()
    def decode(
        self,
        latents: torch.Tensor,
        out_dtype: torch.dtype = torch.float32,
        out_device: str | torch.device | None = None,
    ) -> torch.Tensor:
        """Normalised ``[B, 16, F, h, w]`` -> video ``[B, 3, 1 + 4(F-1), s*h, s*w]`` in [-1, 1] (s: spatial stride).

        The output is preallocated (`out_dtype` on `out_device`, default the latents' device) and written chunk by
        chunk, so peak memory is the output plus one chunk's activations, whatever the length. With
        `enable_tiling`, frames larger than a tile are decoded tile by tile with linear overlap blending.
        """
        check_latent_tensor(latents, self.z_dim)
        b, _, f, h, w = latents.shape
        frames = 1 + TEMPORAL_STRIDE * (f - 1)
        out_device = latents.device if out_device is None else torch.device(out_device)
        shape = (b, 3, frames, h * self.spatial_stride, w * self.spatial_stride)
        tiled = self.tile_latent is not None and (h > self.tile_latent or w > self.tile_latent)
        if not tiled:
            out = torch.empty(shape, dtype=out_dtype, device=out_device)
            written = 0
            for t0, chunk in self._decode_chunks(latents):
                out[:, :, t0 : t0 + chunk.shape[2]] = chunk.clamp_(-1.0, 1.0)
                written = t0 + chunk.shape[2]
            if written != frames:
                raise RuntimeError(f"VAE decode produced {written} frames, expected {frames}")
            return out
        return self._decode_tiled(latents, shape, out_dtype, out_device)

    def _decode_tiled(self, latents, shape, out_dtype, out_device) -> torch.Tensor:
        _, _, _, h, w = latents.shape
        tile, overlap = self.tile_latent, self.tile_overlap_latent
        stride = tile - overlap
        s = self.spatial_stride
        out = torch.zeros(shape, dtype=out_dtype, device=out_device)
        weight = torch.zeros(shape[3], shape[4], dtype=torch.float32, device=out_device)
        ys, xs = _tile_starts(h, tile, stride), _tile_starts(w, tile, stride)
        for y0 in ys:
            th = min(tile, h - y0)
            wy = _ramp(th * s, overlap * s, ramp_start=y0 > 0, ramp_end=y0 + th < h)
            for x0 in xs:
                tw = min(tile, w - x0)
                wx = _ramp(tw * s, overlap * s, ramp_start=x0 > 0, ramp_end=x0 + tw < w)
                w2 = (wy[:, None] * wx[None, :]).to(out_device)
                py, px = slice(y0 * s, (y0 + th) * s), slice(x0 * s, (x0 + tw) * s)
                weight[py, px] += w2
                # Tile-major order: each tile keeps its own causal cache only while it runs over time.
                for t0, chunk in self._decode_chunks(latents[:, :, :, y0 : y0 + th, x0 : x0 + tw]):
                    region = out[:, :, t0 : t0 + chunk.shape[2], py, px]
                    region += chunk.to(device=out_device, dtype=out_dtype) * w2.to(out_dtype)
        out /= weight.to(out_dtype)
        return out.clamp_(-1.0, 1.0)


def folder_spatial_stride(path: str | os.PathLike) -> int:
    """Pixels per latent pixel of the codec at `path`, from its config file alone (no weights read): a linear
    codec folder's ``codec.json``, a diffusers folder's ``config.json``, else Wan2.1's 8 (an official file)."""
    from humo.conditions.linear_codec import CONFIG_NAME

    path = Path(path)
    try:
        if (path / CONFIG_NAME).is_file():
            return int(json.loads((path / CONFIG_NAME).read_text())["stride"])
        if (path / "config.json").is_file():
            return strides_of(json.loads((path / "config.json").read_text()))[1]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise HumoError(f"VAE {path}: unreadable config ({e})") from None
    return SPATIAL_STRIDE


def load_vae_folder(folder: str | os.PathLike, device: str | torch.device = "cpu"):
    """The codec in a folder: the proving ground's linear codec where ``codec.json`` is present, else a diffusers
    `AutoencoderKLWan` folder (`WanVAE`). Both share the encode/decode interface."""
    from humo.conditions.linear_codec import CONFIG_NAME, LinearCodec

    if (Path(folder) / CONFIG_NAME).is_file():
        return LinearCodec.from_pretrained(folder, device=device)
    return WanVAE.from_pretrained(folder, device=device)
