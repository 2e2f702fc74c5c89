"""The proving ground's linear latent codec: Wan's latent layout, whitened PCA, files, and every place a VAE goes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from humo.conditions.linear_codec import LinearCodec, fit_linear_codec
from humo.conditions.vae import load_vae_folder
from humo.errors import HumoError


def _videos(n=6, frames=9, size=16, seed=0):
    """Smooth random clips in [-1, 1]: low-frequency patterns drifting over time (so PCA has structure)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        base = torch.randn(1, 3, 1, 4, 4, generator=g)
        drift = torch.randn(1, 3, 1, 4, 4, generator=g) * 0.3
        t = torch.linspace(0, 1, frames).view(1, 1, frames, 1, 1)
        low = base + drift * t
        v = torch.nn.functional.interpolate(low, size=(frames, size, size), mode="trilinear", align_corners=False)
        out.append((0.5 * v + 0.05 * torch.randn(1, 3, frames, size, size, generator=g)).clamp(-1, 1))
    return out


def test_layout_matches_wans_vae_first_frame_alone_then_blocks_of_four():
    vids = _videos()
    codec = fit_linear_codec(vids, z_dim=8, stride=4)
    z = codec.encode(vids[0])
    assert z.shape == (1, 8, 3, 4, 4)  # 9 frames -> 1 + 2 latent frames; 16 px / 4
    # Frame 0 alone reaches latent frame 0; frames 5..8 reach latent frame 2 only.
    changed = vids[0].clone()
    changed[:, :, 6] += 0.3
    dz = (codec.encode(changed) - z).abs().amax(dim=(0, 1, 3, 4))
    assert dz[0] == 0 and dz[1] == 0 and dz[2] > 0
    changed = vids[0].clone()
    changed[:, :, 0] += 0.3
    dz = (codec.encode(changed) - z).abs().amax(dim=(0, 1, 3, 4))
    assert dz[0] > 0 and dz[1] == 0 and dz[2] == 0
    # A spatial block reaches its own latent pixel only.
    changed = vids[0].clone()
    changed[:, :, 1:5, 4:8, 8:12] += 0.3
    dz = (codec.encode(changed) - z).abs().amax(dim=(0, 1, 2))
    assert dz[1, 2] > 0 and (dz > 0).sum() == 1
    video = codec.decode(z)
    assert video.shape == (1, 3, 9, 16, 16) and video.abs().max() <= 1


def test_latents_are_whitened_and_more_channels_reconstruct_better():
    vids = _videos(n=8)
    errors = []
    for z_dim in (2, 6, 16):
        codec = fit_linear_codec(vids, z_dim=z_dim)
        z = torch.cat([codec.encode(v)[:, :, 1:] for v in vids], dim=2)  # the 4-frame blocks
        std = z.permute(1, 0, 2, 3, 4).reshape(z_dim, -1).std(dim=1)
        assert torch.allclose(std, torch.ones(z_dim), atol=0.02), std
        errors.append(np.mean([(codec.decode(codec.encode(v)) - v).square().mean().item() for v in vids]))
    assert errors[0] > errors[1] > errors[2]
    # Decoding then encoding gives the latent back (decode is the inverse on the kept subspace).
    codec = fit_linear_codec(vids, z_dim=6)
    z = codec.encode(vids[0])
    assert torch.allclose(codec.encode(codec.decode(z)), z, atol=1e-3)


def test_a_full_rank_first_frame_codec_is_lossless():
    vids = _videos(n=8)
    codec = fit_linear_codec(vids, z_dim=48, stride=4)  # 3 x 4 x 4 values per first-frame block: all kept
    image = vids[3][:, :, :1]
    assert torch.allclose(codec.decode(codec.encode(image)), image, atol=1e-4)
    refs = codec.encode_images(vids[3][:, :, 0])
    assert torch.allclose(refs, codec.encode(image), atol=1e-6)


def test_save_load_round_trip_and_dispatch(tmp_path):
    codec = fit_linear_codec(_videos(), z_dim=8)
    codec.save_pretrained(tmp_path / "vae")
    loaded = load_vae_folder(tmp_path / "vae")
    assert isinstance(loaded, LinearCodec)
    v = _videos(n=1, seed=5)[0]
    assert torch.equal(loaded.encode(v), codec.encode(v))
    assert loaded.zero_video_latent(5, 16, 16).shape == (1, 8, 2, 4, 4)
    assert json.loads((tmp_path / "vae" / "codec.json").read_text())["z_dim"] == 8


def test_bad_codec_files_and_inputs_are_named_errors(tmp_path):
    codec = fit_linear_codec(_videos(), z_dim=8)
    weights = dict(codec.w)
    weights.pop("dec_rest")
    with pytest.raises(HumoError, match="missing keys: dec_rest"):
        LinearCodec(weights, 4)
    weights = dict(codec.w, enc_rest=codec.w["enc_rest"][:, :10])
    with pytest.raises(HumoError, match="rest frames"):
        LinearCodec(weights, 4)
    with pytest.raises(HumoError, match="frames 8"):
        codec.encode(torch.zeros(1, 3, 8, 16, 16))
    with pytest.raises(HumoError, match="multiple of 4"):
        codec.encode(torch.zeros(1, 3, 5, 18, 16))
    with pytest.raises(HumoError, match="expected \\[B, 8, F, h, w\\]"):
        codec.decode(torch.zeros(1, 16, 2, 4, 4))
    (tmp_path / "codec.json").write_text('{"kind": "something else"}')
    with pytest.raises(HumoError, match="kind"):
        LinearCodec.from_pretrained(tmp_path)
    with pytest.raises(HumoError, match="z_dim 200 exceeds"):
        fit_linear_codec(_videos(n=2), z_dim=200)


def test_fit_codec_command_writes_a_codec_the_toy_model_generates_with(tmp_path, capsys):
    """humo fit-codec on proving-ground clips -> precompute and the toy pipeline use it like the VAE."""
    from humo.cli import main
    from humo.data.loader import LatentCache
    from humo.data.manifest import read_manifest
    from humo.data.precompute import load_encoders, precompute
    from humo.pipeline import HumoPipeline
    from humo.proving_ground.synth import SynthConfig, synthesize_dataset
    from humo.toy import assemble_weights

    manifest, _ = synthesize_dataset(
        SynthConfig(out=tmp_path / "data", clips=6, frames=(9, 9), seed=1, workers=1), progress=False
    )
    assert main(["fit-codec", "--manifest", str(manifest), "--out", str(tmp_path / "codec"), "--clips", "6"]) == 0
    printed = capsys.readouterr().out
    assert "16-channel linear codec on" in printed
    report = json.loads((tmp_path / "codec" / "report.json").read_text())
    assert report["variance_kept_rest"] > 0.8
    folder = assemble_weights(tmp_path / "model", vae=tmp_path / "codec")
    assert (folder / "vae" / "codec.json").is_file()
    enc = load_encoders(str(folder / "vae"), str(folder / "text"), str(folder / "whisper"))
    precompute(read_manifest(manifest), tmp_path / "cache", enc, base_dir=manifest.parent)
    cache = LatentCache(tmp_path / "cache")
    assert cache.dims["latent_channels"] == 16
    pipe = HumoPipeline.from_pretrained(folder, "toy", device="cpu", log=lambda *_: None, progress=False)
    sample = read_manifest(manifest)[0]
    res = pipe("a person talks on the beach", [str(sample.ref_image_paths[0])], str(sample.audio_path), frames=5,
               steps=2, height=64, width=64)  # fmt: skip
    assert res.frames.shape == (5, 64, 64, 3)


def test_global_scaling_keeps_the_components_variance_order_at_unit_mean_variance():
    vids = _videos(n=8)
    codec = fit_linear_codec(vids, z_dim=6, scaling="global")
    z = torch.cat([codec.encode(v)[:, :, 1:] for v in vids], dim=2)
    var = z.permute(1, 0, 2, 3, 4).reshape(6, -1).var(dim=1)
    assert abs(var.mean().item() - 1) < 0.05
    assert (var[:-1] >= var[1:] - 1e-3).all() and var[0] > 3 * var[-1]
    # The same subspace as the whitened codec: the reconstructions agree.
    white = fit_linear_codec(vids, z_dim=6)
    assert torch.allclose(codec.decode(codec.encode(vids[0])), white.decode(white.encode(vids[0])), atol=1e-4)
    with pytest.raises(HumoError, match="scaling 'none'"):
        fit_linear_codec(vids, z_dim=6, scaling="none")
