"""DiT checkpoints: strict loading of the released formats, saving, the diffusers key layout, preset detection.

Formats read: a folder or `*.safetensors.index.json` with shards (17B), a single `.safetensors`, and `.pth`/`.pt`
state dicts (1.7B) through `torch.load(weights_only=True, mmap=True)`: nothing is ever unpickled as code.
The model is built on the meta device and the loaded tensors are assigned to it, so weights are never held twice.
Loading is strict: missing, unexpected or misshaped keys are an error that lists them (the release loads with
strict=False and silently drops them).
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from humo.configs import DIT_PRESETS, DiTConfig
from humo.errors import HumoError, atomic_path, check_keys, describe_keys, first_line

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
METADATA_KEY = "humo_config"


# ----------------------------------------------------------------------------------------------------------------
# Reading tensors


def resolve_weights(path: str | Path) -> Path:
    """A file, or a folder holding exactly one index/weights file -> the file to read."""
    p = Path(path)
    if not p.exists():
        raise HumoError(f"checkpoint {p}: not found")
    if p.is_dir():
        index = sorted(p.glob("*.safetensors.index.json"))
        if len(index) == 1:
            return index[0]
        files = [f for f in sorted(p.iterdir()) if f.suffix in WEIGHT_SUFFIXES]
        if len(files) == 1:
            return files[0]
        raise HumoError(
            f"checkpoint folder {p}: expected one *.safetensors.index.json or one weights file, "
            f"found {len(index)} index and {len(files)} weights files"
        )
    return p


def _read_safetensors(path: Path, dtype: torch.dtype | None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {}
            for k in f.keys():
                t = f.get_tensor(k)
                tensors[k] = _cast(k, t, dtype)
            return tensors, meta
    except (SafetensorError, OSError, ValueError) as e:
        raise HumoError(f"checkpoint {path}: not a readable safetensors file ({first_line(e)})") from e


def _read_pickle(path: Path, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    try:
        # mmap needs torch's zip format; older (legacy) pickles are read whole, still with weights_only.
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        raise HumoError(
            f"checkpoint {path}: refused, it is a pickle that would run code or is not a state dict "
            "(only plain tensors are loaded)"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise HumoError(f"checkpoint {path}: not a readable torch weights file ({first_line(e)})") from e
    # Training checkpoints wrap the weights; released ones are the bare state dict.
    for key in ("state_dict", "model", "module", "ema"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise HumoError(f"checkpoint {path}: does not hold a state dict of tensors")
    if dtype is not None:
        obj = {k: _cast(k, v, dtype) for k, v in obj.items()}
    return obj


def _cast(key: str, t: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """A floating tensor cast to `dtype`; fp8 weights and their scales (humo.fp8) stay as stored."""
    from humo.fp8 import FP8, SCALE_SUFFIX

    if dtype is None or not t.is_floating_point() or t.dtype == FP8 or key.endswith(SCALE_SUFFIX):
        return t
    return t.to(dtype)


def read_state_dict(path: str | Path, dtype: torch.dtype | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Read all tensors of a checkpoint (any released format, or a `humo train` checkpoint folder: its weights with
    the EMA's over them) -> (state dict, metadata). Casts floats to `dtype`."""
    if Path(path).is_dir() and (Path(path) / TRAINING_EMA).is_file():
        return _read_training_checkpoint(Path(path), dtype)
    p = resolve_weights(path)
    if p.stat().st_size == 0:
        raise HumoError(f"checkpoint {p}: file is empty")
    if p.name.endswith(".index.json"):
        try:
            weight_map = json.loads(p.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise HumoError(f"checkpoint index {p}: not a valid safetensors index (no weight_map)") from e
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (p.parent / s).is_file()]
        if missing:
            raise HumoError(f"checkpoint index {p}: missing shard file(s): {', '.join(missing)}")
        sd, meta = {}, {}
        for shard in shards:
            part, m = _read_safetensors(p.parent / shard, dtype)
            sd.update(part)
            meta.update(m)
        return sd, meta
    if p.suffix == ".safetensors":
        return _read_safetensors(p, dtype)
    if p.suffix in (".pth", ".pt", ".bin", ".ckpt"):
        return _read_pickle(p, dtype), {}
    raise HumoError(f"checkpoint {p}: not a weights file (expected .safetensors, .safetensors.index.json or .pth)")


# A `humo train` checkpoint folder (humo.training.state) holds the model's weights and their EMA.
TRAINING_MODEL, TRAINING_EMA = "model.safetensors", "ema.safetensors"


def _read_training_checkpoint(folder: Path, dtype: torch.dtype | None) -> tuple[dict[str, torch.Tensor], dict]:
    """The weights a training checkpoint evaluates with: the model's, the EMA's where it keeps one."""
    sd, meta = _read_safetensors(folder / TRAINING_MODEL, dtype)
    if METADATA_KEY not in meta:
        raise HumoError(f"checkpoint {folder}: {TRAINING_MODEL} has no {METADATA_KEY} metadata")
    ema, _ = _read_safetensors(folder / TRAINING_EMA, dtype)
    unknown = sorted(set(ema) - set(sd))
    if unknown:
        raise HumoError(f"checkpoint {folder}: EMA keys not in the model: {describe_keys(unknown)}")
    if any(".lora_" in k for k in sd):
        raise HumoError(f"checkpoint {folder}: a LoRA checkpoint; load its export instead")
    return {**sd, **ema}, meta


def read_shapes(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Key -> meta tensor (shape and dtype, no data) of a checkpoint (or a training checkpoint folder: its model's
    file, which the EMA's keys are a subset of), without reading its weights."""
    folder = Path(path)
    p = folder / TRAINING_MODEL if folder.is_dir() and (folder / TRAINING_EMA).is_file() else resolve_weights(path)
    if p.stat().st_size == 0:
        raise HumoError(f"checkpoint {p}: file is empty")
    files = [p]
    if p.name.endswith(".index.json"):
        try:
            files = [p.parent / s for s in sorted(set(json.loads(p.read_text())["weight_map"].values()))]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise HumoError(f"checkpoint index {p}: not a valid safetensors index (no weight_map)") from e
    if files[0].suffix != ".safetensors":
        sd, meta = read_state_dict(p)  # .pth is memory-mapped: nothing is read until touched
        return {k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in sd.items()}, meta
    shapes, meta = {}, {}
    for f in files:
        if not f.is_file():
            raise HumoError(f"checkpoint {p}: missing shard file {f.name}")
        try:
            with safe_open(str(f), framework="pt") as h:
                meta.update(h.metadata() or {})
                for k in h.keys():
                    sl = h.get_slice(k)
                    dtype = _SAFETENSORS_DTYPES.get(sl.get_dtype(), torch.float32)
                    shapes[k] = torch.empty(sl.get_shape(), dtype=dtype, device="meta")
        except (SafetensorError, OSError, ValueError) as e:
            raise HumoError(f"checkpoint {f}: not a readable safetensors file ({first_line(e)})") from e
    return shapes, meta


_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


# ----------------------------------------------------------------------------------------------------------------
# The diffusers WanTransformer3DModel key layout


_TO_DIFFUSERS = [
    (r"^text_embedding\.0\.", "condition_embedder.text_embedder.linear_1."),
    (r"^text_embedding\.2\.", "condition_embedder.text_embedder.linear_2."),
    (r"^time_embedding\.0\.", "condition_embedder.time_embedder.linear_1."),
    (r"^time_embedding\.2\.", "condition_embedder.time_embedder.linear_2."),
    (r"^time_projection\.1\.", "condition_embedder.time_proj."),
    (r"^blocks\.(\d+)\.self_attn\.([qkv])\.", r"blocks.\1.attn1.to_\2."),
    (r"^blocks\.(\d+)\.self_attn\.o\.", r"blocks.\1.attn1.to_out.0."),
    (r"^blocks\.(\d+)\.self_attn\.norm_([qk])\.", r"blocks.\1.attn1.norm_\2."),
    (r"^blocks\.(\d+)\.cross_attn\.([qkv])\.", r"blocks.\1.attn2.to_\2."),
    (r"^blocks\.(\d+)\.cross_attn\.o\.", r"blocks.\1.attn2.to_out.0."),
    (r"^blocks\.(\d+)\.cross_attn\.norm_([qk])\.", r"blocks.\1.attn2.norm_\2."),
    (r"^blocks\.(\d+)\.norm3\.", r"blocks.\1.norm2."),
    (r"^blocks\.(\d+)\.ffn\.0\.", r"blocks.\1.ffn.net.0.proj."),
    (r"^blocks\.(\d+)\.ffn\.2\.", r"blocks.\1.ffn.net.2."),
    (r"^blocks\.(\d+)\.modulation$", r"blocks.\1.scale_shift_table"),
    (r"^head\.head\.", "proj_out."),
    (r"^head\.modulation$", "scale_shift_table"),
]
_FROM_DIFFUSERS = [
    (r"^condition_embedder\.text_embedder\.linear_1\.", "text_embedding.0."),
    (r"^condition_embedder\.text_embedder\.linear_2\.", "text_embedding.2."),
    (r"^condition_embedder\.time_embedder\.linear_1\.", "time_embedding.0."),
    (r"^condition_embedder\.time_embedder\.linear_2\.", "time_embedding.2."),
    (r"^condition_embedder\.time_proj\.", "time_projection.1."),
    (r"^blocks\.(\d+)\.attn1\.to_([qkv])\.", r"blocks.\1.self_attn.\2."),
    (r"^blocks\.(\d+)\.attn1\.to_out\.0\.", r"blocks.\1.self_attn.o."),
    (r"^blocks\.(\d+)\.attn1\.norm_([qk])\.", r"blocks.\1.self_attn.norm_\2."),
    (r"^blocks\.(\d+)\.attn2\.to_([qkv])\.", r"blocks.\1.cross_attn.\2."),
    (r"^blocks\.(\d+)\.attn2\.to_out\.0\.", r"blocks.\1.cross_attn.o."),
    (r"^blocks\.(\d+)\.attn2\.norm_([qk])\.", r"blocks.\1.cross_attn.norm_\2."),
    (r"^blocks\.(\d+)\.norm2\.", r"blocks.\1.norm3."),
    (r"^blocks\.(\d+)\.ffn\.net\.0\.proj\.", r"blocks.\1.ffn.0."),
    (r"^blocks\.(\d+)\.ffn\.net\.2\.", r"blocks.\1.ffn.2."),
    (r"^blocks\.(\d+)\.scale_shift_table$", r"blocks.\1.modulation"),
    (r"^proj_out\.", "head.head."),
    (r"^scale_shift_table$", "head.modulation"),
]


def _rename(key: str, rules) -> str:
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return key  # patch_embedding and HuMo's own keys (audio, mask head) keep their names


def to_diffusers_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official/humo layout -> diffusers `WanTransformer3DModel` layout. HuMo-only keys keep their names."""
    return {_rename(k, _TO_DIFFUSERS): v for k, v in sd.items()}


def from_diffusers_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers `WanTransformer3DModel` layout -> official/humo layout."""
    return {_rename(k, _FROM_DIFFUSERS): v for k, v in sd.items()}


def is_diffusers_layout(keys) -> bool:
    return any(k.startswith("condition_embedder.") for k in keys)


def diffusers_config(cfg: DiTConfig) -> dict:
    """Constructor arguments of diffusers' WanTransformer3DModel for the backbone of `cfg`."""
    return dict(
        patch_size=cfg.patch,
        num_attention_heads=cfg.num_heads,
        attention_head_dim=cfg.head_dim,
        in_channels=cfg.in_dim,
        out_channels=cfg.out_dim,
        text_dim=cfg.text_dim,
        freq_dim=cfg.freq_dim,
        ffn_dim=cfg.ffn_dim,
        num_layers=cfg.num_layers,
        cross_attn_norm=cfg.cross_attn_norm,
        qk_norm="rms_norm_across_heads" if cfg.qk_norm else None,
        eps=cfg.eps,
        rope_max_seq_len=cfg.rope_max_len,
    )


# ----------------------------------------------------------------------------------------------------------------
# Config detection


def infer_config(sd: dict[str, torch.Tensor], metadata: dict | None = None) -> DiTConfig:
    """The DiTConfig a state dict (official layout) was built from.

    Our own checkpoints carry the config in their metadata. Otherwise the shapes decide; the head count, which
    shapes cannot tell, comes from the preset of the same width or Wan's head size of 128.
    """
    return infer_config_and_heads(sd, metadata)[0]


def infer_config_and_heads(sd: dict[str, torch.Tensor], metadata: dict | None = None) -> tuple[DiTConfig, bool]:
    """`infer_config`, and whether its head count is known (from the metadata or a preset of the same structure)
    rather than guessed from Wan's head size."""
    if metadata and METADATA_KEY in metadata:
        return DiTConfig.from_dict(json.loads(metadata[METADATA_KEY])), True
    if "patch_embedding.weight" not in sd:
        raise HumoError("checkpoint: no 'patch_embedding.weight' key: not a Wan/HuMo DiT")
    pe = sd["patch_embedding.weight"]
    dim, in_dim, patch = pe.shape[0], pe.shape[1], tuple(pe.shape[2:])
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))}
    audio = any(k.startswith("audio_proj.") for k in sd)
    head_w = sd["head.head.weight"]
    out_dim = head_w.shape[0] // (patch[0] * patch[1] * patch[2])
    fields = dict(
        dim=dim,
        in_dim=in_dim,
        out_dim=out_dim,
        patch=patch,
        num_layers=len(layers),
        ffn_dim=sd["blocks.0.ffn.0.weight"].shape[0],
        text_dim=sd["text_embedding.0.weight"].shape[1],
        freq_dim=sd["time_embedding.0.weight"].shape[1],
        audio=audio,
        qk_norm="blocks.0.self_attn.norm_q.weight" in sd,
        cross_attn_norm="blocks.0.norm3.weight" in sd,
        reference_mode="concat" if in_dim == 2 * out_dim + 4 else ("replace" if audio else "none"),
    )
    if audio:
        proj_in = sd["audio_proj.audio_proj_glob_1.layer.weight"]
        token_dim = sd["audio_proj.audio_proj_glob_norm.layer.weight"].shape[0]
        window = DiTConfig.audio_window * DiTConfig.audio_groups  # the release's 8-frame x 5-group window
        fields.update(
            audio_feat_dim=proj_in.shape[1] // window,
            audio_hidden=proj_in.shape[0],
            audio_token_dim=token_dim,
            audio_tokens=sd["audio_proj.audio_proj_glob_3.layer.weight"].shape[0] // token_dim,
        )
    fields["mask_head_blocks"] = len({int(m.group(1)) for k in sd if (m := re.match(r"mask_head\.heads\.(\d+)\.", k))})
    added = ("num_layers", "mask_head_blocks")  # modules of ours a preset's structure does not fix
    if "pose_guider.patch_embedding.weight" in sd:
        # encoder: a 3x3 convolution from 4 frames x joints, one stride-2 convolution per halving, a 1x1 to the
        # features (sigma is no shape: the default, unless the metadata says otherwise)
        convs = sorted(int(m.group(1)) for k in sd if (m := re.match(r"pose_guider\.encoder\.(\d+)\.weight$", k)))
        first, last = sd[f"pose_guider.encoder.{convs[0]}.weight"], sd[f"pose_guider.encoder.{convs[-1]}.weight"]
        fields.update(
            pose_channels=last.shape[0],
            pose_joints=first.shape[1] // 4,
            pose_hidden=first.shape[0],
            pose_scale=2 ** (len(convs) - 2),
        )
        added += ("pose_channels", "pose_joints", "pose_hidden", "pose_scale")
    taps = {int(m.group(1)) for k in sd if (m := re.match(r"person_masks\.taps\.(\d+)\.", k))}
    if taps:
        fields.update(person_mask_blocks=len(taps), person_mask_dim=sd["person_masks.taps.0.qkv.weight"].shape[0] // 3)
        added += ("person_mask_blocks", "person_mask_dim")
    # Heads cannot be read from shapes: take them from a preset of the same structure, else Wan's head size 128.
    structural = {k: v for k, v in fields.items() if k not in added}
    for preset in DIT_PRESETS.values():
        if all(getattr(preset, k) == v for k, v in structural.items()):
            name = (
                preset.name
                if preset.num_layers == fields["num_layers"]
                and not fields["mask_head_blocks"]
                and not fields.get("pose_channels")
                and not fields.get("person_mask_blocks")
                else "custom"
            )
            return preset.replace(name=name, **fields), True
    heads = dim // 128 if dim % 128 == 0 else max(1, dim // 64)
    while fields.get("person_mask_dim", 0) % (dim // heads):  # the person mask predictor's width holds whole heads
        heads = next(h for h in range(heads + 1, dim + 1) if dim % h == 0)
    return DiTConfig(name="custom", num_heads=heads, **fields), False


def match_preset(sd: dict[str, torch.Tensor], metadata: dict | None = None) -> str | None:
    """The name of the preset whose exact layout the checkpoint has (every key and shape), else None."""
    from humo.dit import HumoDiT

    cfg = infer_config(sd, metadata)
    for name, preset in DIT_PRESETS.items():
        if preset.audio != cfg.audio:
            continue
        if preset.replace(mask_head_blocks=cfg.mask_head_blocks) != cfg.replace(name=preset.name):
            continue
        with torch.device("meta"):
            ref = HumoDiT(preset.replace(mask_head_blocks=cfg.mask_head_blocks)).state_dict()
        if set(ref) == set(sd) and all(tuple(ref[k].shape) == tuple(sd[k].shape) for k in ref):
            return name
    return None


# ----------------------------------------------------------------------------------------------------------------
# Loading into a model


def check_state_dict(model: torch.nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
    """Raise a HumoError naming every missing, unexpected and misshaped key (`errors.check_keys`)."""
    layout = getattr(model, "cfg", None) and model.cfg.name
    check_keys(f"{source} does not match the {layout} layout", sd, model.state_dict())


def load_dit(
    path: str | Path,
    cfg: DiTConfig | str | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    strict: bool = True,
):
    """Load a HumoDiT from any released format (official or diffusers key layout).

    cfg: a DiTConfig, a preset name, or None to infer it from the checkpoint.
    dtype: cast floating weights (None keeps the file's dtype). Non-strict loading is an explicit opt-in and still
    reports nothing silently: it raises on shape mismatches and returns the missing/unexpected key lists.
    """
    from humo.configs import dit_preset
    from humo.dit import HumoDiT
    from humo.fp8 import is_fp8_state_dict, prepare_fp8_layers

    sd, meta = read_state_dict(path, dtype)
    if is_diffusers_layout(sd):
        sd = from_diffusers_keys(sd)
    if isinstance(cfg, str):
        cfg = dit_preset(cfg)
    if cfg is None:
        cfg = infer_config(sd, meta)
    with torch.device("meta"):
        model = HumoDiT(cfg)
    if is_fp8_state_dict(sd):
        prepare_fp8_layers(model, sd)
    if strict:
        check_state_dict(model, sd, f"checkpoint {path}")
    try:
        model.load_state_dict(sd, strict=strict, assign=True)
    except RuntimeError as e:  # anything check_state_dict did not foresee: still one line naming the file
        raise HumoError(f"checkpoint {path}: cannot be loaded ({str(e).strip().splitlines()[-1].strip()})") from None
    if not strict:
        leftover = [n for n, p in model.named_parameters() if p.is_meta]
        if leftover:
            raise HumoError(
                f"checkpoint {path}: non-strict load left parameters without weights: {describe_keys(leftover)}"
            )
    model.to(device)
    return model.eval()


def save_dit(model, path: str | Path, layout: str = "humo") -> Path:
    """Save a HumoDiT as one safetensors file (atomically), with its config in the metadata.

    layout: "humo" (the official key names) or "diffusers" (the backbone renamed for WanTransformer3DModel).
    """
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if layout == "diffusers":
        sd = to_diffusers_keys(sd)
    elif layout != "humo":
        raise HumoError(f"unknown checkpoint layout '{layout}' (humo or diffusers)")
    meta = {METADATA_KEY: json.dumps(model.cfg.to_dict()), "format": "pt", "layout": layout}
    return save_state_dict(sd, path, meta)


def save_state_dict(sd: dict[str, torch.Tensor], path: str | Path, metadata: dict | None = None) -> Path:
    """Write tensors to `path` as safetensors through a temporary file."""
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp), metadata=metadata or {"format": "pt"})
    return path
