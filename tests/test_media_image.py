"""Reference images: decoding, orientation, colour modes, fitting on white, and every user error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from humo.errors import HumoError
from humo.media.image import fit_size, load_image, load_references, prepare_reference

RED = (230, 20, 20)


def save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_exif_orientation_applied(tmp_path):
    # Stored 60 wide x 30 high: left half red, right half blue. Orientation 6 = display rotated 90 deg clockwise,
    # so the displayed image is 30 wide x 60 high with the (stored) left half on top.
    a = np.zeros((30, 60, 3), np.uint8)
    a[:, :30] = (255, 0, 0)
    a[:, 30:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    p = save(Image.fromarray(a), tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    img = load_image(p)
    assert img.mode == "RGB" and img.size == (30, 60)
    top, bottom = np.asarray(img)[10, 15], np.asarray(img)[50, 15]
    assert top[0] > 200 and top[2] < 60  # red on top
    assert bottom[2] > 200 and bottom[0] < 60  # blue below
    # Without the tag the same pixels stay landscape (the check above can fail).
    q = save(Image.fromarray(a), tmp_path / "plain.jpg", quality=95)
    assert load_image(q).size == (60, 30)


def test_rgba_composited_on_white(tmp_path):
    a = np.zeros((20, 20, 4), np.uint8)  # fully transparent black
    a[:10, :, :] = (255, 0, 0, 255)  # opaque red top half
    a[10:, :10] = (0, 0, 0, 128)  # half-transparent black bottom-left
    img = np.asarray(load_image(save(Image.fromarray(a, "RGBA"), tmp_path / "a.png")))
    assert tuple(img[5, 5]) == (255, 0, 0)
    assert tuple(img[15, 15]) == (255, 255, 255)  # transparent -> white, not black
    assert all(abs(int(v) - 127) <= 2 for v in img[15, 5])  # 50% black over white -> mid grey


def test_palette_with_transparency_and_greyscale_and_cmyk(tmp_path):
    p = Image.new("P", (20, 20), 0)
    p.putpalette([0, 0, 0, 10, 200, 10] + [0] * 762)
    p.paste(1, (0, 0, 10, 20))
    p.info["transparency"] = 0
    img = np.asarray(load_image(save(p, tmp_path / "p.png", transparency=0)))
    assert tuple(img[5, 5]) == (10, 200, 10) and tuple(img[5, 15]) == (255, 255, 255)

    g = Image.fromarray(np.full((20, 20), 90, np.uint8), "L")
    img = np.asarray(load_image(save(g, tmp_path / "g.png")))
    assert img.shape == (20, 20, 3) and (img == 90).all()

    g16 = Image.fromarray(np.full((20, 20), 65535 // 2, np.uint16))
    img = np.asarray(load_image(save(g16, tmp_path / "g16.png")))
    assert abs(int(img[0, 0, 0]) - 127) <= 1  # scaled to 8 bits, not clipped to 255

    cmyk = Image.new("CMYK", (20, 20), (0, 255, 255, 0))  # red in CMYK
    img = np.asarray(load_image(save(cmyk, tmp_path / "c.jpg", quality=95)))
    assert img.shape == (20, 20, 3) and img[5, 5, 0] > 200 and img[5, 5, 1] < 60

    w = Image.fromarray(np.full((20, 20, 3), 7, np.uint8))
    assert np.asarray(load_image(save(w, tmp_path / "w.webp", lossless=True)))[0, 0, 0] == 7


def test_padding_colour_and_placement():
    img = Image.new("RGB", (100, 50), RED)  # 2:1 into a square: full width, 32 rows, 16 white rows each side
    x = prepare_reference(img, 64, 64)
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    assert (x[:, :16] == 1.0).all() and (x[:, 48:] == 1.0).all()  # white = +1
    red = torch.tensor(RED, dtype=torch.float32) / 255 * 2 - 1
    torch.testing.assert_close(x[:, 16:48], red[:, None, None].expand(3, 32, 64), atol=2 / 255, rtol=0)

    # Odd margin: a square into 41x32 -> 32x32 content, 4 white columns left and 5 right (the release's split).
    x = prepare_reference(Image.new("RGB", (50, 50), RED), 32, 41)
    assert x.shape == (3, 32, 41)
    assert (x[:, :, :4] == 1.0).all() and (x[:, :, 36:] == 1.0).all()
    assert (x[0, :, 4:36] - red[0]).abs().max() < 2 / 255 and (x[1, :, 4:36] - red[1]).abs().max() < 2 / 255

    # Tall image into a wide frame: full height, centred horizontally.
    assert fit_size(30, 60, 832, 480) == (240, 480)
    assert fit_size(1920, 1080, 832, 480) == (832, 468)  # int(832 / (16/9)) = 468
    assert fit_size(1000, 1000, 1280, 720) == (720, 720)


def test_load_references_several(tmp_path):
    a = save(Image.new("RGB", (40, 40), (0, 0, 0)), tmp_path / "a.png")
    b = save(Image.new("RGB", (40, 80), (255, 255, 255)), tmp_path / "b.jpg")
    x = load_references([a, b], 32, 48)
    assert x.shape == (2, 3, 32, 48)
    assert x[0, :, 16, 24].max() < -0.99  # black content in the middle of the first
    assert x[0, :, 16, 0].min() == 1.0  # white padding at its side
    assert load_references([], 32, 48).shape == (0, 3, 32, 48)
    assert load_references(str(a), 16, 16).shape == (1, 3, 16, 16)


def test_errors_name_the_file(tmp_path):
    with pytest.raises(HumoError, match=r"missing\.png: file not found"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(HumoError, match=r"empty\.png: file is empty"):
        load_image(tmp_path / "empty.png")
    (tmp_path / "junk.jpg").write_bytes(b"this is not an image" * 10)
    with pytest.raises(HumoError, match=r"junk\.jpg: cannot decode, the file is corrupt"):
        load_image(tmp_path / "junk.jpg")
    good = (tmp_path / "ok.png").as_posix()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    data = open(good, "rb").read()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(HumoError, match=r"cut\.png: cannot decode"):
        load_image(tmp_path / "cut.png")
    (tmp_path / "notes.txt").write_text("hello" * 20)
    with pytest.raises(HumoError, match=r"notes\.txt: unsupported format"):
        load_image(tmp_path / "notes.txt")
    Image.new("RGB", (32, 32)).save(tmp_path / "anim.gif")
    with pytest.raises(HumoError, match=r"anim\.gif: unsupported format GIF"):
        load_image(tmp_path / "anim.gif")
    Image.new("RGB", (100, 10)).save(tmp_path / "tiny.png")
    with pytest.raises(HumoError, match=r"tiny\.png: too small \(100x10"):
        load_image(tmp_path / "tiny.png")
    Image.new("RGB", (20, 180)).save(tmp_path / "strip.png")
    with pytest.raises(HumoError, match=r"strip\.png: extreme aspect ratio 20x180"):
        load_image(tmp_path / "strip.png")
    Image.new("RGB", (16, 128)).save(tmp_path / "edge.png")  # exactly 8:1 and 16 px are allowed
    assert load_image(tmp_path / "edge.png").size == (16, 128)
    with pytest.raises(HumoError) as err:
        load_image(tmp_path / "cut.png")
    assert "\n" not in str(err.value)  # one line for the CLI
