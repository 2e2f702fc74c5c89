"""`humo bench dit`: the bf16 row is skipped with its reason on a CPU whose bf16 matmuls are slow."""

import humo.bench.dit as bench_dit
from humo.cli import main

SMALL = ["bench", "dit", "--preset", "toy", "--blocks", "1", "--frames", "1", "--size", "8", "--repeats", "1"]


def test_bf16_is_skipped_with_a_reason_when_slow_and_timed_when_asked(monkeypatch, capsys):
    monkeypatch.setattr(bench_dit, "bf16_is_slow", lambda: "this CPU runs bf16 matmuls at 5 GFLOP/s against 90")
    monkeypatch.setattr(bench_dit, "matmul_peak", lambda dtype: 1.0)  # the peak measurement is not under test
    assert main(SMALL) == 0
    out = capsys.readouterr().out
    assert "bf16   skipped: this CPU runs bf16 matmuls at 5 GFLOP/s" in out
    assert any(line.startswith("fp32 ") for line in out.splitlines())
    assert main([*SMALL, "--dtypes", "bf16"]) == 0  # named: timed whatever the CPU
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("bf16")]
    assert rows and "skipped" not in rows[0]
