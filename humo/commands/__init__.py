"""One module per `humo` subcommand: `configure(parser)` and `run(args)`."""

from __future__ import annotations

import argparse


def add_set_flag(parser: argparse.ArgumentParser, help: str) -> None:
    """The repeatable ``--set KEY=VALUE`` of the commands that take config overrides (into ``args.overrides``;
    `humo.training.config.apply_overrides` applies them)."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)
