"""Training checkpoints: written atomically, read back for an exact resume.

A checkpoint is a folder ``OUT/checkpoints/step_00001234/`` holding

    model.safetensors     every weight of the model being trained (LoRA adapters included, under peft's names)
    ema.safetensors       the EMA of the trainable weights
    optimizer.pt          the AdamW state (tensors and numbers only: read with weights_only=True)
    rng.pt                RNG states: torch (CPU, and CUDA when used), numpy, python, and each named generator
    state.json            step, data position (micro-batches consumed), samples seen, the config; written last

It is assembled in a hidden temporary folder and renamed into place, so a run killed at any moment leaves either
the complete folder or nothing (a leftover temporary folder is ignored and cleaned up by the next save). A
``latest`` file names the newest checkpoint; `latest_checkpoint` also works without it.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from humo.errors import HumoError, atomic_path, first_line

CHECKPOINTS_DIR = "checkpoints"
LATEST = "latest"
STATE_FILE = "state.json"
PREFIX = "step_"


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


# ----------------------------------------------------------------------------------------------------------------
# RNG states


def capture_rng(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Every RNG the run uses -> plain data and tensors (torch.load(weights_only=True) reads it back)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None) -> None:
    """Put back what `capture_rng` saved (and each named generator)."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    for k, g in (generators or {}).items():
        if k not in state["generators"]:
            raise HumoError(f"checkpoint RNG state: no state for generator '{k}'")
        g.set_state(state["generators"][k])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------------------------------------------
# Saving


def save_checkpoint(
    out: str | Path,
    step: int,
    *,
    model: dict[str, torch.Tensor],
    ema: dict[str, torch.Tensor],
    optimizer: dict[str, Any],
    rng: dict[str, Any],
    state: dict[str, Any],
    metadata: dict[str, str] | None = None,
    keep: int = 0,
) -> Path:
    """Write checkpoint `step` under ``out/checkpoints`` atomically; keep the newest `keep` (0: all) -> its folder."""
    from safetensors.torch import save_file

    root = Path(out) / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        meta = {"format": "pt", **(metadata or {})}
        save_file({k: v.detach().cpu().contiguous() for k, v in model.items()}, str(tmp / "model.safetensors"), meta)
        save_file({k: v.detach().cpu().contiguous() for k, v in ema.items()}, str(tmp / "ema.safetensors"), meta)
        torch.save(optimizer, tmp / "optimizer.pt")
        torch.save(rng, tmp / "rng.pt")
        (tmp / STATE_FILE).write_text(json.dumps({"step": step, **state}, indent=1))
        if final.exists():  # the same step saved again (a resumed run re-reaching it): replace
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    with atomic_path(root / LATEST) as t:
        t.write_text(final.name + "\n")
    _prune(root, keep, final.name)
    return final


def _prune(root: Path, keep: int, newest: str) -> None:
    for leftover in root.glob(f".{PREFIX}*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
    if keep > 0:
        done = sorted(p for p in root.glob(f"{PREFIX}*") if (p / STATE_FILE).is_file())
        for old in done[:-keep]:
            if old.name != newest:
                shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------------
# Loading


def latest_checkpoint(out: str | Path) -> Path | None:
    """The newest complete checkpoint under ``out/checkpoints`` (None when there is none)."""
    root = Path(out) / CHECKPOINTS_DIR
    if not root.is_dir():
        return None
    named = root / LATEST
    if named.is_file():
        p = root / named.read_text().strip()
        if (p / STATE_FILE).is_file():
            return p
    done = sorted(p for p in root.glob(f"{PREFIX}*") if (p / STATE_FILE).is_file())
    return done[-1] if done else None


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint folder -> {"model", "ema", "optimizer", "rng", "state"} (tensors on `device`, RNG on CPU)."""
    from safetensors.torch import load_file

    p = Path(path)
    if not (p / STATE_FILE).is_file():
        raise HumoError(f"checkpoint {p}: not a complete training checkpoint (no {STATE_FILE})")
    try:
        return {
            "model": load_file(str(p / "model.safetensors"), device=str(device)),
            "ema": load_file(str(p / "ema.safetensors"), device=str(device)),
            "optimizer": torch.load(p / "optimizer.pt", map_location=device, weights_only=True),
            "rng": torch.load(p / "rng.pt", map_location="cpu", weights_only=True),
            "state": json.loads((p / STATE_FILE).read_text()),
        }
    except (OSError, RuntimeError, ValueError) as e:
        raise HumoError(f"checkpoint {p}: cannot read ({first_line(e)})") from None
