"""The Wan2.1 VAE wrapper: official key mapping, strict loading, shapes, chunked/tiled decoding, zero-video latent."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from humo.conditions.vae import (
    TOY_VAE_CONFIG,
    WAN21_VAE_CONFIG,
    WAN_LATENT_MEAN,
    WAN_LATENT_STD,
    WanVAE,
    check_video_size,
    latent_shape,
    official_key_map,
    strides_of,
)
from humo.errors import HumoError

# Smallest config that still has every kind of layer: 4 stages (8x space), both temporal down/upsamples, width
# changes (so `shortcut` convs exist in encoder and decoder), the middle attention block.
TINY = {
    "base_dim": 8,
    "z_dim": 4,
    "dim_mult": [1, 2, 2, 2],
    "num_res_blocks": 1,
    "attn_scales": [],
    "temperal_downsample": [False, True, True],
    "latents_mean": [0.3, -0.2, 0.1, 0.5],
    "latents_std": [1.5, 0.7, 2.0, 1.1],
}


@pytest.fixture(scope="module")
def tiny() -> WanVAE:
    vae = WanVAE.from_config(TINY, seed=1)
    # Random non-trivial norm gains so that a swapped gamma would change the output.
    with torch.no_grad():
        g = torch.Generator().manual_seed(3)
        for name, p in vae.model.named_parameters():
            if name.endswith("gamma"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
    return vae


def _video(b=1, t=5, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, h, w, generator=g) * 2 - 1


def _denorm(vae: WanVAE, z: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(vae.model.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.model.config.latents_std).view(1, -1, 1, 1, 1)
    return z * std + mean


def test_key_map_agrees_with_diffusers_converter_on_the_release_architecture():
    # diffusers' own single-file converter is hard-coded for the released layout; ours is derived from the config.
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    model = WanVAE._build(WAN21_VAE_CONFIG, meta=True)
    ours = official_key_map(model, WAN21_VAE_CONFIG)
    official = {k: torch.empty(0) for k in ours}
    theirs = convert_wan_vae_to_diffusers(official)
    assert set(theirs) == set(ours.values())
    for off_key, diff_key in ours.items():
        assert theirs[diff_key] is official[off_key], off_key
    # Spot checks of the official naming.
    assert ours["decoder.upsamples.3.resample.1.weight"] == "decoder.up_blocks.0.upsamplers.0.resample.1.weight"
    assert ours["encoder.downsamples.0.residual.6.weight"] == "encoder.down_blocks.0.conv2.weight"
    assert ours["conv2.bias"] == "post_quant_conv.bias"


def test_official_round_trip_is_strict_and_identical(tiny, tmp_path):
    sd = tiny.official_state_dict()
    # Decoder stage 1 starts after stage 0's two residual blocks and its upsample, and widens 8 -> 16.
    assert "decoder.upsamples.3.shortcut.weight" in sd
    assert any(k.startswith("encoder.downsamples.") and ".residual.0.gamma" in k for k in sd)
    for suffix in (".safetensors", ".pth"):
        path = tmp_path / f"vae{suffix}"
        tiny.save_official(path)
        loaded = WanVAE.from_official(path, config=TINY)
        ref_sd, new_sd = tiny.model.state_dict(), loaded.model.state_dict()
        assert set(ref_sd) == set(new_sd)
        for k in ref_sd:
            assert torch.equal(ref_sd[k], new_sd[k]), k
        video = _video()
        assert torch.equal(tiny.encode(video), loaded.encode(video))
        z = torch.randn(1, 4, 2, 4, 4, generator=torch.Generator().manual_seed(5))
        assert torch.equal(tiny.decode(z), loaded.decode(z))


def test_missing_unexpected_and_misshaped_keys_are_named(tiny, tmp_path):
    path = tmp_path / "vae.safetensors"
    tiny.save_official(path)
    sd = load_file(str(path))

    missing = dict(sd)
    del missing["decoder.middle.1.to_qkv.weight"]
    save_file(missing, str(tmp_path / "missing.safetensors"))
    with pytest.raises(HumoError, match=r"missing keys: decoder\.middle\.1\.to_qkv\.weight"):
        WanVAE.from_official(tmp_path / "missing.safetensors", config=TINY)

    extra = dict(sd, **{"encoder.bogus.weight": torch.zeros(1)})
    save_file(extra, str(tmp_path / "extra.safetensors"))
    with pytest.raises(HumoError, match=r"unexpected keys: encoder\.bogus\.weight"):
        WanVAE.from_official(tmp_path / "extra.safetensors", config=TINY)

    bad = dict(sd, **{"conv1.bias": torch.zeros(3)})
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(HumoError, match=r"wrong shapes: conv1\.bias"):
        WanVAE.from_official(tmp_path / "bad.safetensors", config=TINY)

    # The tiny weights against the released architecture: everything is misshaped, and it says so.
    with pytest.raises(HumoError, match="wrong shapes"):
        WanVAE.from_official(path)
    with pytest.raises(HumoError, match="nope.pth: not found"):
        WanVAE.from_official(tmp_path / "nope.pth")


def test_encode_decode_shapes_and_range(tiny):
    video = _video(b=2, t=9, h=16, w=24)
    z = tiny.encode(video)
    assert z.shape == (2, 4, 3, 2, 3)
    assert z.dtype == torch.float32
    assert latent_shape(9, 16, 24, z_dim=4) == tuple(z.shape[1:])
    out = tiny.decode(z)
    assert out.shape == video.shape
    assert out.min() >= -1 and out.max() <= 1
    # Per-sample encoding: the batch does not mix.
    assert torch.allclose(tiny.encode(video[1:]), z[1:], atol=1e-6)


def test_encode_is_normalised_mean(tiny):
    video = _video(t=5, h=16, w=16, seed=4)
    mu = tiny.model.encode(video).latent_dist.mode()
    mean = torch.tensor(TINY["latents_mean"]).view(1, -1, 1, 1, 1)
    std = torch.tensor(TINY["latents_std"]).view(1, -1, 1, 1, 1)
    assert torch.allclose(tiny.encode(video), (mu - mean) / std, atol=1e-6)


def test_encode_images_is_one_frame_video(tiny):
    images = _video(b=3, t=1, h=16, w=24)[:, :, 0]
    z = tiny.encode_images(images)
    assert z.shape == (3, 4, 1, 2, 3)
    assert torch.allclose(z, tiny.encode(images.unsqueeze(2)), atol=0)
    with pytest.raises(HumoError, match="expected \\[N, 3, H, W\\]"):
        tiny.encode_images(images[:, :2])


def test_chunked_decode_equals_diffusers_full_decode(tiny):
    z = torch.randn(1, 4, 4, 2, 3, generator=torch.Generator().manual_seed(7))
    ours = tiny.decode(z)
    with torch.no_grad():
        ref = tiny.model.decode(_denorm(tiny, z)).sample
    assert ours.shape == ref.shape == (1, 3, 13, 16, 24)
    assert torch.allclose(ours, ref, atol=1e-5)
    # The output buffer can live elsewhere / in another dtype.
    half = tiny.decode(z, out_dtype=torch.float64)
    assert half.dtype == torch.float64 and torch.allclose(half.float(), ref, atol=1e-5)


def test_tiling_blends_exactly_for_a_pointwise_decoder(tiny, monkeypatch):
    # With a decoder that is pointwise in space, overlapping tiles must blend back to the untiled result exactly;
    # this checks the tile placement and the weights independently of the network's receptive field.
    def pointwise(self, latents):
        t = 0
        for i in range(latents.shape[2]):
            x = latents[:, :3, i : i + 1].tanh().repeat_interleave(8, dim=3).repeat_interleave(8, dim=4)
            x = x if i == 0 else x.repeat(1, 1, 4, 1, 1)
            yield t, x
            t += x.shape[2]

    monkeypatch.setattr(WanVAE, "_decode_chunks", pointwise)
    z = torch.randn(1, 4, 3, 11, 13, generator=torch.Generator().manual_seed(8))
    plain = tiny.decode(z)
    try:
        tiny.enable_tiling(tile_px=48, overlap_px=16)
        tiled = tiny.decode(z)
    finally:
        tiny.disable_tiling()
    assert tiled.shape == plain.shape == (1, 3, 9, 88, 104)
    assert torch.allclose(tiled, plain, atol=1e-6)


def test_tiling_with_the_real_decoder(tiny):
    z = torch.randn(1, 4, 2, 6, 6, generator=torch.Generator().manual_seed(9))
    plain = tiny.decode(z)
    try:
        tiny.enable_tiling(tile_px=64, overlap_px=16)  # a tile covers the whole frame: identical
        assert torch.equal(tiny.decode(z), plain)
        tiny.enable_tiling(tile_px=32, overlap_px=16)
        tiled = tiny.decode(z)
    finally:
        tiny.disable_tiling()
    assert tiled.shape == plain.shape
    assert torch.isfinite(tiled).all() and tiled.abs().max() <= 1
    with pytest.raises(HumoError, match="multiples of 8"):
        tiny.enable_tiling(tile_px=30, overlap_px=8)


def test_zero_video_latent_is_cached_and_correct(tiny):
    first = tiny.zero_video_latent(5, 16, 24)
    assert tiny.zero_video_latent(5, 16, 24) is first
    assert first.shape == (1, 4, 2, 2, 3)
    assert torch.allclose(first, tiny.encode(torch.zeros(1, 3, 5, 16, 24)), atol=0)
    other = tiny.zero_video_latent(9, 16, 24)
    assert other is not first and other.shape[2] == 3
    as_bf16 = tiny.zero_video_latent(5, 16, 24, dtype=torch.bfloat16)
    assert as_bf16.dtype == torch.bfloat16 and as_bf16 is not first
    # Changing the latent statistics invalidates the cache.
    try:
        tiny.set_latent_stats([0.0] * 4, [1.0] * 4)
        fresh = tiny.zero_video_latent(5, 16, 24)
        assert fresh is not first and not torch.allclose(fresh, first)
    finally:
        tiny.set_latent_stats(TINY["latents_mean"], TINY["latents_std"])


@pytest.mark.parametrize(
    "frames,height,width,match",
    [(8, 32, 32, "4k\\+1"), (0, 32, 32, "4k\\+1"), (5, 30, 32, "height 30"), (5, 32, 12, "width 12")],
)
def test_bad_sizes(tiny, frames, height, width, match):
    with pytest.raises(HumoError, match=match):
        check_video_size(frames, height, width)
    with pytest.raises(HumoError, match=match):
        tiny.zero_video_latent(frames, height, width)
    if frames > 0:
        with pytest.raises(HumoError, match=match):
            tiny.encode(torch.zeros(1, 3, frames, height, width))


def test_bad_tensors(tiny):
    with pytest.raises(HumoError, match="expected \\[B, 3, T, H, W\\]"):
        tiny.encode(torch.zeros(3, 5, 16, 16))
    with pytest.raises(HumoError, match="expected \\[B, 4, F, h, w\\]"):
        tiny.decode(torch.zeros(1, 16, 2, 2, 2))
    with pytest.raises(HumoError, match="latent stats"):
        tiny.set_latent_stats([0.0] * 3, [1.0] * 3)


def test_pretrained_round_trip_and_incomplete_folder(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "vae")
    loaded = WanVAE.from_pretrained(tmp_path / "vae")
    assert loaded.config["latents_std"] == TINY["latents_std"]
    z = torch.randn(1, 4, 2, 2, 2, generator=torch.Generator().manual_seed(2))
    assert torch.equal(loaded.decode(z), tiny.decode(z))
    (tmp_path / "empty").mkdir()
    with pytest.raises(HumoError, match=r"empty: config\.json is missing"):
        WanVAE.from_pretrained(tmp_path / "empty")
    (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(HumoError, match="no diffusion_pytorch_model"):
        WanVAE.from_pretrained(tmp_path / "vae")


def test_toy_and_release_configs():
    assert len(WAN_LATENT_MEAN) == len(WAN_LATENT_STD) == 16
    assert WAN21_VAE_CONFIG["latents_mean"] == list(WAN_LATENT_MEAN)
    a, b = WanVAE.toy(seed=0), WanVAE.toy(seed=0)
    for (k, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(p, q), k
    assert not torch.equal(WanVAE.toy(seed=1).model.decoder.conv_in.weight, a.model.decoder.conv_in.weight)
    assert a.z_dim == 16 and a.config["base_dim"] == TOY_VAE_CONFIG["base_dim"]
    assert a.spatial_stride == 4 and strides_of(TOY_VAE_CONFIG) == (4, 4) and strides_of(WAN21_VAE_CONFIG) == (4, 8)
    z = a.encode(torch.zeros(1, 3, 5, 64, 64))
    assert z.shape == (1, 16, 2, 16, 16) == (1, *latent_shape(5, 64, 64, spatial_stride=4))


def test_the_spatial_stride_follows_the_config():
    # The toy VAE has 3 stages (4x space); with Wan's 4 stages the same classes give 8x. Every size check, latent
    # shape and decode buffer follows the config's stride.
    a = WanVAE.from_config(TOY_VAE_CONFIG, seed=0)
    with pytest.raises(HumoError, match="multiple of 4"):
        a.encode(torch.zeros(1, 3, 5, 64, 66))
    z = torch.randn(1, 16, 3, 4, 6, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # the chunked decode equals diffusers' full decode
        ref = a.model.decode(_denorm(a, z)).sample.clamp(-1, 1)
    assert a.decode(z).shape == ref.shape == (1, 3, 9, 16, 24)
    assert torch.allclose(a.decode(z), ref, atol=1e-5)
    cfg8 = dict(TOY_VAE_CONFIG, dim_mult=[1, 2, 4, 4], temperal_downsample=[False, True, True])
    a8 = WanVAE.from_config(cfg8, seed=0)
    assert a8.spatial_stride == 8 and a8.encode(torch.zeros(1, 3, 5, 64, 64)).shape == (1, 16, 2, 8, 8)
    with pytest.raises(HumoError, match="multiple of 8"):
        a8.encode(torch.zeros(1, 3, 5, 64, 68))
    # Only space may vary: 2x in time would break every 4k+1 frame count, so it is refused when built.
    with pytest.raises(HumoError, match=r"temperal_downsample \[True, False\]: halves time 1 times"):
        WanVAE.from_config(dict(TOY_VAE_CONFIG, temperal_downsample=[True, False]))
