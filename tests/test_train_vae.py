"""`humo train-vae`: the VAE learns, resumes from its checkpoint, saves measured latent stats, refuses bad config."""

from __future__ import annotations

import json
import stat

import numpy as np
import pytest
import torch

from humo.conditions.vae import WanVAE
from humo.conditions.vae_training import VAETrainConfig, load_clips, sample_batch, train_vae, vae_loss
from humo.errors import HumoError, atomic_path
from humo.evaluation.codec import evaluate_round_trip
from humo.proving_ground.synth import SynthConfig, synthesize_dataset


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae-data")
    # 10 clips: the synth splits a tenth of the training identities' clips into "val" (the held-out pool).
    path, _ = synthesize_dataset(SynthConfig(out=out, clips=10, frames=(9, 9), seed=5, workers=1), progress=False)
    return path


def _cfg(manifest, out, **kw):
    base = dict(manifest=str(manifest), out=str(out), steps=4, batch_size=2, frames=5, crop=32, max_clips=8,
                eval_clips=2, log_every=2, checkpoint_every=2, lr=1e-3, warmup_steps=1)  # fmt: skip
    return VAETrainConfig(**{**base, **kw})


def test_batches_are_windows_with_face_weights(manifest):
    cfg = _cfg(manifest, "unused", batch_size=3)
    bank = load_clips(manifest, train=True, limit=8)
    x, w = sample_batch(bank, cfg, np.random.default_rng(0))
    assert x.shape == (3, 3, 5, 32, 32) and w.shape == (3, 1, 5, 32, 32)
    assert x.min() >= -1 and x.max() <= 1
    assert w.min() == 1.0 and w.max() == 1.0 + cfg.face_weight  # face pixels weigh more; the face is in view


def test_whole_clip_phase_switches_window_and_batch(manifest):
    cfg = _cfg(manifest, "unused", crop=0, long_from=3, long_frames=9, long_batch_size=1)
    bank = load_clips(manifest, train=True, limit=8)
    g = np.random.default_rng(0)
    assert sample_batch(bank, cfg, g, step=2)[0].shape == (2, 3, 5, 64, 64)
    assert sample_batch(bank, cfg, g, step=3)[0].shape == (1, 3, 9, 64, 64)
    with pytest.raises(HumoError, match="shorter than a 13-frame window"):
        sample_batch(bank, _cfg(manifest, "unused", long_from=1, long_frames=13), g, step=1)


def test_loss_falls_when_fitting_one_batch(manifest):
    torch.manual_seed(0)
    cfg = _cfg(manifest, "unused")
    bank = load_clips(manifest, train=True, limit=4)
    x, w = sample_batch(bank, cfg, np.random.default_rng(0))
    vae = WanVAE.toy(seed=0)
    m = vae.model.train().requires_grad_(True)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    losses = []
    for _ in range(12):
        loss = vae_loss(m, x, w, 1e-6)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.8 * losses[0]


def test_run_writes_a_loadable_vae_with_stats_and_resumes(manifest, tmp_path):
    out = tmp_path / "run"
    # A run interrupted at step 3 (its last checkpoint is step 2) and then run again: it resumes at step 2.
    with pytest.raises(KeyboardInterrupt):
        train_vae(_cfg(manifest, out, log_every=1), log=_interrupt_after("step 3/4"))
    assert (out / "checkpoint.pt").is_file() and not (out / "vae").exists()
    messages = []
    report = train_vae(_cfg(manifest, out, log_every=1), log=messages.append, evaluate=evaluate_round_trip)
    assert report["steps"] == 4
    assert any("resumed at step 2" in m for m in messages)
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 3, 4]
    vae = WanVAE.from_pretrained(out / "vae")
    std = vae.config["latents_std"]
    assert len(std) == 16 and std != [1.0] * 16  # measured, not the identity placeholder
    for key in ("psnr", "psnr_face", "mouth_corr", "latent_std_mean"):
        assert key in report
    assert not (out / "checkpoint.pt").exists()
    # Normalised latents of held-out clips come out near unit scale with the saved statistics.
    bank = load_clips(manifest, train=False, limit=2)
    clip = torch.from_numpy(bank.videos[0]).permute(3, 0, 1, 2).unsqueeze(0).float() / 127.5 - 1
    z = vae.encode(clip)
    assert 0.3 < float(z.std()) < 3.0


def _interrupt_after(marker):
    def log(msg):
        if marker in msg:
            raise KeyboardInterrupt

    return log


@pytest.mark.parametrize(
    "bad, match",
    [({"frames": 6}, "frames 6"), ({"crop": 12}, "crop 12"), ({"steps": 0}, "steps 0"), ({"manifest": ""}, "manifest")],
)
def test_bad_config_is_named(bad, match):
    with pytest.raises(HumoError, match=match):
        VAETrainConfig(**{"manifest": "m.jsonl", **bad})


def test_train_vae_cli_rejects_unknown_field(manifest, tmp_path, capsys):
    from humo.cli import main

    code = main(["train-vae", "--manifest", str(manifest), "--out", str(tmp_path / "r"), "--set", "nope=1"])
    assert code != 0
    assert "nope" in capsys.readouterr().err


def test_atomic_outputs_are_world_readable(tmp_path):
    with atomic_path(tmp_path / "f.txt") as tmp:
        tmp.write_text("x")
    assert (tmp_path / "f.txt").stat().st_mode & stat.S_IROTH
