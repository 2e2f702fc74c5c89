"""Reference crops (InterActHuman's remedy for copy-paste): the regions on references of known geometry, one
preparation rule with inference, the cached variants, the loader's draw against the configured probabilities,
a few training steps, and caches without crops."""

import itertools
import json
import math
from collections import Counter

import numpy as np
import pytest
import torch

from humo.data.loader import CachedDataset, LatentCache
from humo.data.manifest import read_manifest
from humo.data.precompute import Encoders, file_digest, precompute
from humo.errors import HumoError
from humo.reference_crops import CROPS, crop_boxes, draw_crops, load_reference_crop, reference_geometry
from tests.helpers import TINY, TINY_AUDIO, tiny_train_config

pytestmark = pytest.mark.usefixtures("one_thread")

PROBS = {"whole": 0.4, "head": 0.2, "upper": 0.15, "clothing": 0.25}


def _inside(inner, outer) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def test_crops_land_on_the_head_the_upper_body_and_the_clothing():
    """On proving-ground references (known face and person): every head and upper-body crop holds the whole face,
    every clothing crop holds none of it and lies on the shirt; jittered variants too."""
    from humo.proving_ground import render, world

    kinds = Counter()
    for i in range(40):
        rng = np.random.default_rng(i)
        ident = world.sample_identity(rng, False)
        img, face, params = render.render_reference(ident, rng, 64, 64)
        boxes = render.reference_boxes(ident, params, face)
        ys, xs = np.nonzero(face)
        assert _inside(boxes["face"], boxes["person"]) and boxes["face"] == [
            xs.min(),
            ys.min(),
            xs.max() + 1,
            ys.max() + 1,
        ]
        crops = crop_boxes(boxes["face"], boxes["person"], 64, 64, variants=3, seed=str(i))
        shirt = np.asarray(world.SHIRT_COLOURS[ident.shirt], np.float32)
        for kind, variants in crops.items():
            kinds[kind] += 1
            assert 1 <= len(variants) <= 3
            for x0, y0, x1, y1 in variants:
                assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
                inside = face[y0:y1, x0:x1].sum()
                if kind in ("head", "upper"):
                    assert inside == face.sum() and _inside(boxes["face"], (x0, y0, x1, y1))
                else:
                    assert inside == 0 and y0 >= boxes["face"][3]
                    near = np.abs(img[y0:y1, x0:x1].astype(np.float32) - shirt).max(-1) < 40
                    assert near.mean() > 0.5, (i, kind, (x0, y0, x1, y1))
        head = crops["head"][0]
        assert (head[2] - head[0]) * (head[3] - head[1]) < 0.6 * 64 * 64  # a close-up, not the whole picture
    assert kinds["head"] == kinds["upper"] == 40 and kinds["clothing"] >= 30


def test_geometry_from_the_manifest_the_pipeline_or_proportions(tmp_path):
    from humo.proving_ground.synth import SynthConfig, synthesize_dataset

    manifest, _ = synthesize_dataset(SynthConfig(tmp_path / "d", 1, frames=(9, 9), multi=True, workers=1), False)
    (s,) = read_manifest(manifest)
    for k, ch in enumerate(s.meta["characters"]):
        face, person, source = reference_geometry(s.meta, k, 64, 64)
        assert (face, person, source) == (ch["reference_boxes"]["face"], ch["reference_boxes"]["person"], "manifest")
    # the data pipeline's references stage: the face box in its crop; the person is the whole image
    face, person, source = reference_geometry({"reference": {"face_box": [30, 20, 70, 70]}}, 0, 100, 100)
    assert (face, person, source) == ([30, 20, 70, 70], [0, 0, 100, 100], "manifest")
    face, person, source = reference_geometry({}, 0, 100, 200)  # nothing known: proportions of the person box
    assert source == "proportions" and person == [0, 0, 100, 200] and 0 < face[0] < face[2] < 100 and face[3] < 100
    with pytest.raises(HumoError, match="face box"):
        reference_geometry({"reference_boxes": [{"face": [5, 5, 2, 9]}]}, 0, 64, 64)
    from humo.data.pipeline.stages.references import face_in_crop

    assert face_in_crop(np.array([110.0, 60.0, 150.0, 110.0]), (80, 35, 180, 135)) == [30.0, 25.0, 70.0, 75.0]


def test_a_malformed_box_stops_precompute_before_any_encoding(tmp_path):
    from humo.proving_ground.synth import SynthConfig, synthesize_dataset
    from humo.reference_crops import check_manifest_boxes

    manifest, _ = synthesize_dataset(SynthConfig(tmp_path / "d", 3, frames=(9, 9), seed=1, workers=1), False)
    samples = read_manifest(manifest)
    check_manifest_boxes(samples)  # the synthesized boxes are fine
    samples[2].meta["characters"][0]["reference_boxes"]["person"] = ["a", 0, 5, 5]  # the last row: after the others
    with pytest.raises(HumoError, match=rf"sample {samples[2].id}: reference 0: person box \['a', 0, 5, 5\] is not"):
        precompute(samples, tmp_path / "cache", _encoders(), reference_crops=1, base_dir=manifest.parent)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # nothing was encoded
    samples[2].meta["characters"][0]["reference_boxes"] = {"face": [5, 5, 2, 9]}
    with pytest.raises(HumoError, match=rf"sample {samples[2].id}: reference 0: face box \[5, 5, 2, 9\]"):
        check_manifest_boxes(samples)


def test_a_crop_is_prepared_as_an_inference_reference(tmp_path):
    """The same preparation as `humo generate --image`: load, (cut), fit into the frame on white."""
    from PIL import Image

    from humo.media.image import load_image, load_references, prepare_reference

    path = tmp_path / "r.png"
    Image.fromarray((np.random.default_rng(0).random((48, 40, 3)) * 255).astype(np.uint8)).save(path)
    assert torch.equal(load_reference_crop(path, None, 32, 64), load_references([path], 32, 64)[0])
    box = (4, 10, 30, 40)
    crop = load_reference_crop(path, box, 32, 64)
    assert torch.equal(crop, prepare_reference(load_image(path).crop(box), 32, 64))
    assert crop[:, :, :8].min() == 1.0  # the taller crop fitted in a wide frame: white on each side


# ---------------------------------------------------------------------------------------------------------------
# The cache and the loader


def _encoders():
    from humo.conditions.audio import AudioEncoder
    from humo.conditions.text import TextEncoder
    from humo.conditions.vae import WanVAE
    from humo.proving_ground.world import vocabulary

    return Encoders(
        vae=WanVAE.toy(seed=0),
        text=TextEncoder.toy(vocabulary(), text_len=16, dim=32, num_layers=1),
        audio=AudioEncoder.toy(seed=0, num_layers=4, d_model=8, num_mel_bins=16, heads=2, chunk_seconds=1),
    )


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """Four 9-frame proving-ground clips, cached with two variants of each crop and (the same objects) without."""
    from humo.proving_ground.synth import SynthConfig, synthesize_dataset

    root = tmp_path_factory.mktemp("crops")
    manifest, _ = synthesize_dataset(SynthConfig(root / "d", 4, frames=(9, 9), seed=3, workers=1), False)
    samples, enc = read_manifest(manifest), _encoders()
    stats = precompute(samples, root / "cache", enc, reference_crops=2, base_dir=manifest.parent)
    precompute(samples, root / "cache", enc, index="plain.json", base_dir=manifest.parent)
    return root / "cache", stats


def test_precompute_caches_each_crop_prepared_and_encoded(caches):
    from humo.conditions.vae import WanVAE

    cache, stats = caches
    assert stats.computed["reference_crop"] > 4 * 3
    c = LatentCache(cache)
    assert c.index["settings"]["reference_crops"] == 2
    e = c.samples[0]
    (crops,) = e["reference_crops"]
    assert set(crops) <= set(CROPS[1:]) and {"head", "upper"} <= set(crops) and len(crops["head"]) == 2
    # the head crop's latent is the VAE's encoding of the prepared crop, and differs from the whole image's
    ref = read_manifest(cache.parent / "d" / "manifest.jsonl")[0]
    face, person, _ = reference_geometry(ref.meta, 0, 64, 64)
    path = ref.ref_image_paths[0]
    box = crop_boxes(face, person, 64, 64, 2, seed=file_digest(path))["head"][0]
    expect = WanVAE.toy(seed=0).encode_images(load_reference_crop(path, box, 64, 64)[None])[0]
    assert torch.allclose(c.load(crops["head"][0]), expect.float(), atol=1e-5)
    assert not torch.allclose(c.load(crops["head"][0]), c.load(e["references"][0]))
    plain = LatentCache(cache, "plain.json")
    assert [s["references"] for s in plain.samples] == [s["references"] for s in c.samples]  # whole: same objects
    assert all(s["reference_crops"] is None for s in plain.samples)


def _matches(counts: Counter, probs: dict, n: int, z: float = 4.5) -> bool:
    """Whether realised counts of each kind are within z binomial standard deviations of `probs`."""
    return all(abs(counts[k] / n - p) <= z * math.sqrt(max(p * (1 - p), 1e-9) / n) for k, p in probs.items())


def test_the_loaders_draw_follows_the_configured_probabilities(caches):
    cache, _ = caches
    c = LatentCache(cache)
    ds = CachedDataset(c, num_refs=1, audio=False, masks=False, reference_crops=PROBS, seed=5)
    full = [i for i, e in enumerate(ds.entries) if len(e["reference_crops"][0]) == 3]
    assert full, "a reference with all three crops"
    i, n = full[0], 6000
    counts = Counter(ds.reference_keys(ds.entries[i], slot)[1][0] for slot in range(n))
    assert _matches(counts, PROBS, n)
    # the check has the power to catch a wrong probability: 0.05 moved from clothing to head fails it
    assert not _matches(counts, {**PROBS, "head": 0.25, "clothing": 0.2}, n)
    assert not _matches(counts, {k: 0.25 for k in CROPS}, n)
    # both variants of a kind are drawn, and an item loads the drawn variant
    e = ds.entries[i]
    keys = {ds.reference_keys(e, slot)[0][0] for slot in range(200)}
    assert set(e["reference_crops"][0]["head"]) <= keys and e["references"][0] in keys
    item = ds[(i, "subject", False, 7)]
    (key,), _ = ds.reference_keys(e, 7)
    assert torch.equal(item["refs"][0], c.load(key)[:, 0])
    assert ds.reference_keys(e, None) == ([e["references"][0]], ["whole"])  # no slot: the whole image
    assert torch.equal(ds[(i, "subject")]["refs"][0], c.load(e["references"][0])[:, 0])
    # the draw is a pure function of (seed, slot)
    assert draw_crops(PROBS, 5, 11, 2) == draw_crops(PROBS, 5, 11, 2) != draw_crops(PROBS, 6, 11, 2)
    # a reference without a crop of the drawn kind shows the whole image
    bare = {**e, "reference_crops": [{}]}
    assert {ds.reference_keys(bare, slot)[1][0] for slot in range(50)} == {"whole"}


def test_crop_probabilities_are_checked():
    from humo.training.config import TrainConfig, load_config

    for bad, msg in (
        ({"whole": 0.5, "head": 0.6}, "sum to 1.1"),
        ({"whole": 0.5, "face": 0.5}, "face: unknown"),
        ({"whole": 1.5, "head": -0.5}, r"reference_crops.whole 1.5: must be a number in \[0, 1\]"),
    ):
        with pytest.raises(HumoError, match=msg):
            TrainConfig(reference_crops=bad)
    cfg = load_config(None, ["reference_crops.whole=0.5", "reference_crops.head=0.5"])
    assert cfg.reference_crops == {"whole": 0.5, "head": 0.5}


def test_a_few_training_steps_with_crops_and_caches_without_them(caches, tmp_path):
    from humo.training.loop import Trainer

    cache, _ = caches
    model = {**TINY, **TINY_AUDIO, "mask_head_blocks": 2}
    cfg = tiny_train_config(cache, tmp_path / "run", stage=1, steps=3, split=None, reference_crops=PROBS,
                            model_overrides=model)  # fmt: skip
    trainer = Trainer(cfg)
    batches = list(itertools.islice(iter(trainer.sampler), 6))
    ds = trainer.dataset
    kinds = [ds.reference_keys(ds.entries[item[0]], item[3])[1][0] for b in batches for item in b]
    assert len(set(kinds)) > 1  # the stream shows crops, not only the whole image
    assert trainer.run()["steps"] == 3
    log = [json.loads(line) for line in open(tmp_path / "run" / "log.jsonl")]
    assert all(math.isfinite(r["loss"]) for r in log if "step" in r)
    # a cache without crops: a clear one-line error when crops are asked for ...
    with pytest.raises(HumoError, match="reference_crops needs references precomputed with --reference-crops N; 4"):
        Trainer(tiny_train_config(cache, tmp_path / "bad", index="plain.json", split=None, reference_crops=PROBS))
    # ... and it trains as before without them (an index written before crops existed has no such field)
    index = json.loads((cache / "plain.json").read_text())
    for s in index["samples"]:
        del s["reference_crops"]
    (cache / "old.json").write_text(json.dumps(index))
    cfg = tiny_train_config(cache, tmp_path / "old", stage=1, steps=1, index="old.json", split=None,
                            reference_crops={"whole": 1.0}, model_overrides=model)  # fmt: skip
    assert Trainer(cfg).run()["steps"] == 1
