"""The job estimate `humo generate` prints before any weights load (humo/sizing.py)."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from humo.configs import dit_preset
from humo.dit import HumoDiT
from humo.sizing import JobEstimate, activation_bytes, estimate_job, forward_flops, matmul_rate


@pytest.mark.parametrize("preset, layers, audio", [("toy", None, True), ("toy", None, False), ("humo-1.7b", 1, True)])
def test_forward_flops_match_torch_flop_counter(preset, layers, audio):
    """The count from the config alone is within 6% of what torch counts on the built model (the elementwise
    work it leaves out is small); without the audio path it drops the audio terms, which torch sees too."""
    cfg = dit_preset(preset, **({"num_layers": layers} if layers else {}))
    torch.manual_seed(0)
    model = HumoDiT(cfg).eval()
    frames, h, w = 3, 16, 16
    x = torch.randn(1, cfg.out_dim, frames, h, w)
    ctx = torch.randn(1, 7, cfg.text_dim)
    windows = torch.randn(1, frames, cfg.audio_window, cfg.audio_groups, cfg.audio_feat_dim) if audio else None
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, torch.tensor([500.0]), ctx, audio=windows)
    tokens = frames * (h // cfg.patch[1]) * (w // cfg.patch[2])
    ours = forward_flops(cfg, tokens, cfg.text_len, frames if audio else 0)
    assert ours == pytest.approx(counter.get_total_flops(), rel=0.06)
    if audio and preset == "toy":  # the toy's audio terms are a visible share: dropping them fails the comparison
        assert forward_flops(cfg, tokens, cfg.text_len, 0) < 0.94 * counter.get_total_flops()


def test_estimate_adds_passes_weights_and_batched_activations():
    cfg = dit_preset("toy")
    one = estimate_job(cfg, tokens=100, latent_frames=4, passes=10, batch=1, dtype_bytes=4, rate=1e9)
    assert isinstance(one, JobEstimate)
    assert one.flops == pytest.approx(10 * forward_flops(cfg, 100, cfg.text_len, 4))
    assert one.seconds == pytest.approx(one.flops / 1e9)
    assert one.weight_bytes == 4 * cfg.num_params() and one.params == cfg.num_params()
    three = estimate_job(cfg, tokens=100, latent_frames=4, passes=10, batch=3, dtype_bytes=4)
    assert three.activation_bytes == 3 * one.activation_bytes and three.seconds is None
    assert one.memory_bytes == one.weight_bytes + activation_bytes(cfg, 100, 1, 4)
    # the widest tensor, the FFN hidden layer, is counted: 17B's 90,000 tokens at 720p need gigabytes
    big = dit_preset("humo-17b")
    assert activation_bytes(big, 90_000, 1, 2) > 90_000 * big.ffn_dim * 2


def test_matmul_rate_is_measured_not_assumed():
    # the best of three windows each: a window the scheduler took the core from reads slow on a loaded machine
    slow = max(matmul_rate(torch.device("cpu"), torch.float32, 64, 64, rows=64, budget_s=0.05) for _ in range(3))
    fast = max(matmul_rate(torch.device("cpu"), torch.float32, 256, 1024, rows=512, budget_s=0.05) for _ in range(3))
    # a tiny product is bound by call overhead, a larger one is not: a measurement tells them apart
    assert 0 < slow < fast


MEASURE = """
import ctypes, gc, torch
from humo.configs import dit_preset
from humo.dit import HumoDiT


def status(key):  # kB -> bytes, from /proc/self/status
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024


cfg = dit_preset("humo-1.7b", num_layers=1, mask_head_blocks=0)
torch.manual_seed(0)
m = HumoDiT(cfg).eval()
x = torch.randn(1, cfg.out_dim, 4, 64, 64)  # 4 x 32 x 32 = 4096 tokens
ctx = torch.randn(1, 64, cfg.text_dim)
aud = torch.randn(1, 4, cfg.audio_window, cfg.audio_groups, cfg.audio_feat_dim)
with torch.no_grad():
    m(x[..., :4, :4], torch.tensor([500.0]), ctx, aud)
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed heap back to the system: the forward cannot reuse it unseen
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak resident size to the current one
    base = status("VmRSS")
    m(x, torch.tensor([500.0]), ctx, aud)
    print(status("VmHWM") - base)
"""


def test_activation_estimate_against_a_measured_peak():
    """One full-width 1.7B block at 4096 tokens, fp32 on the CPU: the process's peak resident memory grows by
    what `activation_bytes` predicts, within what the allocator scatters (Linux: /proc peak reset)."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", MEASURE], capture_output=True, text=True, env={"OMP_NUM_THREADS": "2"})
    assert r.returncode == 0, r.stderr
    measured = int(r.stdout.split()[-1])
    estimate = activation_bytes(dit_preset("humo-1.7b"), 4096, 1, 4)
    assert 0.6 < measured / estimate < 1.6, (measured, estimate)
