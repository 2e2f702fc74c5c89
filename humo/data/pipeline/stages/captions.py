"""captions: a text prompt for each segment, from a local vision-language model or from a caption file a person
wrote, kept editable.

HuMo's data was captioned by Qwen2.5-VL; this stage runs that family (Qwen2-VL and Qwen2.5-VL weights in
transformers' layout, ``--caption-model FOLDER``: ``AutoModelForImageTextToText``, the folder's image processor
and tokenizer, nothing downloaded) on `caption_frames` frames spread evenly over the segment (the first and the
last included), each scaled so its longer side is at most `SIDE` pixels, after `PROMPT`, decoding greedily (the
same weights and frames give the same caption) up to `caption_tokens` tokens.

Each kept segment's caption is a plain text file, ``OUT/captions/<id>.txt`` (UTF-8), which a person may edit:

- the model's own output is also kept in ``OUT/captions/<id>.model.json`` (``{"model", "caption", "text_sha256",
  "replaced_sha256"}``: the SHA-256 of the caption file the stage writes and of the file it replaces); a caption
  file whose hash is neither (or, without a model file, that is not blank) is a person's caption and wins on every
  rerun, with or without a model: the manifest's ``caption`` follows it. The model file is written first: a run
  killed before the caption file is rewritten leaves the file it was replacing, which is no person's edit. An
  edit changes the stage's key (`key_extra`), so a rerun redoes just that clip, and ``--force captions`` keeps the
  folder (`KEEP_FOLDER`): edits survive both.
- without ``--caption-model``, the caption is a person's file where there is one, else the model's earlier output,
  else empty, and an empty ``<id>.txt`` is written for a person to fill in.

Facts (``record["captions"]``): ``source`` (``model``, ``edited``: a person changed the model's caption, ``file``:
a person's caption with no model output, ``none``), ``model`` (the folder, for ``model``), ``frames`` (the indices
shown to the model), ``chars``. The record's ``caption`` is the text, ``caption_file`` its file (relative to OUT).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from humo.data.pipeline.core import Drop, Record, Settings
from humo.data.pipeline.media import open_media
from humo.errors import HumoError, atomic_path, first_line

VERSION = 1
PARAMS = ("caption_model", "caption_frames", "caption_tokens")
REQUIRES = ("av", "PIL")
KEEP_FOLDER = True  # it holds people's edits: --force captions redoes the clips but keeps the files
SPAWN = True  # --workers: fresh processes (a parent that loaded the model has torch's threads running; forking hangs)
REASONS = {"corrupt": "the segment's video does not decode (no frames to show the model)"}
FOLDER = "captions"
SIDE = 448  # longest side of a frame shown to the model, pixels (Qwen2-VL's 28-pixel patches: 16 across)
PROMPT = (
    "These are frames of one video, in order. Describe the video in one paragraph: the person (appearance, "
    "clothing, hair, expression), what they do (speaking, gestures, movement), and the scene (place, background, "
    "lighting, camera framing)."
)
SUPPORTED = ("qwen2_vl", "qwen2_5_vl")  # their prompt layout (vision tokens) is the one `_prompt` writes
_MODELS: dict[str, tuple] = {}  # folder -> (model, image processor, tokenizer, device): loaded once per process


def caption_paths(out: Path, clip_id: str) -> tuple[Path, Path]:
    """The editable caption file and the model's own output beside it."""
    folder = Path(out) / FOLDER
    return folder / f"{clip_id}.txt", folder / f"{clip_id}.model.json"


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise Drop("corrupt", f"{path.name} does not read as UTF-8 text ({first_line(e)})") from None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _model_file(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("caption"), str) else None


def _model_caption(path: Path) -> str | None:
    data = _model_file(path)
    return None if data is None else data["caption"]


def person_caption(record: Record, settings: Settings) -> str | None:
    """A person's caption for this segment, if its file holds one: the stage wrote neither it nor the file it
    replaced (the hashes in the model file), or, with no model output, it is not blank. None otherwise."""
    text_path, model_path = caption_paths(settings.out, record["id"])
    try:
        text = text_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    model = _model_file(model_path)
    if model is not None:
        ours = {model.get("text_sha256", _sha256(model["caption"])), model.get("replaced_sha256")}
        return None if _sha256(text) in ours else text
    return text if text.strip() else None


def key_extra(record: Record, settings: Settings):
    """A person's edit is input to this stage: folded into its key, an edit redoes the clip on the next run."""
    return person_caption(record, settings)


def check_model(folder: str) -> None:
    """One-line HumoError unless `folder` holds a Qwen2-VL / Qwen2.5-VL model in transformers' layout (config
    only: the weights load in the stage)."""
    p = Path(folder)
    if not (p / "config.json").is_file():
        raise HumoError(f"--caption-model {folder}: no config.json there (a transformers model folder is needed)")
    try:
        model_type = json.loads((p / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError) as e:
        raise HumoError(f"--caption-model {folder}: config.json does not read ({first_line(e)})") from None
    if model_type not in SUPPORTED:
        raise HumoError(
            f"--caption-model {folder}: model type {model_type!r} is not supported (supported: {', '.join(SUPPORTED)})"
        )


def load_model(folder: str):
    """``(model, image processor, tokenizer, device)`` for `folder`, loaded once per process."""
    if folder not in _MODELS:
        import torch
        from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        model = AutoModelForImageTextToText.from_pretrained(folder, dtype=dtype).to(device).eval()
        # the image processor alone, not AutoProcessor: Qwen2-VL's processor also builds a video processor, which
        # needs torchvision (not installed here); the prompt's vision tokens are written by `_prompt`
        images = AutoImageProcessor.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        _MODELS[folder] = (model, images, tokenizer, device)
    return _MODELS[folder]


def frame_indices(num_frames: int, count: int) -> list[int]:
    """`count` frame indices spread evenly over `num_frames`, the first and last included (fewer for a short clip)."""
    return sorted({int(round(x)) for x in np.linspace(0, num_frames - 1, max(1, min(count, num_frames)))})


def read_frames(path: Path, indices: list[int]) -> list:
    """The frames at `indices` of the video at `path`, as PIL images no larger than `SIDE` on their longer side."""
    wanted, frames = set(indices), []
    try:
        with open_media(path) as c:
            for i, f in enumerate(c.decode(video=0)):
                if i in wanted:
                    img = f.to_image()
                    scale = SIDE / max(img.size)
                    if scale < 1:
                        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
                    frames.append(img.convert("RGB"))
                if i >= indices[-1]:
                    break
    except Drop:
        raise
    except Exception as e:  # noqa: BLE001 - PyAV's decoder errors
        raise Drop("corrupt", f"{path.name} does not decode ({first_line(e)})") from None
    if len(frames) != len(indices):
        raise Drop("corrupt", f"{path.name} has {len(frames)} of the {len(indices)} frames asked for")
    return frames


def _prompt(grid_thw, merge: int) -> str:
    """Qwen2-VL's chat layout: one vision block per frame (its patch count after the 2x2 merge), then the text."""
    vision = "".join(
        "<|vision_start|>" + "<|image_pad|>" * (int(g.prod()) // (merge * merge)) + "<|vision_end|>" for g in grid_thw
    )
    return (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        f"<|im_start|>user\n{vision}{PROMPT}<|im_end|>\n<|im_start|>assistant\n"
    )


def generate_caption(folder: str, frames: list, max_tokens: int) -> str:
    """The model's caption of `frames` (greedy: deterministic for the same weights and frames)."""
    import torch

    model, images, tokenizer, device = load_model(folder)
    pixels = images(images=frames, return_tensors="pt")
    merge = model.config.vision_config.spatial_merge_size
    ids = tokenizer(_prompt(pixels["image_grid_thw"], merge), return_tensors="pt")
    inputs = {**ids, **pixels}
    inputs = {k: v.to(device) for k, v in inputs.items()}
    inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False)
    text = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    return " ".join(text.split())  # one line: newlines and runs of spaces folded


def _write(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def process(record: Record, settings: Settings) -> Record:
    text_path, model_path = caption_paths(settings.out, record["id"])
    text_path.parent.mkdir(parents=True, exist_ok=True)
    facts: dict = {}
    person = person_caption(record, settings)
    if person is not None:
        caption = person.strip()
        facts["source"] = "edited" if model_path.is_file() else "file"
    elif settings.caption_model:
        indices = frame_indices(int(record["num_frames"]), settings.caption_frames)
        frames = read_frames(settings.out / record["video"], indices)
        caption = generate_caption(settings.caption_model, frames, settings.caption_tokens)
        replaced = _read_text(text_path)  # no person's edit (else `person` above): the placeholder or an old caption
        model_file = {
            "model": settings.caption_model,
            "caption": caption,
            "text_sha256": _sha256(caption),
            "replaced_sha256": None if replaced is None else _sha256(replaced),
        }
        # the model file first, naming both the file it replaces and the one written next: a kill between the two
        # writes leaves the replaced file, which `person_caption` knows is not an edit
        _write(model_path, json.dumps(model_file, ensure_ascii=False))
        _write(text_path, caption)
        facts.update(source="model", model=settings.caption_model, frames=indices)
    elif (earlier := _model_caption(model_path)) is not None:
        caption = earlier  # the model's earlier caption, its file unedited (or deleted: written again)
        if _read_text(text_path) != earlier:
            _write(text_path, earlier)
        facts["source"] = "model"
    else:
        caption = ""
        if _read_text(text_path) is None:
            _write(text_path, "")  # a file to fill in
        facts["source"] = "none"
    facts["chars"] = len(caption)
    record["captions"] = facts
    record["caption"] = caption
    record["caption_file"] = str(text_path.relative_to(settings.out))
    return record
