"""CLIP-I, DINO-I and text alignment of real videos, through transformers with user-supplied weights.

- **CLIP-I**: the cosine similarity between CLIP image embeddings (``CLIPModel.get_image_features``) of sampled
  video frames and of the reference image(s), averaged over frames and references (HuMo's and OmniHuman's subject
  consistency on real video).
- **DINO-I**: the same with a DINOv2 or ViT model's CLS token (``last_hidden_state[:, 0]``; ``Dinov2Model``,
  ``ViTModel`` and the like through ``AutoModel``).
- **Text alignment** (CLIP score): the cosine between each sampled frame's CLIP image embedding and the prompt's
  CLIP text embedding (``get_text_features``; the prompt cut to the model's text length), averaged over frames.

Weights are folders in transformers' layout (``config.json``, weights, the processor's files), read with
``local_files_only=True``: nothing is downloaded. A folder that does not load, or holds another kind of model, is a
HumoError naming it. The functions take the frames to embed; `humo eval --real` (`humo.evaluation.real_video`)
passes `FRAMES` (8) spread evenly over the video, the first and last included.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from humo.errors import HumoError, first_line

FRAMES = 8
DINO_TYPES = ("dinov2", "dinov2_with_registers", "vit", "dinov3_vit")


def _load(path: str | os.PathLike, what: str, model_cls, processor_cls):
    p = Path(path)
    if not p.is_dir() or not (p / "config.json").is_file():
        raise HumoError(f"{what} weights {p}: not a transformers model folder (no config.json)")
    # Safetensors where the folder has them; a pickle-only folder (pytorch_model.bin) is read with torch.load's
    # weights_only=True (tensors and plain containers, no arbitrary code): transformers' own default, made explicit
    # here so that a change of default upstream cannot turn it into a full unpickling.
    safetensors = any(p.glob("*.safetensors"))
    load = {"use_safetensors": True} if safetensors else {"use_safetensors": False, "weights_only": True}
    try:
        model = model_cls.from_pretrained(str(p), local_files_only=True, **load)
        processor = processor_cls.from_pretrained(str(p), local_files_only=True)
    except Exception as e:  # noqa: BLE001 - transformers raises OSError, ValueError, KeyError ...
        raise HumoError(f"{what} weights {p}: do not load ({first_line(e)})") from None
    return model.eval(), processor


def load_clip(path: str | os.PathLike):
    """(CLIPModel, CLIPProcessor) from a local folder; HumoError when it is not a CLIP model."""
    from transformers import AutoConfig, CLIPModel, CLIPProcessor

    _check_type(path, "CLIP", ("clip",), AutoConfig)
    return _load(path, "CLIP", CLIPModel, CLIPProcessor)


def load_dino(path: str | os.PathLike):
    """(model, image processor) of a DINOv2 or ViT folder through AutoModel; HumoError for other kinds."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    _check_type(path, "DINO", DINO_TYPES, AutoConfig)
    return _load(path, "DINO", AutoModel, AutoImageProcessor)


def _check_type(path, what: str, types: tuple[str, ...], auto_config) -> None:
    p = Path(path)
    if not (p / "config.json").is_file():
        raise HumoError(f"{what} weights {p}: not a transformers model folder (no config.json)")
    try:
        kind = auto_config.from_pretrained(str(p), local_files_only=True).model_type
    except Exception as e:  # noqa: BLE001
        raise HumoError(f"{what} weights {p}: config.json does not read ({first_line(e)})") from None
    if kind not in types:
        raise HumoError(f"{what} weights {p}: a {kind!r} model, not one of {', '.join(types)}")


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)


def _features(out) -> torch.Tensor:
    """transformers 5 returns a model output from get_*_features; 4.x a tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@torch.no_grad()
def clip_image_embeddings(model, processor, images) -> torch.Tensor:
    """Unit CLIP image embeddings [N, D] of RGB uint8 images [N, H, W, 3] (or a list of them)."""
    inputs = processor(images=list(images), return_tensors="pt")
    return _unit(_features(model.get_image_features(pixel_values=inputs["pixel_values"])))


@torch.no_grad()
def clip_text_embedding(model, processor, text: str) -> torch.Tensor:
    """The unit CLIP text embedding [D] of `text` (cut to the model's text length)."""
    tok = processor.tokenizer(
        [text], padding=True, truncation=True, max_length=model.config.text_config.max_position_embeddings,
        return_tensors="pt",
    )  # fmt: skip
    return _unit(_features(model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])))[
        0
    ]


@torch.no_grad()
def dino_embeddings(model, processor, images) -> torch.Tensor:
    """Unit CLS embeddings [N, D] of RGB uint8 images [N, H, W, 3] (or a list of them)."""
    inputs = processor(images=list(images), return_tensors="pt")
    return _unit(model(pixel_values=inputs["pixel_values"]).last_hidden_state[:, 0])


def _image_similarity(embed, frames: np.ndarray, refs) -> dict:
    if not len(refs):
        raise HumoError("no reference image to compare with")
    if not len(frames):
        raise HumoError("no frames to compare")
    f = embed(frames)
    r = embed(refs)
    cos = f @ r.T  # [frames, refs]
    return {"mean": round(float(cos.mean()), 4), "per_reference": [round(float(c), 4) for c in cos.mean(0)],
            "frames": int(len(f))}  # fmt: skip


def clip_i(model, processor, frames: np.ndarray, refs) -> dict:
    """CLIP-I: ``mean`` cosine of the frames' CLIP embeddings (RGB uint8 [N, H, W, 3]) with the references' (RGB
    uint8 images), ``per_reference`` (mean over frames), ``frames`` (their count)."""
    return _image_similarity(lambda x: clip_image_embeddings(model, processor, x), frames, refs)


def dino_i(model, processor, frames: np.ndarray, refs) -> dict:
    """DINO-I: as `clip_i` with the DINO model's CLS embeddings."""
    return _image_similarity(lambda x: dino_embeddings(model, processor, x), frames, refs)


def text_alignment(model, processor, frames: np.ndarray, prompt: str) -> dict:
    """CLIP score: ``mean`` cosine of the frames' CLIP embeddings with the prompt's, ``per_frame``."""
    if not prompt or not prompt.strip():
        raise HumoError("text alignment needs a prompt")
    f = clip_image_embeddings(model, processor, frames)
    cos = f @ clip_text_embedding(model, processor, prompt)
    return {"mean": round(float(cos.mean()), 4), "per_frame": [round(float(c), 4) for c in cos]}
