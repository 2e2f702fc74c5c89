"""Capability probes: the audio probe is high on the world's own audio and low on another clip's."""

from __future__ import annotations

from humo.proving_ground.probes import audio_mouth_probe


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


def test_demo_sync_curves_follow_the_clip_audio_and_the_plots_are_written(tmp_path):
    import numpy as np

    from humo.commands.demo import sync_curves, write_sync_plot
    from humo.media.audio import load_audio
    from humo.media.video import read_video
    from humo.proving_ground.probes import plot_curves
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
