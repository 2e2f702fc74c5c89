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
    ):
        r = plan(*args)
        assert r.returncode != 0 and what in r.stderr and len(r.stderr.strip().splitlines()) == 1
