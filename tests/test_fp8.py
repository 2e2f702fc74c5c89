"""fp8 weights (humo.fp8): quantization error bound, which layers change, file round trip, loading paths."""

import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from humo.checkpoint import load_dit, save_dit
from humo.errors import HumoError
from humo.fp8 import FP8, Fp8Linear, quantize_dit, quantize_weight, weight_bytes
from humo.toy import toy_components, write_toy_weights
from tests.helpers import randomize


def test_quantized_weight_is_within_e4m3_rounding():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 96, generator=g) * torch.logspace(-6, 1, 64)[:, None]  # rows of very different scales
    q, scale = quantize_weight(w)
    assert q.dtype == FP8 and scale.shape == (64,)
    back = q.float() * scale[:, None]
    # e4m3 keeps 3 mantissa bits: a normal value is off by at most 1/16 of itself; each row's scale puts its
    # largest value at 448, so small rows are no worse than large ones.
    normal = w.abs() >= scale[:, None] * 2**-6  # e4m3's smallest normal, in each row's units
    assert ((back - w).abs()[normal] <= w.abs()[normal] / 16 + 1e-12).all()
    assert torch.allclose(back.abs().amax(1), w.abs().amax(1), rtol=1e-6)  # each row's largest is exact
    rel = lambda a: ((a - w).abs()[:8] / w.abs()[:8]).median()  # noqa: E731  (the 8 smallest rows)
    assert rel(back) < 0.05
    # The check can fail: one scale for the whole tensor flushes the small rows to zero.
    one = w.abs().max() / 448
    assert rel((w / one).to(FP8).float() * one) > 0.5


def test_fp8_linear_matches_linear():
    torch.manual_seed(0)
    lin = nn.Linear(48, 32)
    f8 = Fp8Linear.from_linear(lin)
    x = torch.randn(5, 48)
    rel = (f8(x) - lin(x)).norm() / lin(x).norm()
    assert 0 < rel < 0.05
    assert f8.weight.dtype == FP8 and not f8.weight.requires_grad


@pytest.fixture(scope="module")
def dit():
    model = toy_components(seed=0, num_layers=2, mask_head_blocks=1)[0]
    randomize(model, seed=1, scale=0.05)
    return model


def toy_inputs(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        x=torch.randn(1, cfg.out_dim, 3, 8, 8, generator=g),
        t=torch.tensor([600.0]),
        context=torch.randn(1, 5, cfg.text_dim, generator=g),
        audio=torch.randn(1, 3, cfg.audio_window, cfg.audio_groups, cfg.audio_feat_dim, generator=g),
    )


def test_quantize_dit_replaces_only_block_linears(dit):
    import copy

    q = copy.deepcopy(dit)
    n = quantize_dit(q)
    block_linears = sum(isinstance(m, nn.Linear) for m in dit.blocks.modules())
    assert n == block_linears > 0
    assert not any(isinstance(m, nn.Linear) for m in q.blocks.modules())
    assert isinstance(q.head.head, nn.Linear) and isinstance(q.text_embedding[0], nn.Linear)  # kept
    assert weight_bytes(q.blocks) < 0.3 * weight_bytes(dit.blocks)  # fp32 -> fp8 (+ biases, norms, scales)
    inputs = toy_inputs(dit.cfg)
    with torch.no_grad():
        ref, out = dit(**inputs), q(**inputs)
    rel = float((out - ref).norm() / ref.norm())
    assert 0 < rel < 0.05


def test_fp8_file_round_trip(dit, tmp_path):
    import copy

    q = copy.deepcopy(dit)
    quantize_dit(q)
    path = save_dit(q, tmp_path / "dit-fp8.safetensors")
    back = load_dit(path, dtype=torch.float32)
    assert sum(isinstance(m, Fp8Linear) for m in back.modules()) == sum(isinstance(m, Fp8Linear) for m in q.modules())
    back_sd = back.state_dict()
    for k, v in q.state_dict().items():
        assert v.dtype == back_sd[k].dtype and torch.equal(v.float(), back_sd[k].float()), k
    inputs = toy_inputs(dit.cfg, seed=2)
    with torch.no_grad():
        assert torch.allclose(back(**inputs), q(**inputs), atol=1e-5)
    saved = save_dit(dit, tmp_path / "dit.safetensors").stat().st_size - path.stat().st_size
    block_weights = sum(m.weight.numel() for m in dit.blocks.modules() if isinstance(m, nn.Linear))
    assert saved > 2.9 * block_weights  # 4 bytes -> 1 per block weight, less a scale per row


def test_pipeline_fp8_quantizes_on_load_and_refuses_lora_on_fp8_file(tmp_path):
    from humo.pipeline import HumoPipeline

    folder = write_toy_weights(tmp_path / "toy")
    pipe = HumoPipeline.from_pretrained(folder, "toy", device="cpu", fp8=True, log=lambda m: None)
    assert any(isinstance(m, Fp8Linear) for m in pipe.dit.modules())
    plain = HumoPipeline.from_pretrained(folder, "toy", device="cpu", log=lambda m: None)
    assert not any(isinstance(m, Fp8Linear) for m in plain.dit.modules())
    save_dit(pipe.dit, folder / "dit.safetensors")  # the folder's DiT is now stored in fp8
    again = HumoPipeline.from_pretrained(folder, "toy", device="cpu", log=lambda m: None)
    assert any(isinstance(m, Fp8Linear) for m in again.dit.modules())
    with pytest.raises(HumoError, match="stored in fp8"):
        HumoPipeline.from_pretrained(folder, "toy", device="cpu", loras=[("x.safetensors", 1.0)])


def test_convert_to_fp8_cli(dit, tmp_path):
    src = save_dit(dit, tmp_path / "dit.safetensors")
    dst = tmp_path / "dit-fp8.safetensors"
    run = [sys.executable, "-m", "humo", "convert", str(src), str(dst), "--to", "humo", "--dtype", "fp8"]
    r = subprocess.run(run, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "block layers in fp8" in r.stdout and any(isinstance(m, Fp8Linear) for m in load_dit(dst).modules())
    bad = subprocess.run(
        run[:-4] + ["--to", "diffusers", "--dtype", "fp8", "--overwrite"], capture_output=True, text=True
    )
    assert bad.returncode != 0 and "only with --to humo" in bad.stderr and "Traceback" not in bad.stderr


def test_scaled_matmul_is_the_product_of_the_two_quantized_operands():
    from humo.fp8 import quantize_rows

    torch.manual_seed(0)
    lin = nn.Linear(64, 48)
    f8 = Fp8Linear.from_linear(lin)
    x = torch.randn(2, 7, 64) * torch.logspace(-5, 1, 7)[None, :, None]  # token rows of very different scales
    upcast = f8(x)
    f8.matmul = "scaled"
    scaled = f8(x)
    assert scaled.shape == (2, 7, 48)
    # exactly the product of the per-token quantized activations and the per-channel quantized weight
    xq, xs = quantize_rows(x.reshape(-1, 64))
    expect = (xq.float() * xs[:, None]) @ f8.dequantized(torch.float32).t() + lin.bias
    assert torch.allclose(scaled.reshape(-1, 48), expect, rtol=1e-5, atol=1e-6)
    # per-token scales keep the small rows as accurate as the large ones (the product, the bias left out: it would
    # hide the small rows' error); activation rounding adds a little error
    ref = lin(x) - lin.bias
    for row in range(7):
        rel = (scaled[:, row] - lin.bias - ref[:, row]).norm() / ref[:, row].norm()
        assert rel < 0.08, row
    assert (scaled - lin(x)).norm() > (upcast - lin(x)).norm()  # it can fail: the activations' rounding shows
    # one scale for the whole activation tensor would flush the smallest rows
    one = x.abs().max() / 448
    flat = ((x / one).to(FP8).float() * one) @ f8.dequantized(torch.float32).t()
    assert (flat[:, 0] - ref[:, 0]).norm() / ref[:, 0].norm() > 0.3


def test_scaled_matmul_falls_back_where_sizes_do_not_fit_and_is_chosen_only_with_fp8_cores():
    from humo.fp8 import choose_matmul, set_matmul

    torch.manual_seed(0)
    f8 = Fp8Linear.from_linear(nn.Linear(40, 24))  # 40 is not a multiple of 16: the kernel cannot take it
    x = torch.randn(3, 40)
    before = f8(x)
    f8.matmul = "scaled"
    assert torch.equal(f8(x), before)
    assert choose_matmul("auto", "cpu") == "upcast" and choose_matmul("scaled", "cpu") == "scaled"
    with pytest.raises(HumoError, match="--fp8-matmul fast"):
        choose_matmul("fast", "cpu")
    with pytest.raises(ValueError):
        set_matmul(nn.Sequential(f8), "fast")


def test_dit_with_scaled_fp8_matmuls_stays_close(dit):
    import copy

    from humo.fp8 import set_matmul

    inputs = toy_inputs(dit.cfg)
    with torch.no_grad():
        ref = dit(**inputs)
        q = copy.deepcopy(dit)
        n = quantize_dit(q)
        upcast = q(**inputs)
        assert set_matmul(q, "scaled") == n
        scaled = q(**inputs)
    rel = lambda a: float((a - ref).norm() / ref.norm())  # noqa: E731
    assert 0 < rel(upcast) < rel(scaled) < 0.1


def test_generate_fp8_matmul_flag(tmp_path):
    from humo.pipeline import HumoPipeline

    folder = write_toy_weights(tmp_path / "toy")
    pipe = HumoPipeline.from_pretrained(folder, "toy", device="cpu", fp8=True, fp8_matmul="scaled", log=print)
    layers = [m for m in pipe.dit.modules() if isinstance(m, Fp8Linear)]
    assert layers and all(m.matmul == "scaled" for m in layers)
    auto = HumoPipeline.from_pretrained(folder, "toy", device="cpu", fp8=True, log=print)
    assert all(m.matmul == "upcast" for m in auto.dit.modules() if isinstance(m, Fp8Linear))
    r = subprocess.run(
        [sys.executable, "-m", "humo", "generate", "--prompt", "a man", "--out", str(tmp_path / "o.mp4"),
         "--fp8-matmul", "fastest"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 2 and "--fp8-matmul" in r.stderr and "Traceback" not in r.stderr


def _fake_gpu(monkeypatch, capability):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)


def test_scaled_matmul_without_fp8_cores_is_refused_before_loading(tmp_path, monkeypatch, capsys):
    import humo.checkpoint
    from humo.cli import main
    from humo.fp8 import choose_matmul
    from humo.pipeline import HumoPipeline

    _fake_gpu(monkeypatch, (8, 0))  # an A100: no fp8 tensor cores
    with pytest.raises(HumoError, match=r"--fp8-matmul scaled: cuda has no fp8 tensor cores \(compute capability 8.0"):
        choose_matmul("scaled", "cuda")
    assert choose_matmul("auto", "cuda:0") == "upcast" and choose_matmul("upcast", "cuda") == "upcast"
    assert choose_matmul("scaled", "cpu") == "scaled"  # torch's reference kernel, for checking

    def no_loading(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(humo.checkpoint, "load_dit", no_loading)
    folder = write_toy_weights(tmp_path / "toy")
    with pytest.raises(HumoError, match="no fp8 tensor cores"):  # the API checks before loading
        HumoPipeline.from_pretrained(folder, "toy", device="cuda", fp8=True, fp8_matmul="scaled")
    monkeypatch.setattr(HumoPipeline, "from_pretrained", no_loading)
    capsys.readouterr()
    code = main(["generate", "--weights", str(folder), "--prompt", "a man", "--out", str(tmp_path / "o.mp4"),
                 "--device", "cuda", "--dtype", "fp8", "--fp8-matmul", "scaled", "--frames", "5"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "no fp8 tensor cores" in err, err
    _fake_gpu(monkeypatch, (9, 0))
    assert choose_matmul("scaled", "cuda") == "scaled" and choose_matmul("auto", "cuda") == "scaled"


def test_scaled_forward_is_unchanged_by_quantizing_in_chunks(monkeypatch):
    import humo.fp8
    from humo.fp8 import quantize_rows

    torch.manual_seed(0)
    f8 = Fp8Linear.from_linear(nn.Linear(64, 48))
    f8.matmul = "scaled"
    x = torch.randn(3, 11, 64) * torch.logspace(-4, 2, 11)[None, :, None]
    whole = f8(x)
    q_whole, s_whole = quantize_rows(x.reshape(-1, 64))
    monkeypatch.setattr(humo.fp8, "CHUNK_ELEMENTS", 3 * 64 + 5)  # 3 rows a chunk, the last one short
    chunked = f8(x)
    q, s = quantize_rows(x.reshape(-1, 64))
    assert torch.allclose(chunked, whole, rtol=0, atol=1e-6)
    assert torch.equal(q.float(), q_whole.float()) and torch.equal(s, s_whole)
    # the same numbers as quantizing the whole tensor in float32 at once
    ref = x.reshape(-1, 64).float()
    ref_scale = (ref.abs().amax(1) / 448).clamp_min(torch.finfo(torch.float32).tiny)
    assert torch.equal(s, ref_scale)
    assert torch.equal(q.float(), (ref / ref_scale[:, None]).clamp(-448, 448).to(FP8).float())
    # bf16 activations: the row maxima are taken in bf16, exactly
    qb, sb = quantize_rows(x.reshape(-1, 64).bfloat16())
    assert torch.equal(sb, (x.reshape(-1, 64).bfloat16().float().abs().amax(1) / 448))


def test_scaled_path_on_cuda_serves_half_precision_only():
    # The decision, which a CUDA run follows (the kernel itself needs a GPU with fp8 cores): float32 activations on
    # CUDA keep the upcast path (the row-wise kernels write bf16 only); half precision takes the scaled one; on the
    # CPU the reference kernel takes any dtype; sizes off the kernels' multiple of 16 always upcast.
    f8 = Fp8Linear.from_linear(nn.Linear(64, 48))
    assert not f8.scaled_for(torch.bfloat16, cuda=True)  # still "upcast"
    f8.matmul = "scaled"
    assert f8.scaled_for(torch.bfloat16, cuda=True) and f8.scaled_for(torch.float16, cuda=True)
    assert not f8.scaled_for(torch.float32, cuda=True)
    assert f8.scaled_for(torch.float32, cuda=False)
    odd = Fp8Linear.from_linear(nn.Linear(40, 48))
    odd.matmul = "scaled"
    assert not odd.scaled_for(torch.bfloat16, cuda=True)
