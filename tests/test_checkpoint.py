import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from humo.checkpoint import (
    from_diffusers_keys,
    infer_config,
    load_dit,
    match_preset,
    read_state_dict,
    save_dit,
    to_diffusers_keys,
)
from humo.errors import HumoError
from tests.helpers import dit_inputs, tiny_cfg, tiny_model


def official_layout(dim, ffn, layers, in_dim, text_dim, freq_dim, audio_c, token_dim=1536, tokens=16, hidden=512):
    """Key -> shape of a released HuMo DiT, written from the spec sheet (not from our model)."""
    shapes = {
        "patch_embedding.weight": (dim, in_dim, 1, 2, 2),
        "patch_embedding.bias": (dim,),
        "text_embedding.0.weight": (dim, text_dim),
        "text_embedding.0.bias": (dim,),
        "text_embedding.2.weight": (dim, dim),
        "text_embedding.2.bias": (dim,),
        "time_embedding.0.weight": (dim, freq_dim),
        "time_embedding.0.bias": (dim,),
        "time_embedding.2.weight": (dim, dim),
        "time_embedding.2.bias": (dim,),
        "time_projection.1.weight": (6 * dim, dim),
        "time_projection.1.bias": (6 * dim,),
        "head.head.weight": (16 * 4, dim),
        "head.head.bias": (16 * 4,),
        "head.modulation": (1, 2, dim),
        "audio_proj.audio_proj_glob_1.layer.weight": (hidden, 8 * 5 * audio_c),
        "audio_proj.audio_proj_glob_1.layer.bias": (hidden,),
        "audio_proj.audio_proj_glob_2.layer.weight": (hidden, hidden),
        "audio_proj.audio_proj_glob_2.layer.bias": (hidden,),
        "audio_proj.audio_proj_glob_3.layer.weight": (tokens * token_dim, hidden),
        "audio_proj.audio_proj_glob_3.layer.bias": (tokens * token_dim,),
        "audio_proj.audio_proj_glob_norm.layer.weight": (token_dim,),
        "audio_proj.audio_proj_glob_norm.layer.bias": (token_dim,),
    }
    for n in range(layers):
        b = f"blocks.{n}"
        shapes[f"{b}.modulation"] = (1, 6, dim)
        for att in ("self_attn", "cross_attn"):
            for p in "qkvo":
                shapes[f"{b}.{att}.{p}.weight"] = (dim, dim)
                shapes[f"{b}.{att}.{p}.bias"] = (dim,)
            shapes[f"{b}.{att}.norm_q.weight"] = (dim,)
            shapes[f"{b}.{att}.norm_k.weight"] = (dim,)
        shapes[f"{b}.norm3.weight"] = (dim,)
        shapes[f"{b}.norm3.bias"] = (dim,)
        shapes[f"{b}.ffn.0.weight"] = (ffn, dim)
        shapes[f"{b}.ffn.0.bias"] = (ffn,)
        shapes[f"{b}.ffn.2.weight"] = (dim, ffn)
        shapes[f"{b}.ffn.2.bias"] = (dim,)
        w = f"{b}.audio_cross_attn_wrapper"
        shapes[f"{w}.norm1_audio.weight"] = (dim,)
        shapes[f"{w}.norm1_audio.bias"] = (dim,)
        for p, fan_in in (("q", dim), ("k", token_dim), ("v", token_dim), ("o", dim)):
            shapes[f"{w}.audio_cross_attn.{p}.weight"] = (dim, fan_in)
            shapes[f"{w}.audio_cross_attn.{p}.bias"] = (dim,)
        shapes[f"{w}.audio_cross_attn.norm_q.weight"] = (dim,)
        shapes[f"{w}.audio_cross_attn.norm_k.weight"] = (dim,)
    return shapes


def random_state(shapes, dtype=torch.bfloat16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: (0.05 * torch.randn(s, generator=g)).to(dtype) for k, s in shapes.items()}


TINY_17B = dict(dim=64, ffn=128, layers=2, in_dim=36, text_dim=32, freq_dim=32, audio_c=8, token_dim=48, hidden=32)
TINY_1_7B = dict(TINY_17B, in_dim=16)


def write_sharded(sd, folder, shards=2):
    keys = sorted(sd)
    weight_map = {}
    for i in range(shards):
        name = f"humo-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: sd[k] for k in keys[i::shards]}
        save_file(part, str(folder / name))
        weight_map.update({k: name for k in part})
    index = folder / "humo.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


def test_official_17b_sharded_loads_strictly_and_runs(tmp_path):
    sd = random_state(official_layout(**TINY_17B))
    write_sharded(sd, tmp_path)
    cfg = tiny_cfg("humo-17b")
    model = load_dit(tmp_path, cfg)  # the folder, as the release lays it out
    assert model.dtype == torch.bfloat16
    assert torch.equal(
        model.state_dict()["blocks.1.audio_cross_attn_wrapper.audio_cross_attn.k.weight"],
        sd["blocks.1.audio_cross_attn_wrapper.audio_cross_attn.k.weight"],
    )
    x, t, ctx, audio, y = dit_inputs(cfg)
    with torch.no_grad():
        out = model(x, t, ctx, audio=audio, y=y)
    assert out.shape == x.shape and torch.isfinite(out.float()).all()


def test_official_1_7b_pth_loads_strictly_in_any_dtype(tmp_path):
    sd = random_state(official_layout(**TINY_1_7B), dtype=torch.float32)
    torch.save(sd, tmp_path / "ema.pth")
    cfg = tiny_cfg("humo-1.7b")
    model = load_dit(tmp_path / "ema.pth", cfg, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    x, t, ctx, audio, _ = dit_inputs(cfg)
    with torch.no_grad():
        assert model(x, t, ctx, audio=audio).shape == x.shape


def test_missing_key_is_named(tmp_path):
    sd = random_state(official_layout(**TINY_1_7B))
    del sd["blocks.1.audio_cross_attn_wrapper.norm1_audio.bias"]
    save_file(sd, str(tmp_path / "m.safetensors"))
    with pytest.raises(HumoError, match=r"missing keys: blocks\.1\.audio_cross_attn_wrapper\.norm1_audio\.bias"):
        load_dit(tmp_path / "m.safetensors", tiny_cfg("humo-1.7b"))


def test_wrong_shape_is_named(tmp_path):
    sd = random_state(official_layout(**TINY_1_7B))
    sd["blocks.0.ffn.0.weight"] = torch.zeros(64, 64)
    torch.save(sd, tmp_path / "w.pth")
    with pytest.raises(HumoError, match=r"wrong shapes: blocks\.0\.ffn\.0\.weight \(64, 64\) vs \(128, 64\)"):
        load_dit(tmp_path / "w.pth", tiny_cfg("humo-1.7b"))


def test_unexpected_key_and_wrong_architecture(tmp_path):
    sd = random_state(official_layout(**TINY_1_7B))
    sd["blocks.0.cross_attn.k_img.weight"] = torch.zeros(64, 64)
    save_file(sd, str(tmp_path / "u.safetensors"))
    with pytest.raises(HumoError, match=r"unexpected keys: blocks\.0\.cross_attn\.k_img\.weight"):
        load_dit(tmp_path / "u.safetensors", tiny_cfg("humo-1.7b"))
    # A 1.7B checkpoint into the 17B layout: the patch embedding's channels differ.
    save_file(random_state(official_layout(**TINY_1_7B)), str(tmp_path / "a.safetensors"))
    with pytest.raises(HumoError, match=r"patch_embedding\.weight"):
        load_dit(tmp_path / "a.safetensors", tiny_cfg("humo-17b"))


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_refuses_pickled_code_and_junk(tmp_path):
    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"x": _Evil()}, f)
    with pytest.raises(HumoError, match="would run code"):
        read_state_dict(tmp_path / "evil.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(HumoError, match="not a readable safetensors"):
        read_state_dict(tmp_path / "junk.safetensors")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(HumoError, match="not a weights file"):
        read_state_dict(tmp_path / "notes.txt")
    with pytest.raises(HumoError, match="not found"):
        read_state_dict(tmp_path / "nope.pth")
    index = tmp_path / "x.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "missing.safetensors"}}))
    with pytest.raises(HumoError, match="missing shard"):
        read_state_dict(index)


def test_save_roundtrip_and_inferred_config(tmp_path):
    model = tiny_model("toy", seed=2)
    path = save_dit(model, tmp_path / "toy.safetensors")
    loaded = load_dit(path)  # config from the metadata
    assert loaded.cfg == model.cfg
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    # Without metadata the shapes decide.
    sd = {k: v for k, v in model.state_dict().items()}
    inferred = infer_config(sd)  # heads, text_len and what the head predicts are not in the shapes
    assert model.cfg.prediction == "sample" and inferred.prediction == "velocity"  # a release file predicts velocity
    assert inferred.replace(name="x", num_heads=4, text_len=16, prediction="sample") == model.cfg.replace(name="x")


def test_diffusers_layout_roundtrip(tmp_path):
    model = tiny_model("humo-1.7b", seed=3)
    sd = model.state_dict()
    d = to_diffusers_keys(sd)
    assert "condition_embedder.time_proj.weight" in d and "blocks.0.attn1.to_out.0.weight" in d
    assert "blocks.0.audio_cross_attn_wrapper.audio_cross_attn.q.weight" in d  # HuMo keys keep their names
    assert from_diffusers_keys(d).keys() == sd.keys()
    path = save_dit(model, tmp_path / "d.safetensors", layout="diffusers")
    again = load_dit(path)
    assert all(torch.equal(sd[k], again.state_dict()[k]) for k in sd)


def test_match_preset_on_meta_layouts():
    from humo.configs import dit_preset
    from humo.dit import HumoDiT

    for name in ["humo-17b", "humo-1.7b", "wan2.1-t2v-1.3b"]:
        with torch.device("meta"):
            sd = HumoDiT(dit_preset(name)).state_dict()
        assert match_preset(sd) == name
    with torch.device("meta"):
        sd = HumoDiT(tiny_cfg("humo-1.7b")).state_dict()
    assert match_preset(sd) is None
