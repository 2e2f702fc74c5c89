"""Which parameters learn: minimal-invasive injection, full fine-tuning, or LoRA on the same set.

Minimal-invasive (the paper's choice): the backbone keeps its text-to-video knowledge; only the self-attention
layers (``blocks.*.self_attn.*``, which is where the reference frames meet the video tokens) learn, plus, once
the audio branch is on (stage 2), the audio modules (``audio_proj.*``, ``blocks.*.audio_cross_attn_wrapper.*``)
and the mask heads (``mask_head.*``, InterActHuman's ``person_masks.*``), and, in a DiT with OmniHuman-1's pose
guider whose stage uses poses, the guider (``pose_guider.*``, new weights by nature). ``full`` trains every
parameter the stage's forward pass uses (the ablation, and the stage-0 backbone pre-training). ``minimal+ffn``
adds the blocks' feed-forward layers to the minimal set (a diagnostic beside the paper's variants: is a frozen FFN
what keeps the minimal set from learning the audio?). Parameters a stage
never uses (the audio path and the mask heads while the DiT runs without audio) stay frozen even in ``full``: they
would get no gradient.

LoRA (``lora_rank > 0``): peft injects low-rank adapters into the q, k, v, o Linear layers of every
self-attention; the adapters learn instead of those weights (the RMSNorm ``norm_q``/``norm_k`` weights and, in
stage 2, the audio modules and mask head still learn fully). Exports merge the adapters into the weights
(``merged_state_dict``) so the file loads into a plain HumoDiT; ``lora_state_dict`` gives the adapters alone.
"""

from __future__ import annotations

import re

import torch
import torch.nn as nn

SELF_ATTN = re.compile(r"^blocks\.\d+\.self_attn\.")
FFN = re.compile(r"^blocks\.\d+\.ffn\.")
AUDIO = re.compile(r"^(audio_proj\.|blocks\.\d+\.audio_cross_attn_wrapper\.)")
MASK_HEAD = re.compile(r"^(mask_head|person_masks)\.")
POSE = re.compile(r"^pose_guider\.")
LORA_TARGETS = r"blocks\.\d+\.self_attn\.(q|k|v|o)"
LORA_MARK = "lora_"


def trainable_names(model: nn.Module, mode: str, *, audio: bool, mask: bool, pose: bool = False) -> list[str]:
    """Names of the parameters that learn.

    mode: "minimal", "minimal+ffn" or "full"; audio: the stage runs the audio branch; mask: the mask head is
    trained; pose: the stage feeds poses to the pose guider.
    With LoRA injected, "minimal" means the adapters in place of the self-attention's Linear weights.
    """
    names = []
    for name, _ in model.named_parameters():
        is_audio, is_mask, is_pose = bool(AUDIO.match(name)), bool(MASK_HEAD.match(name)), bool(POSE.match(name))
        if is_audio and not audio or is_mask and not mask or is_pose and not pose:
            continue
        if LORA_MARK in name:
            names.append(name)
        elif ".base_layer." in name:
            continue  # a LoRA-wrapped weight stays frozen; its adapter learns
        elif mode == "full" or SELF_ATTN.match(name) or is_audio or is_mask or is_pose:
            names.append(name)
        elif mode == "minimal+ffn" and FFN.match(name):
            names.append(name)
    return names


def set_trainable(model: nn.Module, names: list[str]) -> dict[str, nn.Parameter]:
    """requires_grad True exactly for `names`, False elsewhere -> the trainable parameters by name."""
    wanted = set(names)
    params = {}
    for name, p in model.named_parameters():
        p.requires_grad_(name in wanted)
        if name in wanted:
            params[name] = p
    missing = sorted(wanted - set(params))
    if missing:
        raise KeyError(f"no such parameters: {', '.join(missing[:8])}")
    return params


def apply_lora(model: nn.Module, rank: int, alpha: float | None = None, dropout: float = 0.0) -> nn.Module:
    """Inject LoRA adapters (adapter name "default") into every self-attention q, k, v, o, in place.

    The module keeps its class (HumoDiT); wrapped Linear weights move to ``<name>.base_layer.weight`` and the
    adapters are ``<name>.lora_A.default.weight`` / ``lora_B``. lora_B starts at zero (peft's default), so the
    model is unchanged until it trains.
    """
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(
        r=rank,
        lora_alpha=float(alpha if alpha is not None else rank),
        lora_dropout=dropout,
        target_modules=LORA_TARGETS,
        bias="none",
    )
    return inject_adapter_in_model(config, model)


def has_lora(model: nn.Module) -> bool:
    return any(LORA_MARK in name for name, _ in model.named_parameters())


@torch.no_grad()
def merge_lora(sd: dict[str, torch.Tensor], scaling: float) -> dict[str, torch.Tensor]:
    """A state dict with LoRA adapters -> the plain HumoDiT state dict: ``W + scaling * B @ A`` for each adapted
    Linear, adapter keys dropped, ``.base_layer.`` removed from the names. Works on any full state dict (also one
    gathered from sharded processes). Without adapters the same dict comes back."""
    if not any(LORA_MARK in k for k in sd):
        return dict(sd)
    out = {}
    for key, value in sd.items():
        if LORA_MARK in key:
            continue
        plain = key.replace(".base_layer.", ".")
        if ".base_layer." in key and key.endswith(".weight"):
            module = key[: -len(".base_layer.weight")]
            a, b = sd[f"{module}.lora_A.default.weight"], sd[f"{module}.lora_B.default.weight"]
            value = value + (scaling * (b.float() @ a.float())).to(value)
        out[plain] = value
    return out


def lora_scaling(rank: int, alpha: float | None) -> float:
    """peft's LoRA scale: alpha / rank (alpha defaults to the rank, as in `apply_lora`)."""
    return float(alpha if alpha is not None else rank) / rank


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """`merge_lora` of the model's own state dict, with the scale peft uses for its adapters.

    Unchanged tensors are the model's own (they share storage with the parameters: copy or save them before the
    parameters change). The model itself is not changed.
    """
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    scales = {s for m in model.modules() for s in getattr(m, "scaling", {}).values()} if has_lora(model) else {1.0}
    if len(scales) != 1:
        raise ValueError(f"LoRA layers with different scales {sorted(scales)}")
    return merge_lora(sd, scales.pop())


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights alone (``...lora_A.default.weight`` / ``lora_B``), for a light-weight save."""
    return {k: v.detach() for k, v in model.state_dict().items() if LORA_MARK in k}


@torch.no_grad()
def zero_audio_output(model: nn.Module) -> int:
    """Zero the output projection of every audio cross-attention, so an untrained audio branch adds nothing
    (``x + 0``) when it is switched on; it learns from there. Returns the number of blocks touched."""
    n = 0
    for name, module in model.named_modules():
        if name.endswith("audio_cross_attn_wrapper.audio_cross_attn"):
            module.o.weight.zero_()
            module.o.bias.zero_()
            n += 1
    return n
