"""`humo data run --executor ray` (a local Ray cluster) against the local executor on the same inputs: the same
records in every journal and a byte-identical manifest. Needs the `ray` extra (about 500 MB), which `make install`
installs; `pytest -m ray` runs this test alone."""

from __future__ import annotations

import json

import pytest

from humo.cli import main
from humo.data.pipeline.core import STAGES, Journal
from humo.errors import HumoError
from tests.data_media import make_plain, make_talk


def journal_records(out, stage):
    return {r["id"]: r for line in Journal(out, stage).load().values() for r in line["records"]}


@pytest.mark.ray
def test_ray_executor_matches_the_local_one(tmp_path):
    src = tmp_path / "videos"
    src.mkdir()
    make_talk(src / "a.mp4")
    make_talk(src / "b.mp4", cuts_s=(2.0, 4.4))
    make_plain(src / "silent.mp4", 60)  # no audio: dropped by speech
    (src / "broken.mp4").write_text("not a video")  # dropped by probe
    faceless = ["--face-missing-max", "1", "--sync-min", "0", "--no-reference", "keep"]
    for executor in ("local", "ray"):
        args = ["data", "run", "--input", str(src), "--out", str(tmp_path / executor), *faceless, "-q"]
        assert main([*args, "--executor", executor]) == 0
    local, ray = tmp_path / "local", tmp_path / "ray"
    assert (ray / "manifest.jsonl").read_bytes() == (local / "manifest.jsonl").read_bytes()
    assert len((local / "manifest.jsonl").read_text().splitlines()) >= 5
    for stage in STAGES:
        assert journal_records(ray, stage) == journal_records(local, stage), stage
    # a rerun with the ray executor resumes the folder the local one made: nothing to do
    journals = {s: Journal(local, s).path.read_bytes() for s in STAGES}
    assert main(["data", "run", "--out", str(local), "--executor", "ray", "-q"]) == 0
    assert {s: Journal(local, s).path.read_bytes() for s in STAGES} == journals
    assert json.loads((local / "run.json").read_text())["inputs"]


def test_ray_address_needs_the_ray_executor(tmp_path, capsys):
    make_plain(tmp_path / "v.mp4", 10)
    args = ["data", "run", "--input", str(tmp_path / "v.mp4"), "--out", str(tmp_path / "out"), "--ray-address", "auto"]
    assert main(args) == 2
    assert "--ray-address: only with --executor ray" in capsys.readouterr().err


def test_the_default_local_cluster_ignores_ray_address_in_the_environment(monkeypatch):
    """Without --ray-address a local cluster is started by name (``address="local"``): a RAY_ADDRESS in the
    environment must not make ``ray.init`` join that cluster (which refuses ``num_cpus``); a failure names the
    local cluster, never ``--ray-address None``."""
    import ray

    from humo.data.pipeline import ray_executor

    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    calls = []

    def init(**kwargs):
        calls.append(kwargs)
        raise ConnectionError("refused\nmore detail")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    with pytest.raises(HumoError) as e, ray_executor.session(2, None):
        pass
    assert calls[-1]["address"] == "local" and calls[-1]["num_cpus"] == 3, calls
    assert str(e.value) == "--executor ray: cannot start a local Ray cluster (refused)"
    with pytest.raises(HumoError) as e, ray_executor.session(2, "auto"):
        pass
    assert calls[-1]["address"] == "auto" and "num_cpus" not in calls[-1], calls
    assert str(e.value) == "--ray-address auto: cannot connect to a Ray cluster (refused)"
