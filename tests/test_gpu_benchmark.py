"""benchmarks/gpu.py, the prepared GPU run of issue 18, at tiny sizes on the CPU: both cases run and report."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_benchmark_runs_tiny_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", "--tiny", "--out", str(out)], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["tiny"] and set(res["1.7b-480p"]) == {"batched", "cache-0.1"}
    assert all(v["finite"] and v["seconds"] > 0 for v in res["1.7b-480p"].values())
    fp8 = res["1.7b-fp8"]
    assert set(fp8) == {"bf16", "upcast", "scaled"} and all(v["finite"] for v in fp8.values())
    big = res["17b-480p-24gb"]
    assert big["fp8_matmul"] == "upcast"  # what `auto` picks on a CPU
    assert big["fits"] and big["finite"] and big["peak_streamed"] <= 2 and big["resident_blocks"] == 2
