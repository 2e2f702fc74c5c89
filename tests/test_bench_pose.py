"""`humo bench pose` runs end to end and reports the floor's effect (its timings are not asserted)."""

import re

from humo.cli import main


def test_bench_pose_reports_denormals_and_a_ratio(capsys):
    assert main(["bench", "pose", "--batch", "1", "--latent-frames", "2", "--size", "8", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    ours = re.search(r"floored heatmaps \(ours\): [\d.]+ s/step, denormal values ([\d.]+)%", out)
    peer = re.search(r"raw Gaussians \(peer\): +[\d.]+ s/step, denormal values ([\d.]+)%", out)
    assert ours and peer, out
    assert float(ours.group(1)) == 0.0 and float(peer.group(1)) > 0.0
    diff = re.search(r"ratio raw / floored: [\d.]+x; largest feature difference ([\d.e+-]+)", out)
    assert diff and float(diff.group(1)) < 1e-6, out


def test_bench_pose_refuses_a_bad_size(capsys):
    assert main(["bench", "pose", "--size", "0"]) != 0
    assert "--size 0: must be >= 1" in capsys.readouterr().err
