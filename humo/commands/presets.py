"""`humo presets`: the model presets (default size, frames, dtype, guidance) and the guidance presets with their
parameters (scales and switch points), read from the code that uses them so the list cannot drift."""

from __future__ import annotations

import argparse
import inspect


def configure(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from humo.constants import VIDEO_FPS
    from humo.guidance import PRESETS
    from humo.guidance.presets import preset_parameters
    from humo.pipeline import LAYOUTS

    print("model presets (--preset; found from the --weights folder when omitted):")
    for name, lay in LAYOUTS.items():
        params = "".join(f" {k}={v:g}" for k, v in lay.guidance_params)
        print(
            f"  {name:10} {lay.height}x{lay.width}, {lay.frames} frames ({lay.frames / VIDEO_FPS:.2f} s at "
            f"{VIDEO_FPS} fps), {lay.dtype}, shift {lay.shift}, guidance {lay.guidance}{params}, DiT at {lay.dit}"
        )
    print("guidance presets (--guidance; change a parameter with --scale-t/-a/-i, --step-change or --guidance-set):")
    for name, fn in PRESETS.items():
        doc = " ".join((inspect.getdoc(fn) or "").split("\n\n")[0].split())  # the first paragraph, one line
        params = ", ".join(f"{k}={v}" for k, v in preset_parameters(name).items())
        print(f"  {name:13} {params}")
        if doc:
            print(f"  {'':13} {doc}")
    return 0
