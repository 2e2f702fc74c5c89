"""LoRA files in the key formats users have, merged into the DiT (humo/lora_files.py, `humo generate --lora`)."""

import pytest
import torch
from safetensors.torch import save_file

from humo.errors import HumoError
from humo.lora_files import apply_lora_file, parse_lora_arg
from tests.helpers import dit_inputs, tiny_model

RANK = 2


def _pair(out_dim, in_dim, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(RANK, in_dim, generator=g), torch.randn(out_dim, RANK, generator=g)


@pytest.mark.parametrize("fmt", ["peft-diffusers", "kohya", "comfy", "humo"])
def test_every_key_format_merges_the_same_update(tmp_path, fmt):
    model = tiny_model("humo-1.7b", seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q, ffn = model.blocks[0].self_attn.q.weight, model.blocks[1].ffn[0].weight
    (dq, uq), (df, uf) = _pair(*q.shape, 1), _pair(*ffn.shape, 2)
    modules = {  # (q, ffn) module names and the (down, up) suffixes of each format
        "peft-diffusers": (("transformer.blocks.0.attn1.to_q", "transformer.blocks.1.ffn.net.0.proj"), ("A", "B")),
        "kohya": (("lora_unet_blocks_0_self_attn_q", "lora_unet_blocks_1_ffn_0"), ("down", "up")),
        "comfy": (("diffusion_model.blocks.0.self_attn.q", "diffusion_model.blocks.1.ffn.0"), ("down", "up")),
        "humo": (("blocks.0.self_attn.q", "blocks.1.ffn.0"), ("A.default", "B.default")),
    }
    (mq, mf), (down, up) = modules[fmt]
    names = [f"{m}.lora_{part}.weight" for m in (mq, mf) for part in (down, up)]
    sd = dict(zip(names, (dq, uq, df, uf)))
    alpha = 1.0 if fmt == "kohya" else None  # kohya files carry alpha; the others default to the rank
    if alpha is not None:
        sd[f"{mq}.alpha"] = torch.tensor(alpha)
    save_file(sd, str(tmp_path / "l.safetensors"))
    assert apply_lora_file(model, tmp_path / "l.safetensors", scale=0.5) == 2
    after = model.state_dict()
    q_factor = (alpha or RANK) / RANK
    torch.testing.assert_close(
        after["blocks.0.self_attn.q.weight"], before["blocks.0.self_attn.q.weight"] + 0.5 * q_factor * uq @ dq
    )
    torch.testing.assert_close(after["blocks.1.ffn.0.weight"], before["blocks.1.ffn.0.weight"] + 0.5 * uf @ df)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"blocks.0.self_attn.q.weight", "blocks.1.ffn.0.weight"}


def test_diffs_bad_keys_and_shapes_are_named(tmp_path):
    model = tiny_model("humo-1.7b", seed=0)
    o = model.blocks[0].cross_attn.o
    w, b = o.weight.clone(), o.bias.clone()
    save_file({"blocks.0.cross_attn.o.diff": torch.ones_like(w), "blocks.0.cross_attn.o.diff_b": torch.ones_like(b)},
              str(tmp_path / "d.safetensors"))  # fmt: skip
    apply_lora_file(model, tmp_path / "d.safetensors", scale=2.0)
    assert torch.allclose(o.weight, w + 2) and torch.allclose(o.bias, b + 2)
    x, t, ctx, audio, _ = dit_inputs(model.cfg)
    with torch.no_grad():
        model(x, t, ctx, audio=audio)  # still a working model
    bad = {
        "blocks.0.self_attn.qq.lora_A.weight": torch.ones(2, 64),
        "blocks.0.self_attn.qq.lora_B.weight": torch.ones(64, 2),
    }
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(HumoError, match=r"match no layer of the DiT: blocks\.0\.self_attn\.qq\.lora_A\.weight"):
        apply_lora_file(model, tmp_path / "bad.safetensors")
    wrong = {
        "blocks.0.self_attn.q.lora_A.weight": torch.ones(2, 63),
        "blocks.0.self_attn.q.lora_B.weight": torch.ones(64, 2),
    }
    save_file(wrong, str(tmp_path / "shape.safetensors"))
    with pytest.raises(HumoError, match="does not fit the layer's weight"):
        apply_lora_file(model, tmp_path / "shape.safetensors")
    save_file({"blocks.0.self_attn.q.lora_A.weight": torch.ones(2, 64)}, str(tmp_path / "half.safetensors"))
    with pytest.raises(HumoError, match="only one of its two LoRA matrices"):
        apply_lora_file(model, tmp_path / "half.safetensors")


def test_lora_argument_and_generation(tmp_path, capsys):
    assert parse_lora_arg("a.safetensors:0.5") == ("a.safetensors", 0.5)
    assert parse_lora_arg("a.safetensors") == ("a.safetensors", 1.0)
    assert parse_lora_arg("C:/x/a.safetensors") == ("C:/x/a.safetensors", 1.0)
    from humo.cli import main
    from humo.toy import toy_components, write_toy_weights

    weights = write_toy_weights(tmp_path / "w", components=toy_components(seed=0, num_layers=2, mask_head_blocks=1))
    lora = tmp_path / "l.safetensors"
    d, u = _pair(256, 256, 3)
    save_file({"blocks.1.self_attn.o.lora_A.weight": d, "blocks.1.self_attn.o.lora_B.weight": u}, str(lora))
    base = ["generate", "--weights", str(weights), "--prompt", "a man talks", "--frames", "5", "--steps", "1",
            "--height", "32", "--width", "32", "--device", "cpu", "-q"]  # fmt: skip
    assert main([*base, "--out", str(tmp_path / "a.mp4")]) == 0
    assert main([*base, "--out", str(tmp_path / "b.mp4"), "--lora", f"{lora}:0.5"]) == 0
    from humo.media.video import read_video

    assert not (read_video(tmp_path / "a.mp4")[0] == read_video(tmp_path / "b.mp4")[0]).all()  # the LoRA acts
    assert main([*base, "--out", str(tmp_path / "c.mp4"), "--lora", str(tmp_path / "missing.safetensors")]) == 2
    assert "--lora" in capsys.readouterr().err and not (tmp_path / "c.mp4").exists()


def test_full_deltas_reach_norms_and_bare_parameters(tmp_path):
    model = tiny_model("humo-1.7b", seed=0)
    norm, mod = model.blocks[0].norm3.weight.clone(), model.blocks[1].modulation.clone()
    deltas = {
        "diffusion_model.blocks.0.norm3.diff": torch.ones_like(norm),  # a LayerNorm's weight
        "transformer.blocks.1.scale_shift_table.diff": torch.ones_like(mod),  # diffusers' name of our modulation
    }
    save_file(deltas, str(tmp_path / "d.safetensors"))
    apply_lora_file(model, tmp_path / "d.safetensors", scale=0.5)
    assert torch.allclose(model.blocks[0].norm3.weight, norm + 0.5)
    assert torch.allclose(model.blocks[1].modulation, mod + 0.5)
