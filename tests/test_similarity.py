"""CLIP-I, DINO-I and text alignment (the `clip_i`, `dino_i`, `text_alignment` evaluators of `humo eval --real`)
through transformers, on tiny random models of the real classes built from configs and saved as a user's weights
folder would be (nothing downloaded). Random weights make "same image high, other image low" meaningless, so the
mechanics are tested: frames sampled, cosines computed against what the model gives directly, shapes, the same
image scoring 1, and bad folders refused by name, through the command too."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from humo.errors import HumoError
from humo.evaluation import similarity as sim


def _tokenizer_files(d):
    """A tiny CLIP BPE vocabulary: the letters (alone and word-final) and the special tokens; no merges."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list(".,!?'")
    vocab = {t: i for i, t in enumerate(letters + [c + "</w>" for c in letters])}
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    return len(vocab)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    d = tmp_path_factory.mktemp("clip")
    n_vocab = _tokenizer_files(d)
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=n_vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=24, bos_token_id=n_vocab - 2,
                         eos_token_id=n_vocab - 1, pad_token_id=n_vocab - 1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )  # fmt: skip
    CLIPModel(cfg).save_pretrained(str(d))
    tok = CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"), model_max_length=24)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tok).save_pretrained(str(d))
    return d


@pytest.fixture(scope="module", params=["dinov2", "vit"])
def dino_dir(request, tmp_path_factory):
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model, ViTConfig, ViTImageProcessor, ViTModel

    d = tmp_path_factory.mktemp(request.param)
    torch.manual_seed(0)
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
                  patch_size=8)  # fmt: skip
    if request.param == "dinov2":
        Dinov2Model(Dinov2Config(**common)).save_pretrained(str(d))
        BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(str(d))
    else:
        ViTModel(ViTConfig(**common), add_pooling_layer=False).save_pretrained(str(d))
        ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(str(d))
    return d


def _video(t=20, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (t, 40, 48, 3), dtype=np.uint8)


def test_frames_are_sampled_evenly(tmp_path):
    from humo.evaluation.real_video import RealInputs
    from tests.face_media import write_frames

    write_frames(tmp_path / "v.mp4", [np.full((32, 32, 3), 12 * i, np.uint8) for i in range(20)])
    inputs = RealInputs(tmp_path / "v.mp4")
    frames, idx = inputs.sample(sim.FRAMES)
    assert idx.tolist() == [0, 3, 5, 8, 11, 14, 16, 19]
    assert np.abs(frames[:, 16, 16, 0].astype(int) - 12 * idx).max() <= 3  # the frames at those indices
    every = inputs.frames()  # decoded once; sampling then reads from it
    assert len(every) == 20 and (inputs.sample(sim.FRAMES)[0] == every[idx]).all()
    write_frames(tmp_path / "short.mp4", [np.zeros((32, 32, 3), np.uint8)] * 5)
    assert RealInputs(tmp_path / "short.mp4").sample(sim.FRAMES)[1].tolist() == [0, 1, 2, 3, 4]


def test_clip_i_and_text_alignment_compute_cosines(clip_dir):
    model, processor = sim.load_clip(clip_dir)
    video, ref = _video(), _video(1, seed=5)[0]
    r = sim.clip_i(model, processor, video[[0, 6, 13, 19]], [ref, video[0]])
    assert r["frames"] == 4 and len(r["per_reference"]) == 2 and -1 <= r["mean"] <= 1
    # by hand: the model's own image features, normalised, frames 0, 6, 13, 19
    px = processor(images=[video[i] for i in (0, 6, 13, 19)] + [ref], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        e = sim._features(model.get_image_features(pixel_values=px))
    e = torch.nn.functional.normalize(e, dim=-1)
    assert abs(float((e[:4] @ e[4]).mean()) - r["per_reference"][0]) < 1e-3
    assert sim.clip_i(model, processor, video[:1], [video[0]])["mean"] > 0.999  # the same image: cosine 1
    t = sim.text_alignment(model, processor, video[:3], "a woman talks in an office.")
    assert len(t["per_frame"]) == 3 and abs(np.mean(t["per_frame"]) - t["mean"]) < 1e-3
    long = sim.text_alignment(model, processor, video[:2], "word " * 200)  # cut to the text length, no error
    assert len(long["per_frame"]) == 2
    with pytest.raises(HumoError, match="prompt"):
        sim.text_alignment(model, processor, video, " ")
    with pytest.raises(HumoError, match="no reference"):
        sim.clip_i(model, processor, video, [])


def test_dino_i_uses_the_cls_token(dino_dir):
    model, processor = sim.load_dino(dino_dir)
    video = _video()
    r = sim.dino_i(model, processor, video[:8], [video[0]])
    assert r["frames"] == 8 and r["per_reference"][0] == r["mean"]
    assert sim.dino_i(model, processor, video[:1], [video[0]])["mean"] > 0.999
    px = processor(images=[video[0], video[19]], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        cls = torch.nn.functional.normalize(model(pixel_values=px).last_hidden_state[:, 0], dim=-1)
    assert abs(float(cls[0] @ cls[1]) - sim.dino_i(model, processor, video[19:], [video[0]])["mean"]) < 1e-3


def test_bad_folders_are_refused_by_name(tmp_path, clip_dir, dino_dir):
    with pytest.raises(HumoError, match=f"CLIP weights {tmp_path / 'none'}: not a transformers model folder"):
        sim.load_clip(tmp_path / "none")
    with pytest.raises(HumoError, match="not one of clip"):
        sim.load_clip(dino_dir)
    with pytest.raises(HumoError, match="DINO weights .*a 'clip' model"):
        sim.load_dino(clip_dir)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((clip_dir / "config.json").read_text())  # no weights, no processor
    with pytest.raises(HumoError, match=f"CLIP weights {broken}: do not load"):
        sim.load_clip(broken)


def test_eval_real_similarity_on_files(tmp_path, clip_dir, dino_dir, capsys):
    """`humo eval --real VIDEO --reference IMG --prompt TEXT --clip DIR --dino DIR`: the three evaluators through the
    command (`--only` leaves out identity, which needs dlib); folders checked before any video is read."""
    from PIL import Image

    from humo.cli import main
    from humo.evaluation import real_video
    from tests.face_media import face_photo, write_frames

    img = face_photo()
    write_frames(tmp_path / "v.mp4", [img] * 10)
    Image.fromarray(img).save(tmp_path / "ref.png")
    names = ["clip_i", "dino_i", "text_alignment"]
    r = real_video.evaluate(tmp_path / "v.mp4", [tmp_path / "ref.png"], None, "a woman", names, clip=clip_dir,
                            dino=dino_dir)  # fmt: skip
    assert list(r["metrics"]) == names and r["skipped"] == {}
    assert r["metrics"]["clip_i"]["frames"] == sim.FRAMES and len(r["metrics"]["text_alignment"]["per_frame"]) == 8
    # the photo against itself (H.264 round trip)
    assert r["metrics"]["clip_i"]["mean"] > 0.99 and r["metrics"]["dino_i"]["mean"] > 0.99
    video, ref = str(tmp_path / "v.mp4"), str(tmp_path / "ref.png")
    base = ["eval", "--real", video, "--reference", ref, "--only", ",".join(names)]
    assert main([*base, "--clip", str(clip_dir), "--json", str(tmp_path / "r.json")]) == 0
    [row] = json.loads((tmp_path / "r.json").read_text())
    assert list(row["metrics"]) == ["clip_i"] and set(row["skipped"]) == {"dino_i", "text_alignment"}
    assert "clip_i         mean" in capsys.readouterr().out
    for flag, folder, msg in (("--clip", tmp_path / "none", "not a folder"), ("--dino", tmp_path, "no config.json"),
                              ("--dino", clip_dir, "a 'clip' model")):  # fmt: skip
        assert main([*base, flag, str(folder)]) == 2
        captured = capsys.readouterr()
        assert msg in captured.err and captured.out == "", captured
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    assert main(["eval", "--real", video, str(tmp_path / "junk.mp4"), "--clip", str(clip_dir)]) == 2
    captured = capsys.readouterr()
    assert "junk.mp4: cannot read it" in captured.err and captured.out == "", captured
    assert main(["eval", str(tmp_path / "v.mp4"), "--clip", str(clip_dir)]) == 2
    assert "--clip: real-video options; add --real" in capsys.readouterr().err


def test_weights_load_as_safetensors_or_as_pickles_with_weights_only(tmp_path, dino_dir):
    """A folder with safetensors loads them (use_safetensors=True); a pickle-only one is read with weights_only
    (no arbitrary code), asked for explicitly rather than left to transformers' default."""
    seen = []

    class Fake:
        @classmethod
        def from_pretrained(cls, path, **kwargs):
            seen.append(kwargs)
            return cls()

        def eval(self):
            return self

    assert any(dino_dir.glob("*.safetensors"))
    sim._load(dino_dir, "DINO", Fake, Fake)
    assert seen[0] == {"local_files_only": True, "use_safetensors": True}
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((dino_dir / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"")
    seen.clear()
    sim._load(pickled, "DINO", Fake, Fake)
    assert seen[0] == {"local_files_only": True, "use_safetensors": False, "weights_only": True}
    # the real classes accept those arguments: the safetensors folder loads
    model, _ = sim.load_dino(dino_dir)
    assert not model.training
