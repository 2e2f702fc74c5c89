"""`humo train-vae`: train the (toy) Wan VAE on a manifest's clips, e.g. proving-ground data.

    humo train-vae --manifest data/train/manifest.jsonl --out runs/vae --set steps=600

Writes ``OUT/vae/`` (a diffusers VAE folder with measured latent statistics), ``OUT/report.json`` (round-trip
PSNR and mouth-reader agreement on held-out clips) and ``OUT/log.jsonl``. A killed run resumes from
``OUT/checkpoint.pt``. See docs/proving-ground.md.
"""

from __future__ import annotations

import argparse
import dataclasses


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", required=True, help="dataset manifest (.jsonl or .parquet)")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of humo.training.vae.VAETrainConfig (steps, batch_size, frames, crop, lr, ...)",
    )


def run(args: argparse.Namespace) -> int:
    import typing

    from humo.errors import HumoError
    from humo.training.config import _coerce, parse_override
    from humo.training.vae import VAETrainConfig, train_vae

    hints = typing.get_type_hints(VAETrainConfig)
    fields = {f.name for f in dataclasses.fields(VAETrainConfig)}
    values: dict = {"manifest": args.manifest, "out": args.out}
    for item in args.overrides:
        key, value = parse_override(item)
        if key not in fields:
            raise HumoError(f"--set {key}: unknown field (known: {', '.join(sorted(fields))})")
        values[key] = _coerce(value, hints[key], f"--set {key}")
    report = train_vae(VAETrainConfig(**values))
    print(
        f"trained the VAE for {report['steps']} steps in {report['seconds']:.0f} s -> {report['vae']}; held-out "
        f"PSNR {report['psnr']:.1f} dB (face {_fmt(report['psnr_face'], ' dB')}), "
        f"mouth reader r = {_fmt(report['mouth_corr'])}"
    )
    return 0


def _fmt(v, unit: str = "") -> str:
    return "unreadable (not found in the reconstructions)" if v is None else f"{v:.2f}{unit}"
