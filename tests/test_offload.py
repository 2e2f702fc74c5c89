"""Block swap (humo.offload) on the CPU: the same output, the streaming schedule (at most the running block and the
next one loaded), the weights back in host memory after each pass; --offload parsing; the job size it implies."""

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from humo.errors import HumoError
from humo.offload import BlockSwap, parse_offload
from humo.toy import toy_components, write_toy_weights
from tests.helpers import randomize


def test_block_swap_same_output_and_schedule():
    dit = toy_components(seed=0, num_layers=4, mask_head_blocks=2)[0]
    randomize(dit, seed=1, scale=0.05)
    cfg = dit.cfg
    g = torch.Generator().manual_seed(0)
    inputs = dict(
        x=torch.randn(2, cfg.out_dim, 3, 8, 8, generator=g),
        t=torch.tensor([600.0, 300.0]),
        context=torch.randn(2, 5, cfg.text_dim, generator=g),
        audio=torch.randn(2, 3, cfg.audio_window, cfg.audio_groups, cfg.audio_feat_dim, generator=g),
    )
    with torch.no_grad():
        want, want_mask = dit(**inputs, return_mask=True)
    swap = BlockSwap(dit, "cpu", resident=1)
    assert swap.streamed == [1, 2, 3]
    seen = []
    probe = [dit.blocks[i].register_forward_pre_hook(lambda m, a: seen.append(sorted(swap.loaded))) for i in range(4)]
    with torch.no_grad():
        got, mask = dit(**inputs, return_mask=True)
    assert torch.equal(got, want) and torch.equal(mask, want_mask)
    # While block i runs, i and the next streamed block are loaded (the prefetch), never more.
    assert seen == [[], [1, 2], [2, 3], [3]] and swap.peak_loaded == 2
    assert not swap.loaded
    for i in swap.streamed:  # back in host memory: the device copies are dropped
        assert all(p.data_ptr() == h.data_ptr() for p, h in zip(dit.blocks[i].parameters(), swap.host[i]))
    for h in probe:
        h.remove()
    swap.remove()
    with pytest.raises(ValueError, match="resident blocks 5"):
        BlockSwap(dit, "cpu", resident=5)


def test_parse_offload():
    assert parse_offload(None) is None and parse_offload("blocks:0") == 0 and parse_offload("blocks:12") == 12
    for bad in ("blocks", "blocks:-1", "layers:3", "blocks:x", "3"):
        with pytest.raises(HumoError, match="--offload"):
            parse_offload(bad)


def test_pipeline_with_block_swap_makes_the_same_video(tmp_path):
    from humo.pipeline import HumoPipeline

    t = np.arange(int(16000 * 0.5)) / 16000
    sf.write(tmp_path / "a.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype("float32"), 16000)
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype("uint8")).save(tmp_path / "r.png")
    folder = write_toy_weights(tmp_path / "toy")
    args = ("a woman talks", [str(tmp_path / "r.png")], str(tmp_path / "a.wav"))
    small = dict(height=32, width=32, frames=9, steps=2)
    plain = HumoPipeline.from_pretrained(folder, "toy", device="cpu", log=lambda m: None)(*args, **small)
    pipe = HumoPipeline.from_pretrained(folder, "toy", device="cpu", resident_blocks=2, log=lambda m: None)
    assert pipe.dit.block_swap.streamed == list(range(2, len(pipe.dit.blocks)))
    assert np.array_equal(pipe(*args, **small).frames, plain.frames)
    with pytest.raises(HumoError, match="only 6 blocks"):
        HumoPipeline.from_pretrained(folder, "toy", device="cpu", resident_blocks=7)


def test_job_estimate_counts_resident_blocks_and_fp8_weights():
    from humo.configs import dit_preset
    from humo.sizing import estimate_job

    cfg = dit_preset("humo-17b")
    kw = dict(tokens=1000, latent_frames=4, passes=10, batch=1, dtype_bytes=2)
    full = estimate_job(cfg, **kw)
    swapped = estimate_job(cfg, **kw, resident_blocks=10)
    fp8 = estimate_job(cfg, **kw, weight_dtype_bytes=1)
    assert full.weight_bytes == cfg.num_params() * 2
    # 40 blocks, 10 resident + 2 streaming: 28 blocks' weights stay on the host
    assert 0.25 < swapped.weight_bytes / full.weight_bytes < 0.4
    assert fp8.weight_bytes * 2 == full.weight_bytes and fp8.activation_bytes == full.activation_bytes
    assert estimate_job(cfg, **kw, resident_blocks=40).weight_bytes == full.weight_bytes


def test_generate_refuses_more_resident_blocks_than_the_model_has_before_loading(tmp_path):
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "humo", "generate", "--prompt", "a man talks", "--offload", "blocks:9"]
        + ["--out", str(tmp_path / "v.mp4")],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "--offload blocks:9: toy has only 6 DiT blocks" in r.stderr
    assert "Traceback" not in r.stderr and "loaded" not in r.stdout + r.stderr and not (tmp_path / "v.mp4").exists()
