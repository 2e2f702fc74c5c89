"""Golden outputs: what generation and training give for fixed seeds, recorded before a refactor and checked after.

    python -m tests.golden record     # writes tests/golden/ (only when a change of behaviour is intended)

Generation: the sampled latents (captured at the VAE's decode, so only the public pipeline call is used) and the
predicted mask, for the toy layout (with the random toy VAE and with a linear codec) and tiny models of both
released layouts (1.7B "replace", 17B "concat"), under every guidance preset with all inputs and under the default
preset for every input mode; and the bundled model in every mode (these hold for its weights, whose digest is
recorded: a rebundle re-records them). Training: the
logged losses of a few steps of every stage, for both layouts.

On the machine that recorded them (same torch version, CPU capability, CPU model and feature flags) they must be
bit-identical; on another, float kernels may round differently and guidance amplifies it over the steps (two
AVX512 machines of this workplace differ by up to 3e-5 on latents of magnitude 10), so they must agree to 1e-4,
absolute and relative: a change of behaviour moves them by orders of magnitude more.
"""

from __future__ import annotations

import functools
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

GOLDEN = Path(__file__).parent / "golden"
SMALL = dict(height=32, width=32, frames=9, steps=3, seed=5)
PRESETS = ("release-17b", "release-1.7b", "paper", "static", "annealed", "cfg", "none")
MODES = ("t", "ti", "ta", "tia")


BUNDLED = Path(__file__).parents[1] / "humo" / "assets" / "toy"


@functools.cache
def machine() -> dict:
    """What decides the float kernels' rounding: the torch build, its CPU capability, and the processor itself
    (model and feature flags from /proc/cpuinfo, where there is one; the capability alone names several)."""
    import hashlib

    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("vendor_id", "cpu family", "model", "model name", "stepping", "flags") and key not in info:
                info[key] = value.strip()
    except OSError:
        pass
    flags = hashlib.sha256(info.pop("flags", "").encode()).hexdigest()[:16]
    return {"torch": torch.__version__, "cpu": torch.backends.cpu.get_cpu_capability(), "processor": info,
            "flags": flags}  # fmt: skip


def bundled_digest() -> str:
    """The bundled DiT's sha256: its golden outputs hold for these weights only (re-record after a rebundle)."""
    import hashlib

    return hashlib.sha256((BUNDLED / "dit.safetensors").read_bytes()).hexdigest()


def media(folder: Path) -> tuple[str, str]:
    """A reference image and a half-second WAV (seeded)."""
    t = np.arange(8000) / 16000
    wav, png = folder / "a.wav", folder / "r.png"
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 220 * t) * (t < 0.3)).astype("float32"), 16000)
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 30, 3)) * 255).astype("uint8")).save(png)
    return str(png), str(wav)


class _Capture:
    """A VAE that records what it is asked to decode."""

    def __init__(self, vae):
        self.vae, self.latents = vae, None

    def decode(self, latents, *a, **k):
        self.latents = latents.detach().clone()
        return self.vae.decode(latents, *a, **k)

    def __getattr__(self, name):
        return getattr(self.vae, name)


def pipelines():
    """name -> (a HumoPipeline on seeded tiny components, the capturing VAE it decodes with)."""
    from humo.configs import dit_preset
    from humo.dit import HumoDiT
    from humo.pipeline import LAYOUTS, HumoPipeline
    from humo.toy import toy_components
    from tests.helpers import TINY, TINY_AUDIO, randomize

    out = {}
    dit, vae, text, audio = toy_components(seed=0, num_layers=2, mask_head_blocks=1)
    randomize(dit, seed=1, scale=0.05)
    out["toy"] = ("toy", dit, vae, text, audio)
    out["toy-codec"] = ("toy", dit, codec(), text, audio)
    shared = {
        **TINY,
        **TINY_AUDIO,
        "text_dim": text.dim,
        "text_len": text.text_len,
        "audio_feat_dim": dit.cfg.audio_feat_dim,
    }
    for name, extra in (("humo-1.7b", {"mask_head_blocks": 1}), ("humo-17b", {})):
        cfg = dit_preset(name, **shared, **extra)
        out[name] = (name, randomize(HumoDiT(cfg), seed=2, scale=0.05).eval(), vae, text, audio)
    bundled = HumoPipeline.from_pretrained(BUNDLED, "toy", device="cpu", progress=False, log=lambda m: None)
    out["bundled"] = (
        "toy",
        bundled.dit,
        bundled.vae.loader(),
        *(c.loader() for c in (bundled.text_encoder, bundled.audio_encoder)),
    )
    pipes = {}
    for k, (lay, d, v, t, a) in out.items():
        capture = _Capture(v)
        pipes[k] = (HumoPipeline(LAYOUTS[lay], d, capture, t, a, progress=False, log=lambda m: None), capture)
    return pipes


def codec():
    """A linear codec fitted on seeded random videos (the proving ground's codec path, no files)."""
    from humo.conditions.linear_codec import fit_linear_codec

    g = torch.Generator().manual_seed(3)
    videos = [torch.rand(1, 3, 9, 32, 32, generator=g) * 2 - 1 for _ in range(4)]
    return fit_linear_codec(videos, z_dim=16, scaling="global")


def generation_cases():
    """(case name, pipeline name, mode, guidance preset or None)."""
    for pipe in ("toy", "toy-codec", "humo-1.7b", "humo-17b"):
        for preset in PRESETS:
            yield f"{pipe}/tia/{preset}", pipe, "tia", preset
        for mode in MODES[:-1]:
            yield f"{pipe}/{mode}/default", pipe, mode, None
    for mode in MODES:
        yield f"bundled/{mode}/default", "bundled", mode, None


def generate_all(folder: Path) -> dict[str, torch.Tensor]:
    png, wav = media(folder)
    pipes = pipelines()
    result = {}
    for case, name, mode, preset in generation_cases():
        pipe, capture = pipes[name]
        images = [png] if "i" in mode else []
        sound = wav if "a" in mode else None
        r = pipe("a woman talks in the forest", images, sound, guidance=preset, **SMALL)
        result[f"{case}/latents"] = capture.latents.float().contiguous()
        if r.mask is not None:
            result[f"{case}/mask"] = torch.from_numpy(np.ascontiguousarray(r.mask)).float()
    return result


def training_cases():
    """(case name, preset, model overrides, stage)."""
    from tests.helpers import TINY, TINY_AUDIO

    base = {**TINY, **TINY_AUDIO}
    for stage in (0, 1, 2):
        yield f"humo-1.7b/stage{stage}", "humo-1.7b", {**base, "mask_head_blocks": 2}, stage
        yield f"humo-17b/stage{stage}", "humo-17b", {**base, "in_dim": 36}, stage


def train_all(folder: Path) -> dict[str, list[float]]:
    from humo.training.loop import train
    from tests.helpers import synthetic_cache, tiny_train_config

    cache = folder / "cache"
    synthetic_cache(
        cache,
        samples=4,
        text_dim=TINY_TEXT_DIM,
        audio_window=(8, 5, 8),
        with_refs=[True, False, True, True],
        with_audio=[True, True, False, True],
    )
    losses = {}
    for case, preset, model, stage in training_cases():
        out = folder / case.replace("/", "-")
        cfg = tiny_train_config(
            cache,
            out,
            model=preset,
            model_overrides=model,
            stage=stage,
            steps=3,
            face_loss_weight=2.0 if stage == 2 else 0.0,
            mask_loss_weight=0.1 if stage == 2 and preset == "humo-1.7b" else 0.0,
            seed=7,
        )
        train(cfg)
        log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        losses[case] = [[r["step"], r["loss"], r["flow"], r.get("mask", 0.0)] for r in log if "loss" in r]
    return losses


TINY_TEXT_DIM = 32  # tests.helpers.TINY's text_dim


def record() -> None:
    torch.set_num_threads(1)
    GOLDEN.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_file(generate_all(Path(tmp)), str(GOLDEN / "generation.safetensors"))
        losses = train_all(Path(tmp))
    (GOLDEN / "training.json").write_text(json.dumps({"machine": machine(), "losses": losses}, indent=1) + "\n")
    (GOLDEN / "machine.json").write_text(json.dumps(machine()) + "\n")
    (GOLDEN / "bundled.json").write_text(json.dumps({"dit_sha256": bundled_digest()}) + "\n")
    print(f"recorded {GOLDEN}")


def load_generation() -> dict[str, torch.Tensor]:
    return load_file(str(GOLDEN / "generation.safetensors"))


@functools.cache
def recorded_here() -> bool:  # asked for every compared tensor: the files are read once
    return json.loads((GOLDEN / "machine.json").read_text()) == machine()


if __name__ == "__main__":
    if sys.argv[1:] != ["record"]:
        raise SystemExit("usage: python -m tests.golden record")
    record()
