"""Training the continuation of a long video (OmniHuman-1's motion frames): cached clips read as continuations, the
sampler's continuation share, the batch's time axis, and a few training steps."""

import itertools
import json

import numpy as np
import pytest
import torch

from humo.constants import MOTION_FRAMES
from humo.data.loader import CachedDataset, Collate, LatentCache
from humo.data.manifest import Sample
from humo.data.precompute import Encoders, precompute
from humo.errors import HumoError
from humo.training.curriculum import STAGES, TaskBatchSampler, task_pools, task_probabilities
from tests.helpers import TINY, TINY_AUDIO, synthetic_cache, tiny_train_config

# training runs on one thread: tiny models are faster so, and the two test workers do not share cores
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    import soundfile

    from humo.media.video import write_video

    root = tmp_path_factory.mktemp("media")
    g = np.random.default_rng(0)
    write_video(root / "long.mp4", (g.random((19, 32, 32, 3)) * 255).astype(np.uint8), fps=25)
    write_video(root / "short.mp4", (g.random((9, 32, 32, 3)) * 255).astype(np.uint8), fps=25)
    soundfile.write(root / "speech.wav", (0.1 * g.standard_normal(16000)).astype(np.float32), 16000)
    masks = np.zeros((19, 32, 32), np.uint8)
    for t in range(19):  # a face box that moves, so a wrong frame offset shows
        masks[t, 4 + t % 8 : 12 + t % 8, 8:24] = 1
    np.savez(root / "masks.npz", masks=masks)
    return root


def test_a_cached_clip_reads_as_a_continuation_the_way_inference_makes_one(tmp_path, media):
    """A long video's segment is the motion frames encoded alone, then the new frames in fours (humo.pipeline). With a
    causal VAE that is exactly the cached clip's latent: its first two latent frames are its first 5 frames encoded
    alone, so the cache needs nothing more."""
    from humo.conditions.audio import AudioEncoder, audio_windows
    from humo.conditions.text import TextEncoder
    from humo.conditions.vae import WanVAE
    from humo.media.audio import load_audio
    from humo.media.video import read_video

    enc = Encoders(
        vae=WanVAE.toy(seed=0),
        text=TextEncoder.toy(["a", "person", "talks"], text_len=8, dim=16, num_layers=1),
        audio=AudioEncoder.toy(seed=0, num_layers=4, d_model=16, num_mel_bins=16, heads=2, chunk_seconds=1),
    )
    samples = [
        Sample("long", "long.mp4", "a person talks", [], "speech.wav", "masks.npz", num_frames=19, height=32, width=32),
        Sample("short", "short.mp4", "a person talks", height=32, width=32),  # 9 frames: too short to continue
    ]
    precompute(samples, tmp_path / "c", enc, base_dir=media)
    cache = LatentCache(tmp_path / "c")
    ds = CachedDataset(cache, num_refs=1, references=False)
    assert ds.lacking_continuation() == ["short"]
    with pytest.raises(HumoError, match="short.*too short for a continuation"):
        ds[(1, "av", True)]
    whole, cont = ds[(0, "av")], ds[(0, "av", True)]
    assert whole["latents"].shape[1] == 5  # 17 of the 19 frames
    frames = torch.from_numpy(read_video(media / "long.mp4")[0]).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    # what inference encodes as the motion frames: the 5 frames alone
    torch.testing.assert_close(cont["motion"], enc.vae.encode(frames[:, :, :MOTION_FRAMES])[0], atol=1e-5, rtol=1e-5)
    assert torch.equal(cont["latents"], whole["latents"][:, 2:])
    feats = enc.audio.features(load_audio(media / "speech.wav", min_seconds=0), fps=25.0)
    stream = audio_windows(feats, 5)  # one clip's windows, as `HumoPipeline.stream_windows` reads a segment's
    assert torch.equal(cont["motion_audio"], stream[:2]) and torch.equal(cont["audio"], stream[2:])
    assert torch.equal(cont["mask"], whole["mask"][2:])


def test_dataset_and_collate_give_a_continuation_batch(tmp_path):
    synthetic_cache(tmp_path, samples=3, latent=(16, 5, 4, 4), with_audio=[True, False, True])
    cache = LatentCache(tmp_path)
    ds = CachedDataset(cache, num_refs=1)
    first, cont = ds[(0, "av")], ds[(0, "av", True)]
    e = cache.samples[0]
    assert first["motion"] is None and torch.equal(first["latents"], cache.load(e["video"]))
    assert torch.equal(cont["motion"], first["latents"][:, :2])
    assert torch.equal(cont["latents"], first["latents"][:, 2:])
    assert torch.equal(cont["audio"], first["audio"][2:]) and torch.equal(cont["motion_audio"], first["audio"][:2])
    assert torch.equal(cont["refs"], first["refs"]) and torch.equal(cont["text"], first["text"])
    assert ds[(1, "av", True)]["motion_audio"] is None  # a clip without audio

    batch = Collate(1, [8, 5, 8])([ds[(i, "av", True)] for i in range(3)])
    assert batch.motion.shape == (3, 16, 2, 4, 4) and batch.latents.shape == (3, 16, 3, 4, 4)
    assert torch.equal(batch.motion_audio[0], cont["motion_audio"]) and not batch.motion_audio[1].any()
    with pytest.raises(HumoError, match="mixes continuations"):
        Collate(1, [8, 5, 8])([ds[(0, "av", True)], ds[(1, "av")]])

    # the time axis the DiT sees: [motion | video | reference], the motion frames' own audio first
    from humo.training.objective import training_conditions

    cond = training_conditions(batch, cache.null_text("negative"), reference_mode="replace", use_audio=True)
    assert cond.n_motion == 2 and cond.num_frames == 2 + 3 + 1
    assert torch.equal(cond.windows[:, :2], batch.motion_audio) and torch.equal(cond.windows[:, 2:5], batch.audio)
    assert not cond.windows[:, 5:].any()


def test_a_continuation_batch_keeps_the_pose_and_zero_clip_of_its_whole_stream(tmp_path):
    """The pose heatmaps cover the motion frames too (1 + 4(m + F - 1) frames), and the 17B zero-video condition
    of the new frames is the zero clip's latent at their place in the stream (after the motion frames')."""
    from humo.reference import concat_condition

    index = synthetic_cache(tmp_path, samples=2, latent=(16, 5, 4, 4), with_pose=True)
    cache = LatentCache(index.parent)
    ds = CachedDataset(cache, num_refs=1, pose=True, zero_video=True)
    batch = Collate(1, [8, 5, 8], pose=(2, 1.5))([ds[(i, "av", True)] for i in range(2)])
    assert batch.pose.shape[2] == 1 + 4 * (2 + 3 - 1) and batch.pose[:, :, :MOTION_FRAMES].any()
    zero = ds[(0, "av")]["zero_video"]
    assert torch.equal(batch.zero_video, zero[:, : 2 + 3 + 1])
    y = concat_condition(batch.refs, batch.zero_video, motion=batch.motion, num_video=3)
    assert torch.equal(y[:, 4:, 2:5], zero[None, :, 2:5].expand(2, -1, -1, -1, -1))


def test_the_sampler_draws_whole_continuation_batches_without_moving_the_tasks():
    avail = [{"image": True, "audio": i % 2 == 0, "pose": False, "mask": True} for i in range(12)]
    pools = task_pools(avail, ("subject", "av"))
    from humo.training.config import TrainConfig

    cfg = TrainConfig(stage=2)

    def stream(share):
        s = TaskBatchSampler(
            pools, lambda m: task_probabilities(STAGES[2], m, cfg), seed=3, batch_size=4, continuation=share
        )
        return list(itertools.islice(iter(s), 400))

    plain, mixed = stream(0.0), stream(0.3)
    assert [[(i, t) for i, t, _ in b] for b in plain] == [[(i, t) for i, t, _ in b] for b in mixed]
    flags = [{c for _, _, c in b} for b in mixed]
    assert all(len(f) == 1 for f in flags)  # a micro-batch is all continuation or none
    share = sum(f == {True} for f in flags) / len(flags)
    assert 0.24 < share < 0.36
    assert not any(c for b in plain for _, _, c in b)


def _train(cache_dir, out, **kw):
    from humo.training.loop import train

    return train(tiny_train_config(cache_dir, out, stage=2, steps=3, face_loss_weight=4.0, **kw))


def test_training_with_a_continuation_share(tmp_path):
    window = (8, 5, TINY_AUDIO["audio_feat_dim"])
    kw = dict(samples=4, text_dim=TINY["text_dim"], audio_window=window)
    cache = synthetic_cache(tmp_path / "cache", **kw, latent=(16, 5, 4, 4))
    _train(cache.parent, tmp_path / "run", continuation_share=1.0)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and all(np.isfinite(r["loss"]) for r in log)

    short = synthetic_cache(tmp_path / "short", **kw, latent=(16, 4, 4, 4))
    with pytest.raises(HumoError, match="at least 5 latent frames; 4 are shorter"):
        _train(short.parent, tmp_path / "run2", continuation_share=0.5)
