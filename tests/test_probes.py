"""Capability probes: the audio probe is high on the world's own audio and low on another clip's."""

from __future__ import annotations

from humo.evaluation.probes import audio_mouth_probe


def test_audio_probe_reads_the_mouth_from_the_clip_audio_and_not_from_another_clips(tmp_path):
    from humo.conditions.audio import AudioEncoder
    from humo.proving_ground.synth import SynthConfig, synthesize_dataset

    manifest, _ = synthesize_dataset(
        SynthConfig(out=tmp_path / "data", clips=16, frames=(49, 49), seed=1, workers=1), progress=False
    )
    AudioEncoder.toy(seed=0).save_pretrained(tmp_path / "whisper")
    res = audio_mouth_probe(manifest, tmp_path / "whisper", clips=16)
    assert res["clips_scored"] == 4 and res["feature_dim"] == 5 * 64
    assert res["r_envelope"] > 0.95  # the world's mouth follows the loudness envelope
    assert res["r"] > 0.8, res
    assert abs(res["r_other_audio"]) < 0.3, res
    assert res["content_share"] > 0.3, res  # the features differ between clips (see the toy encoder)


def test_demo_sync_curves_follow_the_clip_audio_and_the_plots_are_written(tmp_path):
    import numpy as np

    from humo.commands.demo import sync_curves, write_sync_plot
    from humo.evaluation.probes import plot_curves
    from humo.media.audio import load_audio
    from humo.media.video import read_video
    from humo.proving_ground.synth import SynthConfig, synthesize_dataset

    manifest, _ = synthesize_dataset(
        SynthConfig(out=tmp_path / "d", clips=1, frames=(49, 49), seed=3, workers=1), progress=False
    )
    from humo.data.manifest import read_manifest

    s = read_manifest(manifest)[0]
    frames = read_video(s.video_path)[0]
    wave = load_audio(s.audio_path, 16000, min_seconds=0)
    own = sync_curves(frames, 25, wave, 16000)
    other = sync_curves(frames, 25, np.ascontiguousarray(wave[::-1]), 16000)
    assert own["sync_corr0"] > 0.9 and own["sync_offset"] == 0
    assert other["sync_corr0"] < 0.5
    assert len(own["mouth"]) == len(own["envelope"]) == len(frames)
    png = write_sync_plot(own, 25, tmp_path / "sync.png")
    curve = {100: {"text_mean": 0.4, "subject_acc": 0.5, "subject_acc_mismatched": 0.3, "sync_c": 0.5}}
    plot = plot_curves({"run": curve}, tmp_path / "curves.png")
    for p in (png, plot):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _Oracle:
    """A stand-in DiT that knows each clip's clean latent and finds it by one condition: the reference frame
    ("image"), the audio windows ("audio"), or by nothing (None: it predicts the mean clip and ignores both)."""

    def __init__(self, cfg, cache, key):
        import torch

        from humo.data.loader import CachedDataset, LatentCache

        ds = CachedDataset(LatentCache(cache), split="val", num_refs=1)
        items = [ds[(i, "av")] for i in range(len(ds))]
        self.cfg, self.key = cfg, key
        self.x0 = torch.stack([it["latents"] for it in items])
        self.refs = torch.stack([it["refs"][0] for it in items])
        self.audio = torch.stack([it["audio"] for it in items])

    def __call__(self, x, t, context, audio=None, y=None):
        import torch

        f = self.x0.shape[2]
        if self.key == "image":
            d = (x[:, :, f][:, None] - self.refs[None]).flatten(2).square().sum(-1)
            x0 = self.x0[d.argmin(1)]
        elif self.key == "audio":
            d = (audio[:, :f][:, None] - self.audio[None]).flatten(2).square().sum(-1)
            x0 = self.x0[d.argmin(1)]
        else:
            x0 = self.x0.mean(0, keepdim=True).expand(x.shape[0], -1, -1, -1, -1)
        sigma = (t / 1000).view(-1, 1, 1, 1, 1)
        v = (x[:, :, :f] - x0) / sigma
        return torch.cat([v, torch.zeros_like(x[:, :, f:])], dim=2)


def test_conditioning_gap_is_high_for_a_model_that_uses_the_condition_and_zero_for_one_that_does_not(tmp_path):
    from humo.configs import dit_preset
    from humo.evaluation.probes import conditioning_gap
    from tests.helpers import TINY, TINY_AUDIO, synthetic_cache

    cfg = dit_preset("humo-1.7b", **TINY, **TINY_AUDIO)
    cache = tmp_path / "cache"
    synthetic_cache(
        cache, samples=6, text_dim=TINY["text_dim"], audio_window=(8, 5, TINY_AUDIO["audio_feat_dim"]), split="val"
    )
    by_image = conditioning_gap(_Oracle(cfg, cache, "image"), cache, sigmas=(0.5, 0.9))
    by_audio = conditioning_gap(_Oracle(cfg, cache, "audio"), cache, sigmas=(0.5, 0.9))
    blind = conditioning_gap(_Oracle(cfg, cache, None), cache, sigmas=(0.5, 0.9))
    assert by_image["image"]["face_gap"] > 0.99 and by_image["image"]["per_sigma"]["0.9"]["face_better_share"] == 1
    assert abs(by_image["audio"]["face_gap"]) < 1e-6  # it finds the clip by its reference: the audio is not used
    assert by_audio["audio"]["face_gap"] > 0.99 and abs(by_audio["image"]["whole_gap"]) < 1e-6
    assert abs(blind["image"]["face_gap"]) < 1e-6 and abs(blind["audio"]["face_gap"]) < 1e-6
    assert by_image["image"]["clips"] == 6


def test_audio_token_dependence_reads_a_collapsed_projector_as_zero(tmp_path):
    """A random projector's tokens move with the audio; one whose first layer ignores its input (a bias only, as the
    full variant's stage 2 ended up: docs/ablations.md) gives the same tokens whatever the audio: 0."""
    import torch

    from humo.configs import dit_preset
    from humo.dit import HumoDiT
    from humo.evaluation.probes import audio_token_dependence, conditioning_gap
    from tests.helpers import TINY, TINY_AUDIO, synthetic_cache

    cache = tmp_path / "cache"
    synthetic_cache(
        cache, samples=4, text_dim=TINY["text_dim"], audio_window=(8, 5, TINY_AUDIO["audio_feat_dim"]), split="val"
    )
    model = HumoDiT(dit_preset("humo-1.7b", **TINY, **TINY_AUDIO)).eval()
    g = conditioning_gap(model, cache, sigmas=(0.5,))
    assert 0.2 < g["audio_tokens"] < 2.0
    with torch.no_grad():
        model.audio_proj.audio_proj_glob_1.layer.weight.zero_()
    g = conditioning_gap(model, cache, sigmas=(0.5,))
    assert g["audio_tokens"] == 0.0
    windows = torch.randn(3, 2, 8, 5, TINY_AUDIO["audio_feat_dim"])
    assert audio_token_dependence(model, windows) == 0.0


def test_demo_frame_strip_takes_evenly_spaced_frames_enlarged(tmp_path):
    import numpy as np
    from PIL import Image

    from humo.commands.demo import write_strip

    frames = np.zeros((9, 4, 5, 3), dtype=np.uint8)
    frames[:, :, :, 0] = np.arange(9)[:, None, None] * 10  # each frame's red is its index x 10
    path = write_strip(frames, tmp_path / "strip.png", count=3, scale=2)
    img = np.asarray(Image.open(path))
    assert img.shape == (8, 30, 3)  # 3 frames of 5 wide side by side, enlarged 2x
    assert [int(img[0, x, 0]) for x in (0, 10, 20)] == [0, 40, 80]  # frames 0, 4 and 8
    assert not list(tmp_path.glob("*.tmp"))
