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
