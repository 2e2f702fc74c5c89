"""HumoPipeline on tiny random components: every mode, determinism, batched guidance, batches, bad input."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from humo.configs import dit_preset
from humo.dit import HumoDiT
from humo.errors import HumoError
from humo.pipeline import LAYOUTS, GenerationRequest, HumoPipeline
from humo.toy import toy_components, write_toy_weights
from tests.helpers import randomize

SMALL = dict(height=32, width=32, frames=9, steps=3)


def make_pipe(components, layout="toy"):
    dit, vae, text, audio = components
    return HumoPipeline(LAYOUTS[layout], dit, vae, text, audio, progress=False, log=lambda m: None)


@pytest.mark.parametrize("mode", ["tia", "ta", "ti", "t"])
def test_every_mode_runs(components, media, mode):
    pipe = make_pipe(components)
    images = [str(media / "r.png")] if "i" in mode else []
    audio = str(media / "a.wav") if "a" in mode else None
    r = pipe("a woman talks", images, audio, **SMALL)
    expected = 9 if audio is None else min(9, int(0.5 * 25))
    assert r.frames.shape == (expected, 32, 32, 3) and r.frames.dtype == np.uint8
    assert r.mask is not None and r.mask.shape == (3, 8, 8)  # the latent grid: 32 px / the toy VAE's stride 4


def test_same_seed_bit_identical_other_seed_differs(components, media):
    pipe = make_pipe(components)
    a = pipe("a man talks", [str(media / "r.png")], str(media / "a.wav"), seed=3, **SMALL)
    b = pipe("a man talks", [str(media / "r.png")], str(media / "a.wav"), seed=3, **SMALL)
    c = pipe("a man talks", [str(media / "r.png")], str(media / "a.wav"), seed=4, **SMALL)
    assert np.array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, c.frames)


def test_inputs_change_the_result(components, media):
    pipe = make_pipe(components)
    base = pipe("a man talks", [str(media / "r.png")], str(media / "a.wav"), **SMALL).frames
    other_ref = pipe("a man talks", [str(media / "r2.png")], str(media / "a.wav"), **SMALL).frames
    other_text = pipe("a woman waves", [str(media / "r.png")], str(media / "a.wav"), **SMALL).frames
    assert not np.array_equal(base, other_ref) and not np.array_equal(base, other_text)


def test_batched_equals_sequential_and_split(components, media):
    pipe = make_pipe(components)
    req = GenerationRequest("a man talks", [str(media / "r.png")], str(media / "a.wav"), **SMALL)
    cond = pipe.encode_conditions(req.resolved(pipe.layout))
    batched, m_batched, _ = pipe.sample(req, cond)
    sequential, m_sequential, _ = pipe.sample(dataclasses.replace(req, sequential_guidance=True), cond)
    split, m_split, _ = pipe.sample(dataclasses.replace(req, max_batch=2), cond)
    assert torch.allclose(batched, sequential, atol=1e-5)
    assert torch.allclose(batched, split, atol=1e-5)
    # The predicted face mask is the fullest condition's, however the guidance batches its passes.
    assert np.allclose(m_batched, m_sequential, atol=1e-5) and np.allclose(m_batched, m_split, atol=1e-5)


def test_predicted_mask_is_the_fullest_conditions():
    """The guidance orders conditions null-first and may split them over calls; the mask a step hands the next
    must be the text+image+audio pass's, and a step without mask outputs keeps the previous one."""
    from humo.guidance import Condition
    from humo.pipeline import PassAux, SamplingState

    conds = [
        Condition.of(),
        Condition.of("text"),
        Condition.of("text", "audio"),
        Condition.of("text", "image", "audio"),
    ]
    logits = {c: PassAux(torch.full((2, 1, 1, 1), float(j))) for j, c in enumerate(conds)}  # logit j for cond. j
    x = torch.zeros(2, 1)
    for order in (conds, conds[::-1], [conds[2], conds[3], conds[0], conds[1]]):
        state = SamplingState(x).next(x, {c: logits[c] for c in order})
        assert torch.allclose(state.mask, torch.sigmoid(torch.tensor(3.0)).expand(2, 1, 1, 1))
    # The next step predicts from fewer conditions (the release's phase switch): its fullest replaces the mask.
    state = state.next(x, {c: logits[c] for c in conds[:2]})
    assert torch.allclose(state.mask, torch.sigmoid(torch.tensor(1.0)).expand(2, 1, 1, 1))
    assert torch.equal(state.next(x, {}).mask, state.mask)  # no pass: nothing replaces it
    assert torch.equal(state.next(x, {conds[3]: PassAux()}).mask, state.mask)  # a pass without a mask head


def test_17b_concat_path(media):
    cfg = dit_preset(
        "humo-17b",
        dim=64,
        ffn_dim=128,
        num_heads=4,
        num_layers=2,
        text_dim=128,
        text_len=32,
        freq_dim=32,
        audio_feat_dim=64,
        audio_hidden=32,
        audio_tokens=4,
        audio_token_dim=32,
    )
    _, vae, text, audio = toy_components(seed=0, num_layers=2, mask_head_blocks=0)
    dit = randomize(HumoDiT(cfg), seed=2, scale=0.05).eval()
    pipe = HumoPipeline(LAYOUTS["humo-17b"], dit, vae, text, audio, progress=False, log=lambda m: None)
    calls = []
    inner = pipe.model_fn

    def spy(cond, cache=None, *rest, **kw):
        fn = inner(cond, cache, *rest, **kw)

        def wrapped(x, t, conditions):
            calls.append((float(t[0]), tuple(c.name for c in conditions)))
            return fn(x, t, conditions)

        return wrapped

    pipe.model_fn = spy
    r = pipe("a man talks", [str(media / "r.png")], str(media / "a.wav"), height=32, width=32, frames=9, steps=8)
    assert r.frames.shape[1:] == (32, 32, 3)
    # The release's switch: image-kept negative above t = 980, the null negative below; one batched call a step.
    assert all(len(names) == 3 for _, names in calls) and len(calls) == 8
    assert [("i" in names) for t, names in calls] == [t > 980 for t, _ in calls]
    assert any(t > 980 for t, _ in calls) and any(t <= 980 for t, _ in calls)


def test_latent_grid_follows_the_vae_stride_and_must_fit_the_patch(components, media):
    from humo.conditions.vae import TOY_VAE_CONFIG, WanVAE

    dit, vae, text, audio = components
    assert make_pipe(components).vae_stride() == vae.spatial_stride == 4
    # An 8x VAE gives an 8 x 8 latent grid at 64 px; a DiT with 2x2 patches then has the same 4 x 4 tokens.
    vae8 = WanVAE.from_config(dict(TOY_VAE_CONFIG, dim_mult=[1, 2, 4, 4], temperal_downsample=[False, True, True]))
    dit2 = randomize(HumoDiT(dit_preset("toy", patch=(1, 2, 2), num_layers=1, mask_head_blocks=1)), 1, 0.05)
    pipe = HumoPipeline(LAYOUTS["toy"], dit2.eval(), vae8, text, audio, progress=False, log=lambda m: None)
    r = pipe("a man talks", [str(media / "r.png")], str(media / "a.wav"), height=64, width=64, frames=5, steps=2)
    assert r.frames.shape == (5, 64, 64, 3) and r.mask.shape == (2, 8, 8)
    # The toy DiT (4x4 patches) behind the 8x VAE: 48 px is 6 latent pixels, not a whole number of patches.
    pipe = HumoPipeline(LAYOUTS["toy"], dit, vae8, text, audio, progress=False, log=lambda m: None)
    with pytest.raises(HumoError, match="--height 48: must be a multiple of 32"):
        pipe("a man talks", height=48, width=64, frames=5, steps=1)


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(frames=10), "4k\\+1"),
        (dict(height=40), "multiple of 16"),
        (dict(steps=0), "at least 1"),
        (dict(frames=-1), "from the audio \\(or the pose\\), but neither was given"),
        (dict(guidance_params={"scale_t": -1.0}), "scale"),
        (dict(prompt=" "), "empty prompt"),
        (dict(images=["missing.png"]), "file not found"),
    ],
)
def test_bad_requests_rejected_before_loading(kw, msg):
    args = dict(prompt="a man talks", height=32, width=32, frames=9)
    args.update(kw)
    with pytest.raises(HumoError, match=msg):
        GenerationRequest(**args).resolved(LAYOUTS["toy"])


def test_layout_guidance_params_apply_only_with_the_layouts_own_preset():
    base = dict(prompt="a man talks", height=32, width=32, frames=9)
    toy = dict(LAYOUTS["toy"].guidance_params)
    assert toy and LAYOUTS["humo-1.7b"].guidance_params == ()
    r = GenerationRequest(**base).resolved(LAYOUTS["toy"])
    assert r.guidance == LAYOUTS["toy"].guidance and r.guidance_params == toy
    r = GenerationRequest(**base, guidance_params={"scale_t": 3.0}).resolved(LAYOUTS["toy"])
    assert r.guidance_params == {**toy, "scale_t": 3.0}  # one scale set, the layout's others kept
    r = GenerationRequest(**base, guidance="release-1.7b").resolved(LAYOUTS["toy"])
    assert r.guidance_params == {}  # a named preset comes with its own defaults
    r = GenerationRequest(**base).resolved(LAYOUTS["humo-1.7b"])
    assert r.guidance_params == {}


def test_weights_folder_missing_component(tmp_path):
    (tmp_path / "HuMo" / "HuMo-1.7B").mkdir(parents=True)
    (tmp_path / "HuMo" / "HuMo-1.7B" / "ema.pth").write_bytes(b"x")
    with pytest.raises(HumoError, match="the VAE is missing"):
        HumoPipeline.check_weights(tmp_path, "humo-1.7b")


@pytest.fixture(scope="module")
def toy_weights(tmp_path_factory, components):
    return write_toy_weights(tmp_path_factory.mktemp("weights"), components=components)


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "humo", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def test_cli_writes_playable_mp4_and_batch_equals_single(toy_weights, media, tmp_path):
    from humo.media.video import read_metadata, read_video

    cases = {
        "first": {"img_paths": [str(media / "r.png")], "audio_path": str(media / "a.wav"), "prompt": "a man talks"},
        "second": {"img_paths": [str(media / "r2.png")], "audio_path": str(media / "a.wav"), "prompt": "a woman"},
    }
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    common = ["--weights", toy_weights, "--preset", "toy", "--height", 32, "--width", 32, "--steps", 2]
    single = run_cli(
        "generate",
        "--prompt",
        "a woman",
        "--image",
        media / "r2.png",
        "--audio",
        media / "a.wav",
        "--frames",
        -1,
        "--out",
        tmp_path / "single.mp4",
        *common,
    )
    assert single.returncode == 0, single.stderr
    assert "encode" in single.stderr and "decode" in single.stderr
    batch = run_cli(
        "generate", "--cases", tmp_path / "cases.json", "--out-dir", tmp_path / "batch", "--frames", -1, *common
    )
    assert batch.returncode == 0, batch.stderr
    frames, fps, audio, sr = read_video(tmp_path / "single.mp4")
    assert fps == 25 and frames.shape[1:] == (32, 32, 3) and audio is not None
    assert abs(len(audio) / sr - len(frames) / fps) < 0.05
    assert "AI-generated" in read_metadata(tmp_path / "single.mp4")["comment"]
    second, _, _, _ = read_video(tmp_path / "batch" / "second.mp4")
    assert np.array_equal(second, frames)  # the second case of a batch equals the same case run alone


@pytest.mark.parametrize(
    "extra, msg",
    [
        (["--frames", "10"], "--frames 10: must be 4k\\+1"),
        (["--height", "40"], "--height 40: must be a positive multiple of 16"),
        (["--scale-t", "-1"], "--scale-t -1.0: must not be negative"),
        (["--steps", "0"], "--steps 0: must be at least 1"),
    ],
)
def test_cli_bad_input_one_line_no_output(toy_weights, tmp_path, extra, msg):
    out = tmp_path / "x.mp4"
    r = run_cli("generate", "--prompt", "a man", "--out", out, "--weights", toy_weights, "--preset", "toy", *extra)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("humo: error:") and "Traceback" not in r.stderr
    assert msg.replace("\\", "") in lines[0] or __import__("re").search(msg, lines[0])
    assert not out.exists() and not list(tmp_path.glob(".x.mp4*"))


def test_cli_missing_component(tmp_path):
    (tmp_path / "dit.safetensors").write_bytes(b"x")
    r = run_cli("generate", "--prompt", "a", "--out", tmp_path / "o.mp4", "--weights", tmp_path, "--preset", "toy")
    assert r.returncode == 2 and "the VAE is missing" in r.stderr


def test_video_metadata_records_how_the_dit_computed(tmp_path, media):
    from humo.media.video import read_metadata
    from humo.sequence_parallel import SequenceParallel

    folder = write_toy_weights(tmp_path / "toy")
    pipe = HumoPipeline.from_pretrained(
        folder, "toy", device="cpu", fp8=True, fp8_matmul="scaled", resident_blocks=1, log=lambda m: None,
        progress=False,
    )  # fmt: skip
    out = tmp_path / "v.mp4"
    pipe("a man talks", [str(media / "r.png")], str(media / "a.wav"), out=out, cache=0.05, seed=7, **SMALL)
    desc = read_metadata(out)["description"]
    for entry in ("model=toy", "seed=7", "steps=3", "dit_dtype=float32", "fp8=True", "fp8_matmul=scaled",
                  "step_cache=0.05", "block_swap=1 resident blocks"):  # fmt: skip
        assert entry in desc, (entry, desc)
    assert "sequence_parallel" not in desc  # one process: nothing to record
    pipe.sequence_parallel = SequenceParallel(0, 2)
    assert pipe.provenance(GenerationRequest("a man"))["sequence_parallel"] == 2
