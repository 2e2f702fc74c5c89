"""The umT5 text encoder wrapper: official key mapping, strict loading, Wan's zeroing, the toy encoder."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import save_file

from humo.conditions.text import (
    WAN_NEGATIVE_PROMPT,
    TextEncoder,
    build_word_tokenizer,
    clean_prompt,
)
from humo.errors import HumoError

WORDS = ["a", "person", "talks", "to", "the", "camera", "while", "smiling", "red", "shirt", "Hello,"]
TINY = {
    "vocab_size": 0,  # set from the tokenizer
    "d_model": 16,
    "d_kv": 4,
    "d_ff": 24,
    "num_heads": 4,
    "num_layers": 2,
    "relative_attention_num_buckets": 8,
    "relative_attention_max_distance": 16,
}
TEXT_LEN = 12


def _bucket(rel: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Bidirectional T5 relative-position bucket, written from the T5 definition."""
    half = num_buckets // 2
    out = torch.where(rel > 0, half, 0)
    n = rel.abs()
    exact = half // 2
    large = exact + (torch.log(n.float().clamp(min=1) / exact) / math.log(max_distance / exact) * (half - exact)).long()
    large = large.clamp(max=half - 1)
    return out + torch.where(n < exact, n, large)


def _official_forward(sd, ids, mask, heads, buckets, max_distance, eps=1e-6):
    """The Wan2.1 T5 encoder equations applied to an OFFICIAL-layout state dict (an independent reference)."""

    def rms(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    def gelu_tanh(x):
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))

    x = sd["token_embedding.weight"][ids]
    b, n, _ = x.shape
    layers = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    pos = torch.arange(n)
    rel = pos[None, :] - pos[:, None]  # key - query
    for i in range(layers):
        p = f"blocks.{i}."
        h = rms(x, sd[p + "norm1.weight"])
        q, k, v = (
            (h @ sd[p + f"attn.{name}.weight"].T).view(b, n, heads, -1).transpose(1, 2) for name in ("q", "k", "v")
        )
        bias = sd[p + "pos_embedding.embedding.weight"][_bucket(rel, buckets, max_distance)].permute(2, 0, 1)
        scores = q @ k.transpose(-1, -2) + bias  # T5: no 1/sqrt(d) scaling
        scores = scores.masked_fill(mask[:, None, None, :] == 0, torch.finfo(x.dtype).min)
        attn = scores.softmax(-1) @ v
        x = x + attn.transpose(1, 2).reshape(b, n, -1) @ sd[p + "attn.o.weight"].T
        h = rms(x, sd[p + "norm2.weight"])
        gate = gelu_tanh(h @ sd[p + "ffn.gate.0.weight"].T)
        x = x + ((h @ sd[p + "ffn.fc1.weight"].T) * gate) @ sd[p + "ffn.fc2.weight"].T
    return rms(x, sd["norm.weight"])


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer")
    build_word_tokenizer(WORDS, TEXT_LEN).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_model(tok_dir):
    from transformers import UMT5Config, UMT5EncoderModel

    from humo.conditions.text import load_tokenizer

    cfg = dict(TINY, vocab_size=len(load_tokenizer(tok_dir)))
    torch.manual_seed(0)
    model = UMT5EncoderModel(UMT5Config(**cfg)).eval()
    with torch.no_grad():  # non-trivial norm gains: a swapped norm would show
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.copy_(0.5 + torch.rand(p.shape))
    return model, cfg


@pytest.fixture(scope="module")
def official_pth(tiny_model, tmp_path_factory):
    model, cfg = tiny_model
    enc = TextEncoder(model, None, TEXT_LEN)
    sd = {k: v.clone() for k, v in enc.official_state_dict().items()}
    path = tmp_path_factory.mktemp("t5") / "umt5-enc.pth"
    torch.save(sd, path)
    return path, sd


def test_official_layout_loads_strictly_and_matches(tiny_model, official_pth, tok_dir):
    model, cfg = tiny_model
    path, sd = official_pth
    assert set(sd) >= {"token_embedding.weight", "norm.weight", "blocks.1.ffn.gate.0.weight",
                       "blocks.0.pos_embedding.embedding.weight", "blocks.1.attn.o.weight"}  # fmt: skip
    enc = TextEncoder.from_official(path, tok_dir, dtype=torch.float32, config=cfg, text_len=TEXT_LEN)
    for k, v in model.state_dict().items():
        assert torch.equal(enc.model.state_dict()[k], v), k
    assert enc.model.encoder.embed_tokens.weight is enc.model.shared.weight

    prompts = ["a person talks to the camera", "Red shirt,   smiling!"]
    ids, mask = enc.tokenize(prompts)
    out = enc.encode(prompts)
    with torch.no_grad():
        ref_hf = model(input_ids=ids, attention_mask=mask).last_hidden_state
        ref_official = _official_forward(
            sd, ids, mask, cfg["num_heads"], cfg["relative_attention_num_buckets"],
            cfg["relative_attention_max_distance"],
        )  # fmt: skip
    valid = mask.bool()
    assert out.shape == (2, TEXT_LEN, cfg["d_model"])
    assert torch.allclose(out[valid], ref_hf[valid], atol=1e-5)
    # The mapping means the same computation as the official module, not just a self-consistent renaming.
    assert torch.allclose(out[valid], ref_official[valid], atol=1e-4)


def test_embeddings_beyond_the_prompt_are_zero(official_pth, tiny_model, tok_dir):
    path, _ = official_pth
    enc = TextEncoder.from_official(path, tok_dir, dtype=torch.float32, config=tiny_model[1], text_len=TEXT_LEN)
    long_prompt = " ".join(["a"] * 40)
    out, lengths = enc.encode(["a person", "hello, red shirt", long_prompt, ""], return_lengths=True)
    assert lengths.tolist() == [3, 5, TEXT_LEN, 1]  # words + eos ("," is a token), truncated, eos only
    for row, n in zip(out, lengths.tolist()):
        assert row[n:].abs().sum() == 0
        assert (row[:n].abs().sum(-1) > 0).all()
    ids, _ = enc.tokenize([long_prompt])
    assert ids[0, -1].item() == 1  # eos survives truncation


def test_key_mismatches_are_named(official_pth, tiny_model, tok_dir, tmp_path):
    _, sd = official_pth
    cfg = tiny_model[1]
    cases = {
        "missing": (
            {k: v for k, v in sd.items() if k != "blocks.1.ffn.fc1.weight"},
            r"missing keys: blocks\.1\.ffn\.fc1",
        ),
        "extra": (dict(sd, **{"blocks.2.norm1.weight": torch.ones(16)}), r"unexpected keys: blocks\.2\.norm1\.weight"),
        "shape": (dict(sd, **{"norm.weight": torch.ones(17)}), r"wrong shapes: norm\.weight \(17,\) vs \(16,\)"),
    }
    for name, (state, pattern) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        with pytest.raises(HumoError, match=pattern):
            TextEncoder.from_official(path, tok_dir, dtype=torch.float32, config=cfg)


def test_incomplete_folders_are_named(official_pth, tiny_model, tok_dir, tmp_path):
    path, _ = official_pth
    empty = tmp_path / "tok"
    empty.mkdir()
    with pytest.raises(HumoError, match=r"tokenizer folder .*tok: incomplete, no tokenizer\.json or spiece\.model"):
        TextEncoder.from_official(path, empty, config=tiny_model[1])
    with pytest.raises(HumoError, match="not a directory"):
        TextEncoder.from_official(path, tmp_path / "nowhere", config=tiny_model[1])

    enc = TextEncoder.toy(WORDS, text_len=8, dim=16, num_heads=2)
    enc.save_pretrained(tmp_path / "enc")
    (tmp_path / "enc" / "model.safetensors").unlink()
    with pytest.raises(HumoError, match=r"enc: incomplete, no model\.safetensors"):
        TextEncoder.from_pretrained(tmp_path / "enc")
    (tmp_path / "enc" / "config.json").unlink()
    with pytest.raises(HumoError, match=r"enc: incomplete, config\.json is missing"):
        TextEncoder.from_pretrained(tmp_path / "enc")

    enc.save_pretrained(tmp_path / "sharded")
    (tmp_path / "sharded" / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"shared.weight": "model-00001-of-00002.safetensors"}})
    )
    (tmp_path / "sharded" / "model.safetensors").unlink()
    with pytest.raises(HumoError, match="missing shards model-00001-of-00002.safetensors"):
        TextEncoder.from_pretrained(tmp_path / "sharded")


def test_toy_round_trip_and_determinism(tmp_path):
    enc = TextEncoder.toy(WORDS, text_len=16, dim=32, seed=3, num_heads=4)
    same = TextEncoder.toy(WORDS, text_len=16, dim=32, seed=3, num_heads=4)
    other = TextEncoder.toy(WORDS, text_len=16, dim=32, seed=4, num_heads=4)
    prompts = ["A person talks to the camera.", "Smiling, red shirt"]
    out = enc.encode(prompts)
    assert out.shape == (2, 16, 32) and enc.dim == 32 and enc.text_len == 16
    assert torch.equal(out, same.encode(prompts))
    assert not torch.allclose(out, other.encode(prompts))
    assert len(enc.model.encoder.block) == 2

    enc.save_pretrained(tmp_path / "toy")
    loaded = TextEncoder.from_pretrained(tmp_path / "toy")
    assert loaded.text_len == 16
    assert torch.equal(loaded.encode(prompts), out)
    assert torch.equal(loaded.tokenize(prompts)[0], enc.tokenize(prompts)[0])


def test_word_tokenizer():
    tok = build_word_tokenizer(["Hello, World", "camera"], text_len=8)
    ids = tok(["hello world camera", "HELLO, unknownword"], add_special_tokens=True)["input_ids"]
    vocab = tok.get_vocab()
    assert (vocab["<pad>"], vocab["</s>"], vocab["<unk>"]) == (0, 1, 2)
    assert ids[0] == [vocab["hello"], vocab["world"], vocab["camera"], 1]
    assert ids[1] == [vocab["hello"], vocab[","], 2, 1]


def test_clean_prompt_and_negative_prompt():
    assert clean_prompt("  a &amp;amp; b \n\t c  ") == "a & b c"
    assert WAN_NEGATIVE_PROMPT.startswith("色调艳丽，过曝，静态") and WAN_NEGATIVE_PROMPT.endswith("倒着走")
    assert " " not in WAN_NEGATIVE_PROMPT and WAN_NEGATIVE_PROMPT.count("，") == 27
    enc = TextEncoder.toy(WORDS, text_len=8, dim=16, num_heads=2)
    out, n = enc.encode([WAN_NEGATIVE_PROMPT], return_lengths=True)
    assert out.shape == (1, 8, 16) and n.item() == 8
    with pytest.raises(HumoError, match="prompts"):
        enc.encode([])
