"""Exact resume: a run SIGKILLed after a checkpoint and resumed logs the same losses as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.helpers import TINY, TINY_AUDIO, synthetic_cache

MODEL = {**TINY, **TINY_AUDIO, "mask_head_blocks": 2}


def _config(tmp: Path, out: str) -> Path:
    cfg = {
        "cache": str(tmp / "cache"),
        "out": str(tmp / out),
        "model": "humo-1.7b",
        "model_overrides": MODEL,
        "stage": 2,
        "av_ramp_steps": 4,
        "steps": 7,
        "batch_size": 2,
        "log_every": 1,
        "checkpoint_every": 3,
        "keep_checkpoints": 1,
        "num_workers": 1,
        "precision": "bf16",
        "progress": False,
        "tensorboard": False,
        "lr": 1e-3,
    }
    path = tmp / f"{out}.json"
    path.write_text(json.dumps(cfg))
    return path


def _launch(config: Path, sleep: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HUMO_TRAIN_STEP_SLEEP": str(sleep)}
    return subprocess.Popen(
        [sys.executable, "-m", "humo", "train", "--config", str(config)],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _losses(run: Path) -> list[tuple[int, float, float]]:
    recs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["grad_norm"]) for r in recs]


@pytest.mark.slow
def test_sigkill_then_resume_repeats_the_uninterrupted_losses(tmp_path):
    synthetic_cache(
        tmp_path / "cache",
        samples=6,
        latent=(16, 2, 4, 4),
        text_dim=MODEL["text_dim"],
        audio_window=(8, 5, MODEL["audio_feat_dim"]),
        with_refs=[True, True, False, True, False, True],
        with_audio=[True, False, True, True, True, False],
        with_mask=[True, True, True, False, True, True],
    )
    full = _launch(_config(tmp_path, "full"))
    killed = _launch(_config(tmp_path, "killed"), sleep=0.4)
    ck = tmp_path / "killed" / "checkpoints" / "step_00000003" / "state.json"
    deadline = time.time() + 120
    while not ck.is_file():
        assert killed.poll() is None, killed.stdout.read().decode()
        assert time.time() < deadline, "no checkpoint at step 3"
        time.sleep(0.02)
    time.sleep(0.5)  # let it run into step 4 or 5: work that the resumed run must redo identically
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    logged = _losses(tmp_path / "killed")
    assert logged[-1][0] < 7, "the run finished before it was killed"

    resumed = _launch(_config(tmp_path, "killed"))
    out_r, _ = resumed.communicate(timeout=180)
    out_f, _ = full.communicate(timeout=180)
    assert full.returncode == 0, out_f.decode()
    assert resumed.returncode == 0, out_r.decode()

    a, b = _losses(tmp_path / "full"), _losses(tmp_path / "killed")
    assert [s for s, *_ in a] == list(range(1, 8))
    assert a == b  # bit-identical losses and gradient norms, every step
    ea = load_file(str(tmp_path / "full" / "final" / "ema.safetensors"))
    eb = load_file(str(tmp_path / "killed" / "final" / "ema.safetensors"))
    assert ea.keys() == eb.keys()
    assert all((ea[k] == eb[k]).all() for k in ea)
    # keep_checkpoints=1: only the newest survives, and no temporary folder is left behind
    left = sorted(p.name for p in (tmp_path / "killed" / "checkpoints").iterdir())
    assert left == ["latest", "step_00000007"]
