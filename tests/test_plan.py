"""`humo plan`: the fastest setting that fits is recommended, leaner ones are reached as memory shrinks."""

import subprocess
import sys


def plan(*args):
    r = subprocess.run([sys.executable, "-m", "humo", "plan", *args], capture_output=True, text=True)
    assert "Traceback" not in r.stderr
    return r


def recommended(r):
    return [ln for ln in r.stdout.splitlines() if ln.startswith("recommended:")]


def test_plan_recommends_leaner_settings_as_memory_shrinks():
    big = plan("--preset", "humo-17b", "--size", "720p", "--gpu-memory", "141")
    assert big.returncode == 0 and recommended(big) == ["recommended: humo generate --preset humo-17b"]
    mid = plan("--preset", "humo-17b", "--size", "720p", "--gpu-memory", "80")
    assert recommended(mid) == ["recommended: humo generate --preset humo-17b --max-batch 1"]
    less = plan("--preset", "humo-17b", "--size", "720p", "--gpu-memory", "40")
    assert recommended(less) == ["recommended: humo generate --preset humo-17b --dtype fp8 --max-batch 1"]
    small = plan("--preset", "humo-17b", "--size", "720p", "--gpu-memory", "24")
    (line,) = recommended(small)
    assert "--dtype fp8 --max-batch 1 --offload blocks:" in line
    # the chosen setting's estimate is under the budget, the one before it over
    rows = [ln for ln in small.stdout.splitlines() if " GB  " in ln]
    assert rows[-1].endswith("fits") and rows[-2].endswith("too large")
    assert float(rows[-1].split("=")[1].split("GB")[0]) <= 24 * 0.75
    none = plan("--preset", "humo-17b", "--size", "720p", "--gpu-memory", "4")
    assert none.returncode == 1 and "nothing fits" in none.stdout


def test_plan_bad_input_is_one_line():
    for args, what in (
        (["--preset", "nope", "--gpu-memory", "80"], "--preset nope"),
        (["--gpu-memory", "0"], "--gpu-memory 0"),
        (["--gpu-memory", "80", "--size", "999p"], "--size 999p"),
        (["--gpu-memory", "80", "--seconds", "2", "--frames", "49"], "--seconds 2 and --frames 49: give one"),
    ):
        r = plan(*args)
        assert r.returncode != 0 and what in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_plan_splits_the_tokens_over_gpus():
    # 17B at 720p on 80 GB: one GPU must run the guidance passes one at a time; split over 2 the batched passes fit,
    # since each GPU holds half of the tokens' activations (the weights whole).
    one = plan("--preset", "humo-17b", "--size", "720p", "--gpu-memory", "80")
    two = plan("--preset", "humo-17b", "--size", "720p", "--gpu-memory", "80", "--gpus", "2")
    assert recommended(two) == ["recommended: torchrun --nproc-per-node 2 -m humo generate --preset humo-17b"]
    assert recommended(one) != recommended(two)

    def first_row(r):
        row = next(ln for ln in r.stdout.splitlines() if " GB  " in ln)
        weights = float(row.split("weights")[1].split("GB")[0])
        acts = float(row.split("activations")[1].split("GB")[0])
        return weights, acts

    (w1, a1), (w2, a2) = first_row(one), first_row(two)
    assert w1 == w2 and abs(a2 - a1 / 2) <= 0.1
    bad = plan("--preset", "humo-17b", "--gpu-memory", "80", "--gpus", "3")  # 40 heads
    assert bad.returncode == 2 and "40 attention heads" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_sizing_per_rank_share():
    from humo.configs import dit_preset
    from humo.sizing import estimate_job

    cfg = dit_preset("humo-1.7b")
    one = estimate_job(cfg, 4097, 21, passes=150, batch=3, dtype_bytes=2)
    two = estimate_job(cfg, 4097, 21, passes=150, batch=3, dtype_bytes=2, ranks=2)
    assert two.weight_bytes == one.weight_bytes and two.flops == one.flops / 2 and two.ranks == 2
    # the odd token count is padded: the larger share, 2049 tokens
    assert two.activation_bytes == estimate_job(cfg, 2049, 21, passes=150, batch=3, dtype_bytes=2).activation_bytes


def test_plan_takes_seconds_as_frames():
    by_seconds = plan("--preset", "humo-17b", "--gpu-memory", "80", "--seconds", "3.9")
    by_frames = plan("--preset", "humo-17b", "--gpu-memory", "80", "--frames", "97")
    assert by_seconds.returncode == 0 and "97 frames" in by_seconds.stdout.splitlines()[0]
    assert by_seconds.stdout == by_frames.stdout
