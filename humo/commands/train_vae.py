"""`humo train-vae`: train the (toy) Wan VAE on a manifest's clips, e.g. proving-ground data.

    humo train-vae --manifest data/train/manifest.jsonl --out runs/vae --set steps=600

Writes ``OUT/vae/`` (a diffusers VAE folder with measured latent statistics), ``OUT/report.json`` (round-trip
PSNR and mouth-reader agreement on held-out clips) and ``OUT/log.jsonl``. A killed run resumes from
``OUT/checkpoint.pt``. See docs/proving-ground.md.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    from humo.commands import add_set_flag

    parser.add_argument("--manifest", required=True, help="dataset manifest (.jsonl or .parquet)")
    parser.add_argument("--out", required=True, help="run folder")
    add_set_flag(
        parser,
        "override a field of VAETrainConfig (humo/conditions/vae_training.py): steps, batch_size, frames, "
        "crop, lr, ...",
    )


def run(args: argparse.Namespace) -> int:
    from humo.conditions.vae_training import VAETrainConfig, train_vae
    from humo.evaluation.codec import evaluate_round_trip
    from humo.training.config import config_from_dict, parse_override

    values = {"manifest": args.manifest, "out": args.out, **dict(parse_override(o) for o in args.overrides)}
    report = train_vae(config_from_dict(VAETrainConfig, values, "train-vae --set"), evaluate=evaluate_round_trip)
    print(
        f"trained the VAE for {report['steps']} steps in {report['seconds']:.0f} s -> {report['vae']}; held-out "
        f"PSNR {report['psnr']:.1f} dB (face {_fmt(report['psnr_face'], ' dB')}), "
        f"mouth reader r = {_fmt(report['mouth_corr'])}"
    )
    return 0


def _fmt(v, unit: str = "") -> str:
    return "unreadable (not found in the reconstructions)" if v is None else f"{v:.2f}{unit}"
