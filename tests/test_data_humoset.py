"""`humo data import-humoset` on a tiny fake tree in HuMoSet's published layout (video/, reference_image/,
video_caption.parquet; the HuMo README's "Dataset Structure"): samples with video, sound, reference and caption;
rows that cannot be used skipped with their reason; trees that are not the layout named in one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from humo.cli import main
from humo.data.manifest import read_manifest
from tests.data_media import make_plain

VOICE = (0.2 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)).astype(np.float32)


def write_parquet(path, rows: dict) -> None:
    pq.write_table(pa.table(rows), path)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "HuMoSet"
    (root / "video" / "part1").mkdir(parents=True)
    (root / "reference_image" / "part1").mkdir(parents=True)
    make_plain(root / "video" / "a.mp4", 30, audio=VOICE)
    make_plain(root / "video" / "b.mp4", 20)  # no sound
    make_plain(root / "video" / "part1" / "c.mp4", 25, audio=VOICE, size=(96, 64))
    make_plain(root / "video" / "d.mp4", 10)  # no reference image
    (root / "video" / "e.mp4").write_text("not a video")
    face = Image.fromarray(np.full((32, 32, 3), 128, np.uint8))
    face.save(root / "reference_image" / "a.png")
    face.save(root / "reference_image" / "b.JPG")
    (root / "reference_image" / "part1" / "c").mkdir()  # a folder of references
    face.save(root / "reference_image" / "part1" / "c" / "0.jpg")
    face.save(root / "reference_image" / "part1" / "c" / "1.png")
    face.save(root / "reference_image" / "e.png")
    write_parquet(
        root / "video_caption.parquet",
        {
            # a path relative to ROOT, a name without extension, a path inside video/, and the bad rows
            "video_path": ["video/a.mp4", "b", "part1/c.mp4", "d.mp4", "e.mp4", "gone.mp4", ""],
            "caption": ["A man talks.", " A woman smiles. ", "Two hands wave.", "x", "y", "z", "w"],
            "aesthetic": [5.1, 4.2, 3.3, 2.0, 1.0, 0.0, 0.0],
        },
    )
    return root


def test_import_a_humoset_tree(tree, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["data", "import-humoset", str(tree), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "3 of 7 rows" in said and "bad-row 1, missing-video 1, no-reference 1, unreadable 1" in said
    assert "video 'video_path', caption 'caption', reference by name" in said
    samples = {s.id: s for s in read_manifest(out / "manifest.jsonl", check_files=True)}
    assert set(samples) == {"a", "b", "part1_c"}
    a, b, c = samples["a"], samples["b"], samples["part1_c"]
    assert a.caption == "A man talks." and b.caption == "A woman smiles."
    assert a.audio_path == a.video_path and b.audio is None  # the sound is read from the video itself
    assert (a.fps, a.num_frames, a.width, a.height) == (25.0, 30, 64, 48)
    assert (c.num_frames, c.width, c.height) == (25, 96, 64)
    assert [p.name for p in c.ref_image_paths] == ["0.jpg", "1.png"] and b.ref_image_paths[0].name == "b.JPG"
    assert a.meta == {"source": "humoset", "row": 0, "aesthetic": 5.1}
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert [(s["row"], s["reason"]) for s in skipped] == [
        (3, "no-reference"),
        (4, "unreadable"),
        (5, "missing-video"),
        (6, "bad-row"),
    ]
    # --no-reference keep imports d without a reference; --workers gives the same manifest
    assert main(["data", "import-humoset", str(tree), "--out", str(out / "k"), "--no-reference", "keep", "-q"]) == 0
    kept = {s.id: s for s in read_manifest(out / "k" / "manifest.jsonl")}
    assert set(kept) == {"a", "b", "part1_c", "d"} and kept["d"].ref_images == []
    assert main(["data", "import-humoset", str(tree), "--out", str(out / "w"), "--workers", "2", "-q"]) == 0
    assert (out / "w" / "manifest.jsonl").read_bytes() == (out / "manifest.jsonl").read_bytes()


def test_a_reference_column_and_named_columns(tree, tmp_path):
    write_parquet(
        tree / "video_caption.parquet",
        {"clip": ["a.mp4", "b.mp4"], "qwen_text": ["one", "two"], "ref_image": ["b.JPG", "reference_image/a.png"]},
    )
    out = tmp_path / "out"
    args = ["data", "import-humoset", str(tree), "--out", str(out), "-q"]
    assert main([*args, "--video-column", "clip", "--caption-column", "qwen_text"]) == 0
    samples = {s.id: s for s in read_manifest(out / "manifest.jsonl", check_files=True)}
    assert samples["a"].ref_image_paths[0].name == "b.JPG" and samples["b"].ref_image_paths[0].name == "a.png"
    assert samples["b"].caption == "two"


@pytest.mark.parametrize(
    "spoil, message",
    [
        (lambda r: __import__("shutil").rmtree(r / "video"), "no video/ folder"),
        (lambda r: (r / "video_caption.parquet").unlink(), "no video_caption.parquet"),
        (lambda r: __import__("shutil").rmtree(r / "reference_image"), "no reference_image/ folder"),
        (lambda r: (r / "video_caption.parquet").write_text("not parquet"), "not a readable Parquet file"),
        (lambda r: write_parquet(r / "video_caption.parquet", {"x": ["a"], "caption": ["c"]}), "no video column"),
        (lambda r: write_parquet(r / "video_caption.parquet", {"video": ["a"], "y": ["c"]}), "no caption column"),
        (lambda r: write_parquet(r / "video_caption.parquet", {"video": ["gone"], "caption": ["c"]}), "no row could"),
    ],
)
def test_bad_trees_are_one_line_errors(tree, tmp_path, capsys, spoil, message):
    spoil(tree)
    assert main(["data", "import-humoset", str(tree), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "out").exists()  # nothing made


def test_a_root_that_is_not_a_folder(tmp_path, capsys):
    assert main(["data", "import-humoset", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_row_paths_resolve_in_the_dataset_never_the_current_folder(tree, tmp_path, monkeypatch):
    """A stray file in the current folder with a row's relative path must not shadow the dataset's file."""
    stray = tmp_path / "cwd"
    (stray / "video").mkdir(parents=True)
    (stray / "video" / "a.mp4").write_text("not the dataset's video")
    monkeypatch.chdir(stray)
    out = tmp_path / "out"
    assert main(["data", "import-humoset", str(tree), "--out", str(out), "-q"]) == 0
    samples = {s.id: s for s in read_manifest(out / "manifest.jsonl", check_files=True)}
    assert samples["a"].video_path == (tree / "video" / "a.mp4").absolute()


def test_a_write_of_skipped_jsonl_that_dies_leaves_no_half_file(tree, tmp_path, monkeypatch, capsys):
    from pathlib import Path

    write_text = Path.write_text

    def dies_half_way(self, text, *args, **kwargs):
        if "skipped.jsonl" in self.name:
            write_text(self, text[: len(text) // 2], *args, **kwargs)
            raise OSError(28, "No space left on device")
        return write_text(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", dies_half_way)
    out = tmp_path / "out"
    with pytest.raises(OSError):
        main(["data", "import-humoset", str(tree), "--out", str(out), "-q"])
    assert [p.name for p in out.iterdir() if "skipped" in p.name] == []  # neither a half file nor a temporary one
