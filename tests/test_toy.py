"""The toy weights folder: assembled from trained parts, loadable by the pipeline, replaced whole."""

from __future__ import annotations

import torch

from humo.checkpoint import load_dit, save_dit
from humo.pipeline import HumoPipeline
from humo.toy import assemble_weights, toy_components


def test_assemble_uses_the_given_dit_in_bf16_and_replaces_the_folder(tmp_path):
    dit = toy_components(seed=3)[0]
    with torch.no_grad():
        for p in dit.parameters():
            p.add_(0.01)  # not the seed-0 toy DiT the folder would otherwise get
    save_dit(dit, tmp_path / "trained.safetensors")
    out = tmp_path / "model"
    (out / "stale").mkdir(parents=True)
    assemble_weights(out, dit=tmp_path / "trained.safetensors", dit_dtype="bf16")
    assert not (out / "stale").exists()
    assert sorted(p.name for p in out.iterdir()) == ["dit.safetensors", "text", "vae", "whisper"]
    stored = load_dit(out / "dit.safetensors")
    for (k, a), b in zip(dit.state_dict().items(), stored.state_dict().values(), strict=True):
        assert b.dtype == torch.bfloat16 and torch.equal(a.to(torch.bfloat16), b), k
    pipe = HumoPipeline.from_pretrained(out, "toy", device="cpu", offload=False, progress=False)
    assert next(pipe.dit.parameters()).dtype == torch.float32  # the toy layout computes in fp32
    assert not list(tmp_path.glob(".model.*"))  # no temporary folder left behind


def test_every_caption_of_the_world_tokenizes_without_unk_and_fits_the_toy_context():
    """The toy tokenizer must know every word the caption grammar writes (a caption word mapped to <unk> is
    conditioning the DiT can never follow), and the longest caption (three people) must fit in text_len."""
    import numpy as np

    from humo.conditions.text import build_word_tokenizer
    from humo.configs import dit_preset
    from humo.proving_ground import world
    from humo.toy import toy_vocabulary

    text_len = dit_preset("toy").text_len
    tok = build_word_tokenizer(toy_vocabulary(), text_len)
    rng = np.random.default_rng(0)
    captions = []
    for _ in range(400):
        scene = str(rng.choice(list(world.SCENES)))
        captions.append(
            world.make_caption(rng, scene, str(rng.choice(world.ACTIONS)), str(rng.choice(list(world.OBJECTS))))
        )
        people = [(str(rng.choice(world.MULTI_ACTIONS)), str(rng.choice(list(world.OBJECTS)))) for _ in range(3)]
        captions.append(world.make_multi_caption(rng, scene, people))
    ids = tok(captions, add_special_tokens=True)["input_ids"]
    unk = [c for c, i in zip(captions, ids) if tok.unk_token_id in i]
    assert not unk, f"{len(unk)} captions have unknown words, e.g. {unk[0]!r}"
    assert max(len(i) for i in ids) <= text_len


def test_the_toy_tokenizer_still_maps_foreign_words_to_unk():
    from humo.conditions.text import build_word_tokenizer
    from humo.toy import toy_vocabulary

    tok = build_word_tokenizer(toy_vocabulary(), 64)
    ids = tok(["a zebra in the snow"])["input_ids"][0]
    assert ids.count(tok.unk_token_id) == 1


def test_the_bundled_model_reads_every_word_of_the_bundled_example_and_of_the_world():
    """`make demo`'s model: its text encoder knows the caption grammar and its context fits the DiT's."""
    import numpy as np

    from humo.checkpoint import load_dit
    from humo.commands.demo import assets
    from humo.conditions.text import TextEncoder
    from humo.proving_ground import world

    text = TextEncoder.from_pretrained(assets() / "toy" / "text")
    dit = load_dit(assets() / "toy" / "dit.safetensors", None)
    assert text.text_len == dit.cfg.text_len
    rng = np.random.default_rng(1)
    captions = [(assets() / "example" / "prompt.txt").read_text().strip()]
    captions += [world.make_caption(rng, s, a, "ball") for s in world.SCENES for a in world.ACTIONS]
    ids, mask = text.tokenize(captions)
    assert not (ids == text.tokenizer.unk_token_id).any()
    assert (mask[:, -1] == 0).all(), "a caption filled the whole context (truncated)"


def test_assemble_ships_the_given_encoders_and_rejects_a_mismatched_text_encoder(tmp_path):
    import pytest

    from humo.conditions.text import TextEncoder
    from humo.errors import HumoError
    from humo.toy import toy_vocabulary, write_toy_weights

    dit, vae, _, audio = toy_components(seed=0)
    cfg = dit.cfg
    other_text = TextEncoder.toy(toy_vocabulary(), text_len=cfg.text_len, dim=cfg.text_dim, seed=5)
    write_toy_weights(tmp_path / "enc", components=(dit, vae, other_text, audio))
    assemble_weights(tmp_path / "model", encoders=tmp_path / "enc")
    shipped = TextEncoder.from_pretrained(tmp_path / "model" / "text")
    for (k, a), b in zip(other_text.model.state_dict().items(), shipped.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    short = TextEncoder.toy(toy_vocabulary(), text_len=cfg.text_len // 2, dim=cfg.text_dim, seed=0)
    write_toy_weights(tmp_path / "short", components=(dit, vae, short, audio))
    with pytest.raises(HumoError, match="text_len"):
        assemble_weights(tmp_path / "bad", encoders=tmp_path / "short")
    assert not (tmp_path / "bad").exists()
