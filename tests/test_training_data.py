"""Pre-computation into a content-keyed cache, and the Dataset / collate that read it for training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from humo.data.loader import CachedDataset, Collate, LatentCache
from humo.data.manifest import Sample, read_manifest, write_manifest
from humo.data.precompute import Encoders, content_key, precompute
from humo.errors import HumoError
from tests.helpers import synthetic_cache

# training runs on one thread: tiny models are faster so, and the two test workers do not share cores
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def encoders():
    from humo.conditions.audio import AudioEncoder
    from humo.conditions.text import TextEncoder
    from humo.conditions.vae import WanVAE

    words = ["a", "person", "talks", "waves", "in", "the", "park", "blurry", "bad"]
    return Encoders(
        vae=WanVAE.toy(seed=0),
        text=TextEncoder.toy(words, text_len=12, dim=32, num_layers=1),
        audio=AudioEncoder.toy(seed=0, num_layers=4, d_model=16, num_mel_bins=16, heads=2, chunk_seconds=1),
    )


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    import soundfile
    from PIL import Image

    from humo.media.video import write_video

    root = tmp_path_factory.mktemp("media")
    g = np.random.default_rng(0)
    for name in ("a", "b"):
        frames = (g.random((6, 32, 32, 3)) * 255).astype(np.uint8)
        write_video(root / f"{name}.mp4", frames, fps=25)
    Image.fromarray((g.random((40, 24, 3)) * 255).astype(np.uint8)).save(root / "ref.png")
    soundfile.write(root / "speech.wav", (0.1 * g.standard_normal(8000)).astype(np.float32), 16000)
    masks = np.zeros((6, 32, 32), np.uint8)
    masks[:, 8:16, 8:24] = 1
    np.savez(root / "masks.npz", masks=masks)
    return root


CLIP = dict(num_frames=6, height=32, width=32)


def _samples():
    return [
        Sample("full", "a.mp4", "a person talks", ["ref.png"], "speech.wav", "masks.npz", **CLIP),
        Sample("bare", "b.mp4", "a person waves in the park", **CLIP),  # no reference, audio or mask
    ]


def test_precompute_stores_what_the_encoders_give_and_a_rerun_computes_nothing(tmp_path, encoders, media):
    from humo.conditions.audio import audio_windows
    from humo.mask_head import mask_to_latent_grid
    from humo.media.audio import load_audio
    from humo.media.image import load_references
    from humo.media.video import read_video

    cache_dir = tmp_path / "cache"
    stats = precompute(_samples(), cache_dir, encoders, base_dir=media, negative_prompt="blurry bad")
    assert stats.computed["video"] == 2 and stats.computed["reference"] == 1
    assert stats.computed["audio"] == 1 and stats.computed["mask"] == 1
    assert stats.computed["text"] == 4  # two captions, the negative prompt and the empty prompt
    cache = LatentCache(cache_dir)
    full, bare = cache.samples
    assert encoders.vae.spatial_stride == 4  # the toy VAE
    assert full["shape"] == [16, 2, 8, 8]  # 6 frames -> 5 (4k+1) -> 2 latent frames of 32/4
    assert bare["references"] == [] and bare["audio"] is None and bare["mask"] is None

    frames = read_video(media / "a.mp4")[0][:5]
    video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    assert torch.equal(cache.load(full["video"]), encoders.vae.encode(video)[0])
    ref = encoders.vae.encode_images(load_references([media / "ref.png"], 32, 32))[0]
    assert torch.equal(cache.load(full["references"][0]), ref)
    feats = encoders.audio.features(load_audio(media / "speech.wav", min_seconds=0), fps=25.0)
    assert torch.equal(cache.load(full["audio"]), audio_windows(feats, 2))
    m = torch.from_numpy(np.load(media / "masks.npz")["masks"][:5].astype(np.float32))
    assert torch.equal(cache.load(full["mask"]), mask_to_latent_grid(m[None], (8, 8))[0])
    text, lengths = encoders.text.encode(["a person talks"], return_lengths=True)
    assert torch.equal(cache.load(full["text"]), text[0, : int(lengths[0])])
    assert torch.equal(cache.null_text("negative"), encoders.text.encode(["blurry bad"])[0, :3])  # 2 words + eos
    assert cache.dims == {"latent_channels": 16, "text_dim": 32, "audio_window": [8, 5, 16]}

    index_before = (cache_dir / "index.json").read_text()
    again = precompute(_samples(), cache_dir, encoders, base_dir=media, negative_prompt="blurry bad")
    assert sum(again.computed.values()) == 0
    assert again.reused == stats.computed + stats.reused  # (the zero-video latent is shared by both clips)
    assert (cache_dir / "index.json").read_text() == index_before

    # A setting that changes the result changes the key: nothing stale is reused.
    bf16 = precompute(_samples()[:1], cache_dir, encoders, base_dir=media, index="bf16.json", dtype=torch.bfloat16)
    assert bf16.computed["video"] == 1 and bf16.reused["video"] == 0
    half = LatentCache(cache_dir, "bf16.json")
    assert half.store.get(half.samples[0]["video"]).dtype == torch.bfloat16


def test_precompute_reports_missing_files_and_missing_encoders(tmp_path, encoders, media):
    with pytest.raises(HumoError, match="sample gone: video .*nowhere.mp4"):
        precompute([Sample("gone", "nowhere.mp4", "a")], tmp_path / "c", encoders, base_dir=media)
    no_audio = Encoders(vae=encoders.vae, text=encoders.text, audio=None)
    with pytest.raises(HumoError, match="no audio encoder"):
        precompute([Sample("x", "a.mp4", "a", audio="speech.wav")], tmp_path / "c", no_audio, base_dir=media)
    with pytest.raises(HumoError, match="repeated"):
        precompute([Sample("x", "a.mp4", "a"), Sample("x", "b.mp4", "b")], tmp_path / "c", encoders, base_dir=media)


def test_precompute_keeps_pose_keypoints_from_tracks_or_a_pose_file(tmp_path, encoders, media, monkeypatch):
    import humo.data.precompute as pre
    from humo.pose import CANONICAL, COCO17, PoseTrack, save_pose, to_canonical
    from humo.proving_ground.render import KEYPOINTS

    # the proving ground's tracks, in its face-mask .npz: [C, T, K, 3] in pixels of the 32 x 32 clip
    kp = np.zeros((1, 6, len(KEYPOINTS), 3), np.float32)
    kp[0, :, KEYPOINTS.index("left_hand")] = np.stack([np.arange(6) + 4.5, np.full(6, 9.0), np.ones(6)], 1)
    np.savez(media / "tracks.npz", masks=np.load(media / "masks.npz")["masks"], keypoints=kp)
    # a pose file at 50 fps in a 64 x 32 frame: in the 32 x 32 clip it is halved and centred vertically
    coco = np.zeros((12, 1, 17, 3), np.float32)
    coco[:, 0, COCO17.index("nose")] = np.stack([np.arange(12) * 2.0, np.full(12, 16.0), np.ones(12)], 1)
    save_pose(media / "pose.json", PoseTrack(to_canonical(coco, "coco17"), 64, 32, 50.0))
    samples = [
        Sample("tracks", "a.mp4", "a person talks", face_masks="tracks.npz", meta={"keypoint_names": list(KEYPOINTS)},
               **CLIP),
        Sample("file", "b.mp4", "a person waves", pose="pose.json", **CLIP),
        Sample("none", "a.mp4", "a person talks", face_masks="masks.npz", **CLIP),  # masks without keypoints
    ]  # fmt: skip
    hashed, digest = [], pre.file_digest
    monkeypatch.setattr(pre, "file_digest", lambda path: hashed.append(path) or digest(path))
    stats = precompute(samples, tmp_path / "cache", encoders, base_dir=media, dtype=torch.bfloat16)
    monkeypatch.undo()
    assert stats.computed["pose"] == 2
    # each input is read once, though a face-mask file keys both the mask and the pose tracks
    assert len(hashed) == len(set(hashed)) and media / "tracks.npz" in hashed
    cache = LatentCache(tmp_path / "cache")
    tracks, file, none = (cache.store.get(e["pose"]) if e["pose"] else None for e in cache.samples)
    assert none is None and tracks.dtype == torch.float32  # coordinates stay float32 in a bf16 cache
    assert tracks.shape == (5, 1, len(CANONICAL), 3)  # the clip's 5 frames (4k+1 of 6)
    wrist = tracks[:, 0, CANONICAL.index("right_wrist")]  # the image-left hand is the person's right
    assert torch.allclose(
        wrist, torch.stack([(torch.arange(5) + 4.5) / 32, torch.full((5,), 9 / 32), torch.ones(5)], 1)
    )
    nose = file[:, 0, CANONICAL.index("nose")]
    assert torch.allclose(nose[:, 0], torch.arange(0, 10, 2.0) * 2 / 64)  # every other pose frame, at 25 fps
    assert torch.allclose(nose[:, 1], torch.full((5,), 0.5))
    ds = CachedDataset(cache, split="train", pose=True)
    assert [a["pose"] for a in ds.availability()] == [True, True, False]
    batch = Collate(num_refs=0, pose=(2, 1.0))([ds[(0, "subject")], ds[(2, "subject")]])
    assert batch.pose.shape == (2, len(CANONICAL), 5, 16, 16) and batch.has_pose.tolist() == [True, False]
    j = CANONICAL.index("right_wrist")
    assert divmod(int(batch.pose[0, j, 2].argmax()), 16) == (4, 3)  # frame 2 at (6.5, 9) / 32 of 16 px
    assert not batch.pose[1].any() and not batch.pose[0, CANONICAL.index("left_ear")].any()


def test_content_key_depends_on_every_part():
    assert content_key("video", "abc", 1) == content_key("video", "abc", 1)
    assert content_key("video", "abc", 1) != content_key("video", "abc", 2)
    assert content_key("video", "abc", None) != content_key("video", "abd", None)


def test_an_encoders_identity_does_not_depend_on_the_folder_it_was_read_from(encoders):
    import copy

    moved = copy.deepcopy(encoders)
    moved.text.model.config._name_or_path = "/elsewhere/text"
    moved.audio.encoder.config._name_or_path = "../whisper"
    moved._ids = {}
    assert moved.identity("text") == encoders.identity("text")
    assert moved.identity("audio") == encoders.identity("audio")
    moved.text.model.config.d_model += 1  # a real config change still changes it
    moved._ids = {}
    assert moved.identity("text") != encoders.identity("text")


def test_dataset_reads_what_each_task_needs_and_collate_fills_nulls(tmp_path):
    synthetic_cache(
        tmp_path,
        samples=3,
        latent=(16, 3, 4, 6),
        text_dim=8,
        audio_window=(8, 5, 4),
        with_refs=[True, False, True],
        with_audio=[True, True, False],
        with_mask=[False, True, True],
    )
    cache = LatentCache(tmp_path)
    ds = CachedDataset(cache, split="train", num_refs=2)
    assert ds.availability() == [
        {"image": True, "audio": True, "pose": False, "mask": False},
        {"image": False, "audio": True, "pose": False, "mask": True},
        {"image": True, "audio": False, "pose": False, "mask": True},
    ]
    # The dataset reads what a sample has; which of it a task's pass sees is the objective's rule (TASK_USES).
    assert torch.equal(ds[(0, "subject")]["audio"], ds[(0, "av")]["audio"])
    assert ds[(1, "av")]["refs"] is None and ds[(2, "av")]["audio"] is None
    item = ds[(0, "av")]
    assert item["refs"].shape == (1, 16, 4, 6) and item["audio"].shape == (3, 8, 5, 4)

    batch = Collate(num_refs=2, audio_window=[8, 5, 4])([ds[(0, "av")], ds[(1, "av")], ds[(2, "subject")]])
    assert batch.latents.shape == (3, 16, 3, 4, 6)
    assert batch.refs.shape == (3, 16, 2, 4, 6)
    assert batch.has_ref.tolist() == [True, False, True]
    assert torch.equal(batch.refs[0, :, :1], item["refs"].transpose(0, 1))
    assert batch.refs[0, :, 1:].abs().sum() == 0 and batch.refs[1].abs().sum() == 0  # missing -> zeros
    assert batch.has_audio.tolist() == [True, True, False]
    assert batch.audio[2].abs().sum() == 0
    assert batch.has_mask.tolist() == [False, True, True]
    assert batch.tasks == ("av", "av", "subject")
    assert batch.text.shape == (3, 6, 8)
    assert torch.equal(batch.latents[1], cache.load(cache.samples[1]["video"]))

    with pytest.raises(HumoError, match="no samples of split 'val'"):
        CachedDataset(cache, split="val")
    (tmp_path / "index.json").write_text(json.dumps({"version": 0}))
    with pytest.raises(HumoError, match="version"):
        LatentCache(tmp_path)


def test_collate_cuts_clips_to_the_shortest_and_rejects_mixed_sizes(tmp_path):
    synthetic_cache(tmp_path / "a", samples=1, latent=(16, 3, 4, 4), text_dim=8, audio_window=None)
    synthetic_cache(tmp_path / "b", samples=1, latent=(16, 2, 4, 4), text_dim=8, audio_window=None, seed=1)
    synthetic_cache(tmp_path / "c", samples=1, latent=(16, 2, 4, 8), text_dim=8, audio_window=None, seed=2)
    items = [CachedDataset(LatentCache(tmp_path / n))[(0, "t2v")] for n in "abc"]
    batch = Collate(num_refs=0)(items[:2])
    assert batch.latents.shape == (2, 16, 2, 4, 4)
    assert torch.equal(batch.latents[0], items[0]["latents"][:, :2])
    with pytest.raises(HumoError, match="mixes latent sizes"):
        Collate(num_refs=0)([items[0], items[2]])


def test_cli_precompute_then_train_end_to_end(tmp_path, encoders, media, capsys):
    from humo.checkpoint import load_dit
    from humo.cli import main
    from tests.helpers import TINY, TINY_AUDIO

    for name in ("vae", "text", "audio"):
        getattr(encoders, name).save_pretrained(tmp_path / name)
    manifest = write_manifest(media / "manifest.jsonl", _samples())
    assert read_manifest(manifest)[0].ref_images == ["ref.png"]
    args = ["precompute", "--manifest", str(manifest), "--out", str(tmp_path / "cache"), "--quiet"]
    args += ["--vae", str(tmp_path / "vae"), "--text", str(tmp_path / "text"), "--audio", str(tmp_path / "audio")]
    assert main(args) == 0
    assert "2 samples" in capsys.readouterr().out
    assert main(args) == 0
    assert "video: 0 computed, 2 reused" in capsys.readouterr().out

    model = {**TINY, **TINY_AUDIO, "audio_feat_dim": 16, "mask_head_blocks": 1}
    sets = {
        "cache": str(tmp_path / "cache"),
        "out": str(tmp_path / "run"),
        "model": "humo-1.7b",
        "model_overrides": json.dumps(model),
        "stage": 2,
        "steps": 2,
        "batch_size": 2,
        "precision": "fp32",
        "progress": "false",
        "tensorboard": "false",
    }
    run = ["train"] + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    assert main(run) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    exported = load_dit(tmp_path / "run" / "final" / "ema.safetensors")
    assert exported.cfg.mask_head_blocks == 1 and exported.cfg.audio_feat_dim == 16

    assert main(args[:-6] + ["--vae", str(tmp_path / "missing"), "--text", str(tmp_path / "text")]) == 2
    assert "missing" in capsys.readouterr().err
