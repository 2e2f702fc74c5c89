"""Step caching (humo.step_cache): exact when nothing is skipped, residual reuse on skipped rows, per-branch
state, the warm-up and last-step rule, and the request's validation."""

import numpy as np
import pytest
import torch

from humo.errors import HumoError
from humo.pipeline import LAYOUTS, GenerationRequest, HumoPipeline
from humo.step_cache import BranchCache, cached_forward, must_compute, warmup_steps

SMALL = dict(height=32, width=32, frames=9, steps=6)


def dit_inputs(dit, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    cfg = dit.cfg
    return dict(
        x=torch.randn(b, cfg.out_dim, 3, 8, 8, generator=g),
        t=torch.full((b,), 700.0),
        context=torch.randn(b, 5, cfg.text_dim, generator=g),
        audio=torch.randn(b, 3, cfg.audio_window, cfg.audio_groups, cfg.audio_feat_dim, generator=g),
    )


def test_first_pass_equals_plain_forward(components):
    dit = components[0]
    inputs = dit_inputs(dit)
    with torch.no_grad():
        want, want_mask = dit(**inputs, return_mask=True)
        got, mask, cache = cached_forward(dit, inputs, None, 0.1, return_mask=True)
    assert torch.allclose(got, want, atol=1e-6) and torch.allclose(mask, want_mask, atol=1e-6)
    assert cache.computed.all() and (cache.distance == 0).all()


def test_skipped_rows_reuse_the_residual_computed_rows_do_not(components):
    """Row 0's input is what the cache saw (distance 0: skipped, its blocks' residual reused); row 1's moved far
    (run again, equal to a plain forward)."""
    dit = components[0]
    inputs = dit_inputs(dit)
    with torch.no_grad():
        _, _, cache = cached_forward(dit, inputs, None, 0.1, return_mask=True)
        moved = dict(inputs, x=inputs["x"].clone())
        moved["x"][1] = torch.randn_like(moved["x"][1]) * 3
        got, mask, nxt = cached_forward(dit, moved, cache, 0.1, return_mask=True)
        want, want_mask = dit(**moved, return_mask=True)
    assert nxt.computed.tolist() == [False, True]
    assert torch.allclose(got[1], want[1], atol=1e-5) and torch.allclose(mask[1], want_mask[1], atol=1e-5)
    assert torch.allclose(got[0], want[0], atol=1e-5)  # same input, so the reused residual is exact
    assert torch.equal(mask[0], cache.mask_logits[0])
    # A small change is accumulated, not forgotten: under the threshold once, over it after enough steps.
    nudged = dict(inputs, x=inputs["x"] * 1.01)
    with torch.no_grad():
        _, _, c1 = cached_forward(dit, nudged, cache, 1e9)
    assert not c1.computed.any() and (c1.distance > 0).all()
    with torch.no_grad():
        _, _, c2 = cached_forward(dit, inputs, c1, float(c1.distance.min()) * 1.5)
    assert c2.computed.all() and (c2.distance == 0).all()
    with torch.no_grad():
        _, _, forced = cached_forward(dit, nudged, cache, 1e9, force=True)
    assert forced.computed.all()


def test_branch_cache_slices_and_stacks_rows(components):
    dit = components[0]
    with torch.no_grad():
        _, _, cache = cached_forward(dit, dit_inputs(dit, b=4), None, 0.1, return_mask=True)
    parts = [cache[0:2], cache[2:4]]
    again = BranchCache.cat(parts)
    for name in ("indicator", "residual", "mask_logits", "distance", "computed"):
        assert torch.equal(getattr(again, name), getattr(cache, name))
    assert parts[1].residual.shape[0] == 2 and torch.equal(parts[1].residual, cache.residual[2:])


def test_warmup_and_last_step_always_run():
    assert warmup_steps(50) == 5 and warmup_steps(20) == 2 and warmup_steps(3) == 1
    runs = [s for s in range(20) if must_compute(s, 20)]
    assert runs == [0, 1, 19]


def make_pipe(components, logs=None):
    dit, vae, text, audio = components
    log = (lambda m: logs.append(m)) if logs is not None else (lambda m: None)
    return HumoPipeline(LAYOUTS["toy"], dit, vae, text, audio, progress=False, log=log)


def test_pipeline_tiny_threshold_is_exact_huge_threshold_skips(components, media):
    """With a threshold no change stays under, every branch pass runs: the video equals the uncached one. With one
    every change stays under, only the warm-up and last steps run, per branch, and the log says so."""
    args = ("a woman talks", [str(media / "r.png")], str(media / "a.wav"))
    plain = make_pipe(components)(*args, **SMALL)
    logs = []
    exact = make_pipe(components, logs)(*args, cache=1e-12, **SMALL)
    assert np.array_equal(exact.frames, plain.frames)
    assert np.allclose(exact.mask, plain.mask, atol=1e-6)
    passes = [m for m in logs if m.startswith("step cache")]
    branches = 4  # the toy's guidance: release-1.7b formula, 4 conditions a step
    assert passes == [f"step cache: the blocks ran on {6 * branches} of {6 * branches} branch passes (threshold 1e-12)"]
    logs.clear()
    skipped = make_pipe(components, logs)(*args, cache=1e9, **SMALL)
    ran = 2 * branches  # step 0 (warm-up: ceil(0.6) = 1) and step 5 (the last)
    assert [m for m in logs if m.startswith("step cache")] == [
        f"step cache: the blocks ran on {ran} of {6 * branches} branch passes (threshold 1e+09)"
    ]
    assert skipped.frames.shape == plain.frames.shape and not np.array_equal(skipped.frames, plain.frames)


@pytest.mark.parametrize("bad", [0, -0.1, float("inf"), float("nan")])
def test_bad_threshold_is_refused(bad):
    with pytest.raises(HumoError, match="--cache"):
        GenerationRequest("a man talks", cache=bad).resolved(LAYOUTS["toy"])


def test_bench_cache_compares_with_no_cache_in_one_run(tmp_path):
    """`humo bench cache` on a (random) toy folder: one row per setting, the uncached one at 100% of the passes,
    a threshold every change stays under at the warm-up and last steps only (2 of 4 steps)."""
    import json
    import subprocess
    import sys

    from humo.toy import write_toy_weights

    folder = write_toy_weights(tmp_path / "toy")
    synth = [sys.executable, "-m", "humo", "synth", "--out", str(tmp_path / "held"), "--clips", "2"]
    assert subprocess.run(synth + ["--frames", "9:9", "--split", "heldout", "-q"], capture_output=True).returncode == 0
    out = tmp_path / "cache.json"
    cmd = [sys.executable, "-m", "humo", "bench", "cache", "--weights", str(folder)]
    cmd += ["--manifest", str(tmp_path / "held" / "manifest.jsonl"), "--clips", "2", "--steps", "4"]
    r = subprocess.run(cmd + ["--thresholds", "1e9", "--json", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert list(res) == ["none", "1e+09"]
    assert res["1e+09"]["block_rows"] * 2 == res["none"]["block_rows"] > 0
    lines = [ln.split() for ln in r.stdout.splitlines() if ln.split() and ln.split()[0] in ("none", "1e+09")]
    assert [ln[3] for ln in lines] == ["100%", "50%"]
    bad = subprocess.run(cmd + ["--thresholds", "0"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--thresholds" in bad.stderr and "Traceback" not in bad.stderr
