"""Reference images: load any reasonable photo as RGB, then fit it into the video frame on white.

`prepare_reference` follows the HuMo release (``load_image_latent_ref_id`` in its ``generate.py``): scale to fit
keeping the aspect ratio (the new side is truncated with ``int``), Lanczos resampling, centred on a white canvas
(the extra pixel of an odd margin goes right/bottom), then ``ToTensor`` + ``Normalize(0.5, 0.5)`` -> [-1, 1].
Unlike the release (which calls ``convert("RGB")`` and so keeps whatever colour sits under transparent pixels),
transparency is composited on white, the same colour as the padding, and EXIF orientation is applied.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from humo.errors import HumoError, first_line, require_file

#: Pillow format names we accept (MPO is how Pillow names many camera/phone JPEGs).
SUPPORTED_FORMATS = {"JPEG", "MPO", "PNG", "WEBP"}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp"}
MIN_SIDE = 16
MAX_ASPECT = 8.0
WHITE = (255, 255, 255)


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open a JPEG/PNG/WebP as an RGB PIL image, EXIF orientation applied, transparency composited on white.

    Greyscale, palette, CMYK and 16-bit images are converted to 8-bit RGB. Raises a one-line HumoError naming the
    file when it is missing, empty, corrupt, of an unsupported format, smaller than 16 px on a side, or more
    elongated than 8:1.
    """
    p = require_file(path, "image")
    try:
        with Image.open(p) as im:
            fmt = im.format
            if fmt not in SUPPORTED_FORMATS:
                raise HumoError(f"image {p}: unsupported format {fmt} (use JPEG, PNG or WebP)")
            im.load()  # decode now so truncated data fails here, inside the error handling
            img = ImageOps.exif_transpose(im)  # returns a new (loaded) image, or a copy when there is no EXIF
            if img is im:
                img = im.copy()
    except UnidentifiedImageError:
        ext = p.suffix.lower()
        if ext in IMAGE_EXTENSIONS:
            raise HumoError(f"image {p}: cannot decode, the file is corrupt or not really {ext[1:].upper()}") from None
        raise HumoError(f"image {p}: unsupported format {ext or '(no extension)'} (use JPEG, PNG or WebP)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise HumoError(f"image {p}: cannot decode, the file is corrupt or truncated ({first_line(e)})") from None
    w, h = img.size
    if min(w, h) < MIN_SIDE:
        raise HumoError(f"image {p}: too small ({w}x{h}; need at least {MIN_SIDE} px on each side)")
    if max(w, h) / min(w, h) > MAX_ASPECT:
        raise HumoError(f"image {p}: extreme aspect ratio {w}x{h} (more than {MAX_ASPECT:g}:1)")
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; transparent pixels become white."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16/32-bit greyscale: Pillow's direct convert clips at 255; scale the range to 8 bits instead.
        a = np.asarray(img).astype(np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        img = Image.fromarray(np.clip(np.round(a * 255.0 / peak), 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        a = np.asarray(img).astype(np.float64)
        img = Image.fromarray(np.clip(np.round(a * 255.0), 0, 255).astype(np.uint8), "L")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info)
    if img.mode in ("L", "1") and "transparency" in img.info:
        has_alpha = True
    if has_alpha:
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, WHITE + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if img.mode == "CMYK":
        return img.convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


def fit_size(width: int, height: int, target_w: int, target_h: int) -> tuple[int, int]:
    """Size of a ``width x height`` image scaled to fit ``target_w x target_h`` (the release's arithmetic)."""
    img_ratio = width / height
    if img_ratio > target_w / target_h:  # wider than the target: full width
        new_w, new_h = target_w, int(target_w / img_ratio)
    else:  # taller (or equal): full height
        new_w, new_h = int(target_h * img_ratio), target_h
    return max(1, new_w), max(1, new_h)


def prepare_reference(img: Image.Image, height: int, width: int) -> torch.Tensor:
    """Fit `img` into ``width x height`` keeping its aspect ratio, pad with white, centred.

    Returns float32 ``[3, height, width]`` in [-1, 1] (white padding = 1.0).
    """
    if height < 1 or width < 1:
        raise ValueError(f"target size must be positive, got {width}x{height}")
    img = to_rgb(img)
    new_w, new_h = fit_size(img.width, img.height, width, height)
    img = img.resize((new_w, new_h), Image.Resampling.LANCZOS)
    dw, dh = width - new_w, height - new_h
    img = ImageOps.expand(img, (dw // 2, dh // 2, dw - dw // 2, dh - dh // 2), fill=WHITE)
    x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)  # [3, H, W]
    # ToTensor then Normalize(0.5, 0.5), in that order of operations.
    return x.to(torch.float32).div(255).sub(0.5).div(0.5)


def load_references(paths: Sequence[str | os.PathLike], height: int, width: int) -> torch.Tensor:
    """Load and prepare several reference images -> float32 ``[N, 3, height, width]`` in [-1, 1].

    An empty list gives ``[0, 3, height, width]`` (text-audio mode has no references).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        return torch.zeros(0, 3, height, width)
    return torch.stack([prepare_reference(load_image(p), height, width) for p in paths])


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write a matplotlib figure as a PNG (laid out tight, 110 dpi) atomically, then close it."""
    import matplotlib.pyplot as plt

    from humo.errors import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
